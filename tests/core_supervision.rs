//! Supervision: strategies, restart types, limits, escalation, backoff,
//! ordered stop, and the kameo 0.22.2 defects of ARCHITECTURE.md as regressions.

#[macro_use]
mod support;

use std::time::Duration;

use ioasync::{
    notifier::Spec,
    supervision::{Backoff, ExitReason, NodeState, Restart, Strategy, SupervisionEventKind},
    test_util::{Exit, Gate, Hang, Journal, Note, Panic, Probe, ProbeArgs},
};
use support::{bounded, parent, probe, stopped, test_loop, wait_event};
use tokio::time::Instant;

/// Lines of `j` from the first line equal to `marker` (exclusive) on.
fn after(j: &Journal, marker: &str) -> Vec<String> {
    let lines = j.lines();
    let at = lines
        .iter()
        .position(|l| l == marker)
        .expect("marker present");
    lines[at + 1..].to_vec()
}

async fn three_children(strategy: Strategy) -> (ioasync::Loop, Journal) {
    let lp = test_loop();
    let j = Journal::new();
    let kids = vec![probe("a", &j), probe("b", &j), probe("c", &j)];
    lp.add(parent("sup", &j, kids).strategy(strategy))
        .await
        .unwrap();
    j.record("-- panic b");
    (lp, j)
}

async fn panic_child(lp: &ioasync::Loop, path: &str) {
    lookup(lp, path).tell(Panic("boom")).await.unwrap();
}

fn lookup(lp: &ioasync::Loop, path: &str) -> ioasync::notifier::NotifierRef<Probe> {
    lp.lookup::<Probe>(path).expect("probe in tree")
}

flavours!(one_for_one_restarts_only_the_failed_child);
async fn one_for_one_restarts_only_the_failed_child() {
    let (lp, j) = three_children(Strategy::OneForOne).await;
    panic_child(&lp, "/sup/b").await;
    bounded("b restarted", j.wait_count("start /sup/b", 2)).await;
    // on_stop runs at the end of every incarnation, after a panic too.
    assert_eq!(after(&j, "-- panic b"), vec!["stop /sup/b", "start /sup/b"]);
    assert_eq!(lookup(&lp, "/sup/b").restarts(), 1);
    assert_eq!(lookup(&lp, "/sup/a").restarts(), 0);
}

flavours!(one_for_all_restarts_every_sibling_in_order);
async fn one_for_all_restarts_every_sibling_in_order() {
    let (lp, j) = three_children(Strategy::OneForAll).await;
    panic_child(&lp, "/sup/b").await;
    bounded("c restarted", j.wait_count("start /sup/c", 2)).await;
    assert_eq!(
        after(&j, "-- panic b"),
        vec![
            "stop /sup/b",
            "stop /sup/c",
            "stop /sup/a",
            "start /sup/a",
            "start /sup/b",
            "start /sup/c"
        ]
    );
}

flavours!(rest_for_one_restarts_the_failed_child_and_later_siblings);
async fn rest_for_one_restarts_the_failed_child_and_later_siblings() {
    let (lp, j) = three_children(Strategy::RestForOne).await;
    panic_child(&lp, "/sup/b").await;
    bounded("c restarted", j.wait_count("start /sup/c", 2)).await;
    assert_eq!(
        after(&j, "-- panic b"),
        vec!["stop /sup/b", "stop /sup/c", "start /sup/b", "start /sup/c"]
    );
    assert_eq!(lookup(&lp, "/sup/a").restarts(), 0);
}

flavours!(temporary_children_are_never_restarted);
async fn temporary_children_are_never_restarted() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let t = lp
        .add(probe("t", &j).restart(Restart::Temporary))
        .await
        .unwrap();
    t.tell(Panic("boom")).await.unwrap();
    wait_event(&mut events, stopped("/t")).await;
    assert_eq!(j.count("start /t"), 1);
    assert!(lp.tree().find("/t").is_none(), "pruned from the tree");
    assert!(!t.is_alive());
}

flavours!(transient_children_restart_only_after_an_abnormal_exit);
async fn transient_children_restart_only_after_an_abnormal_exit() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let normal = lp
        .add(probe("n", &j).restart(Restart::Transient))
        .await
        .unwrap();
    let crash = lp
        .add(probe("c", &j).restart(Restart::Transient))
        .await
        .unwrap();
    normal.tell(Exit).await.unwrap();
    wait_event(&mut events, stopped("/n")).await;
    assert_eq!(j.count("start /n"), 1, "normal exit: not restarted");
    assert_eq!(j.count("stop /n"), 1, "on_stop ran once");
    crash.tell(Panic("boom")).await.unwrap();
    bounded("c restarted", j.wait_count("start /c", 2)).await;
    assert_eq!(crash.ask(Note("after".into())).await.unwrap(), 1);
}

flavours!(permanent_children_restart_even_after_a_normal_exit);
async fn permanent_children_restart_even_after_a_normal_exit() {
    let lp = test_loop();
    let j = Journal::new();
    let p = lp.add(probe("p", &j)).await.unwrap();
    p.tell(Exit).await.unwrap();
    bounded("p restarted", j.wait_count("start /p", 2)).await;
    assert_eq!(p.ask(Note("x".into())).await.unwrap(), 1);
}

flavours!(past_the_limit_a_failure_escalates_exactly_once);
async fn past_the_limit_a_failure_escalates_exactly_once() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let kid = probe("x", &j).restart_limit(2, Duration::from_secs(60));
    lp.add(parent("sup", &j, vec![kid])).await.unwrap();
    for n in 1..=2 {
        lookup(&lp, "/sup/x").tell(Panic("boom")).await.unwrap();
        bounded("x restarted", j.wait_count("start /sup/x", n + 1)).await;
    }
    // The third failure within the window is past the limit of 2.
    lookup(&lp, "/sup/x").tell(Panic("boom")).await.unwrap();
    bounded("sup restarted", j.wait_count("start /sup", 2)).await;
    bounded("x started by the new sup", j.wait_count("start /sup/x", 4)).await;
    // A round trip through the new incarnation: everything has settled.
    assert_eq!(
        lookup(&lp, "/sup/x").ask(Note("ok".into())).await.unwrap(),
        0
    );
    let mut gave_up = 0;
    let mut escalated = 0;
    while let Ok(ev) = events.try_recv() {
        match &ev.what {
            SupervisionEventKind::GaveUp(_) if ev.path == "/sup/x" => gave_up += 1,
            SupervisionEventKind::Exited(ExitReason::Escalated { child, .. }) => {
                assert_eq!(ev.path, "/sup");
                assert_eq!(child, "/sup/x");
                escalated += 1;
            }
            _ => {}
        }
    }
    assert_eq!((gave_up, escalated), (1, 1));
    assert_eq!(lookup(&lp, "/sup").restarts(), 1);
}

paused!(failures_spread_beyond_the_window_do_not_escalate);
async fn failures_spread_beyond_the_window_do_not_escalate() {
    let lp = test_loop();
    let j = Journal::new();
    let x = lp
        .add(probe("x", &j).restart_limit(1, Duration::from_secs(1)))
        .await
        .unwrap();
    for n in 1..=4 {
        x.tell(Panic("boom")).await.unwrap();
        bounded("x restarted", j.wait_count("start /x", n + 1)).await;
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    assert_eq!(x.restarts(), 4);
    assert_eq!(lp.root().state(), NodeState::Running);
}

paused!(restart_backoff_follows_the_configured_curve);
async fn restart_backoff_follows_the_configured_curve() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let backoff = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_millis(1000));
    let x = lp
        .add(
            probe("x", &j)
                .restart_limit(10, Duration::from_secs(3600))
                .backoff(backoff),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    for n in 1..=5u32 {
        let t0 = Instant::now();
        x.tell(Panic("boom")).await.unwrap();
        let ev = wait_event(&mut events, |e| {
            matches!(e.what, SupervisionEventKind::Restarting { .. })
        })
        .await;
        let SupervisionEventKind::Restarting { attempt, delay } = ev.what else {
            unreachable!()
        };
        assert_eq!(attempt, n);
        bounded("x restarted", j.wait_count("start /x", n as usize + 1)).await;
        let waited = t0.elapsed();
        assert!(
            waited >= delay && waited < delay + Duration::from_millis(5),
            "restart {n}: waited {waited:?} for a delay of {delay:?}"
        );
        seen.push(delay.as_millis());
    }
    assert_eq!(seen, vec![100, 200, 400, 800, 1000]);
}

flavours!(stop_goes_leaves_first_in_reverse_start_order);
async fn stop_goes_leaves_first_in_reverse_start_order() {
    let lp = test_loop();
    let j = Journal::new();
    lp.add(parent("a", &j, vec![probe("a1", &j), probe("a2", &j)]))
        .await
        .unwrap();
    lp.add(parent("b", &j, vec![probe("b1", &j)]))
        .await
        .unwrap();
    j.record("-- shutdown");
    let report = lp.shutdown(Some(Duration::from_secs(5))).await;
    let order = ["/b/b1", "/b", "/a/a2", "/a/a1", "/a"];
    assert_eq!(report.stopped, order);
    assert!(report.is_clean());
    let stops: Vec<String> = order.iter().map(|p| format!("stop {p}")).collect();
    assert_eq!(after(&j, "-- shutdown"), stops);
    assert_eq!(lp.live_notifiers(), 1, "only the root is left");
}

paused!(a_child_ignoring_a_graceful_stop_is_killed_at_its_deadline);
async fn a_child_ignoring_a_graceful_stop_is_killed_at_its_deadline() {
    let lp = test_loop();
    let j = Journal::new();
    let never = Gate::new();
    let slow = Spec::<Probe>::new("slow", ProbeArgs::new(&j).stop_gate(&never))
        .stop_timeout(Duration::from_secs(2));
    let slow = lp.add(slow).await.unwrap();
    let stuck = lp
        .add(probe("stuck", &j).stop_timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    let ok = lp.add(probe("ok", &j)).await.unwrap();
    stuck.tell(Hang(never.clone())).await.unwrap();
    bounded("stuck hangs", j.wait_count("hang /stuck", 1)).await;
    let t0 = Instant::now();
    let report = lp.shutdown(Some(Duration::from_secs(30))).await;
    assert_eq!(report.stopped, ["/ok", "/stuck", "/slow"]);
    assert_eq!(report.overran, ["/stuck", "/slow"]);
    assert_eq!(t0.elapsed(), Duration::from_secs(4), "two deadlines of 2 s");
    assert_eq!(j.count("stopping /slow"), 1);
    assert_eq!(j.count("stop /slow"), 0, "killed inside on_stop");
    assert!(!slow.is_alive() && !stuck.is_alive() && !ok.is_alive());
}

flavours!(after_the_loop_shuts_down_no_notifier_actor_is_alive);
async fn after_the_loop_shuts_down_no_notifier_actor_is_alive() {
    let lp = test_loop();
    let j = Journal::new();
    let a = lp
        .add(parent("a", &j, vec![probe("a1", &j)]))
        .await
        .unwrap();
    let a1 = lookup(&lp, "/a/a1");
    let b = lp.add(probe("b", &j)).await.unwrap();
    lp.shutdown(None).await;
    for r in [&a, &a1, &b] {
        assert!(!r.is_alive(), "{} still alive", r.path());
    }
    assert!(b.ask(Note("late".into())).await.unwrap_err().is_closed());
}

#[test]
fn dropping_an_owned_loop_ends_every_notifier_actor() {
    let lp = ioasync::Loop::builder().current_thread().build().unwrap();
    let j = Journal::new();
    let l = lp.clone();
    let refs = lp.block_on(async move {
        let a = l.add(parent("a", &j, vec![probe("a1", &j)])).await.unwrap();
        let a1 = lookup(&l, "/a/a1");
        (a, a1)
    });
    assert!(refs.0.is_alive() && refs.1.is_alive());
    drop(lp);
    assert!(!refs.0.is_alive() && !refs.1.is_alive());
}

flavours!(messages_queued_for_a_failed_permanent_child_reach_its_next_incarnation);
async fn messages_queued_for_a_failed_permanent_child_reach_its_next_incarnation() {
    let lp = test_loop();
    let j = Journal::new();
    let c = lp.add(probe("c", &j)).await.unwrap();
    let gate = Gate::new();
    c.tell(Hang(gate.clone())).await.unwrap();
    c.tell(Panic("boom")).await.unwrap();
    c.tell(Note("m1".into())).await.unwrap();
    let asker = {
        let c = c.clone();
        tokio::spawn(async move { c.ask(Note("m2".into())).await })
    };
    bounded("c hangs", j.wait_count("hang /c", 1)).await;
    gate.open();
    let restarts = bounded("m2 answered", asker).await.unwrap().unwrap();
    assert_eq!(restarts, 1, "answered by the restarted incarnation");
    assert_eq!(
        after(&j, "hang /c"),
        vec!["stop /c", "start /c", "msg /c m1", "msg /c m2"]
    );
}

flavours!(messages_queued_for_a_child_that_stops_for_good_fail_loudly);
async fn messages_queued_for_a_child_that_stops_for_good_fail_loudly() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let c = lp
        .add(probe("c", &j).restart(Restart::Temporary))
        .await
        .unwrap();
    let gate = Gate::new();
    c.tell(Hang(gate.clone())).await.unwrap();
    c.tell(Panic("boom")).await.unwrap();
    c.tell(Note("lost".into())).await.unwrap();
    let asker = {
        let c = c.clone();
        tokio::spawn(async move { c.ask(Note("asked".into())).await })
    };
    bounded("c hangs", j.wait_count("hang /c", 1)).await;
    gate.open();
    let err = bounded("ask answered", asker).await.unwrap().unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert_eq!(err.op(), "ask");
    let ev = wait_event(&mut events, |e| {
        matches!(e.what, SupervisionEventKind::Undelivered { .. })
    })
    .await;
    assert!(matches!(
        ev.what,
        SupervisionEventKind::Undelivered { count: 1 }
    ));
    assert_eq!(j.count("msg /c lost"), 0);
}

flavours!(a_panicking_ask_gets_an_error_and_the_child_restarts);
async fn a_panicking_ask_gets_an_error_and_the_child_restarts() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let c = lp.add(probe("c", &j)).await.unwrap();
    let s = lp.add(probe("sibling", &j)).await.unwrap();
    let err = c.ask(Panic("in ask")).await.unwrap_err();
    assert_eq!(err.op(), "ask");
    let ev = wait_event(&mut events, |e| {
        e.path == "/c" && matches!(e.what, SupervisionEventKind::Exited(_))
    })
    .await;
    let SupervisionEventKind::Exited(reason) = ev.what else {
        unreachable!()
    };
    assert_eq!(reason.panic_message(), Some("in ask"));
    bounded("c restarted", j.wait_count("start /c", 2)).await;
    assert_eq!(
        s.ask(Note("alive".into())).await.unwrap(),
        0,
        "sibling untouched"
    );
}

// Regressions for the kameo 0.22.2 supervision defects listed in ARCHITECTURE.md.

flavours!(regression_one_for_all_still_restarts_after_a_sibling_stopped_for_good);
async fn regression_one_for_all_still_restarts_after_a_sibling_stopped_for_good() {
    let lp = test_loop();
    let j = Journal::new();
    let kids = vec![
        probe("temp", &j).restart(Restart::Temporary),
        probe("perm", &j),
    ];
    let mut events = lp.supervision_events();
    lp.add(parent("sup", &j, kids).strategy(Strategy::OneForAll))
        .await
        .unwrap();
    lookup(&lp, "/sup/temp").tell(Exit).await.unwrap();
    wait_event(&mut events, stopped("/sup/temp")).await;
    let perm = lookup(&lp, "/sup/perm");
    perm.tell(Panic("boom")).await.unwrap();
    let restarts = bounded("ask after restart", perm.ask(Note("x".into()))).await;
    assert_eq!(restarts.unwrap(), 1);
}

flavours!(regression_stopping_a_permanent_child_leaves_no_zombie);
async fn regression_stopping_a_permanent_child_leaves_no_zombie() {
    let lp = test_loop();
    let j = Journal::new();
    let p = lp.add(probe("p", &j)).await.unwrap();
    let report = p.stop().await;
    assert_eq!(report.stopped, ["/p"]);
    assert!(!p.is_alive());
    assert!(lp.tree().find("/p").is_none());
    let err = bounded("ask to a stopped child", p.ask(Note("x".into())))
        .await
        .unwrap_err();
    assert!(err.is_closed());
    assert_eq!(j.count("start /p"), 1, "not restarted");
}

flavours!(regression_the_parent_is_told_of_restarts);
async fn regression_the_parent_is_told_of_restarts() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let p = lp.add(probe("p", &j)).await.unwrap();
    p.tell(Panic("boom")).await.unwrap();
    let ev = wait_event(&mut events, |e| {
        matches!(e.what, SupervisionEventKind::Restarted { .. })
    })
    .await;
    assert_eq!(ev.path, "/p");
    assert!(matches!(
        ev.what,
        SupervisionEventKind::Restarted { restarts: 1 }
    ));
    assert_eq!(lp.tree().find("/p").unwrap().restarts, 1);
}

flavours!(regression_dead_children_are_pruned);
async fn regression_dead_children_are_pruned() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    for i in 0..20 {
        let t = lp
            .add(probe(&format!("t{i}"), &j).restart(Restart::Temporary))
            .await
            .unwrap();
        t.tell(Exit).await.unwrap();
    }
    for _ in 0..20 {
        wait_event(&mut events, |e| {
            matches!(e.what, SupervisionEventKind::Stopped)
        })
        .await;
    }
    assert!(lp.tree().children.is_empty(), "{}", lp.tree());
    assert_eq!(lp.live_notifiers(), 1);
}

flavours!(regression_a_new_incarnation_never_starts_while_the_old_is_in_on_stop);
async fn regression_a_new_incarnation_never_starts_while_the_old_is_in_on_stop() {
    let lp = test_loop();
    let j = Journal::new();
    let gate = Gate::new();
    let p = lp
        .add(Spec::<Probe>::new("p", ProbeArgs::new(&j).stop_gate(&gate)))
        .await
        .unwrap();
    p.tell(Exit).await.unwrap();
    bounded("on_stop entered", j.wait_count("stopping /p", 1)).await;
    // A message sent now can only be handled by the next incarnation.
    let asker = {
        let p = p.clone();
        tokio::spawn(async move { p.ask(Note("x".into())).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(j.count("start /p"), 1, "no second start while in on_stop");
    gate.open();
    assert_eq!(bounded("ask", asker).await.unwrap().unwrap(), 1);
    assert_eq!(
        after(&j, "stopping /p"),
        vec!["stop /p", "start /p", "msg /p x"]
    );
}

/// A notifier over something that cannot be made again (what streams,
/// sockets and processes are): its spec is `Spec::once`.
struct OneShot;

impl ioasync::notifier::Notifier for OneShot {
    type Args = ioasync::notifier::Once<u32>;
    async fn init(
        args: ioasync::notifier::Once<u32>,
        ctx: &mut ioasync::notifier::Ctx<'_, Self>,
    ) -> ioasync::Result<Self> {
        args.take_for(ctx.path())?;
        Ok(OneShot)
    }
}

flavours!(a_one_shot_notifier_restarted_by_its_group_fails_with_a_clear_error);
async fn a_one_shot_notifier_restarted_by_its_group_fails_with_a_clear_error() {
    // `Spec::once` keeps nothing for restarts (an idle connection does not
    // hold its spent arguments); a group restart still reaches it, and its
    // start must fail plainly, not hang or panic.
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let sup = lp
        .add(parent("sup", &j, vec![probe("perm", &j)]).strategy(Strategy::OneForAll))
        .await
        .unwrap();
    sup.add_child(Spec::<OneShot>::once("conn", 7).restart(Restart::Temporary))
        .await
        .unwrap();
    panic_child(&lp, "/sup/perm").await;
    let ev = wait_event(&mut events, |e| {
        e.path == "/sup/conn"
            && matches!(&e.what, SupervisionEventKind::Exited(ExitReason::Failed(_)))
    })
    .await;
    let SupervisionEventKind::Exited(ExitReason::Failed(err)) = &ev.what else {
        unreachable!()
    };
    assert!(
        err.to_string()
            .contains("/sup/conn cannot be restarted: what it was started over is gone"),
        "{err}"
    );
    wait_event(&mut events, stopped("/sup/conn")).await;
    bounded("perm restarted", j.wait_count("start /sup/perm", 2)).await;
    assert!(
        lp.tree().find("/sup/conn").is_none(),
        "a temporary child leaves"
    );
}
