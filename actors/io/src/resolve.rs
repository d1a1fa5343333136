//! Name resolution off the runtime's worker threads: `getaddrinfo` and
//! `getnameinfo` run on tokio's blocking pool.

use std::net::SocketAddr;

use ioasync_core::{Error, ErrorKind, Result};

use crate::sys;

/// Which address families to resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// IPv6 and IPv4.
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    fn af(self) -> i32 {
        match self {
            Family::Any => libc::AF_UNSPEC,
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        }
    }
}

/// Which kind of socket the addresses are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SockType {
    /// A byte stream (TCP).
    #[default]
    Stream,
    /// Datagrams (UDP).
    Datagram,
}

impl SockType {
    fn raw(self) -> i32 {
        match self {
            SockType::Stream => libc::SOCK_STREAM,
            SockType::Datagram => libc::SOCK_DGRAM,
        }
    }
}

fn resolve_error(host: &str, service: &str, e: sys::GaiError) -> Error {
    let mut err = Error::new(
        "resolve",
        ErrorKind::Resolve,
        format!(
            "cannot resolve {host}:{service}: {} (EAI {})",
            e.message, e.code
        ),
    );
    if let Some(errno) = e.errno {
        err = err.with_source(std::io::Error::from_raw_os_error(errno));
    }
    err
}

/// Resolves `host` and `service` (a name such as `http`, or a port) to
/// socket addresses, in the resolver's order. An empty host resolves to
/// the wildcard address when `passive` (for listening), else to loopback.
///
/// # Cancel safety
///
/// Dropping it abandons the lookup: `getaddrinfo` runs to its end on
/// tokio's blocking pool and its result is discarded.
pub async fn resolve(
    host: &str,
    service: &str,
    family: Family,
    socktype: SockType,
    passive: bool,
) -> Result<Vec<SocketAddr>> {
    let (h, s) = (host.to_owned(), service.to_owned());
    let flags = if passive { libc::AI_PASSIVE } else { 0 };
    let result = tokio::task::spawn_blocking(move || {
        let host = (!h.is_empty()).then_some(h.as_str());
        sys::getaddrinfo(host, Some(&s), family.af(), socktype.raw(), flags)
    })
    .await
    .map_err(|e| Error::new("resolve", ErrorKind::Other, e.to_string()))?;
    let infos = result.map_err(|e| resolve_error(host, service, e))?;
    let addrs: Vec<SocketAddr> = infos.into_iter().map(|i| i.addr).collect();
    if addrs.is_empty() {
        return Err(Error::new(
            "resolve",
            ErrorKind::Resolve,
            format!("{host}:{service} resolved to no address"),
        ));
    }
    Ok(addrs)
}

/// The host and service names of `addr` (`getnameinfo`); numeric forms when
/// `numeric` is set or no name is known.
///
/// # Cancel safety
///
/// Dropping it abandons the lookup: `getnameinfo` runs to its end on
/// tokio's blocking pool and its result is discarded.
pub async fn name_of(addr: SocketAddr, numeric: bool) -> Result<(String, String)> {
    tokio::task::spawn_blocking(move || sys::getnameinfo(&addr, numeric))
        .await
        .map_err(|e| Error::new("getnameinfo", ErrorKind::Other, e.to_string()))?
        .map_err(|e| {
            Error::new(
                "getnameinfo",
                ErrorKind::Resolve,
                format!("cannot name {addr}: {}", e.message),
            )
        })
}
