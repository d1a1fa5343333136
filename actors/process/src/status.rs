//! [`ExitStatus`]: how a child process ended, said the way a shell says it.

use std::{fmt, os::unix::process::ExitStatusExt};

use ioasync_signal::SignalKind;

/// How a child process ended: an exit code, or a terminating signal.
///
/// ```
/// use ioasync::{process::ExitStatus, signal::SignalKind};
///
/// assert_eq!(ExitStatus::Code(3).to_string(), "exited with code 3");
/// let killed = ExitStatus::Signal { signal: SignalKind::kill(), core_dumped: false };
/// assert_eq!(killed.to_string(), "killed by SIGKILL");
/// assert_eq!(killed.shell_code(), 137);
/// assert!(ExitStatus::Code(0).success());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Code(i32),
    /// A signal ended it.
    Signal {
        /// The signal.
        signal: SignalKind,
        /// It dumped core.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The exit code, when it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal { .. } => None,
        }
    }

    /// The signal, when one ended it.
    pub fn signal(self) -> Option<SignalKind> {
        match self {
            ExitStatus::Signal { signal, .. } => Some(signal),
            ExitStatus::Code(_) => None,
        }
    }

    /// What `$?` is in a shell: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal { signal, .. } => 128 + signal.as_raw(),
        }
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(st: std::process::ExitStatus) -> Self {
        match (st.code(), st.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(sig)) => ExitStatus::Signal {
                signal: SignalKind::from_raw(sig).unwrap_or(SignalKind::kill()),
                core_dumped: st.core_dumped(),
            },
            // Stopped/continued statuses are never final; treat as unknown.
            (None, None) => ExitStatus::Code(-1),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {signal}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}
