//! The mailbox's turn after a readiness turn survives a busy lossy lane:
//! a notifier whose source is always ready and whose every turn feeds its
//! lossy lane (`tell_with(.., DropOldest)` into a full mailbox) still
//! hears its mailbox between readiness turns. (Found in review: the
//! mailbox's turn was spent by the lane's turn that came first, and the
//! mailbox's first message was never handled.)

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};

use ioasync::{
    Result,
    notifier::{Ctx, Handler, Notifier, Overflow, Spec},
};
use support::{bounded, test_loop};
use tokio::sync::oneshot;

/// What the test hears: the messages handled, and (once) what had been
/// handled when the 1,000th readiness turn began.
#[derive(Default)]
struct Log {
    handled: Vec<u32>,
    at_turn_1000: Option<oneshot::Sender<Vec<u32>>>,
}

/// A source that is always ready (like a level-triggered fd nobody
/// drains); each readiness turn tells itself one message with
/// `DropOldest` (the first turn ten: the mailbox of 4 fills, the rest go
/// to the lossy lane), until turn 1,000.
struct Spin {
    turns: u64,
    next: u32,
    log: Arc<Mutex<Log>>,
}

struct Msg(u32);

impl Notifier for Spin {
    type Args = Arc<Mutex<Log>>;
    async fn init(log: Arc<Mutex<Log>>, _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Spin {
            turns: 0,
            next: 0,
            log,
        })
    }

    fn ready(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.turns += 1;
        if self.turns == 1000 {
            let mut log = self.log.lock().unwrap();
            if let Some(tx) = log.at_turn_1000.take() {
                let _ = tx.send(log.handled.clone());
            }
        }
        let n = match self.turns {
            1 => 10,
            t if t < 1000 => 1,
            _ => 0,
        };
        let me = ctx.this();
        for _ in 0..n {
            let k = self.next;
            self.next += 1;
            me.tell_with(Msg(k), Overflow::DropOldest).await.unwrap();
        }
    }
}

impl Handler<Msg> for Spin {
    type Reply = ();
    async fn handle(&mut self, Msg(k): Msg, _: &mut Ctx<'_, Self>) {
        self.log.lock().unwrap().handled.push(k);
    }
}

flavours!(the_mailbox_is_heard_between_readiness_turns_while_the_lossy_lane_is_busy);
async fn the_mailbox_is_heard_between_readiness_turns_while_the_lossy_lane_is_busy() {
    let lp = test_loop();
    let (tx, rx) = oneshot::channel();
    let log = Arc::new(Mutex::new(Log {
        at_turn_1000: Some(tx),
        ..Log::default()
    }));
    let _spin = lp
        .add(Spec::<Spin>::new("spin", log.clone()).mailbox(4))
        .await
        .unwrap();
    let seen = bounded("turn 1000", rx).await.unwrap();
    assert!(
        seen.contains(&0),
        "after 1,000 readiness turns the mailbox's first message (0) was never handled; \
         handled so far: {} messages, first few {:?}",
        seen.len(),
        &seen[..seen.len().min(8)]
    );
}
