//! Upper-cases its stdin onto its stdout through one Stream over stdio
//! (IO::Async's `new_for_stdio`), until EOF.
//!
//! ```text
//! echo hello | cargo run --example upcase
//! ```

use std::process::ExitCode;

use ioasync::{
    Loop,
    io::{ReadAction, Stream, StreamEvent},
    notifier::{IntoSpec, Subscription},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upcase: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ioasync::Result<()> {
    let lp = Loop::current()?;
    let done = lp.clone();
    lp.add(
        Stream::stdio("stdio")?
            .on_read(|io, buf, _eof| {
                io.write_slice(&buf.to_ascii_uppercase());
                buf.clear();
                ReadAction::Wait
            })
            .subscribe(Subscription::closure(move |e| {
                if let StreamEvent::Closed = e {
                    done.stop(());
                }
            })),
    )
    .await?;
    lp.run::<()>().await
}
