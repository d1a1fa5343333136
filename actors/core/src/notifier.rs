//! [`Notifier`]: the behaviour of one node of the tree, [`Handler`] for
//! its messages, [`Ctx`] given to both, and [`NotifierRef`], its handle.
//!
//! ```
//! use ioasync::{Ctx, Handler, Loop, Notifier, Result, Spec};
//!
//! struct Counter { n: u64 }
//!
//! impl Notifier for Counter {
//!     type Args = u64;
//!     async fn init(start: u64, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
//!         Ok(Counter { n: start })
//!     }
//! }
//!
//! struct Add(u64);
//! impl Handler<Add> for Counter {
//!     type Reply = u64;
//!     async fn handle(&mut self, Add(k): Add, _ctx: &mut Ctx<'_, Self>) -> u64 {
//!         self.n += k;
//!         self.n
//!     }
//! }
//!
//! # fn main() -> ioasync::Result<()> {
//! let lp = Loop::new()?;
//! let l = lp.clone();
//! lp.block_on(async move {
//!     let counter = l.add(Spec::<Counter>::new("counter", 40)).await?;
//!     assert_eq!(counter.ask(Add(2)).await?, 42);
//!     assert_eq!(counter.path(), "/counter");
//!     Ok(())
//! })
//! # }
//! ```

use std::{fmt, future::Future, time::Duration};

use kameo::{actor::ActorRef, reply::Reply};
use std::sync::Arc;
use tokio::time::Instant;

use crate::{
    actor::{NotifierActor, spawn_child},
    error::{Error, ErrorKind, Result},
    event::{EventStream, ExitReason, HasEvents, Subscribe, Subscription, SupervisionEventKind},
    node::{Node, ShutdownReport},
    snapshot::{NodeSnapshot, NodeState},
    spec::{AnySpec, Spec},
};

/// The behaviour of a notifier: how it starts, what OS source it waits on,
/// how it stops. Messages are handled through [`Handler`].
///
/// The notifier runs inside its own kameo actor. `init` runs at the first
/// start and at every restart, with fresh arguments from the [`Spec`].
pub trait Notifier: Sized + Send + 'static {
    /// What `init` is given.
    type Args: Send + 'static;

    /// The kind shown in tree snapshots and traces (`stream`, `timer`, ...).
    fn kind() -> &'static str {
        let full = std::any::type_name::<Self>();
        let base = full.split('<').next().unwrap_or(full);
        base.rsplit("::").next().unwrap_or(base)
    }

    /// Builds the notifier; may add children through `ctx`. An error (or
    /// panic) here fails the start, or the restart.
    fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>)
    -> impl Future<Output = Result<Self>> + Send;

    /// Waits until the notifier's own source (a socket, a timer, a signal)
    /// has something for [`Notifier::on_ready`]. It must be cancel safe:
    /// it is dropped whenever a message arrives first. The default waits
    /// forever (a notifier with no source of its own).
    fn ready(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Handles what [`Notifier::ready`] waited for. Runs to completion.
    fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Whether the notifier takes messages from its mailbox now. While it
    /// returns false, senders wait on the bounded mailbox: backpressure
    /// (a stream above its write high watermark says false). Checked
    /// before each wait; a change takes effect at the next event.
    fn accepting(&self) -> bool {
        true
    }

    /// Called when this incarnation stops: gracefully (after the mailbox
    /// was drained), or before a restart of an incarnation that exited by
    /// its own choice. Not called after a panic or a kill. Flush here.
    fn on_stop(&mut self, ctx: &mut Ctx<'_, Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }
}

/// A notifier's handler for messages of type `M`.
pub trait Handler<M: Send + 'static>: Notifier {
    /// What an `ask` returns (any kameo [`Reply`]: plain values, `Result`s).
    type Reply: Reply;

    /// Handles one message. A panic here fails this incarnation; the
    /// parent decides whether to restart it. So does an `Err` reply to a
    /// `tell` (nobody is there to receive it); an `Err` reply to an `ask`
    /// goes to the asker and the notifier carries on.
    fn handle(
        &mut self,
        msg: M,
        ctx: &mut Ctx<'_, Self>,
    ) -> impl Future<Output = Self::Reply> + Send;
}

/// What a notifier may do from inside `init`, `on_ready` and its handlers.
pub struct Ctx<'a, N: Notifier> {
    pub(crate) node: &'a Arc<Node>,
    pub(crate) actor: &'a ActorRef<NotifierActor<N>>,
    pub(crate) exit: Option<ExitReason>,
}

impl<'a, N: Notifier> Ctx<'a, N> {
    pub(crate) fn new(node: &'a Arc<Node>, actor: &'a ActorRef<NotifierActor<N>>) -> Self {
        Ctx {
            node,
            actor,
            exit: None,
        }
    }

    /// This notifier's path (`/server/conn-17`).
    pub fn path(&self) -> &str {
        &self.node.path
    }

    /// This notifier's name.
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// A handle to this notifier.
    pub fn this(&self) -> NotifierRef<N> {
        NotifierRef {
            actor: self.actor.clone(),
            node: self.node.clone(),
        }
    }

    /// Adds and starts a child under this notifier.
    pub async fn add_child<C: Notifier>(&self, spec: impl Into<Spec<C>>) -> Result<NotifierRef<C>> {
        spawn_child(self.node, spec.into()).await
    }

    /// Adds and starts a child of a type known only at run time; returns
    /// its id.
    pub async fn add_any(&self, spec: AnySpec) -> Result<u64> {
        spec.0.spawn(self.node).await
    }

    /// Ends this incarnation normally once the current handler returns. A
    /// permanent notifier is restarted; others stop for good.
    pub fn stop(&mut self) {
        self.exit = Some(ExitReason::Normal);
    }

    /// Ends this incarnation abnormally once the current handler returns;
    /// the parent applies its restart policy.
    pub fn fail(&mut self, err: Error) {
        self.exit = Some(if err.is_panic() {
            ExitReason::Panicked(err.message().to_owned())
        } else {
            ExitReason::Failed(err)
        });
    }

    /// How many times this notifier has been restarted.
    pub fn restarts(&self) -> u32 {
        self.node.restarts()
    }

    /// Publishes a supervision event for a part of this notifier that is
    /// no notifier itself, at `<path>/<name>` (a pool's worker process
    /// dying is an `Exited` event there, like any child's).
    pub fn report(&self, name: &str, kind: &'static str, what: SupervisionEventKind) {
        let path = format!("{}/{name}", self.node.path.trim_end_matches('/'));
        self.node.shared.publish_at(path, kind, what);
    }

    /// Reports how many bytes this notifier holds in its buffers; shown in
    /// tree snapshots (`buffered=`). One relaxed atomic store.
    pub fn set_buffered(&self, bytes: usize) {
        self.node.set_buffered(bytes as u64);
    }
}

impl<N: Notifier> fmt::Debug for Ctx<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("path", &self.node.path)
            .finish()
    }
}

/// A handle to a notifier in the tree: send it messages, subscribe to its
/// events, add children under it, stop it. Cheap to clone, `Send + Sync`.
///
/// A restarted notifier keeps its handle: restarts happen inside the same
/// actor, on the same mailbox.
pub struct NotifierRef<N: Notifier> {
    pub(crate) actor: ActorRef<NotifierActor<N>>,
    pub(crate) node: Arc<Node>,
}

impl<N: Notifier> Clone for NotifierRef<N> {
    fn clone(&self) -> Self {
        NotifierRef {
            actor: self.actor.clone(),
            node: self.node.clone(),
        }
    }
}

impl<N: Notifier> NotifierRef<N> {
    /// The notifier's path in the tree.
    pub fn path(&self) -> &str {
        &self.node.path
    }

    /// The notifier's name.
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// A loop-unique id.
    pub fn id(&self) -> u64 {
        self.node.id
    }

    /// Its actor is still running (it may be failed or restarting).
    pub fn is_alive(&self) -> bool {
        self.actor.is_alive()
    }

    /// Its current supervision state.
    pub fn state(&self) -> NodeState {
        self.node.state()
    }

    /// How many times it has been restarted.
    pub fn restarts(&self) -> u32 {
        self.node.restarts()
    }

    /// The underlying kameo actor, for kameo APIs (links, recipients).
    pub fn actor_ref(&self) -> &ActorRef<NotifierActor<N>> {
        &self.actor
    }

    /// Sends `msg` without waiting for it to be handled; waits for room
    /// in a full mailbox.
    pub async fn tell<M>(&self, msg: M) -> Result<()>
    where
        N: Handler<M>,
        M: Send + 'static,
    {
        self.actor
            .tell(msg)
            .await
            .map_err(|e| send_error("tell", &self.node, e))
    }

    /// Sends `msg` now, or fails with a `Full` error when the mailbox is
    /// full and a `Closed` error when the notifier is gone.
    pub fn try_tell<M>(&self, msg: M) -> Result<()>
    where
        N: Handler<M>,
        M: Send + 'static,
    {
        self.actor
            .tell(msg)
            .try_send()
            .map_err(|e| send_error("tell", &self.node, e))
    }

    /// Sends `msg` and waits for the reply. Fails with a clear error when
    /// the notifier is not running or failed while handling it.
    pub async fn ask<M>(&self, msg: M) -> Result<<N::Reply as Reply>::Ok>
    where
        N: Handler<M>,
        M: Send + 'static,
        <N::Reply as Reply>::Error: fmt::Debug + 'static,
    {
        self.actor.ask(msg).await.map_err(|e| match e {
            // A handler's own ioasync Error reaches the caller as it is.
            kameo::error::SendError::HandlerError(e)
                if (&e as &dyn std::any::Any).is::<Error>() =>
            {
                let any: Box<dyn std::any::Any> = Box::new(e);
                *any.downcast::<Error>().expect("checked above")
            }
            e => send_error("ask", &self.node, e),
        })
    }

    /// Adds and starts a child under this notifier.
    pub async fn add_child<C: Notifier>(&self, spec: impl Into<Spec<C>>) -> Result<NotifierRef<C>> {
        spawn_child(&self.node, spec.into()).await
    }

    /// Subscribes `sub` to this notifier's events of type `E`.
    pub async fn subscribe<E>(&self, sub: Subscription<E>) -> Result<()>
    where
        N: HasEvents<E>,
        E: Clone + Send + 'static,
    {
        self.ask(Subscribe(sub)).await
    }

    /// Runs `f` inside the notifier for each event of type `E`.
    pub async fn on_event<E>(&self, f: impl FnMut(E) + Send + 'static) -> Result<()>
    where
        N: HasEvents<E>,
        E: Clone + Send + 'static,
    {
        self.subscribe(Subscription::closure(f)).await
    }

    /// A stream of this notifier's events of type `E`.
    pub async fn events<E>(&self, capacity: usize) -> Result<EventStream<E>>
    where
        N: HasEvents<E>,
        E: Clone + Send + 'static,
    {
        let (sub, stream) = Subscription::stream(capacity);
        self.subscribe(sub).await?;
        Ok(stream)
    }

    /// Stops this notifier and its subtree (leaves first, reverse start
    /// order, each within its stop timeout) and removes it from the tree.
    pub async fn stop(&self) -> ShutdownReport {
        self.shutdown(None).await
    }

    /// Like [`NotifierRef::stop`], with an overall deadline: whatever has
    /// not stopped by then is killed and reported as overrun.
    pub async fn shutdown(&self, deadline: Option<Duration>) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        let deadline = deadline.map(|d| Instant::now() + d);
        self.node.clone().shutdown(deadline, &mut report).await;
        report
    }

    /// Kills the notifier's actor at once (no graceful stop); its children
    /// are stopped.
    pub async fn kill(&self) {
        let mut report = ShutdownReport::default();
        self.node.mark_stopping();
        self.node
            .shutdown_children(Some(Instant::now()), &mut report)
            .await;
        self.actor.kill();
        self.actor.wait_for_shutdown().await;
    }

    /// Waits until the notifier's actor has ended.
    pub async fn wait_stopped(&self) {
        self.actor.wait_for_shutdown().await
    }

    /// A snapshot of this notifier and its subtree.
    pub fn tree(&self) -> NodeSnapshot {
        NodeSnapshot::of(&self.node)
    }
}

impl<N: Notifier> fmt::Debug for NotifierRef<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifierRef")
            .field("path", &self.node.path)
            .field("kind", &self.node.kind)
            .finish()
    }
}

fn send_error<M, E: fmt::Debug>(
    op: &'static str,
    node: &Node,
    err: kameo::error::SendError<M, E>,
) -> Error {
    use kameo::error::SendError as S;
    let path = &node.path;
    match err {
        S::ActorStopped if node.is_alive() => Error::closed(
            op,
            format!("notifier {path} failed before replying; its parent decides on a restart"),
        ),
        S::ActorNotRunning(_) | S::ActorStopped => {
            Error::closed(op, format!("notifier {path} is not running"))
        }
        S::ActorRestarting(_) => Error::closed(op, format!("notifier {path} is restarting")),
        S::MailboxFull(_) => Error::new(
            op,
            ErrorKind::Full,
            format!("the mailbox of {path} is full"),
        ),
        S::Timeout(_) => Error::timeout(op),
        S::HandlerError(e) => Error::new(
            op,
            ErrorKind::Other,
            format!("handler of {path} failed: {e:?}"),
        ),
    }
}
