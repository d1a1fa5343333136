//! Datagram sockets: received packets carry their source address; sends
//! are queued.

#[macro_use]
mod support;

use ioasync::{
    io::{Datagram, Dest, SockAddr, Socket, SocketEvent, SocketRef},
    test_util::Recorder,
};
use support::{bounded, test_loop};
use tokio::net::{UdpSocket, UnixDatagram};

flavours!(udp_packets_arrive_with_their_source_and_replies_go_back);
async fn udp_packets_arrive_with_their_source_and_replies_go_back() {
    let lp = test_loop();
    let (rec, sub) = Recorder::new();
    let server = lp
        .add(Socket::udp("udp", UdpSocket::bind("127.0.0.1:0").await.unwrap()).subscribe(sub))
        .await
        .unwrap();
    let SockAddr::Inet(server_addr) = server.local_addr().await.unwrap() else {
        panic!()
    };
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..10u8 {
        client.send_to(&[i; 3], server_addr).await.unwrap();
    }
    let evs = bounded("packets", rec.wait_len(10)).await;
    for (i, ev) in evs.iter().enumerate() {
        let SocketEvent::Recv(Datagram { data, from }) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(&data[..], &[i as u8; 3]);
        assert_eq!(from, &SockAddr::Inet(client.local_addr().unwrap()));
    }
    server
        .send_to("pong", Dest::Inet(client.local_addr().unwrap()))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = bounded("reply", client.recv_from(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, server_addr);
}

flavours!(unix_datagrams_arrive_with_their_source_path);
async fn unix_datagrams_arrive_with_their_source_path() {
    let lp = test_loop();
    let dir = support::fresh_dir("dgram");
    let (spath, cpath) = (dir.join("server"), dir.join("client"));
    let (rec, sub) = Recorder::new();
    let server = lp
        .add(Socket::unix("unix", UnixDatagram::bind(&spath).unwrap()))
        .await
        .unwrap();
    server.subscribe(sub).unwrap();
    let client = UnixDatagram::bind(&cpath).unwrap();
    client.send_to(b"hi", &spath).await.unwrap();
    let evs = bounded("packet", rec.wait_len(1)).await;
    let SocketEvent::Recv(d) = &evs[0] else {
        panic!()
    };
    assert_eq!(&d.data[..], b"hi");
    assert_eq!(d.from, SockAddr::Unix(Some(cpath.clone())));
    std::fs::remove_dir_all(&dir).unwrap();
}

flavours!(connect_datagram_resolves_and_sends_to_its_peer);
async fn connect_datagram_resolves_and_sends_to_its_peer() {
    let lp = test_loop();
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    let conn = lp
        .connect(ioasync::io::Address::inet("localhost", port.to_string()))
        .family(ioasync::io::Family::V4)
        .datagram()
        .await
        .unwrap();
    let sock = lp.add(Socket::connected("client", conn)).await.unwrap();
    sock.send_to("via peer", Dest::Peer).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = bounded("datagram", server.recv_from(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf[..n], b"via peer");
    assert_eq!(SockAddr::Inet(from), sock.local_addr().await.unwrap());
}

flavours!(typed_datagram_frames_through_a_codec);
async fn typed_datagram_frames_through_a_codec() {
    use ioasync::{
        io::codec::LinesCodec,
        io::{DatagramEvent, FramedSocket, FramedSocketRef},
    };
    let lp = test_loop();
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let fa = lp
        .add(FramedSocket::<LinesCodec, String>::udp(
            "a",
            a,
            LinesCodec::new(),
        ))
        .await
        .unwrap();
    let fb = lp
        .add(FramedSocket::<LinesCodec, String>::udp(
            "b",
            b,
            LinesCodec::new(),
        ))
        .await
        .unwrap();
    let (rec, sub) = Recorder::new();
    fb.subscribe(sub).unwrap();
    for w in ["one", "two", "three"] {
        fa.send_frame(w.to_string(), Dest::Inet(b_addr))
            .await
            .unwrap();
    }
    let evs = bounded("frames", rec.wait_len(3)).await;
    let got: Vec<(String, SockAddr)> = evs
        .into_iter()
        .map(|e| match e {
            DatagramEvent::Frame(s, from) => (s, from),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        ["one", "two", "three"].map(|w| (w.to_string(), SockAddr::Inet(a_addr)))
    );
    // A datagram that does not decode is reported, and the socket goes on.
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.send_to(&[0xff, 0xfe, b'\n'], b_addr).await.unwrap();
    let evs = bounded("decode error", rec.wait_len(4)).await;
    assert!(
        matches!(&evs[3], DatagramEvent::DecodeError(e, _) if e.op() == "decode"),
        "{evs:?}"
    );
}
