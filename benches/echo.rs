//! Echo of 64-byte messages over 1, 10 and 100 loopback connections:
//! Listener + Stream notifiers against a raw tokio echo server, each in its
//! own server process, both runtime flavours. Reports round trips/s, p50
//! and p99 latency, server CPU µs per round trip and server RSS; then
//! resident bytes per idle connection with 10,000 connections open (the
//! client side in this process, the server in another).
//!
//! With feature `tls` (`cargo bench --bench echo --all-features`) a TLS
//! echo at 10 and 100 connections follows: a TLS Listener (`Listen::tls`)
//! with Stream notifiers against raw tokio + tokio-rustls (an accept loop,
//! one task per connection doing its handshake then the echo), the same
//! tokio-rustls client for both, a certificate made at run time with rcgen
//! (no key material in git). For profiling: `--make-certs` prints a fresh
//! certificate directory (remove it after), `--serve tls-raw|tls-ours
//! FLAVOR DIR` and `--load-tls ADDR DIR CONNS SECS`.
//!
//! Beside raw tokio, a plain kameo actor per connection (reading its
//! socket in `next`) shows what any kameo-based server pays.
//!
//! For profiling the plain echo: `--serve raw|kameo|ours FLAVOR` starts a
//! server, `--load ADDR CONNS SECS` loads it for a time, `--rounds ADDR
//! CONNS N` for exactly N round trips (run it twice with different N
//! under `valgrind --tool=callgrind` on the server: the difference is
//! the instructions of N round trips, start-up and teardown cancelled).
//!
//! `cargo bench --bench echo` (`-- --quick` for shorter runs, `-- --idle`
//! for the idle-connection figure only).
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

use std::{
    io::{BufRead, BufReader, Write as _},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ioasync::{
    Loop,
    io::{Address, Listen, ListenerRef, ReadAction, Stream},
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
/// `tls-raw` and `tls-ours` take the certificate directory after the
/// flavour.
fn serve(kind: &str, flavor: &str, rest: &[String]) {
    raise_nofile();
    let rt = runtime(flavor);
    rt.block_on(async {
        #[cfg(feature = "tls")]
        if let Some(kind) = kind.strip_prefix("tls-") {
            return tls::serve(kind, std::path::Path::new(&rest[0])).await;
        }
        let _ = rest;
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
        } else if kind == "kameo" {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("listening on {}", l.local_addr().unwrap());
            std::io::stdout().flush().unwrap();
            // An actor stops when its last ref is dropped: the accept loop
            // keeps them (a stopped actor's ref is a few pointers).
            let mut refs = Vec::new();
            loop {
                let (s, _) = l.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                use kameo::actor::Spawn;
                refs.push(kameo_echo::Echo::spawn(s));
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
            println!("listening on {}", listener.local_addr().await.unwrap());
            std::io::stdout().flush().unwrap();
            std::future::pending::<()>().await;
        }
    });
}

/// The baseline an actor framework pays: a plain kameo actor per
/// connection (kameo's default bounded mailbox, no tree, no events) that
/// reads its socket in `next` beside its mailbox and echoes what it read.
mod kameo_echo {
    use kameo::{
        Actor,
        actor::{ActorRef, WeakActorRef},
        error::Infallible,
        mailbox::{MailboxReceiver, Signal},
    };
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    pub(crate) struct Echo {
        s: TcpStream,
        buf: Vec<u8>,
    }

    impl Actor for Echo {
        type Args = TcpStream;
        type Error = Infallible;

        async fn on_start(s: TcpStream, _: ActorRef<Self>) -> Result<Self, Infallible> {
            Ok(Echo {
                s,
                buf: vec![0u8; 4096],
            })
        }

        async fn next(
            &mut self,
            _: WeakActorRef<Self>,
            mailbox_rx: &mut MailboxReceiver<Self>,
        ) -> Result<Option<Signal<Self>>, Infallible> {
            loop {
                tokio::select! {
                    biased;
                    signal = mailbox_rx.recv() => return Ok(signal),
                    read = self.s.read(&mut self.buf) => match read {
                        Ok(0) | Err(_) => return Ok(Some(Signal::Stop)),
                        Ok(n) => {
                            if self.s.write_all(&self.buf[..n]).await.is_err() {
                                return Ok(Some(Signal::Stop));
                            }
                        }
                    },
                }
            }
        }
    }
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(kind: &str, flavor: &str) -> Server {
        Server::start_with(kind, flavor, &[])
    }

    fn start_with(kind: &str, flavor: &str, rest: &[&str]) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--serve", kind, flavor])
            .args(rest)
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
    Run::of(lat, elapsed, cpu1 - cpu0, rss)
}

impl Run {
    /// From the latencies of every connection over `elapsed` seconds, in
    /// which the server used `cpu` seconds.
    fn of(lat: Vec<Vec<Duration>>, elapsed: f64, cpu: f64, rss: u64) -> Run {
        let mut lat: Vec<Duration> = lat.into_iter().flatten().collect();
        lat.sort_unstable();
        let n = lat.len();
        // No round trip at all in the window (a stalled VM): zeros, not a panic.
        let at = |q: usize| lat.get(n * q / 100).copied().unwrap_or_default();
        Run {
            rts: n as f64 / elapsed,
            p50: at(50),
            p99: at(99),
            cpu_us: cpu * 1e6 / n as f64,
            rss,
        }
    }
}

/// Three alternating runs of `load` on each of `servers` after a warm-up
/// of each; the median of each by round trips/s.
fn medians(servers: &[Server], mut load: impl FnMut(&Server, f64) -> Run, secs: f64) -> Vec<Run> {
    let mut runs: Vec<Vec<Run>> = servers.iter().map(|_| Vec::new()).collect();
    for s in servers {
        load(s, secs / 4.0); // warm up
    }
    for _ in 0..3 {
        for (s, v) in servers.iter().zip(&mut runs) {
            v.push(load(s, secs));
        }
    }
    runs.into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.rts.total_cmp(&b.rts));
            v.swap_remove(1)
        })
        .collect()
}

fn header() {
    println!(
        "{:>5} {:>8} {:>12} {:>9} {:>9} {:>10} {:>9}   ratio rt/s  ratio p99  ratio CPU",
        "conns", "server", "round trips/s", "p50 µs", "p99 µs", "CPU µs/rt", "RSS MiB"
    );
}

/// One row per run; every row after the first with its ratios to the first.
fn rows(conns: usize, kinds: &[&str], rows: &[Run]) {
    for (i, (kind, r)) in kinds.iter().zip(rows).enumerate() {
        let base = &rows[0];
        let extra = if i > 0 {
            format!(
                "   {:>9.2}x  {:>8.2}x  {:>8.2}x",
                r.rts / base.rts,
                r.p99.as_secs_f64() / base.p99.as_secs_f64(),
                r.cpu_us / base.cpu_us
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

/// `n` round trips in all over `conns` connections against `addr`
/// (`n / conns` each), every connection opened before the first.
fn rounds(addr: &str, conns: usize, n: usize) {
    let rt = runtime("multi");
    let addr = addr.to_owned();
    let each = n / conns;
    rt.block_on(async move {
        let mut socks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let s = TcpStream::connect(&addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            socks.push(s);
        }
        let tasks: Vec<_> = socks
            .into_iter()
            .map(|mut s| {
                tokio::spawn(async move {
                    let (msg, mut back) = ([7u8; MSG], [0u8; MSG]);
                    for _ in 0..each {
                        s.write_all(&msg).await.unwrap();
                        s.read_exact(&mut back).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!("{} round trips", each * conns);
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
        serve(&args[i + 1], &args[i + 2], &args[i + 3..]);
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
    if let Some(i) = args.iter().position(|a| a == "--rounds") {
        // For instruction counts (callgrind) of a server started with
        // --serve: exactly N round trips over CONNS connections, so two
        // runs with different N give the cost of one round trip.
        rounds(
            &args[i + 1],
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
        return;
    }
    #[cfg(feature = "tls")]
    if args.iter().any(|a| a == "--make-certs") {
        // For profiling: a certificate directory for --serve tls-* and --load-tls.
        println!("{}", tls::make_certs().display());
        return;
    }
    #[cfg(feature = "tls")]
    if let Some(i) = args.iter().position(|a| a == "--load-tls") {
        tls::load_addr(&args[i + 1..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let idle_only = args.iter().any(|a| a == "--idle");
    let secs = if quick { 0.5 } else { 2.0 };
    println!(
        "echo benchmark: {MSG}-byte messages, {secs} s per run, load generator: tokio, 2 workers"
    );
    for flavor in ["current", "multi"] {
        if idle_only {
            break;
        }
        println!("\nserver runtime: {flavor}-thread");
        header();
        for conns in [1, 10, 100] {
            let kinds = ["raw", "kameo", "ours"];
            let servers = kinds.map(|k| Server::start(k, flavor));
            let runs = medians(&servers, |s, secs| load(s, conns, secs), secs);
            rows(conns, &kinds, &runs);
        }
    }
    #[cfg(feature = "tls")]
    if !idle_only {
        tls::bench(secs);
    }
    let n = if quick { 1_000 } else { 10_000 };
    let raw = idle_memory("raw", n);
    let kameo = idle_memory("kameo", n);
    let ours = idle_memory("ours", n);
    println!(
        "\nresident bytes per idle connection ({n} open): ours {ours:.0} B, a kameo actor {kameo:.0} B, raw tokio {raw:.0} B; ratio {:.2}x raw, {:.2}x kameo",
        ours / raw,
        ours / kameo
    );
}

/// The TLS echo (feature `tls`): raw tokio + tokio-rustls against a TLS
/// Listener with Stream notifiers, the same tokio-rustls client for both.
#[cfg(feature = "tls")]
mod tls {
    use std::{
        io::Write as _,
        path::{Path, PathBuf},
        sync::Arc,
        time::{Duration, Instant},
    };

    use ioasync::{
        Loop,
        io::{Address, Listen, ListenerRef, ReadAction, Stream, TlsServer},
    };
    use rustls::{ClientConfig, RootCertStore, ServerConfig};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::{MSG, Run, Server, header, medians, rows, runtime};

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A CA and a server certificate it signed for `127.0.0.1`, made now
    /// with rcgen, as `ca.pem`, `cert.pem` and `key.pem` in a fresh
    /// directory.
    pub(super) fn make_certs() -> PathBuf {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ioasync bench CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("ioasync-echo-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        dir
    }

    fn connector(dir: &Path) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    /// Server process for `--serve tls-KIND FLAVOR DIR`.
    pub(super) async fn serve(kind: &str, dir: &Path) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if kind == "raw" {
            // What `TlsServer::from_pem_files` builds.
            let certs = CertificateDer::pem_file_iter(&cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&key).unwrap();
            let config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
            let acceptor = TlsAcceptor::from(Arc::new(config));
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("listening on {}", l.local_addr().unwrap());
            std::io::stdout().flush().unwrap();
            loop {
                let (s, _) = l.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err()
                                {
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
            let listen = Listen::new("127.0.0.1:0".parse::<Address>().unwrap())
                .backlog(4096)
                .tls(TlsServer::from_pem_files(&cert, &key).unwrap());
            let listener = lp
                .listen("echo", listen, move |conn, _| {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Stream::spec(format!("c{n}"), conn).on_read(|io, buf, _| {
                        io.write_slice(buf);
                        buf.clear();
                        ReadAction::Wait
                    })
                })
                .await
                .unwrap();
            println!("listening on {}", listener.local_addr().await.unwrap());
            std::io::stdout().flush().unwrap();
            std::future::pending::<()>().await;
        }
    }

    /// `conns` TLS connections doing request/response for `secs` seconds.
    /// The connects, handshakes and one round trip each come before the
    /// timed window (and before the server's CPU is read).
    fn load(server: &Server, connector: &TlsConnector, conns: usize, secs: f64) -> Run {
        load_with(&server.addr, || server.usage(), connector, conns, secs)
    }

    /// For profiling a server started with `--serve tls-KIND FLAVOR DIR`:
    /// `--load-tls ADDR DIR CONNS SECS` loads it, prints round trips/s.
    pub(super) fn load_addr(args: &[String]) {
        let connector = connector(Path::new(&args[1]));
        let (conns, secs) = (args[2].parse().unwrap(), args[3].parse().unwrap());
        let r = load_with(&args[0], || (0.0, 0), &connector, conns, secs);
        println!("{:.0} round trips/s, p99 {:?}", r.rts, r.p99);
    }

    fn load_with(
        addr: &str,
        usage: impl Fn() -> (f64, u64),
        connector: &TlsConnector,
        conns: usize,
        secs: f64,
    ) -> Run {
        let rt = runtime("multi");
        let (addr, connector) = (addr.to_owned(), connector.clone());
        let streams = rt.block_on(async move {
            let tasks: Vec<_> = (0..conns)
                .map(|_| {
                    let (addr, connector) = (addr.clone(), connector.clone());
                    tokio::spawn(async move {
                        let s = TcpStream::connect(&addr).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        let name = ServerName::try_from("127.0.0.1").unwrap();
                        let mut s = connector.connect(name, s).await.unwrap();
                        let mut back = [0u8; MSG];
                        s.write_all(&[7u8; MSG]).await.unwrap();
                        s.flush().await.unwrap();
                        s.read_exact(&mut back).await.unwrap();
                        s
                    })
                })
                .collect();
            let mut v = Vec::with_capacity(conns);
            for t in tasks {
                v.push(t.await.unwrap());
            }
            v
        });
        let (cpu0, _) = usage();
        let t0 = Instant::now();
        let lat: Vec<Vec<Duration>> = rt.block_on(async move {
            let until = Instant::now() + Duration::from_secs_f64(secs);
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|mut s| {
                    tokio::spawn(async move {
                        let msg = [7u8; MSG];
                        let mut back = [0u8; MSG];
                        let mut lat = Vec::with_capacity(100_000);
                        while Instant::now() < until {
                            let t = Instant::now();
                            s.write_all(&msg).await.unwrap();
                            s.flush().await.unwrap();
                            s.read_exact(&mut back).await.unwrap();
                            lat.push(t.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.unwrap());
            }
            all
        });
        let elapsed = t0.elapsed().as_secs_f64();
        let (cpu1, rss) = usage();
        Run::of(lat, elapsed, cpu1 - cpu0, rss)
    }

    /// Both flavours at 10 and 100 connections, raw and ours alternating.
    pub(super) fn bench(secs: f64) {
        let dir = make_certs();
        let connector = connector(&dir);
        let d = dir.to_str().unwrap();
        println!(
            "\nTLS echo: TLS 1.3 (rustls, ring), client tokio-rustls; handshakes before the timed window"
        );
        for flavor in ["current", "multi"] {
            println!("\nserver runtime: {flavor}-thread, TLS");
            header();
            for conns in [10, 100] {
                let servers = [
                    Server::start_with("tls-raw", flavor, &[d]),
                    Server::start_with("tls-ours", flavor, &[d]),
                ];
                let runs = medians(&servers, |s, secs| load(s, &connector, conns, secs), secs);
                rows(conns, &["raw", "ours"], &runs);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
