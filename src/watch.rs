//! Guards for the Loop's watches: [`Watch`] for the watches that are
//! notifiers in the tree (`watch_file`, `attach_signal`, `watch_process`),
//! [`TimerWatch`] for `watch_time`. Dropping a guard removes its watch;
//! [`Watch::detach`] / [`TimerWatch::detach`] keep it for the life of the
//! Loop.

use std::{
    fmt,
    sync::{Arc, Weak},
};

use ioasync_core::{CallAt, Notifier, NotifierRef};

use crate::ioloop::Inner;

/// A watch that is a notifier in the tree (a [`File`](crate::fs::File), a
/// [`Signal`](crate::signal::Signal), a [`Pid`](crate::process::Pid)):
/// dropping it stops the notifier; [`cancel`](Watch::cancel) stops it and
/// waits; [`detach`](Watch::detach) leaves it running.
///
/// ```
/// use std::time::Duration;
/// use ioasync::Loop;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let dir = std::env::temp_dir().join(format!("ioasync-watch-doc-{}", std::process::id()));
/// let watch = lp.watch_file(&dir, Duration::from_millis(10), |_event| {}).await?;
/// assert_eq!(watch.kind(), "file");
/// assert!(lp.tree().find(watch.path()).is_some());
/// let path = watch.path().to_string();
/// assert!(watch.cancel().await, "it was running");
/// assert!(lp.tree().find(&path).is_none(), "the watch left the tree");
/// # Ok(()) }
/// ```
#[must_use = "dropping a Watch removes the watch; call .detach() to keep it"]
pub struct Watch<N: Notifier> {
    notifier: Option<NotifierRef<N>>,
    runtime: tokio::runtime::Handle,
}

impl<N: Notifier> Watch<N> {
    pub(crate) fn new(notifier: NotifierRef<N>, runtime: tokio::runtime::Handle) -> Self {
        Watch {
            notifier: Some(notifier),
            runtime,
        }
    }

    fn get(&self) -> &NotifierRef<N> {
        self.notifier
            .as_ref()
            .expect("a Watch holds its notifier until consumed")
    }

    /// The watch's notifier: subscribe to more of its events, read its
    /// state, find it in the tree.
    ///
    /// ```
    /// use ioasync::{Loop, signal::SignalKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let watch = lp.attach_signal(SignalKind::user_defined1(), |_| {}).await?;
    /// use ioasync::signal::SignalEvent;
    /// let mut deliveries = watch.notifier().events::<SignalEvent>()?;
    /// nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR1).unwrap();
    /// assert_eq!(deliveries.recv().await.unwrap().count, 1);
    /// # Ok(()) }
    /// ```
    pub fn notifier(&self) -> &NotifierRef<N> {
        self.get()
    }

    /// The watch's path in the tree.
    ///
    /// ```
    /// use ioasync::{Loop, signal::SignalKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let watch = lp.attach_signal(SignalKind::user_defined1(), |_| {}).await?;
    /// assert!(lp.tree().find(watch.path()).is_some());
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &str {
        self.get().path()
    }

    /// The watch's kind in the tree (`file`, `signal`, `pid`).
    ///
    /// ```
    /// use ioasync::{Loop, signal::SignalKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let watch = lp.attach_signal(SignalKind::user_defined1(), |_| {}).await?;
    /// assert_eq!(watch.kind(), "signal");
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> &'static str {
        N::kind()
    }

    /// Whether the watch is still running.
    ///
    /// ```
    /// use ioasync::{Loop, signal::SignalKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let watch = lp.attach_signal(SignalKind::user_defined1(), |_| {}).await?;
    /// assert!(watch.is_active());
    /// watch.notifier().stop().await;
    /// assert!(!watch.is_active());
    /// # Ok(()) }
    /// ```
    pub fn is_active(&self) -> bool {
        self.get().is_alive()
    }

    /// Removes the watch (IO::Async's `unwatch_*` / `detach_signal`) and
    /// waits until its notifier has stopped; false when it had already
    /// stopped. The last watcher of a signal gives the signal back its
    /// default disposition.
    ///
    /// ```
    /// use ioasync::{Loop, signal::SignalKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let watch = lp.attach_signal(SignalKind::user_defined1(), |_| {}).await?;
    /// let path = watch.path().to_string();
    /// assert!(watch.cancel().await, "it was running");
    /// assert!(lp.tree().find(&path).is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`NotifierRef::stop`]: the future drives the
    /// stop, and the guard is consumed. Dropped part-way, the watch may be
    /// left running; stop it through a [`lookup`](crate::Loop::lookup) of
    /// its path.
    pub async fn cancel(mut self) -> bool {
        let n = self
            .notifier
            .take()
            .expect("a Watch holds its notifier until consumed");
        let was = n.is_alive();
        n.stop().await;
        was
    }

    /// Keeps the watch for the life of the Loop (or until its notifier is
    /// stopped through the returned handle or [`Loop::remove`](crate::Loop::remove)).
    ///
    /// ```
    /// use ioasync::{Loop, signal::SignalKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let watch = lp.attach_signal(SignalKind::user_defined1(), |_| {}).await?;
    /// let path = watch.path().to_string();
    /// let notifier = watch.detach();
    /// assert!(lp.tree().find(&path).is_some(), "a detached watch runs on");
    /// notifier.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn detach(mut self) -> NotifierRef<N> {
        self.notifier
            .take()
            .expect("a Watch holds its notifier until consumed")
    }
}

impl<N: Notifier> Drop for Watch<N> {
    fn drop(&mut self) {
        if let Some(n) = self.notifier.take().filter(NotifierRef::is_alive) {
            // Drop cannot wait: the stop runs on the Loop's runtime (a
            // runtime already shut down has stopped the watch anyway).
            drop(self.runtime.spawn(async move {
                n.stop().await;
            }));
        }
    }
}

impl<N: Notifier> fmt::Debug for Watch<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.notifier {
            Some(n) => f.debug_tuple("Watch").field(&n.path()).finish(),
            None => f.write_str("Watch(detached)"),
        }
    }
}

/// A [`Loop::watch_time`](crate::Loop::watch_time) timer: dropping it
/// cancels the timer; [`detach`](TimerWatch::detach) lets it fire.
///
/// ```
/// use std::time::Duration;
/// use ioasync::Loop;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// lp.watch_time(Duration::from_millis(5), move || {
///     let _ = tx.send("fired");
/// })
/// .detach();
/// let never = lp.watch_time(Duration::from_millis(1), || unreachable!());
/// assert!(never.cancel(), "cancelled before it fired");
/// assert_eq!(rx.await.unwrap(), "fired");
/// # Ok(()) }
/// ```
#[must_use = "dropping a TimerWatch cancels the timer; call .detach() to let it fire"]
pub struct TimerWatch {
    call: Option<CallAt>,
    lp: Weak<Inner>,
}

impl TimerWatch {
    pub(crate) fn new(call: CallAt, lp: &Arc<Inner>) -> Self {
        TimerWatch {
            call: Some(call),
            lp: Arc::downgrade(lp),
        }
    }

    /// Cancels the timer (IO::Async's `unwatch_time`); false when it had
    /// already fired.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::Loop;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let t = lp.watch_time(Duration::from_secs(1), || unreachable!());
    /// assert!(t.cancel(), "cancelled before it fired");
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let fired = lp.watch_time(Duration::from_secs(1), move || {
    ///     let _ = tx.send(());
    /// });
    /// rx.await.unwrap();
    /// assert!(!fired.cancel(), "it had fired");
    /// # Ok(()) }
    /// ```
    pub fn cancel(mut self) -> bool {
        self.take_cancel()
    }

    /// Whether the timer is still waiting to fire.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::Loop;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let t = lp.watch_time(Duration::from_secs(1), move || {
    ///     let _ = tx.send(());
    /// });
    /// assert!(t.is_pending());
    /// rx.await.unwrap();
    /// assert!(!t.is_pending());
    /// # Ok(()) }
    /// ```
    pub fn is_pending(&self) -> bool {
        match (self.call, self.lp.upgrade()) {
            (Some(call), Some(lp)) => lp.tree.is_call_pending(call),
            _ => false,
        }
    }

    /// Lets the timer fire; it can no longer be cancelled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::Loop;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// lp.watch_time(Duration::from_secs(1), move || {
    ///     let _ = tx.send("fired");
    /// })
    /// .detach(); // dropped, yet it fires
    /// assert_eq!(rx.await.unwrap(), "fired");
    /// # Ok(()) }
    /// ```
    pub fn detach(mut self) {
        self.call = None;
    }

    fn take_cancel(&mut self) -> bool {
        match (self.call.take(), self.lp.upgrade()) {
            (Some(call), Some(lp)) => lp.tree.cancel_call(call),
            _ => false,
        }
    }
}

impl Drop for TimerWatch {
    fn drop(&mut self) {
        self.take_cancel();
    }
}

impl fmt::Debug for TimerWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWatch")
            .field("pending", &self.is_pending())
            .finish()
    }
}
