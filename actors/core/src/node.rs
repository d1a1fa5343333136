//! The tree's shared data: one [`Node`] per notifier, and the loop-wide
//! [`Shared`] state (registry, supervision event bus, fatal failure).
//!
//! Contract: a `Node` is plain data plus a control queue. The notifier's own
//! actor is the only reader of its queue; anyone may push to it. Locks here
//! are never held across an `.await`.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
    task::Poll,
};

use dashmap::{DashMap, mapref::entry::Entry};
use futures_util::{future::BoxFuture, task::AtomicWaker};
use tokio::{
    sync::{Notify, broadcast, oneshot},
    time::Instant,
};

use crate::{
    error::{Error, Result},
    event::{ExitReason, SupervisionEvent, SupervisionEventKind},
    snapshot::NodeState,
    spec::Policy,
};

/// FNV-1a for the path registry: paths are short, trusted (they come from
/// the program's own specs) and hashed on every add and stop.
#[derive(Clone, Default)]
pub(crate) struct PathHash;

impl std::hash::BuildHasher for PathHash {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        // Mix the high bits down: DashMap picks its shard from them.
        self.0 ^ (self.0 >> 29) ^ (self.0 << 35)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

thread_local! {
    static PATH_BUF: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Loop-wide state shared by every node of one tree.
pub(crate) struct Shared {
    next_id: AtomicU64,
    by_path: DashMap<Arc<str>, Weak<Node>, PathHash>,
    observed: AtomicBool,
    events: broadcast::Sender<SupervisionEvent>,
    fatal: Mutex<Option<ExitReason>>,
    fatal_notify: Notify,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            next_id: AtomicU64::new(1),
            by_path: DashMap::with_hasher(PathHash),
            observed: AtomicBool::new(false),
            events: broadcast::channel(1024).0,
            fatal: Mutex::new(None),
            fatal_notify: Notify::new(),
        })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SupervisionEvent> {
        self.observed.store(true, Ordering::Release);
        self.events.subscribe()
    }

    pub(crate) fn publish(&self, node: &Node, what: SupervisionEventKind) {
        // Until someone subscribes, publishing costs one atomic load.
        if self.observed.load(Ordering::Acquire) && self.events.receiver_count() > 0 {
            let _ = self.events.send(SupervisionEvent {
                path: node.path.to_string(),
                kind: node.kind,
                what,
            });
        }
    }

    /// Publishes an event about something a notifier runs that is not a
    /// notifier itself (a worker process of a pool).
    pub(crate) fn publish_at(&self, path: String, kind: &'static str, what: SupervisionEventKind) {
        if self.observed.load(Ordering::Acquire) && self.events.receiver_count() > 0 {
            let _ = self.events.send(SupervisionEvent { path, kind, what });
        }
    }

    pub(crate) fn lookup_path(&self, path: &str) -> Option<Arc<Node>> {
        self.by_path.get(path)?.upgrade()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.by_path.len()
    }

    fn unregister(&self, node: &Node) {
        self.by_path
            .remove_if(&*node.path, |_, w| std::ptr::eq(w.as_ptr(), node));
    }

    /// The root failed: record it for the loop, once.
    pub(crate) fn set_fatal(&self, reason: ExitReason) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(reason);
            self.fatal_notify.notify_waiters();
            self.fatal_notify.notify_one();
        }
    }

    pub(crate) async fn wait_fatal(&self) -> ExitReason {
        loop {
            if let Some(r) = self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return r;
            }
            self.fatal_notify.notified().await;
        }
    }
}

/// Control messages, outside the user mailbox so a failed or suspended
/// notifier still hears its parent.
pub(crate) enum Ctl {
    /// Stop for good: children first, then drain the mailbox, then on_stop.
    Stop,
    /// Stop this incarnation for a group restart; acked when done.
    Suspend(oneshot::Sender<()>),
    /// Start a new incarnation; acked when init has run.
    Resume(oneshot::Sender<()>),
    /// (to a parent) A child failed and waits for a decision.
    ChildFailed(Arc<Node>, ExitReason),
    /// (to a parent) The backoff of a restart has passed.
    RestartGroup(Vec<Arc<Node>>),
}

/// What a node needs of its actor, with the actor type erased.
pub(crate) trait ErasedActor: Send + Sync {
    fn kill(&self);
    fn is_alive(&self) -> bool;
    fn wait_stopped(&self) -> BoxFuture<'_, ()>;
    fn is_stopped(&self) -> bool;
    fn queue_depth(&self) -> Option<usize>;
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<A: kameo::Actor> ErasedActor for kameo::actor::ActorRef<A> {
    fn kill(&self) {
        kameo::actor::ActorRef::kill(self)
    }
    fn is_alive(&self) -> bool {
        kameo::actor::ActorRef::is_alive(self)
    }
    fn wait_stopped(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.wait_for_shutdown())
    }
    fn is_stopped(&self) -> bool {
        self.with_shutdown_result(|_| ()).is_some()
    }
    fn queue_depth(&self) -> Option<usize> {
        let tx = self.mailbox_sender();
        Some(tx.max_capacity()?.saturating_sub(tx.capacity()?))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// One notifier's place in the tree.
pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) path: Arc<str>,
    pub(crate) kind: &'static str,
    pub(crate) policy: Policy,
    pub(crate) shared: Arc<Shared>,
    pub(crate) span: tracing::Span,
    parent: Option<Weak<Node>>,
    children: Mutex<Vec<Arc<Node>>>,
    ctl: Mutex<VecDeque<Ctl>>,
    ctl_waker: AtomicWaker,
    state: AtomicU8,
    restarts: AtomicU32,
    history: Mutex<VecDeque<Instant>>,
    stopping: AtomicBool,
    retired: AtomicBool,
    ctl_pending: AtomicBool,
    stop_requested: AtomicBool,
    buffered: AtomicU64,
    actor: OnceLock<Box<dyn ErasedActor>>,
}

impl Node {
    /// A new node, its path reserved in the registry (names are unique
    /// among siblings).
    pub(crate) fn new(
        shared: &Arc<Shared>,
        parent: Option<&Arc<Node>>,
        name: &str,
        kind: &'static str,
        policy: Policy,
    ) -> Result<Arc<Node>> {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if name.contains('/') {
            return Err(Error::invalid_input(
                "add",
                format!("notifier name {name:?} must not contain '/'"),
            ));
        }
        let prefix = match parent {
            Some(p) if &*p.path != "/" => &*p.path,
            _ => "",
        };
        let path: Arc<str> = match (parent, name.is_empty()) {
            (None, _) => Arc::from("/"),
            (Some(_), true) => format!("{prefix}/{kind}-{id}").into(),
            (Some(_), false) => PATH_BUF.with_borrow_mut(|p| {
                // Built in a reused buffer: the Arc is the one allocation.
                p.clear();
                p.push_str(prefix);
                p.push('/');
                p.push_str(name);
                Arc::from(p.as_str())
            }),
        };
        let span = tracing::info_span!("notifier", path = %path, kind);
        let node = Arc::new(Node {
            id,
            path: path.clone(),
            kind,
            policy,
            shared: shared.clone(),
            span,
            parent: parent.map(Arc::downgrade),
            children: Mutex::new(Vec::new()),
            ctl: Mutex::new(VecDeque::new()),
            ctl_waker: AtomicWaker::new(),
            state: AtomicU8::new(NodeState::Starting as u8),
            restarts: AtomicU32::new(0),
            history: Mutex::new(VecDeque::new()),
            stopping: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            ctl_pending: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            buffered: AtomicU64::new(u64::MAX),
            actor: OnceLock::new(),
        });
        match shared.by_path.entry(path) {
            Entry::Occupied(e) => {
                return Err(Error::invalid_input(
                    "add",
                    format!("a notifier named {:?} already exists", e.key()),
                ));
            }
            Entry::Vacant(v) => {
                v.insert(Arc::downgrade(&node));
            }
        }
        Ok(node)
    }

    /// The last part of the path (the root's is empty).
    pub(crate) fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    pub(crate) fn parent(&self) -> Option<Arc<Node>> {
        self.parent.as_ref()?.upgrade()
    }

    pub(crate) fn set_actor(&self, actor: Box<dyn ErasedActor>) {
        let _ = self.actor.set(actor);
    }

    pub(crate) fn children(&self) -> Vec<Arc<Node>> {
        lock(&self.children).clone()
    }

    pub(crate) fn push_child(&self, child: Arc<Node>) {
        lock(&self.children).push(child);
    }

    pub(crate) fn remove_child(&self, id: u64) {
        let mut children = lock(&self.children);
        // Stops go in reverse start order: the common case is the last one.
        if children.last().is_some_and(|c| c.id == id) {
            children.pop();
        } else {
            children.retain(|c| c.id != id);
        }
    }

    pub(crate) fn push_ctl(&self, ctl: Ctl) {
        if let Ctl::Stop = ctl {
            // The most common control message needs no queue slot.
            self.stop_requested.store(true, Ordering::Release);
        } else {
            lock(&self.ctl).push_back(ctl);
        }
        self.ctl_pending.store(true, Ordering::Release);
        self.ctl_waker.wake();
    }

    /// Resolves once control messages are queued. Only the node's own
    /// actor waits on it (a single-consumer waker: no lock, no allocation).
    pub(crate) fn ctl_ready(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            self.ctl_waker.register(cx.waker());
            if self.ctl_pending() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Control messages may be queued (one atomic load: the hot path).
    pub(crate) fn ctl_pending(&self) -> bool {
        self.ctl_pending.load(Ordering::Acquire)
    }

    pub(crate) fn pop_ctl(&self) -> Option<Ctl> {
        if self.stop_requested.swap(false, Ordering::AcqRel) {
            return Some(Ctl::Stop);
        }
        let mut q = lock(&self.ctl);
        let ctl = q.pop_front();
        if q.is_empty() {
            self.ctl_pending.store(false, Ordering::Release);
        }
        ctl
    }

    pub(crate) fn state(&self) -> NodeState {
        NodeState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: NodeState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Bytes the notifier reports holding in its buffers, if it reports.
    pub(crate) fn buffered(&self) -> Option<u64> {
        let b = self.buffered.load(Ordering::Relaxed);
        (b != u64::MAX).then_some(b)
    }

    pub(crate) fn set_buffered(&self, bytes: u64) {
        self.buffered
            .store(bytes.min(u64::MAX - 1), Ordering::Relaxed);
    }

    pub(crate) fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failure now; returns how many fall within the window.
    pub(crate) fn record_failure(&self, now: Instant) -> u32 {
        let mut h = lock(&self.history);
        while h
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.policy.window)
        {
            h.pop_front();
        }
        h.push_back(now);
        h.len() as u32
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn mark_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.actor.get().is_some_and(|a| a.is_alive())
    }

    /// The actor, if it is an `A`.
    pub(crate) fn actor_as<A: kameo::Actor>(&self) -> Option<kameo::actor::ActorRef<A>> {
        self.actor
            .get()?
            .as_any()
            .downcast_ref::<kameo::actor::ActorRef<A>>()
            .cloned()
    }

    pub(crate) fn queue_depth(&self) -> Option<usize> {
        self.actor.get()?.queue_depth()
    }

    /// The actor has ended for good: leave the registry and the parent.
    pub(crate) fn retire(&self) {
        if self.retired.swap(true, Ordering::AcqRel) {
            return;
        }
        self.set_state(NodeState::Stopped);
        self.shared.unregister(self);
        if let Some(p) = self.parent() {
            p.remove_child(self.id);
        }
    }

    /// Stops this node's whole subtree, leaves first in reverse start
    /// order, each within its stop timeout (and `deadline`), killing what
    /// overruns.
    pub(crate) fn shutdown(
        self: Arc<Self>,
        deadline: Option<Instant>,
        report: &mut ShutdownReport,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.mark_stopping();
            self.shutdown_children(deadline, report).await;
            self.stop_self(deadline, report).await;
        })
    }

    /// Stops every child subtree, in reverse start order.
    pub(crate) async fn shutdown_children(
        &self,
        deadline: Option<Instant>,
        report: &mut ShutdownReport,
    ) {
        loop {
            let last = lock(&self.children).last().cloned();
            let Some(child) = last else { break };
            let id = child.id;
            if lock(&child.children).is_empty() {
                // A leaf: no recursion, so no boxed future.
                child.mark_stopping();
                child.stop_self(deadline, report).await;
            } else {
                child.shutdown(deadline, report).await;
            }
            // The child left the list when it retired; make sure of it
            // without scanning the list.
            let mut children = lock(&self.children);
            if children.last().is_some_and(|c| c.id == id) {
                children.pop();
            }
        }
    }

    /// Asks this node's actor to stop and waits for it, within its stop
    /// timeout and `deadline`; kills it past them.
    async fn stop_self(&self, deadline: Option<Instant>, report: &mut ShutdownReport) {
        self.push_ctl(Ctl::Stop);
        self.await_stop(deadline, report).await;
    }

    async fn await_stop(&self, deadline: Option<Instant>, report: &mut ShutdownReport) {
        if let Some(actor) = self.actor.get().filter(|a| !a.is_stopped()) {
            let mut until = Instant::now() + self.policy.stop_timeout;
            if let Some(d) = deadline {
                until = until.min(d);
            }
            if tokio::time::timeout_at(until, actor.wait_stopped())
                .await
                .is_err()
            {
                tracing::warn!(parent: &self.span, "graceful stop overran; killing");
                actor.kill();
                actor.wait_stopped().await;
                report.overran.push(self.path.to_string());
                self.shared.publish(self, SupervisionEventKind::Overran);
            }
        }
        report.stopped.push(self.path.to_string());
        self.retire();
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("state", &self.state())
            .finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a `shutdown` stopped, in the order it stopped them, and which of
/// them overran their graceful-stop deadline and were killed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Paths of every notifier stopped, leaves first.
    pub stopped: Vec<String>,
    /// Paths of the notifiers killed at their deadline.
    pub overran: Vec<String>,
}

impl ShutdownReport {
    /// Every notifier stopped within its deadline.
    pub fn is_clean(&self) -> bool {
        self.overran.is_empty()
    }
}
