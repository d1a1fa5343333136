//! With tracing off, an echo round trip enters no span and makes none: a
//! subscriber installed for the whole binary turns everything down
//! (`enabled` is false) but asks to be asked at every callsite
//! (`Interest::sometimes`), so every span or event made on the hot path
//! would reach it, and it counts them and every `enter`. After a warm-up,
//! round trips through an established Stream echo connection must reach
//! it not at all, on both runtime flavours.

#[macro_use]
mod support;

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

use support::test_loop;
use tracing::{
    Event, Metadata, Subscriber,
    span::{Attributes, Id, Record},
    subscriber::Interest,
};

/// Spans and events made (each asks `enabled`).
static ASKED: AtomicU64 = AtomicU64::new(0);
/// Spans entered.
static ENTERED: AtomicU64 = AtomicU64::new(0);

/// Tracing off, counting what still reaches it.
struct Off;

impl Subscriber for Off {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        ASKED.fetch_add(1, Ordering::Relaxed);
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {
        ENTERED.fetch_add(1, Ordering::Relaxed);
    }
    fn exit(&self, _: &Id) {}
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| tracing::subscriber::set_global_default(Off).expect("one subscriber"));
}

const ROUNDS: u64 = 2_000;
const WARM_UP: u64 = 200;

flavours!(serial an_echo_round_trip_enters_no_span_with_tracing_off);
async fn an_echo_round_trip_enters_no_span_with_tracing_off() {
    install();
    let lp = test_loop();
    let addr = support::echo_server(&lp).await;
    let read = || (ASKED.load(Ordering::SeqCst), ENTERED.load(Ordering::SeqCst));
    let (before, after) = support::echo_rounds(addr, WARM_UP, ROUNDS, read).await;
    let (asked, entered) = (after.0 - before.0, after.1 - before.1);
    eprintln!(
        "with tracing off, {ROUNDS} round trips: {entered} span entries, {asked} spans or events made"
    );
    assert_eq!(
        entered, 0,
        "{ROUNDS} round trips entered {entered} spans with tracing off"
    );
    assert_eq!(
        asked, 0,
        "{ROUNDS} round trips made {asked} spans or events with tracing off"
    );
}
