//! The byte-stream machinery shared by [`Stream`](crate::Stream) and
//! [`Framed`](crate::Framed): one OS source, a read buffer, a write queue
//! with flush futures, watermarks, half-close.
//!
//! Reads and writes over a socket or pipe use tokio's readiness API
//! (`readable` + `try_read`), so waiting is cancel safe and the notifier's
//! actor owns the socket: no second task, no extra copy. Over any other
//! [`AsyncIo`] (a TLS stream) `ready` itself polls the reads and writes
//! into the same buffers and keeps what they did for `progress`: a
//! cancelled `ready` loses nothing, and the events, watermarks, read
//! futures and drain are those of the raw path.

use std::{
    io::{self, IoSlice},
    os::fd::OwnedFd,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ioasync_core::{Error, Result};
use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf, unix::AsyncFd},
    net::{TcpStream, UnixStream, unix::pipe},
    sync::oneshot,
};

use crate::{
    addr::SockAddr,
    connection::{AsyncIo, Connection},
    lazy::LazyDeque,
};

/// Buffer limits of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reading pauses while this many unconsumed bytes are buffered...
    pub read_high: usize,
    /// ...and resumes below this many.
    pub read_low: usize,
    /// Writers wait while this many bytes are queued...
    pub write_high: usize,
    /// ...until the queue drains below this many.
    pub write_low: usize,
    /// Most bytes read per readiness event, for fairness (IO::Async's
    /// `read_len`): a maximum, so with `read_chunk = 2` a 7-byte write
    /// is read as 2, 2, 2 and 1 bytes, each chunk handed to the reader
    /// before the next is read. Zero is taken as one.
    pub read_chunk: usize,
}

impl Default for Limits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

/// What `Limits::default()` gives: a stream with these keeps none of its
/// own (most streams).
const DEFAULT_LIMITS: Limits = Limits {
    read_high: 1 << 20,
    read_low: 1 << 19,
    write_high: 1 << 20,
    write_low: 1 << 19,
    read_chunk: 64 << 10,
};

/// The OS side of a stream.
pub(crate) enum Source {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Boxed halves, as are `Fds`': a socket's is the common source,
    /// and two inline halves would make every stream's source twice its
    /// size.
    Pipes {
        rd: Option<Box<pipe::Receiver>>,
        wr: Option<Box<pipe::Sender>>,
    },
    /// Any other pollable fd (a tty, a socket given as an fd).
    Fds {
        rd: Option<Box<AsyncFd<OwnedFd>>>,
        wr: Option<Box<AsyncFd<OwnedFd>>>,
    },
    /// Any [`AsyncIo`] (boxed: the raw variants stay small and their paths
    /// untouched).
    Io(Box<IoSource>),
    Closed,
}

/// An [`AsyncIo`] source and what its polls did since `progress` last
/// looked.
pub(crate) struct IoSource {
    /// In a mutex only to make the source `Sync` (the raw paths borrow it
    /// across awaits); always reached through `get_mut`, never locked.
    io: std::sync::Mutex<Box<dyn AsyncIo>>,
    local: Option<SockAddr>,
    peer: Option<SockAddr>,
    /// Bytes handed to `io` and not yet flushed through it.
    unflushed: bool,
    /// `poll_shutdown` done.
    shut: bool,
    /// What the polls did, for the next `progress`.
    done: Progress,
}

fn pin_io(io: &mut std::sync::Mutex<Box<dyn AsyncIo>>) -> Pin<&mut Box<dyn AsyncIo>> {
    Pin::new(io.get_mut().unwrap_or_else(|e| e.into_inner()))
}

impl IoSource {
    fn io(&mut self) -> Pin<&mut Box<dyn AsyncIo>> {
        pin_io(&mut self.io)
    }

    fn has_news(&self) -> bool {
        let d = &self.done;
        d.read
            || d.read_eof
            || d.read_error.is_some()
            || d.write_error.is_some()
            || d.flushed
            || d.write_eof
            || d.wrote
            || d.writeable_stop
            || d.writeable_start
    }
}

fn is_fifo(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd)
        .map(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFIFO)
        .unwrap_or(false)
}

fn async_fd(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    crate::sys::async_fd(fd, interest)
}

impl Source {
    pub(crate) fn from_connection(c: Connection) -> Source {
        match c {
            Connection::Tcp(s) => Source::Tcp(s),
            Connection::Unix(s) => Source::Unix(s),
            Connection::Io(c) => Source::Io(Box::new(IoSource {
                io: std::sync::Mutex::new(c.io),
                local: c.local,
                peer: c.peer,
                unflushed: false,
                shut: false,
                done: Progress::default(),
            })),
        }
    }

    /// A source over a read fd and/or a write fd (pipes, ttys, stdin and
    /// stdout). The fds are set non-blocking and closed exactly once, when
    /// the stream closes.
    pub(crate) fn from_fds(rd: Option<OwnedFd>, wr: Option<OwnedFd>) -> Result<Source> {
        let pipes = rd.as_ref().is_none_or(is_fifo) && wr.as_ref().is_none_or(is_fifo);
        if pipes {
            let rd = rd
                .map(|fd| pipe::Receiver::from_owned_fd(fd).map(Box::new))
                .transpose()
                .map_err(|e| Error::io("open", e))?;
            let wr = wr
                .map(|fd| pipe::Sender::from_owned_fd(fd).map(Box::new))
                .transpose()
                .map_err(|e| Error::io("open", e))?;
            return Ok(Source::Pipes { rd, wr });
        }
        // A regular file cannot be polled (epoll says EPERM): use a
        // FileStream for files.
        let rd = rd
            .map(|fd| async_fd(fd, Interest::READABLE).map(Box::new))
            .transpose()
            .map_err(|e| Error::io("epoll_ctl", e))?;
        let wr = wr
            .map(|fd| async_fd(fd, Interest::WRITABLE).map(Box::new))
            .transpose()
            .map_err(|e| Error::io("epoll_ctl", e))?;
        Ok(Source::Fds { rd, wr })
    }

    // poll_*_ready keep one waker slot per direction (no waiter list to
    // lock), which is what one owner waiting on both directions needs.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Source::Tcp(s) => s.poll_read_ready(cx),
            Source::Unix(s) => s.poll_read_ready(cx),
            Source::Pipes { rd: Some(r), .. } => r.poll_read_ready(cx),
            Source::Fds { rd: Some(r), .. } => r.poll_read_ready(cx).map_ok(|_| ()),
            _ => Poll::Pending,
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Source::Tcp(s) => s.poll_write_ready(cx),
            Source::Unix(s) => s.poll_write_ready(cx),
            Source::Pipes { wr: Some(w), .. } => w.poll_write_ready(cx),
            Source::Fds { wr: Some(w), .. } => w.poll_write_ready(cx).map_ok(|_| ()),
            _ => Poll::Pending,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_ready(cx)).await
    }

    fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        match self {
            Source::Tcp(s) => s.try_read_buf(buf),
            Source::Unix(s) => s.try_read_buf(buf),
            Source::Pipes { rd: Some(r), .. } => r.try_read_buf(buf),
            Source::Fds { rd: Some(_), .. } => {
                let mut chunk = [0u8; 8192];
                let n = buf.remaining_mut().min(chunk.len());
                let n = self.try_read(&mut chunk[..n])?;
                buf.put_slice(&chunk[..n]);
                Ok(n)
            }
            _ => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Tcp(s) => s.try_read(buf),
            Source::Unix(s) => s.try_read(buf),
            Source::Pipes { rd: Some(r), .. } => r.try_read(buf),
            Source::Fds { rd: Some(r), .. } => r.try_io(Interest::READABLE, |fd| {
                nix::unistd::read(fd, buf).map_err(io::Error::from)
            }),
            _ => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Reads into `buf`; a short read also clears the read readiness seen
    /// *before* the read (what tokio's own `poll_read` does), so no second
    /// read is spent just to hear `EAGAIN`, and data that came after the
    /// read is a new readiness event, never lost. `Ok(n)` with `n <
    /// buf.len()` means drained.
    fn try_read_drain(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        let want = buf.len();
        let mut got = None;
        let mut once = |n: usize| {
            got = Some(n);
            if n > 0 && n < want {
                Err(io::Error::from(io::ErrorKind::WouldBlock))
            } else {
                Ok(n)
            }
        };
        let res = match self {
            Source::Tcp(s) => s.try_io(Interest::READABLE, || {
                once((&*socket2::SockRef::from(s)).read(buf)?)
            }),
            Source::Unix(s) => s.try_io(Interest::READABLE, || {
                once((&*socket2::SockRef::from(s)).read(buf)?)
            }),
            Source::Pipes { rd: Some(r), .. } => {
                r.try_io(|| once(nix::unistd::read(r, buf).map_err(io::Error::from)?))
            }
            _ => return self.try_read(buf),
        };
        match got {
            // A short read: `once` said WouldBlock, to clear readiness.
            Some(n) if n > 0 && n < want => Ok(n),
            _ => res,
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Source::Tcp(s) => s.try_write_vectored(bufs),
            Source::Unix(s) => s.try_write_vectored(bufs),
            Source::Pipes { wr: Some(w), .. } => w.try_write_vectored(bufs),
            Source::Fds { wr: Some(_), .. } => match bufs.first() {
                Some(b) => self.try_write(b),
                None => Ok(0),
            },
            _ => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Source::Tcp(s) => s.try_write(buf),
            Source::Unix(s) => s.try_write(buf),
            Source::Pipes { wr: Some(w), .. } => w.try_write(buf),
            Source::Fds { wr: Some(w), .. } => w.try_io(Interest::WRITABLE, |fd| {
                nix::unistd::write(fd, buf).map_err(io::Error::from)
            }),
            _ => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn can_read(&self) -> bool {
        match self {
            Source::Tcp(_) | Source::Unix(_) => true,
            Source::Pipes { rd, .. } => rd.is_some(),
            Source::Fds { rd, .. } => rd.is_some(),
            Source::Io(_) => true,
            Source::Closed => false,
        }
    }

    fn can_write(&self) -> bool {
        match self {
            Source::Tcp(_) | Source::Unix(_) => true,
            Source::Pipes { wr, .. } => wr.is_some(),
            Source::Fds { wr, .. } => wr.is_some(),
            Source::Io(s) => !s.shut,
            Source::Closed => false,
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Source::Tcp(s) => socket2::SockRef::from(&*s).shutdown(std::net::Shutdown::Write),
            Source::Unix(s) => socket2::SockRef::from(&*s).shutdown(std::net::Shutdown::Write),
            Source::Pipes { wr, .. } => {
                wr.take();
                Ok(())
            }
            Source::Fds { wr, .. } => {
                wr.take();
                Ok(())
            }
            // Shut down by `io_flush` (`poll_shutdown`), never here.
            Source::Io(_) | Source::Closed => Ok(()),
        }
    }

    fn shutdown_read(&mut self) -> io::Result<()> {
        match self {
            Source::Tcp(s) => socket2::SockRef::from(&*s).shutdown(std::net::Shutdown::Read),
            Source::Unix(s) => socket2::SockRef::from(&*s).shutdown(std::net::Shutdown::Read),
            Source::Pipes { rd, .. } => {
                rd.take();
                Ok(())
            }
            Source::Fds { rd, .. } => {
                rd.take();
                Ok(())
            }
            // A TLS stream has no half of its own to close: it stops
            // reading.
            Source::Io(_) | Source::Closed => Ok(()),
        }
    }

    pub(crate) fn local_addr(&self) -> Option<SockAddr> {
        match self {
            Source::Tcp(s) => s.local_addr().ok().map(SockAddr::Inet),
            Source::Unix(s) => s.local_addr().ok().map(|a| SockAddr::from_unix(&a)),
            Source::Io(s) => s.local.clone(),
            _ => None,
        }
    }

    pub(crate) fn peer_addr(&self) -> Option<SockAddr> {
        match self {
            Source::Tcp(s) => s.peer_addr().ok().map(SockAddr::Inet),
            Source::Unix(s) => s.peer_addr().ok().map(|a| SockAddr::from_unix(&a)),
            Source::Io(s) => s.peer.clone(),
            _ => None,
        }
    }
}

/// What one readiness event produced.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// New bytes were read into the buffer.
    pub(crate) read: bool,
    /// The peer closed its write side (first time only).
    pub(crate) read_eof: bool,
    /// Boxed, as is `write_error`: errors are rare, and a `Progress` is
    /// moved through every turn (two inline errors made it ~150 bytes,
    /// copied at each step).
    pub(crate) read_error: Option<Box<Error>>,
    pub(crate) write_error: Option<Box<Error>>,
    /// The write queue just became empty.
    pub(crate) flushed: bool,
    /// The write side was shut down (first time only).
    pub(crate) write_eof: bool,
    /// (An `AsyncIo` source) bytes were written: `progress` has news.
    pub(crate) wrote: bool,
    /// A write would block: the stream stopped being writeable.
    pub(crate) writeable_stop: bool,
    /// A write went through after one had blocked: writeable again.
    pub(crate) writeable_start: bool,
}

impl Progress {
    /// Nothing happened but writes (the queue may have emptied): no
    /// read, end, error or change of writeability.
    pub(crate) fn only_flushed(&self) -> bool {
        !self.read
            && !self.read_eof
            && self.read_error.is_none()
            && self.write_error.is_none()
            && !self.write_eof
            && !self.writeable_stop
            && !self.writeable_start
    }
}

type Waiter = (u64, oneshot::Sender<Result<()>>);

/// Reads into a scratch buffer of this size until the read buffer has grown
/// this much spare room.
const SMALL_READ: usize = 4096;

thread_local! {
    /// The buffer of small reads on the raw path: one per thread, zeroed
    /// once, where a stack array would be zeroed at every read (4 KiB of
    /// memset per readiness turn, the largest cost of an echo's turn).
    static SMALL: std::cell::RefCell<[u8; SMALL_READ]> =
        const { std::cell::RefCell::new([0; SMALL_READ]) };
}

/// Buffers and state of one byte stream.
///
/// Its state is nine flags; the transitions that set them are named
/// methods, and only this file touches the flags themselves:
///
/// | flag | set by | cleared by | means |
/// |---|---|---|---|
/// | `read_eof` | a read of 0 bytes | never | the peer closed its write side; nothing more is read |
/// | `read_paused` | the read buffer reaching `read_high` | it falling to `read_low` | reading waits for the reader to consume (the watermark edge is kept for `take_watermark`) |
/// | `read_off` | [`set_read_off`](Duplex::set_read_off)`(true)` (`want_read(false)`, a reader that cannot go on, `serve` backpressure), [`close_read`](Duplex::close_read) | `set_read_off(false)` | the user or the protocol stopped reading |
/// | `read_closed` | [`close_read`](Duplex::close_read) | never | the read side is shut down (a pipe's read end closed) |
/// | `write_full` | the write queue reaching `write_high` | it falling to `write_low` | writers wait ([`accepting_writes`](Duplex::accepting_writes) is false) |
/// | `write_blocked` | a write that would block | a write that goes through | IO::Async's writeable edges (`writeable_stop` / `writeable_start`) |
/// | `shutdown_when_empty` | [`shutdown_when_empty`](Duplex::shutdown_when_empty) | when the shutdown is done | no more writes are taken; the write side shuts once the queue is empty |
/// | `write_shut` | the write side shut down (then `write_eof` in [`Progress`]) | never | nothing more is written |
/// | `close_when_empty` | [`close_when_empty`](Duplex::close_when_empty) | never | the stream closes once the queue is empty (writes are still taken until then) |
///
/// Closing ([`close`](Duplex::close)) drops the source (`Source::Closed`)
/// and fails what waited to be written. The stream's notifier closes
/// when [`closing`](Duplex::closing) and nothing is left to write; it
/// closes at once on a read or write error, and once both halves are
/// closed (`read_closed` and `write_shut`).
pub(crate) struct Duplex {
    src: Source,
    rbuf: BytesMut,
    /// Allocated on first use: most streams write through `tail`.
    wq: LazyDeque<Bytes>,
    /// Copied small writes, after everything in `wq`; reused, so a
    /// request/response stream allocates nothing per write.
    tail: BytesMut,
    wq_bytes: usize,
    queued_total: u64,
    written_total: u64,
    waiters: LazyDeque<Waiter>,
    /// `None`: the defaults (five words kept once, not per stream).
    limits: Option<Box<Limits>>,
    read_eof: bool,
    read_paused: bool,
    watermark: Option<(bool, usize)>,
    /// Reading stopped by the user (`want_read` off) or the protocol.
    read_off: bool,
    /// Reading held back by the protocol (`serve` backpressure), apart
    /// from `read_off` (the user's `want_read`, `close_read`).
    read_held: bool,
    /// The read side was closed (`close_read`).
    read_closed: bool,
    write_full: bool,
    shutdown_when_empty: bool,
    close_when_empty: bool,
    write_shut: bool,
    /// The last write would block (IO::Async's writeable edges; a stream
    /// starts out presumed writeable).
    write_blocked: bool,
    ready_r: bool,
    ready_w: bool,
}

impl Duplex {
    pub(crate) fn new(src: Source, limits: Limits) -> Duplex {
        Duplex {
            src,
            rbuf: BytesMut::new(),
            wq: LazyDeque::default(),
            tail: BytesMut::new(),
            wq_bytes: 0,
            queued_total: 0,
            written_total: 0,
            waiters: LazyDeque::default(),
            limits: (limits != DEFAULT_LIMITS).then(|| Box::new(limits)),
            read_eof: false,
            read_paused: false,
            watermark: None,
            read_off: false,
            read_held: false,
            read_closed: false,
            write_full: false,
            shutdown_when_empty: false,
            close_when_empty: false,
            write_shut: false,
            write_blocked: false,
            ready_r: false,
            ready_w: false,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.src, Source::Closed)
    }

    /// The peer closed its write side (a read returned 0 bytes).
    pub(crate) fn read_eof(&self) -> bool {
        self.read_eof
    }

    /// Stops (`true`) or resumes reading: `want_read`, a reader that
    /// cannot go on, `serve` backpressure.
    pub(crate) fn set_read_off(&mut self, off: bool) {
        self.read_off = off;
    }

    /// Holds reading back (protocol backpressure) without touching the
    /// user's `read_off`.
    pub(crate) fn set_read_held(&mut self, held: bool) {
        self.read_held = held;
    }

    /// Closes the stream once everything queued is written.
    pub(crate) fn close_when_empty(&mut self) {
        self.close_when_empty = true;
    }

    /// Closing was asked for ([`close_when_empty`](Duplex::close_when_empty)).
    pub(crate) fn closing(&self) -> bool {
        self.close_when_empty
    }

    /// The buffer limits.
    pub(crate) fn limits(&self) -> &Limits {
        self.limits.as_deref().unwrap_or(&DEFAULT_LIMITS)
    }

    /// Bytes read and not yet consumed.
    pub(crate) fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// The unconsumed input, for a reader to take from.
    pub(crate) fn input_mut(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// Takes the unconsumed input out (a reader runs on it while the
    /// stream is borrowed elsewhere); give back what is left with
    /// [`put_input`](Duplex::put_input).
    pub(crate) fn take_input(&mut self) -> BytesMut {
        std::mem::take(&mut self.rbuf)
    }

    /// Gives back what a reader left of [`take_input`](Duplex::take_input).
    pub(crate) fn put_input(&mut self, buf: BytesMut) {
        self.rbuf = buf;
    }

    /// The local address (sockets only).
    pub(crate) fn local_addr(&self) -> Option<SockAddr> {
        self.src.local_addr()
    }

    /// The peer's address (sockets only).
    pub(crate) fn peer_addr(&self) -> Option<SockAddr> {
        self.src.peer_addr()
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.wq_bytes
    }

    /// Whether new writes are taken now (below the write high watermark,
    /// with hysteresis down to the low one).
    pub(crate) fn accepting_writes(&self) -> bool {
        !self.write_full
    }

    fn wants_read(&self) -> bool {
        !self.read_eof
            && !self.read_off
            && !self.read_held
            && !self.read_closed
            && !self.read_paused
            && !self.write_full
            && self.src.can_read()
    }

    fn wants_write(&self) -> bool {
        self.has_pending() && self.src.can_write() && !self.write_shut
    }

    /// Waits until the source can make progress. Cancel safe.
    pub(crate) async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// [`Duplex::ready`] as a poll (no future of its own to build at each
    /// wait: the runtime builds its source's anew every time).
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(self.src, Source::Io(_)) {
            return self.poll_io_ready(cx);
        }
        let (r, w) = (self.wants_read(), self.wants_write());
        let ready_r = r && self.src.poll_read_ready(cx).is_ready();
        let ready_w = w && self.src.poll_write_ready(cx).is_ready();
        if !ready_r && !ready_w {
            // Nothing wanted: no registration, like `pending()`.
            return Poll::Pending;
        }
        self.ready_r |= ready_r;
        self.ready_w |= ready_w;
        Poll::Ready(())
    }

    /// No more writes: closed, or the write side is (being) shut down. A
    /// pending `close_when_empty` still takes writes; it closes once the
    /// queue is empty.
    fn closed_for_writing(&self) -> bool {
        self.is_closed() || self.write_shut || self.shutdown_when_empty
    }

    fn has_pending(&self) -> bool {
        !self.wq.is_empty() || !self.tail.is_empty()
    }

    fn queued_more(&mut self, n: usize) {
        self.queued_total += n as u64;
        self.wq_bytes += n;
        if self.wq_bytes >= self.limits().write_high {
            self.write_full = true;
        }
        // Try at once: most writes complete without waiting.
        self.ready_w = true;
    }

    /// Whether writes are taken (not closed, nor shut down for writing).
    pub(crate) fn takes_writes(&self) -> bool {
        !self.closed_for_writing()
    }

    /// Queues `data` without copying; `done` resolves once it is written.
    pub(crate) fn write(&mut self, data: Bytes, done: Option<oneshot::Sender<Result<()>>>) {
        if self.closed_for_writing() {
            if let Some(done) = done {
                let _ = done.send(Err(Error::closed(
                    "write",
                    "the stream is closed for writing",
                )));
            }
            return;
        }
        if !data.is_empty() {
            if !self.tail.is_empty() {
                let copied = self.tail.split().freeze();
                self.wq.push_back(copied);
            }
            self.queued_more(data.len());
            self.wq.push_back(data);
        }
        if let Some(done) = done {
            if self.queued_total == self.written_total {
                let _ = done.send(Ok(()));
            } else {
                self.waiters.push_back((self.queued_total, done));
            }
        }
    }

    /// Lets `f` append to the write queue in place (a codec's encoder);
    /// whatever it appended is queued. False when closed for writing.
    pub(crate) fn append_with<E>(
        &mut self,
        f: impl FnOnce(&mut BytesMut) -> std::result::Result<(), E>,
    ) -> std::result::Result<bool, E> {
        if self.closed_for_writing() {
            return Ok(false);
        }
        let before = self.tail.len();
        let res = f(&mut self.tail);
        if res.is_err() {
            self.tail.truncate(before);
        }
        res?;
        let added = self.tail.len() - before;
        if added > 0 {
            self.queued_more(added);
        }
        Ok(true)
    }

    /// Queues a copy of `data`; false when the stream is closed for writing.
    pub(crate) fn write_slice(&mut self, data: &[u8]) -> bool {
        if self.closed_for_writing() {
            return false;
        }
        self.tail.extend_from_slice(data);
        self.queued_more(data.len());
        true
    }

    /// Closes the read side now (IO::Async's `close_read`): no more reads;
    /// a socket is shut down for reading, a pipe's read end closed.
    pub(crate) fn close_read(&mut self) -> Result<()> {
        self.read_closed = true;
        self.read_off = true;
        self.src
            .shutdown_read()
            .map_err(|e| Error::io("close_read", e))
    }

    /// Both sides are closed: the read side by `close_read`, the write side
    /// shut down (or there never was one). The stream is done.
    pub(crate) fn both_closed(&self) -> bool {
        self.read_closed && (self.write_shut || !self.src.can_write())
    }

    /// Shut the write side down once the queue is empty.
    pub(crate) fn shutdown_when_empty(&mut self) {
        self.shutdown_when_empty = true;
        self.ready_w = true;
    }

    /// Runs the reads and writes readiness allowed, without blocking.
    pub(crate) fn progress(&mut self) -> Progress {
        if matches!(self.src, Source::Io(_)) {
            return self.io_progress();
        }
        let mut p = Progress::default();
        if std::mem::take(&mut self.ready_w) || self.has_pending() {
            self.flush_some(&mut p);
        }
        if std::mem::take(&mut self.ready_r) && self.wants_read() {
            self.read_some(&mut p);
        }
        p
    }

    /// Writes what the socket takes now (after a reader queued replies),
    /// saving a trip through the event loop.
    pub(crate) fn flush_now(&mut self) -> Progress {
        if matches!(self.src, Source::Io(_)) {
            return self.io_progress();
        }
        let mut p = Progress::default();
        if self.wants_write() {
            // The write a queued write asked to try at once, done now: the
            // next readiness turn need not try again with nothing queued.
            self.ready_w = false;
            self.flush_some(&mut p);
        }
        p
    }

    fn read_some(&mut self, p: &mut Progress) {
        SMALL.with_borrow_mut(|small| self.read_some_with(p, small));
    }

    fn read_some_with(&mut self, p: &mut Progress, small: &mut [u8; SMALL_READ]) {
        let mut got = 0;
        let chunk = self.limits().read_chunk.max(1);
        while got < chunk {
            // Small messages go through the thread's buffer, so the read buffer
            // holds exactly what is unconsumed (an idle connection: nothing);
            // bulk transfers read straight into the growing buffer. No read
            // goes past `read_chunk`.
            let left = chunk - got;
            let mut drained = false;
            let res = if self.rbuf.capacity() - self.rbuf.len() >= SMALL_READ {
                self.src.try_read_buf(&mut (&mut self.rbuf).limit(left))
            } else {
                let small = &mut small[..left.min(SMALL_READ)];
                self.src.try_read_drain(small).inspect(|n| {
                    drained = *n > 0 && *n < small.len();
                    self.rbuf.extend_from_slice(&small[..*n]);
                })
            };
            match res {
                Ok(0) => {
                    self.read_eof = true;
                    p.read_eof = true;
                    break;
                }
                Ok(n) => {
                    got += n;
                    p.read = true;
                    if drained {
                        break; // readiness already cleared: no EAGAIN read
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    p.read_error = Some(Box::new(Error::io("read", e)));
                    break;
                }
            }
        }
        self.update_read_pause();
    }

    /// Called after the reader consumed what it could: an empty bulk buffer
    /// is released, so an idle connection holds at most a small one.
    pub(crate) fn consumed(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > SMALL_READ {
            self.rbuf = BytesMut::new();
        }
        self.update_read_pause();
    }

    pub(crate) fn update_read_pause(&mut self) {
        let len = self.rbuf.len();
        if !self.read_paused && len >= self.limits().read_high {
            self.read_paused = true;
            self.watermark = Some((true, len));
        } else if self.read_paused && len <= self.limits().read_low {
            self.read_paused = false;
            self.watermark = Some((false, len));
        }
    }

    /// The read-watermark edge crossed since the last call: (above high?,
    /// buffered bytes).
    pub(crate) fn take_watermark(&mut self) -> Option<(bool, usize)> {
        self.watermark.take()
    }

    fn flush_some(&mut self, p: &mut Progress) {
        let had = self.has_pending();
        while self.has_pending() {
            let res = if self.wq.is_empty() {
                self.src.try_write(&self.tail)
            } else {
                let mut slices = [IoSlice::new(&[]); 16];
                let mut n = self
                    .wq
                    .iter()
                    .zip(slices.iter_mut())
                    .map(|(b, s)| *s = IoSlice::new(b))
                    .count();
                if n < slices.len() && !self.tail.is_empty() {
                    slices[n] = IoSlice::new(&self.tail);
                    n += 1;
                }
                self.src.try_write_vectored(&slices[..n])
            };
            match res {
                Ok(0) => {
                    p.write_error = Some(Box::new(Error::io(
                        "write",
                        io::ErrorKind::WriteZero.into(),
                    )));
                    break;
                }
                Ok(n) => {
                    if std::mem::take(&mut self.write_blocked) {
                        p.writeable_start = true;
                    }
                    self.advance(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !std::mem::replace(&mut self.write_blocked, true) {
                        p.writeable_stop = true;
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    p.write_error = Some(Box::new(Error::io("write", e)));
                    break;
                }
            }
        }
        if let Some(e) = &p.write_error {
            self.fail_waiters(e);
            return;
        }
        if !self.has_pending() {
            p.flushed = had;
            if self.shutdown_when_empty && !self.write_shut {
                self.write_shut = true;
                p.write_eof = true;
                if let Err(e) = self.src.shutdown_write() {
                    p.write_error = Some(Box::new(Error::io("shutdown", e)));
                }
            }
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.written_total += n as u64;
        self.wq_bytes -= n;
        while n > 0 {
            let Some(front) = self.wq.front_mut() else {
                if n >= self.tail.len() {
                    // All written: cleared, not advanced, so the next small
                    // write reuses the buffer from its start (an advanced
                    // one would be reclaimed at the next write).
                    self.tail.clear();
                } else {
                    self.tail.advance(n);
                }
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.wq.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        while self
            .waiters
            .front()
            .is_some_and(|(at, _)| *at <= self.written_total)
        {
            if let Some((_, tx)) = self.waiters.pop_front() {
                let _ = tx.send(Ok(()));
            }
        }
        if self.write_full && self.wq_bytes <= self.limits().write_low {
            self.write_full = false;
        }
    }

    fn fail_waiters(&mut self, e: &Error) {
        for (_, tx) in self.waiters.take_all() {
            let _ = tx.send(Err(e.clone()));
        }
    }

    /// Writes out the queue, waiting for the socket as needed (graceful
    /// close). Stops at the first error.
    pub(crate) async fn drain(&mut self) -> Result<()> {
        if matches!(self.src, Source::Io(_)) {
            return self.io_drain().await;
        }
        while self.wants_write() {
            if let Err(e) = self.src.writable().await {
                let e = Error::io("write", e);
                self.fail_waiters(&e);
                return Err(e);
            }
            let mut p = Progress::default();
            self.flush_some(&mut p);
            if let Some(e) = p.write_error {
                return Err(*e);
            }
        }
        Ok(())
    }

    /// Closes the fds now; pending flush futures fail with `Closed`.
    pub(crate) fn close(&mut self) {
        if let Source::Io(s) = &mut self.src
            && !s.shut
        {
            // A clean end for a TLS peer (close_notify): the alert is one
            // small write, taken by the socket buffer at once in practice;
            // a peer that reads nothing gets a plain close.
            let mut cx = Context::from_waker(Waker::noop());
            let _ = s.io().poll_shutdown(&mut cx);
        }
        self.src = Source::Closed;
        let e = Error::closed("write", "the stream closed before the data was written");
        self.fail_waiters(&e);
        self.wq.clear();
        self.tail = BytesMut::new();
        self.wq_bytes = 0;
        self.write_full = false;
    }
}

/// The [`AsyncIo`] path: the polls happen in `ready` (with the actor's
/// waker) and in `progress` (writes only, with a no-op waker: the next
/// `ready` polls again with the real one).
impl Duplex {
    fn io_src(&mut self) -> Option<&mut IoSource> {
        match &mut self.src {
            Source::Io(s) => Some(s),
            _ => None,
        }
    }

    fn io_wants_write(&self) -> bool {
        match &self.src {
            Source::Io(s) => {
                !s.shut && (self.has_pending() || s.unflushed || self.shutdown_when_empty)
            }
            _ => false,
        }
    }

    fn poll_io_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (r, w) = (self.wants_read(), self.io_wants_write());
        if w {
            self.io_flush(cx);
        }
        if r {
            self.io_read(cx);
        }
        match self.io_src() {
            Some(s) if s.has_news() => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }

    /// What the polls did since the last call, after trying the writes
    /// queued since.
    fn io_progress(&mut self) -> Progress {
        if self.io_wants_write() {
            self.io_flush(&mut Context::from_waker(Waker::noop()));
        }
        self.ready_r = false;
        self.ready_w = false;
        match self.io_src() {
            Some(s) => std::mem::take(&mut s.done),
            None => Progress::default(),
        }
    }

    /// Reads what `io` has, up to `read_chunk`, into the read buffer.
    fn io_read(&mut self, cx: &mut Context<'_>) {
        let mut got = 0;
        let mut small = [0u8; SMALL_READ];
        let chunk = self.limits().read_chunk.max(1);
        let Source::Io(s) = &mut self.src else { return };
        let IoSource { io, done, .. } = &mut **s;
        let mut io = pin_io(io);
        while got < chunk && !self.read_eof && done.read_error.is_none() {
            let room = self.rbuf.capacity() - self.rbuf.len();
            let left = chunk - got;
            let res = if room >= SMALL_READ {
                tokio_util::io::poll_read_buf(io.as_mut(), cx, &mut (&mut self.rbuf).limit(left))
            } else {
                let mut rb = ReadBuf::new(&mut small[..left.min(SMALL_READ)]);
                io.as_mut().poll_read(cx, &mut rb).map_ok(|()| {
                    self.rbuf.extend_from_slice(rb.filled());
                    rb.filled().len()
                })
            };
            match res {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => {
                    self.read_eof = true;
                    done.read_eof = true;
                }
                Poll::Ready(Ok(n)) => {
                    got += n;
                    done.read = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => done.read_error = Some(Box::new(Error::io("read", e))),
            }
        }
        self.update_read_pause();
    }

    /// Writes the queue into `io`, flushes it, and shuts it down when asked
    /// and empty.
    fn io_flush(&mut self, cx: &mut Context<'_>) {
        while self.has_pending() {
            let Source::Io(s) = &mut self.src else { return };
            let io = s.io();
            let res = if self.wq.is_empty() {
                io.poll_write(cx, &self.tail)
            } else {
                let mut slices = [IoSlice::new(&[]); 16];
                let mut n = self
                    .wq
                    .iter()
                    .zip(slices.iter_mut())
                    .map(|(b, s)| *s = IoSlice::new(b))
                    .count();
                if n < slices.len() && !self.tail.is_empty() {
                    slices[n] = IoSlice::new(&self.tail);
                    n += 1;
                }
                io.poll_write_vectored(cx, &slices[..n])
            };
            match res {
                Poll::Pending => {
                    if !std::mem::replace(&mut self.write_blocked, true) {
                        s.done.writeable_stop = true;
                    }
                    return;
                }
                Poll::Ready(Ok(0)) => {
                    return self.io_write_failed(io::ErrorKind::WriteZero.into(), "write");
                }
                Poll::Ready(Ok(n)) => {
                    s.unflushed = true;
                    s.done.wrote = true;
                    if std::mem::take(&mut self.write_blocked) {
                        s.done.writeable_start = true;
                    }
                    self.advance(n);
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return self.io_write_failed(e, "write"),
            }
        }
        let shutdown = self.shutdown_when_empty && !self.write_shut;
        let Source::Io(s) = &mut self.src else { return };
        if s.unflushed {
            match s.io().poll_flush(cx) {
                Poll::Pending => return,
                Poll::Ready(Ok(())) => {
                    // Queue written and flushed through: `Flushed`.
                    s.unflushed = false;
                    s.done.flushed = true;
                }
                Poll::Ready(Err(e)) => return self.io_write_failed(e, "write"),
            }
        }
        if shutdown {
            match s.io().poll_shutdown(cx) {
                Poll::Pending => {}
                Poll::Ready(res) => {
                    s.shut = true;
                    s.done.write_eof = true;
                    self.write_shut = true;
                    if let Err(e) = res {
                        self.io_write_failed(e, "shutdown");
                    }
                }
            }
        }
    }

    fn io_write_failed(&mut self, e: io::Error, op: &'static str) {
        let e = Error::io(op, e);
        self.fail_waiters(&e);
        if let Source::Io(s) = &mut self.src {
            s.done.write_error = Some(Box::new(e));
        }
    }

    /// `drain` over an `AsyncIo`: write, flush (a TLS stream's records),
    /// then report the first write error.
    async fn io_drain(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| {
            if self.io_wants_write() {
                self.io_flush(cx);
            }
            let pending_err = self.io_src().and_then(|s| s.done.write_error.clone());
            if let Some(e) = pending_err {
                return Poll::Ready(Err(*e));
            }
            let busy = self.has_pending() || self.io_src().is_some_and(|s| s.unflushed);
            if busy {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        })
        .await
    }
}

/// The byte-stream core over a scripted source (tokio-test's mock: each
/// test says what the peer sends and what must be written, in order; an
/// unexpected write fails the test). No sockets, no notifier.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_test::io::Builder;

    use super::*;
    use crate::connection::Connection;

    fn over(mock: tokio_test::io::Mock, limits: Limits) -> Duplex {
        Duplex::new(Source::from_connection(Connection::from_io(mock)), limits)
    }

    /// Waits for the source and returns what it did, bounded.
    async fn step(d: &mut Duplex) -> Progress {
        tokio::time::timeout(Duration::from_secs(5), d.ready())
            .await
            .expect("the scripted source never became ready");
        d.progress()
    }

    #[tokio::test]
    async fn reads_collect_in_the_input_until_the_end_of_input() {
        let mut d = over(
            Builder::new().read(b"hel").read(b"lo").build(),
            Limits::default(),
        );
        let mut read = false;
        while !d.read_eof() {
            let p = step(&mut d).await;
            read |= p.read;
            assert!(p.read_error.is_none() && p.write_error.is_none());
        }
        assert!(read);
        assert_eq!(&d.take_input()[..], b"hello");
        assert_eq!(d.buffered(), 0);
    }

    #[tokio::test]
    async fn a_write_resolves_once_written_and_the_queue_says_flushed() {
        let mut d = over(Builder::new().write(b"abc").build(), Limits::default());
        let (tx, mut rx) = oneshot::channel();
        d.write(Bytes::from_static(b"abc"), Some(tx));
        assert_eq!(d.queued(), 3);
        let mut p = d.progress();
        while rx.try_recv().is_err() {
            p = step(&mut d).await;
        }
        assert!(p.flushed && p.wrote, "{p:?}");
        assert_eq!(d.queued(), 0);
    }

    #[tokio::test]
    async fn coalesced_small_writes_and_whole_writes_go_out_in_order() {
        let mut d = over(
            Builder::new().write(b"ab").write(b"cd").build(),
            Limits::default(),
        );
        assert!(d.write_slice(b"a"));
        assert!(d.write_slice(b"b"));
        d.write(Bytes::from_static(b"cd"), None);
        assert_eq!(d.queued(), 4);
        let mut p = d.progress();
        while d.queued() > 0 {
            p = step(&mut d).await;
        }
        assert!(p.flushed);
    }

    #[tokio::test]
    async fn the_read_watermarks_pause_and_resume_reading_on_their_edges() {
        let limits = Limits {
            read_high: 4,
            read_low: 2,
            ..Limits::default()
        };
        // More may come: the peer is still there after its six bytes.
        let peer = Builder::new()
            .read(b"123456")
            .wait(Duration::from_secs(3600))
            .build();
        let mut d = over(peer, limits);
        step(&mut d).await;
        assert_eq!(d.take_watermark(), Some((true, 6)));
        assert!(!d.wants_read(), "paused above the high watermark");
        assert_eq!(d.take_watermark(), None, "once per edge");
        d.input_mut().advance(5);
        d.consumed();
        assert_eq!(d.take_watermark(), Some((false, 1)));
        assert!(d.wants_read(), "resumed at the low watermark");
    }

    #[tokio::test]
    async fn the_write_high_watermark_stops_taking_writes_until_the_low_one() {
        let limits = Limits {
            write_high: 4,
            write_low: 2,
            ..Limits::default()
        };
        let mut d = over(Builder::new().write(b"abcdef").build(), limits);
        assert!(d.accepting_writes());
        d.write(Bytes::from_static(b"abcdef"), None);
        assert!(!d.accepting_writes(), "full at the high watermark");
        while d.queued() > 0 {
            step(&mut d).await;
        }
        assert!(d.accepting_writes(), "open again below the low watermark");
    }

    #[tokio::test]
    async fn a_write_error_fails_the_waiting_write_with_op_write() {
        let mut d = over(
            Builder::new()
                .write_error(io::Error::from(io::ErrorKind::BrokenPipe))
                .build(),
            Limits::default(),
        );
        let (tx, rx) = oneshot::channel();
        d.write(Bytes::from_static(b"x"), Some(tx));
        let mut p = d.progress();
        while p.write_error.is_none() {
            p = step(&mut d).await;
        }
        let e = p.write_error.unwrap();
        assert_eq!(e.op(), "write", "{e}");
        let waiting = rx.await.unwrap().unwrap_err();
        assert_eq!(waiting.op(), "write", "{waiting}");
    }

    #[tokio::test]
    async fn shutdown_when_empty_writes_the_queue_then_shuts_the_write_side() {
        let mut d = over(Builder::new().write(b"bye").build(), Limits::default());
        d.write(Bytes::from_static(b"bye"), None);
        d.shutdown_when_empty();
        assert!(!d.takes_writes(), "no writes once shutting down");
        let mut eof = false;
        while !eof {
            eof = step(&mut d).await.write_eof;
        }
        assert_eq!(d.queued(), 0, "written before the shutdown");
        // Half-closed: no new writes; the stream is not closed until the
        // read side is too.
        let (tx, rx) = oneshot::channel();
        d.write(Bytes::from_static(b"late"), Some(tx));
        assert!(rx.await.unwrap().is_err());
        assert!(!d.is_closed());
    }

    #[tokio::test]
    async fn close_when_empty_still_takes_writes_and_drain_writes_them() {
        let mut d = over(
            Builder::new().write(b"one").write(b"two").build(),
            Limits::default(),
        );
        d.write(Bytes::from_static(b"one"), None);
        d.close_when_empty();
        assert!(d.closing() && d.takes_writes());
        d.write(Bytes::from_static(b"two"), None);
        tokio::time::timeout(Duration::from_secs(5), d.drain())
            .await
            .expect("drain")
            .unwrap();
        assert_eq!(d.queued(), 0);
        d.close();
        assert!(d.is_closed());
    }

    #[tokio::test]
    async fn close_fails_the_writes_still_waiting() {
        // The peer never takes the write: it waits.
        let mut d = over(
            Builder::new().wait(Duration::from_secs(3600)).build(),
            Limits::default(),
        );
        let (tx, rx) = oneshot::channel();
        d.write(Bytes::from_static(b"stuck"), Some(tx));
        d.close();
        let e = rx.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("clos"), "{e}");
    }
}
