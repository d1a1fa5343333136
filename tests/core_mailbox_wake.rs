//! The mailbox's registration stands from one wait to the next (see
//! `wake.rs` in the core): the runtime polls the mailbox again only after
//! its waker fired or a message was taken. These tests drive it where a
//! standing registration loses wake-ups: messages sent from other tasks
//! (on the multi-thread flavour, other threads) while the notifier is
//! woken by its own source turn after turn, and questions asked one at a
//! time of a notifier that goes idle between them. A lost wake-up is a
//! hang, failed by `bounded`. (Both failed, on both flavours, with the
//! runtime told to trust the registration even after its waker fired.)

#[macro_use]
mod support;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use ioasync::{
    Result,
    notifier::{Ctx, Handler, Notifier, Spec},
};
use support::{bounded, test_loop};
use tokio::sync::{Notify, mpsc};

const SENDERS: u64 = 4;
const PER_SENDER: u64 = 2_000;
const TICKS: u64 = 5_000;

/// A notifier woken by its own source (a channel fed by a ticking task)
/// as well as by its mailbox; it counts what each brings.
struct Busy {
    ticks: mpsc::Receiver<()>,
    ticked: bool,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    ticks: AtomicU64,
    messages: AtomicU64,
    done: Notify,
}

impl Counts {
    fn all_in(&self) -> bool {
        self.ticks.load(Ordering::SeqCst) == TICKS
            && self.messages.load(Ordering::SeqCst) == SENDERS * PER_SENDER
    }
}

struct BusyArgs(std::sync::Mutex<Option<mpsc::Receiver<()>>>, Arc<Counts>);

impl Notifier for Busy {
    type Args = Arc<BusyArgs>;
    async fn init(args: Arc<BusyArgs>, _: &mut Ctx<'_, Self>) -> Result<Self> {
        let ticks = args.0.lock().unwrap().take().expect("started once");
        Ok(Busy {
            ticks,
            ticked: false,
            counts: args.1.clone(),
        })
    }

    // Cancel safe: what `recv` takes is kept before it resolves.
    async fn ready(&mut self) {
        if self.ticks.recv().await.is_some() {
            self.ticked = true;
        } else {
            std::future::pending::<()>().await;
        }
    }

    async fn on_ready(&mut self, _: &mut Ctx<'_, Self>) {
        if std::mem::take(&mut self.ticked) {
            self.counts.ticks.fetch_add(1, Ordering::SeqCst);
            if self.counts.all_in() {
                self.counts.done.notify_one();
            }
        }
    }
}

struct Msg;

impl Handler<Msg> for Busy {
    type Reply = ();
    async fn handle(&mut self, _: Msg, _: &mut Ctx<'_, Self>) {
        self.counts.messages.fetch_add(1, Ordering::SeqCst);
        if self.counts.all_in() {
            self.counts.done.notify_one();
        }
    }
}

flavours!(messages_sent_while_the_source_keeps_waking_the_notifier_are_all_heard);
async fn messages_sent_while_the_source_keeps_waking_the_notifier_are_all_heard() {
    let lp = test_loop();
    let (tick_tx, tick_rx) = mpsc::channel(1);
    let counts = Arc::new(Counts::default());
    let busy = lp
        .add(
            Spec::<Busy>::new(
                "busy",
                Arc::new(BusyArgs(
                    std::sync::Mutex::new(Some(tick_rx)),
                    counts.clone(),
                )),
            )
            // A small mailbox: senders also wait for room, so wake-ups
            // cross both ways.
            .mailbox(4),
        )
        .await
        .unwrap();
    let ticker = tokio::spawn(async move {
        for _ in 0..TICKS {
            tick_tx.send(()).await.unwrap();
        }
        tick_tx
    });
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let busy = busy.clone();
            tokio::spawn(async move {
                for i in 0..PER_SENDER {
                    busy.tell(Msg).await.unwrap();
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    let _tick_tx = bounded("the ticks to be sent", ticker).await.unwrap();
    for s in senders {
        bounded("the messages to be sent", s).await.unwrap();
    }
    bounded("every tick and message to be handled", async {
        while !counts.all_in() {
            counts.done.notified().await;
        }
    })
    .await;
    assert_eq!(counts.messages.load(Ordering::SeqCst), SENDERS * PER_SENDER);
    assert_eq!(counts.ticks.load(Ordering::SeqCst), TICKS);
}

/// A notifier with no source: it waits on its mailbox alone.
struct Echo;

struct Ping(u64);

impl Notifier for Echo {
    type Args = ();
    async fn init(_: (), _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Echo)
    }
}

impl Handler<Ping> for Echo {
    type Reply = u64;
    async fn handle(&mut self, Ping(n): Ping, _: &mut Ctx<'_, Self>) -> u64 {
        n + 1
    }
}

flavours!(questions_asked_one_at_a_time_of_an_idle_notifier_are_each_answered);
async fn questions_asked_one_at_a_time_of_an_idle_notifier_are_each_answered() {
    let lp = test_loop();
    let echo = lp.add(Spec::<Echo>::new("echo", ())).await.unwrap();
    // Each question finds the notifier waiting (its registration armed
    // by the poll after the last answer) and must wake it.
    bounded("2,000 questions, one at a time", async {
        for n in 0..2_000u64 {
            assert_eq!(echo.ask(Ping(n)).await.unwrap(), n + 1);
        }
    })
    .await;
    // From another task (another thread on the multi-thread flavour).
    let other = echo.clone();
    let asked = tokio::spawn(async move {
        for n in 0..2_000u64 {
            assert_eq!(other.ask(Ping(n)).await.unwrap(), n + 1);
        }
    });
    bounded("2,000 questions from another task", asked)
        .await
        .unwrap();
}
