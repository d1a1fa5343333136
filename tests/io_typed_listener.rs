//! Typed connections: `Listener::typed` hands `on_accept` a typed handle
//! to each connection's child, and `ListenerRef::connections` lists the
//! live ones from the listener's handle.

#[macro_use]
mod support;

use std::{
    collections::BTreeSet,
    sync::{Arc, OnceLock},
};

use ioasync::{
    io::codec::LineCodec,
    io::{Address, Framed, FramedRef, Listen, Listener, ListenerRef, Stream},
    notifier::NotifierRef,
};
use support::{bounded, test_loop};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

type Lines = Framed<LineCodec, String>; // named: handles are stored by type

fn local() -> Listen {
    Listen::new("127.0.0.1:0".parse::<Address>().unwrap())
}

/// A chat server: each line a client sends goes to every other client,
/// through the typed handles the listener lists; `on_accept` greets each
/// newcomer through its handle.
async fn chat(lp: &ioasync::Loop) -> NotifierRef<Listener> {
    let me: Arc<OnceLock<NotifierRef<Listener>>> = Arc::default();
    let srv = me.clone();
    let spec = Listener::typed(
        "chat",
        local(),
        move |conn, peer| {
            let srv = srv.clone();
            let own = format!("conn-{}", peer.as_inet().unwrap().port());
            let name = own.clone();
            Lines::spec(name, conn, LineCodec::new()).on_frame(move |_io, line: String| {
                let listener = srv.get().expect("set before any client connects");
                for c in listener.connections::<Lines>() {
                    if c.name() != own {
                        c.try_send(line.clone()).expect("the readers keep up");
                    }
                }
            })
        },
        |conn: NotifierRef<Lines>, peer| {
            conn.try_send(format!("welcome {peer}"))
                .expect("a new connection takes its welcome");
        },
    );
    let listener = lp.add(spec).await.unwrap();
    me.set(listener.clone()).unwrap();
    listener
}

flavours!(a_later_clients_first_line_reaches_every_earlier_client_and_the_welcome_comes_first);
async fn a_later_clients_first_line_reaches_every_earlier_client_and_the_welcome_comes_first() {
    const CLIENTS: usize = 20;
    let lp = test_loop();
    let listener = chat(&lp).await;
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let mut c = TcpStream::connect(addr).await.unwrap();
        // The first line goes out at once: not after the welcome, not
        // after the server has seen the connection.
        c.write_all(format!("hello from {i}\n").as_bytes())
            .await
            .unwrap();
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(c).lines();
            let welcome = lines.next_line().await.unwrap().expect("a welcome");
            assert!(
                welcome.starts_with("welcome 127.0.0.1:"),
                "client {i} first got {welcome:?}"
            );
            // Every client connected after this one was accepted after
            // it: their first lines must all arrive.
            let want: BTreeSet<usize> = (i + 1..CLIENTS).collect();
            let mut got = BTreeSet::new();
            while !want.is_subset(&got) {
                let line = lines.next_line().await.unwrap().expect("a line, not EOF");
                let from: usize = line
                    .strip_prefix("hello from ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("client {i} got {line:?}"));
                assert_ne!(from, i, "a client's own line is not sent back");
                got.insert(from);
            }
            lines
        }));
    }
    let mut open = Vec::new();
    for r in readers {
        open.push(bounded("every later first line", r).await.unwrap());
    }
    // The listener lists its live connections, typed.
    let conns = listener.connections::<Lines>();
    assert_eq!(conns.len(), CLIENTS);
    assert!(
        listener.connections::<Stream>().is_empty(),
        "another type lists none"
    );
    // A client that leaves is listed no more once its stream stopped.
    let gone = conns[0].clone();
    drop(open.remove(0));
    bounded("the first connection closes", gone.wait_stopped()).await;
    let left = listener.connections::<Lines>();
    assert_eq!(left.len(), CLIENTS - 1);
    assert!(left.iter().all(|c| c.id() != gone.id()));
}

flavours!(a_listener_made_by_spec_lists_no_typed_connections);
async fn a_listener_made_by_spec_lists_no_typed_connections() {
    let lp = test_loop();
    let listener = lp
        .listen("plain", local(), |conn, _| {
            Lines::spec("conn", conn, LineCodec::new())
        })
        .await
        .unwrap();
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    let accepted = listener.next_accept();
    let _c = TcpStream::connect(addr).await.unwrap();
    bounded("accepted", accepted).await.unwrap();
    assert!(listener.connections::<Lines>().is_empty());
}
