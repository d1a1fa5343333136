//! Test utilities (feature `test-util`): synchronize tests on events, never
//! on sleeps.
//!
//! - [`Journal`]: an ordered log many notifiers write to; tests wait until
//!   it satisfies a predicate.
//! - [`Gate`]: a handler that waits until the test opens it.
//! - [`Recorder`]: records events delivered through a [`Subscription`].
//! - [`Probe`]: a scriptable notifier that journals its lifecycle and can be
//!   told to panic, exit, fail, hang, or ignore a graceful stop.
//! - [`paused_runtime`]: a current-thread runtime on paused time.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use tokio::sync::watch;

use crate::{Ctx, Error, ErrorKind, Handler, Notifier, Result, Spec, Subscription};

/// What the running loops of all notifiers registered so far, process
/// wide: counted in debug builds only (all zero in release builds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registrations {
    /// Waits: a loop found nothing to do and returned `Pending` (its
    /// notifier's source, not ready, registered its waker).
    pub waits: u64,
    /// Registrations of a loop's waker for its control queue and lossy
    /// lane (made when it is about to wait, kept while they stand).
    pub control: u64,
    /// Registrations of a loop's waker with its mailbox (likewise).
    pub mailbox: u64,
}

/// What the running loops registered so far (see [`Registrations`]):
/// tests take the difference over a stretch of work. One registration
/// per wake-up is the source's; `control` and `mailbox` grow only when a
/// loop took a control message or a mailbox signal.
pub fn registrations() -> Registrations {
    use crate::runtime::registrations::{CONTROL, MAILBOX, WAITS};
    Registrations {
        waits: WAITS.load(Ordering::SeqCst),
        control: CONTROL.load(Ordering::SeqCst),
        mailbox: MAILBOX.load(Ordering::SeqCst),
    }
}

/// An ordered, shared log of lines.
#[derive(Clone)]
pub struct Journal(Arc<watch::Sender<Vec<String>>>);

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Journal(Arc::new(watch::channel(Vec::new()).0))
    }

    /// Appends a line.
    pub fn record(&self, line: impl Into<String>) {
        let line = line.into();
        self.0.send_modify(|v| v.push(line));
    }

    /// A copy of all lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// Lines starting with `prefix`.
    pub fn matching(&self, prefix: &str) -> Vec<String> {
        self.0
            .borrow()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// How many lines equal `line`.
    pub fn count(&self, line: &str) -> usize {
        self.0.borrow().iter().filter(|l| *l == line).count()
    }

    /// Waits until `pred` holds for the lines.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn wait_until(&self, pred: impl FnMut(&Vec<String>) -> bool) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(pred).await;
    }

    /// Waits until `line` has been recorded `n` times.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn wait_count(&self, line: &str, n: usize) {
        self.wait_until(|v| v.iter().filter(|l| *l == line).count() >= n)
            .await
    }
}

impl Default for Journal {
    fn default() -> Self {
        Journal::new()
    }
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.borrow().iter()).finish()
    }
}

/// A gate handlers wait on until the test opens it.
#[derive(Clone, Debug)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Gate(Arc::new(watch::channel(false).0))
    }

    /// Opens it: every waiter, present and future, passes.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    /// Waits until the gate is open.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// Records events of type `E` delivered through its [`Subscription`].
pub struct Recorder<E>(Arc<watch::Sender<Vec<E>>>);

impl<E: Clone + Send + Sync + 'static> Recorder<E> {
    /// A recorder and the subscription that feeds it.
    pub fn new() -> (Recorder<E>, Subscription<E>) {
        let tx = Arc::new(watch::channel(Vec::new()).0);
        let feed = tx.clone();
        let sub = Subscription::closure(move |e| feed.send_modify(|v| v.push(e)));
        (Recorder(tx), sub)
    }

    /// Events recorded so far.
    pub fn events(&self) -> Vec<E> {
        self.0.borrow().clone()
    }

    /// Waits until at least `n` events were recorded; returns them.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits; nothing is taken from the recorder.
    pub async fn wait_len(&self, n: usize) -> Vec<E> {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|v| v.len() >= n).await;
        self.events()
    }

    /// Waits until at least `n` recorded events satisfy `pred`; returns
    /// those events, in order.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits; nothing is taken from the recorder.
    pub async fn wait_matching(&self, n: usize, mut pred: impl FnMut(&E) -> bool) -> Vec<E> {
        let mut rx = self.0.subscribe();
        let _ = rx
            .wait_for(|v| v.iter().filter(|e| pred(e)).count() >= n)
            .await;
        self.events().into_iter().filter(|e| pred(e)).collect()
    }
}

impl<E> fmt::Debug for Recorder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("len", &self.0.borrow().len())
            .finish()
    }
}

/// A current-thread runtime whose clock starts paused: timers advance
/// instantly once every task is idle.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("building a current-thread runtime")
}

/// How a [`Probe`] behaves; cheap to clone into a [`Spec`].
#[derive(Clone, Debug, Default)]
pub struct ProbeArgs {
    /// Where it journals `start PATH`, `stop PATH` and `msg PATH TEXT`.
    pub journal: Journal,
    /// Fail this many `init` calls (restarts included) before succeeding.
    pub fail_inits: Arc<AtomicU32>,
    /// When set, `on_stop` waits for this gate (journalling `stopping PATH`
    /// first): a notifier slow to stop, or one ignoring the stop.
    pub stop_gate: Option<Gate>,
    /// Children to add in `init`.
    pub children: Vec<Spec<Probe>>,
}

impl ProbeArgs {
    /// Probe args writing to `journal`.
    pub fn new(journal: &Journal) -> Self {
        ProbeArgs {
            journal: journal.clone(),
            ..ProbeArgs::default()
        }
    }

    /// With these children.
    pub fn children(mut self, children: Vec<Spec<Probe>>) -> Self {
        self.children = children;
        self
    }

    /// `on_stop` waits for `gate`.
    pub fn stop_gate(mut self, gate: &Gate) -> Self {
        self.stop_gate = Some(gate.clone());
        self
    }

    /// The next `n` inits fail.
    pub fn fail_inits(self, n: u32) -> Self {
        self.fail_inits.store(n, Ordering::SeqCst);
        self
    }
}

/// A scriptable notifier for supervision tests.
///
/// ```
/// use ioasync::{
///     Loop,
///     notifier::Spec,
///     supervision::Restart,
///     test_util::{Journal, Panic, Probe, ProbeArgs},
/// };
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> ioasync::Result<()> {
/// let lp = Loop::current()?;
/// let journal = Journal::new();
/// let p = lp
///     .add(Spec::<Probe>::new("p", ProbeArgs::new(&journal)).restart(Restart::Permanent))
///     .await?;
/// p.tell(Panic("boom")).await?;
/// // Synchronise on what it journals, never on a sleep.
/// journal.wait_count("start /p", 2).await;
/// assert_eq!(p.restarts(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Probe {
    args: ProbeArgs,
    path: String,
}

impl Notifier for Probe {
    type Args = ProbeArgs;

    fn kind() -> &'static str {
        "probe"
    }

    async fn init(args: ProbeArgs, ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        let path = ctx.path().to_owned();
        let failing = args
            .fail_inits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            args.journal.record(format!("init-failed {path}"));
            return Err(Error::new(
                "init",
                ErrorKind::Other,
                "probe told to fail init",
            ));
        }
        args.journal.record(format!("start {path}"));
        for child in &args.children {
            ctx.add_child(child.clone()).await?;
        }
        Ok(Probe { args, path })
    }

    async fn on_stop(&mut self, _ctx: &mut Ctx<'_, Self>) {
        if let Some(gate) = &self.args.stop_gate {
            self.args.journal.record(format!("stopping {}", self.path));
            gate.wait().await;
        }
        self.args.journal.record(format!("stop {}", self.path));
    }
}

/// Message: panic with this text.
#[derive(Debug)]
pub struct Panic(pub &'static str);

/// Message: end this incarnation normally (`ctx.exit()`).
#[derive(Debug)]
pub struct Exit;

/// Message: end this incarnation with an error (`ctx.fail`).
#[derive(Debug)]
pub struct Fail;

/// Message: wait for the gate inside the handler (a stuck handler).
#[derive(Debug)]
pub struct Hang(pub Gate);

/// Message: journal `msg PATH TEXT`; replies with the restart count.
#[derive(Debug)]
pub struct Note(pub String);

impl Handler<Panic> for Probe {
    type Reply = ();
    async fn handle(&mut self, msg: Panic, _ctx: &mut Ctx<'_, Self>) {
        panic!("{}", msg.0);
    }
}

impl Handler<Exit> for Probe {
    type Reply = ();
    async fn handle(&mut self, _: Exit, ctx: &mut Ctx<'_, Self>) {
        ctx.exit();
    }
}

impl Handler<Fail> for Probe {
    type Reply = ();
    async fn handle(&mut self, _: Fail, ctx: &mut Ctx<'_, Self>) {
        ctx.fail(Error::new("probe", ErrorKind::Other, "probe told to fail"));
    }
}

impl Handler<Hang> for Probe {
    type Reply = ();
    async fn handle(&mut self, msg: Hang, _ctx: &mut Ctx<'_, Self>) {
        self.args.journal.record(format!("hang {}", self.path));
        msg.0.wait().await;
    }
}

impl Handler<Note> for Probe {
    type Reply = u32;
    async fn handle(&mut self, msg: Note, ctx: &mut Ctx<'_, Self>) -> u32 {
        self.args
            .journal
            .record(format!("msg {} {}", self.path, msg.0));
        ctx.restarts()
    }
}
