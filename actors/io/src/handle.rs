//! [`Handle`]: the low-level notifier over one fd, or a separate read fd
//! and write fd (IO::Async::Handle). It reports readiness; the program
//! does its own reads and writes through [`HandleIo`]. For buffered IO use
//! [`Stream::from_fds`](crate::Stream::from_fds) instead.
//!
//! Readiness is level-triggered, as in IO::Async: a callback that leaves
//! the fd ready (it does not read the bytes there, or the end of file; it
//! does not fill a writable fd) is called again, and again, while the fd
//! stays ready. Other tasks still run meanwhile: each call is one turn of
//! the notifier, and its turns share the thread like any tokio task (each
//! takes a unit of tokio's cooperative budget) and its mailbox (messages
//! such as [`HandleRef::want_ready`] are handled between the calls). Read
//! until [`HandleIo::read`] returns `WouldBlock`, or stop wanting the
//! readiness ([`HandleIo::want_read`]), to be called only for new data.
//!
//! ```
//! use std::os::fd::OwnedFd;
//! use ioasync::{io::Handle, Loop};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ioasync::Result<()> {
//! let lp = Loop::current()?;
//! let (rx, tx) = std::io::pipe().unwrap();
//! let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let g = got.clone();
//! let h = lp
//!     .add(Handle::spec("pipe", Some(OwnedFd::from(rx)), None)?.on_read_ready(move |io| {
//!         let mut buf = [0u8; 64];
//!         while let Ok(n) = io.read(&mut buf) {
//!             if n == 0 { io.close(); break; }
//!             g.lock().unwrap().extend_from_slice(&buf[..n]);
//!         }
//!     }))
//!     .await?;
//! std::io::Write::write_all(&mut &tx, b"ping").unwrap();
//! drop(tx);
//! h.wait_stopped().await;
//! assert_eq!(&got.lock().unwrap()[..], b"ping");
//! # Ok(()) }
//! ```

use std::{
    fmt, io,
    os::fd::{AsRawFd, OwnedFd},
};

use ioasync_core::{
    Ctx, Emits, Error, Handler, IntoSpec, Notifier, NotifierRef, Once, Restart, Result, Spec,
};
use tokio::io::{Interest, unix::AsyncFd};

/// Something that happened to a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleEvent {
    /// The read fd is readable (only without an `on_read_ready` closure).
    ReadReady,
    /// The write fd is writable (only without an `on_write_ready` closure).
    WriteReady,
    /// The other end hung up (IO::Async's `on_hangup`): the poll reported
    /// `EPOLLHUP` or a read-side close (`EPOLLRDHUP`) on the read fd, or a
    /// hangup or error on the write fd. Emitted once per handle, before the
    /// readiness of that turn is reported; reading then sees the end of
    /// file (or the error).
    Hangup,
    /// The handle closed; its fds are closed.
    Closed,
}

/// One of a handle's fds: registered with the reactor, or a regular file,
/// which epoll refuses (`EPERM`) and which is always ready (IO::Async
/// treats regular files as always read- and write-ready).
enum Fd {
    Polled(AsyncFd<OwnedFd>),
    File(OwnedFd),
}

impl Fd {
    fn get(&self) -> &OwnedFd {
        match self {
            Fd::Polled(a) => a.get_ref(),
            Fd::File(f) => f,
        }
    }

    fn is_file(&self) -> bool {
        matches!(self, Fd::File(_))
    }

    fn polled(&self) -> Option<&AsyncFd<OwnedFd>> {
        match self {
            Fd::Polled(a) => Some(a),
            Fd::File(_) => None,
        }
    }
}

/// Whether `fd` is ready for `what` now (a zero-timeout `poll(2)`).
fn poll_now(fd: &OwnedFd, what: nix::poll::PollFlags) -> bool {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(fd.as_fd(), what)];
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
        Ok(n) => n > 0,
        // Cannot tell: report it, the program's own call will say.
        Err(_) => true,
    }
}

fn is_regular_file(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFREG)
}

/// What readiness closures may do: read, write, close, change interest.
pub struct HandleIo<'a> {
    rd: Option<&'a Fd>,
    wr: Option<&'a Fd>,
    flags: &'a mut Flags,
}

#[derive(Debug, Default)]
struct Flags {
    want_read: bool,
    want_write: bool,
    close: bool,
    read_blocked: bool,
    write_blocked: bool,
    /// Readiness is checked again with `poll(2)` before it is reported a
    /// second time (the program reads the fd itself: see
    /// [`HandleSpec::level_triggered`]).
    recheck: bool,
    /// A read edge was cleared while only a hangup was watched: check with
    /// `poll(2)` once read readiness is wanted again.
    edge_lost: bool,
}

impl HandleIo<'_> {
    /// `read(2)` on the read fd; `WouldBlock` once drained (readiness is
    /// then re-armed).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.rd.ok_or(io::ErrorKind::NotConnected)?;
        let r = nix::unistd::read(fd.get(), buf).map_err(io::Error::from);
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.flags.read_blocked = true;
        }
        r
    }

    /// `write(2)` on the write fd; `WouldBlock` when full (readiness is
    /// then re-armed).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.wr.ok_or(io::ErrorKind::NotConnected)?;
        let r = nix::unistd::write(fd.get(), buf).map_err(io::Error::from);
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.flags.write_blocked = true;
        }
        r
    }

    /// Report read readiness (IO::Async's `want_readready`).
    pub fn want_read(&mut self, on: bool) {
        self.flags.want_read = on;
    }

    /// Report write readiness (IO::Async's `want_writeready`).
    pub fn want_write(&mut self, on: bool) {
        self.flags.want_write = on;
    }

    /// Close both fds (once) and stop the notifier.
    pub fn close(&mut self) {
        self.flags.close = true;
    }
}

impl fmt::Debug for HandleIo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleIo")
            .field("flags", &self.flags)
            .finish()
    }
}

/// A readiness callback of a [`Handle`].
pub type ReadyFn = Box<dyn FnMut(&mut HandleIo<'_>) + Send>;
type Ready = ReadyFn;

/// A hangup callback of a [`Handle`].
pub type HangupFn = Box<dyn FnMut() + Send>;

/// How to start a [`Handle`].
pub struct HandleArgs {
    fds: (Option<OwnedFd>, Option<OwnedFd>),
    on_read: Option<Ready>,
    on_write: Option<Ready>,
    on_hangup: Option<HangupFn>,
    want_read: Option<bool>,
    want_write: bool,
    recheck: bool,
}

impl fmt::Debug for HandleArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleArgs")
            .field("want_write", &self.want_write)
            .finish()
    }
}

/// A handle spec under construction.
#[must_use = "a HandleSpec does nothing until it is added"]
#[derive(Debug)]
pub struct HandleSpec {
    name: String,
    args: HandleArgs,
}

impl HandleSpec {
    /// Called inside the notifier whenever the read fd is readable, again
    /// and again while it stays readable (level-triggered; other tasks
    /// and the handle's messages still get their turns between calls).
    pub fn on_read_ready(mut self, f: impl FnMut(&mut HandleIo<'_>) + Send + 'static) -> Self {
        self.args.on_read = Some(Box::new(f));
        self
    }

    /// Called inside the notifier whenever the write fd is writable and
    /// write readiness is wanted, again and again while both hold
    /// (level-triggered, as [`on_read_ready`](Self::on_read_ready)).
    pub fn on_write_ready(mut self, f: impl FnMut(&mut HandleIo<'_>) + Send + 'static) -> Self {
        self.args.on_write = Some(Box::new(f));
        self
    }

    /// Start with write readiness wanted (default off).
    pub fn want_write(mut self, on: bool) -> Self {
        self.args.want_write = on;
        self
    }

    /// Start with read readiness wanted (default on when there is a read
    /// fd).
    pub fn want_read(mut self, on: bool) -> Self {
        self.args.want_read = Some(on);
        self
    }

    /// Called inside the notifier, once, when the other end hangs up
    /// (IO::Async's `on_hangup`; [`HandleEvent::Hangup`] is emitted too).
    pub fn on_hangup(mut self, f: impl FnMut() + Send + 'static) -> Self {
        self.args.on_hangup = Some(Box::new(f));
        self
    }

    /// Level-triggered readiness for programs that read and write the fd
    /// themselves rather than through [`HandleIo`] (what
    /// `Loop::watch_io` does): before readiness is reported again, it is
    /// checked with a zero-timeout `poll(2)`, so a callback that drained
    /// the fd is not called again until new data arrives, and one that
    /// left data is. Costs one `poll(2)` per readiness event.
    pub fn level_triggered(mut self, on: bool) -> Self {
        self.args.recheck = on;
        self
    }
}

impl IntoSpec for HandleSpec {
    type Notifier = Handle;
}

impl From<HandleSpec> for Spec<Handle> {
    fn from(s: HandleSpec) -> Self {
        Spec::once(s.name, s.args).restart(Restart::Temporary)
    }
}

/// A readiness notifier over a read fd and/or a write fd. Without a
/// readiness closure it emits [`HandleEvent`]s instead.
///
/// ```
/// use std::os::fd::OwnedFd;
/// use ioasync::{Loop, io::{Handle, HandleEvent, HandleRef}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let (rx, tx) = std::io::pipe().unwrap();
/// let h = lp
///     .add(Handle::spec("pipe", Some(OwnedFd::from(rx)), Some(OwnedFd::from(tx)))?.want_write(true))
///     .await?;
/// let mut events = h.events::<HandleEvent>()?;
/// assert_eq!(events.recv().await.unwrap(), HandleEvent::WriteReady);
/// // A pipe stays writable: the events come on, and a full stream makes
/// // the handle wait. Drop the stream (or stop wanting) when done.
/// drop(events);
/// h.want_ready(false, false).await?;
/// h.stop().await;
/// # Ok(()) }
/// ```
pub struct Handle {
    rd: Option<Fd>,
    wr: Option<Fd>,
    flags: Flags,
    on_read: Option<Ready>,
    on_write: Option<Ready>,
    on_hangup: Option<HangupFn>,
    ready_r: bool,
    ready_w: bool,
    /// The poll reported a hangup not yet emitted...
    hup: bool,
    /// ...and whether `Hangup` was emitted already.
    hup_sent: bool,
}

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl Handle {
    /// A handle over `read` and/or `write` (they may be two ends of
    /// different pipes, or stdin and stdout). The fds are made
    /// non-blocking and closed exactly once, when the handle closes.
    pub fn spec(
        name: impl Into<String>,
        read: Option<OwnedFd>,
        write: Option<OwnedFd>,
    ) -> Result<HandleSpec> {
        if read.is_none() && write.is_none() {
            return Err(Error::invalid_input(
                "handle",
                "neither a read nor a write fd",
            ));
        }
        for fd in read.iter().chain(write.iter()) {
            nonblocking(fd).map_err(|e| Error::io_at("fcntl", fd.as_raw_fd(), e))?;
        }
        Ok(HandleSpec {
            name: name.into(),
            args: HandleArgs {
                fds: (read, write),
                on_read: None,
                on_write: None,
                on_hangup: None,
                want_read: None,
                want_write: false,
                recheck: false,
            },
        })
    }

    fn io(&mut self) -> HandleIo<'_> {
        HandleIo {
            rd: self.rd.as_ref(),
            wr: self.wr.as_ref(),
            flags: &mut self.flags,
        }
    }
}

impl Notifier for Handle {
    type Args = Once<HandleArgs>;

    fn kind() -> &'static str {
        "handle"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        let (read, write) = args.fds;
        let wrap = |fd: OwnedFd, interest| {
            if is_regular_file(&fd) {
                return Ok(Fd::File(fd));
            }
            let raw = fd.as_raw_fd();
            crate::sys::async_fd(fd, interest)
                .map(Fd::Polled)
                .map_err(|e| Error::io_at("epoll_ctl", raw, e))
        };
        let rd = read.map(|fd| wrap(fd, Interest::READABLE)).transpose()?;
        let wr = write.map(|fd| wrap(fd, Interest::WRITABLE)).transpose()?;
        Ok(Handle {
            flags: Flags {
                want_read: args.want_read.unwrap_or(true) && rd.is_some(),
                want_write: args.want_write && wr.is_some(),
                recheck: args.recheck,
                ..Flags::default()
            },
            rd,
            wr,
            on_read: args.on_read,
            on_write: args.on_write,
            on_hangup: args.on_hangup,
            ready_r: false,
            ready_w: false,
            hup: false,
            hup_sent: false,
        })
    }

    async fn ready(&mut self) {
        let (r, w) = (
            self.flags.want_read && self.rd.is_some(),
            self.flags.want_write && self.wr.is_some(),
        );
        // A regular file is always ready: report it after one yield, so a
        // handle that never drains it cannot starve its neighbours.
        let (fr, fw) = (
            r && self.rd.as_ref().is_some_and(Fd::is_file),
            w && self.wr.as_ref().is_some_and(Fd::is_file),
        );
        if fr || fw {
            tokio::task::yield_now().await;
            self.ready_r |= fr;
            self.ready_w |= fw;
            return;
        }
        let rd = self.rd.as_ref().and_then(Fd::polled);
        let wr = self.wr.as_ref().and_then(Fd::polled);
        if r && std::mem::take(&mut self.flags.edge_lost)
            && rd.is_some_and(|a| poll_now(a.get_ref(), nix::poll::PollFlags::POLLIN))
        {
            self.ready_r = true;
            return;
        }
        // A hangup callback is served while read readiness is off, too.
        let hr = !r && rd.is_some() && self.on_hangup.is_some() && !self.hup_sent;
        // The error condition (EPOLLERR) wakes the handle too and reports
        // as read-ready (write-ready for a write-only fd), as in IO::Async:
        // the program's read or write then gets the pending error.
        tokio::select! {
            Ok(mut g) = async { rd.expect("checked").ready(Interest::READABLE | Interest::ERROR).await }, if r || hr => {
                self.hup |= g.ready().is_read_closed();
                if !r {
                    // Only the hangup is watched: a plain read edge is
                    // dropped now and checked again when reads are wanted.
                    if !g.ready().is_read_closed() {
                        g.clear_ready();
                        self.flags.edge_lost = true;
                    }
                    return;
                }
                // The last read drained the fd: forget the cached readiness
                // and wait for new data; otherwise report it again.
                let drained = self.flags.recheck
                    && !g.ready().is_read_closed()
                    && !g.ready().is_error()
                    && !poll_now(g.get_ref().get_ref(), nix::poll::PollFlags::POLLIN);
                if std::mem::take(&mut self.flags.read_blocked) || drained {
                    g.clear_ready();
                } else {
                    g.retain_ready();
                    self.ready_r = true;
                }
            }
            Ok(mut g) = async { wr.expect("checked").ready(Interest::WRITABLE | Interest::ERROR).await }, if w => {
                self.hup |= g.ready().is_write_closed();
                let full = self.flags.recheck
                    && !g.ready().is_write_closed()
                    && !poll_now(g.get_ref().get_ref(), nix::poll::PollFlags::POLLOUT);
                if std::mem::take(&mut self.flags.write_blocked) || full {
                    g.clear_ready();
                } else {
                    g.retain_ready();
                    self.ready_w = true;
                }
            }
            () = std::future::pending::<()>(), if !r && !w && !hr => {}
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        if std::mem::take(&mut self.hup) && !std::mem::replace(&mut self.hup_sent, true) {
            if let Some(f) = self.on_hangup.as_mut() {
                f();
            }
            ctx.emit(HandleEvent::Hangup).await;
        }
        if std::mem::take(&mut self.ready_r) {
            match self.on_read.take() {
                Some(mut f) => {
                    f(&mut self.io());
                    self.on_read = Some(f);
                }
                None => {
                    ctx.emit(HandleEvent::ReadReady).await;
                    // Nobody reads: stop reporting until asked again.
                    self.flags.want_read = false;
                }
            }
        }
        if std::mem::take(&mut self.ready_w) {
            match self.on_write.take() {
                Some(mut f) => {
                    f(&mut self.io());
                    self.on_write = Some(f);
                }
                None => {
                    ctx.emit(HandleEvent::WriteReady).await;
                    self.flags.want_write = false;
                }
            }
        }
        if self.flags.close {
            self.rd = None;
            self.wr = None;
            ctx.emit(HandleEvent::Closed).await;
            ctx.exit();
        }
    }
}

impl Emits<HandleEvent> for Handle {}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("flags", &self.flags)
            .finish()
    }
}

/// Message: change which readiness the handle reports
/// ([`HandleRef::want_ready`]).
#[derive(Debug)]
pub(crate) struct WantReady {
    /// Report read readiness.
    pub(crate) read: bool,
    /// Report write readiness.
    pub(crate) write: bool,
}

impl Handler<WantReady> for Handle {
    type Reply = ();
    async fn handle(&mut self, m: WantReady, _ctx: &mut Ctx<'_, Self>) {
        self.flags.want_read = m.read;
        self.flags.want_write = m.write;
    }
}

/// Message: replace or remove one of a handle's callbacks
/// ([`HandleRef::set_on_read_ready`] and its siblings). Setting a readiness
/// callback turns that readiness on; removing it turns it off. Replies
/// which callbacks remain: (read, write, hangup).
pub(crate) enum Rewatch {
    /// The read-readiness callback: `Some` sets it, `None` removes it.
    Read(Option<ReadyFn>),
    /// The write-readiness callback.
    Write(Option<ReadyFn>),
    /// The hangup callback.
    Hangup(Option<HangupFn>),
}

impl fmt::Debug for Rewatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (which, set) = match self {
            Rewatch::Read(c) => ("read", c.is_some()),
            Rewatch::Write(c) => ("write", c.is_some()),
            Rewatch::Hangup(c) => ("hangup", c.is_some()),
        };
        f.debug_struct("Rewatch")
            .field("which", &which)
            .field("set", &set)
            .finish()
    }
}

impl Handler<Rewatch> for Handle {
    type Reply = (bool, bool, bool);
    async fn handle(&mut self, m: Rewatch, _ctx: &mut Ctx<'_, Self>) -> (bool, bool, bool) {
        match m {
            Rewatch::Read(f) => {
                self.flags.want_read = f.is_some() && self.rd.is_some();
                self.on_read = f;
            }
            Rewatch::Write(f) => {
                self.flags.want_write = f.is_some() && self.wr.is_some();
                self.on_write = f;
            }
            Rewatch::Hangup(f) => self.on_hangup = f,
        }
        (
            self.on_read.is_some(),
            self.on_write.is_some(),
            self.on_hangup.is_some(),
        )
    }
}

/// Operations on a [`Handle`]'s handle: what it reports and the
/// callbacks it runs, changed from outside (inside a callback,
/// [`HandleIo`] does the same).
pub trait HandleRef {
    /// Which readiness it reports from now on (IO::Async's
    /// `want_readready` / `want_writeready`), each only for an fd it has.
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use ioasync::{Loop, io::{Handle, HandleEvent, HandleRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (_rx, tx) = std::io::pipe().unwrap();
    /// let h = lp.add(Handle::spec("out", None, Some(OwnedFd::from(tx)))?).await?;
    /// let mut events = h.events::<HandleEvent>()?;
    /// h.want_ready(false, true).await?; // an empty pipe is writable
    /// assert_eq!(events.recv().await, Some(HandleEvent::WriteReady));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the change may still be made: once
    /// queued it is handled, only the reply is lost.
    fn want_ready(&self, read: bool, write: bool) -> impl Future<Output = Result<()>> + Send;

    /// Replaces its read-readiness callback (`Some`, which turns read
    /// readiness on when it has a read fd) or removes it (`None`, which
    /// turns it off); what `Loop::watch_io` and `Loop::unwatch_io` do.
    /// Resolves with which callbacks it has now: (read, write, hangup).
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use ioasync::{Loop, io::{Handle, HandleIo, HandleRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (rx, tx) = std::io::pipe().unwrap();
    /// let h = lp.add(Handle::spec("in", Some(OwnedFd::from(rx)), None)?.on_read_ready(|_| {})).await?;
    /// let (got, mut seen) = tokio::sync::mpsc::unbounded_channel();
    /// let left = h
    ///     .set_on_read_ready(Some(Box::new(move |io: &mut HandleIo<'_>| {
    ///         let mut buf = [0u8; 16];
    ///         if let Ok(n) = io.read(&mut buf) {
    ///             let _ = got.send(buf[..n].to_vec());
    ///         }
    ///     })))
    ///     .await?;
    /// assert_eq!(left, (true, false, false));
    /// std::io::Write::write_all(&mut &tx, b"ping").unwrap();
    /// assert_eq!(seen.recv().await.unwrap(), b"ping");
    /// assert_eq!(h.set_on_read_ready(None).await?, (false, false, false));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the change may still be made: once
    /// queued it is handled, only the reply is lost.
    fn set_on_read_ready(
        &self,
        f: Option<ReadyFn>,
    ) -> impl Future<Output = Result<(bool, bool, bool)>> + Send;

    /// Replaces (`Some`, turning write readiness on when it has a write
    /// fd) or removes (`None`, turning it off) its write-readiness
    /// callback; resolves with which callbacks it has now: (read, write,
    /// hangup).
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use ioasync::{Loop, io::{Handle, HandleIo, HandleRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (rx, tx) = std::io::pipe().unwrap();
    /// let h = lp.add(Handle::spec("out", None, Some(OwnedFd::from(tx)))?).await?;
    /// let (ready, mut seen) = tokio::sync::mpsc::unbounded_channel();
    /// let left = h
    ///     .set_on_write_ready(Some(Box::new(move |io: &mut HandleIo<'_>| {
    ///         io.want_write(false); // once is enough
    ///         let _ = ready.send(());
    ///     })))
    ///     .await?;
    /// assert_eq!(left, (false, true, false));
    /// seen.recv().await.unwrap();
    /// # drop(rx);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the change may still be made: once
    /// queued it is handled, only the reply is lost.
    fn set_on_write_ready(
        &self,
        f: Option<ReadyFn>,
    ) -> impl Future<Output = Result<(bool, bool, bool)>> + Send;

    /// Replaces (`Some`) or removes (`None`) its hangup callback; resolves
    /// with which callbacks it has now: (read, write, hangup).
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use ioasync::{Loop, io::{Handle, HandleRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (rx, tx) = std::io::pipe().unwrap();
    /// // Only the hangup is watched: no read readiness is wanted.
    /// let h = lp.add(Handle::spec("in", Some(OwnedFd::from(rx)), None)?.want_read(false)).await?;
    /// let (hung, mut seen) = tokio::sync::mpsc::unbounded_channel();
    /// let left = h.set_on_hangup(Some(Box::new(move || { let _ = hung.send(()); }))).await?;
    /// assert_eq!(left, (false, false, true));
    /// drop(tx);
    /// seen.recv().await.unwrap();
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the change may still be made: once
    /// queued it is handled, only the reply is lost.
    fn set_on_hangup(
        &self,
        f: Option<HangupFn>,
    ) -> impl Future<Output = Result<(bool, bool, bool)>> + Send;
}

impl HandleRef for NotifierRef<Handle> {
    async fn want_ready(&self, read: bool, write: bool) -> Result<()> {
        self.ask(WantReady { read, write }).await
    }

    async fn set_on_read_ready(&self, f: Option<ReadyFn>) -> Result<(bool, bool, bool)> {
        self.ask(Rewatch::Read(f)).await
    }

    async fn set_on_write_ready(&self, f: Option<ReadyFn>) -> Result<(bool, bool, bool)> {
        self.ask(Rewatch::Write(f)).await
    }

    async fn set_on_hangup(&self, f: Option<HangupFn>) -> Result<(bool, bool, bool)> {
        self.ask(Rewatch::Hangup(f)).await
    }
}
