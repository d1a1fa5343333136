//! The flagship demo: a supervised line-protocol TCP service whose
//! requests are computed by a Function pool of worker processes.
//!
//! ```text
//! cargo run --release --example demo                      # self-driving run, exits 0 if all is well
//! cargo run --release --example demo -- --serve ADDR      # just the service
//! cargo run --release --example demo -- --seconds 5 --clients 8
//! cargo run --release --example demo -- --dot | dot -Tsvg > tree.svg
//! cargo run --release --example demo -- --serve ADDR --control /tmp/demo.tree
//! cargo run --release --features nats --example demo -- --nats nats://127.0.0.1:4222
//! cargo run --release --features nats --example demo -- --worker-host nats://127.0.0.1:4222
//! ```
//!
//! Protocol: a request is a line holding an integer n (0 ≤ n ≤ 10,000,000);
//! the reply is the line `n count`, count being the number of primes ≤ n,
//! computed in a worker, or `n ERR <message>` when that call failed. A
//! malformed line gets `ERR <message>` and the connection stays open.
//! Replies on one connection come in request order.
//!
//! Without `--serve`, it drives itself with a built-in client for a few
//! seconds, SIGKILLs one worker mid-run to show the recovery, prints
//! throughput, the tree and the pool's restarts, shuts down gracefully, and
//! exits 0 only if every request was answered correctly. With `--serve
//! ADDR` the first line on stdout is `listening on <addr>`; SIGINT or
//! SIGTERM stop it gracefully: reading stops, requests already read are
//! answered and flushed, then connections close. `--drain SECS` (default
//! 5) bounds that; what overruns it is cut, named on stderr, and the exit
//! status is 1.
//!
//! `--dot` prints the final tree (taken just before the shutdown) as
//! Graphviz DOT on stdout after the self-driving run, and nothing else on
//! stdout: the run's report goes to stderr; the exit status is as without
//! it. `--control PATH` serves the live tree on a Unix socket for
//! `examples/top.rs` (see `ioasync::control`).
//!
//! `--nats URL` (feature `nats`): the pool spans hosts — its workers are
//! worker hosts on a NATS network (pool `primes`); the self-driving run
//! starts two worker hosts as separate processes (this program with
//! `--worker-host URL`) and SIGKILLs one mid-run instead of a worker.
//! `--worker-host URL` serves the pool from this process until SIGINT or
//! SIGTERM (first line on stdout: `worker host ready`).
//!
//! A line the codec refuses (longer than 64 bytes, or not UTF-8) is
//! answered `ERR <message>` in its place. Any number of pipelined requests
//! per connection is fine: at most 64 are decoded ahead, the rest wait as
//! bytes, and calls wait for room in the pool's queue.

use std::{
    collections::VecDeque,
    io::Write as _,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ioasync::{
    Loop,
    io::codec::LineCodec,
    io::{Address, Framed, Listen, ListenerRef},
    notifier::{IntoSpec, NotifierRef},
    worker::{CallOptions, EntryPoint, EntryRef, Function, FunctionRef},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

const MAX_N: u64 = 10_000_000;

/// Runs in a worker process: the number of primes ≤ n (a sieve).
fn count_primes(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    let n = n as usize;
    let mut composite = vec![false; n + 1];
    let mut count = 0;
    for i in 2..=n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j <= n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

/// The worker pool's entry, declared once with its types: the workers
/// run it, the service calls it.
static PRIMES: EntryPoint<u64, u64> = EntryPoint::new("primes");

/// Where the service's calls go: its own worker processes, or (`--nats`)
/// the worker hosts of pool `primes` anywhere on the NATS network.
#[derive(Clone)]
enum Primes {
    Local(EntryRef<u64, u64>),
    #[cfg(feature = "nats")]
    Remote(ioasync::nats::RemoteEntry<u64, u64>),
}

impl Primes {
    async fn call_with(&self, n: &u64, opts: CallOptions) -> ioasync::Result<u64> {
        match self {
            Primes::Local(p) => p.call_with(n, opts).await,
            #[cfg(feature = "nats")]
            Primes::Remote(p) => p.call_with(n, opts).await,
        }
    }
}

/// The pool behind the service, for the self-driving run's kill and
/// report.
enum Pool {
    Local(NotifierRef<Function>),
    #[cfg(feature = "nats")]
    Remote {
        pool: NotifierRef<ioasync::nats::RemotePool>,
        hosts: Vec<tokio::process::Child>,
    },
}

/// The pool: local worker processes, or over NATS at `nats` (starting
/// `hosts` worker host processes of this program first).
async fn pool(lp: &Loop, nats: Option<&str>, hosts: usize) -> ioasync::Result<(Primes, Pool)> {
    let Some(url) = nats else {
        let pool = lp
            .add(PRIMES.pool("primes").min_workers(2).max_workers(2))
            .await?;
        return Ok((Primes::Local(PRIMES.on(&pool)?), Pool::Local(pool)));
    };
    #[cfg(feature = "nats")]
    {
        use ioasync::nats::{Remote, RemoteEntryPoint};
        let mut children = Vec::new();
        for _ in 0..hosts {
            let exe = std::env::current_exe().map_err(|e| ioasync::Error::io("spawn", e))?;
            let mut child = tokio::process::Command::new(exe)
                .args(["--worker-host", url])
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| ioasync::Error::io("spawn", e))?;
            let out = child.stdout.take().expect("piped");
            let mut lines = BufReader::new(out).lines();
            match lines.next_line().await {
                Ok(Some(l)) if l == "worker host ready" => children.push(child),
                other => {
                    return Err(ioasync::Error::closed(
                        "spawn",
                        format!("a worker host did not start: {other:?}"),
                    ));
                }
            }
        }
        let nats = lp.add(Remote::spec("nats", url)).await?;
        let pool = lp.add(PRIMES.remote_pool(&nats, "primes")).await?;
        Ok((
            Primes::Remote(PRIMES.on_remote(&pool)?),
            Pool::Remote {
                pool,
                hosts: children,
            },
        ))
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = hosts;
        Err(no_nats(url))
    }
}

#[cfg(not(feature = "nats"))]
fn no_nats(url: &str) -> ioasync::Error {
    ioasync::Error::invalid_input(
        "nats",
        format!("{url}: built without NATS (cargo run --features nats --example demo)"),
    )
}

/// `--worker-host URL`: serves pool `primes` from this process.
async fn worker_host(lp: Loop, url: &str) -> ioasync::Result<()> {
    #[cfg(feature = "nats")]
    {
        let nats = lp.add(ioasync::nats::Remote::spec("nats", url)).await?;
        let host =
            ioasync::nats::WorkerHost::spec("host", &nats, "primes", PRIMES.runs(count_primes));
        lp.add(host.lanes(2)).await?;
        println!("worker host ready");
        let _ = std::io::stdout().flush();
        match lp.run::<()>().await {
            Err(e) if e.is_cancelled() => Ok(()),
            other => other,
        }
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = lp;
        Err(no_nats(url))
    }
}

/// One request line to one reply line.
async fn answer(line: String, primes: Primes) -> String {
    let n = match line.trim().parse::<u64>() {
        Ok(n) if n <= MAX_N => n,
        Ok(n) => return format!("ERR {n} is above {MAX_N}"),
        Err(_) => return format!("ERR not an integer: {:?}", line.trim()),
    };
    // Counting primes is pure: a call whose worker died may run again.
    let opts = CallOptions {
        timeout: Some(Duration::from_secs(30)),
        retry_safe: true,
        ..Default::default()
    };
    match primes.call_with(&n, opts).await {
        Ok(count) => format!("{n} {count}"),
        Err(e) => format!("{n} ERR {e}"),
    }
}

async fn start_service(
    lp: &Loop,
    addr: Address,
    drain: Duration,
    p: Primes,
) -> ioasync::Result<String> {
    let next = AtomicU64::new(1);
    let listener = lp
        .listen("demo", Listen::new(addr), move |conn, _peer| {
            let p = p.clone();
            let n = next.fetch_add(1, Ordering::Relaxed);
            Framed::spec(
                format!("conn-{n}"),
                conn,
                LineCodec::new_with_max_length(64),
            )
            .serve(64, move |line: String| {
                let p = p.clone();
                async move { Some(answer(line, p).await) }
            })
            // A line the codec refuses (too long, not UTF-8) is answered in
            // its place; the connection goes on.
            .on_decode_error(|e| Some(format!("ERR {}", e.message())))
            .into_spec()
            // A stop drains (answers what was read): give it the drain time.
            .stop_timeout(drain)
        })
        .await?;
    let local = listener.local_addr().await?;
    Ok(local.to_string())
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: demo [--serve ADDR] [--seconds N] [--clients N] [--drain SECS] [--control PATH] [--dot] [--nats URL | --worker-host URL]"
    );
    ExitCode::from(2)
}

/// `--dot`: stdout carries the final tree as DOT and nothing else; what
/// the self-driving run reports goes to stderr.
static DOT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A line of the run's report: stdout, or stderr under `--dot`.
macro_rules! say {
    ($($t:tt)*) => {
        if DOT.load(Ordering::Relaxed) {
            eprintln!($($t)*);
        } else {
            println!($($t)*);
        }
    };
}

fn main() -> ExitCode {
    // First thing: when re-executed as a worker, this runs the entry.
    ioasync::worker::run_if_worker([PRIMES.runs(count_primes)]);

    let mut args = std::env::args().skip(1);
    let (mut serve, mut seconds, mut clients, mut drain) = (None, 3.0f64, 4usize, 5.0f64);
    let mut control: Option<String> = None;
    let (mut nats, mut worker_host_at): (Option<String>, Option<String>) = (None, None);
    while let Some(a) = args.next() {
        if a == "--dot" {
            DOT.store(true, Ordering::Relaxed);
            continue;
        }
        match (a.as_str(), args.next()) {
            ("--control", Some(v)) => control = Some(v),
            ("--nats", Some(v)) => nats = Some(v),
            ("--worker-host", Some(v)) => worker_host_at = Some(v),
            ("--serve", Some(v)) => serve = Some(v),
            ("--seconds", Some(v)) => match v.parse() {
                Ok(s) if s > 0.0 => seconds = s,
                _ => return usage(),
            },
            ("--clients", Some(v)) => match v.parse() {
                Ok(c) if c > 0 => clients = c,
                _ => return usage(),
            },
            ("--drain", Some(v)) => match v.parse() {
                Ok(s) if s >= 0.0 => drain = s,
                _ => return usage(),
            },
            _ => return usage(),
        }
    }
    let lp = match Loop::builder()
        .shutdown_on_signals(Duration::from_secs_f64(drain))
        .build()
    {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let l = lp.clone();
    let result = lp.block_on(async move {
        if let Some(path) = &control {
            // The live view's socket (see examples/top.rs).
            ioasync::control::serve_tree(&l, path).await?;
        }
        if let Some(url) = &worker_host_at {
            return worker_host(l, url).await;
        }
        match serve {
            Some(addr) => serve_only(l, &addr, Duration::from_secs_f64(drain), nats).await,
            None => self_drive(l, seconds, clients, nats).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_only(
    lp: Loop,
    addr: &str,
    drain: Duration,
    nats: Option<String>,
) -> ioasync::Result<()> {
    // With --nats, the hosts are whoever serves pool `primes` there.
    let (primes, _pool) = pool(&lp, nats.as_deref(), 0).await?;
    let local = start_service(&lp, addr.parse()?, drain, primes).await?;
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    match lp.run::<()>().await {
        Err(e) if e.is_cancelled() => Ok(()),
        other => other,
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    correct: AtomicU64,
    wrong: AtomicU64,
}

/// One client connection: pipelines requests, checks every reply.
async fn client(
    addr: String,
    until: tokio::time::Instant,
    seed: u64,
    sieve: Arc<Vec<u64>>,
    tally: Arc<Tally>,
) {
    let Ok(stream) = TcpStream::connect(&addr).await else {
        tally.wrong.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let mut expect: VecDeque<Option<u64>> = VecDeque::new();
    let mut x = seed;
    let check = |expect: &mut VecDeque<Option<u64>>, line: String| {
        let want = expect.pop_front().flatten();
        let ok = match want {
            Some(n) => line == format!("{n} {}", sieve[n as usize]),
            None => line.starts_with("ERR "),
        };
        if ok {
            tally.correct.fetch_add(1, Ordering::Relaxed);
        } else {
            eprintln!("demo: wrong reply {line:?} (wanted n = {want:?})");
            tally.wrong.fetch_add(1, Ordering::Relaxed);
        }
    };
    while tokio::time::Instant::now() < until {
        // Keep 16 requests in flight; one in 50 is malformed on purpose.
        while expect.len() < 16 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (line, want) = if x.is_multiple_of(50) {
                ("not-a-number\n".to_string(), None)
            } else {
                let n = (x >> 33) % (sieve.len() as u64);
                (format!("{n}\n"), Some(n))
            };
            if wr.write_all(line.as_bytes()).await.is_err() {
                tally.wrong.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tally.sent.fetch_add(1, Ordering::Relaxed);
            expect.push_back(want);
        }
        match lines.next_line().await {
            Ok(Some(line)) => check(&mut expect, line),
            _ => {
                tally.wrong.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
    while !expect.is_empty() {
        match lines.next_line().await {
            Ok(Some(line)) => check(&mut expect, line),
            _ => {
                tally
                    .wrong
                    .fetch_add(expect.len() as u64, Ordering::Relaxed);
                return;
            }
        }
    }
}

async fn self_drive(
    lp: Loop,
    seconds: f64,
    clients: usize,
    nats: Option<String>,
) -> ioasync::Result<()> {
    let (primes, mut pool) = pool(&lp, nats.as_deref(), 2).await?;
    let addr = start_service(&lp, "127.0.0.1:0".parse()?, Duration::from_secs(5), primes).await?;
    say!("listening on {addr}");
    // The client checks answers against its own sieve (n up to 200,000).
    let limit = 200_000usize;
    let mut counts = vec![0u64; limit];
    let mut composite = vec![false; limit];
    let mut c = 0;
    for i in 2..limit {
        if !composite[i] {
            c += 1;
            let mut j = i * i;
            while j < limit {
                composite[j] = true;
                j += i;
            }
        }
        counts[i] = c;
    }
    let sieve = Arc::new(counts);
    let tally = Arc::new(Tally::default());
    let start = tokio::time::Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    say!("driving {clients} connections for {seconds} s");
    let mut tasks = Vec::new();
    for i in 0..clients {
        tasks.push(tokio::spawn(client(
            addr.clone(),
            until,
            i as u64 + 1,
            sieve.clone(),
            tally.clone(),
        )));
    }
    // A third of the way in, SIGKILL a worker (with --nats: a worker
    // host): the pool must recover.
    tokio::time::sleep(Duration::from_secs_f64(seconds / 3.0)).await;
    let victim = match &mut pool {
        Pool::Local(f) => f.stats().await?.pids.first().copied(),
        #[cfg(feature = "nats")]
        Pool::Remote { hosts, .. } => hosts.first_mut().and_then(|h| h.id()),
    };
    if let Some(pid) = victim {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let what = if matches!(pool, Pool::Local(_)) {
            "worker"
        } else {
            "worker host"
        };
        say!(
            "killed {what} {pid} with SIGKILL at {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    say!("tree while serving:\n{}", lp.tree());
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (sent, correct, wrong) = (
        tally.sent.load(Ordering::Relaxed),
        tally.correct.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
    );
    say!(
        "requests: {sent} sent, {correct} answered correctly, {wrong} wrong or lost; {:.0} requests/s",
        correct as f64 / elapsed
    );
    let deaths = match &pool {
        Pool::Local(f) => {
            let stats = f.stats().await?;
            say!(
                "pool: {} workers started, {} died and were replaced, {} calls completed",
                stats.started,
                stats.died,
                stats.completed
            );
            stats.died
        }
        #[cfg(feature = "nats")]
        Pool::Remote { pool, .. } => {
            use ioasync::nats::RemotePoolRef;
            let stats = pool.stats().await?;
            say!(
                "pool over NATS: {} hosts now, {} lost, {} calls completed, {} retried",
                stats.hosts,
                stats.hosts_lost,
                stats.completed,
                stats.retried
            );
            stats.hosts_lost
        }
    };
    let final_tree = lp.tree();
    let report = lp.shutdown(Some(Duration::from_secs(5))).await;
    if DOT.load(Ordering::Relaxed) {
        print!("{}", final_tree.to_dot());
    }
    say!("shut down, leaves first: {}", report.stopped.join(", "));
    let recovered = victim.is_none() || deaths >= 1;
    if wrong == 0 && correct == sent && sent > 0 && recovered && report.is_clean() {
        say!("ok: every request was answered correctly");
        Ok(())
    } else {
        Err(ioasync::Error::invalid_input(
            "self-check",
            format!(
                "sent {sent}, correct {correct}, wrong {wrong}, worker deaths seen {deaths}, clean shutdown {}",
                report.is_clean()
            ),
        ))
    }
}
