//! Listening sockets: bind with socket2 (reuseaddr, v6only, backlog), TCP
//! or Unix.

use std::{net::SocketAddr, path::PathBuf};

use ioasync_core::{Error, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use crate::{
    addr::{Address, SockAddr},
    connection::Connection,
    resolve::{Family, SockType, resolve},
};

/// How to listen: where, and the socket options.
///
/// ```
/// use ioasync::io::Listen;
///
/// let l = Listen::new("[::1]:0".parse::<ioasync::io::Address>().unwrap())
///     .v6only(true)
///     .backlog(128);
/// assert_eq!(l.address().to_string(), "[::1]:0");
/// ```
#[derive(Debug, Clone)]
pub struct Listen {
    target: Address,
    family: Family,
    backlog: i32,
    reuseaddr: bool,
    v6only: Option<bool>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsServer>,
}

impl Listen {
    /// Listen on `target` (port 0 picks a free port).
    pub fn new(target: impl Into<Address>) -> Self {
        Listen {
            target: target.into(),
            family: Family::Any,
            backlog: 1024,
            reuseaddr: true,
            v6only: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// TLS (feature `tls`): a [`Listener`](crate::Listener) on this
    /// address makes a TLS handshake part of each accept, within the
    /// server's handshake timeout; a failed handshake is an
    /// [`AcceptError`](crate::ListenerEvent::AcceptError) of op `tls` and
    /// costs nothing else. Handshakes run inside the listener, many at
    /// once: a slow client holds up no other.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, server: crate::tls::TlsServer) -> Self {
        self.tls = Some(server);
        self
    }

    #[cfg(feature = "tls")]
    pub(crate) fn tls_server(&self) -> Option<&crate::tls::TlsServer> {
        self.tls.as_ref()
    }

    /// The address asked for.
    pub fn address(&self) -> &Address {
        &self.target
    }

    /// Restrict name resolution to one family.
    pub fn family(mut self, family: Family) -> Self {
        self.family = family;
        self
    }

    /// The listen backlog (default 1024).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog.max(1);
        self
    }

    /// `SO_REUSEADDR` (default on).
    pub fn reuseaddr(mut self, on: bool) -> Self {
        self.reuseaddr = on;
        self
    }

    /// `IPV6_V6ONLY` for IPv6 sockets (default: the system's).
    pub fn v6only(mut self, on: bool) -> Self {
        self.v6only = Some(on);
        self
    }

    /// Resolves and binds; the first address that binds wins.
    pub async fn bind(&self) -> Result<ListenSocket> {
        let addrs = match &self.target {
            Address::Unix(path) => return bind_unix(path),
            Address::Socket(a) => vec![*a],
            Address::Inet { host, service } => {
                resolve(host, service, self.family, SockType::Stream, true).await?
            }
        };
        let mut last = None;
        for addr in addrs {
            match self.bind_inet(addr) {
                Ok(l) => return Ok(ListenSocket::Tcp(l)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::invalid_input("listen", "no address to bind")))
    }

    fn bind_inet(&self, addr: SocketAddr) -> Result<TcpListener> {
        let at = |op, e| Error::io_at(op, addr, e);
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| at("socket", e))?;
        if self.reuseaddr {
            sock.set_reuse_address(true)
                .map_err(|e| at("setsockopt", e))?;
        }
        if let (Some(v6only), SocketAddr::V6(_)) = (self.v6only, addr) {
            sock.set_only_v6(v6only).map_err(|e| at("setsockopt", e))?;
        }
        sock.set_nonblocking(true).map_err(|e| at("fcntl", e))?;
        sock.bind(&addr.into()).map_err(|e| at("bind", e))?;
        sock.listen(self.backlog).map_err(|e| at("listen", e))?;
        TcpListener::from_std(sock.into()).map_err(|e| at("listen", e))
    }
}

fn bind_unix(path: &PathBuf) -> Result<ListenSocket> {
    UnixListener::bind(path)
        .map(ListenSocket::Unix)
        .map_err(|e| Error::io_at("bind", path.display(), e))
}

/// A bound, listening socket.
#[derive(Debug)]
pub enum ListenSocket {
    /// TCP.
    Tcp(TcpListener),
    /// Unix stream.
    Unix(UnixListener),
}

impl ListenSocket {
    /// The bound address (with the port the system chose for port 0).
    pub fn local_addr(&self) -> Result<SockAddr> {
        match self {
            ListenSocket::Tcp(l) => l.local_addr().map(SockAddr::Inet),
            ListenSocket::Unix(l) => l.local_addr().map(|a| SockAddr::from_unix(&a)),
        }
        .map_err(|e| Error::io("getsockname", e))
    }

    /// Accepts one connection. Cancel safe.
    pub async fn accept(&self) -> std::io::Result<(Connection, SockAddr)> {
        match self {
            ListenSocket::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Connection::Tcp(s), SockAddr::Inet(a)))
            }
            ListenSocket::Unix(l) => {
                let (s, a) = l.accept().await?;
                Ok((Connection::Unix(s), SockAddr::from_unix(&a)))
            }
        }
    }
}
