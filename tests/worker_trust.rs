//! Function pools a careful operator can trust: a worker that writes a bad
//! frame fails its call at once and is replaced; stopping a pool ends a
//! worker stuck in a call; each worker is a child in the tree with its
//! pid; workers print to the parent's stdout. Every test here counts
//! process-wide children and fds, so each runs alone (`serial`).

#[macro_use]
mod support;

use std::{io::Write, time::Duration};

use ioasync::{
    Loop,
    io::open_fd_count,
    supervision::SupervisionEventKind,
    worker::{Entry, Function, FunctionRef, FunctionSpec},
};
use support::{bounded, bounded_for, zombie_children};

/// What the `misbehave` entry does.
const OK: u8 = 0;
const GARBAGE: u8 = 1;
const HUGE_LENGTH: u8 = 2;
const SHORT_FRAME: u8 = 3;

/// Writes `bytes` on the worker's socket to the parent, behind the serve
/// loop's back.
fn write_raw(bytes: &[u8]) {
    use std::os::{fd::FromRawFd, unix::net::UnixStream};
    #[allow(unsafe_code)]
    // SAFETY: fd 3 is the worker's socket, owned by the serve loop for the
    // whole process; ManuallyDrop keeps this second handle from closing it.
    let mut sock = std::mem::ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(3) });
    sock.write_all(bytes).unwrap();
}

fn hang() -> ! {
    loop {
        #[allow(clippy::disallowed_methods)] // a worker runs no runtime
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn entries() -> Vec<Entry> {
    vec![
        Entry::function("misbehave", |mode: u8| -> u32 {
            match mode {
                GARBAGE => write_raw(b"hello, this is not a frame"),
                HUGE_LENGTH => write_raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
                SHORT_FRAME => write_raw(&[0, 0, 0, 4, 2, 0, 0, 0]),
                _ => return std::process::id(),
            }
            hang() // and stay alive
        }),
        Entry::function("hang", |term_blocked: bool| -> u32 {
            if term_blocked {
                // A worker deaf to SIGTERM: only SIGKILL ends it.
                #[allow(unsafe_code)]
                // SAFETY: SIG_IGN installs no handler code.
                unsafe {
                    nix::sys::signal::signal(
                        nix::sys::signal::Signal::SIGTERM,
                        nix::sys::signal::SigHandler::SigIgn,
                    )
                }
                .unwrap();
            }
            hang()
        }),
        Entry::function("shout", |word: String| {
            println!("worker {} says {word}", std::process::id());
            std::io::stdout().flush().unwrap();
            word.len()
        }),
        Entry::function("pid", |_: ()| std::process::id()),
        Entry::routine(
            "shout_routine",
            |io: &mut ioasync::worker::RoutineIo<String, ()>| {
                while let Some(word) = io.recv() {
                    println!("routine {} says {word}", std::process::id());
                    std::io::stdout().flush().unwrap();
                }
                0u32
            },
        ),
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

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// Waits until the process has no zombie child and `fds` open fds.
async fn settled(fds: usize) {
    bounded_for(Duration::from_secs(10), "no zombie, no leaked fd", async {
        while zombie_children() > 0 || open_fd_count().unwrap() > fds {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

flavours!(serial a_worker_that_writes_a_bad_frame_fails_its_call_with_a_protocol_error_and_is_replaced);
async fn a_worker_that_writes_a_bad_frame_fails_its_call_with_a_protocol_error_and_is_replaced() {
    let fds = open_fd_count().unwrap();
    let lp = Loop::current().unwrap();
    let f = lp
        .add(pool("bad", "misbehave").max_workers(1))
        .await
        .unwrap();
    for (mode, what) in [
        (GARBAGE, "over the size cap"),
        (HUGE_LENGTH, "frame"),
        (SHORT_FRAME, "shorter than its header"),
    ] {
        // A warm worker: what follows times the bad frame, not a spawn.
        let pid: u32 = bounded("warm call", f.call(&OK)).await.unwrap();
        let err = bounded_for(
            Duration::from_millis(100),
            "the bad call",
            f.call::<u8, u32>(&mode),
        )
        .await
        .unwrap_err();
        assert!(err.is_protocol(), "mode {mode}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("worker {pid} sent a bad frame")),
            "{text}"
        );
        assert!(
            text.to_lowercase().contains(what),
            "mode {mode}: {text} (wanted {what:?})"
        );
        // The next call runs on a new worker: the bad one was killed.
        let next: u32 = bounded("next call", f.call(&OK)).await.unwrap();
        assert_ne!(next, pid, "a new worker");
        bounded("old worker gone", async {
            while alive(pid) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
    }
    let stats = f.stats().await.unwrap();
    assert_eq!(stats.started, 4, "{stats:?}");
    f.stop().await;
    settled(fds).await;
}

flavours!(serial stopping_a_pool_while_a_worker_hangs_in_a_call_ends_the_worker_within_the_grace);
async fn stopping_a_pool_while_a_worker_hangs_in_a_call_ends_the_worker_within_the_grace() {
    let fds = open_fd_count().unwrap();
    let lp = Loop::current().unwrap();
    // One worker that SIGTERM ends, one deaf to it (SIGKILL after the
    // grace), one idle (EOF).
    let f = lp
        .add(
            pool("stuck", "hang")
                .min_workers(3)
                .max_workers(3)
                .stop_grace(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let calls: Vec<_> = [false, true]
        .into_iter()
        .map(|deaf| {
            let f = f.clone();
            tokio::spawn(async move { f.call::<bool, u32>(&deaf).await })
        })
        .collect();
    let pids = bounded("both busy", async {
        loop {
            let s = f.stats().await.unwrap();
            if s.busy == 2 {
                return s.pids;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(pids.len(), 3);
    // Within the stop deadline: the grace, then SIGKILL.
    let t0 = tokio::time::Instant::now();
    let report = bounded_for(Duration::from_secs(3), "remove", lp.remove("/stuck"))
        .await
        .expect("the pool was in the tree");
    assert!(report.is_clean(), "{report:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "the deaf worker had its grace before SIGKILL"
    );
    for pid in &pids {
        assert!(!alive(*pid), "worker {pid} outlived its pool");
    }
    for c in calls {
        let err = bounded("call", c).await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("the function pool stopped"),
            "{err}"
        );
    }
    settled(fds).await;
}

flavours!(serial the_tree_shows_each_worker_with_its_pid_and_a_sigkilled_worker_is_replaced);
async fn the_tree_shows_each_worker_with_its_pid_and_a_sigkilled_worker_is_replaced() {
    let fds = open_fd_count().unwrap();
    let lp = Loop::current().unwrap();
    let mut events = lp.supervision_events();
    let f = lp
        .add(pool("tree", "pid").min_workers(2).max_workers(2))
        .await
        .unwrap();
    let workers = |lp: &Loop| -> Vec<String> {
        let tree = lp.tree();
        let mut names: Vec<String> = tree
            .find("/tree")
            .map(|p| {
                p.children
                    .iter()
                    .filter(|c| c.kind == "worker")
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let pids = f.stats().await.unwrap().pids;
    let mut want: Vec<String> = pids.iter().map(|p| format!("worker-{p}")).collect();
    want.sort();
    bounded("both in the tree", async {
        while workers(&lp) != want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let victim = pids[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let reason = bounded("the death", async {
        loop {
            let ev = events.recv().await.unwrap();
            if ev.path == format!("/tree/worker-{victim}")
                && let SupervisionEventKind::Exited(reason) = ev.what
            {
                return reason;
            }
        }
    })
    .await;
    assert!(reason.to_string().contains("SIGKILL"), "{reason}");
    // The pool keeps min_workers: a replacement appears in the tree.
    let replaced = bounded("replacement", async {
        loop {
            let names = workers(&lp);
            if names.len() == 2 && !names.contains(&format!("worker-{victim}")) {
                return names;
            }
            let _ = f.stats().await; // a turn of the pool
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let now = f.stats().await.unwrap().pids;
    for pid in now {
        assert!(replaced.contains(&format!("worker-{pid}")), "{replaced:?}");
    }
    f.stop().await;
    settled(fds).await;
}

/// The parent side of the stdout test, run in a child copy of this test
/// binary (see below) so that its stdout can be read.
#[test]
fn shouting_parent() {
    if std::env::var_os("IOASYNC_SHOUTING_PARENT").is_none() {
        return;
    }
    let lp = Loop::new().unwrap();
    let l = lp.clone();
    lp.block_on(async move {
        let f = l.add(pool("shout", "shout")).await.unwrap();
        let n: usize = f.call(&"hello".to_string()).await.unwrap();
        assert_eq!(n, 5);
        f.stop().await;
        let (spec, mut io) =
            ioasync::worker::Routine::<String, (), u32>::spec("r", "shout_routine", 4);
        l.add(spec.exec_args(["--exact", "ioasync_worker", "--nocapture"]))
            .await
            .unwrap();
        io.input.send("hi".to_string()).await.unwrap();
        drop(io.input);
        assert_eq!(io.result.wait().await.unwrap(), 0);
    });
}

#[test]
fn a_worker_and_a_routine_println_reach_the_parent_stdout() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shouting_parent",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("IOASYNC_SHOUTING_PARENT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("worker ") && l.ends_with(" says hello")),
        "the worker's line is in the parent's stdout:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("routine ") && l.ends_with(" says hi")),
        "the routine's line is in the parent's stdout:\n{stdout}"
    );
}
