//! The agent socket of `stockade serve`: peer credentials (`SO_PEERCRED`), a listener inherited
//! from systemd (fd 3 and up), and binding under a umask. `nix` wraps the socket options
//! safely; only taking ownership of an inherited descriptor number needs `unsafe`.

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

/// The connecting process's credentials as the kernel recorded them at `connect` time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Its pid.
    pub pid: i32,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
}

/// `SO_PEERCRED` of a connected Unix socket.
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let c = getsockopt(&fd, sockopt::PeerCredentials).map_err(io::Error::from)?;
    Ok(PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// Take over descriptor `fd`, passed by systemd socket activation, as a listening Unix stream
/// socket. Anything else there (closed, a file, a datagram or TCP socket, not listening) is an
/// error: serving on the wrong socket would be worse than not starting.
///
/// The caller must call this once per descriptor number and only for numbers named by
/// `LISTEN_FDS` for this process (then nothing else in the process owns them).
pub fn inherited_listener(fd: RawFd) -> io::Result<UnixListener> {
    if fd < 3 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // Check it is open before anything claims it.
    nix::fcntl::fcntl(
        // SAFETY: only borrowed for this call; F_GETFD on a closed number just fails with EBADF.
        unsafe { BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .map_err(io::Error::from)?;
    // SAFETY: the descriptor is open (checked above) and, per this function's contract, was
    // handed to this process by its service manager and is owned by nothing else in it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    if getsockopt(&owned, sockopt::SockType).map_err(io::Error::from)? != SockType::Stream {
        return Err(bad("the inherited socket is not a stream socket"));
    }
    if !getsockopt(&owned, sockopt::AcceptConn).map_err(io::Error::from)? {
        return Err(bad("the inherited socket is not listening"));
    }
    getsockname::<UnixAddr>(owned.as_raw_fd())
        .map_err(|_| bad("the inherited socket is not a Unix socket"))?;
    super::set_cloexec(owned.as_fd(), true)?;
    Ok(UnixListener::from(owned))
}

/// Run `f` with the process umask set to `mask`, then restore it (the process is
/// single-threaded while serving, so no other file creation can observe the change).
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(mask));
    let r = f();
    umask(old);
    r
}
