//! [`Process`]: a child process as a notifier (IO::Async::Process).

use std::{
    collections::HashMap,
    fmt,
    os::fd::{OwnedFd, RawFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync_core::{
    Ctx, Emits, Error, ErrorKind, Exit, Handler, Notifier, NotifierRef, Once, Restart, Result,
    Spec, Subscription,
};
use ioasync_io::Stream;
use ioasync_signal::SignalKind;
use tokio::sync::watch;

use crate::{
    ExitStatus,
    command::{Command, Dir},
};

/// Why a process ended abnormally (IO::Async's `on_exception`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProcessException {
    /// The program could not be executed (op `exec`, errno kept).
    Exec(Error),
    /// A signal killed it.
    Signal(ExitStatus),
}

/// Something that happened to a process.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProcessEvent {
    /// It exited with a code (IO::Async's `on_finish`). Emitted after every
    /// stream over its output fds read to EOF (and stopped).
    Finished(ExitStatus),
    /// It failed to start, or a signal killed it.
    Exception(ProcessException),
}

/// How a running child is stopped when its notifier is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillPolicy {
    /// Sent first (default SIGTERM), to the child's process group when it
    /// leads one.
    pub signal: SignalKind,
    /// Then SIGKILL after this long (default 5 s).
    pub grace: Duration,
}

impl Default for KillPolicy {
    fn default() -> Self {
        KillPolicy {
            signal: SignalKind::terminate(),
            grace: Duration::from_secs(5),
        }
    }
}

type ExitSlot = Option<std::result::Result<ExitStatus, Error>>;

/// State shared between a process notifier and its [`ProcessHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    exit: watch::Sender<ExitSlot>,
    fds: Mutex<HashMap<RawFd, OwnedFd>>,
    streams: Mutex<HashMap<RawFd, NotifierRef<Stream>>>,
    pid: Mutex<Option<u32>>,
}

/// How to start a [`Process`].
pub struct ProcessArgs {
    cmd: Command,
    kill: KillPolicy,
    shared: Arc<Shared>,
}

impl fmt::Debug for ProcessArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessArgs")
            .field("cmd", &self.cmd)
            .field("kill", &self.kill)
            .finish()
    }
}

/// A process spec under construction.
#[must_use = "a ProcessSpec does nothing until it is added"]
pub struct ProcessSpec {
    name: String,
    args: ProcessArgs,
    subs: Vec<Subscription<ProcessEvent>>,
}

impl fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("name", &self.name)
            .field("args", &self.args)
            .finish()
    }
}

impl ProcessSpec {
    /// Subscribes to its events from the start (so even an exec failure is
    /// seen as an event): [`Spec::subscribe`] on the spec it becomes.
    pub fn subscribe(mut self, sub: Subscription<ProcessEvent>) -> Self {
        self.subs.push(sub);
        self
    }

    /// How the child is stopped when the notifier is removed.
    pub fn kill_policy(mut self, kill: KillPolicy) -> Self {
        self.args.kill = kill;
        self
    }

    /// A future-style view of the exit, available before the spec is
    /// added.
    pub fn exit_watch(&self) -> ExitWatch {
        ExitWatch(self.args.shared.exit.subscribe())
    }

    fn handle_parts(&self) -> Arc<Shared> {
        self.args.shared.clone()
    }
}

impl ioasync_core::IntoSpec for ProcessSpec {
    type Notifier = Process;
}

impl From<ProcessSpec> for Spec<Process> {
    fn from(s: ProcessSpec) -> Self {
        let grace = s.args.kill.grace;
        let spec = Spec::once(s.name, s.args)
            .restart(Restart::Temporary)
            .stop_timeout(grace + Duration::from_secs(2));
        s.subs.into_iter().fold(spec, Spec::subscribe)
    }
}

impl Shared {
    fn new() -> Shared {
        Shared {
            exit: watch::channel(None).0,
            fds: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            pid: Mutex::new(None),
        }
    }
}

/// The exit of a process, awaitable from anywhere, any number of times.
#[derive(Debug, Clone)]
pub struct ExitWatch(watch::Receiver<ExitSlot>);

impl ExitWatch {
    /// Resolves when the process has exited (after its streams read to
    /// EOF), or with the error that kept it from starting.
    ///
    /// ```
    /// use ioasync::{Loop, process::{Command, Process}};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "exit 9"]);
    /// let spec = Process::spec("nine", cmd);
    /// let mut exit = spec.exit_watch(); // before the spec is added
    /// let child = lp.open_process(spec).await?;
    /// assert_eq!(exit.wait().await?.code(), Some(9));
    /// assert_eq!(exit.clone().wait().await?.code(), Some(9), "any number of times");
    /// # drop(child);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches the exit; dropping it changes nothing.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let slot = self
            .0
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::closed("wait", "the process notifier is gone"))?;
        slot.clone().expect("waited for Some")
    }
}

/// A child process notifier: runs a [`Command`], reaps it, reports its
/// exit. Removing it stops the child per its [`KillPolicy`].
///
/// Its exit, and the end of each stream over the child's output, reach it
/// as events in any order (the streams are its children and tell it of
/// their [`Exit`] by message); it reports the exit once it has the status
/// and every output stream has stopped. It never waits for a child inside
/// a handler.
///
/// ```
/// use ioasync::{Loop, io::{ReadFor, StreamRef}, process::{Command, Process, Stdio}};
///
/// # #[tokio::main]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "read x; echo \"got $x\"; exit 3"])
///     .stdin(Stdio::stream(|s| s))
///     .stdout(Stdio::stream(|s| s));
/// let child = lp.open_process(Process::spec("greet", cmd)).await?;
/// let (stdin, stdout) = (child.stream(0).unwrap(), child.stream(1).unwrap());
/// stdin.write("hello\n").await?;
/// stdin.close_when_empty().await?;
/// let (out, eof) = stdout.read(ReadFor::Eof).await?;
/// assert_eq!((&out[..], eof), (&b"got hello\n"[..], true));
/// assert_eq!(child.wait().await?.code(), Some(3));
/// # Ok(()) }
/// ```
pub struct Process {
    child: tokio::process::Child,
    pid: u32,
    own_group: bool,
    status: Option<ExitStatus>,
    /// Paths of the output streams that have not stopped yet.
    reading: Vec<Arc<str>>,
    finished: bool,
    kill: KillPolicy,
    shared: Arc<Shared>,
}

impl Process {
    /// A process running `cmd`.
    pub fn spec(name: impl Into<String>, cmd: Command) -> ProcessSpec {
        ProcessSpec {
            name: name.into(),
            args: ProcessArgs {
                cmd,
                kill: KillPolicy::default(),
                shared: Arc::new(Shared::new()),
            },
            subs: Vec::new(),
        }
    }

    fn signal(&self, sig: SignalKind) -> Result<()> {
        let Ok(sig) = nix::sys::signal::Signal::try_from(sig.as_raw()) else {
            return Err(Error::invalid_input(
                "kill",
                format!("{sig} is not a signal"),
            ));
        };
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let target = if self.own_group {
            nix::unistd::Pid::from_raw(-(self.pid as i32))
        } else {
            pid
        };
        nix::sys::signal::kill(target, sig)
            .or_else(|_| nix::sys::signal::kill(pid, sig))
            .map_err(|e| Error::io_at("kill", self.pid, e.into()))
    }

    /// Reports the exit once the status is in and every output stream has
    /// stopped; then the notifier ends.
    async fn try_finish(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.status.is_some() && self.reading.is_empty() && !self.finished {
            self.report(ctx).await;
            ctx.exit();
        }
    }

    /// Emits the exit and fills the exit watch, once.
    async fn report(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Some(status) = self.status else {
            return;
        };
        if self.finished {
            return;
        }
        self.finished = true;
        let ev = match status {
            ExitStatus::Code(_) => ProcessEvent::Finished(status),
            ExitStatus::Signal { .. } => ProcessEvent::Exception(ProcessException::Signal(status)),
        };
        ctx.emit(ev).await;
        self.shared.exit.send_replace(Some(Ok(status)));
    }
}

impl Notifier for Process {
    type Args = Once<ProcessArgs>;

    fn kind() -> &'static str {
        "process"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        let cmd = args.cmd;
        let own_group = true;
        let spawned = match cmd.prepare() {
            Ok(p) => p.spawn_async().await.map(|(c, rest)| (c, rest.ends)),
            Err(e) => Err(e),
        };
        let (child, ends) = match spawned {
            Ok(x) => x,
            Err(e) => {
                ctx.emit(ProcessEvent::Exception(ProcessException::Exec(e.clone())))
                    .await;
                args.shared.exit.send_replace(Some(Err(e.clone())));
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        *args.shared.pid.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        ctx.set_detail(format!("pid={pid}"));
        let mut reading = Vec::new();
        for end in ends {
            match end.setup {
                None => {
                    args.shared
                        .fds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(end.n, end.fd);
                }
                Some(setup) => {
                    let (r, w) = match end.dir {
                        Dir::FromChild => (Some(end.fd), None),
                        Dir::ToChild => (None, Some(end.fd)),
                    };
                    let mut spec = setup(Stream::from_fds(format!("fd{}", end.n), r, w)?);
                    if end.dir == Dir::FromChild {
                        // Its end reaches us as a message, whenever it comes.
                        spec = spec.subscribe_exit(Subscription::actor(ctx.this().actor_ref()));
                    }
                    let stream = ctx.add_child(spec).await?;
                    if end.dir == Dir::FromChild {
                        reading.push(Arc::from(stream.path()));
                    }
                    args.shared
                        .streams
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(end.n, stream);
                }
            }
        }
        Ok(Process {
            child,
            pid,
            own_group,
            status: None,
            reading,
            finished: false,
            kill: args.kill,
            shared: args.shared,
        })
    }

    async fn ready(&mut self) {
        if self.status.is_some() {
            return std::future::pending().await;
        }
        match self.child.wait().await {
            Ok(st) => self.status = Some(st.into()),
            Err(e) => {
                tracing::error!(pid = self.pid, error = %e, "wait failed");
                self.status = Some(ExitStatus::Code(-1));
            }
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.try_finish(ctx).await;
    }

    async fn on_stop(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.status.is_some() {
            // Exited, its output streams stopped with us: report it now.
            return self.report(ctx).await;
        }
        // Removed while running: TERM, a grace period, then KILL.
        let _ = self.signal(self.kill.signal);
        let waited = tokio::time::timeout(self.kill.grace, self.child.wait()).await;
        let st = match waited {
            Ok(Ok(st)) => st.into(),
            _ => {
                let _ = self.signal(SignalKind::kill());
                match self.child.wait().await {
                    Ok(st) => st.into(),
                    Err(_) => ExitStatus::Signal {
                        signal: SignalKind::kill(),
                        core_dumped: false,
                    },
                }
            }
        };
        self.status = Some(st);
        self.finished = true;
        ctx.emit(ProcessEvent::Exception(ProcessException::Signal(st)))
            .await;
        self.shared.exit.send_replace(Some(Ok(st)));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Killed notifier (no on_stop): the child must not outlive it.
        if self.status.is_none() {
            let _ = self.signal(SignalKind::kill());
            let _ = self.child.start_kill();
        }
        if self.shared.exit.borrow().is_none() {
            self.shared.exit.send_replace(Some(Err(Error::new(
                "wait",
                ErrorKind::Closed,
                "the process notifier was killed; the child was sent SIGKILL",
            ))));
        }
    }
}

impl Emits<ProcessEvent> for Process {}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish()
    }
}

/// The end of one of its output streams (it subscribed to their `Exit`).
impl Handler<Exit> for Process {
    type Reply = ();
    async fn handle(&mut self, exit: Exit, ctx: &mut Ctx<'_, Self>) {
        if exit.restarting {
            return;
        }
        self.reading.retain(|p| *p != exit.path);
        self.try_finish(ctx).await;
    }
}

/// Message: send a signal to the child (its process group when it leads
/// one). Fails once the child has exited. [`ProcessHandle::kill`],
/// [`ProcessRef::signal`] and [`PidRef::signal`](crate::PidRef::signal)
/// send it.
#[derive(Debug)]
pub(crate) struct Kill(pub(crate) SignalKind);

impl Handler<Kill> for Process {
    type Reply = Result<()>;
    async fn handle(&mut self, Kill(sig): Kill, _ctx: &mut Ctx<'_, Self>) -> Result<()> {
        if self.status.is_some() {
            return Err(Error::closed("kill", "the process has exited"));
        }
        self.signal(sig)
    }
}

/// A running process: its notifier, pid, exit, and the pipe ends the
/// command asked for.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    notifier: NotifierRef<Process>,
    shared: Arc<Shared>,
}

impl ProcessHandle {
    /// Adds `spec` under `parent`'s tree via `add` and wraps the result:
    /// how `Loop::open_process` starts one under the root, and how a
    /// notifier starts one as its own child.
    ///
    /// ```
    /// use ioasync::{Loop, process::{Command, Process, ProcessHandle}};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let parent = lp.root();
    /// let child = ProcessHandle::start(Process::spec("true", Command::new("true")), |s| {
    ///     parent.add_child(s)
    /// })
    /// .await?;
    /// assert!(child.notifier().path().ends_with("/true"));
    /// assert!(child.wait().await?.success());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while `add` is pending, the process may still have been
    /// started: it runs under its parent with no handle here; find it again
    /// with `lookup`, or stop its parent.
    pub async fn start<F, Fut>(spec: ProcessSpec, add: F) -> Result<ProcessHandle>
    where
        F: FnOnce(Spec<Process>) -> Fut,
        Fut: Future<Output = Result<NotifierRef<Process>>>,
    {
        let shared = spec.handle_parts();
        let notifier = add(spec.into()).await?;
        Ok(ProcessHandle { notifier, shared })
    }

    /// The notifier: its path, its events, its stop.
    ///
    /// ```
    /// use ioasync::{Loop, process::{Command, Process}};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "exit 7"]);
    /// let spec = Process::spec("seven", cmd);
    /// let mut exit = spec.exit_watch();
    /// let child = lp.open_process(spec).await?;
    /// assert_eq!(child.notifier().name(), "seven");
    /// assert_eq!(exit.wait().await?.code(), Some(7));
    /// # Ok(()) }
    /// ```
    pub fn notifier(&self) -> &NotifierRef<Process> {
        &self.notifier
    }

    /// The child's pid.
    ///
    /// ```
    /// use ioasync::{Loop, process::{Command, Process, Stdio}};
    /// use std::io::Read;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "echo $$"]).stdout(Stdio::Pipe);
    /// let child = lp.open_process(Process::spec("pid", cmd)).await?;
    /// let mut out = String::new();
    /// std::fs::File::from(child.take_fd(1).unwrap()).read_to_string(&mut out).unwrap();
    /// assert_eq!(out.trim().parse::<u32>().unwrap(), child.pid());
    /// # child.wait().await?;
    /// # Ok(()) }
    /// ```
    pub fn pid(&self) -> u32 {
        self.shared
            .pid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(0)
    }

    /// Our end of the pipe on the child's fd `n` ([`Stdio::Pipe`](crate::Stdio::Pipe)); once.
    ///
    /// ```
    /// use ioasync::{Loop, process::{Command, Process, Stdio}};
    /// use std::io::Read;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "echo side >&3"]).fd_from_child(3, Stdio::Pipe);
    /// let child = lp.open_process(Process::spec("side", cmd)).await?;
    /// let fd = child.take_fd(3).unwrap();
    /// assert!(child.take_fd(3).is_none(), "handed out once");
    /// let mut out = String::new();
    /// std::fs::File::from(fd).read_to_string(&mut out).unwrap();
    /// assert_eq!(out, "side\n");
    /// assert!(child.wait().await?.success());
    /// # Ok(()) }
    /// ```
    pub fn take_fd(&self, n: RawFd) -> Option<OwnedFd> {
        self.shared
            .fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&n)
    }

    /// The [`Stream`] over the child's fd `n`
    /// ([`Stdio::Stream`](crate::Stdio::Stream)): write to a child's stdin
    /// with it, or subscribe to its output.
    ///
    /// ```
    /// use ioasync::{Loop, io::{ReadFor, StreamRef}, process::{Command, Process, Stdio}};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "echo out; echo err >&2"])
    ///     .stdout(Stdio::stream(|s| s))
    ///     .stderr(Stdio::stream(|s| s));
    /// let child = lp.open_process(Process::spec("two", cmd)).await?;
    /// let err = child.stream(2).unwrap().read(ReadFor::Eof).await?.0;
    /// let out = child.stream(1).unwrap().read(ReadFor::Eof).await?.0;
    /// assert_eq!((&out[..], &err[..]), (&b"out\n"[..], &b"err\n"[..]));
    /// assert!(child.stream(0).is_none(), "stdin was not made a stream");
    /// # child.wait().await?;
    /// # Ok(()) }
    /// ```
    pub fn stream(&self, n: RawFd) -> Option<NotifierRef<Stream>> {
        self.shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&n)
            .cloned()
    }

    /// Sends `sig` to the child (its process group when it leads one).
    /// Fails (op `kill`) once it has exited.
    ///
    /// ```
    /// use ioasync::{Loop, process::{Command, Process}, signal::SignalKind};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sleep");
    /// cmd.arg("30");
    /// let child = lp.open_process(Process::spec("sleeper", cmd)).await?;
    /// child.kill(SignalKind::terminate()).await?;
    /// let status = child.wait().await?;
    /// assert_eq!(status.signal(), Some(SignalKind::terminate()));
    /// assert!(child.kill(SignalKind::terminate()).await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the signal may still be sent: once the
    /// request is queued the notifier handles it, only the reply is lost.
    pub async fn kill(&self, sig: SignalKind) -> Result<()> {
        self.notifier.signal(sig).await
    }

    /// Resolves at exit (after its streams read to EOF), or with the error
    /// that kept it from starting; any number of times, from any clone.
    ///
    /// ```
    /// use ioasync::{Loop, process::{Command, Process}};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "exit 4"]);
    /// let child = lp.open_process(Process::spec("four", cmd)).await?;
    /// let other = child.clone();
    /// assert_eq!(child.wait().await?.code(), Some(4));
    /// assert_eq!(other.wait().await?.code(), Some(4));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches the exit; dropping it changes nothing.
    pub async fn wait(&self) -> Result<ExitStatus> {
        ExitWatch(self.shared.exit.subscribe()).wait().await
    }
}

/// Operations on a [`Process`] notifier's handle, for when only the
/// [`NotifierRef`] is at hand (from [`ProcessHandle::notifier`], a lookup
/// in the tree, a listener's children); a [`ProcessHandle`] has the same
/// as [`ProcessHandle::kill`].
pub trait ProcessRef {
    /// Sends `sig` to the child (its process group when it leads one).
    /// Fails (op `kill`) once it has exited.
    ///
    /// (Named `signal`, as [`PidRef::signal`](crate::PidRef::signal):
    /// [`NotifierRef::kill`] already kills the notifier itself.)
    ///
    /// ```
    /// use ioasync::{Loop, process::{Command, Process, ProcessRef}, signal::SignalKind};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sleep");
    /// cmd.arg("30");
    /// let child = lp.open_process(Process::spec("sleeper", cmd)).await?;
    /// let notifier = child.notifier().clone();
    /// notifier.signal(SignalKind::terminate()).await?;
    /// assert_eq!(child.wait().await?.signal(), Some(SignalKind::terminate()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the signal may still be sent: once the
    /// request is queued the notifier handles it, only the reply is lost.
    fn signal(&self, sig: SignalKind) -> impl Future<Output = Result<()>> + Send;
}

impl ProcessRef for NotifierRef<Process> {
    async fn signal(&self, sig: SignalKind) -> Result<()> {
        self.ask(Kill(sig)).await
    }
}
