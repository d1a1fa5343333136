//! One [`Node`] per notifier: its place in the tree (path, parent,
//! children), its supervision data (policy, state, restart history), its
//! control queue, and the [`Shared`] registry of its tree.
//!
//! Contract: a `Node` is plain data plus a control queue. The notifier's own
//! runtime is the only reader of its queue; anyone may push to it. Locks
//! here are never held across an `.await`.

use std::{
    any::{Any, TypeId},
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
use tokio::{sync::oneshot, time::Instant};

use crate::{
    error::{Error, Result},
    event::{PendingSub, Subscribers},
    exit::{ExitReason, SupervisionEventKind},
    policy::Policy,
    registry::{Bus, Fatal, PathHash},
    snapshot::NodeSnapshot,
    state::NodeState,
};

thread_local! {
    static PATH_BUF: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// What every node of one tree shares.
pub(crate) struct Shared {
    next_id: AtomicU64,
    by_path: DashMap<Arc<str>, Weak<Node>, PathHash>,
    pub(crate) bus: Bus,
    pub(crate) fatal: Fatal,
    policies: Mutex<Vec<Arc<Policy>>>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            next_id: AtomicU64::new(1),
            by_path: DashMap::with_hasher(PathHash),
            bus: Bus::new(),
            fatal: Fatal::new(),
            policies: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn publish(&self, node: &Node, what: SupervisionEventKind) {
        self.bus.publish(&node.path, node.kind, what);
    }

    /// The shared copy of `policy` (most notifiers of a tree share a few).
    fn intern(&self, policy: Policy) -> Arc<Policy> {
        let mut known = lock(&self.policies);
        if let Some(p) = known.iter().find(|p| ***p == policy) {
            return p.clone();
        }
        let p = Arc::new(policy);
        if known.len() < 64 {
            known.push(p.clone());
        }
        p
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
}

/// Control messages, outside the user mailbox so a failed or restarting
/// notifier still hears its parent and its tree.
pub(crate) enum Ctl {
    /// Stop for good: children first, then drain the mailbox, then
    /// `on_stop`. A torn-down incarnation just leaves.
    Stop,
    /// Tear this incarnation down for a group restart; acked when done.
    Suspend(oneshot::Sender<()>),
    /// Start a new incarnation (of a torn-down notifier); acked when its
    /// `init` has run, however it went.
    Resume(oneshot::Sender<()>),
    /// A child gave up: end this incarnation with this reason.
    Fail(ExitReason),
    /// A message handled ahead of the mailbox (a `Box<dyn Urgent<N>>` of
    /// the notifier's type), even while the notifier takes no messages.
    Urgent(Box<dyn Any + Send>),
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

impl<A: kameo::Actor> ErasedActor for kameo::actor::ActorRef<A>
where
    A::Error: Clone,
{
    fn kill(&self) {
        kameo::actor::ActorRef::kill(self)
    }
    fn is_alive(&self) -> bool {
        kameo::actor::ActorRef::is_alive(self)
    }
    fn wait_stopped(&self) -> BoxFuture<'_, ()> {
        // After `on_stop` (the mailbox closes before it): the node has
        // left the tree when this resolves.
        Box::pin(async move {
            let _ = self.wait_for_shutdown_result().await;
        })
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

/// What few nodes need, allocated on first use: control messages other
/// than a stop, the failure history, subscriptions made from outside the
/// runtime, the event taps of `next_event`, and the lock that runs its
/// children's group restarts one at a time.
#[derive(Default)]
struct Extras {
    ctl: Mutex<VecDeque<Ctl>>,
    history: Mutex<VecDeque<Instant>>,
    subs: Mutex<Vec<PendingSub>>,
    taps: Mutex<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>,
    group: tokio::sync::Mutex<()>,
    /// Messages told with `Overflow::DropOldest` that met a full mailbox
    /// (the lossy lane: see `NotifierRef::tell_with`).
    lossy: Mutex<VecDeque<Box<dyn Any + Send>>>,
    /// What the notifier says of itself in snapshots (`Ctx::set_detail`).
    detail: Mutex<Option<Arc<str>>>,
}

/// One notifier's place in the tree.
pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) path: Arc<str>,
    pub(crate) kind: &'static str,
    /// Interned: notifiers with equal policies share one.
    pub(crate) policy: Arc<Policy>,
    pub(crate) shared: Arc<Shared>,
    /// `None` when tracing was off for it at creation (most nodes).
    span: Option<Box<tracing::Span>>,
    parent: Option<Weak<Node>>,
    pub(crate) children: Mutex<Vec<Arc<Node>>>,
    /// The actor's task, woken by control, the lossy lane and the
    /// mailbox (through its own waker: `wake::mailbox_waker`).
    ctl_waker: AtomicWaker,
    state: AtomicU8,
    /// Restarts since it was added (successful or not).
    restarts: AtomicU32,
    /// Incarnations begun, the first start included: tells a stale failure
    /// report (one a group restart already handled) from a current one.
    incarnation: AtomicU32,
    /// Set once it is stopping for good: nobody restarts it any more.
    stopping: AtomicBool,
    /// Set once it has left the registry and its parent (once only).
    retired: AtomicBool,
    /// Control messages (or a stop request) wait in the queue.
    ctl_pending: AtomicBool,
    /// A stop was requested (kept out of the queue: the common message).
    stop_requested: AtomicBool,
    /// Subscriptions wait in `extras.subs` for the runtime to take them.
    subs_pending: AtomicBool,
    /// Messages wait in the lossy lane (`extras.lossy`).
    lossy_pending: AtomicBool,
    /// The mailbox woke its waker (`wake::mailbox_waker`): its
    /// registration is spent, the runtime polls it again.
    mailbox_woken: AtomicBool,
    /// Bytes the notifier reports buffering (`u64::MAX`: it does not say).
    buffered: AtomicU64,
    pub(crate) actor: OnceLock<Box<dyn ErasedActor>>,
    extras: OnceLock<Box<Extras>>,
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
        let span = (!span.is_disabled()).then(|| Box::new(span));
        let policy = shared.intern(policy);
        let node = Arc::new(Node {
            id,
            path: path.clone(),
            kind,
            policy,
            shared: shared.clone(),
            span,
            parent: parent.map(Arc::downgrade),
            children: Mutex::new(Vec::new()),
            ctl_waker: AtomicWaker::new(),
            state: AtomicU8::new(NodeState::Starting as u8),
            restarts: AtomicU32::new(0),
            incarnation: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            ctl_pending: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            subs_pending: AtomicBool::new(false),
            lossy_pending: AtomicBool::new(false),
            mailbox_woken: AtomicBool::new(false),
            buffered: AtomicU64::new(u64::MAX),
            actor: OnceLock::new(),
            extras: OnceLock::new(),
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

    /// Its tracing span (a disabled one when tracing was off for it).
    pub(crate) fn span(&self) -> &tracing::Span {
        static NONE: tracing::Span = tracing::Span::none();
        self.span.as_deref().unwrap_or(&NONE)
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
            lock(&self.extras().ctl).push_back(ctl);
        }
        self.ctl_pending.store(true, Ordering::Release);
        self.ctl_waker.wake();
    }

    /// Resolves once control messages are queued (`false`) or, when
    /// `lossy` is asked for, once the lossy lane holds messages (`true`;
    /// control first). Only the node's own actor waits on it (a
    /// single-consumer waker, registered once per poll: no lock, no
    /// allocation).
    pub(crate) fn ctl_ready(&self, lossy: bool) -> impl Future<Output = bool> + '_ {
        std::future::poll_fn(move |cx| {
            self.ctl_waker.register(cx.waker());
            if self.ctl_pending() {
                Poll::Ready(false)
            } else if lossy && self.lossy_pending() {
                Poll::Ready(true)
            } else {
                Poll::Pending
            }
        })
    }

    /// Registers the actor's waker for control and the lossy lane (what
    /// `ctl_ready` does at each poll; the running loop registers once per
    /// wait, then looks at the flags again).
    pub(crate) fn register_ctl(&self, waker: &std::task::Waker) {
        self.ctl_waker.register(waker);
    }

    /// The mailbox's waker fired (`wake::mailbox_waker`): marks it and
    /// wakes the task registered here, like a control message.
    pub(crate) fn wake_mailbox(&self) {
        self.mailbox_woken.store(true, Ordering::Release);
        self.ctl_waker.wake();
    }

    /// Whether the mailbox's waker fired since [`Node::rearm_mailbox`].
    pub(crate) fn mailbox_woken(&self) -> bool {
        self.mailbox_woken.load(Ordering::Acquire)
    }

    /// Clears the mark before the mailbox is polled again: a wake-up
    /// during or after that poll marks it anew.
    pub(crate) fn rearm_mailbox(&self) {
        self.mailbox_woken.store(false, Ordering::Release);
    }

    /// Control messages may be queued (one atomic load: the hot path).
    pub(crate) fn ctl_pending(&self) -> bool {
        self.ctl_pending.load(Ordering::Acquire)
    }

    pub(crate) fn pop_ctl(&self) -> Option<Ctl> {
        if self.stop_requested.swap(false, Ordering::AcqRel) {
            return Some(Ctl::Stop);
        }
        let Some(extras) = self.extras.get() else {
            self.settle_pending();
            return None;
        };
        let mut q = lock(&extras.ctl);
        let ctl = q.pop_front();
        let empty = q.is_empty();
        drop(q);
        if empty {
            self.settle_pending();
        }
        ctl
    }

    /// Clears the pending flag once the queue looked empty, then looks
    /// again: a stop or a subscription that came meanwhile (their flags
    /// are set before the pending one) keeps it set, so no wake-up is lost.
    fn settle_pending(&self) {
        self.ctl_pending.store(false, Ordering::SeqCst);
        let more = self.stop_requested.load(Ordering::SeqCst)
            || self.subs_pending.load(Ordering::SeqCst)
            || self.extras.get().is_some_and(|e| !lock(&e.ctl).is_empty());
        if more {
            self.ctl_pending.store(true, Ordering::SeqCst);
        }
    }

    /// Whether the lossy lane holds messages (one atomic load).
    pub(crate) fn lossy_pending(&self) -> bool {
        self.lossy_pending.load(Ordering::Acquire)
    }

    /// Queues a message in the lossy lane, which holds at most `capacity`:
    /// when full, its oldest message is dropped (and returned).
    pub(crate) fn push_lossy(
        &self,
        msg: Box<dyn Any + Send>,
        capacity: usize,
    ) -> Option<Box<dyn Any + Send>> {
        let mut lane = lock(&self.extras().lossy);
        let evicted = if lane.len() >= capacity.max(1) {
            lane.pop_front()
        } else {
            None
        };
        lane.push_back(msg);
        drop(lane);
        self.lossy_pending.store(true, Ordering::Release);
        self.ctl_waker.wake();
        evicted
    }

    /// The lossy lane's oldest message.
    pub(crate) fn pop_lossy(&self) -> Option<Box<dyn Any + Send>> {
        if !self.lossy_pending() {
            return None;
        }
        let mut lane = lock(&self.extras().lossy);
        let msg = lane.pop_front();
        if lane.is_empty() {
            // Cleared under the lock: a push after this sets it again.
            self.lossy_pending.store(false, Ordering::Release);
        }
        msg
    }

    /// Empties the lossy lane; returns how many messages it held.
    pub(crate) fn clear_lossy(&self) -> usize {
        let Some(extras) = self.extras.get() else {
            return 0;
        };
        let mut lane = lock(&extras.lossy);
        self.lossy_pending.store(false, Ordering::Release);
        std::mem::take(&mut *lane).len()
    }

    /// Sets what snapshots show of this notifier (`None` clears it).
    pub(crate) fn set_detail(&self, detail: Option<Arc<str>>) {
        if detail.is_none() && self.extras.get().is_none() {
            return;
        }
        *lock(&self.extras().detail) = detail;
    }

    fn detail(&self) -> Option<String> {
        let extras = self.extras.get()?;
        lock(&extras.detail).as_deref().map(str::to_owned)
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

    /// Begins an incarnation; returns its number (1 for the first start).
    pub(crate) fn begin_incarnation(&self) -> u32 {
        self.incarnation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The number of the current (or last) incarnation.
    pub(crate) fn incarnation(&self) -> u32 {
        self.incarnation.load(Ordering::Acquire)
    }

    fn extras(&self) -> &Extras {
        self.extras.get_or_init(Box::default)
    }

    /// Queues a subscription for the runtime, which takes it before its
    /// next emit. Fails once the notifier has left the tree.
    pub(crate) fn add_subscription(&self, op: &'static str, sub: PendingSub) -> Result<()> {
        if self.is_retired() {
            return Err(Error::closed(
                op,
                format!("notifier {} is not running", self.path),
            ));
        }
        lock(&self.extras().subs).push(sub);
        self.subs_pending.store(true, Ordering::Release);
        // Wake the runtime: it takes the subscription and tells the
        // notifier (`Notifier::on_subscribe`).
        self.ctl_pending.store(true, Ordering::Release);
        self.ctl_waker.wake();
        Ok(())
    }

    /// Hands queued subscriptions to the runtime's lists (one atomic load
    /// when there are none); true when it took some.
    pub(crate) fn take_subscriptions(&self, into: &mut Subscribers) -> bool {
        if !self.subs_pending.load(Ordering::Acquire) {
            return false;
        }
        let Some(extras) = self.extras.get() else {
            return false;
        };
        let subs = std::mem::take(&mut *lock(&extras.subs));
        self.subs_pending.store(false, Ordering::Release);
        let took = !subs.is_empty();
        for sub in subs {
            sub(into);
        }
        took
    }

    /// The tap of event type `T` (made by `make` on first use).
    pub(crate) fn tap<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        let mut taps = lock(&self.extras().taps);
        let id = TypeId::of::<T>();
        if let Some((_, t)) = taps.iter().find(|(k, _)| *k == id) {
            return t.clone().downcast::<T>().expect("keyed by its TypeId");
        }
        let t = Arc::new(make());
        taps.push((id, t.clone()));
        t
    }

    /// The lock a parent's group restarts take turns on.
    pub(crate) fn group_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.extras().group
    }

    /// Records a failure now; returns how many fall within the window.
    pub(crate) fn record_failure(&self, now: Instant) -> u32 {
        let mut h = lock(&self.extras().history);
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

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// A snapshot of this node and its subtree.
    pub(crate) fn snapshot(&self) -> NodeSnapshot {
        NodeSnapshot {
            id: self.id,
            kind: self.kind,
            name: self.name().to_owned(),
            path: self.path.to_string(),
            state: self.state(),
            restarts: self.restarts(),
            queue: self.queue_depth(),
            buffered: self.buffered(),
            detail: self.detail(),
            children: self.children().iter().map(|c| c.snapshot()).collect(),
        }
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
