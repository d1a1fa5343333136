//! ioasync-process: child processes as notifiers (IO::Async::Process, PID
//! and the Loop's child helpers). Users depend on the `ioasync` facade,
//! which re-exports everything here.
//!
//! - [`Command`]: what to run, mirroring `std::process::Command`, with any
//!   fd set up as a pipe, a [`Stream`](ioasync_io::Stream), inherited,
//!   `/dev/null` or a given fd ([`Stdio`]);
//! - [`Process`]: a notifier running a command, reporting
//!   [`ProcessEvent::Finished`] or [`ProcessEvent::Exception`], with a
//!   [`ProcessHandle`] for its pid, pipes, `kill` and exit future;
//! - [`Pid`]: watches a child started by other means;
//! - [`spawn_child`], [`run_child`]: the Loop's helpers;
//! - [`ExitStatus`]: an exit code or a terminating signal.
//!
//! No zombies, no orphans: every child is reaped (by its notifier, or
//! tokio's orphan queue when a handle is dropped); a removed Process stops
//! its child (TERM, a grace period, KILL); a cancelled [`run_child`]
//! signals its child ([`Command::cancel_signal`]) and reaps it; children
//! lead their own process group and get SIGKILL when this process dies,
//! even by SIGKILL (Linux's parent-death signal) — this *process*, not the
//! thread that spawned them.
//!
//! # The child's setup (IO::Async's contract)
//!
//! Before exec, in this order: the parent-death signal; the fds (every fd
//! the command names is set up, whatever the numbers — a source sitting
//! on another mapping's target is moved aside first; [`Command::keep_fd`]
//! keeps one of ours; [`Command::close_fd`] closes one; every fd not named
//! is closed, unless [`Command::close_other_fds`]`(false)`); the working
//! directory; `umask`; resource limits; `nice`; `setgroups`, `setgid`,
//! `setuid` (last: they drop the privilege the others may need). A step
//! that fails is an error of its op (`dup2`, `chdir`, `setrlimit`, `nice`,
//! `setgroups`, `setgid`, `setuid`) with the errno; exec's own failure is
//! op `exec`.
//!
//! # Implementation
//!
//! Commands start through tokio's process support (std's fork + exec,
//! never a fork that runs Rust code), on a spawn thread that lives as long
//! as the process (so the parent-death signal, which Linux ties to the
//! forking thread, means the process); the setup above is an
//! async-signal-safe `pre_exec` hook that allocates nothing. A Process
//! waits with tokio's `Child::wait`; a Pid waits on a pidfd.

#![doc(test(attr(deny(warnings))))]

mod children;
mod command;
mod pid;
mod process;
mod run;
mod spawner;
mod status;
mod sys;

pub use children::{ChildExit, Children};
pub use command::{Command, RLIM_INFINITY, Resource, Stdio, StreamSetup};
pub use pid::{Pid, PidArgs, PidRef};
pub(crate) use process::Kill;
pub use process::{
    ExitWatch, KillPolicy, Process, ProcessArgs, ProcessEvent, ProcessException, ProcessHandle,
    ProcessRef, ProcessSpec,
};
pub use run::{ChildOutput, SpawnedChild, run_child, spawn_child};
pub use status::ExitStatus;
