//! [`SocketpairTransport`]: the [`Transport`] over one end of a
//! socketpair (or any connected Unix stream) to another process, on the
//! worker layer's framing: a 4-byte big-endian length, then the frame,
//! with a size cap checked before anything is allocated.
//!
//! # Wire format
//!
//! Each transport message is one length-delimited frame:
//!
//! - an empty frame: the sender's *end* — it sends nothing more (not even
//!   replies); the peer's served addresses end cleanly;
//! - a frame whose first byte is not `0xC1`: a one-way message to
//!   [`BRIDGE_ADDRESS`], the frame itself (MessagePack never starts
//!   with `0xC1`, a byte it never uses). This is the wire format of
//!   [`bridge`](crate::channel::bridge), which is this transport with
//!   one typed channel on top;
//! - `0xC1`, a kind, an id (8 bytes, big-endian), the address's length
//!   (2 bytes, big-endian), the address, the payload: a one-way message
//!   to another address, a request, a reply (by the request's id), a
//!   handler's error, or "nobody serves that address".

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt, future::BoxFuture};
use ioasync_core::{
    Delivery, Error, ErrorKind, PeerEvent, Result, Transport, TransportError,
    transport::{Incoming, IncomingSender},
};
use tokio::{
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{Notify, broadcast, oneshot},
    task::AbortHandle,
};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::frame::{codec, frame_error};

/// The address whose one-way frames travel bare, with no header: what a
/// [`bridge`](crate::channel::bridge)'s channel sends to and serves.
pub const BRIDGE_ADDRESS: &str = "channel";

/// The first byte of a tagged frame (a byte MessagePack never uses).
const TAG: u8 = 0xC1;
/// Tag, kind, id, address length.
const TAG_HEADER: usize = 1 + 1 + 8 + 2;

const SEND: u8 = 1;
const REQUEST: u8 = 2;
const REPLY_OK: u8 = 3;
const REPLY_ERR: u8 = 4;
const NO_SERVER: u8 = 5;

/// The peer's name in [`PeerEvent`]s.
const PEER: &str = "socketpair";

type Answer = std::result::Result<Bytes, TransportError>;

/// [`Transport`] over one end of a socketpair to another process:
/// frames go to *addresses* the peer serves (a channel's name, never a
/// pid or an fd), over the worker layer's length-delimited framing.
///
/// - [`send`](Transport::send) writes one frame to an address; at the
///   peer it waits for a server of that address (a socketpair is one
///   ordered stream, so it holds up the frames behind it), and nothing
///   sent is dropped on the way;
/// - [`request`](Transport::request) writes a request with an id and
///   waits for the reply of that id: a handler's error is
///   [`Delivery::RemoteError`], an address the peer does not serve is
///   [`Delivery::NotDelivered`], a deadline that passes or a peer that
///   dies with the request in flight is [`Delivery::Unknown`];
/// - [`serve`](Transport::serve) takes an address's frames, at most
///   `max_in_flight` unanswered at once (the rest wait in the socket:
///   the peer's writes slow down);
/// - [`peer_events`](Transport::peer_events) has a [`PeerEvent::Down`]
///   when the link's incoming side ends: the peer ended it
///   ([`finish`](SocketpairTransport::finish)), closed its socket without
///   ending it (it died or was killed), or sent a malformed frame.
///
/// The link is two one-way streams, as the socket is: after the peer's
/// end this side may still send, and after this side's
/// [`finish`](SocketpairTransport::finish) it still receives. Dropping
/// the last clone closes this side (the peer sees its socket close).
/// Served addresses end when the link's incoming side ends or when the
/// transport is dropped.
///
/// # Cancel safety
///
/// A frame is written whole or not at all (each is encoded into the
/// writer's buffer in one step, and a later write flushes what a
/// cancelled one left): dropping a `send` or a `request` never tears the
/// stream. A dropped `request` forgets its id, so a reply that comes
/// later is dropped; whether the request itself went out is then unknown.
///
/// ```
/// use std::time::Duration;
/// use ioasync::{channel::SocketpairTransport, transport::Transport};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let (a, b) = tokio::net::UnixStream::pair().unwrap();
/// let parent = SocketpairTransport::new(a, 1 << 20);
/// let child = SocketpairTransport::new(b, 1 << 20);
/// // The child serves "square", one request at a time.
/// let mut incoming = child.serve("square", 1).await?;
/// tokio::spawn(async move {
///     while let Some(req) = incoming.recv().await {
///         let n = u64::from_be_bytes(req.frame()[..8].try_into().unwrap());
///         let _ = req.reply(Ok((n * n).to_be_bytes().to_vec().into())).await;
///     }
/// });
/// let answer = parent
///     .request("square", 7u64.to_be_bytes().to_vec().into(), Duration::from_secs(5))
///     .await?;
/// assert_eq!(answer[..], 49u64.to_be_bytes());
/// // Nobody serves "cube": known not to have been delivered.
/// let err = parent
///     .request("cube", vec![1].into(), Duration::from_secs(5))
///     .await
///     .unwrap_err();
/// assert!(!err.may_have_been_delivered());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SocketpairTransport {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` once this side ended ([`SocketpairTransport::finish`]) or
    /// a write failed.
    writer: tokio::sync::Mutex<Option<FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>>>,
    state: Mutex<State>,
    /// Wakes a reader waiting for an address to be served.
    served_changed: Arc<Notify>,
    events: broadcast::Sender<PeerEvent>,
    next_id: AtomicU64,
    reader: Mutex<Option<AbortHandle>>,
}

#[derive(Default)]
struct State {
    served: HashMap<String, IncomingSender>,
    pending: HashMap<u64, oneshot::Sender<Answer>>,
    /// How the incoming side ended: `None` while it is up.
    ended: Option<std::result::Result<(), Error>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(reader) = lock(&self.reader).take() {
            reader.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn closed(op: &'static str, why: &str) -> TransportError {
    TransportError::new(Delivery::NotDelivered, Error::closed(op, why))
}

impl SocketpairTransport {
    /// A transport over `stream` (one end of a socketpair; the peer runs
    /// one over the other end), frames of at most `max_frame` bytes both
    /// ways. A task reads the socket. Call it inside a tokio runtime.
    pub fn new(stream: UnixStream, max_frame: usize) -> Self {
        let (rd, wr) = stream.into_split();
        let (events, _) = broadcast::channel(16);
        let inner = Arc::new(Inner {
            writer: tokio::sync::Mutex::new(Some(FramedWrite::new(wr, codec(max_frame)))),
            state: Mutex::new(State::default()),
            served_changed: Arc::new(Notify::new()),
            events,
            next_id: AtomicU64::new(1),
            reader: Mutex::new(None),
        });
        let _ = inner.events.send(PeerEvent::Up {
            peer: PEER.to_owned(),
        });
        let frames = FramedRead::new(rd, codec(max_frame));
        let task = tokio::spawn(read_loop(Arc::downgrade(&inner), frames));
        *lock(&inner.reader) = Some(task.abort_handle());
        SocketpairTransport { inner }
    }

    /// Serves `at` now (what [`Transport::serve`] does, without a
    /// future): frames already waiting for it are handed over first.
    /// Serving an address again replaces the earlier [`Incoming`], which
    /// ends. An address served after the incoming side ended ends at once.
    pub fn serve_now(&self, at: &str, max_in_flight: usize) -> Incoming {
        let (tx, incoming) = Incoming::channel(max_in_flight);
        {
            let mut st = lock(&self.inner.state);
            if st.ended.is_none() {
                st.served.insert(at.to_owned(), tx);
            }
        }
        self.inner.served_changed.notify_waiters();
        incoming
    }

    /// Ends this side: the peer's served addresses end cleanly (their
    /// [`Incoming`]s return `None`) and this side sends nothing more —
    /// not even replies. The bytes already written are delivered first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe as to frames: dropped while it waits for a send in
    /// progress, nothing was written and the side is still open; dropped
    /// while writing the end, the side is closed and the peer reads the
    /// end or a closed socket.
    pub async fn finish(&self) {
        let mut w = self.inner.writer.lock().await;
        if let Some(mut sink) = w.take() {
            let _ = sink.send(Bytes::new()).await;
        }
    }

    /// How the incoming side ended: `None` while it is up, `Some(Ok(()))`
    /// when the peer [finished](Self::finish), `Some(Err(e))` when it
    /// closed its socket without ending (`PeerDied`, op `recv`) or sent
    /// a malformed frame (op `decode` or `read`).
    pub fn incoming_end(&self) -> Option<std::result::Result<(), Error>> {
        lock(&self.inner.state).ended.clone()
    }

    /// Writes one frame; a failure is an `Io` error of op `write`: a frame
    /// over the cap is refused alone, any other failure (the peer closed
    /// its side) ends this side.
    async fn write(
        &self,
        op: &'static str,
        frame: Bytes,
    ) -> std::result::Result<(), TransportError> {
        let mut w = self.inner.writer.lock().await;
        let Some(sink) = w.as_mut() else {
            return Err(closed(op, "this side of the socketpair has ended"));
        };
        match sink.send(frame).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // A frame over the cap is refused before anything is
                // written (the codec checks first); any other failure
                // leaves the stream unusable.
                if e.kind() != std::io::ErrorKind::InvalidInput {
                    *w = None;
                }
                Err(TransportError::new(
                    Delivery::NotDelivered,
                    Error::io("write", e),
                ))
            }
        }
    }

    /// Closes this side without ending it: the peer sees its socket close
    /// as if this process died (what a bridge does after a failed write).
    pub(crate) async fn abandon(&self) {
        self.inner.writer.lock().await.take();
    }
}

impl fmt::Debug for SocketpairTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.inner.state);
        f.debug_struct("SocketpairTransport")
            .field("served", &st.served.len())
            .field("pending", &st.pending.len())
            .field("ended", &st.ended)
            .finish()
    }
}

/// A tagged frame.
fn tagged(kind: u8, id: u64, address: &str, payload: &[u8]) -> Bytes {
    let addr = address.as_bytes();
    let mut b = BytesMut::with_capacity(TAG_HEADER + addr.len() + payload.len());
    b.put_u8(TAG);
    b.put_u8(kind);
    b.put_u64(id);
    b.put_u16(addr.len() as u16);
    b.put_slice(addr);
    b.put_slice(payload);
    b.freeze()
}

fn check_address(op: &'static str, address: &str) -> std::result::Result<(), TransportError> {
    if address.len() > usize::from(u16::MAX) {
        return Err(TransportError::new(
            Delivery::NotDelivered,
            Error::invalid_input(op, "an address is at most 65,535 bytes"),
        ));
    }
    Ok(())
}

/// Removes a request's pending entry if it is dropped before its answer.
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.state).pending.remove(&self.id);
    }
}

impl Transport for SocketpairTransport {
    async fn send(&self, to: &str, frame: Bytes) -> std::result::Result<(), TransportError> {
        check_address("send", to)?;
        let bare = to == BRIDGE_ADDRESS && frame.first().is_some_and(|b| *b != TAG);
        let frame = if bare {
            frame
        } else {
            tagged(SEND, 0, to, &frame)
        };
        self.write("send", frame).await
    }

    async fn request(
        &self,
        to: &str,
        frame: Bytes,
        timeout: Duration,
    ) -> std::result::Result<Bytes, TransportError> {
        check_address("request", to)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut st = lock(&self.inner.state);
            if let Some(end) = &st.ended {
                let why = match end {
                    Ok(()) => "the peer ended the socketpair".to_owned(),
                    Err(e) => format!("the socketpair is down: {e}"),
                };
                return Err(closed("request", &why));
            }
            st.pending.insert(id, tx);
        }
        let _guard = PendingGuard {
            inner: &self.inner,
            id,
        };
        self.write("request", tagged(REQUEST, id, to, &frame))
            .await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(TransportError::new(
                Delivery::Unknown,
                Error::new(
                    "request",
                    ErrorKind::PeerDied,
                    format!("the socketpair went down with the request to {to} in flight"),
                ),
            )),
            Err(_) => Err(TransportError::new(
                Delivery::Unknown,
                Error::new(
                    "request",
                    ErrorKind::Timeout,
                    format!("no answer from {to} within {timeout:?}"),
                ),
            )),
        }
    }

    async fn serve(
        &self,
        at: &str,
        max_in_flight: usize,
    ) -> std::result::Result<Incoming, TransportError> {
        check_address("serve", at)?;
        Ok(self.serve_now(at, max_in_flight))
    }

    fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }
}

/// A frame the reader took apart.
enum Parsed<'a> {
    End,
    Send(&'a str, Bytes),
    Request(u64, &'a str, Bytes),
    Reply(u64, Answer),
}

fn parse(f: &Bytes) -> Result<Parsed<'_>> {
    if f.is_empty() {
        return Ok(Parsed::End);
    }
    if f[0] != TAG {
        return Ok(Parsed::Send(BRIDGE_ADDRESS, f.clone()));
    }
    let bad = |why: String| {
        Error::new(
            "decode",
            ErrorKind::InvalidInput,
            format!("bad frame: {why}"),
        )
    };
    if f.len() < TAG_HEADER {
        return Err(bad(format!(
            "a tagged frame of {} bytes is shorter than its header",
            f.len()
        )));
    }
    let kind = f[1];
    let id = u64::from_be_bytes(f[2..10].try_into().expect("8 bytes"));
    let alen = usize::from(u16::from_be_bytes([f[10], f[11]]));
    if f.len() < TAG_HEADER + alen {
        return Err(bad("its address runs past its end".to_owned()));
    }
    let address = std::str::from_utf8(&f[TAG_HEADER..TAG_HEADER + alen])
        .map_err(|_| bad("its address is not UTF-8".to_owned()))?;
    let payload = f.slice(TAG_HEADER + alen..);
    Ok(match kind {
        SEND => Parsed::Send(address, payload),
        REQUEST => Parsed::Request(id, address, payload),
        REPLY_OK => Parsed::Reply(id, Ok(payload)),
        REPLY_ERR => Parsed::Reply(
            id,
            Err(TransportError::new(
                Delivery::RemoteError,
                Error::new(
                    "request",
                    ErrorKind::Other,
                    String::from_utf8_lossy(&payload).into_owned(),
                ),
            )),
        ),
        NO_SERVER => Parsed::Reply(
            id,
            Err(closed(
                "request",
                &format!("nobody serves {address} at the peer"),
            )),
        ),
        k => return Err(bad(format!("unknown kind {k}"))),
    })
}

/// Reads the socket until the peer's end, its death, a malformed frame,
/// or the transport is dropped; hands each frame to its address.
async fn read_loop(weak: Weak<Inner>, mut frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>) {
    let end = loop {
        let f = match frames.next().await {
            None => {
                break Err(Error::new(
                    "recv",
                    ErrorKind::PeerDied,
                    "the peer went away without ending the channel (it died or was killed)",
                ));
            }
            Some(Err(e)) => break Err(frame_error(e)),
            Some(Ok(f)) => f.freeze(),
        };
        let parsed = match parse(&f) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        match parsed {
            Parsed::End => break Ok(()),
            Parsed::Reply(id, answer) => {
                let Some(inner) = weak.upgrade() else { return };
                let tx = lock(&inner.state).pending.remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(answer);
                }
            }
            Parsed::Send(address, payload) => {
                if !deliver(&weak, address, payload).await {
                    return;
                }
            }
            Parsed::Request(id, address, payload) => {
                let Some(inner) = weak.upgrade() else { return };
                let server = lock(&inner.state).served.get(address).cloned();
                let server = server.filter(|s| !s.is_closed());
                let Some(server) = server else {
                    let t = SocketpairTransport { inner };
                    let _ = t.write("reply", tagged(NO_SERVER, id, address, &[])).await;
                    continue;
                };
                let t = SocketpairTransport { inner };
                let reply = move |res: std::result::Result<Bytes, String>| -> BoxFuture<'static, Result<()>> {
                    Box::pin(async move {
                        let frame = match res {
                            Ok(b) => tagged(REPLY_OK, id, "", &b),
                            Err(text) => tagged(REPLY_ERR, id, "", text.as_bytes()),
                        };
                        t.write("reply", frame).await.map_err(TransportError::into_error)
                    })
                };
                // A server that stopped meanwhile drops it: the requester
                // waits out its deadline (delivery unknown).
                server.push(payload, Some(reply)).await;
            }
        }
    };
    let Some(inner) = weak.upgrade() else { return };
    let reason = match &end {
        Ok(()) => "the peer ended the link".to_owned(),
        Err(e) => e.to_string(),
    };
    let (served, pending) = {
        let mut st = lock(&inner.state);
        st.ended = Some(end);
        (
            std::mem::take(&mut st.served),
            std::mem::take(&mut st.pending),
        )
    };
    // The servers' Incomings end; requests in flight fail (their senders
    // dropped: delivery unknown).
    drop((served, pending));
    inner.served_changed.notify_waiters();
    let _ = inner.events.send(PeerEvent::Down {
        peer: PEER.to_owned(),
        reason,
    });
}

/// Hands a one-way frame to `address`'s server, waiting for one; false
/// when the transport is gone.
async fn deliver(weak: &Weak<Inner>, address: &str, payload: Bytes) -> bool {
    let mut payload = Some(payload);
    loop {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        let notify = inner.served_changed.clone();
        let changed = notify.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let server = lock(&inner.state).served.get(address).cloned();
        drop(inner);
        match server {
            Some(s) if !s.is_closed() => {
                let frame = payload.take().expect("taken once");
                // Delivered, or its server stopped right then: either way
                // it is gone from the link.
                s.push(frame, None::<fn(_) -> BoxFuture<'static, Result<()>>>)
                    .await;
                return true;
            }
            _ => changed.await,
        }
    }
}
