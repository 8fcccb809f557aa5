//! System calls: the only module of Stockade with `unsafe`.
//!
//! Each function wraps one call (or one tightly coupled pair) behind a safe signature: file
//! descriptors go in as `BorrowedFd`/`OwnedFd`, strings as `CStr`, and errors come out as
//! `std::io::Error` (from `errno`). Callers above this module never see a raw pointer.
//!
//! Where `nix` has a safe wrapper, the function is a thin adapter over it (typed flags, owned
//! descriptors, `Errno` converted to `io::Error`). `unsafe` remains only where `nix` has no
//! wrapper or its wrapper is itself `unsafe`, each place saying which:
//! `clone3` with namespace flags and fork semantics, `clone(CLONE_VM | CLONE_VFORK)` on
//! its own stack (see [`vfork_exec`]), `execveat` (`nix`'s allocates, which [`vfork_exec`]'s
//! child must not: [`ExecArgs`]), `_exit`, `close_range`, `mount_setattr`,
//! `PR_SET_SECUREBITS`/`PR_CAPBSET_DROP`, `waitpid` (raw status, see there), the pidfd calls
//! and `rt_sigaction` for every signal number (see [`reset_signal_dispositions`]),
//! `personality` (see [`clear_personality_flags`]), `setpriority`, `sched_setscheduler` and
//! `ioprio_get`/`ioprio_set`; in sanitizer builds only (`--cfg stockade_asan`,
//! scripts/sanitize.sh), AddressSanitizer's fiber calls around [`vfork_exec`]'s stack switch.

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{Gid, Pid, Uid};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

pub mod net;
pub mod sock;

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

/// `nix` reports `Errno`; the sys API speaks `io::Error` like the rest of the runtime.
fn io_err(e: Errno) -> io::Error {
    e.into()
}

/// A signal number as `nix`'s `Signal` (standard signals only; EINVAL otherwise).
fn signal(sig: libc::c_int) -> io::Result<Signal> {
    Signal::try_from(sig).map_err(io_err)
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `CLONE_INTO_CGROUP` (Linux 5.7): a u64 flag of clone3 only (libc declares it as a c_int).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3` with `flags` and exit signal SIGCHLD, without a stack, i.e. `fork(2)` that also
/// enters new namespaces — and, given a cgroup v2 directory, is born in that cgroup
/// (`CLONE_INTO_CGROUP`): no window outside it, and no migration through `cgroup.procs`, whose
/// first write after a quiet spell waits for an RCU grace period (≈ 10 ms measured here).
///
/// The caller must be single-threaded (the runtime launches before it starts any thread), so the
/// child's copy of the address space has no lock held by a thread that does not exist there.
pub fn clone_fork(flags: libc::c_int, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    let mut flags = u64::from(flags.unsigned_abs());
    let mut cgroup_fd = 0u64;
    if let Some(fd) = cgroup {
        flags |= CLONE_INTO_CGROUP;
        cgroup_fd = u64::try_from(fd.as_raw_fd()).map_err(|_| io::Error::other("fd"))?;
    }
    // SAFETY: clone_args is plain data; all-zero is its documented "no" for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup_fd;
    // SAFETY: `args` is valid for reads of its size for the whole call; stack 0 gives the child
    // a copy-on-write copy of our stack, exactly like fork(2); no pidfd/tid/tls pointer is set
    // (their flags are not passed). Single-threadedness (documented precondition) makes
    // continuing in the child sound.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_mut(&mut args),
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    forked(ret)
}

/// `clone(2)` with `flags` and exit signal SIGCHLD, without a stack: [`clone_fork`] for where
/// `clone3` answers `ENOSYS`. Container engines' default seccomp profiles (Docker's, Podman's,
/// containerd's — Kubernetes' `RuntimeDefault`), systemd's `RestrictNamespaces=` and browser
/// sandboxes refuse `clone3` so, whose flags sit behind a pointer no filter can read, for libc
/// to fall back to `clone`, whose flags a filter reads and judges; we do as libc does. No
/// `CLONE_INTO_CGROUP` here (a flag of `clone3` only): the caller joins the cgroup by
/// `cgroup.procs` before anything of the child runs.
///
/// Same precondition as [`clone_fork`]: the caller is single-threaded.
pub fn clone_fork_legacy(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: `flags` are namespace flags only (no pointer-argument flag); single-threadedness
    // (documented precondition) makes continuing in the child sound.
    forked(unsafe { clone_no_pointers(flags) })
}

/// `clone(2)` in its fork-like form, `flags` and `SIGCHLD` as the exit signal: no stack (0: the
/// child runs on a copy-on-write copy of ours, as with fork(2)) and every pointer argument
/// (parent/child tid, tls) null. One place for the raw call of [`clone_fork_legacy`] and
/// [`clone_refused_by_filter`].
///
/// # Safety
/// `flags` must hold none of the flags that make the kernel read or write the pointer
/// arguments (`CLONE_PARENT_SETTID`, `CLONE_CHILD_SETTID`, `CLONE_CHILD_CLEARTID`,
/// `CLONE_SETTLS`, `CLONE_PIDFD`), and the caller must make what the child does sound: a
/// single-threaded caller, or a child that only makes async-signal-safe calls.
unsafe fn clone_no_pointers(flags: libc::c_int) -> libc::c_long {
    let flags = libc::c_ulong::from(flags.unsigned_abs()) | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: the caller's contract (above): no flag makes the kernel use the null pointers.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    }
}

/// Whether a seccomp filter around this process answers `clone(2)` with the namespace `flags`
/// by `EPERM` itself — as container engines' default profiles do for any `CLONE_NEW*` flag —
/// rather than letting the kernel judge it (a user namespace refused by a sysctl, an LSM rule
/// such as Ubuntu's AppArmor restriction, a uid the caller's namespace does not map). A
/// `Seccomp: 2` in `/proc/self/status` does not tell: the shipped stockade.service's own
/// `SystemCallFilter=`/`RestrictNamespaces=` put one around every serve, and it lets the
/// sandbox's namespaces pass.
///
/// The call is made with `CLONE_NEWNS | CLONE_FS` added: a combination the kernel refuses with
/// `EINVAL` among its very first checks (`copy_process`), before it creates, counts or checks
/// anything; a filter judging the namespace flags answers before the kernel sees the call.
/// Nothing is made either way. Safe to call from any thread.
pub fn clone_refused_by_filter(flags: libc::c_int) -> bool {
    // SAFETY: namespace flags and CLONE_FS only (no pointer-argument flag); the kernel refuses
    // CLONE_NEWNS with CLONE_FS (EINVAL) before making a process. Were one made all the same,
    // its only act is `_exit` (async-signal-safe, so sound in the child of a multi-threaded
    // process), and the parent reaps it below.
    let ret = unsafe { clone_no_pointers(flags | libc::CLONE_NEWNS | libc::CLONE_FS) };
    match ret {
        0 => exit_now(0),
        pid if pid > 0 => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = waitpid(pid, 0);
            }
            false
        }
        _ => io::Error::last_os_error().raw_os_error() == Some(libc::EPERM),
    }
}

/// The result of a fork-like `clone`/`clone3`: 0 in the child, the child's pid in the parent.
fn forked(ret: libc::c_long) -> io::Result<Forked> {
    match check_long(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(
            i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?,
        )),
    }
}

/// A stack for [`vfork_exec`]'s child: an anonymous mapping whose lowest page is inaccessible,
/// so an overflow faults instead of writing into memory the parent owns.
#[derive(Debug)]
pub struct ChildStack {
    base: std::ptr::NonNull<libc::c_void>,
    len: usize,
    /// The inaccessible first page's length.
    guard: usize,
}

impl ChildStack {
    /// `usable` bytes of stack (rounded up to pages) plus the guard page.
    pub fn new(usable: usize) -> io::Result<Self> {
        let page = usize::try_from(check_long(
            // SAFETY: sysconf takes no pointers.
            unsafe { libc::sysconf(libc::_SC_PAGESIZE) },
        )?)
        .map_err(|_| io::Error::other("page size"))?;
        let len = usable.div_ceil(page) * page + page;
        // SAFETY: a fresh private anonymous mapping at an address the kernel picks; nothing
        // else refers to it. MAP_FAILED is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(base).ok_or_else(|| io::Error::other("mmap"))?;
        let stack = Self {
            base,
            len,
            guard: page,
        };
        // SAFETY: the first page of the mapping made above (dropped, hence unmapped, on error).
        check(unsafe { libc::mprotect(base.as_ptr(), page, libc::PROT_NONE) })?;
        Ok(stack)
    }
}

impl ChildStack {
    /// The bytes above the guard page.
    fn usable(&self) -> usize {
        self.len - self.guard
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`; no child runs on it any more (a
        // `vfork_exec` child has executed or exited before the call returned).
        unsafe { libc::munmap(self.base.as_ptr(), self.len) };
    }
}

/// `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does: `child` runs on `stack`, in our
/// memory, while we are suspended until it executes a program or exits. Unlike a fork,
/// no page table is copied at the clone and none is torn down at the child's exec — for a
/// process cloned from the runtime that is most of the cost of starting the program. Returns
/// the child's pid once it has executed or exited.
///
/// Precondition (as for [`clone_fork`]): the caller is single-threaded, so no lock is held by a
/// thread the child cannot see; the child ends in exec or `_exit` (`_exit(127)` if `child`
/// returns). `child` runs in the caller's memory, with its thread-local storage, on `stack`:
/// it must allocate nothing and take no lock (the caller's heap and locks are its own, and the
/// child can be stopped for good anywhere — killed, or by its own seccomp filter — leaving them
/// held: [`ExecArgs`] is made before), run no destructor of the caller's data, and not
/// panic (the trampoline is `extern "C"`: a panic aborts the child, but the hook that prints it
/// allocates and takes stderr's lock first). A signal handler of the caller's would run in it,
/// on the caller's data: the sandbox's init resets every disposition first
/// (`reset_signal_dispositions`).
pub fn vfork_exec(stack: &mut ChildStack, child: &mut dyn FnMut()) -> io::Result<i32> {
    struct Child<'a> {
        f: &'a mut dyn FnMut(),
        /// The child's stack as AddressSanitizer is to know it (see `asan_stack`).
        #[cfg_attr(not(stockade_asan), allow(dead_code))]
        stack: (*const libc::c_void, usize),
        /// The thread's stack as AddressSanitizer knew it before the child switched, for the
        /// parent to switch back to.
        #[cfg_attr(not(stockade_asan), allow(dead_code))]
        switched_from: Option<(*const libc::c_void, usize)>,
    }
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` points at the `Child` below, which lives in the frame of
        // `vfork_exec`; that frame is suspended (CLONE_VFORK) for as long as the child runs
        // in this memory.
        let c = unsafe { &mut *arg.cast::<Child<'_>>() };
        #[cfg(stockade_asan)]
        {
            c.switched_from = Some(asan_stack::enter(c.stack));
        }
        (c.f)();
        // Returning would run the parent's code on a stack that is not its own.
        exit_now(127)
    }
    // The stack grows down from the end of the mapping (page-aligned, so 16-byte aligned).
    // SAFETY: `len` is the mapping's length: one past its end, never dereferenced here; the
    // guard page's length is less than `len`.
    let (top, bottom) = unsafe {
        let base = stack.base.as_ptr().cast::<u8>();
        (base.add(stack.len), base.add(stack.guard))
    };
    let mut c = Child {
        f: child,
        stack: (bottom.cast(), stack.usable()),
        switched_from: None,
    };
    // SAFETY: `trampoline` runs on the guarded stack mapped by `stack` (borrowed mutably for
    // the duration, so no other child uses it); `arg` is valid as argued in `trampoline`;
    // no CLONE_*SETTID/SETTLS flag, so the variadic tid/tls arguments are not read. Sharing
    // memory without CLONE_THREAD/CLONE_SIGHAND/CLONE_FILES leaves the child its own
    // descriptors, signal handlers and seccomp filters.
    let pid = unsafe {
        libc::clone(
            trampoline,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_mut(&mut c).cast(),
        )
    };
    #[cfg(stockade_asan)]
    if let Some(from) = c.switched_from {
        asan_stack::leave(from);
    }
    check(pid)
}

/// AddressSanitizer's fiber interface, for sanitizer builds only (`--cfg stockade_asan`,
/// scripts/sanitize.sh): the child of [`vfork_exec`] runs on its own stack, in the memory and
/// with the thread-local state of the thread that cloned it, so to AddressSanitizer it is that
/// thread, whose stack it believes is the one it knew. Before every call of a function that
/// never returns (the child's `exec_program`, `_exit`) it unpoisons from the stack pointer up to
/// that stack's top — from the child's stack, terabytes away, so it refuses with a warning on the
/// child's stderr (the program's: a `--json` report on stderr was no longer JSON) and "false
/// positive error reports may follow". The child tells it of the switch first thing, and the
/// parent, once resumed, switches back.
#[cfg(stockade_asan)]
mod asan_stack {
    use std::ffi::c_void;
    use std::ptr;

    extern "C" {
        fn __sanitizer_start_switch_fiber(
            fake_stack_save: *mut *mut c_void,
            bottom: *const c_void,
            size: usize,
        );
        fn __sanitizer_finish_switch_fiber(
            fake_stack_save: *mut c_void,
            bottom_old: *mut *const c_void,
            size_old: *mut usize,
        );
    }

    /// On the child's stack: make `(bottom, size)` the current stack; returns the one before.
    pub(super) fn enter((bottom, size): (*const c_void, usize)) -> (*const c_void, usize) {
        let mut old = (ptr::null::<c_void>(), 0usize);
        let mut fake: *mut c_void = ptr::null_mut();
        // SAFETY: the sanitizer's documented pair, called in order on the new stack; every
        // pointer is to a local of this frame or the mapped child stack.
        unsafe {
            __sanitizer_start_switch_fiber(&mut fake, bottom, size);
            __sanitizer_finish_switch_fiber(ptr::null_mut(), &mut old.0, &mut old.1);
        }
        old
    }

    /// In the parent, resumed: make its own stack, as [`enter`] returned it, current again.
    pub(super) fn leave((bottom, size): (*const c_void, usize)) {
        // SAFETY: as in `enter`; the child has executed or exited, its stack is no one's.
        unsafe {
            __sanitizer_start_switch_fiber(ptr::null_mut(), bottom, size);
            __sanitizer_finish_switch_fiber(ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        }
    }
}

/// Plain `fork(2)` (glibc's, with its fork handlers): only the tests' children still use it —
/// the sandbox starts its processes with [`clone_fork`] and [`vfork_exec`].
#[cfg(test)]
fn fork() -> io::Result<Forked> {
    // SAFETY: `nix::unistd::fork` is `unsafe` because the child of a multi-threaded process may
    // only call async-signal-safe functions. A test's process has one more thread, the
    // harness's, waiting for the test thread to end (holding no lock); glibc's fork resets
    // malloc's locks in the child, and the children here make system calls, read /proc and
    // `_exit`.
    match unsafe { nix::unistd::fork() }.map_err(io_err)? {
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw())),
    }
}

/// Terminate the calling process immediately (no atexit handlers, no stdio flush): what a forked
/// child must use so that it never runs the parent's cleanup code.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: (`nix` has no `_exit` wrapper) _exit never returns and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// An argv or envp as `execve` takes it: the NULL-terminated array of pointers to the strings,
/// built before a [`vfork_exec`] child needs it. Building it in the child (as `nix`'s `execveat`
/// does, a `Vec` per call) allocates in the parent's heap from a process that may be stopped for
/// good in the middle of it — killed, or by its own seccomp filter refusing the `brk`/`mmap` a
/// growing heap needs while the arena's lock is held — which leaves the parent (the sandbox's
/// init) a locked or half-updated heap.
pub struct ExecArgs<'a> {
    ptrs: Vec<*const libc::c_char>,
    strings: std::marker::PhantomData<&'a [CString]>,
}

impl<'a> ExecArgs<'a> {
    /// The pointer array of `strings`, which it borrows.
    pub fn new(strings: &'a [CString]) -> Self {
        let ptrs = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Self {
            ptrs,
            strings: std::marker::PhantomData,
        }
    }
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: execute the file the descriptor refers to. Only
/// returns on failure. Allocates nothing (the raw system call; the error is the `errno`), so a
/// [`vfork_exec`] child may call it.
pub fn execveat_fd(fd: BorrowedFd<'_>, argv: &ExecArgs<'_>, envp: &ExecArgs<'_>) -> io::Error {
    // SAFETY: (`nix`'s wrapper allocates, see `ExecArgs`) both arrays are NULL-terminated arrays
    // of pointers to NUL-terminated strings that `ExecArgs` borrows for as long as it lives; the
    // path is an empty C string, which AT_EMPTY_PATH makes the descriptor itself.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.ptrs.as_ptr(),
            envp.ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// Mark every descriptor from `first` upwards close-on-exec (`close_range(CLOSE_RANGE_CLOEXEC)`).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    let flags = libc::c_int::try_from(libc::CLOSE_RANGE_CLOEXEC)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: close_range (no `nix` wrapper) only changes descriptor flags; no pointers.
    check(unsafe { libc::close_range(first, u32::MAX, flags) }).map(drop)
}

/// Set or clear `FD_CLOEXEC` on a descriptor we keep.
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(flags))
        .map(drop)
        .map_err(io_err)
}

/// `dup2(fd, target)` for a standard stream (`target` 0, 1 or 2; anything else is EINVAL); the
/// new descriptor is not close-on-exec. `nix` wraps exactly these three safely (any other
/// target would close a descriptor some Rust object may own).
pub fn dup2(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    match target {
        0 => nix::unistd::dup2_stdin(fd),
        1 => nix::unistd::dup2_stdout(fd),
        2 => nix::unistd::dup2_stderr(fd),
        _ => Err(Errno::EINVAL),
    }
    .map_err(io_err)
}

/// Raw `prctl` for the two operations `nix::sys::prctl` does not wrap: `PR_SET_SECUREBITS` and
/// `PR_CAPBSET_DROP` (the latter over every number the kernel knows, which the `caps` crate's
/// fixed capability list cannot do).
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
    nix::sys::prctl::set_pdeathsig(signal(sig)?).map_err(io_err)
}

/// `PR_SET_NO_NEW_PRIVS`.
pub fn set_no_new_privs() -> io::Result<()> {
    nix::sys::prctl::set_no_new_privs().map_err(io_err)
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
    let g = Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(io_err)
}

/// The real uid of this process: who asked for what it does (an audit record's `uid`; under
/// `sudo`, root's, with the caller in `SUDO_UID`, which is not proof).
pub fn real_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// `setresuid(u, u, u)`.
pub fn setresuid(uid: u32) -> io::Result<()> {
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(io_err)
}

/// `setgroups(0, NULL)`: drop every supplementary group.
pub fn clear_groups() -> io::Result<()> {
    nix::unistd::setgroups(&[]).map_err(io_err)
}

/// The real uid/gid and effective uid.
pub fn ids() -> (u32, u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
        nix::unistd::geteuid().as_raw(),
    )
}

/// `sethostname`.
pub fn sethostname(name: &str) -> io::Result<()> {
    nix::unistd::sethostname(name).map_err(io_err)
}

/// The NIS domain name of this process's UTS namespace (`uname`'s `domainname`): a new UTS
/// namespace starts with a copy of its creator's, `(none)` unless one was set.
pub fn domainname() -> io::Result<Vec<u8>> {
    let mut u = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: `uname` writes only into the struct it is given, which lives across the call.
    check(unsafe { libc::uname(u.as_mut_ptr()) })?;
    // SAFETY: every field is an array of `c_char`, for which all zero bytes (and whatever
    // `uname` wrote) is a valid value.
    let u = unsafe { u.assume_init() };
    Ok(u.domainname
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect())
}

/// `setdomainname`.
pub fn setdomainname(name: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is valid for `name.len()` bytes for the whole call, which only reads them.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `setsid`.
pub fn setsid() -> io::Result<()> {
    nix::unistd::setsid().map(drop).map_err(io_err)
}

/// `mount(2)`; `flags` are `MS_*` bits, passed through unchanged.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let flags = nix::mount::MsFlags::from_bits_retain(flags);
    nix::mount::mount(source, target, fstype, flags, data).map_err(io_err)
}

/// `umount2(target, MNT_DETACH)`.
pub fn umount_detach(target: &CStr) -> io::Result<()> {
    nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).map_err(io_err)
}

/// `pivot_root(".", ".")`: the current directory becomes the root and the old root is stacked
/// on top of it, to be detached with `umount_detach(".")` (the trick runc uses; it needs no
/// directory for the old root).
pub fn pivot_root_here() -> io::Result<()> {
    nix::unistd::pivot_root(c".", c".").map_err(io_err)
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
    // SAFETY: (no `nix` wrapper for mount_setattr) `attr` lives for the call and its size is
    // passed; `path` is a valid C string.
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
    nix::unistd::chdir(path).map_err(io_err)
}

/// `nix`'s `Resource` for a `libc::RLIMIT_*` number (the ones the sandbox sets; EINVAL for
/// others: `Resource` has no conversion from the raw number).
fn rlimit_resource(
    resource: libc::__rlimit_resource_t,
) -> io::Result<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    let table = [
        (libc::RLIMIT_NOFILE, R::RLIMIT_NOFILE),
        (libc::RLIMIT_NPROC, R::RLIMIT_NPROC),
        (libc::RLIMIT_FSIZE, R::RLIMIT_FSIZE),
        (libc::RLIMIT_CORE, R::RLIMIT_CORE),
        (libc::RLIMIT_MEMLOCK, R::RLIMIT_MEMLOCK),
        (libc::RLIMIT_CPU, R::RLIMIT_CPU),
        (libc::RLIMIT_AS, R::RLIMIT_AS),
        (libc::RLIMIT_DATA, R::RLIMIT_DATA),
        (libc::RLIMIT_STACK, R::RLIMIT_STACK),
        (libc::RLIMIT_SIGPENDING, R::RLIMIT_SIGPENDING),
        (libc::RLIMIT_MSGQUEUE, R::RLIMIT_MSGQUEUE),
        (libc::RLIMIT_NICE, R::RLIMIT_NICE),
        (libc::RLIMIT_RTPRIO, R::RLIMIT_RTPRIO),
        (libc::RLIMIT_LOCKS, R::RLIMIT_LOCKS),
        (libc::RLIMIT_RSS, R::RLIMIT_RSS),
        (libc::RLIMIT_RTTIME, R::RLIMIT_RTTIME),
    ];
    table
        .iter()
        .find(|(raw, _)| *raw == resource)
        .map(|(_, r)| *r)
        .ok_or_else(|| io_err(Errno::EINVAL))
}

/// `setrlimit(resource, {v, v})` (soft = hard, so the program cannot raise it back).
pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    nix::sys::resource::setrlimit(rlimit_resource(resource)?, value, value).map_err(io_err)
}

/// This process's hard limit of `resource` (`RLIM_INFINITY` when unlimited): the most a
/// sandbox it launches can be given (see `sandbox::rlimits`).
pub fn hard_rlimit(resource: libc::__rlimit_resource_t) -> io::Result<u64> {
    let (_, hard) = nix::sys::resource::getrlimit(rlimit_resource(resource)?).map_err(io_err)?;
    Ok(hard)
}

/// Raise this process's soft `RLIMIT_NOFILE` to its hard limit; returns the new soft limit.
/// `stockade serve` holds three pipes per plugin plus its agents' sockets: systemd's default
/// soft limit of 1024 would cap it near 300 plugins. Sandboxed children are unaffected: the
/// sandbox sets their `nofile` from the policy (default 256) before exec.
pub fn raise_nofile_soft_limit() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io_err)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io_err)?;
    }
    Ok(hard.max(soft))
}

/// `waitpid(pid, &status, flags)`; returns `(pid, raw status)`, pid 0 with WNOHANG when nothing
/// changed. Retries on EINTR.
///
/// By hand: `nix::sys::wait::waitpid` decodes the status into `WaitStatus`, whose `Signal` enum
/// has no real-time signals: for a child killed by e.g. SIGRTMIN it returns EINVAL *after* the
/// child was reaped, losing its status. Callers need the raw status (128+N for any N).
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

/// [`waitpid`] that also returns the reaped child's CPU time in microseconds (`wait4`'s
/// rusage: user + system, of it and the children it waited for), 0 when nothing was reaped.
/// The sandbox's init reports it with the program's status, so that a SIGKILL at
/// `cpu_time_secs` (RLIMIT_CPU soft = hard kills with SIGKILL) can be told from any other.
pub fn wait4(pid: i32, flags: libc::c_int) -> io::Result<(i32, i32, u64)> {
    loop {
        let mut status = 0;
        // SAFETY: all-zero is a valid `rusage` (plain integers and timevals).
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `ru` are valid out-pointers for the call.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let us = |t: libc::timeval| {
            u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
        };
        return Ok((r, status, us(ru.ru_utime) + us(ru.ru_stime)));
    }
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: libc::c_int) -> io::Result<()> {
    // Signal 0 (existence probe) is `None` for nix.
    let sig = if sig == 0 { None } else { Some(signal(sig)?) };
    nix::sys::signal::kill(Pid::from_raw(pid), sig).map_err(io_err)
}

/// `pidfd_open(pid, 0)`: a descriptor naming the process that has `pid` now, which keeps naming
/// it (and nothing else) after it exits and its number is reused.
///
/// By hand: `nix` 0.30 has no pidfd wrappers.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word, no pointers; on success the returned
    // descriptor is new and owned by nobody else, so `OwnedFd` may take it.
    let fd = check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    let fd = RawFd::try_from(fd).map_err(|_| io_err(Errno::EBADF))?;
    // SAFETY: see above: a fresh descriptor from the kernel, closed only by this `OwnedFd`.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Whether the process of a pidfd has exited (the descriptor polls readable from then on).
pub fn pidfd_exited(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let revents = poll(&[(fd, libc::POLLIN)], 0)?;
    Ok(revents.first().is_some_and(|r| r & libc::POLLIN != 0))
}

/// `pidfd_send_signal(fd, sig, NULL, 0)`: signal the very process the descriptor names.
pub fn pidfd_kill(fd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor for the duration of the call; the siginfo pointer is
    // NULL (the kernel fills it in as for kill(2)) and the flags are 0.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// SIGKILL this process (the store's crash-consistency test hook): no destructor runs.
pub fn kill_self() -> io::Result<()> {
    nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGKILL).map_err(io_err)
}

/// Stop this process (SIGSTOP) until someone sends SIGCONT: [`stop_at`]'s stop.
pub fn stop_self() -> io::Result<()> {
    nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGSTOP).map_err(io_err)
}

/// Test hook for races with another process: with `STOCKADE_TEST_STOP_AT=<point>` in a debug
/// build, the first time this process reaches `point` it stops (SIGSTOP), so a test that
/// waits for the stop (`waitpid` with `WUNTRACED`: no timing) can change the world right
/// there and let it go on (SIGCONT). Points: `lookup` (a plugin name read from the store's
/// registry, its package not opened yet: `store::with_installed`), `index-signature` (a
/// source's index fetched, its signature not yet: `sources::fetch_index`), `index-prev` (a
/// source's index and signature fetched, the pinned key not their signer, the rotation proof's
/// `.prev` not fetched yet: `sources::fetch_index`), `index-cached` (a
/// refresh's index cache written, what it records next not yet: `sources::remember`), `list`
/// (`list`'s registry read: `Store::list_registry`), `recover` (the store's lock taken, its
/// recovery not begun: `Store::open`, and `list`'s recovery), `committed` (a store change committed, its
/// `ok` audit record not written: `cmd::store::commit_audited`), `audit-rotate-written` (a
/// rotation's new file written at the rotated name, not yet exchanged with the log),
/// `audit-rotate-exchanged` (exchanged, the head not yet replaced: `audit::rotate`),
/// `audit-verify-reading` (`audit verify`'s head read once, the log opened, not yet read:
/// `cmd::audit::verify`) and
/// `ca-init-key-written` (`ca init`'s key pair written in its build directory, not yet renamed
/// into place: `cmd::ca::init`). Release builds compile it to nothing.
pub fn stop_at(point: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if std::env::var_os("STOCKADE_TEST_STOP_AT").is_some_and(|v| v == point)
        && !DONE.swap(true, Ordering::SeqCst)
    {
        let _ = stop_self();
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io_err)
}

/// A close-on-exec `SOCK_SEQPACKET` unix socket pair (message boundaries kept).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io_err)
}

/// A close-on-exec `SOCK_SEQPACKET` pair whose first end receives every message with its
/// sender's credentials (`SO_PASSCRED`, set before any message can be sent): the kernel records
/// the sending process at the send, so a process that has ended since (a program that exits at
/// once) is still named, and names its pid in the receiver's pid namespace.
pub fn seqpacket_pair_with_credentials() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{setsockopt, sockopt};
    let (a, b) = seqpacket_pair()?;
    setsockopt(&a, sockopt::PassCred, &true).map_err(io_err)?;
    Ok((a, b))
}

/// One message into `buf` (its length), with the sending process's pid as the kernel recorded
/// it (`SCM_CREDENTIALS`, in our pid namespace) when the socket passes credentials
/// ([`seqpacket_pair_with_credentials`]). Honours the socket's receive timeout.
pub fn recv_with_pid(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::ucred);
    let msg = loop {
        match recvmsg::<UnixAddr>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(io_err)?,
        }
    };
    let pid = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmCredentials(u) => Some(u.pid()),
            _ => None,
        })
    });
    // 0: the sender is not in our pid namespace (never the case for our own sandboxes).
    let pid = pid.filter(|&p| p > 0);
    Ok((msg.bytes, pid))
}

/// `poll` on `(fd, events)` pairs; returns the `revents` of each. Retries on EINTR; a negative
/// timeout waits forever.
pub fn poll(fds: &[(BorrowedFd<'_>, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let timeout = if timeout_ms < 0 {
        PollTimeout::NONE
    } else {
        PollTimeout::try_from(timeout_ms).map_err(|_| io_err(Errno::EINVAL))?
    };
    let mut p: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, ev)| PollFd::new(*fd, PollFlags::from_bits_retain(*ev)))
        .collect();
    loop {
        match nix::poll::poll(&mut p, timeout) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io_err(e)),
            Ok(_) => {
                return Ok(p
                    .iter()
                    .map(|x| x.revents().map_or(0, |f| f.bits()))
                    .collect())
            }
        }
    }
}

/// Blocking exclusive `flock` (the audit log's writers queue on its lock file, the store's
/// writers on the store's); released when the descriptor is closed. Only on a lock no process
/// of another user can open ([`open_private_lock_file`]): whoever can open a lock can hold it,
/// and this waits for ever.
pub fn flock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    flock_blocking(fd, nix::fcntl::FlockArg::LockExclusive)
}

/// Blocking shared `flock` (a store's readers: `verify` of installed plugins waits out an
/// install or removal in progress, and holds none off but them); released when the descriptor
/// is closed.
pub fn flock_shared(fd: BorrowedFd<'_>) -> io::Result<()> {
    flock_blocking(fd, nix::fcntl::FlockArg::LockShared)
}

fn flock_blocking(fd: BorrowedFd<'_>, how: nix::fcntl::FlockArg) -> io::Result<()> {
    loop {
        // Same reasoning as `try_flock_exclusive`: the caller owns the descriptor.
        #[allow(deprecated)]
        let r = nix::fcntl::flock(fd.as_raw_fd(), how);
        match r {
            Ok(()) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Exclusive `flock`, waiting for its holder until `deadline` at most: `Ok(false)` when another
/// process still held it then. For a lock whose holder may be stopped (a CLI command under
/// SIGSTOP, a debugger) where the caller must not wait for ever: `serve`'s one event loop. Tries
/// without blocking, pausing 1 ms doubled up to 10 ms in between (a blocking `flock` cannot be
/// given a deadline; a lock held for one write is taken within a pause of its release).
pub fn flock_exclusive_until(fd: BorrowedFd<'_>, deadline: std::time::Instant) -> io::Result<bool> {
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        if try_flock_exclusive(fd)? {
            return Ok(true);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(std::time::Duration::from_millis(10));
    }
}

/// Non-blocking exclusive `flock`; `Ok(false)` when someone else holds it.
pub fn try_flock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // `nix::fcntl::flock` is deprecated for `Flock`, which takes ownership of the descriptor and
    // unlocks on drop; here the caller owns the descriptor and the lock lives exactly as long as
    // it does (the uid lease), so the plain (safe) call is the one that fits.
    #[allow(deprecated)]
    let r = nix::fcntl::flock(fd.as_raw_fd(), nix::fcntl::FlockArg::LockExclusiveNonblock);
    match r {
        Ok(()) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(io_err(e)),
    }
}

/// `open(path, flags | O_CLOEXEC)` returning an owned descriptor (used for `O_PATH` opens of
/// mount sources and of the program, and the uid lock files, created `0600`).
pub fn open(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_CLOEXEC;
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    nix::fcntl::open(path, flags, mode).map_err(io_err)
}

/// `openat2(path, flags | O_CLOEXEC, RESOLVE_NO_SYMLINKS)`: like [`open`], but a symbolic link
/// in *any* component of the (absolute) path fails the open with `ELOOP`, where `O_NOFOLLOW`
/// checks only the last one. For a policy's `writable` bind sources: the plan refused a link
/// anywhere in the path, and this makes the open itself hold to that — a component swapped for
/// a link between the plan and the open cannot redirect the plugin's writable directory.
pub fn open_no_symlinks(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let how = nix::fcntl::OpenHow::new()
        .flags(OFlag::from_bits_retain(flags) | OFlag::O_CLOEXEC)
        .resolve(nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS);
    nix::fcntl::openat2(nix::fcntl::AT_FDCWD, path, how).map_err(io_err)
}

/// Open (creating it 0644 if absent) a lock file read-only: `flock` needs no write access, so a
/// lock file created by root (a `stockade exec` from the shell) can still be locked by the
/// daemon running as `stockade`, and the other way round. The directory (0700) keeps everyone
/// else out — which is what makes 0644 harmless: any user who can open a lock file can hold it
/// forever. The uid locks only (`/run/stockade/uids`, 0700, the daemon's user's; taken without
/// waiting, a held one passed over: sandbox/uid.rs); a lock in a directory others can read is
/// [`open_private_lock_file`]'s (the store's, the sources directory's, the audit log's).
///
/// 0644 exactly: a file this call creates (`O_EXCL`, so it is known to be new) gets its mode
/// through the descriptor, since the umask is taken off the one given to `open` — under a
/// hardened root's 077 a uid lock file would be 0600 root's, and the daemon could never lock
/// that uid again. An existing file keeps its mode.
///
/// Never blocks and takes only a lock file: the directory may be another user's (the daemon's
/// owns /run/stockade/uids and the state directory), and a FIFO planted at the name made the
/// plain open wait for a writer forever — root's `exec` hung in `open`, deaf to SIGTERM. So
/// `O_NONBLOCK` (which changes nothing for `flock`), then `fstat`: anything but a regular file
/// with one link (a FIFO, a device, a hard link to some other file) is refused with
/// `InvalidData`, as is a symlink (`O_NOFOLLOW`: ELOOP).
pub fn open_lock_file(path: &CStr) -> io::Result<OwnedFd> {
    open_lock_file_mode(path, 0o644, None, false)?.ok_or_else(|| io_err(Errno::EROFS))
}

/// [`open_lock_file`] for a lock only its owner may take: made `mode` (0600), so no other user
/// can open it — `flock` needs only a descriptor — and hold it forever (the store's lock and
/// the sources directory's, in directories the `stockade` user and group may read).
pub fn open_private_lock_file(path: &Path) -> io::Result<OwnedFd> {
    let me = nix::unistd::geteuid().as_raw();
    open_lock_file_mode(&lock_cpath(path)?, 0o600, Some(me), false)?
        .ok_or_else(|| io_err(Errno::EROFS))
}

/// [`open_private_lock_file`] for a reader, which changes nothing and so must work on a
/// read-only file system: `None` when the lock is missing or wider than private (an earlier
/// build's 0644) and the file system is read-only (`EROFS`), so that it can be neither made
/// nor narrowed — the caller reads without it rather than fail, or take a lock another user
/// could be holding for ever. Another user's lock, or one that is not a regular file of one
/// link, is refused as by [`open_private_lock_file`].
pub fn open_private_lock_file_to_read(path: &Path) -> io::Result<Option<OwnedFd>> {
    let me = nix::unistd::geteuid().as_raw();
    open_lock_file_mode(&lock_cpath(path)?, 0o600, Some(me), true)
}

/// [`open_private_lock_file`] for a lock that belongs to `owner`, who may be another user than
/// this one (root taking the audit log's lock, which is the log directory's owner's: only that
/// user and root can open it). Made only when `owner` is this user; otherwise a missing file is
/// `NotFound`, for the caller to make and hand over (never a file of this user's at the name,
/// which `owner` could not open). Checked as [`open_private_lock_file`] checks: a regular file
/// of one link, `owner`'s (else `InvalidData`), narrowed back to 0600 if found wider.
pub fn open_private_lock_file_of(path: &Path, owner: u32) -> io::Result<OwnedFd> {
    open_lock_file_mode(&lock_cpath(path)?, 0o600, Some(owner), false)?
        .ok_or_else(|| io_err(Errno::EROFS))
}

/// A private lock file's path for `open(2)`: every caller names it by a `&Path` (a held
/// directory's `/proc/self/fd/N/…`, a socket's or a log's `PATH.lock`), so the conversion is
/// made here, once. A path with a NUL byte cannot be opened (an `io::Error` of kind `Other`,
/// as each caller made it before).
fn lock_cpath(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// Open (or, for the running user's own, make) a lock file of `mode`; a private one (no bit for
/// group or others) must be `owner`'s. `None` only when `read_only_ok` and a read-only file
/// system keeps it from being made or narrowed to `mode`.
fn open_lock_file_mode(
    path: &CStr,
    mode: u32,
    owner: Option<u32>,
    read_only_ok: bool,
) -> io::Result<Option<OwnedFd>> {
    use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(mode);
    let me = nix::unistd::geteuid().as_raw();
    let create = owner.is_none_or(|o| o == me);
    // A file removed between the create that found it and the open that wanted it is made
    // again; a few rounds, not forever.
    for _ in 0..3 {
        if create {
            match nix::fcntl::open(path, flags | OFlag::O_CREAT | OFlag::O_EXCL, mode) {
                Ok(fd) => {
                    fchmod(&fd, mode).map_err(io_err)?;
                    return Ok(Some(fd));
                }
                Err(Errno::EEXIST) => {}
                Err(Errno::EROFS) if read_only_ok => return Ok(None),
                Err(e) => return Err(io_err(e)),
            }
        }
        match nix::fcntl::open(path, flags, Mode::empty()) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(io_err)?;
                let regular =
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
                if !regular || st.st_nlink != 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        if regular {
                            "not a lock file: it has another link"
                        } else {
                            "not a lock file: not a regular file"
                        },
                    ));
                }
                // A private lock that another user could open (another's file, or this user's
                // made wider since — a recursive chmod, a restore) would let that user hold it
                // forever: another's is refused, a wider one narrowed back to `mode`.
                if let Some(owner) = owner.filter(|_| mode.bits() & 0o077 == 0) {
                    if st.st_uid != owner {
                        let whose = if owner == me {
                            "this user".to_string()
                        } else {
                            format!("uid {owner}")
                        };
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "not a lock file of {whose}: it belongs to uid {}",
                                st.st_uid
                            ),
                        ));
                    }
                    if st.st_mode & 0o077 != 0 {
                        match fchmod(&fd, mode) {
                            Ok(()) => {}
                            Err(Errno::EROFS) if read_only_ok => return Ok(None),
                            Err(e) => return Err(io_err(e)),
                        }
                    }
                }
                return Ok(Some(fd));
            }
            Err(Errno::ENOENT) if create => {}
            // `O_NOFOLLOW` on a symbolic link: not a lock file, like a FIFO or a second link
            // (the callers refuse all of them alike, never as an I/O failure).
            Err(Errno::ELOOP) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a lock file: a symbolic link",
                ))
            }
            Err(e) => return Err(io_err(e)),
        }
    }
    Err(io_err(Errno::ENOENT))
}

/// `faccessat(fd, "", X_OK, AT_EMPTY_PATH | AT_EACCESS)`: may the caller execute this file?
/// (glibc implements the flags with the `faccessat2` system call.)
pub fn can_execute(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::AtFlags;
    nix::unistd::faccessat(
        fd,
        c"",
        nix::unistd::AccessFlags::X_OK,
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_EACCESS,
    )
    .map_err(io_err)
}

fn sigset(sigs: &[libc::c_int]) -> io::Result<SigSet> {
    let mut set = SigSet::empty();
    for s in sigs {
        set.add(signal(*s)?);
    }
    Ok(set)
}

/// Signal mask operations for the runtime's relay loop.
pub fn block_signals(sigs: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(sigs)?;
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(io_err)
}

/// Unblock every signal (a forked child must not inherit the runtime's blocked mask into exec).
pub fn unblock_all_signals() -> io::Result<()> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(io_err)
}

/// A `signalfd` for the given (already blocked) signals.
pub fn signalfd(sigs: &[libc::c_int]) -> io::Result<OwnedFd> {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let set = sigset(sigs)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map(OwnedFd::from)
        .map_err(io_err)
}

/// A plain `read(2)` (on a datagram socket: one datagram), for a process whose seccomp filter
/// admits `read` but not necessarily `recvfrom`.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => {}
            r => return r.map_err(io_err),
        }
    }
}

/// Read one `signalfd_siginfo` and return the signal number. (A plain `read`: `nix`'s
/// `SignalFd::read_signal` needs the `SignalFd` itself, the caller holds a borrowed descriptor.)
pub fn read_signalfd(fd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    match nix::unistd::read(fd, &mut buf) {
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(io_err(e)),
        Ok(n) if n < buf.len() => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        Ok(_) => {
            // `ssi_signo` is the struct's first field (a u32 in native byte order).
            let signo = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            Ok(i32::try_from(signo).ok())
        }
    }
}

/// A signal read from a signalfd with who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalFrom {
    /// The signal number.
    pub signo: i32,
    /// The sender's real uid as this process's user namespace sees it (`ssi_uid`): 0 for one
    /// the kernel sent (a terminal hangup) as for root's, the overflow uid (65534) for a sender
    /// whose uid is not mapped here — not proof of who sent it.
    pub uid: u32,
    /// The sender's pid in this process's pid namespace (`ssi_pid`): 0 for one the kernel sent,
    /// and for a sender outside this pid namespace (the host's container runtime signalling a
    /// contained `serve`).
    pub pid: u32,
}

/// [`read_signalfd`], with the sender's uid and pid (an audit record's "who").
pub fn read_signalfd_from(fd: BorrowedFd<'_>) -> io::Result<Option<SignalFrom>> {
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    match nix::unistd::read(fd, &mut buf) {
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(io_err(e)),
        Ok(n) if n < buf.len() => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        Ok(_) => {
            let u32_at = |off: usize| {
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
            };
            let signo = u32_at(std::mem::offset_of!(libc::signalfd_siginfo, ssi_signo));
            Ok(i32::try_from(signo).ok().map(|signo| SignalFrom {
                signo,
                uid: u32_at(std::mem::offset_of!(libc::signalfd_siginfo, ssi_uid)),
                pid: u32_at(std::mem::offset_of!(libc::signalfd_siginfo, ssi_pid)),
            }))
        }
    }
}

/// The Landlock ABI this kernel offers, as this process is answered it
/// (`landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`): `ENOSYS` when it is
/// not built, `EOPNOTSUPP` when it is built but left out of the boot's `lsm=` list — or a
/// seccomp filter's answer (`EPERM`, which the kernel never gives to this query; `ENOSYS`,
/// runc's answer to calls newer than a container's profile). Nothing is created.
pub fn landlock_abi() -> io::Result<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with LANDLOCK_CREATE_RULESET_VERSION the kernel reads no attribute and creates no
    // descriptor: the null pointer and size 0 are what that flag requires.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(check_long(ret)?).map_err(|_| io::Error::other("Landlock ABI out of range"))
}

/// The launch's clone: [`clone_fork`] (into `cgroup` when given), or, where `clone3` answers
/// `ENOSYS` — a container engine's default seccomp profile (Docker, Podman, Kubernetes'
/// RuntimeDefault), systemd's `RestrictNamespaces=` —, [`clone_fork_legacy`], as libc does:
/// those filters judge `clone(2)`'s flags instead. The `bool` says whether the child was born
/// in `cgroup` (`false` after the fallback, which has no `CLONE_INTO_CGROUP`: the caller joins
/// it by `cgroup.procs`). One function for the launch and [`probe_clone`], so `node info` gets
/// the launch's answer (review-170: the probe took `clone3`'s ENOSYS for a refusal).
///
/// Same precondition as [`clone_fork`]: the caller is single-threaded.
pub fn clone_fork_or_legacy(
    flags: libc::c_int,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<(Forked, bool)> {
    match clone_fork(flags, cgroup) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            clone_fork_legacy(flags).map(|f| (f, false))
        }
        other => other.map(|f| (f, cgroup.is_some())),
    }
}

/// Whether this caller may make the namespaces of `flags` (`CLONE_NEW*` bits) as one clone: a
/// child is cloned into them by the launch's own clone ([`clone_fork_or_legacy`]) and exits at
/// once. `Err` is the clone's error, as the launch would get it.
///
/// The caller must be single-threaded ([`clone_fork`]'s precondition).
pub fn probe_clone(flags: libc::c_int) -> io::Result<()> {
    match clone_fork_or_legacy(flags, None)?.0 {
        Forked::Child => exit_now(0),
        // The clone made the namespaces: that is the answer, whatever becomes of the child.
        // It is reaped here, or by the kernel already where SIGCHLD is ignored (a disposition
        // inherited across exec: `env --ignore-signal=CHLD`, some supervisors), when `waitpid`
        // says ECHILD — the launch runs under it, and the probe said "No child processes"
        // (review-170).
        Forked::Parent(pid) => match waitpid(pid, 0) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// `unshare(flags)`; `flags` are `CLONE_NEW*` bits, passed through unchanged.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(flags)).map_err(io_err)
}

/// `fstat` file type bits and mode of a descriptor.
pub fn fstat_mode(fd: BorrowedFd<'_>) -> io::Result<u32> {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_mode)
        .map_err(io_err)
}

/// Owner uid, group gid and mode (type bits included) of a descriptor's file, in the caller's
/// user namespace.
pub fn file_owner_mode(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    nix::sys::stat::fstat(fd)
        .map(|st| (st.st_uid, st.st_gid, st.st_mode))
        .map_err(io_err)
}

/// Number of links of a descriptor's file: 0 once it was deleted (or renamed over) since it was
/// opened.
pub fn link_count(fd: BorrowedFd<'_>) -> io::Result<u64> {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_nlink)
        .map_err(io_err)
}

/// The mount flags (`ST_*`) of the mount a descriptor's file was opened through.
pub fn fstatvfs_flags(fd: BorrowedFd<'_>) -> io::Result<u64> {
    nix::sys::statvfs::fstatvfs(fd)
        .map(|st| st.flags().bits())
        .map_err(io_err)
}

/// The caller's supplementary groups (`getgroups`).
pub fn supplementary_groups() -> io::Result<Vec<u32>> {
    nix::unistd::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .map_err(io_err)
}

/// A sealed in-memory copy of a descriptor's file: `memfd_create`, the contents copied in
/// (read through `/proc/self/fd/N`, a description of its own, so the source's offset is not
/// moved — which also reaches a file deleted since it was opened), then sealed against every
/// change of its contents and of its seals (`F_SEAL_WRITE|SHRINK|GROW|SEAL`). Executable
/// (`MFD_EXEC` where the kernel knows it, ≥ 6.3; before, a memfd is executable anyway). Nothing
/// done to it — through `/proc/self/exe` or `/dev/fd/N` — reaches any file on a disk.
pub fn sealed_copy(src: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let path = CString::new(format!("/proc/self/fd/{}", src.as_raw_fd()))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let from = open(&path, libc::O_RDONLY)?;
    let create = |flags: libc::c_uint| {
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call; the
        // result is a new descriptor we own (or -1).
        let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: `fd` was just returned by memfd_create and is owned by nothing else.
            Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        }
    };
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let memfd = match create(base | libc::MFD_EXEC) {
        // Before 6.3 the flag is unknown (EINVAL); a memfd is executable anyway.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => create(base)?,
        r => r?,
    };
    let mut to = std::fs::File::from(memfd);
    std::io::copy(&mut std::fs::File::from(from), &mut to)?;
    let memfd = OwnedFd::from(to);
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int argument; `memfd` is a valid descriptor we own.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(memfd)
}

/// Device and inode of a descriptor's file.
pub fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    nix::sys::stat::fstat(fd)
        .map(|st| (st.st_dev, st.st_ino))
        .map_err(io_err)
}

/// Whether two descriptors are the same file (device and inode), e.g. stdout and stderr both
/// redirected into one pipe.
pub fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    matches!((file_id(a), file_id(b)), (Ok(x), Ok(y)) if x == y)
}

/// Close every descriptor except `keep` (two `close_range` calls around it).
pub fn close_all_except(keep: RawFd) -> io::Result<()> {
    let k = u32::try_from(keep).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: close_range (no `nix` wrapper) takes integers; the descriptors closed are this process's own and no
    // Rust object still in use refers to them (callers are about to only use `keep`).
    unsafe {
        if k > 0 {
            check(libc::close_range(0, k - 1, 0))?;
        }
        check(libc::close_range(k + 1, u32::MAX, 0))?;
    }
    Ok(())
}

/// Close every descriptor not in `keep` (`close_range` over the gaps between them).
pub fn close_all_but(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .map(|&k| u32::try_from(k).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput)))
        .collect::<io::Result<_>>()?;
    keep.sort_unstable();
    keep.dedup();
    let mut first = 0u32;
    for k in keep {
        if k > first {
            // SAFETY: close_range (no `nix` wrapper) takes integers; the descriptors closed are
            // this process's own, and the caller holds no Rust object it will still use on them
            // (everything it needs is in `keep`).
            check(unsafe { libc::close_range(first, k - 1, 0) })?;
        }
        first = k.saturating_add(1);
    }
    // SAFETY: as above, for everything past the highest kept descriptor.
    check(unsafe { libc::close_range(first, u32::MAX, 0) }).map(drop)
}

/// Set `O_NONBLOCK` on a descriptor.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::fcntl;
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(io_err)?;
    let fl = OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(fl)).map(drop).map_err(io_err)
}

/// A descriptor's file status flags (`F_GETFL`), to restore them later with [`set_status_flags`].
pub fn status_flags(fd: BorrowedFd<'_>) -> io::Result<i32> {
    nix::fcntl::fcntl(fd, FcntlArg::F_GETFL).map_err(io_err)
}

/// Restore flags read by [`status_flags`] (`F_SETFL`).
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    let fl = OFlag::from_bits_retain(flags);
    nix::fcntl::fcntl(fd, FcntlArg::F_SETFL(fl))
        .map(drop)
        .map_err(io_err)
}

/// `PR_SET_DUMPABLE`.
pub fn set_dumpable(on: bool) -> io::Result<()> {
    nix::sys::prctl::set_dumpable(on).map_err(io_err)
}

/// Replace this process's command line, as `/proc/<pid>/cmdline` shows it to anyone who can see
/// the process, with `name` followed by NUL bytes.
///
/// Why: the sandbox's init is a fork of the runtime, so its argv area still holds the runtime's
/// command line (host paths, `--env` values, policy file names), and `/proc/1/cmdline` is
/// world-readable inside the pid namespace even though init is not dumpable. The kernel reads that
/// file from the `[arg_start, arg_end)` range of the process's memory (fields 48 and 49 of
/// `/proc/self/stat`); overwriting the range in place hides it. The write goes through
/// `/proc/self/mem` (always permitted on oneself) rather than a raw pointer, so no `unsafe` is
/// needed; nothing in this process reads argv afterwards (the runtime parsed it into owned
/// strings long before). The length of the range stays visible, its content does not. `name`
/// longer than the range is truncated (the last byte stays NUL so the kernel does not treat the
/// area as a `setproctitle` overflow into the environment).
pub fn set_cmdline(name: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let (start, end) = arg_range(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no argument range in /proc/self/stat",
        )
    })?;
    let len = usize::try_from(end - start)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "argument range too large"))?;
    if len == 0 {
        return Ok(());
    }
    let mut area = vec![0u8; len];
    let keep = name.len().min(len - 1);
    area[..keep].copy_from_slice(&name[..keep]);
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?;
    mem.write_all_at(&area, start)
}

/// Fields 48 and 49 (`arg_start`, `arg_end`) of a `/proc/<pid>/stat` line. The command name in
/// field 2 may contain spaces and parentheses, so counting starts after its last `)`.
fn arg_range(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' the first field is field 3 (state).
    let mut fields = rest.split_ascii_whitespace().skip(48 - 3);
    let start: u64 = fields.next()?.parse().ok()?;
    let end: u64 = fields.next()?.parse().ok()?;
    (start <= end).then_some((start, end))
}

/// Ignore SIGXFSZ in this process. A write that reaches the file-size limit (`RLIMIT_FSIZE`: a
/// unit's `LimitFSIZE=`, a shell's `ulimit -f`) then takes the bytes below it and fails with
/// `EFBIG`, which every writer handles as the I/O error it is — an audit append is cut back to
/// the length before its record (audit.rs `append_to_file`), an extraction refused — instead of
/// the signal's default action ending the runtime in the middle of the write: the audit log was
/// left ending in half a record (every later append refused, `audit verify` calling it
/// altered), and `serve` died with all its plugins (review-169). Not inherited by a plugin: the
/// sandbox's init resets every disposition before the program is started
/// ([`reset_signal_dispositions`]), so a program at its own `fsize` still dies of SIGXFSZ.
pub fn ignore_file_size_signal() -> io::Result<()> {
    use nix::sys::signal::{signal, SigHandler};
    // SAFETY: SIG_IGN installs no handler, so no code of this process ever runs on the signal
    // (nothing to be async-signal-safe); the disposition replaced is the default one, whose
    // only effect was to end the process.
    unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }
        .map(drop)
        .map_err(io_err)
}

/// Reset every signal's disposition to the default. Ignored signals survive `execve` (the Rust
/// runtime ignores SIGPIPE; a parent may ignore others, including the real-time signals glibc
/// reserves for itself, which its `signal()` wrapper refuses to touch: hence the raw call; `nix`'s
/// `sigaction` is itself `unsafe` and only takes the `Signal` enum, which lacks those signals).
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

/// Set this process's file mode creation mask to `mask` (the old one is dropped). Every process
/// has one, inherited through fork and exec: the sandbox's init sets its own so that the
/// program's is never the runtime's caller's.
pub fn set_umask(mask: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

/// Keep only the execution domain (`PER_MASK`) of this process's personality and clear every
/// flag: `ADDR_NO_RANDOMIZE` (`setarch -R`), `READ_IMPLIES_EXEC` (`-X`), `MMAP_PAGE_ZERO`
/// (`-Z`), `ADDR_COMPAT_LAYOUT` (`-L`), the address-limit flags… survive fork and exec, so a
/// runtime started with one would hand it to every sandboxed program, which cannot undo it
/// (`personality` is refused by the seccomp filter).
///
/// Raw call: `nix` wraps it only behind its `personality` feature, which this crate does not
/// enable for one call.
///
/// Under a personality lock — systemd's `LockPersonality=yes`, which the shipped
/// `stockade.service` sets: a seccomp rule refusing (EPERM) `personality` with any argument but
/// the value locked, the query included — the query fails; setting `PER_LINUX` then succeeds
/// only if that is the value locked, no flag and nothing to clear. Locked to anything else, the
/// flags cannot be known or cleared: an error, the launch stops.
pub fn clear_personality_flags() -> io::Result<()> {
    /// `personality(0xffffffff)` queries without changing anything.
    const QUERY: libc::c_ulong = 0xffff_ffff;
    /// The execution domain's bits (`PER_MASK` in <linux/personality.h>).
    const PER_MASK: u32 = 0x00ff;
    /// The plain Linux execution domain, no flag.
    const PER_LINUX: libc::c_ulong = 0;
    // SAFETY: `personality` takes a plain integer and touches no memory of ours; QUERY only
    // reads the current value.
    let current = unsafe { libc::personality(QUERY) };
    if current == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
        // SAFETY: as above; PER_LINUX is a valid personality.
        if unsafe { libc::personality(PER_LINUX) } == -1 {
            return Err(io::Error::new(
                e.kind(),
                "the personality is locked (systemd's LockPersonality=) to a value other than \
                 the plain Linux one: its flags cannot be read or cleared",
            ));
        }
        return Ok(());
    }
    // The kernel's persona is an `unsigned int`; glibc returns its bits as an `int`.
    let current = u32::from_ne_bytes(current.to_ne_bytes());
    if current & !PER_MASK == 0 {
        return Ok(());
    }
    // SAFETY: as above; the argument is the current execution domain without any flag.
    if unsafe { libc::personality(libc::c_ulong::from(current & PER_MASK)) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's `oom_score_adj` (-1000 … 1000), from `/proc/self/oom_score_adj`.
pub fn oom_score_adj() -> io::Result<i32> {
    let text = std::fs::read_to_string("/proc/self/oom_score_adj")?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{text:?}")))
}

/// Whether KSM may merge every anonymous page of this process (`PR_GET_MEMORY_MERGE`, Linux
/// 6.4: set by a caller's `PR_SET_MEMORY_MERGE`, systemd's `MemoryKSM=yes`, and kept across
/// fork and exec). A kernel without the option (EINVAL) merges nothing a process did not ask for.
pub fn memory_merge() -> io::Result<bool> {
    match prctl(libc::PR_GET_MEMORY_MERGE, 0) {
        Ok(v) => Ok(v != 0),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `PR_SET_MEMORY_MERGE` 0: KSM no longer merges this process's pages unasked (those merged
/// are unmerged); kept by the processes it forks and the programs they execute.
pub fn clear_memory_merge() -> io::Result<()> {
    prctl(libc::PR_SET_MEMORY_MERGE, 0).map(drop)
}

/// This thread's timer slack in nanoseconds (`PR_GET_TIMERSLACK`: how late the kernel may fire
/// its timers to batch wake-ups). The raw system call: its `long` result holds a value glibc's
/// `int`-returning `prctl` would truncate. Never an error: see [`timer_slack_from`].
pub fn timer_slack() -> u64 {
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_GET_TIMERSLACK takes no pointer; the unused arguments are 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_GET_TIMERSLACK,
            zero,
            zero,
            zero,
            zero,
        )
    };
    let errno = if ret == -1 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    };
    timer_slack_from(ret, errno)
}

/// The slack a `PR_GET_TIMERSLACK` system call answered, from glibc's `syscall` result `ret` and,
/// where that is -1, `errno`. The kernel returns the whole `u64` slack as the call's `long`
/// result and never an error, so there is none to tell apart: glibc folds a result in
/// -4095..=-1 — a slack within 4095 of 2^64, which `PR_SET_TIMERSLACK` accepts — into -1 and
/// errno = -result, and the slack is `errno`'s negation; any other result (a slack of 2^63 or
/// more included) is the value's bits. Only a caller's seccomp filter can fail the call, with an
/// errno read here as a huge slack: that filter refuses the `PR_SET_TIMERSLACK` that follows a
/// slack other than the default too, so the launch still fails closed.
pub fn timer_slack_from(ret: libc::c_long, errno: i32) -> u64 {
    if ret == -1 {
        u64::from(errno.unsigned_abs()).wrapping_neg()
    } else {
        u64::from_ne_bytes(ret.to_ne_bytes())
    }
}

/// `PR_SET_TIMERSLACK` `ns` (> 0): this thread's timer slack, and the default that the processes
/// it forks start with (and return to with their own `PR_SET_TIMERSLACK` 0); kept across exec.
pub fn set_timer_slack(ns: u64) -> io::Result<()> {
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_SET_TIMERSLACK takes an integer and no pointer; the unused arguments are 0.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_TIMERSLACK,
            ns as libc::c_ulong,
            zero,
            zero,
            zero,
        )
    })
    .map(drop)
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`: this process gets a new, empty, anonymous
/// session keyring owned by its uid, in place of the one it inherited, and so does what it forks
/// and executes from then on; the new keyring's serial. A kernel without keys (no
/// `CONFIG_KEYS`) answers ENOSYS.
pub fn join_new_session_keyring() -> io::Result<i32> {
    // SAFETY: a null name asks for an anonymous keyring; nothing else is read or written.
    let serial = check_long(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING as libc::c_long,
            std::ptr::null::<libc::c_char>(),
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })?;
    i32::try_from(serial).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "serial"))
}

/// Write this process's `oom_score_adj`. Raising it needs no privilege; lowering it below the
/// floor a privileged writer left (`oom_score_adj_min`) is EACCES. The file belongs to root
/// once the process is not dumpable (or has changed its ids), so call it before that.
pub fn set_oom_score_adj(value: i32) -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
}

/// The text of `/proc/self/stat` (the nice value and the scheduling policy are read from it
/// rather than asked for: the queries could be refused by a caller's seccomp filter, reading a
/// file cannot).
pub fn own_stat() -> io::Result<String> {
    std::fs::read_to_string("/proc/self/stat")
}

/// `setpriority(PRIO_PROCESS, 0, nice)`: this process's nice value (a single-threaded process:
/// the value is per thread). Raising it needs no privilege.
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    check(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) }).map(drop)
}

/// `IOPRIO_WHO_PROCESS` (<linux/ioprio.h>; not in `libc`).
const IOPRIO_WHO_PROCESS: libc::c_long = 1;

/// `ioprio_get(IOPRIO_WHO_PROCESS, 0)`: this process's I/O priority (class << 13 | level).
/// No `/proc` file shows it; the call is in systemd's `@system-service`.
pub fn io_priority() -> io::Result<i32> {
    // SAFETY: ioprio_get takes two integers and touches no memory of ours.
    let r = check_long(unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) })?;
    i32::try_from(r).map_err(|_| io_err(Errno::ERANGE))
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, value)`. Any class but real-time needs no privilege for
/// one's own process.
pub fn set_io_priority(value: i32) -> io::Result<()> {
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            libc::c_long::from(value),
        )
    })
    .map(drop)
}

/// `sched_setscheduler(0, SCHED_OTHER, {0})` at the current nice value: leave a real-time
/// policy, which needs no privilege.
pub fn set_sched_other() -> io::Result<()> {
    set_sched_other_of(0)
}

/// [`set_sched_other`] for process `pid` (0: this one) — the launch's child, which has this
/// process's owner until its id maps are written: leaving a real-time policy for another
/// process of the same owner needs no privilege either.
pub fn set_sched_other_of(pid: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call, which only reads it; `pid`
    // is a plain integer (a pid that names no process of ours is refused with ESRCH/EPERM).
    check(unsafe { libc::sched_setscheduler(pid, libc::SCHED_OTHER, &param) }).map(drop)
}

/// The mount flags (`ST_*` from `statvfs`) of the filesystem at `path`.
pub fn statvfs_flags(path: &CStr) -> io::Result<u64> {
    nix::sys::statvfs::statvfs(path)
        .map(|st| st.flags().bits())
        .map_err(io_err)
}

#[cfg(test)]
mod tests {
    /// A filter that fails `syscall` with EPERM where one of `rules` matches (any call: none)
    /// and allows everything else, as a systemd unit's `SystemCallFilter=` would.
    fn eperm_filter(
        syscall: libc::c_long,
        rules: Vec<seccompiler::SeccompRule>,
    ) -> seccompiler::BpfProgram {
        seccompiler::SeccompFilter::new(
            [(syscall, rules)].into_iter().collect(),
            seccompiler::SeccompAction::Allow,
            seccompiler::SeccompAction::Errno(libc::EPERM as u32),
            std::env::consts::ARCH.try_into().unwrap(),
        )
        .unwrap()
        .try_into()
        .unwrap()
    }

    /// Sets no_new_privs (which a filter needs, unprivileged) and installs `filter` on this
    /// process: only in a forked child ([`in_child`]). False when either fails.
    fn install(filter: &seccompiler::BpfProgram) -> bool {
        // SAFETY: plain prctl with integer arguments.
        let nnp = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        nnp == 0 && seccompiler::apply_filter(filter).is_ok()
    }

    /// Runs `f` in a forked child, so that what it changes (a seccomp filter, the nice value,
    /// the personality) stays there, and returns the child's exit code (101: `f` panicked).
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child runs `f` (system calls and small /proc reads; glibc's fork leaves
        // malloc usable in the child) and `_exit`s without returning into the test harness.
        match unsafe { libc::fork() } {
            0 => {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
                // SAFETY: ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            pid => {
                let mut status = 0;
                // SAFETY: waits for the child forked above.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert!(libc::WIFEXITED(status), "{status:#x}");
                libc::WEXITSTATUS(status)
            }
        }
    }

    /// Every slack `PR_SET_TIMERSLACK` accepts reads back as itself, those within 4095 of 2^64
    /// included: glibc's `syscall` returns them as -1 and errno, which read as an error (the
    /// launch failed with a random errno at `process_state`). Set on a thread of its own: the
    /// slack is per thread.
    #[test]
    fn timer_slack_reads_every_u64() {
        let values = [
            u64::MAX,
            u64::MAX - 15,
            u64::MAX - 4094,
            u64::MAX - 4095,
            1 << 63,
            1 << 40,
            50_000,
            1,
        ];
        std::thread::spawn(move || {
            for ns in values {
                super::set_timer_slack(ns).unwrap();
                assert_eq!(super::timer_slack(), ns, "{ns:#x}");
            }
        })
        .join()
        .unwrap();
    }

    /// glibc's -1/errno is the kernel's result -errno, a slack; every other result is the
    /// value's bits.
    #[test]
    fn timer_slack_from_syscall_result() {
        use super::timer_slack_from;
        assert_eq!(timer_slack_from(-1, libc::EPERM), u64::MAX);
        assert_eq!(timer_slack_from(-1, libc::EBUSY), u64::MAX - 15);
        assert_eq!(timer_slack_from(-1, 4095), u64::MAX - 4094);
        assert_eq!(timer_slack_from(-4097, 0), u64::MAX - 4096);
        assert_eq!(timer_slack_from(libc::c_long::MIN, 0), 1 << 63);
        assert_eq!(timer_slack_from(50_000, 0), 50_000);
        assert_eq!(timer_slack_from(0, 0), 0);
    }

    /// A NIS domain name copied into the sandbox's UTS namespace is set back to "(none)"; where
    /// a seccomp filter of the caller's refuses `setdomainname` (a unit without it in its
    /// `SystemCallFilter=`), that fails — the launch stops — but only when there is a name to
    /// hide: without one nothing is called and it passes.
    #[test]
    fn a_copied_domain_name_is_cleared_and_a_refused_clear_fails_closed() {
        use crate::sandbox::child::{clear_domain_name, NO_DOMAIN_NAME};
        if !crate::test_support::root_or_skip("a UTS namespace of its own needs root") {
            return;
        }
        // (the name the namespace starts with, filter, the exit code: 0 cleared or nothing to
        // clear, 1 refused)
        for (name, filtered, want) in [
            (&b"corp.internal"[..], false, 0),
            (b"corp.internal", true, 1),
            (NO_DOMAIN_NAME, true, 0),
        ] {
            let filter = eperm_filter(libc::SYS_setdomainname, vec![]);
            let code = in_child(|| {
                if super::unshare(libc::CLONE_NEWUTS).is_err()
                    || super::setdomainname(name).is_err()
                {
                    return 3;
                }
                if filtered && !install(&filter) {
                    return 4;
                }
                match clear_domain_name() {
                    Ok(()) if super::domainname().ok().as_deref() == Some(NO_DOMAIN_NAME) => 0,
                    Ok(()) => 6,
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => 1,
                    Err(_) => 7,
                }
            });
            let shown = String::from_utf8_lossy(name);
            assert_eq!(
                code, want,
                "domain name {shown}, setdomainname refused: {filtered}"
            );
        }
    }

    /// A caller's negative nice value is raised to 0 for the program; where a seccomp filter of
    /// the caller's refuses `setpriority` (stockade.service's `SystemCallFilter=~@resources`),
    /// the process-state step fails — fail closed — but only when there is something to change:
    /// at nice 0 under the same filter nothing is called and the step passes.
    #[test]
    fn a_negative_nice_value_is_raised_and_a_refused_raise_fails_closed() {
        use crate::sandbox::process_state::{self, ProcessStateError};
        if !crate::test_support::root_or_skip("a negative nice value needs root") {
            return;
        }
        // (caller's nice, filter, the exit code: 0 passed at nice 0, 1 refused as `Nice`)
        for (nice, filtered, want) in [(-5, false, 0), (-5, true, 1), (0, true, 0)] {
            let filter = eperm_filter(libc::SYS_setpriority, vec![]);
            let code = in_child(|| {
                if super::set_nice(nice).is_err() {
                    return 3;
                }
                if filtered && !install(&filter) {
                    return 4;
                }
                match process_state::apply(libc::SCHED_OTHER) {
                    Ok(state) if state.nice.set == 0 => {
                        let now = super::own_stat().ok();
                        let now = now.as_deref().and_then(process_state::nice_and_policy);
                        if now.map(|(n, _)| n) == Some(0) {
                            0
                        } else {
                            6
                        }
                    }
                    Ok(_) => 7,
                    Err(ProcessStateError::Nice { inherited: -5, .. }) => 1,
                    Err(_) => 8,
                }
            });
            assert_eq!(code, want, "nice {nice}, setpriority refused: {filtered}");
        }
    }

    /// Under systemd's `LockPersonality=yes` (a seccomp rule: `personality` with any argument but
    /// the locked value is EPERM, the query too) there is nothing to clear and the launch goes
    /// on; it failed at the query (every plugin of the shipped unit: 125 `process_state`). Locked
    /// to a value with a flag, it fails. In a forked child: the filter stays there.
    #[test]
    fn a_locked_personality_is_cleared_only_when_locked_to_plain_linux() {
        use seccompiler::{
            BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule,
        };
        let lock = |value: u64| -> BpfProgram {
            let rule = SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::Ne,
                value,
            )
            .unwrap()])
            .unwrap();
            eperm_filter(libc::SYS_personality, vec![rule])
        };
        // ADDR_NO_RANDOMIZE: a value with a flag.
        for (locked, cleared) in [(0u64, true), (0x0040000, false)] {
            let filter = lock(locked);
            let code = in_child(|| {
                if !install(&filter) {
                    return 3;
                }
                if locked != 0 {
                    // The lock's own value set first (as systemd's unit start does).
                    // SAFETY: plain integer argument.
                    unsafe { libc::personality(locked as libc::c_ulong) };
                }
                i32::from(super::clear_personality_flags().is_ok())
            });
            assert_eq!(code, i32::from(cleared), "locked to {locked:#x}");
        }
    }

    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    /// The unit tests' allocator: the system's, counting each thread's allocations, so that a
    /// test can ask how many a piece of code made ([`allocations`]). A [`vfork_exec`] child
    /// runs with the thread-local storage of the thread that cloned it: its allocations count
    /// there too.
    struct Counting;

    std::thread_local! {
        static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call is passed on unchanged to the system allocator, which upholds the
    // GlobalAlloc contract; counting (a const thread-local `Cell`, no destructor) allocates
    // nothing.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract for `alloc`, passed on.
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: the caller's contract for `dealloc`, passed on.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: std::alloc::Layout,
            new_size: usize,
        ) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract for `realloc`, passed on.
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// How many allocations this thread has made so far.
    fn allocations() -> u64 {
        ALLOCATIONS.with(std::cell::Cell::get)
    }

    /// The program's process of a launch runs in the init's memory until its exec
    /// (`vfork_exec`): on its way there it must allocate nothing — our heap is its heap, and it
    /// may be stopped for good in the middle of a `malloc` (killed, or its own seccomp filter
    /// refusing the `brk` a growing heap needs), leaving the init a locked arena. `nix`'s
    /// `execveat` built its pointer arrays there, two allocations per launch.
    #[test]
    fn a_vfork_child_allocates_nothing_on_its_way_to_exec() {
        let argv = [
            CString::new("program").unwrap(),
            CString::new("arg").unwrap(),
        ];
        let envp = [CString::new("A=b").unwrap()];
        let (a, e) = (ExecArgs::new(&argv), ExecArgs::new(&envp));
        // /dev/null cannot be executed: the call returns, and what it allocated shows.
        let null = open(c"/dev/null", libc::O_RDONLY).unwrap();
        let mut stack = ChildStack::new(64 * 1024).unwrap();
        let (mut made, mut errno) = (None, None);
        let pid = vfork_exec(&mut stack, &mut || {
            let before = allocations();
            let err = execveat_fd(null.as_fd(), &a, &e);
            made = Some(allocations() - before);
            errno = err.raw_os_error();
            exit_now(0)
        })
        .unwrap();
        let (_, status) = waitpid(pid, 0).unwrap();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(errno, Some(libc::EACCES));
        assert_eq!(made, Some(0), "allocations in the vfork child");
    }

    /// A private lock file found wider than 0600 is narrowed back (no other user may open it
    /// and hold it forever); one of another user is refused; a new one is made 0600.
    #[test]
    fn a_private_lock_file_stays_private() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(".lock");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let mode = || std::fs::metadata(&path).unwrap().mode() & 0o777;
        drop(open_private_lock_file(&path).unwrap());
        assert_eq!(mode(), 0o600);
        std::fs::set_permissions(&path, PermissionsExt::from_mode(0o644)).unwrap();
        drop(open_private_lock_file(&path).unwrap());
        assert_eq!(mode(), 0o600, "narrowed back");
        // The shared lock's mode is its own: left as it is.
        std::fs::set_permissions(&path, PermissionsExt::from_mode(0o644)).unwrap();
        drop(open_lock_file(&c).unwrap());
        assert_eq!(mode(), 0o644);
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            let e = open_private_lock_file(&path).unwrap_err();
            assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
            // Root taking another user's lock (the audit log's, the log directory's owner's):
            // that user's is taken, and narrowed back; any other refused.
            std::fs::set_permissions(&path, PermissionsExt::from_mode(0o644)).unwrap();
            drop(open_private_lock_file_of(&path, 65534).unwrap());
            assert_eq!(mode(), 0o600);
            let e = open_private_lock_file_of(&path, 65533).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(
                e.to_string()
                    .contains("not a lock file of uid 65533: it belongs to uid 65534"),
                "{e}"
            );
            // A missing one is not made as root's (that user could never open it): the
            // caller makes it that user's.
            let other = d.path().join(".other");
            let e = open_private_lock_file_of(&other, 65534).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            assert!(!other.exists());
        }
    }

    /// What is planted at a lock's name — a symbolic link, a FIFO, a second link — is "not a
    /// lock file" (`InvalidData`, which the store and the audit log refuse as unsafe, 78), never
    /// followed and never an I/O failure (a symbolic link gave ELOOP: 74 and an I/O hint).
    #[test]
    fn anything_but_a_lock_file_at_its_name_is_not_a_lock_file() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, "").unwrap();
        let link = d.path().join("link.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo = d.path().join("fifo.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let hard = d.path().join("hard.lock");
        std::fs::hard_link(&target, &hard).unwrap();
        for (p, why) in [
            (&link, "a symbolic link"),
            (&fifo, "not a regular file"),
            (&hard, "another link"),
        ] {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            for e in [
                open_private_lock_file(p).unwrap_err(),
                open_lock_file(&c).unwrap_err(),
            ] {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{p:?}: {e}");
                assert!(e.to_string().contains(why), "{p:?}: {e}");
            }
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"");
    }

    #[test]
    fn pipe_and_poll_report_readiness() {
        let (r, w) = pipe().unwrap();
        let ev = libc::POLLIN;
        assert_eq!(poll(&[(r.as_fd(), ev)], 0).unwrap(), vec![0]);
        std::fs::File::from(w.try_clone().unwrap())
            .write_all(b"x")
            .unwrap();
        assert_eq!(poll(&[(r.as_fd(), ev)], 1000).unwrap(), vec![ev]);
        drop(w);
    }

    #[test]
    fn a_pidfd_names_its_process_and_sees_it_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let fd = pidfd_open(pid).unwrap();
        assert!(!pidfd_exited(fd.as_fd()).unwrap());
        pidfd_kill(fd.as_fd(), libc::SIGKILL).unwrap();
        // Exited (a zombie, not reaped yet): readable from now on.
        assert_eq!(
            poll(&[(fd.as_fd(), libc::POLLIN)], 5000).unwrap(),
            vec![libc::POLLIN]
        );
        assert!(pidfd_exited(fd.as_fd()).unwrap());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        // Reaped: the number may be anyone's now, the descriptor still names the dead process.
        let e = pidfd_kill(fd.as_fd(), libc::SIGKILL).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn only_the_standard_streams_can_be_dup2_targets() {
        let (r, _w) = pipe().unwrap();
        let e = dup2(r.as_fd(), 7).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn rlimit_numbers_map_to_the_same_resource_and_unknown_ones_are_refused() {
        use nix::sys::resource::Resource;
        let r = rlimit_resource(libc::RLIMIT_NOFILE).unwrap();
        assert_eq!(r, Resource::RLIMIT_NOFILE);
        assert_eq!(
            rlimit_resource(4242).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    #[test]
    fn signalfd_yields_the_signal_number() {
        // Blocked in this test thread only; signalfd reads signals pending for the thread.
        block_signals(&[libc::SIGUSR2]).unwrap();
        let fd = signalfd(&[libc::SIGUSR2]).unwrap();
        assert_eq!(
            read_signalfd(fd.as_fd()).unwrap(),
            None,
            "nothing pending yet"
        );
        nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        assert_eq!(read_signalfd(fd.as_fd()).unwrap(), Some(libc::SIGUSR2));
    }

    #[test]
    fn arg_range_counts_fields_after_the_last_parenthesis() {
        let mut line = String::from("42 (a) b) c) S");
        for n in 4..=52 {
            line.push_str(&format!(" {n}"));
        }
        assert_eq!(arg_range(&line), Some((48, 49)));
        assert_eq!(arg_range("42 (x) S 1 2"), None);
    }

    #[test]
    fn set_cmdline_hides_the_arguments_of_a_forked_child() {
        let (r, w) = pipe().unwrap();
        let Forked::Parent(pid) = fork().unwrap() else {
            drop(r);
            let ok = set_cmdline(b"stockade-init").is_ok();
            let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
            let good = ok
                && cmdline.starts_with(b"stockade-init\0")
                && cmdline[b"stockade-init".len()..].iter().all(|&b| b == 0);
            let _ = nix::unistd::write(&w, &[u8::from(good)]);
            exit_now(0);
        };
        drop(w);
        let mut got = [0u8; 1];
        let n = nix::unistd::read(&r, &mut got).unwrap();
        waitpid(pid, 0).unwrap();
        assert_eq!((n, got[0]), (1, 1), "the child's cmdline was not replaced");
        // The parent's own command line is untouched.
        let own = std::fs::read("/proc/self/cmdline").unwrap();
        assert!(!own.starts_with(b"stockade-init"));
    }

    #[test]
    fn set_nonblocking_and_cloexec_change_the_flags() {
        let (r, _w) = pipe().unwrap();
        set_nonblocking(r.as_fd()).unwrap();
        let fl = nix::fcntl::fcntl(r.as_fd(), FcntlArg::F_GETFL).unwrap();
        assert!(OFlag::from_bits_retain(fl).contains(OFlag::O_NONBLOCK));
        set_cloexec(r.as_fd(), false).unwrap();
        let fd = nix::fcntl::fcntl(r.as_fd(), FcntlArg::F_GETFD).unwrap();
        assert!(!FdFlag::from_bits_retain(fd).contains(FdFlag::FD_CLOEXEC));
    }

    #[test]
    fn waitpid_keeps_the_raw_status_of_a_real_time_signal_death() {
        // Why waitpid stays by hand: nix's WaitStatus cannot represent SIGRTMIN.
        let Forked::Parent(pid) = fork().unwrap() else {
            std::thread::sleep(std::time::Duration::from_secs(30));
            exit_now(0);
        };
        let rt = libc::SIGRTMIN();
        // SAFETY: kill takes integers only; `pid` is our own child.
        assert_eq!(unsafe { libc::kill(pid, rt) }, 0);
        let (got, status) = waitpid(pid, 0).unwrap();
        assert_eq!(got, pid);
        assert!(libc::WIFSIGNALED(status));
        assert_eq!(libc::WTERMSIG(status), rt);
    }
}
