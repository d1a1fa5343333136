//! Why incarnations end and what the tree did about it: [`ExitReason`],
//! [`SupervisionEvent`], and [`Exit`], the event every notifier emits when
//! an incarnation ends.

use std::{fmt, sync::Arc, time::Duration};

use crate::error::Error;

/// Why a notifier's incarnation ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExitReason {
    /// It asked to stop (`ctx.exit()`), or was stopped gracefully.
    Normal,
    /// It panicked (in `init`, a handler, `on_ready` or `on_stop`).
    Panicked {
        /// The panic message.
        message: String,
        /// Where it panicked (`file:line:column`), when known.
        location: Option<String>,
    },
    /// A handler failed with an error (`ctx.fail(..)`, a failed restart).
    Failed(Error),
    /// One of its children exceeded its restart limit.
    Escalated {
        /// Path of the child that gave up.
        child: String,
        /// Why that child last failed.
        cause: Box<ExitReason>,
    },
    /// It was killed (at a stop deadline, or by its handle).
    Killed,
}

impl ExitReason {
    /// A normal exit: transient children are not restarted after it.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal)
    }

    /// A panic, with its message and where it happened.
    pub fn panicked(message: impl Into<String>, location: Option<String>) -> Self {
        ExitReason::Panicked {
            message: message.into(),
            location,
        }
    }

    /// The panic message, when it panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            ExitReason::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }

    /// This reason as an [`Error`] for `op`.
    pub fn to_error(&self, op: &'static str) -> Error {
        use crate::error::ErrorKind;
        match self {
            ExitReason::Failed(e) => e.clone(),
            ExitReason::Panicked { message, .. } => {
                Error::new(op, ErrorKind::Panicked, message.clone())
            }
            ExitReason::Escalated { .. } => Error::new(op, ErrorKind::Escalated, self.to_string()),
            _ => Error::closed(op, self.to_string()),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("exited normally"),
            ExitReason::Panicked {
                message,
                location: Some(at),
            } => write!(f, "panicked at {at}: {message}"),
            ExitReason::Panicked { message, .. } => write!(f, "panicked: {message}"),
            ExitReason::Failed(e) => write!(f, "failed: {e}"),
            ExitReason::Escalated { child, cause } => {
                write!(f, "child {child} exceeded its restart limit ({cause})")
            }
            ExitReason::Killed => f.write_str("killed"),
        }
    }
}

/// Something the supervision tree did, as its parents and the loop see it.
#[derive(Debug, Clone)]
pub struct SupervisionEvent {
    /// Path of the notifier concerned.
    pub path: String,
    /// Its kind.
    pub kind: &'static str,
    /// What happened.
    pub what: SupervisionEventKind,
}

/// What happened to a notifier.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SupervisionEventKind {
    /// Its incarnation ended (abnormally, or by its own choice); the
    /// parent decides next.
    Exited(ExitReason),
    /// The parent will restart it after `delay`; `attempt` is its count of
    /// failures within the restart window.
    Restarting {
        /// Failures within the window, this one included.
        attempt: u32,
        /// Backoff delay before the restart.
        delay: Duration,
    },
    /// A new incarnation started; `restarts` in all.
    Restarted {
        /// Restarts since it was added.
        restarts: u32,
    },
    /// It exceeded its restart limit; its parent fails with `Escalated`.
    GaveUp(ExitReason),
    /// It stopped for good and left the tree.
    Stopped,
    /// A graceful stop overran its deadline; it was killed.
    Overran,
    /// Messages were still queued when it stopped for good; each ask among
    /// them got an error, the tells are counted here.
    Undelivered {
        /// Tells that no incarnation handled.
        count: usize,
    },
}

/// The end of one incarnation of a notifier, emitted by the runtime to
/// the notifier's `Exit` subscribers however the incarnation ended (a
/// normal exit, an error, a panic, a stop, a kill), after its `on_stop`.
/// Every notifier emits it; subscribe as to any event
/// (`notifier.events::<Exit>()`).
#[derive(Debug, Clone)]
pub struct Exit {
    /// The notifier's path.
    pub path: Arc<str>,
    /// Why the incarnation ended.
    pub reason: ExitReason,
    /// Whether a new incarnation follows (a restart); false when the
    /// notifier leaves the tree.
    pub restarting: bool,
}
