//! The command-line contract of examples/tail (`tail -F`).

#[macro_use]
mod support;

use std::process::Stdio;

use support::{append, bounded, example, signal};
use tokio::{io::AsyncBufReadExt, process::Command};

flavours!(tail_prints_the_last_lines_then_follows_truncation_and_rotation);
async fn tail_prints_the_last_lines_then_follows_truncation_and_rotation() {
    let d = support::fresh_dir("tail");
    let path = d.join("log");
    append(
        &path,
        &(1..=15).map(|i| format!("l{i}\n")).collect::<String>(),
    );
    let mut child = Command::new(example("tail"))
        .args(["-n", "3"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || bounded("line", lines.next_line()).await.unwrap().unwrap();
    for want in ["l13", "l14", "l15"] {
        assert_eq!(next().await, want);
    }
    append(&path, "new1\n");
    assert_eq!(next().await, "new1");
    std::fs::write(&path, "after truncation\n").unwrap();
    assert_eq!(next().await, "after truncation");
    std::fs::rename(&path, d.join("log.1")).unwrap();
    append(&path, "in the new file\n");
    assert_eq!(next().await, "in the new file");
    signal(&child, "INT").await;
    let st = bounded("exit", child.wait()).await.unwrap();
    assert!(st.success(), "{st}");
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(tail_waits_for_a_missing_path);
async fn tail_waits_for_a_missing_path() {
    let d = support::fresh_dir("tail-missing");
    let path = d.join("not-yet");
    let mut child = Command::new(example("tail"))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    append(&path, "finally\n");
    assert_eq!(
        bounded("line", lines.next_line()).await.unwrap().unwrap(),
        "finally"
    );
    signal(&child, "INT").await;
    assert!(bounded("exit", child.wait()).await.unwrap().success());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Everything a child wrote on one of its pipes, as it comes.
#[derive(Clone, Default)]
struct Output {
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    more: std::sync::Arc<tokio::sync::Notify>,
}

impl Output {
    fn collect(mut from: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Output {
        use tokio::io::AsyncReadExt;
        let out = Output::default();
        let o = out.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                o.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                o.more.notify_waiters();
            }
            o.more.notify_waiters();
        });
        out
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Waits until what was written satisfies `done`.
    async fn until(&self, what: &str, done: impl Fn(&str) -> bool) {
        bounded(what, async {
            loop {
                let more = self.more.notified();
                if done(&self.text()) {
                    return;
                }
                more.await;
            }
        })
        .await
    }
}

/// A `tail` under test: its stdout and stderr as they come.
struct Tail {
    who: &'static str,
    child: tokio::process::Child,
    out: Output,
    err: Output,
}

impl Tail {
    fn spawn(who: &'static str, cmd: &mut Command) -> Tail {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {who}: {e}"));
        let out = Output::collect(child.stdout.take().unwrap());
        let err = Output::collect(child.stderr.take().unwrap());
        Tail {
            who,
            child,
            out,
            err,
        }
    }

    /// Waits until its stdout is exactly `want` (a mismatch fails at once).
    async fn prints(&self, want: &str) {
        let what = format!(
            "{} printing {want:?} (stderr {:?})",
            self.who,
            self.err.text()
        );
        self.out
            .until(&what, |got| {
                assert!(
                    want.starts_with(got),
                    "{} printed {got:?}, want {want:?}",
                    self.who
                );
                got == want
            })
            .await
    }
}

flavours!(tail_prints_what_coreutils_tail_dash_f_prints_for_a_late_path);
/// Our example and coreutils `tail -F`, side by side on one path missing
/// at the start, with `-n 0`: both print the file that appears from its
/// start. (coreutils polls when no file exists at the start: `-s 0.1`
/// keeps the test short; ours wakes on inotify.)
async fn tail_prints_what_coreutils_tail_dash_f_prints_for_a_late_path() {
    side_by_side(None).await
}

flavours!(tail_prints_what_coreutils_tail_dash_f_prints_for_an_existing_file);
/// The same on a file there at the start, with `-n 2` (coreutils uses
/// inotify then).
async fn tail_prints_what_coreutils_tail_dash_f_prints_for_an_existing_file() {
    side_by_side(Some(("e1\ne2\ne3\n", "e2\ne3\n"))).await
}

/// Runs our example and coreutils `tail -F` on one path through appends
/// with a partial line, truncation, rotation, removal and recreation;
/// after each step both must have printed the same bytes. `existing`: the
/// file's content at the start and what `-n 2` prints of it; `None`: the
/// path is missing at the start (`-n 0`).
async fn side_by_side(existing: Option<(&str, &str)>) {
    let d = support::fresh_dir("tail-vs-coreutils");
    let path = d.join("log");
    let n = match existing {
        Some((content, _)) => {
            std::fs::write(&path, content).unwrap();
            "2"
        }
        None => "0",
    };
    let mut tails = [
        Tail::spawn(
            "examples/tail",
            Command::new(example("tail"))
                .args(["-s", "0.1", "-n", n])
                .arg(&path),
        ),
        Tail::spawn(
            "coreutils tail -F",
            Command::new("tail")
                .args(["-F", "-s", "0.1", "-n", n])
                .arg(&path),
        ),
    ];
    let mut want = String::new();
    match existing {
        // Both printed the last lines: they follow now.
        Some((_, last)) => {
            want.push_str(last);
            for t in &tails {
                t.prints(&want).await;
            }
        }
        // Both looked and are following: they say the path is missing.
        None => {
            for t in &tails {
                let what = format!("{} saying the path is missing", t.who);
                t.err.until(&what, |e| e.contains("cannot open")).await;
            }
        }
    }
    let steps: [(&str, &dyn Fn()); 8] = [
        ("a late-created path or an append", &|| {
            append(&path, "l1\nl2\n")
        }),
        ("an append with a partial line", &|| {
            append(&path, "l3\npar")
        }),
        ("the rest of the line", &|| append(&path, "tial\n")),
        ("truncation", &|| std::fs::write(&path, "t1\n").unwrap()),
        ("an append after truncation", &|| append(&path, "t2\n")),
        ("rotation", &|| {
            std::fs::rename(&path, d.join("log.1")).unwrap();
            std::fs::write(&path, "r1\n").unwrap();
        }),
        ("an append after rotation", &|| append(&path, "r2\n")),
        ("removal and recreation", &|| {
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, "z1\n").unwrap();
        }),
    ];
    let adds = [
        "l1\nl2\n", "l3\npar", "tial\n", "t1\n", "t2\n", "r1\n", "r2\n", "z1\n",
    ];
    for ((what, step), add) in steps.iter().zip(adds) {
        step();
        want.push_str(add);
        for t in &tails {
            bounded(what, t.prints(&want)).await;
        }
    }
    let [ours, theirs] = &mut tails;
    assert_eq!(ours.out.text(), theirs.out.text());
    signal(&ours.child, "INT").await;
    let st = bounded("our tail exiting", ours.child.wait())
        .await
        .unwrap();
    assert!(st.success(), "{st}");
    theirs.child.kill().await.unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}
