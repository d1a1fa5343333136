//! A Stream over stdio (examples/upcase), with stdin a pipe and with stdin
//! a socket (a pollable fd that is not a pipe).

#[macro_use]
mod support;

use std::process::Stdio;

use support::{bounded, example};
use tokio::{io::AsyncWriteExt, process::Command};

flavours!(a_stream_over_stdio_reads_a_pipe_to_eof);
async fn a_stream_over_stdio_reads_a_pipe_to_eof() {
    let mut child = Command::new(example("upcase"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\nworld\n").await.unwrap();
    drop(stdin);
    let out = bounded("output", child.wait_with_output()).await.unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"HELLO\nWORLD\n");
}

flavours!(a_stream_over_stdio_reads_a_socket_given_as_stdin);
async fn a_stream_over_stdio_reads_a_socket_given_as_stdin() {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = Command::new(example("upcase"))
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut ours = tokio::net::UnixStream::from_std({
        ours.set_nonblocking(true).unwrap();
        ours
    })
    .unwrap();
    ours.write_all(b"over a socket\n").await.unwrap();
    ours.shutdown().await.unwrap();
    let out = bounded("output", child.wait_with_output()).await.unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"OVER A SOCKET\n");
}
