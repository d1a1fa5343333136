//! A pre-fork echo server: the parent accepts, and hands each connection's
//! file descriptor to one of N supervised worker processes over an fd
//! channel (`SCM_RIGHTS`); the workers echo.
//!
//! ```text
//! cargo run --example prefork_echo -- [--listen ADDR] [--workers N]
//! ```
//!
//! ADDR defaults to `127.0.0.1:0` (any free port), N to 2. The first line
//! on stdout is `listening on <addr>`. A worker that dies (SIGKILL it)
//! takes its connections with it; it is restarted, and new connections go
//! to the workers alive. The parent keeps no copy of a connection it
//! handed over. SIGINT or SIGTERM stop it gracefully: it stops accepting,
//! the workers are stopped, and it exits 0.

use std::{io::Write as _, os::fd::OwnedFd, process::ExitCode, time::Duration};

use ioasync::{
    Loop,
    channel::{Sender, WithFds},
    notifier::{Ctx, Notifier, Spec},
    prelude::*,
    worker::{Entry, Routine, RoutineIo},
};

fn usage() -> ExitCode {
    eprintln!("usage: prefork_echo [--listen ADDR] [--workers N]");
    ExitCode::from(2)
}

/// A worker: echoes every connection it is handed, each on a task of its
/// own runtime, until the parent closes its channel; returns how many it
/// served.
fn echo_worker(io: &mut RoutineIo<(), ()>) -> u64 {
    let Some(conns) = io.fd_channel::<u64>(0) else {
        return 0;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a worker runtime");
    rt.block_on(async move {
        let Ok(mut conns) = conns.into_async() else {
            return 0;
        };
        let mut served = 0;
        while let Some(Ok(WithFds { fds, .. })) = conns.recv().await {
            for fd in fds {
                let std = std::net::TcpStream::from(fd);
                if std.set_nonblocking(true).is_err() {
                    continue;
                }
                let Ok(mut conn) = tokio::net::TcpStream::from_std(std) else {
                    continue;
                };
                served += 1;
                tokio::spawn(async move {
                    let (mut rd, mut wr) = conn.split();
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                });
            }
        }
        served
    })
}

/// The parent's acceptor: takes connections and hands each to the next
/// worker in turn (one whose channel has room, if any).
struct Acceptor {
    listener: tokio::net::TcpListener,
    workers: Vec<Sender<WithFds<u64>>>,
    next: usize,
    accepted: Option<std::io::Result<tokio::net::TcpStream>>,
    count: u64,
}

impl Notifier for Acceptor {
    type Args = ioasync::notifier::Once<(tokio::net::TcpListener, Vec<Sender<WithFds<u64>>>)>;

    fn kind() -> &'static str {
        "acceptor"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> ioasync::Result<Self> {
        let (listener, workers) = args.take_for(ctx.path())?;
        Ok(Acceptor {
            listener,
            workers,
            next: 0,
            accepted: None,
            count: 0,
        })
    }

    async fn ready(&mut self) {
        if self.accepted.is_none() {
            self.accepted = Some(self.listener.accept().await.map(|(s, _)| s));
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let conn = match self.accepted.take() {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                eprintln!("prefork_echo: accept: {e}");
                return;
            }
            None => return,
        };
        let Ok(std) = conn.into_std() else { return };
        let mut msg = WithFds::new(self.count, vec![OwnedFd::from(std)]);
        self.count += 1;
        // The next worker with room; if none has, wait on the next one.
        let n = self.workers.len();
        for i in 0..n {
            let w = &self.workers[(self.next + i) % n];
            match w.try_send(msg) {
                Ok(()) => {
                    self.next = (self.next + i + 1) % n;
                    return;
                }
                Err(e) => msg = e.into_inner(),
            }
        }
        let w = self.next;
        self.next = (self.next + 1) % n;
        if self.workers[w].send(msg).await.is_err() {
            ctx.set_detail("a worker's channel is closed");
        }
    }
}

fn main() -> ExitCode {
    // A worker process runs its entry and exits here.
    ioasync::worker::run_if_worker([Entry::routine("echo-worker", echo_worker)]);
    let mut args = std::env::args().skip(1);
    let (mut addr, mut workers) = ("127.0.0.1:0".to_string(), 2usize);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => addr = v,
            ("--workers", Some(v)) => match v.parse() {
                Ok(n) if n > 0 => workers = n,
                _ => return usage(),
            },
            _ => return usage(),
        }
    }
    let lp = match Loop::builder()
        .shutdown_on_signals(Duration::from_secs(5))
        .build()
    {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("prefork_echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let l = lp.clone();
    match lp.block_on(async move { serve(l, addr, workers).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_cancelled() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prefork_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(lp: Loop, addr: String, workers: usize) -> ioasync::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| ioasync::Error::io("bind", e))?;
    let at = listener
        .local_addr()
        .map_err(|e| ioasync::Error::io("getsockname", e))?;
    let mut senders = Vec::new();
    for i in 0..workers {
        let (mut spec, _io) = Routine::<(), (), u64>::spec(format!("worker-{i}"), "echo-worker", 1);
        senders.push(spec.fd_channel_in::<u64>(64));
        lp.add(
            spec.restart(ioasync::supervision::Restart::Permanent)
                .restart_limit(100, Duration::from_secs(10)),
        )
        .await?;
    }
    lp.add(Spec::<Acceptor>::new(
        "acceptor",
        ioasync::notifier::Once::new((listener, senders)),
    ))
    .await?;
    println!("listening on {at}");
    let _ = std::io::stdout().flush();
    lp.run::<()>().await
}
