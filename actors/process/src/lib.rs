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
//! its child (TERM, a grace period, KILL); children lead their own process
//! group and get SIGKILL when this process dies, even by SIGKILL (Linux's
//! parent-death signal).
//!
//! # Implementation
//!
//! Commands start through tokio's process support (fork + exec, never a
//! fork that runs Rust code); extra fds and the parent-death signal are
//! set up by an async-signal-safe `pre_exec` hook. A Process waits with
//! tokio's `Child::wait` (tokio's SIGCHLD reaper); a Pid waits on a pidfd.

#![doc(test(attr(deny(warnings))))]

mod command;
mod pid;
mod process;
mod run;
mod spawner;
mod status;
mod sys;

pub use command::{Command, RLIM_INFINITY, Resource, Stdio, StreamSetup};
pub use pid::{Pid, PidArgs};
pub use process::{
    ExitWatch, Kill, KillPolicy, Process, ProcessArgs, ProcessEvent, ProcessException,
    ProcessHandle, ProcessSpec,
};
pub use run::{ChildOutput, SpawnedChild, run_child, spawn_child};
pub use status::ExitStatus;
