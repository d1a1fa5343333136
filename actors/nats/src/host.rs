//! [`WorkerHost`]: serves a Function pool's calls from this process.

use std::{
    cell::RefCell,
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use ioasync_core::{Ctx, Error, ErrorKind, Notifier, NotifierRef, Restart, Result, Spec};
use ioasync_worker::{Entry, EntryRunner};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use crate::{
    pool::{Names, PoolMode, jetstream_stream},
    remote::{Link, Remote, link_of},
    wire,
};

/// The queue group of a pool's hosts.
const HOSTS: &str = "ioasync-hosts";
/// The durable JetStream consumer all hosts of a pool share.
const CONSUMER: &str = "hosts";

/// How to start a [`WorkerHost`].
#[derive(Debug, Clone)]
pub struct WorkerHostArgs {
    link: Arc<Link>,
    pool: String,
    entry: Entry,
    lanes: usize,
    mode: PoolMode,
    heartbeat: Duration,
    inline: bool,
}

/// A [`WorkerHost`] spec under construction.
#[derive(Debug, Clone)]
#[must_use = "a WorkerHostSpec does nothing until it is added"]
pub struct WorkerHostSpec {
    name: String,
    args: WorkerHostArgs,
}

impl WorkerHostSpec {
    /// Calls run at once, at most (default: the machine's cores): one
    /// thread each, with its own per-worker state (the entry's `init`).
    pub fn lanes(mut self, n: usize) -> Self {
        self.args.lanes = n.max(1);
        self
    }

    /// How calls arrive (default [`PoolMode::Core`]); the same as the
    /// pool's callers.
    pub fn mode(mut self, mode: PoolMode) -> Self {
        self.args.mode = mode;
        self
    }

    /// How often it tells callers it is alive and which of their calls it
    /// holds (default 100 ms; keep it well below the callers'
    /// `host_lost_after`).
    pub fn heartbeat(mut self, d: Duration) -> Self {
        self.args.heartbeat = d.max(Duration::from_millis(5));
        self
    }

    /// Runs each call on the runtime thread that received it, in the
    /// serving task, instead of handing it to a lane thread (default
    /// `false`): no thread hop per call, which is most of a quick call's
    /// cost (like answering in the task versus `spawn_blocking`). For
    /// entries that never block and finish in microseconds; an entry that
    /// sleeps, does I/O or computes for long belongs on
    /// [lanes](Self::lanes), the default.
    ///
    /// Calls then run one at a time per host, and the entry's per-worker
    /// state (its `init`) is built on each runtime thread the first time
    /// it serves a call there. A panic fails that call as on a lane (the
    /// caller sees the same failure) and the host serves on. An inline
    /// call holds up the host's other work on that thread, heartbeats
    /// included (on a multi-thread runtime too: a task it woke just
    /// before, such as the connection's, waits for that thread), so as a
    /// guard: once a call ran longer than half the
    /// [heartbeat](Self::heartbeat), the host logs a warning and sends
    /// its later calls to lanes (started then, [`lanes`](Self::lanes) of
    /// them).
    ///
    /// ```no_run
    /// use ioasync::{Loop, worker::EntryPoint};
    /// use ioasync::nats::{Remote, WorkerHost};
    ///
    /// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let nats = lp.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
    /// // A square never blocks: answer it on the runtime, without a lane.
    /// lp.add(WorkerHost::spec("host", &nats, "squares", SQUARE.runs(|n| n * n)).inline(true))
    ///     .await?;
    /// lp.run::<()>().await
    /// # }
    /// ```
    pub fn inline(mut self, on: bool) -> Self {
        self.args.inline = on;
        self
    }
}

impl From<WorkerHostSpec> for Spec<WorkerHost> {
    fn from(s: WorkerHostSpec) -> Self {
        Spec::new(s.name, s.args).restart(Restart::Permanent)
    }
}

/// What a host holds: received calls not yet answered, by (caller,
/// token), with their JetStream ack subject in work-queue mode.
#[derive(Default)]
struct Held {
    calls: Mutex<HashMap<(u64, u64), Option<String>>>,
}

impl Held {
    fn insert(&self, key: (u64, u64), ack: Option<String>) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, ack);
    }

    fn remove(&self, key: (u64, u64)) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    fn list(&self) -> (Vec<(u64, u64)>, Vec<String>) {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        (
            calls.keys().copied().collect(),
            calls.values().flatten().cloned().collect(),
        )
    }
}

/// One call for a lane: the frame, when it arrived, and in work-queue
/// mode the JetStream message to ack.
struct Job {
    call: wire::CallFrame,
    received: Instant,
    ack: Option<async_nats::jetstream::Message>,
    /// Work-queue mode: its place among the jobs this host takes at
    /// once, so that a busy host leaves the queue's jobs to the others.
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What every lane of a host shares.
#[derive(Clone)]
struct LaneCtx {
    client: Client,
    host: u64,
    held: Arc<Held>,
    /// The runtime, for the lane threads' sends (an async-nats publish
    /// only queues the message for the connection's task).
    rt: tokio::runtime::Handle,
}

impl LaneCtx {
    /// Answers `job` with `frame`, acks it (work-queue mode: after the
    /// result went out, on the same connection, so in order; a death in
    /// between redelivers it and the caller drops the second result), and
    /// lets it go.
    fn answer(&self, job: Job, frame: Bytes) {
        self.rt.block_on(self.answer_async(job, frame));
    }

    /// [`answer`](Self::answer), from the runtime.
    async fn answer_async(&self, job: Job, frame: Bytes) {
        let key = (job.call.caller, job.call.token);
        if let Err(e) = self.client.publish(job.call.reply, frame).await {
            tracing::warn!("worker host: reply not sent: {e}");
        }
        if let Some(msg) = job.ack
            && let Err(e) = msg.ack().await
        {
            tracing::warn!("worker host: ack not sent: {e}");
        }
        self.held.remove(key);
    }
}

/// `entry`'s calls on this thread, with its per-worker state (or why
/// there are none: a routine, a panic in `init`).
fn runner_of(entry: &Entry, path: &str) -> std::result::Result<EntryRunner, String> {
    let runner = match ioasync_core::catch_panic(|| entry.runner()) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(format!(
            "entry {} is a routine, not a function",
            entry.name()
        )),
        Err(p) => Err(format!("entry {}: its init panicked: {p}", entry.name())),
    };
    if let Err(e) = &runner {
        tracing::error!(host = path, "{e}");
    }
    runner
}

/// Runs `job` with `runner` (unless it waited past its deadline: then
/// "expired" without running): the reply frame. A panic anywhere in the
/// call (the entry catches its own; this also catches one in a
/// `Serialize` or `Deserialize` impl) fails the call, never the lane or
/// the serving task.
fn run_call(runner: &mut std::result::Result<EntryRunner, String>, job: &Job, host: u64) -> Bytes {
    let deadline = job.received + Duration::from_millis(u64::from(job.call.deadline_ms));
    if Instant::now() >= deadline {
        return wire::reply(wire::EXPIRED, host, &[]);
    }
    let Ok(r) = runner else {
        let e = runner.as_ref().err().map_or("", |e| e.as_str());
        return wire::reply(wire::FAILED, host, e.as_bytes());
    };
    // Contained: the panic hook stays quiet, the failure is one line.
    let text = match ioasync_core::catch_panic(|| r.call(&job.call.args)) {
        Ok(Ok(out)) => return wire::reply(wire::OK, host, &out),
        Ok(Err(text)) => text,
        Err(p) => p,
    };
    tracing::error!(host = format_args!("{host:x}"), "call failed: {text}");
    wire::reply(wire::FAILED, host, text.as_bytes())
}

/// An entry's runner on this thread, or why it has none.
type Runner = std::result::Result<EntryRunner, String>;

thread_local! {
    /// Inline hosts' runners on this runtime thread, by host (a dead
    /// host's is dropped at the next inline call here).
    static INLINE_RUNNERS: RefCell<Vec<(Weak<()>, Runner)>> =
        const { RefCell::new(Vec::new()) };
}

/// What an inline host needs to run calls in its serving task.
struct Inline {
    entry: Entry,
    path: String,
    /// This host, for its runners in [`INLINE_RUNNERS`].
    key: Arc<()>,
    /// A call that ran longer sends the later ones to lanes.
    overrun: Duration,
    demoted: AtomicBool,
    /// The lanes, once a call overran (`None`: they did not start).
    lanes: OnceLock<Option<mpsc::UnboundedSender<Job>>>,
    lanes_n: usize,
}

/// Where the serving task sends each call: to the lanes, or (an inline
/// host) runs it itself.
struct Dispatch {
    cx: LaneCtx,
    lanes: Option<mpsc::UnboundedSender<Job>>,
    inline: Option<Inline>,
}

impl Dispatch {
    /// Runs or queues `job`; false when the lanes are gone.
    async fn dispatch(&self, job: Job) -> bool {
        if let Some(inline) = &self.inline {
            if inline.demoted.load(Ordering::Relaxed) {
                let lanes = inline.lanes.get_or_init(|| {
                    lanes(&inline.entry, inline.lanes_n, &inline.path, self.cx.clone())
                        .map_err(|e| {
                            tracing::error!(host = inline.path, "lanes not started: {e}");
                        })
                        .ok()
                });
                if let Some(tx) = lanes {
                    return tx.send(job).is_ok();
                }
            }
            self.run_inline(inline, job).await;
            return true;
        }
        self.lanes.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    async fn run_inline(&self, inline: &Inline, job: Job) {
        let started = Instant::now();
        let frame = {
            let mine = INLINE_RUNNERS.with_borrow_mut(|rs| {
                rs.retain(|(k, _)| k.strong_count() > 0);
                rs.iter()
                    .position(|(k, _)| std::ptr::eq(k.as_ptr(), Arc::as_ptr(&inline.key)))
                    .map(|i| rs.swap_remove(i).1)
            });
            let mut runner = mine.unwrap_or_else(|| runner_of(&inline.entry, &inline.path));
            let frame = run_call(&mut runner, &job, self.cx.host);
            INLINE_RUNNERS.with_borrow_mut(|rs| rs.push((Arc::downgrade(&inline.key), runner)));
            frame
        };
        let took = started.elapsed();
        self.cx.answer_async(job, frame).await;
        if took > inline.overrun && !inline.demoted.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                host = inline.path,
                "worker host: an inline call of {} ran {took:?} (over {:?}): \
                 its later calls go to {} lanes; a blocking entry belongs on lanes",
                inline.entry.name(),
                inline.overrun,
                inline.lanes_n
            );
        }
    }
}

/// Starts `n` lane threads running `entry`: each takes a call, runs it
/// (unless it waited past its deadline: answered "expired" without
/// running) and answers it. They end when the returned sender is dropped
/// (after their current call).
fn lanes(entry: &Entry, n: usize, path: &str, cx: LaneCtx) -> Result<mpsc::UnboundedSender<Job>> {
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let entry = entry.clone();
        let rx = rx.clone();
        let path = path.to_owned();
        let cx = cx.clone();
        std::thread::Builder::new()
            .name(format!("ioasync-lane-{i}"))
            .spawn(move || {
                let mut runner = runner_of(&entry, &path);
                loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
                    let Some(job) = job else { return };
                    let frame = run_call(&mut runner, &job, cx.host);
                    cx.answer(job, frame);
                }
            })
            .map_err(|e| Error::io("spawn", e))?;
    }
    Ok(tx)
}

/// Serves pool `pool`'s calls from this process: joins the pool's queue
/// group (or takes jobs from its JetStream work queue) and runs each call
/// on one of its lanes with the same typed entries a local pool's workers
/// run ([`EntryPoint::runs`](ioasync_worker::EntryPoint::runs)). A worker
/// host is typically the service's own program started with a flag. It
/// beats every [heartbeat](WorkerHostSpec::heartbeat) with the calls it
/// holds, so callers notice within their `host_lost_after` when it dies;
/// a call that reaches it past its deadline is answered "expired" without
/// running. In JetStream mode it acks a job only after its result was
/// sent, and sends progress for the jobs it holds each heartbeat. The tree
/// shows what it serves, as which host, and its lanes.
///
/// ```no_run
/// use ioasync::{Loop, worker::EntryPoint};
/// use ioasync::nats::{Remote, WorkerHost};
///
/// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let nats = lp.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
/// // This process serves pool "squares" until the Loop stops.
/// lp.add(WorkerHost::spec("host", &nats, "squares", SQUARE.runs(|n| n * n)))
///     .await?;
/// lp.run::<()>().await
/// # }
/// ```
pub struct WorkerHost {
    tasks: Vec<JoinHandle<()>>,
    failed: mpsc::Receiver<Error>,
    woke: Option<Error>,
}

impl WorkerHost {
    /// A host named `name` serving pool `pool` with `entry`, over
    /// `remote`'s connection.
    pub fn spec(
        name: impl Into<String>,
        remote: &NotifierRef<Remote>,
        pool: &str,
        entry: Entry,
    ) -> WorkerHostSpec {
        WorkerHostSpec {
            name: name.into(),
            args: WorkerHostArgs {
                link: link_of(remote),
                pool: pool.to_owned(),
                entry,
                lanes: std::thread::available_parallelism().map_or(2, |n| n.get()),
                mode: PoolMode::Core,
                heartbeat: Duration::from_millis(100),
                inline: false,
            },
        }
    }
}

impl Notifier for WorkerHost {
    type Args = WorkerHostArgs;

    fn kind() -> &'static str {
        "worker-host"
    }

    async fn init(args: WorkerHostArgs, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let names = Names::of(&args.pool)?;
        let client = args.link.client("serve")?;
        let host = wire::random_id();
        let held = Arc::new(Held::default());
        let cx = LaneCtx {
            client: client.clone(),
            host,
            held: held.clone(),
            rt: tokio::runtime::Handle::current(),
        };
        // An inline host starts its lanes only if a call overruns.
        let dispatch = Dispatch {
            lanes: if args.inline {
                None
            } else {
                Some(lanes(&args.entry, args.lanes, ctx.path(), cx.clone())?)
            },
            inline: args.inline.then(|| Inline {
                entry: args.entry.clone(),
                path: ctx.path().to_owned(),
                key: Arc::new(()),
                overrun: args.heartbeat / 2,
                demoted: AtomicBool::new(false),
                lanes: OnceLock::new(),
                lanes_n: args.lanes,
            }),
            cx,
        };
        let (fail_tx, failed) = mpsc::channel(1);
        let mut tasks = Vec::new();
        let serve_err = |what: String| Error::new("serve", ErrorKind::Io, what);
        match args.mode {
            PoolMode::Core => {
                let mut sub = client
                    .queue_subscribe(names.calls.clone(), HOSTS.into())
                    .await
                    .map_err(|e| serve_err(format!("subscribe to {}: {e}", names.calls)))?;
                let (client, dispatch, held, fail) =
                    (client.clone(), dispatch, held.clone(), fail_tx.clone());
                let subject = names.calls.clone();
                tasks.push(tokio::spawn(async move {
                    while let Some(msg) = sub.next().await {
                        let call = match wire::parse_call(&msg.payload) {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::warn!(subject, "worker host: call dropped: {e}");
                                continue;
                            }
                        };
                        if call.deadline_ms == 0 {
                            // Sent with no time left: it is expired.
                            let _ = client
                                .publish(call.reply.clone(), wire::reply(wire::EXPIRED, host, &[]))
                                .await;
                            continue;
                        }
                        held.insert((call.caller, call.token), None);
                        let job = Job {
                            call,
                            received: Instant::now(),
                            ack: None,
                            _place: None,
                        };
                        if !dispatch.dispatch(job).await {
                            break;
                        }
                    }
                    let _ = fail
                        .send(Error::closed(
                            "serve",
                            format!("the subscription to {subject} ended"),
                        ))
                        .await;
                }));
            }
            PoolMode::JetStream { ack_wait } => {
                use async_nats::jetstream::consumer::{AckPolicy, pull};
                let js = async_nats::jetstream::new(client.clone());
                let stream = jetstream_stream(&js, &names).await?;
                let consumer = stream
                    .get_or_create_consumer(
                        CONSUMER,
                        pull::Config {
                            durable_name: Some(CONSUMER.into()),
                            ack_policy: AckPolicy::Explicit,
                            ack_wait,
                            max_deliver: -1,
                            filter_subject: names.jobs.clone(),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| {
                        serve_err(format!("JetStream consumer on {}: {e}", names.stream))
                    })?;
                let mut messages = consumer
                    .stream()
                    .max_messages_per_batch(args.lanes.max(1))
                    .heartbeat(Duration::from_secs(1))
                    .expires(Duration::from_secs(5))
                    .messages()
                    .await
                    .map_err(|e| {
                        serve_err(format!("JetStream messages of {}: {e}", names.stream))
                    })?;
                let (dispatch, held, fail) = (dispatch, held.clone(), fail_tx.clone());
                let stream_name = names.stream.clone();
                let places = Arc::new(tokio::sync::Semaphore::new(args.lanes.max(1)));
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Ok(place) = places.clone().acquire_owned().await else {
                            break;
                        };
                        let Some(msg) = messages.next().await else {
                            break;
                        };
                        let msg = match msg {
                            Ok(m) => m,
                            Err(e) => {
                                // Missed heartbeats while the server was
                                // away and the like: the stream goes on.
                                tracing::warn!(stream = stream_name, "worker host: {e}");
                                continue;
                            }
                        };
                        let call = match wire::parse_call(&msg.payload) {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::warn!(
                                    stream = stream_name,
                                    "worker host: job dropped: {e}"
                                );
                                let _ = msg.ack_with(async_nats::jetstream::AckKind::Term).await;
                                continue;
                            }
                        };
                        held.insert(
                            (call.caller, call.token),
                            msg.reply.as_ref().map(|s| s.to_string()),
                        );
                        let job = Job {
                            call,
                            received: Instant::now(),
                            ack: Some(msg),
                            _place: Some(place),
                        };
                        if !dispatch.dispatch(job).await {
                            break;
                        }
                    }
                    let _ = fail
                        .send(Error::closed(
                            "serve",
                            format!("the JetStream messages of {stream_name} ended"),
                        ))
                        .await;
                }));
            }
        }
        // The subscription is at the server before the host counts as up.
        client
            .flush()
            .await
            .map_err(|e| serve_err(format!("flush: {e}")))?;
        {
            let (client, held) = (client.clone(), held.clone());
            let subject = names.heartbeats.clone();
            let lanes_n = args.lanes as u32;
            let every = args.heartbeat;
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(Instant::now(), every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let (calls, acks) = held.list();
                    let _ = client
                        .publish(subject.clone(), wire::heartbeat(host, lanes_n, &calls))
                        .await;
                    for ack in acks {
                        // JetStream "work in progress": not redelivered
                        // while we hold it.
                        let _ = client.publish(ack, Bytes::from_static(b"+WPI")).await;
                    }
                }
            }));
        }
        let mode = match args.mode {
            PoolMode::Core => "queue group",
            PoolMode::JetStream { .. } => "JetStream work queue",
        };
        let runs = if args.inline {
            "inline".to_owned()
        } else {
            format!("{} lanes", args.lanes)
        };
        ctx.set_detail(format!(
            "serving {} ({mode}) as host {host:x}, {runs}",
            args.pool
        ));
        tracing::info!(
            pool = args.pool,
            host = format!("{host:x}"),
            "worker host serving"
        );
        Ok(WorkerHost {
            tasks,
            failed,
            woke: None,
        })
    }

    async fn ready(&mut self) {
        match self.failed.recv().await {
            Some(e) => self.woke = Some(e),
            None => std::future::pending().await,
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let Some(e) = self.woke.take() {
            ctx.fail(e);
        }
    }

    async fn on_stop(&mut self, _ctx: &mut Ctx<'_, Self>) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for WorkerHost {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl fmt::Debug for WorkerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHost").finish()
    }
}
