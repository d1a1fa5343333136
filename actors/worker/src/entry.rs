//! Entry points: named functions a worker process runs. The program
//! registers them and calls [`run_if_worker`] at the top of `main`; when
//! the binary was re-executed as a worker, that call runs the entry and
//! exits, and otherwise returns at once. No worker code runs by accident in
//! the parent, and nothing forks a process that runs tokio threads.

use std::{
    ffi::OsString,
    os::{fd::FromRawFd, unix::net::UnixStream},
    panic::AssertUnwindSafe,
    sync::Arc,
};

use serde::{Serialize, de::DeserializeOwned};

use crate::frame::{
    self, BAD_CHECKPOINT, CALL, CHECKPOINT, CLOSE, MSG, PANIC, REPLY_ERR, REPLY_OK, RESULT, RESUME,
};

/// Environment variable naming the entry a worker runs.
pub const ENTRY_ENV: &str = "IOASYNC_WORKER_ENTRY";
/// The fd of the worker's end of its socket to the parent.
pub const WORKER_FD: i32 = 3;

/// A routine's fd channel `k` is fd `FD_CHANNEL_BASE + k` in the worker.
pub(crate) const FD_CHANNEL_BASE: i32 = WORKER_FD + 1;

/// A borrow of fd `n` for a check that it is open.
fn unsafe_borrow(n: i32) -> std::os::fd::BorrowedFd<'static> {
    #[allow(unsafe_code)]
    // SAFETY: only used for an `fcntl(F_GETFD)` probe, which is harmless
    // on a closed fd (EBADF).
    unsafe {
        std::os::fd::BorrowedFd::borrow_raw(n)
    }
}

/// One worker's call handler: encoded arguments in, encoded result (or
/// the failure's message) out.
type CallFn = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, String>>;
/// Builds a worker's call handler, once per worker process, at its start
/// (where per-worker state is made).
type Erased = Arc<dyn Fn() -> CallFn + Send + Sync>;
type RoutineFn = Arc<dyn Fn(UnixStream) -> i32 + Send + Sync>;

#[derive(Clone)]
enum Kind {
    Function(Erased),
    Routine(RoutineFn),
}

/// A named function a worker can run.
#[derive(Clone)]
pub struct Entry {
    name: &'static str,
    kind: Kind,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("name", &self.name).finish()
    }
}

impl Entry {
    /// An entry running `f` on each call: arguments and results travel as
    /// MessagePack. A panic in `f` fails that call with the panic message;
    /// the worker lives on. [`EntryPoint`](crate::EntryPoint) declares the same with its
    /// types, so that calls are checked when they compile.
    pub fn function<A, R>(name: &'static str, f: fn(A) -> R) -> Entry
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        Entry::with_state(name, || (), move |(), args| f(args))
    }

    /// An entry whose worker builds a state with `init` once, when the
    /// worker process starts (IO::Async's `init_code`: a connection, a
    /// loaded model), and hands it to every call it serves. A panic in
    /// `init` ends the worker (its calls fail and it is replaced); a panic
    /// in `f` fails that call and keeps the state.
    pub fn with_state<S, A, R>(
        name: &'static str,
        init: fn() -> S,
        f: impl Fn(&mut S, A) -> R + Copy + Send + Sync + 'static,
    ) -> Entry
    where
        S: 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let make: Erased = Arc::new(move || {
            let mut state = init();
            Box::new(move |bytes: &[u8]| {
                let args: A = frame::decode(bytes).map_err(|e| {
                    format!(
                        "entry {name}: the arguments do not decode as {}: {}",
                        std::any::type_name::<A>(),
                        e.message()
                    )
                })?;
                let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut state, args)))
                    .map_err(|p| panic_text(&*p))?;
                frame::encode(&out).map(|b| b.to_vec()).map_err(|e| {
                    format!("entry {name}: the result does not encode: {}", e.message())
                })
            })
        });
        Entry {
            name,
            kind: Kind::Function(make),
        }
    }

    /// A routine entry: `f` runs once in its own worker process, reading
    /// `In` messages and sending `Out` messages through its
    /// [`RoutineIo`], and its return value becomes the routine's result.
    /// A panic ends the process; the parent sees the panic message.
    pub fn routine<In, Out, R>(name: &'static str, f: fn(&mut RoutineIo<In, Out>) -> R) -> Entry
    where
        In: DeserializeOwned + 'static,
        Out: Serialize + 'static,
        R: Serialize + 'static,
    {
        let run: RoutineFn = Arc::new(move |sock: UnixStream| {
            let mut io = RoutineIo {
                frames: frame::BlockingFrames::new(sock, frame::DEFAULT_MAX_FRAME),
                pending: Vec::new(),
                closed: Vec::new(),
                eof: false,
                fd_taken: Vec::new(),
                resumed: None,
                _types: std::marker::PhantomData,
            };
            match std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut io))) {
                Ok(r) => match frame::encode(&r) {
                    Ok(b) => {
                        io.write(RESULT, &b);
                        0
                    }
                    Err(e) => {
                        io.write(PANIC, e.to_string().as_bytes());
                        70
                    }
                },
                Err(p) => {
                    io.write(PANIC, panic_text(&*p).as_bytes());
                    101
                }
            }
        });
        Entry {
            name,
            kind: Kind::Routine(run),
        }
    }

    /// The entry's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// A Function entry's calls served in this process, on one thread, with
/// the per-worker state its `init` built (see [`Entry::runner`]). Not
/// `Send`: the state lives on the thread that made it.
pub struct EntryRunner(CallFn);

impl EntryRunner {
    /// Runs one call: MessagePack arguments in, the encoded result out, or
    /// the failure's message (arguments that do not decode, a panic in
    /// the entry, a result that does not encode).
    pub fn call(&mut self, args: &[u8]) -> Result<Vec<u8>, String> {
        (self.0)(args)
    }
}

impl std::fmt::Debug for EntryRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryRunner(..)")
    }
}

impl Entry {
    /// Its calls, served in this process on the current thread (what a
    /// remote worker host runs, one per lane): builds the per-worker state
    /// now (a panic in `init` propagates). `None` for a routine entry.
    pub fn runner(&self) -> Option<EntryRunner> {
        match &self.kind {
            Kind::Function(make) => Some(EntryRunner(make())),
            Kind::Routine(_) => None,
        }
    }
}

/// If this process was started as a worker, runs its entry and exits;
/// otherwise returns at once. Call it first thing in `main` (in tests: in
/// a `#[test]` the worker command line names, see
/// [`FunctionSpec::exec_args`](crate::FunctionSpec::exec_args)).
///
/// A worker runs no async runtime: call it in a plain `fn main`, before
/// the program builds its `Loop` or runtime
/// (`Loop::new()?.block_on(..)`). Under `#[tokio::main]` the runtime and
/// its threads start before `main`'s body, so every worker would start
/// them too, for nothing.
pub fn run_if_worker(entries: impl IntoIterator<Item = Entry>) {
    let Some(name) = std::env::var_os(ENTRY_ENV) else {
        return;
    };
    let name: OsString = name;
    let entry = entries.into_iter().find(|e| name == *e.name);
    let code = match entry {
        Some(Entry {
            kind: Kind::Routine(run),
            ..
        }) => {
            quiet_panics();
            #[allow(unsafe_code)]
            // SAFETY: the parent set up fd 3 as our end of the socketpair
            // and nothing else in this process owns it.
            let sock = unsafe { UnixStream::from_raw_fd(WORKER_FD) };
            close_on_exec(&sock);
            run(sock)
        }
        Some(Entry {
            kind: Kind::Function(run),
            ..
        }) => serve(run),
        None => {
            tracing::error!(entry = ?name, "ioasync worker: no entry point of that name");
            70
        }
    };
    std::process::exit(code);
}

/// The worker loop: read a call, run it, write the reply, until the
/// parent closes the socket.
fn quiet_panics() {
    // A panic is reported to the parent with its message; here it is only
    // traced (the default hook would print a backtrace into the parent's
    // stderr).
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(pid = std::process::id(), "ioasync worker: {info}");
    }));
}

thread_local! {
    /// The worker's socket and the call it runs, for `heartbeat`.
    static CURRENT: std::cell::RefCell<Option<(UnixStream, u64)>> =
        const { std::cell::RefCell::new(None) };
}

/// Called from inside a Function entry during a long call: tells the
/// pool the call is alive, so its dead man's switch
/// ([`FunctionSpec::stuck_after`](crate::FunctionSpec::stuck_after))
/// starts again. True when it was sent; false outside a call (in the
/// parent, or in a routine).
///
/// ```
/// fn crunch(rows: Vec<u64>) -> u64 {
///     let mut sum = 0;
///     for (i, r) in rows.iter().enumerate() {
///         sum += r;
///         if i % 1_000_000 == 0 {
///             ioasync::worker::heartbeat(); // still working
///         }
///     }
///     sum
/// }
/// assert_eq!(crunch(vec![1, 2, 3]), 6);
/// ```
pub fn heartbeat() -> bool {
    CURRENT.with_borrow_mut(|cur| {
        let Some((sock, id)) = cur.as_mut().filter(|(_, id)| *id != 0) else {
            return false;
        };
        let frame = frame::worker_frame(frame::HEARTBEAT, *id, &[]);
        let mut framed = frame::BlockingFrames::new(&*sock, frame::DEFAULT_MAX_FRAME);
        framed.send(&frame).is_ok()
    })
}

fn set_current_call(id: u64) {
    CURRENT.with_borrow_mut(|cur| {
        if let Some((_, current)) = cur.as_mut() {
            *current = id;
        }
    });
}

/// Keeps the socket to the parent out of processes the worker's code
/// starts: their holding it would hide the worker's exit from the parent.
fn close_on_exec(sock: &impl std::os::fd::AsFd) {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let _ = fcntl(sock, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

/// A panic payload's message.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

fn serve(make: Erased) -> i32 {
    quiet_panics();
    // Per-worker state, before the first call is read.
    let mut run = make();
    #[allow(unsafe_code)]
    // SAFETY: the parent set up fd 3 as our end of the socketpair and
    // nothing else in this process owns it.
    let sock = unsafe { UnixStream::from_raw_fd(WORKER_FD) };
    close_on_exec(&sock);
    // The call id is set for each call; 0 (no call) between calls.
    if let Ok(beat) = sock.try_clone() {
        CURRENT.with_borrow_mut(|cur| *cur = Some((beat, 0)));
    }
    let mut frames = frame::BlockingFrames::new(sock, frame::DEFAULT_MAX_FRAME);
    loop {
        let buf = match frames.recv() {
            Ok(Some(buf)) => buf,
            Ok(None) => return 0, // the parent closed: done
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::error!("ioasync worker: frame refused: over the size cap");
                return 65;
            }
            Err(_) => return 0,
        };
        let Ok((kind, id, payload)) = frame::parse_worker_frame(&buf) else {
            return 65;
        };
        if kind != CALL {
            return 65;
        }
        set_current_call(id);
        let out = run(payload);
        set_current_call(0);
        let reply = match out {
            Ok(out) => frame::worker_frame(REPLY_OK, id, &out),
            Err(msg) => frame::worker_frame(REPLY_ERR, id, msg.as_bytes()),
        };
        if frames.send(&reply).is_err() {
            return 0;
        }
    }
}

/// A routine's side of its channels to the parent: blocking `recv` and
/// `send` of MessagePack frames over its socket.
pub struct RoutineIo<In, Out> {
    frames: frame::BlockingFrames<UnixStream>,
    /// Messages read for each channel in, waiting for their `recv_on`.
    pending: Vec<std::collections::VecDeque<bytes::Bytes>>,
    /// Channels in that their sender closed.
    closed: Vec<bool>,
    /// The parent closed every channel (EOF), or the socket failed.
    eof: bool,
    /// Fd channels already taken with `fd_channel`.
    fd_taken: Vec<usize>,
    /// What the parent resumed this incarnation from (`None` until its
    /// first frame, `RESUME`, was read).
    resumed: Option<Option<bytes::Bytes>>,
    _types: std::marker::PhantomData<fn(In) -> Out>,
}

impl<In: DeserializeOwned, Out: Serialize> RoutineIo<In, Out> {
    /// The next message from the parent on channel 0; `None` once the
    /// parent closed it (or sent something that is not an `In`).
    pub fn recv(&mut self) -> Option<In> {
        self.recv_on(0)
    }

    /// Sends a message to the parent on channel 0; false once the parent
    /// is gone.
    pub fn send(&mut self, value: &Out) -> bool {
        self.send_on(0, value)
    }
}

impl<In, Out> RoutineIo<In, Out> {
    /// The next message on channel `ch` into the routine (0 is the
    /// spec's input, 1.. those added with
    /// [`RoutineSpec::channel_in`](crate::RoutineSpec::channel_in)), as a
    /// `T`; `None` once that channel is closed, or the message is not a
    /// `T`. Messages for other channels that arrive meanwhile wait for
    /// their own `recv_on`.
    pub fn recv_on<T: DeserializeOwned>(&mut self, ch: usize) -> Option<T> {
        loop {
            if let Some(payload) = self.pending.get_mut(ch).and_then(|q| q.pop_front()) {
                return frame::decode(&payload).ok();
            }
            if self.eof || self.closed.get(ch).copied().unwrap_or(false) {
                return None;
            }
            self.read_frame();
        }
    }

    /// Reads one frame from the parent and files it: a message waits for
    /// its channel's `recv_on`, a close marks its channel, the resume frame
    /// is kept for [`resume`](RoutineIo::resume).
    fn read_frame(&mut self) {
        let buf = match self.frames.recv() {
            Ok(Some(buf)) => buf.freeze(),
            _ => {
                self.eof = true;
                return;
            }
        };
        let Ok((kind, id, payload)) = frame::parse_worker_frame(&buf) else {
            return;
        };
        if kind == RESUME {
            let state = (payload.first() == Some(&1)).then(|| buf.slice(frame::HEADER + 1..));
            self.resumed = Some(state);
            return;
        }
        let id = id as usize;
        if self.pending.len() <= id {
            self.pending.resize_with(id + 1, Default::default);
            self.closed.resize(id + 1, false);
        }
        match kind {
            MSG => self.pending[id].push_back(buf.slice(frame::HEADER..)),
            CLOSE => self.closed[id] = true,
            _ => {}
        }
    }

    /// The state this incarnation resumes from: the last
    /// [`checkpoint`](RoutineIo::checkpoint) an earlier incarnation of this
    /// routine made, or `None` (its first start, or no checkpoint yet). A
    /// checkpoint that is not an `S` (corrupt, or of another version) is
    /// reported to the parent (a `RoutineEvent::CorruptCheckpoint`) and
    /// gives `None`: the routine starts fresh. Call it first thing.
    pub fn resume<S: DeserializeOwned>(&mut self) -> Option<S> {
        while self.resumed.is_none() && !self.eof {
            self.read_frame();
        }
        let bytes = self.resumed.as_ref()?.as_ref()?;
        match frame::decode::<S>(bytes) {
            Ok(state) => Some(state),
            Err(e) => {
                let why = format!(
                    "the checkpoint is not a {}: {e}",
                    std::any::type_name::<S>()
                );
                self.write(BAD_CHECKPOINT, why.as_bytes());
                None
            }
        }
    }

    /// Fd channel `k` into the routine (the `k`-th made with
    /// [`RoutineSpec::fd_channel_in`](crate::RoutineSpec::fd_channel_in),
    /// from 0): messages with file descriptors attached. Each is taken
    /// once; `None` when the routine has no such channel or it was taken.
    pub fn fd_channel<T: DeserializeOwned>(
        &mut self,
        k: usize,
    ) -> Option<crate::fd_channel::FdReceiver<T>> {
        use std::os::fd::FromRawFd;
        if self.fd_taken.contains(&k) {
            return None;
        }
        let n = FD_CHANNEL_BASE + i32::try_from(k).ok()?;
        // The parent passed it only if the spec has that channel.
        nix::fcntl::fcntl(unsafe_borrow(n), nix::fcntl::FcntlArg::F_GETFD).ok()?;
        self.fd_taken.push(k);
        #[allow(unsafe_code)]
        // SAFETY: the parent set up fd `n` as this channel's socket and
        // nothing else in this process owns it (taken once, above).
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(n) };
        close_on_exec(&fd);
        Some(crate::fd_channel::FdReceiver::new(
            fd,
            frame::DEFAULT_MAX_FRAME.min(1 << 20),
        ))
    }

    /// Saves `state` with the parent, for the next incarnation's
    /// [`resume`](RoutineIo::resume) after a crash or a kill (the parent
    /// keeps the last one, up to its size limit,
    /// [`RoutineSpec::checkpoint_limit`](crate::RoutineSpec::checkpoint_limit)).
    /// False once the parent is gone or `state` does not serialize.
    pub fn checkpoint<S: Serialize>(&mut self, state: &S) -> bool {
        match frame::encode(state) {
            Ok(b) => self.write(CHECKPOINT, &b),
            Err(_) => false,
        }
    }

    /// Sends `value` on channel `ch` out of the routine (0 is the spec's
    /// output, 1.. those added with
    /// [`RoutineSpec::channel_out`](crate::RoutineSpec::channel_out));
    /// false once the parent is gone.
    pub fn send_on<T: Serialize>(&mut self, ch: usize, value: &T) -> bool {
        match frame::encode(value) {
            Ok(b) => {
                let f = frame::worker_frame(MSG, ch as u64, &b);
                self.frames.send(&f).is_ok()
            }
            Err(_) => false,
        }
    }

    fn write(&mut self, kind: u8, payload: &[u8]) -> bool {
        let f = frame::worker_frame(kind, 0, payload);
        self.frames.send(&f).is_ok()
    }
}

impl<In, Out> std::fmt::Debug for RoutineIo<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutineIo").finish()
    }
}

/// Fails when this process is itself a worker that was not diverted by
/// [`run_if_worker`]: starting workers from there would re-execute the
/// same binary again and again (a test binary without the right
/// `exec_args` runs its whole suite in every worker).
pub(crate) fn check_not_in_worker(op: &'static str) -> ioasync_core::Result<()> {
    match std::env::var_os(ENTRY_ENV) {
        None => Ok(()),
        Some(name) => Err(ioasync_core::Error::invalid_input(
            op,
            format!(
                "this process was started as worker {name:?} but did not run it: call \
                 run_if_worker first thing in main (in a test binary, pass exec_args naming \
                 the #[test] that calls it)"
            ),
        )),
    }
}

/// Applied to a worker's command before it is spawned (IO::Async's
/// `setup` for worker processes): environment, working directory, rlimits,
/// umask, nice, uid/gid, fds to pass.
#[derive(Clone)]
pub(crate) struct WorkerSetup(pub(crate) Arc<dyn Fn(&mut ioasync_process::Command) + Send + Sync>);

impl WorkerSetup {
    pub(crate) fn new(f: impl Fn(&mut ioasync_process::Command) + Send + Sync + 'static) -> Self {
        WorkerSetup(Arc::new(f))
    }
}

impl std::fmt::Debug for WorkerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerSetup(..)")
    }
}

/// Starts this program again as a worker running `entry`, with `args`
/// before it and its end of a socketpair on fd 3, its stdout and stderr
/// the parent's (`inherit_output`) or `/dev/null`; returns the child and
/// our end of the socket.
pub(crate) fn spawn_worker(
    entry: &str,
    args: &[std::ffi::OsString],
    inherit_output: bool,
    setup: Option<&WorkerSetup>,
    extra_fds: Vec<(i32, std::os::fd::OwnedFd)>,
) -> ioasync_core::Result<(ioasync_process::SpawnedChild, tokio::net::UnixStream)> {
    use ioasync_core::Error;
    use ioasync_process::{Command, Stdio};
    check_not_in_worker("spawn")?;
    let exe = std::env::current_exe().map_err(|e| Error::io("spawn", e))?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env(ENTRY_ENV, entry)
        .stdin(Stdio::Null)
        .fd_to_child(WORKER_FD, Stdio::Fd(std::os::fd::OwnedFd::from(theirs)));
    for (n, fd) in extra_fds {
        cmd.fd_to_child(n, Stdio::Fd(fd));
    }
    if !inherit_output {
        cmd.stdout(Stdio::Null).stderr(Stdio::Null);
    }
    if let Some(setup) = setup {
        (setup.0)(&mut cmd);
    }
    let child = ioasync_process::spawn_child(cmd)?;
    ours.set_nonblocking(true)
        .map_err(|e| Error::io("fcntl", e))?;
    let sock = tokio::net::UnixStream::from_std(ours).map_err(|e| Error::io("socket", e))?;
    Ok((child, sock))
}
