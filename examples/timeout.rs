//! coreutils `timeout`, built from a Process, Countdowns and Signal
//! watchers.
//!
//! ```text
//! cargo run --example timeout -- [--signal SIG] [--kill-after SECS] SECS CMD [ARG...]
//! ```
//!
//! Runs CMD with inherited stdio; behaves as coreutils `timeout` (the
//! contract; tests/process_timeout_coreutils.rs runs both side by side):
//!
//! - exits with CMD's exit code; 124 when the time ran out (after sending
//!   SIG, default TERM), but 137 when CMD then died of SIGKILL (`-s KILL`,
//!   or the KILL sent `--kill-after` later); 125 for its own usage errors;
//!   126 when CMD cannot be executed; 127 when CMD is not found;
//! - when CMD dies of signal N without a timeout, it raises N on itself
//!   (core dumps off), or exits 128+N for the signals it watches (TERM,
//!   INT, HUP, QUIT), which it cannot un-handle;
//! - SIGTERM, SIGINT, SIGHUP and SIGQUIT sent to it are forwarded to CMD
//!   (whose own dispositions start at the default, even when this runs as
//!   a background job with INT and QUIT ignored), and start the
//!   `--kill-after` countdown like a timeout does;
//! - a duration of 0 means no timeout, and so does one too large to
//!   schedule (`1e30`); `--kill-after 0` never sends KILL.
//!
//! Durations are seconds, or take a suffix: `s`, `m`, `h`, `d`.

use std::{process::ExitCode, time::Duration};

use ioasync::notifier::Overflow;
use ioasync::{
    Loop,
    process::{Command, ExitStatus, Process},
    signal::{Signal, SignalEvent, SignalKind},
    time::{Countdown, Expired},
};

/// Durations past this are effectively infinite: no timer.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86400);

struct Args {
    signal: SignalKind,
    /// None: never KILL (also for 0).
    kill_after: Option<Duration>,
    /// None: no timeout (0, or effectively infinite).
    duration: Option<Duration>,
    cmd: Vec<String>,
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("timeout: {msg}");
    eprintln!("usage: timeout [--signal SIG] [--kill-after SECS] SECS CMD [ARG...]");
    ExitCode::from(125)
}

/// A duration; `None` for 0 and for anything too large to schedule.
fn duration(s: &str) -> Result<Option<Duration>, String> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1.0),
        Some('m') => (&s[..s.len() - 1], 60.0),
        Some('h') => (&s[..s.len() - 1], 3600.0),
        Some('d') => (&s[..s.len() - 1], 86400.0),
        _ => (s, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v >= 0.0 => {
            let secs = v * mult;
            if secs == 0.0 || secs >= FOREVER.as_secs_f64() {
                Ok(None) // includes inf
            } else {
                Ok(Some(Duration::from_secs_f64(secs)))
            }
        }
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
            "-k" | "--kill-after" => kill_after = duration(&value("--kill-after")?)?,
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
        Ok(Outcome::Code(code)) => ExitCode::from(code),
        Ok(Outcome::Raise(sig)) => die_of(sig),
        Err(e) => {
            eprintln!("timeout: {e}");
            ExitCode::from(125)
        }
    }
}

/// How this program ends.
enum Outcome {
    Code(u8),
    /// CMD died of this signal without a timeout: die of it too.
    Raise(SignalKind),
}

/// Dies of `sig` as CMD did (as coreutils does, with core dumps off);
/// for a signal this program handles (it watches TERM, INT, HUP, QUIT),
/// or one ignored here, it exits 128+N instead.
fn die_of(sig: SignalKind) -> ExitCode {
    let watched = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
        SignalKind::quit(),
    ];
    if !watched.contains(&sig)
        && let Ok(s) = nix::sys::signal::Signal::try_from(sig.as_raw())
    {
        use nix::sys::resource::{Resource, setrlimit};
        let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
        let _ = nix::sys::signal::raise(s);
    }
    ExitCode::from(u8::try_from(128 + sig.as_raw()).unwrap_or(125))
}

async fn run(args: Args) -> ioasync::Result<Outcome> {
    let lp = Loop::current()?;
    // Watch the signals to forward before the child exists: none is lost.
    let mut forwarded = Vec::new();
    for (name, sig) in [
        ("sigint", SignalKind::interrupt()),
        ("sigterm", SignalKind::terminate()),
        ("sighup", SignalKind::hangup()),
        ("sigquit", SignalKind::quit()),
    ] {
        let w = lp.add(Signal::spec(name, sig)).await?;
        forwarded.push(w.events_with::<SignalEvent>(4, Overflow::Wait)?);
    }
    let mut signals = futures_util::stream::select_all(forwarded.into_iter().map(|s| {
        Box::pin(futures_util::stream::unfold(s, |mut s| async {
            s.recv().await.map(|ev| (ev, s))
        }))
    }));

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
            return Ok(Outcome::Code(if e.errno() == Some(libc_enoent()) {
                127
            } else {
                126
            }));
        }
        Err(e) => return Err(e),
    };

    let mut expired = None;
    let mut _timer = None; // held so the countdown lives until the end
    if let Some(d) = args.duration {
        let t = lp.add(Countdown::spec("deadline", d)).await?;
        expired = Some(t.events_with::<Expired>(1, Overflow::Wait)?);
        _timer = Some(t);
    }
    // The kill-after countdown starts at the timeout or at the first
    // forwarded signal, once (as coreutils does).
    let mut kill_after = args.kill_after;
    let mut _killer = None;
    let mut kill_fired: Option<ioasync::notifier::EventStream<Expired>> = None;
    let mut timed_out = false;
    let exit = child.wait();
    tokio::pin!(exit);
    loop {
        let mut start_kill_after = false;
        tokio::select! {
            status = &mut exit => {
                return Ok(match status? {
                    ExitStatus::Signal { signal, .. } if timed_out && signal == SignalKind::kill() => {
                        Outcome::Code(137)
                    }
                    _ if timed_out => Outcome::Code(124),
                    ExitStatus::Code(c) => Outcome::Code(u8::try_from(c).unwrap_or(125)),
                    ExitStatus::Signal { signal, .. } => Outcome::Raise(signal),
                });
            }
            Some(_) = async { expired.as_mut()?.recv().await }, if expired.is_some() => {
                expired = None;
                timed_out = true;
                let _ = child.kill(args.signal).await;
                start_kill_after = true;
            }
            Some(_) = async { kill_fired.as_mut()?.recv().await }, if kill_fired.is_some() => {
                timed_out = true;
                let _ = child.kill(SignalKind::kill()).await;
                kill_fired = None;
            }
            Some(ev) = futures_util::StreamExt::next(&mut signals) => {
                let _ = child.kill(ev.signal).await;
                start_kill_after = true;
            }
        }
        if start_kill_after && let Some(after) = kill_after.take() {
            let k = lp.add(Countdown::spec("kill-after", after)).await?;
            kill_fired = Some(k.events_with::<Expired>(1, Overflow::Wait)?);
            _killer = Some(k);
        }
    }
}

fn libc_enoent() -> i32 {
    std::io::Error::from(std::io::ErrorKind::NotFound)
        .raw_os_error()
        .unwrap_or(2)
}
