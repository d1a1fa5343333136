//! [`FunctionWorker`]: one worker process of a [`Function`](crate::Function)
//! pool, a temporary child notifier of the pool in the tree.
//!
//! The pool writes calls to the worker's socket and reads the replies
//! itself (no extra hop per call); the worker notifier owns the process:
//! it is named `worker-<pid>`, ends when the process does (an ordinary
//! child exit: `Normal` when the pool retired it, a failure naming the
//! exit status when it died unasked or was killed for a fault), and, when
//! stopped while its process lives, ends the process: EOF on its socket,
//! `SIGTERM` at once if it is running a call, `SIGKILL` after the grace.

use std::{
    os::unix::net::UnixStream,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ioasync_core::{Ctx, Error, ErrorKind, Notifier, Once, Result};
use ioasync_process::{ExitStatus, SpawnedChild};

/// What a pool and its worker notifier share about one worker.
#[derive(Debug, Default)]
pub(crate) struct WorkerShared {
    /// The pool asked it to end (idle, recycled, pool stopping): its exit
    /// is normal unless `fault` says otherwise.
    pub(crate) asked: AtomicBool,
    /// It is running a call.
    pub(crate) busy: AtomicBool,
    /// Why the pool killed it (a bad frame, a call past its deadline).
    pub(crate) fault: Mutex<Option<Error>>,
    /// How its process ended, once it has ("exited with status 0",
    /// "killed by signal 9 (SIGKILL)").
    pub(crate) status: Mutex<Option<String>>,
}

impl WorkerShared {
    pub(crate) fn set_fault(&self, err: Error) {
        let mut f = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(err);
    }

    pub(crate) fn status(&self) -> String {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "ended".to_owned())
    }
}

/// What a worker notifier starts from (made by its pool).
pub struct WorkerArgs {
    pub(crate) child: SpawnedChild,
    /// A duplicate of the pool's end of the socket: shutting its write
    /// side down tells the process to finish.
    pub(crate) sock: UnixStream,
    pub(crate) shared: Arc<WorkerShared>,
    pub(crate) grace: Duration,
}

impl std::fmt::Debug for WorkerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerArgs")
            .field("pid", &self.child.pid())
            .finish()
    }
}

/// One worker process of a [`Function`](crate::Function) pool, shown in
/// the tree as the pool's child `worker-<pid>`. The pool starts and
/// retires its workers; users read them in snapshots and supervision
/// events:
///
/// ```standalone_crate
/// use ioasync::{worker::{Entry, Function, FunctionRef, run_if_worker}, Loop};
///
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// fn main() -> ioasync::Result<()> {
///     // First thing: a worker process runs its entry here and exits.
///     run_if_worker([Entry::function("double", double)]);
///     let lp = Loop::new()?;
///     let l = lp.clone();
///     lp.block_on(async move {
///         let pool = l.add(Function::spec("pool", "double").min_workers(1)).await?;
///         let _: u64 = pool.call(&21u64).await?;
///         let pid = pool.stats().await?.pids[0];
///         let tree = l.tree();
///         let pool_node = tree.find("/pool").expect("the pool");
///         let worker = &pool_node.children[0];
///         assert_eq!((worker.kind, worker.name.clone()), ("worker", format!("worker-{pid}")));
///         Ok(())
///     })
/// }
/// ```
pub struct FunctionWorker {
    child: SpawnedChild,
    sock: UnixStream,
    shared: Arc<WorkerShared>,
    grace: Duration,
    status: Option<Result<ExitStatus>>,
}

impl FunctionWorker {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    fn record(&self, how: &Result<ExitStatus>) {
        let text = match how {
            Ok(st) => st.to_string(),
            Err(e) => e.to_string(),
        };
        *self.shared.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }

    /// Waits up to `d` for the process to end.
    async fn wait_for(&mut self, d: Duration) -> Option<Result<ExitStatus>> {
        tokio::time::timeout(d, self.child.wait()).await.ok()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.pid() as i32);
        let _ = nix::sys::signal::kill(pid, sig);
    }
}

impl Notifier for FunctionWorker {
    type Args = Once<WorkerArgs>;

    fn kind() -> &'static str {
        "worker"
    }

    async fn init(args: Once<WorkerArgs>, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        ctx.set_detail(format!("pid={}", args.child.pid()));
        Ok(FunctionWorker {
            child: args.child,
            sock: args.sock,
            shared: args.shared,
            grace: args.grace,
            status: None,
        })
    }

    async fn ready(&mut self) {
        if self.status.is_some() {
            return std::future::pending().await;
        }
        // Cancel safe: the next turn waits again.
        let st = self.child.wait().await;
        self.status = Some(st);
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(st) = &self.status else {
            return;
        };
        self.record(st);
        let how = self.shared.status();
        let pid = self.child.pid();
        let fault = self
            .shared
            .fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match fault {
            Some(fault) => ctx.fail(Error::new(
                "worker",
                fault.kind(),
                format!("worker {pid} killed ({}): {how}", fault.message()),
            )),
            None if self.shared.asked.load(Ordering::Acquire) => ctx.exit(),
            None => ctx.fail(Error::new(
                "worker",
                ErrorKind::PeerDied,
                format!("worker {pid} {how}"),
            )),
        }
    }

    async fn on_stop(&mut self, _ctx: &mut Ctx<'_, Self>) {
        if self.status.is_some() {
            return;
        }
        // Stopped by the tree (the pool stops or restarts): end the
        // process and reap it.
        self.shared.asked.store(true, Ordering::Release);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        if self.shared.busy.load(Ordering::Acquire) {
            self.signal(nix::sys::signal::Signal::SIGTERM);
        }
        let mut st = self.wait_for(self.grace).await;
        if st.is_none() {
            tracing::warn!(
                pid = self.child.pid(),
                "worker did not end in its grace: SIGKILL"
            );
            self.signal(nix::sys::signal::Signal::SIGKILL);
            st = self.wait_for(Duration::from_secs(1)).await;
        }
        if let Some(st) = &st {
            self.record(st);
        }
        self.status = st;
    }
}

impl std::fmt::Debug for FunctionWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionWorker")
            .field("pid", &self.child.pid())
            .finish()
    }
}
