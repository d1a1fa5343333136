//! [`ByteStream`]: the one byte-stream notifier behind [`Stream`](crate::Stream)
//! and [`Framed`](crate::Framed), in the shape of tokio-util's `FramedImpl`:
//! one generic core, a [`Protocol`] saying what becomes of the input and
//! how typed writes are encoded.
//!
//! The core owns everything the two have in common — the OS source and
//! its buffers ([`Duplex`]), future-returning reads, pushed readers,
//! writes and their overflow policy, producers, half-close, the drain on
//! stop, closing, and every event of [`StreamEvent`]. A protocol adds only
//! its own reader: [`RawBytes`](crate::RawBytes) hands the buffer to an
//! `on_read` closure (or emits it), [`Frames`](crate::Frames) decodes it
//! with a codec into frames for `on_frame`, a `serve` handler or
//! subscribers.
//!
//! Input goes, in this order: to future-returning reads
//! ([`StreamRef::read`](crate::StreamRef::read)), to pushed readers
//! ([`StreamRef::push_on_read`](crate::StreamRef::push_on_read)), then to
//! the protocol's reader. So a framed stream can read a raw header before
//! its codec sees the rest.

use std::{collections::VecDeque, fmt, sync::Arc};

use bytes::{Bytes, BytesMut};
use ioasync_core::{
    Ctx, Emits, Error, ErrorKind, Handler, IntoSpec, Notifier, NotifierRef, Once, Overflow,
    Restart, Result, Spec,
};
use tokio::sync::oneshot;

use crate::{
    addr::SockAddr,
    duplex::{Duplex, Limits, Progress, Source},
    gate::SendGate,
    lazy::LazyDeque,
};

/// What a reader pushed with [`StreamIo::push_on_read`] or
/// [`StreamRef::push_on_read`](crate::StreamRef::push_on_read) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushedRead {
    /// Call me again now: I may be able to consume more of the buffer.
    Again,
    /// Wait for more data; I stay in front of the stream's `on_read`.
    Wait,
    /// I am done (IO::Async's `undef`): remove me; the next pushed reader,
    /// or the stream's own `on_read`, takes what is left at once.
    Done,
}

/// What an `on_read` closure may do to its own stream.
pub struct StreamIo<'a> {
    duplex: &'a mut Duplex,
    /// Readers pushed during this call, queued after it returns.
    pushed: &'a mut Vec<PushedFn>,
}

impl<'a> StreamIo<'a> {
    pub(crate) fn new(duplex: &'a mut Duplex, pushed: &'a mut Vec<PushedFn>) -> Self {
        StreamIo { duplex, pushed }
    }

    /// Pushes a temporary reader (IO::Async's `push_on_read`): pushed
    /// readers take the stream's input before its `on_read`, first pushed
    /// first, each until it returns [`PushedRead::Done`].
    pub fn push_on_read(
        &mut self,
        f: impl FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> PushedRead + Send + 'static,
    ) {
        self.pushed.push(Box::new(f));
    }

    /// Queues bytes for writing, without copying them.
    pub fn write(&mut self, data: impl Into<Bytes>) {
        self.duplex.write(data.into(), None);
    }

    /// Queues a copy of `data` for writing. Small writes are coalesced in
    /// a reused buffer: the cheapest way to answer small requests.
    pub fn write_slice(&mut self, data: &[u8]) {
        self.duplex.write_slice(data);
    }

    /// Closes once everything queued is written.
    pub fn close_when_empty(&mut self) {
        self.duplex.close_when_empty();
    }

    /// Shuts the write side down once everything queued is written
    /// (half-close); reading goes on.
    pub fn shutdown_write(&mut self) {
        self.duplex.shutdown_when_empty();
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.duplex.queued()
    }
}

impl fmt::Debug for StreamIo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamIo")
            .field("queued", &self.duplex.queued())
            .finish()
    }
}

/// Completion of one write: resolves once its bytes are written.
pub(crate) type Done = Option<oneshot::Sender<Result<()>>>;

/// A pushed reader (IO::Async's `push_on_read`).
pub(crate) type PushedFn =
    Box<dyn FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> PushedRead + Send>;

/// Chunks a producer yields (see [`StreamRef::write_from`](crate::StreamRef::write_from)).
pub(crate) type Chunks = std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>>;

/// What a [`ByteStream`] makes of its input and how it encodes typed
/// writes: [`RawBytes`](crate::RawBytes) (a [`Stream`](crate::Stream)) or
/// [`Frames`](crate::Frames) (a [`Framed`](crate::Framed)). Sealed: the
/// two are all there is; a new wire format is a codec, not a protocol.
#[allow(private_bounds)]
pub trait Protocol: ProtocolImpl {}

/// The hooks a protocol gives the core (private: see [`Protocol`]).
pub(crate) trait ProtocolImpl: Sized + Send + 'static {
    /// What reads give subscribers: bytes, or decoded frames.
    type Item: Clone + Send + 'static;
    /// What typed writes take.
    type Out: Send + 'static;
    /// The kind in tree snapshots and traces.
    const KIND: &'static str;
    /// Whether handles see the write buffer's state (`try_send`).
    const GATED: bool;

    /// Takes what is buffered after reads and pushed readers had theirs
    /// (and, at EOF, the end). True when the reader pushed new readers:
    /// the core runs them on what is left. An error is one the reader
    /// cannot get past: the stream reads no more and closes once what is
    /// due is written.
    fn consume(
        s: &mut ByteStream<Self>,
        ctx: &mut Ctx<'_, ByteStream<Self>>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Queues `item` in the write buffer (a codec encodes straight into
    /// it): an error of op `encode` when it cannot be encoded, of op
    /// `send` when the stream is closed for writing.
    fn queue(&mut self, duplex: &mut Duplex, item: Self::Out) -> Result<()>;

    /// `item` as bytes, for writes that wait (held back, behind a
    /// producer) or that an overflow policy must measure first.
    fn to_bytes(&mut self, item: Self::Out) -> Result<Bytes>;

    /// Work of the reader's own that must end before the stream closes
    /// (bytes nobody consumed, handlers running).
    fn busy(_s: &ByteStream<Self>) -> bool {
        false
    }

    /// Whether input buffered before anybody subscribed goes to a new
    /// subscriber at once.
    fn holds_for_subscribers(_s: &ByteStream<Self>) -> bool {
        false
    }

    /// Waits for the source (and producers), and for the reader's own
    /// work. Cancel safe.
    fn ready(s: &mut ByteStream<Self>) -> impl Future<Output = ()> + Send {
        s.ready_source()
    }

    /// Runs before the source's progress on each wake-up.
    fn on_ready(
        _s: &mut ByteStream<Self>,
        _ctx: &mut Ctx<'_, ByteStream<Self>>,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// A graceful stop: read no more, finish the reader's own work and
    /// queue what it owes (bounded by the stop timeout).
    fn finish(
        _s: &mut ByteStream<Self>,
        _ctx: &mut Ctx<'_, ByteStream<Self>>,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

impl<P: ProtocolImpl> Protocol for P {}

/// Something that happened to a byte stream. `T` is what reads give:
/// [`Bytes`] for a [`Stream`](crate::Stream), a decoded frame for a
/// [`Framed`](crate::Framed) (there it is [`FramedEvent`](crate::FramedEvent)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamEvent<T = Bytes> {
    /// What was read — bytes, or a decoded frame — when nothing else
    /// takes it (no `on_read`, `on_frame` or `serve`).
    Read(T),
    /// The peer closed its write side.
    ReadEof,
    /// Our write side was shut down.
    WriteEof,
    /// The codec refused one frame (op `decode`: too long, not UTF-8...).
    /// The connection goes on with the next frame: replies already due
    /// are written, and in `serve` mode the frame's reply is what the
    /// `on_decode_error` hook made of the error, in its place. A raw
    /// stream never emits it.
    DecodeError(Error),
    /// Reading failed (op `read`, errno kept), or the codec cannot go on
    /// after an error; the stream closes once what is due is written.
    ReadError(Error),
    /// Writing failed (op `write`, errno kept), or a frame nobody waits on
    /// (`try_send`) could not be encoded (op `encode`) or was refused by
    /// the write policy (kind `Full`).
    WriteError(Error),
    /// The write queue became empty (IO::Async's `on_outgoing_empty`).
    Flushed,
    /// A write would block: the peer or the kernel buffer is full
    /// (IO::Async's `on_writeable_stop`). Once per edge.
    WriteableStop,
    /// A write went through again after [`WriteableStop`](StreamEvent::WriteableStop)
    /// (IO::Async's `on_writeable_start`). A stream starts out writeable,
    /// with no event.
    WriteableStart,
    /// Unconsumed input reached the read high watermark: reading pauses
    /// (IO::Async's `on_read_high_watermark`); bytes buffered.
    ReadHighWatermark(usize),
    /// Unconsumed input fell to the read low watermark: reading resumes;
    /// bytes buffered.
    ReadLowWatermark(usize),
    /// The stream closed; its fds are closed.
    Closed,
}

/// How to start a [`ByteStream`]: its source, options and protocol. Built
/// by the stream types' `spec` functions.
pub struct ByteStreamArgs<P> {
    pub(crate) source: Source,
    pub(crate) limits: Limits,
    pub(crate) close_on_read_eof: bool,
    pub(crate) write_overflow: Overflow,
    pub(crate) proto: P,
}

impl<P> ByteStreamArgs<P> {
    pub(crate) fn new(source: Source, proto: P) -> Self {
        ByteStreamArgs {
            source,
            limits: Limits::default(),
            close_on_read_eof: true,
            write_overflow: Overflow::Wait,
            proto,
        }
    }
}

impl<P> fmt::Debug for ByteStreamArgs<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteStreamArgs")
            .field("limits", &self.limits)
            .field("close_on_read_eof", &self.close_on_read_eof)
            .field("write_overflow", &self.write_overflow)
            .finish_non_exhaustive()
    }
}

/// A byte stream under construction ([`StreamSpec`](crate::StreamSpec),
/// [`FramedSpec`](crate::FramedSpec)); set options, then add it. The
/// supervision options (`restart`, `stop_timeout`, `mailbox`, `subscribe`)
/// come from [`IntoSpec`].
#[must_use = "a stream spec does nothing until it is added"]
pub struct ByteStreamSpec<P> {
    pub(crate) name: String,
    pub(crate) args: ByteStreamArgs<P>,
}

impl<P> fmt::Debug for ByteStreamSpec<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteStreamSpec")
            .field("name", &self.name)
            .field("args", &self.args)
            .finish()
    }
}

impl<P: Protocol> ByteStreamSpec<P> {
    pub(crate) fn new(name: impl Into<String>, source: Source, proto: P) -> Self {
        ByteStreamSpec {
            name: name.into(),
            args: ByteStreamArgs::new(source, proto),
        }
    }

    /// Buffer limits (watermarks).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.args.limits = limits;
        self
    }

    /// Close when the peer closes its write side (default true); false
    /// keeps writing after a read EOF (half-close).
    pub fn close_on_read_eof(mut self, on: bool) -> Self {
        self.args.close_on_read_eof = on;
        self
    }

    /// What a write that meets the write buffer at its high watermark
    /// does (default `Wait`: writers wait, the mailbox holding them).
    /// `Fail`: the write is refused, its future failing with a `Full`
    /// error naming the buffer and its bound; `DropNewest`: the write is
    /// dropped (its future fails saying so). `DropOldest`: the newest write
    /// is always taken, and the oldest *whole* writes not yet begun are
    /// dropped (their futures fail saying so) to keep what is buffered
    /// within the high watermark; a write already handed to the socket
    /// buffer is never cut.
    pub fn write_overflow(mut self, overflow: Overflow) -> Self {
        self.args.write_overflow = overflow;
        self
    }
}

impl<P: Protocol> IntoSpec for ByteStreamSpec<P> {
    type Notifier = ByteStream<P>;
}

impl<P: Protocol> From<ByteStreamSpec<P>> for Spec<ByteStream<P>> {
    fn from(s: ByteStreamSpec<P>) -> Self {
        // A stream's connection cannot be made again: it starts once and is
        // temporary; a restart attempt fails with a clear error.
        Spec::once(s.name, s.args).restart(Restart::Temporary)
    }
}

impl<P: Protocol> From<ByteStreamSpec<P>> for ioasync_core::AnySpec {
    fn from(s: ByteStreamSpec<P>) -> Self {
        Spec::<ByteStream<P>>::from(s).into()
    }
}

/// A buffered byte stream over a socket, a pair of fds or any
/// [`AsyncIo`](crate::AsyncIo), speaking protocol `P`. Use it through its
/// two names: [`Stream`](crate::Stream) (bytes) and
/// [`Framed`](crate::Framed) (frames through a codec); both are this one
/// implementation, with one set of messages, events and handle methods
/// ([`StreamRef`](crate::StreamRef) on both, [`FramedRef`](crate::FramedRef)
/// for typed frames).
///
/// A framed stream reading a raw header through a pushed reader before
/// its codec takes the lines that follow:
///
/// ```
/// use futures_util::StreamExt;
/// use ioasync::{Loop, io::{Framed, FramedEvent, PushedRead, StreamRef, codec::LineCodec}};
/// use ioasync::notifier::{Spec, Subscription};
/// use tokio::io::AsyncWriteExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
/// let (sub, mut events) = Subscription::stream(16);
/// let lines = lp
///     .add(Spec::from(Framed::spec("lines", ours, LineCodec::new())).subscribe(sub))
///     .await?;
/// let (tx, header) = tokio::sync::oneshot::channel();
/// let mut tx = Some(tx);
/// lines
///     .push_on_read(move |_io, buf, _eof| {
///         if buf.len() < 4 {
///             return PushedRead::Wait;
///         }
///         let _ = tx.take().unwrap().send(buf.split_to(4).freeze());
///         PushedRead::Done // the codec takes the rest
///     })
///     .await?;
/// peer.write_all(b"v1.0one\ntwo\n").await.unwrap();
/// assert_eq!(&header.await.unwrap()[..], b"v1.0");
/// let mut got = Vec::new();
/// while got.len() < 2 {
///     if let Some(FramedEvent::Read(line)) = events.next().await {
///         got.push(line);
///     }
/// }
/// assert_eq!(got, ["one", "two"]);
/// # Ok(()) }
/// ```
pub struct ByteStream<P: Protocol> {
    pub(crate) duplex: Duplex,
    pub(crate) proto: P,
    /// Future-returning reads, served first, in order.
    reads: LazyDeque<PendingRead>,
    /// Readers pushed in front of the protocol's reader, first pushed
    /// first (allocated on first use; boxed so an idle stream carries one
    /// pointer, not a deque).
    #[allow(clippy::box_collection)]
    pub(crate) pushed: Option<Box<VecDeque<PushedFn>>>,
    /// The current reader has been called with `eof = true`.
    pub(crate) eof_delivered: bool,
    close_on_read_eof: bool,
    write_overflow: Overflow,
    /// Whole writes held back under `Overflow::DropOldest` (allocated on
    /// first use).
    held: Option<Box<Held>>,
    /// Producers being pulled and the writes queued behind them
    /// (allocated on first use).
    producing: Option<Box<Producing>>,
    /// No more input will be read or handed on (the reader cannot go on,
    /// or the stream is stopping).
    pub(crate) reading_done: bool,
    /// The error the reader could not get past (a fatal decode error).
    /// Boxed: an error is ~70 bytes, and nearly every stream never has one.
    read_failed: Option<Box<Error>>,
    /// What handles see of the write buffer (`try_send`), for protocols
    /// that offer it.
    gate: Option<Arc<SendGate>>,
}

/// IO::Async's `write(CODE)` / `write(Future)`: producers pulled as the
/// write buffer drains, and the writes that came after them, in order.
#[derive(Default)]
struct Producing {
    queue: VecDeque<Pending>,
    /// Bytes of the plain writes waiting behind a producer.
    bytes: usize,
    /// A `shutdown_write` asked for while producing: done after.
    shutdown_after: bool,
}

enum Pending {
    From(Chunks, Done),
    Write(Bytes, Done),
}

/// What waiting on a producer gave.
enum Pulled {
    Chunk(Bytes),
    End,
    Source,
}

/// Writes held back under `Overflow::DropOldest` while the write buffer
/// is at its high watermark: whole writes, not yet begun, so dropping the
/// oldest never cuts one.
#[derive(Default)]
struct Held {
    writes: VecDeque<(Bytes, Done)>,
    bytes: usize,
}

/// How a stream ended, shared with its handles: a read made after the
/// stream stopped gets the end of stream (after a clean EOF) or the error
/// that ended it.
#[derive(Default)]
pub(crate) struct StreamEnd(std::sync::Mutex<Option<Result<()>>>);

impl StreamEnd {
    pub(crate) fn of<P: Protocol>(stream: &NotifierRef<ByteStream<P>>) -> Arc<StreamEnd> {
        stream.handle_state(StreamEnd::default)
    }

    fn set(&self, how: Result<()>) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(how);
        }
    }

    pub(crate) fn get(&self) -> Option<Result<()>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The answer to a read made after the stream ended.
    pub(crate) fn read_answer(&self, fallback: Error) -> ReadResult {
        match self.get() {
            Some(how) => end_answer(&how),
            None => Err(fallback),
        }
    }
}

/// What a future-returning read waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFor {
    /// At most this many bytes: whatever is there, once something is.
    AtMost(usize),
    /// Exactly this many bytes (fewer only at EOF).
    Exactly(usize),
    /// Up to and including this delimiter (or what is left at EOF).
    Until(Vec<u8>),
    /// Everything until EOF.
    Eof,
}

/// The result of a future-returning read: the bytes, and whether EOF was
/// reached. At a clean end of stream — the peer closed and every byte
/// before was read — a read returns `Ok` with no bytes and `true`, also
/// after the stream has stopped; a read the stream could not complete
/// fails with the error that ended it (a read error keeps its errno).
pub type ReadResult = Result<(Bytes, bool)>;

/// What a read gets once the stream has ended `how`: the end of stream
/// after a clean end, or the error that ended it.
fn end_answer(how: &Result<()>) -> ReadResult {
    match how {
        Ok(()) => Ok((Bytes::new(), true)),
        Err(e) => Err(e.clone()),
    }
}

/// One turn of IO::Async's reader contract for one reader over `buf`: it
/// is called again while it asks to and consumes, and once with `eof` at
/// the end of input. Returns its last answer — `Again` only when it
/// pushed readers (`staged`) and may be called again after them; an
/// `Again` that consumed nothing is a `Wait`.
pub(crate) fn drive_reader(
    duplex: &mut Duplex,
    buf: &mut BytesMut,
    eof: bool,
    eof_delivered: &mut bool,
    staged: &mut Vec<PushedFn>,
    f: &mut (impl FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> PushedRead + ?Sized),
) -> PushedRead {
    loop {
        let eof_now = eof && !*eof_delivered;
        if buf.is_empty() && !eof_now {
            return PushedRead::Wait;
        }
        let before = buf.len();
        let step = f(&mut StreamIo::new(duplex, staged), buf, eof);
        if eof {
            *eof_delivered = true;
        }
        let step = match step {
            PushedRead::Again if buf.is_empty() || buf.len() == before => PushedRead::Wait,
            step => step,
        };
        if step != PushedRead::Again || !staged.is_empty() {
            return step;
        }
    }
}

struct PendingRead {
    want: ReadFor,
    reply: oneshot::Sender<ReadResult>,
}

impl PendingRead {
    /// Takes what this read wants from `buf`, if it is there (or `eof`).
    fn take(&self, buf: &mut BytesMut, eof: bool) -> Option<Bytes> {
        let n = match &self.want {
            ReadFor::AtMost(n) if !buf.is_empty() => (*n).min(buf.len()),
            ReadFor::Exactly(n) if buf.len() >= *n => *n,
            ReadFor::Until(d) if !d.is_empty() => {
                match buf.windows(d.len()).position(|w| w == d.as_slice()) {
                    Some(i) => i + d.len(),
                    None if eof => buf.len(),
                    None => return None,
                }
            }
            ReadFor::Eof if eof => buf.len(),
            _ if eof => buf.len(),
            _ => return None,
        };
        Some(buf.split_to(n).freeze())
    }
}

/// A write on its way in: raw bytes (any protocol) or a typed item the
/// protocol encodes.
pub(crate) enum Outgoing<O> {
    Bytes(Bytes),
    Item(O),
}

impl<P: Protocol> ByteStream<P> {
    /// Hands buffered input on: to future-returning reads, then pushed
    /// readers, then the protocol's reader. An error is the reader's: it
    /// cannot go on.
    pub(crate) async fn deliver(&mut self, ctx: &mut Ctx<'_, Self>) -> Result<()> {
        let eof = self.duplex.read_eof();
        // Future-returning reads come first, in the order they were asked.
        while let Some(r) = self.reads.front() {
            if r.reply.is_closed() {
                self.reads.pop_front(); // cancelled: consumes nothing
                continue;
            }
            match r.take(self.duplex.input_mut(), eof) {
                Some(data) => {
                    if let Some(r) = self.reads.pop_front() {
                        let _ = r.reply.send(Ok((data, eof)));
                    }
                }
                None => break,
            }
        }
        if !self.reads.is_empty() {
            self.duplex.update_read_pause();
            return Ok(());
        }
        let mut res = Ok(());
        if !self.reading_done {
            loop {
                if self.pushed.is_some() {
                    self.run_pushed(eof);
                }
                if self.pushed.is_some() {
                    break; // a pushed reader waits for more
                }
                match P::consume(self, ctx).await {
                    Ok(true) => {} // it pushed readers: they take the rest
                    Ok(false) => break,
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
        }
        self.duplex.consumed();
        res
    }

    /// Runs the pushed readers, first pushed first, each until it is
    /// done or waits for more.
    fn run_pushed(&mut self, eof: bool) {
        let mut buf = self.duplex.take_input();
        let mut staged = Vec::new();
        while let Some(f) = self.pushed.as_mut().and_then(|q| q.front_mut()) {
            let step = drive_reader(
                &mut self.duplex,
                &mut buf,
                eof,
                &mut self.eof_delivered,
                &mut staged,
                f,
            );
            if !staged.is_empty() {
                self.pushed.get_or_insert_default().extend(staged.drain(..));
            }
            match step {
                PushedRead::Done => {
                    if let Some(q) = self.pushed.as_mut() {
                        q.pop_front();
                        if q.is_empty() {
                            self.pushed = None;
                        }
                    }
                    // The next reader sees the end of input too.
                    self.eof_delivered = false;
                }
                PushedRead::Wait => break,
                PushedRead::Again => {} // it pushed readers: they queue behind it
            }
        }
        self.duplex.put_input(buf);
    }

    /// Hands buffered input on; a reader that cannot go on stops reading.
    pub(crate) async fn deliver_or_stop(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let Err(e) = self.deliver(ctx).await {
            // The ways out are boxed (see `apply`).
            Box::pin(self.stop_reading(ctx, e)).await;
        }
    }

    /// Turns what a readiness event did into events and state changes.
    async fn after_progress(&mut self, p: Progress, ctx: &mut Ctx<'_, Self>) {
        let read = p.read;
        self.apply(p, ctx).await;
        if let Some((high, len)) = self.duplex.take_watermark() {
            let ev = if high {
                StreamEvent::ReadHighWatermark(len)
            } else {
                StreamEvent::ReadLowWatermark(len)
            };
            ctx.emit(ev).await;
        }
        let committed = self.held.is_some() && self.commit_held(false);
        if (read || committed) && self.duplex.queued() > 0 && !self.duplex.is_closed() {
            // The reader queued replies (or held writes moved in): write
            // them now.
            let p = self.duplex.flush_now();
            // The common end of a turn: the replies went out whole and
            // nothing else happened. Applied, it would only emit
            // `Flushed`, so with nobody to hear it and nothing to close
            // there is nothing to apply.
            let quiet =
                p.only_flushed() && !self.done() && !ctx.has_subscribers::<StreamEvent<P::Item>>();
            if !quiet {
                self.apply(p, ctx).await;
            }
        }
        ctx.set_buffered(self.queued() + self.duplex.buffered());
        if let Some(gate) = &self.gate {
            gate.publish(!self.duplex.accepting_writes());
        }
    }

    /// Runs the source's progress and what follows from it.
    async fn progress(&mut self, ctx: &mut Ctx<'_, Self>) {
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }

    async fn apply(&mut self, p: Progress, ctx: &mut Ctx<'_, Self>) {
        if p.read || p.read_eof {
            // A reader that cannot go on reads no more; the stream closes
            // once what is due is written.
            self.deliver_or_stop(ctx).await;
        }
        if p.read_eof {
            ctx.emit(StreamEvent::ReadEof).await;
            if self.close_on_read_eof {
                self.duplex.close_when_empty();
            }
        }
        if p.write_eof {
            ctx.emit(StreamEvent::WriteEof).await;
            if self.duplex.both_closed() {
                // IO::Async: closed once both halves are.
                self.duplex.close_when_empty();
            }
        }
        // Both in one event: it was blocked, wrote, and blocked again.
        if p.writeable_start {
            ctx.emit(StreamEvent::WriteableStart).await;
        }
        if p.writeable_stop {
            ctx.emit(StreamEvent::WriteableStop).await;
        }
        if p.flushed && self.held.is_none() {
            ctx.emit(StreamEvent::Flushed).await;
        }
        // The ways out are boxed: a connection's idle actor carries the
        // largest future of its readiness path, so cold paths stay out.
        if let Some(e) = p.write_error {
            return Box::pin(self.fail_with(ctx, StreamEvent::WriteError((*e).clone()), *e)).await;
        }
        if let Some(e) = p.read_error {
            return Box::pin(self.fail_with(ctx, StreamEvent::ReadError((*e).clone()), *e)).await;
        }
        if self.done() {
            Box::pin(self.close_with(ctx, None)).await;
        }
    }

    /// The reader cannot go on (a codec error it cannot get past).
    pub(crate) async fn stop_reading(&mut self, ctx: &mut Ctx<'_, Self>, e: Error) {
        self.read_failed.get_or_insert_with(|| Box::new(e.clone()));
        ctx.emit(StreamEvent::ReadError(e)).await;
        self.duplex.set_read_off(true);
        self.reading_done = true;
        self.duplex.close_when_empty();
    }

    /// Closing was asked for and nothing is left to write or answer.
    fn done(&self) -> bool {
        self.duplex.closing()
            && self.duplex.queued() == 0
            && self.producing.is_none()
            && !P::busy(self)
    }

    /// Bytes queued for writing, held writes and those behind a producer
    /// included.
    fn queued(&self) -> usize {
        self.duplex.queued()
            + self.held.as_ref().map_or(0, |h| h.bytes)
            + self.producing.as_ref().map_or(0, |p| p.bytes)
    }

    /// Takes a write: behind a producer, held back, refused or dropped as
    /// the overflow policy says, or queued.
    pub(crate) async fn accept(
        &mut self,
        w: Outgoing<P::Out>,
        done: Done,
        ctx: &mut Ctx<'_, Self>,
    ) -> Result<()> {
        let fail = |done: Done, e: Error| {
            if let Some(done) = done {
                let _ = done.send(Err(e.clone()));
            }
            Err(e)
        };
        let measured = self.producing.is_some()
            || (self.write_overflow != Overflow::Wait && !self.duplex.is_closed());
        let data = match w {
            Outgoing::Bytes(data) => data,
            Outgoing::Item(item) if measured => match self.proto.to_bytes(item) {
                Ok(data) => data,
                Err(e) => return fail(done, e),
            },
            Outgoing::Item(item) => {
                if let Err(e) = self.proto.queue(&mut self.duplex, item) {
                    return fail(done, e);
                }
                if done.is_some() {
                    // A marker: resolves once all before it is written.
                    self.duplex.write(Bytes::new(), done);
                }
                self.progress(ctx).await;
                return Ok(());
            }
        };
        let high = self.duplex.limits().write_high;
        if let Some(p) = self.producing.as_mut() {
            // Behind a producer: written, in order, once it ends.
            p.bytes += data.len();
            p.queue.push_back(Pending::Write(data, done));
            return Ok(());
        }
        if !self.duplex.takes_writes() {
            return fail(
                done,
                Error::closed("send", "the stream is closed for writing"),
            );
        }
        if self.write_overflow == Overflow::DropOldest
            && (self.held.is_some() || self.duplex.queued() + data.len() > high)
        {
            self.hold(data, done, ctx.path());
            self.progress(ctx).await;
            return Ok(());
        }
        if self.write_overflow != Overflow::Wait && self.duplex.queued() + data.len() > high {
            let what = match self.write_overflow {
                Overflow::DropNewest => "dropped: ",
                _ => "",
            };
            let err = Error::new(
                "write",
                ErrorKind::Full,
                format!(
                    "{what}the write buffer of {} is full ({high} bytes)",
                    ctx.path()
                ),
            );
            if let Some(done) = done {
                let _ = done.send(Err(err.clone()));
            }
            return Err(err);
        }
        self.duplex.write(data, done);
        self.progress(ctx).await;
        Ok(())
    }

    /// Waits on the source, and on the producer in front when there is
    /// room. Cancel safe: a chunk is queued as soon as it is pulled.
    pub(crate) fn ready_source(&mut self) -> impl Future<Output = ()> + Send + '_ {
        use futures_util::future::Either;
        // Without a producer, the source's poll alone: no future of its
        // own to build at every wait.
        if self.producing.is_none() {
            let duplex = &mut self.duplex;
            Either::Left(std::future::poll_fn(move |cx| duplex.poll_ready(cx)))
        } else {
            Either::Right(async move { self.split_source().0.ready().await })
        }
    }

    /// The source and its producers, apart from the protocol.
    pub(crate) fn split_source(&mut self) -> (SourceParts<'_>, &mut P) {
        let parts = SourceParts {
            duplex: &mut self.duplex,
            producing: &mut self.producing,
        };
        (parts, &mut self.proto)
    }

    /// A graceful stop: pulls every producer to its end, writing as it
    /// goes (bounded by the stop timeout).
    async fn finish_producing(&mut self) -> Result<()> {
        use futures_util::StreamExt;
        let high = self.duplex.limits().write_high;
        while let Some(p) = self.producing.as_mut() {
            match p.queue.front_mut() {
                Some(Pending::From(chunks, _)) => match chunks.next().await {
                    Some(b) => {
                        self.duplex.write(b, None);
                        if self.duplex.queued() >= high {
                            self.duplex.drain().await?;
                        }
                    }
                    None => self.split_source().0.producer_done(),
                },
                _ => self.split_source().0.producer_done(),
            }
        }
        Ok(())
    }

    /// Fails what producers and the writes behind them had not written.
    fn fail_producing(&mut self) {
        let Some(p) = self.producing.take() else {
            return;
        };
        for pending in p.queue {
            let (Pending::From(_, done) | Pending::Write(_, done)) = pending;
            if let Some(done) = done {
                let _ = done.send(Err(Error::closed(
                    "write",
                    "the stream closed before the producer finished",
                )));
            }
        }
    }

    /// Holds a write under `DropOldest`, dropping the oldest held writes
    /// while what is queued exceeds the high watermark (the newest is kept).
    fn hold(&mut self, data: Bytes, done: Done, path: &str) {
        let high = self.duplex.limits().write_high;
        let queued = self.duplex.queued();
        let held = self.held.get_or_insert_default();
        held.bytes += data.len();
        held.writes.push_back((data, done));
        while held.writes.len() > 1 && queued + held.bytes > high {
            let Some((old, done)) = held.writes.pop_front() else {
                break;
            };
            held.bytes -= old.len();
            tracing::debug!(
                bytes = old.len(),
                "write buffer full: dropped the oldest held write"
            );
            if let Some(done) = done {
                let _ = done.send(Err(Error::new(
                    "write",
                    ErrorKind::Full,
                    format!(
                        "dropped (the oldest write): the write buffer of {path} is full ({high} bytes)"
                    ),
                )));
            }
        }
    }

    /// Moves held writes to the write buffer: all of them, or (`all`
    /// false) those that fit under the high watermark (at least one when
    /// it is empty). True when some moved.
    fn commit_held(&mut self, all: bool) -> bool {
        let Some(held) = self.held.as_mut() else {
            return false;
        };
        let high = self.duplex.limits().write_high;
        let mut moved = false;
        while let Some((data, _)) = held.writes.front() {
            let queued = self.duplex.queued();
            if !(all || queued == 0 || queued + data.len() <= high) {
                break;
            }
            let Some((data, done)) = held.writes.pop_front() else {
                break;
            };
            held.bytes -= data.len();
            self.duplex.write(data, done);
            moved = true;
        }
        if held.writes.is_empty() {
            self.held = None;
        }
        moved
    }

    /// Emits `event` (the error), then closes with `err`.
    async fn fail_with(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        event: StreamEvent<P::Item>,
        err: Error,
    ) {
        ctx.emit(event).await;
        self.close_with(ctx, Some(err)).await;
    }

    /// Closes; pending reads get the end of stream after a clean EOF, or
    /// `err` (what ended it), or a closed error; writes not yet begun
    /// fail.
    pub(crate) async fn close_with(&mut self, ctx: &mut Ctx<'_, Self>, err: Option<Error>) {
        if let Some(gate) = &self.gate {
            gate.close();
        }
        let how = match (
            err.as_ref().or(self.read_failed.as_deref()),
            self.duplex.read_eof(),
        ) {
            (Some(e), _) => Err(e.clone()),
            (None, true) => Ok(()),
            (None, false) => Err(Error::closed(
                "read",
                "the stream closed before the read completed",
            )),
        };
        for r in self.reads.take_all() {
            let _ = r.reply.send(end_answer(&how));
        }
        self.fail_producing();
        if let Some(held) = self.held.take() {
            for (_, done) in held.writes {
                if let Some(done) = done {
                    let _ = done.send(Err(Error::closed(
                        "write",
                        "the stream closed before the write began",
                    )));
                }
            }
        }
        // Made now, not at the start: an idle stream pays nothing for it.
        StreamEnd::of(&ctx.this()).set(how);
        if !self.duplex.is_closed() {
            self.duplex.close();
            ctx.emit(StreamEvent::Closed).await;
        }
        ctx.exit();
    }
}

/// A stream's source and its producers: what waiting for readiness
/// touches, borrowed apart from the protocol (which may wait on work of
/// its own at the same time).
pub(crate) struct SourceParts<'a> {
    duplex: &'a mut Duplex,
    producing: &'a mut Option<Box<Producing>>,
}

impl SourceParts<'_> {
    /// Waits on the source, and on the producer in front when there is
    /// room. Cancel safe: a chunk is queued as soon as it is pulled.
    pub(crate) async fn ready(&mut self) {
        if self.producing.is_none() {
            return self.duplex.ready().await;
        }
        let room = self.producer_room();
        let pulled = match self.producing.as_mut().and_then(|p| p.queue.front_mut()) {
            Some(Pending::From(chunks, _)) if room => {
                use futures_util::StreamExt;
                tokio::select! {
                    biased;
                    () = self.duplex.ready() => Pulled::Source,
                    c = chunks.next() => c.map_or(Pulled::End, Pulled::Chunk),
                }
            }
            _ => {
                self.duplex.ready().await;
                Pulled::Source
            }
        };
        match pulled {
            Pulled::Chunk(b) => self.duplex.write(b, None),
            Pulled::End => self.producer_done(),
            Pulled::Source => {}
        }
    }

    /// Whether the producer in front may be pulled: the write buffer has
    /// room (below its low watermark).
    fn producer_room(&self) -> bool {
        !self.duplex.is_closed() && self.duplex.queued() < self.duplex.limits().write_low.max(1)
    }

    /// The producer in front has ended: a flush marker resolves its future
    /// once all it gave is written; the writes behind it move into the
    /// write buffer, up to the next producer.
    fn producer_done(&mut self) {
        let Some(p) = self.producing.as_mut() else {
            return;
        };
        if let Some(Pending::From(_, done)) = p.queue.pop_front() {
            self.duplex.write(Bytes::new(), done);
        }
        while let Some(Pending::Write(..)) = p.queue.front() {
            let Some(Pending::Write(data, done)) = p.queue.pop_front() else {
                break;
            };
            p.bytes -= data.len();
            self.duplex.write(data, done);
        }
        if p.queue.is_empty() {
            let shutdown = p.shutdown_after;
            *self.producing = None;
            if shutdown {
                self.duplex.shutdown_when_empty();
            }
        }
    }
}

impl<P: Protocol> Notifier for ByteStream<P> {
    type Args = Once<ByteStreamArgs<P>>;

    fn kind() -> &'static str {
        P::KIND
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        let gate = P::GATED.then(|| {
            let gate = ctx.this().handle_state(SendGate::default);
            gate.open(args.limits.write_high);
            gate
        });
        Ok(ByteStream {
            duplex: Duplex::new(args.source, args.limits),
            proto: args.proto,
            reads: LazyDeque::default(),
            pushed: None,
            eof_delivered: false,
            close_on_read_eof: args.close_on_read_eof,
            write_overflow: args.write_overflow,
            held: None,
            producing: None,
            reading_done: false,
            read_failed: None,
            gate,
        })
    }

    fn ready(&mut self) -> impl Future<Output = ()> + Send {
        P::ready(self)
    }

    async fn on_subscribe(&mut self, ctx: &mut Ctx<'_, Self>) {
        // Data read before anyone subscribed goes to the newcomer now.
        if self.duplex.buffered() > 0 && P::holds_for_subscribers(self) {
            self.deliver_or_stop(ctx).await;
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        P::on_ready(self, ctx).await;
        self.progress(ctx).await;
    }

    fn on_ready_may_wait(&mut self, ctx: &mut Ctx<'_, Self>) -> bool {
        // Every `.await` of a turn is an emit: reads are answered through
        // oneshots, `on_read`, `on_frame`, pushed readers and codecs are
        // plain calls, `serve` only queues its handlers' futures (`ready`
        // polls them), and the ways out (`fail_with`, `close_with`,
        // `stop_reading`) only emit. Keep it so: an `.await` on anything
        // else in `on_ready`'s path must be reflected here.
        ctx.emit_may_wait::<StreamEvent<P::Item>>()
    }

    fn accepting(&self) -> bool {
        // Only a waiting policy holds writers in the mailbox; the others
        // take every write and apply themselves.
        self.write_overflow != Overflow::Wait
            || (self.duplex.accepting_writes()
                && self
                    .producing
                    .as_ref()
                    .is_none_or(|p| p.bytes < self.duplex.limits().write_high))
    }

    async fn on_stop(&mut self, ctx: &mut Ctx<'_, Self>) {
        // Stopping: new frames are refused at once.
        if let Some(gate) = &self.gate {
            gate.close();
        }
        // A graceful stop reads no more, lets the reader finish what it
        // owes, flushes what was accepted; pending reads get the end of
        // stream (after EOF) or a closed error.
        if !self.duplex.is_closed() {
            self.reading_done = true;
            P::finish(self, ctx).await;
            self.commit_held(true);
            let err = match self.finish_producing().await {
                Ok(()) => self.duplex.drain().await.err(),
                Err(e) => Some(e),
            };
            if let Some(e) = &err {
                ctx.emit(StreamEvent::WriteError(e.clone())).await;
            }
            self.close_with(ctx, err).await;
        }
    }
}

impl<P: Protocol> Emits<StreamEvent<P::Item>> for ByteStream<P> {}

impl<P: Protocol> fmt::Debug for ByteStream<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteStream")
            .field("kind", &P::KIND)
            .field("queued", &self.duplex.queued())
            .field("buffered", &self.duplex.buffered())
            .finish()
    }
}

/// A stream's addresses and buffer sizes.
#[derive(Debug, Clone, PartialEq, Eq, kameo::Reply)]
pub struct StreamInfo {
    /// Local address (sockets only).
    pub local: Option<SockAddr>,
    /// Peer address (sockets only).
    pub peer: Option<SockAddr>,
    /// Bytes queued for writing.
    pub queued: usize,
    /// Bytes read and not yet consumed.
    pub buffered: usize,
    /// Closed.
    pub closed: bool,
}

// The messages: one set for every protocol, private behind the handle
// methods of `StreamRef` and `FramedRef`.

/// Queue bytes (or, `Item`, a typed write); `done` resolves once
/// written. The reply says whether it was taken (queued, held, or behind
/// a producer) — `ask` it to learn that, `tell` it not to wait. With
/// `report`, a refusal nobody waits on (`try_send`) is a `WriteError`
/// event.
pub(crate) struct Write<O> {
    pub(crate) what: Outgoing<O>,
    pub(crate) done: Done,
    pub(crate) report: bool,
}

impl<O> Write<O> {
    /// Raw bytes; `done` resolves once written.
    pub(crate) fn bytes(data: Bytes, done: Done) -> Self {
        Write {
            what: Outgoing::Bytes(data),
            done,
            report: false,
        }
    }

    /// A typed item for the protocol to encode.
    pub(crate) fn item(item: O, done: Done, report: bool) -> Self {
        Write {
            what: Outgoing::Item(item),
            done,
            report,
        }
    }
}

impl<P: Protocol> Handler<Write<P::Out>> for ByteStream<P> {
    type Reply = WriteTaken;
    async fn handle(&mut self, w: Write<P::Out>, ctx: &mut Ctx<'_, Self>) -> WriteTaken {
        let taken = self.accept(w.what, w.done, ctx).await;
        if w.report
            && let Err(e) = &taken
        {
            ctx.emit(StreamEvent::WriteError(e.clone())).await;
        }
        WriteTaken(taken)
    }
}

/// Whether a write was taken. Not an `Err` reply: a refused write that
/// was only told must not fail the stream.
#[derive(kameo::Reply)]
pub(crate) struct WriteTaken(pub(crate) Result<()>);

/// A future-returning read (IO::Async's `read_atmost`, `read_exactly`,
/// `read_until`, `read_until_eof`).
pub(crate) struct Read(pub(crate) ReadFor, pub(crate) oneshot::Sender<ReadResult>);

impl<P: Protocol> Handler<Read> for ByteStream<P> {
    type Reply = ();
    async fn handle(&mut self, Read(want, reply): Read, ctx: &mut Ctx<'_, Self>) {
        if self.duplex.is_closed() {
            let end = StreamEnd::of(&ctx.this());
            let _ = reply.send(end.read_answer(Error::closed("read", "the stream is closed")));
            return;
        }
        self.reads.push_back(PendingRead { want, reply });
        // Data may already be buffered.
        self.deliver_or_stop(ctx).await;
        self.progress(ctx).await;
    }
}

/// Push a temporary reader in front of the protocol's reader.
pub(crate) struct PushOnRead(pub(crate) PushedFn);

impl<P: Protocol> Handler<PushOnRead> for ByteStream<P> {
    type Reply = ();
    async fn handle(&mut self, PushOnRead(f): PushOnRead, ctx: &mut Ctx<'_, Self>) {
        self.pushed.get_or_insert_default().push_back(f);
        // What is buffered is its at once.
        self.deliver_or_stop(ctx).await;
        self.progress(ctx).await;
    }
}

/// Write what a producer yields.
pub(crate) struct WriteFrom(pub(crate) Chunks, pub(crate) Done);

impl<P: Protocol> Handler<WriteFrom> for ByteStream<P> {
    type Reply = ();
    async fn handle(&mut self, WriteFrom(chunks, done): WriteFrom, ctx: &mut Ctx<'_, Self>) {
        if self.duplex.is_closed() {
            if let Some(done) = done {
                let _ = done.send(Err(Error::closed("write", "the stream is closed")));
            }
            return;
        }
        // Whole writes held under DropOldest go first: they came before.
        self.commit_held(true);
        self.producing
            .get_or_insert_default()
            .queue
            .push_back(Pending::From(chunks, done));
        self.progress(ctx).await;
    }
}

/// Close once the write queue is empty.
pub(crate) struct CloseWhenEmpty;

impl<P: Protocol> Handler<CloseWhenEmpty> for ByteStream<P> {
    type Reply = ();
    async fn handle(&mut self, _: CloseWhenEmpty, ctx: &mut Ctx<'_, Self>) {
        self.commit_held(true);
        self.duplex.close_when_empty();
        self.progress(ctx).await;
    }
}

/// Close now, dropping queued writes (their futures fail).
pub(crate) struct CloseNow;

impl<P: Protocol> Handler<CloseNow> for ByteStream<P> {
    type Reply = ();
    async fn handle(&mut self, _: CloseNow, ctx: &mut Ctx<'_, Self>) {
        self.close_with(ctx, None).await;
    }
}

/// Shut the write side down once the queue is empty.
pub(crate) struct ShutdownWrite;

impl<P: Protocol> Handler<ShutdownWrite> for ByteStream<P> {
    type Reply = ();
    async fn handle(&mut self, _: ShutdownWrite, ctx: &mut Ctx<'_, Self>) {
        if let Some(p) = self.producing.as_mut() {
            p.shutdown_after = true;
            return;
        }
        self.commit_held(true);
        self.duplex.shutdown_when_empty();
        self.progress(ctx).await;
    }
}

/// Close the read side now.
pub(crate) struct CloseRead;

impl<P: Protocol> Handler<CloseRead> for ByteStream<P> {
    type Reply = Result<()>;
    async fn handle(&mut self, _: CloseRead, ctx: &mut Ctx<'_, Self>) -> Result<()> {
        if self.duplex.is_closed() {
            return Err(Error::closed("close_read", "the stream is closed"));
        }
        let res = self.duplex.close_read();
        if self.duplex.both_closed() {
            self.duplex.close_when_empty();
        }
        self.progress(ctx).await;
        res
    }
}

/// Turn reading on or off (IO::Async's `want_readready`).
pub(crate) struct WantRead(pub(crate) bool);

impl<P: Protocol> Handler<WantRead> for ByteStream<P> {
    type Reply = ();
    async fn handle(&mut self, WantRead(on): WantRead, _ctx: &mut Ctx<'_, Self>) {
        self.duplex.set_read_off(!on || self.reading_done);
    }
}

/// The stream's addresses and buffer sizes.
pub(crate) struct Info;

impl<P: Protocol> Handler<Info> for ByteStream<P> {
    type Reply = StreamInfo;
    async fn handle(&mut self, _: Info, _ctx: &mut Ctx<'_, Self>) -> StreamInfo {
        StreamInfo {
            local: self.duplex.local_addr(),
            peer: self.duplex.peer_addr(),
            queued: self.queued(),
            buffered: self.duplex.buffered(),
            closed: self.duplex.is_closed(),
        }
    }
}
