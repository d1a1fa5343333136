//! One builder: every notifier's own builder, once its options are set,
//! takes the same supervision options the same way (through `IntoSpec`,
//! in the prelude) and becomes a `Spec<N>`.

use std::time::Duration;

use ioasync::{
    fs::FileStream,
    io::{Framed, Handle, Stream, codec::LineCodec},
    notifier::Spec,
    prelude::*,
    process::{Command, Process},
    signal::{Signal, SignalKind},
    supervision::{Policy, Restart},
    time::{Countdown, Periodic},
    worker::{Function, Routine},
};

const STOP: Duration = Duration::from_millis(1234);
const INIT: Duration = Duration::from_millis(4321);

/// The options every builder is given here.
fn configured<S: IntoSpec>(s: S) -> Spec<S::Notifier> {
    s.restart(Restart::Transient)
        .restart_limit(7, Duration::from_secs(9))
        .stop_timeout(STOP)
        .init_timeout(INIT)
        .mailbox(5)
}

fn parts<N: ioasync::notifier::Notifier>(s: Spec<N>) -> (Policy, usize) {
    (*s.policy(), s.mailbox_capacity())
}

fn check(kind: &str, (p, mailbox): &(Policy, usize)) {
    assert_eq!(*mailbox, 5, "{kind}");
    assert_eq!(p.restart, Restart::Transient, "{kind}");
    assert_eq!(p.max_restarts, 7, "{kind}");
    assert_eq!(p.window, Duration::from_secs(9), "{kind}");
    assert_eq!(p.stop_timeout, STOP, "{kind}");
    assert_eq!(p.init_timeout, INIT, "{kind}");
}

#[test]
fn every_notifier_builder_takes_the_same_supervision_options() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let (c, _d) = tokio::net::UnixStream::pair().unwrap();
    let (r, w) = std::io::pipe().unwrap();
    let policies = [
        (
            "stream",
            parts(configured(Stream::spec(
                "s",
                tokio::net::UnixStream::from_std(a).unwrap(),
            ))),
        ),
        (
            "framed",
            parts(configured(Framed::spec("f", c, LineCodec::new()))),
        ),
        (
            "handle",
            parts(configured(
                Handle::spec("h", Some(r.into()), Some(w.into())).unwrap(),
            )),
        ),
        (
            "filestream",
            parts(configured(FileStream::spec("fs", "/dev/null"))),
        ),
        (
            "periodic",
            parts(configured(Periodic::spec("p", Duration::from_secs(1)))),
        ),
        (
            "countdown",
            parts(configured(Countdown::spec("c", Duration::from_secs(1)))),
        ),
        (
            "signal",
            parts(configured(Signal::spec("sig", SignalKind::user_defined1()))),
        ),
        (
            "process",
            parts(configured(Process::spec("proc", Command::new("true")))),
        ),
        ("function", parts(configured(Function::spec("fn", "entry")))),
        (
            "routine",
            parts(configured(
                Routine::<u32, u32, u32>::spec("r", "entry", 4).0,
            )),
        ),
    ];
    for (kind, p) in &policies {
        check(kind, p);
    }
}

/// Each option as the *first* call on a notifier's own builder (where the
/// builder becomes a `Spec` through `IntoSpec`), one at a time.
fn each_option_first<S: IntoSpec>(kind: &str, make: impl Fn() -> S) {
    use ioasync::supervision::{Backoff, Strategy};
    let b = Backoff::new(Duration::from_millis(3), 2.0, Duration::from_secs(1));
    assert_eq!(
        make().restart(Restart::Transient).policy().restart,
        Restart::Transient,
        "{kind}"
    );
    let p = *make().restart_limit(7, Duration::from_secs(9)).policy();
    assert_eq!(
        (p.max_restarts, p.window),
        (7, Duration::from_secs(9)),
        "{kind}"
    );
    assert_eq!(make().backoff(b).policy().backoff, b, "{kind}");
    assert_eq!(
        make().stop_timeout(STOP).policy().stop_timeout,
        STOP,
        "{kind}"
    );
    assert_eq!(
        make().init_timeout(INIT).policy().init_timeout,
        INIT,
        "{kind}"
    );
    assert_eq!(make().mailbox(5).mailbox_capacity(), 5, "{kind}");
    assert_eq!(
        make().strategy(Strategy::OneForAll).policy().strategy,
        Strategy::OneForAll,
        "{kind}"
    );
}

#[test]
fn each_supervision_option_works_as_the_first_call_on_every_builder() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _g = rt.enter();
    let pair = || tokio::net::UnixStream::pair().unwrap().0;
    each_option_first("stream", || Stream::spec("s", pair()));
    each_option_first("framed", || {
        Framed::spec("f", pair(), ioasync::io::codec::LineCodec::new())
    });
    each_option_first("filestream", || FileStream::spec("fs", "/dev/null"));
    each_option_first("periodic", || Periodic::spec("p", Duration::from_secs(1)));
    each_option_first("process", || Process::spec("proc", Command::new("true")));
    each_option_first("function", || Function::spec("fn", "entry"));
    each_option_first("routine", || {
        Routine::<u32, u32, u32>::spec("r", "entry", 4).0
    });
}
