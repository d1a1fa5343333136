//! [`Loop`]: the root of the notifier tree (IO::Async::Loop), its runtime,
//! and its low-level timers.

use std::{
    any::Any,
    collections::HashMap,
    fmt,
    future::Future,
    os::fd::{AsFd, AsRawFd, RawFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync_core::{
    Error, ErrorKind, NodeSnapshot, Notifier, NotifierRef, Result, ShutdownReport, Spec, Strategy,
    SupervisionEvent, Tree,
};
use tokio::{
    runtime::{Handle, Runtime},
    sync::{Notify, broadcast},
    time::Instant,
};

use crate::watch::{TimerWatch, Watch};

type StopSlot = Option<Result<Box<dyn Any + Send>>>;

/// The runs in progress, innermost last, each with the value a stop gave
/// it; and a stop made while no run was waiting, for the next run.
#[derive(Default)]
struct Runs {
    next: u64,
    frames: Vec<(u64, StopSlot)>,
    pending: StopSlot,
}

/// Takes a run's frame off the stack when the run ends or is dropped.
struct Frame<'a> {
    runs: &'a Mutex<Runs>,
    id: u64,
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        lock(self.runs).frames.retain(|(id, _)| *id != self.id);
    }
}

/// When a [`Loop::watch_time`] timer fires: at an instant, or after a
/// duration from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// At this instant of tokio's clock.
    At(Instant),
    /// This long from now.
    After(Duration),
}

impl From<Duration> for When {
    fn from(d: Duration) -> When {
        When::After(d)
    }
}

impl From<Instant> for When {
    fn from(at: Instant) -> When {
        When::At(at)
    }
}

impl When {
    fn instant(self) -> Instant {
        match self {
            When::At(at) => at,
            When::After(d) => Instant::now() + d,
        }
    }
}

/// The callbacks of a [`Loop::watch_io`] watch, each called inside the
/// watch's [`Handle`](ioasync_io::Handle) notifier. They get the handle's
/// [`HandleIo`](ioasync_io::HandleIo) (read and write through it, or
/// through the program's own fd).
///
/// ```
/// use ioasync::{io::IoWatch, Loop};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let (rx, tx) = std::io::pipe().unwrap();
/// let (hung_up, mut heard) = tokio::sync::mpsc::unbounded_channel();
/// let _watch = lp
///     .watch_io(&rx, IoWatch::new().on_hangup(move || {
///         let _ = hung_up.send(());
///     }))
///     .await?;
/// drop(tx); // the writer goes away: the watch hears the hangup
/// heard.recv().await.unwrap();
/// # Ok(()) }
/// ```
#[derive(Default)]
#[must_use = "an IoWatch does nothing until given to Loop::watch_io"]
pub struct IoWatch {
    read: Option<ioasync_io::ReadyFn>,
    write: Option<ioasync_io::ReadyFn>,
    hangup: Option<ioasync_io::HangupFn>,
}

impl IoWatch {
    /// No callbacks yet.
    pub fn new() -> IoWatch {
        IoWatch::default()
    }

    /// Called whenever the fd is readable, has hung up or has a pending
    /// error (IO::Async: "HUP and error conditions report as read-ready").
    pub fn on_read_ready(
        mut self,
        f: impl FnMut(&mut ioasync_io::HandleIo<'_>) + Send + 'static,
    ) -> Self {
        self.read = Some(Box::new(f));
        self
    }

    /// Called whenever the fd is writable.
    pub fn on_write_ready(
        mut self,
        f: impl FnMut(&mut ioasync_io::HandleIo<'_>) + Send + 'static,
    ) -> Self {
        self.write = Some(Box::new(f));
        self
    }

    /// Called once when the other end hangs up (watched on the read side
    /// even while no read callback is set).
    pub fn on_hangup(mut self, f: impl FnMut() + Send + 'static) -> Self {
        self.hangup = Some(Box::new(f));
        self
    }

    fn is_empty(&self) -> bool {
        self.read.is_none() && self.write.is_none() && self.hangup.is_none()
    }
}

impl fmt::Debug for IoWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoWatch")
            .field("read", &self.read.is_some())
            .field("write", &self.write.is_some())
            .field("hangup", &self.hangup.is_some())
            .finish()
    }
}

/// Which callbacks [`Loop::unwatch_io`] removes; combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoDirs {
    /// The read-readiness callback.
    pub read: bool,
    /// The write-readiness callback.
    pub write: bool,
    /// The hangup callback.
    pub hangup: bool,
}

impl IoDirs {
    /// The read-readiness callback.
    pub const READ: IoDirs = IoDirs {
        read: true,
        write: false,
        hangup: false,
    };
    /// The write-readiness callback.
    pub const WRITE: IoDirs = IoDirs {
        read: false,
        write: true,
        hangup: false,
    };
    /// The hangup callback.
    pub const HANGUP: IoDirs = IoDirs {
        read: false,
        write: false,
        hangup: true,
    };
    /// Every callback: the whole watch.
    pub const ALL: IoDirs = IoDirs {
        read: true,
        write: true,
        hangup: true,
    };
}

impl std::ops::BitOr for IoDirs {
    type Output = IoDirs;
    fn bitor(self, o: IoDirs) -> IoDirs {
        IoDirs {
            read: self.read || o.read,
            write: self.write || o.write,
            hangup: self.hangup || o.hangup,
        }
    }
}

/// Builds a [`Loop`]: runtime flavor, root strategy, signal handling.
///
/// ```
/// use std::time::Duration;
/// use ioasync::{supervision::Strategy, Loop};
///
/// # fn main() -> ioasync::Result<()> {
/// let lp = Loop::builder()
///     .current_thread()
///     .strategy(Strategy::OneForOne)
///     .shutdown_on_signals(Duration::from_secs(5))
///     .build()?;
/// let answer = lp.block_on(async { 6 * 7 });
/// assert_eq!(answer, 42);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a LoopBuilder does nothing until build() is called"]
pub struct LoopBuilder {
    flavor: Flavor,
    workers: Option<usize>,
    strategy: Strategy,
    signals: Option<Duration>,
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    paused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    MultiThread,
    CurrentThread,
    Adopt,
}

impl LoopBuilder {
    /// A multi-thread tokio runtime owned by the loop (the default).
    pub fn multi_thread(mut self) -> Self {
        self.flavor = Flavor::MultiThread;
        self
    }

    /// A current-thread runtime owned by the loop: on 2 cores it gives the
    /// best tail latency for IO-bound work.
    pub fn current_thread(mut self) -> Self {
        self.flavor = Flavor::CurrentThread;
        self
    }

    /// Use the runtime this is called from (inside `#[tokio::main]`).
    pub fn adopt_current(mut self) -> Self {
        self.flavor = Flavor::Adopt;
        self
    }

    /// Worker threads of a multi-thread runtime.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.workers = Some(n.max(1));
        self
    }

    /// The strategy the root applies to the loop's top-level notifiers.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// On SIGINT or SIGTERM, shut the tree down gracefully within
    /// `deadline`, then end [`Loop::run`] with a `Cancelled` error naming
    /// the signal — or, when something overran the deadline and was cut,
    /// with a `Timeout` error naming what (so the program can exit
    /// non-zero).
    pub fn shutdown_on_signals(mut self, deadline: Duration) -> Self {
        self.signals = Some(deadline);
        self
    }

    /// Start an owned current-thread runtime with its clock paused (tests;
    /// feature `test-util`).
    #[cfg(feature = "test-util")]
    pub fn start_paused(mut self) -> Self {
        self.flavor = Flavor::CurrentThread;
        self.paused = true;
        self
    }

    /// Builds the loop. Adopting fails outside a tokio runtime.
    pub fn build(self) -> Result<Loop> {
        let runtime = match self.flavor {
            Flavor::Adopt => None,
            Flavor::MultiThread => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if let Some(n) = self.workers {
                    b.worker_threads(n);
                }
                Some(b.enable_all().build())
            }
            Flavor::CurrentThread => {
                let mut b = tokio::runtime::Builder::new_current_thread();
                #[cfg(feature = "test-util")]
                if self.paused {
                    b.start_paused(true);
                }
                Some(b.enable_all().build())
            }
        };
        let runtime = runtime.transpose().map_err(|e| Error::io("runtime", e))?;
        let handle = match &runtime {
            Some(rt) => rt.handle().clone(),
            None => Handle::try_current()
                .map_err(|e| Error::new("runtime", ErrorKind::InvalidInput, e.to_string()))?,
        };
        let _guard = handle.enter();
        let tree = Tree::start(self.strategy)?;
        let inner = Arc::new(Inner {
            runtime: Mutex::new(runtime),
            handle,
            tree,
            runs: Mutex::new(Runs::default()),
            stopped: Notify::new(),
            next_watch: std::sync::atomic::AtomicU64::new(1),
            io_watches: tokio::sync::Mutex::new(HashMap::new()),
        });
        let lp = Loop { inner };
        if let Some(deadline) = self.signals {
            let task = on_signals(lp.clone(), deadline)?;
            lp.inner.handle.spawn(task);
        }
        Ok(lp)
    }
}

/// Installs SIGINT and SIGTERM handlers now (so a signal arriving right
/// after `build` is caught) and returns the task that acts on them.
fn on_signals(lp: Loop, deadline: Duration) -> Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    // Counted with the Signal notifiers' watchers, so removing one of
    // those never resets SIGINT/SIGTERM under this handler.
    let holds = (
        ioasync_signal::hold(ioasync_signal::SignalKind::interrupt()),
        ioasync_signal::hold(ioasync_signal::SignalKind::terminate()),
    );
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::io("signal", e))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::io("signal", e))?;
    Ok(async move {
        let _holds = holds;
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        shutdown_on(lp, deadline, name).await;
    })
}

async fn shutdown_on(lp: Loop, deadline: Duration, name: &'static str) {
    tracing::info!(signal = name, "shutting down on signal");
    let report = lp.shutdown(Some(deadline)).await;
    if !report.is_clean() {
        // Something was cut: `run` fails with what (not a clean cancel), so
        // a program exits non-zero.
        tracing::warn!(overran = ?report.overran, "shutdown overran its deadline");
        return lp.finish(Error::new(
            "run",
            ErrorKind::Timeout,
            format!(
                "shut down on {name}, but {} overran the {deadline:?} deadline and was cut",
                report.overran.join(", ")
            ),
        ));
    }
    lp.finish(Error::new(
        "run",
        ErrorKind::Cancelled,
        format!("shut down on {name}"),
    ));
}

pub(crate) struct Inner {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    pub(crate) tree: Tree,
    runs: Mutex<Runs>,
    stopped: Notify,
    next_watch: std::sync::atomic::AtomicU64,
    io_watches: tokio::sync::Mutex<HashMap<RawFd, NotifierRef<ioasync_io::Handle>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = lock(&self.runtime).take() {
            rt.shutdown_background();
        }
    }
}

/// The event loop: the root of the notifier tree, the runtime it runs on,
/// and the IO::Async Loop's methods. Cheap to clone, `Send + Sync`.
///
/// ```
/// use std::time::Duration;
/// use ioasync::Loop;
///
/// # fn main() -> ioasync::Result<()> {
/// let lp = Loop::new()?;
/// let l = lp.clone();
/// let answer: u32 = lp.block_on(async move {
///     l.watch_time(Duration::from_millis(5), {
///         let l = l.clone();
///         move || l.stop(42u32)
///     })
///     .detach();
///     l.run::<u32>().await
/// })?;
/// assert_eq!(answer, 42);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Loop {
    inner: Arc<Inner>,
}

impl Loop {
    /// A loop on its own multi-thread runtime.
    pub fn new() -> Result<Loop> {
        Loop::builder().build()
    }

    /// A loop on the runtime this is called from (inside `#[tokio::main]`).
    pub fn current() -> Result<Loop> {
        Loop::builder().adopt_current().build()
    }

    /// Configure a loop.
    pub fn builder() -> LoopBuilder {
        LoopBuilder {
            flavor: Flavor::MultiThread,
            workers: None,
            strategy: Strategy::OneForOne,
            signals: None,
            paused: false,
        }
    }

    /// The runtime handle the loop's notifiers run on.
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// Runs `fut` to completion on the loop's runtime, from outside it. The
    /// future runs on a runtime worker, not on the calling thread. A panic
    /// in `fut` resumes on the caller. On an adopted multi-thread runtime
    /// this must be called from a worker thread.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.inner.handle.spawn(fut);
        let joined = {
            let rt = lock(&self.inner.runtime);
            match rt.as_ref() {
                Some(rt) => rt.block_on(task),
                None => {
                    drop(rt);
                    let handle = self.inner.handle.clone();
                    tokio::task::block_in_place(move || handle.block_on(task))
                }
            }
        };
        match joined {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Runs until [`Loop::stop`] is called and returns the value given to
    /// it. Fails when a failure escalated past the root (`Escalated`), when
    /// the value is not a `T` (`InvalidInput`), or on a signal-triggered
    /// shutdown (`Cancelled`).
    ///
    /// Runs nest as in IO::Async: a `run` started while another is in
    /// progress (from a callback, a task) is the innermost, and a `stop`
    /// ends the innermost run still running, which returns that stop's
    /// value; the next `stop` ends the run around it.
    ///
    /// ```
    /// use ioasync::Loop;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let outer = tokio::spawn({
    ///     let lp = lp.clone();
    ///     async move { lp.run::<&str>().await }
    /// });
    /// tokio::task::yield_now().await; // the outer run has begun
    /// let l = lp.clone();
    /// lp.later(move || {
    ///     l.stop("inner");
    ///     l.stop("outer");
    /// });
    /// assert_eq!(lp.run::<&str>().await?, "inner");
    /// assert_eq!(outer.await.unwrap()?, "outer");
    /// # Ok(()) }
    /// ```
    pub async fn run<T: Send + 'static>(&self) -> Result<T> {
        let value = tokio::select! {
            v = self.wait_stop() => v,
            reason = self.inner.tree.escalated() => Err(reason.to_error("run")),
        }?;
        value.downcast::<T>().map(|b| *b).map_err(|_| {
            Error::invalid_input(
                "run",
                format!(
                    "stop was given a value that is not a {}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    async fn wait_stop(&self) -> Result<Box<dyn Any + Send>> {
        let runs = &self.inner.runs;
        let id = {
            let mut r = lock(runs);
            let id = r.next;
            r.next += 1;
            let early = r.pending.take();
            r.frames.push((id, early));
            id
        };
        let _frame = Frame { runs, id };
        loop {
            let notified = self.inner.stopped.notified();
            let taken = lock(runs)
                .frames
                .iter_mut()
                .find(|(i, _)| *i == id)
                .and_then(|(_, slot)| slot.take());
            if let Some(v) = taken {
                return v;
            }
            notified.await;
        }
    }

    /// Whether a [`Loop::run`] is in progress (IO::Async's `is_running`).
    pub fn is_running(&self) -> bool {
        !lock(&self.inner.runs).frames.is_empty()
    }

    /// Ends the innermost [`Loop::run`] still running (or, with none, the
    /// next one to start), which returns `value`.
    pub fn stop<T: Send + 'static>(&self, value: T) {
        {
            let mut r = lock(&self.inner.runs);
            let value: Result<Box<dyn Any + Send>> = Ok(Box::new(value));
            match r.frames.iter_mut().rev().find(|(_, slot)| slot.is_none()) {
                Some((_, slot)) => *slot = Some(value),
                None => r.pending = Some(value),
            }
        }
        self.inner.stopped.notify_waiters();
    }

    /// Ends every run in progress (or the next one) with `err`.
    fn finish(&self, err: Error) {
        {
            let mut r = lock(&self.inner.runs);
            let mut any = false;
            for (_, slot) in r.frames.iter_mut().filter(|(_, s)| s.is_none()) {
                *slot = Some(Err(err.clone()));
                any = true;
            }
            if !any {
                r.pending = Some(Err(err));
            }
        }
        self.inner.stopped.notify_waiters();
    }

    /// Adds and starts a top-level notifier; resolves once its `init` ran
    /// (its error, if it failed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let idle = lp.add(Countdown::spec("idle", Duration::from_secs(30))).await?;
    /// assert_eq!(idle.path(), "/idle");
    /// // Found again by path and type:
    /// assert!(lp.lookup::<Countdown>("/idle").is_some());
    /// // Removed with its subtree, leaves first:
    /// let report = lp.remove("/idle").await.expect("it was there");
    /// assert!(report.is_clean());
    /// assert!(lp.lookup::<Countdown>("/idle").is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for `init`, the notifier is still started
    /// (it is in the tree); only its handle is lost (find it with
    /// [`Loop::lookup`]).
    pub async fn add<N: Notifier>(&self, spec: impl Into<Spec<N>>) -> Result<NotifierRef<N>> {
        self.inner.tree.add(spec.into()).await
    }

    /// A handle to the notifier at `path`, if there is one and it is an `N`.
    pub fn lookup<N: Notifier>(&self, path: &str) -> Option<NotifierRef<N>> {
        self.inner.tree.lookup(path)
    }

    /// Stops the notifier at `path` and its subtree (leaves first). `None`
    /// when no notifier has that path. See [`Loop::add`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the stop is driven by this future; dropped midway,
    /// part of the subtree may be stopped and the rest left running.
    pub async fn remove(&self, path: &str) -> Option<ShutdownReport> {
        self.inner.tree.remove(path, None).await
    }

    /// Stops every notifier, leaves first in reverse start order, each
    /// within its stop timeout and all within `deadline`; what overruns is
    /// killed and reported. A stop drains: a framed stream answers the
    /// requests it has read before it closes (give connections a stop
    /// timeout as long as the drain they may need).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// lp.add(Countdown::spec("a", Duration::from_secs(30))).await?;
    /// lp.add(Countdown::spec("b", Duration::from_secs(30))).await?;
    /// let report = lp.shutdown(Some(Duration::from_secs(5))).await;
    /// assert!(report.is_clean(), "{report:?}");
    /// assert_eq!(lp.live_notifiers(), 1, "only the root is left");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Loop::remove`].
    pub async fn shutdown(&self, deadline: Option<Duration>) -> ShutdownReport {
        self.inner.tree.shutdown(deadline).await
    }

    /// A connect request to `target` (resolved asynchronously, Happy
    /// Eyeballs across IPv6 and IPv4); set options, then await it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, io::{Address, ListenerRef, ReadAction, Stream, Listen}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// // A listener (IO::Async's `listen`), then a connection to it.
    /// let at: Address = "127.0.0.1:0".parse()?;
    /// let echo = lp
    ///     .listen("echo", Listen::new(at), |conn, _peer| {
    ///         Stream::spec("conn", conn).on_read(|io, buf, _| {
    ///             io.write_slice(buf);
    ///             buf.clear();
    ///             ReadAction::Wait
    ///         })
    ///     })
    ///     .await?;
    /// let addr = echo.local_addr().await?.as_inet().expect("a TCP listener");
    /// let conn = lp.connect(addr).timeout(Duration::from_secs(5)).await?;
    /// assert!(conn.peer_addr().is_ok());
    /// # Ok(()) }
    /// ```
    pub fn connect(&self, target: impl Into<ioasync_io::Address>) -> ioasync_io::Connect {
        ioasync_io::Connect::new(target)
    }

    /// Binds `listen` and adds a [`Listener`](ioasync_io::Listener) named
    /// `name` that starts `on_stream(conn, peer)` for each connection (see
    /// [`Loop::connect`] for an example).
    pub async fn listen<F, S>(
        &self,
        name: &str,
        listen: ioasync_io::Listen,
        on_stream: F,
    ) -> Result<NotifierRef<ioasync_io::Listener>>
    where
        F: Fn(ioasync_io::Connection, ioasync_io::SockAddr) -> S + Send + Sync + 'static,
        S: Into<ioasync_core::AnySpec>,
    {
        self.add(ioasync_io::Listener::spec(name, listen, on_stream))
            .await
    }

    /// Resolves `host` and `service` (name or port) to stream socket
    /// addresses, off the runtime's workers.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = ioasync::Loop::current()?;
    /// let addrs = lp.resolve("127.0.0.1", "8080").await?;
    /// assert_eq!(addrs, ["127.0.0.1:8080".parse().unwrap()]);
    /// # Ok(()) }
    /// ```
    pub async fn resolve(&self, host: &str, service: &str) -> Result<Vec<std::net::SocketAddr>> {
        ioasync_io::resolve(
            host,
            service,
            ioasync_io::Family::Any,
            ioasync_io::SockType::Stream,
            false,
        )
        .await
    }

    /// Starts `cmd` as a plain child (no notifier): its pid and exit.
    pub fn spawn_child(
        &self,
        cmd: ioasync_process::Command,
    ) -> Result<ioasync_process::SpawnedChild> {
        let _guard = self.inner.handle.enter();
        ioasync_process::spawn_child(cmd)
    }

    /// Runs `cmd` with `stdin` as input and returns its status, stdout and
    /// stderr (IO::Async's `run_process`).
    ///
    /// ```
    /// use ioasync::process::{Command, ExitStatus};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = ioasync::Loop::current()?;
    /// let mut tr = Command::new("tr");
    /// tr.args(["a-z", "A-Z"]);
    /// let out = lp.run_child(tr, "shout").await?;
    /// assert_eq!((out.status, &out.stdout[..]), (ExitStatus::Code(0), &b"SHOUT"[..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped, the child is sent its cancel signal
    /// ([`Command::cancel_signal`](ioasync_process::Command::cancel_signal))
    /// and reaped.
    pub async fn run_child(
        &self,
        cmd: ioasync_process::Command,
        stdin: impl Into<bytes::Bytes>,
    ) -> Result<ioasync_process::ChildOutput> {
        ioasync_process::run_child(cmd, stdin).await
    }

    /// Starts `spec` as a [`Process`](ioasync_process::Process) notifier
    /// under the root (IO::Async's `open_process`).
    pub async fn open_process(
        &self,
        spec: ioasync_process::ProcessSpec,
    ) -> Result<ioasync_process::ProcessHandle> {
        ioasync_process::ProcessHandle::start(spec, |s| self.add(s)).await
    }

    /// Watches `path`'s `stat` every `interval`, calling `f` for each
    /// [`FileEvent`](ioasync_io::FileEvent) (IO::Async's `watch_file`).
    /// The watch is a [`File`](ioasync_io::File) notifier under the root;
    /// dropping the returned guard removes it (IO::Async's `unwatch_file`).
    pub async fn watch_file(
        &self,
        path: impl AsRef<std::path::Path>,
        interval: Duration,
        f: impl FnMut(ioasync_io::FileEvent) + Send + 'static,
    ) -> Result<Watch<ioasync_io::File>> {
        let name = format!("watch-file-{}", self.next_watch_id());
        // Subscribed at spec time: the callback belongs to the watcher's
        // runtime and keeps firing across its restarts.
        let spec = ioasync_io::File::spec(name, path, interval)
            .subscribe(ioasync_core::Subscription::closure(f));
        Ok(self.watch(self.add(spec).await?))
    }

    /// Calls `f` for each delivery of `signal` (IO::Async's
    /// `attach_signal`; several per signal are fine). The watch is a
    /// [`Signal`](ioasync_signal::Signal) notifier under the root; dropping
    /// the returned guard removes it (`detach_signal`), and the last one of
    /// a signal gives it back its default disposition.
    pub async fn attach_signal(
        &self,
        signal: ioasync_signal::SignalKind,
        f: impl FnMut(ioasync_signal::SignalEvent) + Send + 'static,
    ) -> Result<Watch<ioasync_signal::Signal>> {
        let name = format!("signal-{}-{}", signal.name(), self.next_watch_id());
        let spec = ioasync_signal::Signal::spec(name, signal)
            .subscribe(ioasync_core::Subscription::closure(f));
        Ok(self.watch(self.add(spec).await?))
    }

    /// Calls `f` once with the exit status of child `pid` (one started by
    /// other means than ioasync; IO::Async's `watch_process`). The watch is
    /// a [`Pid`](ioasync_process::Pid) notifier under the root; dropping
    /// the returned guard removes it (`unwatch_process`).
    pub async fn watch_process(
        &self,
        pid: u32,
        f: impl FnMut(ioasync_process::ExitStatus) + Send + 'static,
    ) -> Result<Watch<ioasync_process::Pid>> {
        if pid == 0 {
            return Err(Error::invalid_input(
                "watch_process",
                "pid 0: Loop::watch_children watches every child",
            ));
        }
        let name = format!("pid-{pid}-{}", self.next_watch_id());
        // Subscribed before the watch starts: even an exit that already
        // happened is seen.
        let spec =
            ioasync_process::Pid::spec(name, pid).subscribe(ioasync_core::Subscription::closure(f));
        Ok(self.watch(self.add(spec).await?))
    }

    /// Calls `f` with the exit of every child of this process that
    /// nothing else watches (IO::Async's `watch_process(0, ...)`): children
    /// started by other means and never waited for are reaped as they
    /// exit. Children ioasync runs and those a [`Pid`](ioasync_process::Pid)
    /// watches are left to their own watchers. See
    /// [`Children`](ioasync_process::Children).
    pub async fn watch_children(
        &self,
        f: impl FnMut(ioasync_process::ChildExit) + Send + 'static,
    ) -> Result<Watch<ioasync_process::Children>> {
        let name = format!("children-{}", self.next_watch_id());
        let spec =
            ioasync_process::Children::spec(name).subscribe(ioasync_core::Subscription::closure(f));
        Ok(self.watch(self.add(spec).await?))
    }

    fn watch<N: Notifier>(&self, n: NotifierRef<N>) -> Watch<N> {
        Watch::new(n, self.inner.handle.clone())
    }

    fn next_watch_id(&self) -> u64 {
        self.inner
            .next_watch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Watches `fd` for readiness (IO::Async's `watch_io`): the callbacks
    /// of `watch` run inside a [`Handle`](ioasync_io::Handle) notifier
    /// under the root, which is returned (subscribe to its
    /// [`HandleEvent`](ioasync_io::HandleEvent)s for the events form: a
    /// direction without a callback is not watched). There is at most one
    /// callback per direction per fd: watching the same fd again replaces
    /// the callbacks `watch` gives and keeps the others. The fd is set
    /// non-blocking (its file description is shared) and is not closed by
    /// the watch, which holds duplicates of it; readiness is
    /// level-triggered, as IO::Async's: a callback that leaves data unread
    /// is called again. A regular file is always ready.
    ///
    /// ```
    /// use std::io::Read;
    /// use ioasync::{io::{IoDirs, IoWatch}, Loop};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (rx, tx) = std::io::pipe().unwrap();
    /// let (got, mut recv) = tokio::sync::mpsc::unbounded_channel();
    /// let mut reader = rx.try_clone().unwrap();
    /// lp.watch_io(&rx, IoWatch::new().on_read_ready(move |_io| {
    ///     let mut buf = [0u8; 16];
    ///     let n = reader.read(&mut buf).unwrap();
    ///     let _ = got.send(buf[..n].to_vec());
    /// }))
    /// .await?;
    /// std::io::Write::write_all(&mut &tx, b"ping").unwrap();
    /// assert_eq!(recv.recv().await.unwrap(), b"ping");
    /// assert!(lp.unwatch_io(&rx, IoDirs::ALL).await);
    /// # Ok(()) }
    /// ```
    pub async fn watch_io(
        &self,
        fd: impl AsFd,
        watch: IoWatch,
    ) -> Result<NotifierRef<ioasync_io::Handle>> {
        use ioasync_io::HandleRef;
        let raw = fd.as_fd().as_raw_fd();
        let mut watches = self.inner.io_watches.lock().await;
        if let Some(h) = watches.get(&raw).filter(|h| h.is_alive()) {
            let IoWatch {
                read,
                write,
                hangup,
            } = watch;
            if let Some(f) = read {
                h.set_on_read_ready(Some(f)).await?;
            }
            if let Some(f) = write {
                h.set_on_write_ready(Some(f)).await?;
            }
            if let Some(f) = hangup {
                h.set_on_hangup(Some(f)).await?;
            }
            return Ok(h.clone());
        }
        if watch.is_empty() {
            return Err(Error::invalid_input(
                "watch_io",
                format!("fd {raw}: no callback to watch with"),
            ));
        }
        let dup = || {
            fd.as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io_at("watch_io: dup", raw, e))
        };
        let mut spec = ioasync_io::Handle::spec(
            format!("watch-io-{raw}-{}", self.next_watch_id()),
            Some(dup()?),
            Some(dup()?),
        )?
        .level_triggered(true)
        .want_read(watch.read.is_some())
        .want_write(watch.write.is_some());
        if let Some(f) = watch.read {
            spec = spec.on_read_ready(f);
        }
        if let Some(f) = watch.write {
            spec = spec.on_write_ready(f);
        }
        if let Some(f) = watch.hangup {
            spec = spec.on_hangup(f);
        }
        let h = self.add(spec).await?;
        watches.insert(raw, h.clone());
        Ok(h)
    }

    /// Removes the callbacks `dirs` names from the watch of `fd`
    /// (IO::Async's `unwatch_io`); once none is left the watch stops and
    /// closes its duplicates (never `fd` itself). False when `fd` has no
    /// watch.
    pub async fn unwatch_io(&self, fd: impl AsFd, dirs: IoDirs) -> bool {
        use ioasync_io::HandleRef;
        let raw = fd.as_fd().as_raw_fd();
        let mut watches = self.inner.io_watches.lock().await;
        let Some(h) = watches.get(&raw).filter(|h| h.is_alive()).cloned() else {
            watches.remove(&raw);
            return false;
        };
        let mut left = (true, true, true);
        for (on, which) in [(dirs.read, 0), (dirs.write, 1), (dirs.hangup, 2)] {
            if on {
                let now = match which {
                    0 => h.set_on_read_ready(None).await,
                    1 => h.set_on_write_ready(None).await,
                    _ => h.set_on_hangup(None).await,
                };
                left = now.unwrap_or((false, false, false));
            }
        }
        if left == (false, false, false) {
            watches.remove(&raw);
            self.remove(h.path()).await;
        }
        true
    }

    /// Runs `f` on the loop soon, after every `later` queued before it,
    /// inside the root notifier (a panic in it is contained and logged).
    pub fn later(&self, f: impl FnOnce() + Send + 'static) {
        let _ = self.inner.tree.call_at(Instant::now(), Box::new(f));
    }

    /// Runs `f` once when the loop is next idle (IO::Async's
    /// `watch_idle(when => 'later')`): on the root's next round, after the
    /// callbacks already due; one registered from inside such a callback
    /// runs on the round after. Dropping the returned guard, or
    /// [`TimerWatch::cancel`], unwatches it (`unwatch_idle`).
    ///
    /// ```
    /// use ioasync::Loop;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// lp.watch_idle(move || {
    ///     let _ = tx.send("idle");
    /// })
    /// .detach();
    /// assert!(lp.watch_idle(|| unreachable!()).cancel());
    /// assert_eq!(rx.await.unwrap(), "idle");
    /// # Ok(()) }
    /// ```
    pub fn watch_idle(&self, f: impl FnOnce() + Send + 'static) -> TimerWatch {
        self.watch_time(Instant::now(), f)
    }

    /// A future that completes on the loop's next round (IO::Async's
    /// `later` without code). Dropping it cancels the wait.
    pub fn later_future(&self) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let watch = self.watch_idle(move || {
            let _ = tx.send(());
        });
        async move {
            // Held until done: dropping the future drops it, which cancels.
            let _watch = watch;
            let _ = rx.await;
        }
    }

    /// Calls `f` once at `when`, inside the root notifier; timers fire in
    /// deadline order, ties in the order they were set. Dropping the
    /// returned guard cancels the timer (IO::Async's `unwatch_time`);
    /// [`TimerWatch::detach`] lets it fire.
    pub fn watch_time(
        &self,
        when: impl Into<When>,
        f: impl FnOnce() + Send + 'static,
    ) -> TimerWatch {
        let call = self.inner.tree.call_at(when.into().instant(), Box::new(f));
        TimerWatch::new(call, &self.inner)
    }

    /// A future that completes at `when`.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = ioasync::Loop::current()?;
    /// let t0 = tokio::time::Instant::now();
    /// lp.delay_future(Duration::from_secs(2)).await;
    /// assert_eq!(t0.elapsed(), Duration::from_secs(2));
    /// // And its pair: a timeout fails with a timeout error.
    /// let slow = lp.delay_future(Duration::from_secs(9));
    /// let err = lp.timeout(Duration::from_secs(1), slow).await.unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok(()) }
    /// ```
    pub fn delay_future(&self, when: impl Into<When>) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(when.into().instant())
    }

    /// A future that fails with a `Timeout` error at `when` (IO::Async's
    /// `timeout_future`); race it against other work.
    pub fn timeout_future(
        &self,
        when: impl Into<When>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let at = when.into().instant();
        async move {
            tokio::time::sleep_until(at).await;
            Err(Error::timeout("timeout_future"))
        }
    }

    /// `fut`, failing with a `Timeout` error if it has not finished at `when`.
    pub async fn timeout<F: Future>(&self, when: impl Into<When>, fut: F) -> Result<F::Output> {
        tokio::time::timeout_at(when.into().instant(), fut)
            .await
            .map_err(|_| Error::timeout("timeout"))
    }

    /// A snapshot of the whole notifier tree (kinds, paths, states,
    /// restarts, queue depths); `Display` prints it indented,
    /// [`NodeSnapshot::to_dot`](ioasync_core::NodeSnapshot::to_dot) as
    /// Graphviz.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, time::Countdown};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// lp.add(Countdown::spec("idle", Duration::from_secs(30))).await?;
    /// let tree = lp.tree();
    /// assert_eq!(tree.find("/idle").map(|n| n.kind), Some("timer-countdown"));
    /// assert!(tree.to_string().contains("idle"));
    /// # Ok(()) }
    /// ```
    pub fn tree(&self) -> NodeSnapshot {
        self.inner.tree.snapshot()
    }

    /// Supervision events (failures, restarts, escalations, stops) from now on.
    pub fn supervision_events(&self) -> broadcast::Receiver<SupervisionEvent> {
        self.inner.tree.supervision_events()
    }

    /// How many notifiers are alive in the tree, the root included.
    pub fn live_notifiers(&self) -> usize {
        self.inner.tree.live_count()
    }

    /// The loop's root notifier.
    pub fn root(&self) -> &NotifierRef<ioasync_core::Root> {
        self.inner.tree.root()
    }
}

impl fmt::Debug for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loop")
            .field("notifiers", &self.inner.tree.live_count())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
