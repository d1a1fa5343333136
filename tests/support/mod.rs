//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use ioasync::{
    Loop, Spec, SupervisionEvent, SupervisionEventKind,
    test_util::{Journal, Probe, ProbeArgs},
};
use tokio::sync::broadcast;

/// A probe spec journalling to `j`.
pub fn probe(name: &str, j: &Journal) -> Spec<Probe> {
    Spec::<Probe>::new(name, ProbeArgs::new(j))
}

/// A probe spec with children.
pub fn parent(name: &str, j: &Journal, children: Vec<Spec<Probe>>) -> Spec<Probe> {
    Spec::<Probe>::new(name, ProbeArgs::new(j).children(children))
}

/// Bounds a test step: fails the test instead of hanging.
pub async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    bounded_for(Duration::from_secs(10), what, f).await
}

/// Like [`bounded`] with a bound of `d`: on paused time, pick one far past
/// every timer the step waits for.
pub async fn bounded_for<F: std::future::Future>(d: Duration, what: &str, f: F) -> F::Output {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits for the next supervision event matching `pred`.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<SupervisionEvent>,
    mut pred: impl FnMut(&SupervisionEvent) -> bool,
) -> SupervisionEvent {
    bounded("a supervision event", async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("lagged {n} events"),
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
}

/// True for the event `Stopped` of `path`.
pub fn stopped(path: &'static str) -> impl FnMut(&SupervisionEvent) -> bool {
    move |e| e.path == path && matches!(e.what, SupervisionEventKind::Stopped)
}

/// A loop on the current test runtime.
pub fn test_loop() -> Loop {
    Loop::current().expect("adopting the test runtime")
}

/// A built example binary (cargo test builds the examples first).
pub fn example(name: &str) -> std::path::PathBuf {
    let mut p = std::env::current_exe().expect("test binary path");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    let bin = p.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} not built; run through cargo test",
        bin.display()
    );
    bin
}

/// Starts `cmd` (killed when dropped) with piped stdout; returns it, its
/// first stdout line, and the rest of its stdout.
pub async fn spawn_with_first_line(
    cmd: &mut tokio::process::Command,
) -> (
    tokio::process::Child,
    String,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(out).lines();
    let first = bounded("first line", lines.next_line())
        .await
        .expect("read stdout")
        .expect("a first line");
    (child, first, lines)
}

/// Sends `sig` (a name like TERM) to `child`.
pub async fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = tokio::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .await
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Perl with IO::Async, or a clear failure naming the missing package.
pub fn perl() -> tokio::process::Command {
    let ok = std::process::Command::new("perl")
        .args(["-MIO::Async", "-e", "1"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "Perl IO::Async is missing: apt-get install libio-async-perl (.ci/run does)"
    );
    tokio::process::Command::new("perl")
}

/// Path of a Perl helper script in tests/support/perl.
pub fn perl_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/perl")
        .join(name)
}

/// Children of this process that are zombies (exited, not reaped).
pub fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 2 && f[0] == "Z" && f[1] == me
        })
        .count()
}

/// The fd count and the child list are process-wide: tests that count
/// them take turns, each on its own runtime (a runtime opens fds of its
/// own), built and dropped while it holds the turn.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` alone (see `SERIAL`) on a fresh runtime of `workers` threads
/// (0: current-thread).
pub fn serial<F: std::future::Future>(workers: usize, f: F) -> F::Output {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .unwrap();
    let out = rt.block_on(f);
    drop(rt);
    out
}

/// Appends `text` to the file at `path`, creating it.
pub fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}
