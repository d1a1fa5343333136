//! Job lifetimes in a Function pool: a dead man's switch for running
//! calls (a worker that neither answers nor heartbeats in time is killed
//! and replaced; a retry-safe call runs again), a TTL for queued calls,
//! and a dead-letter hook that sees every call that failed for good — and
//! only those.

#[macro_use]
mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync::worker::{CallOptions, DeadLetter, Entry, Function, FunctionRef, FunctionSpec};
use support::{bounded, fresh_dir, test_loop};

fn nap(ms: u64) {
    #[allow(clippy::disallowed_methods)] // a worker runs no runtime
    std::thread::sleep(Duration::from_millis(ms));
}

fn entries() -> Vec<Entry> {
    vec![
        Entry::function("pid", |_: ()| std::process::id()),
        Entry::function("sleep_ms", |ms: u64| {
            nap(ms);
            ms
        }),
        // 6 naps of 100 ms with a heartbeat between: alive all along.
        Entry::function("beating", |_: ()| {
            for _ in 0..15 {
                nap(100);
                assert!(ioasync::worker::heartbeat(), "inside a call");
            }
            std::process::id()
        }),
        // Hangs the first time (leaving a marker), answers the second.
        Entry::function("hang_once", |marker: String| {
            if std::fs::metadata(&marker).is_err() {
                std::fs::write(&marker, b"1").unwrap();
                nap(60_000);
            }
            std::process::id()
        }),
        // Naps, then leaves a marker: shows whether the call ran.
        Entry::function("touch_after", |(marker, ms): (String, u64)| {
            nap(ms);
            std::fs::write(&marker, b"ran").unwrap();
        }),
        Entry::function("boom", |_: ()| -> u32 { panic!("boom") }),
    ]
}

#[test]
fn ioasync_worker() {
    ioasync::worker::run_if_worker(entries());
}

type Letters = Arc<Mutex<Vec<DeadLetter>>>;

fn pool(name: &str, entry: &str, letters: &Letters) -> FunctionSpec {
    let letters = letters.clone();
    Function::spec(name, entry)
        .exec_args(["--exact", "ioasync_worker", "--nocapture"])
        .max_workers(1)
        .dead_letter(move |l| letters.lock().unwrap().push(l))
}

fn stuck_after(d: Duration, retry_safe: bool) -> CallOptions {
    CallOptions {
        stuck_after: Some(d),
        retry_safe,
        ..Default::default()
    }
}

flavours!(a_worker_silent_past_its_stuck_deadline_is_killed_and_replaced_within_100_ms);
async fn a_worker_silent_past_its_stuck_deadline_is_killed_and_replaced_within_100_ms() {
    let lp = test_loop();
    let letters = Letters::default();
    let p = lp.add(pool("stuck", "sleep_ms", &letters)).await.unwrap();
    let first: u64 = p.call(&1).await.unwrap(); // a warm worker
    assert_eq!(first, 1);
    let old = p.stats().await.unwrap().pids;
    let deadline = Duration::from_millis(300);
    let t0 = tokio::time::Instant::now();
    let err = bounded(
        "the stuck call",
        p.call_with::<u64, u64>(&60_000, stuck_after(deadline, false)),
    )
    .await
    .unwrap_err();
    let took = t0.elapsed();
    assert!(
        err.is_timeout() && err.to_string().contains("is stuck"),
        "{err}"
    );
    assert!(took >= deadline, "not before the deadline: {took:?}");
    assert!(
        took <= deadline + Duration::from_millis(100),
        "within 100 ms of the deadline: {took:?}"
    );
    // Replaced: the next call runs on a new worker.
    assert_eq!(p.call::<u64, u64>(&2).await.unwrap(), 2);
    let now = p.stats().await.unwrap();
    assert!(now.pids.iter().all(|pid| !old.contains(pid)), "{now:?}");
    assert_eq!((now.stuck, now.dead_lettered), (1, 1), "{now:?}");
    let letters = letters.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].args::<u64>().unwrap(), 60_000);
    assert!(letters[0].error.to_string().contains("is stuck"));
}

flavours!(heartbeats_keep_a_long_call_alive_and_a_stuck_retry_safe_call_runs_again);
async fn heartbeats_keep_a_long_call_alive_and_a_stuck_retry_safe_call_runs_again() {
    let lp = test_loop();
    let letters = Letters::default();
    let beating = lp.add(pool("beating", "beating", &letters)).await.unwrap();
    // 1.5 s of work, a heartbeat every 100 ms, stuck after 700 ms
    // without one (a wide margin for a loaded machine's scheduling).
    let pid: u32 = bounded(
        "a long call",
        beating.call_with(&(), stuck_after(Duration::from_millis(700), false)),
    )
    .await
    .unwrap();
    assert!(pid > 0);
    assert_eq!(beating.stats().await.unwrap().stuck, 0);
    let dir = fresh_dir("hang-once");
    let marker = dir.join("marker").display().to_string();
    let once = lp.add(pool("once", "hang_once", &letters)).await.unwrap();
    let second: u32 = bounded(
        "a stuck retry-safe call",
        once.call_with(&marker, stuck_after(Duration::from_millis(200), true)),
    )
    .await
    .unwrap();
    let stats = once.stats().await.unwrap();
    assert_eq!(stats.stuck, 1, "{stats:?}");
    assert_eq!(stats.pids, [second], "it ran again on the replacement");
    assert!(
        letters.lock().unwrap().is_empty(),
        "nothing failed for good"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

flavours!(a_call_queued_past_its_ttl_fails_without_running_and_only_failures_are_dead_letters);
async fn a_call_queued_past_its_ttl_fails_without_running_and_only_failures_are_dead_letters() {
    let lp = test_loop();
    let letters = Letters::default();
    let dir = fresh_dir("ttl");
    let at = |name: &str| dir.join(name).display().to_string();
    let p = lp.add(pool("ttl", "touch_after", &letters)).await.unwrap();
    // The one worker is busy for 500 ms with `a`...
    let a = {
        let p = p.clone();
        let m = at("a");
        tokio::spawn(async move { p.call::<(String, u64), ()>(&(m, 500)).await })
    };
    bounded("a running", async {
        while p.stats().await.unwrap().busy == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    // ...so `b`, with a 100 ms TTL, waits in the queue and expires.
    let t0 = tokio::time::Instant::now();
    let opts = CallOptions {
        ttl: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let err = bounded("b", p.call_with::<(String, u64), ()>(&(at("b"), 0), opts))
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.to_string().contains("TTL"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_millis(450),
        "it did not wait for a"
    );
    bounded("a", a).await.unwrap().unwrap();
    assert!(std::fs::metadata(at("a")).is_ok(), "a ran");
    let stats = p.stats().await.unwrap();
    assert_eq!((stats.queued, stats.busy), (0, 0), "{stats:?}");
    assert!(std::fs::metadata(at("b")).is_err(), "b never ran");
    assert_eq!(stats.expired, 1, "{stats:?}");
    // A panicking call failed for good too; successes are not letters.
    let boom = lp.add(pool("boom", "boom", &letters)).await.unwrap();
    let err = boom.call::<(), u32>(&()).await.unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    let pid: u32 = lp
        .add(pool("fine", "pid", &letters))
        .await
        .unwrap()
        .call(&())
        .await
        .unwrap();
    assert!(pid > 0);
    let letters = letters.lock().unwrap();
    let reasons: Vec<(String, String)> = letters
        .iter()
        .map(|l| (l.entry.to_string(), l.error.to_string()))
        .collect();
    assert_eq!(letters.len(), 2, "{reasons:?}");
    assert_eq!(letters[0].entry.as_ref(), "touch_after");
    assert!(letters[0].error.to_string().contains("TTL"), "{reasons:?}");
    assert_eq!(letters[0].args::<(String, u64)>().unwrap(), (at("b"), 0));
    assert_eq!(letters[0].attempts, 0, "it never ran");
    assert_eq!(letters[1].entry.as_ref(), "boom");
    assert!(letters[1].error.to_string().contains("boom"), "{reasons:?}");
    drop(letters);
    let _ = std::fs::remove_dir_all(&dir);
}
