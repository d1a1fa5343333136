//! A real `nats-server` per test, and worker-host / peer processes (this
//! test binary started again) for the NATS tests.

use std::time::Duration;

use ioasync::Loop;
use ioasync::nats::{PoolMode, Remote, WorkerHost};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use super::bounded;

/// A `nats-server` on a loopback port of its own, SIGKILLed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    args: Vec<String>,
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl NatsServer {
    /// Starts `nats-server -a 127.0.0.1 -p <free port>` with `extra`
    /// arguments and waits for it to say it is ready. `None` (the test
    /// skips) when nats-server is missing outside CI; under `CI=true` a
    /// missing server fails the test with the install hint.
    pub async fn start(extra: &[&str]) -> Option<NatsServer> {
        super::tool("nats-server", &["--version"], "nats-server")?;
        let port = free_port();
        let mut args = vec![
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = NatsServer {
            child: None,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            args,
        };
        s.restart().await;
        Some(s)
    }

    /// Starts with JetStream, storing in a fresh directory.
    pub async fn start_jetstream() -> Option<NatsServer> {
        let dir = super::fresh_dir("nats-js");
        let dir = dir.to_str().expect("utf-8 temp dir").to_owned();
        NatsServer::start(&["-js", "-sd", &dir]).await
    }

    /// Its pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// SIGKILLs it and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = bounded("nats-server to die", c.wait()).await;
        }
    }

    /// (Re)starts it on the same port, waiting for "Server is ready" (its
    /// own word, on stderr).
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut child = Command::new("nats-server")
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning nats-server");
        let err = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(err).lines();
        bounded("nats-server to be ready", async {
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.contains("Server is ready") => break,
                    Ok(Some(_)) => {}
                    other => panic!("nats-server ended before it was ready: {other:?}"),
                }
            }
        })
        .await;
        // Keep reading its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
    }
}

/// A process of this test binary started again to run the `#[test]`
/// named `test` (which calls [`host_main`] or a peer main) with `env`;
/// killed when dropped, and ending by itself when our end of its stdin
/// closes.
pub struct Peer {
    /// The process.
    pub child: Child,
    /// Its stdout after the line it was waited for.
    pub lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    /// Starts it and waits for its stdout line starting with `ready`.
    pub async fn start(test: &str, env: &[(&str, String)], ready: &str) -> (Peer, String) {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", test, "--nocapture", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning a peer process");
        let out = child.stdout.take().expect("stdout");
        let mut peer = Peer {
            child,
            lines: BufReader::new(out).lines(),
        };
        let line = peer.line(ready).await;
        (peer, line)
    }

    /// The next stdout line starting with `prefix` (others are skipped).
    pub async fn line(&mut self, prefix: &str) -> String {
        bounded_line(&mut self.lines, prefix).await
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILLs it and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = bounded("a peer to die", self.child.wait()).await;
    }
}

async fn bounded_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    bounded_for(Duration::from_secs(20), prefix, async {
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l.starts_with(prefix) => return l,
                Ok(Some(_)) => {}
                other => panic!("the peer ended before printing {prefix:?}: {other:?}"),
            }
        }
    })
    .await
}

use super::bounded_for;

/// The environment of a worker host serving `pool` with `entry`.
pub fn host_env(
    url: &str,
    pool: &str,
    entry: &str,
    lanes: usize,
    js: bool,
) -> Vec<(&'static str, String)> {
    vec![
        ("IOASYNC_TEST_NATS_HOST", url.to_owned()),
        ("IOASYNC_TEST_NATS_POOL", pool.to_owned()),
        ("IOASYNC_TEST_NATS_ENTRY", entry.to_owned()),
        ("IOASYNC_TEST_NATS_LANES", lanes.to_string()),
        (
            "IOASYNC_TEST_NATS_JS",
            if js { "1" } else { "0" }.to_owned(),
        ),
    ]
}

/// Starts a worker host process (the `#[test] fn nats_host` of the
/// calling test file) and waits until it serves.
pub async fn start_host(url: &str, pool: &str, entry: &str, lanes: usize, js: bool) -> Peer {
    Peer::start(
        "nats_host",
        &host_env(url, pool, entry, lanes, js),
        "host ready",
    )
    .await
    .0
}

/// [`start_host`] for a host that runs its calls inline
/// (`WorkerHostSpec::inline`).
pub async fn start_inline_host(url: &str, pool: &str, entry: &str, js: bool) -> Peer {
    let mut env = host_env(url, pool, entry, 2, js);
    env.push(("IOASYNC_TEST_NATS_INLINE", "1".to_owned()));
    Peer::start("nats_host", &env, "host ready").await.0
}

/// The ack wait of the JetStream tests' pools and hosts.
pub const ACK_WAIT: Duration = Duration::from_millis(1000);

/// The body of a test file's `#[test] fn nats_host`: when this process
/// was started as a worker host, serves the pool with the entry of that
/// name from `entries` until its stdin closes, then exits; otherwise
/// returns at once.
pub fn host_main(entries: Vec<ioasync::worker::Entry>) {
    let Ok(url) = std::env::var("IOASYNC_TEST_NATS_HOST") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let (pool, entry) = (
        var("IOASYNC_TEST_NATS_POOL"),
        var("IOASYNC_TEST_NATS_ENTRY"),
    );
    let lanes: usize = var("IOASYNC_TEST_NATS_LANES").parse().unwrap_or(2);
    let mode = if var("IOASYNC_TEST_NATS_JS") == "1" {
        PoolMode::JetStream { ack_wait: ACK_WAIT }
    } else {
        PoolMode::Core
    };
    let inline = var("IOASYNC_TEST_NATS_INLINE") == "1";
    let entry = entries
        .into_iter()
        .find(|e| e.name() == entry)
        .expect("the host's entry");
    let lp = Loop::new().expect("a loop");
    let l = lp.clone();
    let code = lp.block_on(async move {
        let remote = l
            .add(Remote::spec("nats", url).reconnect_delay_max(Duration::from_millis(100)))
            .await
            .expect("connecting the host");
        l.add(
            WorkerHost::spec("host", &remote, &pool, entry)
                .lanes(lanes)
                .mode(mode)
                .inline(inline),
        )
        .await
        .expect("serving the pool");
        println!("host ready {}", std::process::id());
        // Until the test closes our stdin (or dies).
        let (eof_tx, eof) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            let _ = eof_tx.send(());
        });
        let _ = eof.await;
        l.shutdown(Some(Duration::from_secs(2))).await;
        0
    });
    std::process::exit(code);
}
