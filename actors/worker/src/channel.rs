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

use futures_util::{SinkExt, StreamExt};
use ioasync_core::{Error, ErrorKind, Result};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{net::UnixStream, sync::mpsc};
use tokio_util::codec::{FramedRead, FramedWrite};

pub use crate::fd_channel::{
    FdChannelPair, FdReceiver, MAX_FDS, WithFds, fd_bridge, fd_socketpair,
};
pub use crate::frame::DEFAULT_MAX_FRAME;
use crate::frame::{codec, decode, encode, frame_error};
pub use ioasync_core::channel::{Receiver, SendError, Sender, channel, channel_with};

/// A bridged channel pair over `stream`: what is sent on the returned
/// sender arrives at the peer's receiver, and the other way round. Frames
/// above `max_frame` bytes end the channel with an error; so do malformed
/// frames and the peer's death. Two tasks do the IO.
pub fn bridge<In, Out>(
    stream: UnixStream,
    capacity: usize,
    max_frame: usize,
) -> (Sender<Out>, Receiver<In>)
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    let (rd, wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(capacity.max(1));
    let (in_tx, in_rx) = mpsc::channel::<Result<In>>(capacity.max(1));
    // Weak: once the reader is done, the receiver must see the end even
    // while our sender lives.
    let err_tx = in_tx.downgrade();
    tokio::spawn(async move {
        let mut sink = FramedWrite::new(wr, codec(max_frame));
        while let Some(v) = out_rx.recv().await {
            let res = match encode(&v) {
                Ok(b) => sink.send(b).await.map_err(|e| Error::io("write", e)),
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                if let Some(tx) = err_tx.upgrade() {
                    let _ = tx.send(Err(e)).await;
                }
                return;
            }
        }
        // Every sender is gone: say so with an empty frame (no encoded
        // value is empty), so the peer can tell an end from a death.
        let _ = sink.send(bytes::Bytes::new()).await;
    });
    tokio::spawn(async move {
        let mut frames = FramedRead::new(rd, codec(max_frame));
        loop {
            let item = match frames.next().await {
                // The peer ended the channel: the receiver sees None.
                Some(Ok(f)) if f.is_empty() => return,
                None => Err(Error::new(
                    "recv",
                    ErrorKind::PeerDied,
                    "the peer went away without ending the channel (it died or was killed)",
                )),
                Some(Err(e)) => Err(frame_error(e)),
                Some(Ok(f)) => decode::<In>(&f),
            };
            let fatal = item.is_err();
            if in_tx.send(item).await.is_err() || fatal {
                return;
            }
        }
    });
    (Sender::from_mpsc(out_tx), Receiver::from_results(in_rx))
}
