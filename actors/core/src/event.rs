//! Events: the three ways to receive them, and supervision events.
//!
//! A notifier keeps one [`Events<E>`] per event type it emits. Each
//! subscriber chose one of three ways, and `emit` serves all of them:
//!
//! 1. a closure, run inside the notifier's own actor (IO::Async's
//!    `on_read => sub {...}` style);
//! 2. a typed message told to any kameo actor, held weakly so the notifier
//!    does not keep its subscriber alive;
//! 3. a [`tokio_stream::Stream`] ([`EventStream`]) for
//!    `while let Some(e) = events.next().await`.
//!
//! Delivery to an actor or a stream waits while the receiver is full
//! (backpressure): a slow subscriber slows the notifier, it never makes the
//! process grow without bound. A subscriber that is gone is dropped from
//! the list at the next `emit`.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::BoxFuture;
use kameo::{
    actor::{ActorRef, WeakRecipient},
    message::Message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    error::Error,
    notifier::{Ctx, Handler, Notifier},
};

/// Why a notifier's incarnation ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExitReason {
    /// It asked to stop (`ctx.stop()`), or was stopped gracefully.
    Normal,
    /// A handler panicked; the panic message.
    Panicked(String),
    /// A handler failed with an error (`ctx.fail(..)`, a failed restart).
    Failed(Error),
    /// One of its children exceeded its restart limit.
    Escalated {
        /// Path of the child that gave up.
        child: String,
        /// Why that child last failed.
        cause: Box<ExitReason>,
    },
    /// It was killed (at a stop deadline, or by its handle).
    Killed,
}

impl ExitReason {
    /// A normal exit: transient children are not restarted after it.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal)
    }

    /// The panic message, when a handler panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            ExitReason::Panicked(m) => Some(m),
            _ => None,
        }
    }

    /// This reason as an [`Error`] for `op`.
    pub fn to_error(&self, op: &'static str) -> Error {
        use crate::error::ErrorKind;
        match self {
            ExitReason::Failed(e) => e.clone(),
            ExitReason::Panicked(m) => Error::new(op, ErrorKind::Panicked, m.clone()),
            ExitReason::Escalated { .. } => Error::new(op, ErrorKind::Escalated, self.to_string()),
            _ => Error::closed(op, self.to_string()),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("exited normally"),
            ExitReason::Panicked(m) => write!(f, "panicked: {m}"),
            ExitReason::Failed(e) => write!(f, "failed: {e}"),
            ExitReason::Escalated { child, cause } => {
                write!(f, "child {child} exceeded its restart limit ({cause})")
            }
            ExitReason::Killed => f.write_str("killed"),
        }
    }
}

/// Something the supervision tree did, as its parents and the loop see it.
#[derive(Debug, Clone)]
pub struct SupervisionEvent {
    /// Path of the notifier concerned.
    pub path: String,
    /// Its kind.
    pub kind: &'static str,
    /// What happened.
    pub what: SupervisionEventKind,
}

/// What happened to a notifier.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SupervisionEventKind {
    /// Its incarnation ended (abnormally, or by its own choice); the
    /// parent decides next.
    Exited(ExitReason),
    /// The parent will restart it after `delay`; `attempt` is its count of
    /// failures within the restart window.
    Restarting {
        /// Failures within the window, this one included.
        attempt: u32,
        /// Backoff delay before the restart.
        delay: Duration,
    },
    /// A new incarnation started; `restarts` in all.
    Restarted {
        /// Restarts since it was added.
        restarts: u32,
    },
    /// It exceeded its restart limit; its parent fails with `Escalated`.
    GaveUp(ExitReason),
    /// It stopped for good and left the tree.
    Stopped,
    /// A graceful stop overran its deadline; it was killed.
    Overran,
    /// Messages were still queued when it stopped for good; each ask among
    /// them got an error, the tells are counted here.
    Undelivered {
        /// Tells that no incarnation handled.
        count: usize,
    },
}

enum Target<E> {
    Closure(Box<dyn FnMut(E) + Send>),
    Actor(Box<dyn ActorTarget<E>>),
    Stream(mpsc::Sender<E>),
}

trait ActorTarget<E>: Send + Sync {
    fn deliver(&self, event: E) -> BoxFuture<'_, bool>;
}

impl<E: Send + 'static> ActorTarget<E> for WeakRecipient<E> {
    fn deliver(&self, event: E) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            match self.upgrade() {
                Some(r) => r.tell(event).await.is_ok(),
                None => false,
            }
        })
    }
}

/// A way to receive events of type `E`, handed to a notifier.
pub struct Subscription<E>(Target<E>);

impl<E: Send + 'static> Subscription<E> {
    /// Run `f` inside the notifier for each event.
    pub fn closure(f: impl FnMut(E) + Send + 'static) -> Self {
        Subscription(Target::Closure(Box::new(f)))
    }

    /// Tell each event to `actor` (held weakly).
    pub fn actor<A>(actor: &ActorRef<A>) -> Self
    where
        A: kameo::Actor + Message<E>,
    {
        Subscription(Target::Actor(Box::new(
            actor.clone().recipient::<E>().downgrade(),
        )))
    }

    /// A stream of events buffering at most `capacity` of them.
    pub fn stream(capacity: usize) -> (Self, EventStream<E>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Subscription(Target::Stream(tx)),
            EventStream(ReceiverStream::new(rx)),
        )
    }
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let way = match self.0 {
            Target::Closure(_) => "closure",
            Target::Actor(_) => "actor",
            Target::Stream(_) => "stream",
        };
        f.debug_tuple("Subscription").field(&way).finish()
    }
}

/// The subscribers of one event type of one notifier.
///
/// ```
/// use ioasync::{Events, Subscription};
/// use tokio_stream::StreamExt;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut events = Events::<u32>::new();
/// let seen = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let s = seen.clone();
/// events.subscribe(Subscription::closure(move |n| { s.fetch_add(n, std::sync::atomic::Ordering::Relaxed); }));
/// let (sub, mut stream) = Subscription::stream(8);
/// events.subscribe(sub);
/// events.emit(5).await;
/// assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 5);
/// assert_eq!(stream.next().await, Some(5));
/// # });
/// ```
pub struct Events<E> {
    targets: Vec<Target<E>>,
}

impl<E: Clone + Send + 'static> Events<E> {
    /// No subscribers yet.
    pub fn new() -> Self {
        Events {
            targets: Vec::new(),
        }
    }

    /// Adds a subscriber.
    pub fn subscribe(&mut self, sub: Subscription<E>) {
        self.targets.push(sub.0);
    }

    /// How many subscribers are registered.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// No subscriber is registered: emitting costs nothing.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Delivers `event` to every subscriber, in subscription order, waiting
    /// for room at full receivers; drops subscribers that are gone.
    pub async fn emit(&mut self, event: E) {
        let last = self.targets.len();
        let mut event = Some(event);
        let mut gone = Vec::new();
        for (i, target) in self.targets.iter_mut().enumerate() {
            let ev = if i + 1 == last {
                event.take()
            } else {
                event.clone()
            };
            let Some(ev) = ev else { break };
            let alive = match target {
                Target::Closure(f) => {
                    f(ev);
                    true
                }
                Target::Actor(a) => a.deliver(ev).await,
                Target::Stream(tx) => tx.send(ev).await.is_ok(),
            };
            if !alive {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            self.targets.remove(i);
        }
    }
}

impl<E: Clone + Send + 'static> Default for Events<E> {
    fn default() -> Self {
        Events::new()
    }
}

impl<E> fmt::Debug for Events<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("subscribers", &self.targets.len())
            .finish()
    }
}

/// A stream of a notifier's events; ends when the notifier stops.
pub struct EventStream<E>(ReceiverStream<E>);

impl<E> EventStream<E> {
    /// The next event, or `None` once the notifier is gone.
    pub async fn recv(&mut self) -> Option<E> {
        self.0.as_mut().recv().await
    }
}

impl<E> tokio_stream::Stream for EventStream<E> {
    type Item = E;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

impl<E> fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventStream")
    }
}

/// A notifier that emits events of type `E` declares where it keeps their
/// subscribers; it then accepts [`Subscribe<E>`] from its handle
/// ([`NotifierRef::subscribe`](crate::NotifierRef::subscribe) and friends).
pub trait HasEvents<E: Clone + Send + 'static>: Notifier {
    /// The subscribers of `E`.
    fn events(&mut self) -> &mut Events<E>;
}

/// Message: add a subscriber to a notifier's events of type `E`.
#[derive(Debug)]
pub struct Subscribe<E>(pub Subscription<E>);

impl<N, E> Handler<Subscribe<E>> for N
where
    N: HasEvents<E>,
    E: Clone + Send + 'static,
{
    type Reply = ();

    async fn handle(&mut self, msg: Subscribe<E>, _ctx: &mut Ctx<'_, Self>) {
        self.events().subscribe(msg.0);
    }
}
