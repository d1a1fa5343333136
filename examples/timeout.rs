//! coreutils `timeout`, built from a Process, Countdowns and Signal
//! watchers.
//!
//! ```text
//! cargo run --example timeout -- [--signal SIG] [--kill-after SECS] SECS CMD [ARG...]
//! ```
//!
//! Runs CMD with inherited stdio. Exits with CMD's exit code; 124 when the
//! time ran out (after sending SIG, default TERM, and KILL `--kill-after`
//! later if CMD is still running); 125 for its own usage errors; 126 when
//! CMD cannot be executed; 127 when CMD is not found; 128+N when CMD died
//! of signal N. SIGINT and SIGTERM sent to it are forwarded to CMD.
//! Durations are seconds, or take a suffix: `s`, `m`, `h`, `d`.

use std::{process::ExitCode, time::Duration};

use ioasync::Overflow;
use ioasync::{
    Command, Countdown, ExitStatus, Expired, Loop, Process, Signal, SignalEvent, SignalKind,
};

struct Args {
    signal: SignalKind,
    kill_after: Option<Duration>,
    duration: Duration,
    cmd: Vec<String>,
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("timeout: {msg}");
    eprintln!("usage: timeout [--signal SIG] [--kill-after SECS] SECS CMD [ARG...]");
    ExitCode::from(125)
}

fn duration(s: &str) -> Result<Duration, String> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1.0),
        Some('m') => (&s[..s.len() - 1], 60.0),
        Some('h') => (&s[..s.len() - 1], 3600.0),
        Some('d') => (&s[..s.len() - 1], 86400.0),
        _ => (s, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Duration::from_secs_f64(v * mult)),
        _ => Err(format!("invalid time interval {s:?}")),
    }
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut signal = SignalKind::terminate();
    let mut kill_after = None;
    loop {
        let Some(a) = it.next() else {
            return Err("missing operand".into());
        };
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match flag.as_str() {
            "-s" | "--signal" => {
                let v = value("--signal")?;
                signal = v.parse().map_err(|_| format!("invalid signal {v:?}"))?;
            }
            "-k" | "--kill-after" => kill_after = Some(duration(&value("--kill-after")?)?),
            "--" => {
                let d = it.next().ok_or("missing operand")?;
                return finish(signal, kill_after, &d, it);
            }
            f if f.starts_with('-') && f.len() > 1 && f.parse::<f64>().is_err() => {
                return Err(format!("unknown option {f}"));
            }
            _ => return finish(signal, kill_after, &a, it),
        }
    }
}

fn finish(
    signal: SignalKind,
    kill_after: Option<Duration>,
    d: &str,
    it: impl Iterator<Item = String>,
) -> Result<Args, String> {
    let duration = duration(d)?;
    let cmd: Vec<String> = it.collect();
    if cmd.is_empty() {
        return Err("missing command".into());
    }
    Ok(Args {
        signal,
        kill_after,
        duration,
        cmd,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => return usage(&e),
    };
    match run(args).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("timeout: {e}");
            ExitCode::from(125)
        }
    }
}

/// The exit code for how CMD ended.
fn code_of(status: ExitStatus) -> u8 {
    u8::try_from(status.shell_code()).unwrap_or(125)
}

async fn run(args: Args) -> ioasync::Result<u8> {
    let lp = Loop::current()?;
    // Watch the signals to forward before the child exists: none is lost.
    let int = lp
        .add(Signal::spec("sigint", SignalKind::interrupt()))
        .await?;
    let term = lp
        .add(Signal::spec("sigterm", SignalKind::terminate()))
        .await?;
    let mut ints = int.events_with::<SignalEvent>(4, Overflow::Wait)?;
    let mut terms = term.events_with::<SignalEvent>(4, Overflow::Wait)?;

    let mut cmd = Command::new(&args.cmd[0]);
    cmd.args(&args.cmd[1..]);
    let child = match lp.open_process(Process::spec("cmd", cmd)).await {
        Ok(c) => c,
        Err(e) if e.op() == "exec" => {
            eprintln!(
                "timeout: failed to run command {:?}: {}",
                args.cmd[0],
                e.message()
            );
            return Ok(if e.errno() == Some(libc_enoent()) {
                127
            } else {
                126
            });
        }
        Err(e) => return Err(e),
    };

    let timer = lp.add(Countdown::spec("deadline", args.duration)).await?;
    let mut expired = timer.events_with::<Expired>(1, Overflow::Wait)?;
    // Held so the kill-after countdown lives until the end.
    let mut _killer = None;
    let mut kill_fired: Option<ioasync::EventStream<Expired>> = None;
    let mut timed_out = false;
    let exit = child.wait();
    tokio::pin!(exit);
    loop {
        tokio::select! {
            status = &mut exit => {
                let status = status?;
                return Ok(if timed_out { 124 } else { code_of(status) });
            }
            Some(_) = expired.recv() => {
                timed_out = true;
                let _ = child.kill(args.signal).await;
                if let Some(after) = args.kill_after {
                    let k = lp.add(Countdown::spec("kill-after", after)).await?;
                    kill_fired = Some(k.events_with::<Expired>(1, Overflow::Wait)?);
                    _killer = Some(k);
                }
            }
            Some(_) = async { kill_fired.as_mut()?.recv().await }, if kill_fired.is_some() => {
                let _ = child.kill(SignalKind::kill()).await;
                kill_fired = None;
            }
            Some(ev) = ints.recv() => { let _ = child.kill(ev.signal).await; }
            Some(ev) = terms.recv() => { let _ = child.kill(ev.signal).await; }
        }
    }
}

fn libc_enoent() -> i32 {
    std::io::Error::from(std::io::ErrorKind::NotFound)
        .raw_os_error()
        .unwrap_or(2)
}
