/* hello-c: a Stockade plugin in C (libc only), from docs/protocol.md.
 *
 * Handshake, then answer every `hook_invoke` with {"allow":true,"plugin":"hello-c"} using the
 * runtime's call id; exit on `shutdown` or EOF. The runtime's frames are compact JSON written by
 * serde_json, so finding `"id":<digits>` and the method name by substring is enough here; a real
 * plugin would use a JSON parser. Built statically (`cc -static -O2 -o entrypoint hello.c`) so
 * the binary needs nothing from the sandbox's filesystem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char line[65536 + 2];

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"handshake\",\"params\":{\"name\":\"hello-c\","
           "\"version\":\"0.1.0\",\"api\":1,\"capabilities\":[\"log\",\"register_hook\"],"
           "\"hooks\":[\"on:flow.new\"]}}\n");
    if (!fgets(line, sizeof line, stdin) || !strstr(line, "\"result\"")) {
        fprintf(stderr, "hello-c: handshake refused\n");
        return 1;
    }
    while (fgets(line, sizeof line, stdin)) {
        if (strstr(line, "\"method\":\"shutdown\""))
            return 0;
        const char *id = strstr(line, "\"id\":");
        if (!id)
            continue;
        unsigned long long n = strtoull(id + 5, NULL, 10);
        if (strstr(line, "\"method\":\"ping\"")) { /* health check (stockade serve) */
            printf("{\"jsonrpc\":\"2.0\",\"id\":%llu,\"result\":{}}\n", n);
            continue;
        }
        if (!strstr(line, "\"method\":\"hook_invoke\""))
            continue;
        printf("{\"jsonrpc\":\"2.0\",\"id\":%llu,\"result\":{\"allow\":true,\"plugin\":\"hello-c\"}}\n", n);
    }
    return 0;
}
