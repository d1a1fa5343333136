//! [`Pid`]: fires once with the exit status of a child process started by
//! other means (IO::Async::PID), through a pidfd: no SIGCHLD handler, no
//! polling.

use std::fmt;

use ioasync_core::{
    Ctx, Emits, Error, Handler, Notifier, NotifierRef, Once, Restart, Result, Spec,
};
use ioasync_signal::SignalKind;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use std::os::fd::{AsFd, OwnedFd};
use tokio::io::unix::AsyncFd;

use crate::{ExitStatus, Kill, sys};

/// How to start a [`Pid`] watcher.
#[derive(Debug)]
pub struct PidArgs {
    pid: u32,
}

/// Watches a child process of this program (one not started through
/// ioasync, which reaps its own): emits its [`ExitStatus`] once, reaps
/// it, and leaves the tree.
///
/// ```
/// use ioasync::{Loop, notifier::Subscription, process::{ExitStatus, Pid}};
///
/// # #[tokio::main]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let child = std::process::Command::new("sh").args(["-c", "exit 5"]).spawn().unwrap();
/// let (sub, mut exits) = Subscription::stream(1);
/// let watcher = lp.add(Pid::spec("sh", child.id()).subscribe(sub)).await?;
/// let status: ExitStatus = exits.recv().await.unwrap();
/// assert_eq!(status.code(), Some(5));
/// watcher.wait_stopped().await; // it left the tree
/// assert!(lp.lookup::<Pid>(watcher.path()).is_none());
/// # Ok(()) }
/// ```
pub struct Pid {
    pid: u32,
    fd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Pid {
    /// Watch child `pid`.
    pub fn spec(name: impl Into<String>, pid: u32) -> Spec<Pid> {
        let args = PidArgs { pid };
        Spec::once(name, args).restart(Restart::Temporary)
    }

    fn reap(fd: &AsyncFd<OwnedFd>) -> Option<ExitStatus> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
        match waitid(Id::PIDFd(fd.get_ref().as_fd()), flags) {
            Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, core)) => Some(ExitStatus::Signal {
                signal: ioasync_signal::SignalKind::from_raw(sig as i32).ok()?,
                core_dumped: core,
            }),
            _ => None,
        }
    }
}

impl Notifier for Pid {
    type Args = Once<PidArgs>;

    fn kind() -> &'static str {
        "pid"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        let fd = sys::pidfd_open(args.pid as i32)
            .and_then(sys::async_fd)
            .map_err(|e| Error::io_at("pidfd_open", args.pid, e))?;
        ctx.set_detail(format!("pid={}", args.pid));
        // Reaped here, never by a watch of all children.
        crate::children::manage(args.pid);
        Ok(Pid {
            pid: args.pid,
            fd,
            status: None,
        })
    }

    async fn ready(&mut self) {
        if self.status.is_some() {
            return std::future::pending().await;
        }
        let status = match self.fd.readable().await {
            Ok(mut g) => {
                let st = Pid::reap(&self.fd);
                if st.is_none() {
                    g.clear_ready();
                }
                st
            }
            Err(_) => None,
        };
        self.status = status;
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let Some(st) = self.status {
            ctx.emit(st).await;
            ctx.exit();
        }
    }
}

impl Emits<ExitStatus> for Pid {}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pid")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish()
    }
}

impl Handler<Kill> for Pid {
    type Reply = Result<()>;
    async fn handle(&mut self, Kill(sig): Kill, _ctx: &mut Ctx<'_, Self>) -> Result<()> {
        if self.status.is_some() {
            return Err(Error::closed(
                "kill",
                format!("process {} has exited", self.pid),
            ));
        }
        sys::pidfd_send_signal(self.fd.get_ref().as_fd(), sig.as_raw())
            .map_err(|e| Error::io_at("kill", format!("process {}", self.pid), e))
    }
}

/// Operations on a [`Pid`] watcher's handle.
pub trait PidRef {
    /// Sends `sig` to the watched process (IO::Async::PID's `kill`):
    /// through its pidfd, so never to another process that reused its
    /// pid. Fails (op `kill`) once it has exited, with the errno when the
    /// kernel refuses (`EPERM`).
    ///
    /// (Named `signal`: [`NotifierRef::kill`] already kills the watcher
    /// itself.)
    ///
    /// ```
    /// use ioasync::{process::{ExitStatus, Pid, PidRef}, signal::SignalKind, Loop};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    /// let (sub, mut exits) = ioasync::notifier::Subscription::stream(1);
    /// let watcher = lp.add(Pid::spec("sleeper", child.id()).subscribe(sub)).await?;
    /// watcher.signal(SignalKind::terminate()).await?;
    /// let status: ExitStatus = exits.recv().await.unwrap();
    /// assert_eq!(status.signal(), Some(SignalKind::terminate()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the signal may still be sent: once the
    /// request is queued the watcher handles it, only the reply is lost.
    fn signal(&self, sig: SignalKind) -> impl Future<Output = Result<()>> + Send;
}

impl PidRef for NotifierRef<Pid> {
    async fn signal(&self, sig: SignalKind) -> Result<()> {
        self.ask(Kill(sig)).await.map_err(|e| {
            if e.op() == "kill" {
                e
            } else {
                // The watcher left the tree: the process exited.
                Error::closed(
                    "kill",
                    format!("{}: the process has exited ({e})", self.path()),
                )
            }
        })
    }
}
