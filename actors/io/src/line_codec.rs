//! [`LineCodec`]: lines of text, IO::Async's Protocol::LineStream framing.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LinesCodec, LinesCodecError};

/// Lines of text (UTF-8), as IO::Async's `Protocol::LineStream`: decoding
/// splits on `\n` and strips the terminator and a `\r` before it (a line
/// may end `\r\n` or `\n`); encoding ends each line with `\n`, or with
/// `\r\n` after [`crlf`](LineCodec::crlf) (`write_line`'s terminator, and
/// what network protocols from SMTP to IRC and HTTP/1 headers expect).
///
/// ```
/// use bytes::BytesMut;
/// use ioasync::io::codec::{Decoder, Encoder, LineCodec};
///
/// let mut codec = LineCodec::new().crlf();
/// let mut input = BytesMut::from("one\r\ntwo\nthr");
/// assert_eq!(codec.decode(&mut input).unwrap().as_deref(), Some("one"));
/// assert_eq!(codec.decode(&mut input).unwrap().as_deref(), Some("two"));
/// assert_eq!(codec.decode(&mut input).unwrap(), None); // "thr" waits for its end
/// let mut out = BytesMut::new();
/// codec.encode("hello".to_string(), &mut out).unwrap();
/// assert_eq!(&out[..], b"hello\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LineCodec {
    lines: LinesCodec,
    crlf: bool,
}

impl LineCodec {
    /// Lines of any length, written with `\n`.
    pub fn new() -> LineCodec {
        LineCodec::default()
    }

    /// Lines of at most `max` bytes (the terminator not counted): a longer
    /// one is a decode error (`MaxLineLengthExceeded`) and is skipped.
    pub fn new_with_max_length(max: usize) -> LineCodec {
        LineCodec {
            lines: LinesCodec::new_with_max_length(max),
            crlf: false,
        }
    }

    /// Writes each line with `\r\n` (reading takes either ending).
    pub fn crlf(mut self) -> LineCodec {
        self.crlf = true;
        self
    }

    /// Whether lines are written with `\r\n`.
    pub fn is_crlf(&self) -> bool {
        self.crlf
    }

    /// The longest line taken (`usize::MAX`: no limit).
    pub fn max_length(&self) -> usize {
        self.lines.max_length()
    }
}

impl Decoder for LineCodec {
    type Item = String;
    type Error = LinesCodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, LinesCodecError> {
        self.lines.decode(buf)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<String>, LinesCodecError> {
        self.lines.decode_eof(buf)
    }
}

/// One `Encoder` impl, for `String` (not any `AsRef<str>`, as
/// tokio-util's `LinesCodec`): a `Framed` over a `LineCodec` infers its
/// frame types, no annotation needed.
impl Encoder<String> for LineCodec {
    type Error = LinesCodecError;

    fn encode(&mut self, line: String, buf: &mut BytesMut) -> Result<(), LinesCodecError> {
        let end: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        buf.reserve(line.len() + end.len());
        buf.put(line.as_bytes());
        buf.put(end);
        Ok(())
    }
}
