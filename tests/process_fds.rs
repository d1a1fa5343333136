//! IO::Async's child fd contract: a child sees exactly the fds its
//! Command names (every other fd is closed, close-on-exec or not), `keep`
//! keeps one, fds swap correctly whatever their numbers, an fd can be
//! closed.
//!
//! Swapping our fds 3 and 4 needs a parent whose fds 3 and 4 are ours to
//! give: this test binary run again as a helper
//! (`IOASYNC_FDS_HELPER=swap`, the `helper` test) with pipes there.

#[macro_use]
mod support;

use std::{
    io::Read,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use ioasync::process::{Command, Stdio};
use support::{bounded, test_loop};

const HELPER: &str = "IOASYNC_FDS_HELPER";

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

/// bash: dash redirects only fds 0 to 9.
fn bash(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-c", script]);
    c
}

/// The fd numbers the shell itself holds (`ls` lists its parent's table).
fn fd_list(out: &[u8]) -> Vec<RawFd> {
    let mut v: Vec<RawFd> = std::str::from_utf8(out)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    v.sort_unstable();
    v
}

const LIST: &str = "ls /proc/$$/fd";

/// An fd of ours that is *not* close-on-exec (`dup(2)` clears the flag):
/// the kind that leaks into children unless they close it.
fn leaky_fd() -> OwnedFd {
    nix::unistd::dup(std::io::stderr()).unwrap()
}

flavours!(a_child_sees_exactly_the_fds_the_command_names);
async fn a_child_sees_exactly_the_fds_the_command_names() {
    let lp = test_loop();
    let leak = leaky_fd();
    let (_r, w) = std::io::pipe().unwrap();
    let kept = leaky_fd();
    let mut cmd = sh(LIST);
    cmd.fd_from_child(7, Stdio::Fd(OwnedFd::from(w)))
        .fd_to_child(9, Stdio::Null)
        .keep_fd(kept.as_raw_fd());
    let out = lp.run_child(cmd, "").await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut want = vec![0, 1, 2, 7, 9, kept.as_raw_fd()];
    want.sort_unstable();
    assert_eq!(
        fd_list(&out.stdout),
        want,
        "not named: leaky fd {}",
        leak.as_raw_fd()
    );
    // The same command with the contract turned off lets the leak in.
    let mut cmd = sh(LIST);
    cmd.close_other_fds(false);
    let out = lp.run_child(cmd, "").await.unwrap();
    assert!(
        fd_list(&out.stdout).contains(&leak.as_raw_fd()),
        "close_other_fds(false) closed fd {} anyway",
        leak.as_raw_fd()
    );
}

flavours!(an_fd_can_be_closed_in_the_child);
async fn an_fd_can_be_closed_in_the_child() {
    let lp = test_loop();
    let (mut r, w) = std::io::pipe().unwrap();
    let mut cmd = sh(LIST);
    cmd.stdout(Stdio::Fd(OwnedFd::from(w)))
        .close_fd(0)
        .close_fd(2)
        .fd_to_child(5, Stdio::Null)
        .close_fd(5); // the later setting wins
    let mut child = lp.spawn_child(cmd).unwrap();
    assert!(bounded("exit", child.wait()).await.unwrap().success());
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(fd_list(&out), [1]);
    // close_fd also works with the contract off.
    let (mut r, w) = std::io::pipe().unwrap();
    let mut cmd = sh(LIST);
    cmd.stdout(Stdio::Fd(OwnedFd::from(w)))
        .close_fd(0)
        .close_other_fds(false);
    let mut child = lp.spawn_child(cmd).unwrap();
    assert!(bounded("exit", child.wait()).await.unwrap().success());
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    let fds = fd_list(&out);
    assert!(fds.contains(&2) && !fds.contains(&0), "{fds:?}");
}

flavours!(a_kept_fd_works);
async fn a_kept_fd_works() {
    let lp = test_loop();
    // A close-on-exec pipe of ours: keep clears the flag in the child.
    let (r, w) = std::io::pipe().unwrap();
    let n = w.as_raw_fd();
    let mut cmd = bash(&format!("echo kept >&{n}"));
    cmd.keep_fd(n);
    let out = lp.run_child(cmd, "").await.unwrap();
    assert!(out.status.success(), "{out:?}");
    drop(w);
    let mut got = String::new();
    std::io::BufReader::new(r).read_to_string(&mut got).unwrap();
    assert_eq!(got, "kept\n");
    // Stdio::Inherit on a high fd is the same keep.
    let (r, w) = std::io::pipe().unwrap();
    let n = w.as_raw_fd();
    let mut cmd = bash(&format!("echo inherited >&{n}"));
    cmd.fd_from_child(n, Stdio::Inherit);
    assert!(lp.run_child(cmd, "").await.unwrap().status.success());
    drop(w);
    let mut got = String::new();
    std::io::BufReader::new(r).read_to_string(&mut got).unwrap();
    assert_eq!(got, "inherited\n");
}

/// Pipes whose write ends are at two fd numbers `a` and `b`; the child
/// gets our `a` as its `b` and our `b` as its `a`.
async fn swap_crosswise(a: RawFd, b: RawFd, wa: OwnedFd, wb: OwnedFd, ra: OwnedFd, rb: OwnedFd) {
    assert_eq!((wa.as_raw_fd(), wb.as_raw_fd()), (a, b));
    let mut cmd = bash(&format!("echo to-{a} >&{a}; echo to-{b} >&{b}"));
    cmd.fd_from_child(b, Stdio::Fd(wa))
        .fd_from_child(a, Stdio::Fd(wb));
    let mut child = ioasync::process::spawn_child(cmd).unwrap();
    assert!(bounded("exit", child.wait()).await.unwrap().success());
    let read = |fd: OwnedFd| {
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    };
    // What the child wrote to its `b` came out of our `a`'s pipe.
    assert_eq!(
        (read(ra), read(rb)),
        (format!("to-{b}\n"), format!("to-{a}\n"))
    );
}

flavours!(two_fds_swapped_onto_each_others_numbers_arrive_crosswise);
async fn two_fds_swapped_onto_each_others_numbers_arrive_crosswise() {
    let _lp = test_loop();
    let (ra, wa) = std::io::pipe().unwrap();
    let (rb, wb) = std::io::pipe().unwrap();
    let (wa, wb) = (OwnedFd::from(wa), OwnedFd::from(wb));
    let (a, b) = (wa.as_raw_fd(), wb.as_raw_fd());
    swap_crosswise(a, b, wa, wb, ra.into(), rb.into()).await;
}

flavours!(fds_3_and_4_swapped_arrive_crosswise);
async fn fds_3_and_4_swapped_arrive_crosswise() {
    let lp = test_loop();
    // The helper gets pipes at its fds 3 and 4 and swaps them for its own
    // child; what that child writes to its 3 comes out of the helper's 4.
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "helper", "--nocapture", "--test-threads=1"])
        .env(HELPER, "swap")
        .fd_from_child(3, Stdio::Pipe)
        .fd_from_child(4, Stdio::Pipe)
        .stdout(Stdio::Null);
    let out = lp
        .open_process(ioasync::process::Process::spec("swap-helper", cmd))
        .await
        .unwrap();
    let (three, four) = (out.take_fd(3).unwrap(), out.take_fd(4).unwrap());
    let st = bounded("helper exit", out.wait()).await.unwrap();
    assert!(st.success(), "helper: {st}");
    let read = |fd: OwnedFd| {
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    };
    assert_eq!(
        (read(three), read(four)),
        ("to-4\n".into(), "to-3\n".into())
    );
}

/// Helper mode `swap`: our fds 3 and 4 are pipes from the test; hand them
/// to a child swapped.
#[test]
fn helper() {
    if std::env::var(HELPER).as_deref() != Ok("swap") {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: the test started us with pipes at fds 3 and 4, owned by
    // nothing else in this process.
    let (w3, w4) = unsafe { (OwnedFd::from_raw_fd(3), OwnedFd::from_raw_fd(4)) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cmd = sh("echo to-3 >&3; echo to-4 >&4");
        cmd.fd_from_child(4, Stdio::Fd(w3))
            .fd_from_child(3, Stdio::Fd(w4));
        let mut child = ioasync::process::spawn_child(cmd).unwrap();
        assert!(child.wait().await.unwrap().success());
    });
}

flavours!(an_exec_error_is_reported_when_fd_targets_cover_the_low_numbers);
async fn an_exec_error_is_reported_when_fd_targets_cover_the_low_numbers() {
    let lp = test_loop();
    // Targets 3 to 60 cover our lowest free fd numbers, where std's
    // exec-error pipe would land (and be overwritten by a dup2) unless the
    // spawn keeps it above every target.
    let mut cmd = Command::new("/no/such/binary");
    for n in 3..=60 {
        cmd.fd_to_child(n, Stdio::Null);
    }
    let err = lp.run_child(cmd, "").await.unwrap_err();
    assert_eq!((err.op(), err.errno()), ("exec", Some(2)), "{err}");
}
