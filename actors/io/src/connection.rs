//! [`Connection`]: a connected byte stream — a TCP or Unix socket, or any
//! [`AsyncIo`] (a TLS stream...) — before it becomes a
//! [`Stream`](crate::Stream), a [`Framed`](crate::Framed) or a
//! [`Session`](crate::Session).

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll},
};

use ioasync_core::{Error, Result};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpStream, UnixStream},
};

use crate::addr::SockAddr;

/// Any byte stream a notifier can own: `AsyncRead + AsyncWrite + Send +
/// Unpin + 'static` (a `tokio_rustls` TLS stream, a `tokio::io::DuplexStream`,
/// a compression adapter...). Implemented for every such type.
pub trait AsyncIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncIo for T {}

/// A boxed [`AsyncIo`] with the addresses of the socket under it, when
/// known.
pub struct IoConnection {
    pub(crate) io: Box<dyn AsyncIo>,
    pub(crate) local: Option<SockAddr>,
    pub(crate) peer: Option<SockAddr>,
    pub(crate) tls: bool,
}

impl IoConnection {
    /// Wraps `io`; its addresses are unknown until set.
    pub fn new(io: impl AsyncIo) -> IoConnection {
        IoConnection {
            io: Box::new(io),
            local: None,
            peer: None,
            tls: false,
        }
    }

    /// Sets the local and peer addresses reported for it.
    pub fn with_addrs(mut self, local: Option<SockAddr>, peer: Option<SockAddr>) -> Self {
        self.local = local;
        self.peer = peer;
        self
    }

    /// Whether it is a TLS stream made by [`Listen::tls`](crate::Listen)
    /// or [`Connect::tls`](crate::Connect).
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl fmt::Debug for IoConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoConnection")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A connected byte stream. It is itself `AsyncRead + AsyncWrite`, so a
/// connection handed out by a [`Listener`](crate::Listener) can go to any
/// crate that speaks tokio IO (hyper through `hyper_util::rt::TokioIo`).
#[non_exhaustive]
pub enum Connection {
    /// TCP over IPv4 or IPv6.
    Tcp(TcpStream),
    /// A Unix domain stream socket.
    Unix(UnixStream),
    /// Any other byte stream: a TLS stream, or what [`Connection::from_io`]
    /// wrapped.
    Io(IoConnection),
}

impl Connection {
    /// A connection over any [`AsyncIo`].
    ///
    /// ```
    /// let (ours, _theirs) = tokio::io::duplex(64);
    /// let conn = ioasync::io::Connection::from_io(ours);
    /// assert!(conn.peer_addr().is_err()); // not a socket
    /// ```
    pub fn from_io(io: impl AsyncIo) -> Connection {
        Connection::Io(IoConnection::new(io))
    }

    /// The remote address.
    pub fn peer_addr(&self) -> Result<SockAddr> {
        match self {
            Connection::Tcp(s) => s.peer_addr().map(SockAddr::Inet),
            Connection::Unix(s) => s.peer_addr().map(|a| SockAddr::from_unix(&a)),
            Connection::Io(c) => c.peer.clone().ok_or_else(not_a_socket),
        }
        .map_err(|e| Error::io("getpeername", e))
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SockAddr> {
        match self {
            Connection::Tcp(s) => s.local_addr().map(SockAddr::Inet),
            Connection::Unix(s) => s.local_addr().map(|a| SockAddr::from_unix(&a)),
            Connection::Io(c) => c.local.clone().ok_or_else(not_a_socket),
        }
        .map_err(|e| Error::io("getsockname", e))
    }

    /// Whether this is a TLS stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Connection::Io(c) if c.tls)
    }

    /// The addresses now, for wrapping this connection in another layer.
    pub(crate) fn addrs(&self) -> (Option<SockAddr>, Option<SockAddr>) {
        (self.local_addr().ok(), self.peer_addr().ok())
    }
}

fn not_a_socket() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOTSOCK)
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = self.peer_addr().ok();
        match self {
            Connection::Tcp(_) => f.debug_struct("Connection::Tcp"),
            Connection::Unix(_) => f.debug_struct("Connection::Unix"),
            Connection::Io(c) if c.tls => f.debug_struct("Connection::Tls"),
            Connection::Io(_) => f.debug_struct("Connection::Io"),
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

impl From<IoConnection> for Connection {
    fn from(c: IoConnection) -> Self {
        Connection::Io(c)
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Connection::Tcp($s) => $e,
            Connection::Unix($s) => $e,
            Connection::Io(c) => {
                let $s = &mut c.io;
                $e
            }
        }
    };
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Tcp(s) => s.is_write_vectored(),
            Connection::Unix(s) => s.is_write_vectored(),
            Connection::Io(c) => c.io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
