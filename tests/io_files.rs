//! File watchers and followed files on real files.

#[macro_use]
mod support;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use ioasync::{
    fs::{File, FileEvent, FileStream, FileStreamEvent, OnTruncate, StartAt},
    io::ReadAction,
    notifier::{IntoSpec, Subscription},
    test_util::Recorder,
};
use support::{append, bounded, bounded_for, test_loop};
use tokio::sync::Notify;

fn dir(name: &str) -> PathBuf {
    support::fresh_dir(name)
}

/// A FileStream collecting whole lines; `notify` fires on each batch.
fn lines_of(
    name: &str,
    path: &Path,
    start: StartAt,
) -> (
    ioasync::fs::FileStreamSpec,
    Arc<Mutex<Vec<String>>>,
    Arc<Notify>,
) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let notify = Arc::new(Notify::new());
    let (l, n) = (lines.clone(), notify.clone());
    let spec = FileStream::spec(name, path)
        .start(start)
        .interval(Duration::from_millis(5))
        .on_read(move |buf, _| {
            let mut l = l.lock().unwrap();
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(i + 1);
                l.push(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            n.notify_one();
            ReadAction::Wait
        });
    (spec, lines, notify)
}

async fn wait_lines(lines: &Mutex<Vec<String>>, notify: &Notify, n: usize) {
    bounded_for(Duration::from_secs(30), "lines", async {
        while lines.lock().unwrap().len() < n {
            notify.notified().await;
        }
    })
    .await
}

flavours!(ten_thousand_lines_appended_in_bursts_arrive_once_in_order);
async fn ten_thousand_lines_appended_in_bursts_arrive_once_in_order() {
    let lp = test_loop();
    let d = dir("burst");
    let path = d.join("log");
    append(&path, "old line\n");
    let (spec, lines, notify) = lines_of("f", &path, StartAt::End);
    lp.add(spec).await.unwrap();
    for burst in 0..100 {
        let text: String = (0..100)
            .map(|i| format!("line {}\n", burst * 100 + i))
            .collect();
        append(&path, &text);
        if burst % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    wait_lines(&lines, &notify, 10_000).await;
    let got = lines.lock().unwrap().clone();
    let want: Vec<String> = (0..10_000).map(|i| format!("line {i}")).collect();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(truncation_and_rotation_lose_nothing_written_after_them);
async fn truncation_and_rotation_lose_nothing_written_after_them() {
    let lp = test_loop();
    let d = dir("rotate");
    let path = d.join("log");
    append(&path, "a1\na2\n");
    let (rec, sub) = Recorder::new();
    let (spec, lines, notify) = lines_of("f", &path, StartAt::Beginning);
    lp.add(spec.on_truncate(OnTruncate::FromStart).subscribe(sub))
        .await
        .unwrap();
    wait_lines(&lines, &notify, 2).await;
    // Truncate, then write: the new content is read from its start.
    std::fs::write(&path, "").unwrap();
    bounded("truncated", async {
        while !rec
            .events()
            .iter()
            .any(|e| matches!(e, FileStreamEvent::Truncated))
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    append(&path, "b1\nb2\n");
    wait_lines(&lines, &notify, 4).await;
    // Rotate: the old file gets a last line, the path names a new file.
    append(&path, "b3\n");
    std::fs::rename(&path, d.join("log.1")).unwrap();
    append(&d.join("log.1"), "b4\n");
    append(&path, "c1\nc2\n");
    wait_lines(&lines, &notify, 8).await;
    assert_eq!(
        *lines.lock().unwrap(),
        ["a1", "a2", "b1", "b2", "b3", "b4", "c1", "c2"]
    );
    assert!(
        rec.events()
            .iter()
            .any(|e| matches!(e, FileStreamEvent::Rotated))
    );
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(last_n_lines_and_a_path_that_appears_later);
async fn last_n_lines_and_a_path_that_appears_later() {
    let lp = test_loop();
    let d = dir("lastn");
    let path = d.join("log");
    append(
        &path,
        &(1..=20).map(|i| format!("{i}\n")).collect::<String>(),
    );
    let (spec, lines, notify) = lines_of("f", &path, StartAt::LastLines(3));
    lp.add(spec).await.unwrap();
    wait_lines(&lines, &notify, 3).await;
    assert_eq!(*lines.lock().unwrap(), ["18", "19", "20"]);
    // A missing path is waited for.
    let later = d.join("later");
    let (spec, lines2, notify2) = lines_of("g", &later, StartAt::Beginning);
    lp.add(spec).await.unwrap();
    append(&later, "hello\n");
    wait_lines(&lines2, &notify2, 1).await;
    assert_eq!(*lines2.lock().unwrap(), ["hello"]);
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(file_events_fire_once_per_change_and_report_removal_and_recreation);
async fn file_events_fire_once_per_change_and_report_removal_and_recreation() {
    let lp = test_loop();
    let d = dir("watch");
    let path = d.join("f");
    std::fs::write(&path, "x").unwrap();
    let (rec, sub) = Recorder::new();
    let w = lp
        .add(File::spec("w", &path, Duration::from_millis(5)))
        .await
        .unwrap();
    w.subscribe(sub).unwrap();
    let wait = |pred: fn(&FileEvent) -> bool, n: usize| {
        let rec = &rec;
        async move {
            bounded("file events", async {
                while rec.events().iter().filter(|e| pred(e)).count() < n {
                    tokio::task::yield_now().await;
                }
            })
            .await
        }
    };
    wait(|e| matches!(e, FileEvent::Appeared(_)), 1).await;
    append(&path, "yz");
    wait(|e| matches!(e, FileEvent::Size { old: 1, new: 3 }), 1).await;
    std::fs::remove_file(&path).unwrap();
    wait(|e| matches!(e, FileEvent::Vanished(_)), 1).await;
    std::fs::write(&path, "again").unwrap();
    wait(|e| matches!(e, FileEvent::Appeared(_)), 2).await;
    // Up to the removal: the recreation (`write`: create, then write) is
    // two changes, which change events may well see apart.
    let evs: Vec<FileEvent> = rec
        .events()
        .into_iter()
        .take_while(|e| !matches!(e, FileEvent::Vanished(_)))
        .collect();
    let sizes = evs
        .iter()
        .filter(|e| matches!(e, FileEvent::Size { .. }))
        .count();
    let changed = evs
        .iter()
        .filter(|e| matches!(e, FileEvent::Changed { .. }))
        .count();
    assert_eq!(
        (sizes, changed),
        (1, 1),
        "one size change, one Changed: {evs:?}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

flavours!(an_unreadable_path_gives_a_clear_error_with_errno);
async fn an_unreadable_path_gives_a_clear_error_with_errno() {
    let lp = test_loop();
    // A path under a regular file: stat fails with ENOTDIR.
    let (rec, sub) = Recorder::new();
    lp.add(File::spec(
        "bad",
        "/etc/passwd/inside",
        Duration::from_millis(5),
    ))
    .await
    .unwrap()
    .subscribe(sub)
    .unwrap();
    let evs = bounded("error", rec.wait_len(1)).await;
    let FileEvent::Error(e) = &evs[0] else {
        panic!("{evs:?}")
    };
    assert_eq!((e.op(), e.errno()), ("stat", Some(20)), "{e}");
    // A directory read as a file: read fails with EISDIR.
    let (rec, sub) = Recorder::new();
    lp.add(
        FileStream::spec("dir", "/etc")
            .start(StartAt::Beginning)
            .interval(Duration::from_millis(5))
            .subscribe(sub),
    )
    .await
    .unwrap();
    let err = bounded("error", async {
        loop {
            if let Some(FileStreamEvent::Error(e)) = rec
                .events()
                .into_iter()
                .find(|e| matches!(e, FileStreamEvent::Error(_)))
            {
                return e;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!((err.op(), err.errno()), ("read", Some(21)), "{err}");
}

flavours!(loop_watch_file_and_its_guard_unwatches);
async fn loop_watch_file_and_its_guard_unwatches() {
    let lp = test_loop();
    let d = dir("loopwatch");
    let path = d.join("f");
    let seen = Arc::new(Mutex::new(0usize));
    let s = seen.clone();
    let watch = lp
        .watch_file(&path, Duration::from_millis(5), move |e| {
            if let FileEvent::Appeared(_) = e {
                *s.lock().unwrap() += 1;
            }
        })
        .await
        .unwrap();
    std::fs::write(&path, "now").unwrap();
    bounded("appeared", async {
        while *seen.lock().unwrap() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let at = watch.path().to_string();
    assert!(watch.is_active());
    // Stopped by other means first: cancel says it was no longer running.
    lp.remove(&at).await.unwrap();
    assert!(!watch.cancel().await, "already gone");
    // A dropped guard removes its watch.
    let dropped = lp
        .watch_file(&path, Duration::from_millis(5), |_| {})
        .await
        .unwrap();
    let at = dropped.path().to_string();
    let n = dropped.notifier().clone();
    drop(dropped);
    bounded("the dropped watch stops", n.wait_stopped()).await;
    assert!(lp.tree().find(&at).is_none(), "{}", lp.tree());
    let _ = Subscription::<FileEvent>::closure(|_| {});
    std::fs::remove_dir_all(&d).unwrap();
}
