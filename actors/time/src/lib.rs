//! ioasync-time: timers as notifiers (IO::Async::Timer::*). Users depend on
//! the `ioasync` facade, which re-exports everything here.
//!
//! - [`Absolute`]: fires once at an instant;
//! - [`Countdown`]: fires a delay after it was started; start, stop,
//!   reset, `remove_on_expire`;
//! - [`Periodic`]: ticks every interval, with IO::Async's reschedule
//!   policies [`Reschedule::Hard`] (no drift, catching up),
//!   [`Reschedule::Skip`] and [`Reschedule::Drift`].
//!
//! Every timer runs on tokio's clock, so tests run on paused time.
//!
//! # Implementation
//!
//! A timer is one actor whose `ready` is a `sleep_until` of its next
//! deadline; no task of its own. Events go through the core event path.

#![doc(test(attr(deny(warnings))))]

mod absolute;
mod countdown;
mod periodic;

pub use absolute::{Absolute, AbsoluteArgs, AbsoluteRef};
pub use countdown::{Countdown, CountdownArgs, CountdownRef};
pub(crate) use countdown::{IsRunning, Start, Stop};
pub use periodic::{Periodic, PeriodicArgs, PeriodicRef, PeriodicSpec, Reschedule, Tick};

use tokio::time::Instant;

/// A one-shot timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// When it was due.
    pub deadline: Instant,
    /// When it fired.
    pub fired: Instant,
}
