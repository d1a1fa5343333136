//! Ordered shutdown of a subtree: leaves first, in reverse start order,
//! each node within its stop timeout and the overall deadline, killing
//! what overruns; and the [`ShutdownReport`] of what it did.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::{
    exit::SupervisionEventKind,
    node::{Ctl, Node, lock},
};

impl Node {
    /// Stops this node's whole subtree, leaves first in reverse start
    /// order, each within its stop timeout (and `deadline`), killing what
    /// overruns.
    pub(crate) fn shutdown(
        self: Arc<Self>,
        deadline: Option<Instant>,
        report: &mut ShutdownReport,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.mark_stopping();
            self.shutdown_children(deadline, report).await;
            self.stop_self(deadline, report).await;
        })
    }

    /// Stops every child subtree, in reverse start order.
    pub(crate) async fn shutdown_children(
        &self,
        deadline: Option<Instant>,
        report: &mut ShutdownReport,
    ) {
        loop {
            let last = lock(&self.children).last().cloned();
            let Some(child) = last else { break };
            let id = child.id;
            if lock(&child.children).is_empty() {
                // A leaf: no recursion, so no boxed future.
                child.mark_stopping();
                child.stop_self(deadline, report).await;
            } else {
                child.shutdown(deadline, report).await;
            }
            // The child left the list when it retired; make sure of it
            // without scanning the list.
            let mut children = lock(&self.children);
            if children.last().is_some_and(|c| c.id == id) {
                children.pop();
            }
        }
    }

    /// Asks this node's actor to stop and waits for it, within its stop
    /// timeout and `deadline`; kills it past them.
    async fn stop_self(&self, deadline: Option<Instant>, report: &mut ShutdownReport) {
        self.push_ctl(Ctl::Stop);
        self.await_stop(deadline, report).await;
    }

    async fn await_stop(&self, deadline: Option<Instant>, report: &mut ShutdownReport) {
        if self.actor.get().is_some_and(|a| !a.is_stopped()) {
            // Most stops finish in the notifier's next turn: give it that
            // turn before arming a deadline timer (one per stop otherwise).
            tokio::task::yield_now().await;
        }
        if let Some(actor) = self.actor.get().filter(|a| !a.is_stopped()) {
            let mut until = Instant::now() + self.policy.stop_timeout;
            if let Some(d) = deadline {
                until = until.min(d);
            }
            if tokio::time::timeout_at(until, actor.wait_stopped())
                .await
                .is_err()
            {
                tracing::warn!(parent: self.span(), "graceful stop overran; killing");
                actor.kill();
                actor.wait_stopped().await;
                report.overran.push(self.path.to_string());
                self.shared.publish(self, SupervisionEventKind::Overran);
            }
        }
        report.stopped.push(self.path.to_string());
        self.retire();
    }
}

/// What a `shutdown` stopped, in the order it stopped them, and which of
/// them overran their graceful-stop deadline and were killed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Paths of every notifier stopped, leaves first.
    pub stopped: Vec<String>,
    /// Paths of the notifiers killed at their deadline.
    pub overran: Vec<String>,
}

impl ShutdownReport {
    /// Every notifier stopped within its deadline.
    pub fn is_clean(&self) -> bool {
        self.overran.is_empty()
    }
}
