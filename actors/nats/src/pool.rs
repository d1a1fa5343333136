//! [`RemotePool`]: calls to a Function pool whose workers are
//! [`WorkerHost`](crate::WorkerHost)s on any machine.

use std::{
    collections::HashMap,
    fmt,
    marker::PhantomData,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::{Client, StatusCode, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use ioasync_core::{
    Ctx, Emits, Error, ErrorKind, Handler, Notifier, NotifierRef, Restart, Result, Spec,
};
use ioasync_worker::{CallOptions, EntryPoint};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    remote::{Link, Remote, link_of},
    wire,
};

/// How a pool's calls travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PoolMode {
    /// Core NATS: each call goes to one host of the pool's queue group;
    /// a host that dies with calls fails them within
    /// [`host_lost_after`](RemotePoolSpec::host_lost_after) ("worker host
    /// lost"), and retry-safe ones run again on another host. At most once
    /// unless retried.
    #[default]
    Core,
    /// JetStream work queue: a call is stored in the pool's stream and
    /// taken by one host, which acks it only after its result was sent; a
    /// host that dies mid-call has the job redelivered to another host
    /// after `ack_wait`. At least once (for retry-safe work); the caller
    /// gets exactly one result (later ones are dropped).
    JetStream {
        /// How long a taken job may go without an ack or a progress note
        /// (hosts send one each heartbeat) before it is redelivered.
        ack_wait: Duration,
    },
}

/// The subjects and names of pool `name`.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) calls: String,
    pub(crate) heartbeats: String,
    pub(crate) stream: String,
    pub(crate) jobs: String,
}

impl Names {
    pub(crate) fn of(pool: &str) -> Result<Names> {
        if pool.is_empty()
            || !pool
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::invalid_input(
                "add",
                format!("pool name {pool:?}: use letters, digits, '-' and '_' only"),
            ));
        }
        Ok(Names {
            calls: format!("ioasync.pool.{pool}"),
            heartbeats: format!("ioasync.hb.{pool}"),
            stream: format!("IOASYNC_JOBS_{pool}"),
            jobs: format!("ioasync.jobs.{pool}"),
        })
    }
}

/// Creates (or finds) the work-queue stream of pool `names`.
pub(crate) async fn jetstream_stream(
    js: &async_nats::jetstream::Context,
    names: &Names,
) -> Result<async_nats::jetstream::stream::Stream> {
    use async_nats::jetstream::stream::{Config, RetentionPolicy};
    js.get_or_create_stream(Config {
        name: names.stream.clone(),
        subjects: vec![names.jobs.clone()],
        retention: RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .map_err(|e| {
        Error::new(
            "add",
            ErrorKind::Other,
            format!(
                "JetStream stream {}: {e} (is the server started with JetStream, -js?)",
                names.stream
            ),
        )
    })
}

/// How to start a [`RemotePool`].
#[derive(Debug, Clone)]
pub struct RemotePoolArgs {
    link: Arc<Link>,
    pool: String,
    entry: Arc<str>,
    mode: PoolMode,
    host_lost_after: Duration,
    call_timeout: Duration,
}

/// A [`RemotePool`] spec under construction.
#[derive(Debug, Clone)]
#[must_use = "a RemotePoolSpec does nothing until it is added"]
pub struct RemotePoolSpec {
    name: String,
    args: RemotePoolArgs,
}

impl RemotePoolSpec {
    /// Calls travel by `mode` (default [`PoolMode::Core`]); the pool's
    /// hosts must serve the same mode.
    pub fn mode(mut self, mode: PoolMode) -> Self {
        self.args.mode = mode;
        self
    }

    /// A host silent this long (no heartbeat: it died, or its connection
    /// did) is lost: its calls fail with a "worker host lost" error, or
    /// run again elsewhere when retry-safe (default 600 ms; hosts beat
    /// every 100 ms). A call no host has claimed this long after it was
    /// sent is lost the same way.
    pub fn host_lost_after(mut self, d: Duration) -> Self {
        self.args.host_lost_after = d;
        self
    }

    /// The notifier's name (default: the pool's; name it apart when a
    /// local [`Function`](ioasync_worker::Function) pool of the same name
    /// [offloads](offload) to it).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The deadline of a call without its own timeout (default 30 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.args.call_timeout = d;
        self
    }
}

impl From<RemotePoolSpec> for Spec<RemotePool> {
    fn from(s: RemotePoolSpec) -> Self {
        Spec::new(s.name, s.args).restart(Restart::Permanent)
    }
}

/// What a [`RemotePool`] emits about its hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A worker host was heard for the first time (or again after it was
    /// lost).
    HostUp {
        /// Its id (hex).
        host: String,
    },
    /// A worker host went silent; `calls` of ours that it held failed or
    /// were retried.
    HostLost {
        /// Its id (hex).
        host: String,
        /// Our calls it held.
        calls: usize,
    },
    /// A reply came for a call that had already finished (timed out,
    /// failed, answered by an earlier delivery): it was dropped, never
    /// given to another call.
    LateReplyDropped {
        /// The host that sent it (hex).
        host: String,
    },
}

/// How one attempt of a call ended (told by the pool to the caller).
#[derive(Debug)]
enum Outcome {
    Reply(Bytes),
    Failed(String),
    Expired,
    NoResponders,
    Lost(String),
    /// The pool stopped (or is restarting) with the call in flight.
    Stopped,
}

struct Pending {
    tx: oneshot::Sender<Outcome>,
    sent: Instant,
    host: Option<u64>,
}

/// What a pool's handles and the pool share: outlives restarts.
struct Shared {
    caller: u64,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    cfg: RwLock<Option<Arc<Cfg>>>,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    late: AtomicU64,
    hosts_lost: AtomicU64,
}

/// One incarnation's settings, for callers.
struct Cfg {
    link: Arc<Link>,
    /// The client the pool's inbox is subscribed on (its replies come
    /// there): calls publish on it while it is connected.
    client: Client,
    /// `names.calls` as a subject (cloned per call without a copy).
    calls: async_nats::Subject,
    names: Names,
    entry: Arc<str>,
    inbox: String,
    mode: PoolMode,
    call_timeout: Duration,
    js: Option<async_nats::jetstream::Context>,
}

fn shared(pool: &NotifierRef<RemotePool>) -> Arc<Shared> {
    pool.handle_state(|| Shared {
        caller: wire::random_id(),
        next: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        cfg: RwLock::new(None),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        late: AtomicU64::new(0),
        hosts_lost: AtomicU64::new(0),
    })
}

impl Shared {
    fn take(&self, token: u64) -> Option<Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token)
    }
}

/// The caller's side of a Function pool served by
/// [`WorkerHost`](crate::WorkerHost)s over NATS: calls go to the pool's
/// queue group (or its JetStream work queue), each with a deadline and an
/// id of its own. A reply is matched to its call by that id on this
/// pool's own inbox: a reply for a call that already timed out or failed
/// is dropped ([`PoolEvent::LateReplyDropped`]), never handed to another
/// call. Hosts send heartbeats naming the calls they hold; a host that
/// goes silent is lost ([`PoolEvent::HostLost`]) and its calls fail with
/// a "worker host lost" error (`PeerDied`), or run again elsewhere when
/// retry-safe. With no host at all, a call fails at once ("no worker host
/// serves pool …", `Closed`), and a retry-safe one tries again until its
/// deadline; while the connection is down calls fail at once (`Closed`).
/// In [JetStream mode](PoolMode::JetStream) a call is a stored job
/// instead: it waits for a host until its deadline, and a host's death
/// redelivers it rather than failing it.
/// The tree shows the hosts it hears and the calls in flight.
///
/// Typed calls: [`RemoteEntryPoint::on_remote`].
///
/// ```no_run
/// use ioasync::{Loop, worker::EntryPoint};
/// use ioasync::nats::{Remote, RemoteEntryPoint};
///
/// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let nats = lp.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
/// let pool = lp.add(SQUARE.remote_pool(&nats, "squares")).await?;
/// assert_eq!(SQUARE.on_remote(&pool)?.call(&7).await?, 49);
/// # Ok(()) }
/// ```
pub struct RemotePool {
    shared: Arc<Shared>,
    cfg: Arc<Cfg>,
    /// What the reply task tells the notifier: late replies and the
    /// end of the inbox.
    notes: mpsc::UnboundedReceiver<Note>,
    /// Reads the inbox and hands each reply to its call directly (no
    /// notifier turn per reply).
    replies: JoinHandle<()>,
    heartbeats: Option<Subscriber>,
    hosts: HashMap<u64, Instant>,
    host_lost_after: Duration,
    tick: tokio::time::Interval,
    woke: Option<Wake>,
    shown: (usize, usize),
}

enum Wake {
    Note(Note),
    Heartbeat(async_nats::Message),
    Tick,
    Ended,
}

/// From the reply task to the notifier.
enum Note {
    /// A reply for a call that had already finished, from this host.
    Late(u64),
}

/// Hands one reply on the inbox to its call: the call's outcome, or a
/// late reply (counted here; `Some(Note::Late)` for the notifier's
/// event).
fn dispatch(shared: &Shared, pool: &str, msg: async_nats::Message) -> Option<Note> {
    let token = msg
        .subject
        .rsplit('.')
        .next()
        .and_then(|t| t.parse::<u64>().ok())?;
    if msg.status == Some(StatusCode::NO_RESPONDERS) {
        if let Some(p) = shared.take(token) {
            let _ = p.tx.send(Outcome::NoResponders);
        }
        return None;
    }
    let (kind, host, payload) = match wire::parse_reply(&msg.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(pool, "unreadable reply dropped: {e}");
            return None;
        }
    };
    let Some(p) = shared.take(token) else {
        shared.late.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pool, token, "late reply dropped");
        return Some(Note::Late(host));
    };
    let outcome = match kind {
        wire::OK => Outcome::Reply(payload),
        wire::EXPIRED => Outcome::Expired,
        _ => Outcome::Failed(String::from_utf8_lossy(&payload).into_owned()),
    };
    let _ = p.tx.send(outcome);
    None
}

/// The reply task: each reply on `inbox` to its call as it arrives; what
/// needs the notifier (a late reply's event, the inbox's end) to it.
async fn read_replies(
    shared: Arc<Shared>,
    pool: String,
    mut inbox: Subscriber,
    notes: mpsc::UnboundedSender<Note>,
) {
    while let Some(m) = inbox.next().await {
        if let Some(note) = dispatch(&shared, &pool, m)
            && notes.send(note).is_err()
        {
            return;
        }
    }
    // Dropping `notes` tells the notifier the inbox ended.
}

impl RemotePool {
    /// A pool named `pool` (the name its hosts serve) running `entry`,
    /// over `remote`'s connection; the notifier is named `pool` too.
    pub fn spec(remote: &NotifierRef<Remote>, pool: &str, entry: &str) -> RemotePoolSpec {
        RemotePoolSpec {
            name: pool.to_owned(),
            args: RemotePoolArgs {
                link: link_of(remote),
                pool: pool.to_owned(),
                entry: entry.into(),
                mode: PoolMode::Core,
                host_lost_after: Duration::from_millis(600),
                call_timeout: Duration::from_secs(30),
            },
        }
    }

    fn show(&mut self, ctx: &Ctx<'_, Self>) {
        let now = (
            self.hosts.len(),
            self.shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
        );
        if now != self.shown {
            self.shown = now;
            let mode = match self.cfg.mode {
                PoolMode::Core => "",
                PoolMode::JetStream { .. } => " (JetStream)",
            };
            ctx.set_detail(format!(
                "{}{mode}: {} hosts, {} calls in flight",
                self.cfg.names.calls, now.0, now.1
            ));
        }
    }

    async fn on_heartbeat(&mut self, msg: async_nats::Message, ctx: &mut Ctx<'_, Self>) {
        let Ok((host, held)) = wire::parse_heartbeat(&msg.payload) else {
            return;
        };
        if self.hosts.insert(host, Instant::now()).is_none() {
            tracing::info!(
                pool = self.cfg.names.calls,
                host = format!("{host:x}"),
                "worker host up"
            );
            ctx.emit(PoolEvent::HostUp {
                host: format!("{host:x}"),
            })
            .await;
        }
        let me = self.shared.caller;
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (caller, token) in held {
            if caller == me
                && let Some(p) = pending.get_mut(&token)
            {
                p.host = Some(host);
            }
        }
    }

    async fn on_tick(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.cfg.mode != PoolMode::Core {
            return;
        }
        let now = Instant::now();
        let after = self.host_lost_after;
        let lost: Vec<u64> = self
            .hosts
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) > after)
            .map(|(h, _)| *h)
            .collect();
        for h in &lost {
            self.hosts.remove(h);
        }
        let mut failed: Vec<(u64, Option<u64>)> = Vec::new();
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let gone: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| match p.host {
                    Some(h) => lost.contains(&h),
                    None => now.duration_since(p.sent) > after,
                })
                .map(|(t, _)| *t)
                .collect();
            for t in gone {
                if let Some(p) = pending.remove(&t) {
                    let why = match p.host {
                        Some(h) => format!(
                            "worker host lost: host {h:x} went silent for {after:?} while it held the call (it may have run)"
                        ),
                        None => format!(
                            "worker host lost: no live host held the call {after:?} after it was sent (its host died or the connection did)"
                        ),
                    };
                    failed.push((t, p.host));
                    let _ = p.tx.send(Outcome::Lost(why));
                }
            }
        }
        for h in lost {
            self.shared.hosts_lost.fetch_add(1, Ordering::Relaxed);
            let calls = failed.iter().filter(|(_, host)| *host == Some(h)).count();
            tracing::warn!(
                pool = self.cfg.names.calls,
                host = format!("{h:x}"),
                calls,
                "worker host lost"
            );
            ctx.emit(PoolEvent::HostLost {
                host: format!("{h:x}"),
                calls,
            })
            .await;
        }
    }
}

impl Emits<PoolEvent> for RemotePool {}

impl Notifier for RemotePool {
    type Args = RemotePoolArgs;

    fn kind() -> &'static str {
        "remote-pool"
    }

    async fn init(args: RemotePoolArgs, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let names = Names::of(&args.pool)?;
        let client: Client = args.link.client("add")?;
        let shared = shared(&ctx.this());
        let inbox = client.new_inbox();
        let sub_err = |e: async_nats::SubscribeError| {
            Error::new("add", ErrorKind::Io, format!("subscribe: {e}"))
        };
        let inbox_sub = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(sub_err)?;
        let (heartbeats, js) = match args.mode {
            PoolMode::Core => (
                Some(
                    client
                        .subscribe(names.heartbeats.clone())
                        .await
                        .map_err(sub_err)?,
                ),
                None,
            ),
            PoolMode::JetStream { .. } => {
                let js = async_nats::jetstream::new(client.clone());
                jetstream_stream(&js, &names).await?;
                (None, Some(js))
            }
        };
        let _ = client.flush().await;
        let cfg = Arc::new(Cfg {
            link: args.link.clone(),
            client: client.clone(),
            calls: async_nats::Subject::from(names.calls.as_str()),
            names,
            entry: args.entry.clone(),
            inbox,
            mode: args.mode,
            call_timeout: args.call_timeout,
            js,
        });
        *shared.cfg.write().unwrap_or_else(|e| e.into_inner()) = Some(cfg.clone());
        let mut tick =
            tokio::time::interval((args.host_lost_after / 4).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let replies = tokio::spawn(read_replies(
            shared.clone(),
            cfg.names.calls.clone(),
            inbox_sub,
            notes_tx,
        ));
        let mut pool = RemotePool {
            shared,
            cfg,
            notes,
            replies,
            heartbeats,
            hosts: HashMap::new(),
            host_lost_after: args.host_lost_after,
            tick,
            woke: None,
            shown: (usize::MAX, 0),
        };
        pool.show(ctx);
        Ok(pool)
    }

    async fn ready(&mut self) {
        let hb = async {
            match &mut self.heartbeats {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };
        self.woke = Some(tokio::select! {
            n = self.notes.recv() => n.map_or(Wake::Ended, Wake::Note),
            m = hb => m.map_or(Wake::Ended, Wake::Heartbeat),
            _ = self.tick.tick() => Wake::Tick,
        });
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        match self.woke.take() {
            Some(Wake::Note(Note::Late(host))) => {
                ctx.emit(PoolEvent::LateReplyDropped {
                    host: format!("{host:x}"),
                })
                .await;
            }
            Some(Wake::Heartbeat(m)) => self.on_heartbeat(m, ctx).await,
            Some(Wake::Tick) => {
                self.on_tick(ctx).await;
                self.show(ctx);
            }
            Some(Wake::Ended) => ctx.fail(Error::closed(
                "recv",
                format!(
                    "pool {}: its subscriptions ended (the connection closed)",
                    self.cfg.names.calls
                ),
            )),
            None => {}
        }
    }

    async fn on_stop(&mut self, _ctx: &mut Ctx<'_, Self>) {
        self.replies.abort();
        // New calls fail at once until the next incarnation (if any).
        *self.shared.cfg.write().unwrap_or_else(|e| e.into_inner()) = None;
        let pending: Vec<Pending> = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in pending {
            let _ = p.tx.send(Outcome::Stopped);
        }
    }
}

impl Drop for RemotePool {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

impl fmt::Debug for RemotePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePool")
            .field("pool", &self.cfg.names.calls)
            .field("hosts", &self.hosts.len())
            .finish()
    }
}

/// A remote pool's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, kameo::Reply)]
pub struct RemoteStats {
    /// Hosts heard within `host_lost_after` (core mode).
    pub hosts: usize,
    /// Calls waiting for their result.
    pub in_flight: usize,
    /// Calls answered.
    pub completed: u64,
    /// Calls that failed (the entry failed, lost, timed out, no host).
    pub failed: u64,
    /// Attempts made again for retry-safe calls.
    pub retried: u64,
    /// Replies dropped because their call had already finished.
    pub late_dropped: u64,
    /// Hosts lost (gone silent) so far.
    pub hosts_lost: u64,
}

/// Message: the pool's counters ([`RemotePoolRef::stats`]).
#[derive(Debug)]
pub(crate) struct RemoteStatsOf;

/// Operations on a [`RemotePool`]'s handle.
pub trait RemotePoolRef {
    /// The pool's counters: hosts heard, calls in flight, completed,
    /// failed, retried, late replies dropped, hosts lost.
    ///
    /// ```no_run
    /// use ioasync::{Loop, worker::EntryPoint};
    /// use ioasync::nats::{Remote, RemoteEntryPoint, RemotePoolRef};
    ///
    /// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
    ///
    /// # fn main() -> ioasync::Result<()> {
    /// let lp = Loop::new()?;
    /// let l = lp.clone();
    /// lp.block_on(async move {
    ///     let nats = l.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
    ///     let pool = l.add(SQUARE.remote_pool(&nats, "squares")).await?;
    ///     assert_eq!(SQUARE.on_remote(&pool)?.call(&9).await?, 81);
    ///     let stats = pool.stats().await?;
    ///     assert_eq!((stats.completed, stats.in_flight), (1, 0));
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn stats(&self) -> impl Future<Output = Result<RemoteStats>> + Send;
}

impl RemotePoolRef for NotifierRef<RemotePool> {
    async fn stats(&self) -> Result<RemoteStats> {
        self.ask(RemoteStatsOf).await
    }
}

impl Handler<RemoteStatsOf> for RemotePool {
    type Reply = RemoteStats;
    async fn handle(&mut self, _: RemoteStatsOf, _ctx: &mut Ctx<'_, Self>) -> RemoteStats {
        let s = &self.shared;
        RemoteStats {
            hosts: self.hosts.len(),
            in_flight: s.pending.lock().unwrap_or_else(|e| e.into_inner()).len(),
            completed: s.completed.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            late_dropped: s.late.load(Ordering::Relaxed),
            hosts_lost: s.hosts_lost.load(Ordering::Relaxed),
        }
    }
}

fn err(kind: ErrorKind, msg: String) -> Error {
    Error::new("call", kind, msg)
}

/// One call with encoded arguments; the encoded result. `options.timeout`
/// (else the pool's call timeout) is its deadline; `options.retry_safe`
/// lets a lost call run again.
pub async fn call_raw(
    pool: &NotifierRef<RemotePool>,
    args: Bytes,
    options: CallOptions,
) -> Result<Bytes> {
    call_on(pool, &shared(pool), args, options).await
}

/// [`call_raw`] with the pool's shared state at hand.
async fn call_on(
    pool: &NotifierRef<RemotePool>,
    shared: &Shared,
    args: Bytes,
    options: CallOptions,
) -> Result<Bytes> {
    let cfg = shared
        .cfg
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| {
            Error::closed(
                "call",
                format!("remote pool {} is not running", pool.path()),
            )
        })?;
    let timeout = options.timeout.unwrap_or(cfg.call_timeout);
    let started = Instant::now();
    let deadline = started + timeout;
    let pool_name = &cfg.names.calls;
    let mut attempt = 0u32;
    let res = loop {
        attempt += 1;
        if attempt > 1 {
            shared.retried.fetch_add(1, Ordering::Relaxed);
        }
        // The pool's own client while it is connected; otherwise the
        // link's (its error says why, or it is a newer connection).
        let fallback;
        let client = if cfg.client.connection_state() == async_nats::connection::State::Connected {
            &cfg.client
        } else {
            match cfg.link.client("call") {
                Ok(c) => {
                    fallback = c;
                    &fallback
                }
                Err(e) => break Err(e),
            }
        };
        let token = shared.next.fetch_add(1, Ordering::Relaxed);
        let reply = format!("{}.{token}", cfg.inbox);
        let now = if attempt == 1 {
            started
        } else {
            Instant::now()
        };
        let left = deadline.saturating_duration_since(now);
        let frame = wire::call(
            shared.caller,
            token,
            left.as_millis().clamp(1, u32::MAX as u128) as u32,
            &reply,
            &args,
        );
        let (tx, rx) = oneshot::channel();
        shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token,
                Pending {
                    tx,
                    sent: now,
                    host: None,
                },
            );
        let sent = match &cfg.js {
            None => client
                .publish_with_reply(cfg.calls.clone(), reply, frame)
                .await
                .map_err(|e| err(ErrorKind::Io, format!("pool {pool_name}: publish: {e}"))),
            Some(js) => {
                let stored = async {
                    js.publish(cfg.names.jobs.clone(), frame)
                        .await
                        .map_err(|e| e.to_string())?
                        .await
                        .map_err(|e| e.to_string())
                };
                match tokio::time::timeout_at(deadline, stored).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(err(
                        ErrorKind::Io,
                        format!(
                            "pool {pool_name}: the job was not stored in {}: {e}",
                            cfg.names.stream
                        ),
                    )),
                    Err(_) => Err(err(
                        ErrorKind::Timeout,
                        format!("pool {pool_name}: the job was not stored within {timeout:?}"),
                    )),
                }
            }
        };
        if let Err(e) = sent {
            shared.take(token);
            break Err(e);
        }
        let outcome = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) => {
                break Err(Error::closed(
                    "call",
                    format!("remote pool {} stopped", pool.path()),
                ));
            }
            Err(_) => {
                // Anything that comes for it now is a late reply: dropped.
                shared.take(token);
                break Err(err(
                    ErrorKind::Timeout,
                    format!("pool {pool_name}: no result within {timeout:?}"),
                ));
            }
        };
        match outcome {
            Outcome::Reply(b) => break Ok(b),
            Outcome::Failed(text) => break Err(err(ErrorKind::Other, text)),
            Outcome::Expired => {
                break Err(err(
                    ErrorKind::Timeout,
                    format!(
                        "pool {pool_name}: the call reached its host past its deadline ({timeout:?})"
                    ),
                ));
            }
            Outcome::NoResponders => {
                let pause = Duration::from_millis(10 * u64::from(attempt.min(20)));
                if options.retry_safe && Instant::now() + pause < deadline {
                    tokio::time::sleep(pause).await;
                    continue;
                }
                break Err(err(
                    ErrorKind::Closed,
                    format!("pool {pool_name}: no worker host serves it (no responders)"),
                ));
            }
            Outcome::Stopped => {
                break Err(Error::closed(
                    "call",
                    format!(
                        "remote pool {} stopped with the call in flight",
                        pool.path()
                    ),
                ));
            }
            Outcome::Lost(why) => {
                if options.retry_safe && Instant::now() < deadline && attempt < 8 {
                    continue;
                }
                break Err(err(ErrorKind::PeerDied, format!("pool {pool_name}: {why}")));
            }
        }
    };
    match &res {
        Ok(_) => shared.completed.fetch_add(1, Ordering::Relaxed),
        Err(_) => shared.failed.fetch_add(1, Ordering::Relaxed),
    };
    res
}

/// What a local [`Function`](ioasync_worker::Function) pool hands the
/// calls its own workers have no room for
/// ([`FunctionSpec::offload`](ioasync_worker::FunctionSpec::offload)):
/// they run on `pool`'s worker hosts, so one pool's `call` spans local
/// worker processes and remote hosts. `pool` must run the same entry.
///
/// ```no_run
/// use ioasync::{worker::EntryPoint, Loop};
/// use ioasync::nats::{Remote, RemoteEntryPoint, offload};
///
/// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
///
/// # fn main() -> ioasync::Result<()> {
/// ioasync::worker::run_if_worker([SQUARE.runs(|n| n * n)]);
/// let lp = Loop::new()?;
/// let l = lp.clone();
/// lp.block_on(async move {
/// let nats = l.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
/// let remote = l.add(SQUARE.remote_pool(&nats, "squares").named("squares-hosts")).await?;
/// // Two local workers; past them, up to 32 calls at once on the hosts.
/// let pool = l
///     .add(SQUARE.pool("squares").max_workers(2).offload(32, offload(&remote)))
///     .await?;
/// assert_eq!(SQUARE.on(&pool)?.call(&9).await?, 81);
/// Ok(())
/// })
/// # }
/// ```
pub fn offload(
    pool: &NotifierRef<RemotePool>,
) -> impl Fn(Bytes, CallOptions) -> futures_util::future::BoxFuture<'static, Result<Bytes>>
+ Send
+ Sync
+ 'static {
    let pool = pool.clone();
    move |args, options| {
        let pool = pool.clone();
        Box::pin(async move { call_raw(&pool, args, options).await })
    }
}

/// Typed calls on a [`RemotePool`] (from [`RemoteEntryPoint::on_remote`]):
/// the same shape as [`EntryRef`](ioasync_worker::EntryRef). Cheap to
/// clone.
pub struct RemoteEntry<A, R> {
    pool: NotifierRef<RemotePool>,
    shared: Arc<Shared>,
    _sig: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for RemoteEntry<A, R> {
    fn clone(&self) -> Self {
        RemoteEntry {
            pool: self.pool.clone(),
            shared: self.shared.clone(),
            _sig: PhantomData,
        }
    }
}

impl<A, R> fmt::Debug for RemoteEntry<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteEntry")
            .field("pool", &self.pool.path())
            .finish()
    }
}

impl<A: Serialize + Sync, R: DeserializeOwned + Send> RemoteEntry<A, R> {
    /// Calls the entry on some host with the pool's call timeout.
    pub async fn call(&self, args: &A) -> Result<R> {
        self.call_with(args, CallOptions::default()).await
    }

    /// Calls the entry with options: `timeout` (the call's deadline) and
    /// `retry_safe` (a lost call runs again on another host) apply.
    pub async fn call_with(&self, args: &A, options: CallOptions) -> Result<R> {
        let payload = ioasync_worker::encode(args)?;
        let out = call_on(&self.pool, &self.shared, payload, options).await?;
        ioasync_worker::decode::<R>(&out).map_err(|e| {
            err(
                ErrorKind::InvalidInput,
                format!(
                    "pool {}: the result does not decode as {}: {}",
                    self.pool.path(),
                    std::any::type_name::<R>(),
                    e.message()
                ),
            )
        })
    }

    /// The pool's counters.
    pub async fn stats(&self) -> Result<RemoteStats> {
        self.pool.stats().await
    }

    /// The pool.
    pub fn pool(&self) -> &NotifierRef<RemotePool> {
        &self.pool
    }
}

/// Remote pools and hosts from an [`EntryPoint`], declared once for
/// local and remote use.
pub trait RemoteEntryPoint<A, R> {
    /// A [`RemotePool`] spec calling this entry on the hosts of `pool`.
    fn remote_pool(&self, remote: &NotifierRef<Remote>, pool: &str) -> RemotePoolSpec;

    /// Typed calls on `pool`; fails when it runs another entry.
    fn on_remote(&self, pool: &NotifierRef<RemotePool>) -> Result<RemoteEntry<A, R>>;
}

impl<A, R> RemoteEntryPoint<A, R> for EntryPoint<A, R>
where
    A: Serialize + Sync,
    R: DeserializeOwned + Send,
{
    fn remote_pool(&self, remote: &NotifierRef<Remote>, pool: &str) -> RemotePoolSpec {
        RemotePool::spec(remote, pool, self.name())
    }

    fn on_remote(&self, pool: &NotifierRef<RemotePool>) -> Result<RemoteEntry<A, R>> {
        let shared = shared(pool);
        let runs = shared
            .cfg
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.entry.clone());
        match runs {
            Some(e) if &*e == self.name() => Ok(RemoteEntry {
                pool: pool.clone(),
                shared,
                _sig: PhantomData,
            }),
            Some(e) => Err(Error::invalid_input(
                "call",
                format!(
                    "remote pool {} runs entry {e:?}, not {:?}",
                    pool.path(),
                    self.name()
                ),
            )),
            None => Err(Error::closed(
                "call",
                format!("remote pool {} is not running", pool.path()),
            )),
        }
    }
}
