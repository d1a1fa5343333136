//! An echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --example echo_server -- [--listen ADDR]
//! ```
//!
//! ADDR defaults to `127.0.0.1:0` (any free port); `[::1]:7000` and
//! `unix:/path` work too. The first line on stdout is `listening on <addr>`.
//! SIGINT or SIGTERM stop it gracefully: the listener closes, each
//! connection flushes what it accepted, and it exits 0.

use std::{
    io::Write as _,
    process::ExitCode,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use ioasync::{Address, Listen, LocalAddr, Loop, ReadAction, Stream};

fn usage() -> ExitCode {
    eprintln!("usage: echo_server [--listen ADDR]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut addr = String::from("127.0.0.1:0");
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => addr = v,
            _ => return usage(),
        }
    }
    match serve(&addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: &str) -> ioasync::Result<()> {
    let addr: Address = addr.parse()?;
    let lp = Loop::builder()
        .adopt_current()
        .shutdown_on_signals(Duration::from_secs(5))
        .build()?;
    let next = AtomicU64::new(1);
    let listener = lp
        .listen("echo", Listen::new(addr), move |conn, _peer| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            Stream::spec(format!("conn-{n}"), conn).on_read(|io, buf, _eof| {
                io.write_slice(buf);
                buf.clear();
                ReadAction::Wait
            })
        })
        .await?;
    let local = listener.ask(LocalAddr).await?;
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    match lp.run::<()>().await {
        Err(e) if e.is_cancelled() => Ok(()),
        other => other,
    }
}
