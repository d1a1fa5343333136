//! A file written at full speed, followed by a FileStream, against a raw
//! tokio loop reading the same appended file (both poll every 1 ms when
//! at the end): lines/s delivered.
//!
//! `cargo bench --bench filestream` (`-- --quick` for fewer lines).
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

use ioasync::{FileStream, Loop, ReadAction, StartAt};
use tokio::sync::Notify;

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
