//! # ioasync
//!
//! Perl's [IO::Async] re-made in Rust as an actor framework: every
//! *notifier* (a stream, a listener, a timer, a signal watcher, a child
//! process, a worker pool) is a supervised [kameo] actor in a parent/child
//! tree rooted at the [`Loop`], running on tokio.
//!
//! [IO::Async]: https://metacpan.org/pod/IO::Async
//! [kameo]: https://docs.rs/kameo
//!
//! ## A tour
//!
//! A notifier is a type implementing [`Notifier`](crate::notifier::Notifier) (how it starts, stops and
//! what OS source it waits on) and [`Handler`](crate::notifier::Handler) for each message it takes.
//! A [`Spec`](crate::notifier::Spec) says how to start it and how its parent supervises it.
//!
//! ```
//! use std::time::Duration;
//! use ioasync::prelude::*;
//!
//! struct Greeter { greeting: String }
//!
//! impl Notifier for Greeter {
//!     type Args = String;
//!     async fn init(greeting: String, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
//!         Ok(Greeter { greeting })
//!     }
//! }
//!
//! struct Greet(&'static str);
//! impl Handler<Greet> for Greeter {
//!     type Reply = String;
//!     async fn handle(&mut self, Greet(who): Greet, _ctx: &mut Ctx<'_, Self>) -> String {
//!         format!("{}, {who}!", self.greeting)
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> ioasync::Result<()> {
//!     let lp = Loop::current()?;
//!     let greeter = lp
//!         .add(Spec::<Greeter>::new("greeter", "Hello".to_string())
//!             .restart(Restart::Permanent)
//!             .restart_limit(3, Duration::from_secs(5)))
//!         .await?;
//!     assert_eq!(greeter.ask(Greet("world")).await?, "Hello, world!");
//!     println!("{}", lp.tree());
//!     let report = lp.shutdown(Some(Duration::from_secs(1))).await;
//!     assert!(report.is_clean());
//!     Ok(())
//! }
//! ```
//!
//! ### A service
//!
//! A [`Listener`](crate::io::Listener) starts a supervised child per
//! connection; here each is a [`Framed`](crate::io::Framed) line stream
//! that answers every line it reads.
//!
//! ```
//! use ioasync::{io::{codec::LineCodec, Framed, Listen, Listener}, prelude::*};
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//!
//! #[tokio::main]
//! async fn main() -> ioasync::Result<()> {
//!     let lp = Loop::current()?;
//!     let at: ioasync::io::Address = "127.0.0.1:0".parse()?;
//!     let shout = lp
//!         .add(Listener::spec("shout", Listen::new(at), |conn, peer| {
//!             Framed::spec(format!("conn-{peer}"), conn, LineCodec::new())
//!                 .on_frame(|io, line: String| {
//!                     let _ = io.send(line.to_uppercase());
//!                 })
//!         }))
//!         .await?;
//!     let addr = shout.local_addr().await?.as_inet().unwrap();
//!
//!     let mut client = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
//!     client.write_all(b"hello\n").await.unwrap();
//!     let mut reply = String::new();
//!     client.read_line(&mut reply).await.unwrap();
//!     assert_eq!(reply, "HELLO\n");
//!     assert!(lp.shutdown(None).await.is_clean());
//!     Ok(())
//! }
//! ```
//!
//! ### A pool
//!
//! A [`Function`](crate::worker::Function) runs a registered
//! [`Entry`](crate::worker::Entry) in worker processes: the program
//! re-executes itself, so [`run_if_worker`](crate::worker::run_if_worker)
//! comes first in `main`, before any runtime is built.
//!
//! ```standalone_crate
//! use ioasync::{prelude::*, worker::{Entry, Function, run_if_worker}};
//!
//! fn fib(n: u64) -> u64 {
//!     if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
//! }
//!
//! fn main() -> ioasync::Result<()> {
//!     run_if_worker([Entry::function("fib", fib)]);
//!     let lp = Loop::new()?;
//!     let l = lp.clone();
//!     lp.block_on(async move {
//!         let pool = l.add(Function::spec("fib", "fib").max_workers(2)).await?;
//!         let (a, b) = tokio::join!(pool.call::<_, u64>(&20u64), pool.call::<_, u64>(&25u64));
//!         assert_eq!((a?, b?), (6765, 75025));
//!         assert!(pool.stats().await?.workers <= 2);
//!         Ok(())
//!     })
//! }
//! ```
//!
//! ### A process
//!
//! A [`Process`](crate::process::Process) runs a
//! [`Command`](crate::process::Command) as a notifier; any of its fds can
//! be a pipe or a [`Stream`](crate::io::Stream), and its exit is reported
//! once its output has been read to the end.
//!
//! ```
//! use ioasync::{io::ReadFor, prelude::*, process::{Command, Process, Stdio}};
//!
//! #[tokio::main]
//! async fn main() -> ioasync::Result<()> {
//!     let lp = Loop::current()?;
//!     let mut cmd = Command::new("sh");
//!     cmd.args(["-c", "tr a-z A-Z; exit 2"])
//!         .stdin(Stdio::stream(|s| s))
//!         .stdout(Stdio::stream(|s| s));
//!     let child = lp.open_process(Process::spec("upper", cmd)).await?;
//!
//!     let stdin = child.stream(0).unwrap();
//!     stdin.write("quiet please\n").await?;
//!     stdin.close_when_empty().await?;
//!     let (out, _eof) = child.stream(1).unwrap().read(ReadFor::Eof).await?;
//!     assert_eq!(&out[..], b"QUIET PLEASE\n");
//!     assert_eq!(child.wait().await?.code(), Some(2));
//!     Ok(())
//! }
//! ```
//!
//! ### Supervision
//!
//! A panic in a notifier's handler is contained to that notifier: its
//! children are stopped, its state dropped, and its parent applies the
//! child's [`Restart`](crate::supervision::Restart) type, its restart limit and [`Backoff`](crate::supervision::Backoff), and its own
//! [`Strategy`](crate::supervision::Strategy) (one-for-one, one-for-all, rest-for-one). Past the limit the
//! failure escalates to the grandparent, once. See [`ioasync_core`]'s
//! "Supervision rules" for the whole contract, including what happens to
//! queued messages.
//!
//! ### Events, three ways
//!
//! A notifier's events reach a closure run inside the notifier, a typed
//! message to any kameo actor, or a [`tokio_stream::Stream`]: see
//! [`Subscription`](crate::notifier::Subscription), [`NotifierRef::events`](crate::notifier::NotifierRef::events) and [`Emits`](crate::notifier::Emits). Subscriber
//! lists belong to each notifier's runtime, so they outlive restarts; every
//! notifier emits [`Exit`](crate::supervision::Exit) when an incarnation ends, however it ended.
//!
//! ### The Loop
//!
//! [`Loop`] owns (or adopts) the tokio runtime and the root notifier, and
//! offers IO::Async's loop methods: `run` / `stop`, `add` / `remove`,
//! `later`, `watch_time` (a [`TimerWatch`](crate::time::TimerWatch) guard), `delay_future`,
//! `timeout_future`, the [`tree`](Loop::tree) snapshot and an ordered
//! [`shutdown`](Loop::shutdown) with deadlines.
//!
//! ### Network
//!
//! [`Stream`](crate::io::Stream) (IO::Async's `on_read` contract, flush futures, watermarks,
//! half-close), [`Framed`](crate::io::Framed) (codecs: typed frames in and out), [`Socket`](crate::io::Socket)
//! (datagrams), [`Listener`](crate::io::Listener) (a supervised child per connection),
//! [`Handle`](crate::io::Handle) (raw readiness), and [`Loop::connect`] (Happy Eyeballs),
//! [`Loop::listen`], [`Loop::resolve`].
//!
//! ### Time, signals, processes
//!
//! Timers ([`Absolute`](crate::time::Absolute), [`Countdown`](crate::time::Countdown), [`Periodic`](crate::time::Periodic) with hard, skip and
//! drift rescheduling), [`Signal`](crate::signal::Signal) watchers, child processes ([`Process`](crate::process::Process)
//! with any fd as a pipe or a [`Stream`](crate::io::Stream), [`Pid`](crate::process::Pid)) and the Loop's
//! [`spawn_child`](Loop::spawn_child), [`run_child`](Loop::run_child) and
//! [`open_process`](Loop::open_process). Children are always reaped, lead
//! their own process group, and die with this process.
//!
//! ### Worker processes
//!
//! [`Function`](crate::worker::Function) pools run a registered [`Entry`](crate::worker::Entry) in worker processes (the
//! program re-executes itself; call [`run_if_worker`](crate::worker::run_if_worker) first thing in
//! `main`); [`channel`]s carry typed messages within a process or across
//! one.
//!
//! Coming from Perl? See the [`guide`].
//!
//! ## Implementation
//!
//! - Each notifier is one kameo actor, that is one tokio task; its `next`
//!   selects over a control queue, its kameo mailbox and its OS source.
//!   No notifier has a second task.
//! - The loop has no task outside the tree: `later` and `watch_time`
//!   callbacks run inside the root notifier, from one deadline-ordered map
//!   over tokio's timer. The watches (`watch_file`, `attach_signal`,
//!   `watch_process`) are notifiers under the root, each returned behind a
//!   guard ([`Watch`](crate::notifier::Watch)) that removes it when
//!   dropped; `watch_io` is a [`Handle`](crate::io::Handle) notifier keyed
//!   by its fd, as IO::Async's.
//! - [`Loop::block_on`] runs user code on a runtime worker, never on the
//!   calling thread (an `ask` from `block_on`'s own thread costs 25x more).
//! - kameo is used without its `tracing` feature; each notifier has its own
//!   `tracing` span named `notifier` with its tree path.
//! - IO notifiers own their socket inside their actor and wait on tokio's
//!   readiness (`poll_read_ready` / `poll_write_ready`), then use `try_*`
//!   reads and writes: no task per connection besides the actor, no copy
//!   between tasks. `getaddrinfo` runs on tokio's blocking pool.

#![doc(test(attr(deny(warnings))))]

pub mod control;
pub mod guide;
mod ioloop;
mod watch;

pub use ioasync_core::{Error, Result};
pub use ioloop::Loop;

/// Errors: every failure names its operation, and its errno where a system
/// call failed.
pub mod error {
    pub use ioasync_core::{Error, ErrorKind, Result};
}

/// How a [`Loop`] is built and owns its runtime.
pub mod runtime {
    pub use crate::ioloop::{Loop, LoopBuilder};
}

/// Writing and addressing notifiers: the [`Notifier`](crate::notifier::Notifier) and [`Handler`](crate::notifier::Handler)
/// traits, the [`Spec`](crate::notifier::Spec) that starts one, its [`NotifierRef`](crate::notifier::NotifierRef) handle, its
/// [`Ctx`](crate::notifier::Ctx) inside handlers, and events ([`Subscription`](crate::notifier::Subscription), [`Emits`](crate::notifier::Emits),
/// [`EventStream`](crate::notifier::EventStream)).
pub mod notifier {
    pub use crate::watch::Watch;
    pub use ioasync_core::{
        AnySpec, Ctx, Emits, EventStream, Handler, IntoSpec, Notifier, NotifierActor, NotifierRef,
        Once, Overflow, Spec, Subscription,
    };
}

/// The tree and its rules: [`Restart`](crate::supervision::Restart) types, [`Strategy`](crate::supervision::Strategy), [`Backoff`](crate::supervision::Backoff),
/// supervision events, the [`Tree`](crate::supervision::Tree) snapshot and ordered shutdown reports.
pub mod supervision {
    pub use ioasync_core::{
        Backoff, Exit, ExitReason, NodeSnapshot, NodeState, Policy, Restart, Root, ShutdownReport,
        Strategy, SupervisionEvent, SupervisionEventKind, Tree,
    };
}

/// Byte streams, framed streams, sockets, listeners and raw readiness:
/// IO::Async's Stream, Protocol::Stream, Socket, Listener and Handle, plus
/// connecting, listening, resolving, codecs and (feature `tls`) TLS.
pub mod io {
    pub use crate::ioloop::{IoDirs, IoWatch};
    pub use ioasync_io::{
        ACCEPT_BACKOFF, Address, AsyncIo, ByteStream, ByteStreamArgs, ByteStreamSpec, Connect,
        Connection, Connector, ConnectorArgs, ConnectorEvent, ConnectorRef, ConnectorSpec,
        DEFAULT_ATTEMPT_DELAY, Datagram, DatagramConnection, DatagramEvent, Dest, Family, Framed,
        FramedArgs, FramedEvent, FramedIo, FramedRef, FramedSink, FramedSocket, FramedSocketArgs,
        FramedSocketRef, FramedSpec, Frames, Handle, HandleArgs, HandleEvent, HandleIo, HandleRef,
        HandleSpec, HangupFn, IoConnection, Limits, Listen, ListenSocket, Listener, ListenerArgs,
        ListenerEvent, ListenerRef, MAX_ACCEPT_BACKOFF, OnStream, Protocol, PushedRead, RawBytes,
        ReadAction, ReadFor, ReadResult, ReadyFn, Session, SessionArgs, SessionInfo, SessionRef,
        SockAddr, SockType, Socket, SocketArgs, SocketEvent, SocketRef, StopSignal, Stream,
        StreamArgs, StreamEvent, StreamInfo, StreamIo, StreamRef, StreamSpec, TrySendError,
        WhileDown, Written, codec, name_of, open_fd_count, resolve,
    };
    #[cfg(feature = "tls")]
    pub use ioasync_io::{DEFAULT_HANDSHAKE_TIMEOUT, TlsClient, TlsServer};
}

/// Watching files: IO::Async's File (stat changes) and FileStream (a
/// growing file read as a stream, `tail -F`).
pub mod fs {
    pub use ioasync_io::{
        File, FileArgs, FileEvent, FileStat, FileStream, FileStreamArgs, FileStreamEvent,
        FileStreamSpec, Initial, OnTruncate, StartAt, WatchMode,
    };
}

/// Timers: [`Absolute`](crate::time::Absolute), [`Countdown`](crate::time::Countdown) and [`Periodic`](crate::time::Periodic) notifiers, and the
/// Loop's `watch_time` guards.
pub mod time {
    pub use crate::ioloop::When;
    pub use crate::watch::TimerWatch;
    pub use ioasync_time::{
        Absolute, AbsoluteArgs, AbsoluteRef, Countdown, CountdownArgs, CountdownRef, Expired,
        Periodic, PeriodicArgs, PeriodicRef, PeriodicSpec, Reschedule, Tick,
    };
}

/// Signal watchers: the [`Signal`](crate::signal::Signal) notifier, [`SignalKind`](crate::signal::SignalKind), and [`hold`](crate::signal::hold)
/// to keep a signal's disposition while nothing watches it.
pub mod signal {
    pub use ioasync_signal::{Hold, Signal, SignalArgs, SignalEvent, SignalKind, SignalRef, hold};
}

/// Child processes: [`Command`](crate::process::Command), the [`Process`](crate::process::Process) and [`Pid`](crate::process::Pid) notifiers,
/// [`spawn_child`](crate::process::spawn_child) and [`run_child`](crate::process::run_child).
pub mod process {
    pub use ioasync_process::{
        ChildExit, ChildOutput, Children, Command, ExitStatus, ExitWatch, KillPolicy, Pid, PidArgs,
        PidRef, Process, ProcessArgs, ProcessEvent, ProcessException, ProcessHandle, ProcessRef,
        ProcessSpec, RLIM_INFINITY, Resource, SpawnedChild, Stdio, StreamSetup, run_child,
        spawn_child,
    };
}

/// Code in worker processes: [`Function`](crate::worker::Function) pools and [`Routine`](crate::worker::Routine)s running a
/// registered [`Entry`](crate::worker::Entry); call [`run_if_worker`](crate::worker::run_if_worker) first thing in `main`.
pub mod worker {
    pub use ioasync_worker::{
        CallOptions, DEFAULT_CHECKPOINT_LIMIT, DeadLetter, Entry, EntryPoint, EntryRef,
        EntryRunner, Failure, Function, FunctionArgs, FunctionRef, FunctionSpec, FunctionStats,
        FunctionWorker, Routine, RoutineArgs, RoutineEvent, RoutineIo, RoutineIoHandle, RoutineRef,
        RoutineResult, RoutineSpec, WorkerArgs, WorkerOutput, decode, encode, heartbeat,
        run_if_worker,
    };
}

pub use ioasync_worker::channel;

/// The transport seam: moving frames to logical addresses (a channel or
/// a pool's name), and the errors that say whether a message may have
/// been delivered. The NATS transport implements it.
pub use ioasync_core::transport;

/// Channels and Function pools across hosts over NATS (feature `nats`).
#[cfg(feature = "nats")]
pub use ioasync_nats as nats;

/// Test utilities: gated notifiers, journals, event recorders, paused time.
#[cfg(feature = "test-util")]
pub use ioasync_core::test_util;

/// kameo, for users who send notifier events to their own actors.
pub use kameo;

/// The names most programs need: the Loop, writing and starting notifiers,
/// supervision, and every handle trait (their methods need them in scope).
pub mod prelude {
    pub use crate::io::{
        Address, Connect, ConnectorRef, Framed, FramedRef, FramedSocketRef, HandleRef, Listen,
        Listener, ListenerRef, ReadAction, ReadFor, SessionRef, SocketRef, Stream, StreamRef,
    };
    #[cfg(feature = "nats")]
    pub use crate::nats::{RemotePoolRef, RemoteRef};
    pub use crate::notifier::{
        Ctx, Emits, Handler, IntoSpec, Notifier, NotifierRef, Overflow, Spec, Subscription,
    };
    pub use crate::process::{PidRef, ProcessRef};
    pub use crate::signal::SignalRef;
    pub use crate::supervision::{Backoff, Exit, Restart, Strategy};
    pub use crate::time::{AbsoluteRef, CountdownRef, PeriodicRef};
    pub use crate::worker::{FunctionRef, RoutineRef};
    pub use crate::{Error, Loop, Result};
}

/// README.md's examples, compiled and run as doctests: the taste stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
