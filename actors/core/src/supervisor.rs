//! Supervision as a pure decision and a runtime that applies it without
//! ever waiting for a child inside a handler.
//!
//! When an incarnation ends, its runtime tears it down and asks
//! [`decide`]: a pure function of the child's policy, its parent's
//! strategy, why it ended, its failures within the restart window and
//! whether the tree is stopping. The child's own runtime then applies the
//! answer:
//!
//! - **stop**: it leaves the tree;
//! - **restart one** (one-for-one): it waits out its backoff and starts
//!   again, on its own, while its parent goes on serving;
//! - **restart a group** (one-for-all, rest-for-one): a short task takes
//!   the parent's group lock (group restarts of one parent run one at a
//!   time), tears the other members down (reverse start order, each
//!   within its stop timeout, killed past it), waits out the backoff and
//!   starts the members again in start order (each within its init
//!   timeout, killed past it);
//! - **escalate**: past its restart limit it leaves the tree and its
//!   parent fails with [`ExitReason::Escalated`], once.

use std::{sync::Arc, time::Duration};

use tokio::{sync::oneshot, time::Instant};

use crate::{
    exit::{ExitReason, SupervisionEventKind},
    node::{Ctl, Node},
    policy::{Policy, Restart, Strategy},
    shutdown::ShutdownReport,
};

/// Which children restart together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// Only the child that ended.
    One,
    /// Every child of the parent.
    All,
    /// The child that ended and every child started after it.
    Rest,
}

/// What the tree does about an ended incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Leave the tree for good.
    Stop,
    /// Start again after `delay`, with the group.
    Restart {
        /// The backoff delay.
        delay: Duration,
        /// Who restarts with it.
        group: Group,
    },
    /// Leave the tree and fail the parent (the restart limit is exceeded).
    Escalate,
}

/// Whether an exit of a child with `restart` type asks for a restart (and
/// so counts against its restart limit).
pub(crate) fn wants_restart(restart: Restart, reason: &ExitReason) -> bool {
    match restart {
        Restart::Permanent => true,
        Restart::Transient => !reason.is_normal(),
        Restart::Temporary => false,
    }
}

/// The decision for an incarnation of a child with `policy` that ended
/// with `reason`, under a parent applying `strategy`. `failures` is its
/// count of failures within the restart window, this one included (only
/// counted when [`wants_restart`] says so); `stopping` is true when the
/// child or its parent is stopping for good.
pub(crate) fn decide(
    policy: &Policy,
    strategy: Strategy,
    reason: &ExitReason,
    failures: u32,
    stopping: bool,
) -> Decision {
    if stopping || matches!(reason, ExitReason::Killed) || !wants_restart(policy.restart, reason) {
        return Decision::Stop;
    }
    if failures > policy.max_restarts {
        return Decision::Escalate;
    }
    let group = match strategy {
        Strategy::OneForOne => Group::One,
        Strategy::OneForAll => Group::All,
        Strategy::RestForOne => Group::Rest,
    };
    Decision::Restart {
        delay: policy.backoff.delay(failures),
        group,
    }
}

/// Restarts `failed` (whose incarnation number `incarnation` ended) with
/// its `group` under `parent`, after `delay`. Runs as its own task, so
/// neither the parent nor the child waits for it.
pub(crate) fn restart_group(
    parent: Arc<Node>,
    failed: Arc<Node>,
    incarnation: u32,
    group: Group,
    delay: Duration,
) {
    tokio::spawn(async move {
        let _turn = parent.group_lock().lock().await;
        // A group restart before ours may have restarted it already.
        if parent.is_stopping() || failed.is_stopping() || failed.incarnation() != incarnation {
            return;
        }
        let children = parent.children();
        let Some(pos) = children.iter().position(|c| c.id == failed.id) else {
            return;
        };
        let members: Vec<Arc<Node>> = match group {
            Group::One => vec![failed.clone()],
            Group::All => children,
            Group::Rest => children[pos..].to_vec(),
        };
        for sibling in members.iter().rev().filter(|s| s.id != failed.id) {
            suspend(sibling).await;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        for member in &members {
            if parent.is_stopping() {
                return;
            }
            if member.is_stopping() || member.is_retired() {
                continue;
            }
            resume(member).await;
        }
    });
}

/// Has `node` tear its incarnation down for a group restart, within its
/// stop timeout; one that does not answer in time is killed and reported.
async fn suspend(node: &Arc<Node>) {
    let (tx, rx) = oneshot::channel();
    node.push_ctl(Ctl::Suspend(tx));
    bounded(
        node,
        node.policy.stop_timeout,
        rx,
        "stop for a group restart",
    )
    .await;
}

/// Has `node` start a new incarnation, within its init timeout (its
/// runtime enforces it; this bound only catches a runtime that is stuck).
async fn resume(node: &Arc<Node>) {
    let (tx, rx) = oneshot::channel();
    node.push_ctl(Ctl::Resume(tx));
    let bound = node.policy.init_timeout + Duration::from_secs(1);
    bounded(node, bound, rx, "restart").await;
}

async fn bounded(node: &Arc<Node>, bound: Duration, ack: oneshot::Receiver<()>, what: &str) {
    if tokio::time::timeout(bound, ack).await.is_err() {
        tracing::warn!(parent: node.span(), ?bound, "did not {what} in time; killing");
        node.shared.publish(node, SupervisionEventKind::Overran);
        let mut report = ShutdownReport::default();
        node.clone()
            .shutdown(Some(Instant::now()), &mut report)
            .await;
    }
}

#[cfg(test)]
mod tests {
    //! The decision table: the three strategies × the three restart types
    //! × (normal exit, error, panic, limit exceeded), against OTP.

    use super::*;
    use crate::{error::Error, policy::Backoff};

    fn policy(restart: Restart) -> Policy {
        Policy {
            restart,
            max_restarts: 3,
            backoff: Backoff::new(Duration::from_millis(10), 2.0, Duration::from_secs(1)),
            ..Policy::default()
        }
    }

    fn error() -> ExitReason {
        ExitReason::Failed(Error::closed("test", "failed"))
    }

    fn panic() -> ExitReason {
        ExitReason::panicked("boom", None)
    }

    fn group(strategy: Strategy) -> Group {
        match strategy {
            Strategy::OneForOne => Group::One,
            Strategy::OneForAll => Group::All,
            Strategy::RestForOne => Group::Rest,
        }
    }

    #[test]
    fn the_decision_table_gives_otps_results() {
        let strategies = [
            Strategy::OneForOne,
            Strategy::OneForAll,
            Strategy::RestForOne,
        ];
        for strategy in strategies {
            let restart = |failures| Decision::Restart {
                delay: Backoff::new(Duration::from_millis(10), 2.0, Duration::from_secs(1))
                    .delay(failures),
                group: group(strategy),
            };
            // (restart type, reason, failures in the window, expected)
            let table: Vec<(Restart, ExitReason, u32, Decision)> = vec![
                // permanent: every exit restarts; past the limit it escalates
                (Restart::Permanent, ExitReason::Normal, 1, restart(1)),
                (Restart::Permanent, error(), 2, restart(2)),
                (Restart::Permanent, panic(), 3, restart(3)),
                (
                    Restart::Permanent,
                    ExitReason::Normal,
                    4,
                    Decision::Escalate,
                ),
                (Restart::Permanent, error(), 4, Decision::Escalate),
                (Restart::Permanent, panic(), 4, Decision::Escalate),
                // transient: only abnormal exits restart; a normal one
                // never counts, so never escalates
                (Restart::Transient, ExitReason::Normal, 1, Decision::Stop),
                (Restart::Transient, error(), 1, restart(1)),
                (Restart::Transient, panic(), 3, restart(3)),
                (Restart::Transient, ExitReason::Normal, 4, Decision::Stop),
                (Restart::Transient, error(), 4, Decision::Escalate),
                (Restart::Transient, panic(), 4, Decision::Escalate),
                // temporary: never restarted, never escalates
                (Restart::Temporary, ExitReason::Normal, 1, Decision::Stop),
                (Restart::Temporary, error(), 1, Decision::Stop),
                (Restart::Temporary, panic(), 1, Decision::Stop),
                (Restart::Temporary, error(), 4, Decision::Stop),
                (Restart::Temporary, panic(), 4, Decision::Stop),
            ];
            for (restart_type, reason, failures, expected) in table {
                let got = decide(&policy(restart_type), strategy, &reason, failures, false);
                assert_eq!(
                    got, expected,
                    "{strategy:?} {restart_type:?} {reason} after {failures} failures"
                );
            }
        }
    }

    #[test]
    fn a_stopping_tree_or_a_kill_never_restarts() {
        for restart in [Restart::Permanent, Restart::Transient, Restart::Temporary] {
            for reason in [ExitReason::Normal, error(), panic()] {
                let d = decide(&policy(restart), Strategy::OneForAll, &reason, 1, true);
                assert_eq!(d, Decision::Stop, "{restart:?} {reason} while stopping");
            }
            let d = decide(
                &policy(restart),
                Strategy::OneForOne,
                &ExitReason::Killed,
                1,
                false,
            );
            assert_eq!(d, Decision::Stop, "{restart:?} killed");
        }
    }

    #[test]
    fn only_exits_that_ask_for_a_restart_count_against_the_limit() {
        assert!(wants_restart(Restart::Permanent, &ExitReason::Normal));
        assert!(!wants_restart(Restart::Transient, &ExitReason::Normal));
        assert!(wants_restart(Restart::Transient, &panic()));
        assert!(!wants_restart(Restart::Temporary, &error()));
    }

    #[test]
    fn the_backoff_grows_with_the_failures_in_the_window() {
        let p = policy(Restart::Permanent);
        let delays: Vec<Duration> = (1..=3)
            .map(
                |n| match decide(&p, Strategy::OneForOne, &panic(), n, false) {
                    Decision::Restart { delay, .. } => delay,
                    d => panic!("expected a restart, got {d:?}"),
                },
            )
            .collect();
        assert_eq!(
            delays,
            [10, 20, 40].map(Duration::from_millis),
            "initial 10 ms, factor 2"
        );
    }
}
