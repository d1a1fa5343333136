//! [`Stream`]: a buffered byte stream notifier (IO::Async::Stream).
//!
//! Reading hands the read buffer to an `on_read` closure with IO::Async's
//! contract — consume what you can, say whether to be called again — or,
//! without one, emits each chunk as [`StreamEvent::Read`]. Writing queues
//! bytes; [`StreamRef::write`] resolves when they are written. Above the
//! write high watermark the stream stops taking messages (writers wait) and
//! stops reading (so an echo cannot grow without bound).
//!
//! ```no_run
//! use ioasync::prelude::*;
//! use ioasync::io::{Connect, ReadAction, Stream, StreamRef};
//!
//! # #[allow(dead_code)]
//! # async fn f(lp: Loop) -> ioasync::Result<()> {
//! let conn = Connect::new("127.0.0.1:7".parse::<ioasync::io::Address>()?).await?;
//! let stream = lp
//!     .add(Stream::spec("echo-client", conn).on_read(|_io, buf, eof| {
//!         while let Some(i) = buf.iter().position(|b| *b == b'\n') {
//!             let line = buf.split_to(i + 1);
//!             println!("got {}", String::from_utf8_lossy(&line).trim_end());
//!         }
//!         let _ = eof;
//!         ReadAction::Wait
//!     }))
//!     .await?;
//! stream.write("hello\n").await?;
//! # Ok(()) }
//! ```

use std::{fmt, os::fd::OwnedFd};

use bytes::{Bytes, BytesMut};
use ioasync_core::{
    Ctx, Emits, Error, ErrorKind, Handler, IntoSpec, Notifier, NotifierRef, Once, Overflow,
    Restart, Result, Spec,
};
use tokio::sync::oneshot;

use crate::{
    addr::SockAddr,
    connection::Connection,
    duplex::{Duplex, Limits, Progress, Source},
};

/// What an `on_read` closure wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAction {
    /// Call me again now: I may be able to consume more of the buffer.
    Again,
    /// Wait for more data.
    Wait,
}

/// What a reader pushed with [`StreamIo::push_on_read`] or
/// [`StreamRef::push_on_read`] returns.
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

type PushedFn = Box<dyn FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> PushedRead + Send>;

/// What an `on_read` closure may do to its own stream.
pub struct StreamIo<'a> {
    duplex: &'a mut Duplex,
    /// Readers pushed during this call, queued after it returns.
    pushed: &'a mut Vec<PushedFn>,
}

impl StreamIo<'_> {
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
        self.duplex.close_when_empty = true;
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

type OnRead = Box<dyn FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> ReadAction + Send>;

/// Something that happened to a stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamEvent {
    /// Bytes read (only when the stream has no `on_read` closure).
    Read(Bytes),
    /// The peer closed its write side.
    ReadEof,
    /// Our write side was shut down.
    WriteEof,
    /// Reading failed (op `read`, errno kept); the stream closes.
    ReadError(Error),
    /// Writing failed (op `write`, errno kept); the stream closes.
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

/// How to start a [`Stream`]: its source and options. Built by
/// [`Stream::spec`] or [`Stream::from_fds`], finished with `.into()` or
/// added directly with `Loop::add`.
pub struct StreamArgs {
    source: Source,
    limits: Limits,
    on_read: Option<OnRead>,
    close_on_read_eof: bool,
    write_overflow: Overflow,
}

impl fmt::Debug for StreamArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamArgs")
            .field("limits", &self.limits)
            .field("on_read", &self.on_read.is_some())
            .field("close_on_read_eof", &self.close_on_read_eof)
            .finish()
    }
}

/// A [`Spec`] for a stream under construction; set options, then add it.
#[must_use = "a StreamSpec does nothing until it is added"]
pub struct StreamSpec {
    name: String,
    args: StreamArgs,
}

impl fmt::Debug for StreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSpec")
            .field("name", &self.name)
            .field("args", &self.args)
            .finish()
    }
}

impl StreamSpec {
    /// IO::Async's `on_read`: called with the read buffer and the EOF flag;
    /// consume what you can (`buf.split_to(n)`), return
    /// [`ReadAction::Again`] to be called again at once. At EOF it is called
    /// with `eof = true` and whatever partial data remains.
    pub fn on_read(
        mut self,
        f: impl FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> ReadAction + Send + 'static,
    ) -> Self {
        self.args.on_read = Some(Box::new(f));
        self
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

impl IntoSpec for StreamSpec {
    type Notifier = Stream;
}

impl From<StreamSpec> for Spec<Stream> {
    fn from(s: StreamSpec) -> Spec<Stream> {
        // A stream's connection cannot be made again: it starts once and is
        // temporary; a restart attempt fails with a clear error.
        Spec::new(s.name, Once::new(s.args)).restart(Restart::Temporary)
    }
}

impl From<StreamSpec> for ioasync_core::AnySpec {
    fn from(s: StreamSpec) -> Self {
        Spec::<Stream>::from(s).into()
    }
}

impl StreamArgs {
    fn new(source: Source) -> StreamArgs {
        StreamArgs {
            source,
            limits: Limits::default(),
            on_read: None,
            close_on_read_eof: true,
            write_overflow: Overflow::Wait,
        }
    }
}

/// A buffered byte stream over a socket or a pair of fds (IO::Async's
/// Stream): `on_read` gets the buffer (IO::Async's contract: consume what
/// you can, say whether to call again), writes are queued and flushed as
/// the fd takes them, and its events say what happened.
///
/// ```
/// use ioasync::{Loop, io::{ReadAction, Stream}};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
/// // An echo: every byte read is written back.
/// lp.add(Stream::spec("echo", ours).on_read(|io, buf, _eof| {
///     io.write_slice(buf);
///     buf.clear();
///     ReadAction::Wait
/// }))
/// .await?;
/// peer.write_all(b"ping").await.unwrap();
/// let mut got = [0u8; 4];
/// peer.read_exact(&mut got).await.unwrap();
/// assert_eq!(&got, b"ping");
/// # Ok(()) }
/// ```
pub struct Stream {
    duplex: Duplex,
    on_read: Option<OnRead>,
    close_on_read_eof: bool,
    eof_delivered: bool,
    reads: std::collections::VecDeque<PendingRead>,
    write_overflow: Overflow,
    /// Whole writes held back under `Overflow::DropOldest` (allocated on
    /// first use).
    held: Option<Box<Held>>,
    /// Readers pushed in front of `on_read`, first pushed first
    /// (allocated on first use; boxed so an idle stream carries one
    /// pointer, not a deque).
    #[allow(clippy::box_collection)]
    pushed: Option<Box<std::collections::VecDeque<PushedFn>>>,
    /// Producers being pulled and the writes queued behind them
    /// (allocated on first use).
    producing: Option<Box<Producing>>,
}

/// Chunks a producer yields (see [`StreamRef::write_from`]).
type Chunks = std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>>;

type Done = Option<oneshot::Sender<Result<()>>>;

/// IO::Async's `write(CODE)` / `write(Future)`: producers pulled as the
/// write buffer drains, and the writes that came after them, in order.
#[derive(Default)]
struct Producing {
    queue: std::collections::VecDeque<Pending>,
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
    writes: std::collections::VecDeque<(Bytes, Option<oneshot::Sender<Result<()>>>)>,
    bytes: usize,
}

/// How a stream ended, shared with its handles: a read made after the
/// stream stopped gets the end of stream (after a clean EOF) or the error
/// that ended it.
#[derive(Default)]
struct StreamEnd(std::sync::Mutex<Option<Result<()>>>);

impl StreamEnd {
    fn of(stream: &NotifierRef<Stream>) -> std::sync::Arc<StreamEnd> {
        stream.handle_state(StreamEnd::default)
    }

    fn set(&self, how: Result<()>) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(how);
        }
    }

    fn get(&self) -> Option<Result<()>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

impl Stream {
    /// A stream over a connection: a socket, a TLS stream, any
    /// [`Connection`].
    pub fn spec(name: impl Into<String>, conn: impl Into<Connection>) -> StreamSpec {
        StreamSpec {
            name: name.into(),
            args: StreamArgs::new(Source::from_connection(conn.into())),
        }
    }

    /// A stream over any [`AsyncIo`](crate::AsyncIo): a `tokio_rustls`
    /// TLS stream, an in-memory `tokio::io::duplex` pipe, any adapter. The
    /// same events, watermarks, read futures and drain as over a socket;
    /// a write's future resolves once the bytes are handed to `io`, and
    /// `Flushed` once `io` has flushed them. A close shuts `io` down
    /// (`poll_shutdown`: a TLS stream sends its close_notify).
    ///
    /// ```
    /// use ioasync::{Loop, io::{ReadAction, Stream}};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut theirs) = tokio::io::duplex(1024);
    /// lp.add(Stream::spec_io("upcase", ours).on_read(|io, buf, _eof| {
    ///     io.write(buf.split().to_ascii_uppercase());
    ///     ReadAction::Wait
    /// }))
    /// .await?;
    /// theirs.write_all(b"hello").await.unwrap();
    /// let mut back = [0u8; 5];
    /// theirs.read_exact(&mut back).await.unwrap();
    /// assert_eq!(&back, b"HELLO");
    /// # Ok(()) }
    /// ```
    pub fn spec_io(name: impl Into<String>, io: impl crate::AsyncIo) -> StreamSpec {
        Stream::spec(name, Connection::from_io(io))
    }

    /// A stream reading `read` and writing `write` (either may be absent):
    /// pipe ends, a tty, the program's stdin and stdout. Each fd is closed
    /// exactly once, when the stream closes.
    pub fn from_fds(
        name: impl Into<String>,
        read: Option<OwnedFd>,
        write: Option<OwnedFd>,
    ) -> Result<StreamSpec> {
        Ok(StreamSpec {
            name: name.into(),
            args: StreamArgs::new(Source::from_fds(read, write)?),
        })
    }

    /// A supervised stream over a source that can be made again: `make`
    /// runs at the first start and at every restart and returns the
    /// stream's spec (its connection, `on_read`, limits; its name and any
    /// subscriptions are ignored: they are this spec's). A stream over a
    /// reopened device or FIFO, or a connection made again, restarts like
    /// any permanent notifier; an `Err` fails that start.
    ///
    /// ```
    /// use ioasync::{Loop, io::{ReadAction, Stream}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let s = lp
    ///     .add(Stream::respawning("pair", || {
    ///         let (ours, _theirs) = tokio::net::UnixStream::pair().map_err(|e| ioasync::Error::io("socketpair", e))?;
    ///         Ok(Stream::spec("pair", ours).on_read(|_io, buf, _eof| {
    ///             buf.clear();
    ///             ReadAction::Wait
    ///         }))
    ///     }))
    ///     .await?;
    /// assert_eq!(s.path(), "/pair");
    /// # Ok(()) }
    /// ```
    pub fn respawning(
        name: impl Into<String>,
        make: impl Fn() -> Result<StreamSpec> + Send + Sync + 'static,
    ) -> Spec<Stream> {
        Spec::with(name, move || match make() {
            Ok(spec) => Once::new(spec.args),
            Err(e) => Once::failed(e),
        })
        .restart(Restart::Permanent)
    }

    /// A stream over this program's stdin and stdout (IO::Async's
    /// `new_for_stdio`). The fds are duplicated, so closing the stream
    /// leaves fds 0 and 1 open; a terminal is made non-blocking, which its
    /// other users share.
    pub fn stdio(name: impl Into<String>) -> Result<StreamSpec> {
        let rd =
            nix::unistd::dup(std::io::stdin()).map_err(|e| Error::io_at("dup", 0, e.into()))?;
        let wr =
            nix::unistd::dup(std::io::stdout()).map_err(|e| Error::io_at("dup", 1, e.into()))?;
        Stream::from_fds(name, Some(rd), Some(wr))
    }

    /// A read-only stream over this program's stdin (`new_for_stdin`).
    pub fn stdin(name: impl Into<String>) -> Result<StreamSpec> {
        let fd =
            nix::unistd::dup(std::io::stdin()).map_err(|e| Error::io_at("dup", 0, e.into()))?;
        Stream::from_fds(name, Some(fd), None)
    }

    /// A write-only stream over this program's stdout (`new_for_stdout`).
    pub fn stdout(name: impl Into<String>) -> Result<StreamSpec> {
        let fd =
            nix::unistd::dup(std::io::stdout()).map_err(|e| Error::io_at("dup", 1, e.into()))?;
        Stream::from_fds(name, None, Some(fd))
    }

    /// Hands buffered data to `on_read` (IO::Async's contract) or emits it.
    async fn deliver(&mut self, ctx: &mut Ctx<'_, Self>) {
        let eof = self.duplex.read_eof;
        // Future-returning reads come first, in the order they were asked.
        while let Some(r) = self.reads.front() {
            if r.reply.is_closed() {
                self.reads.pop_front(); // cancelled: consumes nothing
                continue;
            }
            match r.take(&mut self.duplex.rbuf, eof) {
                Some(data) => {
                    if let Some(r) = self.reads.pop_front() {
                        let _ = r.reply.send(Ok((data, eof)));
                    }
                }
                None => break,
            }
        }
        if !self.reads.is_empty() {
            return self.duplex.update_read_pause();
        }
        if self.on_read.is_some() || self.pushed.is_some() {
            self.run_readers(eof);
        }
        if self.on_read.is_none()
            && self.pushed.is_none()
            && !self.duplex.rbuf.is_empty()
            && ctx.has_subscribers::<StreamEvent>()
        {
            let data = self.duplex.rbuf.split().freeze();
            ctx.emit(StreamEvent::Read(data)).await;
        }
        self.duplex.consumed();
    }

    /// IO::Async's reader contract: pushed readers first (each until it is
    /// done), then `on_read`; each is called again while it asks to and
    /// consumes, and once with `eof` at the end of input.
    fn run_readers(&mut self, eof: bool) {
        enum Step {
            Again,
            Stop,
            Pop,
        }
        let mut buf = std::mem::take(&mut self.duplex.rbuf);
        let mut staged = Vec::new();
        loop {
            let eof_now = eof && !self.eof_delivered;
            if buf.is_empty() && !eof_now {
                break;
            }
            let before = buf.len();
            let mut io = StreamIo {
                duplex: &mut self.duplex,
                pushed: &mut staged,
            };
            let step = if let Some(f) = self.pushed.as_mut().and_then(|q| q.front_mut()) {
                match f(&mut io, &mut buf, eof) {
                    PushedRead::Again => Step::Again,
                    PushedRead::Wait => Step::Stop,
                    PushedRead::Done => Step::Pop,
                }
            } else if let Some(f) = self.on_read.as_mut() {
                match f(&mut io, &mut buf, eof) {
                    ReadAction::Again => Step::Again,
                    ReadAction::Wait => Step::Stop,
                }
            } else {
                break; // the pushed readers are done and there is no on_read
            };
            if eof {
                self.eof_delivered = true;
            }
            if !staged.is_empty() {
                self.pushed.get_or_insert_default().extend(staged.drain(..));
            }
            match step {
                Step::Pop => {
                    if let Some(q) = self.pushed.as_mut() {
                        q.pop_front();
                        if q.is_empty() {
                            self.pushed = None;
                        }
                    }
                    // The next reader sees the end of input too.
                    self.eof_delivered = false;
                }
                Step::Stop => break,
                Step::Again if buf.is_empty() || buf.len() == before => break,
                Step::Again => {}
            }
        }
        self.duplex.rbuf = buf;
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
            self.apply(p, ctx).await;
        }
        ctx.set_buffered(self.queued() + self.duplex.rbuf.len());
    }

    async fn apply(&mut self, p: Progress, ctx: &mut Ctx<'_, Self>) {
        if p.read || p.read_eof {
            self.deliver(ctx).await;
        }
        if p.read_eof {
            ctx.emit(StreamEvent::ReadEof).await;
            if self.close_on_read_eof {
                self.duplex.close_when_empty = true;
            }
        }
        if p.write_eof {
            ctx.emit(StreamEvent::WriteEof).await;
            if self.duplex.both_closed() {
                // IO::Async: closed once both halves are.
                self.duplex.close_when_empty = true;
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
            return Box::pin(self.fail_with(ctx, StreamEvent::WriteError(e.clone()), e)).await;
        }
        if let Some(e) = p.read_error {
            return Box::pin(self.fail_with(ctx, StreamEvent::ReadError(e.clone()), e)).await;
        }
        // Bytes nobody consumed wait for future-returning reads: a stream
        // at EOF closes once they were read (or when it has an on_read).
        let unread = !self.duplex.rbuf.is_empty() && self.on_read.is_none();
        if self.duplex.close_when_empty
            && self.duplex.queued() == 0
            && self.producing.is_none()
            && !unread
        {
            Box::pin(self.close(ctx)).await;
        }
    }

    async fn close(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.close_with(ctx, None).await;
    }

    /// Emits `event` (the error), then closes with `err`.
    /// Bytes queued for writing, held writes and those behind a producer
    /// included.
    fn queued(&self) -> usize {
        self.duplex.queued()
            + self.held.as_ref().map_or(0, |h| h.bytes)
            + self.producing.as_ref().map_or(0, |p| p.bytes)
    }

    /// Whether the producer in front may be pulled: the write buffer has
    /// room (below its low watermark).
    fn producer_room(&self) -> bool {
        !self.duplex.is_closed() && self.duplex.queued() < self.duplex.limits.write_low.max(1)
    }

    /// Waits on the source, and on the producer in front when there is
    /// room. Cancel safe: a chunk is queued as soon as it is pulled.
    async fn ready_producing(&mut self) {
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
            self.producing = None;
            if shutdown {
                self.duplex.shutdown_when_empty();
            }
        }
    }

    /// A graceful stop: pulls every producer to its end, writing as it
    /// goes (bounded by the stop timeout).
    async fn finish_producing(&mut self) -> Result<()> {
        use futures_util::StreamExt;
        let high = self.duplex.limits.write_high;
        while let Some(p) = self.producing.as_mut() {
            match p.queue.front_mut() {
                Some(Pending::From(chunks, _)) => match chunks.next().await {
                    Some(b) => {
                        self.duplex.write(b, None);
                        if self.duplex.queued() >= high {
                            self.duplex.drain().await?;
                        }
                    }
                    None => self.producer_done(),
                },
                _ => self.producer_done(),
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
    fn hold(&mut self, data: Bytes, done: Option<oneshot::Sender<Result<()>>>, path: &str) {
        let high = self.duplex.limits.write_high;
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
        let high = self.duplex.limits.write_high;
        let mut moved = false;
        while let Some((data, _)) = held.writes.front() {
            let queued = self.duplex.queued();
            if !(all || queued == 0 || queued + data.len() <= high) {
                break;
            }
            let (data, done) = held.writes.pop_front().expect("checked above");
            held.bytes -= data.len();
            self.duplex.write(data, done);
            moved = true;
        }
        if held.writes.is_empty() {
            self.held = None;
        }
        moved
    }

    async fn fail_with(&mut self, ctx: &mut Ctx<'_, Self>, event: StreamEvent, err: Error) {
        ctx.emit(event).await;
        self.close_with(ctx, Some(err)).await;
    }

    /// Closes; pending reads get the end of stream after a clean EOF, or
    /// `err` (what ended it), or a closed error.
    async fn close_with(&mut self, ctx: &mut Ctx<'_, Self>, err: Option<Error>) {
        let how = match (&err, self.duplex.read_eof) {
            (Some(e), _) => Err(e.clone()),
            (None, true) => Ok(()),
            (None, false) => Err(Error::closed(
                "read",
                "the stream closed before the read completed",
            )),
        };
        for r in self.reads.drain(..) {
            let reply = match &how {
                Ok(()) => Ok((Bytes::new(), true)),
                Err(e) => Err(e.clone()),
            };
            let _ = r.reply.send(reply);
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

impl Notifier for Stream {
    type Args = Once<StreamArgs>;

    fn kind() -> &'static str {
        "stream"
    }

    async fn init(args: Once<StreamArgs>, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        let source = args.source;
        Ok(Stream {
            duplex: Duplex::new(source, args.limits),
            on_read: args.on_read,
            close_on_read_eof: args.close_on_read_eof,
            eof_delivered: false,
            reads: std::collections::VecDeque::new(),
            write_overflow: args.write_overflow,
            held: None,
            pushed: None,
            producing: None,
        })
    }

    async fn ready(&mut self) {
        if self.producing.is_some() {
            return self.ready_producing().await;
        }
        self.duplex.ready().await
    }

    async fn on_subscribe(&mut self, ctx: &mut Ctx<'_, Self>) {
        // Data read before anyone subscribed goes to the newcomer now.
        if self.on_read.is_none() && !self.duplex.rbuf.is_empty() {
            self.deliver(ctx).await;
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }

    fn accepting(&self) -> bool {
        // Only a waiting policy holds writers in the mailbox; the others
        // take every write and apply themselves.
        self.write_overflow != Overflow::Wait
            || (self.duplex.accepting_writes()
                && self
                    .producing
                    .as_ref()
                    .is_none_or(|p| p.bytes < self.duplex.limits.write_high))
    }

    async fn on_stop(&mut self, ctx: &mut Ctx<'_, Self>) {
        // A graceful stop flushes what was accepted; pending reads get the
        // end of stream (after EOF) or a closed error.
        if !self.duplex.is_closed() {
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

impl Emits<StreamEvent> for Stream {}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("queued", &self.duplex.queued())
            .field("buffered", &self.duplex.rbuf.len())
            .finish()
    }
}

/// Message: queue bytes; the sender resolves once they are written.
#[derive(Debug)]
pub struct Write(pub Bytes, pub Option<oneshot::Sender<Result<()>>>);

/// Message: a future-returning read (IO::Async's `read_atmost`,
/// `read_exactly`, `read_until`, `read_until_eof`). Pending reads are
/// served before `on_read`, in order.
#[derive(Debug)]
pub struct Read(pub ReadFor, pub oneshot::Sender<ReadResult>);

impl Handler<Read> for Stream {
    type Reply = ();
    async fn handle(&mut self, Read(want, reply): Read, ctx: &mut Ctx<'_, Self>) {
        if self.duplex.is_closed() {
            let _ = reply.send(match StreamEnd::of(&ctx.this()).get() {
                Some(Ok(())) => Ok((Bytes::new(), true)),
                Some(Err(e)) => Err(e),
                None => Err(Error::closed("read", "the stream is closed")),
            });
            return;
        }
        self.reads.push_back(PendingRead { want, reply });
        // Data may already be buffered.
        self.deliver(ctx).await;
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }
}

/// Message: close once the write queue is empty.
#[derive(Debug)]
pub struct CloseWhenEmpty;

/// Message: close now, dropping queued writes (their futures fail).
#[derive(Debug)]
pub struct CloseNow;

/// Message: shut the write side down once the queue is empty.
#[derive(Debug)]
pub struct ShutdownWrite;

/// Message: turn reading on or off (IO::Async's `want_readready`).
#[derive(Debug)]
pub struct WantRead(pub bool);

/// Message: the stream's addresses and buffer sizes.
#[derive(Debug)]
pub struct Info;

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

impl Handler<Write> for Stream {
    type Reply = ();
    async fn handle(&mut self, Write(data, done): Write, ctx: &mut Ctx<'_, Self>) {
        let high = self.duplex.limits.write_high;
        if let Some(p) = self.producing.as_mut() {
            // Behind a producer: written, in order, once it ends.
            p.bytes += data.len();
            p.queue.push_back(Pending::Write(data, done));
            return;
        }
        if self.write_overflow == Overflow::DropOldest
            && (self.held.is_some() || self.duplex.queued() + data.len() > high)
        {
            self.hold(data, done, ctx.path());
            let p = self.duplex.progress();
            return self.after_progress(p, ctx).await;
        }
        if self.write_overflow != Overflow::Wait && self.duplex.queued() + data.len() > high {
            let what = match self.write_overflow {
                Overflow::DropNewest => "dropped: ",
                _ => "",
            };
            if let Some(done) = done {
                let _ = done.send(Err(Error::new(
                    "write",
                    ErrorKind::Full,
                    format!(
                        "{what}the write buffer of {} is full ({high} bytes)",
                        ctx.path()
                    ),
                )));
            }
            return;
        }
        self.duplex.write(data, done);
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }
}

impl Handler<CloseWhenEmpty> for Stream {
    type Reply = ();
    async fn handle(&mut self, _: CloseWhenEmpty, ctx: &mut Ctx<'_, Self>) {
        self.commit_held(true);
        self.duplex.close_when_empty = true;
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }
}

impl Handler<CloseNow> for Stream {
    type Reply = ();
    async fn handle(&mut self, _: CloseNow, ctx: &mut Ctx<'_, Self>) {
        self.close(ctx).await;
    }
}

/// Message: write what a producer yields (see [`StreamRef::write_from`]).
pub struct WriteFrom(Chunks, Option<oneshot::Sender<Result<()>>>);

impl fmt::Debug for WriteFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteFrom")
    }
}

impl Handler<WriteFrom> for Stream {
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
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }
}

impl Handler<ShutdownWrite> for Stream {
    type Reply = ();
    async fn handle(&mut self, _: ShutdownWrite, ctx: &mut Ctx<'_, Self>) {
        if let Some(p) = self.producing.as_mut() {
            p.shutdown_after = true;
            return;
        }
        self.commit_held(true);
        self.duplex.shutdown_when_empty();
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }
}

/// Message: close the read side now (see [`StreamRef::close_read`]).
#[derive(Debug)]
pub struct CloseRead;

impl Handler<CloseRead> for Stream {
    type Reply = Result<()>;
    async fn handle(&mut self, _: CloseRead, ctx: &mut Ctx<'_, Self>) -> Result<()> {
        if self.duplex.is_closed() {
            return Err(Error::closed("close_read", "the stream is closed"));
        }
        let res = self.duplex.close_read();
        if self.duplex.both_closed() {
            self.duplex.close_when_empty = true;
        }
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
        res
    }
}

impl Handler<WantRead> for Stream {
    type Reply = ();
    async fn handle(&mut self, WantRead(on): WantRead, _ctx: &mut Ctx<'_, Self>) {
        self.duplex.read_off = !on;
    }
}

impl Handler<Info> for Stream {
    type Reply = StreamInfo;
    async fn handle(&mut self, _: Info, _ctx: &mut Ctx<'_, Self>) -> StreamInfo {
        StreamInfo {
            local: self.duplex.src.local_addr(),
            peer: self.duplex.src.peer_addr(),
            queued: self.queued(),
            buffered: self.duplex.rbuf.len(),
            closed: self.duplex.is_closed(),
        }
    }
}

/// Stream operations on a stream's handle.
pub trait StreamRef {
    /// Queues `data` and resolves once it is written. Waits first while
    /// the stream is above its write high watermark (backpressure).
    ///
    /// ```
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("out", ours)).await?;
    /// stream.write(&b"hello"[..]).await?; // written: the peer can read it
    /// let mut got = [0u8; 5];
    /// peer.read_exact(&mut got).await.unwrap();
    /// assert_eq!(&got, b"hello");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for room, nothing is queued; once the stream
    /// has taken the bytes, dropping it only loses the news that they were
    /// written: they still are.
    fn write(&self, data: impl Into<Bytes> + Send) -> impl Future<Output = Result<()>> + Send;

    /// Closes once everything queued is written.
    ///
    /// # Cancel safety
    ///
    /// Once the stream has the request (the future resolved or was dropped
    /// after it was sent), it closes as asked.
    fn close_when_empty(&self) -> impl Future<Output = Result<()>> + Send;

    /// Closes now; queued writes fail. Taken at once, even while writers
    /// wait for room (it does not queue behind them).
    ///
    /// # Cancel safety
    ///
    /// Dropped before the stream answered, the close may or may not have
    /// happened; ask [`info`](StreamRef::info) or await [`closed`](StreamRef::closed).
    fn close_now(&self) -> impl Future<Output = Result<()>> + Send;

    /// Half-close: shuts the write side once the queue is empty
    /// (IO::Async's `close_write`, after the queue). Once the read side is
    /// closed too ([`close_read`](StreamRef::close_read)), the stream
    /// closes.
    ///
    /// # Cancel safety
    ///
    /// As [`close_when_empty`](StreamRef::close_when_empty).
    fn shutdown_write(&self) -> impl Future<Output = Result<()>> + Send;

    /// Closes the read side now (IO::Async's `close_read`): nothing more is
    /// read (a socket is shut down for reading; a pipe's read end closed,
    /// so its writer gets `EPIPE`); writing goes on. Once the write side is
    /// shut down too, the stream closes (`on_closed`, then it leaves the
    /// tree), as IO::Async's Handle does once both halves are closed.
    ///
    /// # Cancel safety
    ///
    /// Dropped before the answer, the read side may or may not be closed.
    fn close_read(&self) -> impl Future<Output = Result<()>> + Send;

    /// Addresses and buffer sizes, answered at once (not behind queued
    /// writes).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only asks.
    fn info(&self) -> impl Future<Output = Result<StreamInfo>> + Send;

    /// Resolves once the stream has closed (its fds are closed).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    fn closed(&self) -> impl Future<Output = ()> + Send;

    /// Reads what `want` asks for; resolves with the bytes and whether EOF
    /// was reached (IO::Async's `read_atmost`, `read_exactly`,
    /// `read_until`, `read_until_eof`). Reads come before `on_read`, in
    /// the order asked.
    ///
    /// ```
    /// use ioasync::{Loop, io::{ReadFor, Stream, StreamRef}};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("in", ours)).await?;
    /// peer.write_all(b"one\ntwo\n").await.unwrap();
    /// drop(peer);
    /// let (line, _eof) = stream.read(ReadFor::Until(b"\n".to_vec())).await?;
    /// assert_eq!(&line[..], b"one\n");
    /// let (rest, eof) = stream.read(ReadFor::Eof).await?;
    /// assert_eq!((&rest[..], eof), (&b"two\n"[..], true));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a read dropped before it completed consumes nothing;
    /// the bytes stay for the next read or `on_read`.
    fn read(&self, want: ReadFor) -> impl Future<Output = ReadResult> + Send;

    /// Writes what `chunks` yields, pulling the next chunk each time the
    /// write buffer has room (IO::Async's `write` with a generator or a
    /// Future: a future is `futures::stream::once(fut)`); writes made after
    /// it wait behind it. Resolves once the last chunk is written. A
    /// graceful stop pulls it to its end first; a close fails it.
    ///
    /// # Cancel safety
    ///
    /// Once the stream has the producer, dropping the future does not stop
    /// it: it is pulled to its end.
    fn write_from(
        &self,
        chunks: impl futures_util::Stream<Item = Bytes> + Send + 'static,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Writes what `next` returns, calling it each time the write buffer
    /// has room, until it returns `None` (IO::Async's `write(CODE)`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use ioasync::{Loop, io::{Stream, StreamRef}};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    /// let stream = lp.add(Stream::spec("count", ours)).await?;
    /// let mut n = 0;
    /// stream
    ///     .write_with(move || {
    ///         n += 1;
    ///         (n <= 3).then(|| Bytes::from(format!("{n} ")))
    ///     })
    ///     .await?;
    /// stream.close_when_empty().await?;
    /// let mut got = String::new();
    /// peer.read_to_string(&mut got).await.unwrap();
    /// assert_eq!(got, "1 2 3 ");
    /// # Ok(()) }
    /// ```
    fn write_with(
        &self,
        mut next: impl FnMut() -> Option<Bytes> + Send + 'static,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write_from(futures_util::stream::poll_fn(move |_| {
            std::task::Poll::Ready(next())
        }))
    }

    /// Pushes a temporary reader in front of the stream's `on_read`
    /// (IO::Async's `push_on_read`); it is given what is buffered at once.
    /// Resolves once it is installed: input read before then went to the
    /// readers already there. See [`StreamIo::push_on_read`].
    ///
    /// # Cancel safety
    ///
    /// Dropped before the answer, the reader may or may not be installed.
    fn push_on_read(
        &self,
        f: impl FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> PushedRead + Send + 'static,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Message: push a temporary reader (see [`StreamRef::push_on_read`]).
pub struct PushOnRead(PushedFn);

impl fmt::Debug for PushOnRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PushOnRead")
    }
}

impl Handler<PushOnRead> for Stream {
    type Reply = ();
    async fn handle(&mut self, PushOnRead(f): PushOnRead, ctx: &mut Ctx<'_, Self>) {
        self.pushed.get_or_insert_default().push_back(f);
        // What is buffered is its at once.
        self.deliver(ctx).await;
        let p = self.duplex.progress();
        self.after_progress(p, ctx).await;
    }
}

impl StreamRef for NotifierRef<Stream> {
    async fn write_from(
        &self,
        chunks: impl futures_util::Stream<Item = Bytes> + Send + 'static,
    ) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tell(WriteFrom(Box::pin(chunks), Some(tx))).await?;
        rx.await
            .unwrap_or_else(|_| Err(Error::closed("write", "the stream stopped")))
    }

    async fn push_on_read(
        &self,
        f: impl FnMut(&mut StreamIo<'_>, &mut BytesMut, bool) -> PushedRead + Send + 'static,
    ) -> Result<()> {
        // Resolves once installed: input read after that is its.
        self.ask(PushOnRead(Box::new(f))).await
    }

    async fn write(&self, data: impl Into<Bytes> + Send) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tell(Write(data.into(), Some(tx))).await?;
        rx.await
            .unwrap_or_else(|_| Err(Error::closed("write", "the stream stopped")))
    }

    async fn close_when_empty(&self) -> Result<()> {
        self.tell(CloseWhenEmpty).await
    }

    async fn close_now(&self) -> Result<()> {
        // Ahead of the mailbox: a peer that stopped reading cannot hold it.
        self.ask_now(CloseNow).await
    }

    async fn shutdown_write(&self) -> Result<()> {
        self.tell(ShutdownWrite).await
    }

    async fn close_read(&self) -> Result<()> {
        // Ahead of the mailbox: writers waiting for room do not hold it.
        self.ask_now(CloseRead).await?
    }

    async fn info(&self) -> Result<StreamInfo> {
        self.ask_now(Info).await
    }

    async fn closed(&self) {
        self.wait_stopped().await
    }

    async fn read(&self, want: ReadFor) -> ReadResult {
        // After the stream stopped: how it ended is the answer.
        let ended = |fallback: Error| match StreamEnd::of(self).get() {
            Some(Ok(())) => Ok((Bytes::new(), true)),
            Some(Err(e)) => Err(e),
            None => Err(fallback),
        };
        let (tx, mut rx) = oneshot::channel();
        // Ahead of the mailbox: writes waiting for room do not hold reads.
        if let Err(e) = self.ask_now(Read(want, tx)).await {
            // It may have answered just before it stopped.
            return rx.try_recv().unwrap_or_else(|_| ended(e));
        }
        match rx.await {
            Ok(res) => res,
            Err(_) => ended(Error::closed("read", "the stream stopped")),
        }
    }
}
