//! [`NotifierActor`]: the kameo actor every notifier runs in, and the
//! supervision it applies to its children.
//!
//! Restarts happen in place: a failed incarnation's state is dropped and
//! `init` runs again inside the same actor, on the same mailbox, so handles
//! stay valid and queued messages reach the new incarnation. While a
//! notifier is failed or waiting out a backoff it reads only its control
//! queue, never its mailbox.
//!
//! kameo's own `supervise` is not used: in kameo 0.22.2 it restarts a
//! gracefully stopped permanent child as a zombie, never tells the parent
//! of restarts, never prunes dead children and can start a new instance
//! while the old one is still in `on_stop` (see tests/core_supervision.rs).

use std::{fmt, ops::ControlFlow, panic::AssertUnwindSafe, sync::Arc};

use futures_util::{FutureExt, future::BoxFuture};
use kameo::{
    actor::{Actor, ActorRef, PreparedActor, WeakActorRef},
    error::{ActorStopReason, HookError, PanicError, PanicReason},
    mailbox::{MailboxReceiver, Signal},
    message::{BoxMessage, Context, Message},
};
use tokio::{sync::oneshot, time::Instant};
use tracing::Instrument;

use crate::{
    error::{Error, ErrorKind, Result},
    event::{ExitReason, SupervisionEventKind},
    node::{Ctl, Node, ShutdownReport},
    notifier::{Ctx, Handler, Notifier, NotifierRef},
    snapshot::NodeState,
    spec::{ArgsFactory, Restart, Spec, Strategy},
};

/// The kameo actor that runs a notifier `N`. Users meet it only in kameo
/// types (`ActorRef<NotifierActor<N>>`); everything else goes through
/// [`NotifierRef`].
pub struct NotifierActor<N: Notifier> {
    node: Arc<Node>,
    state: Option<N>,
    args: ArgsFactory<N::Args>,
    phase: Phase,
    failure: Option<ExitReason>,
    burst: u32,
}

/// Messages taken from the mailbox in a row before the notifier's source
/// gets a fair chance.
const FAIR_BURST: u32 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Failed,
    Suspended,
    Draining,
}

/// What a notifier's actor starts from.
pub struct Start<N: Notifier> {
    node: Arc<Node>,
    args: ArgsFactory<N::Args>,
}

/// Starts `spec` as a child of `parent` and waits for its `init`.
pub(crate) async fn spawn_child<C: Notifier>(
    parent: &Arc<Node>,
    spec: Spec<C>,
) -> Result<NotifierRef<C>> {
    if parent.is_stopping() || !matches!(parent.state(), NodeState::Running | NodeState::Starting) {
        return Err(Error::closed(
            "add",
            format!("parent {} is not running", parent.path),
        ));
    }
    let node = Node::new(
        &parent.shared,
        Some(parent),
        &spec.name,
        C::kind(),
        spec.policy,
    )?;
    spawn_node(node, spec.args, spec.mailbox).await
}

/// A spec with its notifier type erased.
pub(crate) trait ErasedSpec: Send {
    fn name(&self) -> &str;
    fn spawn(self: Box<Self>, parent: &Arc<Node>) -> BoxFuture<'_, Result<u64>>;
}

impl<C: Notifier> ErasedSpec for Spec<C> {
    fn name(&self) -> &str {
        &self.name
    }
    fn spawn(self: Box<Self>, parent: &Arc<Node>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move { spawn_child(parent, *self).await.map(|r| r.id()) })
    }
}

/// Spawns the actor for an already created node.
pub(crate) async fn spawn_node<C: Notifier>(
    node: Arc<Node>,
    args: ArgsFactory<C::Args>,
    mailbox: usize,
) -> Result<NotifierRef<C>> {
    let parent = node.parent();
    if let Some(p) = &parent {
        p.push_child(node.clone());
    }
    let actor = start_actor(&node, args, mailbox);
    match actor.wait_for_startup_result().await {
        Ok(()) => Ok(NotifierRef { actor, node }),
        Err(err) => {
            node.retire();
            Err(match err {
                HookError::Error(e) => e,
                HookError::Panicked(p) => Error::new("add", ErrorKind::Panicked, panic_message(&p)),
            })
        }
    }
}

/// Spawns a node's actor without waiting for its `init`.
pub(crate) fn start_actor<C: Notifier>(
    node: &Arc<Node>,
    args: ArgsFactory<C::Args>,
    mailbox: usize,
) -> ActorRef<NotifierActor<C>> {
    let prepared = PreparedActor::<NotifierActor<C>>::new(kameo::mailbox::bounded(mailbox));
    let actor = prepared.actor_ref().clone();
    node.set_actor(Box::new(actor.clone()));
    prepared.spawn(Start {
        node: node.clone(),
        args,
    });
    actor
}

fn panic_message(p: &PanicError) -> String {
    p.with_str(str::to_owned)
        .or_else(|| p.with_downcast_ref(|e: &Error| e.to_string()))
        .unwrap_or_else(|| p.to_string())
}

impl<N: Notifier> Actor for NotifierActor<N> {
    type Args = Start<N>;
    type Error = Error;

    fn name() -> &'static str {
        N::kind()
    }

    async fn on_start(start: Start<N>, actor_ref: ActorRef<Self>) -> Result<Self> {
        let mut ctx = Ctx::new(&start.node, &actor_ref);
        let init = N::init((start.args)(), &mut ctx);
        let state = if start.node.span.is_disabled() {
            init.await?
        } else {
            init.instrument(start.node.span.clone()).await?
        };
        start.node.set_state(NodeState::Running);
        Ok(NotifierActor {
            node: start.node,
            state: Some(state),
            args: start.args,
            phase: Phase::Running,
            failure: None,
            burst: 0,
        })
    }

    async fn on_panic(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        err: PanicError,
    ) -> Result<ControlFlow<ActorStopReason>> {
        let reason = match err.reason() {
            PanicReason::OnMessage => {
                ExitReason::Failed(Error::new("handle", ErrorKind::Other, panic_message(&err)))
            }
            _ => ExitReason::Panicked(panic_message(&err)),
        };
        self.fail(reason);
        Ok(ControlFlow::Continue(()))
    }

    async fn on_stop(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<()> {
        if matches!(reason, ActorStopReason::Killed) {
            self.node
                .shared
                .publish(&self.node, SupervisionEventKind::Exited(ExitReason::Killed));
        }
        self.node
            .shared
            .publish(&self.node, SupervisionEventKind::Stopped);
        self.node.retire();
        Ok(())
    }

    async fn on_undelivered(
        &mut self,
        _reason: ActorStopReason,
        undelivered: Vec<BoxMessage<Self>>,
    ) -> Result<()> {
        let count = undelivered.len();
        tracing::warn!(parent: &self.node.span, count, "messages undelivered at stop");
        self.node
            .shared
            .publish(&self.node, SupervisionEventKind::Undelivered { count });
        Ok(())
    }

    async fn next(
        &mut self,
        actor_ref: WeakActorRef<Self>,
        mailbox_rx: &mut MailboxReceiver<Self>,
    ) -> Result<Option<Signal<Self>>> {
        // Fast path: a queued message needs no waker registration and no
        // clone of anything. Every FAIR_BURST messages the select below
        // runs anyway, so a busy mailbox cannot starve the notifier's source.
        if self.phase == Phase::Running
            && self.burst < FAIR_BURST
            && !self.node.ctl_pending()
            && self.state.as_ref().is_some_and(N::accepting)
            && let Ok(signal) = mailbox_rx.try_recv()
        {
            self.burst += 1;
            return Ok(Some(signal));
        }
        let Some(me) = actor_ref.upgrade() else {
            return Ok(None);
        };
        loop {
            match self.phase {
                Phase::Running => {
                    if self.node.ctl_pending() {
                        self.run_ctl(&me).await;
                        continue;
                    }
                    self.burst = 0;
                    let Some(state) = self.state.as_mut() else {
                        self.phase = Phase::Suspended;
                        continue;
                    };
                    // Control first, then the source, then the mailbox: the
                    // fast path above already favours the mailbox.
                    let accepting = state.accepting();
                    let ready = tokio::select! {
                        biased;
                        _ = self.node.ctl_ready() => false,
                        _ = state.ready() => true,
                        signal = mailbox_rx.recv(), if accepting => return Ok(signal),
                    };
                    if ready {
                        self.run_ready(&me).await;
                    } else {
                        self.run_ctl(&me).await;
                    }
                }
                Phase::Failed => {
                    if let Some(reason) = self.failure.take() {
                        self.report_failure(&me, reason).await;
                    }
                    self.node.ctl_ready().await;
                    self.run_ctl(&me).await;
                }
                Phase::Suspended => {
                    self.node.ctl_ready().await;
                    self.run_ctl(&me).await;
                }
                Phase::Draining => {
                    if self.state.is_some()
                        && let Ok(signal) = mailbox_rx.try_recv()
                    {
                        return Ok(Some(signal));
                    }
                    if let Some(mut state) = self.state.take() {
                        let mut ctx = Ctx::new(&self.node, &me);
                        let span = self.node.span.clone();
                        let _ = AssertUnwindSafe(state.on_stop(&mut ctx).instrument(span))
                            .catch_unwind()
                            .await;
                    }
                    return Ok(None);
                }
            }
        }
    }
}

impl<N: Notifier> NotifierActor<N> {
    fn fail(&mut self, reason: ExitReason) {
        if self.phase == Phase::Running {
            self.phase = Phase::Failed;
            self.failure = Some(reason);
        }
    }

    async fn run_ready(&mut self, me: &ActorRef<Self>) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let mut ctx = Ctx::new(&self.node, me);
        // A panic here unwinds out of `next`: kameo catches it and calls
        // `on_panic`, which fails this incarnation like a handler's panic.
        if self.node.span.is_disabled() {
            state.on_ready(&mut ctx).await;
        } else {
            let span = self.node.span.clone();
            state.on_ready(&mut ctx).instrument(span).await;
        }
        if let Some(reason) = ctx.exit.take() {
            self.fail(reason);
        }
    }

    /// Tears the failed incarnation down and tells the parent.
    async fn report_failure(&mut self, me: &ActorRef<Self>, reason: ExitReason) {
        if reason.is_normal() {
            tracing::debug!(parent: &self.node.span, "notifier exited");
        } else {
            tracing::warn!(parent: &self.node.span, %reason, "notifier failed");
        }
        self.node.set_state(NodeState::Failed);
        let mut report = ShutdownReport::default();
        self.node.shutdown_children(None, &mut report).await;
        if let Some(mut state) = self.state.take()
            && reason.is_normal()
        {
            let mut ctx = Ctx::new(&self.node, me);
            let _ = AssertUnwindSafe(state.on_stop(&mut ctx))
                .catch_unwind()
                .await;
        }
        self.node
            .shared
            .publish(&self.node, SupervisionEventKind::Exited(reason.clone()));
        match self.node.parent() {
            Some(parent) => parent.push_ctl(Ctl::ChildFailed(self.node.clone(), reason)),
            None => self.node.shared.set_fatal(reason),
        }
    }

    /// Runs every queued control message; returns false once the
    /// notifier must stop reading its mailbox.
    async fn run_ctl(&mut self, me: &ActorRef<Self>) -> bool {
        while let Some(ctl) = self.node.pop_ctl() {
            match ctl {
                Ctl::Stop => {
                    self.node.mark_stopping();
                    self.node.set_state(NodeState::Stopping);
                    let mut report = ShutdownReport::default();
                    self.node.shutdown_children(None, &mut report).await;
                    self.phase = Phase::Draining;
                    self.failure = None;
                }
                Ctl::Suspend(ack) => {
                    self.suspend(me).await;
                    let _ = ack.send(());
                }
                Ctl::Resume(ack) => {
                    self.resume(me).await;
                    let _ = ack.send(());
                }
                Ctl::ChildFailed(child, reason) => self.on_child_failed(child, reason).await,
                Ctl::RestartGroup(group) => self.restart_group(group).await,
            }
        }
        self.phase == Phase::Running
    }

    async fn suspend(&mut self, me: &ActorRef<Self>) {
        if self.phase == Phase::Draining {
            return;
        }
        self.node.set_state(NodeState::Restarting);
        let mut report = ShutdownReport::default();
        self.node.shutdown_children(None, &mut report).await;
        if let Some(mut state) = self.state.take() {
            let mut ctx = Ctx::new(&self.node, me);
            let _ = AssertUnwindSafe(state.on_stop(&mut ctx))
                .catch_unwind()
                .await;
        }
        self.phase = Phase::Suspended;
        self.failure = None;
    }

    async fn resume(&mut self, me: &ActorRef<Self>) {
        if self.phase == Phase::Draining || self.node.is_stopping() {
            return;
        }
        self.state = None;
        self.node.set_state(NodeState::Starting);
        let mut ctx = Ctx::new(&self.node, me);
        let span = self.node.span.clone();
        let res = AssertUnwindSafe(N::init((self.args)(), &mut ctx).instrument(span))
            .catch_unwind()
            .await;
        self.node.count_restart();
        self.phase = Phase::Running;
        match res {
            Ok(Ok(state)) => {
                self.state = Some(state);
                self.node.set_state(NodeState::Running);
                self.node.shared.publish(
                    &self.node,
                    SupervisionEventKind::Restarted {
                        restarts: self.node.restarts(),
                    },
                );
            }
            Ok(Err(err)) => self.fail(ExitReason::Failed(err)),
            Err(panic) => self.fail(ExitReason::Panicked(panic_text(panic))),
        }
    }

    /// Applies the child's restart type, its restart limit and this
    /// notifier's strategy to a child failure.
    async fn on_child_failed(&mut self, child: Arc<Node>, reason: ExitReason) {
        if self.node.is_stopping() || child.is_stopping() || self.phase != Phase::Running {
            child.push_ctl(Ctl::Stop);
            return;
        }
        let restart = match child.policy.restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_normal(),
            Restart::Temporary => false,
        };
        if !restart {
            child.mark_stopping();
            child.push_ctl(Ctl::Stop);
            return;
        }
        let attempt = child.record_failure(Instant::now());
        if attempt > child.policy.max_restarts {
            self.node
                .shared
                .publish(&child, SupervisionEventKind::GaveUp(reason.clone()));
            child.mark_stopping();
            child.push_ctl(Ctl::Stop);
            self.fail(ExitReason::Escalated {
                child: child.path.to_string(),
                cause: Box::new(reason),
            });
            return;
        }
        let delay = child.policy.backoff.delay(attempt);
        self.node
            .shared
            .publish(&child, SupervisionEventKind::Restarting { attempt, delay });
        let children = self.node.children();
        let pos = children.iter().position(|c| c.id == child.id);
        let group: Vec<Arc<Node>> = match (self.node.policy.strategy, pos) {
            (_, None) | (Strategy::OneForOne, _) => vec![child.clone()],
            (Strategy::OneForAll, Some(_)) => children,
            (Strategy::RestForOne, Some(i)) => children[i..].to_vec(),
        };
        for sibling in group.iter().rev().filter(|s| s.id != child.id) {
            suspend_node(sibling).await;
        }
        if delay.is_zero() {
            self.restart_group(group).await;
        } else {
            let me = self.node.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                me.push_ctl(Ctl::RestartGroup(group));
            });
        }
    }

    /// Starts each member of a restart group again, in start order.
    async fn restart_group(&mut self, group: Vec<Arc<Node>>) {
        if self.node.is_stopping() || self.phase != Phase::Running {
            return;
        }
        for node in group {
            if node.is_stopping() || !node.is_alive() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            node.push_ctl(Ctl::Resume(tx));
            let _ = rx.await;
        }
    }
}

/// Asks a sibling to stop its incarnation for a group restart, within its
/// stop timeout; one that does not answer is stopped for good.
async fn suspend_node(node: &Arc<Node>) {
    let (tx, rx) = oneshot::channel();
    node.push_ctl(Ctl::Suspend(tx));
    if tokio::time::timeout(node.policy.stop_timeout, rx)
        .await
        .is_err()
    {
        let mut report = ShutdownReport::default();
        node.clone()
            .shutdown(Some(Instant::now()), &mut report)
            .await;
    }
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => match p.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => String::from("panic with a non-string payload"),
        },
    }
}

impl<N, M> Message<M> for NotifierActor<N>
where
    N: Handler<M>,
    M: Send + 'static,
{
    type Reply = N::Reply;

    async fn handle(&mut self, msg: M, kctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let NotifierActor { node, state, .. } = self;
        let state = state
            .as_mut()
            .expect("invariant: the mailbox is read only while an incarnation runs");
        let mut ctx = Ctx::new(node, kctx.actor_ref());
        let reply = if node.span.is_disabled() {
            state.handle(msg, &mut ctx).await
        } else {
            state
                .handle(msg, &mut ctx)
                .instrument(node.span.clone())
                .await
        };
        let exit = ctx.exit.take();
        if let Some(reason) = exit {
            self.fail(reason);
        }
        reply
    }
}

impl<N: Notifier> fmt::Debug for NotifierActor<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifierActor")
            .field("path", &self.node.path)
            .field("phase", &self.phase)
            .finish()
    }
}

impl<N: Notifier> fmt::Debug for Start<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Start")
            .field("path", &self.node.path)
            .finish()
    }
}
