//! Core overhead against raw kameo, in the same run:
//!
//! - 1M events through each delivery way (closure, actor message, stream)
//!   against 1M plain kameo `tell`s to a plain actor; 1M `tell`s to a
//!   notifier against the same;
//! - spawn + stop of 100k notifiers against 100k plain kameo actors;
//! - resident bytes per idle notifier (100k) against a plain kameo actor,
//!   each measured in a fresh child process.
//!
//! `cargo bench --bench core` (add `-- --quick` for 1/10 of the counts).
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ioasync::notifier::Overflow;
use ioasync::{
    Loop, Result,
    kameo::{
        Actor,
        actor::{ActorRef, Spawn},
        message::{Context, Message},
    },
    notifier::{Ctx, Emits, Handler, Notifier, Spec, Subscription},
};
use tokio_stream::StreamExt;

// ---- plain kameo baseline -------------------------------------------------

#[derive(Actor, Default)]
struct Plain {
    n: u64,
}

#[derive(Clone)]
struct Inc;
struct Get;

impl Message<Inc> for Plain {
    type Reply = ();
    async fn handle(&mut self, _: Inc, _: &mut Context<Self, ()>) {
        self.n += 1;
    }
}

impl Message<Get> for Plain {
    type Reply = u64;
    async fn handle(&mut self, _: Get, _: &mut Context<Self, u64>) -> u64 {
        self.n
    }
}

// ---- the notifier under test ----------------------------------------------

struct Emitter {
    n: u64,
}

impl Notifier for Emitter {
    type Args = ();
    async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Emitter { n: 0 })
    }
}

impl Emits<Inc> for Emitter {}

impl Handler<Inc> for Emitter {
    type Reply = ();
    async fn handle(&mut self, _: Inc, _: &mut Ctx<'_, Self>) {
        self.n += 1;
    }
}

impl Handler<Get> for Emitter {
    type Reply = u64;
    async fn handle(&mut self, _: Get, _: &mut Ctx<'_, Self>) -> u64 {
        self.n
    }
}

/// Emit this many events.
struct Burst(u64);

impl Handler<Burst> for Emitter {
    type Reply = ();
    async fn handle(&mut self, Burst(n): Burst, ctx: &mut Ctx<'_, Self>) {
        for _ in 0..n {
            ctx.emit(Inc).await;
        }
    }
}

struct Idle;

impl Notifier for Idle {
    type Args = ();
    async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Idle)
    }
}

#[derive(Actor)]
struct PlainIdle;

// ---- measurements -----------------------------------------------------------

async fn kameo_tells(n: u64) -> Duration {
    let a = Plain::spawn(Plain::default());
    let t = Instant::now();
    for _ in 0..n {
        a.tell(Inc).await.unwrap();
    }
    assert_eq!(a.ask(Get).await.unwrap(), n);
    let d = t.elapsed();
    a.kill();
    d
}

async fn notifier_tells(lp: &Loop, n: u64) -> Duration {
    let e = lp.add(Spec::<Emitter>::new("tells", ())).await.unwrap();
    let t = Instant::now();
    for _ in 0..n {
        e.tell(Inc).await.unwrap();
    }
    assert_eq!(e.ask(Get).await.unwrap(), n);
    let d = t.elapsed();
    e.stop().await;
    d
}

async fn via_closure(lp: &Loop, n: u64) -> Duration {
    let e = lp.add(Spec::<Emitter>::new("closure", ())).await.unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    e.subscribe(Subscription::closure(move |_: Inc| {
        c.fetch_add(1, Ordering::Relaxed);
    }))
    .unwrap();
    let t = Instant::now();
    e.ask(Burst(n)).await.unwrap();
    let d = t.elapsed();
    assert_eq!(count.load(Ordering::Relaxed), n);
    e.stop().await;
    d
}

async fn via_actor(lp: &Loop, n: u64) -> Duration {
    let e = lp.add(Spec::<Emitter>::new("actor", ())).await.unwrap();
    let sink: ActorRef<Plain> = Plain::spawn(Plain::default());
    e.subscribe(Subscription::actor(&sink)).unwrap();
    let t = Instant::now();
    e.ask(Burst(n)).await.unwrap();
    assert_eq!(sink.ask(Get).await.unwrap(), n);
    let d = t.elapsed();
    sink.kill();
    e.stop().await;
    d
}

async fn via_stream(lp: &Loop, n: u64) -> Duration {
    let e = lp.add(Spec::<Emitter>::new("stream", ())).await.unwrap();
    let mut stream = e.events_with::<Inc>(64, Overflow::Wait).unwrap();
    let t = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        while got < n {
            stream.next().await.unwrap();
            got += 1;
        }
        got
    });
    e.ask(Burst(n)).await.unwrap();
    assert_eq!(reader.await.unwrap(), n);
    let d = t.elapsed();
    e.stop().await;
    d
}

async fn kameo_spawn_stop(n: usize) -> (Duration, Duration) {
    let t = Instant::now();
    let mut refs = Vec::with_capacity(n);
    for _ in 0..n {
        let a = PlainIdle::spawn(PlainIdle);
        a.wait_for_startup().await;
        refs.push(a);
    }
    let spawn = t.elapsed();
    let t = Instant::now();
    for a in refs.iter().rev() {
        a.stop_gracefully().await.unwrap();
        a.wait_for_shutdown().await;
    }
    (spawn, t.elapsed())
}

async fn notifier_spawn_stop(lp: &Loop, n: usize) -> (Duration, Duration) {
    let t = Instant::now();
    for i in 0..n {
        lp.add(Spec::<Idle>::new(format!("idle-{i}"), ()))
            .await
            .unwrap();
    }
    let spawn = t.elapsed();
    let t = Instant::now();
    let report = lp.shutdown(None).await;
    assert_eq!(report.stopped.len(), n);
    (spawn, t.elapsed())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// In a fresh child process: resident bytes per idle actor of `which`.
fn mem_child(which: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lp = Loop::builder().adopt_current();
    let _g = rt.enter();
    let lp = lp.build().unwrap();
    let which = which.to_owned();
    let per = rt.block_on(async move {
        tokio::spawn(async move {
            // Warm up allocator and runtime with a few actors first.
            let before = rss_bytes();
            let mut plain = Vec::new();
            if which == "kameo" {
                for _ in 0..n {
                    let a = PlainIdle::spawn(PlainIdle);
                    a.wait_for_startup().await;
                    plain.push(a);
                }
            } else {
                for i in 0..n {
                    lp.add(Spec::<Idle>::new(format!("idle-{i}"), ()))
                        .await
                        .unwrap();
                }
            }
            let after = rss_bytes();
            (after - before) / n as u64
        })
        .await
        .unwrap()
    });
    println!("{per}");
}

fn mem_of(which: &str, n: usize) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--mem-child", which, &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn row(what: &str, ours: Duration, base: Duration, n: u64) {
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    println!(
        "{what:<40} {:>9.1} ns/op   baseline {:>9.1} ns/op   ratio {:.2}x",
        per(ours),
        per(base),
        ours.as_secs_f64() / base.as_secs_f64()
    );
}

async fn suite(lp: Loop, events: u64, actors: usize) {
    // Best of 3 for each, baseline and ours interleaved.
    let best = |v: Vec<Duration>| v.into_iter().min().unwrap();
    let mut base = Vec::new();
    let (mut tells, mut clo, mut act, mut st) = (vec![], vec![], vec![], vec![]);
    for _ in 0..3 {
        base.push(kameo_tells(events).await);
        tells.push(notifier_tells(&lp, events).await);
        clo.push(via_closure(&lp, events).await);
        act.push(via_actor(&lp, events).await);
        st.push(via_stream(&lp, events).await);
    }
    let base = best(base);
    row("tell to a notifier", best(tells), base, events);
    row("event -> closure", best(clo), base, events);
    row("event -> kameo actor message", best(act), base, events);
    row("event -> stream", best(st), base, events);

    let (mut ks, mut kt, mut ns, mut nt) = (vec![], vec![], vec![], vec![]);
    // Alternate which goes first: the second runs on a heap the first
    // left fragmented.
    for i in 0..4 {
        for ours in [i % 2 == 0, i % 2 != 0] {
            if ours {
                let (s, t) = notifier_spawn_stop(&lp, actors).await;
                ns.push(s);
                nt.push(t);
            } else {
                let (s, t) = kameo_spawn_stop(actors).await;
                ks.push(s);
                kt.push(t);
            }
        }
    }
    let (ks, kt, ns, nt) = (best(ks), best(kt), best(ns), best(nt));
    row("spawn (add + init)", ns, ks, actors as u64);
    row("ordered stop", nt, kt, actors as u64);
    row("spawn + stop", ns + nt, ks + kt, actors as u64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--mem-child") {
        mem_child(&args[i + 1], args[i + 2].parse().unwrap());
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--profile-stop") {
        // For perf: only our spawn + stop, on a current-thread runtime.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let lp = Loop::current().unwrap();
            for _ in 0..5 {
                let (s, t) = notifier_spawn_stop(&lp, 100_000).await;
                println!("spawn {s:?} stop {t:?}");
            }
        });
        return;
    }
    let events: u64 = if quick { 100_000 } else { 1_000_000 };
    let actors: usize = if quick { 10_000 } else { 100_000 };

    for flavor in ["current-thread", "multi-thread (2 workers)"] {
        let rt = if flavor.starts_with("current") {
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
        };
        println!("\n{flavor} runtime: {events} events, {actors} actors");
        rt.block_on(async move {
            let lp = Loop::current().unwrap();
            tokio::spawn(suite(lp, events, actors)).await.unwrap()
        });
    }
    println!();
    let kameo_mem = mem_of("kameo", actors);
    let ours_mem = mem_of("notifier", actors);
    println!(
        "{:<40} {:>9} B/idle    baseline {:>9} B/idle    ratio {:.2}x",
        "resident bytes per idle notifier",
        ours_mem,
        kameo_mem,
        ours_mem as f64 / kameo_mem as f64
    );
}
