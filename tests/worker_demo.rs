//! The command-line contract of examples/demo (the flagship).

#[macro_use]
mod support;

use support::{bounded, example, signal, spawn_with_first_line};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::Command,
};

flavours!(demo_serve_answers_in_order_and_survives_malformed_lines);
async fn demo_serve_answers_in_order_and_survives_malformed_lines() {
    let (mut server, first, _rest) =
        spawn_with_first_line(Command::new(example("demo")).args(["--serve", "127.0.0.1:0"])).await;
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_owned();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    // Pipelined: replies must come back in request order.
    wr.write_all(b"100000\n10\nabc\n0\n20000000\n100\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(bounded("reply", lines.next_line()).await.unwrap().unwrap());
    }
    assert_eq!(got[0], "100000 9592");
    assert_eq!(got[1], "10 4");
    assert!(got[2].starts_with("ERR "), "{got:?}");
    assert_eq!(got[3], "0 0");
    assert!(got[4].starts_with("ERR "), "{got:?}");
    assert_eq!(got[5], "100 25");
    // The connection stayed open after the malformed lines.
    wr.write_all(b"2\n").await.unwrap();
    assert_eq!(
        bounded("reply", lines.next_line()).await.unwrap().unwrap(),
        "2 1"
    );
    signal(&server, "TERM").await;
    let st = bounded("exit", server.wait()).await.unwrap();
    assert!(st.success(), "{st}");
}

flavours!(demo_self_drives_kills_a_worker_and_exits_zero);
async fn demo_self_drives_kills_a_worker_and_exits_zero() {
    let out = bounded(
        "demo",
        Command::new(example("demo"))
            .args(["--seconds", "1.5", "--clients", "2"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("killed worker"), "{stdout}");
    assert!(stdout.contains("1 died and were replaced"), "{stdout}");
    assert!(
        stdout.contains("ok: every request was answered correctly"),
        "{stdout}"
    );
}
