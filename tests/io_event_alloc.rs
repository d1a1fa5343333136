//! A readiness turn allocates nothing: an established Stream echo
//! connection (the echo benchmark's server: `on_read` writes back what it
//! read) serves round trips with no heap allocation of its own, on both
//! runtime flavours (zero in the whole process on a quiet machine; the
//! bound leaves room for tokio's rare ones under load). Counted with a
//! counting allocator, so alone in its own binary (it counts every
//! thread).

#[macro_use]
mod support;
#[path = "support/counting.rs"]
mod counting;

use support::test_loop;

/// Round trips counted, after the warm-up.
const ROUNDS: u64 = 2_000;

/// Round trips before counting: the buffers reach their working size,
/// and whatever a connection sets up once (its write buffer, tokio's
/// per-thread state) is done.
const WARM_UP: u64 = 200;

flavours!(serial an_echo_round_trip_allocates_nothing);
async fn an_echo_round_trip_allocates_nothing() {
    let lp = test_loop();
    let addr = support::echo_server(&lp).await;
    // The client allocates nothing per round trip itself.
    let (before, after) = support::echo_rounds(addr, WARM_UP, ROUNDS, counting::allocs).await;
    let allocs = after - before;
    let per = allocs as f64 / ROUNDS as f64;
    eprintln!("heap allocations per echo round trip: {per:.4} ({allocs} in {ROUNDS})");
    // Zero on a quiet machine. The counter is process-wide, and under
    // load tokio itself allocates now and then (a queue growing when
    // wake-ups pile up): 6 in 2,000 round trips was seen once with a CI
    // build running beside it. An allocation per event, per turn or per
    // wake-up would be 2,000 or more.
    assert!(
        allocs <= ROUNDS / 100,
        "{ROUNDS} echo round trips made {allocs} heap allocations ({per:.4} per round trip)"
    );
}
