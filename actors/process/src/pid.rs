//! [`Pid`]: fires once with the exit status of a child process started by
//! other means (IO::Async::PID), through a pidfd: no SIGCHLD handler, no
//! polling.

use std::fmt;

use ioasync_core::{Ctx, Emits, Error, Notifier, Once, Restart, Result, Spec};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use std::os::fd::{AsFd, OwnedFd};
use tokio::io::unix::AsyncFd;

use crate::{ExitStatus, sys};

/// How to start a [`Pid`] watcher.
#[derive(Debug)]
pub struct PidArgs {
    pid: u32,
}

/// Watches a child process of this program (one not started through
/// ioasync, which reaps its own): emits its [`ExitStatus`] once, reaps
/// it, and leaves the tree.
pub struct Pid {
    pid: u32,
    fd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Pid {
    /// Watch child `pid`.
    pub fn spec(name: impl Into<String>, pid: u32) -> Spec<Pid> {
        let args = PidArgs { pid };
        Spec::new(name, Once::new(args)).restart(Restart::Temporary)
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
            ctx.stop();
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
