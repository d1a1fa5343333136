//! [`EntryPoint`]: an entry declared with its argument and result types,
//! so that a call with the wrong types does not compile.

use std::{fmt, marker::PhantomData};

use ioasync_core::{Error, NotifierRef, Result};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    entry::Entry,
    function::{CallOptions, Function, FunctionRef, FunctionSpec},
};

/// An entry point declared once, with its types, for both sides: the
/// worker registers what it runs ([`runs`](Self::runs),
/// [`runs_with`](Self::runs_with)), the parent builds the pool from it
/// ([`pool`](Self::pool)) and calls through [`on`](Self::on), whose
/// `call` takes an `&A` and returns an `R`.
///
/// ```standalone_crate
/// use ioasync::{worker::{EntryPoint, run_if_worker}, Loop};
///
/// static DOUBLE: EntryPoint<u64, u64> = EntryPoint::new("double");
///
/// fn main() -> ioasync::Result<()> {
///     // First thing: a worker process runs its entry here and exits.
///     run_if_worker([DOUBLE.runs(|x| x * 2)]);
///     let lp = Loop::new()?;
///     let l = lp.clone();
///     lp.block_on(async move {
///         let pool = l.add(DOUBLE.pool("doubler").max_workers(2)).await?;
///         let double = DOUBLE.on(&pool)?;
///         assert_eq!(double.call(&21).await?, 42);
///         Ok(())
///     })
/// }
/// ```
///
/// The types are checked when the call compiles:
///
/// ```compile_fail
/// use ioasync::{worker::{EntryPoint, Function}, notifier::NotifierRef};
///
/// static DOUBLE: EntryPoint<u64, u64> = EntryPoint::new("double");
///
/// async fn wrong(pool: &NotifierRef<Function>) -> ioasync::Result<()> {
///     // A string is not a u64: this does not compile.
///     let _: u64 = DOUBLE.on(pool)?.call(&"oops").await?;
///     Ok(())
/// }
/// ```
pub struct EntryPoint<A, R> {
    name: &'static str,
    _sig: PhantomData<fn(A) -> R>,
}

impl<A, R> EntryPoint<A, R> {
    /// Declares the entry `name` taking `A` and returning `R`.
    pub const fn new(name: &'static str) -> Self {
        EntryPoint {
            name,
            _sig: PhantomData,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<A, R> EntryPoint<A, R>
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    /// What a worker runs for it: `f` on each call (see
    /// [`Entry::function`]).
    pub fn runs(&self, f: fn(A) -> R) -> Entry {
        Entry::function(self.name, f)
    }

    /// What a worker runs for it, with a per-worker state built once by
    /// `init` when the worker starts (see [`Entry::with_state`]).
    pub fn runs_with<S: 'static>(
        &self,
        init: fn() -> S,
        f: impl Fn(&mut S, A) -> R + Copy + Send + Sync + 'static,
    ) -> Entry {
        Entry::with_state(self.name, init, f)
    }
}

impl<A, R> EntryPoint<A, R>
where
    A: Serialize + Sync,
    R: DeserializeOwned + Send,
{
    /// A pool named `name` running this entry.
    pub fn pool(&self, name: impl Into<String>) -> FunctionSpec {
        Function::spec(name, self.name)
    }

    /// Typed calls on `pool`; fails when the pool runs another entry.
    pub fn on(&self, pool: &NotifierRef<Function>) -> Result<EntryRef<A, R>> {
        let runs = crate::function::entry_of(pool);
        if &*runs != self.name {
            return Err(Error::invalid_input(
                "call",
                format!(
                    "pool {} runs entry {runs:?}, not {:?}",
                    pool.path(),
                    self.name
                ),
            ));
        }
        Ok(EntryRef {
            pool: pool.clone(),
            _sig: PhantomData,
        })
    }
}

impl<A, R> fmt::Debug for EntryPoint<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryPoint")
            .field("name", &self.name)
            .field("args", &std::any::type_name::<A>())
            .field("result", &std::any::type_name::<R>())
            .finish()
    }
}

/// Typed calls on a pool (from [`EntryPoint::on`]): cheap to clone,
/// `Send`, one per caller if need be.
pub struct EntryRef<A, R> {
    pool: NotifierRef<Function>,
    _sig: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for EntryRef<A, R> {
    fn clone(&self) -> Self {
        EntryRef {
            pool: self.pool.clone(),
            _sig: PhantomData,
        }
    }
}

impl<A, R> EntryRef<A, R>
where
    A: Serialize + Sync,
    R: DeserializeOwned + Send,
{
    /// Calls the entry (see [`FunctionRef::call`]: waits for room in a
    /// full call queue).
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, worker::{CallOptions, EntryPoint, run_if_worker}};
    ///
    /// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     run_if_worker([SQUARE.runs(|x| x * x)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(SQUARE.pool("squares").max_workers(1)).await?;
    ///         let square = SQUARE.on(&pool)?;
    ///         assert_eq!(square.call(&9).await?, 81);
    ///         # let _ = CallOptions::default();
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`FunctionRef::call`]: dropped before it was queued, nothing was
    /// sent; dropped once queued, a call no worker took yet is skipped, one a
    /// worker runs runs to its end and its result is discarded.
    pub async fn call(&self, args: &A) -> Result<R> {
        self.pool.call(args).await
    }

    /// Calls the entry without waiting for room: fails at once when the
    /// call queue is full, else the returned future sends the call and
    /// resolves with its result (see [`FunctionRef::try_call`]).
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, worker::{CallOptions, EntryPoint, run_if_worker}};
    ///
    /// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     run_if_worker([SQUARE.runs(|x| x * x)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(SQUARE.pool("squares").max_workers(1)).await?;
    ///         let square = SQUARE.on(&pool)?;
    ///         assert_eq!(square.try_call(&4)?.await?, 16);
    ///         # let _ = CallOptions::default();
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`FunctionRef::try_call`]: the future dropped before its first
    /// poll sends nothing and frees the place; dropped once sent, a call no
    /// worker took yet is skipped, one a worker runs runs to its end and
    /// its result is discarded.
    pub fn try_call(&self, args: &A) -> Result<impl Future<Output = Result<R>> + Send + 'static>
    where
        R: 'static,
    {
        self.pool.try_call(args)
    }

    /// Calls the entry with options (see [`FunctionRef::call_with`]).
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, worker::{CallOptions, EntryPoint, run_if_worker}};
    ///
    /// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     run_if_worker([SQUARE.runs(|x| x * x)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(SQUARE.pool("squares").max_workers(1)).await?;
    ///         let square = SQUARE.on(&pool)?;
    ///         let urgent = CallOptions { priority: 10, ..Default::default() };
    ///         assert_eq!(square.call_with(&5, urgent).await?, 25);
    ///         Ok(())
    ///     })
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`FunctionRef::call`]: dropped before it was queued, nothing was
    /// sent; dropped once queued, a call no worker took yet is skipped, one a
    /// worker runs runs to its end and its result is discarded.
    pub async fn call_with(&self, args: &A, options: CallOptions) -> Result<R> {
        self.pool.call_with(args, options).await
    }

    /// The pool.
    ///
    /// ```standalone_crate
    /// use ioasync::{Loop, worker::{CallOptions, EntryPoint, run_if_worker}};
    ///
    /// static SQUARE: EntryPoint<u64, u64> = EntryPoint::new("square");
    ///
    /// fn main() -> ioasync::Result<()> {
    ///     run_if_worker([SQUARE.runs(|x| x * x)]);
    ///     let lp = Loop::new()?;
    ///     let l = lp.clone();
    ///     lp.block_on(async move {
    ///         let pool = l.add(SQUARE.pool("squares").max_workers(1)).await?;
    ///         let square = SQUARE.on(&pool)?;
    ///         assert_eq!(square.pool().path(), "/squares");
    ///         # let _ = CallOptions::default();
    ///         Ok(())
    ///     })
    /// }
    /// ```
    pub fn pool(&self) -> &NotifierRef<Function> {
        &self.pool
    }
}

impl<A, R> fmt::Debug for EntryRef<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryRef")
            .field("pool", &self.pool.path())
            .finish()
    }
}

/// A structured failure an entry returns as its error (IO::Async's
/// `die [message, category, @details]`): declare the entry as
/// `EntryPoint<A, Result<T, Failure>>` and the caller receives
/// `Ok(Err(failure))` with every part, apart from the pool's own errors
/// (a worker that died, a timeout), which stay the outer `Err`.
///
/// ```
/// use ioasync::worker::Failure;
///
/// fn parse(s: String) -> Result<u32, Failure> {
///     s.parse()
///         .map_err(|e| Failure::new(format!("{e}"), "parse").detail(s.clone()))
/// }
/// let f = parse("x".into()).unwrap_err();
/// assert_eq!(f.category, "parse");
/// assert_eq!(f.details, ["x"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    /// Its kind, for the caller to match on (IO::Async's category).
    pub category: String,
    /// Anything else the caller may need.
    pub details: Vec<String>,
}

impl Failure {
    /// A failure with no details.
    pub fn new(message: impl Into<String>, category: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            category: category.into(),
            details: Vec::new(),
        }
    }

    /// Adds a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.details.push(detail.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.category, self.message)?;
        for d in &self.details {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}
