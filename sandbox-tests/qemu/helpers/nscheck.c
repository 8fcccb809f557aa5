/*
 * nscheck: can this kernel build the sandbox's namespace stack?
 *
 * Usage: nscheck root|nobody
 *
 * Does, in miniature, what `stockade exec` does before it execs a plugin:
 * unshare user, mount, pid, net, ipc, uts and cgroup namespaces in one call,
 * write uid/gid maps with setgroups denied, fork into the new pid namespace,
 * build a tmpfs root with a fresh /proc and pivot_root into it.
 *
 * "nobody" first drops to uid/gid 65534 so that the unprivileged (rootless)
 * path is exercised; "root" keeps uid 0 (the runtime's root mode still uses a
 * user namespace). Each step prints "ok <step>" or "FAIL <step>: <errno>";
 * exit status 0 only if every step worked.
 *
 * Why pivot_root matters here: it fails with EINVAL when the caller's root is
 * the initramfs rootfs itself, so this also proves that the guest init's
 * bind-and-chroot step left a pivotable root behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

static void step(const char *what, int rc)
{
	if (rc < 0) {
		printf("FAIL %s: %s\n", what, strerror(errno));
		failures++;
	} else {
		printf("ok %s\n", what);
	}
	fflush(stdout);
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t len = (ssize_t)strlen(text);
	ssize_t n = write(fd, text, (size_t)len);
	int saved = errno;
	close(fd);
	errno = saved;
	return n == len ? 0 : -1;
}

/* Runs as pid 1 of the new pid namespace. */
static int child(void)
{
	char root[] = "/tmp/nscheck.XXXXXX";

	step("pid namespace (getpid()==1)", getpid() == 1 ? 0 : (errno = ESRCH, -1));
	step("make / private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
	if (mkdtemp(root) == NULL) {
		step("mkdtemp", -1);
		return 1;
	}
	step("tmpfs new root", mount("tmpfs", root, "tmpfs", 0, "size=1m,nr_inodes=64,mode=0755"));
	if (chdir(root) < 0) {
		step("chdir new root", -1);
		return 1;
	}
	step("mkdir proc", mkdir("proc", 0555));
	step("mkdir old", mkdir("old", 0700));
	step("mount fresh proc", mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
	step("pivot_root", (int)syscall(SYS_pivot_root, ".", "old"));
	step("chdir /", chdir("/"));
	step("detach old root", umount2("/old", MNT_DETACH));
	step("read /proc/self/status", access("/proc/self/status", R_OK));
	step("remount root read-only", mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL));
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
		    CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
	char map[64];
	uid_t outer_uid;
	gid_t outer_gid;

	if (argc != 2 || (strcmp(argv[1], "root") && strcmp(argv[1], "nobody"))) {
		fprintf(stderr, "usage: nscheck root|nobody\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(argv[1], "nobody") == 0) {
		step("drop supplementary groups", setgroups(0, NULL));
		step("setresgid 65534", setresgid(65534, 65534, 65534));
		step("setresuid 65534", setresuid(65534, 65534, 65534));
		/*
		 * Changing credentials cleared the dumpable flag, which would
		 * leave /proc/self/{uid_map,setgroups} owned by root. A user
		 * who logged in as nobody is dumpable, so restore that.
		 */
		step("set dumpable", prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
		if (failures)
			return 1;
	}
	outer_uid = getuid();
	outer_gid = getgid();
	step("unshare user+mnt+pid+net+ipc+uts+cgroup", unshare(flags));
	if (failures)
		return 1;
	step("setgroups deny", write_file("/proc/self/setgroups", "deny"));
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)outer_uid);
	step("uid_map", write_file("/proc/self/uid_map", map));
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)outer_gid);
	step("gid_map", write_file("/proc/self/gid_map", map));
	if (failures)
		return 1;

	pid_t pid = fork();
	if (pid < 0) {
		step("fork into pid namespace", -1);
		return 1;
	}
	if (pid == 0)
		_exit(child());
	int status;
	if (waitpid(pid, &status, 0) < 0) {
		step("waitpid", -1);
		return 1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("FAIL child in new namespaces (status 0x%x)\n", status);
		return 1;
	}
	printf("ok all namespace steps (%s)\n", argv[1]);
	return 0;
}
