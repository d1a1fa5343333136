//! A framed stream is the same byte stream as a `Stream` (one
//! implementation, `ByteStream<P>`): everything a raw stream does, it does
//! too — half-close, `info`, `Flushed` and write-watermark events, the
//! write overflow policies, future-returning reads and pushed readers in
//! front of its codec — each checked here where it would break if the two
//! had drifted apart again.

#[macro_use]
mod support;

use ioasync::{
    io::codec::LineCodec,
    io::{Framed, FramedEvent, FramedRef, Limits, ReadFor, StreamRef},
    notifier::{Overflow, Spec, Subscription},
};
use support::{bounded, next_matching, test_loop};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

flavours!(a_framed_stream_half_closes_with_shutdown_write_and_still_reads_frames);
async fn a_framed_stream_half_closes_with_shutdown_write_and_still_reads_frames() {
    let lp = test_loop();
    let (ours, peer) = tokio::net::UnixStream::pair().unwrap();
    let (sub, mut events) = Subscription::stream(64);
    let lines = lp
        .add(
            Spec::from(Framed::spec("half", ours, LineCodec::new()).close_on_read_eof(true))
                .subscribe(sub),
        )
        .await
        .unwrap();
    lines.send("last words".to_string()).await.unwrap();
    lines.shutdown_write().await.unwrap();
    let (rd, mut wr) = peer.into_split();
    // The peer reads our last line, then the end of our side...
    let mut got = String::new();
    bounded("to our EOF", BufReader::new(rd).read_to_string(&mut got))
        .await
        .unwrap();
    assert_eq!(got, "last words\n");
    bounded(
        "WriteEof",
        next_matching(&mut events, |e| {
            matches!(e, FramedEvent::WriteEof).then_some(())
        }),
    )
    .await;
    // ...and its frames still reach us.
    wr.write_all(b"after\n").await.unwrap();
    let line = bounded(
        "a frame after the half-close",
        next_matching(&mut events, |e| match e {
            FramedEvent::Read(l) => Some(l.clone()),
            _ => None,
        }),
    )
    .await;
    assert_eq!(line, "after");
    drop(wr); // both halves closed: the stream closes
    bounded("closed", lines.closed()).await;
}

flavours!(a_framed_stream_reports_info_and_flushed_like_a_stream);
async fn a_framed_stream_reports_info_and_flushed_like_a_stream() {
    let lp = test_loop();
    let ln = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ln.local_addr().unwrap();
    let (conn, accepted) = tokio::join!(lp.connect(addr), ln.accept());
    let (peer, peer_addr) = accepted.unwrap();
    let (sub, mut events) = Subscription::stream(64);
    let lines = lp
        .add(Spec::from(Framed::spec("info", conn.unwrap(), LineCodec::new())).subscribe(sub))
        .await
        .unwrap();
    let info = lines.info().await.unwrap();
    assert_eq!(
        info.peer.clone().and_then(|a| a.as_inet()),
        Some(addr),
        "{info:?}"
    );
    assert_eq!(
        info.local.clone().and_then(|a| a.as_inet()),
        Some(peer_addr),
        "{info:?}"
    );
    assert!(!info.closed);
    lines.send_flushed("one".to_string()).await.unwrap();
    bounded(
        "Flushed",
        next_matching(&mut events, |e| {
            matches!(e, FramedEvent::Flushed).then_some(())
        }),
    )
    .await;
    let mut line = String::new();
    let mut peer = BufReader::new(peer); // kept open: we close first
    peer.read_line(&mut line).await.unwrap();
    assert_eq!(line, "one\n");
    lines.close_now().await.unwrap();
    bounded("closed", lines.closed()).await;
}

flavours!(a_framed_stream_under_fail_refuses_a_frame_at_its_high_watermark_and_goes_on);
async fn a_framed_stream_under_fail_refuses_a_frame_at_its_high_watermark_and_goes_on() {
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let limits = Limits {
        write_high: 64 << 10,
        write_low: 16 << 10,
        ..Limits::default()
    };
    let lines = lp
        .add(
            Framed::spec("fail", ours, LineCodec::new())
                .limits(limits)
                .write_overflow(Overflow::Fail),
        )
        .await
        .unwrap();
    // The peer reads nothing: frames fill the socket, then the buffer.
    let frame = "x".repeat(8 << 10);
    let mut sent = 0usize;
    let refusal = loop {
        match bounded("send", lines.send(frame.clone())).await {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 10_000, "never refused");
    };
    assert!(refusal.is_full(), "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains("write buffer of /fail is full"),
        "{refusal}"
    );
    // Nothing accepted is lost: every frame sent before the refusal
    // arrives whole, and the stream still takes frames once drained.
    lines.close_when_empty().await.unwrap();
    let mut got = String::new();
    bounded("read", peer.read_to_string(&mut got))
        .await
        .unwrap();
    assert_eq!(got.lines().count(), sent);
    assert!(got.lines().all(|l| l == frame));
}

flavours!(a_raw_read_on_a_framed_stream_takes_its_bytes_before_the_codec);
async fn a_raw_read_on_a_framed_stream_takes_its_bytes_before_the_codec() {
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let (sub, mut events) = Subscription::stream(64);
    let lines = lp
        .add(Spec::from(Framed::spec("hdr", ours, LineCodec::new())).subscribe(sub))
        .await
        .unwrap();
    // The read is asked before any byte arrives (its first poll hands it
    // to the stream; `info`, asked after it the same way, is answered
    // after it): it comes first.
    let mut header = Box::pin(lines.read(ReadFor::Exactly(5)));
    std::future::poll_fn(|cx| {
        assert!(header.as_mut().poll(cx).is_pending());
        std::task::Poll::Ready(())
    })
    .await;
    lines.info().await.unwrap();
    peer.write_all(b"HELO\nbody\n").await.unwrap();
    let (got, eof) = bounded("header", header).await.unwrap();
    assert_eq!((&got[..], eof), (&b"HELO\n"[..], false));
    let line = bounded(
        "the frame after the header",
        next_matching(&mut events, |e| match e {
            FramedEvent::Read(l) => Some(l.clone()),
            _ => None,
        }),
    )
    .await;
    assert_eq!(line, "body", "the header never reached the codec");
}
