//! Unix listeners own their socket file: a stale one at bind is removed,
//! a live one is left alone with a clear error, the file goes at stop,
//! and a supervised listener re-binds after each restart. Plus listening
//! on a socket that is already listening (`Listen::from_fd`).

#[macro_use]
mod support;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use ioasync::{
    io::{Address, Listen, Listener, ListenerRef, ReadAction, Stream},
    notifier::Spec,
    supervision::{Restart, SupervisionEventKind},
};
use support::{bounded, example, fresh_dir, signal, spawn_with_first_line, test_loop, wait_event};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UnixStream},
    process::Command,
};

fn sock_path(tag: &str) -> PathBuf {
    fresh_dir(tag).join("s.sock")
}

/// An echo listener whose factory panics (failing the listener) on the
/// next connection while `crash` is set.
fn echo(listen: Listen, crash: Arc<AtomicBool>) -> Spec<Listener> {
    let next = AtomicU64::new(0);
    Listener::spec("echo", listen, move |conn, _| {
        if crash.swap(false, Ordering::SeqCst) {
            panic!("the listener fails on purpose");
        }
        let n = next.fetch_add(1, Ordering::Relaxed);
        Stream::spec(format!("conn-{n}"), conn).on_read(|io, buf, _| {
            io.write(buf.split().freeze());
            ReadAction::Wait
        })
    })
    .restart(Restart::Permanent)
    .restart_limit(20, Duration::from_secs(60))
}

async fn echo_once_unix(path: &Path, what: &[u8]) {
    let mut c = bounded("connect", UnixStream::connect(path)).await.unwrap();
    c.write_all(what).await.unwrap();
    let mut back = vec![0u8; what.len()];
    bounded("echo", c.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, what);
}

flavours!(a_unix_listener_restarted_5_times_re_binds_each_time_and_removes_its_file_at_stop);
async fn a_unix_listener_restarted_5_times_re_binds_each_time_and_removes_its_file_at_stop() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    let path = sock_path("restart");
    let crash = Arc::new(AtomicBool::new(false));
    let listener = lp
        .add(echo(Listen::new(Address::unix(&path)), crash.clone()))
        .await
        .unwrap();
    echo_once_unix(&path, b"first").await;
    for round in 1..=5u32 {
        crash.store(true, Ordering::SeqCst);
        // This connection fails the listener; it is dropped unanswered.
        let _doomed = UnixStream::connect(&path).await.unwrap();
        wait_event(&mut events, |e| {
            e.path == "/echo" && matches!(e.what, SupervisionEventKind::Restarted { .. })
        })
        .await;
        assert_eq!(listener.restarts(), round);
        echo_once_unix(&path, format!("round {round}").as_bytes()).await;
    }
    assert_eq!(
        listener.local_addr().await.unwrap().to_string(),
        format!("unix:{}", path.display())
    );
    listener.stop().await;
    assert!(!path.exists(), "the socket file is removed at stop");
}

flavours!(a_stale_socket_file_from_a_sigkilled_process_does_not_stop_a_new_bind);
async fn a_stale_socket_file_from_a_sigkilled_process_does_not_stop_a_new_bind() {
    let path = sock_path("stale");
    let (mut child, first, _rest) = spawn_with_first_line(
        Command::new(example("echo_server"))
            .args(["--listen", &format!("unix:{}", path.display())]),
    )
    .await;
    assert_eq!(first, format!("listening on unix:{}", path.display()));
    signal(&child, "KILL").await;
    bounded("killed", child.wait()).await.unwrap();
    assert!(path.exists(), "SIGKILL leaves the socket file behind");
    // Nothing answers there: the new bind removes the stale file.
    let lp = test_loop();
    let listener = lp
        .add(echo(
            Listen::new(Address::unix(&path)),
            Arc::new(AtomicBool::new(false)),
        ))
        .await
        .unwrap();
    echo_once_unix(&path, b"over a stale file").await;
    listener.stop().await;
    assert!(!path.exists());
}

flavours!(echo_server_on_a_unix_path_leaves_no_file_behind_after_sigterm);
async fn echo_server_on_a_unix_path_leaves_no_file_behind_after_sigterm() {
    let path = sock_path("sigterm");
    let (mut child, first, _rest) = spawn_with_first_line(
        Command::new(example("echo_server"))
            .args(["--listen", &format!("unix:{}", path.display())]),
    )
    .await;
    assert_eq!(first, format!("listening on unix:{}", path.display()));
    echo_once_unix(&path, b"ping").await;
    signal(&child, "TERM").await;
    let status = bounded("exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!path.exists(), "the socket file is gone after SIGTERM");
}

flavours!(a_bind_where_a_listener_answers_fails_naming_the_path_and_leaves_it_serving);
async fn a_bind_where_a_listener_answers_fails_naming_the_path_and_leaves_it_serving() {
    let lp = test_loop();
    let path = sock_path("live");
    let first = lp
        .add(echo(
            Listen::new(Address::unix(&path)),
            Arc::new(AtomicBool::new(false)),
        ))
        .await
        .unwrap();
    let e = Listen::new(Address::unix(&path)).bind().await.unwrap_err();
    assert_eq!(e.op(), "bind");
    assert_eq!(e.errno(), Some(libc::EADDRINUSE));
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert!(e.to_string().contains("a listener answers"), "{e}");
    // The live listener's file was left alone: it still serves.
    echo_once_unix(&path, b"still here").await;
    // A file that is not a socket is never removed.
    let plain = path.with_file_name("plain");
    std::fs::write(&plain, b"data").unwrap();
    let e = Listen::new(Address::unix(&plain)).bind().await.unwrap_err();
    assert_eq!(e.op(), "bind");
    assert_eq!(e.errno(), Some(libc::EADDRINUSE));
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&plain).unwrap(), b"data");
    first.stop().await;
    assert!(!path.exists());
}

flavours!(a_listener_over_an_already_listening_socket_serves_and_keeps_it_across_restarts);
async fn a_listener_over_an_already_listening_socket_serves_and_keeps_it_across_restarts() {
    let lp = test_loop();
    let mut events = lp.supervision_events();
    // Bound by someone else (a service manager, a parent).
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = std_listener.local_addr().unwrap();
    let crash = Arc::new(AtomicBool::new(false));
    let listen = Listen::from_fd(std_listener).unwrap();
    assert_eq!(listen.address(), &Address::Socket(at));
    let listener = lp.add(echo(listen, crash.clone())).await.unwrap();
    assert_eq!(listener.local_addr().await.unwrap().as_inet(), Some(at));
    let echo_tcp = |what: &'static [u8]| async move {
        let mut c = TcpStream::connect(at).await.unwrap();
        c.write_all(what).await.unwrap();
        let mut back = vec![0u8; what.len()];
        bounded("echo", c.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, what);
    };
    echo_tcp(b"adopted").await;
    crash.store(true, Ordering::SeqCst);
    let _doomed = TcpStream::connect(at).await.unwrap();
    wait_event(&mut events, |e| {
        e.path == "/echo" && matches!(e.what, SupervisionEventKind::Restarted { .. })
    })
    .await;
    // The same socket, listened on again.
    echo_tcp(b"after restart").await;
    listener.stop().await;

    // A Unix one; its file is not ours, so it stays at stop.
    let path = sock_path("adopted");
    let std_unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let listener = lp
        .add(echo(
            Listen::from_fd(std_unix).unwrap(),
            Arc::new(AtomicBool::new(false)),
        ))
        .await
        .unwrap();
    echo_once_unix(&path, b"adopted unix").await;
    listener.stop().await;
    assert!(
        path.exists(),
        "an adopted socket's file is left to its owner"
    );

    // Not a listening socket: a clear error.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = Listen::from_fd(udp).unwrap_err();
    assert_eq!(e.op(), "listen");
    assert_eq!(e.errno(), Some(libc::EINVAL));
    let unbound = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    assert_eq!(Listen::from_fd(unbound).unwrap_err().op(), "listen");
}
