//! Interop with the real Perl IO::Async (Debian libio-async-perl) and the
//! command-line contracts of examples/echo_server and examples/line_client.

#[macro_use]
mod support;

use std::process::Stdio;

use support::{bounded, example, perl, perl_script, signal, spawn_with_first_line};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::Command,
};

async fn start_echo_server() -> (tokio::process::Child, String) {
    let (child, first, _rest) = spawn_with_first_line(
        Command::new(example("echo_server")).args(["--listen", "127.0.0.1:0"]),
    )
    .await;
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_owned();
    (child, addr)
}

flavours!(a_perl_io_async_client_talks_to_examples_echo_server);
async fn a_perl_io_async_client_talks_to_examples_echo_server() {
    let Some(mut perl) = perl() else { return };
    let (mut server, addr) = start_echo_server().await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = bounded(
        "perl client",
        perl.arg(perl_script("echo_client.pl"))
            .args([host, port, "5"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "perl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line 1\nline 2\nline 3\nline 4\nline 5\n"
    );
    signal(&server, "TERM").await;
    let st = bounded("server exit", server.wait()).await.unwrap();
    assert!(st.success(), "echo_server exited with {st}");
}

flavours!(examples_line_client_talks_to_a_perl_io_async_line_server);
async fn examples_line_client_talks_to_a_perl_io_async_line_server() {
    let Some(mut perl) = perl() else { return };
    let (_server, first, _rest) =
        spawn_with_first_line(perl.arg(perl_script("line_server.pl"))).await;
    let port = first.strip_prefix("port ").expect("port line").to_owned();
    let out = bounded(
        "line_client",
        Command::new(example("line_client"))
            .args([
                "--connect",
                &format!("127.0.0.1:{port}"),
                "--line",
                "hi there",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Received a line echo: hi there\nReceived a line bye\n"
    );
}

flavours!(line_client_names_the_failing_operation_and_exits_non_zero);
async fn line_client_names_the_failing_operation_and_exits_non_zero() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (target, op) in [
        (refused.to_string(), "connect: "),
        ("no-such-host.invalid:80".to_string(), "resolve: "),
    ] {
        let out = bounded(
            "line_client",
            Command::new(example("line_client"))
                .args(["--connect", &target])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(op), "{target}: {err}");
    }
}

flavours!(echo_server_stops_gracefully_on_sigint_and_sigterm);
async fn echo_server_stops_gracefully_on_sigint_and_sigterm() {
    for sig in ["INT", "TERM"] {
        let (mut server, addr) = start_echo_server().await;
        // An echo before the signal arrives intact.
        let mut c = TcpStream::connect(&addr).await.unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(&payload).await.unwrap();
        let mut back = vec![0u8; payload.len()];
        bounded("echo", c.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, payload);
        signal(&server, sig).await;
        let st = bounded("server exit", server.wait()).await.unwrap();
        assert!(st.success(), "SIG{sig}: exited with {st}");
        // The open connection was closed cleanly (EOF, not a reset), and
        // the listener is gone.
        let mut rest = Vec::new();
        assert_eq!(bounded("eof", c.read_to_end(&mut rest)).await.unwrap(), 0);
        assert!(TcpStream::connect(&addr).await.is_err(), "still listening");
    }
}

flavours!(echo_server_rejects_a_bad_command_line);
async fn echo_server_rejects_a_bad_command_line() {
    let out = Command::new(example("echo_server"))
        .args(["--bogus"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(example("echo_server"))
        .args(["--listen", "not an address"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("address"));
}
