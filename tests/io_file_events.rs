//! File and FileStream on change events (inotify through `notify`), the
//! polling fallback, and FileStream's `on_initial` with its seeks.
//!
//! The event tests poll once a minute as the backstop and bound every
//! step to 10 s: only a change event can wake them in time.

#[macro_use]
mod support;

use std::{
    io::SeekFrom,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync::{
    fs::{File, FileEvent, FileStream, FileStreamEvent, FileStreamSpec, StartAt, WatchMode},
    io::ReadAction,
    notifier::IntoSpec,
    test_util::Recorder,
};
use support::{append, bounded, test_loop};
use tokio::sync::Notify;

/// A backstop poll that never comes within a test's bounds.
const MINUTE: Duration = Duration::from_secs(60);

/// Bytes a FileStream read, with a wake-up per read.
#[derive(Clone, Default)]
struct Got {
    bytes: Arc<Mutex<Vec<u8>>>,
    more: Arc<Notify>,
}

impl Got {
    fn spec(&self, name: &str, path: &Path) -> FileStreamSpec {
        let g = self.clone();
        FileStream::spec(name, path).on_read(move |buf, _| {
            g.bytes.lock().unwrap().extend_from_slice(buf);
            buf.clear();
            g.more.notify_one();
            ReadAction::Wait
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Waits until everything read is `want` (fails at once on a mismatch).
    async fn until(&self, want: &str) {
        bounded(&format!("reading {want:?}"), async {
            loop {
                let notified = self.more.notified();
                let t = self.text();
                if t == want {
                    return;
                }
                assert!(want.starts_with(&t), "read {t:?}, want {want:?}");
                notified.await;
            }
        })
        .await
    }
}

fn dir(tag: &str) -> PathBuf {
    support::fresh_dir(tag)
}

flavours!(filestream_follows_appends_truncation_rotation_and_a_late_path_on_events);
async fn filestream_follows_appends_truncation_rotation_and_a_late_path_on_events() {
    let lp = test_loop();
    let d = dir("ev-follow");
    let path = d.join("log");
    let got = Got::default();
    let (rec, sub) = Recorder::new();
    // From the end: but the path is missing, and a file that appears
    // later is all new, read from its start (as `tail -F`).
    lp.add(
        got.spec("f", &path)
            .start(StartAt::End)
            .interval(MINUTE)
            .subscribe(sub),
    )
    .await
    .unwrap();
    append(&path, "a\nb\n");
    got.until("a\nb\n").await;
    append(&path, "c");
    got.until("a\nb\nc").await;
    std::fs::write(&path, "t\n").unwrap();
    got.until("a\nb\nct\n").await;
    std::fs::rename(&path, d.join("log.1")).unwrap();
    append(&path, "n\n");
    got.until("a\nb\nct\nn\n").await;
    let evs = rec.events();
    let truncated = evs
        .iter()
        .filter(|e| matches!(e, FileStreamEvent::Truncated))
        .count();
    let rotated = evs
        .iter()
        .filter(|e| matches!(e, FileStreamEvent::Rotated))
        .count();
    assert_eq!((truncated, rotated), (1, 1), "{evs:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(a_path_whose_directories_come_later_and_are_made_again_is_seen_on_events);
async fn a_path_whose_directories_come_later_and_are_made_again_is_seen_on_events() {
    let lp = test_loop();
    let d = dir("ev-dirs");
    let path = d.join("x/y/log");
    let other = d.join("x/y/other");
    let got = Got::default();
    // Two streams in one directory share its watch.
    let got2 = Got::default();
    lp.add(got.spec("f", &path).interval(MINUTE)).await.unwrap();
    lp.add(got2.spec("g", &other).interval(MINUTE))
        .await
        .unwrap();
    // The watch climbs down as the directories appear.
    std::fs::create_dir(d.join("x")).unwrap();
    std::fs::create_dir(d.join("x/y")).unwrap();
    append(&path, "one\n");
    got.until("one\n").await;
    append(&other, "1\n");
    got2.until("1\n").await;
    // The whole tree removed and made again: the new directory is watched.
    std::fs::remove_dir_all(d.join("x")).unwrap();
    std::fs::create_dir_all(d.join("x/y")).unwrap();
    append(&path, "two\n");
    got.until("one\ntwo\n").await;
    append(&other, "2\n");
    got2.until("1\n2\n").await;
    append(&path, "three\n");
    got.until("one\ntwo\nthree\n").await;
    append(&other, "3\n");
    got2.until("1\n2\n3\n").await;
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(file_reports_size_mode_removal_and_recreation_on_events);
async fn file_reports_size_mode_removal_and_recreation_on_events() {
    let lp = test_loop();
    let d = dir("ev-file");
    let path = d.join("f");
    std::fs::write(&path, "x").unwrap();
    let (rec, sub) = Recorder::new();
    lp.add(File::spec("w", &path, MINUTE))
        .await
        .unwrap()
        .subscribe(sub)
        .unwrap();
    let wait = |what: &'static str, pred: fn(&FileEvent) -> bool| {
        let rec = &rec;
        async move {
            bounded(what, async {
                loop {
                    let n = rec.events().len();
                    if rec.events().iter().any(pred) {
                        return;
                    }
                    rec.wait_len(n + 1).await;
                }
            })
            .await
        }
    };
    wait("appeared", |e| matches!(e, FileEvent::Appeared(_))).await;
    append(&path, "yz");
    wait("size", |e| matches!(e, FileEvent::Size { old: 1, new: 3 })).await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait(
        "mode",
        |e| matches!(e, FileEvent::Mode { new, .. } if new & 0o777 == 0o600),
    )
    .await;
    std::fs::remove_file(&path).unwrap();
    wait("vanished", |e| matches!(e, FileEvent::Vanished(_))).await;
    std::fs::write(&path, "again").unwrap();
    bounded("appeared again", async {
        loop {
            // The length before the look: an event landing between the
            // look and the wait must not be waited for again.
            let n = rec.events().len();
            let appeared = rec
                .events()
                .iter()
                .filter(|e| matches!(e, FileEvent::Appeared(_)))
                .count();
            if appeared >= 2 {
                return;
            }
            rec.wait_len(n + 1).await;
        }
    })
    .await;
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(polling_alone_still_follows_and_watches);
async fn polling_alone_still_follows_and_watches() {
    let lp = test_loop();
    let d = dir("ev-poll");
    let path = d.join("log");
    append(&path, "old\n");
    let got = Got::default();
    lp.add(
        got.spec("f", &path)
            .watch(WatchMode::Poll)
            .interval(Duration::from_millis(5)),
    )
    .await
    .unwrap();
    got.until("old\n").await;
    append(&path, "new\n");
    got.until("old\nnew\n").await;
    let (rec, sub) = Recorder::new();
    lp.add(File::spec_with_mode(
        "w",
        &path,
        Duration::from_millis(5),
        WatchMode::Poll,
    ))
    .await
    .unwrap()
    .subscribe(sub)
    .unwrap();
    bounded("appeared", rec.wait_len(1)).await;
    append(&path, "more\n");
    bounded("size", async {
        loop {
            // The length before the look (see above).
            let n = rec.events().len();
            if rec
                .events()
                .iter()
                .any(|e| matches!(e, FileEvent::Size { .. }))
            {
                return;
            }
            rec.wait_len(n + 1).await;
        }
    })
    .await;
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(the_default_start_is_offset_zero_as_in_io_async);
async fn the_default_start_is_offset_zero_as_in_io_async() {
    let lp = test_loop();
    let d = dir("ev-default");
    let path = d.join("log");
    append(&path, "there already\n");
    let got = Got::default();
    lp.add(got.spec("f", &path)).await.unwrap();
    got.until("there already\n").await;
    append(&path, "then\n");
    got.until("there already\nthen\n").await;
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(on_initial_gets_the_size_once_and_may_seek_to_the_last_bytes);
async fn on_initial_gets_the_size_once_and_may_seek_to_the_last_bytes() {
    let lp = test_loop();
    let d = dir("ev-initial");
    let path = d.join("log");
    append(&path, "0123456789abcdef");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let got = Got::default();
    lp.add(got.spec("f", &path).on_initial(move |init| {
        let at = init.seek(SeekFrom::End(-6)).unwrap();
        c.lock().unwrap().push((init.size(), at));
    }))
    .await
    .unwrap();
    got.until("abcdef").await;
    append(&path, "+");
    got.until("abcdef+").await;
    // A rotation reads the new file from its start: no second on_initial.
    std::fs::rename(&path, d.join("log.1")).unwrap();
    append(&path, "new\n");
    got.until("abcdef+new\n").await;
    assert_eq!(*calls.lock().unwrap(), [(16, 10)]);
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(on_initial_runs_when_a_missing_path_appears_from_offset_zero);
async fn on_initial_runs_when_a_missing_path_appears_from_offset_zero() {
    let lp = test_loop();
    let d = dir("ev-initial-late");
    let path = d.join("log");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let got = Got::default();
    lp.add(
        got.spec("f", &path)
            .start(StartAt::LastLines(0))
            .on_initial(move |init| c.lock().unwrap().push(init.position())),
    )
    .await
    .unwrap();
    append(&path, "all of it\n");
    got.until("all of it\n").await;
    assert_eq!(*calls.lock().unwrap(), [0]);
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(seek_to_last_starts_after_the_last_match_or_at_the_horizon);
async fn seek_to_last_starts_after_the_last_match_or_at_the_horizon() {
    let lp = test_loop();
    let d = dir("ev-seek-last");
    // After the last complete line: the partial one is read, then the rest.
    let path = d.join("lines");
    append(&path, "l1\nl2\npart");
    let found = Arc::new(Mutex::new(Vec::new()));
    let f = found.clone();
    let got = Got::default();
    lp.add(
        got.spec("a", &path)
            .on_initial(move |init| f.lock().unwrap().push(init.seek_to_last(b"\n").unwrap())),
    )
    .await
    .unwrap();
    got.until("part").await;
    append(&path, "ial\n");
    got.until("partial\n").await;
    // A match split across two blocks is found.
    let path = d.join("split");
    append(&path, "aaXYZbbbbbbb");
    let f = found.clone();
    let got = Got::default();
    lp.add(got.spec("b", &path).on_initial(move |init| {
        f.lock()
            .unwrap()
            .push(init.seek_to_last_within(b"XYZ", 4, 0).unwrap())
    }))
    .await
    .unwrap();
    got.until("bbbbbbb").await;
    // Not within the horizon: false, at the start of the searched range.
    let path = d.join("far");
    append(&path, &format!("\n{}", "z".repeat(100)));
    let f = found.clone();
    let got = Got::default();
    lp.add(got.spec("c", &path).on_initial(move |init| {
        f.lock()
            .unwrap()
            .push(init.seek_to_last_within(b"\n", 16, 40).unwrap())
    }))
    .await
    .unwrap();
    got.until(&"z".repeat(40)).await;
    assert_eq!(*found.lock().unwrap(), [true, true, false]);
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(a_seek_before_the_start_is_refused_naming_seek_and_einval);
async fn a_seek_before_the_start_is_refused_naming_seek_and_einval() {
    let lp = test_loop();
    let d = dir("ev-seek-bad");
    let path = d.join("log");
    append(&path, "abc");
    let err = Arc::new(Mutex::new(None));
    let e = err.clone();
    let got = Got::default();
    lp.add(got.spec("f", &path).on_initial(move |init| {
        *e.lock().unwrap() = init.seek(SeekFrom::Current(-1)).err();
        assert_eq!(init.position(), 0, "a refused seek moves nothing");
    }))
    .await
    .unwrap();
    got.until("abc").await;
    let e = err.lock().unwrap().take().expect("the seek failed");
    assert_eq!((e.op(), e.errno()), ("seek", Some(22)), "{e}");
    assert!(e.to_string().contains("log"), "names the path: {e}");
    std::fs::remove_dir_all(&d).unwrap();
}
