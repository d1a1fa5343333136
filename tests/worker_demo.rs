//! The command-line contract of examples/demo (the flagship).

#[macro_use]
mod support;

use support::{bounded, example, signal, spawn_with_first_line};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::Command,
};

flavours!(demo_serve_answers_in_order_and_survives_malformed_lines);
async fn demo_serve_answers_in_order_and_survives_malformed_lines() {
    let (mut server, first, _rest) =
        spawn_with_first_line(Command::new(example("demo")).args(["--serve", "127.0.0.1:0"])).await;
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_owned();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    // Pipelined: replies must come back in request order.
    wr.write_all(b"100000\n10\nabc\n0\n20000000\n100\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(bounded("reply", lines.next_line()).await.unwrap().unwrap());
    }
    assert_eq!(got[0], "100000 9592");
    assert_eq!(got[1], "10 4");
    assert!(got[2].starts_with("ERR "), "{got:?}");
    assert_eq!(got[3], "0 0");
    assert!(got[4].starts_with("ERR "), "{got:?}");
    assert_eq!(got[5], "100 25");
    // The connection stayed open after the malformed lines.
    wr.write_all(b"2\n").await.unwrap();
    assert_eq!(
        bounded("reply", lines.next_line()).await.unwrap().unwrap(),
        "2 1"
    );
    signal(&server, "TERM").await;
    let st = bounded("exit", server.wait()).await.unwrap();
    assert!(st.success(), "{st}");
}

flavours!(demo_self_drives_kills_a_worker_and_exits_zero);
async fn demo_self_drives_kills_a_worker_and_exits_zero() {
    let out = bounded(
        "demo",
        Command::new(example("demo"))
            .args(["--seconds", "1.5", "--clients", "2"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("killed worker"), "{stdout}");
    assert!(stdout.contains("1 died and were replaced"), "{stdout}");
    assert!(
        stdout.contains("ok: every request was answered correctly"),
        "{stdout}"
    );
}

/// Starts `demo --serve` on a free loopback port (plus `extra` options).
async fn serve_demo(extra: &[&str]) -> (tokio::process::Child, String) {
    let mut cmd = Command::new(example("demo"));
    cmd.args(["--serve", "127.0.0.1:0"]).args(extra);
    cmd.stderr(std::process::Stdio::piped());
    let (server, first, _rest) = spawn_with_first_line(&mut cmd).await;
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_owned();
    (server, addr)
}

/// The number of primes ≤ n, computed here to check the service's answers.
fn primes_up_to(n: u64) -> u64 {
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

/// Worker processes of `server` (its children).
fn workers_of(server: &tokio::process::Child) -> Vec<i32> {
    children_of(server.id().expect("running"))
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<i32> {
    let me = pid.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            (rest.split_whitespace().nth(1)? == me).then_some(pid)
        })
        .collect()
}

/// CPU ticks a process has used (user + system).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Rounds of 8 connections × 250 pipelined lines for `secs`; SIGKILLs a
/// worker every `kill_every` when set. Returns (requests, wrong, errors).
async fn pipelined_load(
    addr: &str,
    server: &tokio::process::Child,
    secs: f64,
    kill_every: Option<std::time::Duration>,
) -> (u64, u64, u64) {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    let killer = kill_every.map(|every| {
        let pid = server.id().expect("running");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Some(&victim) = children_of(pid).first() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(victim),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        })
    });
    let (mut requests, mut wrong, mut errors) = (0u64, 0u64, 0u64);
    let mut round = 0u64;
    while tokio::time::Instant::now() < until {
        let conns = (0..8u64).map(|c| {
            let addr = addr.to_owned();
            async move {
                let stream = TcpStream::connect(&addr).await.unwrap();
                let (rd, mut wr) = stream.into_split();
                let ns: Vec<u64> = (0..250u64)
                    .map(|i| (round * 7919 + c * 251 + i * 13) % 3000)
                    .collect();
                let text: String = ns.iter().map(|n| format!("{n}\n")).collect();
                wr.write_all(text.as_bytes()).await.unwrap();
                let mut lines = BufReader::new(rd).lines();
                let (mut wrong, mut errors) = (0u64, 0u64);
                for n in &ns {
                    let line = bounded("a reply", lines.next_line())
                        .await
                        .unwrap()
                        .expect("a reply, not EOF");
                    if line.contains("ERR") {
                        errors += 1;
                    } else if line != format!("{n} {}", primes_up_to(*n)) {
                        wrong += 1;
                    }
                }
                (ns.len() as u64, wrong, errors)
            }
        });
        for (r, w, e) in futures_util::future::join_all(conns).await {
            requests += r;
            wrong += w;
            errors += e;
        }
        round += 1;
    }
    if let Some(k) = killer {
        k.abort();
    }
    (requests, wrong, errors)
}

flavours!(demo_under_pipelined_load_answers_every_request_without_errors);
async fn demo_under_pipelined_load_answers_every_request_without_errors() {
    let (mut server, addr) = serve_demo(&[]).await;
    let (requests, wrong, errors) = pipelined_load(&addr, &server, 4.0, None).await;
    assert!(requests >= 2000, "{requests} requests");
    assert_eq!((wrong, errors), (0, 0), "of {requests} requests");
    signal(&server, "TERM").await;
    assert!(bounded("exit", server.wait()).await.unwrap().success());
}

flavours!(demo_under_pipelined_load_with_workers_sigkilled_loses_and_fails_nothing);
async fn demo_under_pipelined_load_with_workers_sigkilled_loses_and_fails_nothing() {
    let (mut server, addr) = serve_demo(&[]).await;
    let every = std::time::Duration::from_millis(250);
    let (requests, wrong, errors) = pipelined_load(&addr, &server, 4.0, Some(every)).await;
    assert!(requests >= 2000, "{requests} requests");
    // Retry-safe calls: a call whose worker died runs again elsewhere.
    assert_eq!((wrong, errors), (0, 0), "of {requests} requests");
    signal(&server, "TERM").await;
    assert!(bounded("exit", server.wait()).await.unwrap().success());
}

flavours!(demo_answers_a_refused_line_with_err_in_its_place_and_stays_open);
async fn demo_answers_a_refused_line_with_err_in_its_place_and_stays_open() {
    let (mut server, addr) = serve_demo(&[]).await;
    for bad in [vec![b'7'; 100], b"12\xff\xfe34".to_vec()] {
        let stream = TcpStream::connect(&addr).await.unwrap();
        let (rd, mut wr) = stream.into_split();
        let mut lines = BufReader::new(rd).lines();
        let mut input = b"10\n20\n30\n".to_vec();
        input.extend_from_slice(&bad);
        input.extend_from_slice(b"\n40\n50\n");
        wr.write_all(&input).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(bounded("reply", lines.next_line()).await.unwrap().unwrap());
        }
        assert_eq!(&got[..3], ["10 4", "20 8", "30 10"], "{got:?}");
        assert!(got[3].starts_with("ERR "), "{got:?}");
        assert_eq!(&got[4..], ["40 12", "50 15"], "{got:?}");
        // Still open.
        wr.write_all(b"2\n").await.unwrap();
        assert_eq!(
            bounded("reply", lines.next_line()).await.unwrap().unwrap(),
            "2 1"
        );
    }
    signal(&server, "TERM").await;
    assert!(bounded("exit", server.wait()).await.unwrap().success());
}

/// Slow requests written at once on one connection (2 workers: most of
/// them are queued or running when the signal comes).
const SLOW: usize = 16;

/// Writes `SLOW` slow requests on one connection and waits until both
/// workers are computing.
async fn slow_requests(
    addr: &str,
    server: &tokio::process::Child,
) -> (
    tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    // The connection is served...
    wr.write_all(b"2\n").await.unwrap();
    assert_eq!(
        bounded("reply", lines.next_line()).await.unwrap().unwrap(),
        "2 1"
    );
    let workers = workers_of(server);
    assert_eq!(workers.len(), 2, "two workers");
    let before: Vec<u64> = workers.iter().map(|p| cpu_ticks(*p)).collect();
    wr.write_all("10000000\n".repeat(SLOW).as_bytes())
        .await
        .unwrap();
    // ...and both workers are busy with the slow requests (their CPU time
    // grows: the lines were read and the calls dispatched).
    bounded("both workers busy", async {
        loop {
            let now: Vec<u64> = workers.iter().map(|p| cpu_ticks(*p)).collect();
            if now.iter().zip(&before).all(|(n, b)| n > b) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    (lines, wr)
}

flavours!(sigterm_with_slow_requests_in_flight_answers_them_all_then_exits_zero);
async fn sigterm_with_slow_requests_in_flight_answers_them_all_then_exits_zero() {
    let (mut server, addr) = serve_demo(&["--drain", "60"]).await;
    let (mut lines, _wr) = slow_requests(&addr, &server).await;
    signal(&server, "TERM").await;
    for _ in 0..SLOW {
        // Each is seconds of CPU on a loaded machine; the drain is 60 s.
        assert_eq!(
            support::bounded_for(
                std::time::Duration::from_secs(60),
                "a slow reply",
                lines.next_line()
            )
            .await
            .unwrap()
            .as_deref(),
            Some("10000000 664579")
        );
    }
    assert_eq!(bounded("close", lines.next_line()).await.unwrap(), None);
    let st = bounded("exit", server.wait()).await.unwrap();
    assert!(st.success(), "{st}");
}

flavours!(sigterm_with_a_drain_shorter_than_the_requests_cuts_and_exits_non_zero);
async fn sigterm_with_a_drain_shorter_than_the_requests_cuts_and_exits_non_zero() {
    use tokio::io::AsyncReadExt;
    let (mut server, addr) = serve_demo(&["--drain", "0.05"]).await;
    let mut stderr = server.stderr.take().unwrap();
    let (mut lines, _wr) = slow_requests(&addr, &server).await;
    signal(&server, "TERM").await;
    let mut answered = 0;
    while let Some(_line) = bounded("replies or close", lines.next_line())
        .await
        .unwrap()
    {
        answered += 1;
    }
    assert!(answered < SLOW, "{answered} answered");
    let st = bounded("exit", server.wait()).await.unwrap();
    assert_eq!(st.code(), Some(1), "{st}");
    let mut err = String::new();
    stderr.read_to_string(&mut err).await.unwrap();
    assert!(
        err.contains("/demo/conn-"),
        "stderr names the cut connection: {err}"
    );
}
