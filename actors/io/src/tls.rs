//! TLS over rustls (the `ring` provider), feature `tls`: a [`TlsServer`]
//! given to [`Listen::tls`](crate::Listen::tls) makes the handshake part of
//! accepting, a [`TlsClient`] given to [`Connect::tls`](crate::Connect::tls)
//! part of connecting. Either way the result is a [`Connection`] like any
//! other (`is_tls()`), for a [`Stream`](crate::Stream), a
//! [`Framed`](crate::Framed) or a [`Session`](crate::Session).
//!
//! A failed or timed-out handshake is an error of op `tls` (the errno
//! kept when the socket failed, kind `Timeout` past the handshake
//! timeout). On a listener it is an
//! [`AcceptError`](crate::ListenerEvent::AcceptError): the listener and the
//! other connections go on.
//!
//! ```no_run
//! use ioasync::io::{Listen, TlsServer};
//! use std::time::Duration;
//!
//! # fn main() -> ioasync::Result<()> {
//! let tls = TlsServer::from_pem_files("cert.pem", "key.pem")?
//!     .handshake_timeout(Duration::from_secs(5));
//! let _listen = Listen::new("127.0.0.1:8443".parse::<ioasync::io::Address>()?).tls(tls);
//! # Ok(()) }
//! ```

use std::{fmt, path::Path, sync::Arc, time::Duration};

use ioasync_core::{Error, ErrorKind, Result};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

use crate::{
    addr::SockAddr,
    connection::{Connection, IoConnection},
};

/// The default bound of a TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(message: impl Into<String>) -> Error {
    Error::invalid_input("tls", message)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io_at("open", path.display(), e))
}

/// The certificate chain in a PEM text (`what` names it in errors).
fn certs_of(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("{what}: not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{what}: no CERTIFICATE block")));
    }
    Ok(certs)
}

/// A server's TLS settings: its certificate chain and key, and how long a
/// handshake may take. Cheap to clone.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

impl TlsServer {
    /// A server presenting the certificate chain in the PEM file `cert`
    /// (leaf first) with the private key in the PEM file `key` (PKCS#8,
    /// PKCS#1 or SEC1). Errors name the file (op `open` with the errno for
    /// a missing file, op `tls` for bad contents).
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<TlsServer> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        Self::from_pem_named(
            &read_file(cert)?,
            &cert.display().to_string(),
            &read_file(key)?,
            &key.display().to_string(),
        )
    }

    /// As [`from_pem_files`](Self::from_pem_files), from PEM text.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<TlsServer> {
        Self::from_pem_named(cert, "certificate", key, "key")
    }

    fn from_pem_named(cert: &[u8], cert_name: &str, key: &[u8], key_name: &str) -> Result<Self> {
        let certs = certs_of(cert, cert_name)?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| tls_err(format!("{key_name}: not a PEM private key: {e}")))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| tls_err(format!("{cert_name} with {key_name}: {e}")))?;
        Ok(TlsServer::new(Arc::new(config)))
    }

    /// A server with a rustls configuration of your own (client
    /// certificates, ALPN, session storage...).
    pub fn new(config: Arc<ServerConfig>) -> TlsServer {
        TlsServer {
            config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The ALPN protocols offered, most preferred first (`b"h2"`,
    /// `b"http/1.1"`).
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        Arc::make_mut(&mut self.config).alpn_protocols =
            protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// How long a handshake may take (default 10 s); past it the
    /// connection is dropped with a `Timeout` error of op `tls`.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The handshake over an accepted connection from `peer`.
    pub(crate) async fn accept(&self, conn: Connection, peer: &SockAddr) -> Result<Connection> {
        let (local, _) = conn.addrs();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let tls = bounded(self.handshake_timeout, peer, acceptor.accept(conn)).await?;
        Ok(Connection::Io(IoConnection {
            io: Box::new(tls),
            local,
            peer: Some(peer.clone()),
            tls: true,
        }))
    }
}

async fn bounded<T>(
    timeout: Duration,
    peer: &SockAddr,
    handshake: impl Future<Output = std::io::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(Error::io_at(
            "tls",
            format_args!("handshake with {peer}"),
            e,
        )),
        Err(_) => Err(Error::new(
            "tls",
            ErrorKind::Timeout,
            format!("handshake with {peer}: not done within {timeout:?}"),
        )),
    }
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("alpn", &self.config.alpn_protocols.len())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// A client's TLS settings: which roots it trusts, the name it expects,
/// how long a handshake may take. Cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<String>,
    handshake_timeout: Duration,
}

impl TlsClient {
    /// A client trusting the CA certificates in the PEM file `path` (and
    /// nothing else).
    pub fn with_ca_pem_file(path: impl AsRef<Path>) -> Result<TlsClient> {
        let path = path.as_ref();
        Self::with_ca_named(&read_file(path)?, &path.display().to_string())
    }

    /// As [`with_ca_pem_file`](Self::with_ca_pem_file), from PEM text.
    pub fn with_ca_pem(pem: &[u8]) -> Result<TlsClient> {
        Self::with_ca_named(pem, "CA certificate")
    }

    fn with_ca_named(pem: &[u8], what: &str) -> Result<TlsClient> {
        let mut roots = RootCertStore::empty();
        for cert in certs_of(pem, what)? {
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("{what}: not a usable root: {e}")))?;
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient::new(Arc::new(config)))
    }

    /// A client with a rustls configuration of your own.
    pub fn new(config: Arc<ClientConfig>) -> TlsClient {
        TlsClient {
            config,
            server_name: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The name the server's certificate must carry (default: the host
    /// connected to; required for a Unix socket).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// How long a handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The handshake over `conn`, expecting `host` unless a name was set.
    pub(crate) async fn connect(&self, conn: Connection, host: Option<&str>) -> Result<Connection> {
        let name = self
            .server_name
            .as_deref()
            .or(host)
            .ok_or_else(|| tls_err("no server name to verify: set TlsClient::server_name"))?;
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| tls_err(format!("{name:?}: not a server name: {e}")))?;
        let (local, peer) = conn.addrs();
        let at = peer.clone().unwrap_or(SockAddr::Unix(None));
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = bounded(self.handshake_timeout, &at, connector.connect(name, conn)).await?;
        Ok(Connection::Io(IoConnection {
            io: Box::new(tls),
            local,
            peer,
            tls: true,
        }))
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}
