//! [`SignalKind`]: a typed POSIX signal number.

use std::{fmt, str::FromStr};

use ioasync_core::Error;

/// A POSIX signal, by number, with its name.
///
/// ```
/// use ioasync::signal::SignalKind;
///
/// let usr1: SignalKind = "USR1".parse().unwrap();
/// assert_eq!(usr1, SignalKind::user_defined1());
/// assert_eq!(usr1.name(), "SIGUSR1");
/// assert_eq!("SIGTERM".parse::<SignalKind>().unwrap(), SignalKind::terminate());
/// assert_eq!("9".parse::<SignalKind>().unwrap().name(), "SIGKILL");
/// assert!("SIGNOPE".parse::<SignalKind>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalKind(i32);

impl SignalKind {
    /// SIGINT.
    pub const fn interrupt() -> Self {
        SignalKind(libc::SIGINT)
    }
    /// SIGTERM.
    pub const fn terminate() -> Self {
        SignalKind(libc::SIGTERM)
    }
    /// SIGHUP.
    pub const fn hangup() -> Self {
        SignalKind(libc::SIGHUP)
    }
    /// SIGQUIT.
    pub const fn quit() -> Self {
        SignalKind(libc::SIGQUIT)
    }
    /// SIGKILL (cannot be watched).
    pub const fn kill() -> Self {
        SignalKind(libc::SIGKILL)
    }
    /// SIGUSR1.
    pub const fn user_defined1() -> Self {
        SignalKind(libc::SIGUSR1)
    }
    /// SIGUSR2.
    pub const fn user_defined2() -> Self {
        SignalKind(libc::SIGUSR2)
    }
    /// SIGCHLD.
    pub const fn child() -> Self {
        SignalKind(libc::SIGCHLD)
    }
    /// SIGALRM.
    pub const fn alarm() -> Self {
        SignalKind(libc::SIGALRM)
    }
    /// SIGPIPE.
    pub const fn pipe() -> Self {
        SignalKind(libc::SIGPIPE)
    }

    /// Any signal by number; fails for numbers that are no signal.
    pub fn from_raw(n: i32) -> Result<Self, Error> {
        nix::sys::signal::Signal::try_from(n)
            .map(|_| SignalKind(n))
            .map_err(|_| Error::invalid_input("signal", format!("{n} is not a signal number")))
    }

    /// The signal number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The name (`SIGUSR1`), or `SIG<n>` for a number without one.
    pub fn name(self) -> &'static str {
        nix::sys::signal::Signal::try_from(self.0)
            .map(|s| s.as_str())
            .unwrap_or("SIG?")
    }
}

impl FromStr for SignalKind {
    type Err = Error;

    /// `USR1`, `SIGUSR1`, `usr1` or a number.
    fn from_str(s: &str) -> Result<Self, Error> {
        if let Ok(n) = s.parse::<i32>() {
            return SignalKind::from_raw(n);
        }
        let upper = s.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        nix::sys::signal::Signal::from_str(&full)
            .map(|sig| SignalKind(sig as i32))
            .map_err(|_| Error::invalid_input("signal", format!("{s:?} is not a signal name")))
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<SignalKind> for i32 {
    fn from(s: SignalKind) -> i32 {
        s.0
    }
}
