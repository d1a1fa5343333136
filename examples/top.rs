//! A live view of a running program's notifier tree, like OTP's observer:
//! connects to the Unix socket the program serves with
//! `ioasync::control::serve_tree` and redraws the tree every interval.
//!
//! ```sh
//! cargo run --example demo -- --serve 127.0.0.1:7000 --control /tmp/demo.tree &
//! cargo run --example top -- /tmp/demo.tree            # redraws every second
//! cargo run --example top -- /tmp/demo.tree --once     # prints it once
//! cargo run --example top -- /tmp/demo.tree --dot --once | dot -Tsvg > tree.svg
//! ```
//!
//! Exits 0 on SIGINT (Ctrl-C) or after `--once`; 1 when the socket cannot
//! be reached (the error names it).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn usage() -> ExitCode {
    eprintln!("usage: top SOCKET [--interval SECS] [--once] [--dot]");
    ExitCode::from(2)
}

async fn fetch(path: &PathBuf, dot: bool) -> std::io::Result<String> {
    let mut s = tokio::net::UnixStream::connect(path).await?;
    if dot {
        s.write_all(b"dot\n").await?;
    }
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    Ok(text)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut path, mut interval, mut once, mut dot) = (None, 1.0f64, false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--interval" => match args.next().and_then(|v| v.parse().ok()) {
                Some(s) if s > 0.0 => interval = s,
                _ => return usage(),
            },
            "--once" => once = true,
            "--dot" => dot = true,
            p if !p.starts_with('-') && path.is_none() => path = Some(PathBuf::from(p)),
            _ => return usage(),
        }
    }
    let Some(path) = path else {
        return usage();
    };
    loop {
        match fetch(&path, dot).await {
            Ok(text) if once => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Ok(text) => {
                // Home, clear the screen, draw.
                print!("\x1b[H\x1b[2J{}\n{text}", path.display());
            }
            Err(e) => {
                eprintln!("top: connect {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(interval)) => {}
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        }
    }
}
