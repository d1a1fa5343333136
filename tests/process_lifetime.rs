//! Children die with the process, not with the thread that spawned them
//! (`PR_SET_PDEATHSIG` fires when the forking *thread* exits; ioasync
//! forks on a spawn thread that lives as long as the process).
//!
//! The parent-death case needs a parent to SIGKILL: this test binary run
//! again as a helper (`IOASYNC_LIFETIME_HELPER=parent`, the `helper` test).

mod support;

use std::{
    os::fd::{FromRawFd, OwnedFd},
    time::Duration,
};

use ioasync::process::{Command, SpawnedChild};
use support::{bounded, repeats};
use tokio::io::AsyncBufReadExt;

const HELPER: &str = "IOASYNC_LIFETIME_HELPER";

fn sleeper() -> Command {
    let mut c = Command::new("sleep");
    c.arg("1000");
    c
}

/// A pidfd: readable once `pid` exits.
fn pidfd(pid: u32) -> OwnedFd {
    #[allow(unsafe_code)]
    // SAFETY: a plain syscall; the returned fd is new and owned here.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as i32, 0);
        assert!(
            fd >= 0,
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        );
        OwnedFd::from_raw_fd(fd as i32)
    }
}

/// Waits up to `d` for the process of `fd` (a pidfd) to exit; true if it
/// did. Polls on a thread of its own: not a tokio blocking thread, which
/// would keep the one under test from retiring.
async fn pidfd_exits_within(fd: OwnedFd, d: Duration) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = tx.send(poll(&mut fds, PollTimeout::try_from(d).unwrap()).unwrap() == 1);
    });
    rx.await.unwrap()
}

/// Waits up to `d` for `pid` to exit; true if it did.
async fn exits_within(pid: u32, d: Duration) -> bool {
    pidfd_exits_within(pidfd(pid), d).await
}

fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Spawned from a `std::thread` and from `spawn_blocking`, each thread
/// then ended: both children are alive 15 s later.
fn children_outlive_the_threads_that_spawned_them(workers: usize) {
    for _ in 0..repeats() {
        let mut b = if workers == 0 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        };
        // Idle blocking threads retire after 100 ms (tokio's default is
        // 10 s), so the spawn_blocking thread is surely gone in the window.
        let rt = b
            .enable_all()
            .thread_keep_alive(Duration::from_millis(100))
            .build()
            .unwrap();
        rt.block_on(async {
            let handle = tokio::runtime::Handle::current();
            let from_thread: SpawnedChild = std::thread::spawn(move || {
                let _rt = handle.enter();
                ioasync::process::spawn_child(sleeper()).unwrap()
            })
            .join()
            .unwrap();
            let (from_blocking, tid) = tokio::task::spawn_blocking(|| {
                (ioasync::process::spawn_child(sleeper()).unwrap(), gettid())
            })
            .await
            .unwrap();
            let mut children = [from_thread, from_blocking];
            let died = futures_util::future::join_all(
                children
                    .iter()
                    .map(|c| exits_within(c.pid(), Duration::from_secs(15))),
            )
            .await;
            let task = format!("/proc/self/task/{tid}");
            assert!(
                !std::path::Path::new(&task).exists(),
                "the spawn_blocking thread {tid} was not retired: the test proves nothing"
            );
            for c in &mut children {
                c.start_kill().unwrap();
                bounded("reap", c.wait()).await.unwrap();
            }
            assert_eq!(
                died,
                [false, false],
                "[std::thread, spawn_blocking]: a child died with its spawning thread"
            );
        });
    }
}

#[test]
fn a_child_outlives_the_std_thread_and_the_spawn_blocking_thread_that_spawned_it_current_thread() {
    children_outlive_the_threads_that_spawned_them(0);
}

#[test]
fn a_child_outlives_the_std_thread_and_the_spawn_blocking_thread_that_spawned_it_multi_thread() {
    children_outlive_the_threads_that_spawned_them(2);
}

/// The parent, SIGKILLed, takes its child with it within 1 s; the child
/// was spawned from a thread that had already ended.
fn a_sigkilled_parent_takes_its_child_within_a_second(workers: usize) {
    support::run(workers, || async {
        let exe = std::env::current_exe().unwrap();
        let mut parent = tokio::process::Command::new(exe)
            .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
            .env(HELPER, "parent")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(parent.stdout.take().unwrap()).lines();
        let pid: u32 = bounded("the helper's child pid", async {
            loop {
                let line = lines.next_line().await.unwrap().expect("helper output");
                if let Some((_, pid)) = line.split_once("CHILD ") {
                    break pid.parse().unwrap();
                }
            }
        })
        .await;
        let fd = pidfd(pid);
        assert!(
            !pidfd_exits_within(fd.try_clone().unwrap(), Duration::from_millis(50)).await,
            "child {pid} died before its parent"
        );
        parent.start_kill().unwrap(); // SIGKILL: no chance to clean up
        bounded("the parent's exit", parent.wait()).await.unwrap();
        let t = tokio::time::Instant::now();
        let gone = pidfd_exits_within(fd, Duration::from_secs(1)).await;
        assert!(gone, "child {pid} outlived its SIGKILLed parent by 1 s");
        eprintln!("child gone {:?} after its parent", t.elapsed());
    })
}

#[test]
fn a_sigkilled_parent_takes_its_child_within_a_second_current_thread() {
    a_sigkilled_parent_takes_its_child_within_a_second(0);
}

#[test]
fn a_sigkilled_parent_takes_its_child_within_a_second_multi_thread() {
    a_sigkilled_parent_takes_its_child_within_a_second(2);
}

/// Helper mode: a parent that spawns `sleep` from a `std::thread` which
/// then ends, prints `CHILD <pid>` and waits to be killed.
#[test]
fn helper() {
    if std::env::var(HELPER).as_deref() != Ok("parent") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let child = std::thread::spawn(move || {
        let _rt = handle.enter();
        ioasync::process::spawn_child(sleeper()).unwrap()
    })
    .join()
    .unwrap();
    println!("CHILD {}", child.pid());
    // Parked until the test SIGKILLs us (bounded: the test kills the
    // helper on drop, and gives up after 60 s anyway).
    let _fd = child;
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(60)).await });
}
