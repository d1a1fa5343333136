//! How a notifier is started and supervised: [`Spec`], [`AnySpec`] and
//! [`Once`] arguments.

use std::{fmt, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;

use crate::{
    error::Result,
    event::{Emits, PendingSub, Subscription},
    node::Node,
    notifier::{ArgsFactory, Notifier},
    policy::{Backoff, Policy, Restart, Strategy},
};

/// How to start (and restart) one notifier of type `N`: its name, the
/// arguments for [`Notifier::init`], and its supervision [`Policy`].
///
/// ```
/// use std::time::Duration;
/// use ioasync::{supervision::{Restart, Strategy}, notifier::Spec};
/// # use ioasync::{notifier::{Ctx, Notifier}, Result};
/// # struct Worker;
/// # impl Notifier for Worker {
/// #     type Args = u32;
/// #     async fn init(_: u32, _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Worker) }
/// # }
///
/// let spec = Spec::<Worker>::new("worker", 7)
///     .restart(Restart::Transient)
///     .restart_limit(5, Duration::from_secs(10))
///     .stop_timeout(Duration::from_secs(1))
///     .strategy(Strategy::OneForAll);
/// assert_eq!(spec.name(), "worker");
/// ```
#[must_use = "a Spec does nothing until it is added to a loop or a parent"]
pub struct Spec<N: Notifier> {
    pub(crate) name: String,
    pub(crate) args: ArgsFactory<N::Args>,
    pub(crate) policy: Policy,
    pub(crate) mailbox: usize,
    /// In a mutex only so that a `&Spec` is `Sync` (it is never contended).
    pub(crate) subs: std::sync::Mutex<Vec<PendingSub>>,
    /// Made by [`Spec::once`]: the runtime drops the arguments' factory
    /// after the first start.
    pub(crate) one_shot: bool,
}

impl<N: Notifier> Spec<N> {
    /// A spec whose restarts reuse clones of `args`.
    pub fn new(name: impl Into<String>, args: N::Args) -> Self
    where
        N::Args: Clone + Sync,
    {
        Spec::with(name, move || args.clone())
    }

    /// A spec whose every start calls `factory` for fresh arguments.
    pub fn with(
        name: impl Into<String>,
        factory: impl Fn() -> N::Args + Send + Sync + 'static,
    ) -> Self {
        Spec {
            name: name.into(),
            args: Arc::new(factory),
            policy: Policy::default(),
            mailbox: 64,
            subs: Default::default(),
            one_shot: false,
        }
    }

    /// A spec over something that cannot be made again (a connection, an
    /// open file, a child process): the first start takes `value`, and
    /// the notifier keeps nothing of it for restarts; one that is
    /// restarted anyway (a group restart) fails its start with a clear
    /// error. [`Restart::Temporary`] is usually what such a notifier wants.
    ///
    /// ```
    /// use ioasync::{Loop, Result, notifier::{Ctx, Notifier, Once, Spec}};
    ///
    /// struct Conn {
    ///     peer: std::net::SocketAddr,
    /// }
    /// impl Notifier for Conn {
    ///     type Args = Once<std::net::TcpStream>;
    ///     async fn init(args: Once<std::net::TcpStream>, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
    ///         let s = args.take_for(ctx.path())?;
    ///         Ok(Conn { peer: s.peer_addr().unwrap() })
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let lp = Loop::current()?;
    /// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let conn = lp.add(Spec::<Conn>::once("conn", s)).await?;
    /// assert_eq!(conn.path(), "/conn");
    /// # let _ = |c: &Conn| c.peer;
    /// # Ok(()) }
    /// ```
    pub fn once<T>(name: impl Into<String>, value: T) -> Self
    where
        N: Notifier<Args = Once<T>>,
        T: Send + 'static,
    {
        let args = Once::new(value);
        Spec {
            one_shot: true,
            ..Spec::with(name, move || args.clone())
        }
    }

    /// The notifier's name (the last part of its path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which exits restart it (default: [`Restart::Permanent`]).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.policy.restart = restart;
        self
    }

    /// At most `max` restarts within `window` (default 3 in 5 s); past it
    /// the failure escalates to the parent's parent.
    pub fn restart_limit(mut self, max: u32, window: Duration) -> Self {
        self.policy.max_restarts = max;
        self.policy.window = window;
        self
    }

    /// Delay restarts along a backoff curve (default: none).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }

    /// How long a graceful stop may take before a kill (default 5 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.policy.stop_timeout = timeout;
        self
    }

    /// The strategy this notifier applies to its own children (default
    /// [`Strategy::OneForOne`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.policy.strategy = strategy;
        self
    }

    /// How long `init` may take, at the first start and at each restart
    /// (default 10 s). Past it the start fails with a timeout error (the
    /// `add` returns it; a restart counts it as a failure).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.policy.init_timeout = timeout;
        self
    }

    /// Subscribes `sub` to the notifier's events of type `E` before it
    /// starts, so even events emitted by its first `init` reach it. The
    /// subscription belongs to the notifier's runtime: it outlives
    /// restarts. Subscriptions stay with this spec, not with its clones.
    pub fn subscribe<E>(mut self, sub: Subscription<E>) -> Self
    where
        N: Emits<E>,
        E: Clone + Send + 'static,
    {
        self.subs
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .push(sub.into_pending());
        self
    }

    /// Subscribes `sub` to the notifier's [`Exit`](crate::Exit) events
    /// (one per ended incarnation, however it ended), before it starts.
    pub fn subscribe_exit(mut self, sub: Subscription<crate::exit::Exit>) -> Self {
        self.subs
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .push(sub.into_pending());
        self
    }

    /// Mailbox capacity (default 64). Senders wait when it is full.
    pub fn mailbox(mut self, capacity: usize) -> Self {
        self.mailbox = capacity.max(1);
        self
    }

    /// The policy as configured.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The mailbox capacity as configured.
    pub fn mailbox_capacity(&self) -> usize {
        self.mailbox
    }
}

impl<N: Notifier> Clone for Spec<N> {
    fn clone(&self) -> Self {
        Spec {
            name: self.name.clone(),
            args: self.args.clone(),
            policy: self.policy,
            mailbox: self.mailbox,
            subs: Default::default(),
            one_shot: self.one_shot,
        }
    }
}

impl<N: Notifier> fmt::Debug for Spec<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("kind", &N::kind())
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("mailbox", &self.mailbox)
            .field("subscriptions", &self.subs.lock().map_or(0, |s| s.len()))
            .finish()
    }
}

/// A builder that becomes a [`Spec`] (a stream's, a framed stream's, a
/// pool's...): one builder for every notifier. A notifier's own builder
/// (`Stream::spec`, `Function::spec`, ...) sets its options first; then
/// the supervision options every notifier shares (restart type and limit,
/// backoff, stop and init timeouts, mailbox, strategy, subscriptions) are
/// set the same way on all of them, and the builder becomes a [`Spec`].
///
/// ```
/// use ioasync::{notifier::{IntoSpec, Subscription}, io::{ReadAction, Stream, StreamEvent}};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let (a, _b) = tokio::net::UnixStream::pair().unwrap();
/// let spec = Stream::spec("conn", a)
///     .on_read(|_io, buf, _eof| {
///         buf.clear();
///         ReadAction::Wait
///     })
///     .subscribe(Subscription::closure(|e: StreamEvent| println!("{e:?}")))
///     .stop_timeout(std::time::Duration::from_secs(1))
///     .mailbox(16);
/// assert_eq!(spec.name(), "conn");
/// assert_eq!(spec.policy().stop_timeout, std::time::Duration::from_secs(1));
/// # Ok(()) }
/// ```
pub trait IntoSpec: Into<Spec<Self::Notifier>> {
    /// The notifier the spec starts.
    type Notifier: Notifier;

    /// The spec.
    fn into_spec(self) -> Spec<Self::Notifier> {
        self.into()
    }

    /// The spec, subscribed to `sub` (see [`Spec::subscribe`]).
    fn subscribe<E>(self, sub: Subscription<E>) -> Spec<Self::Notifier>
    where
        Self::Notifier: Emits<E>,
        E: Clone + Send + 'static,
    {
        self.into_spec().subscribe(sub)
    }

    /// The spec, with restart type `restart` (see [`Spec::restart`]).
    fn restart(self, restart: Restart) -> Spec<Self::Notifier> {
        self.into_spec().restart(restart)
    }

    /// The spec, with a restart limit (see [`Spec::restart_limit`]).
    fn restart_limit(self, max: u32, window: Duration) -> Spec<Self::Notifier> {
        self.into_spec().restart_limit(max, window)
    }

    /// The spec, with a restart backoff (see [`Spec::backoff`]).
    fn backoff(self, backoff: Backoff) -> Spec<Self::Notifier> {
        self.into_spec().backoff(backoff)
    }

    /// The spec, with a graceful stop timeout (see [`Spec::stop_timeout`]).
    fn stop_timeout(self, timeout: Duration) -> Spec<Self::Notifier> {
        self.into_spec().stop_timeout(timeout)
    }

    /// The spec, applying `strategy` to its children (see
    /// [`Spec::strategy`]).
    fn strategy(self, strategy: Strategy) -> Spec<Self::Notifier> {
        self.into_spec().strategy(strategy)
    }

    /// The spec, with an `init` timeout (see [`Spec::init_timeout`]).
    fn init_timeout(self, timeout: Duration) -> Spec<Self::Notifier> {
        self.into_spec().init_timeout(timeout)
    }

    /// The spec, with a mailbox of `capacity` (see [`Spec::mailbox`]).
    fn mailbox(self, capacity: usize) -> Spec<Self::Notifier> {
        self.into_spec().mailbox(capacity)
    }
}

impl<N: Notifier> IntoSpec for Spec<N> {
    type Notifier = N;
}

/// A [`Spec`] of any notifier type, for code that starts children it does
/// not know the type of (a listener starting a connection handler).
///
/// ```
/// # use ioasync::{notifier::{Ctx, Notifier, Spec, AnySpec}, Result};
/// # struct Conn;
/// # impl Notifier for Conn {
/// #     type Args = ();
/// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Conn) }
/// # }
/// let any: AnySpec = Spec::<Conn>::new("conn-1", ()).into();
/// assert_eq!(any.name(), "conn-1");
/// ```
pub struct AnySpec(pub(crate) Box<dyn ErasedSpec>);

/// A spec with its notifier type erased (implemented by the runtime).
pub(crate) trait ErasedSpec: Send {
    fn name(&self) -> &str;
    /// Starts it under `parent` and waits for its `init`; its id.
    fn spawn<'a>(self: Box<Self>, parent: &'a Arc<Node>) -> BoxFuture<'a, Result<u64>>;
    /// Starts it under `parent` without waiting for its `init`; its id.
    fn start(self: Box<Self>, parent: &Arc<Node>) -> Result<u64>;
}

impl AnySpec {
    /// The name the child will have.
    pub fn name(&self) -> &str {
        self.0.name()
    }
}

impl<N: Notifier> From<Spec<N>> for AnySpec {
    fn from(spec: Spec<N>) -> Self {
        AnySpec(Box::new(spec))
    }
}

impl fmt::Debug for AnySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AnySpec").field(&self.0.name()).finish()
    }
}

/// Arguments usable once, for notifiers over something that cannot be
/// made again (a connection, an open file, a child process): the first
/// start takes them; a restart finds them gone and fails with a clear
/// error. Cheap to clone (shared).
///
/// ```
/// use ioasync::notifier::Once;
///
/// let args = Once::new(7);
/// let copy = args.clone();
/// assert_eq!(copy.take(), Some(7));
/// assert_eq!(args.take(), None);
/// ```
///
/// The value is boxed apart from the shared cell, so taking it frees it:
/// a spec keeps its arguments' cell for restarts, and a notifier started
/// once over a connection should not hold the connection's arguments for
/// its whole life.
#[allow(clippy::type_complexity)] // one private field, read once above
pub struct Once<T>(Arc<std::sync::Mutex<Option<Box<Result<T>>>>>);

impl<T> Once<T> {
    /// Arguments for one start.
    pub fn new(value: T) -> Self {
        Once(Arc::new(std::sync::Mutex::new(Some(Box::new(Ok(value))))))
    }

    /// Arguments that could not be made (a source that failed to open):
    /// the start they are for fails with `err`.
    pub fn failed(err: crate::error::Error) -> Self {
        Once(Arc::new(std::sync::Mutex::new(Some(Box::new(Err(err))))))
    }

    /// Takes the arguments; `None` once taken (or if they failed).
    pub fn take(&self) -> Option<T> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .and_then(|res| (*res).ok())
    }

    /// Takes the arguments, or fails: with the error they were made with,
    /// or, for a restart of the notifier at `path`, because what it was
    /// started over is gone.
    pub fn take_for(&self, path: &str) -> Result<T> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(res) => *res,
            None => Err(crate::error::Error::closed(
                "init",
                format!("{path} cannot be restarted: what it was started over is gone"),
            )),
        }
    }
}

impl<T> Clone for Once<T> {
    fn clone(&self) -> Self {
        Once(self.0.clone())
    }
}

impl<T> fmt::Debug for Once<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let taken = self.0.lock().map(|g| g.is_none()).unwrap_or(true);
        f.debug_struct("Once").field("taken", &taken).finish()
    }
}
