//! The frames of remote calls: a call, its reply, a host's heartbeat.
//! Every length is checked before it is used: a short or garbled frame is
//! an error, never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use ioasync_core::{Error, ErrorKind, Result};

/// A call: `[1][caller u64][token u64][deadline ms u32][reply len u16][reply][args]`.
const CALL: u8 = 1;
/// A reply's kinds: `[kind][host u64][payload]`.
pub(crate) const OK: u8 = 1;
pub(crate) const FAILED: u8 = 2;
pub(crate) const EXPIRED: u8 = 3;

const CALL_HEADER: usize = 1 + 8 + 8 + 4 + 2;

fn short(what: &str, len: usize) -> Error {
    Error::new(
        "decode",
        ErrorKind::Protocol,
        format!("a {what} frame of {len} bytes is shorter than its header"),
    )
}

/// One call as a host reads it.
#[derive(Debug)]
pub(crate) struct CallFrame {
    pub(crate) caller: u64,
    pub(crate) token: u64,
    /// What was left of the caller's deadline when it was sent (0: none).
    pub(crate) deadline_ms: u32,
    /// Where its answer goes (a slice of the frame, not a copy).
    pub(crate) reply: async_nats::Subject,
    pub(crate) args: Bytes,
}

pub(crate) fn call(caller: u64, token: u64, deadline_ms: u32, reply: &str, args: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(CALL_HEADER + reply.len() + args.len());
    b.put_u8(CALL);
    b.put_u64(caller);
    b.put_u64(token);
    b.put_u32(deadline_ms);
    b.put_u16(reply.len() as u16);
    b.extend_from_slice(reply.as_bytes());
    b.extend_from_slice(args);
    b.freeze()
}

pub(crate) fn parse_call(f: &Bytes) -> Result<CallFrame> {
    if f.len() < CALL_HEADER {
        return Err(short("call", f.len()));
    }
    if f[0] != CALL {
        return Err(Error::new(
            "decode",
            ErrorKind::Protocol,
            format!("unknown call frame kind {}", f[0]),
        ));
    }
    let u64_at = |i: usize| u64::from_be_bytes(f[i..i + 8].try_into().expect("8 bytes"));
    let caller = u64_at(1);
    let token = u64_at(9);
    let deadline_ms = u32::from_be_bytes(f[17..21].try_into().expect("4 bytes"));
    let rlen = u16::from_be_bytes(f[21..23].try_into().expect("2 bytes")) as usize;
    if f.len() < CALL_HEADER + rlen {
        return Err(short("call", f.len()));
    }
    let reply =
        async_nats::Subject::from_utf8(f.slice(CALL_HEADER..CALL_HEADER + rlen)).map_err(|_| {
            Error::new(
                "decode",
                ErrorKind::Protocol,
                "a call's reply subject is not UTF-8",
            )
        })?;
    Ok(CallFrame {
        caller,
        token,
        deadline_ms,
        reply,
        args: f.slice(CALL_HEADER + rlen..),
    })
}

pub(crate) fn reply(kind: u8, host: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + payload.len());
    b.put_u8(kind);
    b.put_u64(host);
    b.extend_from_slice(payload);
    b.freeze()
}

pub(crate) fn parse_reply(f: &Bytes) -> Result<(u8, u64, Bytes)> {
    if f.len() < 9 {
        return Err(short("reply", f.len()));
    }
    let host = u64::from_be_bytes(f[1..9].try_into().expect("8 bytes"));
    Ok((f[0], host, f.slice(9..)))
}

/// `[host u64][lanes u32][n u32][(caller u64, token u64) × n]`: the calls a
/// host holds (received, not yet answered).
pub(crate) fn heartbeat(host: u64, lanes: u32, held: &[(u64, u64)]) -> Bytes {
    let mut b = BytesMut::with_capacity(16 + 16 * held.len());
    b.put_u64(host);
    b.put_u32(lanes);
    b.put_u32(held.len() as u32);
    for (c, t) in held {
        b.put_u64(*c);
        b.put_u64(*t);
    }
    b.freeze()
}

pub(crate) fn parse_heartbeat(f: &[u8]) -> Result<(u64, Vec<(u64, u64)>)> {
    if f.len() < 16 {
        return Err(short("heartbeat", f.len()));
    }
    let host = u64::from_be_bytes(f[0..8].try_into().expect("8 bytes"));
    let n = u32::from_be_bytes(f[12..16].try_into().expect("4 bytes")) as usize;
    if f.len() < 16 + n.saturating_mul(16) {
        return Err(short("heartbeat", f.len()));
    }
    let held = (0..n)
        .map(|i| {
            let at = 16 + i * 16;
            (
                u64::from_be_bytes(f[at..at + 8].try_into().expect("8 bytes")),
                u64::from_be_bytes(f[at + 8..at + 16].try_into().expect("8 bytes")),
            )
        })
        .collect();
    Ok((host, held))
}

/// A random id (a host's, a caller's): std's per-process random hasher
/// keys, the time and the pid, mixed.
pub(crate) fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_short_ones_are_errors() {
        let f = call(7, 9, 1500, "_INBOX.x.9", b"args");
        let c = parse_call(&f).unwrap();
        assert_eq!((c.caller, c.token, c.deadline_ms), (7, 9, 1500));
        assert_eq!(c.reply.as_str(), "_INBOX.x.9");
        assert_eq!(&c.args[..], b"args");
        for n in 0..f.len() - 4 {
            assert!(parse_call(&f.slice(..n)).is_err(), "{n}");
        }
        let r = reply(OK, 5, b"out");
        assert_eq!(
            parse_reply(&r).unwrap(),
            (OK, 5, Bytes::from_static(b"out"))
        );
        assert!(parse_reply(&r.slice(..3)).is_err());
        let hb = heartbeat(3, 4, &[(1, 2), (7, 8)]);
        assert_eq!(parse_heartbeat(&hb).unwrap(), (3, vec![(1, 2), (7, 8)]));
        assert!(parse_heartbeat(&hb[..20]).is_err());
        let mut lying = hb.to_vec();
        lying[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_heartbeat(&lying).is_err());
    }
}
