//! Typed channels over NATS subjects between two processes: this test
//! receives, a peer (this binary started again, `nats_channel_peer`)
//! sends.
#![cfg(feature = "nats")]

#[macro_use]
mod support;

use std::time::Duration;

use ioasync::Loop;
use ioasync::nats::{Remote, RemoteRef, channel};
use support::{
    bounded_for,
    nats::{NatsServer, Peer},
    test_loop,
};

const MESSAGES: u64 = 10_000;
/// The receiver's size cap.
const CAP: usize = 64;

/// When this binary runs as the sending peer, this test is its main: it
/// sends `MESSAGES` numbers in order, then a string and an oversized
/// vector on the same channel (each must fail clearly), then one last
/// number, and closes the channel.
#[test]
fn nats_channel_peer() {
    let Ok(url) = std::env::var("IOASYNC_TEST_NATS_PEER") else {
        return;
    };
    let subject = std::env::var("IOASYNC_TEST_NATS_SUBJECT").unwrap();
    let lp = Loop::new().unwrap();
    let l = lp.clone();
    let ok = lp.block_on(async move {
        let nats = l.add(Remote::spec("peer", url)).await.unwrap();
        let t = nats.transport();
        let opts = channel::Options::default();
        let numbers = channel::sender::<u64, _>(&t, subject.clone(), opts);
        for n in 0..MESSAGES {
            numbers.send(&n).await.unwrap();
        }
        // Not a u64: the receiver refuses it, the sender hears why.
        let words = channel::sender::<String, _>(&t, subject.clone(), opts);
        let e = words.send(&"not a number".into()).await.unwrap_err();
        println!("wrong type: {e}");
        let wrong_type = e.op() == "send" && e.to_string().contains("does not decode as u64");
        // Over the receiver's cap (ours is larger).
        let blobs = channel::sender::<Vec<u8>, _>(&t, subject.clone(), opts);
        let e = blobs.send(&vec![7u8; 1000]).await.unwrap_err();
        println!("oversize at the receiver: {e}");
        let over_theirs = e.op() == "send" && e.to_string().contains("over the size cap");
        // Over our own cap: refused before it is sent.
        let small = channel::Options {
            max_message: 16,
            ..opts
        };
        let mine = channel::sender::<Vec<u8>, _>(&t, subject.clone(), small);
        let e = mine.send(&vec![7u8; 100]).await.unwrap_err();
        println!("oversize here: {e}");
        let over_mine = e.to_string().contains("nothing was sent");
        // The channel lives on.
        numbers.send(&MESSAGES).await.unwrap();
        numbers.close().await.unwrap();
        wrong_type && over_theirs && over_mine
    });
    println!("peer done {ok}");
    std::process::exit(if ok { 0 } else { 1 });
}

flavours!(a_typed_channel_round_trips_across_two_processes_in_order_and_survives_bad_payloads);
async fn a_typed_channel_round_trips_across_two_processes_in_order_and_survives_bad_payloads() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(Remote::spec("nats", &server.url)).await.unwrap();
    let subject = format!("test.numbers.{}", std::process::id());
    let opts = channel::Options {
        max_message: CAP,
        ..Default::default()
    };
    let mut rx = channel::receiver::<u64, _>(&nats.transport(), subject.clone(), opts)
        .await
        .unwrap();
    let env = [
        ("IOASYNC_TEST_NATS_PEER", server.url.clone()),
        ("IOASYNC_TEST_NATS_SUBJECT", subject),
    ];
    let (mut peer, _) = Peer::start("nats_channel_peer", &env, "running").await;
    bounded_for(Duration::from_secs(60), "10,000 messages in order", async {
        for n in 0..=MESSAGES {
            let got = rx.recv().await.expect("a message").expect("a u64");
            assert_eq!(got, n, "out of order");
        }
    })
    .await;
    let end = bounded_for(Duration::from_secs(10), "the end", rx.recv()).await;
    assert!(end.is_none(), "{end:?}");
    for what in ["wrong type:", "oversize at the receiver:", "oversize here:"] {
        let line = peer.line(what).await;
        println!("{line}");
    }
    assert_eq!(peer.line("peer done").await, "peer done true");
    let status = bounded_for(
        Duration::from_secs(10),
        "the peer's exit",
        peer.child.wait(),
    )
    .await
    .unwrap();
    assert!(status.success(), "{status}");
    lp.shutdown(Some(Duration::from_secs(5))).await;
}
