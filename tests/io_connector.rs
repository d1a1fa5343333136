//! The reconnecting connector (issue 16): a server killed and restarted
//! 10 times — the connector reconnects each time within its backoff
//! bounds, writes queued while down arrive in order after the reconnect;
//! in fail-fast mode writes fail at once while down.

#[macro_use]
mod support;

use std::time::Duration;

use ioasync::{
    io::{Address, Connect, Connector, ConnectorEvent, ConnectorRef, WhileDown},
    notifier::Subscription,
    prelude::*,
    supervision::Backoff,
};
use support::{bounded, test_loop};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

const INITIAL: Duration = Duration::from_millis(20);
const MAX: Duration = Duration::from_millis(200);

/// Reads from `conn` until `want` bytes have come.
async fn read_n(conn: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    bounded("server read", conn.read_exact(&mut got))
        .await
        .unwrap();
    got
}

fn events() -> (
    Subscription<ConnectorEvent>,
    mpsc::UnboundedReceiver<ConnectorEvent>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Subscription::closure(move |e| {
            let _ = tx.send(e);
        }),
        rx,
    )
}

/// Every wait it announces lies within the backoff's bounds (jitter takes
/// at most half off).
fn check_wait(retry_in: Duration) {
    assert!(
        retry_in >= INITIAL / 2 && retry_in <= MAX,
        "a wait of {retry_in:?} is outside [{:?}, {MAX:?}]",
        INITIAL / 2
    );
}

flavours!(
    a_server_killed_and_restarted_10_times_is_reconnected_each_time_with_queued_writes_in_order
);
async fn a_server_killed_and_restarted_10_times_is_reconnected_each_time_with_queued_writes_in_order()
 {
    let lp = test_loop();
    let mut server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = server.local_addr().unwrap();
    let (sub, mut ev) = events();
    let client = lp
        .add(
            Connector::spec("upstream", Connect::new(Address::Socket(at)))
                .backoff(Backoff::new(INITIAL, 2.0, MAX))
                .subscribe(sub),
        )
        .await
        .unwrap();
    for round in 0..10u32 {
        let (mut conn, _) = bounded("accept", server.accept()).await.unwrap();
        loop {
            match bounded("up", ev.recv()).await.unwrap() {
                ConnectorEvent::Up { n, .. } => {
                    assert_eq!(n, u64::from(round) + 1, "one connection per round");
                    break;
                }
                ConnectorEvent::ConnectFailed { retry_in, .. } => check_wait(retry_in),
                e => panic!("round {round}: {e:?} before up"),
            }
        }
        if round > 0 {
            // What was queued while down comes first, in order.
            let want = format!("q{round}-1;q{round}-2;q{round}-3;");
            assert_eq!(read_n(&mut conn, want.len()).await, want.as_bytes());
        }
        let live = format!("live{round};");
        bounded("a live write", client.write(live.clone()))
            .await
            .unwrap();
        assert_eq!(read_n(&mut conn, live.len()).await, live.as_bytes());
        // Kill the server: the connection and the listener go.
        drop(conn);
        drop(server);
        let retry_in = match bounded("down", ev.recv()).await.unwrap() {
            ConnectorEvent::Down { retry_in, .. } => retry_in,
            e => panic!("round {round}: {e:?} before down"),
        };
        check_wait(retry_in);
        assert!(!client.is_connected());
        // Written while down: queued, in order.
        let next = round + 1;
        let mut queued = Vec::new();
        for k in 1..=3 {
            // In mailbox order: each is queued behind the one before.
            let done = client.start_write(format!("q{next}-{k};")).await.unwrap();
            queued.push(done);
        }
        // Restart on the same port.
        server = TcpListener::bind(at).await.unwrap();
        if round == 9 {
            let (mut conn, _) = bounded("the last accept", server.accept()).await.unwrap();
            let want = "q10-1;q10-2;q10-3;";
            assert_eq!(read_n(&mut conn, want.len()).await, want.as_bytes());
            for q in queued {
                bounded("queued write", q).await.unwrap();
            }
            break;
        }
    }
    bounded("connected", client.connected()).await.unwrap();
}

flavours!(in_fail_fast_mode_writes_fail_at_once_while_down);
async fn in_fail_fast_mode_writes_fail_at_once_while_down() {
    let lp = test_loop();
    // A port with nothing listening.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = gone.local_addr().unwrap();
    drop(gone);
    let (sub, mut ev) = events();
    let client = lp
        .add(
            Connector::spec("ff", Connect::new(Address::Socket(at)))
                .backoff(Backoff::new(INITIAL, 2.0, MAX))
                .while_down(WhileDown::Fail)
                .subscribe(sub),
        )
        .await
        .unwrap();
    match bounded("a failed attempt", ev.recv()).await.unwrap() {
        ConnectorEvent::ConnectFailed { error, retry_in } => {
            check_wait(retry_in);
            assert_eq!(error.errno(), Some(111), "{error}");
        }
        e => panic!("{e:?}"),
    }
    let err = bounded("a write while down", client.write(&b"x"[..]))
        .await
        .unwrap_err();
    assert!(
        err.is_closed() && err.to_string().contains("not connected"),
        "{err}"
    );
    // Up again once something listens.
    let server = TcpListener::bind(at).await.unwrap();
    let (mut conn, _) = bounded("accept", server.accept()).await.unwrap();
    bounded("connected", client.connected()).await.unwrap();
    bounded("a write when up", client.write(&b"ok"[..]))
        .await
        .unwrap();
    assert_eq!(read_n(&mut conn, 2).await, b"ok");
}
