//! The one error type of ioasync.
//!
//! IO::Async reports a failure as a message, the name of the failing
//! operation and, for a failed system call, the errno. [`Error`] carries the
//! same three, plus an [`ErrorKind`] for the decisions callers make and the
//! underlying error as [`std::error::Error::source`].

use std::{fmt, io, sync::Arc};

/// The class of an [`Error`], for decisions. Match on it or use the `is_*`
/// predicates of [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A system call failed; [`Error::errno`] says how.
    Io,
    /// A deadline passed before the operation completed.
    Timeout,
    /// The notifier, channel or stream is closed or no longer running.
    Closed,
    /// A handler panicked; the message is the panic payload.
    Panicked,
    /// A child exceeded its restart limit and its parent gave up.
    Escalated,
    /// The operation was cancelled before it completed.
    Cancelled,
    /// The caller passed something the operation cannot accept.
    InvalidInput,
    /// Name resolution failed.
    Resolve,
    /// A bounded queue or mailbox was full and the operation would wait.
    Full,
    /// A worker process or peer died while holding the operation.
    PeerDied,
    /// A peer broke the protocol: it sent a frame that cannot be read (a
    /// garbage or oversized length, a short frame, an unknown kind).
    Protocol,
    /// Anything else.
    Other,
}

/// An ioasync failure: what went wrong (`message`), in which operation
/// (`op`: `connect`, `resolve`, `read`, `spawn`, `add`, ...) and, for a
/// failed system call, the errno.
///
/// ```
/// use ioasync::{Error, error::ErrorKind};
///
/// let err = Error::io("connect", std::io::Error::from_raw_os_error(111));
/// assert_eq!(err.op(), "connect");
/// assert_eq!(err.errno(), Some(111));
/// assert!(err.is_io());
/// assert_eq!(err.kind(), ErrorKind::Io);
/// ```
#[derive(Clone)]
pub struct Error {
    op: &'static str,
    kind: ErrorKind,
    message: String,
    errno: Option<i32>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error of `kind` in operation `op`.
    pub fn new(op: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            op,
            kind,
            message: message.into(),
            errno: None,
            source: None,
        }
    }

    /// An error from a failed system call; the errno is taken from `err`.
    pub fn io(op: &'static str, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            _ => ErrorKind::Io,
        };
        let errno = err.raw_os_error();
        let mut message = err.to_string();
        if let Some(n) = errno {
            // Display adds the errno itself; keep one copy.
            let suffix = format!(" (os error {n})");
            if message.ends_with(&suffix) {
                message.truncate(message.len() - suffix.len());
            }
        }
        Error {
            op,
            kind,
            message,
            errno,
            source: Some(Arc::new(err)),
        }
    }

    /// An error from a failed system call on `context` (an address, a
    /// path): the message reads `context: OS message`.
    pub fn io_at(op: &'static str, context: impl fmt::Display, err: io::Error) -> Self {
        let mut e = Error::io(op, err);
        e.message = format!("{context}: {}", e.message);
        e
    }

    /// A deadline passed in `op`.
    pub fn timeout(op: &'static str) -> Self {
        Error::new(op, ErrorKind::Timeout, "timed out")
    }

    /// `op` found its target closed or not running.
    pub fn closed(op: &'static str, message: impl Into<String>) -> Self {
        Error::new(op, ErrorKind::Closed, message)
    }

    /// `op` was given bad input.
    pub fn invalid_input(op: &'static str, message: impl Into<String>) -> Self {
        Error::new(op, ErrorKind::InvalidInput, message)
    }

    /// Attaches the underlying error, returned by `source()`.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The name of the failing operation (`connect`, `read`, `add`, ...).
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message, without the operation name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The errno of a failed system call.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    /// A system call failed.
    pub fn is_io(&self) -> bool {
        self.kind == ErrorKind::Io
    }

    /// A deadline passed.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// The target was closed or not running.
    pub fn is_closed(&self) -> bool {
        self.kind == ErrorKind::Closed
    }

    /// A handler panicked.
    pub fn is_panic(&self) -> bool {
        self.kind == ErrorKind::Panicked
    }

    /// A restart limit was exceeded and the failure escalated.
    pub fn is_escalation(&self) -> bool {
        self.kind == ErrorKind::Escalated
    }

    /// The operation was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.kind == ErrorKind::Cancelled
    }

    /// Bad input.
    pub fn is_invalid_input(&self) -> bool {
        self.kind == ErrorKind::InvalidInput
    }

    /// Name resolution failed.
    pub fn is_resolve(&self) -> bool {
        self.kind == ErrorKind::Resolve
    }

    /// A bounded queue or mailbox was full (from a `try_*` operation).
    pub fn is_full(&self) -> bool {
        self.kind == ErrorKind::Full
    }

    /// A peer broke the protocol (a bad frame).
    pub fn is_protocol(&self) -> bool {
        self.kind == ErrorKind::Protocol
    }

    /// The peer or worker holding the operation died.
    pub fn is_peer_died(&self) -> bool {
        self.kind == ErrorKind::PeerDied
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.message)?;
        if let Some(errno) = self.errno {
            write!(f, " (errno {errno})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("op", &self.op)
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("errno", &self.errno)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        match err.errno {
            Some(errno) => io::Error::from_raw_os_error(errno),
            None => io::Error::other(err),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
