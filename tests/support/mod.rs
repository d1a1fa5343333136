//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use ioasync::{
    Loop, Spec, SupervisionEvent, SupervisionEventKind,
    test_util::{Journal, Probe, ProbeArgs},
};
use tokio::sync::broadcast;

/// A probe spec journalling to `j`.
pub fn probe(name: &str, j: &Journal) -> Spec<Probe> {
    Spec::<Probe>::new(name, ProbeArgs::new(j))
}

/// A probe spec with children.
pub fn parent(name: &str, j: &Journal, children: Vec<Spec<Probe>>) -> Spec<Probe> {
    Spec::<Probe>::new(name, ProbeArgs::new(j).children(children))
}

/// Bounds a test step: fails the test instead of hanging.
pub async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits for the next supervision event matching `pred`.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<SupervisionEvent>,
    mut pred: impl FnMut(&SupervisionEvent) -> bool,
) -> SupervisionEvent {
    bounded("a supervision event", async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("lagged {n} events"),
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
}

/// True for the event `Stopped` of `path`.
pub fn stopped(path: &'static str) -> impl FnMut(&SupervisionEvent) -> bool {
    move |e| e.path == path && matches!(e.what, SupervisionEventKind::Stopped)
}

/// A loop on the current test runtime.
pub fn test_loop() -> Loop {
    Loop::current().expect("adopting the test runtime")
}
