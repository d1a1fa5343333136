//! What one wake-up costs in registrations: while an established Stream
//! echo connection serves round trips, each round trip is one wake-up (by
//! its socket) and one wait, and the wait makes one registration of the
//! task beside the socket's: on its node, for control, the lossy lane and
//! the mailbox alike. The mailbox holds a waker of its own that stands
//! from one wait to the next until it fires (see `wake.rs` in the core),
//! so a connection nobody messages registers it once, not once per wait.
//! Counted by the runtime in debug builds (`test_util::registrations`),
//! process-wide, so alone in its own binary.
#![cfg(debug_assertions)]

#[macro_use]
mod support;

use ioasync::test_util::registrations;
use support::test_loop;

const ROUNDS: u64 = 2_000;
const WARM_UP: u64 = 200;

flavours!(serial an_echo_round_trip_is_one_wait_and_one_registration_of_the_task);
async fn an_echo_round_trip_is_one_wait_and_one_registration_of_the_task() {
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
    // wake-up now and then, none per round trip; and one short: the
    // client may read the counters before the server's wait after the
    // last reply.)
    assert!(
        (ROUNDS - 1..=ROUNDS + ROUNDS / 20).contains(&waits),
        "{waits} waits in {ROUNDS} round trips"
    );
    // Counted just before the wait itself: a read in between sees one
    // more.
    assert!(
        (waits..=waits + 1).contains(&control),
        "the task registered {control} times in {waits} waits"
    );
    // The mailbox's registration stands: nothing is sent to the server's
    // connection, so it is registered when the connection starts, not per
    // wait. (It failed at one per wait when the task's own waker was
    // registered there at every wait.)
    assert!(
        mailbox <= ROUNDS / 100,
        "the mailbox registered {mailbox} times in {waits} waits: it should stand"
    );
}
