//! Counts the watchers of each signal, to restore its default disposition
//! when the last one goes and put tokio's handler back when one returns.
#![allow(unsafe_code)]

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal as NixSignal, sigaction};

use crate::SignalKind;

#[derive(Default)]
struct Entry {
    watchers: usize,
    /// tokio's handler, saved while the default disposition is in place.
    saved: Option<SigAction>,
}

static REGISTRY: LazyLock<Mutex<HashMap<i32, Entry>>> = LazyLock::new(Default::default);

/// While held, `sig` stays handled by tokio: the last [`Hold`] of a signal
/// to go restores its default disposition. Every [`Signal`](crate::Signal)
/// holds one; hold one too for a `tokio::signal` stream of your own.
#[derive(Debug)]
#[must_use = "the signal goes back to its default disposition when the Hold is dropped"]
pub struct Hold {
    sig: i32,
}

/// Holds `sig` (see [`Hold`]). Call it before creating a `tokio::signal`
/// stream for `sig`.
pub fn hold(sig: SignalKind) -> Hold {
    let n = sig.as_raw();
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let entry = reg.entry(n).or_default();
    entry.watchers += 1;
    if let Some(saved) = entry.saved.take()
        && let Ok(s) = NixSignal::try_from(n)
    {
        // SAFETY: `saved` is the action that was installed (tokio's signal
        // handler, registered for the life of the process) before we put
        // SIG_DFL in its place; reinstalling it restores that state.
        let _ = unsafe { sigaction(s, &saved) };
    }
    Hold { sig: n }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = reg.get_mut(&self.sig) else {
            return;
        };
        entry.watchers -= 1;
        if entry.watchers > 0 || entry.saved.is_some() {
            return;
        }
        let Ok(s) = NixSignal::try_from(self.sig) else {
            return;
        };
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_DFL is always sound; the previous action
        // is kept to be reinstalled by the next `hold`.
        if let Ok(old) = unsafe { sigaction(s, &dfl) } {
            entry.saved = Some(old);
        }
    }
}
