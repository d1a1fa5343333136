//! Future-returning reads where they used to lose data or errors: at the
//! EOF of a child that exits at once, after the stream stopped, and on a
//! connection its peer resets.

#[macro_use]
mod support;

use ioasync::{Command, Process, ReadFor, Stdio, Stream, StreamRef};
use support::{bounded, test_loop};

flavours!(read_until_on_a_child_that_writes_three_lines_and_exits_gets_them_then_the_end);
async fn read_until_on_a_child_that_writes_three_lines_and_exits_gets_them_then_the_end() {
    let lp = test_loop();
    for round in 0..1000 {
        let mut cmd = Command::new("printf");
        cmd.arg("a\\nb\\nc\\n").stdout(Stdio::stream(|s| s));
        let child = lp
            .open_process(Process::spec(format!("p{round}"), cmd))
            .await
            .unwrap();
        let out = child.stream(1).expect("the stdout stream");
        for want in ["a\n", "b\n", "c\n"] {
            let (got, _eof) = bounded("a line", out.read(ReadFor::Until(b"\n".to_vec())))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(&got[..], want.as_bytes(), "round {round}");
        }
        // Then the end of stream, as a value: no bytes, EOF.
        let (rest, eof) = bounded("the end", out.read(ReadFor::Until(b"\n".to_vec())))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(rest.is_empty() && eof, "round {round}: {rest:?} {eof}");
        assert!(bounded("exit", child.wait()).await.unwrap().success());
        // Also once the stream has stopped.
        bounded("stream stopped", out.wait_stopped()).await;
        let (rest, eof) = out.read(ReadFor::AtMost(10)).await.unwrap();
        assert!(rest.is_empty() && eof, "round {round}: after stop");
    }
}

flavours!(a_pending_read_on_a_connection_reset_by_its_peer_fails_with_econnreset);
async fn a_pending_read_on_a_connection_reset_by_its_peer_fails_with_econnreset() {
    let lp = test_loop();
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = raw.local_addr().unwrap();
    let (conn, accepted) = tokio::join!(lp.connect(addr), raw.accept());
    let stream = lp.add(Stream::spec("s", conn.unwrap())).await.unwrap();
    let peer = accepted.unwrap().0;
    let s = stream.clone();
    let read = tokio::spawn(async move { s.read(ReadFor::Exactly(10)).await });
    // The read is queued before this answer (one mailbox, in order).
    stream.info().await.unwrap();
    // A zero linger makes close send a reset.
    socket2::SockRef::from(&peer)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(peer);
    let err = bounded("the read", read).await.unwrap().unwrap_err();
    assert_eq!(err.errno(), Some(libc::ECONNRESET), "{err}");
    assert_eq!(err.op(), "read", "{err}");
    // A read after that gets the same error.
    let again = stream.read(ReadFor::AtMost(1)).await.unwrap_err();
    assert_eq!(again.errno(), Some(libc::ECONNRESET), "{again}");
}
