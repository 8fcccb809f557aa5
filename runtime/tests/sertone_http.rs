//! HTTP hook plugins (seed 003) through `stockade serve --sertone-listen`: the seed's own example
//! plugins — extracted from `../shared/seeds/003_*.txt` at test time by
//! `sandbox-tests/sertone/extract.py` (Node.js unchanged; Python with only its indentation
//! restored) — packed, signed, launched sandboxed and driven through the HTTP front; then the
//! faults (crash, hang, garbage, an invalid fee) bypassed within the front's deadline, and a
//! plugin that tries to reach anything but its own loopback failing, with a native control.

mod serve_common;

use serde_json::{json, Value};
use serve_common::{require_root, require_tool, Fixture, Serve};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Seed 003: `../shared/seeds/003_*.txt` beside the checkout when it is there, else the verbatim
/// copy in `sandbox-tests/sertone/` (extract.py checks either against the pinned SHA-256).
fn seed_file() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = repo.join("../shared/seeds");
    let beside = std::fs::read_dir(&shared).ok().and_then(|d| {
        d.map(|e| e.unwrap().path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("003_"))
        })
    });
    beside.unwrap_or_else(|| repo.join("sandbox-tests/sertone/seed-003.txt"))
}

/// Extract the seed's examples into `<fixture>/seed/<name>/`.
fn extract(fx: &Fixture) -> PathBuf {
    let out = fx.dir().join("seed");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-tests/sertone/extract.py");
    let r = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(seed_file())
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "extract.py: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    out
}

/// Pack `dir/file` as HTTP plugin `name` run by `interpreter`, with `env`.
fn pack_http(fx: &Fixture, name: &str, src: &Path, interpreter: &str, env: Value) -> PathBuf {
    let d = fx.dir().join(format!("pkg-{name}"));
    std::fs::create_dir_all(&d).unwrap();
    let file = src.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::copy(src, d.join(&file)).unwrap();
    // The seed's scripts have no `#!` line; the interpreter runs them, but an entrypoint is 0755.
    std::fs::set_permissions(
        d.join(&file),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let manifest = json!({"name": name, "version": "1.0.0", "author": "seed 003",
        "entrypoint": file, "requested_capabilities": ["register_hook"],
        "hooks": ["on:sertone.pre_request", "on:sertone.post_response"],
        "http": {"port": 4001, "interpreter": interpreter, "env": env}});
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    let out = fx.dir().join(format!("{name}.stockade"));
    let r = fx.pack_dir(d.to_str().unwrap(), out.to_str().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    out
}

/// Pack [`FAULTY`] (written beside the fixture once) as Python HTTP plugin `name`, configured by
/// `env` (`MODE` and its settings).
fn pack_faulty(fx: &Fixture, name: &str, env: Value) -> PathBuf {
    let src = fx.dir().join("faulty.py");
    if !src.exists() {
        std::fs::write(&src, FAULTY).unwrap();
    }
    pack_http(fx, name, &src, "/usr/bin/python3", env)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Send `raw` on a fresh connection and read the whole answer: its status (0: closed with
/// none).
fn raw_status(port: u16, raw: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .expect("the front answers and closes");
    resp.split(' ').nth(1).map_or(0, |st| st.parse().unwrap())
}

/// One HTTP/1.1 exchange with the front (Connection: close). Returns (status, JSON body).
fn http(port: u16, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let b = if method == "GET" {
        String::new()
    } else {
        body.to_string()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{b}",
        b.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("the front answers");
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn pre(hash: &str, id: &str) -> Value {
    json!({"request_id": id, "api_id": "api-1", "consumer_wallet_hash": hash,
           "endpoint_path": "/v1/data", "timestamp": 1_764_000_000_000_u64,
           "request_body": "SECRET-PAYLOAD", "authorization": "Bearer SECRET-TOKEN"})
}

/// What of a [`pre`] body a plugin may see: all but its payload fields.
fn metadata(mut pre: Value) -> Value {
    for k in ["request_body", "authorization"] {
        pre.as_object_mut().unwrap().remove(k);
    }
    pre
}

fn post(status: u16, latency: u64) -> Value {
    json!({"request_id": "r-post", "api_id": "api-1", "latency_ms": latency,
           "status_code": status, "settled_usdc": "0.00095", "timestamp": 1_764_000_000_000_u64,
           "response_body": "SECRET-PAYLOAD"})
}

const POLICY: &str = "[network]\nmode = \"loopback\"\n[risk]\nnetwork = \"low\"\n";

fn start(fx: &Fixture, pkgs: &[&PathBuf], extra_policy: &str, config: &str) -> (Serve, u16) {
    let health = "[health]\nping_interval_ms = 1000\nping_timeout_ms = 3000\n";
    start_health(fx, pkgs, extra_policy, health, config)
}

/// A daemon under `config` with the fixture's `policy.toml` (no policy root) and its Sertone
/// front on a free loopback port (returned).
fn serve_front(fx: &Fixture, config: &str) -> (Serve, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let none = fx.dir().join("no-policy-root");
    let s = Serve::start_with(
        fx,
        config,
        &[
            "--policy",
            "policy.toml",
            "--policy-root",
            none.to_str().unwrap(),
            "--sertone-listen",
            &addr,
        ],
    );
    (s, port)
}

/// [`start`] with its own `[health]` section.
fn start_health(
    fx: &Fixture,
    pkgs: &[&PathBuf],
    extra_policy: &str,
    health: &str,
    config: &str,
) -> (Serve, u16) {
    std::fs::write(
        fx.dir().join("policy.toml"),
        format!("version = 1\n{POLICY}{extra_policy}"),
    )
    .unwrap();
    let load: Vec<String> = pkgs.iter().map(|p| p.display().to_string()).collect();
    let config = format!(
        "[serve]\nload = {}\n{health}{config}",
        serde_json::to_string(&load).unwrap()
    );
    let (s, port) = serve_front(fx, &config);
    // Wait until every plugin answered its GET /sertone/info (ready).
    let t = Instant::now();
    loop {
        let (st, info) = http(port, "GET", "/sertone/info", &Value::Null);
        assert_eq!(st, 200, "{}", s.log());
        assert_eq!(info["name"], "Stockade");
        let plugins = info["plugins"].as_array().unwrap();
        if plugins.len() == pkgs.len() && plugins.iter().all(|p| p["state"] == "ready") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not ready: {info}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (s, port)
}

fn runnable() -> bool {
    require_root()
        && require_tool(
            "node",
            "the seed's Node.js examples run under Debian's nodejs",
        )
        && require_tool("python3", "the seed's Python examples and extract.py")
}

#[test]
fn the_seed_examples_run_sandboxed_behind_the_front() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let seed = extract(&fx);
    // Outside /tmp, which the sandbox replaces with its own.
    let logs_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let logs = logs_dir.path().to_path_buf();
    // The logger's own uid (a per-plugin host uid) must be able to write there.
    std::fs::set_permissions(&logs, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let node = "/usr/bin/node";
    let py = "/usr/bin/python3";
    let pkgs = [
        pack_http(
            &fx,
            "hello-node",
            &seed.join("hello-node/server.js"),
            node,
            json!({}),
        ),
        pack_http(
            &fx,
            "ratelimiter",
            &seed.join("ratelimiter-node/server.js"),
            node,
            json!({"MAX_REQUESTS": "3", "WINDOW_MS": "3600000"}),
        ),
        pack_http(
            &fx,
            "hello-python",
            &seed.join("hello-python/plugin.py"),
            py,
            json!({}),
        ),
        pack_http(
            &fx,
            "logger",
            &seed.join("logger-python/plugin.py"),
            py,
            json!({"LOG_DIR": logs.to_str().unwrap()}),
        ),
        pack_http(
            &fx,
            "geofw",
            &seed.join("geofw-python/plugin.py"),
            py,
            json!({"BLOCKED_PREFIXES": "dead,beef"}),
        ),
    ];
    // Only the logger gets a writable directory: its own.
    let logger_policy = format!(
        "[plugin.logger.filesystem]\nwritable = [\"{}\"]\n[plugin.logger.risk]\nwritable = \"low\"\n",
        logs.display()
    );
    let refs: Vec<&PathBuf> = pkgs.iter().collect();
    let (mut s, port) = start(&fx, &refs, &logger_policy, "");
    let (_, info) = http(port, "GET", "/sertone/info", &Value::Null);
    assert_eq!(info["fee_model"], "none", "the default: {info}");
    let states: Vec<(String, String)> = info["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states.len(), 5, "{info}");
    assert!(states.iter().all(|(_, st)| st == "ready"), "{info}");

    // Everyone allows an ordinary consumer, MAX_REQUESTS times.
    let ok_hash = "0a1b2c3d";
    for i in 1..=3 {
        let (st, r) = http(
            port,
            "POST",
            "/sertone/pre-request",
            &pre(ok_hash, &format!("r{i}")),
        );
        assert_eq!(st, 200);
        assert_eq!(r["allow"], true, "request {i}: {r}");
        assert_eq!(r["bypassed"], json!([]), "{r}");
    }
    // The rate limiter's denial after MAX_REQUESTS, with its own reason.
    let (_, r) = http(port, "POST", "/sertone/pre-request", &pre(ok_hash, "r4"));
    assert_eq!(r["allow"], false, "{r}");
    assert_eq!(r["denials"][0]["plugin"], "ratelimiter");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit exceeded (3 requests per 60 min)"),
        "{r}"
    );
    // The firewall by prefix (and the limiter's window is per consumer).
    let (_, r) = http(
        port,
        "POST",
        "/sertone/pre-request",
        &pre("DEADBEEF00", "r5"),
    );
    assert_eq!(r["allow"], false, "{r}");
    assert_eq!(r["denials"][0]["plugin"], "geofw");
    assert_eq!(r["reason"], "Consumer blocked by geographic policy.");
    let (_, r) = http(port, "POST", "/sertone/pre-request", &pre("beef", "r6"));
    assert_eq!(r["denials"][0]["plugin"], "geofw", "{r}");
    let (_, r) = http(port, "POST", "/sertone/pre-request", &pre("cafe", "r7"));
    assert_eq!(r["allow"], true, "{r}");

    // Quality: the minimum of the signals (hello: 1 always; limiter/logger: -1 on 5xx).
    let (_, r) = http(port, "POST", "/sertone/post-response", &post(200, 10));
    assert_eq!(r["quality_signal"], 1, "{r}");
    assert_eq!(r["signals"].as_array().unwrap().len(), 5, "{r}");
    let (_, r) = http(port, "POST", "/sertone/post-response", &post(503, 10));
    assert_eq!(r["quality_signal"], -1, "{r}");
    let (_, r) = http(port, "POST", "/sertone/post-response", &post(200, 5000));
    assert_eq!(r["quality_signal"], 0, "{r}");

    // Bad input to the front: a clear 400, nothing fanned out.
    let (st, r) = http(
        port,
        "POST",
        "/sertone/pre-request",
        &json!({"request_id": 5}),
    );
    assert_eq!(st, 400);
    assert!(r["error"].as_str().unwrap().contains("request_id"), "{r}");
    let (st, _) = http(port, "GET", "/sertone/pre-request", &Value::Null);
    assert_eq!(st, 405);
    let (st, _) = http(port, "GET", "/elsewhere", &Value::Null);
    assert_eq!(st, 404);

    // The logger wrote JSONL only in its own directory, and only metadata reached it.
    let files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "jsonl"));
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let requests = entries.iter().filter(|e| e["_type"] == "request").count();
    let responses = entries.iter().filter(|e| e["_type"] == "response").count();
    assert_eq!((requests, responses), (7, 3), "{text}");
    assert!(
        !text.contains("SECRET"),
        "a payload reached a plugin: {text}"
    );
    let first = &entries[0];
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "_ts",
            "_type",
            "api_id",
            "consumer_wallet_hash",
            "endpoint_path",
            "request_id",
            "timestamp"
        ]
    );
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// A Python HTTP plugin that misbehaves on pre-request as `MODE` says (`slow`: answers after
/// `DELAY` seconds; `exit`/`abort`/`term`: ends with `CODE`/SIGABRT/its own SIGTERM once it
/// answered `GET`; `crash`:
/// exits with `CODE` (3) on the call; `stopexit`: exits with `CODE` on SIGTERM); `probe`
/// tries its own port, the host's listener on 127.0.0.1 (`HOST_PORT`) and two outside addresses
/// and answers the outcomes as the denial reason (JSON). Single-threaded, as the seed's Python servers are: a
/// hung one no longer answers `GET /sertone/info` either.
const FAULTY: &str = r#"import json, os, signal, socket, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
MODE = os.environ["MODE"]
if MODE == "stopexit":
    signal.signal(signal.SIGTERM, lambda *a: os._exit(int(os.environ["CODE"])))
def reach(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
        return "connected"
    except OSError as e:
        return "errno %d" % (e.errno or 0)
    finally:
        s.close()
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def answer(self, raw):
        self.send_response(200)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
    def do_GET(self):
        self.answer(json.dumps({"name": MODE, "version": "1.0.0"}).encode())
        self.wfile.flush()
        if MODE == "exit":
            os._exit(int(os.environ["CODE"]))
        if MODE == "abort":
            os.abort()
        if MODE == "term":
            os.kill(os.getpid(), signal.SIGTERM)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/sertone/post-response":
            return self.answer(b'{"quality_signal": 1}')
        if MODE == "fee":
            return self.answer(json.dumps({"allow": True, "additional_fee_usdc": os.environ["FEE"],
                                           "fee_destination": os.environ["DEST"]}).encode())
        if json.loads(body).get("consumer_wallet_hash") == "quiet":
            return self.answer(b'{"allow": true}')
        if MODE == "badallow":
            return self.answer(b'{"allow": "yes"}')
        if MODE == "denylong":
            return self.answer(json.dumps({"allow": False, "reason": "r" * 600,
                                           "additional_fee_usdc": "-1"}).encode())
        if MODE == "echo":
            return self.answer(json.dumps({"allow": False, "reason": body.decode()}).encode())
        if MODE == "crash":
            os._exit(int(os.environ.get("CODE", "3")))
        if MODE == "slow":
            time.sleep(float(os.environ["DELAY"]))
        if MODE == "hang":
            time.sleep(3600)
        if MODE == "garbage":
            return self.answer(b"<html>not json")
        if MODE == "badfee":
            return self.answer(b'{"allow": true, "additional_fee_usdc": "0.5"}')
        if MODE == "probe":
            out = {"own": reach(("127.0.0.1", int(os.environ["PORT"]))),
                   "host_loopback": reach(("127.0.0.1", int(os.environ["HOST_PORT"]))),
                   "outside": reach(("1.1.1.1", 53)),
                   "gateway": reach(("10.0.2.2", 80))}
            return self.answer(json.dumps({"allow": False, "reason": json.dumps(out)}).encode())
        self.answer(b'{"allow": true}')
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

#[test]
fn crashed_hung_and_garbage_plugins_are_bypassed_within_the_deadline() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let seed = extract(&fx);
    let mut pkgs = vec![pack_http(
        &fx,
        "hello-node",
        &seed.join("hello-node/server.js"),
        "/usr/bin/node",
        json!({}),
    )];
    for mode in ["crash", "hang", "garbage", "badfee"] {
        pkgs.push(pack_faulty(&fx, mode, json!({"MODE": mode})));
    }
    let refs: Vec<&PathBuf> = pkgs.iter().collect();
    let (mut s, port) = start(
        &fx,
        &refs,
        "",
        "[sertone]\ndeadline_ms = 400\nfee_model = \"provider\"\n\
         [restart]\nbackoff_base_ms = 50\nbackoff_max_ms = 200\n[quarantine]\nmax_crashes = 1000\n",
    );
    let (_, info) = http(port, "GET", "/sertone/info", &Value::Null);
    assert_eq!(info["fee_model"], "provider", "as configured: {info}");
    for round in 0..3 {
        let t = Instant::now();
        let (st, r) = http(
            port,
            "POST",
            "/sertone/pre-request",
            &pre("0a", &format!("f{round}")),
        );
        let took = t.elapsed();
        assert_eq!(st, 200);
        // Fail-open: the request is allowed, each faulty plugin named.
        assert_eq!(r["allow"], true, "round {round}: {r}");
        let bypassed: Vec<&str> = r["bypassed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["plugin"].as_str().unwrap())
            .collect();
        assert_eq!(
            bypassed,
            ["badfee", "crash", "garbage", "hang"],
            "round {round}: {r}"
        );
        assert!(
            r["bypassed"][0]["why"]
                .as_str()
                .unwrap()
                .contains("fee_destination"),
            "{r}"
        );
        // Liveness, not performance: the answer never waits for the hung plugin's hour.
        assert!(
            took < Duration::from_secs(10),
            "round {round} took {took:?}"
        );
        // Let the crashed one come back before the next round.
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, r) = http(port, "POST", "/sertone/post-response", &post(200, 1));
    assert_eq!(r["quality_signal"], 1, "{r}");
    // An agent calling the hook on the serve socket: the hung plugin's entry (late, or not ready
    // if already restarted) is bypassed as the front bypasses it, with the front's meaning.
    let mut c = s.client();
    let res = c.ok(
        "hook_invoke",
        serve_common::invoke("on:sertone.pre_request", pre("0a", "agent"), Some(400)),
    );
    let hang = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["plugin"] == "hang")
        .unwrap_or_else(|| panic!("{res}"));
    assert_eq!(hang["result"], json!({"allow": true}), "{res}");
    assert!(hang["bypassed"].is_object(), "{res}");
    // The answers an agent gets are checked as the front checks them: the fee no operator
    // allowed and the garbage are bypassed with the front's meaning, never passed on as they
    // came (an agent acting as a control center got the 0.5 USDC fee as the plugin wrote it).
    for name in ["badfee", "garbage"] {
        let e = res["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["plugin"] == name)
            .unwrap_or_else(|| panic!("{res}"));
        assert_eq!(e["result"], json!({"allow": true}), "{name}: {res}");
        assert!(e["bypassed"].is_object(), "{name}: {res}");
    }
    // The hung server no longer answers GET /sertone/info, so its health pings go unanswered
    // and the daemon restarts it (the bridge alone being alive is not enough).
    let t = Instant::now();
    while !s.log().contains("plugin hang: terminated (hung") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "never restarted as hung: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = s.log();
    assert!(
        log.contains("plugin hang bypassed (fail-open)"),
        "the bypass is reported: {log}"
    );
    // Three rounds within one log interval: one line, not one per request.
    assert_eq!(
        log.matches("pre_request: plugin badfee bypassed (fail-open):")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("plugin crash: restarting") || log.contains("plugin crash: crashed"),
        "{log}"
    );
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// The operator's hook policy decides what an answer may do: `failure = "closed"` denies on an
/// invalid answer too; a deadline-only section keeps the Sertone hooks' fail-open default; a
/// denial is honoured despite invalid optional fields; fees are capped and their destination
/// pinned; an agent's `hook_invoke` of a Sertone hook on the serve socket reaches the plugin as
/// metadata only.
#[test]
fn answers_are_held_to_the_operators_hook_policy() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let pin = format!("0x{}", "A".repeat(40));
    let fee = |name: &str, fee: &str, dest: &str| {
        pack_faulty(&fx, name, json!({"MODE": "fee", "FEE": fee, "DEST": dest}))
    };
    let mode = |name: &str, mode: &str| pack_faulty(&fx, name, json!({"MODE": mode}));
    let pkgs = [
        mode("badallow", "badallow"),
        mode("denylong", "denylong"),
        mode("echo", "echo"),
        mode("garbage", "garbage"),
        fee("fair", "0.05", &pin.to_ascii_lowercase()),
        fee("greedy", "0.5", &format!("0x{}", "b".repeat(40))),
    ];
    let pre_hook = "hooks.\"on:sertone.pre_request\"";
    let policy = format!(
        "[plugin.badallow.{pre_hook}]\nfailure = \"closed\"\n\
         [plugin.garbage.{pre_hook}]\ndeadline_ms = 1200\n\
         [plugin.greedy.{pre_hook}]\nmax_fee_usdc = \"0.1\"\n\
         [plugin.fair.{pre_hook}]\nmax_fee_usdc = \"0.1\"\nfee_destination = \"{pin}\"\n"
    );
    let refs: Vec<&PathBuf> = pkgs.iter().collect();
    let (mut s, port) = start(&fx, &refs, &policy, "[sertone]\ndeadline_ms = 3000\n");

    let (st, r) = http(port, "POST", "/sertone/pre-request", &pre("0a", "h1"));
    assert_eq!(st, 200);
    assert_eq!(r["allow"], false, "{r}");
    let names = |k: &str| -> Vec<String> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x["plugin"].as_str().unwrap().to_string())
            .collect()
    };
    // An invalid answer under `failure = "closed"` denies, as a timeout would.
    // A denial with a 600-byte reason and a bad fee is still a denial, its reason cut.
    assert_eq!(names("denials"), ["badallow", "denylong", "echo"], "{r}");
    let why = r["denials"][0]["reason"].as_str().unwrap();
    assert!(
        why.contains("invalid answer") && why.contains("allow"),
        "{r}"
    );
    assert_eq!(r["denials"][1]["reason"], "r".repeat(512), "{r}");
    let dropped = r["denials"][1]["dropped"].to_string();
    assert!(
        dropped.contains("reason") && dropped.contains("additional_fee_usdc"),
        "{r}"
    );
    // `deadline_ms` alone leaves the hook fail-open: garbage is bypassed, not a denial.
    assert_eq!(names("bypassed"), ["garbage", "greedy"], "{r}");

    // Fees: the one within the cap counts, to the pinned address; the one past it is invalid.
    let (_, r) = http(port, "POST", "/sertone/pre-request", &pre("quiet", "h2"));
    assert_eq!(r["allow"], true, "{r}");
    assert_eq!(r["additional_fee_usdc"], "0.05", "{r}");
    assert_eq!(r["fee_destination"], pin.as_str(), "{r}");
    assert_eq!(r["fees"].as_array().unwrap().len(), 1, "{r}");
    let greedy = &r["bypassed"][0];
    assert_eq!(greedy["plugin"], "greedy", "{r}");
    assert!(
        greedy["why"].as_str().unwrap().contains("max_fee_usdc"),
        "{r}"
    );

    // The front's 3000 ms, above the per-hook caps (1200 for garbage, 1000 by default): said.
    let log = s.log();
    assert!(
        log.contains("plugin garbage: on:sertone.pre_request: the Sertone front's deadline_ms = 3000 is capped at 1200 ms"),
        "{log}"
    );
    assert!(log.contains("plugin echo: on:sertone.pre_request: the Sertone front's deadline_ms = 3000 is capped at 1000 ms"), "{log}");

    // An agent on the serve socket: the plugin gets the metadata, never the payload fields.
    let mut c = s.client();
    let res = c.ok(
        "hook_invoke",
        serve_common::invoke("on:sertone.pre_request", pre("0a", "h3"), Some(2000)),
    );
    let echo = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["plugin"] == "echo")
        .unwrap_or_else(|| panic!("{res}"));
    let seen: Value = serde_json::from_str(echo["result"]["reason"].as_str().unwrap()).unwrap();
    let want = metadata(pre("0a", "h3"));
    assert_eq!(seen, want, "{res}");
    // Params that cannot be rebuilt are refused, not passed on.
    let code = c.err(
        "hook_invoke",
        serve_common::invoke(
            "on:sertone.pre_request",
            json!({"request_body": "SECRET"}),
            None,
        ),
    );
    assert_eq!(code, -32602);
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// Under `stockade run` too, an agent's `hook_invoke` of a Sertone hook reaches the plugin as
/// metadata only, and params that cannot be rebuilt are refused.
#[test]
fn run_gives_the_plugin_metadata_only_too() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let pkg = pack_faulty(&fx, "echo", json!({"MODE": "echo"}));
    std::fs::write(
        fx.dir().join("policy.toml"),
        format!("version = 1\n{POLICY}"),
    )
    .unwrap();
    let none = fx.dir().join("no-policy-root");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["run", pkg.to_str().unwrap(), "--policy", "policy.toml"])
        .args(["--policy-root", none.to_str().unwrap()])
        .args(["--trust", "trust", "--state-dir", "state"])
        .current_dir(fx.dir())
        .env_remove("STOCKADE_POLICY_ROOT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let call = |id: u64, payload: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "hook_invoke",
               "params": {"hook": "on:sertone.pre_request", "payload": payload, "deadline_ms": 5000}})
    };
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", call(1, pre("0a", "run1"))).unwrap();
    writeln!(stdin, "{}", call(2, json!({"request_body": "SECRET"}))).unwrap();
    // End of input: `run` answers what it was asked, then stops the plugin and exits.
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let answer = |id: u64| -> Value {
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|m| m["id"] == id && m.get("method").is_none())
            .unwrap_or_else(|| panic!("no answer to {id}: {stdout}\n{stderr}"))
    };
    let seen: Value =
        serde_json::from_str(answer(1)["result"]["reason"].as_str().unwrap()).unwrap();
    let want = metadata(pre("0a", "run1"));
    assert_eq!(seen, want, "{stdout}");
    assert_eq!(answer(2)["error"]["code"], -32602, "{stdout}");
    assert!(!stdout.contains("SECRET-"), "{stdout}");
}

#[test]
fn a_plugin_reaches_nothing_but_its_own_loopback() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let host_port = host.local_addr().unwrap().port();
    // Native control: from the host, the listener is reachable.
    drop(TcpStream::connect(("127.0.0.1", host_port)).expect("control: host loopback"));
    let (mut c, _) = loop {
        match host.accept() {
            Ok(x) => break x,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    drop(c.write(b""));
    let pkg = pack_faulty(
        &fx,
        "probe",
        json!({"MODE": "probe", "HOST_PORT": host_port.to_string()}),
    );
    let (mut s, port) = start(&fx, &[&pkg], "", "[sertone]\ndeadline_ms = 8000\n");
    let (_, r) = http(port, "POST", "/sertone/pre-request", &pre("0a", "p1"));
    let reason = r["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}\n{}", s.log()));
    let out: Value = serde_json::from_str(reason).unwrap();
    assert_eq!(out["own"], "connected", "the probe itself works: {out}");
    for k in ["host_loopback", "outside", "gateway"] {
        assert_ne!(out[k], "connected", "{k} reached: {out}");
    }
    assert!(
        host.accept().is_err(),
        "the host's listener got a connection from the sandbox"
    );
    assert_eq!(s.stop(), 0, "{}", s.log());
}

#[test]
fn refused_configurations_change_nothing() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let seed = extract(&fx);
    let pkg = pack_http(
        &fx,
        "hello-node",
        &seed.join("hello-node/server.js"),
        "/usr/bin/node",
        json!({}),
    );
    // A non-loopback front without the config's consent: refused before anything starts.
    std::fs::write(fx.dir().join("serve.toml"), "version = 1\n").unwrap();
    let r = fx.run(&[
        "serve",
        "--config",
        "serve.toml",
        "--socket",
        "s.sock",
        "--trust",
        "trust",
        "--state-dir",
        "state",
        "--policy-root",
        "no-policy-root",
        "--sertone-listen",
        "0.0.0.0:4999",
    ]);
    assert_eq!(r.code, 111, "{}", r.stderr);
    assert!(r.stderr.contains("not a loopback address"), "{}", r.stderr);
    assert!(!fx.dir().join("s.sock").exists());
    // An HTTP plugin under a policy without loopback networking is not launched (110).
    std::fs::write(fx.dir().join("none.toml"), "version = 1\n").unwrap();
    let r = fx.run(&[
        "run",
        pkg.to_str().unwrap(),
        "--policy",
        "none.toml",
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 110, "{}", r.stderr);
    assert!(r.stderr.contains("mode = \"loopback\""), "{}", r.stderr);
    // A manifest that sets PORT itself is refused at pack time.
    let d = fx.dir().join("pkg-hello-node");
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap();
    m["http"]["env"] = json!({"PORT": "80"});
    std::fs::write(d.join("manifest.json"), m.to_string()).unwrap();
    let r = fx.pack_dir(d.to_str().unwrap(), "bad.stockade");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("http: env may not set PORT"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_slow_plugin_flooded_with_calls_is_not_taken_for_hung() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    // Healthy but slow and single-threaded: 200 ms per call, 5 calls a second at most.
    let pkg = pack_faulty(&fx, "slow", json!({"MODE": "slow", "DELAY": "0.2"}));
    // Pings every 200 ms, 1.5 s to answer; quarantine after 2 crashes. 40 clients keep 40 calls
    // open, 8 s of work for the plugin: a bridge that answers a ping only after the calls
    // queued before it misses every ping, and the plugin is restarted as hung, then quarantined.
    let (mut s, port) = start_health(
        &fx,
        &[&pkg],
        "",
        "[health]\nping_interval_ms = 200\nping_timeout_ms = 1500\n",
        "[sertone]\ndeadline_ms = 1000\n[quarantine]\nmax_crashes = 2\n",
    );
    let flood = Instant::now();
    let clients: Vec<_> = (0..40)
        .map(|i| {
            std::thread::spawn(move || {
                let (mut answered, mut bypassed) = (0, 0);
                let mut k = 0;
                while flood.elapsed() < Duration::from_secs(6) {
                    k += 1;
                    let (st, r) = http(
                        port,
                        "POST",
                        "/sertone/pre-request",
                        &pre("0a", &format!("c{i}-{k}")),
                    );
                    assert_eq!(st, 200, "{r}");
                    if r["bypassed"] == json!([]) {
                        answered += 1;
                    } else {
                        bypassed += 1;
                    }
                }
                (answered, bypassed)
            })
        })
        .collect();
    let (answered, bypassed) = clients
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    let log = s.log();
    assert!(
        bypassed > 0,
        "the flood exceeded what the plugin answers in time ({answered} answered): {log}"
    );
    assert!(answered > 0, "the plugin served during the flood: {log}");
    for gone in ["terminated", "restarting", "quarantined"] {
        assert!(
            !log.contains(&format!("plugin slow: {gone}")),
            "a slow plugin was taken for hung ({gone}): {log}"
        );
    }
    assert!(
        !fx.dir().join("state/quarantine.json").exists()
            || !std::fs::read_to_string(fx.dir().join("state/quarantine.json"))
                .unwrap()
                .contains("\"slow\"")
    );
    // Still the same ready plugin, answering.
    let (_, info) = http(port, "GET", "/sertone/info", &Value::Null);
    assert_eq!(info["plugins"][0]["state"], "ready", "{info}");
    let (_, r) = http(port, "POST", "/sertone/pre-request", &pre("0a", "after"));
    assert_eq!(r["bypassed"], json!([]), "{r}\n{}", s.log());
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// `stockade run PKG` under [`POLICY`], stdin and stdout piped.
fn spawn_run(fx: &Fixture, pkg: &Path) -> std::process::Child {
    spawn_run_with(fx, pkg, "")
}

/// [`spawn_run`] with `extra` sections in its policy file.
fn spawn_run_with(fx: &Fixture, pkg: &Path, extra: &str) -> std::process::Child {
    std::fs::write(
        fx.dir().join("run-policy.toml"),
        format!("version = 1\n{POLICY}{extra}"),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["run", pkg.to_str().unwrap(), "--policy", "run-policy.toml"])
        .args(["--trust", "trust", "--state-dir", "state"])
        .current_dir(fx.dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// `stockade run PKG` until the plugin has ended by itself (its `plugin_state` on stdout), then
/// the agent's stdin closed; `run`'s exit status.
fn run_until_the_plugin_ends(fx: &Fixture, pkg: &Path) -> Option<i32> {
    let mut child = spawn_run(fx, pkg);
    // Held open until the plugin is gone: no shutdown reaches the bridge before that.
    let stdin = child.stdin.take().unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(out) {
        let m: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let state = m["params"]["state"].clone();
        seen.push(m);
        if ended(&state) {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|m| ended(&m["params"]["state"])),
        "the plugin never ended: {seen:?}"
    );
    drop(stdin);
    child.wait().unwrap().code()
}

fn ended(state: &Value) -> bool {
    state == "exited" || state == "terminated"
}

#[test]
fn run_passes_the_http_plugins_own_exit_status_through() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let exits = pack_faulty(&fx, "exits", json!({"MODE": "exit", "CODE": "7"}));
    assert_eq!(run_until_the_plugin_ends(&fx, &exits), Some(7));
    let aborts = pack_faulty(&fx, "aborts", json!({"MODE": "abort"}));
    assert_eq!(
        run_until_the_plugin_ends(&fx, &aborts),
        Some(128 + libc::SIGABRT),
        "killed by SIGABRT"
    );
    // Python's os.kill is kill(2), where abort() is tgkill: SIGTERM reaches it too.
    let terms = pack_faulty(&fx, "terms", json!({"MODE": "term"}));
    assert_eq!(
        run_until_the_plugin_ends(&fx, &terms),
        Some(128 + libc::SIGTERM),
        "killed by its own SIGTERM"
    );
}

/// `stockade run PKG` with one pre-request call (`deadline_ms`) and its stdin closed right
/// after: what `run` wrote (the call answered) and its exit status. The runtime sends
/// `shutdown` as soon as the call is answered.
fn run_one_call(fx: &Fixture, pkg: &Path, deadline_ms: u64) -> (Vec<Value>, Option<i32>) {
    run_one_call_with(fx, pkg, deadline_ms, "")
}

/// [`run_one_call`] with `extra` sections in the policy file.
fn run_one_call_with(
    fx: &Fixture,
    pkg: &Path,
    deadline_ms: u64,
    extra: &str,
) -> (Vec<Value>, Option<i32>) {
    let mut child = spawn_run_with(fx, pkg, extra);
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "hook_invoke",
        "params": {"hook": "on:sertone.pre_request", "payload": pre("0a", "s1"),
                   "deadline_ms": deadline_ms}});
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{call}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let msgs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m["id"] == 1 && m.get("method").is_none()),
        "the call was answered: {msgs:?}"
    );
    (msgs, out.status.code())
}

/// Under `run` too, an agent's call of a Sertone hook gets the plugin's answer only once it is
/// checked as the front checks it: a fee with no destination is an invalid answer,
/// bypassed under the hook's fail-open default (`{"allow": true}`, the bypass naming why) and a
/// `plugin_error` under `failure = "closed"` — the old runtime handed the agent the plugin's
/// 0.5 USDC fee to an address of its choosing as it came.
#[test]
fn run_checks_a_sertone_answer_before_an_agent_gets_it() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let badfee = pack_faulty(&fx, "badfee", json!({"MODE": "badfee"}));
    let (msgs, _) = run_one_call(&fx, &badfee, 5000);
    let answer = msgs
        .iter()
        .find(|m| m["id"] == 1 && m.get("method").is_none())
        .unwrap();
    assert_eq!(answer["result"], json!({"allow": true}), "{msgs:?}");
    let bypass = msgs
        .iter()
        .find(|m| m["method"] == "log" && m["params"]["bypass"]["id"] == 1)
        .unwrap_or_else(|| panic!("the bypass is said: {msgs:?}"));
    let why = bypass["params"]["bypass"]["message"].as_str().unwrap();
    assert!(
        why.starts_with("invalid answer: ") && why.contains("fee_destination"),
        "{why}"
    );

    let closed = "[hooks.\"on:sertone.pre_request\"]\nfailure = \"closed\"\n";
    let (msgs, _) = run_one_call_with(&fx, &badfee, 5000, closed);
    let answer = msgs
        .iter()
        .find(|m| m["id"] == 1 && m.get("method").is_none())
        .unwrap();
    assert_eq!(answer["error"]["code"], -32008, "plugin_error: {msgs:?}");
    let why = answer["error"]["message"].as_str().unwrap();
    assert!(why.starts_with("invalid answer: "), "{why}");
}

/// The session's end under `run` is the HTTP plugin's: 0 when it stops as asked, its own code
/// when it ends otherwise. The bridge exited 0 at once on `shutdown`, so a plugin that ended
/// with a code of its own after (or just before) it was lost and `run` said 0.
#[test]
fn run_ends_with_the_http_plugins_status_after_shutdown() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let quiet = pack_faulty(&fx, "quiet", json!({"MODE": "echo"}));
    assert_eq!(
        run_one_call(&fx, &quiet, 5000).1,
        Some(0),
        "stopped cleanly"
    );
    let stop7 = pack_faulty(&fx, "stop7", json!({"MODE": "stopexit", "CODE": "7"}));
    assert_eq!(
        run_one_call(&fx, &stop7, 5000).1,
        Some(7),
        "a plugin that ends with 7 when stopped"
    );
    let crash7 = pack_faulty(&fx, "crash7", json!({"MODE": "crash", "CODE": "7"}));
    assert_eq!(
        run_one_call(&fx, &crash7, 5000).1,
        Some(7),
        "a plugin that died with 7 during the call"
    );
}

/// An agent's own `hook_invoke` of a Sertone hook whose plugin fails (fail-open, no `default`
/// configured: here it misses the deadline) gets what the front makes of the same failure — no
/// objection, `allow: true` — with the bypass said in a `log`, not a bare `null` result.
#[test]
fn an_agents_call_of_a_failing_sertone_plugin_is_answered_as_the_front_would() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let hang = pack_faulty(&fx, "hang", json!({"MODE": "hang"}));
    let (msgs, _) = run_one_call(&fx, &hang, 300);
    let answer = msgs
        .iter()
        .find(|m| m["id"] == 1 && m.get("method").is_none())
        .unwrap();
    assert_eq!(answer["result"], json!({"allow": true}), "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m["method"] == "log" && m["params"]["bypass"]["id"] == 1),
        "the bypass is said: {msgs:?}"
    );
}

/// The auditor's attacks on the front itself (no plugin needed): a page's simple POST and a
/// rebound name are refused; connections holding partial heads are closed (408) in time, so
/// they cannot keep `max_connections` full; a peer pipelining requests and never reading the
/// answers is stopped being read, then dropped, while another client is served.
#[test]
fn the_front_refuses_pages_slow_heads_and_unread_floods() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let (mut s, port) = start(&fx, &[], "", "[sertone]\nmax_connections = 4\n");
    let body = pre("0a1b", "r1").to_string();
    let page = format!(
        "POST /sertone/pre-request HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: \
         http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw_status(port, &page), 403);
    let plain = page.replace("Origin: http://evil.example\r\n", "");
    assert_eq!(raw_status(port, &plain), 415);
    let rebound = format!("GET /sertone/info HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n");
    assert_eq!(raw_status(port, &rebound), 421);

    // Slowloris: every slot held by a partial request head.
    let mut slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(b"POST /sertone/pre-request HTTP/1.1\r\n")
                .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            c
        })
        .collect();
    for c in &mut slow {
        let mut resp = String::new();
        c.read_to_string(&mut resp)
            .expect("a partial head is answered and closed in time");
        assert!(resp.starts_with("HTTP/1.1 408 "), "{resp}");
    }
    assert_eq!(http(port, "GET", "/sertone/info", &Value::Null).0, 200);
    let lines = s.log().matches("request head not whole in time").count();
    assert_eq!(lines, 1, "one line per interval:\n{}", s.log());

    // More pipelined input than one turn reads (the read cap is 72 KiB), read by a client that
    // reads its answers: every request answered, none left stalled in the socket.
    let n = 3000;
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = c.try_clone().unwrap();
    let reqs = format!("GET /sertone/info HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
        .repeat(n - 1)
        + &format!(
            "GET /sertone/info HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
    assert!(reqs.len() > 100 * 1024);
    let writer = std::thread::spawn(move || w.write_all(reqs.as_bytes()));
    let mut resp = String::new();
    c.read_to_string(&mut resp)
        .expect("every pipelined request answered");
    writer.join().unwrap().unwrap();
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), n);

    // A flood of pipelined requests whose answers are never read.
    let mut flood = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = format!("GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").repeat(2000);
        // Far more than every socket buffer between the two ends holds.
        for _ in 0..(64 << 20) / chunk.len() {
            flood.write_all(chunk.as_bytes())?;
        }
        Ok::<_, std::io::Error>(())
    });
    assert_eq!(http(port, "GET", "/sertone/info", &Value::Null).0, 200);
    let r = writer.join().unwrap();
    assert!(r.is_err(), "the flood was read to its end\n{}", s.log());
    assert_eq!(http(port, "GET", "/sertone/info", &Value::Null).0, 200);
    assert!(s.log().contains("answers not read in time"), "{}", s.log());
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// A healthy plugin busy with one long call (3 s, within its 5 s hook deadline) while the
/// runtime pings it, with `ping_timeout_ms` above that deadline as docs/protocol.md says: the
/// bridge's health check waits for the plugin's `GET /sertone/info` as long as the runtime
/// allows, so the pong comes once the call is done and the plugin is not restarted as hung. The
/// bridge gave that `GET` 2 s, withheld the pong, and the runtime took the plugin for hung.
#[test]
fn a_long_call_within_its_deadline_does_not_cost_the_plugin_its_health() {
    if !runnable() {
        return;
    }
    let fx = Fixture::new();
    let pkg = pack_faulty(&fx, "slow", json!({"MODE": "slow", "DELAY": "3"}));
    let (mut s, port) = start_health(
        &fx,
        &[&pkg],
        "[hooks.\"on:sertone.pre_request\"]\ndeadline_ms = 5000\n",
        "[health]\nping_interval_ms = 200\nping_timeout_ms = 5500\n",
        "[sertone]\ndeadline_ms = 5000\n",
    );
    // Calls back to back for longer than the ping timeout: a withheld pong would be found.
    for id in ["long-1", "long-2", "long-3"] {
        let (st, r) = http(port, "POST", "/sertone/pre-request", &pre("0a", id));
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["bypassed"], json!([]), "{r}\n{}", s.log());
    }
    let log = s.log();
    for gone in ["terminated", "restarting", "quarantined"] {
        assert!(
            !log.contains(&format!("plugin slow: {gone}")),
            "a busy healthy plugin was taken for hung ({gone}): {log}"
        );
    }
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// helper-143: the front bypasses a plugin still starting (it declares the hook, so it is
/// named under `bypassed`); when that first launch never becomes ready, the plugin is removed
/// and the calls let through meanwhile are counted then, in an `unloaded` `bypass` record
/// naming its package, as an unload's are. They were left for the daemon's stop, whose
/// `stopped` record no longer knew the plugin: no version, no package, no policy hash.
#[test]
fn a_first_launch_that_never_becomes_ready_counts_its_bypasses_as_it_goes() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let audit = fx.dir().join("audit.log");
    // Never handshakes: starting until killed (its handshake deadline is far away).
    let silent = "#!/bin/sh\nwhile :; do sleep 5; done\n";
    let pkg = serve_common::pack_script(&fx, "silent", &["on:sertone.pre_request"], silent);
    std::fs::write(
        fx.dir().join("policy.toml"),
        format!(
            "version = 1\n[audit]\nfile = {audit:?}\n[protocol]\nhandshake_timeout_ms = 600000\n"
        ),
    )
    .unwrap();
    let (mut s, port) = serve_front(&fx, "[health]\nping_interval_ms = 0\n");
    let mut loader = s.client();
    loader.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "plugin_load",
                        "params": {"package": pkg}}));
    let mut c = s.client();
    let pid = loop {
        let r = c.call("plugin_status", json!({"name": "silent"}));
        if let Some(pid) = r["result"]["pid"].as_i64() {
            assert_eq!(r["result"]["state"], "starting", "{r}");
            break pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for id in ["s-1", "s-2"] {
        let (st, r) = http(port, "POST", "/sertone/pre-request", &pre("0a", id));
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["bypassed"][0]["plugin"], "silent", "{r}");
    }
    serve_common::signal(i32::try_from(pid).unwrap(), "KILL");
    let answer = loop {
        let m = loader.recv().expect("the load's answer");
        if m["id"] == 1 {
            break m;
        }
    };
    assert_eq!(
        answer["error"]["code"],
        serve_common::LOAD_FAILED,
        "{answer}"
    );
    let bypasses = || -> Vec<Value> {
        std::fs::read_to_string(&audit)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["event"] == "bypass")
            .collect()
    };
    // Counted as it went, before the daemon stops.
    let b = bypasses();
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!(b[0]["outcome"], "failing_open", "{:#}", b[0]);
    assert_eq!(b[1]["outcome"], "unloaded", "{:#}", b[1]);
    assert_eq!(b[1]["detail"]["bypassed_calls"], 2, "{:#}", b[1]);
    assert_eq!(b[1]["detail"]["failing_open"], true, "{:#}", b[1]);
    for r in &b {
        assert_eq!(r["plugin"], "silent", "{r:#}");
        assert_eq!(r["version"], "0.1.0", "{r:#}");
        assert_eq!(
            r["package_sha256"].as_str().map(str::len),
            Some(64),
            "{r:#}"
        );
    }
    drop((loader, c));
    assert_eq!(s.stop(), 0, "{}", s.log());
    assert_eq!(bypasses().len(), 2, "nothing left for the stop");
}

/// Answers every hook call with `@ANSWER@` (a JSON-RPC `result` or `error` member).
const ANSWERS: &str = r#"#!/bin/sh
printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"@NAME@","version":"0.1.0","api":1,"capabilities":["log","register_hook"],"hooks":[@HOOKS@]}}'
IFS= read -r reply || exit 0
while IFS= read -r line; do
  id=${line#*\"id\":}; id=${id%%,*}
  case $line in
    *'"method":"ping"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    *'"method":"hook_invoke"'*) printf '{"jsonrpc":"2.0","id":%s,@ANSWER@}\n' "$id" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done
"#;

/// helper-143: the front's `bypass` records say `invalid_answer` for a plugin whose answer the
/// runtime's check refused and `no_answer` for one that answered with an error, decided by what
/// became of the call (the bypass's `invalid_answer`, which an agent's entry carries too) where
/// it was read from the words of the message ("invalid answer…").
#[test]
fn the_fronts_bypass_records_say_an_invalid_answer_from_no_answer() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let audit = fx.dir().join("audit.log");
    let hooks = ["on:sertone.pre_request"];
    let answering = |name: &str, answer: &str| {
        serve_common::pack_script(&fx, name, &hooks, &ANSWERS.replace("@ANSWER@", answer))
    };
    let bad = answering("bad", r#""result":{"allow":"yes"}"#);
    let err = answering(
        "err",
        r#""error":{"code":-32000,"message":"invalid answer: mine"}"#,
    );
    std::fs::write(
        fx.dir().join("policy.toml"),
        format!("version = 1\n[audit]\nfile = {audit:?}\n"),
    )
    .unwrap();
    let (mut s, port) = serve_front(&fx, "[health]\nping_interval_ms = 0\n");
    let mut c = s.client();
    for p in [&bad, &err] {
        assert_eq!(c.ok("plugin_load", json!({"package": p}))["state"], "ready");
    }
    let (st, r) = http(port, "POST", "/sertone/pre-request", &pre("0a", "v-1"));
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["allow"], true, "{r}");
    assert_eq!(r["bypassed"].as_array().map(Vec::len), Some(2), "{r}");
    // An agent's call: the same bypasses, the invalid answer said as such.
    let res = c.ok(
        "hook_invoke",
        serve_common::invoke("on:sertone.pre_request", pre("0a", "agent"), None),
    );
    let entry = |name: &str| {
        res["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["plugin"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{res}"))
    };
    assert_eq!(entry("bad")["bypassed"]["invalid_answer"], true, "{res}");
    assert!(
        entry("err")["bypassed"].get("invalid_answer").is_none(),
        "{res}"
    );
    drop(c);
    assert_eq!(s.stop(), 0, "{}", s.log());
    let recs: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"] == "bypass" && r["outcome"] == "failing_open")
        .collect();
    let reason = |name: &str| {
        let r = recs
            .iter()
            .find(|r| r["plugin"] == name && r["detail"]["method"] == "sertone")
            .unwrap_or_else(|| panic!("{name}: {recs:#?}"));
        r["detail"]["reason"].clone()
    };
    assert_eq!(reason("bad"), "invalid_answer", "{recs:#?}");
    assert_eq!(reason("err"), "no_answer", "{recs:#?}");
}

/// An HTTP plugin with a native entrypoint (no `http.interpreter`: the bridge executes the
/// entrypoint itself, inside the sandbox) whose package is extracted onto file systems mounted
/// `noexec` (the state directory and TMPDIR: a hardened `/var`, `/tmp`): refused before the
/// launch with 126 `cannot_execute` naming the mount, as a stdio plugin's entrypoint is
/// (audit-166) — the bridge's spawn failed "cannot start /plugin/…: Permission denied" inside
/// the sandbox (exit 70), saying nothing of the mount (review-169 L7).
#[test]
fn an_http_plugins_native_entrypoint_on_a_noexec_mount_is_refused_naming_the_mount() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let d = fx.dir().join("pkg-native");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("serve.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(
        d.join("serve.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let manifest = json!({"name": "native", "version": "1.0.0", "author": "t",
        "entrypoint": "serve.sh", "requested_capabilities": ["register_hook"],
        "hooks": ["on:sertone.pre_request"], "http": {"port": 4001}});
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    let pkg = fx.dir().join("native.stockade");
    let r = fx.pack_dir(d.to_str().unwrap(), pkg.to_str().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let mut mounted = Vec::new();
    for dir in ["state", "tmp"] {
        let at = fx.dir().join(dir);
        std::fs::create_dir_all(&at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m,mode=0755,noexec", "tmpfs"])
            .arg(&at)
            .status();
        assert!(st.unwrap().success(), "mount a noexec tmpfs at {dir}");
        mounted.push(Unmount(at));
    }
    std::fs::write(
        fx.dir().join("run-policy.toml"),
        format!("version = 1\n{POLICY}"),
    )
    .unwrap();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
            .args(["run", pkg.to_str().unwrap(), "--policy", "run-policy.toml"])
            .args(["--trust", "trust", "--state-dir", "state"])
            .env("TMPDIR", fx.dir().join("tmp"))
            .current_dir(fx.dir())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = run();
    assert_eq!(code, Some(126), "{text}");
    let named = mounted
        .iter()
        .any(|m| text.contains(&format!("mounted noexec at {}", m.0.display())));
    assert!(named, "{text}");
    assert!(!text.contains("\"starting\""), "launched: {text}");
    // Control: the same mounts made exec, the bridge starts the entrypoint (which exits 0).
    for m in &mounted {
        let st = std::process::Command::new("mount")
            .args(["-o", "remount,exec"])
            .arg(&m.0)
            .status();
        assert!(st.unwrap().success());
    }
    let (code, text) = run();
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("Permission denied"), "{text}");
}
