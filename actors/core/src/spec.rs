//! How a notifier is started and supervised: [`Spec`], [`Restart`],
//! [`Strategy`], [`Backoff`].
//!
//! The semantics are Erlang/OTP's, which users already trust:
//!
//! - a child's [`Restart`] type says which exits restart it;
//! - its parent's [`Strategy`] says which siblings restart with it;
//! - past `max_restarts` within `window` the parent gives up on the child
//!   and fails itself: the failure *escalates* to the grandparent, once;
//! - a [`Backoff`] delays each restart, growing while failures keep coming
//!   within the window.

use std::{fmt, sync::Arc, time::Duration};

use crate::notifier::Notifier;

/// Which exits of a child make its parent restart it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always restarted: after a panic, an error or a normal exit.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (panic, error).
    Transient,
    /// Never restarted; removed from the tree when it exits.
    Temporary,
}

/// Which siblings a parent restarts when one child fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only the failed child.
    #[default]
    OneForOne,
    /// Every child: all are stopped (reverse start order), then all started
    /// again (start order).
    OneForAll,
    /// The failed child and every child started after it.
    RestForOne,
}

/// Delay before a restart: `initial × factor^(n-1)` for the n-th restart
/// within the restart window, capped at `max`.
///
/// ```
/// use std::time::Duration;
/// use ioasync::Backoff;
///
/// let b = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(1));
/// assert_eq!(b.delay(1), Duration::from_millis(100));
/// assert_eq!(b.delay(3), Duration::from_millis(400));
/// assert_eq!(b.delay(10), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Growth factor per further restart within the window.
    pub factor: f64,
    /// Upper bound.
    pub max: Duration,
}

impl Backoff {
    /// No delay at all (the default).
    pub const NONE: Backoff = Backoff {
        initial: Duration::ZERO,
        factor: 1.0,
        max: Duration::ZERO,
    };

    /// A backoff curve.
    pub fn new(initial: Duration, factor: f64, max: Duration) -> Self {
        Backoff {
            initial,
            factor: if factor.is_finite() && factor >= 1.0 {
                factor
            } else {
                1.0
            },
            max,
        }
    }

    /// The delay before the `n`-th restart within the window (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        if self.initial.is_zero() {
            return Duration::ZERO;
        }
        let exp = n.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.factor.powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max.max(self.initial)
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::NONE
    }
}

/// The supervision settings of one notifier, as seen by its parent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Which exits restart it.
    pub restart: Restart,
    /// At most this many restarts within `window`...
    pub max_restarts: u32,
    /// ...or the failure escalates.
    pub window: Duration,
    /// Delay before each restart.
    pub backoff: Backoff,
    /// How long a graceful stop may take before the notifier is killed.
    pub stop_timeout: Duration,
    /// Which siblings restart together when one of *its own* children fails.
    pub strategy: Strategy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            restart: Restart::Permanent,
            max_restarts: 3,
            window: Duration::from_secs(5),
            backoff: Backoff::NONE,
            stop_timeout: Duration::from_secs(5),
            strategy: Strategy::OneForOne,
        }
    }
}

pub(crate) type ArgsFactory<A> = Arc<dyn Fn() -> A + Send + Sync>;

/// How to start (and restart) one notifier of type `N`: its name, the
/// arguments for [`Notifier::init`], and its supervision [`Policy`].
///
/// ```
/// use std::time::Duration;
/// use ioasync::{Restart, Spec, Strategy};
/// # use ioasync::{Ctx, Notifier, Result};
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

    /// Mailbox capacity (default 64). Senders wait when it is full.
    pub fn mailbox(mut self, capacity: usize) -> Self {
        self.mailbox = capacity.max(1);
        self
    }

    /// The policy as configured.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl<N: Notifier> Clone for Spec<N> {
    fn clone(&self) -> Self {
        Spec {
            name: self.name.clone(),
            args: self.args.clone(),
            policy: self.policy,
            mailbox: self.mailbox,
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
            .finish()
    }
}

/// A [`Spec`] of any notifier type, for code that starts children it does
/// not know the type of (a listener starting a connection handler).
///
/// ```
/// # use ioasync::{Ctx, Notifier, Result, Spec, AnySpec};
/// # struct Conn;
/// # impl Notifier for Conn {
/// #     type Args = ();
/// #     async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> { Ok(Conn) }
/// # }
/// let any: AnySpec = Spec::<Conn>::new("conn-1", ()).into();
/// assert_eq!(any.name(), "conn-1");
/// ```
pub struct AnySpec(pub(crate) Box<dyn crate::actor::ErasedSpec>);

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
/// use ioasync::Once;
///
/// let args = Once::new(7);
/// let copy = args.clone();
/// assert_eq!(copy.take(), Some(7));
/// assert_eq!(args.take(), None);
/// ```
pub struct Once<T>(Arc<std::sync::Mutex<Option<T>>>);

impl<T> Once<T> {
    /// Arguments for one start.
    pub fn new(value: T) -> Self {
        Once(Arc::new(std::sync::Mutex::new(Some(value))))
    }

    /// Takes the arguments; `None` once taken.
    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Takes the arguments, or fails for a restart of the notifier at
    /// `path`: what it was started over is gone.
    pub fn take_for(&self, path: &str) -> crate::Result<T> {
        self.take().ok_or_else(|| {
            crate::Error::closed(
                "init",
                format!("{path} cannot be restarted: what it was started over is gone"),
            )
        })
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
