//! [`Address`]: where to connect or listen — a host and service to resolve,
//! a socket address, or a Unix socket path.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use ioasync_core::Error;

/// Where to connect or listen.
///
/// ```
/// use ioasync::io::Address;
///
/// let a: Address = "localhost:http".parse().unwrap();
/// assert_eq!(a, Address::inet("localhost", "http"));
/// let b: Address = "[::1]:8080".parse().unwrap();
/// assert_eq!(b, Address::Socket("[::1]:8080".parse().unwrap()));
/// let c: Address = "unix:/tmp/app.sock".parse().unwrap();
/// assert_eq!(c, Address::Unix("/tmp/app.sock".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A host name (or numeric address) and a service name (or port),
    /// resolved with `getaddrinfo`.
    Inet {
        /// Host name or numeric address; empty means "any" for listening.
        host: String,
        /// Service name (`http`) or port number.
        service: String,
    },
    /// A resolved socket address.
    Socket(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl Address {
    /// A host and service to resolve.
    pub fn inet(host: impl Into<String>, service: impl Into<String>) -> Self {
        Address::Inet {
            host: host.into(),
            service: service.into(),
        }
    }

    /// A Unix socket path.
    pub fn unix(path: impl AsRef<Path>) -> Self {
        Address::Unix(path.as_ref().to_owned())
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Socket(a)
    }
}

impl From<(&str, u16)> for Address {
    fn from((host, port): (&str, u16)) -> Self {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Address::Socket(SocketAddr::new(ip, port)),
            Err(_) => Address::inet(host, port.to_string()),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    /// `host:service`, `[v6addr]:port`, `v4addr:port` or `unix:/path`.
    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::invalid_input("address", "empty unix socket path"));
            }
            return Ok(Address::unix(path));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Address::Socket(a));
        }
        let (host, service) = s.rsplit_once(':').ok_or_else(|| {
            Error::invalid_input(
                "address",
                format!("{s:?} is not host:service, [v6]:port or unix:/path"),
            )
        })?;
        if service.is_empty() || host.contains(':') {
            return Err(Error::invalid_input(
                "address",
                format!("{s:?} is not host:service, [v6]:port or unix:/path"),
            ));
        }
        Ok(Address::inet(host, service))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet { host, service } => write!(f, "{host}:{service}"),
            Address::Socket(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// An address a socket is bound or connected to: inet or Unix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SockAddr {
    /// IPv4 or IPv6.
    Inet(SocketAddr),
    /// A Unix socket path (`None` for an unnamed socket).
    Unix(Option<PathBuf>),
}

impl SockAddr {
    /// The inet address, if it is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            SockAddr::Inet(a) => Some(*a),
            SockAddr::Unix(_) => None,
        }
    }

    pub(crate) fn from_unix(a: &tokio::net::unix::SocketAddr) -> SockAddr {
        SockAddr::Unix(a.as_pathname().map(Path::to_owned))
    }
}

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Inet(a) => write!(f, "{a}"),
            SockAddr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            SockAddr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}
