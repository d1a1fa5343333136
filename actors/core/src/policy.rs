//! Supervision settings, as plain data: [`Restart`], [`Strategy`],
//! [`Backoff`] and the [`Policy`] that holds them.
//!
//! The semantics are Erlang/OTP's, which users already trust:
//!
//! - a child's [`Restart`] type says which exits restart it;
//! - its parent's [`Strategy`] says which siblings restart with it;
//! - past `max_restarts` within `window` the parent gives up on the child
//!   and fails itself: the failure *escalates* to the grandparent, once;
//! - a [`Backoff`] delays each restart, growing while failures keep coming
//!   within the window.

use std::time::Duration;

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
/// use ioasync::supervision::Backoff;
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
    /// How long `init` may take (first start and restarts) before it is
    /// abandoned and counted as a failure.
    pub init_timeout: Duration,
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
            init_timeout: Duration::from_secs(10),
            strategy: Strategy::OneForOne,
        }
    }
}
