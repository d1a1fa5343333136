//! The child-side setup std cannot express, and pidfds.
//!
//! Contract: the `pre_exec` hook runs in the forked child before `exec`;
//! it makes only raw system calls (`prctl`, `getppid`, `dup2`, `fcntl`,
//! `close_range`, `chdir`, `umask`, `prlimit64`, `getpriority`, `setpriority`,
//! `setgroups`, `setgid`, `setuid`, `kill`) on data prepared in the parent,
//! and allocates nothing. The parent process never forks without exec:
//! std's fork-exec runs on the spawn thread (see `spawner`).
//!
//! A step of the hook that fails returns its errno offset by
//! `STEP_BASE * step`; std hands that raw value back to the parent, where
//! [`decode_error`] turns it into the operation's name and the errno.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
};

/// What the child does between fork and exec, prepared in the parent.
#[derive(Debug, Default, Clone)]
pub(crate) struct ChildPlan {
    /// The signal this process's death sends the child.
    pub(crate) pdeathsig: Option<i32>,
    /// `(source, target)`: our fd `source` becomes the child's `target`.
    /// `source == target` keeps an fd of ours at its number.
    pub(crate) dups: Vec<(RawFd, RawFd)>,
    /// Every fd number the child keeps, sorted (the dups' targets).
    pub(crate) named: Vec<RawFd>,
    /// Fds closed explicitly (meaningful when `close_others` is off).
    pub(crate) closes: Vec<RawFd>,
    /// Close every fd not in `named` (IO::Async's default).
    pub(crate) close_others: bool,
    /// The working directory.
    pub(crate) chdir: Option<std::ffi::CString>,
    /// The file-mode creation mask.
    pub(crate) umask: Option<u32>,
    /// `(resource, soft, hard)`.
    pub(crate) rlimits: Vec<(i32, u64, u64)>,
    /// Added to the scheduling priority (`nice(2)`).
    pub(crate) nice: Option<i32>,
    /// Supplementary groups.
    pub(crate) groups: Option<Vec<u32>>,
    /// Real, effective and saved group id.
    pub(crate) gid: Option<u32>,
    /// Real, effective and saved user id.
    pub(crate) uid: Option<u32>,
}

/// The steps of the hook, in the order they run; the value names the
/// operation in an error.
const STEPS: [&str; 11] = [
    "exec",
    "prctl(PR_SET_PDEATHSIG)",
    "dup2",
    "close_range",
    "setrlimit",
    "nice",
    "setgroups",
    "setgid",
    "setuid",
    "fcntl",
    "chdir",
];
const STEP_BASE: i32 = 1 << 16;
const PDEATH: i32 = 1;
const DUP: i32 = 2;
const CLOSE: i32 = 3;
const RLIMIT: i32 = 4;
const NICE: i32 = 5;
const GROUPS: i32 = 6;
const GID: i32 = 7;
const UID: i32 = 8;
const FCNTL: i32 = 9;
const CHDIR: i32 = 10;

/// Splits an error from a spawn into the operation that failed (`exec`
/// for exec itself) and a plain OS error.
pub(crate) fn decode_error(e: io::Error) -> (&'static str, io::Error) {
    match e.raw_os_error() {
        Some(code) if code >= STEP_BASE => {
            let step = (code / STEP_BASE) as usize;
            let op = STEPS.get(step).copied().unwrap_or("exec");
            (op, io::Error::from_raw_os_error(code % STEP_BASE))
        }
        _ => ("exec", e),
    }
}

impl ChildPlan {
    /// Whether nothing needs the hook (then std may use `posix_spawn`).
    pub(crate) fn is_empty(&self) -> bool {
        self.pdeathsig.is_none()
            && self.dups.is_empty()
            && self.closes.is_empty()
            && !self.close_others
            && self.chdir.is_none()
            && self.umask.is_none()
            && self.rlimits.is_empty()
            && self.nice.is_none()
            && self.groups.is_none()
            && self.gid.is_none()
            && self.uid.is_none()
    }

    /// The highest fd number the plan names, kept or closed.
    pub(crate) fn max_fd(&self) -> RawFd {
        let named = self.named.last().copied().unwrap_or(-1);
        named.max(self.closes.iter().copied().max().unwrap_or(-1))
    }
}

/// The last OS error, tagged with its step.
fn fail(step: i32) -> io::Error {
    let errno = io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO);
    io::Error::from_raw_os_error(step * STEP_BASE + errno)
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Marks `fd` close-on-exec; an fd that is not open is fine.
///
/// # Safety
/// Async-signal-safe: two `fcntl` calls.
unsafe fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer fd; EBADF is handled.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags == -1 {
            return if errno() == libc::EBADF {
                Ok(())
            } else {
                Err(fail(FCNTL))
            };
        }
        if flags & libc::FD_CLOEXEC == 0
            && libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) == -1
        {
            return Err(fail(FCNTL));
        }
    }
    Ok(())
}

/// Clears close-on-exec on `fd` (it is kept across exec).
///
/// # Safety
/// Async-signal-safe: two `fcntl` calls.
unsafe fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer fd.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags == -1 {
            // Keeping an fd that is not open keeps nothing.
            return if errno() == libc::EBADF {
                Ok(())
            } else {
                Err(fail(FCNTL))
            };
        }
        if flags & libc::FD_CLOEXEC != 0
            && libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1
        {
            return Err(fail(FCNTL));
        }
    }
    Ok(())
}

/// Runs `plan` in the child. Only raw system calls; no allocation (the
/// plan's vectors were built in the parent; `dups` is rewritten in place).
///
/// # Safety
/// Call only in the forked child, before exec.
unsafe fn run_plan(plan: &mut ChildPlan, parent: i32) -> io::Result<()> {
    // SAFETY (whole body): every call is a system call with integer or
    // stack-pointer arguments; nothing allocates or takes a lock.
    unsafe {
        if let Some(sig) = plan.pdeathsig {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(fail(PDEATH));
            }
            // This process died between fork and prctl: act as if the
            // signal had come.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), sig);
            }
        }
        let top = plan.max_fd();
        // A source sitting on another mapping's target would be clobbered
        // by that dup2: move it above every named fd first.
        for i in 0..plan.dups.len() {
            let (src, tgt) = plan.dups[i];
            if src != tgt && plan.dups.iter().any(|&(_, t)| t == src) {
                let moved = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, top + 1);
                if moved == -1 {
                    return Err(fail(DUP));
                }
                plan.dups[i].0 = moved;
            }
        }
        for &(src, tgt) in &plan.dups {
            if src == tgt {
                clear_cloexec(src)?;
            } else if libc::dup2(src, tgt) == -1 {
                return Err(fail(DUP));
            }
        }
        // Closing is done as close-on-exec: std's own exec-error pipe must
        // stay usable until exec, and it is close-on-exec already.
        for &fd in &plan.closes {
            set_cloexec(fd)?;
        }
        if plan.close_others {
            for fd in 0..=top {
                if plan.named.binary_search(&fd).is_err() {
                    set_cloexec(fd)?;
                }
            }
            let first = (top + 1) as libc::c_uint;
            let r = libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if r == -1 {
                if !matches!(errno(), libc::ENOSYS | libc::EINVAL) {
                    return Err(fail(CLOSE));
                }
                // Before Linux 5.11: every fd up to the limit.
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == -1 {
                    return Err(fail(CLOSE));
                }
                let end = lim.rlim_cur.min(1 << 20) as RawFd;
                for fd in top + 1..end {
                    set_cloexec(fd)?;
                }
            }
        }
        if let Some(dir) = &plan.chdir
            && libc::chdir(dir.as_ptr()) == -1
        {
            return Err(fail(CHDIR));
        }
        if let Some(mask) = plan.umask {
            libc::umask(mask as libc::mode_t);
        }
        for &(res, soft, hard) in &plan.rlimits {
            let lim: [u64; 2] = [soft, hard];
            let r = libc::syscall(
                libc::SYS_prlimit64,
                0,
                res as libc::c_long,
                lim.as_ptr(),
                std::ptr::null_mut::<u64>(),
            );
            if r == -1 {
                return Err(fail(RLIMIT));
            }
        }
        if let Some(inc) = plan.nice {
            // The raw getpriority returns 20 - nice (1..=40).
            let cur = libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0);
            if cur == -1 {
                return Err(fail(NICE));
            }
            let new = (20 - cur as i32 + inc).clamp(-20, 19);
            if libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, 0, new) == -1 {
                return Err(fail(NICE));
            }
        }
        // Credentials last: the steps above may need the privileges.
        if let Some(groups) = &plan.groups {
            let r = libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr());
            if r == -1 {
                return Err(fail(GROUPS));
            }
        }
        if let Some(gid) = plan.gid
            && libc::syscall(libc::SYS_setgid, gid) == -1
        {
            return Err(fail(GID));
        }
        if let Some(uid) = plan.uid
            && libc::syscall(libc::SYS_setuid, uid) == -1
        {
            return Err(fail(UID));
        }
    }
    Ok(())
}

/// Installs `plan` as the command's `pre_exec` hook (none for an empty
/// plan: std can then use `posix_spawn`, much cheaper than fork for a
/// large parent).
pub(crate) fn setup_child(cmd: &mut tokio::process::Command, mut plan: ChildPlan) {
    if plan.is_empty() {
        return;
    }
    let parent = std::process::id() as i32;
    let hook = move || -> io::Result<()> {
        // SAFETY: this closure runs only in the forked child.
        unsafe { run_plan(&mut plan, parent) }
    };
    // SAFETY: the hook makes only async-signal-safe system calls and does
    // not allocate (see `run_plan`).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Occupies every free fd number up to `max` until the result is dropped,
/// so that std's exec-error pipe, opened by the spawn that follows, lands
/// above every fd the child names (a dup2 onto it would lose exec errors).
/// Numbers 0 to 2 are assumed open.
pub(crate) fn reserve_fds(max: RawFd) -> Vec<OwnedFd> {
    let mut held = Vec::new();
    if max < 3 {
        return held;
    }
    let Ok(base) = std::fs::File::open("/dev/null") else {
        return held;
    };
    let base = std::os::fd::AsRawFd::as_raw_fd(&base);
    loop {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new fd or -1.
        let fd = unsafe { libc::fcntl(base, libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            break;
        }
        // SAFETY: the fd is new and owned here.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        if fd > max {
            break;
        }
        held.push(owned);
    }
    held
}

/// Sends `sig` to `pid` (to its process group first when it leads one);
/// an exited child is not an error.
pub(crate) fn signal(pid: u32, group: bool, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) with integer arguments.
    unsafe {
        if !group || libc::kill(-pid, sig) == -1 {
            libc::kill(pid, sig);
        }
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

/// `pidfd_send_signal(2)`: `sig` to the process `fd` refers to, never to
/// another that reused its pid.
pub(crate) fn pidfd_send_signal(fd: std::os::fd::BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open fd; the siginfo pointer is null
    // (the kernel fills in what `kill` would).
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers an owned fd with tokio's reactor for readability.
pub(crate) fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd: the fd stays open and the same
    // for the AsyncFd's whole life; we never swap it through get_mut.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
