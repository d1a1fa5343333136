//! [`Signal`]: a notifier watching one POSIX signal (IO::Async::Signal).

use std::fmt;

use ioasync_core::{Ctx, Emits, Error, Notifier, NotifierRef, Result, Spec};

use crate::{SignalKind, registry::Hold};

/// One delivery of a watched signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalEvent {
    /// The signal.
    pub signal: SignalKind,
    /// Deliveries seen by this watcher so far, this one included.
    pub count: u64,
}

/// How to start a [`Signal`] watcher.
#[derive(Debug, Clone, Copy)]
pub struct SignalArgs {
    signal: SignalKind,
}

/// Watches one signal and emits [`SignalEvent`] for each delivery. The
/// kernel coalesces deliveries that arrive before the first is handled.
///
/// ```
/// use ioasync::{Loop, signal::{Signal, SignalEvent, SignalKind}};
/// use nix::sys::signal::{Signal as Sig, kill};
/// use nix::unistd::Pid;
///
/// # #[tokio::main]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let hup = lp.add(Signal::spec("hup", SignalKind::hangup())).await?;
/// hup.on_event(|e: SignalEvent| println!("reloading after {}", e.signal))?;
/// let mut deliveries = hup.events::<SignalEvent>()?;
/// kill(Pid::this(), Sig::SIGHUP).expect("kill");
/// assert_eq!(deliveries.recv().await.unwrap().signal, SignalKind::hangup());
/// # Ok(()) }
/// ```
pub struct Signal {
    signal: SignalKind,
    stream: tokio::signal::unix::Signal,
    count: u64,
    pending: bool,
    _hold: Hold,
}

impl Signal {
    /// Watch `signal`. A permanent child: a handler that panics is
    /// restarted and watches again.
    pub fn spec(name: impl Into<String>, signal: SignalKind) -> Spec<Signal> {
        Spec::new(name, SignalArgs { signal })
    }
}

impl Notifier for Signal {
    type Args = SignalArgs;

    fn kind() -> &'static str {
        "signal"
    }

    async fn init(args: SignalArgs, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let hold = crate::hold(args.signal);
        let kind = tokio::signal::unix::SignalKind::from_raw(args.signal.as_raw());
        let stream = tokio::signal::unix::signal(kind)
            .map_err(|e| Error::io_at("signal", args.signal, e))?;
        Ok(Signal {
            signal: args.signal,
            stream,
            count: 0,
            pending: false,
            _hold: hold,
        })
    }

    async fn ready(&mut self) {
        match self.stream.recv().await {
            Some(()) => self.pending = true,
            None => std::future::pending().await,
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        if std::mem::take(&mut self.pending) {
            self.count += 1;
            ctx.emit(SignalEvent {
                signal: self.signal,
                count: self.count,
            })
            .await;
        }
    }
}

impl Emits<SignalEvent> for Signal {}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("signal", &self.signal)
            .field("count", &self.count)
            .finish()
    }
}

/// Signal operations on a watcher's handle.
pub trait SignalRef {
    /// Resolves at the next delivery. Built on
    /// [`NotifierRef::next_event`]: deliveries between two calls are kept.
    ///
    /// ```
    /// use ioasync::{Loop, prelude::SignalRef, signal::{Signal, SignalKind}};
    /// use nix::sys::signal::{Signal as Sig, kill};
    /// use nix::unistd::Pid;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let usr2 = lp.add(Signal::spec("usr2", SignalKind::user_defined2())).await?;
    /// // Asked for before the signal is sent: the delivery is not missed.
    /// let next = usr2.next_delivery();
    /// kill(Pid::this(), Sig::SIGUSR2).expect("kill");
    /// let ev = next.await?;
    /// assert_eq!(ev.signal, SignalKind::user_defined2());
    /// assert_eq!(ev.count, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a delivery is taken from the shared tap only when the
    /// future returns it; dropped before, it stays for the next call.
    fn next_delivery(&self) -> impl Future<Output = Result<SignalEvent>> + Send + 'static;
}

impl SignalRef for NotifierRef<Signal> {
    fn next_delivery(&self) -> impl Future<Output = Result<SignalEvent>> + Send + 'static {
        self.next_event()
    }
}
