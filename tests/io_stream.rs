//! Streams on real loopback sockets: IO::Async's on_read contract, EOF,
//! backpressure, errors with errno, IPv6, fd hygiene.

#[macro_use]
mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ioasync::notifier::Overflow;
use ioasync::{
    Loop,
    io::{
        Address, Limits, Listen, ListenerRef, ReadAction, SockAddr, Stream, StreamEvent, StreamRef,
    },
    notifier::{IntoSpec, NotifierRef},
    test_util::Recorder,
};
use support::{bounded, test_loop};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

/// A raw tokio listener on loopback and a stream notifier over the
/// connection our Loop makes to it.
async fn pair_with<S>(
    lp: &Loop,
    build: impl FnOnce(ioasync::io::StreamSpec) -> S,
) -> (NotifierRef<Stream>, TcpStream)
where
    S: Into<ioasync::notifier::Spec<Stream>>,
{
    let raw = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = raw.local_addr().unwrap();
    let (conn, accepted) = tokio::join!(lp.connect(addr), raw.accept());
    let stream = lp
        .add(build(Stream::spec("s", conn.unwrap())))
        .await
        .unwrap();
    (stream, accepted.unwrap().0)
}

flavours!(on_read_contract_two_lines_in_one_packet_runs_the_handler_until_no_full_line_remains);
async fn on_read_contract_two_lines_in_one_packet_runs_the_handler_until_no_full_line_remains() {
    let lp = test_loop();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let done = Arc::new(Notify::new());
    let d = done.clone();
    let (_s, mut peer) = pair_with(&lp, |s| {
        s.on_read(move |_io, buf, eof| {
            // IO::Async style: take one line per call, ask to be called again.
            let mut calls = c.lock().unwrap();
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let line = buf.split_to(i + 1);
                    calls.push((String::from_utf8_lossy(&line).into_owned(), eof, "again"));
                    ReadAction::Again
                }
                None => {
                    calls.push((String::from_utf8_lossy(buf).into_owned(), eof, "wait"));
                    d.notify_one();
                    ReadAction::Wait
                }
            }
        })
    })
    .await;
    peer.write_all(b"one\ntwo\nthr").await.unwrap();
    bounded("handler waits", done.notified()).await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            ("one\n".to_string(), false, "again"),
            ("two\n".to_string(), false, "again"),
            ("thr".to_string(), false, "wait"),
        ]
    );
}

flavours!(eof_mid_line_delivers_the_partial_data_with_eof_set);
async fn eof_mid_line_delivers_the_partial_data_with_eof_set() {
    let lp = test_loop();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let (events, sub) = Recorder::new();
    let (_s, mut peer) = pair_with(&lp, |s| {
        s.on_read(move |_io, buf, eof| {
            // A line parser: consume whole lines only.
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(i + 1);
                s2.lock()
                    .unwrap()
                    .push((String::from_utf8_lossy(&line).into_owned(), eof));
            }
            if eof {
                s2.lock()
                    .unwrap()
                    .push((String::from_utf8_lossy(&buf.split()).into_owned(), eof));
            }
            ReadAction::Wait
        })
        .subscribe(sub)
    })
    .await;
    peer.write_all(b"whole\npartial line").await.unwrap();
    peer.shutdown().await.unwrap();
    let evs = bounded("closed", events.wait_len(2)).await;
    assert!(matches!(evs[0], StreamEvent::ReadEof), "{evs:?}");
    assert!(matches!(evs[1], StreamEvent::Closed), "{evs:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "whole\n");
    assert_eq!(seen[1], ("partial line".to_string(), true));
}

flavours!(backpressure_makes_writers_wait_at_the_high_watermark_and_loses_nothing);
async fn backpressure_makes_writers_wait_at_the_high_watermark_and_loses_nothing() {
    let lp = test_loop();
    let limits = Limits {
        write_high: 256 << 10,
        write_low: 128 << 10,
        ..Limits::default()
    };
    let (stream, mut peer) = pair_with(&lp, |s| s.limits(limits)).await;
    const CHUNK: usize = 64 << 10;
    const CHUNKS: usize = 512; // 32 MiB, far more than the kernel buffers
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stream, sent) = (stream.clone(), sent.clone());
        tokio::spawn(async move {
            for i in 0..CHUNKS {
                let chunk = vec![(i % 251) as u8; CHUNK];
                drop(stream.start_write(chunk).await.unwrap());
                sent.fetch_add(1, Ordering::SeqCst);
            }
            stream.close_when_empty().await.unwrap();
        })
    };
    // The peer reads nothing: the writer must block with the mailbox full
    // and the stream holding its high watermark.
    let path = stream.path().to_owned();
    bounded("mailbox fills", async {
        loop {
            let t = lp.tree();
            let node = t.find(&path).unwrap();
            if node.queue == Some(64)
                && node
                    .buffered
                    .is_some_and(|b| b as usize >= limits.write_high)
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let node = lp.tree().find(&path).unwrap().clone();
    let buffered = node.buffered.unwrap() as usize;
    assert!(
        buffered <= limits.write_high + CHUNK,
        "buffered {buffered} past the high watermark"
    );
    let accepted = sent.load(Ordering::SeqCst);
    assert!(accepted < CHUNKS / 2, "writer not held back: {accepted}");
    // Now read everything: every byte arrives, in order, then EOF.
    let mut got = Vec::with_capacity(CHUNK * CHUNKS);
    bounded("drain", peer.read_to_end(&mut got)).await.unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), CHUNK * CHUNKS);
    for (i, chunk) in got.chunks(CHUNK).enumerate() {
        assert!(chunk.iter().all(|b| *b == (i % 251) as u8), "chunk {i}");
    }
}

flavours!(connecting_to_a_refused_port_is_a_connect_error_with_econnrefused);
async fn connecting_to_a_refused_port_is_a_connect_error_with_econnrefused() {
    let lp = test_loop();
    // Bind then drop: the port is free and nobody listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = lp.connect(port).await.unwrap_err();
    assert_eq!(err.op(), "connect");
    assert_eq!(err.errno(), Some(libc_econnrefused()));
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

fn libc_econnrefused() -> i32 {
    std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
        .raw_os_error()
        .unwrap_or(111)
}

flavours!(an_unresolvable_name_is_a_resolve_error_not_a_connect_error);
async fn an_unresolvable_name_is_a_resolve_error_not_a_connect_error() {
    let lp = test_loop();
    let err = lp
        .connect(Address::inet("no-such-host.invalid", "80"))
        .await
        .unwrap_err();
    assert_eq!(err.op(), "resolve");
    assert!(err.is_resolve(), "{err}");
    let err = lp
        .resolve("localhost", "no-such-service")
        .await
        .unwrap_err();
    assert!(err.is_resolve(), "{err}");
}

flavours!(resolve_maps_service_names_and_numeric_hosts);
async fn resolve_maps_service_names_and_numeric_hosts() {
    let lp = test_loop();
    let addrs = lp.resolve("127.0.0.1", "http").await.unwrap();
    assert_eq!(addrs, vec!["127.0.0.1:80".parse().unwrap()]);
    let (host, serv) = ioasync::io::name_of("127.0.0.1:80".parse().unwrap(), true)
        .await
        .unwrap();
    assert_eq!((host.as_str(), serv.as_str()), ("127.0.0.1", "80"));
}

flavours!(writing_after_a_peer_reset_is_a_write_error_with_errno_as_event_and_future);
async fn writing_after_a_peer_reset_is_a_write_error_with_errno_as_event_and_future() {
    let lp = test_loop();
    let (events, sub) = Recorder::new();
    let (stream, peer) = pair_with(&lp, |s| s.subscribe(sub)).await;
    // Stop reading so the reset is seen by a write, not a read.
    stream.want_read(false).await.unwrap();
    let peer = peer.into_std().unwrap();
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer); // RST
    let mut err = None;
    for _ in 0..100 {
        match stream.write(vec![0u8; 1024]).await {
            Ok(()) => tokio::task::yield_now().await,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("a write failed");
    assert_eq!(err.op(), "write", "{err}");
    let errno = err.errno().expect("errno kept");
    assert!(
        errno == 32 || errno == 104,
        "EPIPE or ECONNRESET, got {errno}"
    );
    let evs = bounded("events", events.wait_len(2)).await;
    let StreamEvent::WriteError(ev) = &evs[0] else {
        panic!("{evs:?}")
    };
    assert_eq!(ev.errno(), Some(errno));
    assert!(matches!(evs[1], StreamEvent::Closed));
}

flavours!(ipv6_listen_on_loopback_and_connect);
async fn ipv6_listen_on_loopback_and_connect() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: this machine has no IPv6 loopback (::1)");
        return;
    }
    let lp = test_loop();
    let listener = lp
        .listen(
            "v6",
            Listen::new("[::1]:0".parse::<Address>().unwrap()).v6only(true),
            |conn, _| {
                Stream::spec("echo", conn).on_read(|io, buf, _| {
                    io.write(buf.split().freeze());
                    ReadAction::Wait
                })
            },
        )
        .await
        .unwrap();
    let SockAddr::Inet(addr) = listener.local_addr().await.unwrap() else {
        panic!("inet")
    };
    assert!(addr.is_ipv6());
    let conn = lp
        .connect(Address::inet("::1", addr.port().to_string()))
        .await
        .unwrap();
    let ioasync::io::Connection::Tcp(mut tcp) = conn else {
        panic!("tcp")
    };
    assert!(tcp.peer_addr().unwrap().is_ipv6());
    tcp.write_all(b"over six").await.unwrap();
    let mut buf = [0u8; 8];
    bounded("echo", tcp.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"over six");
}

flavours!(a_graceful_shutdown_flushes_what_a_stream_accepted);
async fn a_graceful_shutdown_flushes_what_a_stream_accepted() {
    let lp = test_loop();
    let (stream, mut peer) = pair_with(&lp, |s| s).await;
    stream.want_read(false).await.unwrap();
    for i in 0..100u8 {
        drop(stream.start_write(vec![i; 1000]).await.unwrap());
    }
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        got
    });
    let report = lp.shutdown(Some(Duration::from_secs(5))).await;
    assert!(report.is_clean());
    let got = bounded("reader", reader).await.unwrap();
    assert_eq!(got.len(), 100 * 1000);
    assert!(
        got.chunks(1000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == i as u8))
    );
}

flavours!(half_close_shuts_our_write_side_and_keeps_reading);
async fn half_close_shuts_our_write_side_and_keeps_reading() {
    let lp = test_loop();
    let (events, sub) = Recorder::new();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let (stream, mut peer) = pair_with(&lp, |s| {
        s.close_on_read_eof(true)
            .on_read(move |_io, buf, _eof| {
                g.lock().unwrap().extend_from_slice(&buf.split());
                ReadAction::Wait
            })
            .subscribe(sub)
    })
    .await;
    stream.write("last words").await.unwrap();
    stream.shutdown_write().await.unwrap();
    // The peer sees our data, then EOF...
    let mut from_us = Vec::new();
    bounded("eof", peer.read_to_end(&mut from_us))
        .await
        .unwrap();
    assert_eq!(from_us, b"last words");
    // ...and can still talk to us.
    peer.write_all(b"reply after eof").await.unwrap();
    peer.shutdown().await.unwrap();
    let evs: Vec<StreamEvent> = bounded("events", events.wait_len(4))
        .await
        .into_iter()
        .filter(|e| !matches!(e, StreamEvent::Flushed))
        .collect();
    assert!(matches!(evs[0], StreamEvent::WriteEof), "{evs:?}");
    assert!(matches!(evs[1], StreamEvent::ReadEof), "{evs:?}");
    assert!(matches!(evs[2], StreamEvent::Closed), "{evs:?}");
    assert_eq!(&got.lock().unwrap()[..], b"reply after eof");
}

flavours!(reading_pauses_at_the_read_high_watermark_and_resumes_below_the_low_one);
async fn reading_pauses_at_the_read_high_watermark_and_resumes_below_the_low_one() {
    let lp = test_loop();
    let limits = Limits {
        read_high: 64 << 10,
        read_low: 16 << 10,
        read_chunk: 16 << 10,
        ..Limits::default()
    };
    // No on_read and no subscriber: nobody consumes, so data piles up.
    let (stream, mut peer) = pair_with(&lp, |s| s.limits(limits)).await;
    let writer = tokio::spawn(async move {
        let chunk = vec![1u8; 64 << 10];
        for _ in 0..64 {
            if peer.write_all(&chunk).await.is_err() {
                break;
            }
        }
        peer
    });
    let path = stream.path().to_owned();
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
    let info = stream.info().await.unwrap();
    assert!(
        info.buffered < limits.read_high + limits.read_chunk,
        "{info:?}"
    );
    assert!(
        !writer.is_finished(),
        "the peer is held back by TCP flow control"
    );
    // A subscriber consumes: reading resumes and all 4 MiB arrive.
    let mut reads = stream
        .events_with::<StreamEvent>(64, Overflow::Wait)
        .unwrap();
    let mut total = 0usize;
    // The already-buffered data is delivered with the next read.
    let mut peer = None;
    let mut writer = Some(writer);
    let mut resumed = false;
    while total < 64 * (64 << 10) {
        match bounded("data", reads.recv()).await {
            Some(StreamEvent::Read(b)) => total += b.len(),
            Some(StreamEvent::ReadLowWatermark(n)) => {
                assert!(n <= limits.read_low, "{n}");
                resumed = true;
            }
            Some(StreamEvent::ReadHighWatermark(n)) => assert!(n >= limits.read_high),
            Some(other) => panic!("{other:?}"),
            None => panic!("closed early"),
        }
        if total >= 64 * (64 << 10) - (1 << 20)
            && let Some(w) = writer.take()
        {
            peer = Some(bounded("writer", w).await.unwrap());
        }
    }
    assert_eq!(total, 64 * (64 << 10));
    assert!(resumed, "the low-watermark event was emitted");
    drop(peer);
}

flavours!(future_returning_reads_take_exactly_what_they_ask_for_in_order);
async fn future_returning_reads_take_exactly_what_they_ask_for_in_order() {
    use ioasync::io::ReadFor;
    let lp = test_loop();
    let (stream, mut peer) = pair_with(&lp, |s| s).await;
    peer.write_all(b"HEAD12345line one\nline two\nrest")
        .await
        .unwrap();
    let (head, eof) = stream.read(ReadFor::Exactly(4)).await.unwrap();
    assert_eq!((&head[..], eof), (&b"HEAD"[..], false));
    let (n, _) = stream.read(ReadFor::Exactly(5)).await.unwrap();
    assert_eq!(&n[..], b"12345");
    let (l1, _) = stream.read(ReadFor::Until(b"\n".to_vec())).await.unwrap();
    assert_eq!(&l1[..], b"line one\n");
    let (l2, _) = stream.read(ReadFor::Until(b"\n".to_vec())).await.unwrap();
    assert_eq!(&l2[..], b"line two\n");
    let (some, _) = stream.read(ReadFor::AtMost(2)).await.unwrap();
    assert_eq!(&some[..], b"re");
    // A read asked before the data arrives waits for it.
    let waiting = {
        let s = stream.clone();
        tokio::spawn(async move { s.read(ReadFor::Eof).await })
    };
    tokio::task::yield_now().await;
    peer.write_all(b" and the end").await.unwrap();
    peer.shutdown().await.unwrap();
    let (tail, eof) = bounded("eof", waiting).await.unwrap().unwrap();
    assert_eq!((&tail[..], eof), (&b"st and the end"[..], true));
}

flavours!(a_reply_written_by_on_read_is_flushed_in_its_turn_and_flushed_is_heard);
async fn a_reply_written_by_on_read_is_flushed_in_its_turn_and_flushed_is_heard() {
    // The end of a readiness turn that only wrote replies skips applying
    // its progress when nobody listens; with a subscriber, `Flushed` is
    // still emitted once per reply written whole, and a close asked for
    // by the reader still happens once the reply is out.
    let lp = test_loop();
    let (events, sub) = Recorder::new();
    let (_stream, mut peer) = pair_with(&lp, |s| {
        s.on_read(|io, buf, _eof| {
            let quit = buf.starts_with(b"quit");
            io.write_slice(&buf.split());
            if quit {
                io.close_when_empty();
            }
            ReadAction::Wait
        })
        .subscribe(sub)
    })
    .await;
    for (k, word) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        peer.write_all(word).await.unwrap();
        let mut back = vec![0u8; word.len()];
        bounded("the echo", peer.read_exact(&mut back))
            .await
            .unwrap();
        assert_eq!(back, word);
        bounded(
            "Flushed after the reply",
            events.wait_matching(k + 1, |e| matches!(e, StreamEvent::Flushed)),
        )
        .await;
    }
    peer.write_all(b"quit").await.unwrap();
    let mut rest = Vec::new();
    bounded(
        "the last reply, then the close",
        peer.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    assert_eq!(rest, b"quit");
    bounded(
        "Closed",
        events.wait_matching(1, |e| matches!(e, StreamEvent::Closed)),
    )
    .await;
    // With nobody listening, the close still comes after the reply.
    let (_quiet, mut peer) = pair_with(&lp, |s| {
        s.on_read(|io, buf, _eof| {
            io.write_slice(&buf.split());
            io.close_when_empty();
            ReadAction::Wait
        })
    })
    .await;
    peer.write_all(b"bye").await.unwrap();
    let mut rest = Vec::new();
    bounded(
        "the reply, then the close, unheard",
        peer.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    assert_eq!(rest, b"bye");
}
