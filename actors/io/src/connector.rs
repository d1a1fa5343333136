//! [`Connector`]: a supervised client that keeps one connection to an
//! address up (Twisted's `ClientService`, in the tree): it connects
//! (Happy Eyeballs, TLS when its [`Connect`] says so), runs each
//! connection as a [`Stream`] child, and when the connection is lost or
//! cannot be made, tries again after a backoff with jitter. Writes made
//! while it is down wait in a bounded queue under its overflow policy, or
//! fail at once ([`WhileDown`]).

use std::{collections::VecDeque, fmt, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use ioasync_core::{
    Backoff, Ctx, Emits, Error, ErrorKind, Handler, Notifier, NotifierRef, Overflow, Restart,
    Result, Spec,
};
use tokio::{
    sync::{oneshot, watch},
    time::Instant,
};

use crate::{
    addr::SockAddr,
    byte_stream::StreamIo,
    byte_stream::Write,
    connect::Connect,
    connection::Connection,
    duplex::Limits,
    stream::{ReadAction, Stream},
};

type Done = Option<oneshot::Sender<Result<()>>>;

type SharedRead = Arc<dyn Fn(&mut StreamIo<'_>, &mut BytesMut, bool) -> ReadAction + Send + Sync>;

/// What writes do while a [`Connector`] is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhileDown {
    /// Queue up to `bytes`, written in order once connected; past it,
    /// `overflow` decides (`Wait`: writers wait; `Fail`/`DropNewest`: the
    /// new write fails; `DropOldest`: the oldest queued write fails).
    Queue {
        /// Most bytes queued while down.
        bytes: usize,
        /// What a write beyond it does.
        overflow: Overflow,
    },
    /// Fail at once with an error of kind `Closed` ("... is not
    /// connected").
    Fail,
}

impl Default for WhileDown {
    fn default() -> Self {
        WhileDown::Queue {
            bytes: 1 << 20,
            overflow: Overflow::Wait,
        }
    }
}

/// Something that happened to a [`Connector`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectorEvent {
    /// Connected: its `n`-th connection (1-based), to `peer`.
    Up {
        /// Which connection this is.
        n: u64,
        /// The address connected to.
        peer: Option<SockAddr>,
    },
    /// The connection was lost; a reconnect follows after `retry_in`.
    Down {
        /// Which connection it was.
        n: u64,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// An attempt failed (op `connect`, errno kept); the next follows
    /// after `retry_in`.
    ConnectFailed {
        /// Why.
        error: Error,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

/// How to start a [`Connector`].
pub struct ConnectorArgs {
    connect: Connect,
    backoff: Backoff,
    while_down: WhileDown,
    on_read: Option<SharedRead>,
    limits: Limits,
}

impl fmt::Debug for ConnectorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorArgs")
            .field("connect", &self.connect)
            .field("backoff", &self.backoff)
            .field("while_down", &self.while_down)
            .finish_non_exhaustive()
    }
}

impl Clone for ConnectorArgs {
    fn clone(&self) -> Self {
        ConnectorArgs {
            connect: self.connect.clone(),
            backoff: self.backoff,
            while_down: self.while_down,
            on_read: self.on_read.clone(),
            limits: self.limits,
        }
    }
}

/// A [`Connector`] under construction; set options, then add it.
#[must_use = "a ConnectorSpec does nothing until it is added"]
#[derive(Debug)]
pub struct ConnectorSpec {
    name: String,
    args: ConnectorArgs,
}

impl ConnectorSpec {
    /// The wait between attempts: `backoff.delay(n)` for the `n`-th
    /// attempt in a row that failed, with jitter (between half of it and
    /// all of it); a connection that was up starts the count again.
    /// Default: 100 ms doubling up to 30 s.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.args.backoff = backoff;
        self
    }

    /// What writes do while it is down (default: queue 1 MiB, writers
    /// wait beyond it).
    pub fn while_down(mut self, while_down: WhileDown) -> Self {
        self.args.while_down = while_down;
        self
    }

    /// The reader of each connection (IO::Async's `on_read` contract; see
    /// [`StreamSpec::on_read`](crate::StreamSpec::on_read)). Shared by
    /// every connection it makes, so it is `Fn`: keep state behind a lock
    /// or in an atomic.
    pub fn on_read(
        mut self,
        f: impl Fn(&mut StreamIo<'_>, &mut BytesMut, bool) -> ReadAction + Send + Sync + 'static,
    ) -> Self {
        self.args.on_read = Some(Arc::new(f));
        self
    }

    /// Buffer limits of each connection.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.args.limits = limits;
        self
    }
}

impl ioasync_core::IntoSpec for ConnectorSpec {
    type Notifier = Connector;
}

impl From<ConnectorSpec> for Spec<Connector> {
    fn from(s: ConnectorSpec) -> Self {
        Spec::new(s.name, s.args).restart(Restart::Permanent)
    }
}

/// Whether it is up, for its handles.
#[derive(Debug)]
struct Up(watch::Sender<Option<u64>>);

impl Default for Up {
    fn default() -> Self {
        Up(watch::channel(None).0)
    }
}

/// A supervised client keeping one connection up (see the module docs).
///
/// ```
/// use std::time::Duration;
/// use ioasync::{Loop, io::{Address, Connect, Connector, ConnectorRef, ReadAction}, supervision::Backoff};
/// use tokio::io::AsyncReadExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let at = Address::Socket(server.local_addr().unwrap());
/// let client = lp
///     .add(
///         Connector::spec("upstream", Connect::new(at))
///             .backoff(Backoff::new(Duration::from_millis(10), 2.0, Duration::from_secs(1)))
///             .on_read(|_io, buf, _eof| {
///                 buf.clear();
///                 ReadAction::Wait
///             }),
///     )
///     .await?;
/// // Queued until connected, then written.
/// let write = client.write(&b"hello"[..]);
/// let (mut conn, _) = server.accept().await.unwrap();
/// write.await?;
/// client.connected().await?;
/// let mut got = [0u8; 5];
/// conn.read_exact(&mut got).await.unwrap();
/// assert_eq!(&got, b"hello");
/// # Ok(()) }
/// ```
pub struct Connector {
    args: ConnectorArgs,
    conn: Option<NotifierRef<Stream>>,
    /// Connections made so far.
    made: u64,
    /// Attempts in a row that failed.
    failures: u32,
    /// When the next attempt starts (down, waiting).
    retry_at: Option<Instant>,
    connecting: Option<BoxFuture<'static, Result<Connection>>>,
    lost: Option<BoxFuture<'static, ()>>,
    /// What `ready` saw, for `on_ready`.
    outcome: Option<Outcome>,
    queue: VecDeque<(Bytes, Done)>,
    queued: usize,
    up: Arc<Up>,
    jitter: u64,
}

enum Outcome {
    Connected(Result<Connection>),
    Lost,
    Retry,
}

impl Connector {
    /// A connector to what `connect` names.
    pub fn spec(name: impl Into<String>, connect: Connect) -> ConnectorSpec {
        ConnectorSpec {
            name: name.into(),
            args: ConnectorArgs {
                connect,
                backoff: Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(30)),
                while_down: WhileDown::default(),
                on_read: None,
                limits: Limits::default(),
            },
        }
    }

    /// The `n`-th wait, with jitter in [d/2, d].
    fn wait(&mut self, n: u32) -> Duration {
        let d = self.args.backoff.delay(n);
        // xorshift: cheap, and enough to spread reconnecting clients.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let frac = (self.jitter % 1024) as f64 / 2048.0; // [0, 0.5)
        d.mul_f64(1.0 - frac)
    }

    fn start_attempt(&mut self) {
        let connect = self.args.connect.clone();
        self.connecting = Some(Box::pin(std::future::IntoFuture::into_future(connect)));
    }

    fn is_up(&self) -> bool {
        self.conn.as_ref().is_some_and(NotifierRef::is_alive)
    }

    fn fail_queue(&mut self, why: &str) {
        for (_, done) in self.queue.drain(..) {
            if let Some(done) = done {
                let _ = done.send(Err(Error::closed("write", why.to_string())));
            }
        }
        self.queued = 0;
    }

    async fn on_connected(&mut self, conn: Connection, ctx: &mut Ctx<'_, Self>) {
        let peer = conn.peer_addr().ok();
        self.made += 1;
        let n = self.made;
        let mut spec = Stream::spec(format!("conn-{n}"), conn).limits(self.args.limits);
        if let Some(read) = self.args.on_read.clone() {
            spec = spec.on_read(move |io, buf, eof| read(io, buf, eof));
        }
        let child = match ctx.add_child(spec).await {
            Ok(c) => c,
            Err(error) => {
                self.failures += 1;
                let retry_in = self.wait(self.failures);
                self.retry_at = Some(Instant::now() + retry_in);
                return ctx
                    .emit(ConnectorEvent::ConnectFailed { error, retry_in })
                    .await;
            }
        };
        self.failures = 0;
        let watch = child.clone();
        self.lost = Some(Box::pin(async move { watch.wait_stopped().await }));
        // What waited while down goes first, in order.
        for (data, done) in std::mem::take(&mut self.queue) {
            if child.tell(Write::<Bytes>::bytes(data, done)).await.is_err() {
                break;
            }
        }
        self.queued = 0;
        self.conn = Some(child);
        self.up.0.send_replace(Some(n));
        ctx.set_detail(format!("up (connection {n})"));
        ctx.emit(ConnectorEvent::Up { n, peer }).await;
    }
}

impl Notifier for Connector {
    type Args = ConnectorArgs;

    fn kind() -> &'static str {
        "connector"
    }

    async fn init(args: ConnectorArgs, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let up = ctx.this().handle_state(Up::default);
        up.0.send_replace(None);
        let seed = std::collections::hash_map::RandomState::new();
        let jitter = std::hash::BuildHasher::hash_one(&seed, ctx.path()) | 1;
        let mut c = Connector {
            args,
            conn: None,
            made: 0,
            failures: 0,
            retry_at: None,
            connecting: None,
            lost: None,
            outcome: None,
            queue: VecDeque::new(),
            queued: 0,
            up,
            jitter,
        };
        ctx.set_detail("connecting");
        c.start_attempt();
        Ok(c)
    }

    async fn ready(&mut self) {
        if self.outcome.is_some() {
            return;
        }
        let outcome = tokio::select! {
            res = async { self.connecting.as_mut().expect("checked").await }, if self.connecting.is_some() => {
                self.connecting = None;
                Outcome::Connected(res)
            }
            () = async { self.lost.as_mut().expect("checked").await }, if self.lost.is_some() => {
                self.lost = None;
                Outcome::Lost
            }
            () = tokio::time::sleep_until(self.retry_at.unwrap_or_else(Instant::now)), if self.retry_at.is_some() => {
                self.retry_at = None;
                Outcome::Retry
            }
            else => std::future::pending().await,
        };
        self.outcome = Some(outcome);
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        match self.outcome.take() {
            Some(Outcome::Connected(Ok(conn))) => self.on_connected(conn, ctx).await,
            Some(Outcome::Connected(Err(error))) => {
                self.failures += 1;
                let retry_in = self.wait(self.failures);
                self.retry_at = Some(Instant::now() + retry_in);
                ctx.set_detail(format!("down (retry in {retry_in:?})"));
                ctx.emit(ConnectorEvent::ConnectFailed { error, retry_in })
                    .await;
            }
            Some(Outcome::Lost) => {
                self.conn = None;
                self.up.0.send_replace(None);
                let retry_in = self.wait(1);
                self.retry_at = Some(Instant::now() + retry_in);
                ctx.set_detail(format!("down (retry in {retry_in:?})"));
                ctx.emit(ConnectorEvent::Down {
                    n: self.made,
                    retry_in,
                })
                .await;
            }
            Some(Outcome::Retry) => self.start_attempt(),
            None => {}
        }
    }

    fn accepting(&self) -> bool {
        // Writers wait while down and the queue is full (`Wait` policy).
        match self.args.while_down {
            WhileDown::Queue {
                bytes,
                overflow: Overflow::Wait,
            } => self.is_up() || self.queued < bytes,
            _ => true,
        }
    }

    async fn on_stop(&mut self, _ctx: &mut Ctx<'_, Self>) {
        self.up.0.send_replace(None);
        self.fail_queue("the connector stopped before it connected");
    }
}

impl Emits<ConnectorEvent> for Connector {}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("up", &self.is_up())
            .field("made", &self.made)
            .field("queued", &self.queued)
            .finish()
    }
}

/// Message: write through the connector ([`ConnectorRef::write`],
/// [`ConnectorRef::start_write`]).
#[derive(Debug)]
pub(crate) struct ConnectorWrite(pub(crate) Bytes, pub(crate) Done);

impl Handler<ConnectorWrite> for Connector {
    type Reply = ();
    async fn handle(
        &mut self,
        ConnectorWrite(data, done): ConnectorWrite,
        ctx: &mut Ctx<'_, Self>,
    ) {
        if let Some(conn) = self.conn.as_ref().filter(|c| c.is_alive()) {
            // Up: the connection's own write path (and its policy).
            let _ = conn.tell(Write::<Bytes>::bytes(data, done)).await;
            return;
        }
        let refuse = |done: Done, kind: ErrorKind, msg: String| {
            if let Some(done) = done {
                let _ = done.send(Err(Error::new("write", kind, msg)));
            }
        };
        match self.args.while_down {
            WhileDown::Fail => refuse(
                done,
                ErrorKind::Closed,
                format!("{} is not connected", ctx.path()),
            ),
            WhileDown::Queue { bytes, overflow } => {
                let over = self.queued + data.len() > bytes && !self.queue.is_empty();
                match overflow {
                    Overflow::Fail | Overflow::DropNewest if over => refuse(
                        done,
                        ErrorKind::Full,
                        format!(
                            "{}{} is down and its queue is full ({bytes} bytes)",
                            if overflow == Overflow::DropNewest {
                                "dropped: "
                            } else {
                                ""
                            },
                            ctx.path()
                        ),
                    ),
                    _ => {
                        self.queued += data.len();
                        self.queue.push_back((data, done));
                        if overflow == Overflow::DropOldest {
                            while self.queued > bytes && self.queue.len() > 1 {
                                if let Some((old, done)) = self.queue.pop_front() {
                                    self.queued -= old.len();
                                    refuse(
                                        done,
                                        ErrorKind::Full,
                                        format!(
                                            "dropped (the oldest write): {} is down and its queue is full ({bytes} bytes)",
                                            ctx.path()
                                        ),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Operations on a [`Connector`]'s handle.
pub trait ConnectorRef {
    /// Writes `data` on the current connection, or queues it while down
    /// (per [`WhileDown`]); resolves once it is written.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, io::{Address, Connect, Connector, ConnectorRef}, supervision::Backoff};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let at = Address::Socket(server.local_addr().unwrap());
    /// let backoff = Backoff::new(Duration::from_millis(10), 2.0, Duration::from_secs(1));
    /// let client = lp.add(Connector::spec("upstream", Connect::new(at)).backoff(backoff)).await?;
    /// let (mut conn, _) = server.accept().await.unwrap();
    /// client.write(&b"hello"[..]).await?;
    /// let mut got = [0u8; 5];
    /// conn.read_exact(&mut got).await.unwrap();
    /// assert_eq!(&got, b"hello");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not take the write back: once the
    /// connector has it, it is written (or fails) as if awaited.
    fn write(&self, data: impl Into<Bytes> + Send) -> impl Future<Output = Result<()>> + Send;

    /// Hands `data` to the connector and returns without waiting for it
    /// to be written: it resolves once the connector has the write (in
    /// the order of the calls, waiting only for room in its mailbox),
    /// with a future of the write's outcome, as [`ConnectorRef::write`]
    /// resolves. Several writes made while down are queued in order this
    /// way before any is awaited.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, io::{Address, Connect, Connector, ConnectorRef}, supervision::Backoff};
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let at = Address::Socket(server.local_addr().unwrap());
    /// let backoff = Backoff::new(Duration::from_millis(10), 2.0, Duration::from_secs(1));
    /// let client = lp.add(Connector::spec("upstream", Connect::new(at)).backoff(backoff)).await?;
    /// let first = client.start_write(&b"one;"[..]).await?;
    /// let second = client.start_write(&b"two;"[..]).await?;
    /// let (mut conn, _) = server.accept().await.unwrap();
    /// let mut got = [0u8; 8];
    /// conn.read_exact(&mut got).await.unwrap();
    /// assert_eq!(&got, b"one;two;", "in the order handed over");
    /// first.await?;
    /// second.await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for room in a full mailbox, nothing was
    /// handed over. Dropping the returned future does not take the write
    /// back: it is written (or fails) all the same.
    fn start_write(
        &self,
        data: impl Into<Bytes> + Send,
    ) -> impl Future<Output = Result<impl Future<Output = Result<()>> + Send + 'static>> + Send;

    /// Resolves once it is connected (at once when it is); fails once the
    /// connector has stopped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ioasync::{Loop, io::{Address, Connect, Connector, ConnectorRef}, supervision::Backoff};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let at = Address::Socket(server.local_addr().unwrap());
    /// let backoff = Backoff::new(Duration::from_millis(10), 2.0, Duration::from_secs(1));
    /// let client = lp.add(Connector::spec("upstream", Connect::new(at)).backoff(backoff)).await?;
    /// let (_conn, _) = server.accept().await.unwrap();
    /// client.connected().await?;
    /// assert!(client.is_connected());
    /// client.stop().await;
    /// assert!(client.connected().await.is_err(), "it has stopped");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    fn connected(&self) -> impl Future<Output = Result<()>> + Send;

    /// Whether it is connected now.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Address, Connect, Connector, ConnectorRef, WhileDown}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// // A port with nothing listening.
    /// let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let at = Address::Socket(gone.local_addr().unwrap());
    /// drop(gone);
    /// let client = lp
    ///     .add(Connector::spec("upstream", Connect::new(at)).while_down(WhileDown::Fail))
    ///     .await?;
    /// assert!(!client.is_connected());
    /// assert!(client.write(&b"lost"[..]).await.unwrap_err().is_closed());
    /// # Ok(()) }
    /// ```
    fn is_connected(&self) -> bool;
}

impl ConnectorRef for NotifierRef<Connector> {
    async fn write(&self, data: impl Into<Bytes> + Send) -> Result<()> {
        self.start_write(data).await?.await
    }

    async fn start_write(
        &self,
        data: impl Into<Bytes> + Send,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        let (tx, rx) = oneshot::channel();
        self.tell(ConnectorWrite(data.into(), Some(tx))).await?;
        Ok(async move {
            rx.await
                .unwrap_or_else(|_| Err(Error::closed("write", "the connector stopped")))
        })
    }

    async fn connected(&self) -> Result<()> {
        let up = self.handle_state(Up::default);
        let mut rx = up.0.subscribe();
        let stopped = self.wait_stopped();
        tokio::select! {
            res = rx.wait_for(Option::is_some) => res
                .map(|_| ())
                .map_err(|_| Error::closed("connected", "the connector stopped")),
            () = stopped => Err(Error::closed("connected", "the connector stopped")),
        }
    }

    fn is_connected(&self) -> bool {
        self.handle_state(Up::default).0.borrow().is_some()
    }
}
