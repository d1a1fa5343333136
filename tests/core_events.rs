//! The event path: one `emit`, three ways to receive.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};

use ioasync::notifier::Overflow;
use ioasync::{
    Result,
    kameo::{self, Actor, message::Context},
    notifier::{Ctx, Emits, Handler, Notifier, Spec, Subscription},
    test_util::Recorder,
};
use support::{bounded, test_loop};
use tokio_stream::StreamExt;

/// Emits `Tick(n)` for each `Fire(n)` it is told.
struct Ticker;

#[derive(Debug, Clone, PartialEq)]
struct Tick(u32);

struct Fire(u32);

impl Notifier for Ticker {
    type Args = ();
    async fn init(_: (), _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Ticker)
    }
}

impl Emits<Tick> for Ticker {}

impl Handler<Fire> for Ticker {
    type Reply = ();
    async fn handle(&mut self, Fire(n): Fire, ctx: &mut Ctx<'_, Self>) {
        ctx.emit(Tick(n)).await;
    }
}

/// A plain kameo actor collecting ticks.
#[derive(Actor, Default)]
struct Collector {
    seen: Arc<Mutex<Vec<u32>>>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
    want: usize,
}

impl kameo::message::Message<Tick> for Collector {
    type Reply = ();
    async fn handle(&mut self, Tick(n): Tick, _ctx: &mut Context<Self, ()>) {
        let mut seen = self.seen.lock().unwrap();
        seen.push(n);
        if seen.len() == self.want
            && let Some(tx) = self.done.take()
        {
            let _ = tx.send(());
        }
    }
}

flavours!(one_emit_reaches_a_closure_an_actor_and_a_stream_in_order);
async fn one_emit_reaches_a_closure_an_actor_and_a_stream_in_order() {
    let lp = test_loop();
    let ticker = lp.add(Spec::<Ticker>::new("ticker", ())).await.unwrap();

    let (recorder, sub) = Recorder::new();
    ticker.subscribe(sub).unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let collector = <Collector as kameo::actor::Spawn>::spawn(Collector {
        seen: seen.clone(),
        done: Some(done_tx),
        want: 100,
    });
    ticker.subscribe(Subscription::actor(&collector)).unwrap();

    let mut stream = ticker.events_with::<Tick>(4, Overflow::Wait).unwrap();

    let firing = {
        let ticker = ticker.clone();
        tokio::spawn(async move {
            for n in 0..100 {
                ticker.tell(Fire(n)).await.unwrap();
            }
        })
    };
    let from_stream: Vec<u32> =
        bounded("stream", (&mut stream).take(100).map(|t| t.0).collect()).await;
    firing.await.unwrap();
    bounded("actor", done_rx).await.unwrap();
    let expected: Vec<u32> = (0..100).collect();
    assert_eq!(from_stream, expected);
    assert_eq!(*seen.lock().unwrap(), expected);
    let closure: Vec<u32> = recorder
        .wait_len(100)
        .await
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(closure, expected);
}

flavours!(a_dropped_stream_or_dead_actor_is_unsubscribed_and_the_rest_still_receive);
async fn a_dropped_stream_or_dead_actor_is_unsubscribed_and_the_rest_still_receive() {
    let lp = test_loop();
    let ticker = lp.add(Spec::<Ticker>::new("ticker", ())).await.unwrap();
    let stream = ticker.events_with::<Tick>(1, Overflow::Wait).unwrap();
    let collector = <Collector as kameo::actor::Spawn>::spawn(Collector::default());
    ticker.subscribe(Subscription::actor(&collector)).unwrap();
    let (recorder, sub) = Recorder::new();
    ticker.subscribe(sub).unwrap();
    drop(stream);
    collector.kill();
    collector.wait_for_shutdown().await;
    for n in 0..10 {
        ticker.tell(Fire(n)).await.unwrap();
    }
    assert_eq!(bounded("closure", recorder.wait_len(10)).await.len(), 10);
}

flavours!(a_slow_stream_subscriber_applies_backpressure_instead_of_buffering);
async fn a_slow_stream_subscriber_applies_backpressure_instead_of_buffering() {
    let lp = test_loop();
    let ticker = lp
        .add(Spec::<Ticker>::new("ticker", ()).mailbox(1))
        .await
        .unwrap();
    let mut stream = ticker.events_with::<Tick>(2, Overflow::Wait).unwrap();
    for n in 0..3 {
        ticker.tell(Fire(n)).await.unwrap();
    }
    // Two ticks fill the stream, the third Fire waits in the handler, the
    // mailbox (1 slot) then holds one more: a fifth tell must wait.
    ticker.tell(Fire(3)).await.unwrap();
    assert!(ticker.try_tell(Fire(4)).unwrap_err().is_full());
    for n in 0..4 {
        assert_eq!(bounded("tick", stream.next()).await, Some(Tick(n)));
    }
}
