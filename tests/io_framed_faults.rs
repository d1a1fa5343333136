//! Faults found in the framed side of the byte stream, each tested where
//! it broke: `serve` backpressure must not undo `want_read(false)` or
//! `close_read`; frames held back by `serve` go through reads and pushed
//! readers like any input; a frame sent after `shutdown_write` fails under
//! every write policy; two over-long lines are each recoverable; a read
//! after a fatal decode error hears the error, not a clean end; `try_send`
//! loses no frame unheard; `close_now` releases senders waiting for room;
//! a `serve` stopped under pipelined load answers a gap-free prefix.

#[macro_use]
mod support;

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use ioasync::{
    io::codec::LineCodec,
    io::{Framed, FramedEvent, FramedRef, FramedSpec, PushedRead, StreamRef},
    notifier::{Overflow, Spec, Subscription},
};
use support::{bounded, next_matching, test_loop};
use tokio::io::AsyncWriteExt;

/// `spec` serving up to 4 lines at once, each handed to the receiver.
fn recording(
    spec: FramedSpec<LineCodec, String>,
) -> (
    FramedSpec<LineCodec, String>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, served) = tokio::sync::mpsc::unbounded_channel();
    let spec = spec.serve(4, move |l: String| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(l);
            None::<String>
        }
    });
    (spec, served)
}

// 1. `serve` re-enables reading on every wake-up: `want_read(false)` is
//    undone (Frames::ready overwrites read_off).
flavours!(a_serving_stream_honours_want_read_false);
async fn a_serving_stream_honours_want_read_false() {
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let (spec, mut served) = recording(Framed::spec("srv", ours, LineCodec::new()));
    let lines = lp.add(spec).await.unwrap();
    lines.want_read(false).await.unwrap();
    peer.write_all(b"one\n").await.unwrap();
    let got = tokio::time::timeout(Duration::from_millis(300), served.recv()).await;
    assert!(got.is_err(), "served {got:?} with reading turned off");
}

// 1b. The same for `close_read` over an AsyncIo (TLS-like) source, where
//     closing the read side is only `read_off`.
flavours!(a_serving_stream_reads_nothing_after_close_read);
async fn a_serving_stream_reads_nothing_after_close_read() {
    let lp = test_loop();
    let (ours, mut peer) = tokio::io::duplex(1024);
    let (spec, mut served) = recording(Framed::spec_io("srv", ours, LineCodec::new()));
    let lines = lp.add(spec).await.unwrap();
    lines.close_read().await.unwrap();
    peer.write_all(b"after close_read\n").await.unwrap();
    let got = tokio::time::timeout(Duration::from_millis(300), served.recv()).await;
    assert!(got.is_err(), "served {got:?} after close_read");
}

// 2. Frames held back at max_in_flight are decoded by Frames::on_ready
//    straight into the codec, past a pushed reader that waits for them
//    (the documented order: reads, pushed readers, then the codec).
flavours!(held_back_frames_go_to_a_pushed_reader_before_the_codec);
async fn held_back_frames_go_to_a_pushed_reader_before_the_codec() {
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let (tx, mut served) = tokio::sync::mpsc::unbounded_channel::<String>();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let r = release.clone();
    let lines = lp
        .add(
            Framed::spec("srv", ours, LineCodec::new()).serve(1, move |l: String| {
                let (tx, r) = (tx.clone(), r.clone());
                async move {
                    let _ = tx.send(l);
                    r.acquire().await.unwrap().forget();
                    None::<String>
                }
            }),
        )
        .await
        .unwrap();
    peer.write_all(b"a\nb\nc\n").await.unwrap();
    assert_eq!(bounded("a", served.recv()).await.as_deref(), Some("a"));
    // "b\nc\n" waits in the read buffer: the one handler is busy.
    bounded("held back", async {
        while lines.info().await.unwrap().buffered < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // A pushed reader wants the next 8 raw bytes.
    let (htx, header) = tokio::sync::oneshot::channel();
    let mut htx = Some(htx);
    lines
        .push_on_read(move |_io, buf, _eof| {
            if buf.len() < 8 {
                return PushedRead::Wait;
            }
            let _ = htx.take().unwrap().send(buf.split_to(8).freeze());
            PushedRead::Done
        })
        .await
        .unwrap();
    release.add_permits(1); // "a" finishes
    peer.write_all(b"d\ne\n").await.unwrap();
    let next = tokio::time::timeout(Duration::from_millis(300), served.recv()).await;
    assert!(
        next.is_err(),
        "the codec got {next:?}, which the pushed reader was waiting for"
    );
    release.add_permits(100);
    let got = bounded("the pushed reader's bytes", header).await.unwrap();
    assert_eq!(&got[..], b"b\nc\nd\ne\n");
}

// 3. Under Fail / DropNewest / DropOldest a frame sent after
//    shutdown_write is reported as taken (`send` is Ok) and silently
//    dropped; under Wait it fails with op `send`.
flavours!(a_frame_sent_after_shutdown_write_fails_under_every_policy);
async fn a_frame_sent_after_shutdown_write_fails_under_every_policy() {
    let lp = test_loop();
    let mut taken = Vec::new();
    for (i, policy) in [
        Overflow::Wait,
        Overflow::Fail,
        Overflow::DropNewest,
        Overflow::DropOldest,
    ]
    .into_iter()
    .enumerate()
    {
        let (ours, _peer) = tokio::net::UnixStream::pair().unwrap();
        let lines = lp
            .add(
                Framed::spec(format!("f{i}"), ours, LineCodec::new())
                    .close_on_read_eof(false)
                    .write_overflow(policy),
            )
            .await
            .unwrap();
        lines.shutdown_write().await.unwrap();
        if let Ok(()) = bounded("send", lines.send("late".to_string())).await {
            taken.push(format!("{policy:?}"));
        }
        lines.close_now().await.unwrap();
    }
    assert!(
        taken.is_empty(),
        "a frame after shutdown_write was reported sent (and dropped) under {taken:?}"
    );
}

// 4. (pre-existing, kept by the unification) two separate over-long
//    lines, with progress between them, count as a codec "stuck" twice
//    in a row: the second is fatal (ReadError, reading stops) instead of
//    a recoverable DecodeError.
flavours!(two_separate_over_long_lines_are_both_recoverable);
async fn two_separate_over_long_lines_are_both_recoverable() {
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let (sub, mut events) = Subscription::stream(256);
    let lines = lp
        .add(
            Spec::from(Framed::spec("max", ours, LineCodec::new_with_max_length(8))).subscribe(sub),
        )
        .await
        .unwrap();
    peer.write_all(b"AAAAAAAAAAAAAAAA").await.unwrap();
    bounded(
        "DecodeError",
        next_matching(&mut events, |e| {
            matches!(e, FramedEvent::DecodeError(_)).then_some(())
        }),
    )
    .await;
    // The rest of the long line, and the start of the next one.
    peer.write_all(b"\nab").await.unwrap();
    bounded("ab buffered", async {
        while lines.info().await.unwrap().buffered != 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    peer.write_all(b"cdefghijklmnop\nok\n").await.unwrap();
    let ev = bounded(
        "the next error or frame",
        next_matching(&mut events, |e| match e {
            FramedEvent::DecodeError(_) | FramedEvent::ReadError(_) | FramedEvent::Read(_) => {
                Some(e.clone())
            }
            _ => None,
        }),
    )
    .await;
    assert!(matches!(ev, FramedEvent::DecodeError(_)), "got {ev:?}");
    let line = bounded(
        "ok",
        next_matching(&mut events, |e| match e {
            FramedEvent::Read(l) => Some(l.clone()),
            _ => None,
        }),
    )
    .await;
    assert_eq!(line, "ok");
}

// 5. close_now while a `send` waits in the mailbox (buffer full, peer not
//    reading): the waiting send resolves (with an error), nothing hangs.
flavours!(close_now_releases_senders_waiting_for_room);
async fn close_now_releases_senders_waiting_for_room() {
    let lp = test_loop();
    let (ours, _peer) = tokio::net::UnixStream::pair().unwrap();
    let limits = ioasync::io::Limits {
        write_high: 16 << 10,
        write_low: 4 << 10,
        ..Default::default()
    };
    let lines = lp
        .add(Framed::spec("full", ours, LineCodec::new()).limits(limits))
        .await
        .unwrap();
    let frame = "x".repeat(8 << 10);
    // Fill until a send waits.
    loop {
        let send = lines.send(frame.clone());
        tokio::pin!(send);
        match tokio::time::timeout(Duration::from_millis(200), &mut send).await {
            Ok(r) => r.unwrap(),
            Err(_) => {
                lines.close_now().await.unwrap();
                let r = bounded("the waiting send", send).await;
                assert!(r.is_err(), "{r:?}");
                break;
            }
        }
    }
    bounded("closed", lines.closed()).await;
}

// 6. Under Fail, try_send's gate (write_full: queued >= high) never closes
//    before the policy refuses (queued + len > high): every refusal
//    happens after try_send said Ok, the frame is lost and only a
//    WriteError event tells.
flavours!(try_send_under_fail_loses_no_frame_unheard);
async fn try_send_under_fail_loses_no_frame_unheard() {
    use tokio::io::AsyncReadExt;
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let (sub, mut events) = Subscription::stream(4096);
    let limits = ioasync::io::Limits {
        write_high: 64 << 10,
        write_low: 16 << 10,
        ..Default::default()
    };
    let lines = lp
        .add(
            Spec::from(
                Framed::spec("tf", ours, LineCodec::new())
                    .limits(limits)
                    .write_overflow(Overflow::Fail),
            )
            .subscribe(sub),
        )
        .await
        .unwrap();
    const FRAMES: usize = 200;
    let frame = "x".repeat(7 << 10);
    let mut handed_back = 0;
    for _ in 0..FRAMES {
        match lines.try_send(frame.clone()) {
            Ok(()) => {}
            Err(e) => {
                assert!(e.is_full(), "{e}");
                assert_eq!(e.into_frame(), frame);
                handed_back += 1;
            }
        }
        lines.info().await.unwrap(); // let the stream take it
    }
    // Every frame is handed back, written, or reported refused.
    lines.close_when_empty().await.unwrap();
    let mut got = String::new();
    bounded("read", peer.read_to_string(&mut got))
        .await
        .unwrap();
    let written = got.lines().count();
    let mut refused = 0;
    loop {
        match bounded("events", events.next()).await {
            Some(FramedEvent::WriteError(e)) => {
                assert!(e.is_full(), "{e}");
                refused += 1;
            }
            Some(FramedEvent::Closed) | None => break,
            Some(_) => {}
        }
    }
    assert!(written > 0 && refused + handed_back > 0);
    assert_eq!(
        handed_back + refused + written,
        FRAMES,
        "{handed_back} handed back, {refused} refused, {written} written"
    );
}

// 7. Pipelined load, then a graceful stop: the replies are a gap-free,
//    in-order prefix of the requests, and every frame handed to a
//    handler is answered.
flavours!(a_serving_stream_stopped_under_pipelined_load_answers_a_prefix);
async fn a_serving_stream_stopped_under_pipelined_load_answers_a_prefix() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncBufReadExt;
    let lp = test_loop();
    let (ours, peer) = tokio::net::UnixStream::pair().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    let lines = lp
        .add(
            Framed::spec("srv", ours, LineCodec::new()).serve(4, move |l: String| {
                st.fetch_add(1, Ordering::SeqCst);
                async move {
                    let n: u64 = l.parse().unwrap();
                    tokio::time::sleep(Duration::from_micros(n % 7 * 100)).await;
                    Some(l)
                }
            }),
        )
        .await
        .unwrap();
    let (rd, mut wr) = peer.into_split();
    let writer = tokio::spawn(async move {
        let mut all = String::new();
        for i in 0..5000 {
            all.push_str(&format!("{i}\n"));
        }
        let _ = wr.write_all(all.as_bytes()).await;
        wr
    });
    let mut rd = tokio::io::BufReader::new(rd);
    let mut got = 0u64;
    let mut line = String::new();
    while got < 300 {
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        assert_eq!(line.trim_end(), got.to_string());
        got += 1;
    }
    let stop = tokio::spawn({
        let lines = lines.clone();
        async move { lines.stop().await }
    });
    loop {
        line.clear();
        if bounded("a reply", rd.read_line(&mut line)).await.unwrap() == 0 {
            break;
        }
        assert_eq!(line.trim_end(), got.to_string(), "a gap or reorder");
        got += 1;
    }
    bounded("stopped", stop).await.unwrap();
    let _ = writer.await;
    assert_eq!(
        got as usize,
        started.load(Ordering::SeqCst),
        "a frame handed to a handler was not answered"
    );
}

// 8. A codec that fails on what is left at EOF ends the stream with a
//    ReadError, yet a read after the stop is told "clean end of stream".
flavours!(a_read_after_a_fatal_decode_error_is_not_a_clean_eof);
async fn a_read_after_a_fatal_decode_error_is_not_a_clean_eof() {
    use bytes::Bytes;
    use ioasync::io::{ReadFor, codec::LengthDelimitedCodec};
    let lp = test_loop();
    let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
    let f = lp
        .add(Framed::<LengthDelimitedCodec, Bytes>::spec(
            "ld",
            ours,
            LengthDelimitedCodec::new(),
        ))
        .await
        .unwrap();
    peer.write_all(&[0, 0, 0, 10, b'a']).await.unwrap(); // a cut frame
    drop(peer);
    bounded("closed", f.closed()).await;
    let r = f.read(ReadFor::AtMost(16)).await;
    assert!(
        r.is_err(),
        "told {r:?} after the codec failed on a cut frame"
    );
}
