//! The command-line contract of examples/timeout (coreutils `timeout`).

#[macro_use]
mod support;

use std::process::Stdio;

use support::{bounded, example, signal};
use tokio::{io::AsyncBufReadExt, process::Command};

async fn timeout(args: &[&str]) -> (Option<i32>, String) {
    let out = bounded(
        "timeout",
        Command::new(example("timeout"))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    // As a shell sees it: like coreutils, timeout dies of the signal that
    // killed its command.
    use std::os::unix::process::ExitStatusExt;
    let code = out.status.code().or(out.status.signal().map(|s| 128 + s));
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

flavours!(exit_codes_follow_coreutils_timeout);
async fn exit_codes_follow_coreutils_timeout() {
    let cases: &[(&[&str], i32)] = &[
        (&["5", "true"], 0),
        (&["5", "sh", "-c", "exit 3"], 3),
        (&["0.2", "sleep", "5"], 124),
        (&["--signal", "INT", "0.2", "sleep", "5"], 124),
        (
            &[
                "--kill-after",
                "0.2",
                "0.2",
                "sh",
                "-c",
                "trap '' TERM; sleep 5",
            ],
            137, // killed by the KILL, as coreutils says
        ),
        (&["5", "sh", "-c", "kill -9 $$"], 137),
        (&["5", "/no/such/command"], 127),
        (&["5", "/etc/passwd"], 126),
        (&[], 125),
        (&["soon", "true"], 125),
        (&["--signal", "NOPE", "1", "true"], 125),
        (&["5"], 125),
    ];
    for (args, want) in cases {
        let (code, err) = timeout(args).await;
        assert_eq!(code, Some(*want), "timeout {args:?}: {err}");
    }
}

flavours!(sigint_and_sigterm_are_forwarded_to_the_command);
async fn sigint_and_sigterm_are_forwarded_to_the_command() {
    for (sig, code) in [("TERM", 143), ("INT", 130)] {
        // The command reports it is running, then waits to be signalled.
        let mut child = Command::new(example("timeout"))
            .args(["30", "sh", "-c", "echo up; exec sleep 30"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(
            bounded("up", lines.next_line()).await.unwrap().as_deref(),
            Some("up")
        );
        signal(&child, sig).await;
        let st = bounded("exit", child.wait()).await.unwrap();
        assert_eq!(st.code(), Some(code), "SIG{sig}");
    }
}
