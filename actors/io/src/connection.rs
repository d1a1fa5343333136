//! [`Connection`]: a connected byte-stream socket, TCP or Unix, before it
//! becomes a [`Stream`](crate::Stream).

use std::fmt;

use ioasync_core::{Error, Result};
use tokio::net::{TcpStream, UnixStream};

use crate::addr::SockAddr;

/// A connected stream socket.
pub enum Connection {
    /// TCP over IPv4 or IPv6.
    Tcp(TcpStream),
    /// A Unix domain stream socket.
    Unix(UnixStream),
}

impl Connection {
    /// The remote address.
    pub fn peer_addr(&self) -> Result<SockAddr> {
        match self {
            Connection::Tcp(s) => s.peer_addr().map(SockAddr::Inet),
            Connection::Unix(s) => s.peer_addr().map(|a| SockAddr::from_unix(&a)),
        }
        .map_err(|e| Error::io("getpeername", e))
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SockAddr> {
        match self {
            Connection::Tcp(s) => s.local_addr().map(SockAddr::Inet),
            Connection::Unix(s) => s.local_addr().map(|a| SockAddr::from_unix(&a)),
        }
        .map_err(|e| Error::io("getsockname", e))
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = self.peer_addr().ok();
        match self {
            Connection::Tcp(_) => f.debug_struct("Connection::Tcp"),
            Connection::Unix(_) => f.debug_struct("Connection::Unix"),
        }
        .field("peer", &peer)
        .finish()
    }
}

impl From<TcpStream> for Connection {
    fn from(s: TcpStream) -> Self {
        Connection::Tcp(s)
    }
}

impl From<UnixStream> for Connection {
    fn from(s: UnixStream) -> Self {
        Connection::Unix(s)
    }
}
