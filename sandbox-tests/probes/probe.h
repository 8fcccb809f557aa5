/* Shared declarations of the stockade-probe multi-call binary.
 *
 * Every probe attempts ONE thing a contained plugin must not be able to do and reports in one
 * line on stdout, with an exit status the battery interprets:
 *   0  ESCAPED  the action succeeded (natively this is the expected control result),
 *   1  DENIED   the action was refused (the errno or the reason is printed),
 *   2  ERROR    the probe itself could not run (bad parameters, an unexpected state).
 * Probes must be NON-DESTRUCTIVE when run natively as root: they write back values already
 * there, use arguments that pass the permission check but fail afterwards, bound every bomb and
 * clean up after themselves. See sandbox-tests/README.md for the per-probe control rules. */
#ifndef STOCKADE_PROBE_H
#define STOCKADE_PROBE_H

#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Fixtures the battery sets up and passes as key=value arguments. */
struct params {
    long harness;       /* host pid of the battery (an ancestor of the probe) */
    long harness_start; /* its start time (field 22 of /proc/PID/stat), to recognise it */
    long sibling;       /* host pid of a harmless fixture process (signal/ptrace target) */
    int port4, port6;   /* TCP listeners on 127.0.0.1 and ::1 */
    int udp4;           /* UDP socket on 127.0.0.1 */
    int secret_fd;      /* fd left open without CLOEXEC by the battery */
    const char *secret; /* the content behind secret_fd */
    const char *abstract_name; /* abstract unix socket the battery listens on (no leading @) */
    const char *unix_path;     /* path unix socket the battery listens on */
    const char *marker;        /* marker string for survival probes */
    const char *tmp_dir;       /* where file/inode bombs write: /tmp, or a tmpfs for native runs */
    double cpu_max;            /* CPU share above which the CPU bomb counts as unbounded */
    long mem_mb, fork_max, fd_max, fsize_mb, inode_max; /* bomb caps */
    long msg_key;              /* SysV message queue key the fixture process created */
};
extern struct params P;

typedef int (*probe_fn)(void);
struct probe {
    const char *name;
    const char *category;
    const char *what;
    probe_fn fn;
};

extern const char *probe_name;

/* Print the one result line and return the exit code (0 escaped, 1 denied, 2 error). */
int escaped(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int denied(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int perror_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* rc >= 0: escaped; otherwise denied with errno. */
int result(long rc, const char *what);
/* For calls made with arguments that are invalid only AFTER the permission check: rc >= 0 or
 * one of the listed errnos (0-terminated) means the kernel let us through (escaped). */
int permitted_if(long rc, const char *what, ...);

/* Start n threads that block forever, so that per-thread state can be inspected. */
void start_threads(int n);
/* Read "Field:" of /proc/self/task/TID/status for every thread; count threads whose value
 * satisfies pred. Returns the number of threads inspected (0: /proc unreadable). */
int scan_threads(const char *field, int (*pred)(const char *value), int *matching, char *first,
                 size_t first_len);
/* Read a whole small file into buf (NUL-terminated); returns length or -1. */
long read_file(const char *path, char *buf, size_t len);
/* Write s to path (no O_CREAT); returns 0 or -1 with errno. */
int write_file(const char *path, const char *s);
/* Is fd a real procfs file (not a /dev/null or tmpfs mask bound over it)? */
int is_procfs_fd(int fd);

extern const struct probe creds_probes[], ns_probes[], mount_probes[], kernel_probes[],
    tty_probes[], file_probes[], net_probes[], bomb_probes[];

#endif
