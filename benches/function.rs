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

use ioasync::{
    Loop,
    worker::{Entry, Function, FunctionRef},
};
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

/// A raw worker process (this binary re-executed) and our end of its
/// socketpair.
fn raw_worker_process() -> (ioasync::process::SpawnedChild, UnixStream) {
    let (ours, theirs) = StdUnixStream::pair().unwrap();
    let mut cmd = ioasync::process::Command::new(std::env::current_exe().unwrap());
    cmd.env("BENCH_RAW_WORKER", "1")
        .stdin(ioasync::process::Stdio::Null)
        .stdout(ioasync::process::Stdio::Null)
        .fd_to_child(3, ioasync::process::Stdio::Fd(theirs.into()));
    let child = ioasync::process::spawn_child(cmd).unwrap();
    ours.set_nonblocking(true).unwrap();
    (child, UnixStream::from_std(ours).unwrap())
}

async fn raw_loop(calls: u64) -> f64 {
    let (mut child, mut s) = raw_worker_process();
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

/// A pool of `workers` square workers, warmed up: every worker started
/// and answered.
async fn warm_pool(
    lp: &Loop,
    name: String,
    workers: usize,
) -> ioasync::notifier::NotifierRef<Function> {
    let f = lp
        .add(
            Function::spec(name, "square")
                .min_workers(workers)
                .max_workers(workers),
        )
        .await
        .unwrap();
    for n in 0..(workers as u64 * 10) {
        assert_eq!(f.call::<u64, u64>(&n).await.unwrap(), square(n));
    }
    f
}

async fn pool_rate(lp: &Loop, workers: usize, calls: u64) -> f64 {
    let f = warm_pool(lp, format!("sq{workers}"), workers).await;
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

/// The p99 of `lat`, sorted in place.
fn p99(lat: &mut [Duration]) -> Duration {
    lat.sort();
    lat[(lat.len() * 99 / 100).min(lat.len() - 1)]
}

/// Raw pipelining: `procs` raw worker processes, each fed over its
/// socketpair with up to `depth` requests outstanding (answers come in
/// order). Returns calls/s and the p99 request-to-answer time.
async fn raw_pipelined(calls: u64, procs: u64, depth: usize) -> (f64, Duration) {
    let per = calls / procs;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..procs {
        tasks.push(tokio::spawn(async move {
            let (mut child, s) = raw_worker_process();
            let (mut rd, mut wr) = s.into_split();
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(depth));
            let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
            let s2 = slots.clone();
            let writer = tokio::spawn(async move {
                for n in 0..per {
                    s2.acquire().await.unwrap().forget();
                    sent_tx.send((n, Instant::now())).unwrap();
                    wr.write_all(&n.to_be_bytes()).await.unwrap();
                }
                wr
            });
            let mut lat = Vec::with_capacity(per as usize);
            let mut buf = [0u8; 8];
            for _ in 0..per {
                rd.read_exact(&mut buf).await.unwrap();
                let (n, at) = sent_rx.recv().await.unwrap();
                assert_eq!(u64::from_be_bytes(buf), square(n));
                lat.push(at.elapsed());
                slots.add_permits(1);
            }
            drop(writer.await.unwrap());
            drop(rd);
            child.wait().await.unwrap();
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = (per * procs) as f64 / t.elapsed().as_secs_f64();
    (rate, p99(&mut lat))
}

/// Pipelined calls: `callers` tasks calling a pool of `workers` at once.
async fn pool_pipelined(lp: &Loop, callers: u64, workers: usize, calls: u64) -> (f64, Duration) {
    let f = warm_pool(lp, format!("pipe{workers}"), workers).await;
    let per = calls / callers;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            for i in 0..per {
                let n = c * per + i;
                let at = Instant::now();
                assert_eq!(f.call::<u64, u64>(&n).await.unwrap(), square(n));
                lat.push(at.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = (per * callers) as f64 / t.elapsed().as_secs_f64();
    f.stop().await;
    (rate, p99(&mut lat))
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
        let opts = ioasync::worker::CallOptions {
            timeout: None,
            retry_safe: true,
            ..Default::default()
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
    ioasync::worker::run_if_worker([Entry::function("square", square)]);
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
            // Pipelined: 64 callers against 2 workers, against 2 raw
            // processes fed 32 requests deep each (64 outstanding in all).
            let (mut r1, mut rp, mut fp) = (vec![], vec![], vec![]);
            for _ in 0..3 {
                r1.push(raw_pipelined(calls, 2, 1).await);
                rp.push(raw_pipelined(calls, 2, 32).await);
                fp.push(pool_pipelined(&lp, 64, 2, calls).await);
            }
            let top = |v: Vec<(f64, Duration)>| {
                v.into_iter().fold((0.0f64, Duration::MAX), |(r, p), (r2, p2)| (r.max(r2), p.min(p2)))
            };
            let ((r1r, r1p99), (rr, rp99), (fr, fp99)) = (top(r1), top(rp), top(fp));
            println!(
                "raw, 2 processes x 1 outstanding        {r1r:>10.0} calls/s   p99 {:>8.1} µs",
                r1p99.as_secs_f64() * 1e6
            );
            println!(
                "raw pipelined, 2 processes x 32 deep    {rr:>10.0} calls/s   p99 {:>8.1} µs",
                rp99.as_secs_f64() * 1e6
            );
            println!(
                "Function, 64 callers, 2 workers         {fr:>10.0} calls/s   p99 {:>8.1} µs   vs 2x1 {:.2}x   vs 2x32 {:.2}x",
                fp99.as_secs_f64() * 1e6,
                fr / r1r,
                fr / rr
            );
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
