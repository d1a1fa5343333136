//! Two measures of a followed file.
//!
//! - Follow latency, from a `write(2)` of one line to the reader having
//!   it, one line at a time (p50, p99): a FileStream woken by inotify
//!   (its backstop poll at 10 s, out of the way), the same polling alone
//!   every 100 ms (its default interval), and coreutils `tail -F` on the
//!   same file (inotify; the line read back from its stdout pipe, so its
//!   figure includes a pipe hop and a process wake-up ours does not).
//! - Throughput: a file written at full speed, followed by a FileStream,
//!   against a raw tokio loop reading the same appended file (both poll
//!   every 1 ms when at the end): lines/s delivered.
//!
//! `cargo bench --bench filestream` (`-- --quick` for fewer samples).
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ioasync::{
    Loop,
    fs::{FileStream, StartAt, WatchMode},
    io::ReadAction,
};
use tokio::{io::AsyncBufReadExt, sync::Notify};

/// p50 and p99 of `v`, in ms.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)].as_secs_f64() * 1e3;
    (at(50), at(99))
}

fn appender(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().append(true).open(path).unwrap()
}

/// Latency of a FileStream in `mode`: write a line, wait for on_read.
async fn ours_latency(
    lp: &Loop,
    path: &Path,
    mode: WatchMode,
    interval: Duration,
    n: usize,
) -> Vec<Duration> {
    fresh(path);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let fs = lp
        .add(
            FileStream::spec("latency", path)
                .watch(mode)
                .interval(interval)
                .on_read(move |buf, _| {
                    let t = Instant::now();
                    buf.clear();
                    let _ = tx.send(t);
                    ReadAction::Wait
                }),
        )
        .await
        .unwrap();
    let mut f = appender(path);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        writeln!(f, "sample {i}").unwrap();
        let t1 = rx.recv().await.unwrap();
        out.push(t1 - t0);
    }
    fs.stop().await;
    out
}

/// Latency of coreutils `tail -F -n 0` on an existing file (so inotify):
/// write a line, read it back from tail's stdout.
async fn tail_latency(path: &Path, n: usize) -> Option<Vec<Duration>> {
    fresh(path);
    let mut child = tokio::process::Command::new("tail")
        .args(["-F", "-n", "0"])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take()?).lines();
    let mut f = appender(path);
    // tail sets up its watch after it starts: a first line read back
    // says it follows.
    loop {
        writeln!(f, "ready?").unwrap();
        if let Ok(Ok(Some(_))) =
            tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await
        {
            break;
        }
    }
    // Drain the other probes.
    while let Ok(Ok(Some(_))) =
        tokio::time::timeout(Duration::from_millis(50), lines.next_line()).await
    {}
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        writeln!(f, "sample {i}").unwrap();
        lines.next_line().await.ok()??;
        out.push(t0.elapsed());
    }
    let _ = child.kill().await;
    Some(out)
}

fn writer(path: PathBuf, lines: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::io::BufWriter::with_capacity(
            64 << 10,
            std::fs::OpenOptions::new().append(true).open(path).unwrap(),
        );
        for i in 0..lines {
            writeln!(f, "log line number {i:>10} with some payload").unwrap();
        }
        f.flush().unwrap();
    })
}

fn fresh(path: &Path) {
    std::fs::write(path, "").unwrap();
}

async fn ours(lp: &Loop, path: &Path, lines: u64) -> f64 {
    fresh(path);
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (c, d) = (count.clone(), done.clone());
    let fs = lp
        .add(
            FileStream::spec("bench", path)
                .start(StartAt::Beginning)
                .interval(Duration::from_millis(1))
                .on_read(move |buf, _| {
                    let n = buf.iter().filter(|b| **b == b'\n').count();
                    let cut = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    let _ = buf.split_to(cut);
                    if c.fetch_add(n as u64, Ordering::Relaxed) + n as u64 >= lines {
                        d.notify_one();
                    }
                    ReadAction::Wait
                }),
        )
        .await
        .unwrap();
    let t = Instant::now();
    let w = writer(path.to_owned(), lines);
    done.notified().await;
    let rate = lines as f64 / t.elapsed().as_secs_f64();
    w.join().unwrap();
    assert_eq!(count.load(Ordering::Relaxed), lines);
    fs.stop().await;
    rate
}

async fn raw(path: &Path, lines: u64) -> f64 {
    fresh(path);
    let mut f = std::fs::File::open(path).unwrap();
    let t = Instant::now();
    let w = writer(path.to_owned(), lines);
    let mut buf = vec![0u8; 64 << 10];
    let mut seen = 0u64;
    while seen < lines {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        seen += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
    let rate = lines as f64 / t.elapsed().as_secs_f64();
    w.join().unwrap();
    rate
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let lines = if quick { 200_000 } else { 2_000_000 };
    let path = std::env::temp_dir().join(format!("ioasync-bench-{}.log", std::process::id()));
    std::fs::write(&path, "").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let p = path.clone();
    rt.block_on(async move {
        tokio::spawn(async move {
            let lp = Loop::current().unwrap();
            let samples = if quick { 200 } else { 1000 };
            let ev =
                ours_latency(&lp, &p, WatchMode::Events, Duration::from_secs(10), samples).await;
            let poll = ours_latency(
                &lp,
                &p,
                WatchMode::Poll,
                Duration::from_millis(100),
                samples / 20,
            )
            .await;
            let tail = tail_latency(&p, samples).await;
            println!("filestream follow latency, write(2) of one line -> the reader has it");
            let row = |what: &str, v: Vec<Duration>| {
                let n = v.len();
                let (p50, p99) = percentiles(v);
                println!("{what:<38} n={n:<5} p50 {p50:>8.3} ms   p99 {p99:>8.3} ms");
            };
            row("FileStream, inotify (backstop 10 s)", ev);
            row("FileStream, polling every 100 ms", poll);
            match tail {
                Some(v) => row("coreutils tail -F (inotify, via pipe)", v),
                None => println!("coreutils tail -F: not run (no `tail` here)"),
            }
            let (mut o, mut r) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                r.push(raw(&p, lines).await);
                o.push(ours(&lp, &p, lines).await);
            }
            let best = |v: Vec<f64>| v.into_iter().fold(0.0f64, f64::max);
            let (o, r) = (best(o), best(r));
            println!("filestream benchmark: {lines} lines of 47 bytes written at full speed");
            println!("raw tokio read loop   {r:>12.0} lines/s");
            println!(
                "FileStream            {o:>12.0} lines/s   ratio {:.2}x",
                o / r
            );
        })
        .await
        .unwrap()
    });
    let _ = std::fs::remove_file(&path);
}
