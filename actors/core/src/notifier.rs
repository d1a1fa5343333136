//! [`Notifier`]: the behaviour of one node of the tree, [`Handler`] for
//! its messages, [`Ctx`] given to both, and [`NotifierRef`], its handle.
//!
//! ```
//! use ioasync::{notifier::{Ctx, Handler, Notifier, Spec}, Loop, Result};
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

use std::{fmt, future::Future, sync::Arc, time::Duration};

use kameo::{actor::ActorRef, reply::Reply};
use tokio::{sync::oneshot, time::Instant};

use crate::{
    error::{Error, ErrorKind, Result},
    event::{Emits, EventStream, Subscribers, Subscription},
    exit::ExitReason,
    node::Node,
    queue::Overflow,
    shutdown::ShutdownReport,
    snapshot::NodeSnapshot,
    state::NodeState,
};

/// The behaviour of a notifier: how it starts, what OS source it waits on,
/// how it stops. Messages are handled through [`Handler`].
///
/// The notifier runs inside its own kameo actor. `init` runs at the first
/// start and at every restart, with fresh arguments from the
/// [`Spec`](crate::Spec).
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
    ///
    /// It may resolve at once turn after turn (a level-triggered source
    /// nobody drains): the runtime takes a unit of tokio's cooperative
    /// budget per turn and gives the mailbox a turn after each, so such a
    /// notifier shares its thread and still hears its messages.
    fn ready(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Handles what [`Notifier::ready`] waited for. Runs to completion.
    fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Whether this turn's [`Notifier::on_ready`] may wait (an `.await`
    /// that can be pending), asked before every readiness turn. The
    /// default, `true`, runs each turn's `on_ready` as a boxed future (one
    /// allocation per turn: the idle notifier keeps no room for it). A
    /// notifier whose turn finishes at once says `false`; the runtime then
    /// polls `on_ready` in place, with no allocation, and its emits go to
    /// the subscribers it had when the turn began (those made meanwhile
    /// through a handle are taken at the next turn). Say `false` only when
    /// every `.await` of the turn is ready at once — an emit of an `E` for
    /// which [`Ctx::emit_may_wait`] is `false` is; a turn that waits anyway
    /// fails the incarnation like a panic.
    fn on_ready_may_wait(&mut self, ctx: &mut Ctx<'_, Self>) -> bool {
        let _ = ctx;
        true
    }

    /// Whether the notifier takes messages from its mailbox now. While it
    /// returns false, senders wait on the bounded mailbox: backpressure
    /// (a stream above its write high watermark says false). Checked
    /// before each wait; a change takes effect at the next event.
    fn accepting(&self) -> bool {
        true
    }

    /// Called when subscribers were added through a handle while it runs
    /// (a stream delivers what it held for them here). The default does
    /// nothing.
    fn on_subscribe(&mut self, ctx: &mut Ctx<'_, Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Called at the end of every incarnation however it ended: a graceful
    /// stop (after the mailbox was drained), an exit by its own choice, an
    /// error, a restart of its group, or a panic (the state is then as the
    /// panic left it). Not called after a kill. Flush and emit terminal
    /// events here; the runtime emits [`Exit`](crate::Exit) after it. A
    /// panic here is contained and reported like any other.
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
    /// Only `emit` (through `&mut self`) reaches it, with `get_mut`: the
    /// mutex is never locked; it makes `Ctx` `Sync`, so `&Ctx` may be held
    /// across an `.await`.
    subs: std::sync::Mutex<&'a mut Subscribers>,
    /// Boxed: set rarely, and it keeps every handler future small.
    pub(crate) exit: Option<Box<ExitReason>>,
    /// A readiness turn polled in place (see
    /// [`Notifier::on_ready_may_wait`]): emits take no new subscriptions,
    /// so none can make them wait.
    pub(crate) at_once: bool,
    _n: std::marker::PhantomData<fn(N)>,
}

impl<'a, N: Notifier> Ctx<'a, N> {
    pub(crate) fn new(node: &'a Arc<Node>, subs: &'a mut Subscribers) -> Self {
        Ctx {
            node,
            subs: std::sync::Mutex::new(subs),
            exit: None,
            at_once: false,
            _n: std::marker::PhantomData,
        }
    }

    /// Subscriptions made through a handle join the lists, except inside
    /// a turn polled in place.
    fn take_subscriptions(&mut self) -> &mut Subscribers {
        let subs = self.subs.get_mut().unwrap_or_else(|e| e.into_inner());
        if !self.at_once {
            self.node.take_subscriptions(subs);
        }
        subs
    }

    /// Delivers `event` to this notifier's subscribers of `E` (closures
    /// run here; actors and streams per their backpressure). With no
    /// subscriber, or closures only, it is delivered before this returns
    /// and the future is ready; only deliveries that may wait are boxed,
    /// which keeps every notifier's idle future small.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct Pinged(u32);
    /// impl ioasync::notifier::Emits<Pinged> for Cell {}
    ///
    /// struct Ping(u32);
    /// impl Handler<Ping> for Cell {
    ///     type Reply = ();
    ///     async fn handle(&mut self, Ping(n): Ping, ctx: &mut Ctx<'_, Self>) {
    ///         ctx.emit(Pinged(n)).await;
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// let mut pings = cell.events::<Pinged>()?;
    /// cell.ask(Ping(7)).await?;
    /// assert_eq!(pings.recv().await, Some(Pinged(7)));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while a subscriber's full stream makes it wait, the event
    /// may have reached some subscribers and not the others.
    pub fn emit<E>(&mut self, event: E) -> impl Future<Output = ()> + Send + '_
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        use futures_util::future::Either;
        let subs = self.take_subscriptions();
        // No state machine of its own: a ready future when delivery is
        // done (the common case), the boxed delivery otherwise.
        match subs.emit_now(event) {
            None => Either::Left(std::future::ready(())),
            Some(event) => {
                let delivery: futures_util::future::BoxFuture<'_, ()> = Box::pin(subs.emit(event));
                Either::Right(delivery)
            }
        }
    }

    /// Whether anybody subscribes to this notifier's events of type `E`
    /// (a notifier may hold what it would emit until somebody listens).
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// #[derive(Clone)]
    /// struct Pinged;
    /// impl ioasync::notifier::Emits<Pinged> for Cell {}
    ///
    /// struct Listened;
    /// impl Handler<Listened> for Cell {
    ///     type Reply = bool;
    ///     async fn handle(&mut self, _: Listened, ctx: &mut Ctx<'_, Self>) -> bool {
    ///         ctx.has_subscribers::<Pinged>()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// assert!(!cell.ask(Listened).await?);
    /// let _pings = cell.events::<Pinged>()?;
    /// assert!(cell.ask(Listened).await?);
    /// # Ok(()) }
    /// ```
    pub fn has_subscribers<E>(&mut self) -> bool
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        self.take_subscriptions().count::<E>() > 0
    }

    /// Whether emitting an `E` now could wait: a subscriber of `E` is an
    /// actor or a stream (whose queue may be full), not a closure. A
    /// notifier whose readiness turn emits only events for which this is
    /// `false` may say so in [`Notifier::on_ready_may_wait`]. Subscriptions
    /// made through a handle and not taken yet are left for the runtime's
    /// next control turn (which tells [`Notifier::on_subscribe`]).
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// #[derive(Clone)]
    /// struct Pinged;
    /// impl ioasync::notifier::Emits<Pinged> for Cell {}
    ///
    /// struct MayWait;
    /// impl Handler<MayWait> for Cell {
    ///     type Reply = bool;
    ///     async fn handle(&mut self, _: MayWait, ctx: &mut Ctx<'_, Self>) -> bool {
    ///         ctx.emit_may_wait::<Pinged>()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// assert!(!cell.ask(MayWait).await?); // nobody listens
    /// let _pings = cell.events::<Pinged>()?; // a stream: it may be full
    /// assert!(cell.ask(MayWait).await?);
    /// # Ok(()) }
    /// ```
    pub fn emit_may_wait<E>(&mut self) -> bool
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        self.subs
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .may_wait::<E>()
    }

    /// This notifier's path (`/server/conn-17`).
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Ask;
    /// impl Handler<Ask> for Cell {
    ///     type Reply = String;
    ///     async fn handle(&mut self, _: Ask, ctx: &mut Ctx<'_, Self>) -> String {
    ///         ctx.path().to_owned()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// assert_eq!(cell.ask(Ask).await?, "/cell");
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &str {
        &self.node.path
    }

    /// This notifier's name.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Ask;
    /// impl Handler<Ask> for Cell {
    ///     type Reply = String;
    ///     async fn handle(&mut self, _: Ask, ctx: &mut Ctx<'_, Self>) -> String {
    ///         ctx.name().to_owned()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// assert_eq!(cell.ask(Ask).await?, "cell");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// A handle to this notifier.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Me;
    /// impl Handler<Me> for Cell {
    ///     type Reply = u64;
    ///     async fn handle(&mut self, _: Me, ctx: &mut Ctx<'_, Self>) -> u64 {
    ///         ctx.this().id() // a handle to hand out: to children, to tasks
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// assert_eq!(cell.ask(Me).await?, cell.id());
    /// # Ok(()) }
    /// ```
    pub fn this(&self) -> NotifierRef<N> {
        NotifierRef {
            actor: self
                .node
                .actor_as::<NotifierActor<N>>()
                .expect("invariant: a node's actor is set before its notifier runs"),
            node: self.node.clone(),
        }
    }

    /// Ends this incarnation normally once the current handler returns (an
    /// exit, not a stop: a permanent notifier is restarted; others leave
    /// the tree). To stop a notifier for good, from outside or from a
    /// sibling, [`NotifierRef::stop`].
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Done;
    /// impl Handler<Done> for Cell {
    ///     type Reply = ();
    ///     async fn handle(&mut self, _: Done, ctx: &mut Ctx<'_, Self>) {
    ///         ctx.exit();
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// # drop(cell);
    /// use ioasync::supervision::Restart;
    /// let cell = lp.add(Spec::<Cell>::new("once", ()).restart(Restart::Temporary)).await?;
    /// cell.tell(Done).await?;
    /// cell.wait_stopped().await; // temporary: it stops for good
    /// assert!(lp.lookup::<Cell>("/once").is_none());
    /// # Ok(()) }
    /// ```
    pub fn exit(&mut self) {
        self.exit = Some(Box::new(ExitReason::Normal));
    }

    /// Ends this incarnation abnormally once the current handler returns;
    /// the parent applies its restart policy.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Broken;
    /// impl Handler<Broken> for Cell {
    ///     type Reply = ();
    ///     async fn handle(&mut self, _: Broken, ctx: &mut Ctx<'_, Self>) {
    ///         ctx.fail(ioasync::Error::invalid_input("broken", "bad state"));
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// let mut exits = cell.exits()?;
    /// cell.tell(Broken).await?;
    /// let exit = exits.recv().await.unwrap();
    /// assert!(!exit.reason.is_normal());
    /// # Ok(()) }
    /// ```
    pub fn fail(&mut self, err: Error) {
        self.exit = Some(Box::new(if err.is_panic() {
            ExitReason::panicked(err.message(), None)
        } else {
            ExitReason::Failed(err)
        }));
    }

    /// Whether this notifier is stopping for good (removed, or its tree
    /// shutting down): its children are being stopped before it.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Stopping;
    /// impl Handler<Stopping> for Cell {
    ///     type Reply = bool;
    ///     async fn handle(&mut self, _: Stopping, ctx: &mut Ctx<'_, Self>) -> bool {
    ///         ctx.is_stopping()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// assert!(!cell.ask(Stopping).await?);
    /// # Ok(()) }
    /// ```
    pub fn is_stopping(&self) -> bool {
        self.node.is_stopping()
    }

    /// How many times this notifier has been restarted.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Restarts;
    /// impl Handler<Restarts> for Cell {
    ///     type Reply = u32;
    ///     async fn handle(&mut self, _: Restarts, ctx: &mut Ctx<'_, Self>) -> u32 {
    ///         ctx.restarts()
    ///     }
    /// }
    /// struct Crash;
    /// impl Handler<Crash> for Cell {
    ///     type Reply = ();
    ///     async fn handle(&mut self, _: Crash, _: &mut Ctx<'_, Self>) {
    ///         panic!("crash");
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// # drop(cell);
    /// # let cell = lp
    /// #     .add(Spec::<Cell>::new("permanent", ()).restart(ioasync::supervision::Restart::Permanent))
    /// #     .await?;
    /// assert_eq!(cell.ask(Restarts).await?, 0);
    /// let mut exits = cell.exits()?;
    /// cell.tell(Crash).await?;
    /// assert!(exits.recv().await.unwrap().restarting);
    /// assert_eq!(cell.ask(Restarts).await?, 1); // same handle, next incarnation
    /// # Ok(()) }
    /// ```
    pub fn restarts(&self) -> u32 {
        self.node.restarts()
    }

    /// Sets what tree snapshots show of this notifier beside its state
    /// (a child process's pid, a connection's peer): shown as `detail` in
    /// [`NodeSnapshot`](crate::NodeSnapshot), its text form and its DOT
    /// drawing. Kept across restarts until set again; `""` clears it.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Detail(&'static str);
    /// impl Handler<Detail> for Cell {
    ///     type Reply = ();
    ///     async fn handle(&mut self, Detail(d): Detail, ctx: &mut Ctx<'_, Self>) {
    ///         ctx.set_detail(d);
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// cell.ask(Detail("pid=42")).await?;
    /// assert_eq!(cell.tree().detail.as_deref(), Some("pid=42"));
    /// assert!(lp.tree().to_string().contains("pid=42"));
    /// # Ok(()) }
    /// ```
    pub fn set_detail(&self, detail: impl Into<String>) {
        let d: String = detail.into();
        self.node
            .set_detail((!d.is_empty()).then(|| Arc::from(d.as_str())));
    }

    /// Reports how many bytes this notifier holds in its buffers; shown in
    /// tree snapshots (`buffered=`). One relaxed atomic store.
    ///
    /// ```
    /// # use ioasync::{Loop, Result, notifier::{Ctx, Handler, Notifier, Spec}};
    /// # struct Cell;
    /// # impl Notifier for Cell {
    /// #     type Args = ();
    /// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Cell) }
    /// # }
    /// struct Hold(usize);
    /// impl Handler<Hold> for Cell {
    ///     type Reply = ();
    ///     async fn handle(&mut self, Hold(n): Hold, ctx: &mut Ctx<'_, Self>) {
    ///         ctx.set_buffered(n);
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// # let lp = Loop::current()?;
    /// # let cell = lp.add(Spec::<Cell>::new("cell", ())).await?;
    /// cell.ask(Hold(4096)).await?;
    /// assert_eq!(cell.tree().buffered, Some(4096));
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// assert_eq!(t.path(), "/idle");
    /// assert_eq!(lp.lookup::<Countdown>("/idle").unwrap().id(), t.id());
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &str {
        &self.node.path
    }

    /// The notifier's name.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// assert_eq!(t.name(), "idle");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// A loop-unique id.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let u = lp.add(Countdown::spec("other", Duration::from_secs(5))).await?;
    /// assert_ne!(t.id(), u.id());
    /// assert_eq!(t.clone().id(), t.id());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> u64 {
        self.node.id
    }

    /// Its actor is still running (it may be failed or restarting).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// assert!(t.is_alive());
    /// t.stop().await;
    /// assert!(!t.is_alive());
    /// # Ok(()) }
    /// ```
    pub fn is_alive(&self) -> bool {
        self.actor.is_alive()
    }

    /// Its current supervision state.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// use ioasync::supervision::NodeState;
    /// assert_eq!(t.state(), NodeState::Running);
    /// t.stop().await;
    /// assert_eq!(t.state(), NodeState::Stopped);
    /// # Ok(()) }
    /// ```
    pub fn state(&self) -> NodeState {
        self.node.state()
    }

    /// How many times it has been restarted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// assert_eq!(t.restarts(), 0);
    /// # Ok(()) }
    /// ```
    pub fn restarts(&self) -> u32 {
        self.node.restarts()
    }

    /// The underlying kameo actor, for kameo APIs (links, recipients).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// assert!(t.actor_ref().is_alive());
    /// # Ok(()) }
    /// ```
    pub fn actor_ref(&self) -> &ActorRef<NotifierActor<N>> {
        &self.actor
    }

    /// Sends `msg` without waiting for it to be handled; waits for room
    /// in a full mailbox.
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
    /// c.tell(Add(2)).await?;
    /// // Messages are handled in order: the add came first.
    /// assert_eq!(c.ask(Get).await?, 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for room in a full mailbox, nothing was sent.
    /// Dropped once the message is queued, the notifier still handles it;
    /// nothing is lost.
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
    /// c.try_tell(Add(2))?;
    /// assert_eq!(c.ask(Get).await?, 2);
    /// c.stop().await;
    /// assert!(c.try_tell(Add(1)).unwrap_err().is_closed());
    /// # Ok(()) }
    /// ```
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
    /// c.ask(Add(5)).await?;
    /// assert_eq!(c.ask(Get).await?, 5);
    /// c.stop().await;
    /// assert!(c.ask(Get).await.is_err(), "a stopped notifier answers nothing");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for room in a full mailbox, nothing was sent.
    /// Dropped once the message is queued, the notifier still handles it;
    /// only the reply is lost.
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

    /// Subscribes `sub` to this notifier's events of type `E`, from now
    /// on. The subscription belongs to the notifier's runtime: it outlives
    /// restarts. Fails once the notifier has left the tree.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// use ioasync::{notifier::Subscription, time::Expired};
    /// let (sub, mut expiries) = Subscription::stream(4);
    /// t.subscribe::<Expired>(sub)?;
    /// let e = expiries.recv().await.unwrap();
    /// assert!(e.fired >= e.deadline);
    /// # Ok(()) }
    /// ```
    pub fn subscribe<E>(&self, sub: Subscription<E>) -> Result<()>
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        self.node.add_subscription("subscribe", sub.into_pending())
    }

    /// Subscribes `sub` to this notifier's [`Exit`](crate::Exit) events:
    /// one per ended incarnation, however it ended (a panic too), after
    /// its `on_stop`, with the reason and whether a restart follows.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// use ioasync::{notifier::Subscription, supervision::Exit};
    /// let (sub, mut exits) = Subscription::stream(4);
    /// t.subscribe_exit(sub)?;
    /// t.stop().await;
    /// let exit: Exit = exits.recv().await.unwrap();
    /// assert!(exit.reason.is_normal() && !exit.restarting);
    /// # Ok(()) }
    /// ```
    pub fn subscribe_exit(&self, sub: Subscription<crate::exit::Exit>) -> Result<()> {
        self.node.add_subscription("subscribe", sub.into_pending())
    }

    /// A stream of this notifier's [`Exit`](crate::Exit) events from now
    /// on (it waits for the reader when 64 are unread).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let mut exits = t.exits()?;
    /// t.stop().await;
    /// let exit = exits.recv().await.unwrap();
    /// assert_eq!(&*exit.path, "/idle");
    /// assert!(exit.reason.is_normal());
    /// # Ok(()) }
    /// ```
    pub fn exits(&self) -> Result<EventStream<crate::exit::Exit>> {
        let (sub, stream) = Subscription::stream(64);
        self.subscribe_exit(sub)?;
        Ok(stream)
    }

    /// Runs `f` inside the notifier for each event of type `E`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
    /// use ioasync::time::Expired;
    /// let fired = Arc::new(AtomicU32::new(0));
    /// let f = fired.clone();
    /// t.on_event(move |_: Expired| {
    ///     f.fetch_add(1, Ordering::SeqCst);
    /// })?;
    /// let mut done = t.events::<Expired>()?; // subscribed after: runs after the closure
    /// done.recv().await.unwrap();
    /// assert_eq!(fired.load(Ordering::SeqCst), 1);
    /// # Ok(()) }
    /// ```
    pub fn on_event<E>(&self, f: impl FnMut(E) + Send + 'static) -> Result<()>
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        self.subscribe(Subscription::closure(f))
    }

    /// A stream of this notifier's events of type `E` from now on,
    /// buffering up to 64 (a full stream makes the notifier wait; see
    /// [`Subscription::stream_with`] for other bounds and policies). It
    /// misses nothing between two reads and ends when the notifier leaves
    /// the tree.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// use ioasync::time::Expired;
    /// let mut expiries = t.events::<Expired>()?;
    /// let e = expiries.recv().await.unwrap();
    /// assert!(e.fired >= e.deadline);
    /// # Ok(()) }
    /// ```
    pub fn events<E>(&self) -> Result<EventStream<E>>
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        let (sub, stream) = Subscription::stream(64);
        self.subscribe(sub)?;
        Ok(stream)
    }

    /// A stream of this notifier's events of type `E` from now on,
    /// buffering up to `capacity` with the `overflow` policy when full.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// use ioasync::{notifier::Overflow, time::Expired};
    /// let mut expiries = t.events_with::<Expired>(1, Overflow::DropOldest)?;
    /// assert!(expiries.recv().await.is_some());
    /// # Ok(()) }
    /// ```
    pub fn events_with<E>(&self, capacity: usize, overflow: Overflow) -> Result<EventStream<E>>
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        let (sub, stream) = Subscription::stream_with(capacity, overflow);
        self.subscribe(sub)?;
        Ok(stream)
    }

    /// The next event of type `E`. The first call subscribes a tap that
    /// this handle and its clones share, so events between two calls are
    /// kept (the 1,024 most recent; older ones are dropped), and each
    /// event is returned to one caller. The tap is made when `next_event`
    /// is called, not when its future is first polled: an event emitted
    /// after the call is not missed. Fails once the notifier has left the
    /// tree and every kept event was taken.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// use ioasync::time::Expired;
    /// // Made before the expiry, polled after: the event is kept for it.
    /// let next = t.next_event::<Expired>();
    /// tokio::time::advance(Duration::from_secs(6)).await;
    /// let e = next.await?;
    /// assert!(e.fired >= e.deadline);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event is taken from the shared tap only when the future
    /// returns it; dropped before, the event stays for the next call.
    pub fn next_event<E>(&self) -> impl Future<Output = Result<E>> + Send + 'static
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        let node = self.node.clone();
        let tap = node.tap(|| {
            let (sub, stream) = Subscription::stream_with(1024, Overflow::DropOldest);
            let added = node.add_subscription("next_event", sub.into_pending());
            Tap(added.map(|()| tokio::sync::Mutex::new(stream)))
        });
        async move {
            let Ok(stream) = &tap.0 else {
                return Err(Error::closed(
                    "next_event",
                    format!("notifier {} is not running", node.path),
                ));
            };
            stream.lock().await.recv().await.ok_or_else(|| {
                Error::closed(
                    "next_event",
                    format!("notifier {} left the tree", node.path),
                )
            })
        }
    }

    /// State every handle of this notifier shares (the notifier reaches it
    /// too, through [`Ctx::this`]), one per type `T`, made by `init` on
    /// first use; it outlives restarts. For the handle side of a notifier
    /// type: a pool's call slots, a cache of what its handles computed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let calls = t.handle_state(|| AtomicU32::new(0));
    /// calls.fetch_add(1, Ordering::SeqCst);
    /// // Every handle (clones too) sees the same state; `init` ran once.
    /// let again = t.clone().handle_state(|| AtomicU32::new(100));
    /// assert_eq!(again.load(Ordering::SeqCst), 1);
    /// # Ok(()) }
    /// ```
    pub fn handle_state<T: std::any::Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        self.node.tap(init)
    }

    /// Stops this notifier and its subtree (leaves first, reverse start
    /// order, each within its stop timeout) and removes it from the tree.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let report = t.stop().await;
    /// assert!(report.is_clean());
    /// assert_eq!(report.stopped, ["/idle"]);
    /// assert!(lp.lookup::<Countdown>("/idle").is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: this future drives the stop, child by child.
    /// Dropped part-way, the notifier is left running (it still answers)
    /// with part of its subtree stopped and not restarted; a child whose
    /// stop was already asked for still stops, but is not killed should it
    /// overrun its stop timeout. Calling `stop` again finishes the job.
    /// To bound or abandon a stop, give it a deadline
    /// ([`shutdown`](Self::shutdown)) rather than dropping it, or run it in
    /// its own task (`tokio::spawn(async move { r.stop().await })`).
    pub async fn stop(&self) -> ShutdownReport {
        self.shutdown(None).await
    }

    /// Like [`NotifierRef::stop`], with an overall deadline: whatever has
    /// not stopped by then is killed and reported as overrun.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let report = t.shutdown(Some(Duration::from_secs(1))).await;
    /// assert!(report.is_clean() && report.overran.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`stop`](Self::stop): this future drives the
    /// stop; bound it with `deadline`, not by dropping it.
    pub async fn shutdown(&self, deadline: Option<Duration>) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        let deadline = deadline.map(|d| Instant::now() + d);
        self.node.clone().shutdown(deadline, &mut report).await;
        report
    }

    /// Kills the notifier's actor at once (no graceful stop); its children
    /// are stopped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// t.kill().await;
    /// assert!(!t.is_alive());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it stops the children first, then kills the
    /// actor. Dropped before that, the notifier is left running, some of
    /// its children stopped and not restarted: call `kill` again.
    pub async fn kill(&self) {
        let mut report = ShutdownReport::default();
        self.node.mark_stopping();
        self.node
            .shutdown_children(Some(Instant::now()), &mut report)
            .await;
        self.actor.kill();
        let _ = self.actor.wait_for_shutdown_result().await;
    }

    /// Waits until the notifier has stopped for good. When it returns the
    /// notifier has left the tree: `lookup` no longer finds it and
    /// snapshots no longer show it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let waiter = t.clone();
    /// let stopped = tokio::spawn(async move { waiter.wait_stopped().await });
    /// t.stop().await;
    /// stopped.await.unwrap();
    /// assert!(lp.lookup::<Countdown>("/idle").is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits; dropping it changes nothing.
    pub async fn wait_stopped(&self) {
        let _ = self.actor.wait_for_shutdown_result().await;
    }

    /// A snapshot of this notifier and its subtree.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let snap = t.tree();
    /// assert_eq!((snap.name.as_str(), snap.kind), ("idle", "timer-countdown"));
    /// assert!(snap.children.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn tree(&self) -> NodeSnapshot {
        self.node.snapshot()
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

/// The shared subscription behind [`NotifierRef::next_event`].
struct Tap<E>(Result<tokio::sync::Mutex<EventStream<E>>>);

/// Makes the arguments of each start.
pub(crate) type ArgsFactory<A> = Arc<dyn Fn() -> A + Send + Sync>;

/// The kameo actor that runs a notifier `N`. Users meet it only in kameo
/// types (`ActorRef<NotifierActor<N>>`); everything else goes through
/// [`NotifierRef`].
///
/// One pointer: kameo's actor task keeps the actor in several places of
/// its lifecycle future at once, so its state lives on the heap, once.
pub struct NotifierActor<N: Notifier>(pub(crate) Box<ActorState<N>>);

/// What the runtime keeps for one notifier (see [`NotifierActor`]).
pub(crate) struct ActorState<N: Notifier> {
    pub(crate) node: Arc<Node>,
    pub(crate) state: Option<N>,
    /// `None` once a one-shot notifier's start has taken them.
    pub(crate) args: Option<ArgsFactory<N::Args>>,
    /// Made by `Spec::once`: the factory is dropped after the first start.
    pub(crate) one_shot: bool,
    pub(crate) phase: Phase,
    pub(crate) subs: Subscribers,
    /// The first start's result, for an `add` that waits for it.
    pub(crate) started: Option<oneshot::Sender<Result<()>>>,
    pub(crate) burst: u32,
    /// kameo's `StartupFinished` signal was handed back (it is queued
    /// when the shell starts; taking it before the first `init` leaves the
    /// mailbox holding only messages).
    pub(crate) startup_seen: bool,
    /// The mailbox holds the node's mailbox waker since its last poll
    /// came back empty (see `wake.rs`): until that waker fires, the wait
    /// need not poll it again.
    pub(crate) mailbox_armed: bool,
    /// Messages that arrived before `StartupFinished`, held for the first
    /// incarnation (rare: allocated when it happens).
    #[allow(clippy::box_collection)] // 8 bytes in every actor instead of 24
    pub(crate) held: Option<Box<Vec<kameo::mailbox::Signal<NotifierActor<N>>>>>,
}

/// Messages taken from the mailbox in a row before the notifier's source
/// gets a fair chance.
pub(crate) const FAIR_BURST: u32 = 32;

/// Where the runtime is in the lifecycle (finer than [`NodeState`]).
pub(crate) enum Phase {
    /// `init` is due; the ack answers the group restart that asked.
    Starting(Option<oneshot::Sender<()>>),
    /// Handling messages, the source and control.
    Running,
    /// The incarnation ended: tear it down, then decide.
    Exiting(Box<ExitReason>),
    /// Torn down: waits for its group's `Resume`, or a `Stop`.
    Waiting,
    /// Torn down: starts again at this instant (one-for-one backoff).
    Backoff(Instant),
    /// Stopping for good: drain the mailbox, then `on_stop`.
    Draining,
    /// Finished: the actor ends.
    Done,
}

impl Phase {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Phase::Starting(_) => "starting",
            Phase::Running => "running",
            Phase::Exiting(_) => "exiting",
            Phase::Waiting => "waiting",
            Phase::Backoff(_) => "backoff",
            Phase::Draining => "draining",
            Phase::Done => "done",
        }
    }
}

/// What a notifier's actor starts from: its state, made before the
/// actor is spawned. One pointer: kameo keeps the start arguments in its
/// task for the actor's whole life (in several places of the lifecycle
/// future), so they must be small.
pub struct Start<N: Notifier>(pub(crate) NotifierActor<N>);
