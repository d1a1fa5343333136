//! Typed channels over a [`Transport`] (NATS subjects, with
//! [`NatsTransport`](crate::NatsTransport)): the receiving process
//! [`receiver`]s an address and reads a [`Receiver<T>`] exactly as a
//! local channel's; any process [`sender`]s the same address and sends
//! `T`s. Payloads are MessagePack with a size cap.
//!
//! Each send is a request the receiver answers once the message is in its
//! bounded queue, so `send` waits while the receiver is full
//! (backpressure, as a local channel's `Wait` policy), messages from one
//! sender arrive in order, and a message the receiver cannot take — not a
//! `T`, over its size cap — fails *that* `send` with an error naming the
//! operation and the channel; the channel, its receiver and both
//! processes live on.
//!
//! ```no_run
//! use ioasync::Loop;
//! use ioasync::nats::{Remote, RemoteRef, channel};
//!
//! fn main() -> ioasync::Result<()> {
//!     let lp = Loop::new()?;
//!     let l = lp.clone();
//!     lp.block_on(async move {
//!         let nats = l.add(Remote::spec("nats", "nats://127.0.0.1:4222")).await?;
//!         let t = nats.transport();
//!         let mut rx = channel::receiver::<u64, _>(&t, "jobs.numbers", channel::Options::default()).await?;
//!         let tx = channel::sender::<u64, _>(&t, "jobs.numbers", channel::Options::default());
//!         tx.send(&7).await?;
//!         assert_eq!(rx.recv().await.unwrap()?, 7);
//!         Ok(())
//!     })
//! }
//! ```

use std::{fmt, marker::PhantomData, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use ioasync_core::{Delivery, Error, ErrorKind, Result, Transport, channel::Receiver};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::mpsc;

const MSG: u8 = 0;
const END: u8 = 1;

/// The default size cap of one message: 1 MiB (NATS's default
/// `max_payload`).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// A remote channel's settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The receiver's queue, in messages (default 64).
    pub capacity: usize,
    /// The largest encoded message either side accepts (default
    /// [`DEFAULT_MAX_MESSAGE`]).
    pub max_message: usize,
    /// How long a `send` waits for the receiver to take the message
    /// (default 10 s).
    pub send_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: 64,
            max_message: DEFAULT_MAX_MESSAGE,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// The sending end of a remote channel ([`sender`]). Cheap to clone.
pub struct Sender<T, Tr> {
    transport: Tr,
    address: String,
    options: Options,
    _t: PhantomData<fn(T)>,
}

impl<T, Tr: Clone> Clone for Sender<T, Tr> {
    fn clone(&self) -> Self {
        Sender {
            transport: self.transport.clone(),
            address: self.address.clone(),
            options: self.options,
            _t: PhantomData,
        }
    }
}

impl<T, Tr> fmt::Debug for Sender<T, Tr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote channel::Sender")
            .field("address", &self.address)
            .finish()
    }
}

/// A sender of `T`s to whoever [`receiver`]s `address`.
pub fn sender<T: Serialize, Tr: Transport + Clone>(
    transport: &Tr,
    address: impl Into<String>,
    options: Options,
) -> Sender<T, Tr> {
    Sender {
        transport: transport.clone(),
        address: address.into(),
        options,
        _t: PhantomData,
    }
}

impl<T: Serialize, Tr: Transport> Sender<T, Tr> {
    /// Sends `value`; resolves once the receiver holds it. Fails (op
    /// `send`) when it is over the size cap (`InvalidInput`, nothing
    /// sent), when nobody receives the channel (`Closed`), when the
    /// receiver refused it (`InvalidInput`, with the receiver's reason:
    /// not its type, over its cap), or past the send timeout
    /// (`Timeout`: it may have arrived).
    pub async fn send(&self, value: &T) -> Result<()> {
        let body = rmp_encode(value)?;
        if body.len() > self.options.max_message {
            return Err(Error::invalid_input(
                "send",
                format!(
                    "a message of {} bytes is over the size cap of channel {} ({} bytes); nothing was sent",
                    body.len(),
                    self.address,
                    self.options.max_message
                ),
            ));
        }
        let mut frame = BytesMut::with_capacity(1 + body.len());
        frame.put_u8(MSG);
        frame.extend_from_slice(&body);
        self.request(frame.freeze()).await
    }

    /// Ends the channel: its receiver yields `None` after what it holds.
    pub async fn close(&self) -> Result<()> {
        self.request(Bytes::from_static(&[END])).await
    }

    async fn request(&self, frame: Bytes) -> Result<()> {
        match self
            .transport
            .request(&self.address, frame, self.options.send_timeout)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let inner = e.error();
                Err(match e.delivery() {
                    Delivery::RemoteError => Error::new(
                        "send",
                        ErrorKind::InvalidInput,
                        format!(
                            "channel {}: the receiver refused the message: {}",
                            self.address,
                            inner.message()
                        ),
                    ),
                    Delivery::NotDelivered | Delivery::Busy => Error::new(
                        "send",
                        ErrorKind::Closed,
                        format!("channel {}: {}", self.address, inner.message()),
                    ),
                    _ => Error::new(
                        "send",
                        inner.kind(),
                        format!("channel {}: {}", self.address, inner.message()),
                    ),
                })
            }
        }
    }
}

fn rmp_encode<T: Serialize>(value: &T) -> Result<Bytes> {
    ioasync_worker::encode(value).map_err(|e| {
        Error::invalid_input(
            "send",
            format!("the message does not encode: {}", e.message()),
        )
    })
}

/// Receives the channel at `address`: a [`Receiver<T>`] like a local
/// channel's, which ends (`None`) when a sender [closes](Sender::close) it
/// or the transport stops serving. A message that is not a `T`, or over
/// `options.max_message`, is refused: its sender gets the error, a
/// warning is traced here, and the channel goes on.
pub async fn receiver<T, Tr>(
    transport: &Tr,
    address: impl Into<String>,
    options: Options,
) -> Result<Receiver<T>>
where
    T: DeserializeOwned + Send + 'static,
    Tr: Transport,
{
    let address = address.into();
    let mut incoming = transport
        .serve(&address, 1)
        .await
        .map_err(|e| Error::new("recv", e.error().kind(), e.error().message().to_owned()))?;
    let (tx, rx) = mpsc::channel::<Result<T>>(options.capacity.max(1));
    tokio::spawn(async move {
        loop {
            let req = tokio::select! {
                () = tx.closed() => break,
                r = incoming.recv() => r,
            };
            let Some(req) = req else { break };
            let frame = req.frame().clone();
            let verdict = match frame.first() {
                Some(&END) => {
                    let _ = req.reply(Ok(Bytes::new())).await;
                    break;
                }
                Some(&MSG) if frame.len() - 1 > options.max_message => Err(format!(
                    "recv: a message of {} bytes is over the size cap of channel {address} ({} bytes)",
                    frame.len() - 1,
                    options.max_message
                )),
                Some(&MSG) => ioasync_worker::decode::<T>(&frame[1..]).map_err(|e| {
                    format!(
                        "recv: the message on channel {address} does not decode as {}: {}",
                        std::any::type_name::<T>(),
                        e.message()
                    )
                }),
                _ => Err(format!(
                    "recv: a frame on channel {address} that is not a channel message"
                )),
            };
            match verdict {
                Ok(v) => {
                    if tx.send(Ok(v)).await.is_err() {
                        let _ = req
                            .reply(Err(format!(
                                "recv: the receiver of channel {address} is gone"
                            )))
                            .await;
                        break;
                    }
                    let _ = req.reply(Ok(Bytes::new())).await;
                }
                Err(why) => {
                    tracing::warn!(channel = address, "{why}");
                    let _ = req.reply(Err(why)).await;
                }
            }
        }
    });
    Ok(Receiver::from_results(rx))
}

#[cfg(test)]
mod tests {
    //! The channel over an in-process [`Transport`]: what the trait asks
    //! of a transport is enough for typed channels, NATS or not.

    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use bytes::Bytes;
    use ioasync_core::{
        Delivery, Error, PeerEvent, Transport, TransportError,
        transport::{Incoming, IncomingSender},
    };
    use tokio::sync::{broadcast, oneshot};

    use super::{Options, receiver, sender};

    /// Addresses served in this process.
    #[derive(Clone, Default)]
    struct Loopback {
        served: Arc<Mutex<HashMap<String, IncomingSender>>>,
    }

    impl Loopback {
        fn server(&self, to: &str) -> Result<IncomingSender, TransportError> {
            self.served.lock().unwrap().get(to).cloned().ok_or_else(|| {
                TransportError::new(
                    Delivery::NotDelivered,
                    Error::closed("request", format!("nobody serves {to}")),
                )
            })
        }
    }

    impl Transport for Loopback {
        async fn send(&self, to: &str, frame: Bytes) -> Result<(), TransportError> {
            let server = self.server(to)?;
            type Reply = fn(
                Result<Bytes, String>,
            )
                -> futures_util::future::BoxFuture<'static, ioasync_core::Result<()>>;
            server.push(frame, None::<Reply>).await;
            Ok(())
        }

        async fn request(
            &self,
            to: &str,
            frame: Bytes,
            timeout: Duration,
        ) -> Result<Bytes, TransportError> {
            let server = self.server(to)?;
            let (tx, rx) = oneshot::channel();
            let reply = move |r: Result<Bytes, String>| -> futures_util::future::BoxFuture<
                'static,
                ioasync_core::Result<()>,
            > {
                let _ = tx.send(r);
                Box::pin(async { Ok(()) })
            };
            server.push(frame, Some(reply)).await;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(b))) => Ok(b),
                Ok(Ok(Err(text))) => Err(TransportError::new(
                    Delivery::RemoteError,
                    Error::new("request", ioasync_core::ErrorKind::Other, text),
                )),
                _ => Err(TransportError::new(
                    Delivery::Unknown,
                    Error::timeout("request"),
                )),
            }
        }

        async fn serve(&self, at: &str, max_in_flight: usize) -> Result<Incoming, TransportError> {
            let (tx, incoming) = Incoming::channel(max_in_flight);
            self.served.lock().unwrap().insert(at.to_owned(), tx);
            Ok(incoming)
        }

        fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
            broadcast::channel(1).1
        }
    }

    #[tokio::test]
    async fn typed_channels_run_over_any_transport() {
        let t = Loopback::default();
        let opts = Options {
            max_message: 32,
            ..Default::default()
        };
        let mut rx = receiver::<u32, _>(&t, "nums", opts).await.unwrap();
        let tx = sender::<u32, _>(&t, "nums", opts);
        let feeder = tokio::spawn(async move {
            for n in 0..100 {
                tx.send(&n).await.unwrap();
            }
            let wrong = sender::<String, _>(&t, "nums", opts);
            let e = wrong.send(&"seven".into()).await.unwrap_err();
            assert!(e.is_invalid_input() && e.op() == "send", "{e}");
            assert!(e.to_string().contains("does not decode as u32"), "{e}");
            let big = sender::<Vec<u8>, _>(&t, "nums", Options::default());
            let e = big.send(&vec![1; 100]).await.unwrap_err();
            assert!(e.to_string().contains("over the size cap"), "{e}");
            let nobody = sender::<u32, _>(&t, "elsewhere", opts);
            let e = nobody.send(&1).await.unwrap_err();
            assert!(e.is_closed(), "{e}");
            tx.send(&100).await.unwrap();
            tx.close().await.unwrap();
        });
        for n in 0..=100 {
            assert_eq!(rx.recv().await.unwrap().unwrap(), n);
        }
        assert!(rx.recv().await.is_none());
        feeder.await.unwrap();
    }
}
