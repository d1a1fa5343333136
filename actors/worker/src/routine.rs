//! [`Routine`]: a worker process running one routine entry, with a
//! channel in and a channel out, as a supervised notifier
//! (IO::Async::Routine).

use std::{
    ffi::OsString,
    fmt,
    marker::PhantomData,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ioasync_core::{Ctx, Error, ErrorKind, Notifier, NotifierRef, Restart, Result, Spec};
use ioasync_process::{ExitStatus, SpawnedChild};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{
    net::unix::{OwnedReadHalf, OwnedWriteHalf},
    sync::{mpsc, watch},
};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::{
    channel,
    frame::{self, BAD_CHECKPOINT, CHECKPOINT, CLOSE, MSG, PANIC, RESULT, RESUME},
};

type ResultSlot<R> = Option<std::result::Result<R, Error>>;

struct Shared<In, Out, R> {
    input: Mutex<Option<mpsc::Receiver<In>>>,
    output: mpsc::Sender<Result<Out>>,
    result: watch::Sender<ResultSlot<R>>,
    /// Channels 1.. into the routine (`RoutineSpec::channel_in`), each
    /// taken by the running incarnation and handed back at its end.
    extra_in: Mutex<Vec<Option<Box<dyn ErasedIn>>>>,
    /// Channels 1.. out of the routine (`RoutineSpec::channel_out`).
    extra_out: Mutex<Vec<Arc<dyn ErasedOut>>>,
    /// The routine's last checkpoint, for its next incarnation.
    checkpoint: Mutex<Option<Bytes>>,
    /// Fd channels into the routine (`RoutineSpec::fd_channel_in`), each
    /// taken by the running incarnation and handed back at its end, with
    /// the record it had not sent yet.
    fd_in: Mutex<Vec<FdLaneState>>,
}

/// A fd channel's parent side between incarnations.
#[derive(Default)]
struct FdLaneState {
    rx: Option<Box<dyn crate::fd_channel::ErasedFdIn>>,
    pending: Option<crate::fd_channel::Record>,
}

/// A fd channel's parent side in a running incarnation: the socket to
/// the worker, and what it pulls from the senders.
struct FdLane {
    sock: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    state: FdLaneState,
}

impl FdLane {
    /// Sends what can be sent without waiting; `Ready` with the lane's
    /// end (every sender gone: `Ok`) or its error.
    fn poll_send(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        use std::{os::fd::AsRawFd, task::Poll};
        loop {
            if self.state.pending.is_none() {
                let Some(rx) = self.state.rx.as_mut() else {
                    return Poll::Pending;
                };
                match rx.poll_record(cx) {
                    Poll::Ready(Some(Ok(r))) => self.state.pending = Some(r),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => {
                        self.state.rx = None;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            let mut guard = match self.sock.poll_write_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("send", e))),
                Poll::Pending => return Poll::Pending,
            };
            let (payload, fds) = self.state.pending.as_ref().expect("checked above");
            match crate::fd_channel::send_record(self.sock.as_raw_fd(), payload, fds) {
                // Sent: our copies of its fds close here.
                Ok(()) => self.state.pending = None,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => {
                    // The worker is gone: the record waits for the next one.
                    return Poll::Ready(Err(Error::io("send", e)));
                }
            }
        }
    }
}

/// The default most bytes a routine's checkpoint may hold.
pub const DEFAULT_CHECKPOINT_LIMIT: usize = 1 << 20;

/// Something that happened to a [`Routine`]'s state handoff.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RoutineEvent {
    /// The routine saved a checkpoint of this many bytes.
    Checkpointed(usize),
    /// A checkpoint over the limit was refused (op `checkpoint`); the
    /// previous one is kept.
    CheckpointRefused(Error),
    /// The routine could not decode the checkpoint it was resumed from
    /// (op `resume`): it started fresh, and the checkpoint is dropped.
    CorruptCheckpoint(Error),
}

/// A typed channel into the routine, its values encoded for the wire.
trait ErasedIn: Send {
    fn poll_frame(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes>>>;
}

struct InChannel<T>(channel::Receiver<T>);

impl<T: Serialize + Send + 'static> ErasedIn for InChannel<T> {
    fn poll_frame(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes>>> {
        use futures_util::Stream as _;
        std::pin::Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|v| v.map(|v| v.and_then(|v| frame::encode(&v))))
    }
}

/// A typed channel out of the routine: decodes what arrives for it.
trait ErasedOut: Send + Sync {
    fn deliver<'a>(&'a self, payload: &'a [u8]) -> futures_util::future::BoxFuture<'a, ()>;
}

struct OutChannel<T>(mpsc::Sender<Result<T>>);

impl<T: DeserializeOwned + Send + 'static> ErasedOut for OutChannel<T> {
    fn deliver<'a>(&'a self, payload: &'a [u8]) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = self.0.send(frame::decode::<T>(payload)).await;
        })
    }
}

/// How to start a [`Routine`]; cheap to clone (a restart reuses it, and
/// the same channels).
pub struct RoutineArgs<In, Out, R> {
    entry: String,
    exec_args: Vec<OsString>,
    setup: Option<crate::entry::WorkerSetup>,
    shared: Arc<Shared<In, Out, R>>,
    checkpoint_limit: usize,
}

impl<In, Out, R> Clone for RoutineArgs<In, Out, R> {
    fn clone(&self) -> Self {
        RoutineArgs {
            entry: self.entry.clone(),
            exec_args: self.exec_args.clone(),
            setup: self.setup.clone(),
            shared: self.shared.clone(),
            checkpoint_limit: self.checkpoint_limit,
        }
    }
}

impl<In, Out, R> fmt::Debug for RoutineArgs<In, Out, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutineArgs")
            .field("entry", &self.entry)
            .finish()
    }
}

/// The caller's side of a routine: its input, its output, its result.
pub struct RoutineIoHandle<In, Out, R> {
    /// Messages to the routine (`RoutineIo::recv` in the worker).
    pub input: channel::Sender<In>,
    /// Messages from the routine (`RoutineIo::send` in the worker).
    pub output: channel::Receiver<Out>,
    /// The routine's outcome.
    pub result: RoutineResult<R>,
}

/// A routine's outcome, awaitable any number of times.
#[derive(Debug, Clone)]
pub struct RoutineResult<R>(watch::Receiver<ResultSlot<R>>);

impl<R: Clone> RoutineResult<R> {
    /// Resolves with the routine's return value, or with its failure (the
    /// panic message, or the exit status of a worker that died). A
    /// restarted routine resolves with its last incarnation's outcome.
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, supervision::Restart, worker::{Entry, Routine, RoutineIo, run_if_worker}};
    ///
    /// fn fails(_io: &mut RoutineIo<(), ()>) -> u32 {
    ///     panic!("out of cheese")
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     run_if_worker([Entry::routine("fails", fails)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let (spec, mut io) = Routine::<(), (), u32>::spec("fails", "fails", 1);
    ///         l.add(spec.restart(Restart::Temporary)).await?; // not restarted
    ///         let err = io.result.wait().await.unwrap_err();
    ///         assert!(err.to_string().contains("out of cheese"), "{err}");
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches the outcome; dropping it changes
    /// nothing.
    pub async fn wait(&mut self) -> Result<R> {
        let slot = self
            .0
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::closed("routine", "the routine is gone"))?;
        slot.clone().expect("waited for Some")
    }
}

impl<In, Out, R> fmt::Debug for RoutineIoHandle<In, Out, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutineIoHandle").finish()
    }
}

/// A routine spec under construction.
pub struct RoutineSpec<In, Out, R> {
    name: String,
    args: RoutineArgs<In, Out, R>,
    restart: Restart,
}

impl<In, Out, R> fmt::Debug for RoutineSpec<In, Out, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutineSpec")
            .field("name", &self.name)
            .finish()
    }
}

impl<In, Out, R> RoutineSpec<In, Out, R> {
    /// Adds a channel into the routine, number 1, 2, … in the order they
    /// are added (the spec's own input is channel 0), holding `capacity`
    /// messages; the worker reads it with
    /// [`RoutineIo::recv_on`](crate::RoutineIo::recv_on). Dropping the
    /// returned sender closes that channel alone (`recv_on` then returns
    /// `None`); a restarted routine gets the same channels.
    pub fn channel_in<T: Serialize + Send + 'static>(
        &mut self,
        capacity: usize,
    ) -> channel::Sender<T> {
        let (tx, rx) = channel::channel(capacity);
        self.channel_in_from(rx);
        tx
    }

    /// Adds a channel into the routine fed from `rx`: any receiver, such
    /// as another routine's output, so that one routine's messages reach
    /// another (IO::Async's one Channel linking two Routines; here the
    /// parent relays them, decoded and encoded again). Numbered as for
    /// [`channel_in`](Self::channel_in).
    pub fn channel_in_from<T: Serialize + Send + 'static>(&mut self, rx: channel::Receiver<T>) {
        lock(&self.args.shared.extra_in).push(Some(Box::new(InChannel(rx))));
    }

    /// Adds a channel out of the routine, number 1, 2, … in the order they
    /// are added (the spec's own output is channel 0), holding `capacity`
    /// messages; the worker writes it with
    /// [`RoutineIo::send_on`](crate::RoutineIo::send_on).
    pub fn channel_out<T: DeserializeOwned + Send + 'static>(
        &mut self,
        capacity: usize,
    ) -> channel::Receiver<T> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        lock(&self.args.shared.extra_out).push(Arc::new(OutChannel(tx)));
        channel::Receiver::from_results(rx)
    }

    /// Arguments for the re-executed binary (see
    /// [`FunctionSpec::exec_args`](crate::FunctionSpec::exec_args)).
    pub fn exec_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.exec_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the worker's command up before it is spawned, at every
    /// (re)start (IO::Async's `setup`): environment, working directory,
    /// rlimits, umask, nice, uid/gid (see
    /// [`Command`](ioasync_process::Command)).
    pub fn worker_setup(
        mut self,
        setup: impl Fn(&mut ioasync_process::Command) + Send + Sync + 'static,
    ) -> Self {
        self.args.setup = Some(crate::entry::WorkerSetup::new(setup));
        self
    }

    /// A channel into the routine whose messages carry file descriptors
    /// ([`WithFds`](crate::channel::WithFds): sockets, pipes, files),
    /// passed with `SCM_RIGHTS` over a socketpair of its own; the worker
    /// takes it with [`RoutineIo::fd_channel`](crate::RoutineIo::fd_channel)
    /// (`k` counts these channels from 0). A message is sent to the
    /// running incarnation; the fds of one its worker took and never used
    /// close with it (the kernel's part), and those not yet sent wait for
    /// the next incarnation. Sent messages' fds close in this process.
    pub fn fd_channel_in<T: Serialize + Send + 'static>(
        &mut self,
        capacity: usize,
    ) -> channel::Sender<crate::fd_channel::WithFds<T>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        lock(&self.args.shared.fd_in).push(FdLaneState {
            rx: Some(Box::new(rx)),
            pending: None,
        });
        channel::Sender::from_mpsc(tx)
    }

    /// The most bytes a checkpoint may hold (default
    /// [`DEFAULT_CHECKPOINT_LIMIT`], 1 MiB); a bigger one is refused with a
    /// [`RoutineEvent::CheckpointRefused`] and the previous one is kept.
    pub fn checkpoint_limit(mut self, bytes: usize) -> Self {
        self.args.checkpoint_limit = bytes;
        self
    }

    /// The restart type (default transient: restarted after a panic or a
    /// death, not after it returned).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }
}

impl<In, Out, R> ioasync_core::IntoSpec for RoutineSpec<In, Out, R>
where
    In: Serialize + Send + Sync + 'static,
    Out: DeserializeOwned + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Notifier = Routine<In, Out, R>;
}

impl<In, Out, R> From<RoutineSpec<In, Out, R>> for Spec<Routine<In, Out, R>>
where
    In: Serialize + Send + Sync + 'static,
    Out: DeserializeOwned + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn from(s: RoutineSpec<In, Out, R>) -> Self {
        Spec::new(s.name, s.args).restart(s.restart)
    }
}

/// A worker process running a routine entry, supervised like any
/// notifier: its panic or death is a failure with the panic message or
/// the exit status, and a permanent or transient routine is restarted
/// (a new process, the same channels).
///
/// ```standalone_crate
/// use ioasync::{Loop, worker::{Entry, Routine, RoutineIo, run_if_worker}};
///
/// /// Runs in the worker: sums what it is sent, echoing running totals.
/// fn summer(io: &mut RoutineIo<u64, u64>) -> u64 {
///     let mut total = 0;
///     while let Some(n) = io.recv() {
///         total += n;
///         io.send(&total);
///     }
///     total
/// }
///
/// fn main() -> ioasync::Result<()> {
///     run_if_worker([Entry::routine("summer", summer)]);
///     let lp = Loop::new()?;
///     let l = lp.clone();
///     lp.block_on(async move {
///         let (spec, mut io) = Routine::<u64, u64, u64>::spec("summer", "summer", 8);
///         l.add(spec).await?;
///         for n in [1, 2, 3] {
///             io.input.send(n).await.unwrap();
///         }
///         let mut seen = Vec::new();
///         for _ in 0..3 {
///             seen.push(io.output.recv().await.unwrap()?);
///         }
///         assert_eq!(seen, [1, 3, 6]);
///         drop(io.input); // EOF: the routine returns
///         assert_eq!(io.result.wait().await?, 6);
///         Ok(())
///     })
/// }
/// ```
pub struct Routine<In, Out, R> {
    child: SpawnedChild,
    frames: Option<FramedRead<OwnedReadHalf, LengthDelimitedCodec>>,
    sink: Option<FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>>,
    input: Option<mpsc::Receiver<In>>,
    /// Channels 1.. into it (`None` once closed).
    extra_in: Vec<Option<Box<dyn ErasedIn>>>,
    extra_out: Vec<Arc<dyn ErasedOut>>,
    shared: Arc<Shared<In, Out, R>>,
    pending: Option<Event<In>>,
    outcome: Option<std::result::Result<Bytes, String>>,
    checkpoint_limit: usize,
    fd_lanes: Vec<FdLane>,
    _types: PhantomData<fn() -> R>,
}

impl<In, Out, R> ioasync_core::Emits<RoutineEvent> for Routine<In, Out, R>
where
    In: Serialize + Send + Sync + 'static,
    Out: DeserializeOwned + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
}

enum Event<In> {
    /// Fd channel `.0`: every sender is gone (`Ok`) or sending failed.
    FdLane(usize, Result<()>),
    In(Option<In>),
    /// Channel `.0 + 1` into the routine.
    ExtraIn(usize, Option<Result<Bytes>>),
    Frame(Option<std::result::Result<bytes::BytesMut, std::io::Error>>),
    Exit(Result<ExitStatus>),
}

impl<In, Out, R> Routine<In, Out, R>
where
    In: Serialize + Send + Sync + 'static,
    Out: DeserializeOwned + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// A routine running `entry` (registered with
    /// [`Entry::routine`](crate::Entry::routine)), with `capacity`-message
    /// channels; returns the spec and the caller's side of the channels.
    pub fn spec(
        name: impl Into<String>,
        entry: impl Into<String>,
        capacity: usize,
    ) -> (RoutineSpec<In, Out, R>, RoutineIoHandle<In, Out, R>) {
        let (in_tx, in_rx) = mpsc::channel(capacity.max(1));
        let (out_tx, out_rx) = mpsc::channel(capacity.max(1));
        let (res_tx, res_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            input: Mutex::new(Some(in_rx)),
            output: out_tx,
            result: res_tx,
            extra_in: Mutex::new(Vec::new()),
            extra_out: Mutex::new(Vec::new()),
            checkpoint: Mutex::new(None),
            fd_in: Mutex::new(Vec::new()),
        });
        (
            RoutineSpec {
                name: name.into(),
                args: RoutineArgs {
                    entry: entry.into(),
                    exec_args: Vec::new(),
                    setup: None,
                    shared,
                    checkpoint_limit: DEFAULT_CHECKPOINT_LIMIT,
                },
                restart: Restart::Transient,
            },
            RoutineIoHandle {
                input: channel::Sender::from_mpsc(in_tx),
                output: channel::Receiver::from_results(out_rx),
                result: RoutineResult(res_rx),
            },
        )
    }

    async fn on_frame(&mut self, f: &[u8], ctx: &mut Ctx<'_, Self>) {
        match frame::parse_worker_frame(f) {
            Ok((CHECKPOINT, _, payload)) => {
                if payload.len() > self.checkpoint_limit {
                    let e = Error::new(
                        "checkpoint",
                        ErrorKind::Full,
                        format!(
                            "a checkpoint of {} bytes is over the limit of {} bytes",
                            payload.len(),
                            self.checkpoint_limit
                        ),
                    );
                    tracing::warn!(error = %e, "routine checkpoint refused");
                    return ctx.emit(RoutineEvent::CheckpointRefused(e)).await;
                }
                *lock(&self.shared.checkpoint) = Some(Bytes::copy_from_slice(payload));
                ctx.emit(RoutineEvent::Checkpointed(payload.len())).await;
            }
            Ok((BAD_CHECKPOINT, _, payload)) => {
                *lock(&self.shared.checkpoint) = None;
                let e = Error::new(
                    "resume",
                    ErrorKind::Protocol,
                    String::from_utf8_lossy(payload).into_owned(),
                );
                tracing::warn!(error = %e, "routine started fresh: its checkpoint was corrupt");
                ctx.emit(RoutineEvent::CorruptCheckpoint(e)).await;
            }
            Ok((MSG, 0, payload)) => {
                let v = frame::decode::<Out>(payload);
                let _ = self.shared.output.send(v).await;
            }
            Ok((MSG, ch, payload)) => match self.extra_out.get(ch as usize - 1) {
                Some(out) => out.clone().deliver(payload).await,
                None => {
                    let e = Error::new(
                        "decode",
                        ErrorKind::Protocol,
                        format!("the routine wrote to channel {ch}, which it does not have"),
                    );
                    let _ = self.shared.output.send(Err(e)).await;
                }
            },
            Ok((RESULT, _, payload)) => {
                self.outcome = Some(Ok(Bytes::copy_from_slice(payload)));
            }
            Ok((PANIC, _, payload)) => {
                self.outcome = Some(Err(String::from_utf8_lossy(payload).into_owned()));
            }
            Ok((k, _, _)) => {
                let e = Error::new("decode", ErrorKind::InvalidInput, format!("frame kind {k}"));
                let _ = self.shared.output.send(Err(e)).await;
            }
            Err(e) => {
                let _ = self.shared.output.send(Err(e)).await;
            }
        }
    }

    /// Tells the routine that channel `ch` into it closed; once every
    /// channel in is closed, its socket's write side is shut down (EOF).
    async fn close_channel(&mut self, ch: u64) {
        let open = self.input.is_some() || self.extra_in.iter().any(Option::is_some);
        if !open {
            self.sink = None;
            return;
        }
        if let Some(sink) = self.sink.as_mut()
            && sink
                .send(frame::worker_frame(CLOSE, ch, &[]).freeze())
                .await
                .is_err()
        {
            self.sink = None;
        }
    }

    fn fail(&mut self, ctx: &mut Ctx<'_, Self>, err: Error) {
        self.shared.result.send_replace(Some(Err(err.clone())));
        ctx.fail(err);
    }
}

impl<In, Out, R> Notifier for Routine<In, Out, R>
where
    In: Serialize + Send + Sync + 'static,
    Out: DeserializeOwned + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Args = RoutineArgs<In, Out, R>;

    fn kind() -> &'static str {
        "routine"
    }

    async fn init(args: Self::Args, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        // A fresh socketpair per fd channel and incarnation: the worker's
        // end is its fd, ours pumps the channel's messages to it.
        let mut lanes = Vec::new();
        let mut theirs = Vec::new();
        {
            let mut states = lock(&args.shared.fd_in);
            for (k, state) in states.iter_mut().enumerate() {
                let (ours, their) = crate::fd_channel::fd_socketpair()?;
                let raw = std::os::fd::AsRawFd::as_raw_fd(&ours);
                let flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_RDWR;
                nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_SETFL(flags))
                    .map_err(|e| Error::io_at("fcntl", raw, e.into()))?;
                let sock = crate::fd_channel::async_fd(ours)?;
                lanes.push(FdLane {
                    sock,
                    state: std::mem::take(state),
                });
                theirs.push((crate::entry::FD_CHANNEL_BASE + k as i32, their));
            }
        }
        let spawned = crate::entry::spawn_worker(
            &args.entry,
            &args.exec_args,
            true,
            args.setup.as_ref(),
            theirs,
        );
        let (child, sock) = match spawned {
            Ok(s) => s,
            Err(e) => {
                // Hand the channels back for the next try.
                let mut states = lock(&args.shared.fd_in);
                for (i, lane) in lanes.into_iter().enumerate() {
                    states[i] = lane.state;
                }
                return Err(e);
            }
        };
        ctx.set_detail(format!("pid={}", child.pid()));
        let (rd, wr) = sock.into_split();
        let input = args
            .shared
            .input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let extra_in = std::mem::take(&mut *lock(&args.shared.extra_in));
        let extra_out = lock(&args.shared.extra_out).clone();
        let mut routine = Routine {
            extra_in,
            extra_out,
            child,
            frames: Some(FramedRead::new(rd, frame::codec(frame::DEFAULT_MAX_FRAME))),
            sink: Some(FramedWrite::new(wr, frame::codec(frame::DEFAULT_MAX_FRAME))),
            input,
            shared: args.shared,
            pending: None,
            outcome: None,
            checkpoint_limit: args.checkpoint_limit,
            fd_lanes: lanes,
            _types: PhantomData,
        };
        // First frame: what to resume from (the last checkpoint, if any).
        let resume = match lock(&routine.shared.checkpoint).clone() {
            Some(state) => {
                let mut b = Vec::with_capacity(1 + state.len());
                b.push(1);
                b.extend_from_slice(&state);
                b
            }
            None => vec![0],
        };
        if let Some(sink) = routine.sink.as_mut()
            && sink
                .send(frame::worker_frame(RESUME, 0, &resume).freeze())
                .await
                .is_err()
        {
            routine.sink = None;
        }
        // A restarted routine: channels closed in an earlier incarnation
        // are closed for this one too.
        if routine.input.is_none() {
            routine.close_channel(0).await;
        }
        for i in 0..routine.extra_in.len() {
            if routine.extra_in[i].is_none() {
                routine.close_channel(i as u64 + 1).await;
            }
        }
        Ok(routine)
    }

    async fn ready(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let want_input = self.input.is_some() && self.sink.is_some();
        let want_extra = self.sink.is_some() && self.extra_in.iter().any(Option::is_some);
        let reading = self.frames.is_some();
        let lanes = !self.fd_lanes.is_empty();
        let fd_lanes = &mut self.fd_lanes;
        let extra_in = &mut self.extra_in;
        self.pending = Some(tokio::select! {
            v = async { self.input.as_mut().expect("checked").recv().await }, if want_input => Event::In(v),
            (i, v) = std::future::poll_fn(|cx| {
                for (i, slot) in extra_in.iter_mut().enumerate() {
                    if let Some(rx) = slot
                        && let std::task::Poll::Ready(v) = rx.poll_frame(cx)
                    {
                        return std::task::Poll::Ready((i, v));
                    }
                }
                std::task::Poll::Pending
            }), if want_extra => Event::ExtraIn(i, v),
            (k, res) = std::future::poll_fn(|cx| {
                for (k, lane) in fd_lanes.iter_mut().enumerate() {
                    if let std::task::Poll::Ready(res) = lane.poll_send(cx) {
                        return std::task::Poll::Ready((k, res));
                    }
                }
                std::task::Poll::Pending
            }), if lanes => Event::FdLane(k, res),
            f = async { self.frames.as_mut().expect("checked").next().await }, if reading => Event::Frame(f),
            st = self.child.wait() => Event::Exit(st),
        });
    }

    async fn on_ready(&mut self, ctx: &mut Ctx<'_, Self>) {
        match self.pending.take() {
            Some(Event::In(Some(v))) => {
                let sent = match frame::encode(&v) {
                    Ok(b) => match self.sink.as_mut() {
                        Some(sink) => sink
                            .send(frame::worker_frame(MSG, 0, &b).freeze())
                            .await
                            .is_ok(),
                        None => false,
                    },
                    Err(e) => {
                        let _ = self.shared.output.send(Err(e)).await;
                        true
                    }
                };
                if !sent {
                    self.sink = None;
                }
            }
            Some(Event::FdLane(k, Ok(()))) => {
                // Every sender is gone: the worker's receiver ends.
                let raw = std::os::fd::AsRawFd::as_raw_fd(&self.fd_lanes[k].sock);
                let _ = nix::sys::socket::shutdown(raw, nix::sys::socket::Shutdown::Write);
            }
            Some(Event::FdLane(k, Err(e))) => {
                // The worker's end is gone (it died): its exit follows; the
                // lane stops until the next incarnation.
                tracing::debug!(channel = k, error = %e, "fd channel send failed");
                let lane = &mut self.fd_lanes[k];
                let state = std::mem::take(&mut lane.state);
                lock(&self.shared.fd_in)[k] = state;
            }
            Some(Event::In(None)) => {
                // The caller closed its sender: the routine's recv ends.
                self.input = None;
                self.close_channel(0).await;
            }
            Some(Event::ExtraIn(i, Some(Ok(b)))) => {
                let frame = frame::worker_frame(MSG, i as u64 + 1, &b).freeze();
                if let Some(sink) = self.sink.as_mut()
                    && sink.send(frame).await.is_err()
                {
                    self.sink = None;
                }
            }
            Some(Event::ExtraIn(i, Some(Err(e)))) => {
                tracing::warn!(channel = i + 1, error = %e, "routine input not sent");
            }
            Some(Event::ExtraIn(i, None)) => {
                self.extra_in[i] = None;
                self.close_channel(i as u64 + 1).await;
            }
            Some(Event::Frame(Some(Ok(f)))) => self.on_frame(&f, ctx).await,
            Some(Event::Frame(Some(Err(e)))) => {
                let e = frame::frame_error(e);
                let _ = self.shared.output.send(Err(e)).await;
            }
            Some(Event::Frame(None)) => {
                // The worker closed its side; its exit follows.
                self.frames = None;
            }
            Some(Event::Exit(st)) => {
                // Whatever the worker wrote before it exited comes first.
                while let Some(frames) = self.frames.as_mut() {
                    match frames.next().await {
                        Some(Ok(f)) => self.on_frame(&f, ctx).await,
                        _ => self.frames = None,
                    }
                }
                let status = st.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                match self.outcome.take() {
                    Some(Ok(bytes)) => match frame::decode::<R>(&bytes) {
                        Ok(r) => {
                            self.shared.result.send_replace(Some(Ok(r)));
                            ctx.exit();
                        }
                        Err(e) => self.fail(ctx, e),
                    },
                    Some(Err(msg)) => {
                        self.fail(ctx, Error::new("routine", ErrorKind::Panicked, msg));
                    }
                    None => self.fail(
                        ctx,
                        Error::new(
                            "routine",
                            ErrorKind::PeerDied,
                            format!("routine worker {} {status}", self.child.pid()),
                        ),
                    ),
                }
            }
            None => {}
        }
    }
}

impl<In, Out, R> Drop for Routine<In, Out, R> {
    fn drop(&mut self) {
        // Hand the inputs back for the next incarnation.
        if let Some(rx) = self.input.take() {
            *self.shared.input.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        }
        *lock(&self.shared.extra_in) = std::mem::take(&mut self.extra_in);
        let mut states = lock(&self.shared.fd_in);
        for (k, lane) in self.fd_lanes.drain(..).enumerate() {
            if lane.state.rx.is_some() || lane.state.pending.is_some() {
                states[k] = lane.state;
            }
        }
        let _ = self.child.start_kill();
    }
}

impl<In, Out, R> fmt::Debug for Routine<In, Out, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routine")
            .field("pid", &self.child.pid())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Operations on a [`Routine`]'s handle.
pub trait RoutineRef {
    /// The pid of the routine's current worker process (a restart starts
    /// a new one).
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, prelude::RoutineRef, worker::{Entry, Routine, RoutineIo, run_if_worker}};
    ///
    /// fn echo(io: &mut RoutineIo<u64, u64>) {
    ///     while let Some(n) = io.recv() {
    ///         io.send(&n);
    ///     }
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     run_if_worker([Entry::routine("echo", echo)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let (spec, mut io) = Routine::<u64, u64, ()>::spec("echo", "echo", 1);
    ///         let r = l.add(spec).await?;
    ///         let pid = r.worker_pid().await?;
    ///         assert_ne!(pid, std::process::id(), "a process of its own");
    ///         io.input.send(1).await.unwrap();
    ///         assert_eq!(io.output.recv().await.unwrap()?, 1);
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// A query: dropping it changes nothing.
    fn worker_pid(&self) -> impl Future<Output = Result<u32>> + Send;

    /// Sends `sig` to the routine's worker process (IO::Async's
    /// `Routine->kill`). A death it causes is the routine's failure,
    /// restarted per its restart type. Fails (op `kill`) for a number
    /// that is no signal, or with the errno when the kernel refuses.
    ///
    /// (Named `signal`, as [`PidRef::signal`](ioasync_process::PidRef::signal):
    /// [`NotifierRef::kill`] already kills the notifier itself.)
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, prelude::*, signal::SignalKind, worker::{Entry, Routine, RoutineIo, run_if_worker}};
    ///
    /// fn echo(io: &mut RoutineIo<u64, u64>) {
    ///     while let Some(n) = io.recv() {
    ///         io.send(&n);
    ///     }
    /// }
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     run_if_worker([Entry::routine("echo", echo)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let (spec, mut io) = Routine::<u64, u64, ()>::spec("echo", "echo", 1);
    ///         let r = l.add(spec.restart(Restart::Temporary)).await?;
    ///         r.signal(SignalKind::kill()).await?;
    ///         let err = io.result.wait().await.unwrap_err();
    ///         assert!(err.is_peer_died() && err.to_string().contains("SIGKILL"), "{err}");
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it completes, the signal may still be sent: once the
    /// request is queued the routine handles it, only the reply is lost.
    fn signal(&self, sig: ioasync_signal::SignalKind) -> impl Future<Output = Result<()>> + Send;
}

impl<In, Out, R> RoutineRef for NotifierRef<Routine<In, Out, R>>
where
    In: Serialize + Send + Sync + 'static,
    Out: DeserializeOwned + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn worker_pid(&self) -> Result<u32> {
        self.ask(WorkerPid).await
    }

    async fn signal(&self, sig: ioasync_signal::SignalKind) -> Result<()> {
        self.ask(KillRoutine(sig)).await
    }
}

/// Message: the pid of the routine's current worker process
/// ([`RoutineRef::worker_pid`]).
#[derive(Debug)]
pub(crate) struct WorkerPid;

impl<In, Out, R> ioasync_core::Handler<WorkerPid> for Routine<In, Out, R>
where
    In: Serialize + Send + Sync + 'static,
    Out: DeserializeOwned + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Reply = u32;
    async fn handle(&mut self, _: WorkerPid, _ctx: &mut Ctx<'_, Self>) -> u32 {
        self.child.pid()
    }
}

/// Message: send a signal to the routine's worker process
/// ([`RoutineRef::signal`]).
#[derive(Debug)]
pub(crate) struct KillRoutine(pub(crate) ioasync_signal::SignalKind);

impl<In, Out, R> ioasync_core::Handler<KillRoutine> for Routine<In, Out, R>
where
    In: Serialize + Send + Sync + 'static,
    Out: DeserializeOwned + Send + Sync + 'static,
    R: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Reply = Result<()>;
    async fn handle(
        &mut self,
        KillRoutine(sig): KillRoutine,
        _ctx: &mut Ctx<'_, Self>,
    ) -> Result<()> {
        let Ok(signal) = nix::sys::signal::Signal::try_from(sig.as_raw()) else {
            return Err(Error::invalid_input(
                "kill",
                format!("{sig} is not a signal"),
            ));
        };
        let pid = self.child.pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .map_err(|e| Error::io_at("kill", pid, e.into()))
    }
}
