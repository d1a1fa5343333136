//! Child processes: run_child, exit statuses, exec errors, streams over a
//! child's output, removal, extra fds, Pid watchers.

#[macro_use]
mod support;

use std::{
    io::Read,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ioasync::{
    io::ReadAction,
    notifier::IntoSpec,
    process::{
        Command, ExitStatus, KillPolicy, Pid, Process, ProcessEvent, ProcessException, Stdio,
    },
    signal::SignalKind,
    test_util::Recorder,
};
use support::{bounded, test_loop};

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

flavours!(run_child_returns_both_streams_and_the_exit_code);
async fn run_child_returns_both_streams_and_the_exit_code() {
    let lp = test_loop();
    let out = lp
        .run_child(sh("echo out; echo err >&2; exit 3"), "")
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(&out.stdout[..], b"out\n");
    assert_eq!(&out.stderr[..], b"err\n");
    // stdin is fed, env and cwd are set.
    let mut cmd = sh("cat; echo \"$GREETING from $(pwd)\"");
    cmd.env("GREETING", "hi").current_dir("/tmp");
    let out = lp.run_child(cmd, "fed via stdin\n").await.unwrap();
    assert_eq!(&out.stdout[..], b"fed via stdin\nhi from /tmp\n");
}

flavours!(stdin_and_stdout_as_streams_in_both_directions);
async fn stdin_and_stdout_as_streams_in_both_directions() {
    use ioasync::io::{StreamEvent, StreamRef};
    let lp = test_loop();
    let (rec, sub) = Recorder::new();
    let mut cmd = Command::new("cat");
    cmd.stdin(Stdio::stream(|s| s))
        .stdout(Stdio::stream(move |s| s.subscribe(sub)));
    let child = lp.open_process(Process::spec("cat", cmd)).await.unwrap();
    let input = child.stream(0).expect("stdin stream");
    input.write("round trip\n").await.unwrap();
    input.close_when_empty().await.unwrap();
    assert!(bounded("exit", child.wait()).await.unwrap().success());
    let got: Vec<u8> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            StreamEvent::Read(b) => Some(b.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(got, b"round trip\n");
}

flavours!(a_child_killed_by_sigkill_reports_the_signal);
async fn a_child_killed_by_sigkill_reports_the_signal() {
    let lp = test_loop();
    let (rec, sub) = Recorder::new();
    let child = lp
        .open_process(Process::spec("sleeper", sh("exec sleep 100")).subscribe(sub))
        .await
        .unwrap();
    assert!(child.pid() > 0);
    child.kill(SignalKind::kill()).await.unwrap();
    let st = bounded("exit", child.wait()).await.unwrap();
    assert_eq!(
        st,
        ExitStatus::Signal {
            signal: SignalKind::kill(),
            core_dumped: false
        }
    );
    assert_eq!(st.to_string(), "killed by SIGKILL");
    let evs = bounded("event", rec.wait_len(1)).await;
    assert!(
        matches!(&evs[0], ProcessEvent::Exception(ProcessException::Signal(s)) if *s == st),
        "{evs:?}"
    );
}

flavours!(exec_of_a_missing_binary_is_an_error_with_enoent_and_op_exec);
async fn exec_of_a_missing_binary_is_an_error_with_enoent_and_op_exec() {
    let lp = test_loop();
    let err = lp
        .run_child(Command::new("/no/such/binary"), "")
        .await
        .unwrap_err();
    assert_eq!(err.op(), "exec");
    assert_eq!(err.errno(), Some(2), "{err}");
    let (rec, sub) = Recorder::new();
    let err = lp
        .open_process(Process::spec("missing", Command::new("/no/such/binary")).subscribe(sub))
        .await
        .unwrap_err();
    assert_eq!((err.op(), err.errno()), ("exec", Some(2)));
    let evs = rec.events();
    assert!(
        matches!(&evs[..], [ProcessEvent::Exception(ProcessException::Exec(e))] if e.errno() == Some(2)),
        "{evs:?}"
    );
}

flavours!(a_line_stream_over_stdout_delivers_every_line_of_a_child_that_exits);
async fn a_line_stream_over_stdout_delivers_every_line_of_a_child_that_exits() {
    let lp = test_loop();
    let lines = Arc::new(AtomicU64::new(0));
    let sum = Arc::new(AtomicU64::new(0));
    let (l, s) = (lines.clone(), sum.clone());
    let mut cmd = Command::new("seq");
    cmd.arg("100000").stdout(Stdio::stream(move |spec| {
        spec.on_read(move |_io, buf, _eof| {
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(i + 1);
                let n: u64 = std::str::from_utf8(&line[..i]).unwrap().parse().unwrap();
                l.fetch_add(1, Ordering::Relaxed);
                s.fetch_add(n, Ordering::Relaxed);
            }
            ReadAction::Wait
        })
    }));
    let child = lp.open_process(Process::spec("seq", cmd)).await.unwrap();
    let st = bounded("exit", child.wait()).await.unwrap();
    assert!(st.success());
    // The exit is reported only after the stream read to EOF.
    assert_eq!(lines.load(Ordering::Relaxed), 100_000);
    assert_eq!(sum.load(Ordering::Relaxed), 100_000 * 100_001 / 2);
}

flavours!(removing_a_process_terminates_its_child_term_then_kill);
async fn removing_a_process_terminates_its_child_term_then_kill() {
    let lp = test_loop();
    // One that dies of TERM...
    let polite = lp
        .open_process(Process::spec("polite", sh("exec sleep 100")))
        .await
        .unwrap();
    polite.notifier().stop().await;
    let st = bounded("polite exit", polite.wait()).await.unwrap();
    assert_eq!(st.signal(), Some(SignalKind::terminate()));
    // ...and one that ignores TERM and gets KILL after the grace period.
    let mut cmd = sh("trap '' TERM; echo ready; while :; do sleep 1; done");
    cmd.stdout(Stdio::Pipe);
    let stubborn = lp
        .open_process(Process::spec("stubborn", cmd).kill_policy(KillPolicy {
            signal: SignalKind::terminate(),
            grace: Duration::from_millis(200),
        }))
        .await
        .unwrap();
    // Only once the trap is set is TERM ignored.
    let out = std::fs::File::from(stubborn.take_fd(1).unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        line
    });
    assert_eq!(bounded("ready", ready).await.unwrap(), "ready\n");
    stubborn.notifier().stop().await;
    let st = bounded("stubborn exit", stubborn.wait()).await.unwrap();
    assert_eq!(st.signal(), Some(SignalKind::kill()));
}

flavours!(any_fd_can_be_a_pipe_to_or_from_the_child);
async fn any_fd_can_be_a_pipe_to_or_from_the_child() {
    let lp = test_loop();
    let mut cmd = sh("read x <&4; echo \"got $x\" >&3");
    cmd.fd_from_child(3, Stdio::Pipe)
        .fd_to_child(4, Stdio::Pipe);
    let child = lp.open_process(Process::spec("fds", cmd)).await.unwrap();
    let to = child.take_fd(4).expect("fd 4");
    let from = child.take_fd(3).expect("fd 3");
    assert!(child.take_fd(3).is_none(), "taken once");
    std::io::Write::write_all(&mut std::fs::File::from(to), b"hello\n").unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        std::fs::File::from(from).read_to_string(&mut s).unwrap();
        s
    });
    assert_eq!(bounded("output", out).await.unwrap(), "got hello\n");
    assert!(bounded("exit", child.wait()).await.unwrap().success());
}

flavours!(a_pid_watcher_fires_once_with_the_exit_status);
#[allow(clippy::zombie_processes)] // the Pid watcher reaps it
async fn a_pid_watcher_fires_once_with_the_exit_status() {
    let lp = test_loop();
    let child = std::process::Command::new("sh")
        .args(["-c", "read x; exit 7"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (rec, sub) = Recorder::new();
    let w = lp.add(Pid::spec("pid", child.id())).await.unwrap();
    w.subscribe(sub).unwrap();
    drop(child.stdin.unwrap()); // EOF: the child exits
    let evs = bounded("exit", rec.wait_len(1)).await;
    assert_eq!(evs, vec![ExitStatus::Code(7)]);
    bounded("watcher gone", w.wait_stopped()).await;
}

flavours!(spawn_child_gives_the_pid_and_the_exit);
async fn spawn_child_gives_the_pid_and_the_exit() {
    let lp = test_loop();
    let mut child = lp.spawn_child(sh("exit 5")).unwrap();
    assert!(child.pid() > 0);
    assert_eq!(
        bounded("exit", child.wait()).await.unwrap(),
        ExitStatus::Code(5)
    );
}

flavours!(loop_watch_process_reports_the_exit_once);
#[allow(clippy::zombie_processes)] // the watcher reaps it
async fn loop_watch_process_reports_the_exit_once() {
    let lp = test_loop();
    let child = std::process::Command::new("sh")
        .args(["-c", "exit 9"])
        .spawn()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    lp.watch_process(child.id(), move |st| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(st);
        }
    })
    .await
    .unwrap()
    .detach();
    assert_eq!(bounded("exit", rx).await.unwrap(), ExitStatus::Code(9));
}
