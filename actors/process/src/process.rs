//! [`Process`]: a child process as a notifier (IO::Async::Process).

use std::{
    collections::HashMap,
    fmt,
    os::fd::{OwnedFd, RawFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync_core::{
    Ctx, Error, ErrorKind, Events, Handler, HasEvents, Notifier, NotifierRef, Once, Restart,
    Result, Spec, Subscription,
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
    /// stream over its fds read to EOF.
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
    subs: Vec<Subscription<ProcessEvent>>,
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
    /// Subscribes to events from the start (so even an exec failure is
    /// seen as an event).
    pub fn subscribe(mut self, sub: Subscription<ProcessEvent>) -> Self {
        self.args.subs.push(sub);
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

impl From<ProcessSpec> for Spec<Process> {
    fn from(s: ProcessSpec) -> Self {
        let grace = s.args.kill.grace;
        Spec::new(s.name, Once::new(s.args))
            .restart(Restart::Temporary)
            .stop_timeout(grace + Duration::from_secs(2))
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
pub struct Process {
    child: tokio::process::Child,
    pid: u32,
    own_group: bool,
    status: Option<ExitStatus>,
    streams: Vec<NotifierRef<Stream>>,
    kill: KillPolicy,
    shared: Arc<Shared>,
    events: Events<ProcessEvent>,
}

impl Process {
    /// A process running `cmd`.
    pub fn spec(name: impl Into<String>, cmd: Command) -> ProcessSpec {
        ProcessSpec {
            name: name.into(),
            args: ProcessArgs {
                cmd,
                subs: Vec::new(),
                kill: KillPolicy::default(),
                shared: Arc::new(Shared::new()),
            },
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

    async fn finish(&mut self, status: ExitStatus) {
        // Output first: every stream over the child's fds reads to EOF.
        for s in self.streams.drain(..) {
            s.wait_stopped().await;
        }
        let ev = match status {
            ExitStatus::Code(_) => ProcessEvent::Finished(status),
            ExitStatus::Signal { .. } => ProcessEvent::Exception(ProcessException::Signal(status)),
        };
        self.events.emit(ev).await;
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
        let mut events = Events::new();
        for s in args.subs {
            events.subscribe(s);
        }
        let cmd = args.cmd;
        let own_group = true;
        let spawned = cmd.prepare().and_then(|p| p.spawn());
        let (child, ends) = match spawned {
            Ok(x) => x,
            Err(e) => {
                events
                    .emit(ProcessEvent::Exception(ProcessException::Exec(e.clone())))
                    .await;
                args.shared.exit.send_replace(Some(Err(e.clone())));
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        *args.shared.pid.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        let mut streams = Vec::new();
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
                    let spec = setup(Stream::from_fds(format!("fd{}", end.n), r, w)?);
                    let stream = ctx.add_child(spec).await?;
                    args.shared
                        .streams
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(end.n, stream.clone());
                    streams.push(stream);
                }
            }
        }
        Ok(Process {
            child,
            pid,
            own_group,
            status: None,
            streams,
            kill: args.kill,
            shared: args.shared,
            events,
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
        if let Some(st) = self.status {
            self.finish(st).await;
            ctx.stop();
        }
    }

    async fn on_stop(&mut self, _ctx: &mut Ctx<'_, Self>) {
        if self.status.is_some() {
            return;
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
        self.streams.clear();
        self.events
            .emit(ProcessEvent::Exception(ProcessException::Signal(st)))
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

impl HasEvents<ProcessEvent> for Process {
    fn events(&mut self) -> &mut Events<ProcessEvent> {
        &mut self.events
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish()
    }
}

/// Message: send a signal to the child (its process group when it leads
/// one). Fails once the child has exited.
#[derive(Debug)]
pub struct Kill(pub SignalKind);

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
    /// Adds `spec` under `parent`'s tree via `add` and wraps the result.
    pub async fn start<F, Fut>(spec: ProcessSpec, add: F) -> Result<ProcessHandle>
    where
        F: FnOnce(Spec<Process>) -> Fut,
        Fut: Future<Output = Result<NotifierRef<Process>>>,
    {
        let shared = spec.handle_parts();
        let notifier = add(spec.into()).await?;
        Ok(ProcessHandle { notifier, shared })
    }

    /// The notifier.
    pub fn notifier(&self) -> &NotifierRef<Process> {
        &self.notifier
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.shared
            .pid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(0)
    }

    /// Our end of the pipe on the child's fd `n` ([`Stdio::Pipe`](crate::Stdio::Pipe)); once.
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
    pub fn stream(&self, n: RawFd) -> Option<NotifierRef<Stream>> {
        self.shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&n)
            .cloned()
    }

    /// Sends `sig` to the child.
    pub async fn kill(&self, sig: SignalKind) -> Result<()> {
        self.notifier.ask(Kill(sig)).await
    }

    /// Resolves at exit (after its streams read to EOF).
    pub async fn wait(&self) -> Result<ExitStatus> {
        ExitWatch(self.shared.exit.subscribe()).wait().await
    }
}
