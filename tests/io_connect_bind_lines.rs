//! IO::Async parity for connecting and line framing: a local bind
//! address for connect (`local_addr` / `local_host`), and LineStream's
//! line endings (`\r?\n` read, `\r\n` written on request).

#[macro_use]
mod support;

use std::net::SocketAddr;

use futures_util::StreamExt;
use ioasync::{
    error::ErrorKind,
    io::codec::LineCodec,
    io::{
        Address, Connect, Connection, DatagramConnection, Framed, FramedEvent, FramedRef, StreamRef,
    },
    notifier::{Spec, Subscription},
};
use support::{bounded, test_loop};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

flavours!(connect_with_a_local_address_connects_from_it);
async fn connect_with_a_local_address_connects_from_it() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = server.local_addr().unwrap();
    // A literal socket address, and a host and service resolved.
    for target in [
        Address::Socket(to),
        format!("127.0.0.1:{}", to.port()).parse().unwrap(),
    ] {
        let (conn, accepted) = tokio::join!(
            Connect::new(target).bind(addr("127.0.0.2:0")),
            server.accept()
        );
        let (_, peer) = accepted.unwrap();
        assert_eq!(
            peer.ip().to_string(),
            "127.0.0.2",
            "the peer sees the local address"
        );
        let Connection::Tcp(s) = conn.unwrap() else {
            panic!("a TCP connection")
        };
        assert_eq!(s.local_addr().unwrap(), peer);
    }
    // A fixed local port.
    let port = std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (conn, accepted) = tokio::join!(
        Connect::new(Address::Socket(to)).bind(SocketAddr::from(([127, 0, 0, 3], port))),
        server.accept()
    );
    conn.unwrap();
    assert_eq!(
        accepted.unwrap().1,
        SocketAddr::from(([127, 0, 0, 3], port))
    );
}

flavours!(a_local_address_that_cannot_be_used_fails_naming_bind_and_the_address);
async fn a_local_address_that_cannot_be_used_fails_naming_bind_and_the_address() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = server.local_addr().unwrap();
    // The listener's own address is taken.
    let e = Connect::new(Address::Socket(to))
        .bind(to)
        .await
        .unwrap_err();
    assert_eq!(e.op(), "bind");
    assert_eq!(e.errno(), Some(libc::EADDRINUSE));
    assert!(e.to_string().contains(&to.to_string()), "{e}");
    // No address of the local address's family.
    let e = Connect::new(Address::Socket(to))
        .bind(addr("[::1]:0"))
        .await
        .unwrap_err();
    assert_eq!((e.op(), e.kind()), ("connect", ErrorKind::InvalidInput));
    assert!(e.to_string().contains("IPv6"), "{e}");
    // Unix sockets take none.
    let e = Connect::new(Address::unix("/nonexistent.sock"))
        .bind(addr("127.0.0.1:0"))
        .await
        .unwrap_err();
    assert_eq!((e.op(), e.kind()), ("connect", ErrorKind::InvalidInput));
}

flavours!(a_datagram_connect_with_a_local_address_sends_from_it);
async fn a_datagram_connect_with_a_local_address_sends_from_it() {
    let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = rx.local_addr().unwrap();
    let conn = Connect::new(Address::Socket(to))
        .bind(addr("127.0.0.2:0"))
        .datagram()
        .await
        .unwrap();
    let DatagramConnection::Udp(tx) = conn else {
        panic!("a UDP socket")
    };
    tx.send(b"from .2").await.unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = bounded("datagram", rx.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"from .2");
    assert_eq!(from, tx.local_addr().unwrap());
    assert_eq!(from.ip().to_string(), "127.0.0.2");
}

/// A framed LineCodec stream over an in-memory pipe: the `n` lines it
/// decoded of `input`, and what `send("x")` wrote.
async fn lines_through(codec: LineCodec, input: &[u8], n: usize) -> (Vec<String>, Vec<u8>) {
    let lp = test_loop();
    let (ours, mut theirs) = tokio::io::duplex(1024);
    let (sub, mut events) = Subscription::stream(64);
    let spec = Framed::spec_io("lines", ours, codec).close_on_read_eof(false);
    let f = lp.add(Spec::from(spec).subscribe(sub)).await.unwrap();
    theirs.write_all(input).await.unwrap();
    let mut got = Vec::new();
    while got.len() < n {
        match bounded("lines", events.next()).await.expect("open") {
            FramedEvent::Read(l) => got.push(l),
            FramedEvent::DecodeError(_) => {}
            other => panic!("{other:?}"),
        }
    }
    f.send("x".to_string()).await.unwrap();
    f.close_when_empty().await.unwrap();
    let mut written = Vec::new();
    bounded("written", theirs.read_to_end(&mut written))
        .await
        .unwrap();
    (got, written)
}

flavours!(line_framing_reads_crlf_and_lf_and_writes_crlf_when_asked);
async fn line_framing_reads_crlf_and_lf_and_writes_crlf_when_asked() {
    // IO::Async's LineStream: lines split on \r?\n, terminator stripped;
    // write_line appends \r\n.
    let input = b"one\r\ntwo\nthree\r\n";
    let (got, written) = lines_through(LineCodec::new().crlf(), input, 3).await;
    assert_eq!(got, ["one", "two", "three"]);
    assert_eq!(written, b"x\r\n");
    let (got, written) = lines_through(LineCodec::new(), input, 3).await;
    assert_eq!(got, ["one", "two", "three"]);
    assert_eq!(written, b"x\n");
    // Too long a line is refused, and the ones after it still come.
    let (got, _) = lines_through(
        LineCodec::new_with_max_length(4).crlf(),
        b"toolong\r\nok\r\n",
        1,
    )
    .await;
    assert_eq!(got, ["ok"]);
}
