//! ioasync-signal: POSIX signal watchers as notifiers (IO::Async::Signal).
//! Users depend on the `ioasync` facade, which re-exports everything here.
//!
//! - [`SignalKind`]: a typed signal number with names (`SIGUSR1`, `USR1`);
//! - [`Signal`]: a notifier emitting [`SignalEvent`] for each delivery.
//!
//! Several watchers of one signal all fire; removing one leaves the
//! others. When the last watcher of a signal goes, the signal's default
//! disposition is restored (tokio itself never uninstalls its handler: we
//! set `SIG_DFL` and put tokio's handler back when a watcher returns). A
//! program that also uses `tokio::signal` directly for the same signal
//! should hold a [`hold`] guard for it, or the default disposition comes
//! back under it.
//!
//! # Implementation
//!
//! Each watcher is one actor awaiting a `tokio::signal::unix::Signal`
//! stream in its `ready`; tokio's signal driver (one self-pipe) does the
//! rest.

#![doc(test(attr(deny(warnings))))]

mod kind;
mod registry;
mod signal;

pub use kind::SignalKind;
pub use registry::{Hold, hold};
pub use signal::{Signal, SignalArgs, SignalEvent, SignalRef};
