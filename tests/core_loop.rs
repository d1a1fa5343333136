//! The Loop: run/stop, later, watch_time and its guard, delay and timeout
//! futures, runtimes, tree snapshots, escalation past the root.

#[macro_use]
mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync::{
    Loop,
    notifier::Spec,
    supervision::Restart,
    test_util::{Journal, Panic, Probe, ProbeArgs},
    time::When,
};
use support::{bounded, parent, probe, test_loop};
use tokio::time::Instant;

paused!(later_callbacks_run_once_in_order);
async fn later_callbacks_run_once_in_order() {
    let lp = test_loop();
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..50 {
        let seen = seen.clone();
        lp.later(move || seen.lock().unwrap().push(i));
    }
    let l = lp.clone();
    lp.later(move || l.stop(()));
    lp.run::<()>().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..50).collect::<Vec<_>>());
}

paused!(watch_time_fires_each_timer_once_in_deadline_order_and_unwatched_never);
async fn watch_time_fires_each_timer_once_in_deadline_order_and_unwatched_never() {
    let lp = test_loop();
    let t0 = Instant::now();
    let fired = Arc::new(Mutex::new(Vec::new()));
    let mut ids = Vec::new();
    for (name, ms) in [("c", 30u64), ("a", 10), ("x", 20), ("b", 20), ("d", 40)] {
        let fired = fired.clone();
        let when: When = if name == "d" {
            When::At(t0 + Duration::from_millis(ms))
        } else {
            Duration::from_millis(ms).into()
        };
        ids.push((
            name,
            lp.watch_time(when, move || {
                fired.lock().unwrap().push((name, t0.elapsed()));
            }),
        ));
    }
    let mut ids: Vec<_> = ids.into_iter().map(|(_, w)| Some(w)).collect();
    assert!(
        ids[2].take().unwrap().cancel(),
        "x cancelled before it fired"
    );
    let l = lp.clone();
    lp.watch_time(Duration::from_millis(100), move || l.stop(()))
        .detach();
    lp.run::<()>().await.unwrap();
    let ms = |n| Duration::from_millis(n);
    assert_eq!(
        *fired.lock().unwrap(),
        vec![("a", ms(10)), ("b", ms(20)), ("c", ms(30)), ("d", ms(40))]
    );
    let a = ids[1].take().unwrap();
    assert!(!a.is_pending());
    assert!(!a.cancel(), "a already fired");
}

flavours!(loop_callbacks_run_inside_the_root_and_a_panicking_one_is_contained);
async fn loop_callbacks_run_inside_the_root_and_a_panicking_one_is_contained() {
    let lp = test_loop();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = seen.clone();
    lp.later(move || s.lock().unwrap().push("first"));
    lp.later(|| panic!("injected panic in a later callback"));
    let s = seen.clone();
    lp.watch_time(Duration::from_millis(1), move || panic!("and in a timer"))
        .detach();
    let s2 = s.clone();
    lp.later(move || s2.lock().unwrap().push("after the panic"));
    lp.watch_time(Duration::from_millis(2), move || {
        s.lock().unwrap().push("timer after the panic");
        let _ = tx.send(());
    })
    .detach();
    bounded("the last timer", rx).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["first", "after the panic", "timer after the panic"]
    );
    // No notifier and no task of their own: the root runs them.
    assert!(lp.tree().children.is_empty(), "{}", lp.tree());
    assert_eq!(lp.live_notifiers(), 1);
    assert!(lp.root().is_alive(), "the root contained both panics");
}

paused!(a_dropped_timer_watch_never_fires_and_a_detached_one_does);
async fn a_dropped_timer_watch_never_fires_and_a_detached_one_does() {
    let lp = test_loop();
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f = fired.clone();
    drop(lp.watch_time(Duration::from_millis(10), move || {
        f.lock().unwrap().push("dropped")
    }));
    let f = fired.clone();
    let kept = lp.watch_time(Duration::from_millis(10), move || {
        f.lock().unwrap().push("kept")
    });
    assert!(kept.is_pending());
    kept.detach();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*fired.lock().unwrap(), ["kept"]);
}

paused!(delay_future_and_timeout_future_complete_exactly_once_at_their_time);
async fn delay_future_and_timeout_future_complete_exactly_once_at_their_time() {
    let lp = test_loop();
    let t0 = Instant::now();
    lp.delay_future(Duration::from_secs(3)).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
    let err = lp.timeout_future(Duration::from_secs(2)).await.unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.op(), "timeout_future");
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
    let slow = lp.timeout(
        Duration::from_secs(1),
        lp.delay_future(Duration::from_secs(9)),
    );
    assert!(slow.await.unwrap_err().is_timeout());
    let fast = lp
        .timeout(Duration::from_secs(1), async { 7 })
        .await
        .unwrap();
    assert_eq!(fast, 7);
}

flavours!(run_returns_the_value_given_to_stop_and_rejects_another_type);
async fn run_returns_the_value_given_to_stop_and_rejects_another_type() {
    let lp = test_loop();
    lp.stop("done");
    assert_eq!(lp.run::<&str>().await.unwrap(), "done");
    lp.stop(5u8);
    let err = lp.run::<String>().await.unwrap_err();
    assert!(err.is_invalid_input());
}

#[test]
fn an_owned_current_thread_loop_runs_notifiers() {
    let lp = Loop::builder().current_thread().build().unwrap();
    let j = Journal::new();
    let l = lp.clone();
    let jj = j.clone();
    let restarts = lp.block_on(async move {
        let p = l.add(probe("p", &jj)).await.unwrap();
        p.tell(Panic("boom")).await.unwrap();
        p.ask(ioasync::test_util::Note("x".into())).await.unwrap()
    });
    assert_eq!(restarts, 1);
    assert_eq!(j.count("start /p"), 2);
}

#[test]
fn an_owned_multi_thread_loop_runs_user_code_on_a_worker() {
    let lp = Loop::builder().worker_threads(2).build().unwrap();
    let caller = std::thread::current().id();
    let ran_on = lp.block_on(async move { std::thread::current().id() });
    assert_ne!(ran_on, caller);
}

flavours!(the_tree_snapshot_prints_an_indented_tree);
async fn the_tree_snapshot_prints_an_indented_tree() {
    let lp = test_loop();
    let j = Journal::new();
    lp.add(parent(
        "server",
        &j,
        vec![probe("conn-1", &j), probe("conn-2", &j)],
    ))
    .await
    .unwrap();
    let tree = lp.tree();
    assert_eq!(tree.iter().count(), 4);
    let text = tree.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "/ root running queue=0");
    assert_eq!(lines[1], "  /server probe running restarts=0 queue=0");
    assert_eq!(
        lines[2],
        "    /server/conn-1 probe running restarts=0 queue=0"
    );
    assert_eq!(
        lines[3],
        "    /server/conn-2 probe running restarts=0 queue=0"
    );
}

flavours!(a_failure_escalating_past_the_root_ends_run_with_an_error);
async fn a_failure_escalating_past_the_root_ends_run_with_an_error() {
    let lp = test_loop();
    let j = Journal::new();
    let p = lp
        .add(probe("p", &j).restart_limit(0, Duration::from_secs(60)))
        .await
        .unwrap();
    p.tell(Panic("fatal")).await.unwrap();
    let err = bounded("run", lp.run::<()>()).await.unwrap_err();
    assert!(err.is_escalation(), "{err}");
    assert!(err.to_string().contains("/p"), "{err}");
}

flavours!(bad_input_gets_a_clear_error);
async fn bad_input_gets_a_clear_error() {
    let lp = test_loop();
    let j = Journal::new();
    lp.add(probe("dup", &j)).await.unwrap();
    let err = lp.add(probe("dup", &j)).await.unwrap_err();
    assert!(err.is_invalid_input() && err.op() == "add", "{err}");
    let err = lp.add(probe("a/b", &j)).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let failing =
        Spec::<Probe>::new("f", ProbeArgs::new(&j).fail_inits(1)).restart(Restart::Temporary);
    let err = lp.add(failing).await.unwrap_err();
    assert_eq!(err.op(), "init");
    assert!(lp.tree().find("/f").is_none());
    // The name is free again after a failed start.
    lp.add(probe("f", &j)).await.unwrap();
}

flavours!(serial shutdown_on_signals_is_triggered_by_sigterm);
async fn shutdown_on_signals_is_triggered_by_sigterm() {
    let lp = Loop::builder()
        .adopt_current()
        .shutdown_on_signals(Duration::from_secs(5))
        .build()
        .unwrap();
    let j = Journal::new();
    let p = lp.add(probe("p", &j)).await.unwrap();
    // build() installed the handlers before returning.
    raise_sigterm();
    let err = bounded("run", lp.run::<()>()).await.unwrap_err();
    assert!(
        err.is_cancelled() && err.to_string().contains("SIGTERM"),
        "{err}"
    );
    assert!(!p.is_alive());
    assert_eq!(j.count("stop /p"), 1);
}

fn raise_sigterm() {
    std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill -TERM");
}

// IO::Async's `watch_idle`: idle callbacks run on the next round in the
// order given; one registered from inside an idle callback runs on the
// round after; an unwatched one never runs.
flavours!(watch_idle_runs_in_order_a_nested_one_next_round_and_an_unwatched_one_never);
async fn watch_idle_runs_in_order_a_nested_one_next_round_and_an_unwatched_one_never() {
    let lp = test_loop();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (s, l) = (seen.clone(), lp.clone());
    // Registered from one callback (the root is busy running it), so the
    // order does not depend on when the root's worker thread gets there.
    lp.watch_idle(move || {
        let (s1, l1) = (s.clone(), l.clone());
        l.watch_idle(move || {
            s1.lock().unwrap().push("a");
            let s = s1.clone();
            l1.watch_idle(move || {
                s.lock().unwrap().push("nested");
                let _ = tx.send(());
            })
            .detach();
        })
        .detach();
        let s2 = s.clone();
        l.watch_idle(move || s2.lock().unwrap().push("b")).detach();
        let s3 = s.clone();
        let cancelled = l.watch_idle(move || s3.lock().unwrap().push("cancelled"));
        if cancelled.cancel() {
            s.lock().unwrap().push("unwatched");
        }
    })
    .detach();
    bounded("the nested idle", rx).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["unwatched", "a", "b", "nested"]);
    // The future form completes on the next round; dropped, it cancels.
    bounded("later_future", lp.later_future()).await;
    drop(lp.later_future());
}
