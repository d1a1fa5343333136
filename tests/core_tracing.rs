//! Every notifier has a tracing span carrying its tree path: what its
//! handlers log is attributed to it.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use ioasync::{Ctx, Handler, Loop, Notifier, Result, Spec};

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

#[test]
fn handler_logs_carry_the_notifier_span_with_its_path() {
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || out.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let lp = Loop::builder().current_thread().build().unwrap();
    let l = lp.clone();
    lp.block_on(async move {
        let parent = l.add(Spec::<Talker>::new("server", ())).await.unwrap();
        let child = parent
            .add_child(Spec::<Talker>::new("conn-17", ()))
            .await
            .unwrap();
        child.ask(Say("hello")).await.unwrap();
    });
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("talking"))
        .unwrap_or_else(|| panic!("no log line in {text:?}"));
    assert!(
        line.contains("notifier{path=/server/conn-17 kind=\"Talker\"}"),
        "{line}"
    );
    assert!(line.contains("what=\"hello\""), "{line}");
}
