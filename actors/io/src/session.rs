//! [`Session`]: a supervised connection running any connection future —
//! hyper's `serve_connection`, a tonic server, a hand-written protocol —
//! over an accepted (plain or TLS) [`Connection`].
//!
//! A Listener whose per-connection child is a Session gives such a service
//! what every notifier has: supervision (a panic in the future ends that
//! connection, nothing else), introspection (each connection is a node of
//! the tree, `kind` `session`), and drain on shutdown: a graceful stop
//! hands the future a [`StopSignal`] and lets it finish, within the
//! session's stop timeout.
//!
//! ```
//! use ioasync::{Error, io::{Listen, Listener, Session}};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let at: ioasync::io::Address = "127.0.0.1:0".parse().unwrap();
//! let _spec = Listener::spec("hello", Listen::new(at), |conn, peer| {
//!     Session::spec(format!("conn-{peer}"), conn, |mut conn, mut stop| async move {
//!         let mut buf = [0u8; 1024];
//!         loop {
//!             tokio::select! {
//!                 n = conn.read(&mut buf) => match n.map_err(|e| Error::io("read", e))? {
//!                     0 => return Ok(()),
//!                     n => conn.write_all(&buf[..n]).await.map_err(|e| Error::io("write", e))?,
//!                 },
//!                 () = stop.stopping() => {
//!                     conn.write_all(b"bye\n").await.map_err(|e| Error::io("write", e))?;
//!                     return Ok(());
//!                 }
//!             }
//!         }
//!     })
//! });
//! ```

use std::{fmt, panic::AssertUnwindSafe};

use futures_util::{FutureExt, future::BoxFuture};
use ioasync_core::{Ctx, Handler, Notifier, Once, Restart, Result, Spec};
use tokio::sync::watch;

use crate::{addr::SockAddr, byte_stream::Info, connection::Connection};

/// Tells a [`Session`]'s future that a graceful stop was asked for: finish
/// what is under way (hyper: `graceful_shutdown()`) and return.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Whether the stop was asked for.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the stop is asked for (at once if it was). Cancel
    /// safe.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn stopping(&mut self) {
        // An error means the session is gone: that is a stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

type Start = Box<dyn FnOnce(Connection, StopSignal) -> BoxFuture<'static, Result<()>> + Send>;

/// How to start a [`Session`]: its connection and its future.
pub struct SessionArgs {
    conn: Connection,
    start: Start,
}

impl fmt::Debug for SessionArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionArgs")
            .field("conn", &self.conn)
            .finish()
    }
}

type Running = BoxFuture<'static, std::thread::Result<Result<()>>>;

/// A notifier owning one connection and driving one future over it; it
/// ends when the future does (an `Err` is its exit error, a panic its
/// panic).
///
/// ```
/// use ioasync::{Error, Loop, io::Session};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
/// let session = lp
///     .add(Session::spec("greeter", ours, |mut conn, mut stop| async move {
///         conn.write_all(b"hello\n").await.map_err(|e| Error::io("write", e))?;
///         stop.stopping().await; // serve until asked to stop, then drain
///         conn.write_all(b"bye\n").await.map_err(|e| Error::io("write", e))
///     }))
///     .await?;
/// let mut buf = [0u8; 6];
/// peer.read_exact(&mut buf).await.unwrap();
/// assert_eq!(&buf, b"hello\n");
/// assert!(session.stop().await.is_clean()); // a graceful stop: the future finishes
/// let mut rest = String::new();
/// peer.read_to_string(&mut rest).await.unwrap();
/// assert_eq!(rest, "bye\n");
/// # Ok(()) }
/// ```
pub struct Session {
    fut: Option<Running>,
    outcome: Option<std::thread::Result<Result<()>>>,
    stop: watch::Sender<bool>,
    peer: Option<SockAddr>,
    local: Option<SockAddr>,
}

impl Session {
    /// A session spec: at start, `f(conn, stop)` makes the future it
    /// drives. Temporary, like any connection: it is not restarted.
    pub fn spec<F, Fut>(name: impl Into<String>, conn: impl Into<Connection>, f: F) -> Spec<Session>
    where
        F: FnOnce(Connection, StopSignal) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let start: Start = Box::new(move |conn, stop| Box::pin(f(conn, stop)));
        let args = SessionArgs {
            conn: conn.into(),
            start,
        };
        Spec::once(name, args).restart(Restart::Temporary)
    }
}

impl Notifier for Session {
    type Args = Once<SessionArgs>;

    fn kind() -> &'static str {
        "session"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let args = args.take_for(ctx.path())?;
        let (local, peer) = args.conn.addrs();
        let (stop, rx) = watch::channel(false);
        let fut = (args.start)(args.conn, StopSignal(rx));
        Ok(Session {
            fut: Some(Box::pin(AssertUnwindSafe(fut).catch_unwind())),
            outcome: None,
            stop,
            peer,
            local,
        })
    }

    async fn ready(&mut self) {
        // Polled through `&mut`: a cancelled `ready` leaves it in place.
        match self.fut.as_mut() {
            Some(fut) => {
                self.outcome = Some(fut.await);
                self.fut = None;
            }
            None => std::future::pending().await,
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        match self.outcome.take() {
            Some(Ok(Ok(()))) => ctx.exit(),
            Some(Ok(Err(e))) => {
                tracing::debug!(error = %e, "session ended with an error");
                ctx.fail(e);
            }
            // The runtime contains it like any panic of the notifier: the
            // message becomes this session's exit reason.
            Some(Err(payload)) => std::panic::resume_unwind(payload),
            None => {}
        }
    }

    async fn on_stop(&mut self, _ctx: &mut Ctx<'_, Self>) {
        // A graceful stop: tell the future, let it finish (the stop
        // timeout bounds it; past it the session is killed).
        let _ = self.stop.send(true);
        if let Some(fut) = self.fut.take() {
            match fut.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "session drained with an error"),
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("running", &self.fut.is_some())
            .finish()
    }
}

/// A session's addresses and state.
#[derive(Debug, Clone, PartialEq, Eq, kameo::Reply)]
pub struct SessionInfo {
    /// Local address, when the connection is over a socket.
    pub local: Option<SockAddr>,
    /// Peer address, when the connection is over a socket.
    pub peer: Option<SockAddr>,
    /// A graceful stop was asked for and the future is finishing.
    pub stopping: bool,
}

impl Handler<Info> for Session {
    type Reply = SessionInfo;
    async fn handle(&mut self, _: Info, _ctx: &mut Ctx<'_, Self>) -> SessionInfo {
        SessionInfo {
            local: self.local.clone(),
            peer: self.peer.clone(),
            stopping: *self.stop.borrow(),
        }
    }
}

/// Session operations on its handle.
pub trait SessionRef {
    /// The session's addresses and whether it is stopping, answered at
    /// once (not behind the future's work).
    ///
    /// ```
    /// use ioasync::{Loop, io::{Connection, Session, SessionRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, _peer) = tokio::net::UnixStream::pair().unwrap();
    /// let session = lp
    ///     .add(Session::spec("s", Connection::from(ours), |_conn, mut stop| async move {
    ///         stop.stopping().await;
    ///         Ok(())
    ///     }))
    ///     .await?;
    /// let info = session.info().await?;
    /// assert!(!info.stopping);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only asks.
    fn info(&self) -> impl Future<Output = Result<SessionInfo>> + Send;
}

impl SessionRef for ioasync_core::NotifierRef<Session> {
    async fn info(&self) -> Result<SessionInfo> {
        self.ask_now(Info).await
    }
}
