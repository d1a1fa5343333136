//! Timers on paused time: countdown start/stop/reset, absolute, and the
//! periodic reschedule policies with a tick handler slower than the
//! interval.

#[macro_use]
mod support;

use std::time::Duration;

use ioasync::notifier::Overflow;
use ioasync::{
    supervision::NodeState,
    test_util::Recorder,
    time::{Absolute, Countdown, CountdownRef, Expired, Periodic, PeriodicRef, Reschedule, Tick},
};
use support::{bounded_for, test_loop};

/// Far past every timer here: on paused time it only fires on a hang.
async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    bounded_for(Duration::from_secs(24 * 3600), what, f).await
}
use tokio::time::Instant;

const S: Duration = Duration::from_secs(1);

paused!(a_countdown_stopped_before_expiry_never_fires);
async fn a_countdown_stopped_before_expiry_never_fires() {
    let lp = test_loop();
    let (rec, sub) = Recorder::new();
    let t = lp.add(Countdown::spec("c", 10 * S)).await.unwrap();
    t.subscribe(sub).unwrap();
    tokio::time::advance(5 * S).await;
    t.stop_timer().await.unwrap();
    tokio::time::advance(60 * S).await;
    assert!(!t.is_running().await.unwrap());
    assert!(!t.is_expired().await.unwrap());
    assert!(rec.events().is_empty());
}

paused!(reset_pushes_the_expiry_and_expiry_fires_once);
async fn reset_pushes_the_expiry_and_expiry_fires_once() {
    let lp = test_loop();
    let t0 = Instant::now();
    let t = lp.add(Countdown::spec("c", 10 * S)).await.unwrap();
    let mut fired = t.events_with::<Expired>(4, Overflow::Wait).unwrap();
    tokio::time::advance(7 * S).await;
    t.reset().await.unwrap(); // now due at 17 s
    let ev = bounded("expiry", fired.recv()).await.unwrap();
    assert_eq!(ev.deadline - t0, 17 * S);
    assert_eq!(ev.fired, ev.deadline);
    assert!(t.is_expired().await.unwrap());
    assert!(!t.is_running().await.unwrap());
    // Restart: fires again a full delay later, once.
    t.restart_timer().await.unwrap();
    let ev2 = bounded("second expiry", fired.recv()).await.unwrap();
    assert_eq!(ev2.deadline - ev.fired, 10 * S);
    tokio::time::advance(60 * S).await;
    assert!(fired.try_next_is_empty());
}

trait TryEmpty {
    fn try_next_is_empty(&mut self) -> bool;
}

impl<E> TryEmpty for ioasync::notifier::EventStream<E> {
    fn try_next_is_empty(&mut self) -> bool {
        use futures_util::FutureExt;
        self.recv().now_or_never().is_none()
    }
}

paused!(remove_on_expire_takes_the_countdown_out_of_the_tree);
async fn remove_on_expire_takes_the_countdown_out_of_the_tree() {
    let lp = test_loop();
    let t = lp
        .add(Countdown::spec_with_args(
            "once",
            ioasync::time::CountdownArgs::new(3 * S).remove_on_expire(),
        ))
        .await
        .unwrap();
    bounded("gone", t.wait_stopped()).await;
    assert!(lp.tree().find("/once").is_none());
}

paused!(an_absolute_timer_fires_at_its_instant_and_leaves);
async fn an_absolute_timer_fires_at_its_instant_and_leaves() {
    let lp = test_loop();
    let at = Instant::now() + 42 * S;
    let t = lp.add(Absolute::spec("alarm", at)).await.unwrap();
    let mut fired = t.events_with::<Expired>(1, Overflow::Wait).unwrap();
    let ev = bounded("fire", fired.recv()).await.unwrap();
    assert_eq!((ev.deadline, ev.fired), (at, at));
    bounded("gone", t.wait_stopped()).await;
}

/// Ticks from a periodic timer whose handler takes `slow` per tick: the
/// subscriber is a stream of capacity 1 read by a consumer that sleeps.
async fn ticks_with_slow_handler(
    policy: Reschedule,
    slow: Duration,
    n: usize,
) -> Vec<(Tick, Instant)> {
    let lp = test_loop();
    let t = lp
        .add(Periodic::spec("p", S).map_args(|a| a.reschedule(policy)))
        .await
        .unwrap();
    let mut ticks = t.events_with::<Tick>(1, Overflow::Wait).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let tick = bounded("tick", ticks.recv()).await.unwrap();
        out.push((tick, Instant::now()));
        tokio::time::sleep(slow).await; // the slow handler
    }
    drop(ticks); // a full stream would hold the timer inside its tick
    t.stop_timer().await.unwrap();
    out
}

paused!(periodic_hard_keeps_its_schedule_under_a_slow_handler);
async fn periodic_hard_keeps_its_schedule_under_a_slow_handler() {
    let t0 = Instant::now();
    let ticks = ticks_with_slow_handler(Reschedule::Hard, S * 3 / 2, 8).await;
    for (k, (tick, _)) in ticks.iter().enumerate() {
        let k = k as u32 + 1;
        assert_eq!(tick.count, k as u64);
        assert_eq!(tick.scheduled - t0, S * k, "tick {k} off schedule");
        assert!(tick.fired >= tick.scheduled);
    }
    // Catching up: late ticks are delivered on the handler's heels, more
    // than an interval after they were due, yet keep their due times.
    let (last, received) = ticks[7];
    assert!(
        received - last.scheduled > S,
        "{last:?} received at {received:?}"
    );
}

paused!(periodic_skip_drops_the_ticks_it_is_too_late_for);
async fn periodic_skip_drops_the_ticks_it_is_too_late_for() {
    let t0 = Instant::now();
    let ticks = ticks_with_slow_handler(Reschedule::Skip, S * 5 / 2, 6).await;
    for w in ticks.windows(2) {
        let (a, b) = (&w[0].0, &w[1].0);
        // Still on the 1 s grid...
        assert!((b.scheduled - t0).as_nanos().is_multiple_of(S.as_nanos()));
        // ...but never scheduled in the past when it was computed.
        assert!(b.scheduled >= a.fired, "{a:?} {b:?}");
    }
    let last = ticks.last().unwrap().0;
    assert!(last.scheduled - t0 > S * 6, "no tick was skipped: {last:?}");
}

paused!(periodic_drift_schedules_from_the_end_of_the_previous_tick);
async fn periodic_drift_schedules_from_the_end_of_the_previous_tick() {
    let t0 = Instant::now();
    let ticks = ticks_with_slow_handler(Reschedule::Drift, S * 3 / 2, 6).await;
    for w in ticks.windows(2) {
        let (a, b) = (&w[0].0, &w[1].0);
        // Due an interval after the previous tick was handled (its handling
        // may have waited for the slow subscriber), never earlier.
        assert!(b.scheduled - a.fired >= S, "{a:?} {b:?}");
    }
    // The waiting shows: the schedule left the 1 s grid.
    assert!(
        ticks
            .iter()
            .any(|(t, _)| !(t.scheduled - t0).as_nanos().is_multiple_of(S.as_nanos())),
        "{ticks:?}"
    );
}

paused!(a_periodic_timer_with_a_zero_interval_is_refused);
async fn a_periodic_timer_with_a_zero_interval_is_refused() {
    let lp = test_loop();
    let err = lp
        .add(Periodic::spec("z", Duration::ZERO))
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(lp.root().state(), NodeState::Running);
}
