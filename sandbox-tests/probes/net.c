/* Network and signal probes.
 *
 * The default policy grants no network: the plugin gets its own network namespace (so the
 * battery's listeners on the host loopback and its abstract unix name are unreachable) and a
 * seccomp filter that leaves only AF_UNIX socket creation. Creating any other family of socket
 * is therefore counted as an escape even when the socket could only reach the private
 * namespace: packet, raw, netlink, vsock and AF_ALG sockets are kernel attack surface that a
 * no-network plugin never needs. Signals must not reach any host process. */
#include "probe.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

static int connect_verdict(int fd, const struct sockaddr *sa, socklen_t len, const char *what)
{
    if (fd < 0)
        return denied("socket for %s: %s (errno %d)", what, strerror(errno), errno);
    return result(connect(fd, sa, len), what);
}

static int tcp4(void)
{
    if (P.port4 <= 0)
        return perror_("port4= parameter missing");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)P.port4)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect_verdict(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), (void *)&a, sizeof a,
                           "connect to the battery on 127.0.0.1");
}

static int tcp6(void)
{
    if (P.port6 <= 0)
        return perror_("port6= parameter missing");
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)P.port6)};
    a.sin6_addr = in6addr_loopback;
    return connect_verdict(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), (void *)&a, sizeof a,
                           "connect to the battery on [::1]");
}

static int unix_path(void)
{
    if (!*P.unix_path)
        return perror_("unix= parameter missing");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", P.unix_path);
    return connect_verdict(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), (void *)&a, sizeof a,
                           "connect to the battery's unix socket path");
}

static int unix_abstract(void)
{
    if (!*P.abstract_name)
        return perror_("abstract= parameter missing");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(P.abstract_name);
    if (n + 1 > sizeof a.sun_path)
        return perror_("abstract name too long");
    memcpy(a.sun_path + 1, P.abstract_name, n);
    return connect_verdict(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), (void *)&a,
                           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n),
                           "connect to the battery's abstract unix socket");
}

static int sock(int family, int type, int proto, const char *what)
{
    return result(socket(family, type | SOCK_CLOEXEC, proto), what);
}
static int raw4(void) { return sock(AF_INET, SOCK_RAW, IPPROTO_ICMP, "socket(AF_INET, SOCK_RAW)"); }
static int raw6(void) { return sock(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, "socket(AF_INET6, SOCK_RAW)"); }
static int packet(void) { return sock(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL), "socket(AF_PACKET, SOCK_RAW)"); }
static int netlink(void) { return sock(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, "socket(AF_NETLINK, NETLINK_ROUTE)"); }
static int netlink_uevent(void)
{
    return sock(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT, "socket(AF_NETLINK, KOBJECT_UEVENT)");
}
static int vsock(void) { return sock(AF_VSOCK, SOCK_STREAM, 0, "socket(AF_VSOCK)"); }
static int inet_udp(void) { return sock(AF_INET, SOCK_DGRAM, 0, "socket(AF_INET, SOCK_DGRAM)"); }

/* Every address family the kernel knows, except the three with a dedicated probe. */
static int other_families(void)
{
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET};
    char got[256] = "";
    size_t off = 0;
    int n = 0;
    for (int f = 3; f < 64; f++) {
        if (f == AF_INET6)
            continue;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            int fd = socket(f, types[t] | SOCK_CLOEXEC, 0);
            if (fd >= 0) {
                close(fd);
                n++;
                if (off < sizeof got - 8)
                    off += (size_t)snprintf(got + off, sizeof got - off, "%s%d", n > 1 ? "," : "", f);
                break;
            }
        }
    }
    if (n)
        return escaped("created sockets of %d other address families (%s)", n, got);
    return denied("no address family other than AF_UNIX/INET/INET6 can be created");
}

static int kill0(void)
{
    if (P.harness <= 0)
        return perror_("harness= parameter missing");
    return result(kill((pid_t)P.harness, 0), "kill(battery, 0)");
}

static int signal_sibling(void)
{
    if (P.sibling <= 0)
        return perror_("sibling= parameter missing");
    return result(kill((pid_t)P.sibling, SIGUSR1), "kill(host fixture, SIGUSR1)");
}

const struct probe net_probes[] = {
    {"net-tcp4", "network", "connect to the battery's TCP listener on 127.0.0.1", tcp4},
    {"net-tcp6", "network", "connect to the battery's TCP listener on ::1", tcp6},
    {"net-unix-path", "network", "connect to the battery's unix socket (host path)", unix_path},
    {"net-unix-abstract", "network", "connect to the battery's abstract unix socket", unix_abstract},
    {"net-udp4", "network", "create an AF_INET datagram socket", inet_udp},
    {"net-raw4", "network", "create a raw IPv4 socket", raw4},
    {"net-raw6", "network", "create a raw IPv6 socket", raw6},
    {"net-packet", "network", "create an AF_PACKET socket", packet},
    {"net-netlink-route", "network", "create a NETLINK_ROUTE socket", netlink},
    {"net-netlink-uevent", "network", "create a NETLINK_KOBJECT_UEVENT socket", netlink_uevent},
    {"net-vsock", "network", "create an AF_VSOCK socket", vsock},
    {"net-other-families", "network", "create a socket of any family 3..63 but INET6", other_families},
    {"signal-harness", "signals", "kill(battery pid, 0)", kill0},
    {"signal-sibling", "signals", "send SIGUSR1 to a host fixture process", signal_sibling},
    {0},
};
