//! Listeners: supervised connection children, restart with re-bind, and
//! typed frames over streams.

#[macro_use]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use ioasync::{
    io::codec::LineCodec,
    io::{Address, Framed, FramedRef, Listen, Listener, ListenerRef, ReadAction, Stream},
    notifier::IntoSpec,
    supervision::{Backoff, ExitReason, Restart, SupervisionEventKind},
};
use support::{bounded, test_loop, wait_event};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn local() -> Listen {
    Listen::new("127.0.0.1:0".parse::<Address>().unwrap())
}

flavours!(a_crashing_connection_handler_never_takes_the_listener_down);
async fn a_crashing_connection_handler_never_takes_the_listener_down() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let n = AtomicU64::new(0);
    let listener = lp
        .listen("srv", local(), move |conn, _| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            Stream::spec(format!("conn-{i}"), conn).on_read(|io, buf, _| {
                if buf.starts_with(b"boom") {
                    panic!("handler crashed on purpose");
                }
                io.write(buf.split().freeze());
                ReadAction::Wait
            })
        })
        .await
        .unwrap();
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"boom").await.unwrap();
    let ev = wait_event(&mut events, |e| {
        e.path == "/srv/conn-0" && matches!(e.what, SupervisionEventKind::Exited(_))
    })
    .await;
    let SupervisionEventKind::Exited(ExitReason::Panicked { message: msg, .. }) = ev.what else {
        panic!("{ev:?}")
    };
    assert_eq!(msg, "handler crashed on purpose");
    // The crashed connection is closed, not restarted...
    let mut rest = Vec::new();
    bounded("bad closed", bad.read_to_end(&mut rest))
        .await
        .unwrap();
    // ...and the listener serves the next one.
    let mut good = TcpStream::connect(addr).await.unwrap();
    good.write_all(b"fine").await.unwrap();
    let mut buf = [0u8; 4];
    bounded("echo", good.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"fine");
    assert_eq!(listener.restarts(), 0);
}

flavours!(a_failed_listener_is_restarted_by_its_supervisor_and_binds_again);
async fn a_failed_listener_is_restarted_by_its_supervisor_and_binds_again() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let crashed = Arc::new(AtomicBool::new(false));
    let c = crashed.clone();
    let spec = Listener::spec("srv", Listen::new(port), move |conn, _| {
        if !c.swap(true, Ordering::SeqCst) {
            panic!("listener's on_stream failed");
        }
        Stream::spec("conn", conn).on_read(|io, buf, _| {
            io.write(buf.split().freeze());
            ReadAction::Wait
        })
    })
    .restart(Restart::Permanent)
    .backoff(Backoff::new(
        Duration::from_millis(20),
        2.0,
        Duration::from_secs(1),
    ));
    let listener = lp.add(spec).await.unwrap();
    let first = TcpStream::connect(port).await.unwrap();
    let ev = wait_event(&mut events, |e| {
        matches!(e.what, SupervisionEventKind::Restarted { .. })
    })
    .await;
    assert_eq!(ev.path, "/srv");
    drop(first);
    let mut again = TcpStream::connect(port).await.unwrap();
    again.write_all(b"back").await.unwrap();
    let mut buf = [0u8; 4];
    bounded("echo after re-bind", again.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"back");
    assert_eq!(listener.restarts(), 1);
}

flavours!(framed_line_streams_carry_typed_frames_both_ways);
async fn framed_line_streams_carry_typed_frames_both_ways() {
    let lp = test_loop();
    let listener = lp
        .listen("lines", local(), |conn, _| {
            Framed::spec("conn", conn, LineCodec::new_with_max_length(1024)).on_frame(
                |io, line: String| {
                    let reply = line.chars().rev().collect::<String>();
                    io.send(reply).expect("encode");
                },
            )
        })
        .await
        .unwrap();
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    let conn = lp.connect(addr).await.unwrap();
    let (recorder, sub) = ioasync::test_util::Recorder::new();
    let client = lp
        .add(Framed::spec("client", conn, LineCodec::new()).subscribe(sub))
        .await
        .unwrap();
    for w in ["hello", "world"] {
        client.send(w.to_string()).await.unwrap();
    }
    let frames: Vec<String> = bounded(
        "frames",
        recorder.wait_matching(2, |e| matches!(e, ioasync::io::FramedEvent::Read(_))),
    )
    .await
    .into_iter()
    .filter_map(|e| match e {
        ioasync::io::FramedEvent::Read(s) => Some(s),
        _ => None,
    })
    .collect();
    assert_eq!(frames, ["olleh", "dlrow"]);
}

flavours!(an_oversized_frame_is_a_decode_error_and_the_stream_goes_on);
async fn an_oversized_frame_is_a_decode_error_and_the_stream_goes_on() {
    let lp = test_loop();
    let (recorder, sub) = ioasync::test_util::Recorder::new();
    let sub = std::sync::Mutex::new(Some(sub));
    let listener = lp
        .listen("lines", local(), move |conn, _| {
            let mut spec =
                Framed::spec("conn", conn, LineCodec::new_with_max_length(16)).into_spec();
            if let Some(s) = sub.lock().unwrap().take() {
                spec = spec.subscribe(s);
            }
            spec
        })
        .await
        .unwrap();
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&[b'x'; 100]).await.unwrap();
    c.write_all(b"\nshort\n").await.unwrap();
    let evs = bounded("events", recorder.wait_len(2)).await;
    let ioasync::io::FramedEvent::DecodeError(e) = &evs[0] else {
        panic!("{evs:?}")
    };
    assert_eq!(e.op(), "decode");
    // The connection goes on: the next line is a frame.
    assert!(
        matches!(&evs[1], ioasync::io::FramedEvent::Read(l) if l == "short"),
        "{evs:?}"
    );
    drop(c);
}

flavours!(length_delimited_frames_round_trip);
async fn length_delimited_frames_round_trip() {
    use bytes::Bytes;
    use ioasync::io::codec::LengthDelimitedCodec;
    let lp = test_loop();
    let listener = lp
        .listen("ld", local(), |conn, _| {
            Framed::spec("conn", conn, LengthDelimitedCodec::new()).on_frame(|io, frame| {
                let mut v = frame.to_vec();
                v.reverse();
                io.send(Bytes::from(v)).expect("encode");
            })
        })
        .await
        .unwrap();
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&[0, 0, 0, 3, b'a', b'b', b'c']).await.unwrap();
    let mut back = [0u8; 7];
    bounded("frame", c.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, [0, 0, 0, 3, b'c', b'b', b'a']);
}

flavours!(future_forms_next_accept_and_stream_closed);
async fn future_forms_next_accept_and_stream_closed() {
    use ioasync::io::StreamRef;
    let lp = test_loop();
    let listener = lp
        .listen("f", local(), |conn, _| {
            Stream::spec("conn", conn).on_read(|io, buf, _| {
                io.write_slice(buf);
                buf.clear();
                ReadAction::Wait
            })
        })
        .await
        .unwrap();
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    // The tap is made by the call: the accept below is not missed.
    let accept = tokio::spawn(listener.next_accept());
    let conn = lp.connect(addr).await.unwrap();
    let (peer, path) = bounded("accept", accept).await.unwrap().unwrap();
    assert_eq!(path, "/f/conn");
    assert!(peer.as_inet().is_some());
    let s = lp.add(Stream::spec("client", conn)).await.unwrap();
    s.close_now().await.unwrap();
    bounded("closed", s.closed()).await;
    assert!(!s.is_alive());
}

flavours!(
    serve_with_max_in_flight_four_runs_at_most_four_handlers_over_a_thousand_pipelined_frames
);
async fn serve_with_max_in_flight_four_runs_at_most_four_handlers_over_a_thousand_pipelined_frames()
{
    use std::sync::atomic::AtomicUsize;
    let lp = test_loop();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let listener = lp
        .listen("serve", local(), move |conn, _| {
            let (r, m) = (r.clone(), m.clone());
            Framed::spec("conn", conn, LineCodec::new()).serve(4, move |line: String| {
                let (r, m) = (r.clone(), m.clone());
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    // Finish out of order: later frames sometimes first.
                    let n: usize = line.parse().unwrap();
                    for _ in 0..(n * 7) % 5 {
                        tokio::task::yield_now().await;
                    }
                    r.fetch_sub(1, Ordering::SeqCst);
                    Some(format!("re {line}"))
                }
            })
        })
        .await
        .unwrap();
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    let c = TcpStream::connect(addr).await.unwrap();
    let (rd, mut wr) = c.into_split();
    let all: String = (0..1000).map(|i| format!("{i}\n")).collect();
    wr.write_all(all.as_bytes()).await.unwrap(); // one write: 1,000 frames
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(rd));
    for i in 0..1000 {
        let line = bounded("reply", lines.next_line()).await.unwrap().unwrap();
        assert_eq!(line, format!("re {i}"), "replies in frame order");
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        4,
        "never more than 4 handlers at once"
    );
}

/// A framed echo server whose handler takes `work` per frame (but for the
/// frame `first`), journalling `start LINE` as each handler begins.
async fn slow_server(
    lp: &ioasync::Loop,
    name: &str,
    work: Duration,
    stop_timeout: Duration,
    started: &ioasync::test_util::Journal,
) -> std::net::SocketAddr {
    let started = started.clone();
    let listener = lp
        .listen(name, local(), move |conn, _| {
            let started = started.clone();
            Framed::spec("conn", conn, LineCodec::new())
                .serve(16, move |line: String| {
                    started.record(format!("start {line}"));
                    async move {
                        if line != "first" {
                            tokio::time::sleep(work).await;
                        }
                        Some(format!("done {line}"))
                    }
                })
                .into_spec()
                .stop_timeout(stop_timeout)
        })
        .await
        .unwrap();
    listener.local_addr().await.unwrap().as_inet().unwrap()
}

type Replies = tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>;

/// Connects, sends four requests, and waits until their handlers run.
async fn four_requests(
    addr: std::net::SocketAddr,
    started: &ioasync::test_util::Journal,
) -> (Replies, tokio::net::tcp::OwnedWriteHalf) {
    let c = TcpStream::connect(addr).await.unwrap();
    let (rd, mut wr) = c.into_split();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(rd));
    wr.write_all(b"first\n").await.unwrap();
    assert_eq!(
        bounded("first", lines.next_line()).await.unwrap().unwrap(),
        "done first"
    );
    wr.write_all(b"1\n2\n3\n4\n").await.unwrap();
    bounded("four running", started.wait_until(|v| v.len() == 5)).await;
    (lines, wr)
}

flavours!(shutdown_with_a_deadline_answers_the_requests_in_flight_before_closing);
async fn shutdown_with_a_deadline_answers_the_requests_in_flight_before_closing() {
    let lp = test_loop();
    let started = ioasync::test_util::Journal::new();
    let work = Duration::from_millis(200);
    let addr = slow_server(&lp, "drain", work, Duration::from_secs(10), &started).await;
    let (mut lines, _wr) = four_requests(addr, &started).await;
    let report = lp.shutdown(Some(Duration::from_secs(10))).await;
    assert!(report.is_clean(), "{report:?}");
    for i in 1..=4 {
        assert_eq!(
            bounded("a reply", lines.next_line())
                .await
                .unwrap()
                .unwrap(),
            format!("done {i}")
        );
    }
    assert_eq!(bounded("closed", lines.next_line()).await.unwrap(), None);
}

flavours!(shutdown_with_a_deadline_shorter_than_the_handlers_cuts_and_names_the_connection);
async fn shutdown_with_a_deadline_shorter_than_the_handlers_cuts_and_names_the_connection() {
    let lp = test_loop();
    let started = ioasync::test_util::Journal::new();
    let work = Duration::from_secs(30);
    let addr = slow_server(&lp, "cut", work, Duration::from_secs(60), &started).await;
    let (mut lines, _wr) = four_requests(addr, &started).await;
    let report = lp.shutdown(Some(Duration::from_millis(200))).await;
    assert!(
        report.overran.iter().any(|p| p == "/cut/conn"),
        "{report:?}"
    );
    // Cut: closed without the replies.
    assert!(matches!(
        bounded("closed", lines.next_line()).await,
        Ok(None) | Err(_)
    ));
}
