//! The child-side setup std cannot express, and pidfds.
//!
//! Contract: `pre_exec` closures run in the forked child before `exec`;
//! they call only async-signal-safe functions (`prctl`, `getppid`, `dup2`,
//! `fcntl`, `kill`) and allocate nothing. The parent process never forks
//! without exec.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
};

/// Arranges for the child to get `pdeathsig` when this process dies, and
/// for each `(src, target)` fd pair to be dup'ed onto `target`.
pub(crate) fn setup_child(
    cmd: &mut tokio::process::Command,
    pdeathsig: Option<i32>,
    fds: Vec<(RawFd, RawFd)>,
) {
    if pdeathsig.is_none() && fds.is_empty() {
        // No hook: std can use posix_spawn (vfork-like), much cheaper
        // than fork for a large parent.
        return;
    }
    // SAFETY: getpid is always safe; the value is read in the child.
    let parent = unsafe { libc::getpid() };
    let hook = move || -> io::Result<()> {
        if let Some(sig) = pdeathsig {
            // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid are
            // async-signal-safe syscalls with plain integer arguments.
            unsafe {
                if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The parent died between fork and prctl: act as if the
                // signal had come.
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), sig);
                }
            }
        }
        for &(src, target) in &fds {
            // SAFETY: dup2 and fcntl are async-signal-safe; the parent keeps
            // `src` open until the spawn returns.
            unsafe {
                if src == target {
                    let flags = libc::fcntl(src, libc::F_GETFD);
                    if flags == -1
                        || libc::fcntl(src, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1
                    {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(src, target) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe calls (see above).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// `pidfd_open(2)`: an fd that becomes readable when `pid` exits.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Registers an owned fd with tokio's reactor for readability.
pub(crate) fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd: the fd stays open and the same
    // for the AsyncFd's whole life; we never swap it through get_mut.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
