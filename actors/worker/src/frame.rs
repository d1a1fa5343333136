//! Frames between a parent and a worker process: a 4-byte big-endian
//! length, then the payload. Payloads are MessagePack (rmp-serde).
//!
//! The length is checked against a cap before anything is allocated: a
//! garbage or hostile length prefix (4 GiB) ends the channel with an
//! error, never with an allocation of that size.

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use ioasync_core::{Error, ErrorKind, Result};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The default cap on one frame: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The codec for frames of at most `max` bytes.
pub(crate) fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max)
        .new_codec()
}

/// Encodes a value as MessagePack.
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes> {
    // Room for a small value from the start: growing from empty costs a
    // reallocation per doubling (five for 100 bytes).
    let mut buf = Vec::with_capacity(128);
    rmp_serde::encode::write_named(&mut buf, value)
        .map(|()| Bytes::from(buf))
        .map_err(|e| Error::new("encode", ErrorKind::InvalidInput, e.to_string()))
}

/// Decodes a MessagePack value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| Error::new("decode", ErrorKind::InvalidInput, e.to_string()))
}

/// The error for a frame the codec refused.
pub(crate) fn frame_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        // LengthDelimitedCodec's only data error: the length prefix is
        // over the cap (checked before anything is allocated).
        Error::new(
            "decode",
            ErrorKind::InvalidInput,
            format!("bad frame: its length is over the size cap ({e})"),
        )
    } else {
        Error::io("read", e)
    }
}

/// Header of a worker frame: kind (1 byte) and call id (8 bytes).
pub(crate) const HEADER: usize = 9;

pub(crate) const CALL: u8 = 1;
pub(crate) const REPLY_OK: u8 = 2;
pub(crate) const REPLY_ERR: u8 = 3;
pub(crate) const MSG: u8 = 4;
pub(crate) const RESULT: u8 = 5;
pub(crate) const PANIC: u8 = 6;
/// A routine channel closed by its sender (the id names the channel).
pub(crate) const CLOSE: u8 = 7;
/// A worker running a long call says it is alive (the id names the call).
pub(crate) const HEARTBEAT: u8 = 8;
/// A routine's checkpoint of its state (serde bytes), kept by the parent.
pub(crate) const CHECKPOINT: u8 = 9;
/// The parent's first frame to a routine: 1 and the last checkpoint, or 0.
pub(crate) const RESUME: u8 = 10;
/// The routine could not decode the checkpoint it was resumed from (the
/// payload says why); it started fresh.
pub(crate) const BAD_CHECKPOINT: u8 = 11;

pub(crate) fn worker_frame(kind: u8, id: u64, payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(HEADER + payload.len());
    b.extend_from_slice(&[kind]);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

pub(crate) fn parse_worker_frame(frame: &[u8]) -> Result<(u8, u64, &[u8])> {
    if frame.len() < HEADER {
        return Err(Error::new(
            "decode",
            ErrorKind::InvalidInput,
            format!(
                "worker frame of {} bytes is shorter than its header",
                frame.len()
            ),
        ));
    }
    let id = u64::from_be_bytes(frame[1..HEADER].try_into().expect("8 bytes"));
    Ok((frame[0], id, &frame[HEADER..]))
}

/// The worker's side of its socket: the same codec as the parent's, over
/// blocking reads and writes (a worker runs no runtime).
pub(crate) struct BlockingFrames<S> {
    sock: S,
    codec: LengthDelimitedCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl<S: Read + Write> BlockingFrames<S> {
    pub(crate) fn new(sock: S, max: usize) -> Self {
        BlockingFrames {
            sock,
            codec: codec(max),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
        }
    }

    /// The next frame; `Ok(None)` at a clean EOF between frames; an
    /// `InvalidData` error for a length over the cap (nothing allocated
    /// for it).
    pub(crate) fn recv(&mut self) -> std::io::Result<Option<BytesMut>> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.rbuf)? {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 8192];
            let n = self.sock.read(&mut chunk)?;
            if n == 0 {
                return match self.rbuf.is_empty() {
                    true => Ok(None),
                    false => Err(std::io::ErrorKind::UnexpectedEof.into()),
                };
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes one frame.
    pub(crate) fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.wbuf.clear();
        self.codec
            .encode(Bytes::copy_from_slice(frame), &mut self.wbuf)?;
        self.sock.write_all(&self.wbuf)
    }
}
