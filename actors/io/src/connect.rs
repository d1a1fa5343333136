//! Connecting: resolve asynchronously, then try every address with Happy
//! Eyeballs (RFC 8305) staggering across IPv6 and IPv4.

use std::{
    future::{Future, IntoFuture},
    net::SocketAddr,
    pin::Pin,
    time::Duration,
};

use futures_util::{StreamExt, stream::FuturesUnordered};
use ioasync_core::{Error, Result};
use tokio::net::{TcpSocket, TcpStream, UdpSocket, UnixDatagram, UnixStream};

use crate::{
    addr::Address,
    connection::Connection,
    resolve::{Family, SockType, resolve},
};

/// RFC 8305's recommended Connection Attempt Delay.
pub const DEFAULT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// A connect request: where, which families, how long. Await it.
///
/// ```
/// use std::time::Duration;
/// use ioasync::io::Connect;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let port = server.local_addr().unwrap().port();
/// let conn = Connect::new(format!("localhost:{port}").parse::<ioasync::io::Address>()?)
///     .timeout(Duration::from_secs(5))
///     .await?;
/// assert_eq!(conn.peer_addr()?.as_inet().unwrap().port(), port);
/// assert!(!conn.is_tls());
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// Dropping the connect future (before it resolves) abandons every
/// attempt in flight and closes their sockets; a name lookup already
/// running on tokio's blocking pool finishes there, its result discarded.
#[derive(Debug, Clone)]
#[must_use = "a Connect does nothing until awaited"]
pub struct Connect {
    target: Address,
    family: Family,
    timeout: Option<Duration>,
    attempt_delay: Duration,
    local: Option<SocketAddr>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsClient>,
}

impl Connect {
    /// Connect to `target`.
    pub fn new(target: impl Into<Address>) -> Self {
        Connect {
            target: target.into(),
            family: Family::Any,
            timeout: None,
            attempt_delay: DEFAULT_ATTEMPT_DELAY,
            local: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Bind the socket to `local` before connecting (IO::Async's
    /// `local_addr`, `local_host` + `local_service`): the source address
    /// the peer sees, and port 0 for any free port. Only the target's
    /// addresses of `local`'s family are tried; none is an error (op
    /// `connect`). A bind that fails is an error of op `bind` naming the
    /// local address, with its errno (`EADDRINUSE`, `EADDRNOTAVAIL`).
    /// For TCP and UDP ([`Connect::datagram`]); a Unix target with a
    /// local address is refused (op `connect`).
    ///
    /// ```
    /// use ioasync::io::{Address, Connect, Connection};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let to = server.local_addr().unwrap();
    /// let conn = Connect::new(Address::Socket(to))
    ///     .bind("127.0.0.2:0".parse().unwrap())
    ///     .await?;
    /// let (_, peer) = server.accept().await.unwrap();
    /// assert_eq!(peer.ip().to_string(), "127.0.0.2");
    /// let Connection::Tcp(s) = conn else { unreachable!() };
    /// assert_eq!(s.local_addr().unwrap(), peer);
    /// # Ok(()) }
    /// ```
    pub fn bind(mut self, local: SocketAddr) -> Self {
        self.local = Some(local);
        self
    }

    /// TLS (feature `tls`): the handshake follows the connect, within the
    /// client's handshake timeout (and this connect's timeout); it fails
    /// with an error of op `tls`. The certificate must name the host
    /// connected to, or the client's `server_name`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, client: crate::tls::TlsClient) -> Self {
        self.tls = Some(client);
        self
    }

    /// Restrict to one address family.
    pub fn family(mut self, family: Family) -> Self {
        self.family = family;
        self
    }

    /// Fail with a `Timeout` error (op `connect`) past this long, resolving
    /// included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long to wait for one attempt before starting the next in
    /// parallel (default 250 ms).
    pub fn attempt_delay(mut self, delay: Duration) -> Self {
        self.attempt_delay = delay;
        self
    }

    async fn run(self) -> Result<Connection> {
        match self.timeout {
            None => self.connect().await,
            Some(t) => tokio::time::timeout(t, self.connect())
                .await
                .map_err(|_| Error::timeout("connect"))?,
        }
    }

    async fn connect(self) -> Result<Connection> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let conn = self.connect_plain().await?;
            let host = match &self.target {
                Address::Inet { host, .. } => Some(host.clone()),
                Address::Socket(a) => Some(a.ip().to_string()),
                Address::Unix(_) => None,
            };
            return tls.connect(conn, host.as_deref()).await;
        }
        self.connect_plain().await
    }

    async fn connect_plain(&self) -> Result<Connection> {
        match &self.target {
            Address::Unix(path) => {
                self.no_local_for_unix()?;
                UnixStream::connect(path)
                    .await
                    .map(Connection::Unix)
                    .map_err(|e| Error::io_at("connect", path.display(), e))
            }
            Address::Socket(a) => {
                let addrs = self.of_local_family(vec![*a])?;
                happy_eyeballs(addrs, self.attempt_delay, self.local).await
            }
            Address::Inet { host, service } => {
                let addrs = resolve(host, service, self.family, SockType::Stream, false).await?;
                let addrs = self.of_local_family(addrs)?;
                happy_eyeballs(addrs, self.attempt_delay, self.local).await
            }
        }
    }

    fn no_local_for_unix(&self) -> Result<()> {
        match self.local {
            Some(local) => Err(Error::invalid_input(
                "connect",
                format!(
                    "{}: a local address ({local}) applies to TCP and UDP only",
                    self.target
                ),
            )),
            None => Ok(()),
        }
    }

    /// With a local address, the target's addresses of its family.
    fn of_local_family(&self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>> {
        let Some(local) = self.local else {
            return Ok(addrs);
        };
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| a.is_ipv6() == local.is_ipv6())
            .collect();
        if kept.is_empty() {
            let family = if local.is_ipv6() { "IPv6" } else { "IPv4" };
            return Err(Error::invalid_input(
                "connect",
                format!(
                    "{}: no {family} address to go with the local address {local}",
                    self.target
                ),
            ));
        }
        Ok(kept)
    }
}

impl Connect {
    /// Connects a datagram socket instead (UDP, or Unix datagram for a
    /// path): sends then go to the target without naming it.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, nothing is connected: the socket being
    /// made is closed with the future.
    pub async fn datagram(self) -> Result<DatagramConnection> {
        let timeout = self.timeout;
        let fut = async move {
            match &self.target {
                Address::Unix(path) => {
                    self.no_local_for_unix()?;
                    let at = |e| Error::io_at("connect", path.display(), e);
                    let s = UnixDatagram::unbound().map_err(at)?;
                    s.connect(path).map_err(at)?;
                    Ok(DatagramConnection::Unix(s))
                }
                Address::Socket(a) => {
                    udp_connect(&self.of_local_family(vec![*a])?, self.local).await
                }
                Address::Inet { host, service } => {
                    let addrs =
                        resolve(host, service, self.family, SockType::Datagram, false).await?;
                    udp_connect(&self.of_local_family(addrs)?, self.local).await
                }
            }
        };
        match timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::timeout("connect"))?,
        }
    }
}

async fn udp_connect(
    addrs: &[SocketAddr],
    local: Option<SocketAddr>,
) -> Result<DatagramConnection> {
    let mut last = None;
    for addr in interleave(addrs.to_vec()) {
        let any: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let from = local.unwrap_or(any);
        let s = UdpSocket::bind(from)
            .await
            .map_err(|e| Error::io_at("bind", from, e))?;
        match s.connect(addr).await {
            Ok(()) => return Ok(DatagramConnection::Udp(s)),
            Err(e) => last = Some(Error::io_at("connect", addr, e)),
        }
    }
    Err(last.unwrap_or_else(|| Error::invalid_input("connect", "no address")))
}

/// A connected datagram socket, before it becomes a
/// [`Socket`](crate::Socket).
#[derive(Debug)]
pub enum DatagramConnection {
    /// UDP.
    Udp(UdpSocket),
    /// Unix datagram.
    Unix(UnixDatagram),
}

impl IntoFuture for Connect {
    type Output = Result<Connection>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Connection>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Orders addresses as RFC 8305 §4 asks: the resolver's first family first,
/// then alternating families.
pub(crate) fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_v6 = first.is_ipv6();
    let (mut a, mut b): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|x| x.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(addrs.len());
    let (mut ai, mut bi) = (a.drain(..), b.drain(..));
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    out
}

/// Tries `addrs` in Happy Eyeballs order: a new attempt starts when the
/// previous fails or after `delay`; the first to connect wins and the rest
/// are dropped (closed).
async fn happy_eyeballs(
    addrs: Vec<SocketAddr>,
    delay: Duration,
    local: Option<SocketAddr>,
) -> Result<Connection> {
    let mut queue = interleave(addrs).into_iter();
    let mut attempts = FuturesUnordered::new();
    let mut last_err: Option<Error> = None;
    let start = |addr: SocketAddr| async move {
        let Some(local) = local else {
            return TcpStream::connect(addr)
                .await
                .map_err(|e| Error::io_at("connect", addr, e));
        };
        let at = |op, e| Error::io_at(op, local, e);
        let sock = if local.is_ipv6() {
            TcpSocket::new_v6()
        } else {
            TcpSocket::new_v4()
        }
        .map_err(|e| at("socket", e))?;
        sock.bind(local).map_err(|e| at("bind", e))?;
        sock.connect(addr)
            .await
            .map_err(|e| Error::io_at("connect", addr, e))
    };
    if let Some(a) = queue.next() {
        attempts.push(start(a));
    }
    let timer = tokio::time::sleep(delay);
    tokio::pin!(timer);
    loop {
        let more = queue.len() > 0;
        tokio::select! {
            res = attempts.next(), if !attempts.is_empty() => match res {
                Some(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(Connection::Tcp(s));
                }
                Some(Err(e)) => {
                    last_err = Some(e);
                    if let Some(a) = queue.next() {
                        attempts.push(start(a));
                        timer.as_mut().reset(tokio::time::Instant::now() + delay);
                    }
                }
                None => {}
            },
            _ = &mut timer, if more => {
                if let Some(a) = queue.next() {
                    attempts.push(start(a));
                }
                timer.as_mut().reset(tokio::time::Instant::now() + delay);
            }
        }
        if attempts.is_empty() && queue.len() == 0 {
            return Err(last_err.unwrap_or_else(|| Error::invalid_input("connect", "no address")));
        }
    }
}
