//! Contained panics: a panic inside a notifier (its `init`, a handler,
//! `on_ready`, `on_stop`) is a supervision event, so it is logged once, as
//! one error line with its message and location, by the runtime that
//! contains it. The process-wide panic hook installed here keeps the
//! default hook's report and backtrace for panics outside notifiers; for
//! contained ones it only records the location. Set
//! `IOASYNC_BACKTRACE=1` to have the previous hook run for contained
//! panics too (its report and, with `RUST_BACKTRACE`, a backtrace).

use std::{
    any::Any,
    cell::{Cell, RefCell},
    future::Future,
    panic::{AssertUnwindSafe, PanicHookInfo},
    pin::Pin,
    sync::Once,
    task::{Context, Poll},
};

use futures_util::FutureExt;

thread_local! {
    /// Polls of contained code running on this thread (nested polls count).
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
    /// Where the last contained panic on this thread happened.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs the hook once per process; later calls do nothing. The tree
/// calls it when it starts.
pub(crate) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        let verbose = std::env::var_os("IOASYNC_BACKTRACE").is_some_and(|v| v != "0");
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            if CONTAINED.with(Cell::get) > 0 {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                LAST.with_borrow_mut(|last| *last = at);
                if !verbose {
                    return;
                }
            }
            previous(info);
        }));
    });
}

/// The location of the last contained panic on this thread, taken.
pub(crate) fn take_location() -> Option<String> {
    LAST.with_borrow_mut(Option::take)
}

/// A panic payload's message.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(e) = payload.downcast_ref::<crate::error::Error>() {
        e.to_string()
    } else {
        String::from("panic with a non-string payload")
    }
}

/// A panic caught by [`contain`]: its message and location.
#[derive(Debug)]
pub(crate) struct Caught {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
}

pin_project_lite::pin_project! {
    /// Polls `fut` as contained code, inside `span` when tracing is on.
    pub(crate) struct Contained<'s, F> {
        #[pin]
        fut: F,
        span: &'s tracing::Span,
    }
}

impl<F: Future> Future for Contained<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _depth = Depth::enter();
        if this.span.is_disabled() {
            this.fut.poll(cx)
        } else {
            let _entered = this.span.enter();
            this.fut.poll(cx)
        }
    }
}

struct Depth;

impl Depth {
    fn enter() -> Depth {
        CONTAINED.with(|c| c.set(c.get() + 1));
        Depth
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        CONTAINED.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// Runs `f` as contained code and catches its panic: the process-wide
/// hook stays quiet (no report, no backtrace; `IOASYNC_BACKTRACE=1` brings
/// them back), and the panic comes back as its message and location, for
/// the caller to report as one line. For code ioasync runs on threads of
/// its own (a NATS worker host's lanes) where a panic fails one call.
///
/// ```
/// let caught = ioasync_core::catch_panic(|| -> u32 { panic!("thirteen") }).unwrap_err();
/// assert!(caught.starts_with("thirteen at "), "{caught}");
/// assert_eq!(ioasync_core::catch_panic(|| 7).unwrap(), 7);
/// ```
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_hook();
    let depth = Depth::enter();
    let res = std::panic::catch_unwind(AssertUnwindSafe(f));
    drop(depth);
    res.map_err(|payload| {
        let msg = message(payload.as_ref());
        match take_location() {
            Some(at) => format!("{msg} at {at}"),
            None => msg,
        }
    })
}

/// Runs `f` as contained code (inside `span` when tracing is on) and
/// catches its panic: for work the runtime does inside a poll of its own
/// (a readiness turn polled in place), with no future to wrap.
pub(crate) fn catch_now<R>(span: &tracing::Span, f: impl FnOnce() -> R) -> Result<R, Caught> {
    let depth = Depth::enter();
    let res = if span.is_disabled() {
        std::panic::catch_unwind(AssertUnwindSafe(f))
    } else {
        let _entered = span.enter();
        std::panic::catch_unwind(AssertUnwindSafe(f))
    };
    drop(depth);
    res.map_err(|payload| Caught {
        message: message(payload.as_ref()),
        location: take_location(),
    })
}

/// Runs `fut` as contained code (inside `span`), without catching: for
/// handlers, whose panics kameo catches and hands to `on_panic`.
pub(crate) fn contained<F: Future>(fut: F, span: &tracing::Span) -> Contained<'_, F> {
    Contained { fut, span }
}

/// Runs `fut` as contained code (inside `span`) and catches its panic.
///
/// A combinator, not an `async fn`: an `async fn` would keep `fut` twice
/// (its argument and the future it awaits), and the runtime's idle wait
/// holds one of these in every actor's memory.
pub(crate) fn catch<'s, F: Future + 's>(
    fut: F,
    span: &'s tracing::Span,
) -> impl Future<Output = Result<F::Output, Caught>> + 's {
    AssertUnwindSafe(contained(fut, span))
        .catch_unwind()
        .map(|res| {
            res.map_err(|payload| Caught {
                message: message(payload.as_ref()),
                location: take_location(),
            })
        })
}
