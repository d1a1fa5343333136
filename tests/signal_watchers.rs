//! Signal watchers with real signals raised by this process.

#[macro_use]
mod support;

use ioasync::{
    signal::{Signal, SignalEvent, SignalKind},
    test_util::Recorder,
};
use support::{bounded, test_loop};

fn raise(sig: SignalKind) {
    nix::sys::signal::raise(nix::sys::signal::Signal::try_from(sig.as_raw()).unwrap()).unwrap();
}

flavours!(serial a_real_sigusr1_reaches_every_watcher_exactly_once);
async fn a_real_sigusr1_reaches_every_watcher_exactly_once() {
    let lp = test_loop();
    let mut recs = Vec::new();
    for i in 0..3 {
        let (rec, sub) = Recorder::new();
        let w = lp
            .add(Signal::spec(
                format!("usr1-{i}"),
                SignalKind::user_defined1(),
            ))
            .await
            .unwrap();
        w.subscribe(sub).unwrap();
        recs.push((w, rec));
    }
    raise(SignalKind::user_defined1());
    for (_, rec) in &recs {
        let evs: Vec<SignalEvent> = bounded("delivery", rec.wait_len(1)).await;
        assert_eq!(evs[0].signal, SignalKind::user_defined1());
        assert_eq!(evs[0].count, 1);
    }
    // Removing one leaves the others watching.
    recs[0].0.stop().await;
    raise(SignalKind::user_defined1());
    for (_, rec) in &recs[1..] {
        assert_eq!(bounded("second", rec.wait_len(2)).await.len(), 2);
    }
    assert_eq!(
        recs[0].1.events().len(),
        1,
        "a removed watcher hears nothing"
    );
}

flavours!(serial removing_the_last_watcher_restores_the_default_disposition);
async fn removing_the_last_watcher_restores_the_default_disposition() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal as S, sigaction};
    let lp = test_loop();
    let w = lp
        .add(Signal::spec("usr2", SignalKind::user_defined2()))
        .await
        .unwrap();
    w.stop().await;
    // Read the disposition back without changing it.
    let probe = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    #[allow(unsafe_code)]
    // SAFETY: set SIG_DFL (what we expect to find) and read the old action.
    let old = unsafe { sigaction(S::SIGUSR2, &probe) }.unwrap();
    assert_eq!(old.handler(), SigHandler::SigDfl);
    // A new watcher gets tokio's handler back and hears the signal.
    let w = lp
        .add(Signal::spec("usr2-again", SignalKind::user_defined2()))
        .await
        .unwrap();
    let (rec, sub) = Recorder::<SignalEvent>::new();
    w.subscribe(sub).unwrap();
    raise(SignalKind::user_defined2());
    assert_eq!(bounded("delivery", rec.wait_len(1)).await.len(), 1);
}

flavours!(serial sigkill_cannot_be_watched_and_says_so);
async fn sigkill_cannot_be_watched_and_says_so() {
    let lp = test_loop();
    let err = lp
        .add(Signal::spec("kill", SignalKind::kill()))
        .await
        .unwrap_err();
    assert_eq!(err.op(), "signal");
    assert!(err.to_string().contains("SIGKILL"), "{err}");
}

flavours!(serial loop_attach_and_detach_signal);
async fn loop_attach_and_detach_signal() {
    let lp = test_loop();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let (s, n) = (seen.clone(), notify.clone());
    let watch = lp
        .attach_signal(SignalKind::hangup(), move |e| {
            assert_eq!(e.signal, SignalKind::hangup());
            s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            n.notify_one();
        })
        .await
        .unwrap();
    raise(SignalKind::hangup());
    bounded("delivery", notify.notified()).await;
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    let at = watch.path().to_string();
    assert!(watch.cancel().await);
    assert!(lp.tree().find(&at).is_none());
    // A dropped guard detaches the signal too.
    let dropped = lp
        .attach_signal(SignalKind::hangup(), |_| {})
        .await
        .unwrap();
    let n = dropped.notifier().clone();
    drop(dropped);
    bounded("the dropped watch stops", n.wait_stopped()).await;
}
