//! Fairness: a notifier whose source stays ready shares its thread.
//!
//! IO::Async's readiness is level-triggered: a `Handle` whose
//! `on_read_ready` leaves the fd readable (bytes it does not read, or the
//! end of file) is called again, and again. Each of those turns must still
//! let every other task on the runtime run: the test's own task, a plain
//! tokio task, a timer, another notifier's stream. The rounds are watched
//! from outside the runtime (`flavours!(watched ..)`), since a starved
//! runtime would not fire the test's own timeouts either.

#[macro_use]
mod support;

use std::{
    io::Write,
    os::{fd::OwnedFd, unix::net::UnixStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ioasync::{
    Loop,
    io::{Handle, HandleRef, ReadAction, Stream},
    notifier::NotifierRef,
    time::{Periodic, Tick},
};
use support::{bounded, test_loop};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Notify,
};

/// A handle over `fd` whose callback never reads: it counts its calls and
/// says when it has been called `again` times.
async fn never_reads(
    lp: &Loop,
    name: &str,
    fd: UnixStream,
) -> (NotifierRef<Handle>, Arc<AtomicUsize>, Arc<Notify>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let again = Arc::new(Notify::new());
    let (c, a) = (calls.clone(), again.clone());
    let h = lp
        .add(
            Handle::spec(name, Some(OwnedFd::from(fd)), None)
                .unwrap()
                .on_read_ready(move |_io| {
                    if c.fetch_add(1, Ordering::Relaxed) + 1 == 3 {
                        a.notify_one();
                    }
                }),
        )
        .await
        .unwrap();
    (h, calls, again)
}

flavours!(watched a_handle_that_never_reads_shares_the_thread);
async fn a_handle_that_never_reads_shares_the_thread() {
    let lp = test_loop();
    // One handle over bytes nobody reads, one at the end of file: two hot
    // notifiers, as many as the multi-thread runtime has workers.
    let (pending, peer) = UnixStream::pair().unwrap();
    (&peer).write_all(b"never read").unwrap();
    let (at_eof, gone) = UnixStream::pair().unwrap();
    drop(gone);
    let (hot, hot_calls, hot_again) = never_reads(&lp, "pending", pending).await;
    let (eof, eof_calls, eof_again) = never_reads(&lp, "eof", at_eof).await;

    // Level-triggered: each is called again while its fd stays readable.
    bounded("the pending handle called again", hot_again.notified()).await;
    bounded("the eof handle called again", eof_again.notified()).await;

    // The test's own task: a timer.
    bounded(
        "a 10 ms sleep",
        tokio::time::sleep(Duration::from_millis(10)),
    )
    .await;
    // A plain tokio task.
    let task = tokio::spawn(async {
        tokio::task::yield_now().await;
        7
    });
    assert_eq!(bounded("a spawned task", task).await.unwrap(), 7);
    // Another notifier's timer.
    let periodic = lp
        .add(Periodic::spec("tick", Duration::from_millis(5)))
        .await
        .unwrap();
    let mut ticks = periodic.events::<Tick>().unwrap();
    for n in 0..3 {
        bounded(&format!("tick {n}"), ticks.recv()).await.unwrap();
    }
    // Another notifier's stream: an echo.
    let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
    let echo = lp
        .add(Stream::spec("echo", ours).on_read(|io, buf, _eof| {
            io.write_slice(buf);
            buf.clear();
            ReadAction::Wait
        }))
        .await
        .unwrap();
    for round in 0..3 {
        let msg = format!("ping {round}");
        theirs.write_all(msg.as_bytes()).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        bounded("the echo", theirs.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(got, msg.as_bytes());
    }

    // The hot handles kept being called all along.
    let (h, e) = (
        hot_calls.load(Ordering::Relaxed),
        eof_calls.load(Ordering::Relaxed),
    );
    assert!(h > 3 && e > 3, "called {h} and {e} times");

    // Their own mailboxes are heard between turns: the messages behind
    // `want_ready` and `set_on_read_ready` (what `unwatch_io` sends).
    bounded("want_ready on a hot handle", hot.want_ready(true, false))
        .await
        .unwrap();
    let left = bounded("unwatching a hot handle", hot.set_on_read_ready(None))
        .await
        .unwrap();
    assert_eq!(left, (false, false, false));
    let quiet = hot_calls.load(Ordering::Relaxed);
    // A reply comes after any turn in flight: no call follows it.
    bounded("a second message", hot.want_ready(false, false))
        .await
        .unwrap();
    assert_eq!(hot_calls.load(Ordering::Relaxed), quiet);

    // And they stop when asked (control).
    bounded("stopping the notifiers", async {
        hot.stop().await;
        eof.stop().await;
        periodic.stop().await;
        echo.stop().await;
    })
    .await;
    drop(peer);
}
