#!/usr/bin/env bash
# The demo: Stockade's main job on an embedded default, end to end, in a throwaway directory.
#   1. make a throwaway trust root: root CA -> intermediate CA -> developer key + certificate;
#   2. pack and sign examples/hello into one .stockade file;
#   3. inspect it, then run the full fail-closed verification against the throwaway trust root;
#   4. show that tampering with one byte is caught (and with which exit code);
#   5. run the verified plugin's entrypoint in the sandbox (`stockade exec`, built-in strict policy)
#      and print which isolation layers were enforced; then serve the package with `stockade run`
#      and invoke its hook from this script (NDJSON JSON-RPC on stdin, docs/protocol.md);
#   6. audit an operator policy with `policy lint`, `policy explain` and `policy diff`.
# Every command is the real CLI, so this script doubles as a tour of it.
set -euo pipefail
cd "$(dirname "$0")/.."

# STOCKADE_BIN=/usr/bin/stockade runs the demo against an installed binary (packaging/ci.sh does),
# with no cargo involved.
if [ -n "${STOCKADE_BIN:-}" ]; then
  STOCKADE=$STOCKADE_BIN
else
  cargo build -q --locked -p stockade-runtime
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  STOCKADE=$target_dir/debug/stockade
fi

work=$(mktemp -d /tmp/stockade-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
say() { printf '\n\033[1m## %s\033[0m\n' "$*"; }
run() { printf '$ stockade %s\n' "$*"; "$STOCKADE" "$@"; }

say "1. a throwaway trust root: root CA, intermediate CA, developer key and certificate"
run ca init -o "$work/root" --name "Demo Root CA"
run ca init -o "$work/intermediate" --parent "$work/root" --name "Demo Intermediate CA"
run keygen -o "$work/dev"
run ca issue --ca "$work/intermediate" --pub "$work/dev.pub" --scope any --subject "Demo Developer" \
  -o "$work/dev.cert"
mkdir -p "$work/trust"
cp "$work/root/ca.pub" "$work/trust/demo-root.pub"
# An (empty) signed revocation list: without one, verification warns "revocation: not configured".
run ca revoke --ca "$work/root" -o "$work/trust/revocations.json"

say "2. pack and sign examples/hello"
run pack examples/hello --key "$work/dev.key" --devcert "$work/dev.cert" \
  --intcert "$work/intermediate/ca.cert" -o "$work/hello-0.1.0.stockade"

say "3. inspect, then verify against the trust root"
run inspect "$work/hello-0.1.0.stockade"
run verify "$work/hello-0.1.0.stockade" --trust "$work/trust" --state-dir "$work/state"

say "4. a tampered copy is rejected"
cp "$work/hello-0.1.0.stockade" "$work/tampered.stockade"
# Flip one byte in the middle of the signed payload (not in a tar header), as a corrupted
# download or a malicious mirror would.
python3 - "$work/tampered.stockade" <<'PY'
import sys, tarfile
path = sys.argv[1]
with tarfile.open(path) as t:
    m = t.getmember("payload.tar.gz")
    off = m.offset_data + m.size // 2
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0x01]))
PY
set +e
"$STOCKADE" verify "$work/tampered.stockade" --trust "$work/trust" --state-dir "$work/state"
code=$?
set -e
if [ "$code" -eq 0 ]; then
  echo "demo: the tampered package verified: this must never happen" >&2
  exit 1
fi
echo "(rejected with exit code $code, as documented in docs/exit-codes.md)"

say "5. run the verified plugin sandboxed (built-in strict policy)"
run verify "$work/hello-0.1.0.stockade" --trust "$work/trust" --state-dir "$work/state" \
  --extract-to "$work/hello" >/dev/null
run exec --plugin-dir "$work/hello" --report "$work/sandbox-report.json" -- "$work/hello/entrypoint" </dev/null
python3 - "$work/sandbox-report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"sandbox report ({r['schema']}, {r['mode']} mode, host uid {r['host_uid']}):")
for layer in r["layers"]:
    print(f"  {layer['layer']:<20} {layer['status']}")
print(f"exit: {r['exit']}")
PY

printf '\n$ printf <hook_invoke request> | stockade run hello-0.1.0.stockade ...\n'
request='{"jsonrpc":"2.0","id":1,"method":"hook_invoke","params":{"hook":"on:flow.new","payload":{"src":"10.0.0.1","dst":"10.0.0.2"}}}'
printf '%s\n' "$request" |
  "$STOCKADE" run "$work/hello-0.1.0.stockade" --trust "$work/trust" --state-dir "$work/state" \
  >"$work/session.ndjson"
python3 - "$work/session.ndjson" <<'PY'
import json, sys
answered = False
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("method") == "plugin_state":
        p = m["params"]
        extra = f" granted={p['granted']} hooks={p['hooks']}" if p["state"] == "ready" else ""
        print(f"  plugin_state: {p['state']}{extra}")
    elif m.get("method") == "log":
        print(f"  log ({m['params']['source']}): {m['params']['message']}")
    elif m.get("id") == 1:
        print(f"  hook result: {json.dumps(m.get('result', m.get('error')))}")
        answered = "result" in m
if not answered:
    sys.exit("demo: the hook was not answered")
PY

say "6. audit an operator policy: lint, explain (who decided what, exposure score), diff"
cat >"$work/policy.toml" <<'TOML'
version = 1
[resources]
memory_max = "64M"
[capabilities]
allow = ["log", "register_hook", "emit_event"]
[network]
mode = "loopback"
TOML
printf '$ stockade policy lint policy.toml\n'
"$STOCKADE" policy lint "$work/policy.toml" || echo "(exit $?: findings at or above --fail-level)"
printf '$ stockade policy explain hello-0.1.0.stockade --policy policy.toml   (capabilities, network, exposure)\n'
"$STOCKADE" policy explain "$work/hello-0.1.0.stockade" --policy "$work/policy.toml" \
  --trust "$work/trust" --state-dir "$work/state" | grep -E '^(capability|network +mode|withheld|→)'
printf '$ stockade policy diff <built-in defaults> policy.toml\n'
printf 'version = 1\n' >"$work/defaults.toml"
"$STOCKADE" policy diff "$work/defaults.toml" "$work/policy.toml"
