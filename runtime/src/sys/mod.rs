//! Raw system calls: the only module of Stockade with `unsafe`.
//!
//! Each function wraps one call (or one tightly coupled pair) behind a safe signature: file
//! descriptors go in as `BorrowedFd`/`OwnedFd`, strings as `CStr`, and errors come out as
//! `std::io::Error` built from `errno` right after the call. Callers above this module never see
//! a raw pointer. We use `libc` directly rather than `nix` because several calls we need
//! (`clone` with namespace flags and fork semantics, `mount_setattr`, `execveat` with
//! `AT_EMPTY_PATH`, securebits) have no safe wrapper there either, and one idiom is easier to audit
//! than two.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub mod net;

/// Result of a fork-like call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the parent; this is the child's pid (in our pid namespace).
    Parent(i32),
    /// We are the child.
    Child,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `clone(flags | SIGCHLD)` with a NULL stack, i.e. `fork(2)` that also enters new namespaces.
///
/// The caller must be single-threaded (the runtime launches before it starts any thread), so the
/// child's copy of the address space has no lock held by a thread that does not exist there.
pub fn clone_fork(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: with a NULL stack pointer the kernel gives the child a copy-on-write copy of our
    // stack, exactly like fork(2); the remaining pointer arguments (parent_tid, child_tid, tls) are
    // unused because no CLONE_*SETTID/SETTLS flag is passed. Single-threadedness (documented
    // precondition) makes continuing in the child sound.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_ulong::from(flags.unsigned_abs()) | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match check_long(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(
            i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?,
        )),
    }
}

/// Plain `fork(2)`; same single-thread precondition as [`clone_fork`].
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; the child continues only in
    // code that is sound in a single-threaded copy (documented precondition of the caller).
    let ret = unsafe { libc::fork() };
    match check(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Terminate the calling process immediately (no atexit handlers, no stdio flush): what a forked
/// child must use so that it never runs the parent's cleanup code.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: execute the file the descriptor refers to. Only
/// returns on failure.
pub fn execveat_fd(fd: BorrowedFd<'_>, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    let empty = c"";
    // SAFETY: `a` and `e` are NULL-terminated arrays of pointers into CStrings that outlive the
    // call; `empty` is a valid C string; the fd is valid for the borrow.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            empty.as_ptr(),
            a.as_ptr(),
            e.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    io::Error::last_os_error()
}

/// Mark every descriptor from `first` upwards close-on-exec (`close_range(CLOSE_RANGE_CLOEXEC)`).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    let flags = libc::c_int::try_from(libc::CLOSE_RANGE_CLOEXEC)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: close_range only changes descriptor flags; no pointers.
    check(unsafe { libc::close_range(first, u32::MAX, flags) }).map(drop)
}

/// Set or clear `FD_CLOEXEC` on a descriptor we keep.
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD on a valid borrowed descriptor; no pointers.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags) }).map(drop)
}

/// `dup2(fd, target)`; the new descriptor is not close-on-exec.
pub fn dup2(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on a valid descriptor; `target` is a small well-known number (0, 1, 2) that we
    // intend to replace.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

fn prctl(op: libc::c_int, a: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the prctl operations used here take integer arguments only.
    check(unsafe {
        libc::prctl(
            op,
            a,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

/// `PR_SET_PDEATHSIG`.
pub fn set_parent_death_signal(sig: libc::c_int) -> io::Result<()> {
    prctl(libc::PR_SET_PDEATHSIG, sig.unsigned_abs().into()).map(drop)
}

/// `PR_SET_NO_NEW_PRIVS`.
pub fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map(drop)
}

/// `PR_SET_SECUREBITS`.
pub fn set_securebits(bits: libc::c_int) -> io::Result<()> {
    prctl(libc::PR_SET_SECUREBITS, bits.unsigned_abs().into()).map(drop)
}

/// Drop every capability number the kernel knows from the bounding set (stops at EINVAL, the
/// first number past the kernel's last capability), so a capability newer than the `caps` crate
/// is dropped too.
pub fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..64u64 {
        match prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `setresgid(g, g, g)`.
pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresgid(gid, gid, gid) }).map(drop)
}

/// `setresuid(u, u, u)`.
pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::setresuid(uid, uid, uid) }).map(drop)
}

/// `setgroups(0, NULL)`: drop every supplementary group.
pub fn clear_groups() -> io::Result<()> {
    // SAFETY: a zero-length list with a NULL pointer is the documented way to clear the list.
    check(unsafe { libc::setgroups(0, std::ptr::null()) }).map(drop)
}

/// The real uid/gid and effective uid.
pub fn ids() -> (u32, u32, u32) {
    // SAFETY: these calls cannot fail and take no arguments.
    unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) }
}

/// `sethostname`.
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe the bytes of `name`.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `setsid`.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() }).map(drop)
}

/// `mount(2)`.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NULL or a valid NUL-terminated string borrowed for the call.
    check(unsafe { libc::mount(p(source), target.as_ptr(), p(fstype), flags, p(data).cast()) })
        .map(drop)
}

/// `umount2(target, MNT_DETACH)`.
pub fn umount_detach(target: &CStr) -> io::Result<()> {
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// `pivot_root(".", ".")`: the current directory becomes the root and the old root is stacked
/// on top of it, to be detached with `umount_detach(".")` (the trick runc uses; it needs no
/// directory for the old root).
pub fn pivot_root_here() -> io::Result<()> {
    let dot = c".";
    // SAFETY: both arguments are the valid C string ".".
    check_long(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) }).map(drop)
}

/// `mount_setattr(path, flags, {attr_set, attr_clr})`, recursive when asked: change mount flags
/// without having to repeat the locked ones (which `MS_REMOUNT` would need in a user namespace).
pub fn mount_setattr(path: &CStr, recursive: bool, set: u64, clear: u64) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `attr` lives for the call and its size is passed; `path` is a valid C string.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// `chdir`.
pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: valid C string.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// `setrlimit(resource, {v, v})` (soft = hard, so the program cannot raise it back).
pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `r` is a valid rlimit for the duration of the call.
    check(unsafe { libc::setrlimit(resource, &r) }).map(drop)
}

/// `waitpid(pid, &status, flags)`; returns `(pid, raw status)`, pid 0 with WNOHANG when nothing
/// changed. Retries on EINTR.
pub fn waitpid(pid: i32, flags: libc::c_int) -> io::Result<(i32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer for the call.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok((r, status));
    }
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both numbers are fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec `SOCK_SEQPACKET` unix socket pair (message boundaries kept).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both numbers are fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `poll` on `(fd, events)` pairs; returns the `revents` of each. Retries on EINTR; a negative
/// timeout waits forever.
pub fn poll(fds: &[(BorrowedFd<'_>, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, ev)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: *ev,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` is a valid array of `p.len()` pollfd structures.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(p.iter().map(|x| x.revents).collect());
    }
}

/// Non-blocking exclusive `flock`; `Ok(false)` when someone else holds it.
pub fn try_flock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: flock on a valid borrowed descriptor; no pointers.
    let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// `open(path, flags | O_CLOEXEC)` returning an owned descriptor (used for `O_PATH` opens of
/// mount sources and of the program).
pub fn open(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid C string; the mode argument is ignored without O_CREAT.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: open succeeded, so `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `faccessat(fd, "", X_OK, AT_EMPTY_PATH | AT_EACCESS)`: may the caller execute this file?
pub fn can_execute(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid descriptor and C string; no out-pointers.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::X_OK,
            libc::AT_EMPTY_PATH | libc::AT_EACCESS,
        )
    })
    .map(drop)
}

/// Signal mask operations for the runtime's relay loop.
pub fn block_signals(sigs: &[libc::c_int]) -> io::Result<()> {
    // SAFETY: `set` is initialised by sigemptyset before use and lives for the calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        check(libc::pthread_sigmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
    }
    Ok(())
}

/// Unblock every signal (a forked child must not inherit the runtime's blocked mask into exec).
pub fn unblock_all_signals() -> io::Result<()> {
    // SAFETY: `set` is initialised by sigemptyset before use and lives for the call.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        check(libc::pthread_sigmask(
            libc::SIG_SETMASK,
            &set,
            std::ptr::null_mut(),
        ))?;
    }
    Ok(())
}

/// A `signalfd` for the given (already blocked) signals.
pub fn signalfd(sigs: &[libc::c_int]) -> io::Result<OwnedFd> {
    // SAFETY: `set` is initialised by sigemptyset; signalfd returns a fresh descriptor we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        let fd = check(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Read one `signalfd_siginfo` and return the signal number.
pub fn read_signalfd(fd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    // SAFETY: the buffer is a properly sized and aligned signalfd_siginfo.
    unsafe {
        let mut info: libc::signalfd_siginfo = std::mem::zeroed();
        let n = libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            std::mem::size_of::<libc::signalfd_siginfo>(),
        );
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(i32::try_from(info.ssi_signo).ok())
    }
}

/// `unshare(flags)`.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: integer argument only.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// `fstat` file type bits and mode of a descriptor.
pub fn fstat_mode(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: `st` is a valid out-pointer, zero-initialised, for a valid descriptor.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        check(libc::fstat(fd.as_raw_fd(), &mut st))?;
        Ok(st.st_mode)
    }
}

/// Close every descriptor except `keep` (two `close_range` calls around it).
pub fn close_all_except(keep: RawFd) -> io::Result<()> {
    let k = u32::try_from(keep).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: close_range takes integers; the descriptors closed are this process's own and no
    // Rust object still in use refers to them (callers are about to only use `keep`).
    unsafe {
        if k > 0 {
            check(libc::close_range(0, k - 1, 0))?;
        }
        check(libc::close_range(k + 1, u32::MAX, 0))?;
    }
    Ok(())
}

/// Set `O_NONBLOCK` on a descriptor.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a valid borrowed descriptor; integer arguments only.
    unsafe {
        let fl = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        check(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            fl | libc::O_NONBLOCK,
        ))?;
    }
    Ok(())
}

/// `PR_SET_DUMPABLE`.
pub fn set_dumpable(on: bool) -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on)).map(drop)
}

/// Reset every signal's disposition to the default. Ignored signals survive `execve` (the Rust
/// runtime ignores SIGPIPE; a parent may ignore others, including the real-time signals glibc
/// reserves for itself, which its `signal()` wrapper refuses to touch: hence the raw call).
pub fn reset_signal_dispositions() -> io::Result<()> {
    /// The kernel's `struct sigaction` layout on x86_64/aarch64 (not glibc's).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `dfl` is a valid kernel sigaction for the duration of the call, the old-action
        // pointer is NULL, and the size is the kernel's 8-byte signal set.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
        check_long(r)?;
    }
    Ok(())
}

/// The mount flags (`ST_*` from `statvfs`) of the filesystem at `path`.
pub fn statvfs_flags(path: &CStr) -> io::Result<u64> {
    // SAFETY: `st` is a valid zero-initialised out-pointer; `path` a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        check(libc::statvfs(path.as_ptr(), &mut st))?;
        Ok(st.f_flag)
    }
}
