//! The spawn threads: every child is forked (and exec'ed, by std) from a
//! dedicated thread that lives as long as the process (one, and up to
//! four when spawns overlap; none ever ends).
//!
//! Linux's parent-death signal (`PR_SET_PDEATHSIG`) fires when the
//! *thread* that forked the child exits, not the process. Forking from a
//! caller's thread would tie the child to that thread: a `std::thread`
//! that ends, or a `spawn_blocking` thread tokio retires, would take its
//! children with it. Spawn threads never end, so the signal means "this
//! process died". The first is started on the first spawn.
//!
//! The thread enters the caller's tokio runtime while it spawns, so the
//! child is registered with that runtime's reactor (pidfd or SIGCHLD) and
//! is waited for there.

use std::{
    io,
    os::fd::OwnedFd,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
};

use crate::sys;

type Job = Box<dyn FnOnce() + Send>;

/// At most this many spawn threads: a spawn thread spends most of a spawn
/// blocked (std waits for the child's exec), so a few overlap well.
const MAX_THREADS: usize = 4;

struct Pool {
    tx: mpsc::Sender<Job>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    threads: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);
/// Spawn threads waiting for a job.
static IDLE: AtomicUsize = AtomicUsize::new(0);

/// Queues `job`; starts a spawn thread when none is idle (up to
/// [`MAX_THREADS`]; they never end).
fn submit(job: Job) -> io::Result<()> {
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let pool = match &mut *slot {
        Some(pool) => pool,
        None => {
            let (tx, rx) = mpsc::channel::<Job>();
            slot.insert(Pool {
                tx,
                rx: Arc::new(Mutex::new(rx)),
                threads: 0,
            })
        }
    };
    if pool.threads == 0 || (IDLE.load(Ordering::Acquire) == 0 && pool.threads < MAX_THREADS) {
        let rx = pool.rx.clone();
        let started = std::thread::Builder::new()
            .name("ioasync-spawn".into())
            .spawn(move || {
                loop {
                    IDLE.fetch_add(1, Ordering::AcqRel);
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    IDLE.fetch_sub(1, Ordering::AcqRel);
                    let Ok(job) = job else { return };
                    // A panic in one spawn must not end the thread.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            });
        match started {
            Ok(_) => pool.threads += 1,
            // Could not add one: the others serve (but there must be one).
            Err(e) if pool.threads == 0 => return Err(e),
            Err(_) => {}
        }
    }
    pool.tx
        .send(job)
        .map_err(|_| io::Error::other("the spawn threads are gone"))
}

/// What a spawn hands to the thread.
pub(crate) struct SpawnJob {
    pub(crate) cmd: tokio::process::Command,
    /// Child-side fds: open until the spawn returns.
    pub(crate) keep: Vec<OwnedFd>,
    /// The highest fd number the child names (see [`sys::reserve_fds`]).
    pub(crate) max_fd: i32,
    /// Sent to a child nobody waits for any more (the caller was
    /// cancelled while the spawn was queued), with whether it leads its
    /// process group.
    pub(crate) abandon: (i32, bool),
}

fn no_runtime() -> io::Error {
    io::Error::other("must be called within a tokio runtime")
}

impl SpawnJob {
    fn run(self, handle: &tokio::runtime::Handle) -> io::Result<tokio::process::Child> {
        let SpawnJob {
            mut cmd,
            keep,
            max_fd,
            ..
        } = self;
        let _held = sys::reserve_fds(max_fd);
        let _rt = handle.enter();
        // Managed before any watch of all children may look (see children.rs).
        let child = crate::children::spawning(|| cmd.spawn(), |c| c.as_ref().ok()?.id());
        drop(keep);
        child
    }

    /// Spawns on the spawn thread and waits (blocking) for the result.
    pub(crate) fn spawn_blocking(self) -> io::Result<tokio::process::Child> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| no_runtime())?;
        let (tx, rx) = mpsc::sync_channel(1);
        submit(Box::new(move || {
            let _ = tx.send(self.run(&handle));
        }))?;
        rx.recv()
            .map_err(|_| io::Error::other("the spawn thread dropped the request"))?
    }

    /// Spawns on the spawn thread; the caller's thread is free meanwhile.
    /// Cancelled, it leaves the child to be signalled and reaped.
    pub(crate) async fn spawn(self) -> io::Result<tokio::process::Child> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| no_runtime())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (sig, group) = self.abandon;
        submit(Box::new(move || {
            if tx.is_closed() {
                return; // cancelled before it started
            }
            let child = self.run(&handle).map(|c| Unclaimed {
                child: Some(c),
                sig,
                group,
            });
            // Cancelled during the spawn: dropped here, the child is
            // signalled (see Unclaimed).
            let _ = tx.send(child);
        }))?;
        let mut child = rx
            .await
            .map_err(|_| io::Error::other("the spawn thread dropped the request"))??;
        Ok(child.child.take().expect("claimed once"))
    }
}

/// A spawned child on its way to the caller. Dropped unclaimed (the
/// caller was cancelled before it received it), it sends the child the
/// abandon signal; tokio's orphan queue reaps it.
struct Unclaimed {
    child: Option<tokio::process::Child>,
    sig: i32,
    group: bool,
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            sys::signal(child.id().unwrap_or(0), self.group, self.sig);
        }
    }
}
