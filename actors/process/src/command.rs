//! [`Command`]: what to run and how its fds are set up; mirrors
//! `std::process::Command`.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::{OsStr, OsString},
    fmt,
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use ioasync_core::{Error, Result, Spec};
use ioasync_io::{Stream, StreamSpec};
use ioasync_signal::SignalKind;

use crate::{spawner::SpawnJob, sys};

/// Configures the [`Stream`](ioasync_io::Stream) made over a child's fd.
pub type StreamSetup = Box<dyn FnOnce(StreamSpec) -> Spec<Stream> + Send>;

/// How one of the child's fds is set up.
pub enum Stdio {
    /// The child shares ours at the same number (IO::Async's `keep`): on
    /// any fd, 3 or above too (its close-on-exec flag is cleared in the
    /// child). Keeping an fd that is not open here leaves it closed.
    Inherit,
    /// `/dev/null`.
    Null,
    /// This fd (closed here once the child has it).
    Fd(OwnedFd),
    /// A pipe; our end is handed back by
    /// [`ProcessHandle::take_fd`](crate::ProcessHandle::take_fd) (a write
    /// end for an fd the child reads, a read end for one it writes).
    Pipe,
    /// A pipe with a [`Stream`](ioasync_io::Stream) notifier over our end,
    /// a child of the process notifier, configured by the closure. The
    /// process reports its exit only after the stream read to EOF, so no
    /// output is lost.
    Stream(StreamSetup),
}

impl Stdio {
    /// A stream over a pipe, configured by `setup` (set `on_read` and
    /// limits on the [`StreamSpec`]; subscribe on the [`Spec`] it
    /// becomes). The process reports its exit only after every stream over
    /// an output pipe read to EOF; a stream over an input pipe (the
    /// child's stdin) is not waited for.
    pub fn stream<S>(setup: impl FnOnce(StreamSpec) -> S + Send + 'static) -> Self
    where
        S: Into<Spec<Stream>>,
    {
        Stdio::Stream(Box::new(move |s| setup(s).into()))
    }
}

impl fmt::Debug for Stdio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stdio::Inherit => f.write_str("Inherit"),
            Stdio::Null => f.write_str("Null"),
            Stdio::Fd(fd) => write!(f, "Fd({})", fd.as_raw_fd()),
            Stdio::Pipe => f.write_str("Pipe"),
            Stdio::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// Which way data flows on a child's fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// The child reads it.
    ToChild,
    /// The child writes it.
    FromChild,
}

/// A command to run as a child process.
///
/// Children start in their own process group (so the whole subtree can be
/// signalled) and, on Linux, get SIGKILL when this process dies, even by
/// SIGKILL: no orphans.
///
/// ```
/// use ioasync::process::{Command, Stdio};
///
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "echo hi >&3"]).fd_from_child(3, Stdio::Pipe).stdin(Stdio::Null);
/// assert_eq!(cmd.program(), "sh");
/// ```
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    env: BTreeMap<OsString, Option<OsString>>,
    env_clear: bool,
    cwd: Option<OsString>,
    fds: BTreeMap<RawFd, (Dir, Stdio)>,
    pdeathsig: Option<SignalKind>,
    own_group: bool,
    closes: BTreeSet<RawFd>,
    close_others: bool,
    setup: Setup,
    cancel_signal: SignalKind,
    fail_on_nonzero: bool,
}

/// The process setup applied in the child before exec.
#[derive(Debug, Default, Clone)]
struct Setup {
    umask: Option<u32>,
    rlimits: BTreeMap<Resource, (u64, u64)>,
    nice: Option<i32>,
    groups: Option<Vec<u32>>,
    gid: Option<u32>,
    uid: Option<u32>,
}

/// A resource limited by [`Command::rlimit`] (`setrlimit(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// `RLIMIT_AS`: the address space, in bytes.
    AddressSpace,
    /// `RLIMIT_CORE`: the largest core file, in bytes.
    Core,
    /// `RLIMIT_CPU`: CPU time, in seconds.
    Cpu,
    /// `RLIMIT_DATA`: the data segment, in bytes.
    Data,
    /// `RLIMIT_FSIZE`: the largest file it may write, in bytes.
    FileSize,
    /// `RLIMIT_MEMLOCK`: locked memory, in bytes.
    MemLock,
    /// `RLIMIT_NOFILE`: one more than the highest fd number it may open.
    NoFile,
    /// `RLIMIT_NPROC`: processes of its real user.
    NProc,
    /// `RLIMIT_STACK`: the main thread's stack, in bytes.
    Stack,
}

impl Resource {
    /// The `RLIMIT_*` number.
    pub fn as_raw(self) -> i32 {
        (match self {
            Resource::AddressSpace => libc::RLIMIT_AS,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::Data => libc::RLIMIT_DATA,
            Resource::FileSize => libc::RLIMIT_FSIZE,
            Resource::MemLock => libc::RLIMIT_MEMLOCK,
            Resource::NoFile => libc::RLIMIT_NOFILE,
            Resource::NProc => libc::RLIMIT_NPROC,
            Resource::Stack => libc::RLIMIT_STACK,
        }) as i32
    }
}

/// [`Command::rlimit`]'s value for "no limit" (`RLIM_INFINITY`).
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub const RLIM_INFINITY: u64 = libc::RLIM_INFINITY as u64;

impl Command {
    /// Run `program` (looked up in `PATH` when it has no `/`).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let mut fds = BTreeMap::new();
        fds.insert(0, (Dir::ToChild, Stdio::Inherit));
        fds.insert(1, (Dir::FromChild, Stdio::Inherit));
        fds.insert(2, (Dir::FromChild, Stdio::Inherit));
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
            env_clear: false,
            cwd: None,
            fds,
            pdeathsig: Some(SignalKind::kill()),
            own_group: true,
            closes: BTreeSet::new(),
            close_others: true,
            setup: Setup::default(),
            cancel_signal: SignalKind::terminate(),
            fail_on_nonzero: false,
        }
    }

    /// The program name.
    pub fn program(&self) -> &str {
        self.program.to_str().unwrap_or("?")
    }

    /// Adds an argument.
    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .insert(k.as_ref().to_owned(), Some(v.as_ref().to_owned()));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, k: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(k.as_ref().to_owned(), None);
        self
    }

    /// Starts from an empty environment.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Runs in `dir` (IO::Async's `chdir`; changed in the child before
    /// exec, a failure is an error of op `chdir`). A relative program path
    /// is looked up from `dir`.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().as_os_str().to_owned());
        self
    }

    /// Sets up the child's stdin.
    pub fn stdin(&mut self, s: Stdio) -> &mut Self {
        self.closes.remove(&0);
        self.fds.insert(0, (Dir::ToChild, s));
        self
    }

    /// Sets up the child's stdout.
    pub fn stdout(&mut self, s: Stdio) -> &mut Self {
        self.closes.remove(&1);
        self.fds.insert(1, (Dir::FromChild, s));
        self
    }

    /// Sets up the child's stderr.
    pub fn stderr(&mut self, s: Stdio) -> &mut Self {
        self.closes.remove(&2);
        self.fds.insert(2, (Dir::FromChild, s));
        self
    }

    /// Sets up fd `n` (3 or more) of the child, which the child reads.
    pub fn fd_to_child(&mut self, n: RawFd, s: Stdio) -> &mut Self {
        self.closes.remove(&n);
        self.fds.insert(n, (Dir::ToChild, s));
        self
    }

    /// Sets up fd `n` (3 or more) of the child, which the child writes.
    pub fn fd_from_child(&mut self, n: RawFd, s: Stdio) -> &mut Self {
        self.closes.remove(&n);
        self.fds.insert(n, (Dir::FromChild, s));
        self
    }

    /// The signal the child gets when this process dies (default SIGKILL;
    /// `None` lets it outlive us). It means the *process*: children are
    /// forked by a spawn thread that lives as long as the process, so a
    /// child outlives the thread that asked for it. Setting it needs a
    /// `pre_exec` hook, so the child is started with `fork` rather than
    /// `posix_spawn` (see BENCHMARKS.md). `None`, with
    /// [`close_other_fds(false)`](Command::close_other_fds), no fd above 2
    /// and no setup, gives back `posix_spawn`.
    pub fn parent_death_signal(&mut self, sig: Option<SignalKind>) -> &mut Self {
        self.pdeathsig = sig;
        self
    }

    /// Whether the child leads its own process group (default true).
    pub fn own_process_group(&mut self, on: bool) -> &mut Self {
        self.own_group = on;
        self
    }

    /// Keeps our fd `n` open in the child at the same number (IO::Async's
    /// `fdN => 'keep'`); the same as [`Stdio::Inherit`] on `n`.
    pub fn keep_fd(&mut self, n: RawFd) -> &mut Self {
        self.fd_to_child(n, Stdio::Inherit)
    }

    /// Closes fd `n` in the child (IO::Async's `fdN => 'close'`), also
    /// one of 0 to 2. Undoes an earlier setting of `n`; a later one undoes
    /// this.
    pub fn close_fd(&mut self, n: RawFd) -> &mut Self {
        self.fds.remove(&n);
        self.closes.insert(n);
        self
    }

    /// Whether every fd the command does not name (as stdin, stdout,
    /// stderr, an `fd_*` or [`keep_fd`](Command::keep_fd)) is closed in
    /// the child (default true, IO::Async's contract: no fd of ours leaks
    /// into a child, close-on-exec or not).
    pub fn close_other_fds(&mut self, on: bool) -> &mut Self {
        self.close_others = on;
        self
    }

    /// Sets a resource limit of the child (`setrlimit(2)`): `soft` and
    /// `hard`, [`RLIM_INFINITY`] for none. Raising a hard limit needs
    /// privilege; a failure is an error of op `setrlimit`.
    ///
    /// ```
    /// use ioasync_process::{Command, Resource};
    ///
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "ulimit -n"]).rlimit(Resource::NoFile, 64, 64);
    /// ```
    pub fn rlimit(&mut self, resource: Resource, soft: u64, hard: u64) -> &mut Self {
        self.setup.rlimits.insert(resource, (soft, hard));
        self
    }

    /// Sets the child's file-mode creation mask (`umask(2)`), e.g. `0o077`.
    pub fn umask(&mut self, mask: u32) -> &mut Self {
        self.setup.umask = Some(mask & 0o777);
        self
    }

    /// Adds `inc` to the child's nice value (IO::Async's `nice`, as
    /// `nice(2)`; clamped to -20..=19). Lowering it needs privilege; a
    /// failure is an error of op `nice`.
    pub fn nice(&mut self, inc: i32) -> &mut Self {
        self.setup.nice = Some(inc);
        self
    }

    /// Sets the child's user id, real, effective and saved (IO::Async's
    /// `setuid`). Applied last, after [`setgroups`](Command::setgroups)
    /// and [`setgid`](Command::setgid), which need the privilege it drops.
    /// The supplementary groups are left alone unless `setgroups` is
    /// given, as in IO::Async. A failure is an error of op `setuid`.
    pub fn setuid(&mut self, uid: u32) -> &mut Self {
        self.setup.uid = Some(uid);
        self
    }

    /// Sets the child's group id, real, effective and saved (IO::Async's
    /// `setgid`); a failure is an error of op `setgid`.
    pub fn setgid(&mut self, gid: u32) -> &mut Self {
        self.setup.gid = Some(gid);
        self
    }

    /// Sets the child's supplementary groups (IO::Async's `setgroups`;
    /// needs privilege); a failure is an error of op `setgroups`.
    pub fn setgroups(&mut self, groups: impl IntoIterator<Item = u32>) -> &mut Self {
        self.setup.groups = Some(groups.into_iter().collect());
        self
    }

    /// The signal [`run_child`](crate::run_child) sends the child when its
    /// future is dropped before the child exited (IO::Async's
    /// `cancel_signal`; default SIGTERM). The child is reaped after.
    pub fn cancel_signal(&mut self, sig: SignalKind) -> &mut Self {
        self.cancel_signal = sig;
        self
    }

    /// Makes [`run_child`](crate::run_child) fail (op `run_child`) when the
    /// child does not exit with code 0 (IO::Async's `fail_on_nonzero`);
    /// default false: the status is returned whatever it is.
    pub fn fail_on_nonzero(&mut self, on: bool) -> &mut Self {
        self.fail_on_nonzero = on;
        self
    }

    /// Builds the OS command and the pipes: returns it with our ends.
    pub(crate) fn prepare(self) -> Result<Prepared> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args);
        if self.env_clear {
            cmd.env_clear();
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        // The hook changes directory (so a failure is named `chdir`).
        let chdir = match &self.cwd {
            None => None,
            Some(dir) => Some(std::ffi::CString::new(dir.as_bytes()).map_err(|_| {
                Error::invalid_input("chdir", format!("{dir:?} contains a NUL byte"))
            })?),
        };
        if self.own_group {
            cmd.process_group(0);
        }
        let setup = &self.setup;
        let mut plan = sys::ChildPlan {
            pdeathsig: self.pdeathsig.map(SignalKind::as_raw),
            closes: self.closes.iter().copied().collect(),
            close_others: self.close_others,
            chdir,
            umask: setup.umask,
            rlimits: setup
                .rlimits
                .iter()
                .map(|(r, (s, h))| (r.as_raw(), *s, *h))
                .collect(),
            nice: setup.nice,
            groups: setup.groups.clone(),
            gid: setup.gid,
            uid: setup.uid,
            ..Default::default()
        };
        // With nothing for the hook to do, std sets up 0-2 itself and may
        // use posix_spawn; otherwise the hook sets up every fd, so fds can
        // be swapped whatever their numbers.
        let by_hook = !plan.is_empty() || self.fds.keys().any(|n| *n > 2);
        let mut ends = Vec::new();
        let mut keep = Vec::new(); // child-side fds: open until spawn returns
        for (n, (dir, stdio)) in self.fds {
            let (child_side, ours) = match stdio {
                Stdio::Inherit => {
                    if by_hook {
                        plan.dups.push((n, n));
                    }
                    continue;
                }
                Stdio::Null => {
                    let f = std::fs::OpenOptions::new()
                        .read(dir == Dir::ToChild)
                        .write(dir == Dir::FromChild)
                        .open("/dev/null")
                        .map_err(|e| Error::io_at("open", "/dev/null", e))?;
                    (OwnedFd::from(f), None)
                }
                Stdio::Fd(fd) => (fd, None),
                Stdio::Pipe | Stdio::Stream(_) => {
                    let (r, w) = std::io::pipe().map_err(|e| Error::io("pipe", e))?;
                    let (child, ours) = match dir {
                        Dir::ToChild => (OwnedFd::from(r), OwnedFd::from(w)),
                        Dir::FromChild => (OwnedFd::from(w), OwnedFd::from(r)),
                    };
                    let setup = match stdio {
                        Stdio::Stream(setup) => Some(setup),
                        _ => None,
                    };
                    (child, Some((ours, setup)))
                }
            };
            if let Some((ours, setup)) = ours {
                ends.push(End {
                    n,
                    dir,
                    fd: ours,
                    setup,
                });
            }
            if by_hook {
                plan.dups.push((child_side.as_raw_fd(), n));
                keep.push(child_side);
                continue;
            }
            let s = std::process::Stdio::from(child_side);
            match n {
                0 => cmd.stdin(s),
                1 => cmd.stdout(s),
                _ => cmd.stderr(s),
            };
        }
        if by_hook {
            // std leaves 0-2 alone; the hook does them.
            cmd.stdin(std::process::Stdio::inherit())
                .stdout(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit());
        }
        plan.named = plan.dups.iter().map(|&(_, t)| t).collect();
        plan.named.sort_unstable();
        let max_fd = plan.max_fd();
        let abandon = (self.cancel_signal.as_raw(), self.own_group);
        sys::setup_child(&mut cmd, plan);
        Ok(Prepared {
            job: SpawnJob {
                cmd,
                keep,
                max_fd,
                abandon,
            },
            program: self.program,
            ends,
            own_group: self.own_group,
            cancel_signal: self.cancel_signal,
            fail_on_nonzero: self.fail_on_nonzero,
        })
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("fds", &self.fds)
            .finish()
    }
}

/// Our end of a pipe to the child.
pub(crate) struct End {
    pub(crate) n: RawFd,
    pub(crate) dir: Dir,
    pub(crate) fd: OwnedFd,
    pub(crate) setup: Option<StreamSetup>,
}

/// A command ready to spawn.
pub(crate) struct Prepared {
    job: SpawnJob,
    pub(crate) program: OsString,
    pub(crate) ends: Vec<End>,
    pub(crate) own_group: bool,
    pub(crate) cancel_signal: SignalKind,
    pub(crate) fail_on_nonzero: bool,
}

impl Prepared {
    fn error(program: &OsString, e: std::io::Error) -> Error {
        let (op, e) = sys::decode_error(e);
        Error::io_at(op, program.to_string_lossy(), e)
    }

    /// Spawns on the spawn thread, blocking until it has; a failure is an
    /// error of the step that failed (`exec`, `setuid`, `dup2`, ...) with
    /// its errno.
    pub(crate) fn spawn(self) -> Result<(tokio::process::Child, Vec<End>)> {
        let child = self
            .job
            .spawn_blocking()
            .map_err(|e| Prepared::error(&self.program, e))?;
        Ok((child, self.ends))
    }

    /// Like [`Prepared::spawn`] without blocking the caller's thread.
    pub(crate) async fn spawn_async(self) -> Result<(tokio::process::Child, Prepared2)> {
        let Prepared {
            job,
            program,
            ends,
            own_group,
            cancel_signal,
            fail_on_nonzero,
        } = self;
        let child = job
            .spawn()
            .await
            .map_err(|e| Prepared::error(&program, e))?;
        Ok((
            child,
            Prepared2 {
                program,
                ends,
                own_group,
                cancel_signal,
                fail_on_nonzero,
            },
        ))
    }
}

/// What is left of a [`Prepared`] once spawned.
pub(crate) struct Prepared2 {
    pub(crate) program: OsString,
    pub(crate) ends: Vec<End>,
    pub(crate) own_group: bool,
    pub(crate) cancel_signal: SignalKind,
    pub(crate) fail_on_nonzero: bool,
}
