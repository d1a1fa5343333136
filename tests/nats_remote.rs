//! The Remote notifier: credentials, the tree, JetStream work queues.
#![cfg(feature = "nats")]

#[macro_use]
mod support;

use std::time::Duration;

use ioasync::nats::{PoolMode, Remote, RemoteEntryPoint, RemoteEvent};
use ioasync::{
    notifier::{Spec, Subscription},
    worker::{CallOptions, Entry, EntryPoint},
};
use support::{
    bounded, bounded_for,
    nats::{ACK_WAIT, NatsServer, start_host},
    test_loop,
};

/// Says it runs (on stdout: the test waits for that), sleeps, answers
/// (pid, tag).
static SLOW: EntryPoint<(u64, u64), (u32, u64)> = EntryPoint::new("slow");

fn entries() -> Vec<Entry> {
    vec![SLOW.runs(|(ms, tag)| {
        println!("running {tag} in {}", std::process::id());
        // A lane is a thread of its own: blocking is its job.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(ms));
        (std::process::id(), tag)
    })]
}

/// When this binary runs as a worker host, this test is its main.
#[test]
fn nats_host() {
    support::nats::host_main(entries());
}

flavours!(a_password_server_refuses_an_unauthenticated_client_clearly);
async fn a_password_server_refuses_an_unauthenticated_client_clearly() {
    let Some(server) = NatsServer::start(&["--user", "app", "--pass", "s3cret"]).await else {
        return;
    };
    let lp = test_loop();
    for spec in [
        Remote::spec("anon", &server.url),
        Remote::spec("wrong", &server.url).user_password("app", "guess"),
    ] {
        let err = bounded("the refusal", lp.add(spec)).await.unwrap_err();
        assert_eq!(err.op(), "connect", "{err}");
        assert!(err.is_invalid_input(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("authorization violation") && text.contains(&server.url),
            "{text}"
        );
        assert!(
            !text.contains("s3cret") && !text.contains("guess"),
            "{text}"
        );
    }
    // Nobody there, or no URL at all: the start fails, saying which.
    let nowhere = format!("nats://127.0.0.1:{}", support::nats::free_port());
    for (url, kind) in [
        (nowhere.as_str(), ioasync::error::ErrorKind::Io),
        ("nats://[::1", ioasync::error::ErrorKind::InvalidInput),
    ] {
        let err = bounded("a failed start", lp.add(Remote::spec("bad", url)))
            .await
            .unwrap_err();
        assert_eq!((err.op(), err.kind()), ("connect", kind), "{err}");
        assert!(err.to_string().contains(url), "{err}");
    }
    // Subscribed before it starts: its first connect is an event too.
    let (sub, mut events) = Subscription::stream(16);
    let spec = Spec::from(Remote::spec("nats", &server.url).user_password("app", "s3cret"));
    let _nats = lp.add(spec.subscribe(sub)).await.unwrap();
    // Connected, and the tree says so and where.
    let ev = bounded("the connected event", events.recv()).await.unwrap();
    assert_eq!(
        ev,
        RemoteEvent::Connected {
            server: server.url.clone()
        }
    );
    let node = lp.tree();
    let node = node.find("/nats").expect("/nats in the tree");
    let detail = node.detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("connected {}", server.url)),
        "{detail}"
    );
    assert_eq!(node.kind, "remote");
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

flavours!(jetstream_a_host_killed_mid_call_has_the_job_completed_on_another_host_exactly_once);
async fn jetstream_a_host_killed_mid_call_has_the_job_completed_on_another_host_exactly_once() {
    let Some(server) = NatsServer::start_jetstream().await else {
        return;
    };
    let lp = test_loop();
    let nats = lp.add(Remote::spec("nats", &server.url)).await.unwrap();
    let mode = PoolMode::JetStream { ack_wait: ACK_WAIT };
    let pool = lp
        .add(SLOW.remote_pool(&nats, "jobs").mode(mode))
        .await
        .unwrap();
    let slow = SLOW.on_remote(&pool).unwrap();
    // One host takes the job and is killed while it runs it.
    let mut first = start_host(&server.url, "jobs", "slow", 1, true).await;
    let call = {
        let slow = slow.clone();
        tokio::spawn(async move {
            let opts = CallOptions {
                timeout: Some(Duration::from_secs(15)),
                retry_safe: true,
                ..Default::default()
            };
            slow.call_with(&(1_500, 7), opts).await
        })
    };
    let line = first.line("running 7").await;
    assert!(line.ends_with(&first.pid().to_string()), "{line}");
    let first_pid = first.pid();
    first.kill().await;
    // Another host: the job is redelivered to it after the ack wait.
    let mut second = start_host(&server.url, "jobs", "slow", 1, true).await;
    let (pid, tag) = bounded_for(Duration::from_secs(20), "the job's result", call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tag, 7);
    assert_eq!(pid, second.pid(), "the result came from the second host");
    assert_ne!(pid, first_pid);
    second.line("running 7").await;
    // Exactly one result: the pool delivered one, dropped none.
    let stats = slow.stats().await.unwrap();
    assert_eq!(
        (stats.completed, stats.failed, stats.late_dropped),
        (1, 0, 0),
        "{stats:?}"
    );
    // Acked: the work queue is empty, nothing is redelivered later. A
    // second call is answered by the second host at once (not after a
    // redelivery of the first).
    let (_, t2) = bounded("a second job", slow.call(&(0, 8))).await.unwrap();
    assert_eq!(t2, 8);
    let next = second.line("running").await;
    assert!(next.starts_with("running 8"), "{next}");
    lp.shutdown(Some(Duration::from_secs(5))).await;
}

flavours!(the_demo_spans_two_worker_hosts_over_nats_and_survives_a_host_sigkill);
async fn the_demo_spans_two_worker_hosts_over_nats_and_survives_a_host_sigkill() {
    let Some(server) = NatsServer::start(&[]).await else {
        return;
    };
    let out = tokio::process::Command::new(support::example("demo"))
        .args(["--nats", &server.url, "--seconds", "2", "--clients", "2"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = bounded_for(Duration::from_secs(60), "the demo", out)
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("killed worker host"), "{stdout}");
    assert!(stdout.contains("1 lost"), "{stdout}");
    assert!(
        stdout.contains("ok: every request was answered correctly"),
        "{stdout}"
    );
}
