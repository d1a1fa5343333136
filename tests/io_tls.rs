//! TLS over rustls on loopback: a TLS Listener and Connect, and what a bad
//! client costs (nothing but its own connection).
#![cfg(feature = "tls")]

#[macro_use]
mod support;

use std::time::Duration;

use futures_util::StreamExt;
use ioasync::{
    error::ErrorKind,
    io::{
        Connect, Listen, Listener, ListenerEvent, ListenerRef, ReadAction, Stream, TlsClient,
        TlsServer,
    },
    notifier::Subscription,
};
use support::{bounded, test_certs, test_loop};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const HANDSHAKE: Duration = Duration::from_millis(800);

async fn tls_echo_listener(
    lp: &ioasync::Loop,
    certs: &support::TestCerts,
) -> (
    ioasync::notifier::NotifierRef<Listener>,
    ioasync::notifier::EventStream<ListenerEvent>,
    String,
) {
    let server = TlsServer::from_pem_files(&certs.cert, &certs.key)
        .unwrap()
        .handshake_timeout(HANDSHAKE);
    let listen = Listen::new("127.0.0.1:0".parse::<ioasync::io::Address>().unwrap()).tls(server);
    let n = std::sync::atomic::AtomicU64::new(0);
    let (sub, events) = Subscription::stream_with(256, ioasync::notifier::Overflow::DropOldest);
    let spec = Listener::spec("tls-echo", listen, move |conn, _peer| {
        assert!(conn.is_tls(), "{conn:?}");
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Stream::spec(format!("c{i}"), conn).on_read(|io, buf, _| {
            io.write_slice(buf);
            buf.clear();
            ReadAction::Wait
        })
    });
    let l = lp.add(spec.subscribe(sub)).await.unwrap();
    let addr = l.local_addr().await.unwrap().to_string();
    (l, events, addr)
}

/// One TLS client doing `rounds` echo round trips of distinct messages.
async fn good_client(addr: String, ca: std::path::PathBuf, rounds: usize) {
    let client = TlsClient::with_ca_pem_file(ca).unwrap();
    let conn = Connect::new(addr.parse::<ioasync::io::Address>().unwrap())
        .tls(client)
        .await
        .expect("TLS connect");
    assert!(conn.is_tls());
    let mut conn = conn;
    for r in 0..rounds {
        let msg = format!("round {r} of a good client\n");
        conn.write_all(msg.as_bytes()).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        conn.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    conn.shutdown().await.unwrap();
}

flavours!(a_tls_listener_and_tls_connect_echo_byte_exact);
async fn a_tls_listener_and_tls_connect_echo_byte_exact() {
    let lp = test_loop();
    let certs = test_certs();
    let (_l, _events, addr) = tls_echo_listener(&lp, &certs).await;
    let clients: Vec<_> = (0..10)
        .map(|_| tokio::spawn(good_client(addr.clone(), certs.ca.clone(), 20)))
        .collect();
    for c in clients {
        bounded("a good client", c).await.unwrap();
    }
}

flavours!(
    a_garbage_client_and_a_stalled_handshake_fail_with_tls_errors_while_ten_good_clients_are_served
);
async fn a_garbage_client_and_a_stalled_handshake_fail_with_tls_errors_while_ten_good_clients_are_served()
 {
    let lp = test_loop();
    let certs = test_certs();
    let (l, mut events, addr) = tls_echo_listener(&lp, &certs).await;
    let t0 = tokio::time::Instant::now();
    // A client that speaks HTTP instead of a ClientHello.
    let mut garbage = TcpStream::connect(&addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A client that starts a record and stalls mid-handshake.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let good: Vec<_> = (0..10)
        .map(|_| tokio::spawn(good_client(addr.clone(), certs.ca.clone(), 50)))
        .collect();
    for c in good {
        bounded("a good client", c).await.unwrap();
    }
    let good_done = t0.elapsed();
    let (mut refused, mut timed_out) = (None, None);
    while refused.is_none() || timed_out.is_none() {
        match bounded("tls errors", events.next()).await {
            Some(ListenerEvent::AcceptError(e)) => {
                assert_eq!(e.op(), "tls", "{e}");
                if e.kind() == ErrorKind::Timeout {
                    timed_out = Some(t0.elapsed());
                } else {
                    refused = Some(t0.elapsed());
                }
            }
            Some(ListenerEvent::Accepted { .. }) => {}
            Some(other) => panic!("{other:?}"),
            None => panic!("events ended"),
        }
    }
    let (refused, timed_out) = (refused.unwrap(), timed_out.unwrap());
    assert!(
        refused < HANDSHAKE,
        "the garbage failed at once: {refused:?}"
    );
    assert!(
        timed_out >= HANDSHAKE && timed_out < HANDSHAKE + Duration::from_secs(2),
        "the stall failed at the handshake timeout: {timed_out:?}"
    );
    // Both bad clients were dropped by the server.
    for bad in [&mut garbage, &mut stalled] {
        let mut b = [0u8; 256];
        loop {
            match bounded("the server drops a bad client", bad.read(&mut b)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {} // a TLS alert
            }
        }
    }
    assert!(
        good_done < timed_out,
        "the good clients were served while the stalled handshake was pending ({good_done:?})"
    );
    // The listener lives on and serves a new client.
    bounded("one more", good_client(addr.clone(), certs.ca.clone(), 1)).await;
    assert!(
        lp.tree().find(l.path()).is_some(),
        "the listener is still there"
    );
}

flavours!(tls_errors_name_the_operation_and_the_file);
async fn tls_errors_name_the_operation_and_the_file() {
    let lp = test_loop();
    let certs = test_certs();
    let e = TlsServer::from_pem_files("/nonexistent/cert.pem", &certs.key).unwrap_err();
    assert_eq!((e.op(), e.errno()), ("open", Some(libc::ENOENT)), "{e}");
    assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    let e = TlsServer::from_pem_files(&certs.key, &certs.key).unwrap_err();
    assert_eq!(e.op(), "tls", "{e}");
    assert!(e.to_string().contains("key.pem"), "{e}");
    // A client that trusts another CA refuses the server: op tls.
    let other = test_certs();
    let (_l, _events, addr) = tls_echo_listener(&lp, &certs).await;
    let e = Connect::new(addr.parse::<ioasync::io::Address>().unwrap())
        .tls(TlsClient::with_ca_pem_file(&other.ca).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.op(), "tls", "{e}");
}
