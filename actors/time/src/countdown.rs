//! [`Countdown`]: fires a delay after it was started
//! (IO::Async::Timer::Countdown): start, stop, reset, `remove_on_expire`.

use std::{fmt, time::Duration};

use ioasync_core::{Ctx, Emits, Handler, Notifier, NotifierRef, Restart, Result, Spec};
use tokio::time::Instant;

use crate::Expired;

/// How to start a [`Countdown`]: its delay, started when added and kept
/// in the tree after it fires unless the builder says otherwise.
///
/// ```
/// use std::time::Duration;
/// use ioasync::time::{Countdown, CountdownArgs};
///
/// // Not started when added; leaves the tree once it fires.
/// let spec = Countdown::spec_with_args(
///     "once",
///     CountdownArgs::new(Duration::from_secs(5)).stopped().remove_on_expire(),
/// );
/// # drop(spec);
/// ```
#[derive(Debug, Clone)]
pub struct CountdownArgs {
    delay: Duration,
    start: bool,
    remove_on_expire: bool,
}

impl CountdownArgs {
    /// A countdown of `delay`, started when added, kept after it fires.
    pub fn new(delay: Duration) -> Self {
        CountdownArgs {
            delay,
            start: true,
            remove_on_expire: false,
        }
    }

    /// Not started when added: it waits for
    /// [`start_timer`](CountdownRef::start_timer) (IO::Async's default).
    pub fn stopped(mut self) -> Self {
        self.start = false;
        self
    }

    /// Leaves the tree once it fires (IO::Async's `remove_on_expire`).
    pub fn remove_on_expire(mut self) -> Self {
        self.remove_on_expire = true;
        self
    }
}

/// A countdown timer. Started, it expires `delay` later and emits
/// [`Expired`]; stopped before that, it never fires; reset, it pushes its
/// expiry to `delay` from now.
///
/// ```
/// use std::time::Duration;
/// use ioasync::{time::{Countdown, CountdownRef}, Loop};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let t = lp.add(Countdown::spec("idle", Duration::from_secs(30))).await?;
/// assert!(t.is_running().await?);
/// t.stop_timer().await?;
/// assert!(!t.is_running().await?);
/// # Ok(()) }
/// ```
pub struct Countdown {
    delay: Duration,
    deadline: Option<Instant>,
    expired: bool,
    remove_on_expire: bool,
}

impl Countdown {
    /// A countdown of `delay`, started as soon as it is added.
    pub fn spec(name: impl Into<String>, delay: Duration) -> Spec<Countdown> {
        Self::spec_with_args(name, CountdownArgs::new(delay))
    }

    /// A countdown with the options of `args` (not started when added,
    /// removed once it fires: [`CountdownArgs`]).
    pub fn spec_with_args(name: impl Into<String>, args: CountdownArgs) -> Spec<Countdown> {
        Spec::new(name, args).restart(Restart::Temporary)
    }

    fn start(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.delay);
            self.expired = false;
        }
    }
}

impl Notifier for Countdown {
    type Args = CountdownArgs;

    fn kind() -> &'static str {
        "timer-countdown"
    }

    async fn init(args: CountdownArgs, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let mut t = Countdown {
            delay: args.delay,
            deadline: None,
            expired: false,
            remove_on_expire: args.remove_on_expire,
        };
        if args.start {
            t.start();
        }
        Ok(t)
    }

    async fn ready(&mut self) {
        match self.deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(deadline) = self.deadline.take() else {
            return;
        };
        self.expired = true;
        ctx.emit(Expired {
            deadline,
            fired: Instant::now(),
        })
        .await;
        if self.remove_on_expire {
            ctx.exit();
        }
    }
}

impl Emits<Expired> for Countdown {}

impl fmt::Debug for Countdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Countdown")
            .field("delay", &self.delay)
            .field("deadline", &self.deadline)
            .field("expired", &self.expired)
            .finish()
    }
}

/// Message: start (no effect while running). [`CountdownRef::start_timer`]
/// and [`PeriodicRef::start_timer`](crate::PeriodicRef::start_timer) send it.
#[derive(Debug)]
pub(crate) struct Start;
/// Message: stop; a stopped timer never fires.
#[derive(Debug)]
pub(crate) struct Stop;
/// Message: while running, push the expiry to `delay` from now; with a new
/// delay if given ([`CountdownRef::reset`], [`CountdownRef::reset_with`]).
#[derive(Debug)]
pub(crate) struct Reset(pub(crate) Option<Duration>);
/// Message: is it running?
#[derive(Debug)]
pub(crate) struct IsRunning;
/// Message: has it expired since it was last started?
#[derive(Debug)]
pub(crate) struct IsExpired;

impl Handler<Start> for Countdown {
    type Reply = ();
    async fn handle(&mut self, _: Start, _ctx: &mut Ctx<'_, Self>) {
        self.start();
    }
}

impl Handler<Stop> for Countdown {
    type Reply = ();
    async fn handle(&mut self, _: Stop, _ctx: &mut Ctx<'_, Self>) {
        self.deadline = None;
    }
}

impl Handler<Reset> for Countdown {
    type Reply = ();
    async fn handle(&mut self, Reset(delay): Reset, _ctx: &mut Ctx<'_, Self>) {
        if let Some(d) = delay {
            self.delay = d;
        }
        if self.deadline.is_some() {
            self.deadline = Some(Instant::now() + self.delay);
        }
    }
}

impl Handler<IsRunning> for Countdown {
    type Reply = bool;
    async fn handle(&mut self, _: IsRunning, _ctx: &mut Ctx<'_, Self>) -> bool {
        self.deadline.is_some()
    }
}

impl Handler<IsExpired> for Countdown {
    type Reply = bool;
    async fn handle(&mut self, _: IsExpired, _ctx: &mut Ctx<'_, Self>) -> bool {
        self.expired
    }
}

/// Countdown operations on its handle.
pub trait CountdownRef {
    /// Start (no effect while running).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Countdown, CountdownArgs, CountdownRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let args = CountdownArgs::new(Duration::from_secs(5)).stopped();
    /// let t = lp.add(Countdown::spec_with_args("idle", args)).await?;
    /// assert!(!t.is_running().await?);
    /// t.start_timer().await?;
    /// assert!(t.is_running().await?);
    /// t.expired().await?;
    /// assert!(t.is_expired().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the request may still take effect:
    /// once queued it is handled, only the reply is lost; dropped while
    /// waiting for room in a full mailbox, nothing was sent.
    fn start_timer(&self) -> impl Future<Output = Result<()>> + Send;
    /// Stop; it will not fire.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Countdown, CountdownRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// t.stop_timer().await?;
    /// assert!(!t.is_running().await?);
    /// tokio::time::advance(Duration::from_secs(10)).await;
    /// assert!(!t.is_expired().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the request may still take effect:
    /// once queued it is handled, only the reply is lost; dropped while
    /// waiting for room in a full mailbox, nothing was sent. Stopping is
    /// idempotent: call it again to be sure.
    fn stop_timer(&self) -> impl Future<Output = Result<()>> + Send;
    /// Push the expiry to the delay from now (while running).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Countdown, CountdownRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let start = tokio::time::Instant::now();
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// tokio::time::advance(Duration::from_secs(3)).await;
    /// t.reset().await?;
    /// let fired = t.expired().await?;
    /// assert_eq!(fired.deadline, start + Duration::from_secs(8));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the request may still take effect:
    /// once queued it is handled, only the reply is lost; dropped while
    /// waiting for room in a full mailbox, nothing was sent.
    fn reset(&self) -> impl Future<Output = Result<()>> + Send;
    /// Sets a new delay, kept for every later start, and while running
    /// pushes the expiry to the new delay from now (IO::Async's
    /// `configure(delay => ...)` then `reset`); stopped, it only sets it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Countdown, CountdownRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let start = tokio::time::Instant::now();
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// t.reset_with(Duration::from_secs(10)).await?;
    /// assert_eq!(t.expired().await?.deadline, start + Duration::from_secs(11));
    /// let again = tokio::time::Instant::now();
    /// t.restart_timer().await?; // the new delay stays
    /// assert_eq!(t.expired().await?.deadline, again + Duration::from_secs(10));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the request may still take effect:
    /// once queued it is handled, only the reply is lost; dropped while
    /// waiting for room in a full mailbox, nothing was sent.
    fn reset_with(&self, delay: Duration) -> impl Future<Output = Result<()>> + Send;
    /// Stop, then start again: expires a full delay from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Countdown, CountdownRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// t.expired().await?;
    /// assert!(!t.is_running().await?);
    /// t.restart_timer().await?;
    /// assert!(t.is_running().await?);
    /// assert!(!t.is_expired().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// It sends a stop and then a start: dropped between the two, the
    /// countdown is left stopped. Call it again to finish the restart.
    fn restart_timer(&self) -> impl Future<Output = Result<()>> + Send;
    /// Is it running?
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Countdown, CountdownRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// assert!(t.is_running().await?);
    /// t.expired().await?;
    /// assert!(!t.is_running().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn is_running(&self) -> impl Future<Output = Result<bool>> + Send;
    /// Has it expired since it was last started?
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Countdown, CountdownRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// assert!(!t.is_expired().await?);
    /// t.expired().await?;
    /// assert!(t.is_expired().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn is_expired(&self) -> impl Future<Output = Result<bool>> + Send;
    /// Resolves at the next expiry. Built on
    /// [`NotifierRef::next_event`]: expiries between two calls are kept.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Countdown, CountdownRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let start = tokio::time::Instant::now();
    /// let t = lp.add(Countdown::spec("idle", Duration::from_secs(5))).await?;
    /// let e = t.expired().await?;
    /// assert_eq!(e.deadline, start + Duration::from_secs(5));
    /// assert!(e.fired >= e.deadline);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an expiry is taken from the shared tap only when the
    /// future returns it; dropped before, the expiry stays for the next
    /// call.
    fn expired(&self) -> impl Future<Output = Result<Expired>> + Send + 'static;
}

impl CountdownRef for NotifierRef<Countdown> {
    async fn start_timer(&self) -> Result<()> {
        self.ask(Start).await
    }
    async fn stop_timer(&self) -> Result<()> {
        self.ask(Stop).await
    }
    async fn reset(&self) -> Result<()> {
        self.ask(Reset(None)).await
    }
    async fn reset_with(&self, delay: Duration) -> Result<()> {
        self.ask(Reset(Some(delay))).await
    }
    async fn restart_timer(&self) -> Result<()> {
        self.ask(Stop).await?;
        self.ask(Start).await
    }
    async fn is_running(&self) -> Result<bool> {
        self.ask(IsRunning).await
    }
    async fn is_expired(&self) -> Result<bool> {
        self.ask(IsExpired).await
    }
    fn expired(&self) -> impl Future<Output = Result<Expired>> + Send + 'static {
        self.next_event()
    }
}
