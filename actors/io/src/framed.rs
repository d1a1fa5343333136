//! [`Framed`]: a stream with a codec — typed frames in, typed frames out
//! (IO::Async's Protocol::Stream and Protocol::LineStream).
//!
//! ```no_run
//! use ioasync::{Framed, FramedRef, codec::LinesCodec};
//! # #[allow(dead_code)]
//! # async fn f(lp: ioasync::Loop, conn: ioasync::Connection) -> ioasync::Result<()> {
//! let lines = lp
//!     .add(Framed::spec("client", conn, LinesCodec::new_with_max_length(64 << 10))
//!         .on_frame(|_io, line: String| println!("Received a line {line}")))
//!     .await?;
//! lines.send("hello".to_string()).await?;
//! # Ok(()) }
//! ```

use std::{fmt, marker::PhantomData};

use futures_util::{StreamExt, future::BoxFuture, stream::FuturesOrdered};

use bytes::BytesMut;
use ioasync_core::{
    Ctx, Emits, Error, ErrorKind, Handler, IntoSpec, Notifier, NotifierRef, Once, Restart, Result,
    Spec,
};
use tokio::sync::oneshot;
use tokio_util::codec::{Decoder, Encoder};

use crate::{
    connection::Connection,
    duplex::{Duplex, Limits, Progress, Source},
    stream::{CloseNow, CloseWhenEmpty},
};

/// A codec [`Framed`] and [`FramedSocket`](crate::FramedSocket) can speak:
/// decodes frames of `Self::Item`, encodes `O`. Any tokio-util codec with
/// printable errors and cloneable frames is one.
pub trait FrameCodec<O>:
    Decoder<Item: Clone + Send + 'static, Error: fmt::Display>
    + Encoder<O, Error: fmt::Display>
    + Send
    + 'static
{
}

impl<C, O> FrameCodec<O> for C
where
    C: Decoder + Encoder<O> + Send + 'static,
    C::Item: Clone + Send + 'static,
    <C as Decoder>::Error: fmt::Display,
    <C as Encoder<O>>::Error: fmt::Display,
{
}

/// Something that happened to a framed stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FramedEvent<T> {
    /// A decoded frame (only when there is no `on_frame` closure).
    Frame(T),
    /// The peer closed its write side.
    ReadEof,
    /// Reading or decoding failed (op `read` or `decode`); it closes.
    ReadError(Error),
    /// Writing failed (op `write`, errno kept); it closes.
    WriteError(Error),
    /// Closed; fds closed.
    Closed,
}

/// What an `on_frame` closure may do to its own stream.
pub struct FramedIo<'a, C, O> {
    duplex: &'a mut Duplex,
    codec: &'a mut C,
    _o: PhantomData<fn(O)>,
}

impl<C: Encoder<O>, O> FramedIo<'_, C, O>
where
    C::Error: fmt::Display,
{
    /// Encodes and queues a frame.
    pub fn send(&mut self, item: O) -> Result<()> {
        let codec = &mut *self.codec;
        let queued = self
            .duplex
            .append_with(|buf| codec.encode(item, buf))
            .map_err(|e| Error::new("encode", ErrorKind::InvalidInput, e.to_string()))?;
        if queued {
            Ok(())
        } else {
            Err(Error::closed("send", "the stream is closed for writing"))
        }
    }

    /// Closes once everything queued is written.
    pub fn close_when_empty(&mut self) {
        self.duplex.close_when_empty = true;
    }
}

impl<C, O> fmt::Debug for FramedIo<'_, C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedIo")
            .field("queued", &self.duplex.queued())
            .finish()
    }
}

type ServeFn<C, O> = Box<dyn FnMut(<C as Decoder>::Item) -> BoxFuture<'static, Option<O>> + Send>;

type OnFrame<C, O> = Box<dyn FnMut(&mut FramedIo<'_, C, O>, <C as Decoder>::Item) + Send>;

/// How to start a [`Framed`].
pub struct FramedArgs<C: Decoder, O> {
    source: Source,
    codec: C,
    limits: Limits,
    on_frame: Option<OnFrame<C, O>>,
    serve: Option<(ServeFn<C, O>, usize)>,
    close_on_read_eof: bool,
}

impl<C: Decoder, O> fmt::Debug for FramedArgs<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedArgs")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A framed stream under construction; set options, then add it.
#[must_use = "a FramedSpec does nothing until it is added"]
pub struct FramedSpec<C: Decoder, O> {
    name: String,
    args: FramedArgs<C, O>,
}

impl<C: Decoder, O> fmt::Debug for FramedSpec<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedSpec")
            .field("name", &self.name)
            .finish()
    }
}

impl<C, O> FramedSpec<C, O>
where
    C: Decoder + Encoder<O> + Send + 'static,
    C::Item: Clone + Send + 'static,
    O: Send + 'static,
{
    /// Called inside the stream for each decoded frame; may send replies.
    pub fn on_frame(
        mut self,
        f: impl FnMut(&mut FramedIo<'_, C, O>, C::Item) + Send + 'static,
    ) -> Self {
        self.args.on_frame = Some(Box::new(f));
        self
    }

    /// Serves each frame with an async handler: up to `max_in_flight`
    /// run at once, and their replies (`Some`) are written in the order
    /// the frames came, whatever order the handlers finish in. While
    /// `max_in_flight` are running, reading pauses (backpressure).
    pub fn serve<F, Fut>(mut self, max_in_flight: usize, mut f: F) -> Self
    where
        F: FnMut(C::Item) -> Fut + Send + 'static,
        Fut: Future<Output = Option<O>> + Send + 'static,
    {
        self.args.serve = Some((
            Box::new(move |item| Box::pin(f(item))),
            max_in_flight.max(1),
        ));
        self
    }

    /// Buffer limits (watermarks).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.args.limits = limits;
        self
    }

    /// Close when the peer closes its write side (default true).
    pub fn close_on_read_eof(mut self, on: bool) -> Self {
        self.args.close_on_read_eof = on;
        self
    }
}

impl<C, O> IntoSpec for FramedSpec<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Notifier = Framed<C, O>;
}

impl<C, O> From<FramedSpec<C, O>> for Spec<Framed<C, O>>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    fn from(s: FramedSpec<C, O>) -> Self {
        Spec::new(s.name, Once::new(s.args)).restart(Restart::Temporary)
    }
}

impl<C, O> From<FramedSpec<C, O>> for ioasync_core::AnySpec
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    fn from(s: FramedSpec<C, O>) -> Self {
        Spec::<Framed<C, O>>::from(s).into()
    }
}

impl<C: Decoder, O> FramedArgs<C, O> {}

/// A byte stream decoded into frames of `C::Item` and encoding `O`.
pub struct Framed<C: Decoder, O> {
    duplex: Duplex,
    codec: C,
    on_frame: Option<OnFrame<C, O>>,
    serve: Option<(ServeFn<C, O>, usize)>,
    inflight: FuturesOrdered<BoxFuture<'static, Option<O>>>,
    finished: Vec<Option<O>>,
    close_on_read_eof: bool,
}

impl<C, O> Framed<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    /// A framed stream over a connected socket.
    pub fn spec(
        name: impl Into<String>,
        conn: impl Into<Connection>,
        codec: C,
    ) -> FramedSpec<C, O> {
        FramedSpec {
            name: name.into(),
            args: FramedArgs {
                source: Source::from_connection(conn.into()),
                codec,
                limits: Limits::default(),
                on_frame: None,
                serve: None,
                close_on_read_eof: true,
            },
        }
    }

    async fn frame(&mut self, ctx: &mut Ctx<'_, Self>, item: C::Item) {
        if let Some((serve, _)) = self.serve.as_mut() {
            self.inflight.push_back(serve(item));
            return;
        }
        match self.on_frame.as_mut() {
            Some(f) => {
                let mut io = FramedIo {
                    duplex: &mut self.duplex,
                    codec: &mut self.codec,
                    _o: PhantomData,
                };
                f(&mut io, item);
            }
            None => ctx.emit(FramedEvent::Frame(item)).await,
        }
    }

    /// Decodes every whole frame buffered (and the last one at EOF).
    async fn decode_all(&mut self, ctx: &mut Ctx<'_, Self>) -> Result<()> {
        let eof = self.duplex.read_eof;
        loop {
            let mut buf = std::mem::take(&mut self.duplex.rbuf);
            let res = if eof {
                self.codec.decode_eof(&mut buf)
            } else {
                self.codec.decode(&mut buf)
            }
            .map_err(|e| Error::new("decode", ErrorKind::InvalidInput, e.to_string()));
            self.duplex.rbuf = buf;
            match res? {
                Some(item) => self.frame(ctx, item).await,
                None => break,
            }
        }
        self.duplex.consumed();
        Ok(())
    }

    async fn after_progress(&mut self, p: Progress, ctx: &mut Ctx<'_, Self>) {
        let read = p.read;
        self.apply(p, ctx).await;
        if read && self.duplex.queued() > 0 && !self.duplex.is_closed() {
            // The reader queued replies: write them now.
            let p = self.duplex.flush_now();
            self.apply(p, ctx).await;
        }
        ctx.set_buffered(self.duplex.queued() + self.duplex.rbuf.len());
    }

    async fn apply(&mut self, p: Progress, ctx: &mut Ctx<'_, Self>) {
        if (p.read || p.read_eof)
            && let Err(e) = self.decode_all(ctx).await
        {
            ctx.emit(FramedEvent::ReadError(e)).await;
            return self.close(ctx).await;
        }
        if p.read_eof {
            ctx.emit(FramedEvent::ReadEof).await;
            if self.close_on_read_eof {
                self.duplex.close_when_empty = true;
            }
        }
        if let Some(e) = p.write_error {
            ctx.emit(FramedEvent::WriteError(e)).await;
            return self.close(ctx).await;
        }
        if let Some(e) = p.read_error {
            ctx.emit(FramedEvent::ReadError(e)).await;
            return self.close(ctx).await;
        }
        if self.duplex.close_when_empty && self.duplex.queued() == 0 && self.inflight.is_empty() {
            self.close(ctx).await;
        }
    }

    async fn close(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.duplex.is_closed() {
            self.duplex.close();
            ctx.emit(FramedEvent::Closed).await;
        }
        ctx.stop();
    }
}

impl<C, O> Notifier for Framed<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Args = Once<FramedArgs<C, O>>;

    fn kind() -> &'static str {
        "framed"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        let (source, codec) = (args.source, args.codec);
        Ok(Framed {
            duplex: Duplex::new(source, args.limits),
            codec,
            on_frame: args.on_frame,
            serve: args.serve,
            inflight: FuturesOrdered::new(),
            finished: Vec::new(),
            close_on_read_eof: args.close_on_read_eof,
        })
    }

    async fn ready(&mut self) {
        if let Some((_, max)) = &self.serve {
            // Backpressure: no more frames while the handlers are busy.
            self.duplex.read_off = self.inflight.len() >= *max;
        }
        let busy = !self.inflight.is_empty();
        tokio::select! {
            () = self.duplex.ready() => {}
            Some(out) = self.inflight.next(), if busy => self.finished.push(out),
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        // Replies of finished handlers, in frame order.
        for out in std::mem::take(&mut self.finished).into_iter().flatten() {
            let codec = &mut self.codec;
            let res = self
                .duplex
                .append_with(|buf| codec.encode(out, buf))
                .map_err(|e| Error::new("encode", ErrorKind::InvalidInput, e.to_string()));
            if let Err(e) = res {
                ctx.emit(FramedEvent::WriteError(e)).await;
            }
        }
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
        if self.serve.is_some()
            && self.duplex.close_when_empty
            && self.duplex.queued() == 0
            && self.inflight.is_empty()
        {
            self.close(ctx).await;
        }
    }

    fn accepting(&self) -> bool {
        self.duplex.accepting_writes()
    }

    async fn on_stop(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.duplex.is_closed() {
            if let Err(e) = self.duplex.drain().await {
                ctx.emit(FramedEvent::WriteError(e)).await;
            }
            self.duplex.close();
            ctx.emit(FramedEvent::Closed).await;
        }
    }
}

impl<C, O> Emits<FramedEvent<C::Item>> for Framed<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
}

impl<C: Decoder, O> fmt::Debug for Framed<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framed")
            .field("queued", &self.duplex.queued())
            .finish()
    }
}

/// Message: encode and queue a frame; the sender resolves once written.
#[derive(Debug)]
pub struct SendFrame<O>(pub O, pub Option<oneshot::Sender<Result<()>>>);

impl<C, O> Handler<SendFrame<O>> for Framed<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Reply = ();
    async fn handle(&mut self, SendFrame(item, done): SendFrame<O>, ctx: &mut Ctx<'_, Self>) {
        let mut buf = BytesMut::new();
        let encoded = self
            .codec
            .encode(item, &mut buf)
            .map_err(|e| Error::new("encode", ErrorKind::InvalidInput, e.to_string()));
        match encoded {
            Ok(()) => self.duplex.write(buf.freeze(), done),
            Err(e) => {
                if let Some(done) = done {
                    let _ = done.send(Err(e));
                }
                return;
            }
        }
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }
}

impl<C, O> Handler<CloseWhenEmpty> for Framed<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Reply = ();
    async fn handle(&mut self, _: CloseWhenEmpty, ctx: &mut Ctx<'_, Self>) {
        self.duplex.close_when_empty = true;
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }
}

impl<C, O> Handler<CloseNow> for Framed<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Reply = ();
    async fn handle(&mut self, _: CloseNow, ctx: &mut Ctx<'_, Self>) {
        self.close(ctx).await;
    }
}

/// Framed-stream operations on its handle.
pub trait FramedRef<O> {
    /// Encodes and queues `item`; resolves once it is written.
    fn send(&self, item: O) -> impl Future<Output = Result<()>> + Send;
    /// Closes once everything queued is written.
    fn close_when_empty(&self) -> impl Future<Output = Result<()>> + Send;
}

impl<C, O> FramedRef<O> for NotifierRef<Framed<C, O>>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    async fn send(&self, item: O) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tell(SendFrame(item, Some(tx))).await?;
        rx.await
            .unwrap_or_else(|_| Err(Error::closed("send", "the stream stopped")))
    }

    async fn close_when_empty(&self) -> Result<()> {
        self.tell(CloseWhenEmpty).await
    }
}
