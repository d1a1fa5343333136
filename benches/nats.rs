//! Remote Function calls over NATS (64-byte arguments, 1 and 32 in
//! flight) against raw async-nats request/reply between the same two
//! processes doing the same work, in one run, against one nats-server on
//! loopback. The serving process is this binary started again: it runs a
//! `WorkerHost` for the pool and a raw responder on a subject of its own.
//!
//! `cargo bench --bench nats --features nats` (`-- --quick` for shorter
//! runs). Without nats-server it says so and exits 0.
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

#[cfg(not(feature = "nats"))]
fn main() {
    println!("nats benchmark: built without the `nats` feature; skipped");
}

#[cfg(feature = "nats")]
fn main() {
    imp::main();
}

#[cfg(feature = "nats")]
mod imp {
    use std::{
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    use futures_util::StreamExt;
    use ioasync::nats::{Remote, RemoteEntry, RemoteEntryPoint, RemoteRef, WorkerHost, async_nats};
    use ioasync::{Loop, worker::EntryPoint};

    /// The work: a checksum of 64 bytes.
    static SUM: EntryPoint<Vec<u8>, u64> = EntryPoint::new("sum");
    const RAW: &str = "bench.raw";

    fn sum(v: &[u8]) -> u64 {
        v.iter().map(|b| u64::from(*b)).sum()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// The serving process: a WorkerHost for pool "bench" and a raw
    /// responder for `RAW`, until stdin closes.
    fn serve(url: String) -> ! {
        let lp = Loop::new().unwrap();
        let l = lp.clone();
        lp.block_on(async move {
            let nats = l.add(Remote::spec("nats", url.clone())).await.unwrap();
            l.add(WorkerHost::spec("host", &nats, "bench", SUM.runs(|v| sum(&v))).lanes(2))
                .await
                .unwrap();
            // The same work, run in the host's serving task (no lane hop).
            l.add(
                WorkerHost::spec("host-inline", &nats, "bench-inline", SUM.runs(|v| sum(&v)))
                    .inline(true),
            )
            .await
            .unwrap();
            let raw = async_nats::connect(url.as_str()).await.unwrap();
            let mut sub = raw.subscribe(RAW).await.unwrap();
            raw.flush().await.unwrap();
            tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    if let Some(reply) = m.reply {
                        let out = sum(&m.payload).to_be_bytes();
                        let _ = raw.publish(reply, out.to_vec().into()).await;
                    }
                }
            });
            println!("ready");
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
                let _ = tx.send(());
            });
            let _ = rx.await;
            drop(nats);
        });
        std::process::exit(0)
    }

    fn p99(lat: &mut [Duration]) -> Duration {
        lat.sort();
        lat[(lat.len() * 99 / 100).min(lat.len() - 1)]
    }

    /// CPU time (user + system) of process `pid` so far, in µs
    /// (`/proc/PID/stat`, clock ticks of 10 ms).
    fn cpu_us(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // After the command name in parentheses: fields 3.. ; utime and
        // stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        f.get(11)
            .zip(f.get(12))
            .map_or(0, |(u, s)| (u + s) * 10_000)
    }

    /// CPU µs per call of (caller process, serving process, nats-server)
    /// over `f`, which makes `calls` calls.
    async fn with_cpu<T>(
        pids: [u32; 3],
        calls: usize,
        f: impl std::future::Future<Output = T>,
    ) -> (T, [f64; 3]) {
        let before = pids.map(cpu_us);
        let out = f.await;
        let after = pids.map(cpu_us);
        let mut per = [0.0; 3];
        for i in 0..3 {
            per[i] = (after[i] - before[i]) as f64 / calls as f64;
        }
        (out, per)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// `calls` calls in all from `inflight` tasks; calls/s and p99.
    async fn measure<F, Fut>(calls: usize, inflight: usize, call: F) -> (f64, Duration)
    where
        F: Fn(Vec<u8>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = u64> + Send,
    {
        let per = calls / inflight;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..inflight {
            let call = call.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let arg: Vec<u8> = (0..64).map(|k| (c + i + k) as u8).collect();
                    let want = sum(&arg);
                    let at = Instant::now();
                    assert_eq!(call(arg).await, want);
                    lat.push(at.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let rate = (per * inflight) as f64 / t.elapsed().as_secs_f64();
        (rate, p99(&mut lat))
    }

    pub(super) fn main() {
        if let Ok(url) = std::env::var("BENCH_NATS_SERVE") {
            serve(url);
        }
        let ok = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!(
                "nats benchmark: nats-server is missing (apt-get install nats-server); skipped"
            );
            return;
        }
        let quick = std::env::args().any(|a| a == "--quick");
        let (seq, par) = if quick {
            (2_000, 20_000)
        } else {
            (10_000, 100_000)
        };
        let port = free_port();
        let url = format!("nats://127.0.0.1:{port}");
        let mut server = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rt = runtime();
        rt.block_on(async {
            // Wait for the server to take connections.
            let t = Instant::now();
            while async_nats::connect(url.as_str()).await.is_err() {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "nats-server did not start"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut host: Child = Command::new(std::env::current_exe().unwrap())
            .env("BENCH_NATS_SERVE", &url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(host.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "ready");
        }
        let u = url.clone();
        let pids = [std::process::id(), host.id(), server.id()];
        rt.block_on(async move {
            tokio::spawn(async move {
                let lp = Loop::current().unwrap();
                let nats = lp.add(Remote::spec("nats", u.clone())).await.unwrap();
                let pool = lp.add(SUM.remote_pool(&nats, "bench")).await.unwrap();
                let entry: RemoteEntry<Vec<u8>, u64> = SUM.on_remote(&pool).unwrap();
                let pool_inline = lp
                    .add(SUM.remote_pool(&nats, "bench-inline").named("bench-inline"))
                    .await
                    .unwrap();
                let entry_inline: RemoteEntry<Vec<u8>, u64> = SUM.on_remote(&pool_inline).unwrap();
                let inline_call = {
                    let entry = entry_inline.clone();
                    move |arg: Vec<u8>| {
                        let entry = entry.clone();
                        async move { entry.call(&arg).await.unwrap() }
                    }
                };
                let raw = nats.client("bench").unwrap();
                let remote_call = {
                    let entry = entry.clone();
                    move |arg: Vec<u8>| {
                        let entry = entry.clone();
                        async move { entry.call(&arg).await.unwrap() }
                    }
                };
                let raw_call = move |arg: Vec<u8>| {
                    let raw = raw.clone();
                    async move {
                        let m = raw.request(RAW, arg.into()).await.unwrap();
                        u64::from_be_bytes(m.payload[..8].try_into().unwrap())
                    }
                };
                // Warm up both paths (the pool hears the host's heartbeat).
                measure(1_000, 8, remote_call.clone()).await;
                measure(1_000, 8, raw_call.clone()).await;
                measure(1_000, 8, inline_call.clone()).await;
                println!(
                    "nats benchmark: 64-byte arguments, nats-server on loopback, 2 runtime workers, host with 2 lanes (and an inline host)"
                );
                println!(
                    "{:<44} {:>10} {:>10} {:>8} {:>8}   CPU µs/call: caller, server, nats-server",
                    "what", "calls/s", "p99", "rate", "p99"
                );
                for (inflight, calls) in [(1usize, seq), (32, par)] {
                    let best = |a: (f64, Duration), b: (f64, Duration)| {
                        (a.0.max(b.0), a.1.min(b.1))
                    };
                    // CPU per call: the lowest of the three runs, per process.
                    let least = |a: [f64; 3], b: [f64; 3]| {
                        [a[0].min(b[0]), a[1].min(b[1]), a[2].min(b[2])]
                    };
                    let mut r = (0.0, Duration::MAX);
                    let mut f = (0.0, Duration::MAX);
                    let mut rc = [f64::MAX; 3];
                    let mut fc = [f64::MAX; 3];
                    let mut g = (0.0, Duration::MAX);
                    let mut gc = [f64::MAX; 3];
                    for _ in 0..3 {
                        let (m, c) =
                            with_cpu(pids, calls, measure(calls, inflight, raw_call.clone())).await;
                        r = best(r, m);
                        rc = least(rc, c);
                        let (m, c) = with_cpu(
                            pids,
                            calls,
                            measure(calls, inflight, remote_call.clone()),
                        )
                        .await;
                        f = best(f, m);
                        fc = least(fc, c);
                        let (m, c) = with_cpu(
                            pids,
                            calls,
                            measure(calls, inflight, inline_call.clone()),
                        )
                        .await;
                        g = best(g, m);
                        gc = least(gc, c);
                    }
                    let cpu = |c: [f64; 3]| format!("{:.1}, {:.1}, {:.1}", c[0], c[1], c[2]);
                    println!(
                        "{:<44} {:>10.0} {:>8}µs {:>8} {:>8}   {}",
                        format!("raw async-nats request/reply, {inflight} in flight"),
                        r.0,
                        r.1.as_micros(),
                        "1.00x",
                        "1.00x",
                        cpu(rc)
                    );
                    println!(
                        "{:<44} {:>10.0} {:>8}µs {:>7.2}x {:>7.2}x   {} ({:.2}x)",
                        format!("RemotePool call, {inflight} in flight"),
                        f.0,
                        f.1.as_micros(),
                        f.0 / r.0,
                        f.1.as_secs_f64() / r.1.as_secs_f64(),
                        cpu(fc),
                        (fc[0] + fc[1]) / (rc[0] + rc[1])
                    );
                    println!(
                        "{:<44} {:>10.0} {:>8}µs {:>7.2}x {:>7.2}x   {} ({:.2}x)",
                        format!("RemotePool call, inline host, {inflight} in flight"),
                        g.0,
                        g.1.as_micros(),
                        g.0 / r.0,
                        g.1.as_secs_f64() / r.1.as_secs_f64(),
                        cpu(gc),
                        (gc[0] + gc[1]) / (rc[0] + rc[1])
                    );
                }
                let stats = entry.stats().await.unwrap();
                println!("pool: {stats:?}");
                let stats = entry_inline.stats().await.unwrap();
                println!("inline pool: {stats:?}");
                lp.shutdown(Some(Duration::from_secs(2))).await;
            })
            .await
            .unwrap();
        });
        drop(host.stdin.take());
        let _ = host.wait();
        let _ = server.kill();
        let _ = server.wait();
    }
}
