//! [`NotifierActor`]: the kameo actor every notifier runs in, and the one
//! lifecycle it drives (the table is in the `state` module's docs, shown
//! on [`NodeState`]).
//!
//! The first start and every restart take the same path: the runtime runs
//! `init` inside its own `next` loop (kameo's `on_start` only builds the
//! shell), bounded by the init timeout, with panics caught and mapped the
//! same way everywhere. Restarts happen in place: a failed incarnation's
//! state is dropped and `init` runs again inside the same actor, on the
//! same mailbox, so handles stay valid and queued messages reach the new
//! incarnation. Subscriber lists live here, beside the state, so they
//! outlive incarnations. While an incarnation is torn down, waiting for a
//! restart or draining, the runtime reads only its control queue (or, when
//! draining, its mailbox).
//!
//! kameo's own `supervise` is not used: in kameo 0.22.2 it restarts a
//! gracefully stopped permanent child as a zombie, never tells the parent
//! of restarts, never prunes dead children and can start a new instance
//! while the old one is still in `on_stop` (see tests/core_supervision.rs).

use std::{fmt, ops::ControlFlow, sync::Arc, task::Poll};

use futures_util::future::BoxFuture;
use kameo::{
    actor::{Actor, ActorRef, PreparedActor, WeakActorRef},
    error::{ActorStopReason, PanicError},
    mailbox::{MailboxReceiver, Signal},
    message::{BoxMessage, Context, Message},
};
use tokio::{sync::oneshot, time::Instant};

use crate::{
    error::{Error, ErrorKind, Result},
    event::Subscribers,
    exit::{Exit, ExitReason, SupervisionEventKind},
    node::{Ctl, Node},
    notifier::ArgsFactory,
    notifier::{
        ActorState, Ctx, FAIR_BURST, Handler, Notifier, NotifierActor, NotifierRef, Phase, Start,
    },
    panic::{self, Caught},
    queue::Overflow,
    shutdown::ShutdownReport,
    spec::{AnySpec, ErasedSpec, Spec},
    state::NodeState,
    supervisor::{self, Decision, Group},
};

fn check_parent(parent: &Node) -> Result<()> {
    if parent.is_stopping() || !matches!(parent.state(), NodeState::Running | NodeState::Starting) {
        return Err(Error::closed(
            "add",
            format!("parent {} is not running", parent.path),
        ));
    }
    Ok(())
}

/// Creates the node for `spec` under `parent` and spawns its actor;
/// `started` receives the first start's result.
fn spawn<C: Notifier>(
    parent: &Arc<Node>,
    spec: Spec<C>,
    started: Option<oneshot::Sender<Result<()>>>,
) -> Result<NotifierRef<C>> {
    check_parent(parent)?;
    let node = Node::new(
        &parent.shared,
        Some(parent),
        &spec.name,
        C::kind(),
        spec.policy,
    )?;
    parent.push_child(node.clone());
    let pending = spec.subs.into_inner().unwrap_or_else(|e| e.into_inner());
    let subs = (!pending.is_empty()).then(|| {
        let mut subs = Box::<Subscribers>::default();
        for sub in pending {
            sub(&mut subs);
        }
        subs
    });
    let args = StartArgs {
        factory: spec.args,
        one_shot: spec.one_shot,
    };
    let actor = start_actor(&node, args, spec.mailbox, subs, started);
    Ok(NotifierRef { actor, node })
}

/// Starts `spec` as a child of `parent` and waits for its `init` (bounded
/// by its init timeout).
pub(crate) async fn add_child<C: Notifier>(
    parent: &Arc<Node>,
    spec: Spec<C>,
) -> Result<NotifierRef<C>> {
    let (tx, rx) = oneshot::channel();
    let child = spawn(parent, spec, Some(tx))?;
    match rx.await {
        Ok(Ok(())) => Ok(child),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::closed(
            "add",
            format!("{} was killed before it started", child.path()),
        )),
    }
}

/// Starts `spec` as a child of `parent` without waiting for its `init`;
/// a failed first start is reported as its exit (supervision events and
/// its `Exit` subscribers), and it leaves the tree.
pub(crate) fn start_child<C: Notifier>(
    parent: &Arc<Node>,
    spec: Spec<C>,
) -> Result<NotifierRef<C>> {
    spawn(parent, spec, None)
}

impl<C: Notifier> ErasedSpec for Spec<C> {
    fn name(&self) -> &str {
        &self.name
    }
    fn spawn<'a>(self: Box<Self>, parent: &'a Arc<Node>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { add_child(parent, *self).await.map(|r| r.id()) })
    }
    fn start(self: Box<Self>, parent: &Arc<Node>) -> Result<u64> {
        start_child(parent, *self).map(|r| r.id())
    }
}

/// How a notifier's arguments are made: the factory, and whether it is
/// dropped after the first start ([`Spec::once`]).
pub(crate) struct StartArgs<A> {
    factory: ArgsFactory<A>,
    one_shot: bool,
}

impl<A> StartArgs<A> {
    /// A factory kept for restarts.
    pub(crate) fn new(factory: ArgsFactory<A>) -> Self {
        StartArgs {
            factory,
            one_shot: false,
        }
    }
}

/// Spawns a node's actor; its first `init` runs inside it.
pub(crate) fn start_actor<C: Notifier>(
    node: &Arc<Node>,
    args: StartArgs<C::Args>,
    mailbox: usize,
    subs: Option<Box<Subscribers>>,
    started: Option<oneshot::Sender<Result<()>>>,
) -> ActorRef<NotifierActor<C>> {
    panic::install_hook();
    let prepared = PreparedActor::<NotifierActor<C>>::new(kameo::mailbox::bounded(mailbox));
    let actor = prepared.actor_ref().clone();
    node.set_actor(Box::new(actor.clone()));
    prepared.spawn(Start(NotifierActor(Box::new(ActorState {
        node: node.clone(),
        state: None,
        args: Some(args.factory),
        one_shot: args.one_shot,
        phase: Phase::Starting(None),
        subs: subs.map(|s| *s).unwrap_or_default(),
        started,
        burst: 0,
        startup_seen: false,
        mailbox_armed: false,
        held: None,
    }))));
    actor
}

impl<N: Notifier> Ctx<'_, N> {
    /// Adds and starts a child under this notifier; waits for its `init`
    /// (bounded by the child's init timeout).
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// # use std::time::Duration;
    /// # use ioasync::time::Countdown;
    /// struct AddTimer;
    /// impl Handler<AddTimer> for Cell {
    ///     type Reply = Result<String>;
    ///     async fn handle(&mut self, _: AddTimer, ctx: &mut Ctx<'_, Self>) -> Result<String> {
    ///         let t = ctx.add_child(Countdown::spec("timer", Duration::from_secs(1))).await?;
    ///         Ok(t.path().to_owned())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// assert_eq!(cell.ask(AddTimer).await?, "/cell/timer");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while the child's `init` runs, the child is still added: it
    /// runs under this notifier with no handle here.
    pub async fn add_child<C: Notifier>(&self, spec: impl Into<Spec<C>>) -> Result<NotifierRef<C>> {
        add_child(self.node, spec.into()).await
    }

    /// Adds a child under this notifier and returns at once, without
    /// waiting for its `init`: a failed first start is its exit (see
    /// [`Exit`] and the supervision events), and it leaves the tree.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// # use std::time::Duration;
    /// # use ioasync::time::Countdown;
    /// struct StartTimer;
    /// impl Handler<StartTimer> for Cell {
    ///     type Reply = Result<String>;
    ///     async fn handle(&mut self, _: StartTimer, ctx: &mut Ctx<'_, Self>) -> Result<String> {
    ///         let t = ctx.start_child(Countdown::spec("timer", Duration::from_secs(1)))?;
    ///         Ok(t.path().to_owned())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// assert_eq!(cell.ask(StartTimer).await?, "/cell/timer");
    /// # Ok(()) }
    /// ```
    pub fn start_child<C: Notifier>(&self, spec: impl Into<Spec<C>>) -> Result<NotifierRef<C>> {
        start_child(self.node, spec.into())
    }

    /// Adds and starts a child of a type known only at run time; waits for
    /// its `init`; returns its id.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// # use std::time::Duration;
    /// # use ioasync::time::Countdown;
    /// struct AddAny(ioasync::notifier::AnySpec);
    /// impl Handler<AddAny> for Cell {
    ///     type Reply = Result<u64>;
    ///     async fn handle(&mut self, AddAny(spec): AddAny, ctx: &mut Ctx<'_, Self>) -> Result<u64> {
    ///         ctx.add_any(spec).await
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// let id = cell.ask(AddAny(Countdown::spec("timer", Duration::from_secs(1)).into())).await?;
    /// assert_eq!(cell.tree().children[0].id, id);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`Ctx::add_child`]: dropped, the child is still added.
    pub async fn add_any(&self, spec: AnySpec) -> Result<u64> {
        spec.0.spawn(self.node).await
    }

    /// Like [`Ctx::add_any`] without waiting for the child's `init`.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// # use std::time::Duration;
    /// # use ioasync::time::Countdown;
    /// struct StartAny(ioasync::notifier::AnySpec);
    /// impl Handler<StartAny> for Cell {
    ///     type Reply = Result<u64>;
    ///     async fn handle(&mut self, StartAny(spec): StartAny, ctx: &mut Ctx<'_, Self>) -> Result<u64> {
    ///         ctx.start_any(spec)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// let id = cell.ask(StartAny(Countdown::spec("timer", Duration::from_secs(1)).into())).await?;
    /// assert_eq!(cell.tree().children[0].id, id);
    /// # Ok(()) }
    /// ```
    pub fn start_any(&self, spec: AnySpec) -> Result<u64> {
        spec.0.start(self.node)
    }
}

impl<N: Notifier> NotifierRef<N> {
    /// Adds and starts a child under this notifier; waits for its `init`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let child = t.add_child(Countdown::spec("inner", Duration::from_secs(1))).await?;
    /// assert_eq!(child.path(), "/idle/inner");
    /// assert_eq!(t.tree().children.len(), 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while the child's `init` runs, the child is still added: it
    /// runs under this notifier with no handle here (`lookup` finds it).
    pub async fn add_child<C: Notifier>(&self, spec: impl Into<Spec<C>>) -> Result<NotifierRef<C>> {
        add_child(&self.node, spec.into()).await
    }

    /// Adds a child under this notifier without waiting for its `init`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let child = t.start_child(Countdown::spec("inner", Duration::from_secs(1)))?;
    /// assert_eq!(child.path(), "/idle/inner");
    /// child.expired().await?; // messages wait for its init
    /// # use ioasync::prelude::CountdownRef;
    /// # Ok(()) }
    /// ```
    pub fn start_child<C: Notifier>(&self, spec: impl Into<Spec<C>>) -> Result<NotifierRef<C>> {
        start_child(&self.node, spec.into())
    }
}

impl<N: Notifier> Actor for NotifierActor<N> {
    type Args = Start<N>;
    type Error = Error;

    fn name() -> &'static str {
        N::kind()
    }

    async fn on_start(start: Start<N>, _actor_ref: ActorRef<Self>) -> Result<Self> {
        Ok(start.0)
    }

    async fn on_panic(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        err: PanicError,
    ) -> Result<ControlFlow<ActorStopReason>> {
        // A handler panicked (kameo caught it around `handle`), or a
        // `tell`'s handler returned an error.
        let caught = Caught {
            message: panic_message(&err),
            location: panic::take_location(),
        };
        self.end(panicked(caught));
        Ok(ControlFlow::Continue(()))
    }

    async fn on_stop(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<()> {
        if matches!(reason, ActorStopReason::Killed) {
            // A kill: no teardown ran. Drop the state (its Drop impls
            // release what it owns), report, and tell the subscribers.
            self.0.state = None;
            tracing::warn!(parent: self.0.node.span(), "notifier killed");
            self.0.node.shared.publish(
                &self.0.node,
                SupervisionEventKind::Exited(ExitReason::Killed),
            );
            Box::pin(self.emit_exit(ExitReason::Killed, false)).await;
            if let Some(tx) = self.0.started.take() {
                let _ = tx.send(Err(Error::closed(
                    "add",
                    format!("{} was killed during init", self.0.node.path),
                )));
            }
        }
        // Leave the tree first: whoever hears `Stopped` (or returns from
        // `wait_stopped`) finds it gone.
        self.0.node.retire();
        // Control left unanswered (urgent asks) is dropped: its askers hear.
        while self.0.node.pop_ctl().is_some() {}
        let lossy = self.0.node.clear_lossy();
        if lossy > 0 {
            tracing::warn!(parent: self.0.node.span(), count = lossy, "messages undelivered at stop");
            self.0.node.shared.publish(
                &self.0.node,
                SupervisionEventKind::Undelivered { count: lossy },
            );
        }
        self.0
            .node
            .shared
            .publish(&self.0.node, SupervisionEventKind::Stopped);
        Ok(())
    }

    async fn on_undelivered(
        &mut self,
        _reason: ActorStopReason,
        undelivered: Vec<BoxMessage<Self>>,
    ) -> Result<()> {
        let count = undelivered.len();
        tracing::warn!(parent: self.0.node.span(), count, "messages undelivered at stop");
        self.0
            .node
            .shared
            .publish(&self.0.node, SupervisionEventKind::Undelivered { count });
        Ok(())
    }

    fn next(
        &mut self,
        actor_ref: WeakActorRef<Self>,
        mailbox_rx: &mut MailboxReceiver<Self>,
    ) -> impl Future<Output = Result<Option<Signal<Self>>>> + Send {
        // Unused, and dropped here rather than in an `async fn`: a future
        // keeps room for every argument it captures, and this one is held
        // by every idle actor (88 bytes for the ref, and more in padding).
        drop(actor_ref);
        self.next_signal(mailbox_rx)
    }
}

impl<N: Notifier> NotifierActor<N> {
    /// The next signal for kameo to handle: the runtime's loop over the
    /// lifecycle, the control queue, the notifier's source and its mailbox.
    async fn next_signal(
        &mut self,
        mailbox_rx: &mut MailboxReceiver<Self>,
    ) -> Result<Option<Signal<Self>>> {
        // Fast path: a queued message needs no waker registration. Every
        // FAIR_BURST messages the wait below runs anyway, so a busy
        // mailbox cannot starve the notifier's source or its control.
        if matches!(self.0.phase, Phase::Running)
            && self.0.burst < FAIR_BURST
            && self.0.held.is_none()
            && !self.0.node.ctl_pending()
            && self.0.state.as_ref().is_some_and(N::accepting)
            && let Ok(signal) = mailbox_rx.try_recv()
        {
            self.0.burst += 1;
            return Ok(Some(signal));
        }
        // Whether a readiness turn just ended (the mailbox's turn comes
        // next).
        let mut after_turn = false;
        loop {
            match &mut self.0.phase {
                Phase::Running => {
                    if let Some(held) = &mut self.0.held {
                        let first = held.remove(0);
                        if held.is_empty() {
                            self.0.held = None;
                        }
                        return Ok(Some(first));
                    }
                    if self.0.node.ctl_pending() {
                        Box::pin(self.run_ctl()).await;
                        continue;
                    }
                    self.0.burst = 0;
                    let Some(state) = self.0.state.as_mut() else {
                        self.0.phase = Phase::Waiting;
                        continue;
                    };
                    // Control first, then the source, then the mailbox: the
                    // fast path above already favours the mailbox. Right
                    // after a readiness turn the mailbox goes before the
                    // source instead: a source that is always ready (a
                    // level-triggered fd nobody drains) would otherwise
                    // never let a message in. The lossy lane before the
                    // mailbox: the fast path favours the mailbox, so
                    // neither starves the other. `ready` is contained
                    // code: a panic in it (a notifier driving a user
                    // future there) ends the incarnation, logged once,
                    // like one in a handler.
                    let accepting = state.accepting();
                    let node = &self.0.node;
                    let armed = &mut self.0.mailbox_armed;
                    let turn = {
                        let mut ready = std::pin::pin!(state.ready());
                        std::future::poll_fn(|cx| {
                            // The mailbox's turn right after a readiness
                            // turn: a control or lossy turn before it keeps
                            // it (spent here, a lane fed every turn would
                            // hand the source every wait and starve the
                            // mailbox); it is this poll's only.
                            if node.ctl_pending() {
                                return Poll::Ready(Turn::Ctl);
                            }
                            if accepting && node.lossy_pending() {
                                return Poll::Ready(Turn::Lossy);
                            }
                            let mailbox_first = std::mem::take(&mut after_turn);
                            if mailbox_first
                                && accepting
                                && let Poll::Ready(signal) = poll_mailbox(mailbox_rx, node, armed)
                            {
                                return Poll::Ready(Turn::Signal(signal, 1));
                            }
                            // Contained here, within this poll: no
                            // wrapping future to build at every wait.
                            match panic::catch_now(node.span(), || ready.as_mut().poll(cx)) {
                                Ok(Poll::Ready(())) => return Poll::Ready(Turn::Ready),
                                Err(caught) => {
                                    return Poll::Ready(Turn::Panicked(Box::new(caught)));
                                }
                                Ok(Poll::Pending) => {}
                            }
                            if !mailbox_first
                                && accepting
                                && let Poll::Ready(signal) = poll_mailbox(mailbox_rx, node, armed)
                            {
                                return Poll::Ready(Turn::Signal(signal, 0));
                            }
                            // About to wait: the task's one registration,
                            // on the node, for control, the lossy lane and
                            // the mailbox (whose own waker stands until it
                            // fires; the source's was made by its poll
                            // above), then a second look: a push between
                            // the first look and the registration set its
                            // flag before it woke.
                            node.register_ctl(cx.waker());
                            registrations::count(&registrations::CONTROL);
                            if node.ctl_pending()
                                || (accepting && (node.lossy_pending() || node.mailbox_woken()))
                            {
                                cx.waker().wake_by_ref();
                            }
                            registrations::count(&registrations::WAITS);
                            Poll::Pending
                        })
                        .await
                    };
                    match turn {
                        Turn::Panicked(caught) => self.end(panicked(*caught)),
                        Turn::Signal(signal, burst) => {
                            self.0.burst = burst;
                            return Ok(signal);
                        }
                        Turn::Ready => {
                            // In place when the notifier says its turn
                            // finishes at once (a stream's read, callback
                            // and write); otherwise boxed: the `on_ready`
                            // future is the largest of its turn, and every
                            // idle actor's memory would hold room for it
                            // (~1.1 KiB for a stream).
                            let now = std::future::poll_fn(|cx| Poll::Ready(self.ready_now(cx)));
                            if !now.await {
                                Box::pin(self.run_hook(Hook::Ready)).await;
                            }
                            // Fairness: a source that stays ready resolves
                            // `ready` at once every turn, and `AsyncFd`'s
                            // readiness takes no cooperative budget, so
                            // without this the loop would never give the
                            // thread back. One unit per turn, like any
                            // tokio resource: free while the task has
                            // budget, a yield once it is spent.
                            tokio::task::coop::consume_budget().await;
                            after_turn = true;
                        }
                        Turn::Ctl => Box::pin(self.run_ctl()).await,
                        Turn::Lossy => Box::pin(self.run_lossy()).await,
                    }
                }
                Phase::Starting(ack) => {
                    if !self.0.startup_seen {
                        // kameo queued StartupFinished after `on_start`:
                        // hand it back now, before the first `init`, holding
                        // any message that came before it.
                        match mailbox_rx.try_recv() {
                            Ok(Signal::StartupFinished) => {
                                self.0.startup_seen = true;
                                return Ok(Some(Signal::StartupFinished));
                            }
                            Ok(message) => {
                                self.0.held.get_or_insert_default().push(message);
                                continue;
                            }
                            Err(_) => self.0.startup_seen = true,
                        }
                    }
                    let ack = ack.take();
                    // Cold paths are boxed: the `next` future (part of every
                    // idle actor's memory) holds only what the hot path needs.
                    Box::pin(self.start_incarnation(ack)).await;
                }
                Phase::Exiting(reason) => {
                    let reason = std::mem::replace(&mut **reason, ExitReason::Normal);
                    Box::pin(self.exit_incarnation(reason)).await;
                }
                Phase::Waiting => {
                    self.0.node.ctl_ready(false).await;
                    Box::pin(self.run_ctl()).await;
                }
                Phase::Backoff(until) => {
                    let until = *until;
                    // Boxed: a timer is large, and rarely waited on.
                    let backoff = Box::pin(tokio::time::sleep_until(until));
                    tokio::select! {
                        biased;
                        _ = self.0.node.ctl_ready(false) => Box::pin(self.run_ctl()).await,
                        _ = backoff => self.0.phase = Phase::Starting(None),
                    }
                }
                Phase::Draining => {
                    if self.0.state.is_some()
                        && let Ok(signal) = mailbox_rx.try_recv()
                    {
                        return Ok(Some(signal));
                    }
                    if self.0.state.is_some() && self.0.node.lossy_pending() {
                        Box::pin(self.run_lossy()).await;
                        continue;
                    }
                    Box::pin(self.drain_done()).await;
                }
                Phase::Done => return Ok(None),
            }
        }
    }
}

/// Which source the running notifier's turn serves.
enum Turn<A: Actor> {
    Ctl,
    Ready,
    Lossy,
    /// `ready` panicked (boxed: rare, and the turn is held across awaits).
    Panicked(Box<Caught>),
    /// A mailbox signal (`None`: the mailbox closed), and the burst it
    /// begins.
    Signal(Option<Signal<A>>, u32),
}

/// The mailbox's next signal, if its registration is spent; otherwise
/// `Pending` without a look.
///
/// The mailbox is polled with the node's mailbox waker (`wake.rs`), not
/// the task's: a poll that comes back empty leaves that waker registered
/// (`armed`), and it stands until it fires, which marks the node and
/// wakes the task. So the running loop polls the mailbox only when it may
/// hold something: before its first wait, after a message was taken, and
/// after the mark. (A message taken by `try_recv` meanwhile leaves the
/// registration armed; the send that queued it fires it, and the next
/// poll finds the queue empty or not.) Registering the task's own waker
/// here at every wait would be a second registration per wake-up: the
/// channel forgets a waker once it wakes it, and cannot say whether one
/// still stands.
#[inline]
fn poll_mailbox<A: Actor>(
    rx: &mut MailboxReceiver<A>,
    node: &Arc<Node>,
    armed: &mut bool,
) -> Poll<Option<Signal<A>>> {
    if *armed && !node.mailbox_woken() {
        return Poll::Pending;
    }
    poll_mailbox_now(rx, node, armed)
}

/// [`poll_mailbox`]'s poll, when no registration stands (or it fired).
fn poll_mailbox_now<A: Actor>(
    rx: &mut MailboxReceiver<A>,
    node: &Arc<Node>,
    armed: &mut bool,
) -> Poll<Option<Signal<A>>> {
    node.rearm_mailbox();
    let waker = crate::wake::mailbox_waker(node);
    let signal = rx.poll_recv(&mut std::task::Context::from_waker(&waker));
    // Pending: our waker is registered, or (the task's cooperative budget
    // spent) tokio registered nothing and wakes it once this poll is over,
    // which marks the node. (Debug builds count both as a registration.)
    *armed = signal.is_pending();
    if *armed && !node.mailbox_woken() {
        registrations::count(&registrations::MAILBOX);
    }
    signal
}

/// What the running loop registers, counted in debug builds (for
/// `test_util::registrations`); nothing in release builds.
pub(crate) mod registrations {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Control's registrations.
    pub(crate) static CONTROL: AtomicU64 = AtomicU64::new(0);
    /// The mailbox's registrations.
    pub(crate) static MAILBOX: AtomicU64 = AtomicU64::new(0);
    /// Waits: the running loop returned `Pending` (its source, not ready,
    /// registered).
    pub(crate) static WAITS: AtomicU64 = AtomicU64::new(0);

    #[inline]
    pub(crate) fn count(counter: &AtomicU64) {
        if cfg!(debug_assertions) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A message handled outside kameo's mailbox: ahead of it (see
/// [`NotifierRef::ask_now`]) or from the lossy lane (see
/// [`NotifierRef::tell_with`]). Resolves to the error of a told message
/// whose handler failed (nobody is there to receive it).
pub(crate) trait Urgent<N: Notifier>: Send {
    fn run<'s, 'c: 's>(
        self: Box<Self>,
        state: &'s mut N,
        ctx: &'s mut Ctx<'c, N>,
    ) -> BoxFuture<'s, Option<String>>;
}

/// A message told with `Overflow::DropOldest` that met a full mailbox.
struct LossyTell<M>(M);

impl<N, M> Urgent<N> for LossyTell<M>
where
    N: Handler<M>,
    M: Send + 'static,
{
    fn run<'s, 'c: 's>(
        self: Box<Self>,
        state: &'s mut N,
        ctx: &'s mut Ctx<'c, N>,
    ) -> BoxFuture<'s, Option<String>> {
        Box::pin(async move {
            let reply = state.handle(self.0, ctx).await;
            let err = kameo::reply::Reply::into_any_err(reply)?;
            Some(panic_message(&PanicError::new(
                err,
                kameo::error::PanicReason::OnMessage,
            )))
        })
    }
}

struct UrgentAsk<M, R> {
    msg: M,
    reply: oneshot::Sender<R>,
}

impl<N, M> Urgent<N> for UrgentAsk<M, N::Reply>
where
    N: Handler<M>,
    M: Send + 'static,
{
    fn run<'s, 'c: 's>(
        self: Box<Self>,
        state: &'s mut N,
        ctx: &'s mut Ctx<'c, N>,
    ) -> BoxFuture<'s, Option<String>> {
        Box::pin(async move {
            let reply = state.handle(self.msg, ctx).await;
            let _ = self.reply.send(reply);
            None
        })
    }
}

impl<N: Notifier> NotifierRef<N> {
    /// Sends `msg` per an overflow policy for a full mailbox (`Ok(true)`
    /// when it was queued):
    ///
    /// - `Wait` is [`tell`](Self::tell): the sender waits for room;
    /// - `Fail` is [`try_tell`](Self::try_tell): a `Full` error naming the
    ///   mailbox;
    /// - `DropNewest` drops `msg` (`Ok(false)`);
    /// - `DropOldest` never waits and keeps the newest: a message that
    ///   meets a full mailbox goes to the notifier's *lossy lane*, a queue
    ///   as long as the mailbox that drops its oldest message when full.
    ///   The notifier takes the lane in turn with its mailbox (and, like
    ///   the mailbox, only while it takes messages); messages sent with
    ///   `DropOldest` keep their order among themselves, but may overtake
    ///   messages sent earlier with the other policies. What the lane
    ///   holds at a stop is reported undelivered, as the mailbox's is.
    ///
    /// ```
    /// use ioasync::{notifier::{Ctx, Handler, Notifier, Overflow, Spec}, Loop, Result};
    ///
    /// /// Keeps the last position it was told.
    /// struct Cursor(u32);
    /// struct MoveTo(u32);
    ///
    /// impl Notifier for Cursor {
    ///     type Args = ();
    ///     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> {
    ///         Ok(Cursor(0))
    ///     }
    /// }
    /// impl Handler<MoveTo> for Cursor {
    ///     type Reply = ();
    ///     async fn handle(&mut self, MoveTo(x): MoveTo, _: &mut Ctx<'_, Self>) {
    ///         self.0 = x;
    ///     }
    /// }
    ///
    /// # fn main() -> Result<()> {
    /// let lp = Loop::new()?;
    /// let l = lp.clone();
    /// lp.block_on(async move {
    ///     let cursor = l.add(Spec::<Cursor>::new("cursor", ()).mailbox(4)).await?;
    ///     // A producer that must never wait: under load the oldest
    ///     // positions are dropped, the newest kept.
    ///     for x in 0..100 {
    ///         assert!(cursor.tell_with(MoveTo(x), Overflow::DropOldest).await?);
    ///     }
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Only `Overflow::Wait` waits: dropped while it waits for room, nothing
    /// was sent. The other policies complete at once.
    pub async fn tell_with<M>(&self, msg: M, overflow: Overflow) -> Result<bool>
    where
        N: Handler<M>,
        M: Send + 'static,
    {
        match overflow {
            Overflow::Wait => self.tell(msg).await.map(|()| true),
            Overflow::Fail => self.try_tell(msg).map(|()| true),
            Overflow::DropNewest => match self.try_tell(msg) {
                Ok(()) => Ok(true),
                Err(e) if e.is_full() => Ok(false),
                Err(e) => Err(e),
            },
            Overflow::DropOldest => self.tell_lossy(msg),
        }
    }

    fn tell_lossy<M>(&self, msg: M) -> Result<bool>
    where
        N: Handler<M>,
        M: Send + 'static,
    {
        let closed = || {
            Error::closed(
                "tell",
                format!("notifier {} is not running", self.node.path),
            )
        };
        if self.node.is_retired() {
            return Err(closed());
        }
        // Behind messages already in the lane, to keep their order.
        let msg = if self.node.lossy_pending() {
            msg
        } else {
            match self.actor.tell(msg).try_send() {
                Ok(()) => return Ok(true),
                Err(kameo::error::SendError::MailboxFull(msg)) => msg,
                Err(_) => return Err(closed()),
            }
        };
        let capacity = self
            .actor
            .mailbox_sender()
            .max_capacity()
            .unwrap_or(usize::MAX);
        let urgent: Box<dyn Urgent<N>> = Box::new(LossyTell(msg));
        if self.node.push_lossy(Box::new(urgent), capacity).is_some() {
            tracing::debug!(parent: self.node.span(), "lossy lane full: dropped its oldest message");
        }
        Ok(true)
    }

    /// Sends `msg` ahead of the mailbox and waits for the reply: it is
    /// handled at the notifier's next turn even while its mailbox is full
    /// or it takes no messages (a stream above its write high watermark).
    /// For control and introspection (close now, info, reads), never for
    /// data that must keep its order with the mailbox. Fails when the
    /// notifier is not running.
    ///
    /// ```
    /// use ioasync::{notifier::{Ctx, Handler, Notifier, Spec}, Loop, Result};
    ///
    /// struct Counter(u64);
    /// impl Notifier for Counter {
    ///     type Args = ();
    ///     async fn init(_: (), _ctx: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Counter(0)) }
    /// }
    /// struct Add(u64);
    /// impl Handler<Add> for Counter {
    ///     type Reply = ();
    ///     async fn handle(&mut self, Add(k): Add, _ctx: &mut Ctx<'_, Self>) { self.0 += k }
    /// }
    /// struct Get;
    /// impl Handler<Get> for Counter {
    ///     type Reply = u64;
    ///     async fn handle(&mut self, _: Get, _ctx: &mut Ctx<'_, Self>) -> u64 { self.0 }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let c = lp.add(Spec::<Counter>::new("counter", ())).await?;
    /// c.ask(Add(3)).await?; // handled: ask waits for it
    /// assert_eq!(c.ask_now(Get).await?, 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before the notifier's turn, the message is still handled
    /// there; only the reply is lost.
    pub async fn ask_now<M>(&self, msg: M) -> Result<N::Reply>
    where
        N: Handler<M>,
        M: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let urgent: Box<dyn Urgent<N>> = Box::new(UrgentAsk { msg, reply: tx });
        if self.node.is_retired() {
            return Err(Error::closed(
                "ask",
                format!("notifier {} is not running", self.node.path),
            ));
        }
        self.node.push_ctl(Ctl::Urgent(Box::new(urgent)));
        let not_running =
            || Error::closed("ask", format!("notifier {} is not running", self.node.path));
        // A notifier that stops before its next turn never answers.
        tokio::select! {
            biased; // a reply sent just before the notifier stopped wins
            reply = rx => reply.map_err(|_| not_running()),
            () = self.wait_stopped() => Err(not_running()),
        }
    }
}

/// What the runtime runs outside kameo's message handling.
enum Hook<N: Notifier> {
    Ready,
    Subscribe,
    Urgent(Box<dyn Urgent<N>>),
}

/// What a failed handler said: its panic message or its error.
fn panic_message(err: &PanicError) -> String {
    err.with_str(str::to_owned)
        .or_else(|| err.with_downcast_ref(|e: &Error| e.to_string()))
        .unwrap_or_else(|| err.to_string())
}

fn panicked(caught: Caught) -> ExitReason {
    ExitReason::panicked(caught.message, caught.location)
}

impl<N: Notifier> NotifierActor<N> {
    /// Ends the running incarnation with `reason` (at the next turn of the
    /// loop); ignored in any other phase.
    fn end(&mut self, reason: ExitReason) {
        if matches!(self.0.phase, Phase::Running) {
            self.0.phase = Phase::Exiting(Box::new(reason));
        }
    }

    /// Runs `init` (first start or restart), bounded by the init timeout.
    async fn start_incarnation(&mut self, ack: Option<oneshot::Sender<()>>) {
        let node = self.0.node.clone();
        let first = node.begin_incarnation() == 1;
        if !first {
            // (A new node is already `Starting`; the root is `Running` from
            // the moment its tree exists.)
            node.count_restart();
            node.set_state(NodeState::Starting);
        }
        node.take_subscriptions(&mut self.0.subs);
        let bound = node.policy.init_timeout;
        let mut ctx = Ctx::new(&node, &mut self.0.subs);
        let args = self.0.args.as_ref().map(|make| make());
        if self.0.one_shot {
            // Spent: what it was made over is not kept for restarts.
            self.0.args = None;
        }
        let outcome = match args {
            // A one-shot notifier restarted (by a group restart).
            None => Err(ExitReason::Failed(Error::closed(
                "init",
                format!(
                    "{} cannot be restarted: what it was started over is gone",
                    node.path
                ),
            ))),
            Some(args) => {
                let init = panic::catch(N::init(args, &mut ctx), node.span());
                match tokio::time::timeout(bound, init).await {
                    Ok(Ok(Ok(state))) => Ok(state),
                    Ok(Ok(Err(e))) => Err(ExitReason::Failed(e)),
                    Ok(Err(caught)) => Err(panicked(caught)),
                    Err(_) => Err(ExitReason::Failed(Error::new(
                        "init",
                        ErrorKind::Timeout,
                        format!("{} did not finish init within {bound:?}", node.path),
                    ))),
                }
            }
        };
        let exit = ctx.exit.take().map(|b| *b);
        match outcome {
            Ok(state) => {
                self.0.state = Some(state);
                self.0.phase = Phase::Running;
                node.set_state(NodeState::Running);
                if !first {
                    node.shared.publish(
                        &node,
                        SupervisionEventKind::Restarted {
                            restarts: node.restarts(),
                        },
                    );
                }
                if let Some(tx) = self.0.started.take() {
                    let _ = tx.send(Ok(()));
                }
                if let Some(reason) = exit {
                    self.0.phase = Phase::Exiting(Box::new(reason));
                }
            }
            Err(reason) if first => {
                // A first start that fails is not restarted: the `add`
                // gets the error and the notifier leaves the tree.
                log_exit(&node, &reason);
                node.mark_stopping();
                node.set_state(NodeState::Stopping);
                let mut report = ShutdownReport::default();
                node.shutdown_children(None, &mut report).await;
                node.shared
                    .publish(&node, SupervisionEventKind::Exited(reason.clone()));
                // Out of the tree before the `add` hears: its name is free.
                node.retire();
                if let Some(tx) = self.0.started.take() {
                    let _ = tx.send(Err(start_error(&reason)));
                }
                self.emit_exit(reason, false).await;
                self.0.phase = Phase::Done;
            }
            Err(reason) => self.0.phase = Phase::Exiting(Box::new(reason)),
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }

    /// Tears the ended incarnation down, decides, and applies the decision.
    async fn exit_incarnation(&mut self, mut reason: ExitReason) {
        let node = self.0.node.clone();
        node.set_state(NodeState::Failed);
        self.teardown(&mut reason).await;
        log_exit(&node, &reason);
        node.shared
            .publish(&node, SupervisionEventKind::Exited(reason.clone()));
        let Some(parent) = node.parent() else {
            // The root: nobody above decides. The loop hears of it.
            node.shared.fatal.set(reason.clone());
            self.emit_exit(reason, false).await;
            self.0.phase = Phase::Waiting;
            return;
        };
        let stopping = node.is_stopping() || parent.is_stopping();
        let failures = if !stopping && supervisor::wants_restart(node.policy.restart, &reason) {
            node.record_failure(Instant::now())
        } else {
            0
        };
        let decision = supervisor::decide(
            &node.policy,
            parent.policy.strategy,
            &reason,
            failures,
            stopping,
        );
        let restarting = matches!(decision, Decision::Restart { .. });
        match decision {
            Decision::Stop => {
                node.mark_stopping();
                self.emit_exit(reason, false).await;
                self.0.phase = Phase::Done;
            }
            Decision::Escalate => {
                node.shared
                    .publish(&node, SupervisionEventKind::GaveUp(reason.clone()));
                node.mark_stopping();
                parent.push_ctl(Ctl::Fail(ExitReason::Escalated {
                    child: node.path.to_string(),
                    cause: Box::new(reason.clone()),
                }));
                self.emit_exit(reason, false).await;
                self.0.phase = Phase::Done;
            }
            Decision::Restart { delay, group } => {
                node.shared.publish(
                    &node,
                    SupervisionEventKind::Restarting {
                        attempt: failures,
                        delay,
                    },
                );
                node.set_state(NodeState::Restarting);
                self.emit_exit(reason, restarting).await;
                self.0.phase = match group {
                    Group::One if delay.is_zero() => Phase::Starting(None),
                    Group::One => Phase::Backoff(Instant::now() + delay),
                    _ => {
                        supervisor::restart_group(
                            parent,
                            node.clone(),
                            node.incarnation(),
                            group,
                            delay,
                        );
                        Phase::Waiting
                    }
                };
            }
        }
    }

    /// The teardown every way out of an incarnation shares: children stop,
    /// then `on_stop` (a panic there is reported and, after a normal exit,
    /// becomes the reason).
    async fn teardown(&mut self, reason: &mut ExitReason) {
        let mut report = ShutdownReport::default();
        self.0.node.shutdown_children(None, &mut report).await;
        self.teardown_state(reason).await;
    }

    async fn teardown_state(&mut self, reason: &mut ExitReason) {
        let Some(mut state) = self.0.state.take() else {
            return;
        };
        let node = self.0.node.clone();
        let mut ctx = Ctx::new(&node, &mut self.0.subs);
        if let Err(caught) = panic::catch(state.on_stop(&mut ctx), node.span()).await {
            tracing::error!(
                parent: node.span(),
                location = caught.location.as_deref().unwrap_or("?"),
                "on_stop panicked: {}",
                caught.message
            );
            if reason.is_normal() {
                *reason = ExitReason::panicked(
                    format!("in on_stop: {}", caught.message),
                    caught.location,
                );
            }
        }
    }

    /// The end of a graceful stop: teardown, `Exit`, done.
    async fn drain_done(&mut self) {
        let mut reason = ExitReason::Normal;
        self.teardown(&mut reason).await;
        self.emit_exit(reason, false).await;
        self.0.phase = Phase::Done;
    }

    /// Tells the `Exit` subscribers.
    async fn emit_exit(&mut self, reason: ExitReason, restarting: bool) {
        self.0.node.take_subscriptions(&mut self.0.subs);
        self.0
            .subs
            .emit(Exit {
                path: self.0.node.path.clone(),
                reason,
                restarting,
            })
            .await;
    }

    /// Runs `on_ready`, `on_subscribe` or an urgent message's handler as
    /// contained code; a panic or an exit it asks for ends the incarnation.
    async fn run_hook(&mut self, hook: Hook<N>) {
        let ActorState {
            node, state, subs, ..
        } = &mut *self.0;
        let Some(state) = state.as_mut() else {
            return;
        };
        let mut ctx = Ctx::new(node, subs);
        let res = match hook {
            Hook::Ready => panic::catch(state.on_ready(&mut ctx), node.span()).await,
            Hook::Subscribe => panic::catch(state.on_subscribe(&mut ctx), node.span()).await,
            Hook::Urgent(msg) => match panic::catch(msg.run(state, &mut ctx), node.span()).await {
                // A told message's handler failed: as for a `tell` (see
                // `on_panic`).
                Ok(Some(message)) => Err(Caught {
                    message,
                    location: None,
                }),
                Ok(None) => Ok(()),
                Err(caught) => Err(caught),
            },
        };
        let exit = ctx.exit.take().map(|b| *b);
        self.after_hook(res, exit);
    }

    /// Runs a readiness turn in place, within this poll, when the notifier
    /// says its `on_ready` finishes at once: no allocation, no boxed
    /// future. `false` (nothing done) when it may wait.
    fn ready_now(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let ActorState {
            node, state, subs, ..
        } = &mut *self.0;
        let Some(state) = state.as_mut() else {
            return true;
        };
        let mut ctx = Ctx::new(node, subs);
        let res = panic::catch_now(node.span(), || {
            if state.on_ready_may_wait(&mut ctx) {
                return None;
            }
            ctx.at_once = true;
            let turn = std::pin::pin!(state.on_ready(&mut ctx));
            Some(turn.poll(cx))
        });
        let res = match res {
            Ok(None) => return false,
            Ok(Some(Poll::Ready(()))) => Ok(()),
            // Dropped half done: the notifier broke its word.
            Ok(Some(Poll::Pending)) => Err(Caught {
                message: format!(
                    "{}'s on_ready waited, though on_ready_may_wait said it would not",
                    N::kind()
                ),
                location: None,
            }),
            Err(caught) => Err(caught),
        };
        let exit = ctx.exit.take().map(|b| *b);
        self.after_hook(res, exit);
        true
    }

    /// What a hook's outcome does: a panic, or an exit it asked for, ends
    /// the incarnation.
    #[inline]
    fn after_hook(&mut self, res: std::result::Result<(), Caught>, exit: Option<ExitReason>) {
        match res {
            Ok(()) => {
                if let Some(reason) = exit {
                    self.end(reason);
                }
            }
            Err(caught) => self.end(panicked(caught)),
        }
    }

    /// Handles the lossy lane's oldest message (a `DropOldest` tell).
    async fn run_lossy(&mut self) {
        let Some(msg) = self.0.node.pop_lossy() else {
            return;
        };
        if let Ok(msg) = msg.downcast::<Box<dyn Urgent<N>>>() {
            self.run_hook(Hook::Urgent(*msg)).await;
        }
    }

    /// Runs every queued control message (and tells a running notifier of
    /// new subscribers).
    async fn run_ctl(&mut self) {
        // Taken in any phase (the lists outlive incarnations); a running
        // notifier hears of them.
        let took = self.0.node.take_subscriptions(&mut self.0.subs);
        if took && matches!(self.0.phase, Phase::Running) {
            self.run_hook(Hook::Subscribe).await;
        }
        while let Some(ctl) = self.0.node.pop_ctl() {
            match ctl {
                Ctl::Stop => self.stop(),
                Ctl::Suspend(ack) => {
                    if matches!(self.0.phase, Phase::Running) {
                        self.0.node.set_state(NodeState::Restarting);
                        let mut reason = ExitReason::Normal;
                        self.teardown(&mut reason).await;
                        self.emit_exit(reason, true).await;
                        self.0.phase = Phase::Waiting;
                    } else if matches!(self.0.phase, Phase::Backoff(_)) {
                        self.0.phase = Phase::Waiting;
                    }
                    let _ = ack.send(());
                }
                Ctl::Resume(ack) => {
                    if matches!(self.0.phase, Phase::Waiting | Phase::Backoff(_))
                        && !self.0.node.is_stopping()
                    {
                        self.0.phase = Phase::Starting(Some(ack));
                        return;
                    }
                    let _ = ack.send(());
                }
                Ctl::Fail(reason) => self.end(reason),
                Ctl::Urgent(msg) => {
                    // Dropped (its asker hears "not running") unless an
                    // incarnation runs.
                    if let (Phase::Running, Ok(msg)) =
                        (&self.0.phase, msg.downcast::<Box<dyn Urgent<N>>>())
                    {
                        self.run_hook(Hook::Urgent(*msg)).await;
                    }
                }
            }
        }
    }

    /// Stop for good: a running incarnation drains; a torn-down one leaves.
    fn stop(&mut self) {
        self.0.node.mark_stopping();
        match self.0.phase {
            Phase::Running | Phase::Exiting(_) => {
                self.0.node.set_state(NodeState::Stopping);
                self.0.phase = Phase::Draining;
            }
            Phase::Waiting | Phase::Backoff(_) => {
                self.0.node.set_state(NodeState::Stopping);
                self.0.phase = Phase::Done;
            }
            Phase::Starting(_) | Phase::Draining | Phase::Done => {}
        }
    }
}

/// One line per ended incarnation: a panic at error level with its
/// location (once: the contained panic printed nothing), an error at warn,
/// a normal exit at debug.
fn log_exit(node: &Node, reason: &ExitReason) {
    match reason {
        ExitReason::Panicked { message, location } => tracing::error!(
            parent: node.span(),
            location = location.as_deref().unwrap_or("?"),
            "notifier panicked: {message}"
        ),
        ExitReason::Normal => tracing::debug!(parent: node.span(), "notifier exited"),
        _ => tracing::warn!(parent: node.span(), %reason, "notifier failed"),
    }
}

/// The error an `add` gets for a first start that failed.
fn start_error(reason: &ExitReason) -> Error {
    match reason {
        ExitReason::Failed(e) => e.clone(),
        ExitReason::Panicked { message, .. } => {
            Error::new("add", ErrorKind::Panicked, message.clone())
        }
        other => other.to_error("add"),
    }
}

impl<N, M> Message<M> for NotifierActor<N>
where
    N: Handler<M>,
    M: Send + 'static,
{
    type Reply = N::Reply;

    async fn handle(&mut self, msg: M, _kctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let ActorState {
            node, state, subs, ..
        } = &mut *self.0;
        let state = state
            .as_mut()
            .expect("invariant: the mailbox is read only while an incarnation runs");
        let mut ctx = Ctx::new(node, subs);
        // kameo catches a panic here and hands it to `on_panic`.
        let reply = panic::contained(state.handle(msg, &mut ctx), node.span()).await;
        if let Some(reason) = ctx.exit.take().map(|b| *b) {
            self.end(reason);
        }
        reply
    }
}

impl<N: Notifier> fmt::Debug for NotifierActor<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifierActor")
            .field("path", &self.0.node.path)
            .field("phase", &self.0.phase.name())
            .finish()
    }
}

impl<N: Notifier> fmt::Debug for Start<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Start")
            .field("path", &self.0.0.node.path)
            .finish()
    }
}
