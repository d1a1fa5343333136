//! Fd hygiene, alone in its own test binary: the open-fd count is
//! process-wide, so no other test may run beside it.

mod support;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use std::{io::Read as _, io::Write as _, os::fd::OwnedFd};

use ioasync::{
    io::{
        Address, Handle, Listen, ListenerRef, ReadAction, Stream, StreamEvent, StreamRef,
        open_fd_count,
    },
    notifier::{IntoSpec, Subscription},
};
use support::{bounded, serial, test_loop};
use tokio::sync::Notify;

#[test]
fn a_thousand_connect_close_cycles_leave_the_fd_count_where_it_started() {
    serial(0, async {
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
        let addr = listener.local_addr().await.unwrap().as_inet().unwrap();
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
    })
}
#[test]
fn a_stream_over_two_pipe_ends_echoes_and_closes_each_fd_once() {
    serial(0, async {
        let lp = test_loop();
        let before = open_fd_count().unwrap();
        let (in_rd, mut in_wr) = std::io::pipe().unwrap();
        let (mut out_rd, out_wr) = std::io::pipe().unwrap();
        let spec = Stream::from_fds(
            "pipes",
            Some(OwnedFd::from(in_rd)),
            Some(OwnedFd::from(out_wr)),
        )
        .unwrap()
        .on_read(|io, buf, _| {
            io.write(buf.split().freeze());
            ReadAction::Wait
        });
        let s = lp.add(spec).await.unwrap();
        in_wr.write_all(b"through the pipes").unwrap();
        drop(in_wr); // EOF: the stream flushes and closes both of its fds
        let got = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            out_rd.read_to_end(&mut v).unwrap();
            v
        });
        assert_eq!(bounded("echo", got).await.unwrap(), b"through the pipes");
        bounded("stopped", s.wait_stopped()).await;
        assert_eq!(open_fd_count().unwrap(), before);
    })
}
#[test]
fn a_handle_over_a_read_fd_and_a_write_fd_reports_readiness_and_closes_each_once() {
    serial(0, async {
        let lp = test_loop();
        let before = open_fd_count().unwrap();
        let (in_rd, mut in_wr) = std::io::pipe().unwrap();
        let (mut out_rd, out_wr) = std::io::pipe().unwrap();
        let spec = Handle::spec("h", Some(OwnedFd::from(in_rd)), Some(OwnedFd::from(out_wr)))
            .unwrap()
            .on_read_ready(|io| {
                let mut buf = [0u8; 256];
                loop {
                    match io.read(&mut buf) {
                        Ok(0) => return io.close(),
                        Ok(n) => {
                            let upper = buf[..n].to_ascii_uppercase();
                            io.write(&upper).unwrap();
                        }
                        Err(_) => return, // WouldBlock: wait for more
                    }
                }
            });
        let h = lp.add(spec).await.unwrap();
        in_wr.write_all(b"shout").unwrap();
        drop(in_wr);
        let got = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            out_rd.read_to_end(&mut v).unwrap();
            v
        });
        assert_eq!(bounded("output", got).await.unwrap(), b"SHOUT");
        bounded("stopped", h.wait_stopped()).await;
        assert_eq!(open_fd_count().unwrap(), before);
    })
}
