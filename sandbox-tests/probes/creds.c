/* Credentials probes: capability sets, NoNewPrivs, seccomp and uid of EVERY thread.
 *
 * Each state probe starts three threads first, because seccomp filters and capability drops
 * that are applied to one thread only (no TSYNC, capset after pthread_create) are a classic
 * hole: the kernel reports them per task in /proc/self/task/TID/status. */
#include "probe.h"

#include <linux/capability.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static int nonzero_hex(const char *v) { return strtoull(v, NULL, 16) != 0; }
static int is_zero(const char *v) { return strcmp(v, "0") == 0; }
static int not_two(const char *v) { return strcmp(v, "2") != 0; }
static int any_uid_zero(const char *v)
{
    char *end;
    for (const char *p = v; *p;) {
        long u = strtol(p, &end, 10);
        if (end == p)
            break;
        if (u == 0)
            return 1;
        p = end;
    }
    return 0;
}

static int thread_state(const char *field, int (*pred)(const char *), const char *meaning)
{
    start_threads(3);
    int matching;
    char first[192] = "";
    int seen = scan_threads(field, pred, &matching, first, sizeof first);
    if (seen == 0)
        return denied("/proc/self/task/*/status unreadable (%s): no %s observable", strerror(errno),
                      field);
    if (seen < 4)
        return perror_("saw only %d threads with %s (expected 4)", seen, field);
    if (matching)
        return escaped("%d of %d threads %s (%s)", matching, seen, meaning, first);
    return denied("all %d threads clean for %s", seen, field);
}

static int caps_eff(void) { return thread_state("CapEff", nonzero_hex, "have effective capabilities"); }
static int caps_prm(void) { return thread_state("CapPrm", nonzero_hex, "have permitted capabilities"); }
static int caps_bnd(void) { return thread_state("CapBnd", nonzero_hex, "have a non-empty bounding set"); }
static int nnp_off(void) { return thread_state("NoNewPrivs", is_zero, "lack no_new_privs"); }
static int seccomp_off(void) { return thread_state("Seccomp", not_two, "are not in seccomp filter mode"); }
static int uid_root(void) { return thread_state("Uid", any_uid_zero, "have a uid 0 field"); }
static int gid_root(void) { return thread_state("Gid", any_uid_zero, "have a gid 0 field"); }

static int capget_(struct __user_cap_data_struct d[2])
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    return (int)syscall(SYS_capget, &h, d);
}

static int capset_(struct __user_cap_data_struct d[2])
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    return (int)syscall(SYS_capset, &h, d);
}

/* Try to fill the inheritable set from the permitted set (needs caps in the permitted set). */
static int raise_inheritable(void)
{
    struct __user_cap_data_struct d[2];
    if (capget_(d) != 0)
        return -1;
    d[0].inheritable = d[0].permitted;
    d[1].inheritable = d[1].permitted;
    return capset_(d);
}

static int caps_inh(void)
{
    start_threads(3);
    int rc = raise_inheritable();
    int e = errno;
    int matching;
    char first[192] = "";
    scan_threads("CapInh", nonzero_hex, &matching, first, sizeof first);
    if (matching)
        return escaped("inheritable set non-empty (%s)", first);
    errno = e;
    return denied("capset(inheritable=permitted) rc %d (%s); CapInh empty everywhere", rc,
                  rc ? strerror(e) : "nothing to copy");
}

static int caps_amb(void)
{
    start_threads(3);
    raise_inheritable();
    int raised = -1;
    for (int cap = 0; cap <= CAP_LAST_CAP && raised < 0; cap++)
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) == 0)
            raised = cap;
    int e = errno;
    int matching;
    char first[192] = "";
    scan_threads("CapAmb", nonzero_hex, &matching, first, sizeof first);
    if (matching)
        return escaped("ambient set non-empty (%s, raised cap %d)", first, raised);
    return denied("PR_CAP_AMBIENT_RAISE failed for every capability (%s)", strerror(e));
}

static int setuid_root(void)
{
    long rc = syscall(SYS_setresuid, 0, 0, 0);
    if (rc == 0 && geteuid() == 0)
        return escaped("setresuid(0,0,0) succeeded: euid 0");
    return denied("setresuid(0,0,0): %s (euid %d)", rc ? strerror(errno) : "no effect",
                  (int)geteuid());
}

static int setgroups_(void)
{
    return result(syscall(SYS_setgroups, 0, NULL), "setgroups(0, NULL)");
}

const struct probe creds_probes[] = {
    {"caps-eff", "creds", "any thread has a non-empty effective capability set", caps_eff},
    {"caps-prm", "creds", "any thread has a non-empty permitted capability set", caps_prm},
    {"caps-bnd", "creds", "any thread has a non-empty bounding set", caps_bnd},
    {"caps-inh", "creds", "fill the inheritable set from the permitted set", caps_inh},
    {"caps-amb", "creds", "raise any capability into the ambient set", caps_amb},
    {"nnp-off", "creds", "any thread runs without no_new_privs", nnp_off},
    {"seccomp-off", "creds", "any thread is not in seccomp filter mode (2)", seccomp_off},
    {"uid-root", "creds", "any thread has uid 0 in Uid (real/eff/saved/fs)", uid_root},
    {"gid-root", "creds", "any thread has gid 0 in Gid (real/eff/saved/fs)", gid_root},
    {"setuid-root", "creds", "setresuid(0,0,0)", setuid_root},
    {"setgroups", "creds", "setgroups(0, NULL) (setgroups must be denied)", setgroups_},
    {0},
};
