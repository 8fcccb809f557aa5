/* sockcall SOCKET TIMEOUT_MS: a minimal agent for `stockade serve`'s socket in the guest
 * (busybox's nc has no Unix sockets). Each line of stdin is a JSON-RPC request; it is sent,
 * then every line the daemon sends is printed until the response carrying the request's
 * "id" arrives. Exit status: 0 when every request got its response, 1 when one did not within
 * TIMEOUT_MS (or the daemon closed), 64 usage, 69 no connection. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char in[1 << 16];
static char buf[1 << 20];
static size_t have;

/* The `"id":N` of a request line, as text ("" when there is none). */
static void id_of(const char *line, char *out, size_t cap) {
    const char *p = strstr(line, "\"id\":");
    size_t n = 0;
    out[0] = 0;
    if (!p)
        return;
    for (p += 5; *p >= '0' && *p <= '9' && n + 1 < cap; p++)
        out[n++] = *p;
    out[n] = 0;
}

/* Whether `line` is the response with id `id`. */
static int answers(const char *line, const char *id) {
    char want[64];
    snprintf(want, sizeof want, "\"id\":%s", id);
    const char *p = strstr(line, want);
    return p && !(p[strlen(want)] >= '0' && p[strlen(want)] <= '9');
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: sockcall SOCKET TIMEOUT_MS < requests\n");
        return 64;
    }
    int timeout = atoi(argv[2]);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("sockcall: connect");
        return 69;
    }
    while (fgets(in, sizeof in, stdin)) {
        char id[64];
        id_of(in, id, sizeof id);
        if (write_all(fd, in, strlen(in)) < 0) {
            perror("sockcall: write");
            return 1;
        }
        for (int done = !id[0]; !done;) {
            char *nl;
            while (!done && (nl = memchr(buf, '\n', have))) {
                *nl = 0;
                printf("%s\n", buf);
                done = answers(buf, id);
                have -= (size_t)(nl + 1 - buf);
                memmove(buf, nl + 1, have);
            }
            if (done)
                break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, timeout) <= 0) {
                fprintf(stderr, "sockcall: no response to id %s within %d ms\n", id, timeout);
                return 1;
            }
            ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
            if (r <= 0) {
                fprintf(stderr, "sockcall: the daemon closed the connection\n");
                return 1;
            }
            have += (size_t)r;
        }
        fflush(stdout);
    }
    return 0;
}
