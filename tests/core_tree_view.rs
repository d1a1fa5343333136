//! The tree as a picture: DOT that Graphviz reads, `demo --dot`, and the
//! live view (`examples/top` over `ioasync::control::serve_tree`) driven
//! in a real terminal under tmux.

#[macro_use]
mod support;

use std::{process::Stdio, time::Duration};

use ioasync::{
    io::{Listen, ListenerRef, ReadAction, Stream},
    worker::{Entry, Function, FunctionRef},
};
use support::{
    bounded, bounded_for, example, fresh_dir, signal, spawn_with_first_line, test_loop, tool,
};
use tokio::{io::AsyncWriteExt, process::Command};

#[test]
fn ioasync_worker() {
    ioasync::worker::run_if_worker([Entry::function("id", |n: u64| n)]);
}

/// Renders `dot` with Graphviz: the SVG, or the error it printed.
async fn render(dot: &str) -> Option<String> {
    let mut cmd = tool("dot", &["-V"], "graphviz")?;
    let mut child = cmd
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dot");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(dot.as_bytes()).await.unwrap();
    drop(stdin);
    let out = bounded("dot", child.wait_with_output()).await.unwrap();
    assert!(
        out.status.success(),
        "dot refused it: {}\n{dot}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

flavours!(the_dot_of_a_tree_with_a_listener_connections_a_pool_and_workers_parses_with_dot);
async fn the_dot_of_a_tree_with_a_listener_connections_a_pool_and_workers_parses_with_dot() {
    let lp = test_loop();
    let listener = lp
        .listen(
            "echo",
            Listen::new("127.0.0.1:0".parse::<ioasync::io::Address>().unwrap()),
            |conn, _| {
                Stream::spec("", conn).on_read(|io, buf, _| {
                    io.write_slice(buf);
                    buf.clear();
                    ReadAction::Wait
                })
            },
        )
        .await
        .unwrap();
    let addr = listener.local_addr().await.unwrap().to_string();
    let _clients = [
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
    ];
    let pool = lp
        .add(
            Function::spec("pool", "id")
                .exec_args(["--exact", "ioasync_worker", "--nocapture"])
                .min_workers(2),
        )
        .await
        .unwrap();
    assert_eq!(pool.call::<u64, u64>(&7).await.unwrap(), 7);
    let tree = bounded("both connections in the tree", async {
        loop {
            let t = lp.tree();
            if t.find("/echo").is_some_and(|l| l.children.len() == 2) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let dot = tree.to_dot();
    let pids = pool.stats().await.unwrap().pids;
    for pid in &pids {
        assert!(
            dot.contains(&format!("pid={pid}")),
            "worker {pid} with its pid: {dot}"
        );
    }
    let Some(svg) = render(&dot).await else {
        return;
    };
    assert!(svg.contains("<svg"), "{svg}");
    for n in tree.iter() {
        // Graphviz writes '-' in titles as an entity.
        let title = format!("<title>{}</title>", n.path.replace('-', "&#45;"));
        assert!(svg.contains(&title), "{} drawn", n.path);
    }
}

#[tokio::test]
async fn demo_dot_prints_only_the_final_tree_as_dot_on_stdout() {
    let out = bounded_for(
        Duration::from_secs(60),
        "demo --dot",
        Command::new(example("demo"))
            .args(["--seconds", "1", "--dot"])
            .output(),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("digraph ioasync {") && stdout.ends_with("}\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/primes/worker-"),
        "the pool's workers: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ok: every request was answered correctly"),
        "{stderr}"
    );
    render(&stdout).await;
}

/// What the tmux pane shows now.
async fn pane(session: &str) -> String {
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", session])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn worker_pids(screen: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = screen
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("/primes/worker-"))
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[tokio::test]
async fn the_live_view_under_tmux_shows_a_worker_restart_within_2_s() {
    if tool("tmux", &["-V"], "tmux").is_none() {
        return;
    }
    let dir = fresh_dir("top");
    let sock = dir.join("demo.tree");
    let (mut demo, first, _rest) = spawn_with_first_line(
        Command::new(example("demo"))
            .args(["--serve", "127.0.0.1:0", "--control"])
            .arg(&sock),
    )
    .await;
    assert!(first.starts_with("listening on "), "{first}");
    let session = format!("ioasync-top-{}", std::process::id());
    let top = format!(
        "{} {} --interval 0.2",
        example("top").display(),
        sock.display()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "50",
            &top,
        ])
        .status()
        .await
        .unwrap();
    assert!(started.success(), "tmux new-session");
    let before = bounded("the workers on screen", async {
        loop {
            let pids = worker_pids(&pane(&session).await);
            if pids.len() == 2 {
                return pids;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let victim = before[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = bounded_for(Duration::from_secs(2), "the replacement on screen", async {
        loop {
            let pids = worker_pids(&pane(&session).await);
            if pids.len() == 2 && !pids.contains(&victim) {
                return pids;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        after.contains(&before[1]),
        "the other worker lives on: {after:?}"
    );
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status()
        .await;
    signal(&demo, "TERM").await;
    let st = bounded("demo exits", demo.wait()).await.unwrap();
    assert!(st.success(), "demo exited with {st}");
    let _ = std::fs::remove_dir_all(&dir);
}
