//! fd passing: connections handed per second from an accepting parent to
//! 2 worker processes that echo them, ioasync (an acceptor notifier, fd
//! channels into supervised Routines) against the same pre-fork server
//! written with raw `sendmsg`/`recvmsg` (`SCM_RIGHTS` over
//! `SOCK_SEQPACKET`, tokio in parent and workers, no framework). Each
//! server in its own process tree; the same load generator: 16 clients,
//! each connecting, echoing 64 bytes and closing, in a loop. Reports
//! connections/s, server CPU µs per connection (parent and workers), and
//! the ratio; median of 3 alternating runs.
//!
//! `cargo bench --bench prefork` (`-- --quick` for shorter runs).
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

use std::{
    io::{BufRead, BufReader, Write as _},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ioasync::{
    Loop,
    channel::{Sender, WithFds},
    notifier::{Ctx, Notifier, Once, Spec},
    worker::{Entry, Routine, RoutineIo},
};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, unix::AsyncFd},
    net::{TcpListener, TcpStream},
};

const MSG: usize = 64;
const CLIENTS: usize = 16;
const WORKERS: usize = 2;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn echo(mut conn: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn tcp_from(fd: OwnedFd) -> Option<TcpStream> {
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true).ok()?;
    TcpStream::from_std(std).ok()
}

// ---- ioasync --------------------------------------------------------------

fn ours_worker(io: &mut RoutineIo<(), ()>) -> u64 {
    let Some(rx) = io.fd_channel::<u64>(0) else {
        return 0;
    };
    runtime().block_on(async move {
        let Ok(mut rx) = rx.into_async() else {
            return 0;
        };
        let mut n = 0;
        while let Some(Ok(m)) = rx.recv().await {
            for fd in m.fds {
                if let Some(c) = tcp_from(fd) {
                    n += 1;
                    tokio::spawn(echo(c));
                }
            }
        }
        n
    })
}

struct Acceptor {
    listener: TcpListener,
    workers: Vec<Sender<WithFds<u64>>>,
    next: usize,
    got: Option<std::io::Result<TcpStream>>,
}

impl Notifier for Acceptor {
    type Args = Once<(TcpListener, Vec<Sender<WithFds<u64>>>)>;

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> ioasync::Result<Self> {
        let (listener, workers) = args.take_for(ctx.path())?;
        Ok(Acceptor {
            listener,
            workers,
            next: 0,
            got: None,
        })
    }

    async fn ready(&mut self) {
        if self.got.is_none() {
            self.got = Some(self.listener.accept().await.map(|(s, _)| s));
        }
    }

    async fn on_ready(&mut self, _ctx: &mut Ctx<'_, Self>) {
        let Some(Ok(conn)) = self.got.take() else {
            return;
        };
        let Ok(std) = conn.into_std() else { return };
        let w = self.next;
        self.next = (self.next + 1) % self.workers.len();
        let _ = self.workers[w]
            .send(WithFds::new(0, vec![OwnedFd::from(std)]))
            .await;
    }
}

fn serve_ours() {
    let lp = Loop::builder().current_thread().build().unwrap();
    let l = lp.clone();
    lp.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let mut senders = Vec::new();
        for i in 0..WORKERS {
            let (mut spec, _io) = Routine::<(), (), u64>::spec(format!("w{i}"), "bench-worker", 1);
            senders.push(spec.fd_channel_in::<u64>(256));
            l.add(spec.exec_args(["--worker"])).await.unwrap();
        }
        l.add(Spec::<Acceptor>::new(
            "acceptor",
            Once::new((listener, senders)),
        ))
        .await
        .unwrap();
        println!("listening on {at}");
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}

// ---- raw ------------------------------------------------------------------

fn send_fd(sock: &AsyncFd<OwnedFd>, fd: &OwnedFd) -> std::io::Result<()> {
    let raw = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let iov = [std::io::IoSlice::new(&[0u8])];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map(drop)
        .map_err(Into::into)
}

fn recv_fd(sock: &AsyncFd<OwnedFd>) -> std::io::Result<Option<OwnedFd>> {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut b = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut b)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            #[allow(unsafe_code)]
            // SAFETY: installed for us by the kernel just now.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok(None)
}

fn async_fd(fd: OwnedFd) -> AsyncFd<OwnedFd> {
    let flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_RDWR;
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: the AsyncFd owns the fd for its whole life.
    unsafe {
        AsyncFd::register_with_interest(
            fd,
            tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
        )
    }
    .map_err(|e| e.into_parts().1)
    .unwrap()
}

fn raw_worker(fd: i32) {
    #[allow(unsafe_code)]
    // SAFETY: the parent passed us this fd (its number on our command line).
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    runtime().block_on(async move {
        let sock = async_fd(sock);
        loop {
            let mut g = sock.readable().await.unwrap();
            match recv_fd(&sock) {
                Ok(Some(fd)) => {
                    if let Some(c) = tcp_from(fd) {
                        tokio::spawn(echo(c));
                    }
                }
                Ok(None) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => g.clear_ready(),
                Err(_) => return,
            }
        }
    });
}

fn serve_raw() {
    let mut workers = Vec::new();
    let mut children = Vec::new();
    for _ in 0..WORKERS {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        // The worker's end survives exec: its number goes on the command line.
        nix::fcntl::fcntl(
            &theirs,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        children.push(
            Command::new(std::env::current_exe().unwrap())
                .args(["--raw-worker", &theirs.as_raw_fd().to_string()])
                .spawn()
                .unwrap(),
        );
        drop(theirs);
        workers.push(ours);
    }
    runtime().block_on(async move {
        let workers: Vec<_> = workers.into_iter().map(async_fd).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        let mut next = 0;
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            let fd = OwnedFd::from(conn.into_std().unwrap());
            let w = &workers[next];
            next = (next + 1) % workers.len();
            loop {
                let mut g = w.writable().await.unwrap();
                match send_fd(w, &fd) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => g.clear_ready(),
                    _ => break,
                }
            }
        }
    });
    drop(children);
}

// ---- the load and the measurements -----------------------------------------

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(kind: &str) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--serve", kind])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        Server { child, addr }
    }

    /// Every pid of the server's process tree (the parent and its workers).
    fn pids(&self) -> Vec<u32> {
        let pid = self.child.id();
        let mut out = vec![pid];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                    out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
                }
            }
        }
        out
    }

    /// CPU seconds (user + system) of the whole tree.
    fn cpu(&self) -> f64 {
        let tick = 100.0;
        self.pids()
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .map(|s| {
                let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
                (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick
            })
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for p in self.pids().into_iter().rev() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

/// (connections/s, server CPU µs per connection) over `secs`.
fn load(server: &Server, secs: f64) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = server.addr.clone();
    // Warm up: the workers are up and echoing.
    rt.block_on(async {
        for _ in 0..50 {
            one(&addr).await;
        }
    });
    let cpu0 = server.cpu();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let done: usize = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < until {
                    one(&addr).await;
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu = server.cpu() - cpu0;
    (done as f64 / wall, cpu * 1e6 / done.max(1) as f64)
}

async fn one(addr: &str) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let msg = [7u8; MSG];
    c.write_all(&msg).await.unwrap();
    let mut got = [0u8; MSG];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(got, msg);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    ioasync::worker::run_if_worker([Entry::routine("bench-worker", ours_worker)]);
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve") if args.get(2).map(String::as_str) == Some("raw") => return serve_raw(),
        Some("--serve") => return serve_ours(),
        Some("--raw-worker") => return raw_worker(args[2].parse().unwrap()),
        _ => {}
    }
    let secs = if args.iter().any(|a| a == "--quick") {
        1.0
    } else {
        3.0
    };
    let (raw, ours) = (Server::start("raw"), Server::start("ours"));
    let (mut r, mut o) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        r.push(load(&raw, secs));
        o.push(load(&ours, secs));
    }
    let rate = |v: &[(f64, f64)]| median(v.iter().map(|x| x.0).collect());
    let cpu = |v: &[(f64, f64)]| median(v.iter().map(|x| x.1).collect());
    let (rr, rc, or, oc) = (rate(&r), cpu(&r), rate(&o), cpu(&o));
    println!("fd passing: {CLIENTS} clients, connect + {MSG}-byte echo + close, {WORKERS} workers");
    println!("| server | conns/s | x raw | server CPU µs/conn | x raw |");
    println!("|---|---|---|---|---|");
    println!("| raw sendmsg/recvmsg | {rr:.0} | 1.00 | {rc:.1} | 1.00 |");
    println!(
        "| ioasync fd channels | {or:.0} | {:.2} | {oc:.1} | {:.2} |",
        or / rr,
        oc / rc
    );
}
