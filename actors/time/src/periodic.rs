//! [`Periodic`]: ticks every interval (IO::Async::Timer::Periodic), with
//! the reschedule policies hard (no drift), skip and drift.

use std::{fmt, time::Duration};

use ioasync_core::{Ctx, Emits, Error, Handler, Notifier, NotifierRef, Restart, Result, Spec};
use tokio::time::Instant;

/// How the next tick is scheduled when a tick fires late (a slow tick
/// handler, a busy loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reschedule {
    /// Tick k is due at `start + first_interval + (k-1)·interval`, always:
    /// no drift; late ticks fire at once, one after another, until the
    /// timer has caught up.
    #[default]
    Hard,
    /// Like `Hard`, but ticks whose time has already passed are skipped:
    /// the next tick is the first one on the schedule still in the future.
    Skip,
    /// The next tick is due `interval` after the previous tick's handling
    /// finished: the schedule drifts by the handling time.
    Drift,
}

/// A periodic tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// 1 for the first tick.
    pub count: u64,
    /// When it was due.
    pub scheduled: Instant,
    /// When it fired.
    pub fired: Instant,
}

/// How to start a [`Periodic`] timer.
#[derive(Debug, Clone)]
pub struct PeriodicArgs {
    interval: Duration,
    first_interval: Option<Duration>,
    reschedule: Reschedule,
    start: bool,
}

/// A periodic timer: emits [`Tick`] every interval.
///
/// ```
/// use std::time::Duration;
/// use ioasync::{Loop, time::{Periodic, Reschedule, Tick}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let spec = Periodic::spec("tick", Duration::from_millis(100))
///     .map_args(|a| a.reschedule(Reschedule::Hard));
/// let t = lp.add(spec).await?;
/// let mut ticks = t.events::<Tick>()?;
/// let first = ticks.recv().await.unwrap();
/// let second = ticks.recv().await.unwrap();
/// assert_eq!(second.scheduled - first.scheduled, Duration::from_millis(100));
/// # Ok(()) }
/// ```
pub struct Periodic {
    args: PeriodicArgs,
    next: Option<Instant>,
    count: u64,
}

impl PeriodicArgs {
    /// The delay before the first tick (default: the interval).
    pub fn first_interval(mut self, d: Duration) -> Self {
        self.first_interval = Some(d);
        self
    }

    /// The reschedule policy (default [`Reschedule::Hard`]).
    pub fn reschedule(mut self, r: Reschedule) -> Self {
        self.reschedule = r;
        self
    }

    /// Whether it starts when added (default true).
    pub fn start(mut self, on: bool) -> Self {
        self.start = on;
        self
    }
}

impl Periodic {
    /// A periodic timer ticking every `interval` (started when added; a
    /// permanent child: a tick handler that panics does not end it).
    pub fn spec(name: impl Into<String>, interval: Duration) -> PeriodicSpec {
        PeriodicSpec {
            name: name.into(),
            args: PeriodicArgs {
                interval,
                first_interval: None,
                reschedule: Reschedule::Hard,
                start: true,
            },
        }
    }

    fn start(&mut self) {
        if self.next.is_none() {
            let first = self.args.first_interval.unwrap_or(self.args.interval);
            self.next = Some(Instant::now() + first);
        }
    }
}

/// A [`Periodic`] spec under construction.
#[derive(Debug, Clone)]
#[must_use = "a PeriodicSpec does nothing until it is added"]
pub struct PeriodicSpec {
    name: String,
    args: PeriodicArgs,
}

impl PeriodicSpec {
    /// Rewrites the timer's arguments.
    pub fn map_args(mut self, f: impl FnOnce(PeriodicArgs) -> PeriodicArgs) -> Self {
        self.args = f(self.args);
        self
    }
}

impl ioasync_core::IntoSpec for PeriodicSpec {
    type Notifier = Periodic;
}

impl From<PeriodicSpec> for Spec<Periodic> {
    fn from(s: PeriodicSpec) -> Self {
        Spec::new(s.name, s.args).restart(Restart::Permanent)
    }
}

impl Notifier for Periodic {
    type Args = PeriodicArgs;

    fn kind() -> &'static str {
        "timer-periodic"
    }

    async fn init(args: PeriodicArgs, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        if args.interval.is_zero() {
            return Err(Error::invalid_input(
                "init",
                format!(
                    "periodic timer {}: the interval must be above zero",
                    ctx.path()
                ),
            ));
        }
        let start = args.start;
        let mut t = Periodic {
            args,
            next: None,
            count: 0,
        };
        if start {
            t.start();
        }
        Ok(t)
    }

    async fn ready(&mut self) {
        match self.next {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(scheduled) = self.next else {
            return;
        };
        self.count += 1;
        ctx.emit(Tick {
            count: self.count,
            scheduled,
            fired: Instant::now(),
        })
        .await;
        if self.next.is_none() {
            return; // stopped from a handler
        }
        let interval = self.args.interval;
        let now = Instant::now();
        self.next = Some(match self.args.reschedule {
            Reschedule::Hard => scheduled + interval,
            Reschedule::Drift => now + interval,
            Reschedule::Skip => {
                let behind = now.saturating_duration_since(scheduled);
                let steps = behind.as_nanos() / interval.as_nanos() + 1;
                let steps = u32::try_from(steps).unwrap_or(u32::MAX);
                scheduled + interval * steps
            }
        });
    }
}

impl Emits<Tick> for Periodic {}

impl fmt::Debug for Periodic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Periodic")
            .field("args", &self.args)
            .field("next", &self.next)
            .field("count", &self.count)
            .finish()
    }
}

impl Handler<crate::Start> for Periodic {
    type Reply = ();
    async fn handle(&mut self, _: crate::Start, _ctx: &mut Ctx<'_, Self>) {
        self.start();
    }
}

impl Handler<crate::Stop> for Periodic {
    type Reply = ();
    async fn handle(&mut self, _: crate::Stop, _ctx: &mut Ctx<'_, Self>) {
        self.next = None;
    }
}

impl Handler<crate::IsRunning> for Periodic {
    type Reply = bool;
    async fn handle(&mut self, _: crate::IsRunning, _ctx: &mut Ctx<'_, Self>) -> bool {
        self.next.is_some()
    }
}

/// Periodic-timer operations on its handle (IO::Async::Timer's `start`,
/// `stop`, `is_running`).
pub trait PeriodicRef {
    /// Starts it (no effect while running): the first tick comes the
    /// first interval from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Periodic, PeriodicRef, Tick}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp
    ///     .add(Periodic::spec("tick", Duration::from_secs(1)).map_args(|a| a.start(false)))
    ///     .await?;
    /// let mut ticks = t.events::<Tick>()?;
    /// let started = tokio::time::Instant::now();
    /// t.start_timer().await?;
    /// let first = ticks.recv().await.unwrap();
    /// assert_eq!(first.count, 1);
    /// assert_eq!(first.scheduled, started + Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the request may still take effect:
    /// once queued it is handled, only the reply is lost; dropped while
    /// waiting for room in a full mailbox, nothing was sent.
    fn start_timer(&self) -> impl Future<Output = Result<()>> + Send;
    /// Stops it: no tick until it is started again (idempotent).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Periodic, PeriodicRef, Tick}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.add(Periodic::spec("tick", Duration::from_secs(1))).await?;
    /// let mut ticks = t.events::<Tick>()?;
    /// assert_eq!(ticks.recv().await.unwrap().count, 1);
    /// t.stop_timer().await?;
    /// tokio::time::advance(Duration::from_secs(10)).await;
    /// assert!(ticks.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the request may still take effect:
    /// once queued it is handled, only the reply is lost; dropped while
    /// waiting for room in a full mailbox, nothing was sent.
    fn stop_timer(&self) -> impl Future<Output = Result<()>> + Send;
    /// Whether it is running: true from a start (or from its add, unless
    /// made with `start(false)`) until a stop.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Periodic, PeriodicRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp
    ///     .add(Periodic::spec("tick", Duration::from_secs(1)).map_args(|a| a.start(false)))
    ///     .await?;
    /// assert!(!t.is_running().await?);
    /// t.start_timer().await?;
    /// assert!(t.is_running().await?);
    /// t.stop_timer().await?;
    /// assert!(!t.is_running().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn is_running(&self) -> impl Future<Output = Result<bool>> + Send;
}

impl PeriodicRef for NotifierRef<Periodic> {
    async fn start_timer(&self) -> Result<()> {
        self.ask(crate::Start).await
    }
    async fn stop_timer(&self) -> Result<()> {
        self.ask(crate::Stop).await
    }
    async fn is_running(&self) -> Result<bool> {
        self.ask(crate::IsRunning).await
    }
}
