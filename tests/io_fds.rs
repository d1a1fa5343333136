//! Fd hygiene, alone in its own test binary: the open-fd count is
//! process-wide, so no other test may run beside it.

mod support;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use ioasync::{
    Address, Listen, LocalAddr, ReadAction, Stream, StreamEvent, StreamRef, Subscription,
    open_fd_count,
};
use support::{bounded, test_loop};
use tokio::sync::Notify;

#[tokio::test]
async fn a_thousand_connect_close_cycles_leave_the_fd_count_where_it_started() {
    let lp = test_loop();
    let closed_server_side = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(Notify::new());
    let (c, n) = (closed_server_side.clone(), notify.clone());
    let listener = lp
        .listen(
            "srv",
            Listen::new("127.0.0.1:0".parse::<Address>().unwrap()),
            move |conn, peer| {
                let (c, n) = (c.clone(), n.clone());
                Stream::spec(format!("c{peer}").replace(':', "_"), conn)
                    .on_read(|io, buf, _| {
                        io.write(buf.split().freeze());
                        ReadAction::Wait
                    })
                    .subscribe(Subscription::closure(move |e| {
                        if let StreamEvent::Closed = e {
                            c.fetch_add(1, Ordering::SeqCst);
                            n.notify_one();
                        }
                    }))
            },
        )
        .await
        .unwrap();
    let addr = listener.ask(LocalAddr).await.unwrap().as_inet().unwrap();
    let before = open_fd_count().unwrap();
    for i in 0..1000 {
        let conn = lp.connect(addr).await.unwrap();
        let s = lp
            .add(Stream::spec(format!("client-{i}"), conn))
            .await
            .unwrap();
        s.write("x").await.unwrap();
        s.close_now().await.unwrap();
        bounded("client stopped", s.wait_stopped()).await;
    }
    bounded("server side closed", async {
        while closed_server_side.load(Ordering::SeqCst) < 1000 {
            notify.notified().await;
        }
    })
    .await;
    bounded("connections pruned", async {
        while !lp.tree().find("/srv").unwrap().children.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(open_fd_count().unwrap(), before);
}
