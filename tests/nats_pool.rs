//! Function pools across hosts over NATS: worker hosts are this test
//! binary started again (`nats_host`), each with its own connection, and
//! a real `nats-server` per test.
#![cfg(feature = "nats")]

#[macro_use]
mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync::nats::{PoolEvent, Remote, RemoteEntryPoint, RemoteEvent, offload};
use ioasync::worker::{CallOptions, Entry, EntryPoint, FunctionRef};
use support::{
    bounded, bounded_for,
    nats::{NatsServer, Peer, start_host, start_inline_host},
    test_loop,
};
use tokio::time::Instant;

/// (the serving host's pid, n²).
static SQUARE: EntryPoint<u64, (u32, u64)> = EntryPoint::new("square");
/// Sleeps `ms`, answers (pid, tag).
static SLEEP: EntryPoint<(u64, u64), (u32, u64)> = EntryPoint::new("sleep");
/// Panics on 13, else answers n + 1.
static PANICKY: EntryPoint<u64, u64> = EntryPoint::new("panicky");

fn entries() -> Vec<Entry> {
    vec![
        SQUARE.runs(|n| (std::process::id(), n.wrapping_mul(n))),
        SLEEP.runs(|(ms, tag)| {
            // A lane is a thread of its own: blocking is its job.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(ms));
            (std::process::id(), tag)
        }),
        PANICKY.runs(|n| {
            assert_ne!(n, 13, "thirteen");
            n + 1
        }),
    ]
}

/// When this binary runs as a worker host, this test is its main.
#[test]
fn nats_host() {
    support::nats::host_main(entries());
}

/// When this binary runs as a local worker process, this test is its
/// entry point.
#[test]
fn ioasync_worker() {
    ioasync::worker::run_if_worker(entries());
}

fn remote(url: &str) -> ioasync::nats::RemoteSpec {
    Remote::spec("nats", url).reconnect_delay_max(Duration::from_millis(100))
}

/// Waits for the pool's next event matching `pred`.
async fn pool_event(
    events: &mut ioasync::notifier::EventStream<PoolEvent>,
    what: &str,
    pred: impl Fn(&PoolEvent) -> bool,
) -> PoolEvent {
    bounded(what, async {
        loop {
            let ev = tokio_stream::StreamExt::next(events)
                .await
                .expect("pool events");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
}

fn is_up(e: &PoolEvent) -> bool {
    matches!(e, PoolEvent::HostUp { .. })
}

fn is_lost(e: &PoolEvent) -> bool {
    matches!(e, PoolEvent::HostLost { .. })
}

flavours!(two_worker_hosts_under_10000_calls_survive_sigkills_and_heal);
async fn two_worker_hosts_under_10000_calls_survive_sigkills_and_heal() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(remote(&server.url)).await.unwrap();
    let pool = lp
        .add(
            SQUARE
                .remote_pool(&nats, "sq")
                .host_lost_after(Duration::from_millis(600)),
        )
        .await
        .unwrap();
    let mut events = pool.events::<PoolEvent>().unwrap();
    let mut hosts = [
        start_host(&server.url, "sq", "square", 2, false).await,
        start_host(&server.url, "sq", "square", 2, false).await,
    ];
    pool_event(&mut events, "host 1 up", is_up).await;
    pool_event(&mut events, "host 2 up", is_up).await;
    let sq = SQUARE.on_remote(&pool).unwrap();

    const CALLS: u64 = 10_000;
    const IN_FLIGHT: u64 = 32;
    let (done_tx, mut done) = tokio::sync::watch::channel(0u64);
    let done_tx = Arc::new(done_tx);
    // (n, retry-safe, when it ended, result)
    type Outcome = (u64, bool, Instant, ioasync::Result<(u32, u64)>);
    let results: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let mut callers = Vec::new();
    for lane in 0..IN_FLIGHT {
        let (sq, results, done_tx) = (sq.clone(), results.clone(), done_tx.clone());
        callers.push(tokio::spawn(async move {
            let mut n = lane;
            while n < CALLS {
                let retry_safe = n % 2 == 0;
                let opts = CallOptions {
                    timeout: Some(Duration::from_secs(5)),
                    retry_safe,
                    ..Default::default()
                };
                let r = sq.call_with(&n, opts).await;
                results
                    .lock()
                    .unwrap()
                    .push((n, retry_safe, Instant::now(), r));
                done_tx.send_modify(|d| *d += 1);
                n += IN_FLIGHT;
                // Pace the load (~2,000 calls/s in all) so that it spans
                // both kill rounds; not a synchronisation.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    // Two rounds: SIGKILL one host mid-load, restart it (a new process:
    // no code heals the pool, the queue group does).
    let mut kills = Vec::new();
    let mut restarted = Vec::new();
    for (round, at) in [(0usize, 2_000u64), (1, 5_500)] {
        bounded("load to reach the kill", done.wait_for(|d| *d >= at))
            .await
            .unwrap();
        let victim = &mut hosts[round];
        kills.push(Instant::now());
        victim.kill().await;
        pool_event(&mut events, "the killed host to be lost", is_lost).await;
        *victim = start_host(&server.url, "sq", "square", 2, false).await;
        restarted.push((victim.pid(), Instant::now()));
        pool_event(&mut events, "the restarted host to be up", is_up).await;
    }
    for c in callers {
        bounded_for(Duration::from_secs(60), "the callers", c)
            .await
            .unwrap();
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    assert_eq!(results.len() as u64, CALLS);
    let mut failed = 0;
    for (n, retry_safe, at, r) in results.iter() {
        match r {
            Ok((_, v)) => assert_eq!(*v, n * n, "call {n}: a wrong answer"),
            Err(e) => {
                failed += 1;
                assert!(!retry_safe, "retry-safe call {n} failed: {e}");
                let text = e.to_string();
                assert!(
                    text.contains("worker host lost") || text.contains("no responders"),
                    "call {n}: unclear error {text}"
                );
                assert!(
                    kills
                        .iter()
                        .any(|k| *at >= *k && at.duration_since(*k) <= Duration::from_secs(1)),
                    "call {n} failed ({text}) not within 1 s of a kill"
                );
            }
        }
    }
    // Healed: the restarted hosts answered calls after they came up.
    for (pid, since) in &restarted {
        assert!(
            results
                .iter()
                .any(|(_, _, at, r)| at > since && matches!(r, Ok((p, _)) if p == pid)),
            "the restarted host {pid} never answered"
        );
    }
    let stats = sq.stats().await.unwrap();
    assert_eq!(stats.failed, failed, "{stats:?}");
    assert_eq!(stats.completed, CALLS - failed, "{stats:?}");
    println!("{failed} of {CALLS} calls failed (not retry-safe, in flight at a kill); {stats:?}");
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

flavours!(a_late_reply_never_reaches_another_call);
async fn a_late_reply_never_reaches_another_call() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(remote(&server.url)).await.unwrap();
    let pool = lp.add(SLEEP.remote_pool(&nats, "late")).await.unwrap();
    let mut events = pool.events::<PoolEvent>().unwrap();
    let _host = start_host(&server.url, "late", "sleep", 2, false).await;
    pool_event(&mut events, "the host up", is_up).await;
    let sleep = SLEEP.on_remote(&pool).unwrap();
    let short = CallOptions {
        timeout: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    // The worker is slower than the caller's deadline.
    let err = sleep.call_with(&(400, 1), short).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.op(), "call");
    // Calls made while the late reply is on its way get their own.
    let mut calls = Vec::new();
    for tag in 2..40u64 {
        let sleep = sleep.clone();
        calls.push(tokio::spawn(
            async move { (tag, sleep.call(&(5, tag)).await) },
        ));
    }
    for c in calls {
        let (tag, r) = bounded("a call", c).await.unwrap();
        assert_eq!(r.unwrap().1, tag, "a call got another call's reply");
    }
    // The late reply arrives, and is dropped.
    let ev = pool_event(&mut events, "the late reply", |e| {
        matches!(e, PoolEvent::LateReplyDropped { .. })
    })
    .await;
    println!("{ev:?}");
    assert_eq!(sleep.call(&(0, 99)).await.unwrap().1, 99);
    let stats = sleep.stats().await.unwrap();
    assert_eq!((stats.late_dropped, stats.failed), (1, 1), "{stats:?}");
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

flavours!(with_no_worker_host_a_call_fails_at_once_with_no_responders);
async fn with_no_worker_host_a_call_fails_at_once_with_no_responders() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(remote(&server.url)).await.unwrap();
    let pool = lp.add(SQUARE.remote_pool(&nats, "nobody")).await.unwrap();
    let sq = SQUARE.on_remote(&pool).unwrap();
    let t = Instant::now();
    let err = sq.call(&3).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(err.to_string().contains("no responders"), "{err}");
    assert!(err.is_closed(), "{err}");
    // A retry-safe one tries again until its deadline, then says why.
    let opts = CallOptions {
        timeout: Some(Duration::from_millis(300)),
        retry_safe: true,
        ..Default::default()
    };
    let err = sq.call_with(&3, opts).await.unwrap_err();
    assert!(err.to_string().contains("no responders"), "{err}");
    // Another entry's declaration is refused by name.
    let wrong = SLEEP.on_remote(&pool).unwrap_err();
    assert!(
        wrong.to_string().contains("runs entry \"square\""),
        "{wrong}"
    );
    // A stopped pool's calls fail at once, saying so.
    pool.stop().await;
    let t = Instant::now();
    let err = sq.call(&3).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(
        err.is_closed() && err.to_string().contains("not running"),
        "{err}"
    );
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

/// (when it ended, the result, n, when it started) of each call.
type Log = Mutex<Vec<(Instant, ioasync::Result<(u32, u64)>, u64, Instant)>>;

flavours!(nats_server_sigkilled_and_restarted_under_load_calls_fail_clearly_then_heal);
async fn nats_server_sigkilled_and_restarted_under_load_calls_fail_clearly_then_heal() {
    let Some(mut server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(remote(&server.url)).await.unwrap();
    let mut conn = nats.events::<RemoteEvent>().unwrap();
    let pool = lp.add(SQUARE.remote_pool(&nats, "srv")).await.unwrap();
    let mut events = pool.events::<PoolEvent>().unwrap();
    let _host: Peer = start_host(&server.url, "srv", "square", 2, false).await;
    pool_event(&mut events, "the host up", is_up).await;
    let sq = SQUARE.on_remote(&pool).unwrap();
    let opts = CallOptions {
        timeout: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    // Load: 8 callers, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log: Arc<Log> = Arc::default();
    let mut callers = Vec::new();
    for lane in 0..8u64 {
        let (sq, stop, log) = (sq.clone(), stop.clone(), log.clone());
        callers.push(tokio::spawn(async move {
            let mut n = lane;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let r = sq.call_with(&n, opts).await;
                if r.is_err() {
                    // Failing calls come back at once: pace the load
                    // while the server is down (not a synchronisation).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                log.lock().unwrap().push((Instant::now(), r, n, started));
                n += 8;
            }
        }));
    }
    let count = |log: &Log| log.lock().unwrap().len();
    bounded("calls before the kill", async {
        while count(&log) < 500 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    server.kill().await;
    let killed = Instant::now();
    let ev = bounded("the disconnect event", async {
        loop {
            let ev = tokio_stream::StreamExt::next(&mut conn).await.unwrap();
            if matches!(ev, RemoteEvent::Disconnected { .. }) {
                return ev;
            }
        }
    })
    .await;
    println!("{ev:?}");
    let detail = nats.tree().detail.unwrap_or_default();
    assert!(detail.contains("disconnected"), "{detail}");
    // While it is down, a call fails at once, clearly.
    let t = Instant::now();
    let err = sq.call_with(&7, opts).await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(err.to_string().contains("not connected to NATS"), "{err}");
    server.restart().await;
    let restarted = Instant::now();
    bounded("the reconnect event", async {
        loop {
            let ev = tokio_stream::StreamExt::next(&mut conn).await.unwrap();
            if matches!(ev, RemoteEvent::Connected { .. }) {
                return ev;
            }
        }
    })
    .await;
    // Calls succeed again by themselves (the host reconnects too).
    let healed_from = bounded_for(Duration::from_secs(20), "calls to succeed again", async {
        loop {
            let first_ok = log
                .lock()
                .unwrap()
                .iter()
                .find(|(at, r, _, _)| *at > restarted && r.is_ok())
                .map(|(at, _, _, _)| *at);
            if let Some(at) = first_ok {
                return at;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let ok_after = |log: &Log| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(at, r, _, _)| *at > healed_from && r.is_ok())
            .count()
    };
    bounded("500 calls after healing", async {
        while ok_after(&log) < 500 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in callers {
        bounded("the callers", c).await.unwrap();
    }
    let log = std::mem::take(&mut *log.lock().unwrap());
    for (at, r, n, _) in log.iter() {
        match r {
            Ok((_, v)) => assert_eq!(*v, n * n, "a wrong answer"),
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("not connected to NATS")
                        || text.contains("worker host lost")
                        || text.contains("no responders"),
                    "unclear error: {text}"
                );
                assert!(*at >= killed, "a call failed before the kill: {text}");
            }
        }
    }
    // Once healed, every call succeeds: a failure is a call that started
    // before (during the outage or the reconnect itself: a call sent as
    // the connection came back may lose its no-responders notice and is
    // then failed as lost, clearly, within host_lost_after).
    let late: Vec<String> = log
        .iter()
        .filter(|(_, r, _, started)| *started > healed_from && r.is_err())
        .map(|(at, r, _, _)| {
            format!(
                "{:?} after the restart: {}",
                at.duration_since(restarted),
                r.as_ref().unwrap_err()
            )
        })
        .collect();
    assert!(
        late.is_empty(),
        "calls failing after the server came back (healed {:?} after the restart): {late:#?}",
        healed_from.duration_since(restarted)
    );
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

flavours!(one_function_pool_spans_local_worker_processes_and_remote_hosts);
async fn one_function_pool_spans_local_worker_processes_and_remote_hosts() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(remote(&server.url)).await.unwrap();
    let remote_pool = lp
        .add(SLEEP.remote_pool(&nats, "mixed").named("mixed-hosts"))
        .await
        .unwrap();
    let mut events = remote_pool.events::<PoolEvent>().unwrap();
    let host = start_host(&server.url, "mixed", "sleep", 2, false).await;
    pool_event(&mut events, "the host up", is_up).await;
    // One local worker process; what it has no room for goes to the host.
    let pool = lp
        .add(
            SLEEP
                .pool("mixed")
                .exec_args(["--exact", "ioasync_worker", "--nocapture"])
                .max_workers(1)
                .offload(4, offload(&remote_pool)),
        )
        .await
        .unwrap();
    let sleep = SLEEP.on(&pool).unwrap();
    let mut calls = Vec::new();
    for tag in 0..60u64 {
        let sleep = sleep.clone();
        calls.push(tokio::spawn(
            async move { (tag, sleep.call(&(10, tag)).await) },
        ));
    }
    let mut pids = std::collections::HashSet::new();
    for c in calls {
        let (tag, r) = bounded("a call", c).await.unwrap();
        let (pid, got) = r.unwrap();
        assert_eq!(got, tag);
        pids.insert(pid);
    }
    let local = pool.stats().await.unwrap();
    assert_eq!(local.completed, 60, "{local:?}");
    assert!(
        pids.contains(&host.pid()),
        "no call ran on the host: {pids:?}"
    );
    assert!(
        local.pids.iter().any(|p| pids.contains(p)),
        "no call ran locally: {pids:?} {local:?}"
    );
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

flavours!(an_inline_host_answers_1000_calls);
async fn an_inline_host_answers_1000_calls() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(remote(&server.url)).await.unwrap();
    let pool = lp.add(SQUARE.remote_pool(&nats, "inl")).await.unwrap();
    let mut events = pool.events::<PoolEvent>().unwrap();
    let host = start_inline_host(&server.url, "inl", "square", false).await;
    pool_event(&mut events, "the host up", is_up).await;
    let sq = SQUARE.on_remote(&pool).unwrap();
    const CALLS: u64 = 1_000;
    const IN_FLIGHT: u64 = 32;
    let mut callers = Vec::new();
    for lane in 0..IN_FLIGHT {
        let sq = sq.clone();
        callers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut n = lane;
            while n < CALLS {
                got.push((n, sq.call(&n).await));
                n += IN_FLIGHT;
            }
            got
        }));
    }
    let mut answered = 0;
    for c in callers {
        for (n, r) in bounded("the callers", c).await.unwrap() {
            let (pid, v) = r.unwrap_or_else(|e| panic!("call {n}: {e}"));
            assert_eq!((pid, v), (host.pid(), n * n), "call {n}");
            answered += 1;
        }
    }
    assert_eq!(answered, CALLS);
    let stats = sq.stats().await.unwrap();
    assert_eq!((stats.completed, stats.failed), (CALLS, 0), "{stats:?}");
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

flavours!(a_panicking_inline_entry_fails_its_call_as_on_a_lane_and_the_host_serves_on);
async fn a_panicking_inline_entry_fails_its_call_as_on_a_lane_and_the_host_serves_on() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(remote(&server.url)).await.unwrap();
    let mut failures = Vec::new();
    for (pool_name, inline) in [("pan-lanes", false), ("pan-inline", true)] {
        // Not about losing hosts: a loaded machine's late heartbeat must
        // not turn the panic's failure into "host lost".
        let pool = lp
            .add(
                PANICKY
                    .remote_pool(&nats, pool_name)
                    .host_lost_after(Duration::from_secs(10)),
            )
            .await
            .unwrap();
        let mut events = pool.events::<PoolEvent>().unwrap();
        let _host = if inline {
            start_inline_host(&server.url, pool_name, "panicky", false).await
        } else {
            start_host(&server.url, pool_name, "panicky", 2, false).await
        };
        pool_event(&mut events, "the host up", is_up).await;
        let p = PANICKY.on_remote(&pool).unwrap();
        assert_eq!(p.call(&1).await.unwrap(), 2);
        let err = p.call(&13).await.unwrap_err();
        assert!(err.to_string().contains("thirteen"), "{pool_name}: {err}");
        // The host serves on, more panics included.
        for n in 20..60u64 {
            assert_eq!(p.call(&n).await.unwrap(), n + 1, "{pool_name}");
        }
        assert!(p.call(&13).await.is_err());
        let stats = p.stats().await.unwrap();
        assert_eq!((stats.completed, stats.failed), (41, 2), "{stats:?}");
        failures.push((err.kind(), err.op().to_owned(), err.to_string()));
    }
    assert_eq!(failures[0], failures[1], "inline and lanes fail alike");
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

flavours!(an_inline_host_that_overran_moves_calls_to_lanes_and_is_lost_when_sigkilled);
async fn an_inline_host_that_overran_moves_calls_to_lanes_and_is_lost_when_sigkilled() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(remote(&server.url)).await.unwrap();
    let pool = lp
        .add(
            SLEEP
                .remote_pool(&nats, "inl-lost")
                .host_lost_after(Duration::from_millis(1_500)),
        )
        .await
        .unwrap();
    let mut events = pool.events::<PoolEvent>().unwrap();
    let mut host = start_inline_host(&server.url, "inl-lost", "sleep", false).await;
    pool_event(&mut events, "the host up", is_up).await;
    let sleep = SLEEP.on_remote(&pool).unwrap();
    assert_eq!(sleep.call(&(0, 1)).await.unwrap().1, 1);
    // An inline call that overruns (its heartbeats wait for it: well
    // within host_lost_after) sends the host's later calls to lanes.
    assert_eq!(sleep.call(&(200, 2)).await.unwrap().1, 2);
    // So a long call, past host_lost_after, lives on: the host's
    // heartbeats flow and name it while it runs.
    let opts = CallOptions {
        timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let call = tokio::spawn(async move { sleep.call_with(&(15_000, 2), opts).await });
    // Over twice host_lost_after: without heartbeats naming it, the call
    // would have failed by now.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert!(!call.is_finished(), "{:?}", call.await);
    let killed = Instant::now();
    host.kill().await;
    let err = bounded("the call to fail", call)
        .await
        .unwrap()
        .unwrap_err();
    let after = killed.elapsed();
    let text = err.to_string();
    assert!(
        text.contains("worker host lost") && text.contains("while it held the call"),
        "{text}"
    );
    assert!(after < Duration::from_secs(5), "{after:?}");
    pool_event(&mut events, "the host lost", is_lost).await;
    lp.shutdown(Some(Duration::from_secs(5))).await;
}
