/* Filesystem-view probes: host-revealing or host-changing files in /proc, /sys, cgroupfs and
 * /dev, secrets of the host (/etc/shadow, the runtime's environment, an inherited fd) and
 * writes outside the private /tmp.
 *
 * A mask bound over a /proc file (a /dev/null or empty-tmpfs bind) is recognised by checking
 * that the opened file really is on procfs: opening the mask is not an escape. All native
 * writes write back the value already there, or create and remove a file of our own. */
#include "probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#ifndef SYSFS_MAGIC
#define SYSFS_MAGIC 0x62656572
#endif

static int proc_sys_write(void)
{
    const char *path = "/proc/sys/vm/swappiness";
    char cur[64];
    if (read_file(path, cur, sizeof cur) < 0)
        return denied("read %s: %s", path, strerror(errno));
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return denied("open %s for writing: %s (errno %d)", path, strerror(errno), errno);
    if (!is_procfs_fd(fd))
        return denied("%s is masked (not procfs)", path);
    if (write(fd, cur, strlen(cur)) < 0)
        return denied("write back %s: %s (errno %d)", path, strerror(errno), errno);
    return escaped("wrote %s (value written back unchanged)", path);
}

static int open_proc(const char *path, int flags, const char *what)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return denied("open %s: %s (errno %d)", path, strerror(errno), errno);
    struct stat st;
    if (!is_procfs_fd(fd) || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return denied("%s is masked (not a procfs file)", path);
    return escaped("%s", what);
}

/* /proc/sysrq-trigger, or on kernels without CONFIG_MAGIC_SYSRQ another action trigger,
 * /proc/sys/vm/drop_caches: only OPENED for writing, nothing is written. */
static int sysrq(void)
{
    const char *path = access("/proc/sysrq-trigger", F_OK) == 0 || access("/proc/self", F_OK) != 0
                           ? "/proc/sysrq-trigger"
                           : "/proc/sys/vm/drop_caches";
    char what[96];
    snprintf(what, sizeof what, "opened %s for writing (nothing written)", path);
    return open_proc(path, O_WRONLY, what);
}

/* /proc/kcore, or the first other host-revealing file runtimes mask (kernels without
 * CONFIG_PROC_KCORE). */
static int kcore(void)
{
    static const char *const masked[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list",
                                         "/proc/sched_debug"};
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        int fd = open(masked[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat st;
        if (is_procfs_fd(fd) && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            return escaped("opened %s", masked[i]);
        close(fd);
    }
    return denied("every one of /proc/kcore, keys, timer_list, sched_debug is absent or masked");
}

static int kallsyms(void)
{
    char buf[4096];
    if (read_file("/proc/kallsyms", buf, sizeof buf) < 0)
        return denied("read /proc/kallsyms: %s", strerror(errno));
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strtoull(l, NULL, 16) != 0)
            return escaped("kernel symbol addresses visible (%.16s)", l);
    return denied("no non-zero kernel addresses in /proc/kallsyms");
}

/* The host kernel's command line: boot parameters, and on VMs and cloud images often more
 * (orchestration arguments, addresses, sometimes credentials). */
static int proc_cmdline(void)
{
    char buf[4096];
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return denied("open /proc/cmdline: %s", strerror(errno));
    int procfs = is_procfs_fd(fd);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (!procfs || n <= 0)
        return denied("/proc/cmdline is masked (procfs: %d, %zd bytes)", procfs, n);
    buf[n] = 0;
    return escaped("the host's kernel command line: %.40s", buf);
}

static int sys_present(void)
{
    struct statfs sf;
    if (statfs("/sys/kernel", &sf) != 0)
        return denied("statfs /sys/kernel: %s", strerror(errno));
    if (sf.f_type != SYSFS_MAGIC)
        return denied("/sys/kernel is not sysfs");
    return escaped("sysfs is mounted at /sys");
}

static int host_proc(void)
{
    if (P.harness <= 0 || P.harness_start < 0)
        return perror_("harness= / harness_start= parameters missing");
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", P.harness);
    if (read_file(path, buf, sizeof buf) < 0)
        return denied("read %s: %s", path, strerror(errno));
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p && atol(p + 1) == P.harness_start)
        return escaped("host process %ld (the battery) is visible in /proc", P.harness);
    return denied("%s belongs to another process (pid namespace)", path);
}

/* --- cgroups ----------------------------------------------------------------------------- */

/* Directory of our own cgroup for a v1 controller, or the v2 one. */
static int own_cgroup(const char *ctrl, char *dir, size_t len)
{
    char buf[2048];
    if (read_file("/proc/self/cgroup", buf, sizeof buf) < 0)
        return -1;
    char want[32];
    snprintf(want, sizeof want, ":%s:", ctrl);
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        char *nl = strchr(l, '\n');
        int n = nl ? (int)(nl - l) : (int)strlen(l);
        char *m = strstr(l, want);
        if (m && m < l + n) {
            char *path = m + strlen(want);
            snprintf(dir, len, "/sys/fs/cgroup/%s%.*s", ctrl, (int)(l + n - path), path);
            return 0;
        }
        if (strncmp(l, "0::", 3) == 0) {
            snprintf(dir, len, "/sys/fs/cgroup%.*s", n - 3, l + 3);
            struct stat st;
            char probe[600];
            snprintf(probe, sizeof probe, "%s/cgroup.controllers", dir);
            if (stat(probe, &st) == 0 && strstr(buf, want) == NULL)
                return 0;
        }
    }
    errno = ENOENT;
    return -1;
}

static int write_back(const char *path)
{
    char cur[128];
    if (read_file(path, cur, sizeof cur) < 0)
        return denied("read %s: %s (errno %d)", path, strerror(errno), errno);
    if (write_file(path, cur) != 0)
        return denied("write back %s: %s (errno %d)", path, strerror(errno), errno);
    return escaped("wrote %s (value written back unchanged)", path);
}

static int write_pid(const char *path)
{
    char pid[32];
    snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (write_file(path, pid) != 0)
        return denied("write own pid to %s: %s (errno %d)", path, strerror(errno), errno);
    return escaped("moved itself via %s", path);
}

static int cg_own_procs(void)
{
    char dir[512], path[1024];
    if (own_cgroup("pids", dir, sizeof dir) != 0)
        return denied("own cgroup not found: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    return write_pid(path);
}

static int cg_root_procs(void)
{
    struct stat st;
    const char *path = stat("/sys/fs/cgroup/memory/cgroup.procs", &st) == 0
                           ? "/sys/fs/cgroup/memory/cgroup.procs"
                           : "/sys/fs/cgroup/cgroup.procs";
    return write_pid(path);
}

/* Write back the limit file of our own cgroup. Where our cgroup is the root of the hierarchy
 * (no limit file there, as on the CI host and in the qemu guest), a temporary empty child
 * cgroup is made, its limit written back, and removed again. */
static int cg_limit(const char *ctrl, const char *v1, const char *v2)
{
    char dir[512], path[1024], child[600];
    struct stat st;
    if (own_cgroup(ctrl, dir, sizeof dir) != 0)
        return denied("own cgroup not found: %s", strerror(errno));
    for (int pass = 0; pass < 2; pass++) {
        const char *base = pass == 0 ? dir : child;
        snprintf(path, sizeof path, "%s/%s", base, v1);
        if (stat(path, &st) != 0)
            snprintf(path, sizeof path, "%s/%s", base, v2);
        if (stat(path, &st) == 0) {
            int rc = write_back(path);
            if (pass == 1)
                rmdir(child);
            return rc;
        }
        if (pass == 1)
            break;
        snprintf(child, sizeof child, "%s/stockade-probe-%d", dir, (int)getpid());
        if (mkdir(child, 0755) != 0)
            return denied("no %s in %s and mkdir of a child cgroup: %s (errno %d)", v2, dir,
                          strerror(errno), errno);
    }
    rmdir(child);
    return denied("no %s in %s or in a new child cgroup", v2, dir);
}

static int cg_memory(void) { return cg_limit("memory", "memory.limit_in_bytes", "memory.max"); }
static int cg_pids(void) { return cg_limit("pids", "pids.max", "pids.max"); }

/* release_agent of a v1 hierarchy root: the CVE-2022-0492 escape. Written back unchanged.
 * On a pure cgroup v2 host (no release_agent exists) the global knob of the v2 root instead:
 * cgroup.subtree_control, written back as "+ctrl ..." (enabling enabled controllers is a no-op). */
static int cg_release_agent(void)
{
    if (access("/sys/fs/cgroup/cgroup.subtree_control", F_OK) == 0) {
        char cur[256], back[300] = "";
        if (read_file("/sys/fs/cgroup/cgroup.subtree_control", cur, sizeof cur) < 0)
            return denied("read cgroup.subtree_control: %s", strerror(errno));
        for (char *tok = strtok(cur, " \n"); tok; tok = strtok(NULL, " \n")) {
            size_t n = strlen(back);
            snprintf(back + n, sizeof back - n, "%s+%s", n ? " " : "", tok);
        }
        if (!*back) {
            int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
            if (fd < 0)
                return denied("open cgroup.subtree_control for writing: %s", strerror(errno));
            return escaped("opened the v2 root's (empty) cgroup.subtree_control for writing");
        }
        if (write_file("/sys/fs/cgroup/cgroup.subtree_control", back) != 0)
            return denied("write back cgroup.subtree_control: %s (errno %d)", strerror(errno), errno);
        return escaped("wrote the v2 root's cgroup.subtree_control (%s, unchanged)", back);
    }
    static const char *const roots[] = {"/sys/fs/cgroup/memory/release_agent",
                                        "/sys/fs/cgroup/pids/release_agent",
                                        "/sys/fs/cgroup/systemd/release_agent",
                                        "/sys/fs/cgroup/release_agent"};
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++)
        if (access(roots[i], F_OK) == 0)
            return write_back(roots[i]);
    return denied("no cgroup v1 release_agent visible: %s", strerror(errno));
}

/* --- devices ------------------------------------------------------------------------------ */

/* Make a private node in /tmp and open it: natively this reaches the driver; a missing driver
 * (ENXIO/ENODEV) still means the node could be created and opened up to the driver. */
static int private_node(mode_t type, unsigned maj, unsigned min, const char *what)
{
    char d[64], node[80];
    snprintf(d, sizeof d, "/tmp/stockade-probe-XXXXXX");
    if (!mkdtemp(d))
        return denied("mkdtemp: %s", strerror(errno));
    snprintf(node, sizeof node, "%s/node", d);
    if (mknod(node, type | 0600, makedev(maj, min)) != 0) {
        int e = errno;
        rmdir(d);
        return denied("mknod %s %u:%u: %s (errno %d)", what, maj, min, strerror(e), e);
    }
    int fd = open(node, O_RDONLY | O_CLOEXEC);
    int e = errno;
    unlink(node);
    rmdir(d);
    if (fd >= 0)
        return escaped("created and opened a private %s node %u:%u", what, maj, min);
    if (e == ENXIO || e == ENODEV)
        return escaped("created a %s node %u:%u (driver absent: %s)", what, maj, min, strerror(e));
    return denied("open private %s node: %s (errno %d)", what, strerror(e), e);
}

static int dev_mem(void)
{
    int fd = open("/dev/mem", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        return escaped("opened /dev/mem");
    if (errno != ENOENT)
        return denied("open /dev/mem: %s (errno %d)", strerror(errno), errno);
    return private_node(S_IFCHR, 1, 1, "/dev/mem");
}

static int dev_kmsg(void)
{
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return denied("open /dev/kmsg: %s (errno %d)", strerror(errno), errno);
    char rec[2048];
    ssize_t n = read(fd, rec, sizeof rec);
    if (n < 0 && errno != EAGAIN)
        return denied("read /dev/kmsg: %s", strerror(errno));
    return escaped("read the kernel log via /dev/kmsg (%zd bytes)", n);
}

static int mknod_char(void) { return private_node(S_IFCHR, 1, 3, "char (null)"); }

static int dev_block(void)
{
    static const char *const disks[] = {"/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda", "/dev/loop0"};
    for (size_t i = 0; i < sizeof disks / sizeof disks[0]; i++) {
        int fd = open(disks[i], O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            return escaped("opened block device %s", disks[i]);
    }
    return private_node(S_IFBLK, 7, 0, "block (loop0)");
}

/* Open a host device; where the node is absent (a minimal /dev, as in the qemu guest), create
 * a private node with its fixed major:minor instead. */
static int dev_open(const char *path, unsigned maj, unsigned min)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0)
        return escaped("opened %s", path);
    if (errno != ENOENT)
        return denied("open %s: %s (errno %d)", path, strerror(errno), errno);
    return private_node(S_IFCHR, maj, min, path);
}

static int dev_kvm(void) { return dev_open("/dev/kvm", 10, 232); }
static int dev_tun(void) { return dev_open("/dev/net/tun", 10, 200); }
static int dev_fuse(void) { return dev_open("/dev/fuse", 10, 229); }

/* --- host secrets and writes -------------------------------------------------------------- */

static int shadow(void)
{
    char buf[256];
    long n = read_file("/etc/shadow", buf, sizeof buf);
    if (n < 0)
        return denied("read /etc/shadow: %s (errno %d)", strerror(errno), errno);
    return escaped("read %ld bytes of /etc/shadow", n);
}

static int environ_(void)
{
    if (P.harness <= 0)
        return perror_("harness= parameter missing");
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%ld/environ", P.harness);
    long n = read_file(path, buf, sizeof buf);
    if (n < 0)
        return denied("read %s: %s (errno %d)", path, strerror(errno), errno);
    if (n == 0)
        return denied("%s is empty", path);
    return escaped("read %ld bytes of the battery's environment", n);
}

static int inherited_fd(void)
{
    if (P.secret_fd < 0 || !*P.secret)
        return perror_("secret_fd= / secret= parameters missing");
    char buf[256];
    ssize_t n = pread(P.secret_fd, buf, sizeof buf - 1, 0);
    if (n < 0)
        return denied("fd %d: %s (errno %d)", P.secret_fd, strerror(errno), errno);
    buf[n] = 0;
    if (strstr(buf, P.secret))
        return escaped("read the secret through inherited fd %d", P.secret_fd);
    return denied("fd %d is open but is not the battery's secret", P.secret_fd);
}

/* Any descriptor beyond 0/1/2 at start: the runtime must close everything it does not hand
 * over (the battery leaves an inheritable secret fd open to make the native control hold). */
static int extra_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return perror_("opendir /proc/self/fd: %s", strerror(errno));
    char list[256] = "";
    size_t off = 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] == '.' || fd <= 2 || fd == dirfd(d))
            continue;
        char path[64], target[128] = "";
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(path, target, sizeof target - 1);
        if (len > 0)
            target[len] = 0;
        n++;
        if (off < sizeof list - 32)
            off += (size_t)snprintf(list + off, sizeof list - off, " %d->%.40s", fd, target);
    }
    closedir(d);
    if (n)
        return escaped("%d inherited descriptor(s):%s", n, list);
    return denied("only 0, 1, 2 are open");
}

/* Descriptors of another process reopened through /proc/PID/fd (the "Leaky Vessels" class:
 * a runtime fd to a host directory left reachable from inside). Targets: pid 1 as seen by the
 * probe (inside the sandbox, the runtime's init), else the battery. Pipes, sockets, anonymous
 * inodes and /dev/null are not counted. */
static int proc_fds_of(const char *pid, char *found, size_t len)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[384], target[128] = "";
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        ssize_t l = readlink(path, target, sizeof target - 1);
        if (l > 0)
            target[l] = 0;
        if (strncmp(target, "pipe:", 5) == 0 || strncmp(target, "socket:", 7) == 0 ||
            strncmp(target, "anon_inode:", 11) == 0 || strcmp(target, "/dev/null") == 0)
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd >= 0) {
            close(fd);
            if (n++ == 0)
                snprintf(found, len, "%.100s -> %.100s", path, target);
        }
    }
    closedir(d);
    return n;
}

static int proc_fds(void)
{
    char found[300] = "", who[32];
    int n = proc_fds_of("1", found, sizeof found);
    int e1 = errno;
    if (n <= 0 && P.harness > 0) {
        snprintf(who, sizeof who, "%ld", P.harness);
        n = proc_fds_of(who, found, sizeof found);
    }
    if (n > 0)
        return escaped("reopened %d descriptor(s) of another process, e.g. %s", n, found);
    return denied("no descriptor of pid 1 or the battery could be reopened (%s)",
                  n < 0 ? strerror(e1) : "none");
}

static int write_in(const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/stockade-probe-%d", dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return denied("create %s: %s (errno %d)", path, strerror(errno), errno);
    close(fd);
    unlink(path);
    return escaped("created (and removed) %s", path);
}
static int write_root(void) { return write_in(""); }
static int write_dev_shm(void) { return write_in("/dev/shm"); }

/* The host's filesystem through the battery's /proc/PID/root (escapes a chroot-style root). */
static int proc_root(void)
{
    if (P.harness <= 0)
        return perror_("harness= parameter missing");
    char path[96], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/root/etc/passwd", P.harness);
    long n = read_file(path, buf, sizeof buf);
    if (n < 0)
        return denied("read %s: %s (errno %d)", path, strerror(errno), errno);
    return escaped("read the host's /etc/passwd through %s", path);
}

/* A SysV message queue created on the host by the fixture process (IPC namespace). */
static int ipc_sysv(void)
{
    if (P.msg_key <= 0)
        return perror_("msg_key= parameter missing");
    return result(msgget((key_t)P.msg_key, 0), "msgget(host queue key)");
}
static int write_etc(void) { return write_in("/etc"); }
static int write_usr(void) { return write_in("/usr/bin"); }

const struct probe file_probes[] = {
    {"proc-sys-write", "procfs", "write /proc/sys/vm/swappiness (same value)", proc_sys_write},
    {"sysrq-trigger", "procfs", "open /proc/sysrq-trigger (or drop_caches) for writing", sysrq},
    {"proc-kcore", "procfs", "open /proc/kcore", kcore},
    {"proc-kallsyms", "procfs", "read kernel addresses from /proc/kallsyms", kallsyms},
    {"proc-cmdline", "procfs", "read the host kernel's command line", proc_cmdline},
    {"sys-present", "procfs", "sysfs mounted at /sys", sys_present},
    {"host-proc-visible", "procfs", "see the battery process in /proc", host_proc},
    {"cgroup-own-procs", "cgroup", "write own pid to own cgroup.procs", cg_own_procs},
    {"cgroup-root-procs", "cgroup", "move itself to the root cgroup", cg_root_procs},
    {"cgroup-memory-max", "cgroup", "write own memory limit (same value)", cg_memory},
    {"cgroup-pids-max", "cgroup", "write own pids.max (same value)", cg_pids},
    {"cgroup-release-agent", "cgroup", "write a v1 release_agent / v2 root subtree_control (same value)", cg_release_agent},
    {"dev-mem", "devices", "open /dev/mem (or a private 1:1 node)", dev_mem},
    {"dev-kmsg", "devices", "read the kernel log from /dev/kmsg", dev_kmsg},
    {"mknod-char", "devices", "mknod a char device (1:3) in /tmp", mknod_char},
    {"dev-block", "devices", "open a host block device", dev_block},
    {"dev-kvm", "devices", "open /dev/kvm", dev_kvm},
    {"dev-tun", "devices", "open /dev/net/tun", dev_tun},
    {"dev-fuse", "devices", "open /dev/fuse", dev_fuse},
    {"read-shadow", "secrets", "read /etc/shadow", shadow},
    {"runtime-environ", "secrets", "read /proc/<battery>/environ", environ_},
    {"inherited-fd", "secrets", "read the battery's secret through an inherited fd", inherited_fd},
    {"extra-fds", "secrets", "any descriptor beyond 0/1/2 open at start", extra_fds},
    {"proc-fds-reopen", "secrets", "reopen pid 1's (or the battery's) files via /proc/PID/fd", proc_fds},
    {"write-root", "fs-write", "create a file in /", write_root},
    {"write-etc", "fs-write", "create a file in /etc", write_etc},
    {"write-usr", "fs-write", "create a file in /usr/bin", write_usr},
    {"write-dev-shm", "fs-write", "create a file in the host's /dev/shm", write_dev_shm},
    {"proc-root-escape", "secrets", "read host /etc/passwd via /proc/<battery>/root", proc_root},
    {"ipc-sysv-host", "secrets", "open a host SysV message queue by key", ipc_sysv},
    {0},
};
