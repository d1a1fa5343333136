//! [`Command`]: what to run and how its fds are set up; mirrors
//! `std::process::Command`.

use std::{
    collections::BTreeMap,
    ffi::{OsStr, OsString},
    fmt,
    os::fd::{AsRawFd, OwnedFd, RawFd},
    path::Path,
};

use ioasync_core::{Error, Result, Spec};
use ioasync_io::{Stream, StreamSpec};
use ioasync_signal::SignalKind;

use crate::sys;

/// Configures the [`Stream`](ioasync_io::Stream) made over a child's fd.
pub type StreamSetup = Box<dyn FnOnce(StreamSpec) -> Spec<Stream> + Send>;

/// How one of the child's fds is set up.
pub enum Stdio {
    /// The child shares ours.
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
/// use ioasync::{Command, Stdio};
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
}

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

    /// Runs in `dir`.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().as_os_str().to_owned());
        self
    }

    /// Sets up the child's stdin.
    pub fn stdin(&mut self, s: Stdio) -> &mut Self {
        self.fds.insert(0, (Dir::ToChild, s));
        self
    }

    /// Sets up the child's stdout.
    pub fn stdout(&mut self, s: Stdio) -> &mut Self {
        self.fds.insert(1, (Dir::FromChild, s));
        self
    }

    /// Sets up the child's stderr.
    pub fn stderr(&mut self, s: Stdio) -> &mut Self {
        self.fds.insert(2, (Dir::FromChild, s));
        self
    }

    /// Sets up fd `n` (3 or more) of the child, which the child reads.
    pub fn fd_to_child(&mut self, n: RawFd, s: Stdio) -> &mut Self {
        self.fds.insert(n, (Dir::ToChild, s));
        self
    }

    /// Sets up fd `n` (3 or more) of the child, which the child writes.
    pub fn fd_from_child(&mut self, n: RawFd, s: Stdio) -> &mut Self {
        self.fds.insert(n, (Dir::FromChild, s));
        self
    }

    /// The signal the child gets when this process dies (default SIGKILL;
    /// `None` lets it outlive us). Setting it needs a `pre_exec` hook, so
    /// the child is started with `fork` rather than `posix_spawn`: about
    /// 1.4x the spawn time here (see BENCHMARKS.md). `None` (and no extra
    /// fds) gives back `posix_spawn`.
    pub fn parent_death_signal(&mut self, sig: Option<SignalKind>) -> &mut Self {
        self.pdeathsig = sig;
        self
    }

    /// Whether the child leads its own process group (default true).
    pub fn own_process_group(&mut self, on: bool) -> &mut Self {
        self.own_group = on;
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
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if self.own_group {
            cmd.process_group(0);
        }
        let mut ends = Vec::new();
        let mut keep = Vec::new(); // child-side fds: open until spawn returns
        let mut dups = Vec::new();
        for (n, (dir, stdio)) in self.fds {
            let (child_side, ours) = match stdio {
                Stdio::Inherit if n <= 2 => (None, None),
                Stdio::Inherit => continue,
                Stdio::Null => {
                    let f = std::fs::OpenOptions::new()
                        .read(dir == Dir::ToChild)
                        .write(dir == Dir::FromChild)
                        .open("/dev/null")
                        .map_err(|e| Error::io_at("open", "/dev/null", e))?;
                    (Some(OwnedFd::from(f)), None)
                }
                Stdio::Fd(fd) => (Some(fd), None),
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
                    (Some(child), Some((ours, setup)))
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
            let Some(child_side) = child_side else {
                continue;
            };
            match n {
                0 => {
                    cmd.stdin(std::process::Stdio::from(child_side));
                }
                1 => {
                    cmd.stdout(std::process::Stdio::from(child_side));
                }
                2 => {
                    cmd.stderr(std::process::Stdio::from(child_side));
                }
                _ => {
                    dups.push((child_side.as_raw_fd(), n));
                    keep.push(child_side);
                }
            }
        }
        sys::setup_child(&mut cmd, self.pdeathsig.map(SignalKind::as_raw), dups);
        Ok(Prepared {
            cmd,
            program: self.program,
            ends,
            keep,
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
    pub(crate) cmd: tokio::process::Command,
    pub(crate) program: OsString,
    pub(crate) ends: Vec<End>,
    keep: Vec<OwnedFd>,
}

impl Prepared {
    /// Spawns; exec failures are errors of op `exec` with the errno.
    pub(crate) fn spawn(mut self) -> Result<(tokio::process::Child, Vec<End>)> {
        let child = self
            .cmd
            .spawn()
            .map_err(|e| Error::io_at("exec", self.program.to_string_lossy(), e))?;
        drop(self.keep);
        Ok((child, self.ends))
    }
}
