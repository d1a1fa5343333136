//! File descriptors as typed channel messages (`SCM_RIGHTS`): a
//! [`WithFds`] carries a value and owned fds (sockets, pipes, files) over
//! a `SOCK_SEQPACKET` socketpair, one record per message, so each
//! message's fds arrive with it. Received fds are close-on-exec
//! (`MSG_CMSG_CLOEXEC`); fds are owned end to end, so a message dropped
//! anywhere closes its fds, and a peer that dies with messages unread
//! has the kernel close the fds it never took.
//!
//! ```
//! use std::io::{Read, Write};
//! use ioasync::channel::{WithFds, fd_bridge, fd_socketpair};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> ioasync::Result<()> {
//! let (a, b) = fd_socketpair()?;
//! let (tx, _) = fd_bridge::<(), String>(a, 4, 1 << 16)?;
//! let (_, mut rx) = fd_bridge::<String, ()>(b, 4, 1 << 16)?;
//! // A pipe's read end travels with its message.
//! let (r, mut w) = std::io::pipe().unwrap();
//! tx.send(WithFds::new("a pipe".to_string(), vec![r.into()])).await.unwrap();
//! let got = rx.recv().await.unwrap()?;
//! assert_eq!(got.value, "a pipe");
//! w.write_all(b"through it").unwrap();
//! drop(w);
//! let mut text = String::new();
//! std::fs::File::from(got.fds.into_iter().next().unwrap()).read_to_string(&mut text).unwrap();
//! assert_eq!(text, "through it");
//! # Ok(()) }
//! ```

use std::{
    io::{self, IoSlice, IoSliceMut},
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
    task::{Context, Poll},
};

use ioasync_core::{Error, ErrorKind, Result};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use crate::frame::{decode, encode};
use ioasync_core::channel::{Receiver, Sender};

/// Registers an owned socket with tokio's reactor.
pub(crate) fn async_fd(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    #[allow(unsafe_code)]
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and refers
    // to the same file description for the AsyncFd's whole life; nothing
    // calls `get_mut` to swap it.
    unsafe {
        AsyncFd::register_with_interest(
            fd,
            tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
        )
    }
    .map_err(|e| Error::io("fd_channel", e.into_parts().1))
}

/// The most fds one message may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// A value and the file descriptors that travel with it.
#[derive(Debug)]
pub struct WithFds<T> {
    /// The message.
    pub value: T,
    /// Its fds, in the order sent.
    pub fds: Vec<OwnedFd>,
}

impl<T> WithFds<T> {
    /// `value` with `fds` attached.
    pub fn new(value: T, fds: Vec<OwnedFd>) -> Self {
        WithFds { value, fds }
    }
}

/// A `SOCK_SEQPACKET` socketpair for an fd channel, both ends
/// close-on-exec (a worker gets its end through its command's fds).
pub fn fd_socketpair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::io("socketpair", e.into()))
}

/// Sends one record: `payload` with `fds` attached.
pub(crate) fn send_record(fd: RawFd, payload: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
    let iov = [IoSlice::new(payload)];
    loop {
        match sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one record into `buf` (its size is the most a record may
/// hold); `None` at the end (the peer closed). A record cut short, or
/// fds cut off, is an error: nothing half-delivered.
pub(crate) fn recv_record(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => break m,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for r in raw {
                #[allow(unsafe_code)]
                // SAFETY: the kernel just installed `r` in this process for
                // us (SCM_RIGHTS); nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
            }
        }
    }
    let (n, flags) = (msg.bytes, msg.flags);
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other(
            "fds were cut off the message (MSG_CTRUNC)",
        ));
    }
    if flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message over the limit of {} bytes", buf.len()),
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((n, fds)))
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// The two halves [`fd_bridge`] makes: a sender of `Out` and a receiver
/// of `In`, both with fds.
pub type FdChannelPair<In, Out> = (Sender<WithFds<Out>>, Receiver<WithFds<In>>);

/// A bridged fd channel pair over `socket` (one end of an
/// [`fd_socketpair`]): each [`WithFds`] sent arrives at the peer's
/// receiver with its fds. Messages above `max_frame` bytes (and fds
/// beyond [`MAX_FDS`]) fail the send's channel with an error; a peer
/// that dies ends the receiver with a `PeerDied` error. Two tasks do the
/// IO; must be called inside a tokio runtime.
pub fn fd_bridge<In, Out>(
    socket: OwnedFd,
    capacity: usize,
    max_frame: usize,
) -> Result<FdChannelPair<In, Out>>
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    let non_blocking = |fd: &OwnedFd| {
        let raw = fd.as_raw_fd();
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| Error::io_at("fcntl", raw, e.into()))?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))
            .map_err(|e| Error::io_at("fcntl", raw, e.into()))
            .map(drop)
    };
    non_blocking(&socket)?;
    let rd = socket
        .try_clone()
        .map_err(|e| Error::io("dup", e))
        .and_then(async_fd)?;
    let wr = async_fd(socket)?;
    let (out_tx, mut out_rx) = mpsc::channel::<WithFds<Out>>(capacity.max(1));
    let (in_tx, in_rx) = mpsc::channel::<Result<WithFds<In>>>(capacity.max(1));
    let err_tx = in_tx.downgrade();
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let res = match encode(&m.value) {
                Ok(b) if b.len() > max_frame => Err(Error::new(
                    "send",
                    ErrorKind::InvalidInput,
                    format!(
                        "a message of {} bytes is over the limit of {max_frame}",
                        b.len()
                    ),
                )),
                Ok(_) if m.fds.len() > MAX_FDS => Err(Error::invalid_input(
                    "send",
                    format!("{} fds in one message (at most {MAX_FDS})", m.fds.len()),
                )),
                Ok(b) => send_async(&wr, &b, &m.fds).await,
                Err(e) => Err(e),
            };
            // Sent or not, our copies of the fds close here.
            drop(m);
            if let Err(e) = res {
                if let Some(tx) = err_tx.upgrade() {
                    let _ = tx.send(Err(e)).await;
                }
                return;
            }
        }
        // Every sender is gone: the peer's receiver ends.
        let _ = nix::sys::socket::shutdown(wr.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; max_frame.max(1)];
        loop {
            let item = match recv_async(&rd, &mut buf).await {
                Ok(None) => return,
                Ok(Some((n, fds))) => decode::<In>(&buf[..n]).map(|value| WithFds { value, fds }),
                Err(e) => Err(e),
            };
            let fatal = item.is_err();
            if in_tx.send(item).await.is_err() || fatal {
                return;
            }
        }
    });
    Ok((Sender::from_mpsc(out_tx), Receiver::from_results(in_rx)))
}

async fn send_async(fd: &AsyncFd<OwnedFd>, payload: &[u8], fds: &[OwnedFd]) -> Result<()> {
    loop {
        let mut g = fd.writable().await.map_err(|e| Error::io("send", e))?;
        match send_record(fd.as_raw_fd(), payload, fds) {
            Err(e) if would_block(&e) => g.clear_ready(),
            res => return res.map_err(|e| Error::io("send", e)),
        }
    }
}

async fn recv_async(
    fd: &AsyncFd<OwnedFd>,
    buf: &mut [u8],
) -> Result<Option<(usize, Vec<OwnedFd>)>> {
    loop {
        let mut g = fd.readable().await.map_err(|e| Error::io("recv", e))?;
        match recv_record(fd.as_raw_fd(), buf) {
            Err(e) if would_block(&e) => g.clear_ready(),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(Error::new(
                    "recv",
                    ErrorKind::PeerDied,
                    "the peer went away (it died or was killed)",
                ));
            }
            res => return res.map_err(|e| Error::io("recv", e)),
        }
    }
}

/// The worker's blocking end of an fd channel (see
/// [`RoutineIo::fd_channel`](crate::RoutineIo::fd_channel)): for a
/// routine that takes one message at a time; [`into_async`] hands the
/// socket to [`fd_bridge`] inside a runtime.
///
/// [`into_async`]: FdReceiver::into_async
#[derive(Debug)]
pub struct FdReceiver<T> {
    socket: OwnedFd,
    buf: Vec<u8>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> FdReceiver<T> {
    pub(crate) fn new(socket: OwnedFd, max_frame: usize) -> Self {
        FdReceiver {
            socket,
            buf: vec![0u8; max_frame.max(1)],
            _t: std::marker::PhantomData,
        }
    }

    /// The next message with its fds, waiting for it; `None` once the
    /// parent closed the channel or went away.
    pub fn recv(&mut self) -> Option<Result<WithFds<T>>> {
        match recv_record(self.socket.as_raw_fd(), &mut self.buf) {
            Ok(None) => None,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
            Ok(Some((n, fds))) => {
                Some(decode::<T>(&self.buf[..n]).map(|value| WithFds { value, fds }))
            }
            Err(e) => Some(Err(Error::io("recv", e))),
        }
    }

    /// The channel as an async [`Receiver`], for a routine that runs a
    /// runtime of its own (must be called inside it).
    pub fn into_async(self) -> Result<Receiver<WithFds<T>>>
    where
        T: Send + 'static,
    {
        let max = self.buf.len();
        let (_tx, rx) = fd_bridge::<T, ()>(self.socket, 16, max)?;
        Ok(rx)
    }

    /// The socket.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// What a routine's fd lane waits to send, type-erased.
pub(crate) type Record = (bytes::Bytes, Vec<OwnedFd>);

/// A routine's fd channel in, as its parent-side notifier polls it.
pub(crate) trait ErasedFdIn: Send {
    /// The next message, encoded, with its fds; `Ready(None)` once every
    /// sender is gone.
    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Record>>>;
}

impl<T: Serialize + Send + 'static> ErasedFdIn for mpsc::Receiver<WithFds<T>> {
    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Record>>> {
        self.poll_recv(cx)
            .map(|m| m.map(|m| encode(&m.value).map(|b| (b, m.fds))))
    }
}
