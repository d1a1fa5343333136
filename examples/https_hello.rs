//! An HTTPS service on supervised connections: hyper 1 serving each
//! accepted TLS connection inside a [`Session`] notifier, so every
//! connection is a node of the tree, a panicking request handler ends its
//! own connection only, and SIGINT/SIGTERM drain what is in flight.
//!
//! ```text
//! cargo run --features tls --example https_hello -- [--listen ADDR] --tls-cert PEM --tls-key PEM
//! ```
//!
//! - `GET /`: 200, the notifier tree as text (the listener and one
//!   `session` per open connection);
//! - `GET /sleep/MS`: 200 after MS milliseconds (to have requests in
//!   flight);
//! - `GET /panic`: the handler panics; that connection closes.
//!
//! The first line on stdout is `listening on <addr>`. On SIGINT or SIGTERM
//! each connection finishes its request in flight and closes (within 5 s),
//! the program prints `answered N of M requests on K connections`
//! (M: requests read) and exits 0. A connection with no request under
//! way is closed at once.

use std::{
    convert::Infallible,
    io::Write as _,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use ioasync::{
    Error, Loop,
    io::{Address, Listen, ListenerRef, Session, StopSignal, TlsServer},
};

fn usage() -> ExitCode {
    eprintln!("usage: https_hello [--listen ADDR] --tls-cert PEM --tls-key PEM");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut cert, mut key) = (String::from("127.0.0.1:0"), None, None);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => addr = v,
            ("--tls-cert", Some(v)) => cert = Some(v),
            ("--tls-key", Some(v)) => key = Some(v),
            _ => return usage(),
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        return usage();
    };
    match serve(&addr, &cert, &key).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("https_hello: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    /// Requests read (their handler started)...
    started: AtomicU64,
    /// ...and answered (their handler finished).
    answered: AtomicU64,
}

async fn serve(addr: &str, cert: &str, key: &str) -> ioasync::Result<()> {
    let addr: Address = addr.parse()?;
    let tls = TlsServer::from_pem_files(cert, key)?.alpn(&[b"http/1.1"]);
    let lp = Loop::builder()
        .adopt_current()
        .shutdown_on_signals(Duration::from_secs(5))
        .build()?;
    let counts = Arc::new(Counts::default());
    let (tree, c) = (lp.clone(), counts.clone());
    let listener = lp
        .listen("https", Listen::new(addr).tls(tls), move |conn, _peer| {
            let n = c.connections.fetch_add(1, Ordering::Relaxed) + 1;
            let (tree, c) = (tree.clone(), c.clone());
            Session::spec(format!("conn-{n}"), conn, move |conn, stop| {
                http1(conn, stop, tree, c)
            })
        })
        .await?;
    println!("listening on {}", listener.local_addr().await?);
    let _ = std::io::stdout().flush();
    let res = match lp.run::<()>().await {
        Err(e) if e.is_cancelled() => Ok(()),
        other => other,
    };
    println!(
        "answered {} of {} requests on {} connections",
        counts.answered.load(Ordering::Relaxed),
        counts.started.load(Ordering::Relaxed),
        counts.connections.load(Ordering::Relaxed)
    );
    res
}

/// One connection: hyper's HTTP/1 server, told to finish gracefully when
/// the session is asked to stop.
async fn http1(
    conn: ioasync::io::Connection,
    mut stop: StopSignal,
    tree: Loop,
    counts: Arc<Counts>,
) -> ioasync::Result<()> {
    let service = service_fn(move |req| {
        let (tree, counts) = (tree.clone(), counts.clone());
        async move {
            counts.started.fetch_add(1, Ordering::Relaxed);
            let res = answer(req, &tree).await;
            counts.answered.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Infallible>(res)
        }
    });
    let http =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(conn), service);
    tokio::pin!(http);
    let res = tokio::select! {
        res = http.as_mut() => res,
        () = stop.stopping() => {
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    res.map_err(|e| Error::new("http", ioasync::error::ErrorKind::Protocol, e.to_string()))
}

async fn answer(req: Request<Incoming>, tree: &Loop) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let text = |code, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    match path {
        "/" => text(StatusCode::OK, tree.tree().to_string()),
        "/panic" => panic!("GET /panic: a handler that panics"),
        _ => match path
            .strip_prefix("/sleep/")
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, format!("slept {ms} ms\n"))
            }
            None => text(StatusCode::NOT_FOUND, format!("no {path}\n")),
        },
    }
}
