/*
 * landlock-abi: print the Landlock ABI version the running kernel offers.
 *
 * Why a helper: busybox has no way to issue landlock_create_ruleset(), and the
 * guest must not depend on the runtime under test to report the very layer we
 * want to cross-check. Built with `gcc -static` so it runs in the initramfs.
 *
 * Exit 0 and print the ABI number (>= 1) when Landlock is enabled; exit 1 and
 * print the errno name otherwise (EOPNOTSUPP: built in but not in the LSM
 * list; ENOSYS: not built in).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#endif

int main(void)
{
	long abi = syscall(__NR_landlock_create_ruleset, NULL, 0,
			   LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0) {
		printf("landlock unavailable: %s\n", strerror(errno));
		return 1;
	}
	printf("%ld\n", abi);
	return 0;
}
