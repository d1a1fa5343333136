//! IO::Async timer parity on paused time: a pending Absolute re-timed
//! (reconfiguring `time` reschedules it), and Periodic's `is_running`
//! through start and an idempotent stop.

#[macro_use]
mod support;

use std::time::Duration;

use ioasync::{
    error::ErrorKind,
    time::{Absolute, AbsoluteRef, Expired, Periodic, PeriodicRef, Tick},
};
use support::{bounded_for, test_loop};
use tokio::time::Instant;

/// Far past every timer here: on paused time it only fires on a hang.
async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    bounded_for(Duration::from_secs(24 * 3600), what, f).await
}

const S: Duration = Duration::from_secs(1);

paused!(a_pending_absolute_retimed_later_fires_at_the_new_instant_not_the_old);
async fn a_pending_absolute_retimed_later_fires_at_the_new_instant_not_the_old() {
    let lp = test_loop();
    let start = Instant::now();
    let t = lp.add(Absolute::spec("a", start + 10 * S)).await.unwrap();
    let mut fired = t.events::<Expired>().unwrap();
    tokio::time::advance(4 * S).await;
    t.retime(start + 20 * S).await.unwrap();
    assert_eq!(t.deadline().await.unwrap(), Some(start + 20 * S));
    let ev = bounded("expiry", fired.recv()).await.unwrap();
    assert_eq!(ev.deadline, start + 20 * S);
    assert_eq!(ev.fired, start + 20 * S, "not at the old instant (10 s)");
    // Fired: it left the tree; re-timing it now is a clear error.
    bounded("gone", t.wait_stopped()).await;
    let e = t.retime(start + 30 * S).await.unwrap_err();
    assert_eq!(e.op(), "retime");
    assert_eq!(e.kind(), ErrorKind::Closed);
}

paused!(a_pending_absolute_retimed_earlier_or_into_the_past_fires_then);
async fn a_pending_absolute_retimed_earlier_or_into_the_past_fires_then() {
    let lp = test_loop();
    let start = Instant::now();
    let early = lp
        .add(Absolute::spec("early", start + 60 * S))
        .await
        .unwrap();
    let mut early_fired = early.events::<Expired>().unwrap();
    early.retime(start + 3 * S).await.unwrap();
    let ev = bounded("early expiry", early_fired.recv()).await.unwrap();
    assert_eq!(ev.fired, start + 3 * S);
    // An instant already past: at once.
    let past = lp
        .add(Absolute::spec("past", start + 60 * S))
        .await
        .unwrap();
    let mut past_fired = past.events::<Expired>().unwrap();
    let now = Instant::now();
    past.retime(start).await.unwrap();
    let ev = bounded("past expiry", past_fired.recv()).await.unwrap();
    assert_eq!(ev.deadline, start);
    assert_eq!(ev.fired, now, "fired at once");
}

paused!(periodic_is_running_follows_start_and_an_idempotent_stop);
async fn periodic_is_running_follows_start_and_an_idempotent_stop() {
    let lp = test_loop();
    // Started when added (the default)...
    let on = lp.add(Periodic::spec("on", S)).await.unwrap();
    assert!(on.is_running().await.unwrap());
    // ...or not.
    let t = lp
        .add(Periodic::spec("off", S).map_args(|a| a.start(false)))
        .await
        .unwrap();
    let mut ticks = t.events::<Tick>().unwrap();
    assert!(!t.is_running().await.unwrap());
    let started = Instant::now();
    t.start_timer().await.unwrap();
    assert!(t.is_running().await.unwrap());
    let tick = bounded("tick", ticks.recv()).await.unwrap();
    assert_eq!(tick.scheduled, started + S);
    assert!(t.is_running().await.unwrap(), "still running after a tick");
    t.stop_timer().await.unwrap();
    assert!(!t.is_running().await.unwrap());
    t.stop_timer().await.unwrap();
    assert!(!t.is_running().await.unwrap(), "stop is idempotent");
    // Stopped: no tick comes.
    tokio::time::advance(10 * S).await;
    assert!(ticks.is_empty());
    on.stop_timer().await.unwrap();
    assert!(!on.is_running().await.unwrap());
}
