/* bench-plugin: the static plugin every launcher in the benchmark starts.
 *
 * It writes a protocol `handshake` request as its first line (the moment a launcher's "cold
 * launch" ends is when that line reaches the benchmark, or, under `stockade run`, when the runtime
 * reports the plugin `ready`), then answers every `hook_invoke` by echoing its payload back, so a
 * round trip moves the payload both ways like the raw pipe ping-pong it is compared with, and
 * answers `serve`'s health `ping`s.
 * Payloads in the benchmark are plain ASCII strings (no escapes), so the payload is the bytes
 * between `"payload":"` and the next `"`. Built statically so it needs nothing from any sandbox's
 * filesystem.
 *
 * Under Stockade the package is mounted at /plugin: the name and hooks announced in the
 * handshake are taken from /plugin/manifest.json when it is there (so the serve benchmark can
 * load many copies under different names and hooks); elsewhere they are `bench` and
 * `on:bench.echo`. A payload of exactly `crash` ends it with status 3 instead (the kernel
 * matrix's systemd check crash-loops it into quarantine). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char line[1 << 20];

/* Copy into `out` the text of manifest field `key`: a string's contents or an array verbatim. */
static int field(const char *m, const char *key, char open, char close, char *out, size_t cap) {
    const char *k = strstr(m, key);
    if (!k)
        return 0;
    const char *a = strchr(k + strlen(key), open);
    if (!a)
        return 0;
    const char *b = strchr(a + 1, close);
    if (!b)
        return 0;
    if (open == '"')
        a++;
    else
        b++;
    size_t n = (size_t)(b - a);
    if (n + 1 > cap)
        return 0;
    memcpy(out, a, n);
    out[n] = 0;
    return 1;
}

int main(void) {
    static char out[1 << 20];
    static char manifest[65536];
    char name[128] = "bench", hooks[4096] = "[\"on:bench.echo\"]";
    FILE *mf = fopen("/plugin/manifest.json", "r");
    if (mf) {
        size_t n = fread(manifest, 1, sizeof manifest - 1, mf);
        manifest[n] = 0;
        fclose(mf);
        char tmp[4096];
        if (field(manifest, "\"name\"", '"', '"', tmp, sizeof name))
            strcpy(name, tmp);
        if (field(manifest, "\"hooks\"", '[', ']', tmp, sizeof hooks))
            strcpy(hooks, tmp);
    }
    setvbuf(stdout, out, _IOFBF, sizeof out);
    printf("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"handshake\",\"params\":{\"name\":\"%s\","
           "\"version\":\"0.1.0\",\"api\":1,\"capabilities\":[\"register_hook\"],"
           "\"hooks\":%s}}\n", name, hooks);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        if (strstr(line, "\"method\":\"shutdown\""))
            return 0;
        if (strstr(line, "\"method\":\"ping\"")) {
            /* Health check under `stockade serve`: any answer with the same id. */
            const char *pid = strstr(line, "\"id\":");
            if (pid) {
                printf("{\"jsonrpc\":\"2.0\",\"id\":%llu,\"result\":{}}\n",
                       strtoull(pid + 5, NULL, 10));
                fflush(stdout);
            }
            continue;
        }
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
        if (end - p == 5 && !memcmp(p, "crash", 5))
            return 3;
        printf("{\"jsonrpc\":\"2.0\",\"id\":%llu,\"result\":{\"echo\":\"", n);
        fwrite(p, 1, (size_t)(end - p), stdout);
        fputs("\"}}\n", stdout);
        fflush(stdout);
    }
    return 0;
}
