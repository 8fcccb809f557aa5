//! Named system-call groups for the seccomp allowlist, as data.
//!
//! The names follow systemd's `SystemCallFilter=` groups (`@basic-io`, `@file-system` …) so that
//! reviewers who know `systemd-analyze syscall-filter` can read a policy without a manual; the
//! contents are narrower than systemd's where systemd's would admit something our threat model
//! forbids (no `@mount`, `@module`, `@debug`, `@privileged` group exists here at all).
//!
//! The runtime maps names to numbers for the running architecture; a name the architecture does
//! not have (e.g. `open` on aarch64) is skipped there, so the tables can list both spellings.
//!
//! Some calls are *conditional* and are not plain members of any group: `clone` (allowed only
//! without namespace flags), `clone3` (answered with ENOSYS so that libc falls back to `clone`),
//! `ioctl` (allowed except TIOCSTI/TIOCLINUX), `socket`/`socketpair` (address family checked
//! against the network policy). They are listed in [`CONDITIONAL`] and belong to the groups named
//! there.

/// One named group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallGroup {
    /// The name used in policy files, with its `@`.
    pub name: &'static str,
    /// What the group is for, for `policy explain`.
    pub description: &'static str,
    /// The system calls it allows unconditionally.
    pub syscalls: &'static [&'static str],
}

/// A call allowed only with an argument check; `group` is the group that enables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConditionalSyscall {
    /// The system call.
    pub name: &'static str,
    /// The group that admits it.
    pub group: &'static str,
    /// The condition the runtime enforces, for `policy explain`.
    pub condition: &'static str,
}

/// Calls that are allowed only with argument checks.
pub const CONDITIONAL: &[ConditionalSyscall] = &[
    ConditionalSyscall {
        name: "clone",
        group: "@process",
        condition: "no CLONE_NEW* namespace flag set (masked compare on the flags argument)",
    },
    ConditionalSyscall {
        name: "clone3",
        group: "@process",
        condition: "always fails with ENOSYS: its flags live in memory seccomp cannot read, so libc falls back to clone",
    },
    ConditionalSyscall {
        name: "ioctl",
        group: "@basic-io",
        condition: "any request except TIOCSTI and TIOCLINUX (compared on the low 32 bits)",
    },
    ConditionalSyscall {
        name: "socket",
        group: "@default",
        condition: "AF_UNIX always; AF_INET/AF_INET6 only with network mode loopback; other families fail with EAFNOSUPPORT",
    },
    ConditionalSyscall {
        name: "socketpair",
        group: "@default",
        condition: "AF_UNIX only",
    },
];

/// System calls that no policy may allow: each one either changes the sandbox itself
/// (namespaces, mounts, seccomp of others, kernel modules) or reaches outside it (ptrace, other
/// processes' memory, the kernel's BPF and perf subsystems, io_uring which bypasses seccomp).
pub const NEVER: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "chroot",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "iopl",
    "ioperm",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "open_tree_attr",
    "perf_event_open",
    "personality",
    "pidfd_getfd",
    "pivot_root",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "setns",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "userfaultfd",
    "uselib",
    "vhangup",
    "_sysctl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
];

/// Every group a policy may name.
pub const GROUPS: &[SyscallGroup] = &[
    SyscallGroup {
        name: "@default",
        description: "calls every program needs to start and stop: execve, exit, brk, futex, clock reads, identity reads, rseq, getrandom",
        syscalls: &[
            "arch_prctl", "brk", "clock_getres", "clock_gettime", "clock_nanosleep", "execve",
            "execveat", "exit", "exit_group", "futex", "futex_waitv", "get_robust_list",
            "get_thread_area", "getegid", "geteuid", "getgid", "getgroups", "getpgid", "getpgrp",
            "getpid", "getppid", "getrandom", "getresgid", "getresuid", "getrlimit", "getsid",
            "gettid", "gettimeofday", "getuid", "membarrier", "nanosleep", "prlimit64",
            "restart_syscall", "rseq", "sched_yield", "set_robust_list", "set_thread_area",
            "set_tid_address", "time", "uname", "getcpu", "sysinfo", "getrusage", "times",
            "capget", "prctl",
        ],
    },
    SyscallGroup {
        name: "@basic-io",
        description: "read and write already-open descriptors, duplicate and close them",
        syscalls: &[
            "close", "close_range", "dup", "dup2", "dup3", "lseek", "pread64", "preadv",
            "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readv", "write", "writev",
            "fcntl", "pipe", "pipe2", "sendfile", "splice", "tee", "copy_file_range",
        ],
    },
    SyscallGroup {
        name: "@file-system",
        description: "open, stat, list, create, rename and remove files (the filesystem view and Landlock decide where)",
        syscalls: &[
            "access", "chdir", "fchdir", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown",
            "fchown", "fchownat", "lchown", "creat", "faccessat", "faccessat2", "fallocate",
            "fdatasync", "fstat", "fstatfs", "fsync", "ftruncate", "getcwd", "getdents",
            "getdents64", "link", "linkat", "lstat", "mkdir", "mkdirat", "newfstatat", "open",
            "openat", "openat2", "readlink", "readlinkat", "rename", "renameat", "renameat2",
            "rmdir", "stat", "statfs", "statx", "symlink", "symlinkat", "truncate", "umask",
            "unlink", "unlinkat", "utime", "utimensat", "utimes", "futimesat", "sync",
            "syncfs", "sync_file_range", "fadvise64", "flock", "getxattr", "lgetxattr",
            "fgetxattr", "listxattr", "llistxattr", "flistxattr", "readahead", "mknod",
            "mknodat", "memfd_create",
        ],
    },
    // Not in `@file-system`: an inotify watch is on the inode, so one on a file bound read-only
    // from the host (/usr, /etc/ld.so.cache) reports the host's and other sandboxes' opens of
    // it; and every instance counts against the quota of the user that owns the sandbox's user
    // namespace (the runtime's: root's `fs.inotify.max_user_instances`, 128 by default), which
    // one plugin could exhaust for the whole host. A sandbox allowed it gets a cap of its own
    // (docs/sandbox.md).
    SyscallGroup {
        name: "@file-watch",
        description: "inotify: watch files for changes (sees the host's accesses to shared read-only files; capped per sandbox, counted against the runtime user's inotify quota)",
        syscalls: &[
            "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
        ],
    },
    SyscallGroup {
        name: "@io-event",
        description: "wait for descriptors: poll, select, epoll, eventfd",
        syscalls: &[
            "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
            "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "poll",
            "ppoll", "pselect6", "select",
        ],
    },
    SyscallGroup {
        name: "@ipc",
        description: "System V and POSIX IPC inside the sandbox's own IPC namespace",
        syscalls: &[
            "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend",
            "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop",
            "semtimedop", "shmat", "shmctl", "shmdt", "shmget",
        ],
    },
    SyscallGroup {
        name: "@memory",
        description: "map, protect and advise memory",
        syscalls: &[
            "madvise", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mremap",
            "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
            "pkey_mprotect", "mseal", "map_shadow_stack", "get_mempolicy", "set_mempolicy",
            "mbind",
        ],
    },
    SyscallGroup {
        name: "@process",
        description: "create and wait for processes and threads inside the sandbox (clone without namespace flags), scheduling hints",
        syscalls: &[
            "fork", "vfork", "wait4", "waitid", "setpgid", "setsid", "pidfd_open",
            "pidfd_send_signal", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
            "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
            "sched_rr_get_interval", "sched_getattr", "getpriority", "setpriority",
            "ioprio_get", "ioprio_set", "setrlimit", "setresuid", "setresgid", "setuid",
            "setgid", "setreuid", "setregid", "setfsuid", "setfsgid",
        ],
    },
    SyscallGroup {
        name: "@signal",
        description: "send and handle signals (the pid namespace limits who can be reached)",
        syscalls: &[
            "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
            "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
            "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "pause", "alarm",
        ],
    },
    SyscallGroup {
        name: "@timer",
        description: "timers and alarms",
        syscalls: &[
            "getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun",
            "timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime",
            "timerfd_settime",
        ],
    },
    SyscallGroup {
        name: "@network-io",
        description: "use sockets: connect, bind, listen, send, receive (what they can reach is the network policy's and the namespace's call)",
        syscalls: &[
            "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
            "listen", "recvfrom", "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto",
            "setsockopt", "shutdown",
        ],
    },
];

/// Groups a policy gets only by naming them (not in the default of every group): what they
/// admit reaches past the sandbox (see each group's comment).
pub const OPT_IN: &[&str] = &["@file-watch"];

/// Look a group up by name.
pub fn group(name: &str) -> Option<&'static SyscallGroup> {
    GROUPS.iter().find(|g| g.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_group_contains_a_forbidden_call() {
        for g in GROUPS {
            for s in g.syscalls {
                assert!(!NEVER.contains(s), "{} lists forbidden {s}", g.name);
                assert!(
                    !CONDITIONAL.iter().any(|c| c.name == *s),
                    "{} lists conditional {s} unconditionally",
                    g.name
                );
            }
        }
    }

    #[test]
    fn conditional_calls_name_existing_groups() {
        for c in CONDITIONAL {
            assert!(group(c.group).is_some(), "{} names {}", c.name, c.group);
        }
    }

    #[test]
    fn opt_in_groups_exist_and_inotify_is_only_in_file_watch() {
        for name in OPT_IN {
            assert!(group(name).is_some(), "{name}");
        }
        for g in GROUPS {
            let watches = g.syscalls.iter().any(|s| s.starts_with("inotify"));
            assert_eq!(watches, g.name == "@file-watch", "{}", g.name);
        }
    }

    #[test]
    fn group_names_are_unique() {
        for (i, g) in GROUPS.iter().enumerate() {
            assert!(GROUPS[i + 1..].iter().all(|h| h.name != g.name));
        }
    }
}
