/*
 * x32-getpid: prove (or disprove) that the kernel accepts x32 system calls.
 *
 * An x86_64 process may issue a system call with bit 30 (__X32_SYSCALL_BIT)
 * set; the kernel then dispatches it through the x32 table if the x32 ABI is
 * compiled in and enabled (Debian's 6.1 needs `syscall.x32=y`). The sandbox's
 * seccomp filter must deny these numbers, so the kernel matrix needs to know
 * that the x32 path is really open, otherwise the guard goes untested.
 *
 * Prints "x32 getpid=<pid>" and exits 0 when the x32 call returns our pid;
 * prints the errno and exits 1 otherwise (ENOSYS: no x32 ABI).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define X32_SYSCALL_BIT 0x40000000L

int main(void)
{
	long pid = syscall(X32_SYSCALL_BIT | SYS_getpid);
	if (pid < 0) {
		printf("x32 getpid failed: %s\n", strerror(errno));
		return 1;
	}
	if (pid != (long)getpid()) {
		printf("x32 getpid returned %ld, native getpid %ld\n", pid,
		       (long)getpid());
		return 1;
	}
	printf("x32 getpid=%ld\n", pid);
	return 0;
}
