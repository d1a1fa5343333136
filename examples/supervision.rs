//! A small supervised tree: a worker panics, is restarted in place, keeps
//! serving on the same handle, and the tree shuts down leaves first.
//!
//! ```text
//! cargo run --example supervision
//! ```
//!
//! Exits 0 only when the restart and the ordered shutdown behaved.

use std::{process::ExitCode, time::Duration};

use ioasync::{prelude::*, supervision::SupervisionEventKind};

/// A pool: it only supervises its workers.
struct Pool;

impl Notifier for Pool {
    type Args = usize;

    async fn init(workers: usize, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        for i in 1..=workers {
            ctx.add_child(Spec::<Worker>::new(format!("worker-{i}"), ()))
                .await?;
        }
        Ok(Pool)
    }
}

/// Squares numbers; 13 is unlucky.
struct Worker {
    served: u64,
}

impl Notifier for Worker {
    type Args = ();

    async fn init(_: (), _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Worker { served: 0 })
    }

    async fn on_stop(&mut self, ctx: &mut Ctx<'_, Self>) {
        println!("  stopping {} after {} jobs", ctx.path(), self.served);
    }
}

struct Square(u64);

impl Handler<Square> for Worker {
    type Reply = u64;

    async fn handle(&mut self, Square(n): Square, _ctx: &mut Ctx<'_, Self>) -> u64 {
        if n == 13 {
            panic!("unlucky number {n}");
        }
        self.served += 1;
        n * n
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("supervision demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    // Quiet the panic report of the worker we crash on purpose.
    std::panic::set_hook(Box::new(|info| eprintln!("  (panic: {info})")));
    let lp = Loop::current()?;
    let mut events = lp.supervision_events();
    lp.add(
        Spec::<Pool>::new("pool", 2)
            .strategy(Strategy::OneForOne)
            .restart_limit(3, Duration::from_secs(5)),
    )
    .await?;
    lp.add(Spec::<Worker>::new("auditor", ())).await?;
    println!("tree:\n{}", lp.tree());

    let worker = lp
        .lookup::<Worker>("/pool/worker-1")
        .ok_or_else(|| Error::closed("lookup", "worker-1 missing"))?;
    println!("worker-1: 12² = {}", worker.ask(Square(12)).await?);
    println!("worker-1: asking for 13² (it panics)");
    let err = worker.ask(Square(13)).await.unwrap_err();
    println!("worker-1: the ask failed as it should: {err}");

    let restarted = lp
        .timeout(Duration::from_secs(5), async {
            while let Ok(ev) = events.recv().await {
                println!("event: {} {:?}", ev.path, ev.what);
                if matches!(ev.what, SupervisionEventKind::Restarted { .. }) {
                    return true;
                }
            }
            false
        })
        .await?;
    let after = worker.ask(Square(7)).await?;
    println!("worker-1 (same handle, new incarnation): 7² = {after}");
    println!("tree:\n{}", lp.tree());

    println!("shutting down, leaves first:");
    let report = lp.shutdown(Some(Duration::from_secs(2))).await;
    println!("stopped in order: {}", report.stopped.join(", "));
    let expected = ["/auditor", "/pool/worker-2", "/pool/worker-1", "/pool"];
    let ok = restarted
        && after == 49
        && worker.restarts() == 1
        && report.is_clean()
        && report.stopped == expected
        && lp.live_notifiers() == 1;
    if ok {
        println!("ok: restarted once, served again, stopped in order");
        Ok(())
    } else {
        Err(Error::invalid_input(
            "supervision",
            format!("unexpected outcome: restarted={restarted} report={report:?}"),
        ))
    }
}
