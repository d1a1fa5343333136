//! IO::Async's SYNOPSIS in Rust: connect, write a line, print each line
//! received, exit at EOF.
//!
//! ```text
//! cargo run --example line_client -- --connect HOST:PORT [--line TEXT]
//! ```
//!
//! Prints `Received a line <line>` per line; exits 0 when the server
//! closes. A failed resolve or connect prints the failing operation
//! (`resolve: ...` or `connect: ...`) and exits 1.

use std::process::ExitCode;

use ioasync::{
    Loop,
    io::{Address, ReadAction, Stream, StreamEvent, StreamRef},
    notifier::{IntoSpec, Subscription},
};

fn usage() -> ExitCode {
    eprintln!("usage: line_client --connect HOST:PORT [--line TEXT]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut target, mut line) = (None, String::from("An initial line here"));
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--connect", Some(v)) => target = Some(v),
            ("--line", Some(v)) => line = v,
            _ => return usage(),
        }
    }
    let Some(target) = target else {
        return usage();
    };
    match run(&target, &line).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("line_client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(target: &str, line: &str) -> ioasync::Result<()> {
    let target: Address = target.parse()?;
    let lp = Loop::current()?;
    let conn = lp.connect(target).await?;
    let done = lp.clone();
    let stream = lp
        .add(
            Stream::spec("client", conn)
                .on_read(|_io, buf, eof| {
                    while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                        let l = buf.split_to(i + 1);
                        println!("Received a line {}", String::from_utf8_lossy(&l[..i]));
                    }
                    if eof && !buf.is_empty() {
                        println!("Received a line {}", String::from_utf8_lossy(&buf.split()));
                    }
                    ReadAction::Wait
                })
                .subscribe(Subscription::closure(move |e| {
                    if let StreamEvent::Closed = e {
                        done.stop(());
                    }
                })),
        )
        .await?;
    stream.write(format!("{line}\n")).await?;
    lp.run::<()>().await
}
