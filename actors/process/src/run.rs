//! The Loop's child helpers: `spawn_child` (pid + exit future) and
//! `run_child` (IO::Async's `run_process`: feed stdin, capture stdout and
//! stderr, return the status).

use bytes::Bytes;
use ioasync_core::{Error, ErrorKind, Result};
use ioasync_signal::SignalKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Command, ExitStatus, Stdio, sys};

/// A child started by [`spawn_child`]: its pid and its exit.
#[derive(Debug)]
pub struct SpawnedChild {
    pid: u32,
    child: tokio::process::Child,
}

impl SpawnedChild {
    /// The pid.
    ///
    /// ```
    /// use ioasync::{Loop, process::Command};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut child = lp.spawn_child(Command::new("true"))?;
    /// assert!(child.pid() > 0);
    /// assert!(child.wait().await?.success());
    /// # Ok(()) }
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the exit (and reaps). Cancel safe.
    ///
    /// ```
    /// use ioasync::{Loop, process::Command};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "exit 6"]);
    /// let mut child = lp.spawn_child(cmd)?;
    /// assert_eq!(child.wait().await?.code(), Some(6));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the child is reaped only when its status is returned;
    /// dropped before, call `wait` again.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        self.child
            .wait()
            .await
            .map(ExitStatus::from)
            .map_err(|e| Error::io("wait", e))
    }

    /// Sends SIGKILL now.
    ///
    /// ```
    /// use ioasync::{Loop, process::Command, signal::SignalKind};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> ioasync::Result<()> {
    /// let lp = Loop::current()?;
    /// let mut cmd = Command::new("sleep");
    /// cmd.arg("30");
    /// let mut child = lp.spawn_child(cmd)?;
    /// child.start_kill()?;
    /// assert_eq!(child.wait().await?.signal(), Some(SignalKind::kill()));
    /// # Ok(()) }
    /// ```
    pub fn start_kill(&mut self) -> Result<()> {
        self.child.start_kill().map_err(|e| Error::io("kill", e))
    }
}

/// Starts `cmd`; a dropped [`SpawnedChild`] is still reaped (tokio's
/// orphan queue) and, by default, dies with this process — with the
/// process, not with the calling thread: the fork happens on a spawn
/// thread that lives as long as the process, so this may be called from
/// any thread inside a tokio runtime (a `std::thread` after
/// `Handle::enter`, `spawn_blocking`). It blocks the caller for the
/// fork-exec, as `std::process::Command::spawn` does.
pub fn spawn_child(cmd: Command) -> Result<SpawnedChild> {
    let (child, _ends) = cmd.prepare()?.spawn()?;
    let pid = child.id().unwrap_or(0);
    Ok(SpawnedChild { pid, child })
}

/// What [`run_child`] captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Bytes,
    /// Everything it wrote to stderr.
    pub stderr: Bytes,
}

/// Runs `cmd` with `stdin` as its input, capturing stdout and stderr
/// (IO::Async's `run_process`). Exec failures are errors of op `exec`
/// (or of the setup step that failed, e.g. `setuid`).
///
/// With [`Command::fail_on_nonzero`], a status other than exit code 0 is
/// an error of op `run_child` naming the program and the status. Dropping
/// the future before the child exited sends it [`Command::cancel_signal`]
/// (SIGTERM by default; to its process group when it leads one) and reaps
/// it in the background.
///
/// # Cancel safety
///
/// Dropped before the child exited, the child is sent
/// [`Command::cancel_signal`] and reaped in the background; what it wrote
/// is lost.
pub async fn run_child(mut cmd: Command, stdin: impl Into<Bytes>) -> Result<ChildOutput> {
    cmd.stdin(Stdio::Pipe)
        .stdout(Stdio::Pipe)
        .stderr(Stdio::Pipe);
    let (child, rest) = cmd.prepare()?.spawn_async().await?;
    let mut guard = CancelGuard {
        pid: child.id().unwrap_or(0),
        child: Some(child),
        group: rest.own_group,
        signal: rest.cancel_signal,
    };
    let mut fds: Vec<_> = rest.ends.into_iter().map(|e| (e.n, e.fd)).collect();
    let mut take = |n| {
        let i = fds.iter().position(|(k, _)| *k == n)?;
        Some(fds.remove(i).1)
    };
    let pipe_err = |e| Error::io("pipe", e);
    let input = take(0).map(tokio::net::unix::pipe::Sender::from_owned_fd);
    let out = take(1).map(tokio::net::unix::pipe::Receiver::from_owned_fd);
    let err = take(2).map(tokio::net::unix::pipe::Receiver::from_owned_fd);
    let (Some(input), Some(out), Some(err)) = (input, out, err) else {
        return Err(Error::invalid_input("run_child", "pipes were not set up"));
    };
    let (mut input, mut out, mut err) = (
        input.map_err(pipe_err)?,
        out.map_err(pipe_err)?,
        err.map_err(pipe_err)?,
    );
    let data: Bytes = stdin.into();
    let feed = async move {
        // A child that exits without reading makes this fail with EPIPE:
        // that is its business, not an error of ours.
        let _ = input.write_all(&data).await;
        drop(input);
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let child = guard.child.as_mut().expect("set above");
    let (_, ro, re, st) = tokio::join!(
        feed,
        out.read_to_end(&mut o),
        err.read_to_end(&mut e),
        child.wait()
    );
    if st.is_ok() {
        guard.child = None; // reaped
    }
    let (o, e) = (ro.map(|_| o), re.map(|_| e));
    let read_err = |e| Error::io("read", e);
    let out = ChildOutput {
        status: st.map_err(|e| Error::io("wait", e))?.into(),
        stdout: o.map_err(read_err)?.into(),
        stderr: e.map_err(read_err)?.into(),
    };
    if rest.fail_on_nonzero && !out.status.success() {
        let mut msg = format!("{} {}", rest.program.to_string_lossy(), out.status);
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim_end();
        if !said.is_empty() {
            let cut: String = said.chars().take(200).collect();
            msg.push_str(": ");
            msg.push_str(&cut);
        }
        return Err(Error::new("run_child", ErrorKind::Other, msg));
    }
    Ok(out)
}

/// Signals and reaps a child whose [`run_child`] was dropped.
struct CancelGuard {
    child: Option<tokio::process::Child>,
    pid: u32,
    group: bool,
    signal: SignalKind,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return; // exited and reaped just now
        }
        sys::signal(self.pid, self.group, self.signal.as_raw());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let _ = child.wait().await;
                });
            }
            // No runtime: tokio's orphan queue reaps it.
            Err(_) => drop(child),
        }
    }
}
