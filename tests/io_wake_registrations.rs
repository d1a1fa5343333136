//! What one wake-up costs in registrations: while an established Stream
//! echo connection serves round trips, each round trip is one wake-up (by
//! its socket) and one wait, and the wait registers control and the
//! mailbox once each (beside the socket), never once per poll. Standing
//! registrations (kept from one wait to the next) were tried and lost a
//! wake-up under load (see `poll_mailbox` in the runtime), so the figure
//! held here is one of each per wait. Counted by the runtime in debug
//! builds (`test_util::registrations`), process-wide, so alone in its own
//! binary.
#![cfg(debug_assertions)]

#[macro_use]
mod support;

use ioasync::test_util::registrations;
use support::test_loop;

const ROUNDS: u64 = 2_000;
const WARM_UP: u64 = 200;

flavours!(serial an_echo_round_trip_is_one_wait_registering_each_source_once);
async fn an_echo_round_trip_is_one_wait_registering_each_source_once() {
    let lp = test_loop();
    let addr = support::echo_server(&lp).await;
    let (before, after) = support::echo_rounds(addr, WARM_UP, ROUNDS, registrations).await;
    let waits = after.waits - before.waits;
    let control = after.control - before.control;
    let mailbox = after.mailbox - before.mailbox;
    let per = |n: u64| n as f64 / ROUNDS as f64;
    eprintln!(
        "per echo round trip: {:.3} waits (each registering its socket), {:.3} control \
         registrations, {:.3} mailbox registrations",
        per(waits),
        per(control),
        per(mailbox)
    );
    // A round trip is one wake-up: the socket's. (Slack for a spurious
    // wake-up now and then; none per round trip.)
    assert!(
        (ROUNDS..=ROUNDS + ROUNDS / 20).contains(&waits),
        "{waits} waits in {ROUNDS} round trips"
    );
    assert_eq!(
        control, waits,
        "control registered {control} times in {waits} waits"
    );
    assert_eq!(
        mailbox, waits,
        "the mailbox registered {mailbox} times in {waits} waits"
    );
}
