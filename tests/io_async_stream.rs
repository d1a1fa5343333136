//! Streams and framed streams over any `AsyncRead + AsyncWrite` (an
//! in-memory `tokio::io::duplex`, the stand-in for a TLS stream: nothing
//! in it is a socket), and Framed over a child's stdout pipe.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use ioasync::{
    io::codec::LineCodec,
    io::{
        Framed, FramedEvent, FramedRef, Limits, ReadAction, ReadFor, Stream, StreamEvent, StreamRef,
    },
    notifier::{Spec, Subscription},
};
use support::{bounded, test_loop};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

flavours!(an_io_stream_echoes_bulk_both_ways_byte_exact_while_writes_pour_in);
/// Two megabytes echoed through a 4 KiB in-memory pipe while the test also
/// sends 2,000 `write` messages: each message cancels the stream's `ready`
/// mid-poll, and nothing read or written may be lost or reordered.
async fn an_io_stream_echoes_bulk_both_ways_byte_exact_while_writes_pour_in() {
    let lp = test_loop();
    let (ours, theirs) = tokio::io::duplex(4096);
    let s = lp
        .add(Stream::spec_io("io", ours).on_read(|io, buf, _eof| {
            io.write(buf.split().freeze());
            ReadAction::Wait
        }))
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(theirs);
    let bulk: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let sent = bulk.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr
    });
    // Messages from the handle, each a "M<n>;" marker written by the stream.
    let s2 = s.clone();
    let marks = tokio::spawn(async move {
        for n in 0..2_000 {
            s2.write(format!("M{n};")).await.unwrap();
        }
    });
    let mark_len: usize = (0..2_000).map(|n| format!("M{n};").len()).sum();
    let mut got = vec![0u8; bulk.len() + mark_len];
    bounded("echo and marks", rd.read_exact(&mut got))
        .await
        .unwrap();
    bounded("writer", writer).await.unwrap();
    bounded("marks", marks).await.unwrap();
    // The echo arrives in order; the markers in order among it.
    let (mut echo, mut text) = (Vec::new(), String::new());
    let mut i = 0;
    let mut next_mark = 0;
    while i < got.len() {
        let m = format!("M{next_mark};");
        if got[i..].starts_with(m.as_bytes()) && next_mark < 2_000 {
            text.push_str(&m);
            next_mark += 1;
            i += m.len();
        } else {
            echo.push(got[i]);
            i += 1;
        }
    }
    assert_eq!(next_mark, 2_000, "every marker, in order");
    assert!(
        echo == bulk,
        "the echo is byte-exact ({} of {} bytes)",
        echo.len(),
        bulk.len()
    );
    let _ = text;
}

flavours!(an_io_stream_has_the_events_read_futures_and_eof_of_a_socket_stream);
async fn an_io_stream_has_the_events_read_futures_and_eof_of_a_socket_stream() {
    let lp = test_loop();
    let (ours, mut theirs) = tokio::io::duplex(1024);
    let s = lp
        .add(Stream::spec_io("io", ours).close_on_read_eof(false))
        .await
        .unwrap();
    theirs.write_all(b"HEAD1line one\nrest").await.unwrap();
    let (head, _) = bounded("exactly", s.read(ReadFor::Exactly(5)))
        .await
        .unwrap();
    assert_eq!(&head[..], b"HEAD1");
    let (line, _) = bounded("until", s.read(ReadFor::Until(b"\n".to_vec())))
        .await
        .unwrap();
    assert_eq!(&line[..], b"line one\n");
    let (rest, eof) = bounded("atmost", s.read(ReadFor::AtMost(64)))
        .await
        .unwrap();
    assert_eq!((&rest[..], eof), (&b"rest"[..], false));
    // Events, subscribed now that nothing is buffered.
    let mut events = s
        .events_with::<StreamEvent>(64, ioasync::notifier::Overflow::Wait)
        .unwrap();
    bounded("write", s.write("pong")).await.unwrap();
    let mut back = [0u8; 4];
    theirs.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"pong");
    match bounded("Flushed", events.next()).await {
        Some(StreamEvent::Flushed) => {}
        other => panic!("{other:?}"),
    }
    theirs.write_all(b"last").await.unwrap();
    match bounded("Read", events.next()).await {
        Some(StreamEvent::Read(b)) => {
            assert_eq!(&b[..], b"last");
        }
        other => panic!("{other:?}"),
    }
    // The peer closes its write side: ReadEof; a read now is the end.
    theirs.shutdown().await.unwrap();
    match bounded("ReadEof", events.next()).await {
        Some(StreamEvent::ReadEof) => {}
        other => panic!("{other:?}"),
    }
    let (nothing, eof) = bounded("eof", s.read(ReadFor::Eof)).await.unwrap();
    assert_eq!((&nothing[..], eof), (&b""[..], true));
    // Half-close the other way: the peer sees EOF (a clean shutdown).
    s.shutdown_write().await.unwrap();
    let mut tail = Vec::new();
    bounded("peer eof", theirs.read_to_end(&mut tail))
        .await
        .unwrap();
    assert!(tail.is_empty());
    match bounded("WriteEof", events.next()).await {
        Some(StreamEvent::WriteEof) => {}
        other => panic!("{other:?}"),
    }
    s.close_when_empty().await.unwrap();
    bounded("closed", s.closed()).await;
}

flavours!(an_io_stream_pauses_reading_at_the_read_high_watermark_and_resumes_below_low);
async fn an_io_stream_pauses_reading_at_the_read_high_watermark_and_resumes_below_low() {
    let lp = test_loop();
    let (ours, mut theirs) = tokio::io::duplex(1 << 16);
    let limits = Limits {
        read_high: 256 << 10,
        read_low: 64 << 10,
        ..Limits::default()
    };
    let s = lp
        .add(Stream::spec_io("io", ours).limits(limits))
        .await
        .unwrap();
    // Nobody consumes: the buffer fills to the high watermark and reading
    // stops there; the peer's writes then block on the full pipe.
    let writer = tokio::spawn(async move {
        theirs.write_all(&vec![1u8; 4 << 20]).await.unwrap();
        theirs
    });
    let path = s.path().to_owned();
    bounded("reading paused", async {
        loop {
            let b = lp.tree().find(&path).and_then(|n| n.buffered).unwrap_or(0);
            if b >= limits.read_high as u64 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let info = s.info().await.unwrap();
    assert!(
        info.buffered < limits.read_high + limits.read_chunk,
        "{info:?}"
    );
    assert!(
        !writer.is_finished(),
        "the peer is held back by the full pipe"
    );
    // A subscriber consumes: reading resumes, the low-watermark event
    // comes, and all 4 MiB arrive.
    let mut events = s
        .events_with::<StreamEvent>(64, ioasync::notifier::Overflow::Wait)
        .unwrap();
    let (mut total, mut resumed) = (0usize, false);
    while total < 4 << 20 {
        match bounded("data", events.next()).await {
            Some(StreamEvent::Read(b)) => total += b.len(),
            Some(StreamEvent::ReadLowWatermark(n)) => {
                assert!(n <= limits.read_low, "{n}");
                resumed = true;
            }
            Some(StreamEvent::ReadHighWatermark(n)) => assert!(n >= limits.read_high),
            Some(other) => panic!("{other:?}"),
            None => panic!("closed early"),
        }
    }
    assert_eq!(total, 4 << 20);
    assert!(resumed, "the low-watermark event was emitted");
    drop(bounded("writer", writer).await.unwrap());
}

flavours!(an_io_stream_stopped_gracefully_flushes_what_it_accepted_then_closes);
async fn an_io_stream_stopped_gracefully_flushes_what_it_accepted_then_closes() {
    let lp = test_loop();
    // A pipe far smaller than what is queued: the stop must wait for the
    // peer to read it all.
    let (ours, mut theirs) = tokio::io::duplex(512);
    let s = lp.add(Stream::spec_io("io", ours)).await.unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
    let s2 = s.clone();
    let p2 = payload.clone();
    let w = tokio::spawn(async move { s2.write(p2).await });
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        got
    });
    // Wait until the write is queued (partly written), then stop.
    while s.info().await.unwrap().queued == 0 && !w.is_finished() {
        tokio::task::yield_now().await;
    }
    let _ = s.stop().await;
    bounded("stopped", s.wait_stopped()).await;
    let got = bounded("peer read to EOF", reader).await.unwrap();
    assert!(
        got == payload,
        "all {} bytes, then EOF (got {})",
        payload.len(),
        got.len()
    );
    bounded("write future", w).await.unwrap().unwrap();
}

flavours!(framed_lines_over_a_childs_stdout_pipe_reads_every_line_of_seq_in_order_then_eof);
async fn framed_lines_over_a_childs_stdout_pipe_reads_every_line_of_seq_in_order_then_eof() {
    let lp = test_loop();
    let mut child = std::process::Command::new("seq")
        .args(["1", "100000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("seq");
    let out = child.stdout.take().unwrap();
    let got = Arc::new(Mutex::new(Vec::with_capacity(100_000)));
    let g = got.clone();
    let spec = Framed::from_fds("seq", Some(out.into()), None, LineCodec::new())
        .unwrap()
        .on_frame(move |_io, line| g.lock().unwrap().push(line));
    let (sub, mut events) = Subscription::stream(16);
    let f = lp.add(Spec::from(spec).subscribe(sub)).await.unwrap();
    let mut eof = false;
    while let Some(ev) = bounded("events", events.next()).await {
        match ev {
            FramedEvent::ReadEof => {
                eof = true;
                assert_eq!(got.lock().unwrap().len(), 100_000, "every line before EOF");
            }
            FramedEvent::Closed => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(eof, "ReadEof came before Closed");
    bounded("stopped", f.wait_stopped()).await;
    let got = got.lock().unwrap();
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, l)| *l == (i + 1).to_string()),
        "every line in order"
    );
    assert!(child.wait().unwrap().success());
}

flavours!(framed_over_an_io_stream_decodes_and_sends_lines);
async fn framed_over_an_io_stream_decodes_and_sends_lines() {
    let lp = test_loop();
    let (ours, mut theirs) = tokio::io::duplex(256);
    let f = lp
        .add(
            Framed::spec_io("lines", ours, LineCodec::new())
                .on_frame(|io, line| io.send(line.to_uppercase()).unwrap()),
        )
        .await
        .unwrap();
    theirs.write_all(b"one\ntwo\n").await.unwrap();
    f.send("three".to_string()).await.unwrap();
    let mut got = Vec::new();
    while got.iter().filter(|b| **b == b'\n').count() < 3 {
        let mut b = [0u8; 64];
        let n = bounded("reply", theirs.read(&mut b)).await.unwrap();
        assert!(n > 0, "eof early");
        got.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["ONE", "TWO", "three"]);
    drop(theirs);
    bounded("closed at EOF", f.wait_stopped()).await;
}
