/* Network helper for the exec tests (static, so it needs nothing inside the sandbox).
 *   net inet          create an AF_INET socket; prints "created" or the errno name
 *   net echo          TCP over 127.0.0.1: listen, connect, send "ok", print what arrived
 *   net unix-connect  AF_UNIX socket + connect() to a missing path; prints "alive" after */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *name(int e) {
  switch (e) {
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EACCES: return "EACCES";
  case EPERM: return "EPERM";
  case ENETUNREACH: return "ENETUNREACH";
  default: return strerror(e);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  if (!strcmp(argv[1], "inet")) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    puts(s >= 0 ? "created" : name(errno));
    return 0;
  }
  if (!strcmp(argv[1], "echo")) {
    struct sockaddr_in a = {0};
    socklen_t len = sizeof a;
    char buf[3] = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &len)) {
      puts(name(errno));
      return 1;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a)) {
      puts(name(errno));
      return 1;
    }
    int s = accept(l, NULL, NULL);
    if (s < 0 || write(c, "ok", 2) != 2 || read(s, buf, 2) != 2) {
      puts(name(errno));
      return 1;
    }
    puts(buf);
    return 0;
  }
  if (!strcmp(argv[1], "unix-connect")) {
    struct sockaddr_un u = {0};
    u.sun_family = AF_UNIX;
    strcpy(u.sun_path, "/nonexistent");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    (void)connect(s, (struct sockaddr *)&u, sizeof u);
    puts("alive");
    return 0;
  }
  return 2;
}
