//! IO::Async's `write` with a generator (CODE) or a Future: a producer is
//! pulled each time the write buffer has room, writes made after it wait
//! behind it, its future resolves once all it gave is written, and a
//! graceful stop pulls it to its end (issue 12).

#[macro_use]
mod support;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use ioasync::io::{Limits, Stream, StreamRef};
use support::{bounded, test_loop};
use tokio::io::AsyncReadExt;

const CHUNK: usize = 64 << 10;

fn chunk(i: usize) -> Bytes {
    let mut c = vec![(i % 251) as u8; CHUNK];
    c[..8].copy_from_slice(&(i as u64).to_be_bytes());
    c.into()
}

/// Waits until the stream took what was sent on `tx` (the channel has
/// room again): the producer is in place and being pulled.
async fn pulled(tx: &tokio::sync::mpsc::Sender<Bytes>) {
    bounded("the producer is pulled", async {
        while tx.capacity() < tx.max_capacity() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

fn check_chunks(got: &[u8], n: usize) {
    assert_eq!(got.len(), n * CHUNK, "every byte, once");
    for (i, c) in got.chunks(CHUNK).enumerate() {
        assert_eq!(
            u64::from_be_bytes(c[..8].try_into().unwrap()),
            i as u64,
            "in order"
        );
    }
}

flavours!(a_generator_is_called_only_while_the_buffer_has_room_and_all_it_gives_arrives_in_order);
async fn a_generator_is_called_only_while_the_buffer_has_room_and_all_it_gives_arrives_in_order() {
    const N: usize = 256; // 16 MiB: far beyond a socketpair's buffers
    let lp = test_loop();
    let limits = Limits::default();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let stream = lp
        .add(Stream::spec("gen", ours).limits(limits))
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut next = 0;
    let written = tokio::spawn({
        let stream = stream.clone();
        async move {
            stream
                .write_with(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                    (next < N).then(|| {
                        next += 1;
                        chunk(next - 1)
                    })
                })
                .await
        }
    });
    // The peer reads nothing: the buffer fills to its low watermark and
    // the generator is no longer called.
    bounded("the buffer fills", async {
        while stream.info().await.unwrap().queued < limits.write_low {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let settled = calls.load(Ordering::SeqCst);
    for _ in 0..20 {
        stream.info().await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        settled,
        "not called without room"
    );
    assert!(
        settled < N / 4,
        "pulled {settled} of {N} chunks with no reader"
    );
    // The peer reads: everything arrives, in order; the future resolves.
    let mut got = Vec::with_capacity(N * CHUNK);
    let mut buf = vec![0u8; 1 << 20];
    while got.len() < N * CHUNK {
        let n = bounded("read", peer.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    bounded("written", written).await.unwrap().unwrap();
    check_chunks(&got, N);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        N + 1,
        "the end (None) asked once"
    );
}

flavours!(writes_made_after_a_producer_wait_behind_it);
async fn writes_made_after_a_producer_wait_behind_it() {
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let stream = lp.add(Stream::spec("from", ours)).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let produced = tokio::spawn({
        let stream = stream.clone();
        async move {
            stream
                .write_from(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        }
    });
    tx.send(Bytes::from_static(b"one,")).await.unwrap();
    // The stream took "one," from the producer (the channel has room
    // again): the producer is in place...
    pulled(&tx).await;
    // ...so this write comes after it, whatever the producer does next.
    let wrx = stream
        .start_write(Bytes::from_static(b"tail"))
        .await
        .unwrap();
    tx.send(Bytes::from_static(b"two,")).await.unwrap();
    tx.send(Bytes::from_static(b"three,")).await.unwrap();
    drop(tx); // the producer ends
    bounded("produced", produced).await.unwrap().unwrap();
    bounded("the tail", wrx).await.unwrap();
    stream.close_when_empty().await.unwrap();
    let mut got = Vec::new();
    bounded("read", peer.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"one,two,three,tail");
}

flavours!(a_graceful_stop_pulls_a_producer_to_its_end);
async fn a_graceful_stop_pulls_a_producer_to_its_end() {
    const N: usize = 64;
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let stream = lp.add(Stream::spec("stop", ours)).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.map(|_| got)
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let produced = tokio::spawn({
        let stream = stream.clone();
        async move {
            stream
                .write_from(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        }
    });
    tx.send(chunk(0)).await.unwrap();
    pulled(&tx).await;
    // Stop while it produces...
    let stopping = tokio::spawn({
        let stream = stream.clone();
        async move { stream.stop().await }
    });
    bounded("stopping", async {
        while stream.state() != ioasync::supervision::NodeState::Stopping {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // ...what it yields after is written before the close.
    for i in 1..N {
        tx.send(chunk(i)).await.unwrap();
    }
    drop(tx);
    let report = bounded("the stop", stopping).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    let got = bounded("read", reader).await.unwrap().unwrap();
    check_chunks(&got, N);
    bounded("produced", produced).await.unwrap().unwrap();
}
