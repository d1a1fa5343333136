//! [`Socket`]: a datagram notifier (IO::Async::Socket) over UDP or a Unix
//! datagram socket: a send queue, and received packets with their source
//! address as events.

use std::{collections::VecDeque, fmt, io, net::SocketAddr, path::PathBuf};

use bytes::{Bytes, BytesMut};
use ioasync_core::{
    Ctx, Emits, Error, Handler, Notifier, NotifierRef, Once, Restart, Result, Spec,
};
use tokio::{
    io::Interest,
    net::{UdpSocket, UnixDatagram},
};

use crate::addr::SockAddr;

/// A received datagram and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The payload.
    pub data: Bytes,
    /// The sender.
    pub from: SockAddr,
}

/// Something that happened to a datagram socket.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SocketEvent {
    /// A datagram arrived.
    Recv(Datagram),
    /// Receiving failed (op `recv`, errno kept); the socket lives on
    /// (IO::Async's `on_recv_error`). A pending socket error — the ICMP
    /// "port unreachable" a connected UDP socket gets as `ECONNREFUSED`
    /// (errno 111) — arrives here too: the socket wakes on the error
    /// condition (`EPOLLERR`) as well as on readability.
    RecvError(Error),
    /// Sending failed (op `send`, errno kept); the datagram is dropped.
    SendError(Error),
}

pub(crate) enum Sock {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

/// Where a datagram goes: the connected peer, or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// The connected peer.
    Peer,
    /// An inet address.
    Inet(SocketAddr),
    /// A Unix datagram socket path.
    Unix(PathBuf),
}

/// How to start a [`Socket`].
pub struct SocketArgs {
    sock: Sock,
    max_queue: usize,
}

impl fmt::Debug for SocketArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketArgs")
            .field("max_queue", &self.max_queue)
            .finish()
    }
}

/// A datagram socket notifier.
///
/// ```
/// use ioasync::{Loop, io::{Dest, Socket, SocketEvent, SocketRef}};
/// use tokio::net::UdpSocket;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let sock = lp.add(Socket::udp("udp", UdpSocket::bind("127.0.0.1:0").await.unwrap())).await?;
/// let mut events = sock.events::<SocketEvent>()?;
/// let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// let ours = sock.local_addr().await?.as_inet().unwrap();
/// peer.send_to(b"ping", ours).await.unwrap();
/// let SocketEvent::Recv(d) = events.recv().await.unwrap() else { panic!("not a datagram") };
/// assert_eq!(&d.data[..], b"ping");
/// // Reply to where it came from.
/// sock.send_to("pong", Dest::Inet(d.from.as_inet().unwrap())).await?;
/// let mut buf = [0u8; 16];
/// let (n, _) = peer.recv_from(&mut buf).await.unwrap();
/// assert_eq!(&buf[..n], b"pong");
/// # Ok(()) }
/// ```
pub struct Socket {
    sock: Sock,
    queue: VecDeque<(Bytes, Dest)>,
    max_queue: usize,
    buf: BytesMut,
    /// The last wait saw the error condition (`EPOLLERR`).
    err_ready: bool,
}

impl Socket {
    /// A spec over a bound (and maybe connected) UDP socket.
    pub fn udp(name: impl Into<String>, sock: UdpSocket) -> Spec<Socket> {
        Self::spec(name, Sock::Udp(sock))
    }

    /// A spec over a bound Unix datagram socket.
    pub fn unix(name: impl Into<String>, sock: UnixDatagram) -> Spec<Socket> {
        Self::spec(name, Sock::Unix(sock))
    }

    /// A spec over a connected datagram socket (see
    /// [`Connect::datagram`](crate::Connect::datagram)); send with
    /// [`Dest::Peer`].
    pub fn connected(
        name: impl Into<String>,
        conn: crate::connect::DatagramConnection,
    ) -> Spec<Socket> {
        match conn {
            crate::connect::DatagramConnection::Udp(s) => Self::udp(name, s),
            crate::connect::DatagramConnection::Unix(s) => Self::unix(name, s),
        }
    }

    pub(crate) fn args(sock: Sock) -> SocketArgs {
        SocketArgs {
            sock,
            max_queue: 1024,
        }
    }

    fn spec(name: impl Into<String>, sock: Sock) -> Spec<Socket> {
        Spec::once(name, Self::args(sock)).restart(Restart::Temporary)
    }

    pub(crate) fn from_args(args: SocketArgs) -> Result<Socket> {
        let sock = args.sock;
        Ok(Socket {
            sock,
            queue: VecDeque::new(),
            max_queue: args.max_queue,
            buf: BytesMut::new(),
            err_ready: false,
        })
    }

    /// Waits until the socket can receive, has a pending error, or can
    /// send what is queued.
    pub(crate) async fn wait(&mut self) {
        let mut interest = Interest::READABLE | Interest::ERROR;
        if !self.queue.is_empty() {
            interest |= Interest::WRITABLE;
        }
        let ready = match &self.sock {
            Sock::Udp(s) => s.ready(interest).await,
            Sock::Unix(s) => s.ready(interest).await,
        };
        if ready.as_ref().is_ok_and(|r| r.is_error()) || ready.is_err() {
            self.err_ready = true;
        }
    }

    /// Takes the socket's pending error (`SO_ERROR`), clearing the error
    /// readiness once there is none.
    fn take_error(&self) -> Option<io::Error> {
        let take = |e: io::Result<Option<io::Error>>| match e {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Ok(e),
        };
        match &self.sock {
            Sock::Udp(s) => s.try_io(Interest::ERROR, || take(s.take_error())),
            Sock::Unix(s) => s.try_io(Interest::ERROR, || take(s.take_error())),
        }
        .ok()
    }

    /// Sends what the socket takes, then receives what arrived; the events
    /// go to `out`.
    pub(crate) fn pump(&mut self, out: &mut Vec<SocketEvent>) {
        self.flush(out);
        if std::mem::take(&mut self.err_ready)
            && let Some(e) = self.take_error()
        {
            // What recv(2) would have failed with (IO::Async's recv_error).
            out.push(SocketEvent::RecvError(Error::io("recv", e)));
        }
        for _ in 0..64 {
            match self.try_recv() {
                Ok(d) => out.push(SocketEvent::Recv(d)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    out.push(SocketEvent::RecvError(Error::io("recv", e)));
                    break;
                }
            }
        }
    }

    /// Queues a datagram and sends what the socket takes.
    pub(crate) fn push(&mut self, data: Bytes, dest: Dest, out: &mut Vec<SocketEvent>) {
        self.queue.push_back((data, dest));
        self.flush(out);
    }

    pub(crate) fn has_room(&self) -> bool {
        self.queue.len() < self.max_queue
    }

    fn try_send(&self, data: &[u8], dest: &Dest) -> io::Result<usize> {
        match (&self.sock, dest) {
            (Sock::Udp(s), Dest::Peer) => s.try_send(data),
            (Sock::Udp(s), Dest::Inet(a)) => s.try_send_to(data, *a),
            (Sock::Unix(s), Dest::Peer) => s.try_send(data),
            (Sock::Unix(s), Dest::Unix(p)) => s.try_send_to(data, p),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "destination does not match the socket's family",
            )),
        }
    }

    fn try_recv(&mut self) -> io::Result<Datagram> {
        self.buf.clear();
        self.buf.reserve(65536);
        let from = match &self.sock {
            Sock::Udp(s) => SockAddr::Inet(s.try_recv_buf_from(&mut self.buf)?.1),
            Sock::Unix(s) => SockAddr::from_unix(&s.try_recv_buf_from(&mut self.buf)?.1),
        };
        Ok(Datagram {
            data: self.buf.split().freeze(),
            from,
        })
    }

    fn flush(&mut self, out: &mut Vec<SocketEvent>) {
        while let Some((data, dest)) = self.queue.front() {
            match self.try_send(data, dest) {
                Ok(_) => {
                    self.queue.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    let at = format!("{dest:?}");
                    self.queue.pop_front();
                    out.push(SocketEvent::SendError(Error::io_at("send", at, e)));
                }
            }
        }
    }
}

impl Notifier for Socket {
    type Args = Once<SocketArgs>;

    fn kind() -> &'static str {
        "socket"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        Socket::from_args(args.take_for(ctx.path())?)
    }

    async fn ready(&mut self) {
        self.wait().await
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let mut out = Vec::new();
        self.pump(&mut out);
        for ev in out {
            ctx.emit(ev).await;
        }
    }

    fn accepting(&self) -> bool {
        self.has_room()
    }
}

impl Emits<SocketEvent> for Socket {}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// Message: queue a datagram ([`SocketRef::send_to`]).
#[derive(Debug)]
pub(crate) struct SendTo(pub(crate) Bytes, pub(crate) Dest);

impl Handler<SendTo> for Socket {
    type Reply = ();
    async fn handle(&mut self, SendTo(data, dest): SendTo, ctx: &mut Ctx<'_, Self>) {
        let mut out = Vec::new();
        self.push(data, dest, &mut out);
        for ev in out {
            ctx.emit(ev).await;
        }
    }
}

/// Message: the bound address ([`SocketRef::local_addr`]).
#[derive(Debug)]
pub(crate) struct SocketAddrOf;

impl Handler<SocketAddrOf> for Socket {
    type Reply = Result<SockAddr>;
    async fn handle(&mut self, _: SocketAddrOf, _ctx: &mut Ctx<'_, Self>) -> Result<SockAddr> {
        match &self.sock {
            Sock::Udp(s) => s.local_addr().map(SockAddr::Inet),
            Sock::Unix(s) => s.local_addr().map(|a| SockAddr::from_unix(&a)),
        }
        .map_err(|e| Error::io("getsockname", e))
    }
}

/// Datagram operations on a socket's handle.
pub trait SocketRef {
    /// Queues a datagram to `dest` (waits while the send queue is full).
    ///
    /// ```
    /// use ioasync::{Loop, io::{Dest, Socket, SocketRef}};
    /// use tokio::net::UnixDatagram;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let (ours, theirs) = UnixDatagram::pair().unwrap();
    /// let sock = lp.add(Socket::unix("dgram", ours)).await?;
    /// sock.send_to("one", Dest::Peer).await?;
    /// sock.send_to("two", Dest::Peer).await?;
    /// let mut buf = [0u8; 8];
    /// let n = theirs.recv(&mut buf).await.unwrap();
    /// assert_eq!(&buf[..n], b"one", "datagrams keep their order");
    /// let n = theirs.recv(&mut buf).await.unwrap();
    /// assert_eq!(&buf[..n], b"two");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for room in a full mailbox, nothing was queued;
    /// once the datagram is queued, it is sent.
    fn send_to(
        &self,
        data: impl Into<Bytes> + Send,
        dest: Dest,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The bound address.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Socket, SocketRef}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    /// let bound = udp.local_addr().unwrap();
    /// let sock = lp.add(Socket::udp("udp", udp)).await?;
    /// assert_eq!(sock.local_addr().await?.as_inet(), Some(bound));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn local_addr(&self) -> impl Future<Output = Result<SockAddr>> + Send;
}

impl SocketRef for NotifierRef<Socket> {
    async fn send_to(&self, data: impl Into<Bytes> + Send, dest: Dest) -> Result<()> {
        self.tell(SendTo(data.into(), dest)).await
    }

    async fn local_addr(&self) -> Result<SockAddr> {
        self.ask(SocketAddrOf).await
    }
}
