//! Events: the three ways to receive them, and the subscriber lists the
//! runtime keeps for each notifier.
//!
//! A notifier declares the event types it emits with [`Emits`] and emits
//! them with [`Ctx::emit`](crate::Ctx::emit). Each subscriber chose one of
//! three ways, and one emit serves all of them:
//!
//! 1. a closure, run inside the notifier's own actor (IO::Async's
//!    `on_read => sub {...}` style);
//! 2. a typed message told to any kameo actor, held weakly so the notifier
//!    does not keep its subscriber alive;
//! 3. a [`tokio_stream::Stream`] ([`EventStream`]) for
//!    `while let Some(e) = events.next().await`.
//!
//! The subscriber lists belong to the notifier's runtime, not to its
//! state: they outlive restarts, so a subscriber hears every incarnation.
//! Delivery to an actor, or to a stream with the [`Overflow::Wait`] policy
//! (the default), waits while the receiver is full (backpressure): a slow
//! subscriber slows the notifier, it never makes the process grow without
//! bound. A subscriber that is gone is dropped at the next emit.

use std::{
    any::{Any, TypeId},
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use kameo::{
    actor::{ActorRef, WeakRecipient},
    message::Message,
};

use crate::queue::{Offer, Overflow, Queue};

/// Marks `E` as an event type notifier `N` emits: subscribers of `E` are
/// accepted on its handle and spec, and `ctx.emit(e)` compiles in it.
/// Every notifier also emits [`Exit`](crate::Exit), subscribed apart
/// (`subscribe_exit`, `exits`) so that a notifier's own event type is
/// inferred at `subscribe`.
///
/// ```
/// use ioasync::{notifier::{Ctx, Emits, Notifier, Spec, Subscription}, Loop, Result};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Beep(u32);
///
/// struct Beeper;
/// impl Notifier for Beeper {
///     type Args = ();
///     async fn init(_: (), ctx: &mut Ctx<'_, Self>) -> Result<Self> {
///         ctx.emit(Beep(1)).await;
///         Ok(Beeper)
///     }
/// }
/// impl Emits<Beep> for Beeper {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<()> {
/// let lp = Loop::current()?;
/// let (sub, mut beeps) = Subscription::stream(8);
/// let _b = lp.add(Spec::<Beeper>::new("beeper", ()).subscribe(sub)).await?;
/// assert_eq!(beeps.recv().await, Some(Beep(1)));
/// # Ok(()) }
/// ```
pub trait Emits<E: Clone + Send + 'static> {}

enum Target<E> {
    Closure(Box<dyn FnMut(E) + Send>),
    Actor(Box<dyn ActorTarget<E>>),
    Stream(QueueTx<E>),
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

/// A subscription on its way to a notifier's runtime, its type erased.
pub(crate) type PendingSub = Box<dyn FnOnce(&mut Subscribers) + Send>;

impl<E: Clone + Send + 'static> Subscription<E> {
    /// Run `f` inside the notifier for each event.
    pub fn closure(f: impl FnMut(E) + Send + 'static) -> Self {
        Subscription(Target::Closure(Box::new(f)))
    }

    /// Tell each event to `actor` (held weakly). To have a notifier hear
    /// another's events as messages, pass its
    /// [`actor_ref`](crate::NotifierRef::actor_ref).
    pub fn actor<A>(actor: &ActorRef<A>) -> Self
    where
        A: kameo::Actor + Message<E>,
    {
        Subscription(Target::Actor(Box::new(
            actor.clone().recipient::<E>().downgrade(),
        )))
    }

    /// A stream of events buffering at most `capacity` of them; a full
    /// stream makes the notifier wait ([`Overflow::Wait`]).
    pub fn stream(capacity: usize) -> (Self, EventStream<E>) {
        Subscription::stream_with(capacity, Overflow::Wait)
    }

    /// A stream of events buffering at most `capacity` of them, with what
    /// to do when it is full.
    pub fn stream_with(capacity: usize, overflow: Overflow) -> (Self, EventStream<E>) {
        let q = Arc::new(Queue::new(capacity.max(1), overflow));
        (
            Subscription(Target::Stream(QueueTx(q.clone()))),
            EventStream(q),
        )
    }

    pub(crate) fn into_pending(self) -> PendingSub {
        Box::new(move |subs: &mut Subscribers| subs.add(self))
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

/// The subscriber lists of one notifier, one per event type, owned by its
/// runtime (they outlive incarnations).
///
/// Allocated on first subscription: most notifiers (an idle connection
/// among them) have none, and carry one pointer.
#[derive(Default)]
pub(crate) struct Subscribers {
    #[allow(clippy::box_collection, clippy::type_complexity)]
    lists: Option<Box<Vec<(TypeId, Box<dyn Any + Send>)>>>,
}

impl Subscribers {
    fn lists(&self) -> &[(TypeId, Box<dyn Any + Send>)] {
        self.lists.as_deref().map_or(&[], Vec::as_slice)
    }

    fn lists_mut(&mut self) -> &mut [(TypeId, Box<dyn Any + Send>)] {
        self.lists.as_deref_mut().map_or(&mut [], Vec::as_mut_slice)
    }

    pub(crate) fn add<E: Clone + Send + 'static>(&mut self, sub: Subscription<E>) {
        let id = TypeId::of::<E>();
        let lists = self.lists.get_or_insert_default();
        let list = match lists.iter().position(|(t, _)| *t == id) {
            Some(i) => &mut lists[i].1,
            None => {
                lists.push((id, Box::new(Vec::<Target<E>>::new()) as Box<dyn Any + Send>));
                &mut lists.last_mut().expect("just pushed").1
            }
        };
        list.downcast_mut::<Vec<Target<E>>>()
            .expect("keyed by its TypeId")
            .push(sub.0);
    }

    /// Subscribers of `E`.
    pub(crate) fn count<E: 'static>(&self) -> usize {
        let id = TypeId::of::<E>();
        self.lists()
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, l)| l.downcast_ref::<Vec<Target<E>>>())
            .map_or(0, Vec::len)
    }

    /// Whether a subscriber of `E` can make an emit wait (one that is not
    /// a closure).
    pub(crate) fn may_wait<E: 'static>(&self) -> bool {
        let id = TypeId::of::<E>();
        self.lists()
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, l)| l.downcast_ref::<Vec<Target<E>>>())
            .is_some_and(|l| !l.iter().all(|t| matches!(t, Target::Closure(_))))
    }

    /// Delivers `event` now when no subscriber of `E` can make it wait
    /// (none, or closures only); hands it back otherwise.
    pub(crate) fn emit_now<E: Clone + Send + 'static>(&mut self, event: E) -> Option<E> {
        let id = TypeId::of::<E>();
        let (_, list) = self.lists_mut().iter_mut().find(|(t, _)| *t == id)?;
        let targets = list
            .downcast_mut::<Vec<Target<E>>>()
            .expect("keyed by its TypeId");
        if !targets.iter().all(|t| matches!(t, Target::Closure(_))) {
            return Some(event);
        }
        let last = targets.len();
        let mut event = Some(event);
        for (i, target) in targets.iter_mut().enumerate() {
            let ev = if i + 1 == last {
                event.take()
            } else {
                event.clone()
            };
            if let (Target::Closure(f), Some(ev)) = (target, ev) {
                f(ev);
            }
        }
        None
    }

    /// Delivers `event` to every subscriber of `E`, in subscription order,
    /// per each one's overflow policy; drops subscribers that are gone.
    pub(crate) async fn emit<E: Clone + Send + 'static>(&mut self, event: E) {
        let id = TypeId::of::<E>();
        let Some((_, list)) = self.lists_mut().iter_mut().find(|(t, _)| *t == id) else {
            return;
        };
        let targets = list
            .downcast_mut::<Vec<Target<E>>>()
            .expect("keyed by its TypeId");
        let last = targets.len();
        let mut event = Some(event);
        let mut gone = Vec::new();
        for (i, target) in targets.iter_mut().enumerate() {
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
                Target::Stream(tx) => match tx.0.offer(ev).await {
                    Offer::Queued | Offer::Dropped | Offer::Evicted(_) => true,
                    Offer::Full(_) => {
                        tracing::warn!(
                            capacity = tx.0.capacity(),
                            "an event stream subscriber fell behind; cut off"
                        );
                        tx.0.close_writer();
                        false
                    }
                    Offer::Closed(_) => false,
                },
            };
            if !alive {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            targets.remove(i);
        }
    }
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribers")
            .field("event_types", &self.lists().len())
            .finish()
    }
}

/// The notifier's end of a stream subscription.
struct QueueTx<E>(Arc<Queue<E>>);

impl<E> Drop for QueueTx<E> {
    fn drop(&mut self) {
        self.0.close_writer();
    }
}

/// A stream of a notifier's events; ends when the notifier leaves the
/// tree (after the events it holds).
pub struct EventStream<E>(Arc<Queue<E>>);

impl<E> EventStream<E> {
    /// The next event, or `None` once the notifier is gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event is taken only when it is returned; dropped
    /// before, nothing is lost.
    pub async fn recv(&mut self) -> Option<E> {
        std::future::poll_fn(|cx| self.0.poll_pop(cx)).await
    }

    /// Events buffered and not yet taken.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No event is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<E> Drop for EventStream<E> {
    fn drop(&mut self) {
        self.0.close_reader();
    }
}

impl<E> tokio_stream::Stream for EventStream<E> {
    type Item = E;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.0.poll_pop(cx)
    }
}

impl<E> fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("buffered", &self.len())
            .field("capacity", &self.0.capacity())
            .field("overflow", &self.0.overflow())
            .finish()
    }
}
