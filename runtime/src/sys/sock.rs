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
/// The caller must call this once per descriptor number, only for numbers named by
/// `LISTEN_FDS` for this process, and before the process has opened any descriptor it keeps:
/// then the number is either the service manager's or free, never another object's (`serve`
/// claims it first thing). Open is checked; ownership cannot be — a number this process opened
/// itself would be owned twice.
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
    // SAFETY: the descriptor is open (checked above) and, per this function's contract (called
    // before this process opened anything it keeps), was handed to it by its service manager
    // or inherited from its parent: owned by nothing else in it.
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

/// What a stream the daemon logs to (its stderr) is, for writing to it without ever waiting for
/// its reader ([`write_now`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A socket (systemd's journal stream): `send(MSG_DONTWAIT)` takes what fits, per call,
    /// without touching the descriptor's flags.
    Socket,
    /// A pipe, FIFO or terminal: written only after `poll` said it is writable, at most
    /// `PIPE_BUF` bytes at a time (see [`write_now`]).
    Pollable,
    /// A regular file, or a device that is no terminal (`/dev/null`, `/dev/kmsg`): written as
    /// it is; it has no reader to wait for.
    File,
}

/// The kind of stream `fd` is. Of the character devices only a terminal is [`StreamKind::
/// Pollable`] (its reader can stop it: ^S, a full pty): another device takes a write as it
/// comes, and its `poll` need not say writable at all — `/dev/kmsg`'s never does — so waiting
/// for it would hold every line (and fail every required audit record) for ever.
pub fn stream_kind(fd: BorrowedFd<'_>) -> io::Result<StreamKind> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => StreamKind::Socket,
        libc::S_IFIFO => StreamKind::Pollable,
        libc::S_IFCHR if nix::unistd::isatty(fd).unwrap_or(false) => StreamKind::Pollable,
        _ => StreamKind::File,
    })
}

/// Write what `fd` (of `kind`) takes now, without waiting for its reader: `Ok(0)` when it
/// takes nothing now. Never sets `O_NONBLOCK`: that flag is the open file description's, shared
/// with whoever else holds the stream (the shell or supervisor that started the daemon, other
/// processes on the same pipe), whose blocking writes would start failing with EAGAIN.
/// A socket is sent to with `MSG_DONTWAIT` (per call). A pipe is written after a zero-timeout
/// `poll` says it has a free buffer, at most `PIPE_BUF` bytes: Linux then copies the whole
/// write into that buffer without sleeping (a writer waits only for a full pipe). Another
/// writer on the same pipe filling that buffer in between is the one way this still waits (a
/// terminal stopped with ^S likewise); the daemon's own stderr has no such writer.
pub fn write_now(fd: BorrowedFd<'_>, kind: StreamKind, buf: &[u8]) -> io::Result<usize> {
    use nix::sys::socket::MsgFlags;
    match kind {
        StreamKind::Socket => {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match nix::sys::socket::send(fd.as_raw_fd(), buf, flags) {
                Ok(n) => Ok(n),
                Err(nix::errno::Errno::EAGAIN) => Ok(0),
                Err(e) => Err(e.into()),
            }
        }
        StreamKind::Pollable => {
            if !writable_within(fd, 0)? {
                return Ok(0);
            }
            let n = buf.len().min(libc::PIPE_BUF);
            nix::unistd::write(fd, &buf[..n]).map_err(io::Error::from)
        }
        StreamKind::File => nix::unistd::write(fd, buf).map_err(io::Error::from),
    }
}

/// Whether `fd` becomes writable within `timeout_ms` (0: now). An error or hang-up (the reader
/// went away) counts as writable: the write then says what is wrong.
pub fn writable_within(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let ev = super::poll(&[(fd, libc::POLLOUT)], timeout_ms)?;
    Ok(ev.first().is_some_and(|r| *r != 0))
}
