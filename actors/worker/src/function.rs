//! [`Function`]: a pool of worker processes running one entry point
//! (IO::Async::Function).

use std::{collections::VecDeque, ffi::OsString, fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ioasync_core::{
    Ctx, Error, ErrorKind, Handler, Notifier, NotifierRef, Once, Overflow, Restart, Result, Spec,
    Subscription,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{
    net::unix::OwnedWriteHalf,
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    time::Instant,
};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::{
    frame::{self, CALL, REPLY_ERR, REPLY_OK},
    worker::{FunctionWorker, WorkerArgs, WorkerShared},
};

/// How to start a [`Function`] pool.
#[derive(Debug, Clone)]
pub struct FunctionArgs {
    entry: String,
    exec_args: Vec<OsString>,
    min_workers: usize,
    max_workers: usize,
    idle_timeout: Option<Duration>,
    max_worker_calls: Option<u32>,
    queue: usize,
    overflow: Overflow,
    max_frame: usize,
    call_timeout: Option<Duration>,
    stop_grace: Duration,
    output: WorkerOutput,
    exit_on_die: bool,
    setup: Option<crate::entry::WorkerSetup>,
    call_ttl: Option<Duration>,
    stuck_after: Option<Duration>,
    dead_letter: Option<DeadLetterHook>,
    offload: Option<Offload>,
}

/// Runs one offloaded call: encoded arguments and the call's options in,
/// the encoded result out (see [`FunctionSpec::offload`]).
type OffloadFn = dyn Fn(Bytes, CallOptions) -> futures_util::future::BoxFuture<'static, Result<Bytes>>
    + Send
    + Sync;

/// Where a pool sends the calls its own workers have no room for.
#[derive(Clone)]
struct Offload {
    run: Arc<OffloadFn>,
    lanes: usize,
}

impl fmt::Debug for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offload")
            .field("lanes", &self.lanes)
            .finish()
    }
}

/// A call that failed for good, handed to the pool's dead-letter hook
/// ([`FunctionSpec::dead_letter`]) with the reason: past its deadline or
/// its TTL, its worker stuck, dead or broken (and the call not retried),
/// the entry panicked, dropped by a full queue, or the pool stopped. A
/// call whose caller gave up is not one.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The entry the pool runs.
    pub entry: Arc<str>,
    /// The call's arguments, encoded ([`DeadLetter::args`] decodes them).
    pub payload: Bytes,
    /// Why it failed: the error its caller received.
    pub error: Error,
    /// Times it was handed to a worker.
    pub attempts: u32,
}

impl DeadLetter {
    /// The call's arguments, decoded as `A`.
    pub fn args<A: DeserializeOwned>(&self) -> Result<A> {
        frame::decode(&self.payload)
    }
}

#[derive(Clone)]
struct DeadLetterHook(Arc<dyn Fn(DeadLetter) + Send + Sync>);

impl fmt::Debug for DeadLetterHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeadLetterHook(..)")
    }
}

/// Where a worker's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WorkerOutput {
    /// The parent's stdout and stderr (the default, as IO::Async's
    /// workers): a worker's `println!` reaches the parent's stdout.
    #[default]
    Inherit,
    /// `/dev/null` for both.
    Null,
}

/// A [`Function`] spec under construction.
#[derive(Debug, Clone)]
#[must_use = "a FunctionSpec does nothing until it is added"]
pub struct FunctionSpec {
    name: String,
    args: FunctionArgs,
}

impl FunctionSpec {
    /// Arguments for the re-executed binary before it runs the entry (a
    /// test binary needs `--exact <test> --nocapture`, naming the `#[test]`
    /// that calls [`run_if_worker`](crate::run_if_worker)).
    pub fn exec_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.exec_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Workers kept even when idle (default 0).
    pub fn min_workers(mut self, n: usize) -> Self {
        self.args.min_workers = n;
        self
    }

    /// Workers at most (default 4).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.args.max_workers = n.max(1);
        self
    }

    /// Workers idle this long are stopped, down to `min_workers`.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.args.idle_timeout = Some(d);
        self
    }

    /// A worker is replaced after this many calls (recycling).
    pub fn max_worker_calls(mut self, n: u32) -> Self {
        self.args.max_worker_calls = Some(n.max(1));
        self
    }

    /// Calls waiting for a worker, at most (default 1024). The queue's
    /// overflow policy is `Wait`: past the bound, [`FunctionRef::call`]
    /// waits for room (backpressure) and [`FunctionRef::try_call`] fails at
    /// once with a `Full` error naming the queue and its bound.
    pub fn queue(mut self, n: usize) -> Self {
        self.args.queue = n.max(1);
        self
    }

    /// What [`FunctionRef::call`] does when the call queue is full (default
    /// `Wait`): wait for room; `Fail` or `DropNewest`: the new call fails
    /// at once with a `Full` error; `DropOldest`: the oldest waiting call
    /// fails with a `Full` error ("dropped") and the new one takes its place.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.args.overflow = overflow;
        self
    }

    /// Default per-call timeout (none by default). A call past it fails
    /// with a `Timeout` error; a worker running it is killed and replaced.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.args.call_timeout = Some(d);
        self
    }

    /// How long a stopping worker may take to end (default 1 s): when the
    /// pool stops, an idle worker gets EOF and a busy one `SIGTERM`;
    /// whatever still runs after this gets `SIGKILL`. Keep it below the
    /// pool's stop timeout.
    pub fn stop_grace(mut self, d: Duration) -> Self {
        self.args.stop_grace = d;
        self
    }

    /// A worker whose call failed (a panic, arguments that do not decode)
    /// is retired after it answers (IO::Async's `exit_on_die`; default
    /// false: the worker lives on). Its replacement starts as calls need.
    pub fn exit_on_die(mut self, on: bool) -> Self {
        self.args.exit_on_die = on;
        self
    }

    /// Sets each worker's command up before it is spawned (IO::Async's
    /// `setup`): environment, working directory, rlimits, umask, nice,
    /// uid/gid (see [`Command`](ioasync_process::Command)). Applied to
    /// every worker, replacements included.
    pub fn worker_setup(
        mut self,
        setup: impl Fn(&mut ioasync_process::Command) + Send + Sync + 'static,
    ) -> Self {
        self.args.setup = Some(crate::entry::WorkerSetup::new(setup));
        self
    }

    /// Default time a call may wait in the queue before a worker takes it
    /// (its time to live; none by default): past it the call fails with a
    /// `Timeout` error naming the TTL, without running. Per call:
    /// [`CallOptions::ttl`].
    pub fn call_ttl(mut self, d: Duration) -> Self {
        self.args.call_ttl = Some(d);
        self
    }

    /// Default dead man's switch for running calls (none by default): a
    /// worker that neither answers nor sends a [`heartbeat`](crate::heartbeat)
    /// within this long of taking the call (or of its last heartbeat) is
    /// stuck: it is killed and replaced, and the call runs again elsewhere
    /// when retry-safe, else fails with a `Timeout` error naming the
    /// worker. Per call: [`CallOptions::stuck_after`].
    pub fn stuck_after(mut self, d: Duration) -> Self {
        self.args.stuck_after = Some(d);
        self
    }

    /// Receives each call that failed for good, with the reason (see
    /// [`DeadLetter`]); runs inside the pool, so keep it short (send the
    /// letter on, e.g. into a channel).
    pub fn dead_letter(mut self, hook: impl Fn(DeadLetter) + Send + Sync + 'static) -> Self {
        self.args.dead_letter = Some(DeadLetterHook(Arc::new(hook)));
        self
    }

    /// Calls beyond the pool's own workers (all busy, `max_workers`
    /// running) go to `run`, up to `lanes` at once, before any waits in
    /// the queue: workers elsewhere, such as the worker hosts of a remote
    /// pool over NATS (`ioasync_nats::offload`), running the same entry.
    /// `run` gets the call's encoded arguments, what is left of its
    /// timeout and whether it is retry-safe, and owns retries and
    /// deadlines from there; its error is the caller's (and the
    /// dead-letter hook's).
    pub fn offload(
        mut self,
        lanes: usize,
        run: impl Fn(Bytes, CallOptions) -> futures_util::future::BoxFuture<'static, Result<Bytes>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.args.offload = Some(Offload {
            run: Arc::new(run),
            lanes: lanes.max(1),
        });
        self
    }

    /// Where workers' stdout and stderr go (default: the parent's).
    pub fn worker_output(mut self, output: WorkerOutput) -> Self {
        self.args.output = output;
        self
    }
}

impl ioasync_core::IntoSpec for FunctionSpec {
    type Notifier = Function;
}

impl From<FunctionSpec> for Spec<Function> {
    fn from(s: FunctionSpec) -> Self {
        Spec::new(s.name, s.args).restart(Restart::Permanent)
    }
}

/// Options of one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// Fail with a `Timeout` error past this long (queueing included).
    pub timeout: Option<Duration>,
    /// The call may run again on another worker if its worker dies
    /// (it is idempotent): it is retried once.
    pub retry_safe: bool,
    /// Its place among queued calls: higher first, in order within the
    /// same priority (default 0; IO::Async's `priority`).
    pub priority: i32,
    /// How long it may wait in the queue (see [`FunctionSpec::call_ttl`]).
    pub ttl: Option<Duration>,
    /// Its dead man's switch while running (see
    /// [`FunctionSpec::stuck_after`]).
    pub stuck_after: Option<Duration>,
}

struct Call {
    id: u64,
    payload: Bytes,
    reply: oneshot::Sender<Result<Bytes>>,
    deadline: Option<Instant>,
    retry_safe: bool,
    priority: i32,
    attempts: u32,
    /// Its TTL and when it runs out (queued calls only).
    ttl: Option<(Duration, Instant)>,
    stuck_after: Option<Duration>,
    /// When its worker counts as stuck (running calls only).
    stuck_at: Option<Instant>,
    /// Its place in the bounded call queue, given back when a worker takes
    /// the call.
    slot: Option<OwnedSemaphorePermit>,
}

/// The call queue's places, shared by the pool and its handles: a caller
/// takes one before its call is queued (waiting for room with `call`,
/// failing at once with `try_call`).
struct CallSlots {
    slots: Arc<Semaphore>,
    bound: usize,
    overflow: Overflow,
    /// The entry the pool runs (named in decode errors).
    entry: Arc<str>,
}

impl CallSlots {
    /// Made by the pool's first `init` (before any caller can reach it).
    fn init(pool: &NotifierRef<Function>, args: &FunctionArgs) -> Arc<CallSlots> {
        pool.handle_state(|| CallSlots {
            slots: Arc::new(Semaphore::new(args.queue)),
            bound: args.queue,
            overflow: args.overflow,
            entry: args.entry.as_str().into(),
        })
    }

    fn of(pool: &NotifierRef<Function>) -> Arc<CallSlots> {
        pool.handle_state(|| CallSlots {
            slots: Arc::new(Semaphore::new(DEFAULT_QUEUE)),
            bound: DEFAULT_QUEUE,
            overflow: Overflow::Wait,
            entry: "?".into(),
        })
    }

    /// Decodes a call's result, naming the entry and the direction.
    fn decode<R: DeserializeOwned>(&self, bytes: &[u8]) -> Result<R> {
        frame::decode(bytes).map_err(|e| {
            Error::new(
                "call",
                ErrorKind::InvalidInput,
                format!(
                    "entry {}: the result does not decode as {}: {}",
                    self.entry,
                    std::any::type_name::<R>(),
                    e.message()
                ),
            )
        })
    }

    fn full(&self) -> Error {
        Error::new(
            "call",
            ErrorKind::Full,
            format!("the call queue is full ({} calls)", self.bound),
        )
    }
}

/// The pool's side of one worker: its socket and the call it runs. Its
/// process belongs to its [`FunctionWorker`] child notifier.
struct Worker {
    id: u64,
    pid: u32,
    writer: Option<FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>>,
    busy: Option<Call>,
    calls: u32,
    idle_since: Instant,
    shared: Arc<WorkerShared>,
    /// Its process ended (its notifier's `Exit`).
    exited: bool,
    /// Its reader task is done: every reply it wrote has been read.
    drained: bool,
}

impl Worker {
    /// Closes its socket: it exits after its current call.
    fn retire(&mut self) {
        self.shared
            .asked
            .store(true, std::sync::atomic::Ordering::Release);
        self.writer = None;
    }

    /// Kills it for `fault` (its notifier's exit names it).
    fn kill(&mut self, fault: Error) {
        self.shared.set_fault(fault);
        self.retire();
        let _ = nix_kill(self.pid);
    }

    fn set_busy(&mut self, call: Option<Call>) {
        self.shared
            .busy
            .store(call.is_some(), std::sync::atomic::Ordering::Release);
        self.busy = call;
    }
}

enum FromWorker {
    Reply {
        worker: u64,
        id: u64,
        result: Result<Bytes>,
    },
    /// It sent a frame that cannot be read.
    Broken { worker: u64, error: Error },
    /// A long call it runs is alive.
    Heartbeat { worker: u64, id: u64 },
    /// Its notifier ended (the process is gone).
    Exited { worker: u64 },
    /// Its reader task read everything the worker wrote (EOF): after its
    /// last reply, which an `Exited` may overtake.
    ReaderDone { worker: u64 },
    /// An offloaded call ended.
    Offloaded {
        call: Box<Call>,
        result: Result<Bytes>,
    },
}

/// Pool statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, kameo::Reply)]
pub struct FunctionStats {
    /// Workers alive now.
    pub workers: usize,
    /// Their pids.
    pub pids: Vec<u32>,
    /// Workers started in all.
    pub started: u64,
    /// Workers that died unasked (crash, kill) and were replaced.
    pub died: u64,
    /// Calls waiting for a worker.
    pub queued: usize,
    /// Workers running a call now (IO::Async's `workers_busy`).
    pub busy: usize,
    /// Workers waiting for a call (IO::Async's `workers_idle`).
    pub idle: usize,
    /// Calls answered.
    pub completed: u64,
    /// Calls that failed for good (each handed to the dead-letter hook).
    pub dead_lettered: u64,
    /// Calls that waited past their TTL.
    pub expired: u64,
    /// Workers killed as stuck.
    pub stuck: u64,
}

/// A pool of worker processes running one entry point: calls with serde
/// arguments go to an idle worker (starting one when below `max_workers`),
/// results come back through futures. Each worker is a temporary child
/// of the pool in the tree ([`FunctionWorker`], `worker-<pid>`); the pool
/// starts them as calls need them (down to `min_workers` when idle). A
/// worker that dies mid-call is replaced; its call fails with a
/// `PeerDied` error naming the exit, or runs again elsewhere when marked
/// retry-safe. A worker that sends a frame that cannot be read is killed
/// and replaced, and its call fails with a `Protocol` error naming it.
/// Stopping the pool ends its workers (EOF, `SIGTERM` for a busy one,
/// `SIGKILL` after the [stop grace](FunctionSpec::stop_grace)) and fails
/// the calls still queued or running with "the function pool stopped".
///
/// ```standalone_crate
/// use std::time::Duration;
/// use ioasync::{Loop, prelude::FunctionRef, worker::{Entry, Function, run_if_worker}};
///
/// fn word_count(text: String) -> usize {
///     text.split_whitespace().count()
/// }
///
/// fn main() -> ioasync::Result<()> {
///     // First thing: a worker process runs its entry here and exits.
///     run_if_worker([Entry::function("wc", word_count)]);
///     let lp = Loop::new()?;
///     let l = lp.clone();
///     lp.block_on(async move {
///         let spec = Function::spec("wc", "wc")
///             .max_workers(2)
///             .idle_timeout(Duration::from_secs(10));
///         let pool = l.add(spec).await?;
///         let texts = ["one two", "three four five", "six"].map(String::from);
///         let counts = futures_util::future::try_join_all(
///             texts.iter().map(|t| pool.call::<_, usize>(t)),
///         )
///         .await?;
///         assert_eq!(counts, [2, 3, 1]);
///         assert!(pool.stop().await.is_clean());
///         Ok(())
///     })
/// }
/// ```
pub struct Function {
    args: FunctionArgs,
    workers: Vec<Worker>,
    queue: VecDeque<Call>,
    rx: mpsc::UnboundedReceiver<FromWorker>,
    tx: mpsc::UnboundedSender<FromWorker>,
    pending: Option<FromWorker>,
    next_worker: u64,
    next_call: u64,
    stats: FunctionStats,
    slots: Arc<CallSlots>,
    /// The counters last shown in the tree (see `show`).
    shown: (u64, u64, u64, u64, u64),
    /// Calls with the offload now.
    offloaded: usize,
}

impl FunctionStats {
    /// Fails `call` for good: its caller gets `err`, the dead-letter hook
    /// (if any) the letter.
    fn fail(&mut self, args: &FunctionArgs, call: Call, err: Error) {
        self.dead_lettered += 1;
        if let Some(hook) = &args.dead_letter {
            (hook.0)(DeadLetter {
                entry: args.entry.as_str().into(),
                payload: call.payload.clone(),
                error: err.clone(),
                attempts: call.attempts,
            });
        }
        let _ = call.reply.send(Err(err));
    }
}

impl Function {
    /// A pool running `entry` (registered with
    /// [`run_if_worker`](crate::run_if_worker)).
    pub fn spec(name: impl Into<String>, entry: impl Into<String>) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            args: FunctionArgs {
                entry: entry.into(),
                exec_args: Vec::new(),
                min_workers: 0,
                max_workers: 4,
                idle_timeout: None,
                max_worker_calls: None,
                queue: DEFAULT_QUEUE,
                overflow: Overflow::Wait,
                max_frame: frame::DEFAULT_MAX_FRAME,
                call_timeout: None,
                stop_grace: Duration::from_secs(1),
                output: WorkerOutput::Inherit,
                exit_on_die: false,
                setup: None,
                call_ttl: None,
                stuck_after: None,
                dead_letter: None,
                offload: None,
            },
        }
    }

    fn start_worker(&mut self, ctx: &Ctx<'_, Self>) -> Result<()> {
        let (child, sock) = crate::entry::spawn_worker(
            &self.args.entry,
            &self.args.exec_args,
            self.args.output == WorkerOutput::Inherit,
            self.args.setup.as_ref(),
            Vec::new(),
        )?;
        let id = self.next_worker;
        self.next_worker += 1;
        let pid = child.pid();
        let dup = std::os::fd::AsFd::as_fd(&sock)
            .try_clone_to_owned()
            .map(std::os::unix::net::UnixStream::from)
            .map_err(|e| Error::io("dup", e));
        let (rd, wr) = sock.into_split();
        let shared = Arc::new(WorkerShared::default());
        let tx = self.tx.clone();
        let notifier = dup.and_then(|sock| {
            let spec = Spec::<FunctionWorker>::new(
                format!("worker-{pid}"),
                Once::new(WorkerArgs {
                    child,
                    sock,
                    shared: shared.clone(),
                    grace: self.args.stop_grace,
                }),
            )
            .restart(Restart::Temporary)
            // Its stop ends the process within the grace, then SIGKILL.
            .stop_timeout(self.args.stop_grace + Duration::from_secs(2))
            .subscribe_exit(Subscription::closure(move |exit: ioasync_core::Exit| {
                if !exit.restarting {
                    let _ = tx.send(FromWorker::Exited { worker: id });
                }
            }));
            ctx.start_child(spec)
        });
        if let Err(e) = notifier {
            // Dropped with its spec: the process is not reaped by anyone.
            let _ = nix_kill(pid);
            return Err(e);
        }
        let tx = self.tx.clone();
        let max = self.args.max_frame;
        tokio::spawn(async move {
            let mut frames = FramedRead::new(rd, frame::codec(max));
            while let Some(next) = frames.next().await {
                let reply = match next {
                    Ok(f) => parse_from_worker(&f),
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        Err(frame::frame_error(e))
                    }
                    // A reset or EOF: the worker died; its notifier says how.
                    Err(_) => break,
                };
                let msg = match reply {
                    Ok(Parsed::Reply(cid, result)) => FromWorker::Reply {
                        worker: id,
                        id: cid,
                        result,
                    },
                    Ok(Parsed::Heartbeat(cid)) => FromWorker::Heartbeat {
                        worker: id,
                        id: cid,
                    },
                    Err(error) => FromWorker::Broken { worker: id, error },
                };
                let broken = matches!(msg, FromWorker::Broken { .. });
                if tx.send(msg).is_err() || broken {
                    break;
                }
            }
            let _ = tx.send(FromWorker::ReaderDone { worker: id });
        });
        self.workers.push(Worker {
            id,
            pid,
            writer: Some(FramedWrite::new(wr, frame::codec(max))),
            busy: None,
            calls: 0,
            idle_since: Instant::now(),
            shared,
            exited: false,
            drained: false,
        });
        self.stats.started += 1;
        Ok(())
    }

    /// Hands queued calls to idle workers, starting workers as allowed.
    /// Shows the pool's rare counters in tree snapshots when they change
    /// (not per call: workers and calls in flight are in `stats`).
    fn show(&mut self, ctx: &Ctx<'_, Self>) {
        let s = &self.stats;
        let now = (s.started, s.died, s.stuck, s.expired, s.dead_lettered);
        if now != self.shown {
            self.shown = now;
            ctx.set_detail(format!(
                "started={} died={} stuck={} expired={} dead_lettered={}",
                now.0, now.1, now.2, now.3, now.4
            ));
        }
    }

    async fn dispatch(&mut self, ctx: &Ctx<'_, Self>) {
        // Live workers count toward min_workers; retiring ones still count
        // toward max_workers (processes at most).
        while self.workers.iter().filter(|w| w.writer.is_some()).count() < self.args.min_workers
            && self.workers.len() < self.args.max_workers.max(self.args.min_workers)
        {
            if let Err(e) = self.start_worker(ctx) {
                tracing::error!(error = %e, "cannot start a worker");
                break;
            }
        }
        while let Some(call) = self.queue.pop_front() {
            if call.reply.is_closed() {
                continue; // the caller gave up
            }
            let idle = self
                .workers
                .iter()
                .position(|w| w.busy.is_none() && w.writer.is_some());
            let idx = match idle {
                Some(i) => i,
                None if self.workers.len() < self.args.max_workers => {
                    if let Err(e) = self.start_worker(ctx) {
                        self.stats.fail(&self.args, call, e);
                        continue;
                    }
                    self.workers.len() - 1
                }
                None if self.offload_has_room() => {
                    self.start_offloaded(call);
                    continue;
                }
                None => {
                    self.queue.push_front(call);
                    break;
                }
            };
            let w = &mut self.workers[idx];
            let mut call = call;
            call.slot = None; // out of the queue: room for the next caller
            call.ttl = None;
            call.stuck_at = call.stuck_after.map(|d| Instant::now() + d);
            let frame = frame::worker_frame(CALL, call.id, &call.payload).freeze();
            let writer = w.writer.as_mut().expect("checked above");
            match writer.send(frame).await {
                Ok(()) => w.set_busy(Some(call)),
                Err(_) => {
                    // The worker is gone; its exit will arrive. Requeue.
                    w.writer = None;
                    self.queue.push_front(call);
                }
            }
        }
        self.show(ctx);
    }

    /// Whether the offload has room for one more call.
    fn offload_has_room(&self) -> bool {
        self.args
            .offload
            .as_ref()
            .is_some_and(|o| self.offloaded < o.lanes)
    }

    /// Hands `call` to the offload; its end comes back as `Offloaded`.
    fn start_offloaded(&mut self, mut call: Call) {
        let Some(off) = &self.args.offload else {
            return;
        };
        call.slot = None; // out of the queue: room for the next caller
        call.ttl = None;
        call.attempts += 1;
        self.offloaded += 1;
        let options = CallOptions {
            timeout: call
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now())),
            retry_safe: call.retry_safe,
            ..Default::default()
        };
        let (run, tx, payload) = (off.run.clone(), self.tx.clone(), call.payload.clone());
        tokio::spawn(async move {
            let result = run(payload, options).await;
            let _ = tx.send(FromWorker::Offloaded {
                call: Box::new(call),
                result,
            });
        });
    }

    fn on_offloaded(&mut self, call: Call, result: Result<Bytes>) {
        self.offloaded = self.offloaded.saturating_sub(1);
        match result {
            Ok(b) => {
                self.stats.completed += 1;
                let _ = call.reply.send(Ok(b));
            }
            Err(e) => self.stats.fail(&self.args, call, e),
        }
    }

    fn on_reply(&mut self, worker: u64, id: u64, result: Result<Bytes>) {
        let Some(w) = self.workers.iter_mut().find(|w| w.id == worker) else {
            return;
        };
        if w.busy.as_ref().is_some_and(|c| c.id == id) {
            let call = w.busy.take().expect("checked above");
            w.set_busy(None);
            if result.is_err() && self.args.exit_on_die {
                w.retire(); // it exits once it reads EOF
            }
            self.stats.completed += 1;
            match result {
                Ok(bytes) => {
                    let _ = call.reply.send(Ok(bytes));
                }
                Err(e) => self.stats.fail(&self.args, call, e),
            }
        }
        w.calls += 1;
        w.idle_since = Instant::now();
        if self.args.max_worker_calls.is_some_and(|m| w.calls >= m) {
            w.retire(); // a new one replaces it
        }
    }

    /// A long call is alive: its dead man's switch starts again.
    fn on_heartbeat(&mut self, worker: u64, id: u64) {
        let Some(w) = self.workers.iter_mut().find(|w| w.id == worker) else {
            return;
        };
        if let Some(call) = w.busy.as_mut().filter(|c| c.id == id) {
            call.stuck_at = call.stuck_after.map(|d| Instant::now() + d);
        }
    }

    /// A worker sent a frame that cannot be read: its call fails with
    /// the protocol error, and it is killed (and replaced as calls need).
    fn on_broken(&mut self, worker: u64, error: Error) {
        let Some(w) = self.workers.iter_mut().find(|w| w.id == worker) else {
            return;
        };
        let err = Error::new(
            "call",
            ErrorKind::Protocol,
            format!(
                "worker {} sent a bad frame: {}",
                w.pid,
                error.message().trim_start_matches("bad frame: ")
            ),
        );
        tracing::error!(pid = w.pid, "{err}");
        if let Some(call) = w.busy.take() {
            w.set_busy(None);
            self.stats.fail(&self.args, call, err.clone());
        }
        w.kill(err);
    }

    /// Its process ended (`exited`) or its replies are all read: once
    /// both, the worker is gone, and a call it still holds failed.
    fn on_gone(&mut self, worker: u64, exited: bool, pool_stopping: bool) {
        let Some(i) = self.workers.iter().position(|w| w.id == worker) else {
            return;
        };
        let w = &mut self.workers[i];
        if exited {
            w.exited = true;
            w.writer = None;
        } else {
            w.drained = true;
        }
        if !(w.exited && w.drained) {
            return;
        }
        let w = self.workers.remove(i);
        let how = w.shared.status();
        let asked = w.shared.asked.load(std::sync::atomic::Ordering::Acquire);
        if !asked {
            self.stats.died += 1;
            tracing::warn!(pid = w.pid, status = %how, "worker died");
        }
        if let Some(mut call) = w.busy {
            call.attempts += 1;
            if pool_stopping {
                // The tree is ending the pool, its workers first.
                let err = Error::closed("call", "the function pool stopped");
                self.stats.fail(&self.args, call, err);
            } else if call.retry_safe && call.attempts < 2 {
                self.queue.push_front(call);
            } else {
                let err = Error::new(
                    "call",
                    ErrorKind::PeerDied,
                    format!("worker {} {how} while running the call", w.pid),
                );
                self.stats.fail(&self.args, call, err);
            }
        }
    }

    /// Fails calls past their deadline or TTL; kills stuck workers; stops
    /// workers idle too long.
    fn on_timers(&mut self) {
        let now = Instant::now();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for call in self.queue.drain(..) {
            if call.deadline.is_some_and(|d| d <= now) {
                self.stats.fail(&self.args, call, Error::timeout("call"));
            } else if let Some((ttl, _)) = call.ttl.filter(|(_, at)| *at <= now) {
                self.stats.expired += 1;
                let err = Error::new(
                    "call",
                    ErrorKind::Timeout,
                    format!("waited in the queue past its TTL ({ttl:?}); it did not run"),
                );
                self.stats.fail(&self.args, call, err);
            } else {
                kept.push_back(call);
            }
        }
        self.queue = kept;
        let mut again = Vec::new();
        for w in &mut self.workers {
            let Some(call) = w.busy.as_ref() else {
                continue;
            };
            if call.deadline.is_some_and(|d| d <= now) {
                let call = w.busy.take().expect("checked");
                w.set_busy(None);
                self.stats.fail(&self.args, call, Error::timeout("call"));
                // The call cannot be stopped inside the worker: replace it.
                w.kill(Error::new(
                    "call",
                    ErrorKind::Timeout,
                    "its call ran past the deadline",
                ));
            } else if call.stuck_at.is_some_and(|d| d <= now) {
                let mut call = w.busy.take().expect("checked");
                w.set_busy(None);
                self.stats.stuck += 1;
                let quiet = call.stuck_after.unwrap_or_default();
                let err = Error::new(
                    "call",
                    ErrorKind::Timeout,
                    format!(
                        "worker {} is stuck: no answer or heartbeat for {quiet:?}",
                        w.pid
                    ),
                );
                tracing::warn!(pid = w.pid, "{err}; killing it");
                w.kill(err.clone());
                call.attempts += 1;
                call.stuck_at = None;
                if call.retry_safe && call.attempts < 2 {
                    again.push(call);
                } else {
                    self.stats.fail(&self.args, call, err);
                }
            }
        }
        for call in again.into_iter().rev() {
            self.queue.push_front(call);
        }
        if let Some(idle) = self.args.idle_timeout {
            let mut alive = self.workers.iter().filter(|w| w.writer.is_some()).count();
            for w in &mut self.workers {
                if alive > self.args.min_workers
                    && w.busy.is_none()
                    && w.writer.is_some()
                    && now.duration_since(w.idle_since) >= idle
                {
                    w.retire();
                    alive -= 1;
                }
            }
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let calls = self
            .queue
            .iter()
            .chain(self.workers.iter().filter_map(|w| w.busy.as_ref()))
            .flat_map(|c| [c.deadline, c.ttl.map(|(_, at)| at), c.stuck_at])
            .flatten();
        let idle = self.args.idle_timeout.map(|d| {
            self.workers
                .iter()
                .filter(|w| w.busy.is_none() && w.writer.is_some())
                .map(|w| w.idle_since + d)
                .collect::<Vec<_>>()
        });
        let alive = self.workers.iter().filter(|w| w.writer.is_some()).count();
        let idle = if alive > self.args.min_workers {
            idle.unwrap_or_default()
        } else {
            Vec::new()
        };
        calls.chain(idle).min()
    }
}

fn nix_kill(pid: u32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
}

impl Notifier for Function {
    type Args = FunctionArgs;

    fn kind() -> &'static str {
        "function"
    }

    async fn init(args: FunctionArgs, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        crate::entry::check_not_in_worker("spawn")?;
        let slots = CallSlots::init(&ctx.this(), &args);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut f = Function {
            args,
            workers: Vec::new(),
            queue: VecDeque::new(),
            rx,
            tx,
            pending: None,
            next_worker: 0,
            next_call: 0,
            stats: FunctionStats::default(),
            slots,
            shown: (0, 0, 0, 0, 0),
            offloaded: 0,
        };
        for _ in 0..f.args.min_workers {
            f.start_worker(ctx)?;
        }
        Ok(f)
    }

    async fn ready(&mut self) {
        let timer = self.next_timer();
        tokio::select! {
            Some(m) = self.rx.recv() => self.pending = Some(m),
            () = async { tokio::time::sleep_until(timer.expect("checked")).await }, if timer.is_some() => {}
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        // What woke it, then whatever else arrived, without another trip.
        let mut next = self.pending.take();
        while let Some(m) = next.take().or_else(|| self.rx.try_recv().ok()) {
            match m {
                FromWorker::Reply { worker, id, result } => self.on_reply(worker, id, result),
                FromWorker::Broken { worker, error } => self.on_broken(worker, error),
                FromWorker::Heartbeat { worker, id } => self.on_heartbeat(worker, id),
                FromWorker::Exited { worker } => self.on_gone(worker, true, ctx.is_stopping()),
                FromWorker::ReaderDone { worker } => self.on_gone(worker, false, ctx.is_stopping()),
                FromWorker::Offloaded { call, result } => self.on_offloaded(*call, result),
            }
        }
        self.on_timers();
        self.dispatch(ctx).await;
    }

    async fn on_stop(&mut self, _ctx: &mut Ctx<'_, Self>) {
        // The worker notifiers (children) have stopped first: their
        // processes are gone and reaped.
        let stopped = || Error::closed("call", "the function pool stopped");
        for call in std::mem::take(&mut self.queue) {
            self.stats.fail(&self.args, call, stopped());
        }
        for w in &mut self.workers {
            w.retire(); // EOF: workers exit after their current call
            if let Some(call) = w.busy.take() {
                self.stats.fail(&self.args, call, stopped());
            }
        }
    }
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("entry", &self.args.entry)
            .field("workers", &self.workers.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// Message: one call with encoded arguments ([`FunctionRef::call_raw`]).
#[derive(Debug)]
pub(crate) struct CallRaw {
    /// MessagePack-encoded arguments.
    pub(crate) payload: Bytes,
    /// Options.
    pub(crate) options: CallOptions,
    /// Where the encoded result goes.
    pub(crate) reply: oneshot::Sender<Result<Bytes>>,
}

/// The same, holding its place in the call queue (what `call` sends).
struct QueuedCall(CallRaw, OwnedSemaphorePermit);

impl Handler<CallRaw> for Function {
    type Reply = ();
    async fn handle(&mut self, m: CallRaw, ctx: &mut Ctx<'_, Self>) {
        // A raw call holds no place: refused when the queue is full.
        if self.queue.len() >= self.args.queue {
            let _ = m.reply.send(Err(Error::new(
                "call",
                ErrorKind::Full,
                format!("the call queue is full ({} calls)", self.args.queue),
            )));
            return;
        }
        self.enqueue(m, None, ctx).await;
    }
}

impl Handler<QueuedCall> for Function {
    type Reply = ();
    async fn handle(&mut self, QueuedCall(m, slot): QueuedCall, ctx: &mut Ctx<'_, Self>) {
        self.enqueue(m, Some(slot), ctx).await;
    }
}

impl Handler<EvictingCall> for Function {
    type Reply = ();
    async fn handle(&mut self, EvictingCall(m): EvictingCall, ctx: &mut Ctx<'_, Self>) {
        // A place freed meanwhile, or the oldest waiting call's.
        if let Ok(slot) = self.slots.slots.clone().try_acquire_owned() {
            return self.enqueue(m, Some(slot), ctx).await;
        }
        let oldest = self.queue.iter().position(|c| c.slot.is_some());
        let Some(i) = oldest else {
            let _ = m.reply.send(Err(Error::new(
                "call",
                ErrorKind::Full,
                format!("the call queue is full ({} calls)", self.args.queue),
            )));
            return;
        };
        let mut old = self.queue.remove(i).expect("found above");
        let slot = old.slot.take();
        let err = Error::new(
            "call",
            ErrorKind::Full,
            format!(
                "dropped from the full call queue ({} calls) for a newer call",
                self.args.queue
            ),
        );
        self.stats.fail(&self.args, old, err);
        self.enqueue(m, slot, ctx).await;
    }
}

impl Function {
    async fn enqueue(
        &mut self,
        m: CallRaw,
        slot: Option<OwnedSemaphorePermit>,
        ctx: &Ctx<'_, Self>,
    ) {
        let timeout = m.options.timeout.or(self.args.call_timeout);
        self.next_call += 1;
        let call = Call {
            id: self.next_call,
            payload: m.payload,
            reply: m.reply,
            deadline: timeout.map(|t| Instant::now() + t),
            retry_safe: m.options.retry_safe,
            priority: m.options.priority,
            attempts: 0,
            ttl: m
                .options
                .ttl
                .or(self.args.call_ttl)
                .map(|t| (t, Instant::now() + t)),
            stuck_after: m.options.stuck_after.or(self.args.stuck_after),
            stuck_at: None,
            slot,
        };
        // Higher priority first; in order within a priority.
        match self.queue.back() {
            Some(last) if last.priority < call.priority => {
                let at = self
                    .queue
                    .iter()
                    .position(|c| c.priority < call.priority)
                    .unwrap_or(self.queue.len());
                self.queue.insert(at, call);
            }
            _ => self.queue.push_back(call),
        }
        self.dispatch(ctx).await;
    }
}

/// What a worker frame says.
enum Parsed {
    Reply(u64, Result<Bytes>),
    Heartbeat(u64),
}

/// Reads one frame from a worker: a reply (the call id and its result) or
/// a heartbeat.
fn parse_from_worker(f: &[u8]) -> Result<Parsed> {
    let (kind, cid, payload) = frame::parse_worker_frame(f)?;
    let result = match kind {
        frame::HEARTBEAT => return Ok(Parsed::Heartbeat(cid)),
        REPLY_OK => Ok(Bytes::copy_from_slice(payload)),
        REPLY_ERR => Err(Error::new(
            "call",
            ErrorKind::Other,
            String::from_utf8_lossy(payload).into_owned(),
        )),
        k => {
            return Err(Error::new(
                "decode",
                ErrorKind::Protocol,
                format!("unknown worker frame kind {k}"),
            ));
        }
    };
    Ok(Parsed::Reply(cid, result))
}

/// Message: retire every worker ([`FunctionRef::restart_workers`]).
#[derive(Debug)]
pub(crate) struct RestartWorkers;

impl Handler<RestartWorkers> for Function {
    type Reply = ();
    async fn handle(&mut self, _: RestartWorkers, ctx: &mut Ctx<'_, Self>) {
        for w in &mut self.workers {
            w.retire();
        }
        self.dispatch(ctx).await;
    }
}

/// Message: pool statistics ([`FunctionRef::stats`]).
#[derive(Debug)]
pub(crate) struct Stats;

impl Handler<Stats> for Function {
    type Reply = FunctionStats;
    async fn handle(&mut self, _: Stats, _ctx: &mut Ctx<'_, Self>) -> FunctionStats {
        FunctionStats {
            workers: self.workers.len(),
            pids: self.workers.iter().map(|w| w.pid).collect(),
            queued: self.queue.len(),
            busy: self.workers.iter().filter(|w| w.busy.is_some()).count(),
            idle: self
                .workers
                .iter()
                .filter(|w| w.busy.is_none() && w.writer.is_some())
                .count(),
            ..self.stats.clone()
        }
    }
}

/// Calls on a pool's handle.
pub trait FunctionRef {
    /// Calls the entry with `args`; resolves with its result. When the call
    /// queue is full it waits for room (backpressure), then queues.
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, prelude::FunctionRef, worker::{Entry, Function, run_if_worker}};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     // A worker process (this program, re-executed) serves here.
    ///     run_if_worker([Entry::function("square", square)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(Function::spec("squares", "square").max_workers(2)).await?;
    ///         let n: u64 = pool.call(&12u64).await?;
    ///         assert_eq!(n, 144);
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for room in the queue, nothing was queued.
    /// Dropped once queued, the call is skipped if no worker took it yet;
    /// a call a worker already runs runs to its end and its result is
    /// discarded (the worker is not interrupted).
    fn call<A, R>(&self, args: &A) -> impl Future<Output = Result<R>> + Send
    where
        A: Serialize + Sync,
        R: DeserializeOwned + Send;

    /// [`FunctionRef::call`] that never waits for room: with no place
    /// left in the call queue it fails at once with a `Full` error naming
    /// the bound (and returns no future). Otherwise the place is taken and
    /// the returned future sends the call and resolves with its result.
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, prelude::FunctionRef, worker::{Entry, Function, run_if_worker}};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     // A worker process (this program, re-executed) serves here.
    ///     run_if_worker([Entry::function("square", square)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(Function::spec("squares", "square").max_workers(1).queue(1)).await?;
    ///         // One place in the queue: a second call while the first holds it is
    ///         // refused at once.
    ///         let first = pool.try_call::<_, u64>(&3u64)?;
    ///         let second = pool.try_call::<_, u64>(&4u64);
    ///         assert!(second.err().unwrap().is_full());
    ///         assert_eq!(first.await?, 9);
    ///         let n: u64 = pool.try_call(&5u64)?.await?;
    ///         assert_eq!(n, 25);
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// The future dropped before its first poll sends nothing and frees
    /// the place; dropped while waiting for room in a full mailbox, nothing
    /// was sent. Dropped once sent, the call is skipped if no worker took
    /// it yet; a call a worker already runs runs to its end and its result
    /// is discarded (the worker is not interrupted).
    fn try_call<A, R>(&self, args: &A) -> Result<impl Future<Output = Result<R>> + Send + 'static>
    where
        A: Serialize + Sync,
        R: DeserializeOwned + Send + 'static;

    /// [`FunctionRef::call`] with options (timeout, retry-safe).
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, prelude::FunctionRef, worker::{CallOptions, Entry, Function, run_if_worker}};
    ///
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 {
    ///     if x == 0 {
    ///         std::thread::sleep(Duration::from_secs(30)); // a call that hangs
    ///     }
    ///     x * x
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     // A worker process (this program, re-executed) serves here.
    ///     run_if_worker([Entry::function("square", square)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(Function::spec("squares", "square")).await?;
    ///         let opts = CallOptions { timeout: Some(Duration::from_millis(200)), ..Default::default() };
    ///         let err = pool.call_with::<_, u64>(&0u64, opts).await.unwrap_err();
    ///         assert!(err.is_timeout());
    ///         let n: u64 = pool.call_with(&7u64, opts).await?;
    ///         assert_eq!(n, 49);
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for room in the queue, nothing was queued.
    /// Dropped once queued, the call is skipped if no worker took it yet;
    /// a call a worker already runs runs to its end and its result is
    /// discarded (the worker is not interrupted).
    fn call_with<A, R>(
        &self,
        args: &A,
        options: CallOptions,
    ) -> impl Future<Output = Result<R>> + Send
    where
        A: Serialize + Sync,
        R: DeserializeOwned + Send;

    /// Pool statistics.
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, prelude::FunctionRef, worker::{Entry, Function, run_if_worker}};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     // A worker process (this program, re-executed) serves here.
    ///     run_if_worker([Entry::function("square", square)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(Function::spec("squares", "square").max_workers(2)).await?;
    ///         assert_eq!(pool.stats().await?.workers, 0, "workers start as calls need them");
    ///         let _: u64 = pool.call(&2u64).await?;
    ///         let stats = pool.stats().await?;
    ///         assert_eq!((stats.workers, stats.completed, stats.died), (1, 1, 0));
    ///         assert_eq!(stats.pids.len(), 1);
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn stats(&self) -> impl Future<Output = Result<FunctionStats>> + Send;

    /// Retires every worker (IO::Async's `restart`): calls in flight
    /// complete on the old workers, new workers start as calls need them
    /// (and `min_workers` asks) — after a code or configuration change.
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, prelude::FunctionRef, worker::{Entry, Function, run_if_worker}};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     // A worker process (this program, re-executed) serves here.
    ///     run_if_worker([Entry::function("square", square)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(Function::spec("squares", "square").max_workers(1)).await?;
    ///         let _: u64 = pool.call(&2u64).await?;
    ///         let old = pool.stats().await?.pids;
    ///         pool.restart_workers().await?;
    ///         let _: u64 = pool.call(&3u64).await?;
    ///         let new = pool.stats().await?.pids;
    ///         assert_eq!(new.len(), 1);
    ///         assert_ne!(old, new, "a new worker took the call");
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the restart may still happen: once
    /// queued the request is handled, only the reply is lost.
    fn restart_workers(&self) -> impl Future<Output = Result<()>> + Send;

    /// Calls the entry with arguments already encoded as MessagePack
    /// ([`encode`](crate::encode)); resolves with the encoded result
    /// ([`decode`](crate::decode) reads it): for a caller that forwards
    /// calls it does not decode. It holds no place in the call queue: when
    /// the queue is full it fails at once with a `Full` error. `options`
    /// apply as to [`FunctionRef::call_with`], the timeout counting from
    /// when the pool takes the call.
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, prelude::FunctionRef, worker::{self, CallOptions, Entry, Function, run_if_worker}};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     // A worker process (this program, re-executed) serves here.
    ///     run_if_worker([Entry::function("square", square)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(Function::spec("squares", "square")).await?;
    ///         let out = pool.call_raw(worker::encode(&9u64)?, CallOptions::default()).await?;
    ///         assert_eq!(worker::decode::<u64>(&out)?, 81);
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for room in a full mailbox, nothing was
    /// queued. Dropped once queued, the call is skipped if no worker took
    /// it yet; a call a worker already runs runs to its end and its result
    /// is discarded.
    fn call_raw(
        &self,
        payload: Bytes,
        options: CallOptions,
    ) -> impl Future<Output = Result<Bytes>> + Send;
}

/// The entry `pool` runs.
pub(crate) fn entry_of(pool: &NotifierRef<Function>) -> Arc<str> {
    CallSlots::of(pool).entry.clone()
}

/// The default bound of a pool's call queue.
const DEFAULT_QUEUE: usize = 1024;

/// Queues one call holding its place (`slot`, awaited first) and waits for
/// the result.
async fn queued_call<A, R, S>(
    pool: &NotifierRef<Function>,
    args: &A,
    options: CallOptions,
    slot: S,
) -> Result<R>
where
    A: Serialize + Sync,
    R: DeserializeOwned + Send,
    S: IntoFuture,
    S::Output: IntoSlot,
{
    let payload = frame::encode(args)?;
    let slot = slot.await.into_slot()?;
    send_queued(pool, payload, options, slot).await
}

/// Sends one encoded call holding its place `slot` and waits for the
/// result.
async fn send_queued<R: DeserializeOwned>(
    pool: &NotifierRef<Function>,
    payload: Bytes,
    options: CallOptions,
    slot: OwnedSemaphorePermit,
) -> Result<R> {
    let (tx, rx) = oneshot::channel();
    pool.tell(QueuedCall(
        CallRaw {
            payload,
            options,
            reply: tx,
        },
        slot,
    ))
    .await?;
    let bytes = rx
        .await
        .map_err(|_| Error::closed("call", "the function pool stopped"))??;
    CallSlots::of(pool).decode(&bytes)
}

/// A call that takes the place of the oldest waiting one (`DropOldest`).
struct EvictingCall(CallRaw);

/// Queues one call in place of the oldest waiting call and waits for the
/// result.
async fn evicting_call<A, R>(
    pool: &NotifierRef<Function>,
    args: &A,
    options: CallOptions,
) -> Result<R>
where
    A: Serialize + Sync,
    R: DeserializeOwned + Send,
{
    let payload = frame::encode(args)?;
    let (tx, rx) = oneshot::channel();
    pool.tell(EvictingCall(CallRaw {
        payload,
        options,
        reply: tx,
    }))
    .await?;
    let bytes = rx
        .await
        .map_err(|_| Error::closed("call", "the function pool stopped"))??;
    CallSlots::of(pool).decode(&bytes)
}

/// A place in the call queue, or the error of not getting one.
trait IntoSlot {
    fn into_slot(self) -> Result<OwnedSemaphorePermit>;
}

impl IntoSlot for OwnedSemaphorePermit {
    fn into_slot(self) -> Result<OwnedSemaphorePermit> {
        Ok(self)
    }
}

impl IntoSlot for Result<OwnedSemaphorePermit> {
    fn into_slot(self) -> Result<OwnedSemaphorePermit> {
        self
    }
}

impl FunctionRef for NotifierRef<Function> {
    async fn call<A, R>(&self, args: &A) -> Result<R>
    where
        A: Serialize + Sync,
        R: DeserializeOwned + Send,
    {
        self.call_with(args, CallOptions::default()).await
    }

    fn try_call<A, R>(&self, args: &A) -> Result<impl Future<Output = Result<R>> + Send + 'static>
    where
        A: Serialize + Sync,
        R: DeserializeOwned + Send + 'static,
    {
        let slots = CallSlots::of(self);
        let slot = slots
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| slots.full())?;
        let payload = frame::encode(args)?;
        let pool = self.clone();
        Ok(async move { send_queued::<R>(&pool, payload, CallOptions::default(), slot).await })
    }

    async fn call_with<A, R>(&self, args: &A, options: CallOptions) -> Result<R>
    where
        A: Serialize + Sync,
        R: DeserializeOwned + Send,
    {
        let slots = CallSlots::of(self);
        if slots.overflow == Overflow::DropOldest && slots.slots.available_permits() == 0 {
            return evicting_call(self, args, options).await;
        }
        let call = queued_call(self, args, options, async {
            match slots.overflow {
                Overflow::Wait | Overflow::DropOldest => slots
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::closed("call", "the function pool stopped")),
                _ => slots
                    .slots
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| slots.full()),
            }
        });
        match options.timeout {
            // The timeout counts the wait for room too.
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| Error::timeout("call"))?,
            None => call.await,
        }
    }

    async fn stats(&self) -> Result<FunctionStats> {
        self.ask(Stats).await
    }

    async fn restart_workers(&self) -> Result<()> {
        self.ask(RestartWorkers).await
    }

    async fn call_raw(&self, payload: Bytes, options: CallOptions) -> Result<Bytes> {
        let (tx, rx) = oneshot::channel();
        self.tell(CallRaw {
            payload,
            options,
            reply: tx,
        })
        .await?;
        rx.await
            .map_err(|_| Error::closed("call", "the function pool stopped"))?
    }
}
