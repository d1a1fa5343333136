//! examples/echo_server over TLS against a client no one here wrote:
//! `openssl s_client`. Without openssl the tests are skipped (and fail
//! under CI=true; .ci/run installs it).
#![cfg(feature = "tls")]

#[macro_use]
mod support;

use std::{process::Stdio, time::Duration};

use support::{bounded, example, signal, spawn_with_first_line, test_certs, tool};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

const HANDSHAKE_SECS: f64 = 1.0;

async fn start(certs: &support::TestCerts) -> (Child, String) {
    let (child, first, _rest) = spawn_with_first_line(
        Command::new(example("echo_server"))
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&certs.cert)
            .arg("--tls-key")
            .arg(&certs.key)
            .args(["--handshake-timeout", &HANDSHAKE_SECS.to_string()])
            .stderr(Stdio::piped()),
    )
    .await;
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_owned();
    (child, addr)
}

/// `openssl s_client` verifying the server against the test CA, echoing
/// `payload` through it: byte-exact, then a clean close (exit 0).
async fn s_client_echo(addr: String, ca: std::path::PathBuf, payload: Vec<u8>) {
    let mut cmd = tool("openssl", &["version"], "openssl").expect("checked by the caller");
    let mut c = cmd
        .args(["s_client", "-quiet", "-no_ign_eof", "-verify_return_error"])
        .args(["-connect", &addr, "-servername", "localhost", "-CAfile"])
        .arg(&ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client");
    let mut stdin = c.stdin.take().unwrap();
    let mut stdout = c.stdout.take().unwrap();
    let p = payload.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&p).await.unwrap();
        stdin
    });
    let mut back = vec![0u8; payload.len()];
    bounded("the echo through s_client", stdout.read_exact(&mut back))
        .await
        .unwrap();
    assert!(back == payload, "byte-exact echo");
    drop(bounded("writer", writer).await.unwrap()); // EOF: s_client closes
    let mut rest = Vec::new();
    bounded("s_client's stdout ends", stdout.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "nothing after the echo: {rest:?}");
    let out = bounded("s_client exits", c.wait_with_output())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "s_client: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn payload(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("line {i} through openssl s_client\n").into_bytes())
        .collect()
}

flavours!(openssl_s_client_gets_a_byte_exact_echo_from_the_tls_echo_server_and_a_clean_close);
async fn openssl_s_client_gets_a_byte_exact_echo_from_the_tls_echo_server_and_a_clean_close() {
    if tool("openssl", &["version"], "openssl").is_none() {
        return;
    }
    let certs = test_certs();
    let (mut server, addr) = start(&certs).await;
    s_client_echo(addr, certs.ca.clone(), payload(2_000)).await;
    signal(&server, "TERM").await;
    let st = bounded("echo_server exits", server.wait()).await.unwrap();
    assert!(st.success(), "echo_server exited with {st}");
}

flavours!(garbage_and_stalled_handshakes_fail_with_tls_errors_while_ten_s_clients_are_served);
async fn garbage_and_stalled_handshakes_fail_with_tls_errors_while_ten_s_clients_are_served() {
    if tool("openssl", &["version"], "openssl").is_none() {
        return;
    }
    let certs = test_certs();
    let (mut server, addr) = start(&certs).await;
    let mut errors = BufReader::new(server.stderr.take().unwrap()).lines();
    let t0 = tokio::time::Instant::now();
    let mut garbage = TcpStream::connect(&addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let good: Vec<_> = (0..10)
        .map(|_| tokio::spawn(s_client_echo(addr.clone(), certs.ca.clone(), payload(200))))
        .collect();
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let line = bounded("a tls error on stderr", errors.next_line())
            .await
            .unwrap()
            .expect("stderr open");
        assert!(line.starts_with("accept error: tls: "), "{line}");
        lines.push((line, t0.elapsed()));
    }
    let bound = Duration::from_secs_f64(HANDSHAKE_SECS) + Duration::from_secs(2);
    assert!(lines.iter().all(|(_, t)| *t < bound), "{lines:?}");
    assert!(
        lines.iter().any(|(l, _)| l.contains("not done within")),
        "the stall timed out: {lines:?}"
    );
    for bad in [&mut garbage, &mut stalled] {
        let mut b = [0u8; 256];
        while let Ok(n) = bounded("a bad client is dropped", bad.read(&mut b)).await {
            if n == 0 {
                break;
            }
        }
    }
    for g in good {
        bounded("a good s_client", g).await.unwrap();
    }
    // Still serving.
    s_client_echo(addr, certs.ca.clone(), payload(10)).await;
    signal(&server, "TERM").await;
    let st = bounded("echo_server exits", server.wait()).await.unwrap();
    assert!(st.success(), "echo_server exited with {st}");
}
