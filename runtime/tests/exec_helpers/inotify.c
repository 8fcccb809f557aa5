/* Create inotify instances until the kernel refuses (at most 200); print how many and why.
 * A test helper for the @file-watch group's per-sandbox cap. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>

int main(void)
{
    int n = 0;
    for (; n < 200; n++)
        if (inotify_init1(IN_CLOEXEC) < 0) {
            printf("count=%d errno=%s\n", n, errno == EMFILE ? "EMFILE" : strerror(errno));
            return 0;
        }
    printf("count=%d errno=none\n", n);
    return 0;
}
