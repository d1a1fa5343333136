//! examples/prefork_echo (issue 16): a parent that accepts and hands each
//! connection's fd to one of 2 worker processes over an fd channel
//! (SCM_RIGHTS); the workers echo. Byte-exact echo over 1,000
//! connections with no fd left behind in the parent; a SIGKILLed worker
//! takes its connections with it and new ones go to the replacement;
//! SIGTERM exits 0.

#[macro_use]
mod support;

use support::{bounded, example, signal, spawn_with_first_line};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

async fn start() -> (Child, String) {
    let (child, first, _rest) =
        spawn_with_first_line(Command::new(example("prefork_echo")).args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
        ]))
        .await;
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_owned();
    (child, addr)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The parent's children (the workers), every thread's.
fn workers(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out.sort();
    out
}

/// Sends `n` bytes (a pattern tagged by `seed`) and reads them back.
async fn echo_once(conn: &mut TcpStream, seed: u32, n: usize) -> std::io::Result<()> {
    let data: Vec<u8> = (0..n).map(|i| (i as u32 * 31 + seed) as u8).collect();
    conn.write_all(&data).await?;
    let mut got = vec![0u8; n];
    conn.read_exact(&mut got).await?;
    assert_eq!(got, data, "byte-exact echo");
    Ok(())
}

async fn echo_new(addr: &str, seed: u32, n: usize) {
    let mut conn = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    bounded("echo", echo_once(&mut conn, seed, n))
        .await
        .unwrap();
}

#[test]
fn prefork_echo_echoes_1000_connections_byte_exact_and_the_parent_keeps_no_fd() {
    support::run(2, || async {
        let (child, addr) = start().await;
        let pid = child.id().unwrap();
        // Warm up (the runtime's and the workers' fds settle).
        for i in 0..20 {
            echo_new(&addr, i, 100).await;
        }
        let before = open_fds(pid);
        assert_eq!(workers(pid).len(), 2, "two worker processes");
        for batch in 0..50u32 {
            let mut tasks = Vec::new();
            for j in 0..20u32 {
                let addr = addr.clone();
                let seed = batch * 20 + j;
                tasks.push(tokio::spawn(async move {
                    echo_new(&addr, seed, 1 + (seed as usize * 97) % 4000).await
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
        // Every connection was handed over and closed: nothing stays here.
        let after = bounded("the parent's fds settle", async {
            loop {
                let now = open_fds(pid);
                if now <= before {
                    return now;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        // A leak is more fds than before; fewer happens (a transient fd
        // the parent held when `before` was read has closed since).
        assert!(
            after <= before,
            "fds leaked in the parent: {before} -> {after}"
        );
        signal(&child, "TERM").await;
        let mut child = child;
        let st = bounded("exit", child.wait()).await.unwrap();
        assert_eq!(st.code(), Some(0), "{st:?}");
    });
}

#[test]
fn a_sigkilled_worker_takes_its_connections_and_new_ones_go_to_the_replacement() {
    support::run(2, || async {
        let (child, addr) = start().await;
        let pid = child.id().unwrap();
        let mut conns = Vec::new();
        for i in 0..10u32 {
            let mut c = TcpStream::connect(&addr).await.unwrap();
            bounded("echo", echo_once(&mut c, i, 64)).await.unwrap();
            conns.push(c);
        }
        let old = workers(pid);
        assert_eq!(old.len(), 2);
        let victim = old[0];
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Its connections close; the other worker's still echo.
        let (mut dead, mut alive) = (0, 0);
        for (i, c) in conns.iter_mut().enumerate() {
            let mut b = [0u8; 1];
            let gone = match bounded("a probe", async {
                c.write_all(b"p").await?;
                c.read(&mut b).await
            })
            .await
            {
                Ok(0) | Err(_) => true,
                Ok(_) => false,
            };
            if gone {
                dead += 1;
            } else {
                alive += 1;
                assert_eq!(&b, b"p", "connection {i}");
            }
        }
        assert!(dead >= 1 && alive >= 1, "dead {dead}, alive {alive}");
        // The replacement comes; new connections are all served.
        bounded("the replacement", async {
            loop {
                let now = workers(pid);
                if now.len() == 2 && !now.contains(&victim) {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        for i in 0..20u32 {
            echo_new(&addr, 100 + i, 512).await;
        }
        drop(conns);
        signal(&child, "TERM").await;
        let mut child = child;
        let st = bounded("exit", child.wait()).await.unwrap();
        assert_eq!(st.code(), Some(0), "{st:?}");
    });
}
