//! Channels: typed, bounded mailboxes, local or bridged to another
//! process over a socket as length-prefixed MessagePack frames.
//!
//! ```
//! use ioasync::channel;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ioasync::Result<()> {
//! // Two ends of a socketpair, as a parent and a worker would hold them.
//! let (a, b) = tokio::net::UnixStream::pair().unwrap();
//! let (to_b, _from_b) = channel::bridge::<String, Vec<u32>>(a, 16, channel::DEFAULT_MAX_FRAME);
//! let (_to_a, mut from_a) = channel::bridge::<Vec<u32>, String>(b, 16, channel::DEFAULT_MAX_FRAME);
//! to_b.send(vec![1, 2, 3]).await.unwrap();
//! assert_eq!(from_a.recv().await.unwrap()?, vec![1, 2, 3]);
//! # Ok(()) }
//! ```

use ioasync_core::{Result, Transport, TransportError};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{net::UnixStream, sync::mpsc};

pub use crate::fd_channel::{
    FdChannelPair, FdReceiver, MAX_FDS, WithFds, fd_bridge, fd_socketpair,
};
pub use crate::frame::DEFAULT_MAX_FRAME;
use crate::frame::{decode, encode};
pub use crate::socketpair::{BRIDGE_ADDRESS, SocketpairTransport};
pub use ioasync_core::channel::{Receiver, SendError, Sender, channel, channel_with};

/// A bridged channel pair over `stream`: what is sent on the returned
/// sender arrives at the peer's receiver, and the other way round. Frames
/// above `max_frame` bytes end the channel with an error; so do malformed
/// frames and the peer's death. Three tasks do the IO: the transport's
/// reader, and one each way for the typed values.
///
/// It is a [`SocketpairTransport`] over `stream` carrying one typed
/// channel at [`BRIDGE_ADDRESS`] each way: each value is one MessagePack
/// frame, and dropping every sender ends the transport's side (the peer's
/// receiver then reads `None`; a peer whose socket closes without that
/// end reads a `PeerDied` error).
pub fn bridge<In, Out>(
    stream: UnixStream,
    capacity: usize,
    max_frame: usize,
) -> (Sender<Out>, Receiver<In>)
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    let transport = SocketpairTransport::new(stream, max_frame);
    // One frame taken from the socket at a time, held until the receiver
    // has room for its value: the socket is the backpressure.
    let mut incoming = transport.serve_now(BRIDGE_ADDRESS, 1);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(capacity.max(1));
    let (in_tx, in_rx) = mpsc::channel::<Result<In>>(capacity.max(1));
    // Weak: once the reader is done, the receiver must see the end even
    // while our sender lives.
    let err_tx = in_tx.downgrade();
    let out = transport.clone();
    tokio::spawn(async move {
        while let Some(v) = out_rx.recv().await {
            let res = match encode(&v) {
                Ok(b) => out
                    .send(BRIDGE_ADDRESS, b)
                    .await
                    .map_err(TransportError::into_error),
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                if let Some(tx) = err_tx.upgrade() {
                    let _ = tx.send(Err(e)).await;
                }
                out.abandon().await;
                return;
            }
        }
        // Every sender is gone: say so (an empty frame; no encoded value
        // is empty), so the peer can tell an end from a death.
        out.finish().await;
    });
    tokio::spawn(async move {
        loop {
            let (item, _held) = match incoming.recv().await {
                Some(req) => (decode::<In>(req.frame()), Some(req)),
                // The peer ended the channel: the receiver sees None.
                None => match transport.incoming_end() {
                    Some(Err(e)) => (Err(e), None),
                    _ => return,
                },
            };
            let fatal = item.is_err();
            if in_tx.send(item).await.is_err() || fatal {
                return;
            }
        }
    });
    (Sender::from_mpsc(out_tx), Receiver::from_results(in_rx))
}
