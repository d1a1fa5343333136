//! The Loop's child helpers: `spawn_child` (pid + exit future) and
//! `run_child` (IO::Async's `run_process`: feed stdin, capture stdout and
//! stderr, return the status).

use bytes::Bytes;
use ioasync_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Command, ExitStatus, Stdio};

/// A child started by [`spawn_child`]: its pid and its exit.
#[derive(Debug)]
pub struct SpawnedChild {
    pid: u32,
    child: tokio::process::Child,
}

impl SpawnedChild {
    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the exit (and reaps). Cancel safe.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        self.child
            .wait()
            .await
            .map(ExitStatus::from)
            .map_err(|e| Error::io("wait", e))
    }

    /// Sends SIGKILL now.
    pub fn start_kill(&mut self) -> Result<()> {
        self.child.start_kill().map_err(|e| Error::io("kill", e))
    }
}

/// Starts `cmd`; a dropped [`SpawnedChild`] is still reaped (tokio's
/// orphan queue) and, by default, dies with this process.
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
/// (IO::Async's `run_process`). Exec failures are errors of op `exec`.
pub async fn run_child(mut cmd: Command, stdin: impl Into<Bytes>) -> Result<ChildOutput> {
    cmd.stdin(Stdio::Pipe)
        .stdout(Stdio::Pipe)
        .stderr(Stdio::Pipe);
    let (mut child, ends) = cmd.prepare()?.spawn()?;
    let mut fds: Vec<_> = ends.into_iter().map(|e| (e.n, e.fd)).collect();
    fds.sort_by_key(|(n, _)| *n);
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
    let (_, ro, re, st) = tokio::join!(
        feed,
        out.read_to_end(&mut o),
        err.read_to_end(&mut e),
        child.wait()
    );
    let (o, e) = (ro.map(|_| o), re.map(|_| e));
    let read_err = |e| Error::io("read", e);
    Ok(ChildOutput {
        status: st.map_err(|e| Error::io("wait", e))?.into(),
        stdout: o.map_err(read_err)?.into(),
        stderr: e.map_err(read_err)?.into(),
    })
}
