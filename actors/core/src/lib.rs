//! ioasync-core: notifiers as supervised kameo actors.
//!
//! Users depend on the `ioasync` facade, which re-exports everything here.
//! This crate holds what every layer shares and does no OS IO:
//!
//! - [`Notifier`], [`Handler`], [`Ctx`], [`NotifierRef`]: a notifier's
//!   behaviour, its messages, and its handle;
//! - [`Spec`], [`Restart`], [`Strategy`], [`Backoff`], [`Policy`]: how it
//!   is started and supervised (Erlang/OTP semantics);
//! - [`Tree`]: a root, a registry by id and path, supervision events, and
//!   ordered [`shutdown`](Tree::shutdown) with deadlines;
//! - [`Events`], [`Subscription`], [`EventStream`], [`HasEvents`]: the one
//!   event path (closure, typed actor message, or stream);
//! - [`NodeSnapshot`]: the tree as plain data, `Display`ed indented;
//! - [`Error`]: message, operation, errno, source;
//! - [`channel`]: typed, bounded mailboxes (bridged across processes by
//!   the worker layer).
//!
//! # Supervision rules
//!
//! - A failure is a panic in `init`, `on_ready` or a handler, a handler
//!   calling [`Ctx::fail`], or (for permanent children) [`Ctx::stop`].
//!   It is contained to the notifier: its children are stopped, its state
//!   dropped, and its parent decides.
//! - The parent restarts it (and the siblings its [`Strategy`] names) in
//!   place, after the [`Backoff`] delay. Past `max_restarts` failures
//!   within `window`, the parent gives up on it and fails itself with
//!   [`ExitReason::Escalated`]: the grandparent decides, once.
//! - A notifier stopped through its handle ([`NotifierRef::stop`]) or
//!   killed is stopped on purpose: it leaves the tree and is not restarted.
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
//! # Implementation
//!
//! Each notifier is one kameo actor (one tokio task). Its `next` override
//! selects over a control queue (a mutex-guarded deque and a `Notify`, no
//! task of its own), the kameo mailbox and the notifier's own source
//! ([`Notifier::ready`]). Supervision decisions run in the parent's actor.
//! Backoff delays are a short-lived task per delayed restart.

#![doc(test(attr(deny(warnings))))]

mod actor;
pub mod channel;
mod error;
mod event;
mod node;
mod notifier;
mod snapshot;
mod spec;
mod tree;

#[cfg(feature = "test-util")]
pub mod test_util;

pub use actor::{NotifierActor, Start};
pub use error::{Error, ErrorKind, Result};
pub use event::{
    EventStream, Events, ExitReason, HasEvents, Subscribe, Subscription, SupervisionEvent,
    SupervisionEventKind,
};
pub use node::ShutdownReport;
pub use notifier::{Ctx, Handler, Notifier, NotifierRef};
pub use snapshot::{NodeSnapshot, NodeState};
pub use spec::{AnySpec, Backoff, Once, Policy, Restart, Spec, Strategy};
pub use tree::{Root, Tree};
