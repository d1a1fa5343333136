//! [`NodeState`]: the one lifecycle every notifier goes through, first
//! start and restarts alike.
//!
//! Each notifier's runtime (its kameo actor) moves it through these states;
//! the parent never waits for a child inside a handler, and every wait is
//! bounded (`init_timeout`, `stop_timeout`).
//!
//! | state | what runs | events that leave it | next state |
//! |---|---|---|---|
//! | `Starting` | `init` (bounded by `init_timeout`) | init returns `Ok` | `Running` |
//! | | | init fails, panics or times out, first start | `Stopped` (the `add` gets the error) |
//! | | | init fails, panics or times out, restart | `Failed` |
//! | `Running` | handlers, `on_ready`, control | `ctx.exit()`, `ctx.fail()`, a panic, an escalation from a child | `Failed` (after teardown) |
//! | | | `Stop` (handle, shutdown, a parent stopping) | `Stopping` |
//! | | | `Suspend` (a sibling's group restart) | `Restarting` (after teardown) |
//! | `Failed` | the decision (a pure function of the policy, the parent's strategy, the reason and the restart history) | restart | `Restarting` |
//! | | | stop for good, or give up and escalate | `Stopped` |
//! | `Restarting` | the backoff, or waiting for its group | backoff over, or `Resume` | `Starting` |
//! | | | `Stop` | `Stopped` |
//! | `Stopping` | children stop, the mailbox drains, `on_stop` | done | `Stopped` |
//! | any | | a kill (a stop past its deadline, `NotifierRef::kill`) | `Stopped` |
//!
//! *Teardown* is the same on every way out of an incarnation: its
//! children stop (leaves first, each within its stop timeout), `on_stop`
//! runs (after a panic too), and the runtime emits [`Exit`](crate::Exit)
//! with the reason. A notifier in `Stopped` has left the registry and its
//! parent's children before its `Stopped` supervision event is published
//! and before `wait_stopped` returns.

use std::fmt;

/// Where a notifier is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NodeState {
    /// `init` is running (first start or restart).
    Starting = 0,
    /// Handling messages and its source.
    Running = 1,
    /// Its incarnation ended and was torn down; the decision is being made
    /// (or waits for the group restart in progress among its siblings).
    Failed = 2,
    /// To be started again: waiting out a backoff or its group's turn.
    Restarting = 3,
    /// Stopping for good: children, mailbox, `on_stop`.
    Stopping = 4,
    /// Gone: out of the registry and the tree.
    Stopped = 5,
}

impl NodeState {
    pub(crate) fn from_u8(v: u8) -> NodeState {
        match v {
            0 => NodeState::Starting,
            1 => NodeState::Running,
            2 => NodeState::Failed,
            3 => NodeState::Restarting,
            4 => NodeState::Stopping,
            _ => NodeState::Stopped,
        }
    }

    /// The state's name, as snapshots print it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::Running => "running",
            NodeState::Failed => "failed",
            NodeState::Restarting => "restarting",
            NodeState::Stopping => "stopping",
            NodeState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
