//! IO::Async::PID's `kill`: a signal to the watched process through its
//! pidfd; the exit that follows; a clear error once it has exited.

#[macro_use]
mod support;

use ioasync::{
    error::ErrorKind,
    notifier::Subscription,
    process::{ExitStatus, Pid, PidRef},
    signal::SignalKind,
};
use support::{bounded, test_loop};

flavours!(signalling_a_watched_process_ends_it_and_its_exit_is_reported);
async fn signalling_a_watched_process_ends_it_and_its_exit_is_reported() {
    let lp = test_loop();
    // Reaped by the Pid watcher (a `wait` here would race it).
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    let (sub, mut exits) = Subscription::stream(1);
    let watcher = lp
        .add(Pid::spec("sleeper", pid).subscribe(sub))
        .await
        .unwrap();
    watcher.signal(SignalKind::terminate()).await.unwrap();
    let status: ExitStatus = bounded("exit", exits.recv()).await.unwrap();
    assert_eq!(status.signal(), Some(SignalKind::terminate()));
    bounded("watcher gone", watcher.wait_stopped()).await;
    // Reaped, and it has exited: signalling it again is a clear error,
    // never a signal to whatever reused the pid.
    let e = watcher.signal(SignalKind::kill()).await.unwrap_err();
    assert_eq!((e.op(), e.kind()), ("kill", ErrorKind::Closed));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .map(|c| !c.starts_with("sleep"))
                .unwrap_or(true),
        "the child was reaped"
    );
}
