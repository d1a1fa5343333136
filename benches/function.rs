//! Function calls with small arguments through 1 and 2 workers, against a
//! raw socketpair request/response loop between the same two kinds of
//! process (the physical limit of this design), in one run; and the time
//! to replace a SIGKILLed worker.
//!
//! `cargo bench --bench function` (`-- --quick` for shorter runs).
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

use std::{
    io::{Read, Write},
    os::{fd::FromRawFd, unix::net::UnixStream as StdUnixStream},
    time::{Duration, Instant},
};

use ioasync::{Entry, Function, FunctionRef, Loop};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

fn square(n: u64) -> u64 {
    n.wrapping_mul(n)
}

/// The raw worker: read an 8-byte request, answer 8 bytes, on fd 3.
fn raw_worker() -> ! {
    #[allow(unsafe_code)]
    // SAFETY: the parent handed us fd 3, our end of a socketpair.
    let mut s = unsafe { StdUnixStream::from_raw_fd(3) };
    let mut buf = [0u8; 8];
    while s.read_exact(&mut buf).is_ok() {
        let n = u64::from_be_bytes(buf);
        if s.write_all(&square(n).to_be_bytes()).is_err() {
            break;
        }
    }
    std::process::exit(0)
}

async fn raw_loop(calls: u64) -> f64 {
    let (ours, theirs) = StdUnixStream::pair().unwrap();
    let mut cmd = ioasync::Command::new(std::env::current_exe().unwrap());
    cmd.env("BENCH_RAW_WORKER", "1")
        .stdin(ioasync::Stdio::Null)
        .stdout(ioasync::Stdio::Null)
        .fd_to_child(3, ioasync::Stdio::Fd(theirs.into()));
    let mut child = ioasync::spawn_child(cmd).unwrap();
    ours.set_nonblocking(true).unwrap();
    let mut s = UnixStream::from_std(ours).unwrap();
    let mut buf = [0u8; 8];
    let t = Instant::now();
    for n in 0..calls {
        s.write_all(&n.to_be_bytes()).await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(u64::from_be_bytes(buf), square(n));
    }
    let rate = calls as f64 / t.elapsed().as_secs_f64();
    drop(s);
    child.wait().await.unwrap();
    rate
}

async fn pool_rate(lp: &Loop, workers: usize, calls: u64) -> f64 {
    let f = lp
        .add(
            Function::spec(format!("sq{workers}"), "square")
                .min_workers(workers)
                .max_workers(workers),
        )
        .await
        .unwrap();
    // Warm up: every worker started and answered.
    for n in 0..(workers as u64 * 10) {
        assert_eq!(f.call::<u64, u64>(&n).await.unwrap(), square(n));
    }
    let t = Instant::now();
    let per = calls / workers as u64;
    let mut tasks = Vec::new();
    for w in 0..workers as u64 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let n = w * per + i;
                assert_eq!(f.call::<u64, u64>(&n).await.unwrap(), square(n));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (per * workers as u64) as f64 / t.elapsed().as_secs_f64();
    f.stop().await;
    rate
}

/// p50 of the time from a worker's SIGKILL to the next call answered.
async fn replacement_p50(lp: &Loop, rounds: usize) -> Duration {
    let f = lp
        .add(
            Function::spec("victim", "square")
                .min_workers(1)
                .max_workers(1),
        )
        .await
        .unwrap();
    let mut times = Vec::new();
    for n in 0..rounds as u64 {
        assert_eq!(f.call::<u64, u64>(&n).await.unwrap(), square(n));
        let pid = f.stats().await.unwrap().pids[0];
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Retry-safe: if the call reaches the dying worker it runs again.
        let opts = ioasync::CallOptions {
            timeout: None,
            retry_safe: true,
        };
        assert_eq!(f.call_with::<u64, u64>(&n, opts).await.unwrap(), square(n));
        times.push(t.elapsed());
    }
    f.stop().await;
    times.sort();
    times[times.len() / 2]
}

fn main() {
    if std::env::var_os("BENCH_RAW_WORKER").is_some() {
        raw_worker();
    }
    ioasync::run_if_worker([Entry::function("square", square)]);
    let quick = std::env::args().any(|a| a == "--quick");
    let calls = if quick { 5_000 } else { 50_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::spawn(async move {
            let lp = Loop::current().unwrap();
            println!("function benchmark: {calls} calls of square(u64), 2 runtime workers");
            let best = |v: Vec<f64>| v.into_iter().fold(0.0f64, f64::max);
            let (mut raw, mut one, mut two) = (vec![], vec![], vec![]);
            for _ in 0..3 {
                raw.push(raw_loop(calls).await);
                one.push(pool_rate(&lp, 1, calls).await);
                two.push(pool_rate(&lp, 2, calls).await);
            }
            let (raw, one, two) = (best(raw), best(one), best(two));
            println!("raw socketpair loop (1 process)        {raw:>10.0} calls/s");
            println!("Function, 1 worker                      {one:>10.0} calls/s   ratio {:.2}x", one / raw);
            println!("Function, 2 workers (2 callers)         {two:>10.0} calls/s   ratio {:.2}x", two / raw);
            let p50 = replacement_p50(&lp, if quick { 5 } else { 21 }).await;
            println!(
                "worker replacement after SIGKILL, p50   {:>10.2} ms (kill to the next answered call)",
                p50.as_secs_f64() * 1e3
            );
        })
        .await
        .unwrap()
    });
}
