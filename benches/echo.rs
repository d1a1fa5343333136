//! Echo of 64-byte messages over 1, 10 and 100 loopback connections:
//! Listener + Stream notifiers against a raw tokio echo server, each in its
//! own server process, both runtime flavours. Reports round trips/s, p50
//! and p99 latency, server CPU µs per round trip and server RSS; then
//! resident bytes per idle connection with 10,000 connections open (the
//! client side in this process, the server in another).
//!
//! `cargo bench --bench echo` (`-- --quick` for shorter runs).
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

use std::{
    io::{BufRead, BufReader, Write as _},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ioasync::{
    Loop,
    io::{Address, Listen, LocalAddr, ReadAction, Stream},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const MSG: usize = 64;

fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn runtime(flavor: &str) -> tokio::runtime::Runtime {
    if flavor == "current" {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }
}

/// Server process: prints `listening on ADDR`, echoes until killed.
fn serve(kind: &str, flavor: &str) {
    raise_nofile();
    let rt = runtime(flavor);
    rt.block_on(async {
        if kind == "raw" {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("listening on {}", l.local_addr().unwrap());
            std::io::stdout().flush().unwrap();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        } else {
            let lp = Loop::current().unwrap();
            let next = std::sync::atomic::AtomicU64::new(0);
            let listener = lp
                .listen(
                    "echo",
                    Listen::new("127.0.0.1:0".parse::<Address>().unwrap()).backlog(4096),
                    move |conn, _| {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Stream::spec(format!("c{n}"), conn).on_read(|io, buf, _| {
                            io.write_slice(buf);
                            buf.clear();
                            ReadAction::Wait
                        })
                    },
                )
                .await
                .unwrap();
            println!("listening on {}", listener.ask(LocalAddr).await.unwrap());
            std::io::stdout().flush().unwrap();
            std::future::pending::<()>().await;
        }
    });
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(kind: &str, flavor: &str) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--serve", kind, flavor])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        Server { child, addr }
    }

    /// (user + system CPU seconds, RSS bytes) from /proc.
    fn usage(&self) -> (f64, u64) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let tick = 100.0; // USER_HZ
        let cpu = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / tick;
        let rss_pages: u64 = fields[21].parse().unwrap();
        (cpu, rss_pages * 4096)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    rts: f64,
    p50: Duration,
    p99: Duration,
    cpu_us: f64,
    rss: u64,
}

/// `conns` connections doing request/response for `secs` seconds.
fn load(server: &Server, conns: usize, secs: f64) -> Run {
    let rt = runtime("multi");
    let addr = server.addr.clone();
    let (cpu0, _) = server.usage();
    let t0 = Instant::now();
    let lat: Vec<Vec<Duration>> = rt.block_on(async move {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let msg = [7u8; MSG];
                let mut back = [0u8; MSG];
                let mut lat = Vec::with_capacity(100_000);
                while Instant::now() < until {
                    let t = Instant::now();
                    s.write_all(&msg).await.unwrap();
                    s.read_exact(&mut back).await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = server.usage();
    let mut lat: Vec<Duration> = lat.into_iter().flatten().collect();
    lat.sort_unstable();
    let n = lat.len();
    Run {
        rts: n as f64 / elapsed,
        p50: lat[n / 2],
        p99: lat[n * 99 / 100],
        cpu_us: (cpu1 - cpu0) * 1e6 / n as f64,
        rss,
    }
}

/// Round trips/s of `conns` connections against `addr` for `secs`.
fn load_addr(addr: &str, conns: usize, secs: f64) -> f64 {
    let rt = runtime("multi");
    let t0 = Instant::now();
    let addr = addr.to_owned();
    let n: usize = rt.block_on(async move {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let (msg, mut back, mut n) = ([7u8; MSG], [0u8; MSG], 0usize);
                while Instant::now() < until {
                    s.write_all(&msg).await.unwrap();
                    s.read_exact(&mut back).await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Resident bytes per idle connection with `n` connections open.
fn idle_memory(kind: &str, n: usize) -> f64 {
    let server = Server::start(kind, "multi");
    let rt = runtime("multi");
    let (_, rss0) = server.usage();
    let addr = server.addr.clone();
    let conns = rt.block_on(async move {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            // One round trip each, so the server side has really set up.
            s.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            v.push(s);
        }
        v
    });
    let (_, rss1) = server.usage();
    drop(conns);
    (rss1 as f64 - rss0 as f64) / n as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1], &args[i + 2]);
        return;
    }
    raise_nofile();
    if let Some(i) = args.iter().position(|a| a == "--load") {
        // For profiling a server started with --serve: load it for SECS.
        let r = load_addr(
            &args[i + 1],
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
        println!("{:.0} round trips/s", r);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let secs = if quick { 0.5 } else { 2.0 };
    println!(
        "echo benchmark: {MSG}-byte messages, {secs} s per run, load generator: tokio, 2 workers"
    );
    for flavor in ["current", "multi"] {
        println!("\nserver runtime: {flavor}-thread");
        println!(
            "{:>5} {:>8} {:>12} {:>9} {:>9} {:>10} {:>9}   ratio rt/s  ratio p99",
            "conns", "server", "round trips/s", "p50 µs", "p99 µs", "CPU µs/rt", "RSS MiB"
        );
        for conns in [1, 10, 100] {
            // Three alternating runs of each; the median by round trips/s.
            let servers = [Server::start("raw", flavor), Server::start("ours", flavor)];
            let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
            for (s, _) in servers.iter().zip(0..) {
                load(s, conns, secs / 4.0); // warm up
            }
            for _ in 0..3 {
                for (s, i) in servers.iter().zip(0..) {
                    runs[i].push(load(s, conns, secs));
                }
            }
            let rows: Vec<Run> = runs
                .into_iter()
                .map(|mut v| {
                    v.sort_by(|a, b| a.rts.total_cmp(&b.rts));
                    v.swap_remove(1)
                })
                .collect();
            for (kind, r) in ["raw", "ours"].iter().zip(&rows) {
                let ratio = |a: f64, b: f64| a / b;
                let extra = if *kind == "ours" {
                    format!(
                        "   {:>9.2}x  {:>8.2}x",
                        ratio(r.rts, rows[0].rts),
                        ratio(r.p99.as_secs_f64(), rows[0].p99.as_secs_f64())
                    )
                } else {
                    String::new()
                };
                println!(
                    "{:>5} {:>8} {:>12.0} {:>9.1} {:>9.1} {:>10.2} {:>9.1}{extra}",
                    conns,
                    kind,
                    r.rts,
                    r.p50.as_secs_f64() * 1e6,
                    r.p99.as_secs_f64() * 1e6,
                    r.cpu_us,
                    r.rss as f64 / (1 << 20) as f64,
                );
            }
        }
    }
    let n = if quick { 1_000 } else { 10_000 };
    let raw = idle_memory("raw", n);
    let ours = idle_memory("ours", n);
    println!(
        "\nresident bytes per idle connection ({n} open): ours {ours:.0} B, raw tokio {raw:.0} B, ratio {:.2}x",
        ours / raw
    );
}
