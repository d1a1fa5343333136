//! [`Remote`]: the notifier that owns one connection to NATS.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::{Client, ConnectErrorKind, ConnectOptions};
use ioasync_core::{
    Ctx, Emits, Error, ErrorKind, Notifier, NotifierRef, PeerEvent, Restart, Result, Spec,
};
use tokio::sync::{broadcast, mpsc};

use crate::transport::NatsTransport;

/// What a [`Remote`] emits about its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteEvent {
    /// Connected (at the start) or reconnected (after a loss) to `server`.
    Connected {
        /// The server's URL.
        server: String,
    },
    /// The connection to `server` was lost; the client is reconnecting.
    /// Calls fail at once with a `Closed` error until it is back.
    Disconnected {
        /// The server's URL.
        server: String,
    },
    /// The server or the client reported an error (an authorization
    /// violation, a slow consumer); the connection lives on.
    Error {
        /// What it said.
        message: String,
    },
}

/// Credentials for the server.
#[derive(Clone, Default)]
enum Auth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        f.write_str(match self {
            Auth::None => "none",
            Auth::UserPassword(..) => "user/password",
            Auth::Token(_) => "token",
        })
    }
}

/// How to start a [`Remote`].
#[derive(Debug, Clone)]
pub struct RemoteArgs {
    url: String,
    auth: Auth,
    client_name: Option<String>,
    connect_timeout: Duration,
    reconnect_delay_max: Duration,
}

/// A [`Remote`] spec under construction ([`Remote::spec`]).
#[derive(Debug, Clone)]
#[must_use = "a RemoteSpec does nothing until it is added"]
pub struct RemoteSpec {
    name: String,
    args: RemoteArgs,
}

impl RemoteSpec {
    /// Authenticates with a user and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.args.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.args.auth = Auth::Token(token.into());
        self
    }

    /// The client name the server shows (default: the notifier's name).
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.args.client_name = Some(name.into());
        self
    }

    /// How long the first connect may take (default 2 s); past it the
    /// start fails with a `Timeout` error.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.args.connect_timeout = d;
        self
    }

    /// The longest pause between reconnect attempts after a loss (default
    /// 250 ms; the first attempt is immediate, then the pause doubles
    /// from 10 ms up to this).
    pub fn reconnect_delay_max(mut self, d: Duration) -> Self {
        self.args.reconnect_delay_max = d;
        self
    }
}

impl From<RemoteSpec> for Spec<Remote> {
    fn from(s: RemoteSpec) -> Self {
        Spec::new(s.name, s.args).restart(Restart::Permanent)
    }
}

/// The connection shared by a [`Remote`]'s handles, its transport, and
/// the channels, pools and hosts built on it.
#[derive(Debug)]
pub(crate) struct Link {
    client: RwLock<Option<Client>>,
    url: RwLock<String>,
    peers: broadcast::Sender<PeerEvent>,
}

impl Link {
    fn new() -> Self {
        Link {
            client: RwLock::new(None),
            url: RwLock::new(String::new()),
            peers: broadcast::channel(64).0,
        }
    }

    /// The connected client: fails (naming `op`) while the Remote is not
    /// running or its connection is down.
    pub(crate) fn client(&self, op: &'static str) -> Result<Client> {
        let client = self
            .client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(client) = client else {
            return Err(Error::closed(
                op,
                "the NATS connection is not running (its Remote notifier stopped or is restarting)",
            ));
        };
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(Error::closed(
                op,
                format!(
                    "not connected to NATS at {} (the connection is down; reconnecting)",
                    self.url()
                ),
            ));
        }
        Ok(client)
    }

    /// The client, connected or not (for subscriptions, which the client
    /// renews by itself after a reconnect).
    pub(crate) fn any_client(&self, op: &'static str) -> Result<Client> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::closed(
                    op,
                    "the NATS connection is not running (its Remote notifier stopped or is restarting)",
                )
            })
    }

    pub(crate) fn url(&self) -> String {
        self.url.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.peers.subscribe()
    }
}

/// One connection to a NATS server (or cluster), supervised like any
/// notifier: its first connect is its `init` (a refused or unreachable
/// server fails the `add` with an error naming the server and why); after
/// that the client reconnects by itself, and each loss and reconnect is a
/// [`RemoteEvent`] and shows in the tree (`detail`: the state and the
/// server). Channels ([`crate::channel`]), remote pools
/// ([`RemotePool`](crate::RemotePool)) and worker hosts
/// ([`WorkerHost`](crate::WorkerHost)) are built on its handle.
///
/// ```no_run
/// use ioasync::Loop;
/// use ioasync::nats::{Remote, RemoteEvent};
///
/// fn main() -> ioasync::Result<()> {
///     let lp = Loop::new()?;
///     let l = lp.clone();
///     lp.block_on(async move {
///         let nats = l
///             .add(Remote::spec("nats", "nats://127.0.0.1:4222").user_password("app", "secret"))
///             .await?;
///         let mut events = nats.events::<RemoteEvent>()?;
///         // "/nats remote running restarts=0 queue=0 connected nats://127.0.0.1:4222 (…)"
///         println!("{}", l.tree());
///         while let Some(ev) = events.recv().await {
///             println!("{ev:?}"); // Disconnected { .. }, Connected { .. }
///         }
///         Ok(())
///     })
/// }
/// ```
pub struct Remote {
    client: Client,
    url: String,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    pending: Option<async_nats::Event>,
    link: Arc<Link>,
}

impl Remote {
    /// A spec for a connection named `name` to `url` (`nats://host:port`;
    /// several servers comma-separated).
    pub fn spec(name: impl Into<String>, url: impl Into<String>) -> RemoteSpec {
        RemoteSpec {
            name: name.into(),
            args: RemoteArgs {
                url: url.into(),
                auth: Auth::None,
                client_name: None,
                connect_timeout: Duration::from_secs(2),
                reconnect_delay_max: Duration::from_millis(250),
            },
        }
    }
}

impl Emits<RemoteEvent> for Remote {}

/// The shared link of a Remote's handle.
pub(crate) fn link_of(remote: &NotifierRef<Remote>) -> Arc<Link> {
    remote.handle_state(Link::new)
}

fn connect_error(url: &str, e: async_nats::ConnectError) -> Error {
    let (kind, why) = match e.kind() {
        ConnectErrorKind::AuthorizationViolation => (
            ErrorKind::InvalidInput,
            "the server refused our credentials (authorization violation): give the right \
             user/password or token",
        ),
        ConnectErrorKind::Authentication => (
            ErrorKind::InvalidInput,
            "authentication failed (signing the server's nonce)",
        ),
        ConnectErrorKind::TimedOut => (ErrorKind::Timeout, "timed out"),
        ConnectErrorKind::ServerParse => (ErrorKind::InvalidInput, "the URL does not parse"),
        ConnectErrorKind::Dns => (ErrorKind::Resolve, "the host name does not resolve"),
        ConnectErrorKind::Tls => (ErrorKind::Io, "TLS failed"),
        _ => (ErrorKind::Io, "unreachable"),
    };
    Error::new("connect", kind, format!("NATS at {url}: {why} ({e})")).with_source(e)
}

impl Notifier for Remote {
    type Args = RemoteArgs;

    fn kind() -> &'static str {
        "remote"
    }

    async fn init(args: RemoteArgs, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let link = link_of(&ctx.this());
        let (tx, events) = mpsc::unbounded_channel();
        let max = args.reconnect_delay_max;
        let mut opts = ConnectOptions::new()
            .name(
                args.client_name
                    .clone()
                    .unwrap_or_else(|| ctx.path().into()),
            )
            .connection_timeout(args.connect_timeout)
            .reconnect_delay_callback(move |attempts| {
                if attempts <= 1 {
                    Duration::ZERO
                } else {
                    let exp = (attempts as u32 - 1).min(16);
                    (Duration::from_millis(10) * 2u32.pow(exp)).min(max)
                }
            })
            .event_callback(move |ev| {
                let _ = tx.send(ev);
                async {}
            });
        opts = match &args.auth {
            Auth::None => opts,
            Auth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
            Auth::Token(t) => opts.token(t.clone()),
        };
        let url = args.url.clone();
        let client = match tokio::time::timeout(
            args.connect_timeout + Duration::from_millis(500),
            opts.connect(url.as_str()),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connect_error(&url, e)),
            Err(_) => {
                return Err(Error::new(
                    "connect",
                    ErrorKind::Timeout,
                    format!(
                        "NATS at {url}: no connection within {:?}",
                        args.connect_timeout
                    ),
                ));
            }
        };
        *link.url.write().unwrap_or_else(|e| e.into_inner()) = url.clone();
        *link.client.write().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        let info = client.server_info();
        ctx.set_detail(format!("connected {url} ({})", info.server_name));
        // The client's own `Connected` event follows (ready): it is
        // emitted from there, as each reconnect is.
        Ok(Remote {
            client,
            url,
            events,
            pending: None,
            link,
        })
    }

    async fn ready(&mut self) {
        if let Some(ev) = self.events.recv().await {
            self.pending = Some(ev);
        } else {
            std::future::pending::<()>().await;
        }
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let mut next = self.pending.take();
        while let Some(ev) = next.take().or_else(|| self.events.try_recv().ok()) {
            let url = self.url.clone();
            match ev {
                async_nats::Event::Connected => {
                    tracing::info!(url, "nats: connected");
                    let name = self.client.server_info().server_name;
                    ctx.set_detail(format!("connected {url} ({name})"));
                    let _ = self.link.peers.send(PeerEvent::Up { peer: url.clone() });
                    ctx.emit(RemoteEvent::Connected { server: url }).await;
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!(url, "nats: connection lost; reconnecting");
                    ctx.set_detail(format!("disconnected from {url}, reconnecting"));
                    let _ = self.link.peers.send(PeerEvent::Down {
                        peer: url.clone(),
                        reason: "connection lost".into(),
                    });
                    ctx.emit(RemoteEvent::Disconnected { server: url }).await;
                }
                async_nats::Event::Closed => {
                    // The client gave up for good: fail, so the parent
                    // decides (a restart connects afresh).
                    ctx.fail(Error::closed(
                        "connect",
                        format!("NATS at {url}: the connection closed"),
                    ));
                    return;
                }
                other => {
                    tracing::warn!(url, "nats: {other}");
                    ctx.emit(RemoteEvent::Error {
                        message: other.to_string(),
                    })
                    .await;
                }
            }
        }
    }

    async fn on_stop(&mut self, ctx: &mut Ctx<'_, Self>) {
        *self.link.client.write().unwrap_or_else(|e| e.into_inner()) = None;
        // Ends every subscription made on it (served channels, pools,
        // hosts) and sends what is buffered; bounded.
        let _ = tokio::time::timeout(Duration::from_millis(500), self.client.drain()).await;
        ctx.set_detail(format!("closed {}", self.url));
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

/// What a [`Remote`]'s handle offers beside messages.
pub trait RemoteRef {
    /// The [`Transport`](ioasync_core::Transport) over this connection.
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use ioasync::{Loop, nats::{Remote, RemoteRef}, transport::Transport};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let nats = lp.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
    /// // Frames to a logical address; nobody need be listening for a send.
    /// nats.transport().send("greetings", Bytes::from_static(b"hello")).await?;
    /// # Ok(()) }
    /// ```
    fn transport(&self) -> NatsTransport;

    /// The async-nats client while connected; a `Closed` error naming
    /// `op` otherwise.
    ///
    /// ```no_run
    /// use ioasync::{Loop, nats::{Remote, RemoteRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let nats = lp.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
    /// let client = nats.client("publish")?; // async-nats, for what we do not wrap
    /// client.publish("raw.subject", "hi".into()).await.ok();
    /// # Ok(()) }
    /// ```
    fn client(&self, op: &'static str) -> Result<Client>;
}

impl RemoteRef for NotifierRef<Remote> {
    fn transport(&self) -> NatsTransport {
        NatsTransport::new(link_of(self))
    }

    fn client(&self, op: &'static str) -> Result<Client> {
        link_of(self).client(op)
    }
}
