//! [`NatsTransport`]: the core [`Transport`] over core NATS.

use std::{sync::Arc, time::Duration};

use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use ioasync_core::{
    Delivery, Error, ErrorKind, PeerEvent, Transport, TransportError, transport::Incoming,
};
use tokio::sync::broadcast;

use crate::remote::Link;

/// The header carrying a served request's handler error.
pub(crate) const ERROR_HEADER: &str = "Ioasync-Error";

/// The queue group every server of an address joins: each request reaches
/// one of them.
pub(crate) const QUEUE_GROUP: &str = "ioasync";

/// [`Transport`] over a [`Remote`](crate::Remote)'s connection: an
/// address is a NATS subject; `send` publishes, `request` is NATS
/// request/reply (no responder: [`Delivery::NotDelivered`] at once; past
/// the deadline: [`Delivery::Unknown`]), `serve` joins the subject's
/// queue group (so several servers share its requests), and peer events
/// are the connection's losses and reconnects. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NatsTransport {
    link: Arc<Link>,
}

impl NatsTransport {
    pub(crate) fn new(link: Arc<Link>) -> Self {
        NatsTransport { link }
    }
}

fn not_delivered(e: Error) -> TransportError {
    TransportError::new(Delivery::NotDelivered, e)
}

impl Transport for NatsTransport {
    async fn send(&self, to: &str, frame: Bytes) -> Result<(), TransportError> {
        let client = self.link.client("send").map_err(not_delivered)?;
        client.publish(to.to_owned(), frame).await.map_err(|e| {
            not_delivered(Error::new(
                "send",
                ErrorKind::InvalidInput,
                format!("publish on {to}: {e}"),
            ))
        })
    }

    async fn request(
        &self,
        to: &str,
        frame: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        let client = self.link.client("request").map_err(not_delivered)?;
        let req = async_nats::Request::new()
            .payload(frame)
            .timeout(Some(timeout));
        match client.send_request(to.to_owned(), req).await {
            Ok(msg) => {
                if let Some(err) = msg.headers.as_ref().and_then(|h| h.get(ERROR_HEADER)) {
                    let text = String::from_utf8_lossy(&msg.payload).into_owned();
                    let text = if text.is_empty() {
                        err.as_str().to_owned()
                    } else {
                        text
                    };
                    return Err(TransportError::new(
                        Delivery::RemoteError,
                        Error::new("request", ErrorKind::Other, text),
                    ));
                }
                Ok(msg.payload)
            }
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => not_delivered(Error::closed(
                    "request",
                    format!("nobody serves {to} (no responders)"),
                )),
                RequestErrorKind::TimedOut => TransportError::new(
                    Delivery::Unknown,
                    Error::new(
                        "request",
                        ErrorKind::Timeout,
                        format!("no answer from {to} within {timeout:?}"),
                    ),
                ),
                RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                    not_delivered(Error::invalid_input("request", format!("{to}: {e}")))
                }
                _ => TransportError::new(
                    Delivery::Unknown,
                    Error::new("request", ErrorKind::Io, format!("{to}: {e}")),
                ),
            }),
        }
    }

    async fn serve(&self, at: &str, max_in_flight: usize) -> Result<Incoming, TransportError> {
        let client = self.link.any_client("serve").map_err(not_delivered)?;
        let mut sub = client
            .queue_subscribe(at.to_owned(), QUEUE_GROUP.into())
            .await
            .map_err(|e| {
                not_delivered(Error::new(
                    "serve",
                    ErrorKind::InvalidInput,
                    format!("subscribe to {at}: {e}"),
                ))
            })?;
        // The subscription is known to the server before we return.
        let _ = client.flush().await;
        let (tx, incoming) = Incoming::channel(max_in_flight);
        let at = at.to_owned();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    () = tx.closed() => break,
                    m = sub.next() => m,
                };
                let Some(msg) = msg else { break };
                let reply = msg.reply.clone().map(|to| {
                    let client = client.clone();
                    move |res: Result<Bytes, String>| -> futures_util::future::BoxFuture<
                        'static,
                        ioasync_core::Result<()>,
                    > {
                        Box::pin(async move {
                            let sent = match res {
                                Ok(b) => client.publish(to, b).await,
                                Err(text) => {
                                    let mut h = HeaderMap::new();
                                    h.insert(ERROR_HEADER, "handler");
                                    client.publish_with_headers(to, h, text.into()).await
                                }
                            };
                            sent.map_err(|e| Error::new("reply", ErrorKind::Io, e.to_string()))
                        })
                    }
                });
                if !tx.push(msg.payload, reply).await {
                    break;
                }
            }
            tracing::debug!(subject = at, "nats: stopped serving");
            let _ = sub.unsubscribe().await;
        });
        Ok(incoming)
    }

    fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.link.peer_events()
    }
}
