//! IO::Async parity (issue 12): pending socket errors, `read_len` as a
//! maximum, regular files as always-ready handles, nested runs, and the
//! Loop's and streams' smaller IO::Async methods — each as IO::Async's
//! documentation describes it.

#[macro_use]
mod support;

use std::{
    os::fd::OwnedFd,
    pin::Pin,
    sync::{Arc, Mutex},
    task::Poll,
};

use ioasync::{
    io::{
        Dest, Handle, HandleEvent, IoDirs, IoWatch, Limits, ReadAction, Socket, SocketEvent,
        SocketRef, Stream,
    },
    notifier::Spec,
    test_util::Recorder,
};
use support::{bounded, test_loop};
use tokio::{net::UdpSocket, sync::mpsc};

// IO::Async::Socket: a connected UDP socket whose peer port is closed
// gets the ICMP refusal as `on_recv_error` with ECONNREFUSED (111), and
// the socket stays in the loop.
flavours!(connected_udp_refusal_is_a_recv_error_111_and_the_socket_lives_on);
async fn connected_udp_refusal_is_a_recv_error_111_and_the_socket_lives_on() {
    let lp = test_loop();
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = gone.local_addr().unwrap();
    drop(gone);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(peer).await.unwrap();
    let (rec, sub) = Recorder::new();
    let sock = lp
        .add(Socket::udp("udp", client).subscribe(sub))
        .await
        .unwrap();
    for round in 1..=2 {
        sock.send_to("anyone?", Dest::Peer).await.unwrap();
        let evs = bounded("the refusal", rec.wait_len(round)).await;
        match &evs[round - 1] {
            SocketEvent::RecvError(e) => {
                assert_eq!(e.op(), "recv", "{e}");
                assert_eq!(e.errno(), Some(libc::ECONNREFUSED), "{e}");
                assert_eq!(e.errno(), Some(111));
            }
            other => panic!("expected a receive error, got {other:?}"),
        }
    }
    // It lives on: once something listens on the port, datagrams flow.
    let server = UdpSocket::bind(peer).await.unwrap();
    sock.send_to("hello", Dest::Peer).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = bounded("hello", server.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"hello");
    server.send_to(b"back", from).await.unwrap();
    let evs = bounded("the reply", rec.wait_len(3)).await;
    match &evs[2] {
        SocketEvent::Recv(d) => assert_eq!(&d.data[..], b"back"),
        other => panic!("expected the reply, got {other:?}"),
    }
    assert!(sock.is_alive());
}

// IO::Async::Stream `read_len`: at most that many bytes per read; the
// reader sees each chunk.
flavours!(read_chunk_is_a_maximum_a_7_byte_write_reads_as_2_2_2_1);
async fn read_chunk_is_a_maximum_a_7_byte_write_reads_as_2_2_2_1() {
    let lp = test_loop();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &theirs, b"1234567").unwrap();
    ours.set_nonblocking(true).unwrap();
    let ours = tokio::net::UnixStream::from_std(ours).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let limits = Limits {
        read_chunk: 2,
        ..Limits::default()
    };
    lp.add(
        Stream::spec("chunks", ours)
            .limits(limits)
            .on_read(move |_io, buf, _eof| {
                let _ = tx.send(buf.split().freeze());
                ReadAction::Wait
            }),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    while got.iter().map(|b: &bytes::Bytes| b.len()).sum::<usize>() < 7 {
        got.push(bounded("a chunk", rx.recv()).await.unwrap());
    }
    let sizes: Vec<usize> = got.iter().map(|b| b.len()).collect();
    assert_eq!(sizes, [2, 2, 2, 1]);
    assert_eq!(got.concat(), b"1234567");
    drop(theirs);
}

// IO::Async treats a regular file as always ready: a Handle over one is
// read-ready and write-ready at once (epoll itself refuses files, EPERM).
flavours!(a_handle_on_a_regular_file_is_read_and_write_ready_at_once);
async fn a_handle_on_a_regular_file_is_read_and_write_ready_at_once() {
    let lp = test_loop();
    let dir = support::fresh_dir("parity-file");
    let path = dir.join("f");
    std::fs::write(&path, b"hello").unwrap();
    let open = || -> OwnedFd {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap()
            .into()
    };
    // Events (no closures): both directions reported.
    let (rec, sub) = Recorder::new();
    let spec = Handle::spec("file-events", Some(open()), Some(open()))
        .unwrap()
        .want_write(true);
    lp.add(Spec::<Handle>::from(spec).subscribe(sub))
        .await
        .unwrap();
    let evs = bounded("both readinesses", rec.wait_len(2)).await;
    assert!(evs.contains(&HandleEvent::ReadReady), "{evs:?}");
    assert!(evs.contains(&HandleEvent::WriteReady), "{evs:?}");
    // Closures: the read gets the content, the write goes to the file.
    let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
    let (tr, tw) = (tx.clone(), tx);
    let content = Arc::new(Mutex::new(Vec::new()));
    let c = content.clone();
    lp.add(
        Handle::spec("file-io", Some(open()), Some(open()))
            .unwrap()
            .want_write(true)
            .on_read_ready(move |io| {
                let mut buf = [0u8; 64];
                let n = io.read(&mut buf).unwrap();
                c.lock().unwrap().extend_from_slice(&buf[..n]);
                io.want_read(false);
                let _ = tr.send("read");
            })
            .on_write_ready(move |io| {
                io.write(b"J").unwrap();
                io.want_write(false);
                let _ = tw.send("write");
            }),
    )
    .await
    .unwrap();
    let mut seen = vec![
        bounded("readiness", rx.recv()).await.unwrap(),
        bounded("readiness", rx.recv()).await.unwrap(),
    ];
    seen.sort();
    assert_eq!(seen, ["read", "write"]);
    assert_eq!(&content.lock().unwrap()[..], b"hello");
    assert_eq!(std::fs::read(&path).unwrap(), b"Jello");
    std::fs::remove_dir_all(&dir).unwrap();
}

// IO::Async::Handle: the other end hanging up is reported (on_hangup).
flavours!(a_handle_reports_the_hangup_of_its_pipe);
async fn a_handle_reports_the_hangup_of_its_pipe() {
    let lp = test_loop();
    let (rx, tx) = std::io::pipe().unwrap();
    let (rec, sub) = Recorder::new();
    let h = lp
        .add(Handle::spec("pipe", Some(OwnedFd::from(rx)), None).unwrap())
        .await
        .unwrap();
    h.subscribe(sub).unwrap();
    drop(tx);
    bounded("the hangup", async {
        let mut n = 1;
        while !rec.wait_len(n).await.contains(&HandleEvent::Hangup) {
            n += 1;
        }
    })
    .await;
    let hups = rec
        .events()
        .iter()
        .filter(|e| **e == HandleEvent::Hangup)
        .count();
    assert_eq!(hups, 1);
}

/// Polls `fut` once (it registers what it waits for).
async fn poll_once<F: Future>(fut: Pin<&mut F>) {
    let mut fut = Some(fut);
    std::future::poll_fn(|cx| {
        if let Some(f) = fut.take() {
            assert!(f.poll(cx).is_pending(), "finished at its first poll");
        }
        Poll::Ready(())
    })
    .await
}

// IO::Async::Loop `run` is re-entrant: a nested run is stopped by the
// innermost stop and returns its value; the outer run then gets its own.
flavours!(nested_runs_each_return_their_own_stop_value);
async fn nested_runs_each_return_their_own_stop_value() {
    let lp = test_loop();
    let outer = lp.run::<&'static str>();
    tokio::pin!(outer);
    poll_once(outer.as_mut()).await;
    assert!(lp.is_running());
    let inner = lp.run::<&'static str>();
    tokio::pin!(inner);
    poll_once(inner.as_mut()).await;
    lp.stop("inner");
    assert_eq!(bounded("the inner run", inner).await.unwrap(), "inner");
    // The outer run is still running: the inner stop was not its.
    poll_once(outer.as_mut()).await;
    assert!(lp.is_running());
    lp.stop("outer");
    assert_eq!(bounded("the outer run", outer).await.unwrap(), "outer");
    assert!(!lp.is_running());
    // Two stops at once: innermost first, then outward.
    let (a, b) = (lp.run::<u32>(), lp.run::<u32>());
    tokio::pin!(a, b);
    poll_once(a.as_mut()).await;
    poll_once(b.as_mut()).await;
    lp.stop(2u32);
    lp.stop(1u32);
    assert_eq!(bounded("inner", b).await.unwrap(), 2);
    assert_eq!(bounded("outer", a).await.unwrap(), 1);
    // A stop with no run waiting is kept for the next run.
    lp.stop(7u32);
    assert_eq!(bounded("next run", lp.run::<u32>()).await.unwrap(), 7);
}

// IO::Async::Loop `watch_io`: readiness callbacks on a raw fd, one per
// direction per fd (watching again replaces that direction's), level
// triggered (a callback that leaves data is called again, one that drained
// it is not), `unwatch_io` per direction, and `on_hangup`.
flavours!(watch_io_is_level_triggered_replaces_per_direction_and_unwatches);
async fn watch_io_is_level_triggered_replaces_per_direction_and_unwatches() {
    use std::io::{Read, Write};
    let lp = test_loop();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<(&'static str, Vec<u8>)>();
    let reader = |tag: &'static str| {
        let mut fd = a.try_clone().unwrap();
        let tx = tx.clone();
        move |_io: &mut ioasync::io::HandleIo<'_>| {
            let mut buf = [0u8; 2];
            match fd.read(&mut buf) {
                Ok(n) => tx.send((tag, buf[..n].to_vec())).unwrap(),
                Err(e) => tx.send(("spurious", e.to_string().into_bytes())).unwrap(),
            }
        }
    };
    let mut next = async || bounded("a callback", rx.recv()).await.unwrap();
    lp.watch_io(&a, IoWatch::new().on_read_ready(reader("r1")))
        .await
        .unwrap();
    (&b).write_all(b"abcde").unwrap();
    // Two bytes per call, called again while data is left.
    for want in [&b"ab"[..], b"cd", b"e"] {
        assert_eq!(next().await, ("r1", want.to_vec()));
    }
    // Write readiness on the same fd joins the watch (read kept).
    let t = tx.clone();
    lp.watch_io(
        &a,
        IoWatch::new().on_write_ready(move |io| {
            io.want_write(false);
            t.send(("w", Vec::new())).unwrap();
        }),
    )
    .await
    .unwrap();
    assert_eq!(next().await, ("w", Vec::new()));
    // Watching the read direction again replaces its callback.
    lp.watch_io(&a, IoWatch::new().on_read_ready(reader("r2")))
        .await
        .unwrap();
    (&b).write_all(b"x").unwrap();
    assert_eq!(next().await, ("r2", b"x".to_vec()));
    // Unwatched: data that arrives is left for the next watch, which sees
    // it at once.
    assert!(lp.unwatch_io(&a, IoDirs::READ).await);
    (&b).write_all(b"y").unwrap();
    let t = tx.clone();
    lp.watch_io(
        &a,
        IoWatch::new().on_hangup(move || t.send(("hup", Vec::new())).unwrap()),
    )
    .await
    .unwrap();
    lp.watch_io(&a, IoWatch::new().on_read_ready(reader("r3")))
        .await
        .unwrap();
    assert_eq!(next().await, ("r3", b"y".to_vec()));
    assert!(lp.unwatch_io(&a, IoDirs::READ | IoDirs::WRITE).await);
    // The hangup callback alone still hears the peer go.
    drop(b);
    assert_eq!(next().await, ("hup", Vec::new()));
    assert!(lp.unwatch_io(&a, IoDirs::ALL).await);
    assert!(!lp.unwatch_io(&a, IoDirs::ALL).await);
    // The watched fd itself stays open.
    assert!(nix::fcntl::fcntl(&a, nix::fcntl::FcntlArg::F_GETFD).is_ok());
    assert!(rx.try_recv().is_err(), "no spurious or late callback");
}

// Bad input is refused with the operation named.
flavours!(watch_io_without_a_callback_is_refused);
async fn watch_io_without_a_callback_is_refused() {
    let lp = test_loop();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let e = lp.watch_io(&a, IoWatch::new()).await.unwrap_err();
    assert_eq!(e.op(), "watch_io");
    assert!(e.is_invalid_input(), "{e}");
}

// IO::Async::Stream: `on_writeable_stop` fires when a write gets EAGAIN,
// `on_writeable_start` on the next write that goes through; a stream
// starts out writeable; `on_outgoing_empty` once all is written.
flavours!(writeable_stop_and_start_are_the_edges_of_a_blocked_peer_then_flushed);
async fn writeable_stop_and_start_are_the_edges_of_a_blocked_peer_then_flushed() {
    use ioasync::io::StreamEvent;
    use ioasync::prelude::*;
    use tokio::io::AsyncReadExt;
    const CHUNK: usize = 64 << 10;
    const TOTAL: usize = 16 << 20; // beyond loopback's kernel buffers
    let lp = test_loop();
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = raw.local_addr().unwrap();
    let (conn, accepted) = tokio::join!(lp.connect(addr), raw.accept());
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream =
        lp.add(Stream::spec("w", conn.unwrap()).subscribe(
            ioasync::notifier::Subscription::closure(move |e: StreamEvent| {
                if matches!(
                    e,
                    StreamEvent::WriteableStop | StreamEvent::WriteableStart | StreamEvent::Flushed
                ) {
                    let _ = tx.send(e);
                }
            }),
        ))
        .await
        .unwrap();
    let mut peer = accepted.unwrap().0; // not reading yet
    let writer = tokio::spawn({
        let stream = stream.clone();
        async move {
            for _ in 0..TOTAL / CHUNK {
                drop(stream.start_write(vec![7u8; CHUNK]).await.unwrap());
            }
        }
    });
    // Nothing is read: the first edge is a stop, and nothing flushed yet
    // can outrun it for long.
    let first = loop {
        match bounded("the first edge", events.recv()).await.unwrap() {
            StreamEvent::Flushed => continue, // small early writes drained
            e => break e,
        }
    };
    assert!(matches!(first, StreamEvent::WriteableStop), "{first:?}");
    // Now the peer reads it all: writeable again, then flushed.
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 20];
    while got < TOTAL {
        let n = bounded("read", peer.read(&mut buf)).await.unwrap();
        assert!(n > 0, "the stream closed early");
        got += n;
    }
    bounded("the writer", writer).await.unwrap();
    let mut edges = vec![first];
    loop {
        let e = bounded("the flush", events.recv()).await.unwrap();
        let done = matches!(e, StreamEvent::Flushed)
            && matches!(edges.last(), Some(StreamEvent::WriteableStart))
            && stream.info().await.unwrap().queued == 0;
        edges.push(e);
        if done {
            break;
        }
    }
    // Stop and start alternate, stop first; the last edge is a start.
    let flips: Vec<_> = edges
        .iter()
        .filter(|e| !matches!(e, StreamEvent::Flushed))
        .collect();
    for (i, e) in flips.iter().enumerate() {
        let want_stop = i % 2 == 0;
        assert_eq!(
            matches!(e, StreamEvent::WriteableStop),
            want_stop,
            "edge {i} of {flips:?}"
        );
    }
    assert!(flips.len() >= 2 && flips.len() % 2 == 0, "{flips:?}");
}

// IO::Async::Stream `push_on_read`: a FIFO of temporary readers that take
// precedence over `on_read`; one that returns undef (`Done`) is shifted
// off and the next one (or `on_read`) takes what is left at once.
flavours!(pushed_readers_take_precedence_in_order_until_done_then_on_read_gets_the_rest);
async fn pushed_readers_take_precedence_in_order_until_done_then_on_read_gets_the_rest() {
    use ioasync::io::{PushedRead, StreamRef};
    use tokio::io::AsyncWriteExt;
    let lp = test_loop();
    let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
    let (tx, mut got) = mpsc::unbounded_channel::<String>();
    let main = tx.clone();
    let stream = lp
        .add(Stream::spec("s", ours).on_read(move |_io, buf, eof| {
            if !buf.is_empty() {
                let _ = main.send(format!("main:{}", String::from_utf8_lossy(&buf.split())));
            }
            if eof {
                let _ = main.send("main:eof".into());
            }
            ReadAction::Wait
        }))
        .await
        .unwrap();
    // A header reader: exactly 4 bytes, then done. It pushes a second
    // reader (a 3-byte one) from inside itself.
    let t1 = tx.clone();
    let t2 = tx.clone();
    stream
        .push_on_read(move |io, buf, _eof| {
            if buf.len() < 4 {
                return PushedRead::Wait; // keeps precedence: on_read waits too
            }
            let head = buf.split_to(4);
            let _ = t1.send(format!("head:{}", String::from_utf8_lossy(&head)));
            let t2 = t2.clone();
            io.push_on_read(move |_io, buf, _eof| {
                if buf.len() < 3 {
                    return PushedRead::Wait;
                }
                let _ = t2.send(format!("len:{}", String::from_utf8_lossy(&buf.split_to(3))));
                PushedRead::Done
            });
            PushedRead::Done
        })
        .await
        .unwrap();
    theirs.write_all(b"HE").await.unwrap();
    theirs.write_all(b"AD12").await.unwrap();
    let first = bounded("head", got.recv()).await.unwrap();
    assert_eq!(first, "head:HEAD");
    theirs.write_all(b"3body").await.unwrap();
    let mut rest = vec![bounded("len", got.recv()).await.unwrap()];
    assert_eq!(rest[0], "len:123");
    // on_read gets what follows, and the end.
    theirs.shutdown().await.unwrap();
    while rest.last().map(String::as_str) != Some("main:eof") {
        rest.push(bounded("main", got.recv()).await.unwrap());
    }
    let body: String = rest[1..rest.len() - 1]
        .iter()
        .map(|s| s.strip_prefix("main:").unwrap())
        .collect();
    assert_eq!(body, "body");
}

// IO::Async::Handle `close_read` / `close_write`: each closes one half;
// `on_closed` and the removal from the loop come once both are closed.
flavours!(close_read_closes_one_half_and_the_stream_closes_once_both_are);
async fn close_read_closes_one_half_and_the_stream_closes_once_both_are() {
    use ioasync::io::{StreamEvent, StreamRef};
    use ioasync::prelude::*;
    use std::io::Write as _;
    // Over pipes: the read end closed means its writer gets EPIPE.
    let lp = test_loop();
    let (in_rd, mut in_wr) = std::io::pipe().unwrap();
    let (out_rd, out_wr) = std::io::pipe().unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let (rtx, mut reads) = mpsc::unbounded_channel::<Vec<u8>>();
    let stream = lp
        .add(
            Stream::from_fds("halves", Some(in_rd.into()), Some(out_wr.into()))
                .unwrap()
                .close_on_read_eof(false)
                .on_read(move |_io, buf, _eof| {
                    let _ = rtx.send(buf.split().to_vec());
                    ReadAction::Wait
                })
                .subscribe(ioasync::notifier::Subscription::closure(
                    move |e: StreamEvent| {
                        if matches!(e, StreamEvent::Closed | StreamEvent::WriteEof) {
                            let _ = tx.send(e);
                        }
                    },
                )),
        )
        .await
        .unwrap();
    in_wr.write_all(b"before").unwrap();
    assert_eq!(bounded("a read", reads.recv()).await.unwrap(), b"before");
    stream.close_read().await.unwrap();
    let err = in_wr.write_all(b"after").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    // The write half goes on: still open, still writing.
    assert!(stream.is_alive());
    stream.write(&b"still writing"[..]).await.unwrap();
    let mut out = std::fs::File::from(std::os::fd::OwnedFd::from(out_rd));
    let mut got = [0u8; 13];
    std::io::Read::read_exact(&mut out, &mut got).unwrap();
    assert_eq!(&got, b"still writing");
    // Closing the write half too closes the stream.
    stream.shutdown_write().await.unwrap();
    assert!(matches!(
        bounded("write eof", events.recv()).await.unwrap(),
        StreamEvent::WriteEof
    ));
    assert!(matches!(
        bounded("closed", events.recv()).await.unwrap(),
        StreamEvent::Closed
    ));
    bounded("the stream leaves", stream.wait_stopped()).await;
    assert!(reads.try_recv().is_err(), "nothing read after close_read");
    // A closed stream says so.
    let again = stream.close_read().await.unwrap_err();
    assert!(
        again.to_string().contains("close_read") || again.is_closed(),
        "{again}"
    );
}
