//! The overflow policies of the bounded queues a producer writes into:
//! subscriber streams (Wait, DropOldest, DropNewest, Fail), notifier
//! mailboxes (all four through `tell_with`; Wait with `tell`, Fail with
//! `try_tell`) and channels (all four; Wait with `send`, Fail with
//! `try_send`). Function call queues are covered in
//! worker_function.rs, stream write buffers in io_stream.rs.

#[macro_use]
mod support;

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use ioasync::{
    Result, channel,
    notifier::{Ctx, Emits, Handler, Notifier, Overflow, Spec, Subscription},
    supervision::SupervisionEventKind,
    test_util::{Gate, Hang, Journal, Note, Probe, ProbeArgs},
};
use support::{bounded, test_loop};

/// Emits `0..n` for each `Burst(n)`, counting emits begun in `begun`.
struct Emitter {
    begun: Arc<AtomicU32>,
}

#[derive(Debug, Clone, PartialEq)]
struct Ev(u32);

struct Burst(u32);

impl Notifier for Emitter {
    type Args = Arc<AtomicU32>;
    async fn init(begun: Arc<AtomicU32>, _: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Emitter { begun })
    }
}

impl Emits<Ev> for Emitter {}

impl Handler<Burst> for Emitter {
    type Reply = ();
    async fn handle(&mut self, Burst(n): Burst, ctx: &mut Ctx<'_, Self>) {
        for i in 0..n {
            self.begun.fetch_add(1, Ordering::SeqCst);
            ctx.emit(Ev(i)).await;
        }
    }
}

/// Empty message: answered once every earlier message was handled.
struct Sync;

impl Handler<Sync> for Emitter {
    type Reply = ();
    async fn handle(&mut self, _: Sync, _: &mut Ctx<'_, Self>) {}
}

async fn drain(stream: &mut ioasync::notifier::EventStream<Ev>) -> Vec<u32> {
    let mut got = Vec::new();
    while let Some(Ev(i)) = bounded("events", stream.recv()).await {
        got.push(i);
    }
    got
}

flavours!(a_wait_subscriber_blocks_the_emitter_until_room_and_loses_nothing);
async fn a_wait_subscriber_blocks_the_emitter_until_room_and_loses_nothing() {
    let lp = test_loop();
    let begun = Arc::new(AtomicU32::new(0));
    let (sub, mut stream) = Subscription::stream_with(2, Overflow::Wait);
    let e = lp
        .add(Spec::<Emitter>::new("e", begun.clone()).subscribe(sub))
        .await
        .unwrap();
    e.tell(Burst(10)).await.unwrap();
    bounded("the stream fills", async {
        while stream.len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    // Two queued, the third emit waiting for room: the producer is held.
    assert_eq!(begun.load(Ordering::SeqCst), 3);
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(bounded("an event", stream.recv()).await.unwrap().0);
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>(), "nothing lost, in order");
}

flavours!(drop_oldest_and_drop_newest_subscribers_drop_what_they_name);
async fn drop_oldest_and_drop_newest_subscribers_drop_what_they_name() {
    let lp = test_loop();
    let (oldest, mut kept_last) = Subscription::stream_with(2, Overflow::DropOldest);
    let (newest, mut kept_first) = Subscription::stream_with(2, Overflow::DropNewest);
    let e = lp
        .add(
            Spec::<Emitter>::new("e", Arc::default())
                .subscribe(oldest)
                .subscribe(newest),
        )
        .await
        .unwrap();
    e.tell(Burst(10)).await.unwrap();
    e.ask(Sync).await.unwrap(); // the burst is over: nobody waited
    e.stop().await;
    assert_eq!(
        drain(&mut kept_last).await,
        [8, 9],
        "DropOldest keeps the newest"
    );
    assert_eq!(
        drain(&mut kept_first).await,
        [0, 1],
        "DropNewest keeps the oldest"
    );
}

flavours!(a_fail_subscriber_is_cut_off_when_full_and_the_emitter_goes_on);
async fn a_fail_subscriber_is_cut_off_when_full_and_the_emitter_goes_on() {
    let lp = test_loop();
    let (fail, mut cut) = Subscription::stream_with(2, Overflow::Fail);
    let (all, mut full) = Subscription::stream_with(16, Overflow::Wait);
    let e = lp
        .add(
            Spec::<Emitter>::new("e", Arc::default())
                .subscribe(fail)
                .subscribe(all),
        )
        .await
        .unwrap();
    e.tell(Burst(10)).await.unwrap();
    e.ask(Sync).await.unwrap();
    // The cut-off stream ends after what it held, while the notifier runs.
    assert_eq!(drain(&mut cut).await, [0, 1]);
    assert!(e.is_alive());
    e.stop().await;
    assert_eq!(drain(&mut full).await, (0..10).collect::<Vec<_>>());
}

flavours!(a_full_mailbox_makes_tell_wait_and_try_tell_fail_naming_it);
async fn a_full_mailbox_makes_tell_wait_and_try_tell_fail_naming_it() {
    let lp = test_loop();
    let j = Journal::new();
    let p = lp
        .add(Spec::<Probe>::new("p", ProbeArgs::new(&j)).mailbox(2))
        .await
        .unwrap();
    let gate = Gate::new();
    p.tell(Hang(gate.clone())).await.unwrap();
    bounded("hanging", j.wait_count("hang /p", 1)).await;
    p.try_tell(Note("1".into())).unwrap();
    p.try_tell(Note("2".into())).unwrap();
    let err = p.try_tell(Note("3".into())).unwrap_err();
    assert!(err.is_full(), "{err}");
    assert!(err.to_string().contains("mailbox of /p is full"), "{err}");
    // tell waits for room instead.
    let waiting = {
        let p = p.clone();
        tokio::spawn(async move { p.tell(Note("4".into())).await })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "tell waits while the mailbox is full"
    );
    gate.open();
    bounded("tell", waiting).await.unwrap().unwrap();
    bounded("all handled", j.wait_count("msg /p 4", 1)).await;
    assert_eq!(j.matching("msg /p"), ["msg /p 1", "msg /p 2", "msg /p 4"]);
}

flavours!(a_full_channel_makes_send_wait_and_try_send_fail_naming_its_bound);
async fn a_full_channel_makes_send_wait_and_try_send_fail_naming_its_bound() {
    let (tx, mut rx) = channel::channel::<u32>(2);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    let err = tx.try_send(3).unwrap_err();
    assert!(err.is_full(), "{err}");
    assert_eq!(err.to_string(), "send: the channel is full (2 messages)");
    assert_eq!(err.into_inner(), 3);
    let waiting = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.send(4).await })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "send waits while the channel is full"
    );
    assert_eq!(rx.recv().await.unwrap().unwrap(), 1);
    bounded("send", waiting).await.unwrap().unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(v) = rx.recv().await {
        rest.push(v.unwrap());
    }
    assert_eq!(rest, [2, 4], "nothing lost");
}

flavours!(a_policy_channel_drops_what_its_policy_names_and_fails_naming_its_bound);
async fn a_policy_channel_drops_what_its_policy_names_and_fails_naming_its_bound() {
    async fn run(policy: Overflow) -> (Vec<u32>, Vec<String>) {
        let (tx, mut rx) = channel::channel_with::<u32>(2, policy);
        let mut errors = Vec::new();
        for n in 0..5 {
            if let Err(e) = tx.send(n).await {
                errors.push(e.to_string());
            }
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            got.push(v.unwrap());
        }
        (got, errors)
    }
    assert_eq!(run(Overflow::DropOldest).await, (vec![3, 4], vec![]));
    assert_eq!(run(Overflow::DropNewest).await, (vec![0, 1], vec![]));
    let full = "send: the channel is full (2 messages)".to_owned();
    assert_eq!(
        run(Overflow::Fail).await,
        (vec![0, 1], vec![full.clone(), full.clone(), full])
    );
    // Wait: the third send waits for room; nothing is lost.
    let (tx, mut rx) = channel::channel_with::<u32>(2, Overflow::Wait);
    tx.send(0).await.unwrap();
    tx.send(1).await.unwrap();
    let waiting = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.send(2).await })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "send waits while the channel is full"
    );
    assert_eq!(rx.recv().await.unwrap().unwrap(), 0);
    bounded("send", waiting).await.unwrap().unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(v) = rx.recv().await {
        rest.push(v.unwrap());
    }
    assert_eq!(rest, [1, 2]);
}

flavours!(tell_with_drop_newest_drops_the_new_message);
async fn tell_with_drop_newest_drops_the_new_message() {
    let lp = test_loop();
    let j = Journal::new();
    let p = lp
        .add(Spec::<Probe>::new("p", ProbeArgs::new(&j)).mailbox(1))
        .await
        .unwrap();
    let gate = Gate::new();
    p.tell(Hang(gate.clone())).await.unwrap();
    bounded("hanging", j.wait_count("hang /p", 1)).await;
    assert!(
        p.tell_with(Note("kept".into()), Overflow::DropNewest)
            .await
            .unwrap()
    );
    assert!(
        !p.tell_with(Note("dropped".into()), Overflow::DropNewest)
            .await
            .unwrap()
    );
    gate.open();
    bounded("kept", j.wait_count("msg /p kept", 1)).await;
    p.ask(Note("last".into())).await.unwrap();
    assert_eq!(j.matching("msg /p"), ["msg /p kept", "msg /p last"]);
}

flavours!(tell_with_drop_oldest_never_waits_and_keeps_the_newest);
async fn tell_with_drop_oldest_never_waits_and_keeps_the_newest() {
    let lp = test_loop();
    let j = Journal::new();
    let p = lp
        .add(Spec::<Probe>::new("p", ProbeArgs::new(&j)).mailbox(4))
        .await
        .unwrap();
    let gate = Gate::new();
    p.tell(Hang(gate.clone())).await.unwrap();
    bounded("hanging", j.wait_count("hang /p", 1)).await;
    // The notifier is stuck: 4 fit its mailbox, the lane holds the last
    // 4, and 4..8 are dropped. No send waits.
    for i in 0..12 {
        let sent = bounded(
            "tell_with",
            p.tell_with(Note(format!("n{i}")), Overflow::DropOldest),
        )
        .await;
        assert!(sent.unwrap(), "message {i} was queued");
    }
    gate.open();
    bounded(
        "all handled",
        j.wait_until(|v| v.iter().filter(|l| l.starts_with("msg /p n")).count() >= 8),
    )
    .await;
    // Through the lane (the mailbox is empty again): after the others.
    p.ask(Note("last".into())).await.unwrap();
    let got = j.matching("msg /p n");
    let mut sorted = got.clone();
    sorted.sort_by_key(|m| m["msg /p n".len()..].parse::<u32>().unwrap());
    let want: Vec<String> = [0, 1, 2, 3, 8, 9, 10, 11]
        .iter()
        .map(|i| format!("msg /p n{i}"))
        .collect();
    assert_eq!(sorted, want, "the oldest of the lane were dropped");
    let lane: Vec<_> = got
        .iter()
        .filter(|m| sorted[4..].contains(m))
        .cloned()
        .collect();
    assert_eq!(lane, want[4..], "the lane keeps its order");
    assert_eq!(
        j.matching("msg /p"),
        [&got[..], &["msg /p last".to_string()][..]].concat()
    );
}

flavours!(tell_with_drop_oldest_fails_on_a_stopped_notifier_and_reports_the_lane_undelivered);
async fn tell_with_drop_oldest_fails_on_a_stopped_notifier_and_reports_the_lane_undelivered() {
    let lp = test_loop();
    let j = Journal::new();
    let p = lp
        .add(Spec::<Probe>::new("p", ProbeArgs::new(&j)).mailbox(1))
        .await
        .unwrap();
    let mut events = lp.supervision_events();
    let gate = Gate::new();
    p.tell(Hang(gate.clone())).await.unwrap();
    bounded("hanging", j.wait_count("hang /p", 1)).await;
    p.tell_with(Note("mailbox".into()), Overflow::DropOldest)
        .await
        .unwrap();
    p.tell_with(Note("lane".into()), Overflow::DropOldest)
        .await
        .unwrap();
    // A kill ends it without handling either.
    p.kill().await;
    bounded("stopped", p.wait_stopped()).await;
    let undelivered = bounded("undelivered", async {
        loop {
            let ev = events.recv().await.unwrap();
            if let SupervisionEventKind::Undelivered { count } = ev.what
                && ev.path == "/p"
            {
                return count;
            }
        }
    })
    .await;
    assert!(undelivered >= 1, "the lane's message is reported");
    let err = p
        .tell_with(Note("late".into()), Overflow::DropOldest)
        .await
        .unwrap_err();
    assert!(err.is_closed() && err.to_string().contains("/p"), "{err}");
    assert!(j.matching("msg /p").is_empty());
}
