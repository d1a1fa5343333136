//! Function pools of real worker processes: calls, panics, timeouts,
//! idle shrinking, recycling.

#[macro_use]
mod support;

use std::time::Duration;

use ioasync::worker::{
    CallOptions, Entry, EntryPoint, Failure, Function, FunctionRef, FunctionSpec,
};
use serde::{Deserialize, Serialize};
use support::{bounded, test_loop};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shape {
    name: String,
    sides: Vec<u32>,
    tag: Option<(i64, bool)>,
}

/// Times the `stateful` entry's state was built in this worker process.
static INITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Per-worker state: made once when the worker starts.
struct Counter {
    token: u128,
    calls: u64,
}

static STATEFUL: EntryPoint<u64, (u32, u128, u64, u32)> = EntryPoint::new("stateful");
static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
static CHECKED_DIV: EntryPoint<(u64, u64), Result<u64, Failure>> = EntryPoint::new("checked_div");

fn entries() -> Vec<Entry> {
    vec![
        CHECKED_DIV.runs(|(a, b)| {
            a.checked_div(b)
                .ok_or_else(|| Failure::new("division by zero", "arith").detail(format!("{a}/{b}")))
        }),
        STATEFUL.runs_with(
            || {
                INITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Counter {
                    token: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos(),
                    calls: 0,
                }
            },
            |st: &mut Counter, _n: u64| {
                st.calls += 1;
                (
                    std::process::id(),
                    st.token,
                    st.calls,
                    INITS.load(std::sync::atomic::Ordering::SeqCst),
                )
            },
        ),
        Entry::function("square", |n: u64| n * n),
        Entry::function("perimeter", |s: Shape| {
            (s.name.to_uppercase(), s.sides.iter().sum::<u32>(), s.tag)
        }),
        Entry::function("panic", |msg: String| -> u32 { panic!("{msg}") }),
        Entry::function("pid", |_: ()| std::process::id()),
        Entry::function("echo_str", |s: String| s),
        Entry::function("env_cwd", |_: ()| {
            (
                std::env::var("IOASYNC_TEST_SETUP").ok(),
                std::env::current_dir().unwrap().display().to_string(),
            )
        }),
        Entry::function("sleep_ms", |ms: u64| {
            // A worker process runs no runtime: blocking is its job.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(ms));
            ms
        }),
    ]
}

/// When this binary runs as a worker, this test is the entry point.
#[test]
fn ioasync_worker() {
    ioasync::worker::run_if_worker(entries());
}

fn pool(name: &str, entry: &str) -> FunctionSpec {
    Function::spec(name, entry).exec_args(["--exact", "ioasync_worker", "--nocapture"])
}

flavours!(calls_run_in_workers_with_serde_arguments_and_results);
async fn calls_run_in_workers_with_serde_arguments_and_results() {
    let lp = test_loop();
    let sq = lp.add(pool("sq", "square").max_workers(2)).await.unwrap();
    let mut calls = Vec::new();
    for n in 0..200u64 {
        let sq = sq.clone();
        calls.push(tokio::spawn(
            async move { (n, sq.call::<u64, u64>(&n).await) },
        ));
    }
    for c in calls {
        let (n, r) = bounded("call", c).await.unwrap();
        assert_eq!(r.unwrap(), n * n);
    }
    let stats = sq.stats().await.unwrap();
    assert!(stats.workers <= 2 && stats.started <= 2, "{stats:?}");
    assert_eq!(stats.completed, 200);
    let shapes = lp.add(pool("shapes", "perimeter")).await.unwrap();
    let s = Shape {
        name: "tri".into(),
        sides: vec![3, 4, 5],
        tag: Some((-7, true)),
    };
    let r: (String, u32, Option<(i64, bool)>) = shapes.call(&s).await.unwrap();
    assert_eq!(r, ("TRI".into(), 12, Some((-7, true))));
}

flavours!(a_panicking_call_fails_with_the_message_and_the_worker_lives_on);
async fn a_panicking_call_fails_with_the_message_and_the_worker_lives_on() {
    let lp = test_loop();
    let f = lp.add(pool("p", "panic").max_workers(1)).await.unwrap();
    let err = f
        .call::<String, u32>(&"bad input".into())
        .await
        .unwrap_err();
    assert_eq!(err.op(), "call");
    assert!(err.to_string().contains("bad input"), "{err}");
    let again = f.call::<String, u32>(&"again".into()).await.unwrap_err();
    assert!(again.to_string().contains("again"));
    let stats = f.stats().await.unwrap();
    assert_eq!((stats.started, stats.died), (1, 0), "{stats:?}");
}

flavours!(a_call_past_its_timeout_fails_and_its_worker_is_replaced);
async fn a_call_past_its_timeout_fails_and_its_worker_is_replaced() {
    let lp = test_loop();
    let f = lp.add(pool("t", "sleep_ms").max_workers(1)).await.unwrap();
    let opts = CallOptions {
        timeout: Some(Duration::from_millis(100)),
        retry_safe: false,
        ..Default::default()
    };
    let err = bounded("timeout", f.call_with::<u64, u64>(&60_000, opts))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(f.call::<u64, u64>(&1).await.unwrap(), 1);
    assert_eq!(f.stats().await.unwrap().started, 2);
}

flavours!(idle_timeout_shrinks_the_pool_to_min_workers);
async fn idle_timeout_shrinks_the_pool_to_min_workers() {
    let lp = test_loop();
    let f = lp
        .add(
            pool("idle", "sleep_ms")
                .min_workers(1)
                .max_workers(3)
                .idle_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    // Three concurrent calls need three workers.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.call::<u64, u64>(&50).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(f.stats().await.unwrap().started, 3);
    // Idleness is measured in time: wait it out, then see the pool shrink.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shrunk = bounded("shrink", async {
        loop {
            let s = f.stats().await.unwrap();
            if s.workers == 1 {
                return s;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(shrunk.died, 0, "idle workers are retired, not crashed");
}

flavours!(max_worker_calls_recycles_workers);
async fn max_worker_calls_recycles_workers() {
    let lp = test_loop();
    let f = lp
        .add(pool("recycle", "pid").max_workers(1).max_worker_calls(3))
        .await
        .unwrap();
    let mut pids = Vec::new();
    for _ in 0..9 {
        pids.push(f.call::<(), u32>(&()).await.unwrap());
    }
    let distinct: std::collections::BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
    for chunk in pids.chunks(3) {
        assert!(chunk.iter().all(|p| *p == chunk[0]), "{pids:?}");
    }
}

flavours!(a_full_call_queue_makes_call_wait_and_try_call_fail_naming_its_bound);
async fn a_full_call_queue_makes_call_wait_and_try_call_fail_naming_its_bound() {
    let lp = test_loop();
    let pool = lp
        .add(pool("q", "sleep_ms").min_workers(1).max_workers(1).queue(1))
        .await
        .unwrap();
    let call = |ms: u64| {
        let pool = pool.clone();
        tokio::spawn(async move { pool.call::<u64, u64>(&ms).await })
    };
    let running = call(300);
    let queued = call(1);
    bounded("one running, one queued", async {
        loop {
            let s = pool.stats().await.unwrap();
            if s.queued == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Fail: try_call is refused at once, naming the queue's bound.
    let err = pool.try_call::<u64, u64>(&2).err().unwrap();
    assert!(err.is_full(), "{err}");
    assert!(
        err.to_string().contains("call queue is full (1 calls)"),
        "{err}"
    );
    // Wait: call waits for room, then runs; nothing is lost.
    let waiting = call(3);
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    assert_eq!(bounded("running", running).await.unwrap().unwrap(), 300);
    assert_eq!(bounded("queued", queued).await.unwrap().unwrap(), 1);
    assert_eq!(bounded("waited", waiting).await.unwrap().unwrap(), 3);
}

flavours!(a_full_call_queue_drops_what_its_policy_names);
async fn a_full_call_queue_drops_what_its_policy_names() {
    use ioasync::notifier::Overflow;
    let lp = test_loop();
    for (i, policy) in [Overflow::DropOldest, Overflow::DropNewest, Overflow::Fail]
        .into_iter()
        .enumerate()
    {
        let pool = lp
            .add(
                pool(&format!("drop{i}"), "sleep_ms")
                    .min_workers(1)
                    .max_workers(1)
                    .queue(1)
                    .overflow(policy),
            )
            .await
            .unwrap();
        let call = |ms: u64| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.call::<u64, u64>(&ms).await })
        };
        let running = call(200);
        bounded("one running", async {
            while pool.stats().await.unwrap().busy != 1 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let queued = call(1);
        bounded("one queued", async {
            while pool.stats().await.unwrap().queued != 1 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let newest = bounded("the newest call", call(2)).await.unwrap();
        assert_eq!(bounded("running", running).await.unwrap().unwrap(), 200);
        let queued = bounded("queued", queued).await.unwrap();
        match policy {
            Overflow::DropOldest => {
                let err = queued.unwrap_err();
                assert!(
                    err.is_full() && err.to_string().contains("dropped"),
                    "{err}"
                );
                assert_eq!(newest.unwrap(), 2);
            }
            _ => {
                let err = newest.unwrap_err();
                assert!(
                    err.to_string().contains("call queue is full (1 calls)"),
                    "{err}"
                );
                assert_eq!(queued.unwrap(), 1);
            }
        }
        pool.stop().await;
    }
}

flavours!(an_entry_with_per_worker_state_serves_a_thousand_calls_built_once_per_worker);
async fn an_entry_with_per_worker_state_serves_a_thousand_calls_built_once_per_worker() {
    let lp = test_loop();
    let spec = STATEFUL
        .pool("stateful")
        .exec_args(["--exact", "ioasync_worker", "--nocapture"])
        .max_workers(2);
    let pool = lp.add(spec).await.unwrap();
    let stateful = STATEFUL.on(&pool).unwrap();
    let calls: Vec<_> = (0..1000u64)
        .map(|n| {
            let s = stateful.clone();
            tokio::spawn(async move { s.call(&n).await })
        })
        .collect();
    let mut per_worker: std::collections::HashMap<u32, (u128, u64)> = Default::default();
    for c in calls {
        let (pid, token, calls, inits) = bounded("call", c).await.unwrap().unwrap();
        assert_eq!(inits, 1, "worker {pid} built its state once");
        let seen = per_worker.entry(pid).or_insert((token, 0));
        assert_eq!(seen.0, token, "worker {pid} kept one state");
        seen.1 = seen.1.max(calls);
    }
    let total: u64 = per_worker.values().map(|(_, n)| n).sum();
    assert_eq!(total, 1000, "every call counted in its worker's state");
    assert!(per_worker.len() <= 2);
}

flavours!(typed_calls_check_the_pool_and_decode_errors_name_the_entry_and_the_direction);
async fn typed_calls_check_the_pool_and_decode_errors_name_the_entry_and_the_direction() {
    let lp = test_loop();
    let pool = lp.add(pool("sq", "square")).await.unwrap();
    assert_eq!(SQUARE.on(&pool).unwrap().call(&7).await.unwrap(), 49);
    // Another entry's declaration is refused on this pool.
    let err = STATEFUL.on(&pool).unwrap_err();
    assert!(
        err.is_invalid_input() && err.to_string().contains("runs entry \"square\""),
        "{err}"
    );
    // Untyped calls that disagree with the entry: the error names the
    // entry and which side failed.
    let err = pool.call::<_, u64>(&"oops").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("entry square: the arguments do not decode as u64"),
        "{err}"
    );
    let err = pool.call::<_, String>(&3u64).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("entry square: the result does not decode as alloc::string::String"),
        "{err}"
    );
}

flavours!(queued_calls_run_by_priority_higher_first_in_order_within_one);
async fn queued_calls_run_by_priority_higher_first_in_order_within_one() {
    let lp = test_loop();
    let busy = lp
        .add(pool("prio", "sleep_ms").min_workers(1).max_workers(1))
        .await
        .unwrap();
    // The one worker is busy: what follows queues.
    let first = {
        let p = busy.clone();
        tokio::spawn(async move { p.call::<u64, u64>(&200).await })
    };
    let wait_queued = |n: usize| {
        let p = busy.clone();
        async move {
            loop {
                let s = p.stats().await.unwrap();
                if s.queued == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    bounded("busy", async {
        while busy.stats().await.unwrap().busy == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut calls = Vec::new();
    for (i, (ms, priority)) in [(1u64, 0), (2, 0), (3, 5), (4, 1), (5, 5)]
        .into_iter()
        .enumerate()
    {
        let p = busy.clone();
        let order = order.clone();
        calls.push(tokio::spawn(async move {
            let opts = CallOptions {
                priority,
                ..Default::default()
            };
            let r = p.call_with::<u64, u64>(&ms, opts).await.unwrap();
            order.lock().unwrap().push(r);
        }));
        bounded("queued", wait_queued(i + 1)).await;
    }
    bounded("first", first).await.unwrap().unwrap();
    for c in calls {
        bounded("call", c).await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [3, 5, 4, 1, 2]);
}

flavours!(exit_on_die_retires_a_worker_whose_call_failed);
async fn exit_on_die_retires_a_worker_whose_call_failed() {
    let lp = test_loop();
    let p = lp
        .add(pool("die", "panic").max_workers(1).exit_on_die(true))
        .await
        .unwrap();
    let pids = lp
        .add(pool("die-pid", "pid").max_workers(1).exit_on_die(true))
        .await
        .unwrap();
    let err = p.call::<_, u32>(&"first".to_string()).await.unwrap_err();
    assert!(err.to_string().contains("first"), "{err}");
    let err = p.call::<_, u32>(&"second".to_string()).await.unwrap_err();
    assert!(err.to_string().contains("second"), "{err}");
    let stats = p.stats().await.unwrap();
    assert_eq!(
        stats.started, 2,
        "a new worker for the second call: {stats:?}"
    );
    assert_eq!(stats.died, 0, "retired, not died: {stats:?}");
    // A worker whose calls succeed lives on.
    let a: u32 = pids.call(&()).await.unwrap();
    let b: u32 = pids.call(&()).await.unwrap();
    assert_eq!(a, b);
}

flavours!(restart_workers_replaces_every_worker_and_lets_a_call_in_flight_finish);
async fn restart_workers_replaces_every_worker_and_lets_a_call_in_flight_finish() {
    let lp = test_loop();
    let p = lp
        .add(pool("rw", "sleep_ms").min_workers(2).max_workers(3))
        .await
        .unwrap();
    let before = p.stats().await.unwrap().pids;
    assert_eq!(before.len(), 2);
    let in_flight = {
        let p = p.clone();
        tokio::spawn(async move { p.call::<u64, u64>(&150).await })
    };
    bounded("busy", async {
        while p.stats().await.unwrap().busy == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    p.restart_workers().await.unwrap();
    assert_eq!(bounded("in flight", in_flight).await.unwrap().unwrap(), 150);
    let after = bounded("replaced", async {
        loop {
            let s = p.stats().await.unwrap();
            if s.pids.len() == 2 && s.pids.iter().all(|pid| !before.contains(pid)) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(after.died, 0, "{after:?}");
    assert_eq!(p.call::<u64, u64>(&1).await.unwrap(), 1);
}

flavours!(worker_setup_applies_to_every_worker_replacements_included);
async fn worker_setup_applies_to_every_worker_replacements_included() {
    let lp = test_loop();
    let p = lp
        .add(pool("setup", "env_cwd").max_workers(1).worker_setup(|cmd| {
            cmd.env("IOASYNC_TEST_SETUP", "yes").current_dir("/");
        }))
        .await
        .unwrap();
    let want = (Some("yes".to_string()), "/".to_string());
    assert_eq!(
        p.call::<_, (Option<String>, String)>(&()).await.unwrap(),
        want
    );
    let first = p.stats().await.unwrap().pids;
    p.restart_workers().await.unwrap();
    assert_eq!(
        p.call::<_, (Option<String>, String)>(&()).await.unwrap(),
        want
    );
    let second = p.stats().await.unwrap().pids;
    assert_ne!(first, second, "a new worker, set up the same way");
}

flavours!(an_entry_fails_with_a_structured_failure_the_caller_receives_whole);
async fn an_entry_fails_with_a_structured_failure_the_caller_receives_whole() {
    let lp = test_loop();
    let p = lp
        .add(
            CHECKED_DIV
                .pool("div")
                .exec_args(["--exact", "ioasync_worker", "--nocapture"]),
        )
        .await
        .unwrap();
    let div = CHECKED_DIV.on(&p).unwrap();
    assert_eq!(div.call(&(84, 2)).await.unwrap(), Ok(42));
    let failure = div.call(&(1, 0)).await.unwrap().unwrap_err();
    assert_eq!(failure.message, "division by zero");
    assert_eq!(failure.category, "arith");
    assert_eq!(failure.details, ["1/0"]);
    assert_eq!(failure.to_string(), "arith: division by zero (1/0)");
}
