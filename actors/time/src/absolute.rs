//! [`Absolute`]: a timer that fires once at an instant
//! (IO::Async::Timer::Absolute).

use std::fmt;

use ioasync_core::{Ctx, Emits, Error, Handler, Notifier, NotifierRef, Restart, Result, Spec};
use tokio::time::Instant;

use crate::Expired;

/// How to start an [`Absolute`] timer.
#[derive(Clone)]
pub struct AbsoluteArgs {
    at: Instant,
    on_expire: Option<std::sync::Arc<dyn Fn(Expired) + Send + Sync>>,
}

impl fmt::Debug for AbsoluteArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbsoluteArgs")
            .field("at", &self.at)
            .finish()
    }
}

/// Fires [`Expired`] once at its instant, then leaves the tree.
///
/// ```
/// use std::time::Duration;
/// use ioasync::{time::{Absolute, Expired}, Loop};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let at = tokio::time::Instant::now() + Duration::from_secs(5);
/// let t = lp.add(Absolute::spec("alarm", at)).await?;
/// let mut fired = t.events::<Expired>()?;
/// assert_eq!(fired.recv().await.unwrap().deadline, at);
/// # Ok(()) }
/// ```
pub struct Absolute {
    at: Option<Instant>,
    on_expire: Option<std::sync::Arc<dyn Fn(Expired) + Send + Sync>>,
}

impl Absolute {
    /// A timer firing at `at`.
    pub fn spec(name: impl Into<String>, at: Instant) -> Spec<Absolute> {
        Spec::new(
            name,
            AbsoluteArgs {
                at,
                on_expire: None,
            },
        )
        .restart(Restart::Temporary)
    }

    /// A timer firing at `at` that calls `f` inside the timer.
    pub fn spec_with_callback(
        name: impl Into<String>,
        at: Instant,
        f: impl Fn(Expired) + Send + Sync + 'static,
    ) -> Spec<Absolute> {
        let on_expire = Some(std::sync::Arc::new(f) as _);
        Spec::new(name, AbsoluteArgs { at, on_expire }).restart(Restart::Temporary)
    }
}

impl Notifier for Absolute {
    type Args = AbsoluteArgs;

    fn kind() -> &'static str {
        "timer-absolute"
    }

    async fn init(args: AbsoluteArgs, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Absolute {
            at: Some(args.at),
            on_expire: args.on_expire,
        })
    }

    async fn ready(&mut self) {
        match self.at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(deadline) = self.at.take() else {
            return;
        };
        let ev = Expired {
            deadline,
            fired: Instant::now(),
        };
        if let Some(f) = &self.on_expire {
            f(ev);
        }
        ctx.emit(ev).await;
        ctx.exit();
    }
}

impl Emits<Expired> for Absolute {}

impl fmt::Debug for Absolute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Absolute").field("at", &self.at).finish()
    }
}

/// Message: move a pending timer's instant (IO::Async: reconfiguring
/// `time` reschedules it); an instant already past fires it at once.
/// [`AbsoluteRef::retime`] sends it.
#[derive(Debug)]
pub(crate) struct Retime(pub(crate) Instant);

/// Message: the instant a pending timer fires at
/// ([`AbsoluteRef::deadline`]).
#[derive(Debug)]
pub(crate) struct Deadline;

impl Handler<Retime> for Absolute {
    type Reply = Result<()>;
    async fn handle(&mut self, Retime(at): Retime, ctx: &mut Ctx<'_, Self>) -> Result<()> {
        match &mut self.at {
            Some(pending) => {
                *pending = at;
                Ok(())
            }
            None => Err(Error::closed(
                "retime",
                format!("timer {} has fired", ctx.path()),
            )),
        }
    }
}

impl Handler<Deadline> for Absolute {
    type Reply = Option<Instant>;
    async fn handle(&mut self, _: Deadline, _ctx: &mut Ctx<'_, Self>) -> Option<Instant> {
        self.at
    }
}

/// Absolute-timer operations on its handle.
pub trait AbsoluteRef {
    /// Moves the pending timer to fire at `at` instead, earlier or later
    /// (IO::Async's `configure(time => ...)` on a running timer); an
    /// instant already past fires it at once. Fails (op `retime`, kind
    /// `Closed`) once it has fired: it left the tree.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{time::{Absolute, AbsoluteRef, Expired}, Loop};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let start = Instant::now();
    /// let t = lp.add(Absolute::spec("alarm", start + Duration::from_secs(10))).await?;
    /// let mut fired = t.events::<Expired>()?;
    /// t.retime(start + Duration::from_secs(3)).await?;
    /// assert_eq!(t.deadline().await?, Some(start + Duration::from_secs(3)));
    /// let ev = fired.recv().await.unwrap();
    /// assert_eq!(ev.deadline, start + Duration::from_secs(3));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the request may still take effect:
    /// once queued it is handled, only the reply is lost; dropped while
    /// waiting for room in a full mailbox, nothing was sent.
    fn retime(&self, at: Instant) -> impl Future<Output = Result<()>> + Send;
    /// When the pending timer fires.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::{Absolute, AbsoluteRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let at = tokio::time::Instant::now() + Duration::from_secs(60);
    /// let t = lp.add(Absolute::spec("alarm", at)).await?;
    /// assert_eq!(t.deadline().await?, Some(at));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn deadline(&self) -> impl Future<Output = Result<Option<Instant>>> + Send;
}

impl AbsoluteRef for NotifierRef<Absolute> {
    async fn retime(&self, at: Instant) -> Result<()> {
        self.ask(Retime(at)).await.map_err(|e| {
            if e.op() == "retime" {
                e
            } else {
                Error::closed("retime", format!("timer {} has fired: {e}", self.path()))
            }
        })
    }
    async fn deadline(&self) -> Result<Option<Instant>> {
        self.ask(Deadline).await
    }
}
