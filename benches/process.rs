//! Child processes and timers against their raw baselines, in one run:
//!
//! - `run_child` of `/bin/true`, 1,000 sequential and 1,000 with 50 in
//!   flight, against `tokio::process::Command` doing the same, both plain
//!   (posix_spawn) and with the parent-death signal set by a `pre_exec`
//!   hook (fork, as ours);
//! - a periodic timer at 1 ms for 10,000 ticks on real time: end-to-end
//!   drift (hard rescheduling must not drift), against a raw
//!   `tokio::time::interval` with `MissedTickBehavior::Burst`.
//!
//! `cargo bench --bench process` (`-- --quick` for 1/10 of the counts).
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use ioasync::notifier::Overflow;
use ioasync::{
    Loop,
    process::Command,
    time::{Periodic, PeriodicRef, Reschedule, Tick},
};

fn true_cmd(pdeath: bool) -> Command {
    let mut c = Command::new("/bin/true");
    if !pdeath {
        // The documented fast path: nothing for a pre_exec hook to do, so
        // std may use posix_spawn.
        c.parent_death_signal(None).close_other_fds(false);
    }
    c
}

async fn ours_sequential(lp: &Loop, n: usize, pdeath: bool) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let out = lp.run_child(true_cmd(pdeath), "").await.unwrap();
        assert!(out.status.success());
    }
    t.elapsed()
}

/// The raw baseline's command: plain, or with `PR_SET_PDEATHSIG` set in
/// a `pre_exec` hook (what a tokio user writes to get the same guarantee
/// from the calling thread).
fn raw_cmd(pdeath: bool) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("/bin/true");
    c.stdin(std::process::Stdio::piped());
    if pdeath {
        #[allow(unsafe_code)]
        // SAFETY: the hook makes one async-signal-safe system call.
        unsafe {
            c.pre_exec(|| {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) == -1
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    c
}

async fn raw_sequential(n: usize, pdeath: bool) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let out = raw_cmd(pdeath).output().await.unwrap();
        assert!(out.status.success());
    }
    t.elapsed()
}

async fn ours_parallel(lp: &Loop, n: usize, inflight: usize, pdeath: bool) -> Duration {
    let t = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(inflight));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (lp, sem) = (lp.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            lp.run_child(true_cmd(pdeath), "").await.unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().status.success());
    }
    t.elapsed()
}

async fn raw_parallel(n: usize, inflight: usize, pdeath: bool) -> Duration {
    let t = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(inflight));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            raw_cmd(pdeath).output().await.unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().status.success());
    }
    t.elapsed()
}

/// (schedule drift of the last tick, its lateness, worst single-tick
/// lateness).
async fn ours_drift(lp: &Loop, ticks: u64) -> (Duration, Duration, Duration) {
    let period = Duration::from_millis(1);
    let t = lp
        .add(Periodic::spec("drift", period).map_args(|a| a.reschedule(Reschedule::Hard)))
        .await
        .unwrap();
    let mut s = t.events_with::<Tick>(1024, Overflow::Wait).unwrap();
    let start = tokio::time::Instant::now();
    let mut worst = Duration::ZERO;
    let mut last = None;
    while let Some(tick) = s.recv().await {
        worst = worst.max(tick.fired - tick.scheduled);
        if tick.count == ticks {
            last = Some(tick);
            break;
        }
    }
    let last = last.unwrap();
    t.stop_timer().await.unwrap();
    t.stop().await;
    // The first tick is due one period after the start.
    let ideal = start + period * ticks as u32;
    let sched = if last.scheduled > ideal {
        last.scheduled - ideal
    } else {
        ideal - last.scheduled
    };
    (sched, last.fired.saturating_duration_since(ideal), worst)
}

async fn raw_drift(ticks: u64) -> (Duration, Duration) {
    let period = Duration::from_millis(1);
    let start = tokio::time::Instant::now();
    let mut iv = tokio::time::interval_at(start + period, period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut worst = Duration::ZERO;
    let mut fired = start;
    for k in 1..=ticks {
        let due = iv.tick().await;
        fired = tokio::time::Instant::now();
        worst = worst.max(fired - due);
        let _ = k;
    }
    let ideal = start + period * ticks as u32;
    (fired.saturating_duration_since(ideal), worst)
}

fn row(what: &str, ours: Duration, raw: Duration, n: usize) {
    println!(
        "{what:<100} ours {:>8.1} µs/op   raw {:>8.1} µs/op   ratio {:.2}x",
        ours.as_secs_f64() * 1e6 / n as f64,
        raw.as_secs_f64() * 1e6 / n as f64,
        ours.as_secs_f64() / raw.as_secs_f64()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 100 } else { 1000 };
    let ticks = if quick { 1000 } else { 10_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::spawn(async move {
            let lp = Loop::current().unwrap();
            println!("process and timer benchmark (2 workers)");
            // Warm up both paths.
            ours_sequential(&lp, 10, true).await;
            raw_sequential(10, false).await;
            let best = |v: Vec<Duration>| v.into_iter().min().unwrap();
            // (ours with the parent-death signal?, raw with it?)
            for (pdeath, raw_pdeath) in [(true, false), (true, true), (false, false)] {
                let ours_label = if pdeath {
                    "ours: parent-death signal (default)"
                } else {
                    "ours: no parent-death signal, close_other_fds(false)"
                };
                let raw_label = if raw_pdeath {
                    "raw: tokio + pre_exec prctl"
                } else {
                    "raw: plain tokio"
                };
                let (mut o, mut r) = (Vec::new(), Vec::new());
                for _ in 0..3 {
                    r.push(raw_sequential(n, raw_pdeath).await);
                    o.push(ours_sequential(&lp, n, pdeath).await);
                }
                row(
                    &format!("run_child x{n}, sequential, {ours_label} vs {raw_label}"),
                    best(o),
                    best(r),
                    n,
                );
                let (mut o, mut r) = (Vec::new(), Vec::new());
                for _ in 0..3 {
                    r.push(raw_parallel(n, 50, raw_pdeath).await);
                    o.push(ours_parallel(&lp, n, 50, pdeath).await);
                }
                row(
                    &format!("run_child x{n}, 50 in flight, {ours_label} vs {raw_label}"),
                    best(o),
                    best(r),
                    n,
                );
            }
            let (os, od, ow) = ours_drift(&lp, ticks).await;
            let (rd, rw) = raw_drift(ticks).await;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "periodic 1 ms x{ticks} (hard): schedule drift {:.3} ms; last tick fired {:.3} ms late (worst tick {:.3} ms); raw tokio interval: last {:.3} ms late (worst {:.3} ms)",
                ms(os),
                ms(od),
                ms(ow),
                ms(rd),
                ms(rw),
            );
        })
        .await
        .unwrap()
    });
}
