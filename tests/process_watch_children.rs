//! IO::Async's `watch_process(0, ...)`: `Loop::watch_children` reaps and
//! reports every child nothing else watches, and leaves alone the children
//! ioasync runs and those a Pid watches. Its own test binary, run serially:
//! it takes every unwatched child of the process.

#[macro_use]
mod support;

use std::collections::HashMap;

use ioasync::process::{ChildExit, Command, ExitStatus, Process, ProcessEvent};
use support::{bounded, test_loop};

flavours!(serial watch_children_reaps_every_unwatched_child_and_leaves_the_managed_ones);
#[allow(clippy::zombie_processes)] // the watchers reap them
async fn watch_children_reaps_every_unwatched_child_and_leaves_the_managed_ones() {
    let lp = test_loop();
    // One that exited before the watch started: found by its first scan.
    let early = std::process::Command::new("sh")
        .args(["-c", "exit 5"])
        .spawn()
        .unwrap();
    let early_pid = early.id();
    // Let it become a zombie first (its exit is what the first scan sees).
    let fd = early_pid as i32;
    bounded("the early exit", async {
        while !std::fs::read_to_string(format!("/proc/{fd}/stat")).is_ok_and(|s| s.contains(") Z "))
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ChildExit>();
    let watch = lp
        .watch_children(move |e| {
            let _ = tx.send(e);
        })
        .await
        .unwrap();
    // Managed children exiting at the same time: a Process and a Pid watch.
    let (ptx, prx) = tokio::sync::oneshot::channel();
    let ptx = std::sync::Mutex::new(Some(ptx));
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exit 7"]);
    lp.add(
        Process::spec("managed", cmd).subscribe(ioasync::notifier::Subscription::closure(
            move |e: ProcessEvent| {
                if let ProcessEvent::Finished(st) = e
                    && let Some(tx) = ptx.lock().unwrap().take()
                {
                    let _ = tx.send(st);
                }
            },
        )),
    )
    .await
    .unwrap();
    // Held until its Pid watch is in place (a watch of all children would
    // otherwise be free to take it first: it is not managed yet).
    let mut watched = std::process::Command::new("sh")
        .args(["-c", "read x; exit 8"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let hold = watched.stdin.take().unwrap();
    let (wtx, wrx) = tokio::sync::oneshot::channel();
    let wtx = std::sync::Mutex::new(Some(wtx));
    let _pid_watch = lp
        .watch_process(watched.id(), move |st| {
            if let Some(tx) = wtx.lock().unwrap().take() {
                let _ = tx.send(st);
            }
        })
        .await
        .unwrap();
    drop(hold);
    // Unwatched ones, exiting with their own codes.
    let mut want = HashMap::from([(early_pid, ExitStatus::Code(5))]);
    let mut unwatched = vec![early];
    for code in 10..20 {
        let c = std::process::Command::new("sh")
            .args(["-c", &format!("exit {code}")])
            .spawn()
            .unwrap();
        want.insert(c.id(), ExitStatus::Code(code));
        unwatched.push(c);
    }
    let mut got = HashMap::new();
    while got.len() < want.len() {
        let e = bounded("an unwatched exit", rx.recv()).await.unwrap();
        assert!(got.insert(e.pid, e.status).is_none(), "{} twice", e.pid);
    }
    assert_eq!(got, want);
    // The managed ones got their own statuses.
    assert_eq!(
        bounded("the Process", prx).await.unwrap(),
        ExitStatus::Code(7)
    );
    assert_eq!(bounded("the Pid", wrx).await.unwrap(), ExitStatus::Code(8));
    assert!(rx.try_recv().is_err(), "nothing managed was reported");
    // Reaped: none is a zombie any more.
    for c in &unwatched {
        assert!(!std::path::Path::new(&format!("/proc/{}", c.id())).exists());
    }
    assert!(watch.cancel().await);
    let err = lp.watch_process(0, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("watch_children"), "{err}");
}
