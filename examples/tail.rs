//! `tail -F`, from a FileStream.
//!
//! ```text
//! cargo run --example tail -- [-n N] PATH
//! ```
//!
//! Prints the last N lines of PATH (default 10), then every line appended,
//! following truncation (from the new start) and rotation (the path naming
//! a new file); waits for a missing PATH to appear; exits 0 on SIGINT.

use std::{io::Write as _, process::ExitCode, time::Duration};

use ioasync::{FileStream, FileStreamEvent, IntoSpec, Loop, ReadAction, StartAt, Subscription};

fn usage() -> ExitCode {
    eprintln!("usage: tail [-n N] PATH");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut n, mut path) = (10usize, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-n" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => n = v,
                None => return usage(),
            },
            _ if path.is_none() && !a.starts_with('-') => path = Some(a),
            _ => return usage(),
        }
    }
    let Some(path) = path else {
        return usage();
    };
    match run(&path, n).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tail: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &str, n: usize) -> ioasync::Result<()> {
    let lp = Loop::builder()
        .adopt_current()
        .shutdown_on_signals(Duration::from_secs(1))
        .build()?;
    lp.add(
        FileStream::spec("tail", path)
            .start(StartAt::LastLines(n))
            .interval(Duration::from_millis(50))
            .on_read(|buf, _eof| {
                let mut out = std::io::stdout().lock();
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line = buf.split_to(i + 1);
                    let _ = out.write_all(&line);
                }
                let _ = out.flush();
                ReadAction::Wait
            })
            .subscribe(Subscription::closure(|e| match e {
                FileStreamEvent::Truncated => eprintln!("tail: file truncated"),
                FileStreamEvent::Rotated => eprintln!("tail: following the new file"),
                FileStreamEvent::Error(e) => eprintln!("tail: {e}"),
                _ => {}
            })),
    )
    .await?;
    match lp.run::<()>().await {
        Err(e) if e.is_cancelled() => Ok(()),
        other => other,
    }
}
