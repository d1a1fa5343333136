//! Datagram sockets: received packets carry their source address; sends
//! are queued.

mod support;

use ioasync::{Datagram, Dest, SockAddr, Socket, SocketEvent, SocketRef, test_util::Recorder};
use support::{bounded, test_loop};
use tokio::net::{UdpSocket, UnixDatagram};

#[tokio::test]
async fn udp_packets_arrive_with_their_source_and_replies_go_back() {
    let lp = test_loop();
    let (rec, sub) = Recorder::new();
    let server = lp
        .add(Socket::udp_with(
            "udp",
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            sub,
        ))
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

#[tokio::test]
async fn unix_datagrams_arrive_with_their_source_path() {
    let lp = test_loop();
    let dir = std::env::temp_dir().join(format!("ioasync-dgram-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (spath, cpath) = (dir.join("server"), dir.join("client"));
    let (rec, sub) = Recorder::new();
    let server = lp
        .add(Socket::unix("unix", UnixDatagram::bind(&spath).unwrap()))
        .await
        .unwrap();
    server.subscribe(sub).await.unwrap();
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

#[tokio::test]
async fn connect_datagram_resolves_and_sends_to_its_peer() {
    let lp = test_loop();
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    let conn = lp
        .connect(ioasync::Address::inet("localhost", port.to_string()))
        .family(ioasync::Family::V4)
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
