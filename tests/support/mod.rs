//! Helpers shared by the integration tests.
//!
//! Every test that starts a Loop is written once inside [`flavours!`],
//! which runs it on a current-thread runtime and on a multi-thread
//! runtime with 2 workers, `IOASYNC_STRESS` times each (default once).
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::time::Duration;

use ioasync::{
    Loop,
    notifier::Spec,
    supervision::{SupervisionEvent, SupervisionEventKind},
    test_util::{Journal, Probe, ProbeArgs},
};
use tokio::sync::broadcast;

/// How many times each flavoured test runs (`IOASYNC_STRESS`, default 1).
pub fn repeats() -> usize {
    std::env::var("IOASYNC_STRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The bound of one run of a flavoured test: a hang fails the test.
pub const RUN_BOUND: Duration = Duration::from_secs(120);

/// Runs `body` on a fresh runtime of `workers` threads (0: current-thread)
/// [`repeats`] times, each run bounded by [`RUN_BOUND`].
pub fn run<F, Fut>(workers: usize, body: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for round in 0..repeats() {
        let rt = runtime(workers, false);
        rt.block_on(async {
            if tokio::time::timeout(RUN_BOUND, body()).await.is_err() {
                panic!("round {round} on {workers} workers did not finish within {RUN_BOUND:?}");
            }
        });
        drop(rt);
    }
}

/// The wall-clock bound of one run under [`run_watched`].
pub const WATCH_BOUND: Duration = Duration::from_secs(30);

/// Like [`run`], each round on a thread of its own watched from the
/// test's thread: a round that does not finish within [`WATCH_BOUND`]
/// fails the test even when its runtime is starved (a task that never
/// yields keeps a current-thread runtime from polling even its timeouts;
/// the starved thread is left behind and ends with the test binary).
pub fn run_watched<F, Fut>(workers: usize, body: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let body = std::sync::Arc::new(body);
    for round in 0..repeats() {
        let (done, finished) = std::sync::mpsc::channel();
        let b = body.clone();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let rt = runtime(workers, false);
                rt.block_on(b());
                drop(rt);
            }));
            let _ = done.send(r);
        });
        match finished.recv_timeout(WATCH_BOUND) {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!(
                "round {round} on {workers} workers did not finish within {WATCH_BOUND:?}: \
                 its runtime is starved"
            ),
        }
    }
}

/// Runs `body` on a current-thread runtime whose clock starts paused
/// (tokio can pause only a current-thread runtime's clock), [`repeats`]
/// times. Such tests advance time by hand and check exact instants.
pub fn run_paused<F, Fut>(body: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..repeats() {
        let rt = runtime(0, true);
        rt.block_on(body());
        drop(rt);
    }
}

fn runtime(workers: usize, paused: bool) -> tokio::runtime::Runtime {
    if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(paused)
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .expect("building a test runtime")
}

/// Runs the async fn `name` as a test on both runtime flavours: it
/// becomes `name::current_thread` and `name::multi_thread` (2 workers),
/// each repeated `IOASYNC_STRESS` times.
///
/// ```ignore
/// flavours!(a_test);
/// async fn a_test() { ... }
/// ```
///
/// `flavours!(watched name)` runs each round on a thread of its own,
/// bounded by the wall clock from outside (see [`run_watched`]): for tests
/// of starvation, where the runtime's own timers would not fire.
///
/// `flavours!(serial name)` runs each round alone (see [`run_serial`]):
/// for tests of process-wide state (signals, fd limits, the child list).
macro_rules! flavours {
    (watched $name:ident) => {
        mod $name {
            #[test]
            fn current_thread() {
                crate::support::run_watched(0, super::$name)
            }
            #[test]
            fn multi_thread() {
                crate::support::run_watched(2, super::$name)
            }
        }
    };
    (serial $name:ident) => {
        mod $name {
            #[test]
            fn current_thread() {
                crate::support::run_serial(0, super::$name)
            }
            #[test]
            fn multi_thread() {
                crate::support::run_serial(2, super::$name)
            }
        }
    };
    ($name:ident) => {
        mod $name {
            #[test]
            fn current_thread() {
                crate::support::run(0, super::$name)
            }
            #[test]
            fn multi_thread() {
                crate::support::run(2, super::$name)
            }
        }
    };
}

/// Runs the async fn `name` as a test on a current-thread runtime whose
/// clock starts paused (tokio can pause only a current-thread runtime's
/// clock): `name::paused_current_thread`, repeated `IOASYNC_STRESS`
/// times. For tests that advance time by hand and check exact instants.
macro_rules! paused {
    ($name:ident) => {
        mod $name {
            #[test]
            fn paused_current_thread() {
                crate::support::run_paused(super::$name)
            }
        }
    };
}

/// A probe spec journalling to `j`.
pub fn probe(name: &str, j: &Journal) -> Spec<Probe> {
    Spec::<Probe>::new(name, ProbeArgs::new(j))
}

/// A probe spec with children.
pub fn parent(name: &str, j: &Journal, children: Vec<Spec<Probe>>) -> Spec<Probe> {
    Spec::<Probe>::new(name, ProbeArgs::new(j).children(children))
}

/// Bounds a test step: fails the test instead of hanging.
pub async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    bounded_for(Duration::from_secs(10), what, f).await
}

/// Like [`bounded`] with a bound of `d`: on paused time, pick one far past
/// every timer the step waits for.
pub async fn bounded_for<F: std::future::Future>(d: Duration, what: &str, f: F) -> F::Output {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits for the next supervision event matching `pred`.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<SupervisionEvent>,
    mut pred: impl FnMut(&SupervisionEvent) -> bool,
) -> SupervisionEvent {
    bounded("a supervision event", async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("lagged {n} events"),
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
}

/// True for the event `Stopped` of `path`.
pub fn stopped(path: &'static str) -> impl FnMut(&SupervisionEvent) -> bool {
    move |e| e.path == path && matches!(e.what, SupervisionEventKind::Stopped)
}

/// A loop on the current test runtime.
pub fn test_loop() -> Loop {
    Loop::current().expect("adopting the test runtime")
}

/// A built example binary (cargo test builds the examples first).
pub fn example(name: &str) -> std::path::PathBuf {
    let mut p = std::env::current_exe().expect("test binary path");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    let bin = p.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} not built; run through cargo test",
        bin.display()
    );
    bin
}

/// Starts `cmd` (killed when dropped) with piped stdout; returns it, its
/// first stdout line, and the rest of its stdout.
pub async fn spawn_with_first_line(
    cmd: &mut tokio::process::Command,
) -> (
    tokio::process::Child,
    String,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(out).lines();
    let first = bounded("first line", lines.next_line())
        .await
        .expect("read stdout")
        .expect("a first line");
    (child, first, lines)
}

/// Sends `sig` (a name like TERM) to `child`.
pub async fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = tokio::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .await
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Perl with IO::Async. Without it the test fails under CI (`CI=true`)
/// with the install hint, and elsewhere is skipped with the reason
/// printed: `None`.
pub fn perl() -> Option<tokio::process::Command> {
    let ok = std::process::Command::new("perl")
        .args(["-MIO::Async", "-e", "1"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some(tokio::process::Command::new("perl"));
    }
    let hint = "Perl IO::Async is missing: apt-get install libio-async-perl (.ci/run does)";
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{hint}");
    }
    eprintln!("skipped: {hint}");
    None
}

/// Path of a Perl helper script in tests/support/perl.
pub fn perl_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/perl")
        .join(name)
}

/// Children of this process that are zombies (exited, not reaped).
pub fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 2 && f[0] == "Z" && f[1] == me
        })
        .count()
}

/// The fd count and the child list are process-wide: tests that count
/// them take turns, each on its own runtime (a runtime opens fds of its
/// own), built and dropped while it holds the turn.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` alone (see `SERIAL`) on a fresh runtime of `workers` threads
/// (0: current-thread).
pub fn serial<F: std::future::Future>(workers: usize, f: F) -> F::Output {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime(workers, false);
    let out = rt.block_on(f);
    drop(rt);
    out
}

/// Like [`run`], each round alone (see `SERIAL`): for tests that count
/// process-wide fds or children.
pub fn run_serial<F, Fut>(workers: usize, body: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..repeats() {
        serial(workers, async {
            if tokio::time::timeout(RUN_BOUND, body()).await.is_err() {
                panic!("a serial round on {workers} workers did not finish within {RUN_BOUND:?}");
            }
        });
    }
}

/// A fresh, empty directory under the system temp dir, unique to this
/// call (tests of both flavours run side by side in one process).
pub fn fresh_dir(tag: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("ioasync-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("creating a temp dir");
    d
}

/// Appends `text` to the file at `path`, creating it.
pub fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A test CA and a server certificate it signed for `localhost` and
/// `127.0.0.1`, made now with rcgen (no key material is committed), as
/// PEM files in a fresh directory.
#[cfg(feature = "tls")]
pub struct TestCerts {
    /// The CA certificate (PEM): what clients trust.
    pub ca: std::path::PathBuf,
    /// The server's certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: std::path::PathBuf,
}

#[cfg(feature = "tls")]
pub fn test_certs() -> TestCerts {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ioasync test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let dir = fresh_dir("certs");
    let certs = TestCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&certs.ca, ca.pem()).unwrap();
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
    certs
}

/// An outside program the test drives (`openssl`, `curl`): `Some(cmd)`
/// when `probe` runs it successfully. Without it the test fails under CI
/// (`CI=true`) with the install hint, and elsewhere is skipped with the
/// reason printed: `None`.
pub fn tool(program: &str, probe: &[&str], package: &str) -> Option<tokio::process::Command> {
    let ok = std::process::Command::new(program)
        .args(probe)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some(tokio::process::Command::new(program));
    }
    let hint = format!("{program} is missing: apt-get install {package} (.ci/run does)");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{hint}");
    }
    eprintln!("skipped: {hint}");
    None
}

#[cfg(feature = "nats")]
pub mod nats;

/// Waits for the next event of `events` that `pick` keeps (a subscriber
/// stream of any notifier's events).
pub async fn next_matching<E, T>(
    events: &mut (impl futures_util::Stream<Item = E> + Unpin),
    mut pick: impl FnMut(&E) -> Option<T>,
) -> T {
    use futures_util::StreamExt;
    loop {
        let ev = events.next().await.expect("the event stream ended");
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

/// The echo benchmark's server on `lp`: a Listener named `echo` on
/// 127.0.0.1 whose Stream notifiers (`conn-N`) write back what they read.
/// Returns its address.
pub async fn echo_server(lp: &Loop) -> String {
    use ioasync::io::{Listen, ListenerRef, ReadAction, Stream};
    let next = std::sync::atomic::AtomicU64::new(1);
    let listener = lp
        .listen(
            "echo",
            Listen::new("127.0.0.1:0".parse::<ioasync::io::Address>().unwrap()),
            move |conn, _| {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Stream::spec(format!("conn-{n}"), conn).on_read(|io, buf, _eof| {
                    io.write_slice(buf);
                    buf.clear();
                    ReadAction::Wait
                })
            },
        )
        .await
        .unwrap();
    listener.local_addr().await.unwrap().to_string()
}

/// One 64-byte round trip through an echo server on a plain std socket
/// (blocking: call it from `spawn_blocking`; it allocates nothing).
pub fn echo_round_trip(s: &mut std::net::TcpStream) {
    use std::io::{Read, Write};
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    s.write_all(&msg).unwrap();
    s.read_exact(&mut back).unwrap();
}

/// Drives `rounds` echo round trips against `addr` from a plain std socket
/// on a blocking thread (no heap, no task of its own per round trip),
/// after `warm_up` uncounted ones; returns what `read` said just before
/// and just after the counted ones.
pub async fn echo_rounds<T: Send + 'static>(
    addr: String,
    warm_up: u64,
    rounds: u64,
    read: impl Fn() -> T + Send + 'static,
) -> (T, T) {
    let client = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        for _ in 0..warm_up {
            echo_round_trip(&mut s);
        }
        let before = read();
        for _ in 0..rounds {
            echo_round_trip(&mut s);
        }
        (before, read())
    });
    bounded("the round trips", client).await.unwrap()
}
