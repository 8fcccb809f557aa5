/* Run a program under the seccomp filter a container engine puts around its processes (x86-64):
 *   no_clone3  clone3 answers ENOSYS, nothing else refused (systemd's RestrictNamespaces=, a
 *              browser sandbox, Docker with CAP_SYS_ADMIN minus clone3): libc falls back to clone.
 *   docker     Docker's default profile for a container without CAP_SYS_ADMIN, for the calls that
 *              decide a sandbox: clone3 ENOSYS; clone with any CLONE_NEW* flag, unshare, setns,
 *              mount and umount2 EPERM.
 *   no_landlock the Landlock calls answer EPERM, as under a profile older than Landlock (Docker's
 *              before 23.0 refused every call it did not list with EPERM).
 * no_new_privs is set first (as `docker run --security-opt no-new-privileges` does). */
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <sys/prctl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#define NS_FLAGS 0x7E020000 /* CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET */
#define NR(n, skip) BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, (n), 0, (skip))
#define RET(v) BPF_STMT(BPF_RET|BPF_K, (v))
int main(int argc, char **argv) {
  struct sock_filter no_clone3[] = {
    BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data, nr)),
    NR(SYS_clone3, 1), RET(SECCOMP_RET_ERRNO | ENOSYS),
    RET(SECCOMP_RET_ALLOW),
  };
  struct sock_filter docker[] = {
    BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data, nr)),
    NR(SYS_clone3, 1), RET(SECCOMP_RET_ERRNO | ENOSYS),
    NR(SYS_unshare, 1), RET(SECCOMP_RET_ERRNO | EPERM),
    NR(SYS_setns, 1), RET(SECCOMP_RET_ERRNO | EPERM),
    NR(SYS_mount, 1), RET(SECCOMP_RET_ERRNO | EPERM),
    NR(SYS_umount2, 1), RET(SECCOMP_RET_ERRNO | EPERM),
    NR(SYS_clone, 3),
    BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data, args[0])),
    BPF_JUMP(BPF_JMP|BPF_JSET|BPF_K, NS_FLAGS, 0, 1), RET(SECCOMP_RET_ERRNO | EPERM),
    RET(SECCOMP_RET_ALLOW),
  };
  struct sock_filter no_landlock[] = {
    BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data, nr)),
    NR(SYS_landlock_create_ruleset, 1), RET(SECCOMP_RET_ERRNO | EPERM),
    NR(SYS_landlock_add_rule, 1), RET(SECCOMP_RET_ERRNO | EPERM),
    NR(SYS_landlock_restrict_self, 1), RET(SECCOMP_RET_ERRNO | EPERM),
    RET(SECCOMP_RET_ALLOW),
  };
  struct sock_fprog p;
  if (argc < 3) return 97;
  if (!strcmp(argv[1], "no_clone3")) {
    p.len = sizeof no_clone3 / sizeof no_clone3[0]; p.filter = no_clone3;
  } else if (!strcmp(argv[1], "docker")) {
    p.len = sizeof docker / sizeof docker[0]; p.filter = docker;
  } else if (!strcmp(argv[1], "no_landlock")) {
    p.len = sizeof no_landlock / sizeof no_landlock[0]; p.filter = no_landlock;
  } else {
    return 97;
  }
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p)) return 99;
  execv(argv[2], argv + 2);
  return 98;
}
