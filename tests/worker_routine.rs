//! Routines: a worker process with a channel in and a channel out,
//! supervised like any notifier.

#[macro_use]
mod support;

use ioasync::{
    signal::SignalKind,
    supervision::{ExitReason, Restart, SupervisionEventKind},
    worker::{Entry, Routine, RoutineIo, RoutineRef},
};
use support::{bounded, test_loop, wait_event};

/// Doubles numbers until it reads 0, which makes it panic, or until its
/// input ends; returns how many it doubled.
fn doubler(io: &mut RoutineIo<u32, u64>) -> u32 {
    let mut n = 0;
    while let Some(x) = io.recv() {
        if x == 0 {
            panic!("boom on zero after {n}");
        }
        io.send(&(u64::from(x) * 2));
        n += 1;
    }
    n
}

/// Channel 1 in: names, answered upper-cased on channel 1 out, until it
/// closes; then channel 0 in: numbers, answered doubled on channel 0 out
/// (they waited meanwhile), until it closes. Returns how many of each.
fn mux(io: &mut RoutineIo<u32, u64>) -> (u32, u32) {
    let mut names = 0;
    while let Some(name) = io.recv_on::<String>(1) {
        io.send_on(1, &name.to_uppercase());
        names += 1;
    }
    let mut numbers = 0;
    while let Some(x) = io.recv() {
        io.send(&(u64::from(x) * 2));
        numbers += 1;
    }
    (names, numbers)
}

/// Counts the messages it gets, from where its last checkpoint says,
/// checkpointing every 100; first says where it starts. A 0 makes it
/// checkpoint something that is not a count (a corrupt checkpoint).
fn counter(io: &mut RoutineIo<u32, u64>) -> u64 {
    let mut n: u64 = io.resume().unwrap_or(0);
    io.send(&n);
    while let Some(x) = io.recv() {
        if x == 0 {
            io.checkpoint(&"not a count");
            io.send(&u64::MAX);
            continue;
        }
        n += 1;
        if n.is_multiple_of(100) {
            io.checkpoint(&n);
        }
        io.send(&n);
    }
    n
}

#[test]
fn ioasync_worker() {
    ioasync::worker::run_if_worker([
        Entry::routine("doubler", doubler),
        Entry::routine("counter", counter),
        Entry::routine("mux", mux),
        Entry::routine("summer", |io: &mut RoutineIo<(), ()>| {
            let mut sum = 0u64;
            while let Some(x) = io.recv_on::<u64>(1) {
                sum += x;
            }
            sum
        }),
        Entry::routine("where", |_: &mut RoutineIo<(), ()>| {
            (
                std::env::var("IOASYNC_TEST_SETUP").ok(),
                std::env::current_dir().unwrap().display().to_string(),
            )
        }),
    ]);
}

fn args() -> [&'static str; 3] {
    ["--exact", "ioasync_worker", "--nocapture"]
}

flavours!(a_routine_talks_over_its_channels_and_returns_a_result);
async fn a_routine_talks_over_its_channels_and_returns_a_result() {
    let lp = test_loop();
    let (spec, mut io) = Routine::<u32, u64, u32>::spec("d", "doubler", 16);
    lp.add(spec.exec_args(args())).await.unwrap();
    for x in 1..=100u32 {
        io.input.send(x).await.unwrap();
        assert_eq!(
            bounded("reply", io.output.recv()).await.unwrap().unwrap(),
            u64::from(x) * 2
        );
    }
    drop(io.input); // its recv() ends: it returns
    assert_eq!(bounded("result", io.result.wait()).await.unwrap(), 100);
}

flavours!(a_panicking_permanent_routine_is_restarted_and_its_supervisor_sees_the_message);
async fn a_panicking_permanent_routine_is_restarted_and_its_supervisor_sees_the_message() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let (spec, mut io) = Routine::<u32, u64, u32>::spec("r", "doubler", 16);
    let r = lp
        .add(spec.exec_args(args()).restart(Restart::Permanent))
        .await
        .unwrap();
    io.input.send(21).await.unwrap();
    assert_eq!(
        bounded("reply", io.output.recv()).await.unwrap().unwrap(),
        42
    );
    io.input.send(0).await.unwrap();
    let ev = wait_event(&mut events, |e| {
        e.path == "/r" && matches!(e.what, SupervisionEventKind::Exited(_))
    })
    .await;
    let SupervisionEventKind::Exited(ExitReason::Panicked { message: msg, .. }) = ev.what else {
        panic!("{ev:?}")
    };
    assert_eq!(msg, "boom on zero after 1");
    wait_event(&mut events, |e| {
        e.path == "/r" && matches!(e.what, SupervisionEventKind::Restarted { .. })
    })
    .await;
    // The new incarnation (a new process) serves the same channels.
    io.input.send(5).await.unwrap();
    assert_eq!(
        bounded("reply", io.output.recv()).await.unwrap().unwrap(),
        10
    );
    assert_eq!(r.restarts(), 1);
}

flavours!(a_routine_whose_process_is_sigkilled_fails_with_the_exit_status);
async fn a_routine_whose_process_is_sigkilled_fails_with_the_exit_status() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let (spec, mut io) = Routine::<u32, u64, u32>::spec("k", "doubler", 16);
    let r = lp
        .add(spec.exec_args(args()).restart(Restart::Temporary))
        .await
        .unwrap();
    io.input.send(1).await.unwrap();
    bounded("reply", io.output.recv()).await.unwrap().unwrap();
    let pid = r.worker_pid().await.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = bounded("result", io.result.wait()).await.unwrap_err();
    assert!(err.is_peer_died(), "{err}");
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    wait_event(&mut events, |e| {
        e.path == "/k" && matches!(e.what, SupervisionEventKind::Stopped)
    })
    .await;
}

flavours!(kill_routine_signals_its_worker_and_the_death_is_its_failure);
async fn kill_routine_signals_its_worker_and_the_death_is_its_failure() {
    let lp = test_loop();
    let (spec, mut io) = Routine::<u32, u64, u32>::spec("k", "doubler", 16);
    let r = lp
        .add(spec.exec_args(args()).restart(Restart::Temporary))
        .await
        .unwrap();
    io.input.send(2).await.unwrap();
    assert_eq!(
        bounded("reply", io.output.recv()).await.unwrap().unwrap(),
        4
    );
    let pid = r.worker_pid().await.unwrap();
    r.signal(SignalKind::kill()).await.unwrap();
    let err = bounded("result", io.result.wait()).await.unwrap_err();
    assert!(err.is_peer_died(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&pid.to_string()) && text.contains("SIGKILL"),
        "{text}"
    );
    bounded("stopped", r.wait_stopped()).await;
}

flavours!(a_routine_worker_setup_is_applied_before_exec);
async fn a_routine_worker_setup_is_applied_before_exec() {
    let lp = test_loop();
    let (spec, mut io) = Routine::<(), (), (Option<String>, String)>::spec("w", "where", 1);
    lp.add(spec.exec_args(args()).worker_setup(|cmd| {
        cmd.env("IOASYNC_TEST_SETUP", "routine").current_dir("/");
    }))
    .await
    .unwrap();
    assert_eq!(
        bounded("result", io.result.wait()).await.unwrap(),
        (Some("routine".to_string()), "/".to_string())
    );
}

flavours!(a_routine_with_several_channels_in_and_out_keeps_them_apart_and_closes_each_alone);
async fn a_routine_with_several_channels_in_and_out_keeps_them_apart_and_closes_each_alone() {
    let lp = test_loop();
    let (mut spec, mut io) = Routine::<u32, u64, (u32, u32)>::spec("mux", "mux", 16);
    let names = spec.channel_in::<String>(16);
    let mut upper = spec.channel_out::<String>(16);
    lp.add(spec.exec_args(args())).await.unwrap();
    // Numbers first: the routine reads names until that channel closes,
    // so these wait in order.
    for x in 1..=5u32 {
        io.input.send(x).await.unwrap();
    }
    for n in ["ada", "bob", "cy"] {
        names.send(n.to_string()).await.unwrap();
        assert_eq!(
            bounded("upper", upper.recv()).await.unwrap().unwrap(),
            n.to_uppercase()
        );
    }
    drop(names); // channel 1 alone closes: the routine moves on
    for x in 1..=5u64 {
        assert_eq!(
            bounded("doubled", io.output.recv()).await.unwrap().unwrap(),
            x * 2
        );
    }
    drop(io.input);
    assert_eq!(bounded("result", io.result.wait()).await.unwrap(), (3, 5));
}

flavours!(one_routines_output_feeds_another_routines_input);
async fn one_routines_output_feeds_another_routines_input() {
    let lp = test_loop();
    let (a, mut a_io) = Routine::<u32, u64, u32>::spec("a", "doubler", 16);
    let (mut b, mut b_io) = Routine::<(), (), u64>::spec("b", "summer", 16);
    // What `a` writes is what `b` reads on its channel 1.
    let a_output = std::mem::replace(&mut a_io.output, ioasync::channel::channel(1).1);
    b.channel_in_from(a_output);
    let a_ref = lp
        .add(a.exec_args(args()).restart(Restart::Temporary))
        .await
        .unwrap();
    lp.add(b.exec_args(args())).await.unwrap();
    for x in 1..=10u32 {
        a_io.input.send(x).await.unwrap();
    }
    drop(a_io.input);
    assert_eq!(bounded("a's result", a_io.result.wait()).await.unwrap(), 10);
    // `a` gone: its output ends, so does `b`'s channel 1.
    bounded("a stopped", a_ref.wait_stopped()).await;
    drop(b_io.input);
    assert_eq!(bounded("b's sum", b_io.result.wait()).await.unwrap(), 110);
}

async fn next(out: &mut ioasync::channel::Receiver<u64>) -> u64 {
    bounded("output", out.recv()).await.unwrap().unwrap()
}

flavours!(a_sigkilled_routine_resumes_from_its_last_checkpoint_and_a_corrupt_one_starts_fresh);
async fn a_sigkilled_routine_resumes_from_its_last_checkpoint_and_a_corrupt_one_starts_fresh() {
    use ioasync::{notifier::Subscription, prelude::*, worker::RoutineEvent};
    let lp = test_loop();
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (spec, mut io) = Routine::<u32, u64, u64>::spec("count", "counter", 16);
    let r = lp
        .add(
            spec.exec_args(args())
                .restart(Restart::Permanent)
                .into_spec()
                .subscribe(Subscription::closure(move |e: RoutineEvent| {
                    let _ = events.send(e);
                })),
        )
        .await
        .unwrap();
    let mut sup = lp.supervision_events();
    assert_eq!(next(&mut io.output).await, 0, "a first start begins fresh");
    for i in 1..=250u32 {
        io.input.send(i).await.unwrap();
        assert_eq!(next(&mut io.output).await, u64::from(i));
    }
    for at in [100, 200] {
        match bounded("a checkpoint", seen.recv()).await.unwrap() {
            RoutineEvent::Checkpointed(bytes) => assert!(bytes > 0 && bytes < 16, "{at}: {bytes}"),
            e => panic!("{e:?}"),
        }
    }
    // SIGKILL: no chance to save anything more. It resumes from 200.
    r.signal(SignalKind::kill()).await.unwrap();
    wait_event(&mut sup, |e| {
        matches!(e.what, SupervisionEventKind::Restarted { .. }) && e.path == "/count"
    })
    .await;
    assert_eq!(
        next(&mut io.output).await,
        200,
        "resumed from the last checkpoint"
    );
    for i in 201..=205u32 {
        io.input.send(i).await.unwrap();
        assert_eq!(next(&mut io.output).await, u64::from(i));
    }
    // A corrupt checkpoint: reported, and the next incarnation starts fresh.
    io.input.send(0).await.unwrap();
    assert_eq!(next(&mut io.output).await, u64::MAX);
    assert!(matches!(
        bounded("the bad checkpoint saved", seen.recv())
            .await
            .unwrap(),
        RoutineEvent::Checkpointed(_)
    ));
    r.signal(SignalKind::kill()).await.unwrap();
    assert_eq!(next(&mut io.output).await, 0, "started fresh");
    match bounded("the corrupt report", seen.recv()).await.unwrap() {
        RoutineEvent::CorruptCheckpoint(e) => {
            assert!(e.to_string().contains("resume"), "{e}");
        }
        e => panic!("{e:?}"),
    }
    drop(io.input);
}
