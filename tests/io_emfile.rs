//! Out of file descriptors: the listener backs off and recovers instead of
//! spinning. Alone in its own binary: it lowers the process's fd limit.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};

use ioasync::io::{Address, Listen, ListenerEvent, ListenerRef, ReadAction, Stream, open_fd_count};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use support::{bounded, test_loop};
use tokio::{net::TcpSocket, sync::Notify};

flavours!(serial on_emfile_the_listener_backs_off_and_recovers_instead_of_spinning);
async fn on_emfile_the_listener_backs_off_and_recovers_instead_of_spinning() {
    let lp = test_loop();
    let events = Arc::new(Mutex::new(Vec::new()));
    let changed = Arc::new(Notify::new());
    let listener = lp
        .listen(
            "srv",
            Listen::new("127.0.0.1:0".parse::<Address>().unwrap()),
            |conn, _| {
                Stream::spec(format!("c{}", rand_suffix()), conn).on_read(|_, buf, _| {
                    buf.clear();
                    ReadAction::Wait
                })
            },
        )
        .await
        .unwrap();
    let (e, c) = (events.clone(), changed.clone());
    listener
        .on_event(move |ev: ListenerEvent| {
            e.lock().unwrap().push(ev);
            c.notify_one();
        })
        .unwrap();
    let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
    // Client sockets are made before the limit drops; connecting needs no fd.
    let clients: Vec<TcpSocket> = (0..5).map(|_| TcpSocket::new_v4().unwrap()).collect();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let open = open_fd_count().unwrap() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, open, hard).unwrap();
    let mut conns = Vec::new();
    for c in clients {
        conns.push(c.connect(addr).await.unwrap());
    }
    let count = |pred: fn(&ListenerEvent) -> bool| {
        events.lock().unwrap().iter().filter(|e| pred(e)).count()
    };
    let is_emfile =
        |e: &ListenerEvent| matches!(e, ListenerEvent::AcceptError(err) if err.errno() == Some(24));
    bounded("three EMFILE errors", async {
        while count(is_emfile) < 3 {
            changed.notified().await;
        }
    })
    .await;
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    bounded("all accepted", async {
        while count(|e| matches!(e, ListenerEvent::Accepted { .. })) < 5 {
            changed.notified().await;
        }
    })
    .await;
    let errors = count(is_emfile);
    assert!(errors < 20, "{errors} accept errors: the listener spun");
    drop(conns);
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
