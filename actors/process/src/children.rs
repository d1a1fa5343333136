//! [`Children`]: IO::Async's `watch_process(0, ...)` — the exit of every
//! child of this process that nothing else watches: the children the
//! program started by other means (`std::process`, a library) and never
//! waits for.
//!
//! Children ioasync runs itself ([`Process`](crate::Process),
//! [`spawn_child`](crate::spawn_child), [`run_child`](crate::run_child))
//! and those a [`Pid`](crate::Pid) watches are *managed*: a registry
//! holds their pids, and they are never reaped here. On each `SIGCHLD`
//! the watcher lists this process's children (`/proc/self/task/*/children`,
//! every thread's) and reaps, without blocking, each unmanaged one that
//! has exited. While a spawn is in flight (its pid not known yet) the
//! scan waits for it, so a child that exits at once is never taken from
//! its Process.
//!
//! Like IO::Async's, it takes every other child: a child started with
//! `std::process::Command` and waited for later by its own code must not
//! be left to a running `Children` watcher, and one to be watched by pid
//! ([`Loop::watch_process`](../ioasync/struct.Loop.html#method.watch_process))
//! must be watched before it can exit (on a multi-thread runtime the
//! watcher may run between its spawn and its watch).

use std::{
    collections::HashSet,
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use ioasync_core::{Ctx, Emits, Error, Notifier, Restart, Result, Spec};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use tokio::{
    signal::unix::{Signal as SigStream, SignalKind, signal},
    sync::Notify,
};

use crate::ExitStatus;

static MANAGED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);
static SPAWNING: AtomicUsize = AtomicUsize::new(0);
static SPAWNED: Notify = Notify::const_new();

fn managed() -> std::sync::MutexGuard<'static, Option<HashSet<u32>>> {
    MANAGED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks `pid` as reaped by its own watcher.
pub(crate) fn manage(pid: u32) {
    managed().get_or_insert_default().insert(pid);
}

/// Runs a spawn: no scan reaps while it is in flight, and the child's pid
/// (from `pid_of`) is managed before the scans resume.
pub(crate) fn spawning<T>(spawn: impl FnOnce() -> T, pid_of: impl Fn(&T) -> Option<u32>) -> T {
    SPAWNING.fetch_add(1, Ordering::SeqCst);
    let out = spawn();
    if let Some(pid) = pid_of(&out) {
        manage(pid);
    }
    SPAWNING.fetch_sub(1, Ordering::SeqCst);
    SPAWNED.notify_waiters();
    out
}

/// One unwatched child's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildExit {
    /// The child's pid.
    pub pid: u32,
    /// How it ended.
    pub status: ExitStatus,
}

/// Watches every child of this process that nothing else watches (see the
/// module docs): emits a [`ChildExit`] for each and reaps it.
///
/// ```
/// use ioasync::{Loop, process::{ChildExit, ExitStatus}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let _all = lp
///     .watch_children(move |e: ChildExit| {
///         let _ = tx.send(e);
///     })
///     .await?;
/// let child = std::process::Command::new("sh").args(["-c", "exit 4"]).spawn().unwrap();
/// let exit = rx.recv().await.unwrap();
/// assert_eq!((exit.pid, exit.status), (child.id(), ExitStatus::Code(4)));
/// # Ok(()) }
/// ```
pub struct Children {
    sigchld: SigStream,
    /// The first scan has not run: children that exited before the
    /// watcher started are found by it.
    first: bool,
}

impl Children {
    /// A watcher of every unwatched child.
    pub fn spec(name: impl Into<String>) -> Spec<Children> {
        Spec::new(name, ()).restart(Restart::Permanent)
    }

    /// This process's children (every thread's), as `/proc` lists them.
    fn list() -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
        out
    }

    /// Reaps the unmanaged children that have exited.
    fn scan() -> Vec<ChildExit> {
        let children = Self::list();
        let mut gone = Vec::new();
        {
            let mut set = managed();
            let set = set.get_or_insert_default();
            // A managed pid that is no longer a child was reaped by its own
            // watcher: forget it (its number may be reused).
            let now: HashSet<u32> = children.iter().copied().collect();
            set.retain(|p| now.contains(p));
            for pid in children.iter().filter(|p| !set.contains(p)) {
                let flags = WaitPidFlag::WNOHANG;
                let status = match waitpid(nix::unistd::Pid::from_raw(*pid as i32), Some(flags)) {
                    Ok(WaitStatus::Exited(_, code)) => ExitStatus::Code(code),
                    Ok(WaitStatus::Signaled(_, sig, core)) => {
                        match ioasync_signal::SignalKind::from_raw(sig as i32) {
                            Ok(signal) => ExitStatus::Signal {
                                signal,
                                core_dumped: core,
                            },
                            Err(_) => continue,
                        }
                    }
                    _ => continue,
                };
                gone.push(ChildExit { pid: *pid, status });
            }
        }
        gone
    }
}

impl Notifier for Children {
    type Args = ();

    fn kind() -> &'static str {
        "children"
    }

    async fn init((): (), _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let sigchld = signal(SignalKind::child()).map_err(|e| Error::io("signal", e))?;
        Ok(Children {
            sigchld,
            first: true,
        })
    }

    async fn ready(&mut self) {
        // A child that exited before the watcher started: the first scan
        // runs at once.
        if std::mem::take(&mut self.first) {
            return;
        }
        self.sigchld.recv().await;
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        loop {
            // A spawn in flight: its child may be among them, unmanaged
            // yet. Wait until no spawn is (a spawn is short).
            while SPAWNING.load(Ordering::SeqCst) > 0 {
                let spawned = SPAWNED.notified();
                if SPAWNING.load(Ordering::SeqCst) == 0 {
                    break;
                }
                spawned.await;
            }
            let gone = Self::scan();
            if gone.is_empty() {
                break;
            }
            for e in gone {
                ctx.emit(e).await;
            }
        }
    }
}

impl Emits<ChildExit> for Children {}

impl fmt::Debug for Children {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Children").finish_non_exhaustive()
    }
}
