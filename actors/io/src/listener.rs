//! [`Listener`]: accepts connections and starts a supervised child for
//! each (IO::Async::Listener).

use std::{fmt, sync::Arc, time::Duration};

use ioasync_core::{AnySpec, Ctx, Emits, Error, Handler, Notifier, Result, Spec};
use tokio::time::Instant;

use crate::{
    addr::SockAddr,
    connection::Connection,
    listen::{Listen, ListenSocket},
};

/// Makes the child notifier for one accepted connection.
pub type OnStream = Arc<dyn Fn(Connection, SockAddr) -> AnySpec + Send + Sync>;

/// Something that happened to a listener.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ListenerEvent {
    /// A connection was accepted and its child started at `path`.
    Accepted {
        /// The peer's address.
        peer: SockAddr,
        /// The path of the child started for it.
        path: String,
    },
    /// `accept` failed (op `accept`, errno kept). On EMFILE/ENFILE the
    /// listener backs off before accepting again instead of spinning. On a
    /// TLS listener, also a handshake that failed (op `tls`, the errno
    /// kept when the socket failed) or overran the handshake timeout (op
    /// `tls`, kind `Timeout`): that connection is dropped, nothing else
    /// is touched.
    AcceptError(Error),
    /// The child for a connection could not be added (a name already
    /// taken, the listener stopping). A child whose `init` fails exits
    /// like any failed notifier: see its `Exit` event and the supervision
    /// events.
    ChildError(Error),
}

/// How to start a [`Listener`]: where to listen and what to start per
/// connection. Cheap to clone: a restart re-binds with the same options.
#[derive(Clone)]
pub struct ListenerArgs {
    listen: Listen,
    on_stream: OnStream,
}

impl fmt::Debug for ListenerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerArgs")
            .field("listen", &self.listen)
            .finish()
    }
}

/// A listening socket that starts a child notifier per accepted
/// connection. Children are supervised by the listener, so a crashing
/// connection handler never takes the listener down; a listener whose
/// socket fails is re-bound by its own supervisor (set a restart backoff
/// on its spec).
pub struct Listener {
    socket: ListenSocket,
    on_stream: OnStream,
    pending: Option<Result<(Connection, SockAddr)>>,
    /// TLS handshakes under way (allocated with the first).
    #[cfg(feature = "tls")]
    tls: Option<(crate::tls::TlsServer, Box<Handshakes>)>,
    backoff: Option<(Instant, Duration)>,
    accepted: u64,
    /// Stopping for good: accept no more (what the backlog holds is reset
    /// when the socket closes).
    closed: bool,
}

#[cfg(feature = "tls")]
type Handshakes = futures_util::stream::FuturesUnordered<
    futures_util::future::BoxFuture<'static, Result<(Connection, SockAddr)>>,
>;

/// The most TLS handshakes a listener runs at once; past it, it stops
/// accepting until one finishes (the kernel's backlog holds the rest).
pub const MAX_HANDSHAKES: usize = 1024;

/// The pause after EMFILE/ENFILE, doubling to [`MAX_ACCEPT_BACKOFF`].
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause after repeated EMFILE/ENFILE.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

impl Listener {
    /// A listener spec: listen per `listen`, start `on_stream(conn, peer)`
    /// for each connection (a [`Stream`](crate::Stream) spec, a
    /// [`Framed`](crate::Framed) spec, or any notifier's).
    ///
    /// ```no_run
    /// use ioasync::io::{Listen, Listener, ReadAction, Stream};
    ///
    /// let at: ioasync::io::Address = "127.0.0.1:0".parse().unwrap();
    /// let _spec = Listener::spec("echo", Listen::new(at), |conn, peer| {
    ///     Stream::spec(format!("conn-{peer}"), conn).on_read(|io, buf, _eof| {
    ///         io.write(buf.split().freeze());
    ///         ReadAction::Wait
    ///     })
    /// });
    /// ```
    pub fn spec<F, S>(name: impl Into<String>, listen: Listen, on_stream: F) -> Spec<Listener>
    where
        F: Fn(Connection, SockAddr) -> S + Send + Sync + 'static,
        S: Into<AnySpec>,
    {
        let on_stream: OnStream = Arc::new(move |c, a| on_stream(c, a).into());
        Spec::new(name, ListenerArgs { listen, on_stream })
    }

    async fn accept_one(&mut self, ctx: &mut Ctx<'_, Self>) {
        if ctx.is_stopping() {
            // The tree is stopping this listener (its connections drain
            // first): a connection accepted now would be cut at once, so
            // none is started.
            self.closed = true;
            self.pending = None;
            return;
        }
        match self.pending.take() {
            Some(Ok((conn, peer))) => {
                self.backoff = None;
                self.accepted += 1;
                let spec = (self.on_stream)(conn, peer.clone());
                let name = spec.name().to_owned();
                // The child's init runs in its own actor: accepting goes on
                // meanwhile. A failed init is the child's exit.
                match ctx.start_any(spec) {
                    Ok(_) => {
                        let path = format!("{}/{name}", ctx.path().trim_end_matches('/'));
                        ctx.emit(ListenerEvent::Accepted { peer, path }).await;
                    }
                    Err(e) => ctx.emit(ListenerEvent::ChildError(e)).await,
                }
            }
            Some(Err(e)) => {
                let fd_limit = matches!(e.errno(), Some(libc::EMFILE | libc::ENFILE));
                if fd_limit {
                    let next = self
                        .backoff
                        .map_or(ACCEPT_BACKOFF, |(_, d)| (d * 2).min(MAX_ACCEPT_BACKOFF));
                    tracing::warn!(pause = ?next, "accept: out of file descriptors; backing off");
                    self.backoff = Some((Instant::now() + next, next));
                }
                tracing::debug!(error = %e, "accept failed");
                ctx.emit(ListenerEvent::AcceptError(e)).await;
            }
            None => {}
        }
    }
}

impl Notifier for Listener {
    type Args = ListenerArgs;

    fn kind() -> &'static str {
        "listener"
    }

    async fn init(args: ListenerArgs, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let socket = args.listen.bind().await?;
        Ok(Listener {
            socket,
            on_stream: args.on_stream,
            pending: None,
            #[cfg(feature = "tls")]
            tls: args
                .listen
                .tls_server()
                .map(|t| (t.clone(), Box::default())),
            backoff: None,
            accepted: 0,
            closed: false,
        })
    }

    async fn ready(&mut self) {
        if self.closed {
            return std::future::pending().await;
        }
        if let Some((until, _)) = self.backoff
            && Instant::now() < until
        {
            tokio::time::sleep_until(until).await;
        }
        #[cfg(feature = "tls")]
        if let Some((server, handshakes)) = &mut self.tls {
            return self.pending = Some(handshake_turn(&self.socket, server, handshakes).await);
        }
        self.pending = Some(
            self.socket
                .accept()
                .await
                .map_err(|e| Error::io("accept", e)),
        );
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.accept_one(ctx).await;
    }
}

/// Accepts and runs handshakes until one finishes (or accept fails).
/// Cancel safe: the handshakes live in the listener.
#[cfg(feature = "tls")]
async fn handshake_turn(
    socket: &ListenSocket,
    server: &crate::tls::TlsServer,
    handshakes: &mut Handshakes,
) -> Result<(Connection, SockAddr)> {
    use futures_util::StreamExt;
    loop {
        let room = handshakes.len() < MAX_HANDSHAKES;
        tokio::select! {
            Some(done) = handshakes.next(), if !handshakes.is_empty() => return done,
            accepted = socket.accept(), if room => {
                let (conn, peer) = accepted.map_err(|e| Error::io("accept", e))?;
                let server = server.clone();
                handshakes.push(Box::pin(async move {
                    let conn = server.accept(conn, &peer).await?;
                    Ok((conn, peer))
                }));
            }
        }
    }
}

impl Emits<ListenerEvent> for Listener {}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("socket", &self.socket)
            .field("accepted", &self.accepted)
            .finish()
    }
}

/// Message: the bound address.
#[derive(Debug)]
pub struct LocalAddr;

impl Handler<LocalAddr> for Listener {
    type Reply = Result<SockAddr>;
    async fn handle(&mut self, _: LocalAddr, _ctx: &mut Ctx<'_, Self>) -> Result<SockAddr> {
        self.socket.local_addr()
    }
}

/// Message: how many connections were accepted.
#[derive(Debug)]
pub struct Accepted;

impl Handler<Accepted> for Listener {
    type Reply = u64;
    async fn handle(&mut self, _: Accepted, _ctx: &mut Ctx<'_, Self>) -> u64 {
        self.accepted
    }
}

/// Listener operations on its handle.
pub trait ListenerRef {
    /// The bound address.
    fn local_addr(&self) -> impl Future<Output = Result<SockAddr>> + Send;
    /// Resolves at the next accepted connection: its peer and the path of
    /// the child started for it. Built on
    /// [`NotifierRef::next_event`](ioasync_core::NotifierRef::next_event):
    /// connections accepted between two calls are not missed.
    fn next_accept(&self) -> impl Future<Output = Result<(SockAddr, String)>> + Send + 'static;
}

impl ListenerRef for ioasync_core::NotifierRef<Listener> {
    async fn local_addr(&self) -> Result<SockAddr> {
        self.ask(LocalAddr).await
    }

    fn next_accept(&self) -> impl Future<Output = Result<(SockAddr, String)>> + Send + 'static {
        // The tap is made now: a connection accepted after this call is seen.
        let first = self.next_event::<ListenerEvent>();
        let me = self.clone();
        async move {
            let mut ev = first.await?;
            loop {
                if let ListenerEvent::Accepted { peer, path } = ev {
                    return Ok((peer, path));
                }
                ev = me.next_event().await?;
            }
        }
    }
}
