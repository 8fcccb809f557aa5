/* bench-plugin: the static plugin every launcher in the benchmark starts.
 *
 * It writes a protocol `handshake` request as its first line (the moment a launcher's "cold
 * launch" ends is when that line reaches the benchmark, or, under `stockade run`, when the runtime
 * reports the plugin `ready`), then answers every `hook_invoke` by echoing its payload back, so a
 * round trip moves the payload both ways like the raw pipe ping-pong it is compared with.
 * Payloads in the benchmark are plain ASCII strings (no escapes), so the payload is the bytes
 * between `"payload":"` and the next `"`. Built statically so it needs nothing from any sandbox's
 * filesystem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char line[1 << 20];

int main(void) {
    static char out[1 << 20];
    setvbuf(stdout, out, _IOFBF, sizeof out);
    fputs("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"handshake\",\"params\":{\"name\":\"bench\","
          "\"version\":\"0.1.0\",\"api\":1,\"capabilities\":[\"register_hook\"],"
          "\"hooks\":[\"on:bench.echo\"]}}\n", stdout);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        if (strstr(line, "\"method\":\"shutdown\""))
            return 0;
        if (!strstr(line, "\"method\":\"hook_invoke\""))
            continue;
        const char *id = strstr(line, "\"id\":");
        const char *p = strstr(line, "\"payload\":\"");
        if (!id || !p)
            continue;
        unsigned long long n = strtoull(id + 5, NULL, 10);
        p += 11;
        const char *end = strchr(p, '"');
        if (!end)
            continue;
        printf("{\"jsonrpc\":\"2.0\",\"id\":%llu,\"result\":{\"echo\":\"", n);
        fwrite(p, 1, (size_t)(end - p), stdout);
        fputs("\"}}\n", stdout);
        fflush(stdout);
    }
    return 0;
}
