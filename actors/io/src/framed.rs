//! [`Framed`]: a stream with a codec — typed frames in, typed frames out
//! (IO::Async's Protocol::Stream and Protocol::LineStream).
//!
//! ```no_run
//! use ioasync::{io::{Framed, FramedRef}, io::codec::LineCodec};
//! # #[allow(dead_code)]
//! # async fn f(lp: ioasync::Loop, conn: ioasync::io::Connection) -> ioasync::Result<()> {
//! let lines = lp
//!     .add(Framed::spec("client", conn, LineCodec::new_with_max_length(64 << 10))
//!         .on_frame(|_io, line: String| println!("Received a line {line}")))
//!     .await?;
//! lines.send("hello".to_string()).await?;
//! # Ok(()) }
//! ```

use std::{
    fmt,
    marker::PhantomData,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

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
    /// The codec refused one frame (op `decode`: too long, not UTF-8...).
    /// The connection goes on with the next frame: replies already due
    /// are written, and in `serve` mode the frame's reply is what the
    /// `on_decode_error` hook made of the error, in its place.
    DecodeError(Error),
    /// Reading failed (op `read`, errno kept), or the codec cannot go on
    /// after an error; it closes once the replies already due are written.
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
        queue_frame(self.duplex, self.codec, item)
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

/// Encodes `item` straight into the write buffer: an error of op `encode`
/// when the codec refuses it, of op `send` when the stream is closed for
/// writing.
fn queue_frame<C, O>(duplex: &mut Duplex, codec: &mut C, item: O) -> Result<()>
where
    C: Encoder<O>,
    C::Error: fmt::Display,
{
    let queued = duplex
        .append_with(|buf| codec.encode(item, buf))
        .map_err(|e| Error::new("encode", ErrorKind::InvalidInput, e.to_string()))?;
    if queued {
        Ok(())
    } else {
        Err(Error::closed("send", "the stream is closed for writing"))
    }
}

type ServeFn<C, O> = Box<dyn FnMut(<C as Decoder>::Item) -> BoxFuture<'static, Option<O>> + Send>;

type OnFrame<C, O> = Box<dyn FnMut(&mut FramedIo<'_, C, O>, <C as Decoder>::Item) + Send>;

type OnDecodeError<O> = Box<dyn FnMut(&Error) -> Option<O> + Send>;

/// How to start a [`Framed`].
pub struct FramedArgs<C: Decoder, O> {
    source: Source,
    codec: C,
    limits: Limits,
    on_frame: Option<OnFrame<C, O>>,
    serve: Option<(ServeFn<C, O>, usize)>,
    on_decode_error: Option<OnDecodeError<O>>,
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
    /// the frames came, whatever order the handlers finish in. At most
    /// `max_in_flight` frames are decoded ahead: frames beyond stay as
    /// bytes in the read buffer, decoding resumes as handlers finish, and
    /// reading pauses while the handlers are all busy (backpressure).
    /// Stopping the stream stops reading, lets the running handlers finish
    /// and their replies flush (within its stop timeout), then closes.
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

    /// In `serve` mode, the reply written in place of a frame the codec
    /// refused (`None`: no reply). Without it a refused frame gets no
    /// reply; either way the stream emits
    /// [`DecodeError`](FramedEvent::DecodeError) and goes on.
    pub fn on_decode_error(mut self, f: impl FnMut(&Error) -> Option<O> + Send + 'static) -> Self {
        self.args.on_decode_error = Some(Box::new(f));
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
    on_decode_error: Option<OnDecodeError<O>>,
    inflight: FuturesOrdered<BoxFuture<'static, Option<O>>>,
    finished: Vec<Option<O>>,
    close_on_read_eof: bool,
    /// Decoding stopped at `max_in_flight`: frames may wait in the buffer.
    held_back: bool,
    /// Consecutive decode errors that consumed nothing.
    stuck_errors: u8,
    /// No more frames will be read or decoded (a fatal decode error, a
    /// stop).
    reading_done: bool,
    /// What the handles see of the write buffer (for `try_send`).
    gate: Arc<SendGate>,
}

/// Shared by a framed stream and its handles: whether its write buffer is
/// over the high watermark (`try_send` refuses at once while it is), and
/// a wake-up for senders waiting for room.
#[derive(Debug, Default)]
struct SendGate {
    full: AtomicBool,
    closed: AtomicBool,
    high: AtomicUsize,
    room: tokio::sync::Notify,
}

impl SendGate {
    fn open(&self, high: usize) {
        self.high.store(high, Ordering::Relaxed);
        self.full.store(false, Ordering::Release);
        self.closed.store(false, Ordering::Release);
    }

    fn publish(&self, full: bool) {
        if self.full.swap(full, Ordering::AcqRel) && !full {
            self.room.notify_waiters();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the write buffer is below its high watermark (or the
    /// stream closed).
    async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_full() || self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl<C, O> Framed<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    /// A framed stream over a connection: a socket, a TLS stream, any
    /// [`Connection`]. With a codec of one `Encoder` impl, the frame types
    /// follow from it; for tokio-util's `LinesCodec` (which encodes any
    /// `AsRef<str>`), use [`LineCodec`](crate::codec::LineCodec) or name
    /// the output type.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use ioasync::{Loop, io::{Framed, codec::{Decoder, Encoder}}};
    ///
    /// /// One byte per frame, written back doubled.
    /// struct Bytewise;
    /// impl Decoder for Bytewise {
    ///     type Item = u8;
    ///     type Error = std::io::Error;
    ///     fn decode(&mut self, b: &mut BytesMut) -> std::io::Result<Option<u8>> {
    ///         Ok((!b.is_empty()).then(|| b.split_to(1)[0]))
    ///     }
    /// }
    /// impl Encoder<[u8; 2]> for Bytewise {
    ///     type Error = std::io::Error;
    ///     fn encode(&mut self, x: [u8; 2], b: &mut BytesMut) -> std::io::Result<()> {
    ///         b.extend_from_slice(&x);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
    /// // No turbofish: the codec says what goes in and out.
    /// lp.add(Framed::spec("double", ours, Bytewise).serve(4, |b| async move { Some([b, b]) }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn spec(
        name: impl Into<String>,
        conn: impl Into<Connection>,
        codec: C,
    ) -> FramedSpec<C, O> {
        Self::over(name, Source::from_connection(conn.into()), codec)
    }

    /// A framed stream over any [`AsyncIo`](crate::AsyncIo) (a TLS
    /// stream...), as [`Stream::spec_io`](crate::Stream::spec_io).
    pub fn spec_io(name: impl Into<String>, io: impl crate::AsyncIo, codec: C) -> FramedSpec<C, O> {
        Self::spec(name, Connection::from_io(io), codec)
    }

    /// A framed stream reading `read` and writing `write` (either may be
    /// absent): pipe ends, a child's stdout, a tty, stdio, as
    /// [`Stream::from_fds`](crate::Stream::from_fds).
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use ioasync::{io::{Framed, FramedEvent}, Loop, io::codec::LineCodec, notifier::{Spec, Subscription}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut child = std::process::Command::new("printf")
    ///     .arg("one\ntwo\n")
    ///     .stdout(std::process::Stdio::piped())
    ///     .spawn()
    ///     .unwrap();
    /// let out = child.stdout.take().unwrap();
    /// let spec = Framed::from_fds("out", Some(out.into()), None, LineCodec::new())?;
    /// // Subscribed before it starts: not a line is missed.
    /// let (sub, mut events) = Subscription::stream(64);
    /// lp.add(Spec::from(spec).subscribe(sub)).await?;
    /// let mut got = Vec::new();
    /// while let Some(ev) = events.next().await {
    ///     match ev {
    ///         FramedEvent::Frame(line) => got.push(line),
    ///         FramedEvent::ReadEof => break,
    ///         _ => {}
    ///     }
    /// }
    /// assert_eq!(got, ["one", "two"]);
    /// child.wait().unwrap();
    /// # Ok(()) }
    /// ```
    pub fn from_fds(
        name: impl Into<String>,
        read: Option<std::os::fd::OwnedFd>,
        write: Option<std::os::fd::OwnedFd>,
        codec: C,
    ) -> Result<FramedSpec<C, O>> {
        Ok(Self::over(name, Source::from_fds(read, write)?, codec))
    }

    fn over(name: impl Into<String>, source: Source, codec: C) -> FramedSpec<C, O> {
        FramedSpec {
            name: name.into(),
            args: FramedArgs {
                source,
                codec,
                limits: Limits::default(),
                on_frame: None,
                serve: None,
                on_decode_error: None,
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

    /// Encodes the replies of finished handlers, in frame order.
    async fn write_finished(&mut self, ctx: &mut Ctx<'_, Self>) {
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
    }

    /// Whether `serve` has all the frames it may hold.
    fn serve_full(&self) -> bool {
        self.serve
            .as_ref()
            .is_some_and(|(_, max)| self.inflight.len() >= *max)
    }

    /// Decodes the whole frames buffered (and the last one at EOF), up to
    /// what `serve` may hold. A refused frame is an event (and, in `serve`
    /// mode, the `on_decode_error` reply in its place); an error the codec
    /// cannot get past (twice in a row with nothing consumed) is returned.
    async fn decode_all(&mut self, ctx: &mut Ctx<'_, Self>) -> Result<()> {
        let eof = self.duplex.read_eof;
        self.held_back = false;
        loop {
            if self.serve_full() {
                self.held_back = !self.duplex.rbuf.is_empty();
                break;
            }
            let before = self.duplex.rbuf.len();
            let mut buf = std::mem::take(&mut self.duplex.rbuf);
            let res = if eof {
                self.codec.decode_eof(&mut buf)
            } else {
                self.codec.decode(&mut buf)
            }
            .map_err(|e| Error::new("decode", ErrorKind::InvalidInput, e.to_string()));
            self.duplex.rbuf = buf;
            match res {
                Ok(Some(item)) => {
                    self.stuck_errors = 0;
                    self.frame(ctx, item).await;
                }
                Ok(None) => break,
                Err(e) => {
                    let consumed = self.duplex.rbuf.len() < before;
                    self.stuck_errors = if consumed { 0 } else { self.stuck_errors + 1 };
                    if self.stuck_errors >= 2 || (eof && !consumed && self.stuck_errors >= 1) {
                        self.duplex.consumed();
                        return Err(e);
                    }
                    if let (Some(_), Some(f)) = (&self.serve, self.on_decode_error.as_mut()) {
                        let reply = f(&e);
                        self.inflight.push_back(Box::pin(std::future::ready(reply)));
                    }
                    ctx.emit(FramedEvent::DecodeError(e)).await;
                }
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
        self.gate.publish(!self.duplex.accepting_writes());
    }

    async fn apply(&mut self, p: Progress, ctx: &mut Ctx<'_, Self>) {
        if (p.read || p.read_eof)
            && let Err(e) = self.decode_all(ctx).await
        {
            // The codec cannot go on: read no more, and close once the
            // replies already due are written.
            ctx.emit(FramedEvent::ReadError(e)).await;
            self.duplex.read_off = true;
            self.reading_done = true;
            self.duplex.close_when_empty = true;
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
        if self.done() {
            self.close(ctx).await;
        }
    }

    /// Closing was asked for and nothing is left to write or answer.
    fn done(&self) -> bool {
        self.duplex.close_when_empty
            && self.duplex.queued() == 0
            && self.inflight.is_empty()
            && self.finished.is_empty()
            && (self.reading_done || !self.held_back)
    }

    async fn close(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.gate.close();
        if !self.duplex.is_closed() {
            self.duplex.close();
            ctx.emit(FramedEvent::Closed).await;
        }
        ctx.exit();
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
        let gate = ctx.this().handle_state(SendGate::default);
        gate.open(args.limits.write_high);
        Ok(Framed {
            duplex: Duplex::new(source, args.limits),
            codec,
            on_frame: args.on_frame,
            serve: args.serve,
            on_decode_error: args.on_decode_error,
            inflight: FuturesOrdered::new(),
            finished: Vec::new(),
            close_on_read_eof: args.close_on_read_eof,
            held_back: false,
            stuck_errors: 0,
            reading_done: false,
            gate,
        })
    }

    async fn ready(&mut self) {
        if self.serve.is_some() {
            // Backpressure: no more bytes while the handlers are all busy
            // or frames already read wait to be decoded.
            self.duplex.read_off = self.reading_done || self.serve_full() || self.held_back;
        }
        let busy = !self.inflight.is_empty();
        tokio::select! {
            () = self.duplex.ready() => {}
            Some(out) = self.inflight.next(), if busy => self.finished.push(out),
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.write_finished(ctx).await;
        if self.held_back && !self.reading_done && !self.serve_full() {
            // Handlers finished: decode the frames waiting in the buffer.
            if let Err(e) = self.decode_all(ctx).await {
                ctx.emit(FramedEvent::ReadError(e)).await;
                self.reading_done = true;
                self.duplex.close_when_empty = true;
            }
        }
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
        if self.serve.is_some() && self.done() {
            self.close(ctx).await;
        }
    }

    fn accepting(&self) -> bool {
        self.duplex.accepting_writes()
    }

    async fn on_stop(&mut self, ctx: &mut Ctx<'_, Self>) {
        // Stopping: new frames are refused at once.
        self.gate.close();
        if !self.duplex.is_closed() {
            // Drain: read no more, let the running handlers finish, write
            // their replies, flush (the stop timeout bounds all of it).
            self.reading_done = true;
            while let Some(out) = self.inflight.next().await {
                self.finished.push(out);
            }
            self.write_finished(ctx).await;
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
                match done {
                    Some(done) => {
                        let _ = done.send(Err(e));
                    }
                    // Nobody waits on it (`try_send`): the stream tells.
                    None => ctx.emit(FramedEvent::WriteError(e)).await,
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

/// Message: encode and queue a frame; replies once it is in the write
/// buffer (handled only while the buffer is below its high watermark).
#[derive(Debug)]
struct QueueFrame<O>(O);

impl<C, O> Handler<QueueFrame<O>> for Framed<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Reply = Result<()>;
    async fn handle(
        &mut self,
        QueueFrame(item): QueueFrame<O>,
        ctx: &mut Ctx<'_, Self>,
    ) -> Result<()> {
        queue_frame(&mut self.duplex, &mut self.codec, item)?;
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
        Ok(())
    }
}

/// A frame [`FramedRef::try_send`] could not queue, handed back with the
/// reason: an error of kind `Full` (the write buffer is over its high
/// watermark, or the mailbox in front of it is full) or `Closed` (the
/// stream closed or is stopping).
pub struct TrySendError<O> {
    frame: O,
    error: Error,
}

impl<O> TrySendError<O> {
    /// The frame that was not sent.
    pub fn frame(&self) -> &O {
        &self.frame
    }

    /// Takes the frame back.
    pub fn into_frame(self) -> O {
        self.frame
    }

    /// Why it was refused (op `try_send`).
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The frame and the reason.
    pub fn into_parts(self) -> (O, Error) {
        (self.frame, self.error)
    }

    /// Refused for want of room (the stream is still open): try later,
    /// or [`send`](FramedRef::send) to wait for room.
    pub fn is_full(&self) -> bool {
        self.error.kind() == ErrorKind::Full
    }
}

impl<O> fmt::Debug for TrySendError<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrySendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<O> fmt::Display for TrySendError<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<O> std::error::Error for TrySendError<O> {}

impl<O> From<TrySendError<O>> for Error {
    fn from(e: TrySendError<O>) -> Error {
        e.error
    }
}

/// Framed-stream operations on its handle.
///
/// Three ways to send a frame, by how long they wait: [`try_send`]
/// never waits (it fails at once, handing the frame back, while the write
/// buffer is over its high watermark); [`send`] waits for room in the
/// write buffer (the stream's write overflow policy: writers wait), then
/// resolves once the frame is queued; [`send_flushed`] also waits until
/// the frame is written. [`sink`] is a `futures::Sink` over the same
/// path.
///
/// [`try_send`]: FramedRef::try_send
/// [`send`]: FramedRef::send
/// [`send_flushed`]: FramedRef::send_flushed
/// [`sink`]: FramedRef::sink
pub trait FramedRef<O> {
    /// Encodes and queues `item`, waiting first while the write buffer is
    /// over its high watermark (down to the low one); resolves once the
    /// frame is in the write buffer, not when it is written (a slow peer
    /// holds up its own senders only while its buffer is full). Fails
    /// with op `encode` when the codec refuses the frame and op `send`
    /// when the stream is closed.
    ///
    /// ```
    /// use ioasync::{io::{Framed, FramedRef}, io::codec::LineCodec, Loop};
    /// use tokio::io::AsyncBufReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, theirs) = tokio::io::duplex(1024);
    /// let f = lp
    ///     .add(Framed::spec_io("out", ours, LineCodec::new()))
    ///     .await?;
    /// f.send("hello".to_string()).await?;
    /// let mut line = String::new();
    /// tokio::io::BufReader::new(theirs).read_line(&mut line).await.unwrap();
    /// assert_eq!(line, "hello\n");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for room, nothing is sent; once the stream has
    /// the frame it is encoded and written as if awaited.
    fn send(&self, item: O) -> impl Future<Output = Result<()>> + Send;

    /// Like [`send`](FramedRef::send), then waits until the frame is
    /// written (handed to the socket, or through a TLS stream's flush).
    ///
    /// ```
    /// use ioasync::{io::{Framed, FramedRef}, io::codec::LineCodec, Loop};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut theirs) = tokio::io::duplex(1024);
    /// let f = lp
    ///     .add(Framed::spec_io("out", ours, LineCodec::new()))
    ///     .await?;
    /// f.send_flushed("written".to_string()).await?;
    /// let mut got = [0u8; 8];
    /// theirs.read_exact(&mut got).await.unwrap();
    /// assert_eq!(&got, b"written\n");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`send`](FramedRef::send): dropping it only loses the news that
    /// the frame was written.
    fn send_flushed(&self, item: O) -> impl Future<Output = Result<()>> + Send;

    /// Queues `item` now, without waiting: fails at once, handing the
    /// frame back in the error, while the write buffer is over its high
    /// watermark (kind `Full`; also when the mailbox in front of the
    /// buffer is full) or once the stream is closed or stopping (kind
    /// `Closed`). For a broadcast where one slow peer must not hold up
    /// the others. A frame the codec then refuses is reported as a
    /// [`WriteError`](FramedEvent::WriteError) event (nobody waits on it).
    ///
    /// ```
    /// use ioasync::{io::{Framed, FramedRef, Limits}, io::codec::LineCodec, Loop};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// // A peer that never reads, and a tiny write buffer.
    /// let (ours, _theirs) = tokio::io::duplex(16);
    /// let limits = Limits { write_high: 64, write_low: 32, ..Limits::default() };
    /// let f = lp
    ///     .add(Framed::spec_io("out", ours, LineCodec::new()).limits(limits))
    ///     .await?;
    /// f.send("x".repeat(100)).await?; // over the high watermark now
    /// let refused = f.try_send("hello".to_string()).unwrap_err();
    /// assert!(refused.is_full());
    /// assert_eq!(refused.into_frame(), "hello");
    /// # Ok(()) }
    /// ```
    fn try_send(&self, item: O) -> std::result::Result<(), TrySendError<O>>;

    /// A `futures::Sink` of frames into this stream: `poll_ready` waits
    /// while the write buffer is over its high watermark, `start_send`
    /// queues, `poll_flush` resolves once every frame sent is written,
    /// `poll_close` flushes and then closes the stream once its queue is
    /// empty.
    ///
    /// ```
    /// use futures_util::{SinkExt, stream};
    /// use ioasync::{io::{Framed, FramedRef}, io::codec::LineCodec, Loop};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut theirs) = tokio::io::duplex(1024);
    /// let f = lp
    ///     .add(Framed::spec_io("out", ours, LineCodec::new()))
    ///     .await?;
    /// let mut sink = f.sink();
    /// let lines = ["a", "b", "c"].map(|l| Ok(l.to_string()));
    /// sink.send_all(&mut stream::iter(lines)).await?;
    /// sink.close().await?;
    /// let mut got = String::new();
    /// theirs.read_to_string(&mut got).await.unwrap();
    /// assert_eq!(got, "a\nb\nc\n");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// The sink's `poll_ready` only waits for room; a frame given to
    /// `start_send` is the stream's.
    fn sink(&self) -> FramedSink<O>;

    /// Closes once everything queued is written.
    ///
    /// # Cancel safety
    ///
    /// Once the stream has the request it closes as asked.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Framed, FramedRef, codec::LineCodec}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let lines = lp.add(Framed::spec("out", ours, LineCodec::new())).await?;
    /// lines.send("last".to_string()).await?;
    /// lines.close_when_empty().await?;
    /// let mut got = String::new();
    /// peer.read_to_string(&mut got).await.unwrap(); // to the end: it closed
    /// assert_eq!(got, "last\n");
    /// # Ok(()) }
    /// ```
    fn close_when_empty(&self) -> impl Future<Output = Result<()>> + Send;
}

impl<C, O> FramedRef<O> for NotifierRef<Framed<C, O>>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    async fn send(&self, item: O) -> Result<()> {
        // Waits in the mailbox while the buffer is full (the stream takes
        // no message then): the stream's `Wait` policy.
        self.ask(QueueFrame(item)).await
    }

    async fn send_flushed(&self, item: O) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tell(SendFrame(item, Some(tx))).await?;
        rx.await
            .unwrap_or_else(|_| Err(Error::closed("send", "the stream stopped")))
    }

    fn try_send(&self, item: O) -> std::result::Result<(), TrySendError<O>> {
        let gate = self.handle_state(SendGate::default);
        let refuse = |frame, kind, why: String| TrySendError {
            frame,
            error: Error::new("try_send", kind, why),
        };
        if gate.is_closed() {
            let why = format!("{} is closed", self.path());
            return Err(refuse(item, ErrorKind::Closed, why));
        }
        if gate.is_full() {
            let high = gate.high.load(Ordering::Relaxed);
            let why = format!(
                "the write buffer of {} is over its high watermark ({high} bytes)",
                self.path()
            );
            return Err(refuse(item, ErrorKind::Full, why));
        }
        match self.actor_ref().tell(SendFrame(item, None)).try_send() {
            Ok(()) => Ok(()),
            Err(e) => {
                let full = matches!(e, kameo::error::SendError::MailboxFull(_));
                let Some(SendFrame(item, _)) = e.msg() else {
                    // kameo hands a refused message back; this is not reached.
                    return Ok(());
                };
                Err(if full {
                    let why = format!("the mailbox of {} is full", self.path());
                    refuse(item, ErrorKind::Full, why)
                } else {
                    let why = format!("{} is not running", self.path());
                    refuse(item, ErrorKind::Closed, why)
                })
            }
        }
    }

    fn sink(&self) -> FramedSink<O> {
        FramedSink {
            target: Arc::new(self.clone()),
            gate: self.handle_state(SendGate::default),
            sending: None,
            room: None,
            last: None,
            closing: None,
        }
    }

    async fn close_when_empty(&self) -> Result<()> {
        self.tell(CloseWhenEmpty).await
    }
}

/// Where a [`FramedSink`] sends: a framed stream of any codec.
trait FrameTarget<O>: Send + Sync {
    fn send(&self, item: O, done: oneshot::Sender<Result<()>>) -> BoxFuture<'static, Result<()>>;
    fn close(&self) -> BoxFuture<'static, Result<()>>;
}

impl<C, O> FrameTarget<O> for NotifierRef<Framed<C, O>>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    fn send(&self, item: O, done: oneshot::Sender<Result<()>>) -> BoxFuture<'static, Result<()>> {
        let me = self.clone();
        Box::pin(async move { me.tell(SendFrame(item, Some(done))).await })
    }

    fn close(&self) -> BoxFuture<'static, Result<()>> {
        let me = self.clone();
        Box::pin(async move { me.tell(CloseWhenEmpty).await })
    }
}

/// A `futures::Sink` of frames into a framed stream, from
/// [`FramedRef::sink`]. Backpressure: `poll_ready` is pending while the
/// stream's write buffer is over its high watermark; at most one frame is
/// in flight to the stream's mailbox. Errors are the stream's (op `send`,
/// `encode`, `write`).
pub struct FramedSink<O> {
    target: Arc<dyn FrameTarget<O>>,
    gate: Arc<SendGate>,
    /// The frame being handed to the stream's mailbox.
    sending: Option<BoxFuture<'static, Result<()>>>,
    /// Waiting for room in the write buffer.
    room: Option<BoxFuture<'static, ()>>,
    /// Resolves once the last frame sent is written (writes are in order:
    /// so are all before it).
    last: Option<oneshot::Receiver<Result<()>>>,
    closing: Option<BoxFuture<'static, Result<()>>>,
}

impl<O> fmt::Debug for FramedSink<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedSink")
            .field("sending", &self.sending.is_some())
            .field("unflushed", &self.last.is_some())
            .finish()
    }
}

impl<O> FramedSink<O> {
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(f) = self.sending.as_mut() {
            let res = std::task::ready!(f.as_mut().poll(cx));
            self.sending = None;
            res?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        std::task::ready!(self.poll_sent(cx))?;
        if let Some(rx) = self.last.as_mut() {
            let res = std::task::ready!(Pin::new(rx).poll(cx));
            self.last = None;
            res.unwrap_or_else(|_| Err(Error::closed("send", "the stream stopped")))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<O: Send + 'static> futures_util::Sink<O> for FramedSink<O> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_sent(cx))?;
        if this.gate.is_full() && !this.gate.is_closed() {
            let gate = this.gate.clone();
            let room = this
                .room
                .get_or_insert_with(|| Box::pin(async move { gate.room().await }));
            std::task::ready!(room.as_mut().poll(cx));
        }
        this.room = None;
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: O) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.sending = Some(self.target.send(item, tx));
        self.last = Some(rx);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_written(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_written(cx))?;
        let target = this.target.clone();
        let closing = this.closing.get_or_insert_with(|| target.close());
        let res = std::task::ready!(closing.as_mut().poll(cx));
        this.closing = None;
        Poll::Ready(res)
    }
}
