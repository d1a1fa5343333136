//! Every notifier has a tracing span carrying its tree path: what its
//! handlers log is attributed to it; a contained panic is one error line
//! with its message and location, and the default hook's report is opt-in.

#[macro_use]
mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use ioasync::{
    Result,
    notifier::{Ctx, Handler, Notifier, Spec},
    test_util::{Journal, Panic, Probe, ProbeArgs},
};
use support::{bounded, example, test_loop};

struct Talker;

impl Notifier for Talker {
    type Args = ();
    async fn init(_: (), _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Talker)
    }
}

struct Say(&'static str);

impl Handler<Say> for Talker {
    type Reply = ();
    async fn handle(&mut self, Say(what): Say, _ctx: &mut Ctx<'_, Self>) {
        tracing::info!(what, "talking");
    }
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged in this test binary, from every thread (the tests
/// pick their lines by their notifiers' paths).
fn logged() -> &'static Buf {
    static LOG: OnceLock<Buf> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

fn lines_with(needle: &str) -> Vec<String> {
    let text = String::from_utf8(logged().0.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Panics in its `ready` once armed: a notifier driving a user future.
struct Tripwire {
    armed: bool,
    message: &'static str,
}

struct Arm;

impl Notifier for Tripwire {
    type Args = &'static str;
    async fn init(message: &'static str, _ctx: &mut Ctx<'_, Self>) -> Result<Self> {
        Ok(Tripwire {
            armed: false,
            message,
        })
    }
    async fn ready(&mut self) {
        if self.armed {
            panic!("{}", self.message);
        }
        std::future::pending().await
    }
}

impl Handler<Arm> for Tripwire {
    type Reply = ();
    async fn handle(&mut self, _: Arm, _ctx: &mut Ctx<'_, Self>) {
        self.armed = true;
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

flavours!(handler_logs_carry_the_notifier_span_with_its_path);
async fn handler_logs_carry_the_notifier_span_with_its_path() {
    logged();
    let lp = test_loop();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("server{n}");
    let parent = lp.add(Spec::<Talker>::new(&name, ())).await.unwrap();
    let child = parent
        .add_child(Spec::<Talker>::new("conn-17", ()))
        .await
        .unwrap();
    child.ask(Say("hello")).await.unwrap();
    let path = format!("/{name}/conn-17");
    let lines = lines_with(&format!("path={path} "));
    let line = lines
        .iter()
        .find(|l| l.contains("talking"))
        .unwrap_or_else(|| panic!("no log line for {path}"));
    assert!(
        line.contains(&format!("notifier{{path={path} kind=\"Talker\"}}")),
        "{line}"
    );
    assert!(line.contains("what=\"hello\""), "{line}");
}

flavours!(a_contained_panic_is_one_error_line_with_its_message_and_location);
async fn a_contained_panic_is_one_error_line_with_its_message_and_location() {
    logged();
    let lp = test_loop();
    let j = Journal::new();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("panicky{n}");
    let p = lp
        .add(Spec::<Probe>::new(&name, ProbeArgs::new(&j)))
        .await
        .unwrap();
    let message = format!("boom number {n}");
    let text: &'static str = Box::leak(message.clone().into_boxed_str());
    p.tell(Panic(text)).await.unwrap();
    bounded("restarted", j.wait_count(&format!("start /{name}"), 2)).await;
    let lines = lines_with(&message);
    assert_eq!(lines.len(), 1, "one line for the panic: {lines:?}");
    let line = &lines[0];
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&format!("path=/{name}")), "{line}");
    assert!(line.contains("test_util.rs:"), "the location: {line}");
}

flavours!(contained_panics_print_no_default_report_unless_asked);
async fn contained_panics_print_no_default_report_unless_asked() {
    // examples/supervision panics a notifier on purpose.
    let quiet = tokio::process::Command::new(example("supervision"))
        .output()
        .await
        .unwrap();
    assert!(quiet.status.success());
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert!(!err.contains("panicked at"), "no default report: {err}");
    let loud = tokio::process::Command::new(example("supervision"))
        .env("IOASYNC_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    assert!(loud.status.success());
    let err = String::from_utf8_lossy(&loud.stderr);
    assert!(
        err.contains("panicked at examples/supervision.rs"),
        "the default report when asked: {err}"
    );
}

flavours!(a_panic_in_ready_ends_the_incarnation_as_one_error_line);
async fn a_panic_in_ready_ends_the_incarnation_as_one_error_line() {
    logged();
    let lp = test_loop();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("tripwire{n}");
    let message: &'static str = Box::leak(format!("ready tripped {n}").into_boxed_str());
    let t = lp
        .add(
            Spec::<Tripwire>::new(&name, message).restart(ioasync::supervision::Restart::Temporary),
        )
        .await
        .unwrap();
    let mut exits = t.exits().unwrap();
    t.tell(Arm).await.unwrap();
    let exit = bounded("exit", exits.recv()).await.unwrap();
    assert_eq!(exit.reason.panic_message(), Some(message), "{exit:?}");
    bounded("stopped", t.wait_stopped()).await;
    let lines = lines_with(message);
    assert_eq!(lines.len(), 1, "one line for the panic: {lines:?}");
    assert!(
        lines[0].contains("ERROR") && lines[0].contains(&format!("path=/{name}")),
        "{}",
        lines[0]
    );
}
