//! ioasync-core: notifiers as supervised kameo actors.
//!
//! Users depend on the `ioasync` facade, which re-exports everything here.
//! This crate holds what every layer shares and does no OS IO:
//!
//! - [`Notifier`], [`Handler`], [`Ctx`], [`NotifierRef`]: a notifier's
//!   behaviour, its messages, and its handle;
//! - [`Spec`], [`Restart`], [`Strategy`], [`Backoff`], [`Policy`]: how it
//!   is started and supervised (Erlang/OTP semantics);
//! - [`NodeState`]: the one lifecycle every notifier goes through (its
//!   page has the table of states and transitions);
//! - [`Tree`]: a root, a registry by id and path, supervision events, and
//!   ordered [`shutdown`](Tree::shutdown) with deadlines;
//! - [`Emits`], [`Subscription`], [`EventStream`], [`Overflow`], [`Exit`]:
//!   the one event path (closure, typed actor message, or stream), owned by
//!   each notifier's runtime so that it outlives restarts;
//! - [`NodeSnapshot`]: the tree as plain data, `Display`ed indented;
//! - [`Error`]: message, operation, errno, source;
//! - [`channel`]: typed, bounded mailboxes (bridged across processes by
//!   the worker layer);
//! - [`Transport`]: moves frames to logical addresses (a channel's or a
//!   pool's name) with errors that say whether a message may have been
//!   delivered ([`Delivery`]); the NATS crate implements it.
//!
//! # Supervision rules
//!
//! - A failure is a panic in `init`, `on_ready`, a handler or `on_stop`, a
//!   handler calling [`Ctx::fail`], an `init` past its init timeout, or
//!   (for permanent children) [`Ctx::exit`]. It is contained to the
//!   notifier: its children are stopped, its `on_stop` runs, [`Exit`] is
//!   emitted with the reason, its state is dropped.
//! - The decision is a pure function of the child's [`Restart`] type, its
//!   restart limit, its parent's [`Strategy`], the reason and the restart
//!   history. One-for-one restarts happen in the child's own runtime after
//!   its [`Backoff`]; group restarts (one-for-all, rest-for-one) run in a
//!   short task that takes turns per parent. The parent never waits for a
//!   child inside a handler, and every wait is bounded: a child that does
//!   not finish `init` or a stop in time is killed and reported.
//! - Past `max_restarts` failures within `window`, the child leaves the
//!   tree and its parent fails with [`ExitReason::Escalated`]: the
//!   grandparent decides, once.
//! - A notifier stopped through its handle ([`NotifierRef::stop`]) or
//!   killed is stopped on purpose: it leaves the tree and is not restarted.
//! - A first start that fails is not restarted: the `add` gets the error.
//!
//! # Messages and failures
//!
//! The rule for queued messages: a restart happens in the same actor on the
//! same mailbox, so messages queued for a failed notifier are handled by its
//! next incarnation, in order; only the message whose handler panicked is
//! consumed (its asker gets an error). When a notifier stops for good,
//! queued messages are first handled (graceful stop drains the mailbox);
//! if its incarnation had failed, each queued ask gets a `Closed` error and
//! the queued tells are reported as [`SupervisionEventKind::Undelivered`].
//!
//! # Panics
//!
//! A contained panic is one error line (message and location) from the
//! notifier's span, not the default hook's report: the hook installed when
//! the first notifier starts records the location and stays quiet for
//! panics inside notifiers (`IOASYNC_BACKTRACE=1` brings the default
//! report and backtrace back). Panics elsewhere are reported as usual.
//!
//! # Implementation
//!
//! Each notifier is one kameo actor (one tokio task). Its `next` override
//! drives the lifecycle and selects over a control queue (a mutex-guarded
//! deque and a single waker, no task of its own), the kameo mailbox and the
//! notifier's own source ([`Notifier::ready`]).
//!
//! The modules are layered, imports pointing down only: leaf data
//! (`error`, `policy`, `exit`, `state`, `snapshot`, `queue`, `event`,
//! `panic`, `channel`, `transport`), then the tree (`registry`, `node`, `shutdown`), then
//! notifiers (`notifier`, `spec`, `supervisor`, `runtime`, `tree`).

#![doc(test(attr(deny(warnings))))]

pub mod channel;
mod error;
mod event;
mod exit;
mod node;
mod notifier;
mod panic;
mod policy;
mod queue;
mod registry;
mod runtime;
mod shutdown;
mod snapshot;
mod spec;
mod state;
mod supervisor;
mod timers;
pub mod transport;
mod tree;
// The one module with `unsafe`: a waker's vtable over a weak node
// reference (the workspace denies `unsafe_code` everywhere else).
#[allow(unsafe_code)]
mod wake;

#[cfg(feature = "test-util")]
pub mod test_util;

pub use error::{Error, ErrorKind, Result};
pub use event::{Emits, EventStream, Subscription};
pub use exit::{Exit, ExitReason, SupervisionEvent, SupervisionEventKind};
pub use notifier::{Ctx, Handler, Notifier, NotifierActor, NotifierRef, Start};
pub use panic::catch_panic;
pub use policy::{Backoff, Policy, Restart, Strategy};
pub use queue::Overflow;
pub use shutdown::ShutdownReport;
pub use snapshot::NodeSnapshot;
pub use spec::{AnySpec, IntoSpec, Once, Spec};
pub use state::NodeState;
pub use transport::{Delivery, PeerEvent, Transport, TransportError};
pub use tree::{CallAt, Root, RootArgs, Tree};
