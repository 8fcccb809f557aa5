/* Namespace and mount probes.
 *
 * Nested namespaces let a plugin build a fresh user namespace in which it is "root" again and
 * reach kernel code paths that need CAP_SYS_ADMIN (a large share of kernel LPEs). Mount
 * operations could unmask /proc paths, remount the read-only root writable or graft a tree
 * from elsewhere. Natively (as root) every action here is permitted; the probes only touch
 * private temporary directories and use arguments that fail after the permission check where
 * success would change the host (pivot_root, umount with MNT_EXPIRE). */
#include "probe.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define P_OPEN_TREE_CLONE 1
#define P_FSOPEN_CLOEXEC 1
#define P_FSCONFIG_CMD_CREATE 6
#define P_FSMOUNT_CLOEXEC 1
#define P_MOVE_MOUNT_F_EMPTY_PATH 0x00000004

static int unshare_(int flag, const char *what)
{
    return result(unshare(flag), what);
}
static int u_user(void) { return unshare_(CLONE_NEWUSER, "unshare(CLONE_NEWUSER)"); }
static int u_pid(void) { return unshare_(CLONE_NEWPID, "unshare(CLONE_NEWPID)"); }
static int u_mnt(void) { return unshare_(CLONE_NEWNS, "unshare(CLONE_NEWNS)"); }
static int u_net(void) { return unshare_(CLONE_NEWNET, "unshare(CLONE_NEWNET)"); }
static int u_ipc(void) { return unshare_(CLONE_NEWIPC, "unshare(CLONE_NEWIPC)"); }
static int u_uts(void) { return unshare_(CLONE_NEWUTS, "unshare(CLONE_NEWUTS)"); }
static int u_cgroup(void) { return unshare_(CLONE_NEWCGROUP, "unshare(CLONE_NEWCGROUP)"); }
static int u_time(void) { return unshare_(CLONE_NEWTIME, "unshare(CLONE_NEWTIME)"); }

/* Raw clone(2) with namespace flags; fork semantics (no new stack), the child exits at once. */
static int clone_(unsigned long flag, const char *what)
{
    long pid = syscall(SYS_clone, flag | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        syscall(SYS_exit_group, 0);
    if (pid < 0)
        return denied("%s: %s (errno %d)", what, strerror(errno), errno);
    waitpid((pid_t)pid, NULL, 0);
    return escaped("%s created child %ld", what, pid);
}
static int c_user(void) { return clone_(CLONE_NEWUSER, "clone(CLONE_NEWUSER)"); }
static int c_ns(void) { return clone_(CLONE_NEWNS, "clone(CLONE_NEWNS)"); }
static int c_pid(void) { return clone_(CLONE_NEWPID, "clone(CLONE_NEWPID)"); }
static int c_net(void) { return clone_(CLONE_NEWNET, "clone(CLONE_NEWNET)"); }

/* clone3 hides its flags in memory, where a seccomp filter cannot look: the runtime must answer
 * it with ENOSYS (so libc falls back to clone) or kill. */
static int clone3_(uint64_t flags, const char *what)
{
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &a, sizeof a);
    if (pid == 0)
        syscall(SYS_exit_group, 0);
    if (pid < 0)
        return denied("%s: %s (errno %d)", what, strerror(errno), errno);
    waitpid((pid_t)pid, NULL, 0);
    return escaped("%s created child %ld", what, pid);
}
static int c3_user(void) { return clone3_(CLONE_NEWUSER, "clone3(CLONE_NEWUSER)"); }
static int c3_ns(void) { return clone3_(CLONE_NEWNS | CLONE_NEWPID, "clone3(CLONE_NEWNS|CLONE_NEWPID)"); }

/* Join the namespace of pid 1 as seen by the probe. Where pid 1 is not inspectable (a
 * non-dumpable init, as on the Firecracker CI host, or the sandbox's own init) the battery's
 * namespace is tried, which natively is the same host namespace and inside the sandbox is
 * invisible; failing both, the probe's own namespace, so that setns(2) itself is always
 * exercised (joining any mount/net/... namespace needs CAP_SYS_ADMIN over it). */
static int setns_(const char *ns, int type)
{
    char path[64];
    int fd = -1;
    for (int i = 0; i < 3 && fd < 0; i++) {
        if (i == 0)
            snprintf(path, sizeof path, "/proc/1/ns/%s", ns);
        else if (i == 1 && P.harness > 0)
            snprintf(path, sizeof path, "/proc/%ld/ns/%s", P.harness, ns);
        else
            snprintf(path, sizeof path, "/proc/self/ns/%s", ns);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return denied("open %s: %s", path, strerror(errno));
    char what[96];
    snprintf(what, sizeof what, "setns(%s)", path);
    return result(setns(fd, type), what);
}
static int s_mnt(void) { return setns_("mnt", CLONE_NEWNS); }
static int s_net(void) { return setns_("net", CLONE_NEWNET); }
static int s_uts(void) { return setns_("uts", CLONE_NEWUTS); }
static int s_ipc(void) { return setns_("ipc", CLONE_NEWIPC); }
static int s_cgroup(void) { return setns_("cgroup", CLONE_NEWCGROUP); }

/* Join the host namespaces of the battery itself through a pidfd. */
static int s_harness(void)
{
    if (P.harness <= 0)
        return perror_("harness= parameter missing");
    long pfd = syscall(SYS_pidfd_open, P.harness, 0);
    if (pfd < 0)
        return denied("pidfd_open(%ld): %s", P.harness, strerror(errno));
    return result(setns((int)pfd, CLONE_NEWNET | CLONE_NEWUTS), "setns(pidfd of harness, NET|UTS)");
}

/* --- mounts ------------------------------------------------------------------------------ */

static int tmpdir(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/stockade-probe-XXXXXX");
    return mkdtemp(buf) ? 0 : -1;
}

static int mount_fs(const char *type, const char *src)
{
    char d[64];
    if (tmpdir(d, sizeof d))
        return denied("mkdtemp in /tmp: %s", strerror(errno));
    int rc = mount(src, d, type, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    int e = errno;
    if (rc == 0)
        umount2(d, MNT_DETACH);
    rmdir(d);
    errno = e;
    char what[64];
    snprintf(what, sizeof what, "mount -t %s", type);
    return result(rc, what);
}
static int m_tmpfs(void) { return mount_fs("tmpfs", "stockade-probe"); }
static int m_proc(void) { return mount_fs("proc", "proc"); }

static int m_bind_root(void)
{
    char d[64];
    if (tmpdir(d, sizeof d))
        return denied("mkdtemp in /tmp: %s", strerror(errno));
    int rc = mount("/", d, NULL, MS_BIND | MS_REC, NULL);
    int e = errno;
    if (rc == 0)
        umount2(d, MNT_DETACH);
    rmdir(d);
    errno = e;
    return result(rc, "mount --rbind / /tmp/...");
}

/* Remount / writable, passing back every other per-mount flag it has (natively / is already
 * read-write, so this changes nothing there). */
static int m_remount_root(void)
{
    struct statvfs s;
    if (statvfs("/", &s))
        return perror_("statvfs /: %s", strerror(errno));
    unsigned long f = MS_REMOUNT | MS_BIND;
    if (s.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (s.f_flag & ST_NODEV) f |= MS_NODEV;
    if (s.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (s.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (s.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (s.f_flag & ST_RELATIME) f |= MS_RELATIME;
    int was_ro = (s.f_flag & ST_RDONLY) != 0;
    if (mount(NULL, "/", NULL, f, NULL) != 0)
        return denied("remount / read-write: %s (errno %d)", strerror(errno), errno);
    statvfs("/", &s);
    return escaped("remount / read-write succeeded (was %s, now %s)", was_ro ? "ro" : "rw",
                   (s.f_flag & ST_RDONLY) ? "ro" : "rw");
}

/* MNT_EXPIRE only marks a mount on the first call (EAGAIN), so this never unmounts anything;
 * EINVAL natively means "not a mount point" after the CAP_SYS_ADMIN check passed. */
static int m_umount(void)
{
    /* the usual masked paths; the first one that exists is the target */
    static const char *const masked[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list",
                                         "/proc/sched_debug", "/proc/acpi", "/proc/scsi"};
    const char *target = masked[0];
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++)
        if (access(masked[i], F_OK) == 0) {
            target = masked[i];
            break;
        }
    char what[96];
    snprintf(what, sizeof what, "umount2(%s, MNT_EXPIRE)", target);
    return permitted_if(umount2(target, MNT_EXPIRE), what, EAGAIN, EINVAL, 0);
}

static int m_pivot(void)
{
    return permitted_if(syscall(SYS_pivot_root, "/nonexistent-stockade-probe/a",
                                "/nonexistent-stockade-probe/b"),
                        "pivot_root(nonexistent paths)", ENOENT, 0);
}

static int m_chroot(void) { return result(chroot("/"), "chroot(/)"); }

static int m_open_tree(void)
{
    return result(syscall(SYS_open_tree, AT_FDCWD, "/", P_OPEN_TREE_CLONE | O_CLOEXEC),
                  "open_tree(/, OPEN_TREE_CLONE)");
}

static int m_fsopen(void)
{
    return result(syscall(SYS_fsopen, "tmpfs", P_FSOPEN_CLOEXEC), "fsopen(tmpfs)");
}

static int new_mount_fd(const char **step)
{
    *step = "fsopen(tmpfs)";
    long fs = syscall(SYS_fsopen, "tmpfs", P_FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    *step = "fsconfig(CMD_CREATE)";
    if (syscall(SYS_fsconfig, fs, P_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return -1;
    *step = "fsmount";
    long m = syscall(SYS_fsmount, fs, P_FSMOUNT_CLOEXEC, 0);
    close((int)fs);
    return (int)m;
}

static int m_fsmount(void)
{
    const char *step;
    int m = new_mount_fd(&step);
    if (m < 0)
        return denied("%s: %s (errno %d)", step, strerror(errno), errno);
    return escaped("fsopen+fsconfig+fsmount gave a detached tmpfs mount fd %d", m);
}

static int m_move_mount(void)
{
    const char *step;
    int m = new_mount_fd(&step);
    if (m < 0)
        return denied("%s: %s (errno %d)", step, strerror(errno), errno);
    char d[64];
    if (tmpdir(d, sizeof d))
        return denied("mkdtemp in /tmp: %s", strerror(errno));
    long rc = syscall(SYS_move_mount, m, "", AT_FDCWD, d, P_MOVE_MOUNT_F_EMPTY_PATH);
    int e = errno;
    if (rc == 0)
        umount2(d, MNT_DETACH);
    rmdir(d);
    errno = e;
    return result(rc, "move_mount(detached tmpfs -> /tmp/...)");
}

const struct probe ns_probes[] = {
    {"unshare-user", "namespaces", "unshare(CLONE_NEWUSER)", u_user},
    {"unshare-pid", "namespaces", "unshare(CLONE_NEWPID)", u_pid},
    {"unshare-mnt", "namespaces", "unshare(CLONE_NEWNS)", u_mnt},
    {"unshare-net", "namespaces", "unshare(CLONE_NEWNET)", u_net},
    {"unshare-ipc", "namespaces", "unshare(CLONE_NEWIPC)", u_ipc},
    {"unshare-uts", "namespaces", "unshare(CLONE_NEWUTS)", u_uts},
    {"unshare-cgroup", "namespaces", "unshare(CLONE_NEWCGROUP)", u_cgroup},
    {"unshare-time", "namespaces", "unshare(CLONE_NEWTIME)", u_time},
    {"clone-newuser", "namespaces", "raw clone(CLONE_NEWUSER)", c_user},
    {"clone-newns", "namespaces", "raw clone(CLONE_NEWNS)", c_ns},
    {"clone-newpid", "namespaces", "raw clone(CLONE_NEWPID)", c_pid},
    {"clone-newnet", "namespaces", "raw clone(CLONE_NEWNET)", c_net},
    {"clone3-newuser", "namespaces", "raw clone3(CLONE_NEWUSER)", c3_user},
    {"clone3-newns", "namespaces", "raw clone3(CLONE_NEWNS|CLONE_NEWPID)", c3_ns},
    {"setns-mnt", "namespaces", "setns(/proc/1/ns/mnt, else battery's, else own)", s_mnt},
    {"setns-net", "namespaces", "setns(/proc/1/ns/net)", s_net},
    {"setns-uts", "namespaces", "setns(/proc/1/ns/uts)", s_uts},
    {"setns-ipc", "namespaces", "setns(/proc/1/ns/ipc)", s_ipc},
    {"setns-cgroup", "namespaces", "setns(/proc/1/ns/cgroup)", s_cgroup},
    {"setns-harness", "namespaces", "pidfd_open(battery pid) + setns(NET|UTS)", s_harness},
    {0},
};

const struct probe mount_probes[] = {
    {"mount-tmpfs", "mount", "mount a tmpfs on a private /tmp dir", m_tmpfs},
    {"mount-proc", "mount", "mount a fresh (unmasked) procfs", m_proc},
    {"mount-bind-root", "mount", "recursive bind mount of /", m_bind_root},
    {"remount-root-rw", "mount", "remount / read-write (other flags passed back)", m_remount_root},
    {"umount-mask", "mount", "umount2(a masked /proc path, MNT_EXPIRE)", m_umount},
    {"pivot-root", "mount", "pivot_root (nonexistent paths: ENOENT = permitted)", m_pivot},
    {"chroot", "mount", "chroot(/)", m_chroot},
    {"open-tree", "mount", "open_tree(/, OPEN_TREE_CLONE)", m_open_tree},
    {"fsopen", "mount", "fsopen(tmpfs)", m_fsopen},
    {"fsmount", "mount", "fsopen + fsconfig(CREATE) + fsmount", m_fsmount},
    {"move-mount", "mount", "move_mount a new tmpfs onto a /tmp dir", m_move_mount},
    {0},
};
