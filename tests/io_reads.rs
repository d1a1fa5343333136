//! Future-returning reads where they used to lose data or errors: at the
//! EOF of a child that exits at once, after the stream stopped, and on a
//! connection its peer resets.

#[macro_use]
mod support;

use ioasync::{
    io::{ReadFor, Stream, StreamRef},
    process::{Command, Process, Stdio},
};
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

flavours!(close_now_and_info_are_taken_at_once_while_writers_wait_on_a_peer_that_never_reads);
async fn close_now_and_info_are_taken_at_once_while_writers_wait_on_a_peer_that_never_reads() {
    use ioasync::io::Limits;
    let lp = test_loop();
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = raw.local_addr().unwrap();
    let (conn, accepted) = tokio::join!(lp.connect(addr), raw.accept());
    let limits = Limits {
        write_high: 256 << 10,
        write_low: 64 << 10,
        ..Limits::default()
    };
    let stream = lp
        .add(Stream::spec("s", conn.unwrap()).limits(limits))
        .await
        .unwrap();
    let _peer = accepted.unwrap().0; // never reads
    // Writers fill the kernel buffers, the write buffer to its high
    // watermark, then the mailbox, and wait.
    let writer = {
        let s = stream.clone();
        tokio::spawn(async move {
            loop {
                if s.start_write(vec![7u8; 64 << 10]).await.is_err() {
                    return;
                }
            }
        })
    };
    let path = stream.path().to_owned();
    bounded("the writers wait", async {
        loop {
            let t = lp.tree();
            let n = t.find(&path).unwrap();
            if n.queue == Some(64) && n.buffered.is_some_and(|b| b as usize >= limits.write_high) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Introspection and control do not wait for the peer.
    let one_second = std::time::Duration::from_secs(1);
    let info = support::bounded_for(one_second, "info", stream.info())
        .await
        .unwrap();
    assert!(info.queued >= limits.write_high, "{info:?}");
    support::bounded_for(one_second, "close_now", stream.close_now())
        .await
        .unwrap();
    support::bounded_for(one_second, "closed", stream.closed()).await;
    writer.abort();
}

flavours!(a_write_buffer_fails_or_drops_what_its_policy_names);
async fn a_write_buffer_fails_or_drops_what_its_policy_names() {
    use ioasync::{io::Limits, notifier::Overflow};
    use tokio::io::AsyncReadExt;
    let lp = test_loop();
    let limits = Limits {
        write_high: 256 << 10,
        write_low: 64 << 10,
        ..Limits::default()
    };
    const CHUNK: usize = 64 << 10;
    for (i, policy) in [Overflow::Fail, Overflow::DropNewest]
        .into_iter()
        .enumerate()
    {
        let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = raw.local_addr().unwrap();
        let (conn, accepted) = tokio::join!(lp.connect(addr), raw.accept());
        let stream = lp
            .add(
                Stream::spec(format!("w{i}"), conn.unwrap())
                    .limits(limits)
                    .write_overflow(policy),
            )
            .await
            .unwrap();
        let mut peer = accepted.unwrap().0; // not reading yet
        // Write until one is refused: the kernel buffers fill, then the
        // write buffer to its high watermark.
        let mut accepted_writes = Vec::new();
        let refusal = loop {
            let mut written = bounded("start_write", stream.start_write(vec![1u8; CHUNK]))
                .await
                .unwrap();
            // Through the mailbox, behind the write: once answered, the
            // write has been taken or refused (no timing guess).
            bounded("want_read", stream.want_read(true)).await.unwrap();
            match written.try_result() {
                Some(Err(e)) => break e,
                Some(Ok(())) => {}
                None => accepted_writes.push(written), // queued, not yet written
            }
            assert!(accepted_writes.len() < 1000, "never refused");
        };
        assert!(refusal.is_full(), "{refusal}");
        let named = format!(
            "write buffer of /w{i} is full ({} bytes)",
            limits.write_high
        );
        assert!(refusal.to_string().contains(&named), "{refusal}");
        if policy == Overflow::DropNewest {
            assert!(refusal.to_string().contains("dropped"), "{refusal}");
        }
        // The stream goes on: the accepted writes are all written once the
        // peer reads, and nothing refused arrives.
        stream.close_when_empty().await.unwrap();
        let mut got = Vec::new();
        bounded("read", peer.read_to_end(&mut got)).await.unwrap();
        for written in accepted_writes {
            bounded("written", written).await.unwrap();
        }
        assert_eq!(got.len() % CHUNK, 0, "whole writes only");
    }
}

flavours!(a_write_buffer_under_drop_oldest_drops_the_oldest_whole_writes_and_keeps_the_newest);
async fn a_write_buffer_under_drop_oldest_drops_the_oldest_whole_writes_and_keeps_the_newest() {
    use ioasync::{io::Limits, notifier::Overflow};
    use tokio::io::AsyncReadExt;
    let lp = test_loop();
    let limits = Limits {
        write_high: 256 << 10,
        write_low: 64 << 10,
        ..Limits::default()
    };
    const CHUNK: usize = 64 << 10;
    // More than loopback's kernel buffers can hold: most must be dropped.
    const WRITES: u16 = 400;
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = raw.local_addr().unwrap();
    let (conn, accepted) = tokio::join!(lp.connect(addr), raw.accept());
    let stream = lp
        .add(
            Stream::spec("w-oldest", conn.unwrap())
                .limits(limits)
                .write_overflow(Overflow::DropOldest),
        )
        .await
        .unwrap();
    let mut peer = accepted.unwrap().0; // not reading yet
    let mut dones = Vec::new();
    for i in 0..WRITES {
        let mut chunk = vec![0xAAu8; CHUNK];
        chunk[..2].copy_from_slice(&i.to_be_bytes());
        // Never waits: the newest is always taken.
        let written = bounded("write", stream.start_write(chunk)).await.unwrap();
        dones.push(written);
    }
    let info = stream.info().await.unwrap();
    assert!(
        info.queued <= limits.write_high + CHUNK,
        "queued {} bytes: the bound holds (the newest write beyond it at most)",
        info.queued
    );
    stream.close_when_empty().await.unwrap();
    let mut got = Vec::new();
    bounded("read", peer.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got.len() % CHUNK, 0, "whole writes only");
    let tags: Vec<u16> = got
        .chunks(CHUNK)
        .map(|c| {
            assert!(c[2..].iter().all(|&b| b == 0xAA), "a write arrived cut");
            u16::from_be_bytes([c[0], c[1]])
        })
        .collect();
    assert!(tags.windows(2).all(|w| w[0] < w[1]), "in order: {tags:?}");
    assert_eq!(tags.last(), Some(&(WRITES - 1)), "the newest is kept");
    let mut written = Vec::new();
    for (i, rx) in dones.into_iter().enumerate() {
        match bounded("done", rx).await {
            Ok(()) => written.push(i as u16),
            Err(e) => assert!(
                e.is_full()
                    && e.to_string().contains("dropped (the oldest write)")
                    && e.to_string().contains("/w-oldest"),
                "{e}"
            ),
        }
    }
    assert_eq!(written, tags, "the futures tell what was written");
    assert!(written.len() < WRITES as usize, "some writes were dropped");
}
