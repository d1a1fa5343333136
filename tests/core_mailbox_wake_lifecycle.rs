//! The mailbox's standing registration (`wake.rs` in the core) where the
//! running loop does not poll the mailbox when its waker fires, or where
//! the poll that re-arms it cannot register (tests/core_mailbox_wake.rs
//! has the steady state):
//!
//! - restarts: messages queued while the notifier backs off (`Backoff`)
//!   or waits for its group (`Waiting`, a sibling's OneForAll restart);
//! - `accepting()` false then true (the waker fires while the loop skips
//!   the mailbox);
//! - the task's cooperative budget spent when the mailbox is polled (the
//!   poll returns `Pending` without registering; tokio defers the wake);
//! - no busy re-poll while `accepting()` is false with messages queued.
//!
//! A lost wake-up is a hang, failed by `bounded`. (Each restart and
//! `accepting()` test hangs on both flavours with the runtime made to
//! forget the mark in that phase.)

#[macro_use]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ioasync::{
    Result,
    notifier::{Ctx, Handler, Notifier, NotifierRef, Spec},
    supervision::{Backoff, Strategy},
};
use support::{bounded, bounded_for, test_loop};
use tokio::{
    sync::{Notify, mpsc, oneshot},
    task::JoinHandle,
};

const SENDERS: u64 = 4;

/// `SENDERS` tasks, each telling `to` `per` `Counted`s, pausing for
/// `pause` after every `every`-th (staggered per sender; `every` 0: no
/// pause).
fn senders<N: Handler<Counted>>(
    to: &NotifierRef<N>,
    per: u64,
    every: u64,
    pause: Duration,
) -> Vec<JoinHandle<()>> {
    (0..SENDERS)
        .map(|s| {
            let to = to.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    to.tell(Counted).await.unwrap();
                    if every > 0 && (i + s) % every == 0 {
                        tokio::time::sleep(pause).await;
                    }
                }
            })
        })
        .collect()
}

/// Waits for every sender, each bounded.
async fn all_sent(senders: Vec<JoinHandle<()>>) {
    for s in senders {
        bounded_for(Duration::from_secs(30), "the messages to be sent", s)
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------
// Restarts with backoff: messages queued while the notifier is torn down.

#[derive(Default)]
struct Count {
    n: AtomicU64,
    done: Notify,
}

impl Count {
    fn add(&self) {
        self.n.fetch_add(1, Ordering::SeqCst);
        // A stored permit when nobody waits: `wait` looks again.
        self.done.notify_one();
    }
    async fn wait(&self, target: u64) {
        while self.n.load(Ordering::SeqCst) < target {
            let n = self.done.notified();
            if self.n.load(Ordering::SeqCst) >= target {
                break;
            }
            n.await;
        }
    }
}

/// Counts what it is told; fails when told `FailNow`.
struct Flaky {
    count: Arc<Count>,
}

impl Notifier for Flaky {
    type Args = Arc<Count>;
    async fn init(count: Arc<Count>, _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Flaky { count })
    }
}

struct Counted;
struct FailNow;

impl Handler<Counted> for Flaky {
    type Reply = ();
    async fn handle(&mut self, _: Counted, _: &mut Ctx<'_, Self>) {
        self.count.add();
    }
}

impl Handler<FailNow> for Flaky {
    type Reply = ();
    async fn handle(&mut self, _: FailNow, ctx: &mut Ctx<'_, Self>) {
        ctx.fail(ioasync::Error::invalid_input("review", "fail on purpose"));
    }
}

flavours!(messages_queued_during_a_restart_backoff_are_heard_after_it);
async fn messages_queued_during_a_restart_backoff_are_heard_after_it() {
    const PER: u64 = 1_000;
    let lp = test_loop();
    let count = Arc::new(Count::default());
    let target = SENDERS * PER;
    let flaky = lp
        .add(
            Spec::<Flaky>::new("flaky", count.clone())
                .mailbox(4)
                .backoff(Backoff::new(
                    Duration::from_millis(1),
                    1.0,
                    Duration::from_millis(1),
                ))
                .restart_limit(100_000, Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let failer = {
        let flaky = flaky.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                flaky.tell(FailNow).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    all_sent(senders(&flaky, PER, 97, Duration::from_micros(500))).await;
    bounded("the failures to be sent", failer).await.unwrap();
    bounded("every message to be handled", count.wait(target)).await;
    assert!(flaky.restarts() > 0, "it never restarted");
}

// ---------------------------------------------------------------------------
// A group restart: the sibling waits (`Phase::Waiting`) while messages
// come in.

/// Two children restarted together: `a`, failed on purpose, and `b`, the
/// sibling messages are sent to (a `Flaky` never told to fail).
struct Group;

impl Notifier for Group {
    type Args = Arc<Count>;
    async fn init(count: Arc<Count>, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let backoff = Backoff::new(Duration::from_millis(2), 1.0, Duration::from_millis(2));
        ctx.add_child(
            Spec::<Flaky>::new("a", Arc::new(Count::default()))
                .backoff(backoff)
                .restart_limit(100_000, Duration::from_secs(1)),
        )
        .await?;
        ctx.add_child(
            Spec::<Flaky>::new("b", count)
                .mailbox(4)
                .backoff(backoff)
                .restart_limit(100_000, Duration::from_secs(1)),
        )
        .await?;
        Ok(Group)
    }
}

flavours!(messages_to_a_sibling_waiting_for_its_group_are_heard_after_it);
async fn messages_to_a_sibling_waiting_for_its_group_are_heard_after_it() {
    const PER: u64 = 500;
    let lp = test_loop();
    let count = Arc::new(Count::default());
    let target = SENDERS * PER;
    let _group = lp
        .add(
            Spec::<Group>::new("g", count.clone())
                .strategy(Strategy::OneForAll)
                .restart_limit(100_000, Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let a = lp.lookup::<Flaky>("/g/a").expect("a");
    let b = lp.lookup::<Flaky>("/g/b").expect("b");
    let failer = tokio::spawn(async move {
        for _ in 0..50 {
            a.tell(FailNow).await.unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    all_sent(senders(&b, PER, 61, Duration::from_micros(700))).await;
    bounded("the failures to be sent", failer).await.unwrap();
    bounded("every message to be handled", count.wait(target)).await;
    assert!(b.restarts() > 0, "the sibling was never restarted");
}

// ---------------------------------------------------------------------------
// `accepting()` false, then true: the mailbox's waker fires while the
// loop does not look at the mailbox.

/// Opens (`true`) or closes the gate; answered once it is done.
type GateMsg = (bool, oneshot::Sender<()>);

struct Gated {
    gate: mpsc::Receiver<GateMsg>,
    next: Option<(bool, oneshot::Sender<()>)>,
    open: bool,
    count: Arc<Count>,
    polled_closed: Arc<AtomicU64>,
}

struct GatedArgs {
    gate: std::sync::Mutex<Option<mpsc::Receiver<GateMsg>>>,
    count: Arc<Count>,
    polled_closed: Arc<AtomicU64>,
}

impl Notifier for Gated {
    type Args = Arc<GatedArgs>;
    async fn init(args: Arc<GatedArgs>, _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Gated {
            gate: args.gate.lock().unwrap().take().expect("started once"),
            next: None,
            open: true,
            count: args.count.clone(),
            polled_closed: args.polled_closed.clone(),
        })
    }

    // Cancel safe: what `recv` takes is kept before it resolves.
    async fn ready(&mut self) {
        // Counts the polls of the source while closed: a busy re-poll of
        // the running loop shows here.
        match std::future::poll_fn(|cx| {
            if !self.open {
                self.polled_closed.fetch_add(1, Ordering::SeqCst);
            }
            self.gate.poll_recv(cx)
        })
        .await
        {
            Some(g) => self.next = Some(g),
            None => std::future::pending::<()>().await,
        }
    }

    async fn on_ready(&mut self, _: &mut Ctx<'_, Self>) {
        if let Some((open, ack)) = self.next.take() {
            self.open = open;
            let _ = ack.send(());
        }
    }

    fn accepting(&self) -> bool {
        self.open
    }
}

impl Handler<Counted> for Gated {
    type Reply = ();
    async fn handle(&mut self, _: Counted, _: &mut Ctx<'_, Self>) {
        assert!(self.open, "a message handled while closed");
        self.count.add();
    }
}

async fn set_gate(tx: &mpsc::Sender<GateMsg>, open: bool) {
    let (ack, acked) = oneshot::channel();
    tx.send((open, ack)).await.unwrap();
    bounded("the gate to be applied", acked).await.unwrap();
}

fn gated(
    count: &Arc<Count>,
    polled_closed: &Arc<AtomicU64>,
) -> (Spec<Gated>, mpsc::Sender<GateMsg>) {
    let (tx, rx) = mpsc::channel(1);
    let spec = Spec::<Gated>::new(
        "gated",
        Arc::new(GatedArgs {
            gate: std::sync::Mutex::new(Some(rx)),
            count: count.clone(),
            polled_closed: polled_closed.clone(),
        }),
    )
    .mailbox(4);
    (spec, tx)
}

flavours!(messages_queued_while_not_accepting_are_heard_once_it_accepts);
async fn messages_queued_while_not_accepting_are_heard_once_it_accepts() {
    const ROUNDS: u64 = 200;
    const PER_ROUND: u64 = 6; // more than the mailbox holds
    let lp = test_loop();
    let count = Arc::new(Count::default());
    let polled = Arc::new(AtomicU64::new(0));
    let (spec, gate) = gated(&count, &polled);
    let g = lp.add(spec).await.unwrap();
    let mut sent = 0;
    for round in 0..ROUNDS {
        set_gate(&gate, false).await;
        let senders = senders(&g, PER_ROUND, 0, Duration::ZERO);
        sent += SENDERS * PER_ROUND;
        // Let some sends land (and fire the mailbox's waker) while closed.
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        set_gate(&gate, true).await;
        all_sent(senders).await;
        if tokio::time::timeout(Duration::from_secs(3), count.wait(sent))
            .await
            .is_err()
        {
            let r0 = ioasync::test_util::registrations();
            let p0 = polled.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r1 = ioasync::test_util::registrations();
            let p1 = polled.load(Ordering::SeqCst);
            panic!(
                "round {round}: {} of {sent} handled; in 100 ms: {} waits, {} mailbox registrations, {} polls of the closed source; state {:?}; tree {:?}",
                count.n.load(Ordering::SeqCst),
                r1.waits - r0.waits,
                r1.mailbox - r0.mailbox,
                p1 - p0,
                g.state(),
                g.tree(),
            );
        }
    }
    assert_eq!(count.n.load(Ordering::SeqCst), sent);
}

// No busy re-poll: closed, with a full mailbox and blocked senders, the
// loop waits (its source is polled a few times, not thousands).
flavours!(serial a_notifier_not_accepting_with_messages_queued_does_not_spin);
async fn a_notifier_not_accepting_with_messages_queued_does_not_spin() {
    let lp = test_loop();
    let count = Arc::new(Count::default());
    let polled = Arc::new(AtomicU64::new(0));
    let (spec, gate) = gated(&count, &polled);
    let g = lp.add(spec).await.unwrap();
    set_gate(&gate, false).await;
    let senders = senders(&g, 10, 0, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = polled.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = polled.load(Ordering::SeqCst);
    assert!(
        after - before <= 4,
        "the source was polled {} times in 100 ms while closed: the loop spins",
        after - before
    );
    set_gate(&gate, true).await;
    all_sent(senders).await;
    bounded("every message to be handled", count.wait(SENDERS * 10)).await;
}

// ---------------------------------------------------------------------------
// The cooperative budget spent by a handler: the next poll of the mailbox
// (in the same task poll) comes back `Pending` without registering.

struct Spender;

struct Spend(u64);

impl Notifier for Spender {
    type Args = ();
    async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Spender)
    }
}

/// Leaves the task's budget at exactly zero: `consume_budget` is ready
/// while a unit is left.
async fn spend_budget() {
    while tokio::task::coop::has_budget_remaining() {
        tokio::task::coop::consume_budget().await;
    }
}

impl Handler<Spend> for Spender {
    type Reply = u64;
    async fn handle(&mut self, Spend(n): Spend, _: &mut Ctx<'_, Self>) -> u64 {
        spend_budget().await;
        n + 1
    }
}

impl Handler<Counted> for Spender {
    type Reply = ();
    async fn handle(&mut self, _: Counted, _: &mut Ctx<'_, Self>) {
        spend_budget().await;
    }
}

flavours!(a_handler_that_spends_the_budget_does_not_lose_the_next_message);
async fn a_handler_that_spends_the_budget_does_not_lose_the_next_message() {
    let lp = test_loop();
    let s = lp
        .add(Spec::<Spender>::new("spender", ()).mailbox(4))
        .await
        .unwrap();
    bounded("1,000 questions, one at a time", async {
        for n in 0..1_000u64 {
            assert_eq!(s.ask(Spend(n)).await.unwrap(), n + 1);
        }
    })
    .await;
    let askers: Vec<_> = (0..SENDERS)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for n in 0..500u64 {
                    if n % 3 == 0 {
                        s.tell(Counted).await.unwrap();
                    } else {
                        assert_eq!(s.ask(Spend(n)).await.unwrap(), n + 1);
                    }
                }
            })
        })
        .collect();
    for a in askers {
        bounded("questions from other tasks", a).await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// Idle notifiers woken from many tasks at once, each one question: the
// first send fires the waker, the others find none.

flavours!(many_idle_notifiers_asked_from_many_tasks_all_answer);
async fn many_idle_notifiers_asked_from_many_tasks_all_answer() {
    let lp = test_loop();
    let mut nodes = Vec::new();
    for i in 0..16 {
        nodes.push(
            lp.add(Spec::<Spender>::new(format!("s{i}"), ()).mailbox(2))
                .await
                .unwrap(),
        );
    }
    let tasks: Vec<_> = (0..32u64)
        .map(|t| {
            let nodes = nodes.clone();
            tokio::spawn(async move {
                for n in 0..200u64 {
                    let node = &nodes[((t * 7 + n) % 16) as usize];
                    assert_eq!(node.ask(Spend(n)).await.unwrap(), n + 1);
                    if n % 16 == t % 16 {
                        tokio::time::sleep(Duration::from_micros(100)).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        bounded_for(Duration::from_secs(30), "every question answered", t)
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------
// Restarts begun by the source (not a handler): the incarnation ends while
// the mailbox's registration stands (the last poll of the mailbox came back
// empty), so a message queued during the backoff is heard only through the
// mark its waker left.

struct Tripped {
    trip: Arc<Notify>,
    tripped: bool,
    count: Arc<Count>,
}

impl Notifier for Tripped {
    type Args = (Arc<Notify>, Arc<Count>);
    async fn init((trip, count): (Arc<Notify>, Arc<Count>), _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Tripped {
            trip,
            tripped: false,
            count,
        })
    }

    // Cancel safe: a permit taken is the turn's (`notified` takes it only
    // when it resolves).
    async fn ready(&mut self) {
        self.trip.notified().await;
        self.tripped = true;
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        if std::mem::take(&mut self.tripped) {
            ctx.fail(ioasync::Error::invalid_input("review", "tripped"));
        }
    }
}

impl Handler<Counted> for Tripped {
    type Reply = ();
    async fn handle(&mut self, _: Counted, _: &mut Ctx<'_, Self>) {
        self.count.add();
    }
}

flavours!(messages_queued_during_the_backoff_after_a_source_failure_are_heard);
async fn messages_queued_during_the_backoff_after_a_source_failure_are_heard() {
    const ROUNDS: u64 = 100;
    let lp = test_loop();
    let count = Arc::new(Count::default());
    let trip = Arc::new(Notify::new());
    let t = lp
        .add(
            Spec::<Tripped>::new("tripped", (trip.clone(), count.clone()))
                .mailbox(4)
                .backoff(Backoff::new(
                    Duration::from_millis(5),
                    1.0,
                    Duration::from_millis(5),
                ))
                .restart_limit(100_000, Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let mut sent = 0;
    for round in 0..ROUNDS {
        // Idle: the mailbox's last poll came back empty (registration
        // standing). Trip the source, then send while it backs off.
        let restarts = t.restarts();
        trip.notify_one();
        bounded("the restart to begin", async {
            while t.state() == ioasync::supervision::NodeState::Running && t.restarts() == restarts
            {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
        .await;
        let n = 1 + round % 3;
        for _ in 0..n {
            t.tell(Counted).await.unwrap();
        }
        sent += n;
        bounded(
            "the messages sent during the backoff to be handled",
            count.wait(sent),
        )
        .await;
    }
    assert!(
        t.restarts() >= ROUNDS as u32 / 2,
        "{} restarts",
        t.restarts()
    );
}
