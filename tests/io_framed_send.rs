//! Sending on a framed stream without waiting: `try_send` hands the frame
//! back at once when the write buffer is over its high watermark, `send`
//! waits for room, and the `futures::Sink` drives both.

#[macro_use]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use ioasync::{
    io::codec::LineCodec,
    io::{Framed, FramedRef, Limits},
    notifier::NotifierRef,
};
use support::{bounded, test_loop};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

type Lines = Framed<LineCodec, String>; // named: handles are stored by type

const WRITE_HIGH: usize = 64 << 10;

fn limits() -> Limits {
    Limits {
        write_high: WRITE_HIGH,
        write_low: WRITE_HIGH / 2,
        ..Limits::default()
    }
}

/// A connected pair over loopback: our framed end in the loop, and the
/// peer's socket. `small` shrinks both kernel buffers (a peer that never
/// reads then fills them quickly).
async fn pair(
    lp: &ioasync::Loop,
    ln: &TcpListener,
    name: &str,
    small: bool,
) -> (NotifierRef<Lines>, TcpStream) {
    let addr = ln.local_addr().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if small {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    sock.set_nonblocking(true).unwrap();
    let sock = tokio::net::TcpSocket::from_std_stream(sock.into());
    let (peer, accepted) = tokio::join!(sock.connect(addr), ln.accept());
    let (ours, _) = accepted.unwrap();
    if small {
        socket2::SockRef::from(&ours)
            .set_send_buffer_size(4096)
            .unwrap();
    }
    let f = lp
        .add(Lines::spec(name, ours, LineCodec::new()).limits(limits()))
        .await
        .unwrap();
    (f, peer.unwrap())
}

/// Counts the lines every reader got; wakes the test at each.
#[derive(Default)]
struct Tally {
    lines: AtomicUsize,
    wake: Notify,
}

impl Tally {
    async fn reach(&self, n: usize) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.lines.load(Ordering::Acquire) >= n {
                return;
            }
            woken.await;
        }
    }
}

fn message(k: usize) -> String {
    format!("{k:05} {}", "m".repeat(500))
}

flavours!(a_broadcast_to_100_connections_is_not_held_up_by_one_that_never_reads);
async fn a_broadcast_to_100_connections_is_not_held_up_by_one_that_never_reads() {
    const CONNS: usize = 100;
    const MESSAGES: usize = 400;
    const BATCH: usize = 20;
    let lp = test_loop();
    let ln = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Connection 0 never reads.
    let (stuck, _stuck_peer) = pair(&lp, &ln, "stuck", true).await;
    let tally = Arc::new(Tally::default());
    let mut conns = vec![stuck.clone()];
    let mut readers = Vec::new();
    for i in 1..CONNS {
        let (f, peer) = pair(&lp, &ln, &format!("c{i}"), false).await;
        conns.push(f);
        let tally = tally.clone();
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(peer).lines();
            for k in 0..MESSAGES {
                let line = lines.next_line().await.unwrap().expect("a line, not EOF");
                assert_eq!(line, message(k), "reader {i}: every message, in order");
                tally.lines.fetch_add(1, Ordering::AcqRel);
                tally.wake.notify_waiters();
            }
        }));
    }
    let mut refused = 0;
    let mut first_refusal = None;
    for k in 0..MESSAGES {
        for (i, c) in conns.iter().enumerate() {
            match c.try_send(message(k)) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(i, 0, "only the stuck connection refuses: {e}");
                    assert!(e.is_full(), "{e}");
                    assert_eq!(e.error().op(), "try_send");
                    assert!(e.to_string().contains("/stuck"), "{e}");
                    // Refused at the watermark, not 64 frames later when
                    // the mailbox in front of it fills.
                    assert!(e.to_string().contains("high watermark"), "{e}");
                    assert_eq!(e.frame(), &message(k), "the frame is handed back");
                    first_refusal.get_or_insert(k);
                    refused += 1;
                }
            }
        }
        if (k + 1) % BATCH == 0 {
            // The readers keep up batch by batch: the fast peers never
            // reach their high watermark.
            bounded("readers", tally.reach((k + 1) * (CONNS - 1))).await;
        }
    }
    for r in readers {
        bounded("reader done", r).await.unwrap();
    }
    let first = first_refusal.expect("the stuck connection refused a frame");
    // Once over its high watermark it stays there (it never drains).
    assert_eq!(refused, MESSAGES - first);
    // Memory bounded: what the stuck stream holds is its high watermark
    // and one frame past it (the mailbox in front holds the rest, and is
    // bounded too).
    let held = stuck.tree().buffered.unwrap_or(0) as usize;
    assert!(
        held <= WRITE_HIGH + message(0).len() + 1,
        "the stuck stream holds {held} bytes"
    );
    for c in &conns[1..] {
        assert!(c.tree().buffered.unwrap_or(0) < WRITE_HIGH as u64);
    }
}

flavours!(send_waits_for_room_and_resolves_once_queued_not_once_written);
async fn send_waits_for_room_and_resolves_once_queued_not_once_written() {
    let lp = test_loop();
    let ln = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (f, mut peer) = pair(&lp, &ln, "slow", true).await;
    // Fill the buffer past its high watermark: every send resolves (it is
    // queued), and the last one leaves the stream full.
    let big = "x".repeat(16 << 10);
    let mut sent = 0;
    while f.try_send(big.clone()).is_ok() {
        sent += 1;
        assert!(sent < 1000, "never filled");
    }
    // `send` now waits for room (nothing can wake it while the peer does
    // not read: a bounded wait shows it waits)...
    let mut waiting = Box::pin({
        let f = f.clone();
        async move { f.send("after".to_string()).await }
    });
    let early = tokio::time::timeout(Duration::from_millis(200), &mut waiting).await;
    assert!(
        early.is_err(),
        "send waits while the buffer is full: {early:?}"
    );
    let waiting = tokio::spawn(waiting);
    // ...which the reader makes.
    let mut total = Vec::new();
    let expected = sent * (big.len() + 1) + "after\n".len();
    let mut buf = vec![0u8; 64 << 10];
    while total.len() < expected {
        let n = bounded("read", peer.read(&mut buf)).await.unwrap();
        assert!(n > 0, "eof early");
        total.extend_from_slice(&buf[..n]);
    }
    bounded("send resolved", waiting).await.unwrap().unwrap();
    assert!(total.ends_with(b"after\n"));
    // A closed stream refuses at once, handing the frame back.
    f.stop().await;
    let e = f.try_send("late".to_string()).unwrap_err();
    assert!(!e.is_full());
    assert_eq!(e.error().kind(), ioasync::error::ErrorKind::Closed);
    assert_eq!(e.into_frame(), "late");
    assert!(f.send("late".to_string()).await.is_err());
}

flavours!(the_sink_applies_backpressure_and_flushes_every_frame_in_order);
async fn the_sink_applies_backpressure_and_flushes_every_frame_in_order() {
    let lp = test_loop();
    let ln = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (f, peer) = pair(&lp, &ln, "sink", true).await;
    const N: usize = 2000;
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(peer).lines();
        let mut got = 0;
        while let Some(line) = lines.next_line().await.unwrap() {
            assert_eq!(line, message(got));
            got += 1;
        }
        got
    });
    let mut sink = f.sink();
    let mut frames = futures_util::stream::iter((0..N).map(|k| Ok(message(k))));
    bounded("send_all", sink.send_all(&mut frames))
        .await
        .unwrap();
    assert!(frames.next().await.is_none());
    bounded("close", sink.close()).await.unwrap();
    assert_eq!(bounded("reader", reader).await.unwrap(), N);
    bounded("closed", f.wait_stopped()).await;
}
