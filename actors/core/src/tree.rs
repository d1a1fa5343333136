//! [`Tree`]: one supervision tree, its root and its registry. The facade's
//! `Loop` owns one.

use std::{fmt, sync::Arc, time::Duration};

use tokio::{sync::broadcast, time::Instant};

use crate::{
    error::Result,
    exit::{ExitReason, SupervisionEvent},
    node::{Node, Shared},
    notifier::{Ctx, Notifier, NotifierActor, NotifierRef},
    policy::{Policy, Strategy},
    runtime::{StartArgs, start_actor},
    shutdown::ShutdownReport,
    snapshot::NodeSnapshot,
    spec::Spec,
    timers::{TimerKey, Timers},
};

/// The root notifier of a tree: it supervises the top-level notifiers and
/// runs the tree's timed callbacks ([`Tree::call_at`]) in its turns.
///
/// ```
/// use std::time::Duration;
/// use ioasync::{Loop, time::Countdown};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let root = lp.root();
/// assert_eq!(root.tree().kind, "root");
/// // What the Loop adds goes under the root, as its children.
/// lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
/// let names: Vec<_> = root.tree().children.iter().map(|c| c.name.clone()).collect();
/// assert!(names.contains(&"idle".to_string()));
/// # Ok(()) }
/// ```
pub struct Root {
    timers: Arc<Timers>,
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root").finish_non_exhaustive()
    }
}

impl Notifier for Root {
    type Args = RootArgs;

    fn kind() -> &'static str {
        "root"
    }

    async fn init(RootArgs(timers): RootArgs, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Root { timers })
    }

    async fn ready(&mut self) {
        self.timers.due().await
    }

    async fn on_ready(&mut self, _ctx: &mut Ctx<'_, Self>) {
        self.timers.run_due()
    }
}

/// What the root starts with: the tree's callback queue (made by
/// [`Tree::start`] only).
#[derive(Clone)]
pub struct RootArgs(Arc<Timers>);

impl fmt::Debug for RootArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootArgs").finish_non_exhaustive()
    }
}

/// A callback queued on the tree's root with [`Tree::call_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallAt(TimerKey);

/// A supervision tree: a root notifier, its registry of notifiers by id and
/// path, and its bus of [`SupervisionEvent`]s.
pub struct Tree {
    root: NotifierRef<Root>,
    shared: Arc<Shared>,
    timers: Arc<Timers>,
}

impl Tree {
    /// Starts a new tree whose root applies `strategy` to its children.
    /// Must be called inside a tokio runtime context.
    pub fn start(strategy: Strategy) -> Result<Tree> {
        let shared = Shared::new();
        let policy = Policy {
            strategy,
            ..Policy::default()
        };
        let node = Node::new(&shared, None, "", "root", policy)?;
        // The root only supervises; its init cannot fail: it runs from now.
        node.set_state(crate::state::NodeState::Running);
        let timers = Arc::new(Timers::default());
        let for_root = timers.clone();
        let actor = start_actor::<Root>(
            &node,
            StartArgs::new(Arc::new(move || RootArgs(for_root.clone()))),
            64,
            None,
            None,
        );
        let root = NotifierRef { actor, node };
        Ok(Tree {
            root,
            shared,
            timers,
        })
    }

    /// Queues `f` to run inside the root notifier at `at` (at once when
    /// `at` has passed). Callbacks run in deadline order, ties in the order
    /// queued, one at a time; a panicking one is contained and logged. They
    /// share the root's turns with its supervision, so they should be
    /// short.
    pub fn call_at(&self, at: Instant, f: Box<dyn FnOnce() + Send>) -> CallAt {
        CallAt(self.timers.insert(at, f))
    }

    /// Cancels a [`Tree::call_at`] callback; false when it already ran or
    /// was cancelled.
    pub fn cancel_call(&self, call: CallAt) -> bool {
        self.timers.remove(call.0)
    }

    /// Whether a [`Tree::call_at`] callback is still waiting to run.
    pub fn is_call_pending(&self, call: CallAt) -> bool {
        self.timers.is_pending(call.0)
    }

    /// The root notifier.
    pub fn root(&self) -> &NotifierRef<Root> {
        &self.root
    }

    /// Adds and starts a notifier under the root.
    ///
    /// # Cancel safety
    ///
    /// Dropped while the notifier's `init` runs, it is still added under the
    /// root, with no handle here ([`Tree::lookup`] finds it).
    pub async fn add<N: Notifier>(&self, spec: impl Into<Spec<N>>) -> Result<NotifierRef<N>> {
        self.root.add_child(spec.into()).await
    }

    /// Stops the notifier at `path` and its subtree; `None` when no such
    /// notifier is in the tree.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`NotifierRef::stop`]: this future drives the stop;
    /// bound it with `deadline` rather than dropping it.
    pub async fn remove(&self, path: &str, deadline: Option<Duration>) -> Option<ShutdownReport> {
        let node = self.shared.lookup_path(path)?;
        let mut report = ShutdownReport::default();
        node.shutdown(deadline.map(|d| Instant::now() + d), &mut report)
            .await;
        Some(report)
    }

    /// Stops every notifier under the root, leaves first in reverse start
    /// order, within `deadline`; the root stays, ready for new children.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`NotifierRef::stop`]: this future drives the
    /// shutdown; bound it with `deadline` rather than dropping it.
    pub async fn shutdown(&self, deadline: Option<Duration>) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        let deadline = deadline.map(|d| Instant::now() + d);
        self.root
            .node
            .shutdown_children(deadline, &mut report)
            .await;
        report
    }

    /// A snapshot of the whole tree.
    pub fn snapshot(&self) -> NodeSnapshot {
        self.root.tree()
    }

    /// Supervision events from now on (a bounded broadcast: a subscriber
    /// that lags far behind loses the oldest and is told how many).
    pub fn supervision_events(&self) -> broadcast::Receiver<SupervisionEvent> {
        self.shared.bus.subscribe()
    }

    /// Resolves when a failure escalates past the root.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn escalated(&self) -> ExitReason {
        self.shared.fatal.wait().await
    }

    /// Notifiers registered (running, failed or restarting), root included.
    pub fn live_count(&self) -> usize {
        self.shared.live_count()
    }

    /// A handle to the notifier at `path`, if there is one and it is an `N`.
    pub fn lookup<N: Notifier>(&self, path: &str) -> Option<NotifierRef<N>> {
        let node = self.shared.lookup_path(path)?;
        let actor = node.actor_as::<NotifierActor<N>>()?;
        Some(NotifierRef { actor, node })
    }

    /// Whether a notifier with this path is in the tree.
    pub fn contains(&self, path: &str) -> bool {
        self.shared.lookup_path(path).is_some()
    }
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tree")
            .field("live", &self.shared.live_count())
            .finish()
    }
}
