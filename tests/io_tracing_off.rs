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

use support::{bounded, test_loop};
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
    let client = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        for _ in 0..WARM_UP {
            support::echo_round_trip(&mut s);
        }
        let (asked, entered) = (ASKED.load(Ordering::SeqCst), ENTERED.load(Ordering::SeqCst));
        for _ in 0..ROUNDS {
            support::echo_round_trip(&mut s);
        }
        (
            ASKED.load(Ordering::SeqCst) - asked,
            ENTERED.load(Ordering::SeqCst) - entered,
        )
    });
    let (asked, entered) = bounded("the round trips", client).await.unwrap();
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
