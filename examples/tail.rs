//! `tail -F`, from a FileStream.
//!
//! ```text
//! cargo run --example tail -- [-n N] [-s SECONDS] PATH
//! ```
//!
//! Prints the last N lines of PATH (default 10), then every byte appended
//! as it comes (a partial line too), following truncation (from the new
//! start) and rotation (the path naming a new file); waits for a missing
//! PATH to appear and prints that file from its start (`-n` counts only
//! for the file there at the start); exits 0 on SIGINT. Its standard
//! output is coreutils `tail -F`'s (tests/io_tail_example.rs runs both).
//! It wakes on inotify events, polling every `-s` seconds (default 1) as
//! the backstop, as `tail -F` polls where it has no inotify.

use std::{
    io::Write as _,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ioasync::{
    Loop,
    fs::{FileStream, FileStreamEvent, StartAt},
    io::ReadAction,
    notifier::{IntoSpec, Subscription},
};

fn usage() -> ExitCode {
    eprintln!("usage: tail [-n N] [-s SECONDS] PATH");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut n, mut path, mut every) = (10usize, None, Duration::from_secs(1));
    while let Some(a) = args.next() {
        match a.as_str() {
            "-n" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => n = v,
                None => return usage(),
            },
            "-s" => match args
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
            {
                Some(v) => every = v,
                None => return usage(),
            },
            _ if path.is_none() && !a.starts_with('-') => path = Some(a),
            _ => return usage(),
        }
    }
    let Some(path) = path else {
        return usage();
    };
    match run(&path, n, every).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tail: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &str, n: usize, every: Duration) -> ioasync::Result<()> {
    let lp = Loop::builder()
        .adopt_current()
        .shutdown_on_signals(Duration::from_secs(1))
        .build()?;
    let opened = Arc::new(AtomicBool::new(false));
    let o = opened.clone();
    let name = path.to_owned();
    lp.add(
        FileStream::spec("tail", path)
            .start(StartAt::LastLines(n))
            .interval(every)
            .on_read(|buf, _eof| {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(buf);
                let _ = out.flush();
                buf.clear();
                ReadAction::Wait
            })
            .subscribe(Subscription::closure(move |e| match e {
                FileStreamEvent::Opened => o.store(true, Ordering::Relaxed),
                FileStreamEvent::Truncated => eprintln!("tail: {name}: file truncated"),
                FileStreamEvent::Rotated => {
                    eprintln!("tail: '{name}' has been replaced;  following new file")
                }
                FileStreamEvent::Error(e) => eprintln!("tail: {e}"),
                _ => {}
            })),
    )
    .await?;
    // The stream is following (and watching) now: say so when the path is
    // missing, as `tail -F` does.
    if !opened.load(Ordering::Relaxed) {
        eprintln!("tail: cannot open '{path}' for reading: No such file or directory");
    }
    match lp.run::<()>().await {
        Err(e) if e.is_cancelled() => Ok(()),
        other => other,
    }
}
