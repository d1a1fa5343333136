//! Listening sockets: bind with socket2 (reuseaddr, v6only, backlog), TCP
//! or Unix; or adopt one already listening (socket activation).
//!
//! A Unix socket file is the listener's: a stale one at bind (nothing
//! answers a probe connect) is removed first, one a listener still answers
//! on is left alone with an `EADDRINUSE` error, and the file is removed
//! when the socket closes (a stop, a restart).

use std::{
    io,
    net::SocketAddr,
    os::{
        fd::OwnedFd,
        unix::fs::{FileTypeExt, MetadataExt},
    },
    path::{Path, PathBuf},
    sync::Arc,
};

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
    /// A socket already listening (`from_fd`): each bind takes a copy.
    adopted: Option<Arc<OwnedFd>>,
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
            adopted: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Listen on a socket that is already bound and listening: one
    /// passed by a service manager (socket activation, `LISTEN_FDS`), by
    /// a parent process, or a `std::net::TcpListener` /
    /// `std::os::unix::net::UnixListener` made by other code (IO::Async's
    /// `listen(handle => $socket)`). TCP or Unix stream sockets; the
    /// socket options (backlog, reuseaddr, v6only) were set by whoever
    /// bound it and the ones here are not applied. Each bind (a
    /// [`Listener`](crate::Listener)'s first start and every restart)
    /// listens on a duplicate of the fd, so a restarted listener keeps
    /// the same socket, and the kernel's backlog survives it. A Unix
    /// socket file is not removed at stop: it is not ours.
    ///
    /// Fails (op `listen`) when the fd is not a stream socket that
    /// listens.
    ///
    /// ```
    /// use ioasync::io::{Address, Listen, SockAddr};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let at = std_listener.local_addr().unwrap();
    /// let listen = Listen::from_fd(std_listener)?;
    /// assert_eq!(listen.address(), &Address::Socket(at));
    /// let socket = listen.bind().await?;
    /// assert_eq!(socket.local_addr()?, SockAddr::Inet(at));
    /// # Ok(()) }
    /// ```
    pub fn from_fd(fd: impl Into<OwnedFd>) -> Result<Listen> {
        let fd: OwnedFd = fd.into();
        let sock = socket2::SockRef::from(&fd);
        let bad = |e| Error::io("listen", e);
        let ty = sock.r#type().map_err(bad)?;
        let listening = sock.is_listener().map_err(bad)?;
        if ty != Type::STREAM || !listening {
            return Err(Error::io_at(
                "listen",
                "the socket given is not a stream socket that listens",
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        let local = sock.local_addr().map_err(bad)?;
        let target = if let Some(a) = local.as_socket() {
            Address::Socket(a)
        } else if let Some(p) = local.as_pathname() {
            Address::Unix(p.to_owned())
        } else if local.is_unix() {
            Address::Unix(PathBuf::new())
        } else {
            return Err(Error::io_at(
                "listen",
                "the socket given is neither TCP nor a Unix stream socket",
                io::Error::from_raw_os_error(libc::EAFNOSUPPORT),
            ));
        };
        let mut listen = Listen::new(target);
        listen.adopted = Some(Arc::new(fd));
        Ok(listen)
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

    /// Resolves and binds; the first address that binds wins. For a
    /// Unix path, a stale socket file (one nothing listens on any more,
    /// left by a process that died) is removed first; a file some
    /// listener still answers on is left alone, the bind failing with
    /// `EADDRINUSE` (op `bind`, naming the path); that listener sees the
    /// probe as a connection closed at once. For an adopted socket
    /// ([`Listen::from_fd`]), a duplicate of it.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, nothing stays bound: a socket made by
    /// then is closed with the future.
    pub async fn bind(&self) -> Result<ListenSocket> {
        if let Some(fd) = &self.adopted {
            return adopt(fd, &self.target);
        }
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
                Ok(l) => return Ok(ListenSocket::tcp(l)),
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

/// A duplicate of an adopted listening socket, non-blocking, for tokio.
fn adopt(fd: &OwnedFd, target: &Address) -> Result<ListenSocket> {
    let at = |op, e| Error::io_at(op, target, e);
    let dup = fd.try_clone().map_err(|e| at("dup", e))?;
    let sock = Socket::from(dup);
    sock.set_nonblocking(true).map_err(|e| at("fcntl", e))?;
    let unix = sock
        .local_addr()
        .map(|a| a.is_unix())
        .map_err(|e| at("getsockname", e))?;
    if unix {
        let std: std::os::unix::net::UnixListener = OwnedFd::from(sock).into();
        UnixListener::from_std(std)
            .map(|l| ListenSocket::unix(l, None))
            .map_err(|e| at("listen", e))
    } else {
        TcpListener::from_std(sock.into())
            .map(ListenSocket::tcp)
            .map_err(|e| at("listen", e))
    }
}

fn bind_unix(path: &Path) -> Result<ListenSocket> {
    let failed = |e| Error::io_at("bind", path.display(), e);
    match UnixListener::bind(path) {
        Ok(l) => return Ok(ListenSocket::unix(l, Some(path))),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
        Err(e) => return Err(failed(e)),
    }
    // Something is at the path: a socket some listener answers on, or a
    // stale one left by a process that died without removing it.
    let meta = std::fs::symlink_metadata(path).map_err(failed)?;
    if !meta.file_type().is_socket() {
        return Err(Error::io_at(
            "bind",
            format!("{}: exists and is not a socket", path.display()),
            io::Error::from_raw_os_error(libc::EADDRINUSE),
        ));
    }
    if answers(path).map_err(|e| Error::io_at("connect", path.display(), e))? {
        return Err(Error::io_at(
            "bind",
            format!(
                "{}: a listener answers on this socket (another process?)",
                path.display()
            ),
            io::Error::from_raw_os_error(libc::EADDRINUSE),
        ));
    }
    tracing::debug!(path = %path.display(), "removing a stale Unix socket file");
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io_at("unlink", path.display(), e)),
    }
    UnixListener::bind(path)
        .map(|l| ListenSocket::unix(l, Some(path)))
        .map_err(failed)
}

/// Whether a listener answers on the Unix socket at `path`: a
/// non-blocking probe connect (never waits: a full backlog says yes too).
fn answers(path: &Path) -> io::Result<bool> {
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => Ok(true),
        Err(e) => match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EINPROGRESS) => Ok(true),
            Some(libc::ECONNREFUSED | libc::ENOENT) => Ok(false),
            _ => Err(e),
        },
    }
}

/// The socket file a Unix listener bound: removed when the listener
/// closes, if the path still holds this very file (same device and
/// inode), so a successor's socket is never removed.
#[derive(Debug)]
struct UnixFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl UnixFile {
    fn of(path: &Path) -> Option<UnixFile> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(UnixFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for UnixFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "removing the Unix socket file");
        }
    }
}

/// A bound, listening socket, TCP or Unix stream. A Unix socket file
/// this bound is removed when it is dropped.
#[derive(Debug)]
pub struct ListenSocket {
    inner: Inner,
    /// Declared after `inner`: the fd closes first, then the file goes.
    _file: Option<UnixFile>,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl ListenSocket {
    fn tcp(l: TcpListener) -> ListenSocket {
        ListenSocket {
            inner: Inner::Tcp(l),
            _file: None,
        }
    }

    fn unix(l: UnixListener, bound: Option<&Path>) -> ListenSocket {
        ListenSocket {
            inner: Inner::Unix(l),
            _file: bound.and_then(UnixFile::of),
        }
    }

    /// Whether it is a Unix stream socket.
    pub fn is_unix(&self) -> bool {
        matches!(self.inner, Inner::Unix(_))
    }

    /// The bound address (with the port the system chose for port 0).
    pub fn local_addr(&self) -> Result<SockAddr> {
        match &self.inner {
            Inner::Tcp(l) => l.local_addr().map(SockAddr::Inet),
            Inner::Unix(l) => l.local_addr().map(|a| SockAddr::from_unix(&a)),
        }
        .map_err(|e| Error::io("getsockname", e))
    }

    /// Accepts one connection. Cancel safe.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection is accepted only when it is returned;
    /// dropped before, it stays in the backlog.
    pub async fn accept(&self) -> std::io::Result<(Connection, SockAddr)> {
        match &self.inner {
            Inner::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Connection::Tcp(s), SockAddr::Inet(a)))
            }
            Inner::Unix(l) => {
                let (s, a) = l.accept().await?;
                Ok((Connection::Unix(s), SockAddr::from_unix(&a)))
            }
        }
    }
}
