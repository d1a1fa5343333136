//! [`Transport`]: the seam between channels and pools and whatever moves
//! their frames between processes and hosts; [`Incoming`] and
//! [`Request`] are what a served address hands its server.
//!
//! A transport moves opaque frames ([`Bytes`]) to *logical addresses* —
//! a channel's or a pool's name, never a pid or a socket — and offers four
//! things: [`send`](Transport::send) (one way),
//! [`request`](Transport::request) (one answer, within a deadline),
//! [`serve`](Transport::serve) (take the requests sent to an address, at
//! most `max_in_flight` unanswered at once) and
//! [`peer_events`](Transport::peer_events) (peers coming and going).
//!
//! Its errors say whether the message may have been delivered
//! ([`Delivery`]), which is what a caller needs to decide on a retry: a
//! message that was [not delivered](Delivery::NotDelivered) can always be
//! sent again, one whose fate is [unknown](Delivery::Unknown) only when
//! the work is retry-safe.
//!
//! ```
//! use ioasync_core::{Delivery, Error, TransportError};
//!
//! let e = TransportError::new(Delivery::Unknown, Error::timeout("request"));
//! assert!(e.may_have_been_delivered());
//! assert_eq!(e.error().op(), "request");
//! let e = TransportError::new(
//!     Delivery::NotDelivered,
//!     Error::closed("request", "no responders on jobs.square"),
//! );
//! assert!(!e.may_have_been_delivered());
//! ```

use std::{fmt, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};

use crate::error::{Error, Result};

/// Whether a message that failed may have reached its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// Nobody received it (no responder at the address, not connected,
    /// refused before it was sent): it is safe to send again.
    NotDelivered,
    /// A peer is there but has no room for it now (its in-flight bound or
    /// its queue is full): not delivered; try again later.
    Busy,
    /// It may or may not have been delivered and handled (a deadline
    /// passed, the connection or the peer was lost with it in flight):
    /// send again only what is retry-safe.
    Unknown,
    /// It was delivered and the peer's handler failed; the error carries
    /// the handler's message.
    RemoteError,
}

/// A transport's failure: the error and whether the message may have been
/// delivered.
#[derive(Debug, Clone)]
pub struct TransportError {
    delivery: Delivery,
    error: Error,
}

impl TransportError {
    /// A failure of `error`, the message's fate being `delivery`.
    pub fn new(delivery: Delivery, error: Error) -> Self {
        TransportError { delivery, error }
    }

    /// Whether the message may have been delivered.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// True unless the message is known not to have been delivered
    /// ([`Delivery::NotDelivered`], [`Delivery::Busy`]).
    pub fn may_have_been_delivered(&self) -> bool {
        matches!(self.delivery, Delivery::Unknown | Delivery::RemoteError)
    }

    /// The error (its operation, kind and message).
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The error, for `?` into [`Result`].
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fate = match self.delivery {
            Delivery::NotDelivered => "not delivered",
            Delivery::Busy => "not delivered: the peer is busy",
            Delivery::Unknown => "delivery unknown",
            Delivery::RemoteError => "delivered; the remote handler failed",
        };
        write!(f, "{} ({fate})", self.error)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Error {
        e.error
    }
}

/// A peer (a process, a host, a connection to a server) came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// The peer is reachable (again).
    Up {
        /// Who: an address or a server's name.
        peer: String,
    },
    /// The peer is not reachable; what is in flight to it may be lost.
    Down {
        /// Who.
        peer: String,
        /// Why, as far as the transport knows.
        reason: String,
    },
}

/// Answers one served request: the reply frame, or the handler's error
/// message (the requester sees [`Delivery::RemoteError`]).
type ReplyFn = Box<dyn FnOnce(Result<Bytes, String>) -> BoxFuture<'static, Result<()>> + Send>;

/// One request taken from an address by [`Transport::serve`]: its frame
/// and, unless it was a one-way [`send`](Transport::send), the way to
/// answer it. It holds one of the `max_in_flight` places until it is
/// answered or dropped.
pub struct Request {
    frame: Bytes,
    reply: Option<ReplyFn>,
    _place: OwnedSemaphorePermit,
}

impl Request {
    /// The frame the requester sent.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// Whether the requester waits for an answer.
    pub fn wants_reply(&self) -> bool {
        self.reply.is_some()
    }

    /// Answers it (a one-way message ignores the answer); frees its place.
    pub async fn reply(mut self, result: Result<Bytes, String>) -> Result<()> {
        match self.reply.take() {
            Some(reply) => reply(result).await,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("transport::Request")
            .field("bytes", &self.frame.len())
            .field("wants_reply", &self.wants_reply())
            .finish()
    }
}

/// The requests sent to a served address, in arrival order; ends (`None`)
/// when the transport stops serving it.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<Request>,
}

impl Incoming {
    /// A pair for transport implementations: the [`IncomingSender`] hands
    /// requests in, waiting while `max_in_flight` are unanswered.
    pub fn channel(max_in_flight: usize) -> (IncomingSender, Incoming) {
        let n = max_in_flight.max(1);
        let (tx, rx) = mpsc::channel(n);
        let sender = IncomingSender {
            tx,
            places: Arc::new(Semaphore::new(n)),
        };
        (sender, Incoming { rx })
    }

    /// The next request.
    pub async fn recv(&mut self) -> Option<Request> {
        self.rx.recv().await
    }
}

/// The transport's side of an [`Incoming`].
#[derive(Debug, Clone)]
pub struct IncomingSender {
    tx: mpsc::Sender<Request>,
    places: Arc<Semaphore>,
}

impl IncomingSender {
    /// Hands one request in, first waiting for a free place (fewer than
    /// `max_in_flight` unanswered); false once the [`Incoming`] is gone.
    pub async fn push(
        &self,
        frame: Bytes,
        reply: Option<
            impl FnOnce(Result<Bytes, String>) -> BoxFuture<'static, Result<()>> + Send + 'static,
        >,
    ) -> bool {
        let Ok(place) = self.places.clone().acquire_owned().await else {
            return false;
        };
        let req = Request {
            frame,
            reply: reply.map(|r| Box::new(r) as ReplyFn),
            _place: place,
        };
        self.tx.send(req).await.is_ok()
    }

    /// The [`Incoming`] was dropped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once the [`Incoming`] is dropped (stop serving then).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// Moves frames to logical addresses: a channel's or a pool's name,
/// never a pid or a socket. It offers [`send`](Transport::send) (one
/// way), [`request`](Transport::request) (one answer, within a deadline),
/// [`serve`](Transport::serve) (take the requests sent to an address, at
/// most `max_in_flight` unanswered at once) and
/// [`peer_events`](Transport::peer_events). Its errors
/// ([`TransportError`]) say whether the message may have been delivered
/// ([`Delivery`]): what a caller needs to decide on a retry.
///
/// Implementations: `ioasync_worker::channel::SocketpairTransport` (one
/// end of a socketpair to another process, on the worker framing;
/// `channel::bridge` is it with one typed channel on top) and
/// `ioasync_nats::NatsTransport` (core NATS request/reply and queue
/// groups). An address served by several peers gets each request at one
/// of them.
pub trait Transport: Send + Sync + 'static {
    /// Sends `frame` to whoever serves `to`, one way: no answer, no
    /// delivery guarantee beyond the transport's own.
    fn send(
        &self,
        to: &str,
        frame: Bytes,
    ) -> impl Future<Output = std::result::Result<(), TransportError>> + Send;

    /// Sends `frame` to one server of `to` and waits up to `timeout` for
    /// its answer.
    fn request(
        &self,
        to: &str,
        frame: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = std::result::Result<Bytes, TransportError>> + Send;

    /// Serves `at`: its requests arrive on the returned [`Incoming`], at
    /// most `max_in_flight` unanswered at once (the rest wait with the
    /// transport). Peers serving the same address share its requests.
    fn serve(
        &self,
        at: &str,
        max_in_flight: usize,
    ) -> impl Future<Output = std::result::Result<Incoming, TransportError>> + Send;

    /// Peers coming and going, from now on.
    fn peer_events(&self) -> broadcast::Receiver<PeerEvent>;
}
