/* Kernel attack-surface probes: interfaces a plugin never needs and that are either privileged
 * or a known source of kernel exploits (bpf, perf, userfaultfd, io_uring, keyrings, module and
 * kexec loading, ptrace and cross-process memory access, raw I/O ports, the clock, syslog...),
 * the x32/i386 syscall entry points a seccomp filter may forget, and TTY input injection.
 *
 * Where success would change the host, the probe passes an argument that is rejected only
 * AFTER the permission check (documented per probe); "ENOSYS" is accepted natively where the
 * host kernel is built without the feature, because the call still reached the kernel, and a
 * sandbox must stop it BEFORE the kernel (SIGSYS or EPERM), so ENOSYS there is an escape. */
#include "probe.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/fanotify.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <sys/ioctl.h>

static int bpf_map(void)
{
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = 1;
    return result(syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a), "bpf(BPF_MAP_CREATE)");
}

static int perf(void)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_SOFTWARE;
    a.size = sizeof a;
    a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.disabled = 1;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return result(syscall(SYS_perf_event_open, &a, 0, -1, -1, 0), "perf_event_open(sw clock, self)");
}

static int uffd(void)
{
    /* flag 1 = UFFD_USER_MODE_ONLY: the variant even unprivileged users may create */
    return result(syscall(SYS_userfaultfd, O_CLOEXEC | 1), "userfaultfd(UFFD_USER_MODE_ONLY)");
}

static int dev_uffd(void) { return result(open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), "open /dev/userfaultfd"); }

static int io_uring(void)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    return result(syscall(SYS_io_uring_setup, 4, &p), "io_uring_setup(4)");
}

static int add_key(void)
{
    /* -2 = KEY_SPEC_PROCESS_KEYRING: the key dies with the probe */
    return result(syscall(SYS_add_key, "user", "stockade-probe", "x", 1, -2), "add_key(user, process keyring)");
}

static int keyctl_join(void)
{
    /* 1 = KEYCTL_JOIN_SESSION_KEYRING with NULL: a fresh anonymous session keyring */
    return result(syscall(SYS_keyctl, 1, NULL), "keyctl(JOIN_SESSION_KEYRING)");
}

static int init_module_(void)
{
    static const char garbage[64] = "not an ELF module";
    return permitted_if(syscall(SYS_init_module, garbage, sizeof garbage, ""),
                        "init_module(garbage image)", ENOEXEC, EINVAL, EBADMSG, EKEYREJECTED,
                        ENOSYS, 0);
}

static int finit_module_(void)
{
    int fd = (int)syscall(SYS_memfd_create, "stockade-probe", 0);
    if (fd < 0)
        return denied("memfd_create: %s", strerror(errno));
    if (write(fd, "not an ELF module", 17) != 17)
        return perror_("write memfd: %s", strerror(errno));
    return permitted_if(syscall(SYS_finit_module, fd, "", 0), "finit_module(garbage memfd)",
                        ENOEXEC, EINVAL, EBADMSG, EKEYREJECTED, ENOSYS, 0);
}

static int kexec_load_(void)
{
    /* flags outside KEXEC_FLAGS are rejected with EINVAL only after the CAP_SYS_BOOT check */
    return permitted_if(syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0xdead0000UL),
                        "kexec_load(invalid flags)", EINVAL, ENOSYS, 0);
}

static int kexec_file_load_(void)
{
    return permitted_if(syscall(SYS_kexec_file_load, -1, -1, 0UL, "", 0xdead0000UL),
                        "kexec_file_load(invalid flags)", EINVAL, EBADF, ENOSYS, 0);
}

static int ptrace_harness(void)
{
    if (P.harness <= 0)
        return perror_("harness= parameter missing");
    /* SEIZE does the same access check as ATTACH without stopping the battery; the tracee is
     * released when the probe exits. */
    return result(ptrace(PTRACE_SEIZE, (pid_t)P.harness, 0, 0), "ptrace(SEIZE, battery)");
}

static int ptrace_sibling(void)
{
    if (P.sibling <= 0)
        return perror_("sibling= parameter missing");
    if (ptrace(PTRACE_ATTACH, (pid_t)P.sibling, 0, 0) != 0)
        return denied("ptrace(ATTACH, sibling %ld): %s (errno %d)", P.sibling, strerror(errno), errno);
    waitpid((pid_t)P.sibling, NULL, __WALL);
    ptrace(PTRACE_DETACH, (pid_t)P.sibling, 0, 0);
    return escaped("ptrace(ATTACH) of host process %ld succeeded", P.sibling);
}

static int vm_readv(void)
{
    if (P.harness <= 0)
        return perror_("harness= parameter missing");
    char path[64], maps[256];
    unsigned long addr = 0x10000;
    snprintf(path, sizeof path, "/proc/%ld/maps", P.harness);
    if (read_file(path, maps, sizeof maps) > 0)
        addr = strtoul(maps, NULL, 16);
    char buf[16];
    struct iovec l = {buf, sizeof buf}, r = {(void *)addr, sizeof buf};
    return result(syscall(SYS_process_vm_readv, P.harness, &l, 1, &r, 1, 0),
                  "process_vm_readv(battery)");
}

static int pidfd_getfd(void)
{
    if (P.harness <= 0 || P.secret_fd < 0)
        return perror_("harness= or secret_fd= parameter missing");
    long pfd = syscall(SYS_pidfd_open, P.harness, 0);
    if (pfd < 0)
        return denied("pidfd_open(%ld): %s (errno %d)", P.harness, strerror(errno), errno);
    long fd = syscall(SYS_pidfd_getfd, pfd, P.secret_fd, 0);
    if (fd < 0)
        return denied("pidfd_getfd: %s (errno %d)", strerror(errno), errno);
    return escaped("stole fd %d of the battery as fd %ld", P.secret_fd, fd);
}

static int open_by_handle(void)
{
    struct {
        struct file_handle fh;
        unsigned char data[128];
    } h;
    h.fh.handle_bytes = sizeof h.data;
    int mount_id;
    if (name_to_handle_at(AT_FDCWD, "/", &h.fh, &mount_id, 0) != 0)
        return denied("name_to_handle_at(/): %s (errno %d)", strerror(errno), errno);
    int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return result(open_by_handle_at(mfd, &h.fh, O_RDONLY | O_CLOEXEC), "open_by_handle_at(/)");
}

static int fanotify(void)
{
    return result(fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC, O_RDONLY), "fanotify_init");
}

static int personality_(void)
{
    int cur = personality(0xffffffff);
    if (cur < 0)
        return denied("personality(query): %s", strerror(errno));
    if (personality((unsigned long)cur | ADDR_NO_RANDOMIZE) < 0)
        return denied("personality(ADDR_NO_RANDOMIZE): %s (errno %d)", strerror(errno), errno);
    int now = personality(0xffffffff);
    personality((unsigned long)cur);
    if (now & ADDR_NO_RANDOMIZE)
        return escaped("ASLR switched off via personality(ADDR_NO_RANDOMIZE)");
    return denied("personality accepted but ADDR_NO_RANDOMIZE not set");
}

static int ioperm_(void)
{
    return permitted_if(syscall(SYS_ioperm, 0x80UL, 1UL, 1), "ioperm(0x80)", ENOSYS, 0);
}

static int iopl_(void) { return permitted_if(syscall(SYS_iopl, 3), "iopl(3)", ENOSYS, 0); }

static int syslog_(void)
{
    char buf[256];
    return result(klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof buf), "syslog(READ_ALL)");
}

static int acct_(void)
{
    return permitted_if(syscall(SYS_acct, "/nonexistent-stockade-probe"), "acct(nonexistent)",
                        ENOENT, 0);
}

static int swapon_(void)
{
    return permitted_if(syscall(SYS_swapon, "/nonexistent-stockade-probe", 0),
                        "swapon(nonexistent)", ENOENT, 0);
}

static int reboot_(void)
{
    /* wrong magic: EINVAL, but only after the CAP_SYS_BOOT check */
    return permitted_if(syscall(SYS_reboot, 0xdeadbeef, 0xdeadbeef, 0, NULL),
                        "reboot(bad magic)", EINVAL, 0);
}

static int settimeofday_(void)
{
    /* NULL time and an out-of-range timezone: EINVAL after the CAP_SYS_TIME check */
    struct { int minuteswest, dsttime; } tz = {100000, 0};
    return permitted_if(syscall(SYS_settimeofday, NULL, &tz), "settimeofday(invalid tz)", EINVAL, 0);
}

static int adjtimex_(void)
{
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    tx.modes = ADJ_TICK;
    tx.tick = 1; /* out of range: EINVAL after the CAP_SYS_TIME check */
    return permitted_if(syscall(SYS_adjtimex, &tx), "adjtimex(ADJ_TICK, invalid)", EINVAL, 0);
}

static int mlock_(void)
{
    size_t len = 16u << 20;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return denied("mmap 16 MiB: %s", strerror(errno));
    int rc = mlock(p, len);
    int e = errno;
    munlock(p, len);
    munmap(p, len);
    errno = e;
    return result(rc, "mlock(16 MiB)");
}

static int sched_fifo(void)
{
    struct sched_param sp = {.sched_priority = 1};
    if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0)
        return denied("sched_setscheduler(SCHED_FIFO): %s (errno %d)", strerror(errno), errno);
    sp.sched_priority = 0;
    sched_setscheduler(0, SCHED_OTHER, &sp);
    return escaped("got real-time SCHED_FIFO priority");
}

static int nice_raise(void)
{
    return result(setpriority(PRIO_PROCESS, 0, -10), "setpriority(-10)");
}

static int ioprio_rt(void)
{
    /* IOPRIO_WHO_PROCESS=1, class RT=1 in bits 13+ */
    return result(syscall(SYS_ioprio_set, 1, 0, (1 << 13) | 4), "ioprio_set(RT)");
}

/* modify_ldt: a 16-bit segment interface with a long exploit history; reading the LDT
 * (func 0) is harmless. */
static int modify_ldt_(void)
{
    char buf[64];
    return result(syscall(SYS_modify_ldt, 0, buf, sizeof buf), "modify_ldt(read)");
}

/* x32: bit 30 set on the syscall number. Control: the call returns (this host kernel has no
 * x32 ABI: ENOSYS; the qemu 6.1 kernel booted with syscall.x32=y: the pid). The sandbox must
 * kill the process (SIGSYS) before the call reaches the kernel. */
static int x32(void)
{
    long rc;
    __asm__ volatile("syscall" : "=a"(rc) : "a"(0x40000000L | 39 /* getpid */) : "rcx", "r11", "memory");
    if (rc < 0 && rc > -4096)
        return escaped("x32 getpid reached the kernel and returned %s", strerror((int)-rc));
    return escaped("x32 getpid returned %ld", rc);
}

/* int 0x80: the i386 entry point (AUDIT_ARCH_I386), which a filter checking only syscall
 * numbers would misread. i386 getpid is 20. */
static int int80(void)
{
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(20L) : "memory");
    if (rc < 0 && rc > -4096)
        return escaped("int 0x80 getpid reached the kernel and returned %s", strerror((int)-rc));
    return escaped("int 0x80 getpid returned %ld", rc);
}

/* --- TTY injection --------------------------------------------------------------------- */

/* A tty to inject into: natively a private pty pair (root may TIOCSTI into any tty); inside a
 * sandbox without /dev/ptmx, stdin. An ioctl that reaches the tty layer at all (success or
 * ENOTTY/EIO) means the seccomp guard did not stop it. */
static int a_tty(const char **what)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0) {
        const char *s = ptsname(m);
        int fd = s ? open(s, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
        if (fd >= 0) {
            *what = "private pty";
            return fd;
        }
    }
    *what = "stdin";
    return 0;
}

static int ioctl_verdict(long rc, const char *what, const char *tty)
{
    if (rc == 0)
        return escaped("%s on %s succeeded", what, tty);
    if (errno == EPERM || errno == EACCES)
        return denied("%s on %s: %s (errno %d)", what, tty, strerror(errno), errno);
    return escaped("%s on %s reached the tty layer unfiltered (%s)", what, tty, strerror(errno));
}

static int tiocsti(void)
{
    const char *t;
    int fd = a_tty(&t);
    char c = '\n';
    return ioctl_verdict(syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI, &c), "ioctl(TIOCSTI)", t);
}

static int tiocsti_high(void)
{
    const char *t;
    int fd = a_tty(&t);
    char c = '\n';
    /* the kernel truncates cmd to 32 bits: this IS TIOCSTI */
    return ioctl_verdict(syscall(SYS_ioctl, fd, 0xdead00000000UL | TIOCSTI, &c),
                         "ioctl(TIOCSTI | 0xdead<<32)", t);
}

static int tioclinux(void)
{
    const char *t = "virtual console";
    int fd = open("/dev/tty1", O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        fd = 0;
        t = "stdin";
    }
    char sub = 6; /* TIOCL_GETSHIFTSTATE: read-only */
    return ioctl_verdict(syscall(SYS_ioctl, fd, (unsigned long)TIOCLINUX, &sub),
                         "ioctl(TIOCLINUX, GETSHIFTSTATE)", t);
}

const struct probe kernel_probes[] = {
    {"bpf", "kernel", "bpf(BPF_MAP_CREATE)", bpf_map},
    {"perf-event-open", "kernel", "perf_event_open on itself", perf},
    {"userfaultfd", "kernel", "userfaultfd(UFFD_USER_MODE_ONLY)", uffd},
    {"dev-userfaultfd", "kernel", "open /dev/userfaultfd", dev_uffd},
    {"io-uring", "kernel", "io_uring_setup", io_uring},
    {"add-key", "kernel", "add_key into the process keyring", add_key},
    {"keyctl-join", "kernel", "keyctl(JOIN_SESSION_KEYRING)", keyctl_join},
    {"init-module", "kernel", "init_module(garbage) (ENOEXEC/EINVAL/ENOSYS = reached)", init_module_},
    {"finit-module", "kernel", "finit_module(garbage memfd)", finit_module_},
    {"kexec-load", "kernel", "kexec_load(invalid flags) (EINVAL/ENOSYS = reached)", kexec_load_},
    {"kexec-file-load", "kernel", "kexec_file_load(invalid flags)", kexec_file_load_},
    {"ptrace-harness", "kernel", "ptrace(SEIZE) the battery (ancestor)", ptrace_harness},
    {"ptrace-sibling", "kernel", "ptrace(ATTACH) a host fixture process", ptrace_sibling},
    {"process-vm-readv", "kernel", "process_vm_readv on the battery", vm_readv},
    {"pidfd-getfd", "kernel", "pidfd_open(battery) + pidfd_getfd(secret fd)", pidfd_getfd},
    {"open-by-handle", "kernel", "open_by_handle_at (the 'shocker' escape)", open_by_handle},
    {"fanotify", "kernel", "fanotify_init", fanotify},
    {"personality", "kernel", "personality(ADDR_NO_RANDOMIZE)", personality_},
    {"ioperm", "kernel", "ioperm(0x80) (ENOSYS = reached)", ioperm_},
    {"iopl", "kernel", "iopl(3) (ENOSYS = reached)", iopl_},
    {"syslog", "kernel", "syslog(READ_ALL) of the kernel log", syslog_},
    {"acct", "kernel", "acct(nonexistent) (ENOENT = permitted)", acct_},
    {"swapon", "kernel", "swapon(nonexistent) (ENOENT = permitted)", swapon_},
    {"reboot", "kernel", "reboot(bad magic) (EINVAL = permitted)", reboot_},
    {"settimeofday", "kernel", "settimeofday(invalid tz) (EINVAL = permitted)", settimeofday_},
    {"adjtimex", "kernel", "adjtimex(ADJ_TICK invalid) (EINVAL = permitted)", adjtimex_},
    {"mlock", "kernel", "mlock 16 MiB (RLIMIT_MEMLOCK)", mlock_},
    {"sched-fifo", "kernel", "real-time SCHED_FIFO priority", sched_fifo},
    {"nice-raise", "kernel", "setpriority(-10)", nice_raise},
    {"ioprio-rt", "kernel", "ioprio_set(IOPRIO_CLASS_RT)", ioprio_rt},
    {"modify-ldt", "kernel", "modify_ldt(read)", modify_ldt_},
    {"x32-syscall", "arch", "x32 syscall number (bit 30): must be SIGSYS in the sandbox", x32},
    {"int80", "arch", "i386 int 0x80 getpid: must be SIGSYS in the sandbox", int80},
    {0},
};

const struct probe tty_probes[] = {
    {"tiocsti", "tty", "ioctl(TIOCSTI) input injection", tiocsti},
    {"tiocsti-highbits", "tty", "ioctl(TIOCSTI with high 32 bits set)", tiocsti_high},
    {"tioclinux", "tty", "ioctl(TIOCLINUX)", tioclinux},
    {0},
};
