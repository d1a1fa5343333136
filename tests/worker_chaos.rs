//! A Function pool under SIGKILL: every call succeeds or fails with the
//! worker-died error; retry-safe calls all succeed; nothing hangs, nothing
//! answers wrongly, no zombie and no leaked fd. Alone in its own binary:
//! it counts the process's fds and children.

mod support;

use std::time::Duration;

use ioasync::{
    io::open_fd_count,
    worker::{CallOptions, Entry, Function, FunctionRef},
};
use support::{bounded_for, zombie_children};

fn entries() -> Vec<Entry> {
    vec![Entry::function("triple", |n: u64| n * 3)]
}

#[test]
fn ioasync_worker() {
    ioasync::worker::run_if_worker(entries());
}

#[test]
fn ten_thousand_calls_while_a_worker_is_sigkilled_every_few_hundred() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let before = open_fd_count().unwrap();
        let lp = ioasync::Loop::current().unwrap();
        let mut events = lp.supervision_events();
        let f = lp
            .add(
                Function::spec("chaos", "triple")
                    .exec_args(["--exact", "ioasync_worker", "--nocapture"])
                    .max_workers(2)
                    .min_workers(2),
            )
            .await
            .unwrap();
        let (mut ok, mut died, mut killed) = (0u32, 0u32, 0u32);
        for round in 0..50u64 {
            // 200 calls per round, half of them retry-safe, 8 in flight.
            let mut calls = Vec::new();
            for i in 0..200u64 {
                let n = round * 200 + i;
                let fc = f.clone();
                let retry_safe = n % 2 == 0;
                calls.push(tokio::spawn(async move {
                    let f = fc;
                    let opts = CallOptions {
                        timeout: None,
                        retry_safe,
                        ..Default::default()
                    };
                    (n, retry_safe, f.call_with::<u64, u64>(&n, opts).await)
                }));
                if i == 100 {
                    // Mid-round: SIGKILL one worker.
                    let pids = f.stats().await.unwrap().pids;
                    if let Some(pid) = pids.first() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(*pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                        killed += 1;
                    }
                }
                if calls.len() % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            for c in calls {
                let (n, retry_safe, r) = bounded_for(Duration::from_secs(30), "call", c)
                    .await
                    .unwrap();
                match r {
                    Ok(v) => {
                        assert_eq!(v, n * 3, "wrong answer for {n}");
                        ok += 1;
                    }
                    Err(e) => {
                        assert!(!retry_safe, "retry-safe call {n} failed: {e}");
                        assert!(e.is_peer_died(), "call {n}: {e}");
                        assert!(e.to_string().contains("SIGKILL"), "{e}");
                        died += 1;
                    }
                }
            }
        }
        assert_eq!(ok + died, 10_000);
        assert!(killed >= 40, "killed only {killed} workers");
        let stats = f.stats().await.unwrap();
        assert_eq!(
            stats.died,
            u64::from(killed),
            "every kill seen as a death: {stats:?}"
        );
        // Each death was also a supervision event, with its exit status.
        let mut deaths = 0;
        while let Ok(ev) = events.try_recv() {
            if let ioasync::supervision::SupervisionEventKind::Exited(reason) = &ev.what
                && ev.kind == "worker"
            {
                assert!(ev.path.starts_with("/chaos/worker-"), "{ev:?}");
                assert!(reason.to_string().contains("SIGKILL"), "{reason}");
                deaths += 1;
            }
        }
        assert_eq!(deaths, killed);
        eprintln!("chaos: {ok} ok, {died} failed with worker death, {killed} kills, {stats:?}");
        f.stop().await;
        lp.shutdown(None).await;
        // Let the reaper tasks finish, then check.
        bounded_for(Duration::from_secs(10), "reaping", async {
            while zombie_children() > 0 || open_fd_count().unwrap() != before {
                tokio::task::yield_now().await;
            }
        })
        .await;
    });
}
