//! Bridged channels: nested serde types both ways, in order; malformed,
//! truncated and oversized frames end the channel with a clear error and
//! bounded memory.

#[macro_use]
mod support;

use std::collections::BTreeMap;

use ioasync::channel::{self, DEFAULT_MAX_FRAME};
use serde::{Deserialize, Serialize};
use support::bounded;
use tokio::{io::AsyncWriteExt, net::UnixStream};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Job {
        id: u64,
        tags: Vec<String>,
        meta: BTreeMap<String, (i32, Option<bool>)>,
    },
    Done(u64, Result<Vec<u8>, String>),
}

flavours!(nested_serde_types_round_trip_both_ways_ten_thousand_in_order);
async fn nested_serde_types_round_trip_both_ways_ten_thousand_in_order() {
    let (a, b) = UnixStream::pair().unwrap();
    let (to_b, mut from_b) = channel::bridge::<Msg, Msg>(a, 64, DEFAULT_MAX_FRAME);
    let (to_a, mut from_a) = channel::bridge::<Msg, Msg>(b, 64, DEFAULT_MAX_FRAME);
    // b echoes every job back as Done.
    let echo = tokio::spawn(async move {
        while let Some(m) = from_a.recv().await {
            let Msg::Job { id, tags, meta } = m.unwrap() else {
                panic!("a Job")
            };
            assert_eq!(tags.len() as u64, id % 3);
            assert_eq!(meta.get("k").map(|v| v.0), Some(id as i32));
            to_a.send(Msg::Done(id, Ok(id.to_be_bytes().to_vec())))
                .await
                .unwrap();
        }
    });
    let sender = tokio::spawn(async move {
        for id in 0..10_000u64 {
            let mut meta = BTreeMap::new();
            meta.insert("k".to_string(), (id as i32, (id % 2 == 0).then_some(true)));
            let tags = (0..id % 3).map(|t| format!("t{t}")).collect();
            to_b.send(Msg::Job { id, tags, meta }).await.unwrap();
        }
    });
    for want in 0..10_000u64 {
        let got = bounded("reply", from_b.recv()).await.unwrap().unwrap();
        assert_eq!(got, Msg::Done(want, Ok(want.to_be_bytes().to_vec())));
    }
    sender.await.unwrap();
    echo.abort();
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

/// Writes `bytes` raw into one end; returns what the channel on the other
/// end reports.
async fn feed(bytes: &[u8], close: bool) -> ioasync::Error {
    let (mut raw, ours) = UnixStream::pair().unwrap();
    let (_tx, mut rx) = channel::bridge::<Msg, Msg>(ours, 8, 1 << 20);
    raw.write_all(bytes).await.unwrap();
    if close {
        raw.shutdown().await.unwrap();
    }
    let err = bounded("error", rx.recv()).await.unwrap().unwrap_err();
    // After the error the channel is over.
    assert!(bounded("end", rx.recv()).await.is_none());
    drop(raw);
    err
}

flavours!(garbage_truncated_and_oversized_frames_end_the_channel_with_a_clear_error);
async fn garbage_truncated_and_oversized_frames_end_the_channel_with_a_clear_error() {
    let rss0 = rss_bytes();
    // Garbage: a well-formed length around bytes that are no MessagePack Msg.
    let mut garbage = 5u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xc1, 0xff, 0x00, 0x13, 0x37]);
    let e = feed(&garbage, false).await;
    assert_eq!(e.op(), "decode", "{e}");
    // Truncated: a length of 100 and 3 bytes, then EOF.
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(b"abc");
    let e = feed(&truncated, true).await;
    assert_eq!(e.op(), "read", "{e}");
    // A 4 GiB length prefix: refused before allocating anything.
    let e = feed(&u32::MAX.to_be_bytes(), false).await;
    assert_eq!(e.op(), "decode", "{e}");
    assert!(e.to_string().contains("frame"), "{e}");
    let grown = rss_bytes().saturating_sub(rss0);
    assert!(grown < 64 << 20, "memory grew by {grown} bytes");
}

flavours!(an_ended_channel_reads_none_and_a_dead_peer_reads_an_error);
async fn an_ended_channel_reads_none_and_a_dead_peer_reads_an_error() {
    // Ended: the peer drops its sender; the bridge sends the end marker.
    let (a, b) = UnixStream::pair().unwrap();
    let (tx, _rx_a) = channel::bridge::<Msg, Msg>(a, 8, DEFAULT_MAX_FRAME);
    let (_tx_b, mut rx) = channel::bridge::<Msg, Msg>(b, 8, DEFAULT_MAX_FRAME);
    tx.send(Msg::Done(1, Err("x".into()))).await.unwrap();
    drop(tx);
    assert!(bounded("msg", rx.recv()).await.unwrap().is_ok());
    assert!(bounded("end", rx.recv()).await.is_none());
    // Died: the peer's socket just closes.
    let (raw, ours) = UnixStream::pair().unwrap();
    let (_tx, mut rx) = channel::bridge::<Msg, Msg>(ours, 8, DEFAULT_MAX_FRAME);
    drop(raw);
    let err = bounded("death", rx.recv()).await.unwrap().unwrap_err();
    assert!(err.is_peer_died(), "{err}");
    assert!(err.to_string().contains("died"), "{err}");
}
