//! ioasync-nats: the same Channels and Function pools across hosts, on
//! [NATS](https://nats.io) (the `async-nats` client). Users depend on the
//! `ioasync` facade with its `nats` feature.
//!
//! - [`Remote`]: a supervised notifier owning one connection; losses and
//!   reconnects are [`RemoteEvent`]s, the state and server show in the
//!   tree;
//! - [`NatsTransport`]: the core [`Transport`](ioasync_core::Transport)
//!   over it (subjects as addresses, request/reply, queue groups);
//! - [`channel`]: typed channels over subjects, the receiver a plain
//!   [`Receiver<T>`](ioasync_core::channel::Receiver);
//! - [`WorkerHost`]: serves a Function pool's calls from this process
//!   with the same typed entries ([`EntryPoint`](ioasync_worker::EntryPoint))
//!   local worker processes run;
//! - [`RemotePool`], [`RemoteEntry`]: calls to the hosts of a pool, each
//!   with a deadline and an id; lost hosts fail their calls within
//!   [`host_lost_after`](RemotePoolSpec::host_lost_after) or retry them;
//!   optional JetStream work-queue mode ([`PoolMode::JetStream`]).
//!
//! ```no_run
//! use ioasync::{worker::EntryPoint, Loop};
//! use ioasync::nats::{Remote, RemoteEntryPoint, WorkerHost};
//!
//! static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
//!
//! fn main() -> ioasync::Result<()> {
//!     let lp = Loop::new()?;
//!     let l = lp.clone();
//!     lp.block_on(async move {
//!         let nats = l.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
//!         if std::env::args().any(|a| a == "--worker-host") {
//!             // This process serves the pool "squares".
//!             l.add(WorkerHost::spec("host", &nats, "squares", SQUARE.runs(|n| n * n))).await?;
//!             return l.run::<()>().await;
//!         }
//!         let pool = l.add(SQUARE.remote_pool(&nats, "squares")).await?;
//!         let square = SQUARE.on_remote(&pool)?;
//!         assert_eq!(square.call(&12).await?, 144);
//!         Ok(())
//!     })
//! }
//! ```
//!
//! # Implementation
//!
//! A call is one NATS message to the pool's subject, which its hosts
//! subscribe in one queue group (NATS gives each message to one live
//! member; a dead host's subscription ends with its connection), with the
//! reply subject `<pool's inbox>.<call id>`. The pool reads its inbox in
//! its notifier and hands each reply to the call of that id, if it still
//! waits; otherwise the reply is dropped. Hosts publish a heartbeat every
//! 100 ms listing the calls they hold, which tells the pool which host
//! holds which call and when a host is gone.

#![doc(test(attr(deny(warnings))))]

pub mod channel;
mod host;
mod pool;
mod remote;
mod transport;
mod wire;

pub use host::{WorkerHost, WorkerHostArgs, WorkerHostSpec};
pub use pool::{
    PoolEvent, PoolMode, RemoteEntry, RemoteEntryPoint, RemotePool, RemotePoolArgs, RemotePoolRef,
    RemotePoolSpec, RemoteStats, call_raw, offload,
};
pub use remote::{Remote, RemoteArgs, RemoteEvent, RemoteRef, RemoteSpec};
pub use transport::NatsTransport;

/// The async-nats client crate, for what this crate does not wrap (see
/// [`RemoteRef::client`]).
pub use async_nats;
