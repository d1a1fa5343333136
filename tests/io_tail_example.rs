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
