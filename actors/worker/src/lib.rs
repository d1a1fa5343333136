//! ioasync-worker: Rust code in worker processes. Users depend on the
//! `ioasync` facade, which re-exports everything here.
//!
//! - [`EntryPoint`]: an entry declared once with its types, for the
//!   worker ([`EntryPoint::runs`]) and for typed calls
//!   ([`EntryPoint::on`]);
//! - [`Entry`] and [`run_if_worker`]: named entry points; the program
//!   re-executes itself as a worker (no `fork` of a process that runs
//!   tokio threads);
//! - [`channel`]: typed, bounded mailboxes, local or bridged over a
//!   socket as length-prefixed MessagePack frames with a size cap; the
//!   bridge runs on [`channel::SocketpairTransport`], the core
//!   `Transport` over a socketpair;
//! - [`Function`]: a fault-tolerant pool of worker processes;
//! - [`Routine`]: one worker process with a channel in and a channel out,
//!   supervised like any notifier.
//!
//! # Implementation
//!
//! A worker is the program's own binary started with an environment
//! variable naming the entry and its end of a socketpair on fd 3; it
//! serves calls with blocking reads and writes on that socket until the
//! parent closes it. In the parent, the pool is one notifier that writes
//! calls and (one task per worker) reads replies; each worker process is
//! owned by a [`FunctionWorker`], a temporary child of the pool in the
//! tree that reaps it and ends with it. Workers share the parent's
//! stdout and stderr unless [`WorkerOutput::Null`] is chosen.

#![doc(test(attr(deny(warnings))))]

pub mod channel;
mod entry;
mod fd_channel;
mod frame;
mod function;
mod routine;
mod socketpair;
mod typed;
mod worker;

pub use entry::{ENTRY_ENV, Entry, EntryRunner, RoutineIo, WORKER_FD, heartbeat, run_if_worker};
pub use frame::{DEFAULT_MAX_FRAME, decode, encode};
pub use function::{
    CallOptions, DeadLetter, Function, FunctionArgs, FunctionRef, FunctionSpec, FunctionStats,
    WorkerOutput,
};
pub use routine::{
    DEFAULT_CHECKPOINT_LIMIT, Routine, RoutineArgs, RoutineEvent, RoutineIoHandle, RoutineRef,
    RoutineResult, RoutineSpec,
};
pub use typed::{EntryPoint, EntryRef, Failure};
pub use worker::{FunctionWorker, WorkerArgs};
