//! Process setup applied in the child before exec (IO::Async's `setup`:
//! rlimits, umask, chdir, env, nice, setuid/setgid/setgroups), and
//! run_child's `fail_on_nonzero` and `cancel_signal`.

#[macro_use]
mod support;

use std::{os::fd::OwnedFd, time::Duration};

use ioasync::{
    process::{Command, ExitStatus, RLIM_INFINITY, Resource, Stdio},
    signal::SignalKind,
};
use support::{bounded, test_loop};
use tokio::io::AsyncBufReadExt;

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

async fn stdout_of(cmd: Command) -> String {
    let out = bounded("run_child", test_loop().run_child(cmd, "")).await;
    let out = out.unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.to_vec()).unwrap()
}

flavours!(rlimits_are_set_in_the_child);
async fn rlimits_are_set_in_the_child() {
    let mut cmd = sh("ulimit -Sn; ulimit -Hn; ulimit -Sc");
    cmd.rlimit(Resource::NoFile, 64, 128)
        .rlimit(Resource::Core, 0, RLIM_INFINITY);
    assert_eq!(stdout_of(cmd).await, "64\n128\n0\n");
    // A soft limit above the hard one: the step and errno are named.
    let mut cmd = Command::new("true");
    cmd.rlimit(Resource::NoFile, 128, 64);
    let err = test_loop().run_child(cmd, "").await.unwrap_err();
    assert_eq!((err.op(), err.errno()), ("setrlimit", Some(libc::EINVAL)));
    assert!(err.to_string().contains("true"), "{err}");
}

flavours!(umask_is_set_in_the_child);
async fn umask_is_set_in_the_child() {
    let mut cmd = sh("umask");
    cmd.umask(0o027);
    assert_eq!(stdout_of(cmd).await, "0027\n");
    let mut cmd = sh("umask");
    cmd.umask(0o777);
    assert_eq!(stdout_of(cmd).await, "0777\n");
}

flavours!(chdir_and_a_cleared_environment_are_set_in_the_child);
async fn chdir_and_a_cleared_environment_are_set_in_the_child() {
    let mut cmd = Command::new("/usr/bin/env");
    cmd.env_clear().env("ONLY", "this").current_dir("/");
    assert_eq!(stdout_of(cmd).await, "ONLY=this\n");
    let mut cmd = Command::new("/bin/pwd");
    cmd.current_dir("/usr/share");
    assert_eq!(stdout_of(cmd).await, "/usr/share\n");
    let mut cmd = Command::new("/bin/pwd");
    cmd.current_dir("/no/such/dir");
    let err = test_loop().run_child(cmd, "").await.unwrap_err();
    assert_eq!(
        (err.op(), err.errno()),
        ("chdir", Some(libc::ENOENT)),
        "{err}"
    );
    assert!(err.to_string().contains("pwd"), "{err}");
}

flavours!(nice_raises_the_childs_nice_value);
async fn nice_raises_the_childs_nice_value() {
    let base: i32 = stdout_of(Command::new("nice"))
        .await
        .trim()
        .parse()
        .unwrap();
    let mut cmd = Command::new("nice");
    cmd.nice(5);
    let got: i32 = stdout_of(cmd).await.trim().parse().unwrap();
    assert_eq!(got, (base + 5).min(19));
}

fn root() -> bool {
    if std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        return true;
    }
    eprintln!("skipped: setuid/setgid/setgroups need root");
    false
}

flavours!(setuid_setgid_and_setgroups_are_set_in_the_child);
async fn setuid_setgid_and_setgroups_are_set_in_the_child() {
    if !root() {
        return;
    }
    let mut cmd = sh("id -u; id -g; id -G");
    cmd.setgroups([1234, 5678]).setgid(4321).setuid(65534);
    assert_eq!(stdout_of(cmd).await, "65534\n4321\n4321 1234 5678\n");
    // setuid drops root: a root-only directory is out of reach after it.
    let mut cmd = sh("ls /root >/dev/null 2>&1 && echo reached || echo denied");
    cmd.setuid(65534);
    assert_eq!(stdout_of(cmd).await, "denied\n");
    // Bad ids: the step and errno are named.
    for (what, op) in [("uid", "setuid"), ("gid", "setgid")] {
        let mut cmd = Command::new("true");
        if what == "uid" {
            cmd.setuid(u32::MAX);
        } else {
            cmd.setgid(u32::MAX);
        }
        let err = test_loop().run_child(cmd, "").await.unwrap_err();
        assert_eq!((err.op(), err.errno()), (op, Some(libc::EINVAL)), "{err}");
    }
    // Once not root, setgroups is refused.
    let mut cmd = Command::new("true");
    cmd.setuid(65534).setgroups([1]);
    let out = test_loop().run_child(cmd, "").await;
    assert!(out.is_ok(), "setgroups runs before setuid: {out:?}");
}

flavours!(fail_on_nonzero_turns_a_failed_status_into_an_error);
async fn fail_on_nonzero_turns_a_failed_status_into_an_error() {
    let lp = test_loop();
    // Off (the default): the status is returned.
    let out = lp.run_child(sh("exit 3"), "").await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(3));
    let mut cmd = sh("echo oops >&2; exit 3");
    cmd.fail_on_nonzero(true);
    let err = lp.run_child(cmd, "").await.unwrap_err();
    assert_eq!(err.op(), "run_child");
    assert!(
        err.message().contains("sh exited with code 3") && err.message().contains("oops"),
        "{err}"
    );
    let mut cmd = sh("kill -9 $$");
    cmd.fail_on_nonzero(true);
    let err = lp.run_child(cmd, "").await.unwrap_err();
    assert!(err.message().contains("killed by SIGKILL"), "{err}");
    let mut cmd = sh("exit 0");
    cmd.fail_on_nonzero(true);
    assert!(lp.run_child(cmd, "").await.unwrap().status.success());
}

/// Runs a child that reports on fd 3 the signals it traps, drops its
/// run_child future once it is up, and returns what it reported and its
/// pid.
async fn cancel_with(sig: Option<SignalKind>) -> (Vec<String>, u32) {
    let lp = test_loop();
    let (r, w) = std::io::pipe().unwrap();
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        "for s in TERM INT HUP; do trap \"echo got-$s >&3; exit 0\" $s; done; \
         echo $$ >&3; sleep 100 3>&- & wait",
    ])
    .fd_from_child(3, Stdio::Fd(OwnedFd::from(w)));
    if let Some(sig) = sig {
        cmd.cancel_signal(sig);
    }
    let r = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(r)).unwrap();
    let mut lines = tokio::io::BufReader::new(r).lines();
    let mut run = Box::pin(lp.run_child(cmd, ""));
    let pid: u32 = tokio::select! {
        out = &mut run => panic!("run_child ended: {out:?}"),
        line = bounded("the pid", lines.next_line()) => line.unwrap().unwrap().parse().unwrap(),
    };
    drop(run); // cancel
    let mut got = Vec::new();
    while let Some(l) = bounded("the child's report", lines.next_line())
        .await
        .unwrap()
    {
        got.push(l);
    }
    // A sleep forked just after the group was signalled would outlive
    // the shell: end the group (the shell's pid is its id).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-(pid as i32)),
        nix::sys::signal::Signal::SIGKILL,
    );
    (got, pid)
}

/// Whether `pid` is gone (reaped by the cancelled run_child's reaper).
/// Reaping by another task has no event to await: this polls, bounded.
async fn reaped(pid: u32) -> bool {
    let proc = format!("/proc/{pid}");
    bounded("the reap", async {
        while std::path::Path::new(&proc).exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    true
}

flavours!(cancelling_run_child_terms_and_reaps_the_child);
async fn cancelling_run_child_terms_and_reaps_the_child() {
    let (got, pid) = cancel_with(None).await;
    assert_eq!(got, ["got-TERM"]);
    assert!(reaped(pid).await);
    let (got, pid) = cancel_with(Some(SignalKind::hangup())).await;
    assert_eq!(got, ["got-HUP"]);
    assert!(reaped(pid).await);
}
