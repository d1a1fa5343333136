//! examples/timeout against coreutils `timeout`, side by side, case by
//! case: the same arguments to both, the same exit code (as a shell sees
//! it: the code, or 128+N for death by signal N) and the same stdout.
//!
//! `cargo test --test X` does not rebuild examples: run `cargo build
//! --examples` first (a plain `cargo test` builds them).

#[macro_use]
mod support;

use std::process::Stdio;

use support::{bounded, example};
use tokio::{io::AsyncBufReadExt, process::Command};

const COREUTILS: &str = "/usr/bin/timeout";

fn coreutils() -> Option<&'static str> {
    if std::path::Path::new(COREUTILS).exists() {
        return Some(COREUTILS);
    }
    let hint = "coreutils timeout is missing at /usr/bin/timeout";
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{hint}");
    }
    eprintln!("skipped: {hint}");
    None
}

/// What a shell sees of a status: the code, or 128+N.
fn shell_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// Runs `prog args` with stdin from /dev/null: (shell code, stdout).
async fn run(prog: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    (
        shell_code(out.status),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const IGNORE_TERM_5: &str = "trap '' TERM; sleep 5";

/// The argument cases, with what coreutils answers (checked too, so a
/// changed coreutils shows as such).
const CASES: &[(&[&str], i32)] = &[
    (&["5", "true"], 0),
    (&["5", "sh", "-c", "exit 3"], 3),
    (&["5", "sh", "-c", "echo out; echo err >&2"], 0),
    (&["5", "sh", "-c", "cat"], 0),
    (&["0.2", "sleep", "5"], 124),
    (&["0.5s", "sleep", "5"], 124),
    (&["0.01m", "sleep", "5"], 124),
    (&["--signal", "INT", "0.2", "sleep", "5"], 124),
    (&["-s", "INT", "0.2", "sleep", "5"], 124),
    (&["5", "sh", "-c", "kill -9 $$"], 137),
    (&["5", "sh", "-c", "kill -TERM $$"], 143),
    (&["5", "/no/such/command"], 127),
    (&["5", "/etc/passwd"], 126),
    (&[], 125),
    (&["soon", "true"], 125),
    (&["--signal", "NOPE", "1", "true"], 125),
    (&["5"], 125),
    (&["-5", "true"], 125),
    (&["--", "5", "true"], 0),
    // The seven that differed (issue 13).
    (&["0", "sh", "-c", "sleep 0.3; echo done"], 0),
    (&["-s", "KILL", "0.2", "sleep", "5"], 137),
    (&["-k", "1", "0.2", "sh", "-c", IGNORE_TERM_5], 137),
    (&["1e30", "sh", "-c", "echo done"], 0),
    (&["1e19", "sh", "-c", "echo done"], 0),
    (
        &[
            "-k",
            "0",
            "0.2",
            "sh",
            "-c",
            "trap '' TERM; sleep 1; echo survived",
        ],
        124,
    ),
    // Spellings of the same options.
    (&["--kill-after=0.2", "0.2", "sh", "-c", IGNORE_TERM_5], 137),
    (&["--signal=KILL", "0.2", "sleep", "5"], 137),
];

flavours!(exit_codes_and_stdout_match_coreutils_timeout_case_by_case);
async fn exit_codes_and_stdout_match_coreutils_timeout_case_by_case() {
    let Some(theirs) = coreutils() else { return };
    let ours = &example("timeout");
    let theirs = std::path::Path::new(theirs);
    // All cases at once: the slow ones wait out timers, not the CPU.
    let runs = CASES.iter().map(|(args, _)| async move {
        let (a, b) = tokio::join!(run(ours, args), run(theirs, args));
        (args, a, b)
    });
    let results = bounded("every case", futures_util::future::join_all(runs)).await;
    let mut diffs = Vec::new();
    for ((args, ours, theirs), (_, want)) in results.into_iter().zip(CASES) {
        assert_eq!(theirs.0, *want, "coreutils timeout {args:?} changed");
        if ours != theirs {
            diffs.push(format!(
                "timeout {args:?}: ours {ours:?}, coreutils {theirs:?}"
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Runs `prog args` as a background job of a shell (so SIGINT and SIGQUIT
/// start ignored), waits for the command's `up`, sends `sig` to `prog`,
/// and returns the status the shell's `wait` saw.
async fn background_signalled(prog: &std::path::Path, args: &[&str], sig: &str) -> i32 {
    let mut sh = Command::new("sh");
    sh.args(["-c", "\"$@\" & echo $!; wait $!; echo \"status $?\"", "sh"])
        .arg(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = sh.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || bounded("a line", lines.next_line()).await.unwrap().unwrap();
    // The shell's `echo $!` and the command's `up`, in either order.
    let (a, b) = (next().await, next().await);
    let pid = if a == "up" { b } else { a };
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .await
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
    let status = next().await;
    bounded("the shell", child.wait()).await.unwrap();
    status.strip_prefix("status ").unwrap().parse().unwrap()
}

// The command says `up` a moment after it starts: coreutils has a race of
// its own (a signal that arrives before its fork() returned in the parent
// makes it _exit(128+N) without forwarding), and it announces nothing we
// could await, so the command waits a little before saying it is up.
const UP: &str = "sleep 0.3; echo up; exec sleep 30";
const UP_IGNORING_TERM: &str = "trap '' TERM; sleep 0.3; echo up; exec sleep 30";

flavours!(signals_sent_to_timeout_match_coreutils_timeout_case_by_case);
async fn signals_sent_to_timeout_match_coreutils_timeout_case_by_case() {
    let Some(theirs) = coreutils() else { return };
    let ours = &example("timeout");
    let theirs = std::path::Path::new(theirs);
    let cases: &[(&[&str], &str, i32)] = &[
        (&["30", "sh", "-c", UP], "TERM", 143),
        (&["30", "sh", "-c", UP], "INT", 130),
        (&["30", "sh", "-c", UP], "HUP", 129),
        // The QUIT a background job starts with ignored is forwarded, and
        // the command gets it with the default disposition.
        (&["30", "sh", "-c", UP], "QUIT", 131),
        // TERM forwarded to a command that ignores it: KILL after -k.
        (
            &["-k", "1", "30", "sh", "-c", UP_IGNORING_TERM],
            "TERM",
            137,
        ),
    ];
    let runs = cases.iter().map(|(args, sig, _)| async move {
        let (a, b) = tokio::join!(
            background_signalled(ours, args, sig),
            background_signalled(theirs, args, sig)
        );
        (args, sig, a, b)
    });
    let results = bounded("every case", futures_util::future::join_all(runs)).await;
    let mut diffs = Vec::new();
    for ((args, sig, ours, theirs), (_, _, want)) in results.into_iter().zip(cases) {
        assert_eq!(
            theirs, *want,
            "coreutils timeout {args:?} on SIG{sig} changed"
        );
        if ours != theirs {
            diffs.push(format!(
                "SIG{sig} to timeout {args:?}: ours {ours}, coreutils {theirs}"
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
