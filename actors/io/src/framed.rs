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
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use futures_util::{StreamExt, future::BoxFuture, stream::FuturesOrdered};

use bytes::{Bytes, BytesMut};
use ioasync_core::{Ctx, Error, ErrorKind, NotifierRef, Result};
use tokio::sync::oneshot;
use tokio_util::codec::{Decoder, Encoder};

use crate::{
    byte_stream::{
        ByteStream, ByteStreamArgs, ByteStreamSpec, CloseWhenEmpty, Outgoing, ProtocolImpl,
        StreamEvent, Write,
    },
    connection::Connection,
    duplex::{Duplex, Source},
    gate::SendGate,
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

/// Something that happened to a framed stream: a [`StreamEvent`] whose
/// reads are decoded frames.
pub type FramedEvent<T> = StreamEvent<T>;

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
        self.duplex.close_when_empty();
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
/// Encodes `item` at the end of `buf`: an error of op `encode` when the
/// codec refuses it.
fn encode_into<C, O>(codec: &mut C, item: O, buf: &mut BytesMut) -> Result<()>
where
    C: Encoder<O>,
    C::Error: fmt::Display,
{
    codec
        .encode(item, buf)
        .map_err(|e| Error::new("encode", ErrorKind::InvalidInput, e.to_string()))
}

fn queue_frame<C, O>(duplex: &mut Duplex, codec: &mut C, item: O) -> Result<()>
where
    C: Encoder<O>,
    C::Error: fmt::Display,
{
    if duplex.append_with(|buf| encode_into(codec, item, buf))? {
        Ok(())
    } else {
        Err(Error::closed("send", "the stream is closed for writing"))
    }
}

type ServeFn<C, O> = Box<dyn FnMut(<C as Decoder>::Item) -> BoxFuture<'static, Option<O>> + Send>;

type OnFrame<C, O> = Box<dyn FnMut(&mut FramedIo<'_, C, O>, <C as Decoder>::Item) + Send>;

type OnDecodeError<O> = Box<dyn FnMut(&Error) -> Option<O> + Send>;

/// `serve` mode: the handler, its bound, the handlers running and the
/// replies that finished (written in frame order).
struct Serving<C: Decoder, O> {
    handler: ServeFn<C, O>,
    max: usize,
    inflight: FuturesOrdered<BoxFuture<'static, Option<O>>>,
    finished: Vec<Option<O>>,
}

impl<C: Decoder, O> Serving<C, O> {
    fn full(&self) -> bool {
        self.inflight.len() >= self.max
    }
}

/// The protocol of a [`Framed`]: input decoded by the codec `C` into
/// frames for `on_frame`, a `serve` handler or subscribers
/// ([`StreamEvent::Read`]); typed writes of `O` encoded by it.
pub struct Frames<C: Decoder, O> {
    codec: C,
    on_frame: Option<OnFrame<C, O>>,
    serve: Option<Box<Serving<C, O>>>,
    on_decode_error: Option<OnDecodeError<O>>,
    /// Decoding stopped at `max_in_flight`: frames may wait in the buffer.
    held_back: bool,
    /// Consecutive decode errors that consumed nothing.
    stuck_errors: u8,
}

impl<C: Decoder, O> fmt::Debug for Frames<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frames")
            .field("on_frame", &self.on_frame.is_some())
            .field("serve", &self.serve.as_ref().map(|s| s.max))
            .finish_non_exhaustive()
    }
}

impl<C, O> Frames<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    /// Whether `serve` has all the frames it may hold.
    fn serve_full(&self) -> bool {
        self.serve.as_ref().is_some_and(|s| s.full())
    }

    /// Hands one decoded frame on.
    async fn frame(s: &mut ByteStream<Self>, ctx: &mut Ctx<'_, ByteStream<Self>>, item: C::Item) {
        let me = &mut s.proto;
        if let Some(serve) = me.serve.as_mut() {
            serve.inflight.push_back((serve.handler)(item));
            return;
        }
        match me.on_frame.as_mut() {
            Some(f) => {
                let mut io = FramedIo {
                    duplex: &mut s.duplex,
                    codec: &mut me.codec,
                    _o: PhantomData,
                };
                f(&mut io, item);
            }
            None => ctx.emit(StreamEvent::Read(item)).await,
        }
    }

    /// Decodes the whole frames buffered (and the last one at EOF), up to
    /// what `serve` may hold. A refused frame is an event (and, in `serve`
    /// mode, the `on_decode_error` reply in its place); an error the codec
    /// cannot get past (twice in a row with nothing consumed) is returned.
    async fn decode_all(
        s: &mut ByteStream<Self>,
        ctx: &mut Ctx<'_, ByteStream<Self>>,
    ) -> Result<()> {
        let eof = s.duplex.read_eof();
        s.proto.held_back = false;
        loop {
            if s.proto.serve_full() {
                s.proto.held_back = s.duplex.buffered() > 0;
                break;
            }
            let before = s.duplex.buffered();
            let mut buf = s.duplex.take_input();
            let res = if eof {
                s.proto.codec.decode_eof(&mut buf)
            } else {
                s.proto.codec.decode(&mut buf)
            }
            .map_err(|e| Error::new("decode", ErrorKind::InvalidInput, e.to_string()));
            s.duplex.put_input(buf);
            match res {
                Ok(Some(item)) => {
                    s.proto.stuck_errors = 0;
                    Self::frame(s, ctx, item).await;
                }
                Ok(None) => {
                    if s.duplex.buffered() < before {
                        s.proto.stuck_errors = 0; // it got past the error
                    }
                    break;
                }
                Err(e) => {
                    let me = &mut s.proto;
                    let consumed = s.duplex.buffered() < before;
                    me.stuck_errors = if consumed { 0 } else { me.stuck_errors + 1 };
                    if me.stuck_errors >= 2 || (eof && !consumed && me.stuck_errors >= 1) {
                        return Err(e);
                    }
                    if let (Some(serve), Some(f)) = (me.serve.as_mut(), me.on_decode_error.as_mut())
                    {
                        let reply = f(&e);
                        serve
                            .inflight
                            .push_back(Box::pin(std::future::ready(reply)));
                    }
                    ctx.emit(StreamEvent::DecodeError(e)).await;
                }
            }
        }
        Ok(())
    }

    /// Encodes the replies of finished handlers, in frame order.
    async fn write_finished(s: &mut ByteStream<Self>, ctx: &mut Ctx<'_, ByteStream<Self>>) {
        let Some(serve) = s.proto.serve.as_mut() else {
            return;
        };
        if serve.finished.is_empty() {
            return;
        }
        let finished = std::mem::take(&mut serve.finished);
        for out in finished.into_iter().flatten() {
            if let Err(e) = s.proto.queue(&mut s.duplex, out) {
                ctx.emit(StreamEvent::WriteError(e)).await;
            }
        }
    }
}

impl<C, O> ProtocolImpl for Frames<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Item = C::Item;
    type Out = O;
    const KIND: &'static str = "framed";
    const GATED: bool = true;

    async fn consume(
        s: &mut ByteStream<Self>,
        ctx: &mut Ctx<'_, ByteStream<Self>>,
    ) -> Result<bool> {
        Self::decode_all(s, ctx).await.map(|()| false)
    }

    fn queue(&mut self, duplex: &mut Duplex, item: O) -> Result<()> {
        queue_frame(duplex, &mut self.codec, item)
    }

    fn to_bytes(&mut self, item: O) -> Result<Bytes> {
        let mut buf = BytesMut::new();
        encode_into(&mut self.codec, item, &mut buf)?;
        Ok(buf.freeze())
    }

    fn busy(s: &ByteStream<Self>) -> bool {
        s.proto
            .serve
            .as_ref()
            .is_some_and(|v| !v.inflight.is_empty() || !v.finished.is_empty())
            || (!s.reading_done && s.proto.held_back)
    }

    async fn ready(s: &mut ByteStream<Self>) {
        let Some(full) = s.proto.serve.as_ref().map(|v| v.full()) else {
            return s.ready_source().await;
        };
        // Backpressure: no more bytes while the handlers are all busy or
        // frames already read wait to be decoded.
        s.duplex.set_read_held(full || s.proto.held_back);
        let (mut source, proto) = s.split_source();
        match proto.serve.as_mut() {
            Some(serve) if !serve.inflight.is_empty() => tokio::select! {
                () = source.ready() => {}
                Some(out) = serve.inflight.next() => serve.finished.push(out),
            },
            _ => source.ready().await,
        }
    }

    async fn on_ready(s: &mut ByteStream<Self>, ctx: &mut Ctx<'_, ByteStream<Self>>) {
        Self::write_finished(s, ctx).await;
        if s.proto.held_back && !s.reading_done && !s.proto.serve_full() {
            // Handlers finished: decode the frames waiting in the buffer.
            // Through the core: reads and pushed readers come first (the
            // codec, if it runs, says again what it holds back).
            s.proto.held_back = false;
            s.deliver_or_stop(ctx).await;
        }
    }

    async fn finish(s: &mut ByteStream<Self>, ctx: &mut Ctx<'_, ByteStream<Self>>) {
        // Drain: read no more, let the running handlers finish, write
        // their replies (the stop timeout bounds all of it).
        if let Some(serve) = s.proto.serve.as_mut() {
            while let Some(out) = serve.inflight.next().await {
                serve.finished.push(out);
            }
        }
        Self::write_finished(s, ctx).await;
    }
}

/// How to start a [`Framed`].
pub type FramedArgs<C, O> = ByteStreamArgs<Frames<C, O>>;

/// A framed stream under construction; set options, then add it.
pub type FramedSpec<C, O> = ByteStreamSpec<Frames<C, O>>;

impl<C, O> FramedSpec<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    /// Called inside the stream for each decoded frame; may send replies.
    pub fn on_frame(
        mut self,
        f: impl FnMut(&mut FramedIo<'_, C, O>, C::Item) + Send + 'static,
    ) -> Self {
        self.args.proto.on_frame = Some(Box::new(f));
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
        self.args.proto.serve = Some(Box::new(Serving {
            handler: Box::new(move |item| Box::pin(f(item))),
            max: max_in_flight.max(1),
            inflight: FuturesOrdered::new(),
            finished: Vec::new(),
        }));
        self
    }

    /// In `serve` mode, the reply written in place of a frame the codec
    /// refused (`None`: no reply). Without it a refused frame gets no
    /// reply; either way the stream emits
    /// [`DecodeError`](StreamEvent::DecodeError) and goes on.
    pub fn on_decode_error(mut self, f: impl FnMut(&Error) -> Option<O> + Send + 'static) -> Self {
        self.args.proto.on_decode_error = Some(Box::new(f));
        self
    }
}

/// A byte stream decoded into frames of `C::Item` and encoding `O`
/// (IO::Async's Protocol::Stream): a [`ByteStream`] speaking [`Frames`].
/// Everything a [`Stream`](crate::Stream) does — reads, pushed readers,
/// raw writes, watermarks, half-close, the drain — it does too, through
/// [`StreamRef`](crate::StreamRef); [`FramedRef`] adds typed frames.
pub type Framed<C, O> = ByteStream<Frames<C, O>>;

impl<C, O> ByteStream<Frames<C, O>>
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
    ///
    /// Length-delimited frames, the types following from the codec (in:
    /// `BytesMut`, out: `Bytes`), no turbofish:
    ///
    /// ```
    /// use bytes::Bytes;
    /// use ioasync::{Loop, io::{Framed, FramedRef, codec::LengthDelimitedCodec}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut theirs) = tokio::io::duplex(1024);
    /// let framed = lp
    ///     .add(Framed::spec_io("ld", ours, LengthDelimitedCodec::new()))
    ///     .await?;
    /// framed.send(Bytes::from_static(b"hi")).await?;
    /// let mut got = [0u8; 6];
    /// theirs.read_exact(&mut got).await.unwrap();
    /// assert_eq!(got, [0, 0, 0, 2, b'h', b'i']); // a 4-byte length, then the frame
    /// # Ok(()) }
    /// ```
    pub fn spec_io(name: impl Into<String>, io: impl crate::AsyncIo, codec: C) -> FramedSpec<C, O> {
        Self::spec(name, Connection::from_io(io), codec)
    }

    /// A framed stream reading `read` and writing `write` (either may be
    /// absent): pipe ends, a child's stdout, a tty, stdio, as
    /// [`Stream::from_fds`](crate::Stream::from_fds).
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use ioasync::{io::{Framed, StreamEvent}, Loop, io::codec::LineCodec, notifier::{Spec, Subscription}};
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
    ///         StreamEvent::Read(line) => got.push(line),
    ///         StreamEvent::ReadEof => break,
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
        let proto = Frames {
            codec,
            on_frame: None,
            serve: None,
            on_decode_error: None,
            held_back: false,
            stuck_errors: 0,
        };
        FramedSpec::new(name, source, proto)
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
    /// Under the `Fail` and `DropNewest` write policies the stream refuses
    /// a frame that would *cross* the high watermark, which `try_send`
    /// cannot know before the frame is encoded: such a frame, taken by
    /// `try_send` and then refused, is also a `WriteError` event (kind
    /// `Full`). No frame is lost unheard: each is handed back, written,
    /// or reported.
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
}

impl<C, O> FramedRef<O> for NotifierRef<Framed<C, O>>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    async fn send(&self, item: O) -> Result<()> {
        // Waits in the mailbox while the buffer is full (the stream takes
        // no message then): the stream's `Wait` policy.
        self.ask(Write::item(item, None, false)).await?.0
    }

    async fn send_flushed(&self, item: O) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tell(Write::item(item, Some(tx), false)).await?;
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
        match self
            .actor_ref()
            .tell(Write::item(item, None, true))
            .try_send()
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let full = matches!(e, kameo::error::SendError::MailboxFull(_));
                let Some(Write {
                    what: Outgoing::Item(item),
                    ..
                }) = e.msg()
                else {
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
        Box::pin(async move { me.tell(Write::item(item, Some(done), false)).await })
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
