//! [`Listener`]: accepts connections and starts a supervised child for
//! each (IO::Async::Listener).

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync_core::{AnySpec, Ctx, Emits, Error, Handler, Notifier, NotifierRef, Result, Spec};
use tokio::time::Instant;

use crate::{
    addr::SockAddr,
    connection::Connection,
    listen::{Listen, ListenSocket},
};

/// Makes the child notifier for one accepted connection.
pub type OnStream = Arc<dyn Fn(Connection, SockAddr) -> AnySpec + Send + Sync>;

/// Starts the child for one connection (a typed listener's factory, its
/// `on_accept` and its connection list); the child's path.
type StartTyped =
    Arc<dyn Fn(Connection, SockAddr, &Ctx<'_, Listener>) -> Result<String> + Send + Sync>;

/// What a listener starts per connection.
#[derive(Clone)]
enum Factory {
    Any(OnStream),
    Typed(StartTyped),
}

/// The live connections of a typed listener, shared by its handles
/// (kept across restarts; the ones gone are dropped as it goes).
struct Connections<N: Notifier>(Mutex<ConnList<N>>);

struct ConnList<N: Notifier> {
    list: Vec<NotifierRef<N>>,
    /// Drop the gone ones when the list reaches this length (amortised:
    /// twice the live count at the last sweep).
    sweep_at: usize,
}

impl<N: Notifier> Default for Connections<N> {
    fn default() -> Self {
        Connections(Mutex::new(ConnList {
            list: Vec::new(),
            sweep_at: SWEEP_MIN,
        }))
    }
}

const SWEEP_MIN: usize = 64;

impl<N: Notifier> Connections<N> {
    fn of(listener: &NotifierRef<Listener>) -> Arc<Connections<N>> {
        listener.handle_state(Connections::<N>::default)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnList<N>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, conn: NotifierRef<N>) {
        let mut c = self.lock();
        if c.list.len() >= c.sweep_at {
            c.list.retain(NotifierRef::is_alive);
            c.sweep_at = (c.list.len() * 2).max(SWEEP_MIN);
        }
        c.list.push(conn);
    }

    fn live(&self) -> Vec<NotifierRef<N>> {
        let mut c = self.lock();
        c.list.retain(NotifierRef::is_alive);
        c.list.clone()
    }
}

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
    factory: Factory,
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
///
/// ```
/// use ioasync::{Loop, io::{Listen, Listener, ListenerRef, ReadAction, Stream}};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let at: ioasync::io::Address = "127.0.0.1:0".parse()?;
/// let echo = lp
///     .add(Listener::spec("echo", Listen::new(at), |conn, peer| {
///         Stream::spec(format!("conn-{peer}"), conn).on_read(|io, buf, _eof| {
///             io.write(buf.split().freeze());
///             ReadAction::Wait
///         })
///     }))
///     .await?;
/// let addr = echo.local_addr().await?.as_inet().unwrap();
/// let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
/// client.write_all(b"ping").await.unwrap();
/// let mut buf = [0u8; 4];
/// client.read_exact(&mut buf).await.unwrap();
/// assert_eq!(&buf, b"ping");
/// // Each connection is a child of the listener, supervised by it.
/// assert_eq!(echo.tree().children.len(), 1);
/// # Ok(()) }
/// ```
pub struct Listener {
    socket: ListenSocket,
    factory: Factory,
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
    /// ```
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
        let factory = Factory::Any(on_stream);
        Spec::new(name, ListenerArgs { listen, factory })
    }

    /// A listener whose connections are all one notifier type `N`, with
    /// typed handles: `factory(conn, peer)` makes each connection's spec
    /// (as for [`Listener::spec`]), and `on_accept(handle, peer)` is
    /// called with the typed handle of each child started, in the
    /// listener, right after the child starts and before the next
    /// connection is accepted. From the listener's handle,
    /// [`ListenerRef::connections`] lists the live ones.
    ///
    /// What that order guarantees: a connection is in
    /// [`connections`](ListenerRef::connections) (and in whatever
    /// `on_accept` registered it with) before any connection accepted
    /// after it has read a byte, so a chat-style broadcast made from a
    /// later client's first line reaches every earlier client. The child
    /// itself starts at once and may already be reading when `on_accept`
    /// runs: handle its input inside it (an `on_frame` or `on_read`
    /// closure), or subscribe on the spec in the factory
    /// ([`Spec::subscribe`]), and none of it is missed.
    ///
    /// ```
    /// use ioasync::{io::{codec::LinesCodec, Framed, FramedRef, Listen, Listener, ListenerRef}, Loop};
    /// use tokio::io::AsyncBufReadExt;
    ///
    /// type Lines = Framed<LinesCodec, String>;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let at: ioasync::io::Address = "127.0.0.1:0".parse()?;
    /// let spec = Listener::typed(
    ///     "chat",
    ///     Listen::new(at),
    ///     |conn, peer| Lines::spec(format!("conn-{peer}"), conn, LinesCodec::new()),
    ///     |conn: ioasync::notifier::NotifierRef<Lines>, peer| {
    ///         let _ = conn.try_send(format!("welcome, {peer}"));
    ///     },
    /// );
    /// let listener = lp.add(spec).await?;
    /// let addr = listener.local_addr().await?.as_inet().unwrap();
    /// let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    /// let mut lines = tokio::io::BufReader::new(client).lines();
    /// let welcome = lines.next_line().await.unwrap().unwrap();
    /// assert!(welcome.starts_with("welcome, 127.0.0.1:"));
    /// assert_eq!(listener.connections::<Lines>().len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn typed<N, F, S, A>(
        name: impl Into<String>,
        listen: Listen,
        factory: F,
        on_accept: A,
    ) -> Spec<Listener>
    where
        N: Notifier,
        F: Fn(Connection, SockAddr) -> S + Send + Sync + 'static,
        S: Into<Spec<N>>,
        A: Fn(NotifierRef<N>, SockAddr) + Send + Sync + 'static,
    {
        let start: StartTyped = Arc::new(move |conn, peer, ctx| {
            let child = ctx.start_child(factory(conn, peer.clone()).into())?;
            let path = child.path().to_owned();
            on_accept(child.clone(), peer);
            Connections::of(&ctx.this()).push(child);
            Ok(path)
        });
        let factory = Factory::Typed(start);
        Spec::new(name, ListenerArgs { listen, factory })
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
                // The child's init runs in its own actor: accepting goes on
                // meanwhile. A failed init is the child's exit.
                let started = match &self.factory {
                    Factory::Any(on_stream) => {
                        let spec = on_stream(conn, peer.clone());
                        let name = spec.name().to_owned();
                        ctx.start_any(spec)
                            .map(|_| format!("{}/{name}", ctx.path().trim_end_matches('/')))
                    }
                    Factory::Typed(start) => start(conn, peer.clone(), ctx),
                };
                match started {
                    Ok(path) => ctx.emit(ListenerEvent::Accepted { peer, path }).await,
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
            factory: args.factory,
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

/// Message: the bound address ([`ListenerRef::local_addr`]).
#[derive(Debug)]
pub(crate) struct LocalAddr;

impl Handler<LocalAddr> for Listener {
    type Reply = Result<SockAddr>;
    async fn handle(&mut self, _: LocalAddr, _ctx: &mut Ctx<'_, Self>) -> Result<SockAddr> {
        self.socket.local_addr()
    }
}

/// Message: how many connections were accepted
/// ([`ListenerRef::accepted_count`]).
#[derive(Debug)]
pub(crate) struct Accepted;

impl Handler<Accepted> for Listener {
    type Reply = u64;
    async fn handle(&mut self, _: Accepted, _ctx: &mut Ctx<'_, Self>) -> u64 {
        self.accepted
    }
}

/// Listener operations on its handle.
pub trait ListenerRef {
    /// The bound address (the port the kernel chose for port 0).
    ///
    /// ```
    /// use ioasync::{Loop, io::{Listen, Listener, ListenerRef, SockAddr, Stream}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let at: ioasync::io::Address = "127.0.0.1:0".parse()?;
    /// let l = lp.add(Listener::spec("srv", Listen::new(at), |c, _| Stream::spec("c", c))).await?;
    /// let SockAddr::Inet(addr) = l.local_addr().await? else { unreachable!() };
    /// assert!(addr.ip().is_loopback());
    /// assert_ne!(addr.port(), 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn local_addr(&self) -> impl Future<Output = Result<SockAddr>> + Send;
    /// How many connections it has accepted since it (last) started: a
    /// restart counts from zero again.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Listen, Listener, ListenerRef, Stream}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let at: ioasync::io::Address = "127.0.0.1:0".parse()?;
    /// let l = lp
    ///     .add(Listener::spec("srv", Listen::new(at), |c, peer| Stream::spec(format!("c-{peer}"), c)))
    ///     .await?;
    /// assert_eq!(l.accepted_count().await?, 0);
    /// let addr = l.local_addr().await?.as_inet().unwrap();
    /// let accepted = l.next_accept();
    /// let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    /// accepted.await?;
    /// assert_eq!(l.accepted_count().await?, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn accepted_count(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Resolves at the next accepted connection: its peer and the path of
    /// the child started for it. Built on
    /// [`NotifierRef::next_event`](ioasync_core::NotifierRef::next_event):
    /// connections accepted between two calls are not missed.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Listen, Listener, ListenerRef, Stream}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let at: ioasync::io::Address = "127.0.0.1:0".parse()?;
    /// let l = lp
    ///     .add(Listener::spec("srv", Listen::new(at), |c, peer| Stream::spec(format!("c-{peer}"), c)))
    ///     .await?;
    /// let addr = l.local_addr().await?.as_inet().unwrap();
    /// let accepted = l.next_accept(); // the tap is made here: no race with the connect
    /// let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    /// let (peer, path) = accepted.await?;
    /// assert_eq!(peer.as_inet(), Some(client.local_addr().unwrap()));
    /// assert_eq!(path, format!("/srv/c-{peer}"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an accept is taken from the shared tap only when the
    /// future returns it; dropped before, it stays for the next call.
    fn next_accept(&self) -> impl Future<Output = Result<(SockAddr, String)>> + Send + 'static;

    /// The live connections of a listener made by [`Listener::typed`]
    /// whose children are `N`s, in the order they were accepted: each is
    /// listed from the moment its `on_accept` returned until it stops.
    /// Empty for any other `N`, and for a listener made by
    /// [`Listener::spec`] (its children's types are not known).
    ///
    /// ```
    /// use ioasync::{io::{codec::LinesCodec, Framed, FramedRef, Listen, Listener, ListenerRef}, Loop};
    ///
    /// type Lines = Framed<LinesCodec, String>;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let at: ioasync::io::Address = "127.0.0.1:0".parse()?;
    /// let listener = lp
    ///     .add(Listener::typed(
    ///         "srv",
    ///         Listen::new(at),
    ///         |conn, _| Lines::spec("conn", conn, LinesCodec::new()),
    ///         |_: ioasync::notifier::NotifierRef<Lines>, _| {},
    ///     ))
    ///     .await?;
    /// let addr = listener.local_addr().await?.as_inet().unwrap();
    /// let accepted = listener.next_accept();
    /// let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    /// accepted.await?;
    /// for conn in listener.connections::<Lines>() {
    ///     conn.send("hello, everyone".to_string()).await?;
    /// }
    /// # Ok(()) }
    /// ```
    fn connections<N: Notifier>(&self) -> Vec<NotifierRef<N>>;
}

impl ListenerRef for NotifierRef<Listener> {
    fn connections<N: Notifier>(&self) -> Vec<NotifierRef<N>> {
        Connections::<N>::of(self).live()
    }

    async fn local_addr(&self) -> Result<SockAddr> {
        self.ask(LocalAddr).await
    }

    async fn accepted_count(&self) -> Result<u64> {
        self.ask(Accepted).await
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
