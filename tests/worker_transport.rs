//! The socketpair bridge as a `Transport`: send, request with a reply,
//! serve bounding what is in flight, the peer's death as an event, and
//! each error's delivery classification, all through the trait, over
//! real socketpairs to this process and to a child process.

#[macro_use]
mod support;

use std::{
    os::fd::AsFd,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use ioasync::{
    channel::{BRIDGE_ADDRESS, SocketpairTransport},
    transport::{Delivery, PeerEvent, Transport},
};
use support::bounded;
use tokio::net::UnixStream;

const CHILD_ENV: &str = "IOASYNC_TEST_TRANSPORT_CHILD";
const MAX: usize = 1 << 20;
const LONG: Duration = Duration::from_secs(10);

fn be(n: u64) -> Bytes {
    Bytes::copy_from_slice(&n.to_be_bytes())
}

fn unbe(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

/// The child process: a transport over its stdin (our socketpair's other
/// end) serving `square` (n²), `fail` (a handler error) and `hang` (taken,
/// told back to the parent at `got`, never answered), until the parent
/// ends the link. Run by [`spawn_child`]; a no-op in the ordinary test run.
#[test]
fn transport_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let fd = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
    let sock = std::os::unix::net::UnixStream::from(fd);
    sock.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let t = SocketpairTransport::new(UnixStream::from_std(sock).unwrap(), MAX);
        let mut square = t.serve("square", 4).await.unwrap();
        let mut fail = t.serve("fail", 4).await.unwrap();
        let mut hang = t.serve("hang", 4).await.unwrap();
        let to_parent = t.clone();
        let mut held = Vec::new();
        loop {
            tokio::select! {
                r = square.recv() => {
                    let Some(r) = r else { break };
                    let n = unbe(r.frame());
                    r.reply(Ok(be(n * n))).await.unwrap();
                }
                r = fail.recv() => {
                    let Some(r) = r else { break };
                    r.reply(Err("no cheese".into())).await.unwrap();
                }
                r = hang.recv() => {
                    let Some(r) = r else { break };
                    to_parent.send("got", r.frame().clone()).await.unwrap();
                    held.push(r);
                }
            }
        }
    });
    std::process::exit(0);
}

/// Starts this test binary again as [`transport_child`] over a
/// socketpair; returns it (killed when dropped) and our transport.
fn spawn_child() -> (tokio::process::Child, SocketpairTransport) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "transport_child", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    ours.set_nonblocking(true).unwrap();
    let t = SocketpairTransport::new(UnixStream::from_std(ours).unwrap(), MAX);
    (child, t)
}

/// A transport pair over a socketpair in this process.
fn pair() -> (SocketpairTransport, SocketpairTransport) {
    let (a, b) = UnixStream::pair().unwrap();
    (
        SocketpairTransport::new(a, MAX),
        SocketpairTransport::new(b, MAX),
    )
}

/// Sends `n` frames to `to` through any transport.
async fn send_numbered<T: Transport>(t: &T, to: &str, n: u64) {
    for i in 0..n {
        t.send(to, be(i)).await.unwrap();
    }
}

flavours!(send_reaches_the_served_address_in_order_and_waits_for_a_late_server);
async fn send_reaches_the_served_address_in_order_and_waits_for_a_late_server() {
    let (a, b) = pair();
    // Sent before anybody serves it: it waits, it is not dropped.
    a.send("late", Bytes::from_static(b"early bird"))
        .await
        .unwrap();
    let mut late = b.serve("late", 1).await.unwrap();
    let r = bounded("the early frame", late.recv()).await.unwrap();
    assert_eq!(&r.frame()[..], b"early bird");
    assert!(!r.wants_reply());
    // In order, to a named address and to the bridge's.
    let mut jobs = b.serve("jobs", 8).await.unwrap();
    let mut bare = b.serve(BRIDGE_ADDRESS, 8).await.unwrap();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move { send_numbered(&a, "jobs", 1_000).await })
    };
    for want in 0..1_000u64 {
        let r = bounded("a job", jobs.recv()).await.unwrap();
        assert_eq!(unbe(r.frame()), want);
    }
    sender.await.unwrap();
    // Frames the bridge's bare format cannot carry (empty, starting with
    // the tag byte) arrive intact.
    for f in [
        Bytes::new(),
        Bytes::from_static(&[0xC1, 1, 2]),
        Bytes::from_static(b"x"),
    ] {
        a.send(BRIDGE_ADDRESS, f.clone()).await.unwrap();
        let r = bounded("a bridge frame", bare.recv()).await.unwrap();
        assert_eq!(r.frame(), &f);
    }
    // The peer's end ends every served address cleanly.
    a.finish().await;
    assert!(bounded("jobs' end", jobs.recv()).await.is_none());
    assert!(bounded("late's end", late.recv()).await.is_none());
    assert!(matches!(b.incoming_end(), Some(Ok(()))));
    // After its own end a side sends nothing: not delivered.
    let e = a.send("jobs", be(1)).await.unwrap_err();
    assert_eq!(e.delivery(), Delivery::NotDelivered, "{e}");
}

flavours!(a_child_process_answers_requests_and_each_failure_says_whether_it_was_delivered);
async fn a_child_process_answers_requests_and_each_failure_says_whether_it_was_delivered() {
    let (mut child, t) = spawn_child();
    // Answers, many at once over the one socket, each to its own caller.
    let mut calls = Vec::new();
    for n in 0..64u64 {
        let t = t.clone();
        calls.push(tokio::spawn(async move {
            (n, t.request("square", be(n), LONG).await)
        }));
    }
    for c in calls {
        let (n, got) = bounded("a square", c).await.unwrap();
        assert_eq!(unbe(&got.unwrap()), n * n);
    }
    // The handler failed: delivered, with its message.
    let e = t.request("fail", be(1), LONG).await.unwrap_err();
    assert_eq!(e.delivery(), Delivery::RemoteError, "{e}");
    assert!(e.may_have_been_delivered());
    assert!(e.to_string().contains("no cheese"), "{e}");
    // Nobody serves it: not delivered, safe to send again.
    let e = t.request("cube", be(1), LONG).await.unwrap_err();
    assert_eq!(e.delivery(), Delivery::NotDelivered, "{e}");
    assert!(!e.may_have_been_delivered());
    // Taken and never answered: past the deadline its fate is unknown.
    let mut got = t.serve("got", 4).await.unwrap();
    let e = t
        .request("hang", be(7), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(e.delivery(), Delivery::Unknown, "{e}");
    assert!(e.error().is_timeout(), "{e}");
    assert_eq!(unbe(bounded("got", got.recv()).await.unwrap().frame()), 7);
    // The child ends when we do.
    t.finish().await;
    let st = bounded("the child's exit", child.wait()).await.unwrap();
    assert!(st.success(), "{st}");
}

flavours!(the_childs_death_is_a_peer_down_event_and_fails_what_was_in_flight);
async fn the_childs_death_is_a_peer_down_event_and_fails_what_was_in_flight() {
    let (mut child, t) = spawn_child();
    let mut events = t.peer_events();
    let mut served = t.serve("square", 1).await.unwrap();
    assert_eq!(unbe(&t.request("square", be(9), LONG).await.unwrap()), 81);
    // A request the child holds when it dies.
    let mut got = t.serve("got", 4).await.unwrap();
    let in_flight = {
        let t = t.clone();
        tokio::spawn(async move { t.request("hang", be(3), LONG).await })
    };
    bounded("the child took it", got.recv()).await.unwrap();
    child.start_kill().unwrap();
    let down = bounded("peer down", async {
        loop {
            match events.recv().await.unwrap() {
                PeerEvent::Down { peer, reason } => break (peer, reason),
                PeerEvent::Up { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(down.1.contains("died"), "{down:?}");
    // In flight: it may have been handled. It fails at the death, not at
    // its deadline.
    let e = bounded("the in-flight request", in_flight)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.delivery(), Delivery::Unknown, "{e}");
    assert!(e.error().is_peer_died(), "{e}");
    // After: not delivered. What we served ends; the end says why.
    let e = t.request("square", be(2), LONG).await.unwrap_err();
    assert_eq!(e.delivery(), Delivery::NotDelivered, "{e}");
    assert!(bounded("served end", served.recv()).await.is_none());
    let end = t.incoming_end().unwrap().unwrap_err();
    assert!(end.is_peer_died(), "{end}");
    let _ = bounded("reaped", child.wait()).await;
}

flavours!(serve_holds_at_most_max_in_flight_unanswered_requests);
async fn serve_holds_at_most_max_in_flight_unanswered_requests() {
    const MAX_IN_FLIGHT: usize = 3;
    const CALLS: u64 = 20;
    let (client, server) = pair();
    let mut incoming = server.serve("work", MAX_IN_FLIGHT).await.unwrap();
    let mut calls = Vec::new();
    for n in 0..CALLS {
        let c = client.clone();
        calls.push(tokio::spawn(
            async move { c.request("work", be(n), LONG).await },
        ));
    }
    // Take as many as it hands over while none is answered.
    let mut held = Vec::new();
    for _ in 0..MAX_IN_FLIGHT {
        held.push(bounded("a request", incoming.recv()).await.unwrap());
    }
    // Full: the next one waits with the transport until one is answered.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), incoming.recv())
            .await
            .is_err(),
        "a request past max_in_flight was handed over"
    );
    let first = held.remove(0);
    let n = unbe(first.frame());
    first.reply(Ok(be(n + 1000))).await.unwrap();
    held.push(bounded("the next request", incoming.recv()).await.unwrap());
    // The rest, answered by tasks that count how many run at once.
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let answer = |r: ioasync::transport::Request| {
        let (running, most) = (running.clone(), most.clone());
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let n = unbe(r.frame());
            running.fetch_sub(1, Ordering::SeqCst);
            r.reply(Ok(be(n + 1000))).await.unwrap();
        })
    };
    let mut replies = Vec::new();
    for r in held.drain(..) {
        replies.push(answer(r));
    }
    for _ in MAX_IN_FLIGHT as u64 + 1..CALLS {
        let r = bounded("a request", incoming.recv()).await.unwrap();
        replies.push(answer(r));
    }
    for r in replies {
        r.await.unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= MAX_IN_FLIGHT, "{most:?}");
    for (n, c) in calls.into_iter().enumerate() {
        let got = bounded("a reply", c).await.unwrap().unwrap();
        assert_eq!(unbe(&got), n as u64 + 1000);
    }
}
