/* stockade-probe: multi-call escape probe binary (dispatch, parameters, shared helpers).
 *
 * Usage: stockade-probe --list | stockade-probe NAME [key=value...]
 * It is linked statically so that it runs unchanged inside a sandbox whose root holds no libc,
 * and inside the minimal qemu initramfs of the kernel matrix. */
#include "probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/types.h>

#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif

struct params P = {
    .harness = -1, .harness_start = -1, .sibling = -1, .port4 = -1, .port6 = -1, .udp4 = -1,
    .secret_fd = -1, .secret = "", .abstract_name = "", .unix_path = "", .marker = "",
    .cpu_max = 1.1, .mem_mb = 1024, .fork_max = 1024, .fd_max = 8192, .fsize_mb = 256,
    .inode_max = 20000, .msg_key = -1, .tmp_dir = "/tmp",
};
const char *probe_name = "?";

static int line(int code, const char *tag, const char *fmt, va_list ap)
{
    printf("%s: %s ", probe_name, tag);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    return code;
}

int escaped(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int c = line(0, "ESCAPED", fmt, ap);
    va_end(ap);
    return c;
}

int denied(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int c = line(1, "DENIED", fmt, ap);
    va_end(ap);
    return c;
}

int perror_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int c = line(2, "ERROR", fmt, ap);
    va_end(ap);
    return c;
}

int result(long rc, const char *what)
{
    if (rc >= 0)
        return escaped("%s succeeded", what);
    return denied("%s: %s (errno %d)", what, strerror(errno), errno);
}

int permitted_if(long rc, const char *what, ...)
{
    if (rc >= 0)
        return escaped("%s succeeded", what);
    int e = errno;
    va_list ap;
    va_start(ap, what);
    for (int ok = va_arg(ap, int); ok != 0; ok = va_arg(ap, int)) {
        if (ok == e) {
            va_end(ap);
            return escaped("%s passed the permission check (then %s, errno %d)", what,
                           strerror(e), e);
        }
    }
    va_end(ap);
    return denied("%s: %s (errno %d)", what, strerror(e), e);
}

static void *blocker(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

void start_threads(int n)
{
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, blocker, NULL) != 0)
            break; /* the scan reports how many threads it saw */
    }
    usleep(20000); /* let them reach pause() so their status is settled */
}

long read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off + 1 < len) {
        ssize_t n = read(fd, buf + off, len - 1 - off);
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    buf[off] = 0;
    close(fd);
    return (long)off;
}

int write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, s, strlen(s));
    int e = errno;
    close(fd);
    errno = e;
    return n < 0 ? -1 : 0;
}

int is_procfs_fd(int fd)
{
    struct statfs sf;
    return fstatfs(fd, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC;
}

int scan_threads(const char *field, int (*pred)(const char *value), int *matching, char *first,
                 size_t first_len)
{
    DIR *d = opendir("/proc/self/task");
    int seen = 0;
    *matching = 0;
    if (!d)
        return 0;
    struct dirent *de;
    size_t flen = strlen(field);
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", de->d_name);
        if (read_file(path, buf, sizeof buf) < 0)
            continue;
        for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
            if (strncmp(l, field, flen) == 0 && l[flen] == ':') {
                char val[128];
                const char *v = l + flen + 1;
                while (*v == ' ' || *v == '\t')
                    v++;
                size_t n = strcspn(v, "\n");
                if (n >= sizeof val)
                    n = sizeof val - 1;
                memcpy(val, v, n);
                val[n] = 0;
                seen++;
                if (pred(val)) {
                    if (*matching == 0 && first)
                        snprintf(first, first_len, "tid %s %s=%s", de->d_name, field, val);
                    (*matching)++;
                }
                break;
            }
        }
    }
    closedir(d);
    return seen;
}

/* --- fixtures used by the battery itself ------------------------------------------------ */

/* posture-target: 3 extra threads, then sleep until killed (the posture check reads our
 * /proc/PID/... from the host meanwhile). Bounded so that it never outlives a broken harness. */
static int posture_target(void)
{
    start_threads(3);
    printf("posture-target: READY pid %d\n", (int)getpid());
    fflush(stdout);
    sleep(60);
    return 0;
}

/* fixture-sleeper: a harmless host process for signal and ptrace probes; ignores SIGUSR1.
 * With msg_key= it also owns a host SysV message queue (the IPC-namespace target), removed
 * on SIGTERM, which is also its parent-death signal. */
static int fixture_queue = -1;
static void fixture_term(int sig)
{
    (void)sig;
    if (fixture_queue >= 0)
        msgctl(fixture_queue, IPC_RMID, NULL);
    _exit(0);
}

static int fixture_sleeper(void)
{
    signal(SIGUSR1, SIG_IGN);
    signal(SIGTERM, fixture_term);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (P.msg_key > 0)
        fixture_queue = msgget((key_t)P.msg_key, IPC_CREAT | 0600);
    for (int i = 0; i < 600; i++)
        sleep(1);
    return 0;
}

static const struct probe *const tables[] = {creds_probes, ns_probes,   mount_probes,
                                             kernel_probes, tty_probes, file_probes,
                                             net_probes,    bomb_probes};

static void parse_param(const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq) {
        fprintf(stderr, "stockade-probe: ignoring argument without '=': %s\n", kv);
        return;
    }
    size_t k = (size_t)(eq - kv);
    const char *v = eq + 1;
#define KEY(name) (k == strlen(name) && strncmp(kv, name, k) == 0)
    if (KEY("harness")) P.harness = atol(v);
    else if (KEY("harness_start")) P.harness_start = atol(v);
    else if (KEY("sibling")) P.sibling = atol(v);
    else if (KEY("port4")) P.port4 = atoi(v);
    else if (KEY("port6")) P.port6 = atoi(v);
    else if (KEY("udp4")) P.udp4 = atoi(v);
    else if (KEY("secret_fd")) P.secret_fd = atoi(v);
    else if (KEY("secret")) P.secret = v;
    else if (KEY("abstract")) P.abstract_name = v;
    else if (KEY("unix")) P.unix_path = v;
    else if (KEY("marker")) P.marker = v;
    else if (KEY("tmp_dir")) P.tmp_dir = v;
    else if (KEY("cpu_max")) P.cpu_max = atof(v);
    else if (KEY("mem_mb")) P.mem_mb = atol(v);
    else if (KEY("fork_max")) P.fork_max = atol(v);
    else if (KEY("fd_max")) P.fd_max = atol(v);
    else if (KEY("fsize_mb")) P.fsize_mb = atol(v);
    else if (KEY("inode_max")) P.inode_max = atol(v);
    else if (KEY("msg_key")) P.msg_key = atol(v);
    else fprintf(stderr, "stockade-probe: unknown parameter %.*s\n", (int)k, kv);
#undef KEY
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: stockade-probe --list | NAME [key=value...]\n");
        return 2;
    }
    if (strcmp(argv[1], "--list") == 0) {
        for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
            for (const struct probe *p = tables[t]; p->name; p++)
                printf("%s\t%s\t%s\n", p->name, p->category, p->what);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        parse_param(argv[i]);
    probe_name = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "posture-target") == 0)
        return posture_target();
    if (strcmp(argv[1], "fixture-sleeper") == 0)
        return fixture_sleeper();
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const struct probe *p = tables[t]; p->name; p++)
            if (strcmp(p->name, argv[1]) == 0)
                return p->fn();
    return perror_("unknown probe (see --list)");
}
