//! The core protocol where it used to break: many children at once on
//! both runtime flavours, restarts of notifiers that have subscribers,
//! panics and their terminal events, leaving the tree, and children that
//! never finish init or never stop.

#[macro_use]
mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ioasync::{
    Result,
    fs::{File, FileEvent},
    io::{Listen, Listener, ListenerEvent, ListenerRef, ReadAction, Stream, StreamEvent},
    kameo::{self, actor::ActorRef, message::Context},
    notifier::{Ctx, Notifier, Spec, Subscription},
    process::{Command, ExitStatus, Process, Stdio},
    supervision::{Exit, ExitReason, NodeState, Restart, Strategy, SupervisionEventKind},
    test_util::{Gate, Journal, Note, Panic, Probe, ProbeArgs},
    time::Periodic,
};
use support::{append, bounded, bounded_for, fresh_dir, probe, test_loop, wait_event};

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

/// Collects what a stream over a child's fd reads.
fn collect_into(got: &Arc<Mutex<Vec<u8>>>) -> Stdio {
    let got = got.clone();
    Stdio::stream(move |s| {
        s.on_read(move |_io, buf, _eof| {
            got.lock().unwrap().extend_from_slice(&buf.split());
            ReadAction::Wait
        })
    })
}

flavours!(a_thousand_open_process_rounds_three_children_at_a_time_never_hang);
async fn a_thousand_open_process_rounds_three_children_at_a_time_never_hang() {
    let lp = test_loop();
    for round in 0..1000u32 {
        let children = (0..3u32).map(|k| {
            let lp = lp.clone();
            async move {
                let code = ((round + k) % 7) as i32;
                let out = Arc::new(Mutex::new(Vec::new()));
                let mut cmd = sh(&format!("echo hi; exit {code}"));
                cmd.stdout(collect_into(&out));
                let child = lp
                    .open_process(Process::spec(format!("p{round}-{k}"), cmd))
                    .await
                    .unwrap();
                let st = bounded("exit", child.wait()).await.unwrap();
                assert_eq!(st, ExitStatus::Code(code), "round {round} child {k}");
                assert_eq!(&out.lock().unwrap()[..], b"hi\n", "round {round} child {k}");
                // It reports the exit, then leaves the tree.
                bounded("stopped", child.notifier().wait_stopped()).await;
            }
        });
        futures_util::future::join_all(children).await;
    }
    assert_eq!(lp.tree().children.len(), 0, "every process left the tree");
}

flavours!(an_exit_is_reported_after_both_output_streams_reach_eof_with_a_never_written_stdin);
async fn an_exit_is_reported_after_both_output_streams_reach_eof_with_a_never_written_stdin() {
    let lp = test_loop();
    for round in 0..1000u32 {
        let (out, err) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let mut cmd = sh("echo out; echo err >&2");
        cmd.stdin(Stdio::stream(|s| s))
            .stdout(collect_into(&out))
            .stderr(collect_into(&err));
        let child = lp
            .open_process(Process::spec(format!("p{round}"), cmd))
            .await
            .unwrap();
        let st = bounded("exit", child.wait()).await.unwrap();
        assert_eq!(st, ExitStatus::Code(0), "round {round}");
        // Reported only after both streams read to EOF: nothing is missing.
        assert_eq!(&out.lock().unwrap()[..], b"out\n", "round {round}");
        assert_eq!(&err.lock().unwrap()[..], b"err\n", "round {round}");
    }
}

/// A kameo actor recording what it is told.
struct Collector(Journal);

impl kameo::Actor for Collector {
    type Args = Journal;
    type Error = std::convert::Infallible;
    async fn on_start(j: Journal, _: ActorRef<Self>) -> std::result::Result<Self, Self::Error> {
        Ok(Collector(j))
    }
}

/// Three subscribers of one event type (a closure, an actor, a stream)
/// and a fourth that panics at the next event once armed.
struct Subscribers {
    closure: Journal,
    actor: Journal,
    stream: Journal,
    armed: Arc<AtomicBool>,
    _actor: Box<dyn std::any::Any + Send>,
    _task: tokio::task::JoinHandle<()>,
}

impl Subscribers {
    fn attach<N, E>(spec: Spec<N>, label: fn(&E) -> Option<String>) -> (Spec<N>, Subscribers)
    where
        N: Notifier + ioasync::notifier::Emits<E>,
        E: Clone + Send + Sync + 'static,
        Collector: kameo::message::Message<E>,
    {
        let (closure, actor, stream) = (Journal::new(), Journal::new(), Journal::new());
        let c = closure.clone();
        let by_closure = Subscription::closure(move |e: E| {
            if let Some(l) = label(&e) {
                c.record(l);
            }
        });
        let collector = <Collector as kameo::actor::Spawn>::spawn(actor.clone());
        let by_actor = Subscription::actor(&collector);
        let (by_stream, mut events) = Subscription::stream(64);
        let s = stream.clone();
        let task = tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let Some(l) = label(&e) {
                    s.record(l);
                }
            }
        });
        let armed = Arc::new(AtomicBool::new(false));
        let a = armed.clone();
        let panicker = Subscription::closure(move |_: E| {
            if a.swap(false, Ordering::SeqCst) {
                panic!("injected panic");
            }
        });
        let spec = spec
            .subscribe(by_closure)
            .subscribe(by_actor)
            .subscribe(by_stream)
            .subscribe(panicker);
        let subs = Subscribers {
            closure,
            actor,
            stream,
            armed,
            _actor: Box::new(collector),
            _task: task,
        };
        (spec, subs)
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn marks(&self) -> [usize; 3] {
        [&self.closure, &self.actor, &self.stream].map(|j| j.lines().len())
    }

    /// Waits until every subscriber has heard an event labelled `line`
    /// after `marks`.
    async fn wait_all(&self, marks: [usize; 3], line: &str) {
        for (j, mark) in [&self.closure, &self.actor, &self.stream]
            .into_iter()
            .zip(marks)
        {
            bounded(
                "an event after the restart",
                j.wait_until(|v| v[mark..].iter().any(|l| l == line)),
            )
            .await;
        }
    }
}

macro_rules! collects {
    ($($e:ty),*) => {$(
        impl kameo::message::Message<$e> for Collector {
            type Reply = ();
            async fn handle(&mut self, e: $e, _: &mut Context<Self, ()>) {
                if let Some(l) = label_of(&e) {
                    self.0.record(l);
                }
            }
        }
    )*};
}

trait Label {
    fn label(&self) -> Option<String>;
}
fn label_of<E: Label>(e: &E) -> Option<String> {
    e.label()
}
impl Label for ioasync::time::Tick {
    fn label(&self) -> Option<String> {
        Some("tick".into())
    }
}
impl Label for FileEvent {
    fn label(&self) -> Option<String> {
        match self {
            FileEvent::Size { new, .. } => Some(format!("size {new}")),
            FileEvent::Appeared(_) => Some("appeared".into()),
            _ => None,
        }
    }
}
impl Label for ListenerEvent {
    fn label(&self) -> Option<String> {
        matches!(self, ListenerEvent::Accepted { .. }).then(|| "accepted".into())
    }
}
impl Label for StreamEvent {
    fn label(&self) -> Option<String> {
        match self {
            StreamEvent::Read(b) => Some(format!("read {}", String::from_utf8_lossy(b).trim())),
            _ => None,
        }
    }
}
collects!(ioasync::time::Tick, FileEvent, ListenerEvent, StreamEvent);

/// Waits for the `n`-th restart of `path`.
async fn restarted(
    events: &mut tokio::sync::broadcast::Receiver<ioasync::supervision::SupervisionEvent>,
    path: &str,
    n: u32,
) {
    wait_event(events, |e| {
        e.path == path
            && matches!(e.what, SupervisionEventKind::Restarted { restarts } if restarts == n)
    })
    .await;
}

const RESTARTS: u32 = 10;

flavours!(a_periodic_restarted_ten_times_by_panics_keeps_all_its_subscribers);
async fn a_periodic_restarted_ten_times_by_panics_keeps_all_its_subscribers() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let spec: Spec<Periodic> = Periodic::spec("tick", Duration::from_millis(5)).into();
    let (spec, subs) = Subscribers::attach(spec.restart_limit(100, Duration::from_secs(60)), |e| {
        label_of(e)
    });
    let t = lp.add(spec).await.unwrap();
    for n in 1..=RESTARTS {
        subs.arm();
        restarted(&mut events, "/tick", n).await;
        let marks = subs.marks();
        subs.wait_all(marks, "tick").await;
    }
    assert_eq!(t.restarts(), RESTARTS);
}

flavours!(a_file_watcher_restarted_ten_times_by_panics_keeps_all_its_subscribers);
async fn a_file_watcher_restarted_ten_times_by_panics_keeps_all_its_subscribers() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let d = fresh_dir("restart-file");
    let path = d.join("watched");
    append(&path, "0");
    let spec = File::spec("file", &path, Duration::from_millis(5))
        .restart_limit(100, Duration::from_secs(60));
    let (spec, subs) = Subscribers::attach(spec, label_of);
    let w = lp.add(spec).await.unwrap();
    subs.wait_all([0; 3], "appeared").await;
    let mut size = 1;
    for n in 1..=RESTARTS {
        let marks = subs.marks();
        subs.arm();
        append(&path, "x");
        restarted(&mut events, "/file", n).await;
        // The new incarnation looks at the file first (it appeared to it),
        // then hears the change.
        subs.wait_all(marks, "appeared").await;
        let marks = subs.marks();
        size += 2;
        append(&path, "x");
        subs.wait_all(marks, &format!("size {size}")).await;
    }
    assert_eq!(w.restarts(), RESTARTS);
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(a_listener_restarted_ten_times_by_panics_keeps_all_its_subscribers);
async fn a_listener_restarted_ten_times_by_panics_keeps_all_its_subscribers() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let at: ioasync::io::Address = "127.0.0.1:0".parse().unwrap();
    let spec = Listener::spec("l", Listen::new(at), |conn, peer| {
        Stream::spec(format!("c{peer}").replace(':', "_"), conn)
    })
    .restart_limit(100, Duration::from_secs(60));
    let (spec, subs) = Subscribers::attach(spec, label_of);
    let l = lp.add(spec).await.unwrap();
    let mut conns = Vec::new();
    for n in 1..=RESTARTS {
        subs.arm();
        let addr = l.local_addr().await.unwrap().as_inet().unwrap();
        conns.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        restarted(&mut events, "/l", n).await;
        let marks = subs.marks();
        // Re-bound (port 0: a new port each time); accepts are heard.
        let addr = l.local_addr().await.unwrap().as_inet().unwrap();
        conns.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        subs.wait_all(marks, "accepted").await;
    }
    assert_eq!(l.restarts(), RESTARTS);
}

flavours!(a_stream_restarted_ten_times_by_panics_keeps_all_its_subscribers);
async fn a_stream_restarted_ten_times_by_panics_keeps_all_its_subscribers() {
    use std::io::Write;
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let peer: Arc<Mutex<Option<std::os::unix::net::UnixStream>>> = Arc::default();
    let p = peer.clone();
    let spec = Stream::respawning("s", move || {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        *p.lock().unwrap() = Some(theirs);
        let ours = tokio::net::UnixStream::from_std(ours).unwrap();
        Ok(Stream::spec("s", ours))
    })
    .restart_limit(100, Duration::from_secs(60));
    let (spec, subs) = Subscribers::attach(spec, label_of);
    let s = lp.add(spec).await.unwrap();
    let write = |text: &str| {
        let mut g = peer.lock().unwrap();
        g.as_mut().unwrap().write_all(text.as_bytes()).unwrap();
    };
    for n in 1..=RESTARTS {
        subs.arm();
        write("boom\n");
        restarted(&mut events, "/s", n).await;
        let marks = subs.marks();
        write(&format!("after {n}\n"));
        subs.wait_all(marks, &format!("read after {n}")).await;
    }
    assert_eq!(s.restarts(), RESTARTS);
}

flavours!(watch_file_callbacks_keep_firing_across_watcher_restarts);
async fn watch_file_callbacks_keep_firing_across_watcher_restarts() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let d = fresh_dir("watch-file");
    let path = d.join("watched");
    append(&path, "0");
    let seen = Journal::new();
    let armed = Arc::new(AtomicBool::new(false));
    let (s, a) = (seen.clone(), armed.clone());
    let watch = lp
        .watch_file(&path, Duration::from_millis(5), move |e| {
            if a.swap(false, Ordering::SeqCst) {
                panic!("injected panic");
            }
            if let Some(l) = label_of(&e) {
                s.record(l);
            }
        })
        .await
        .unwrap();
    bounded("appeared", seen.wait_count("appeared", 1)).await;
    let watcher = watch.path().to_string();
    assert!(
        lp.tree().find(&watcher).is_some(),
        "the watcher is in the tree"
    );
    // The default restart limit is 3 within 5 s.
    let mut size = 1;
    for n in 1..=3 {
        armed.store(true, Ordering::SeqCst);
        append(&path, "x");
        restarted(&mut events, &watcher, n).await;
        bounded(
            "the first look after a restart",
            seen.wait_count("appeared", n as usize + 1),
        )
        .await;
        size += 2;
        append(&path, "x");
        bounded(
            "the callback after a restart",
            seen.wait_count(&format!("size {size}"), 1),
        )
        .await;
    }
    assert!(watch.cancel().await);
    assert!(lp.tree().find(&watcher).is_none());
    std::fs::remove_dir_all(&d).unwrap();
}

/// A notifier whose `on_stop` panics.
struct StopPanics;

impl Notifier for StopPanics {
    type Args = ();
    async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(StopPanics)
    }
    async fn on_stop(&mut self, _: &mut Ctx<'_, Self>) {
        panic!("on_stop exploded");
    }
}

flavours!(a_panicking_notifier_emits_its_terminal_event_with_the_panic_message);
async fn a_panicking_notifier_emits_its_terminal_event_with_the_panic_message() {
    let lp = test_loop();
    let j = Journal::new();
    let p = lp
        .add(probe("p", &j).restart(Restart::Temporary))
        .await
        .unwrap();
    let mut exits = p.exits().unwrap();
    p.tell(Panic("boom")).await.unwrap();
    let Exit {
        path,
        reason,
        restarting,
    } = bounded("exit", exits.recv()).await.unwrap();
    assert_eq!(&*path, "/p");
    assert!(!restarting, "temporary: not restarted");
    let ExitReason::Panicked { message, location } = reason else {
        panic!("{reason:?}")
    };
    assert_eq!(message, "boom");
    assert!(
        location
            .as_deref()
            .is_some_and(|l| l.contains("test_util.rs")),
        "{location:?}"
    );
    // on_stop ran after the panic (the probe journals its stop).
    assert_eq!(j.count("stop /p"), 1);
    bounded("stopped", p.wait_stopped()).await;
    assert!(
        exits.recv().await.is_none(),
        "the stream ends with the notifier"
    );
}

flavours!(a_stream_whose_on_read_panics_still_emits_closed_and_its_exit);
async fn a_stream_whose_on_read_panics_still_emits_closed_and_its_exit() {
    use tokio::io::AsyncWriteExt;
    let lp = test_loop();
    let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
    let (sub, mut events) = Subscription::stream(16);
    let (exit_sub, mut exits) = Subscription::stream(4);
    let spec = Spec::from(Stream::spec("s", ours).on_read(|_io, buf, _eof| {
        if !buf.is_empty() {
            panic!("bad input");
        }
        ReadAction::Wait
    }))
    .subscribe(sub)
    .subscribe_exit(exit_sub);
    lp.add(spec).await.unwrap();
    theirs.write_all(b"x").await.unwrap();
    let exit: Exit = bounded("exit", exits.recv()).await.unwrap();
    assert_eq!(exit.reason.panic_message(), Some("bad input"));
    let mut closed = false;
    while let Some(e) = bounded("events", events.recv()).await {
        closed |= matches!(e, StreamEvent::Closed);
    }
    assert!(closed, "Closed emitted after the panic");
}

flavours!(a_panic_in_on_stop_is_reported);
async fn a_panic_in_on_stop_is_reported() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let n = lp
        .add(Spec::<StopPanics>::new("sp", ()).restart(Restart::Transient))
        .await
        .unwrap();
    let mut exits = n.exits().unwrap();
    n.stop().await;
    let exit = bounded("exit", exits.recv()).await.unwrap();
    let message = exit.reason.panic_message().unwrap_or_default().to_owned();
    assert!(message.contains("on_stop exploded"), "{:?}", exit.reason);
    assert!(
        matches!(
            exit.reason,
            ExitReason::Panicked {
                location: Some(_),
                ..
            }
        ),
        "{:?}",
        exit.reason
    );
    wait_event(&mut events, |e| {
        e.path == "/sp" && matches!(e.what, SupervisionEventKind::Stopped)
    })
    .await;
}

// Stops a notifier in each of the ways one leaves the tree and checks it
// is gone when its `Stopped` event is heard and when `wait_stopped`
// returns.
flavours!(after_wait_stopped_and_the_stopped_event_the_tree_no_longer_has_it);
async fn after_wait_stopped_and_the_stopped_event_the_tree_no_longer_has_it() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    for (round, how) in ["stop", "exit", "panic", "kill"]
        .into_iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        let path = format!("/n{round}");
        let n = lp
            .add(probe(&format!("n{round}"), &j).restart(Restart::Temporary))
            .await
            .unwrap();
        match how {
            "stop" => {
                n.stop().await;
            }
            "exit" => n.tell(ioasync::test_util::Exit).await.unwrap(),
            "panic" => n.tell(Panic("boom")).await.unwrap(),
            _ => n.kill().await,
        }
        bounded("stopped", n.wait_stopped()).await;
        assert!(
            lp.lookup::<Probe>(&path).is_none(),
            "{how}: lookup after wait_stopped"
        );
        assert!(
            lp.tree().find(&path).is_none(),
            "{how}: tree after wait_stopped"
        );
        assert_eq!(n.state(), NodeState::Stopped);
        wait_event(&mut events, |e| {
            e.path == path && matches!(e.what, SupervisionEventKind::Stopped)
        })
        .await;
        assert!(
            lp.lookup::<Probe>(&path).is_none(),
            "{how}: lookup at Stopped"
        );
    }
}

/// A notifier whose `init` waits for a gate.
struct SlowInit;

impl Notifier for SlowInit {
    type Args = Gate;
    async fn init(gate: Gate, _: &mut Ctx<'_, Self>) -> Result<Self> {
        gate.wait().await;
        Ok(SlowInit)
    }
}

flavours!(a_child_that_never_finishes_init_is_stopped_at_its_bound_while_its_parent_serves);
async fn a_child_that_never_finishes_init_is_stopped_at_its_bound_while_its_parent_serves() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let parent = lp.add(probe("parent", &j)).await.unwrap();
    let gate = Gate::new();
    let bound = Duration::from_millis(300);
    let child = parent
        .start_child(Spec::<SlowInit>::new("slow", gate.clone()).init_timeout(bound))
        .unwrap();
    // The parent answers while its child is stuck in init.
    for i in 0..5 {
        bounded_for(
            Duration::from_millis(100),
            "the parent's reply",
            parent.ask(Note(format!("{i}"))),
        )
        .await
        .unwrap();
    }
    let ev = wait_event(&mut events, |e| {
        e.path == "/parent/slow" && matches!(e.what, SupervisionEventKind::Exited(_))
    })
    .await;
    let SupervisionEventKind::Exited(ExitReason::Failed(err)) = ev.what else {
        panic!("{ev:?}")
    };
    assert!(err.is_timeout() && err.op() == "init", "{err}");
    bounded("child gone", child.wait_stopped()).await;
    assert!(lp.tree().find("/parent/slow").is_none());
    // Waiting for it with add_child gets the timeout as the error.
    let err = parent
        .add_child(Spec::<SlowInit>::new("slow2", gate).init_timeout(bound))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(parent.state(), NodeState::Running);
}

flavours!(a_sibling_that_never_stops_in_a_group_restart_is_killed_while_its_parent_serves);
async fn a_sibling_that_never_stops_in_a_group_restart_is_killed_while_its_parent_serves() {
    let lp = test_loop();
    let j = Journal::new();
    let mut events = lp.supervision_events();
    let never = Gate::new();
    let stuck = Spec::<Probe>::new("stuck", ProbeArgs::new(&j).stop_gate(&never))
        .stop_timeout(Duration::from_millis(300));
    let sup = lp
        .add(
            Spec::<Probe>::new(
                "sup",
                ProbeArgs::new(&j).children(vec![probe("a", &j), stuck]),
            )
            .strategy(Strategy::OneForAll),
        )
        .await
        .unwrap();
    lp.lookup::<Probe>("/sup/a")
        .unwrap()
        .tell(Panic("boom"))
        .await
        .unwrap();
    bounded("stuck is stopping", j.wait_count("stopping /sup/stuck", 1)).await;
    // The group restart waits for the stuck sibling; its parent does not.
    for i in 0..5 {
        bounded_for(
            Duration::from_millis(100),
            "the parent's reply",
            sup.ask(Note(format!("{i}"))),
        )
        .await
        .unwrap();
    }
    wait_event(&mut events, |e| {
        e.path == "/sup/stuck" && matches!(e.what, SupervisionEventKind::Overran)
    })
    .await;
    bounded("a restarted", j.wait_count("start /sup/a", 2)).await;
    assert!(lp.tree().find("/sup/stuck").is_none(), "killed and gone");
    assert_eq!(sup.state(), NodeState::Running);
}
