//! The OS calls portable Rust cannot make: `getaddrinfo(3)` with service
//! names and family hints, and `getnameinfo(3)`.
//!
//! Contract: the name-service functions block; callers run them on tokio's
//! blocking pool, never on a runtime worker. `async_fd` registers an fd
//! the caller gives up ownership of. Nothing here keeps a pointer
//! past its call: results are copied into owned Rust values before the
//! C-allocated list is freed.
#![allow(unsafe_code)]

use std::{
    ffi::{CStr, CString},
    mem,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    ptr,
};

/// A failed `getaddrinfo` / `getnameinfo`: the EAI code, the errno when the
/// code is `EAI_SYSTEM`, and the C library's message.
#[derive(Debug)]
pub(crate) struct GaiError {
    pub(crate) code: i32,
    pub(crate) errno: Option<i32>,
    pub(crate) message: String,
}

fn gai_error(code: i32) -> GaiError {
    let errno = (code == libc::EAI_SYSTEM)
        .then(|| std::io::Error::last_os_error().raw_os_error())
        .flatten();
    // SAFETY: gai_strerror returns a pointer to a static, NUL-terminated
    // string for any code.
    let message = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
        .to_string_lossy()
        .into_owned();
    GaiError {
        code,
        errno,
        message,
    }
}

fn cstring(s: Option<&str>) -> Result<Option<CString>, GaiError> {
    s.map(|s| {
        CString::new(s).map_err(|_| GaiError {
            code: libc::EAI_NONAME,
            errno: None,
            message: format!("{s:?} contains a NUL byte"),
        })
    })
    .transpose()
}

/// One result of `getaddrinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddrInfo {
    pub(crate) socktype: i32,
    pub(crate) addr: SocketAddr,
}

/// `getaddrinfo(host, service)` with `family` (`AF_UNSPEC`, `AF_INET`,
/// `AF_INET6`), `socktype` (`SOCK_STREAM`, `SOCK_DGRAM`, 0) and `flags`.
pub(crate) fn getaddrinfo(
    host: Option<&str>,
    service: Option<&str>,
    family: i32,
    socktype: i32,
    flags: i32,
) -> Result<Vec<AddrInfo>, GaiError> {
    let host = cstring(host)?;
    let service = cstring(service)?;
    // SAFETY: addrinfo is plain old data; all-zero is its documented
    // "no hints" value, then we set the fields we use.
    let mut hints: libc::addrinfo = unsafe { mem::zeroed() };
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_flags = flags;
    let mut res: *mut libc::addrinfo = ptr::null_mut();
    // SAFETY: the strings are NUL-terminated and outlive the call; hints is
    // a valid addrinfo; res is a valid out-pointer.
    let code = unsafe {
        libc::getaddrinfo(
            host.as_ref().map_or(ptr::null(), |h| h.as_ptr()),
            service.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
            &hints,
            &mut res,
        )
    };
    if code != 0 {
        return Err(gai_error(code));
    }
    let mut out = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getaddrinfo returned, not yet
        // freed; ai_addr points to ai_addrlen bytes of a sockaddr of
        // ai_family.
        let ai = unsafe { &*cur };
        if let Some(addr) = unsafe { sockaddr_to_std(ai.ai_addr, ai.ai_addrlen) } {
            let info = AddrInfo {
                socktype: ai.ai_socktype,
                addr,
            };
            if !out.contains(&info) {
                out.push(info);
            }
        }
        cur = ai.ai_next;
    }
    // SAFETY: res is the list getaddrinfo allocated; nothing borrows it now.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// Reads an IPv4 or IPv6 sockaddr.
///
/// # Safety
/// `sa` must be null or point to `len` readable bytes of a sockaddr.
unsafe fn sockaddr_to_std(sa: *const libc::sockaddr, len: libc::socklen_t) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: sa points to at least a sockaddr header (caller's contract).
    let family = i32::from(unsafe { (*sa).sa_family });
    match family {
        libc::AF_INET if len as usize >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say this is a sockaddr_in.
            let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: family and length say this is a sockaddr_in6.
            let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `getnameinfo(addr)`: the host and service names, or their numeric forms
/// when `numeric` is set.
pub(crate) fn getnameinfo(addr: &SocketAddr, numeric: bool) -> Result<(String, String), GaiError> {
    // SAFETY: sockaddr_storage is plain old data; zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for
            // every sockaddr type.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    let mut host = [0 as libc::c_char; 1025];
    let mut serv = [0 as libc::c_char; 32];
    let flags = if numeric {
        libc::NI_NUMERICHOST | libc::NI_NUMERICSERV
    } else {
        0
    };
    // SAFETY: storage holds a sockaddr of `len` bytes; the buffers are
    // writable for the lengths given and getnameinfo NUL-terminates them.
    let code = unsafe {
        libc::getnameinfo(
            &storage as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    if code != 0 {
        return Err(gai_error(code));
    }
    // SAFETY: getnameinfo succeeded, so both buffers hold C strings.
    let (h, s) = unsafe { (CStr::from_ptr(host.as_ptr()), CStr::from_ptr(serv.as_ptr())) };
    Ok((
        h.to_string_lossy().into_owned(),
        s.to_string_lossy().into_owned(),
    ))
}

/// Registers an owned fd with tokio's reactor.
pub(crate) fn async_fd(
    fd: std::os::fd::OwnedFd,
    interest: tokio::io::Interest,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and refers
    // to the same file description for the AsyncFd's whole life; ioasync
    // never calls `get_mut` to swap it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }
        .map_err(|e| e.into_parts().1)
}

/// How many file descriptors this process has open (from `/proc/self/fd`).
pub fn open_fd_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}
