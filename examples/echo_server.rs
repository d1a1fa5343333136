//! An echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --example echo_server -- [--listen ADDR]
//! cargo run --features tls --example echo_server -- [--listen ADDR] \
//!     --tls-cert PEM --tls-key PEM [--handshake-timeout SECS]
//! ```
//!
//! ADDR defaults to `127.0.0.1:0` (any free port); `[::1]:7000` and
//! `unix:/path` work too (a stale socket file left by a killed run is
//! removed at bind, and the file is removed at exit). With `--tls-cert`
//! and `--tls-key` (built with feature `tls`) it speaks TLS; a failed
//! handshake is reported on stderr (`accept error: tls: ...`) and costs
//! nothing else. The first line on stdout is `listening on <addr>`. SIGINT or SIGTERM stop it gracefully:
//! the listener closes, each connection flushes what it accepted, and it
//! exits 0.

use std::{
    io::Write as _,
    process::ExitCode,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use ioasync::{
    Loop,
    io::{Address, Listen, Listener, ListenerEvent, ListenerRef, ReadAction, Stream},
    notifier::Subscription,
};

fn usage() -> ExitCode {
    eprintln!(
        "usage: echo_server [--listen ADDR] [--tls-cert PEM --tls-key PEM [--handshake-timeout SECS]]"
    );
    ExitCode::from(2)
}

#[derive(Default)]
struct Opts {
    addr: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    handshake: Option<f64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut o = Opts::default();
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => o.addr = Some(v),
            ("--tls-cert", Some(v)) => o.cert = Some(v),
            ("--tls-key", Some(v)) => o.key = Some(v),
            ("--handshake-timeout", Some(v)) => match v.parse() {
                Ok(s) => o.handshake = Some(s),
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    if o.cert.is_some() != o.key.is_some() {
        eprintln!("echo_server: --tls-cert and --tls-key go together");
        return usage();
    }
    match serve(o).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn listen_on(addr: Address, o: &Opts) -> ioasync::Result<Listen> {
    let listen = Listen::new(addr);
    let (Some(cert), Some(key)) = (&o.cert, &o.key) else {
        return Ok(listen);
    };
    #[cfg(feature = "tls")]
    {
        let mut tls = ioasync::io::TlsServer::from_pem_files(cert, key)?;
        if let Some(secs) = o.handshake {
            tls = tls.handshake_timeout(Duration::from_secs_f64(secs));
        }
        Ok(listen.tls(tls))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (cert, key, listen);
        Err(ioasync::Error::invalid_input(
            "tls",
            "built without TLS: build with --features tls",
        ))
    }
}

async fn serve(o: Opts) -> ioasync::Result<()> {
    let addr: Address = o.addr.as_deref().unwrap_or("127.0.0.1:0").parse()?;
    let listen = listen_on(addr, &o)?;
    let lp = Loop::builder()
        .adopt_current()
        .shutdown_on_signals(Duration::from_secs(5))
        .build()?;
    let next = AtomicU64::new(1);
    let spec = Listener::spec("echo", listen, move |conn, _peer| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        Stream::spec(format!("conn-{n}"), conn).on_read(|io, buf, _eof| {
            io.write_slice(buf);
            buf.clear();
            ReadAction::Wait
        })
    });
    // Failed accepts and handshakes go to stderr; the listener goes on.
    let errors = Subscription::closure(|ev| {
        if let ListenerEvent::AcceptError(e) = ev {
            eprintln!("accept error: {}: {e}", e.op());
        }
    });
    let listener = lp.add(spec.subscribe(errors)).await?;
    let local = listener.local_addr().await?;
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    match lp.run::<()>().await {
        Err(e) if e.is_cancelled() => Ok(()),
        other => other,
    }
}
