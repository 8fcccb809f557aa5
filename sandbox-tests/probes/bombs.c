/* Resource bombs and survival probes.
 *
 * Every bomb is bounded by a cap passed by the battery (count and size) so that the native
 * control run ends, cleans up, and leaves the host as it was; the native result is "reached the
 * cap" (ESCAPED). Inside the sandbox the bomb must be stopped BY A LIMIT before the cap, and the
 * probe prints the evidence as key=value pairs (count=, cap=, errno=) that the battery checks:
 * fork -> EAGAIN (pids.max / RLIMIT_NPROC), memory -> SIGKILL by the OOM killer or ENOMEM,
 * fds -> EMFILE, file size -> SIGXFSZ/EFBIG/ENOSPC, tmpfs inodes -> ENOSPC, CPU -> a measured
 * share below cpu_max (or SIGXCPU), inotify instances -> SIGSYS (not in the default seccomp
 * groups) or EMFILE (the user namespace's cap), queued signals -> EAGAIN (RLIMIT_SIGPENDING).
 * The last two have fixed caps: what they exhaust is the quota of the user that owns the
 * sandbox's user namespace (the runtime's: root's), shared with the whole host.
 *
 * Survival probes leave a process behind (the marker is in its argv, inherited from ours); the
 * battery decides by scanning the host /proc for the marker after the probe's run returned. */
#include "probe.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static const char *ename(int e)
{
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EROFS: return "EROFS";
    case ENOENT: return "ENOENT";
    default: return "other";
    }
}

static int capped(long count, long cap, int e, const char *unit)
{
    if (count >= cap)
        return escaped("count=%ld cap=%ld unit=%s (no limit hit)", count, cap, unit);
    return denied("count=%ld cap=%ld unit=%s errno=%s (%s)", count, cap, unit, ename(e), strerror(e));
}

static int fork_bomb(void)
{
    int p[2];
    if (pipe(p) != 0)
        return perror_("pipe: %s", strerror(errno));
    long n = 0;
    int e = 0;
    for (; n < P.fork_max; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            char c;
            close(p[1]);
            alarm(60); /* never outlive a wedged probe */
            (void)!read(p[0], &c, 1);
            _exit(0);
        }
        if (pid < 0) {
            e = errno;
            break;
        }
    }
    close(p[1]); /* EOF releases every child */
    while (wait(NULL) > 0)
        ;
    return capped(n, P.fork_max, e, "processes");
}

static int mem_bomb(void)
{
    const size_t chunk = 16u << 20;
    long chunks = P.mem_mb / 16, n = 0;
    void **maps = calloc((size_t)chunks + 1, sizeof *maps);
    int e = 0;
    for (; n < chunks; n++) {
        void *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            e = errno;
            break;
        }
        memset(m, 0xa5, chunk); /* touch: charge it to the memory cgroup */
        maps[n] = m;
    }
    for (long i = 0; i < n; i++)
        munmap(maps[i], chunk);
    return capped(n * 16, chunks * 16, e, "MiB");
}

static int fd_bomb(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max; /* any process may raise its soft limit to the hard one */
        setrlimit(RLIMIT_NOFILE, &r);
    }
    long n = 0;
    int e = 0;
    for (; n < P.fd_max; n++)
        if (dup(1) < 0) {
            e = errno;
            break;
        }
    return capped(n, P.fd_max, e, "fds");
}

static int fsize_bomb(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/stockade-probe-fsize-XXXXXX", P.tmp_dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return denied("mkstemp in %s: %s (errno %d) errno=%s", P.tmp_dir, strerror(errno), errno, ename(errno));
    unlink(path);
    static char mib[1 << 20];
    memset(mib, 'x', sizeof mib);
    long n = 0;
    int e = 0;
    for (; n < P.fsize_mb; n++) {
        ssize_t w = write(fd, mib, sizeof mib);
        if (w != (ssize_t)sizeof mib) {
            e = w < 0 ? errno : EFBIG; /* a short write is the limit biting */
            break;
        }
    }
    close(fd);
    return capped(n, P.fsize_mb, e, "MiB");
}

static int inode_bomb(void)
{
    char d[256];
    snprintf(d, sizeof d, "%s/stockade-probe-inodes-XXXXXX", P.tmp_dir);
    if (!mkdtemp(d))
        return denied("mkdtemp in %s: %s errno=%s", P.tmp_dir, strerror(errno), ename(errno));
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    long n = 0;
    int e = 0;
    char name[32];
    for (; n < P.inode_max; n++) {
        snprintf(name, sizeof name, "%ld", n);
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            e = errno;
            break;
        }
        close(fd);
    }
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%ld", i);
        unlinkat(dfd, name, 0);
    }
    rmdir(d);
    return capped(n, P.inode_max, e, "inodes");
}

/* Natively: root's inotify quota (fs.inotify.max_user_instances, 128 by default, shared with
 * every root process) must leave room for the cap. */
#define INOTIFY_CAP 32

static int inotify_bomb(void)
{
    int fds[INOTIFY_CAP];
    long n = 0;
    int e = 0;
    for (; n < INOTIFY_CAP; n++) {
        fds[n] = inotify_init1(IN_CLOEXEC);
        if (fds[n] < 0) {
            e = errno;
            break;
        }
    }
    for (long i = 0; i < n; i++)
        close(fds[i]);
    return capped(n, INOTIFY_CAP, e, "inotify instances");
}

/* Above the sandbox's RLIMIT_SIGPENDING (128), below root's on any host (the kernel's default is
 * half its thread limit: thousands, even on a small VM). */
#define SIGQUEUE_CAP 1024

static int sigqueue_bomb(void)
{
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    if (sigprocmask(SIG_BLOCK, &rt, NULL) != 0)
        return perror_("sigprocmask: %s", strerror(errno));
    union sigval v = {.sival_int = 0};
    long n = 0;
    int e = 0;
    for (; n < SIGQUEUE_CAP; n++)
        if (sigqueue(getpid(), SIGRTMIN, v) != 0) {
            e = errno;
            break;
        }
    /* Take them back (a blocked, queued signal is freed when it is received). */
    struct timespec zero = {0, 0};
    while (sigtimedwait(&rt, NULL, &zero) >= 0)
        ;
    return capped(n, SIGQUEUE_CAP, e, "queued signals");
}

static void *spin(void *arg)
{
    (void)arg;
    volatile unsigned long x = 0;
    for (;;)
        x++;
    return NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Spin 16 threads in a child and measure the CPU share it obtained over 2 s of wall time, after
 * 0.5 s of warm-up.
 *
 * The child measures itself (its process CPU clock over a monotonic window) and hands the share
 * back through a shared page. Measuring from fork to waitpid instead counted the start-up burst:
 * CFS bandwidth lets a group run on the runtime each CPU already took from the pool (a slice per
 * CPU) plus the whole quota of the period it starts in before the first throttle, which over a
 * 2 s window read 0.40-0.43 for a 40 % quota and, on a loaded CI box, 0.45: above the 10 % slack
 * and reported as an escape. The steady state is what the quota is about.
 *
 * With scheduler autogroups the CPU is shared per session, not per thread, so on a host busy
 * with other sessions a plain bomb gets well under one CPU and proves nothing, natively or in
 * the sandbox. Both runs therefore get the same advantage, autogroup nice -20:
 *  - natively the probe is not a session leader: the child starts its own session (its own
 *    autogroup, not the battery's) and renices it itself (root);
 *  - in the sandbox the probe IS a session leader (the runtime made it one): the child stays in
 *    that autogroup, which the battery renices from the host through the pid file (the warm-up
 *    also covers the moment that takes).
 * Then only a CPU quota can hold the bomb below cpu_max. */
static int cpu_bomb(void)
{
    double *shared = mmap(NULL, sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                          -1, 0);
    if (shared == MAP_FAILED)
        return perror_("mmap: %s", strerror(errno));
    *shared = -1.0;
    pid_t pid = fork();
    if (pid < 0)
        return denied("fork: %s errno=%s", strerror(errno), ename(errno));
    if (pid == 0) {
        enum { THREADS = 16 };
        if (getsid(0) != getppid()) {
            setsid();
            write_file("/proc/self/autogroup", "-20");
        }
        pthread_t t[THREADS];
        double start = now();
        int started = 0;
        for (int i = 0; i < THREADS; i++)
            if (pthread_create(&t[i], NULL, spin, NULL) == 0)
                started++;
        if (started == 0)
            _exit(3);
        while (now() - start < 0.5)
            usleep(50000);
        double t0 = now(), c0 = cpu_now();
        while (now() - t0 < 2.0)
            usleep(50000);
        double wall = now() - t0, cpu = cpu_now() - c0;
        /* cpu_now counts this (sleeping) thread too: its share is noise, not slack. */
        *shared = cpu / wall;
        _exit(0); /* exit_group ends the spinning threads */
    }
    int st;
    waitpid(pid, &st, 0);
    double share = *shared;
    munmap(shared, sizeof(double));
    if (WIFSIGNALED(st) && (WTERMSIG(st) == SIGXCPU || WTERMSIG(st) == SIGKILL))
        return denied("the bomb was killed by a limit errno=%s",
                      WTERMSIG(st) == SIGXCPU ? "SIGXCPU" : "SIGKILL");
    if (WIFSIGNALED(st))
        return perror_("the bomb was killed by signal %d (%s), not by a limit", WTERMSIG(st),
                       strsignal(WTERMSIG(st)));
    if (WEXITSTATUS(st) != 0 || share < 0)
        return perror_("the bomb could not start threads");
    if (share > P.cpu_max)
        return escaped("share=%.2f cpu_max=%.2f (no CPU quota hit)", share, P.cpu_max);
    return denied("share=%.2f cpu_max=%.2f errno=QUOTA (CPU quota held)", share, P.cpu_max);
}

/* Park a descendant that outlives us: it carries the marker in its argv (inherited) and lives
 * at most 30 s even if nobody kills it. Reports when it is in place. */
/* Fork the descendant; returns 0 once it reported in, else the probe's exit code. */
static int park_descendant(int daemonize)
{
    if (!*P.marker)
        return perror_("marker= parameter missing");
    int p[2];
    if (pipe(p) != 0)
        return perror_("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        return denied("fork: %s", strerror(errno));
    if (pid == 0) {
        if (daemonize) {
            setsid();
            if (fork() != 0)
                _exit(0);
        } else {
            setpgid(0, 0);
        }
        signal(SIGHUP, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        prctl(PR_SET_PDEATHSIG, 0);
        prctl(PR_SET_NAME, "stockade-surviv");
        /* do not hold the battery's output pipes open */
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int fd = 0; fd <= 2; fd++) {
            if (devnull >= 0)
                dup2(devnull, fd);
            else
                close(fd);
        }
        (void)!write(p[1], "x", 1);
        close(p[0]);
        close(p[1]);
        for (int i = 0; i < 30; i++)
            sleep(1);
        _exit(0);
    }
    close(p[1]);
    char c;
    ssize_t n = read(p[0], &c, 1);
    if (daemonize)
        waitpid(pid, NULL, 0);
    if (n != 1)
        return denied("the descendant never reported in");
    return 0;
}

static int survivor(int daemonize)
{
    int rc = park_descendant(daemonize);
    if (rc != 0)
        return rc;
    return escaped("left a %s descendant behind (marker in argv)",
                   daemonize ? "double-forked setsid" : "orphaned");
}
static int survive_daemon(void) { return survivor(1); }
static int survive_orphan(void) { return survivor(0); }

/* The runtime itself dies (the battery SIGKILLs it once READY is printed): its sandbox must
 * still die with it (PR_SET_PDEATHSIG, pid-namespace init, cgroup). Natively the battery kills
 * the probe and the daemon lives on. */
static int survive_runtime_kill(void)
{
    int rc = park_descendant(1);
    if (rc != 0)
        return rc;
    printf("%s: READY descendant in place, waiting to be killed\n", probe_name);
    fflush(stdout);
    for (int i = 0; i < 30; i++)
        sleep(1);
    return perror_("was not killed within 30 s");
}

const struct probe bomb_probes[] = {
    {"fork-bomb", "bombs", "fork until a limit (cap fork_max)", fork_bomb},
    {"mem-bomb", "bombs", "allocate and touch memory (cap mem_mb)", mem_bomb},
    {"fd-bomb", "bombs", "open fds until a limit (cap fd_max)", fd_bomb},
    {"fsize-bomb", "bombs", "grow a /tmp file (cap fsize_mb)", fsize_bomb},
    {"inode-bomb", "bombs", "create empty /tmp files (cap inode_max)", inode_bomb},
    {"cpu-bomb", "bombs", "spin 16 threads; share over 2 s after warm-up above cpu_max", cpu_bomb},
    {"inotify-bomb", "bombs", "create inotify instances (cap 32)", inotify_bomb},
    {"sigqueue-bomb", "bombs", "queue real-time signals to itself (cap 1024)", sigqueue_bomb},
    {"survive-daemon", "survival", "double fork + setsid descendant outliving the run", survive_daemon},
    {"survive-orphan", "survival", "orphaned descendant ignoring SIGHUP/SIGTERM", survive_orphan},
    {"survive-runtime-kill", "survival", "descendant outliving a SIGKILL of the runtime", survive_runtime_kill},
    {0},
};
