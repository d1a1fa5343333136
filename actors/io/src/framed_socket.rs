//! [`FramedSocket`]: typed datagrams through a codec (IO::Async's
//! Protocol over a Socket): each datagram decodes to one frame, each frame
//! encodes to one datagram.

use std::fmt;

use bytes::BytesMut;
use ioasync_core::{
    Ctx, Emits, Error, ErrorKind, Handler, Notifier, NotifierRef, Once, Restart, Result, Spec,
};
use tokio::net::{UdpSocket, UnixDatagram};
use tokio_util::codec::Decoder;

use crate::{
    addr::SockAddr,
    framed::FrameCodec,
    socket::{Dest, Sock, Socket, SocketArgs, SocketEvent},
};

/// A decoded datagram, or why one could not be decoded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DatagramEvent<T> {
    /// A frame and its sender.
    Frame(T, SockAddr),
    /// A datagram that did not decode (op `decode`); the socket goes on.
    DecodeError(Error, SockAddr),
    /// Receiving or sending failed (errno kept).
    Error(Error),
}

/// How to start a [`FramedSocket`].
pub struct FramedSocketArgs<C> {
    socket: SocketArgs,
    codec: C,
}

impl<C> fmt::Debug for FramedSocketArgs<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedSocketArgs").finish()
    }
}

/// A datagram socket speaking typed frames through a codec.
///
/// ```
/// use ioasync::{Loop, io::{DatagramEvent, FramedSocket, codec::LineCodec}};
/// use tokio::net::UdpSocket;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// let ours = udp.local_addr().unwrap();
/// let lines = lp.add(FramedSocket::udp("lines", udp, LineCodec::new())).await?;
/// let mut frames = lines.events::<DatagramEvent<String>>()?;
/// let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// peer.send_to(b"hello\n", ours).await.unwrap();
/// let DatagramEvent::Frame(line, from) = frames.recv().await.unwrap() else { panic!() };
/// assert_eq!(line, "hello");
/// assert_eq!(from.as_inet(), Some(peer.local_addr().unwrap()));
/// # Ok(()) }
/// ```
pub struct FramedSocket<C: Decoder, O> {
    socket: Socket,
    codec: C,
    _o: std::marker::PhantomData<fn(O)>,
}

impl<C, O> FramedSocket<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    /// Typed frames over a bound UDP socket.
    pub fn udp(name: impl Into<String>, sock: UdpSocket, codec: C) -> Spec<Self> {
        Self::spec(name, Sock::Udp(sock), codec)
    }

    /// Typed frames over a bound Unix datagram socket.
    pub fn unix(name: impl Into<String>, sock: UnixDatagram, codec: C) -> Spec<Self> {
        Self::spec(name, Sock::Unix(sock), codec)
    }

    fn spec(name: impl Into<String>, sock: Sock, codec: C) -> Spec<Self> {
        let args = FramedSocketArgs {
            socket: Socket::args(sock),
            codec,
        };
        Spec::once(name, args).restart(Restart::Temporary)
    }

    async fn deliver(&mut self, arrived: Vec<SocketEvent>, ctx: &mut Ctx<'_, Self>) {
        for ev in arrived {
            let out = match ev {
                SocketEvent::Recv(d) => {
                    let mut buf = BytesMut::from(&d.data[..]);
                    let decoded = self
                        .codec
                        .decode_eof(&mut buf)
                        .map_err(|e| Error::new("decode", ErrorKind::InvalidInput, e.to_string()));
                    match decoded {
                        Ok(Some(item)) => DatagramEvent::Frame(item, d.from),
                        Ok(None) => DatagramEvent::DecodeError(
                            Error::new("decode", ErrorKind::InvalidInput, "an incomplete frame"),
                            d.from,
                        ),
                        Err(e) => DatagramEvent::DecodeError(e, d.from),
                    }
                }
                SocketEvent::RecvError(e) | SocketEvent::SendError(e) => DatagramEvent::Error(e),
            };
            ctx.emit(out).await;
        }
    }
}

impl<C, O> Notifier for FramedSocket<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Args = Once<FramedSocketArgs<C>>;

    fn kind() -> &'static str {
        "framed-socket"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let FramedSocketArgs { socket, codec } = args.take_for(ctx.path())?;
        let socket = Socket::from_args(socket)?;
        Ok(FramedSocket {
            socket,
            codec,
            _o: std::marker::PhantomData,
        })
    }

    async fn ready(&mut self) {
        self.socket.wait().await
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        let mut arrived = Vec::new();
        self.socket.pump(&mut arrived);
        self.deliver(arrived, ctx).await;
    }

    fn accepting(&self) -> bool {
        self.socket.has_room()
    }
}

impl<C, O> Emits<DatagramEvent<C::Item>> for FramedSocket<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
}

impl<C: Decoder, O> fmt::Debug for FramedSocket<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedSocket").finish()
    }
}

/// Message: encode a frame into one datagram for `dest`
/// ([`FramedSocketRef::send_frame`]).
#[derive(Debug)]
pub(crate) struct SendDatagram<O>(pub(crate) O, pub(crate) Dest);

impl<C, O> Handler<SendDatagram<O>> for FramedSocket<C, O>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    type Reply = Result<()>;
    async fn handle(
        &mut self,
        SendDatagram(item, dest): SendDatagram<O>,
        ctx: &mut Ctx<'_, Self>,
    ) -> Result<()> {
        let mut buf = BytesMut::new();
        self.codec
            .encode(item, &mut buf)
            .map_err(|e| Error::new("encode", ErrorKind::InvalidInput, e.to_string()))?;
        let mut arrived = Vec::new();
        self.socket.push(buf.freeze(), dest, &mut arrived);
        self.deliver(arrived, ctx).await;
        Ok(())
    }
}

/// Typed datagram operations on a framed socket's handle.
pub trait FramedSocketRef<O> {
    /// Encodes `item` as one datagram to `dest`; fails (op `encode`) when
    /// the codec refuses it.
    ///
    /// ```
    /// use ioasync::{Loop, io::{Dest, FramedSocket, FramedSocketRef, codec::LineCodec}};
    /// use tokio::net::UdpSocket;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    /// let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    /// let lines = lp.add(FramedSocket::udp("lines", udp, LineCodec::new())).await?;
    /// lines.send_frame("hi".to_string(), Dest::Inet(peer.local_addr().unwrap())).await?;
    /// let mut buf = [0u8; 16];
    /// let n = peer.recv(&mut buf).await.unwrap();
    /// assert_eq!(&buf[..n], b"hi\n");
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for room in a full mailbox, nothing was queued;
    /// once queued, the frame is encoded and sent, only the reply is lost.
    fn send_frame(&self, item: O, dest: Dest) -> impl Future<Output = Result<()>> + Send;
}

impl<C, O> FramedSocketRef<O> for NotifierRef<FramedSocket<C, O>>
where
    C: FrameCodec<O>,
    O: Send + 'static,
{
    async fn send_frame(&self, item: O, dest: Dest) -> Result<()> {
        self.ask(SendDatagram(item, dest)).await
    }
}
