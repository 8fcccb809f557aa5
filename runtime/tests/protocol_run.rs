//! Conformance of `stockade run` with well-behaved and misbehaving plugins (issue 4): each
//! misbehaviour gets the specified answer to the agent (a typed JSON-RPC error or the fail-open
//! default), the plugin is terminated when required, it is reported as `plugin_state`, every
//! request gets exactly one response, and the runtime always ends (a hard timeout in the
//! fixture turns a hang into a failure). Every session really launches a sandbox (root).

mod protocol_common;
use protocol_common::*;
use serde_json::json;

const DEADLINE_EXCEEDED: i64 = -32001;
const PLUGIN_CRASHED: i64 = -32002;
const NOT_REGISTERED: i64 = -32003;
const DENIED: i64 = -32004;
const VIOLATION: i64 = -32005;
const UNAVAILABLE: i64 = -32007;

/// A plugin killed before the agent's request was read answers `unavailable`, one killed while
/// the call waited answers `violation`: both are right, the order is the scheduler's.
fn violation_or_gone(code: i64) {
    assert!(code == VIOLATION || code == UNAVAILABLE, "{code}");
}

/// Answers every hook with `{"ok": N}` (N = the runtime's call id).
const ANSWER: &str = r#"hs '"log","emit_event","register_hook"'
while IFS= read -r line; do
  case $line in
    *'"method":"hook_invoke"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"ok":true}}\n' "$(id_of "$line")" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done"#;

/// Reads hook calls forever without answering (and ignores `shutdown`).
const HANG: &str = r#"hs '"log","register_hook"'
while IFS= read -r line; do :; done
while :; do sleep 1; done"#;

fn terminated_with(s: &Session, kind: &str) {
    let st = s.final_state();
    assert_eq!(st["state"], "terminated", "{st}");
    assert_eq!(st["reason"]["kind"], kind, "{st}");
    assert_eq!(st["reason"]["sandbox"]["cleaned_up"], true, "{st}");
}

/// A layer the policy lets run below full strength is told to the agent in the `ready`
/// `plugin_state` (`degraded`), not only on stderr for a person: here `bob`'s subordinate ids
/// reach into the plugins' uid range (/etc/subuid seen through a mount namespace of the run's
/// own), so `distinct_uid` is only partly enforced, which the policy allows.
#[test]
fn a_degradation_the_policy_allows_is_told_to_the_agent() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wrapper = with_subuid(dir.path(), "bob:165536:65536\n");
    let s = session_under(
        &wrapper,
        ANSWER,
        Some(
            "[layers]\nallow_degraded = [\"distinct_uid\", \"landlock_network\", \
             \"landlock_scope\"]\n",
        ),
        &[&invoke(1, None)],
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(s.response(1)["result"], json!({"ok": true}));
    let ready = s.ready();
    let degraded = ready["degraded"].as_array().expect("degraded");
    assert_eq!(degraded.len(), 1, "{ready}");
    assert_eq!(degraded[0]["layer"], "distinct_uid");
    assert_eq!(degraded[0]["status"], "partially_enforced");
    assert!(
        degraded[0]["reason"].as_str().unwrap().contains("`bob`"),
        "{ready}"
    );
    // As a person reads it on stderr.
    assert!(
        s.stderr
            .contains("stockade: warning: layer `distinct_uid` is only partly enforced"),
        "{}",
        s.stderr
    );
}

/// A package a trust mode below strict let pass is told to the agent in the `ready`
/// `plugin_state` (`signature_status`, `warnings`), as `serve`'s plugin status does: before,
/// `run` said it only on stderr, for a person. Here a developer certificate scoped to another
/// machine's hardware, run with `--trust-mode warn`.
#[test]
fn a_package_admitted_by_a_warning_is_told_to_the_agent() {
    if !require_root() {
        return;
    }
    let fx = Fixture::with_dev_scope(&["--scope", "hardware:00000000000000000000000000000000"]);
    let s = session_in(
        &fx,
        MANIFEST,
        ("dev.cert", "int/ca.cert"),
        ANSWER,
        None,
        &["--trust-mode", "warn"],
        &[&invoke(1, None)],
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    let ready = s.ready();
    assert_eq!(ready["signature_status"], "out_of_scope", "{ready}");
    let warnings = ready["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("00000000000000000000000000000000")),
        "{ready}"
    );
}

#[test]
fn well_behaved_plugin_answers_and_shuts_down() {
    if !require_root() {
        return;
    }
    let s = session(
        ANSWER,
        None,
        &[],
        &[&invoke(1, None), &invoke(2, Some(5000))],
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(s.response(1)["result"], json!({"ok": true}));
    assert_eq!(s.responses(2), 1);
    let ready = s.ready();
    assert_eq!(
        ready["granted"],
        json!(["log", "emit_event", "register_hook"])
    );
    assert_eq!(ready["degraded"], json!([]), "full strength");
    assert_eq!(ready["signature_status"], "verified");
    // The fixture's trust directory has no revocation list: verification says so.
    assert_eq!(
        ready["warnings"],
        json!(["revocation: not configured (no revocations.json in the trust directory)"])
    );
    let st = s.final_state();
    assert_eq!(st["state"], "exited");
    assert_eq!(st["reason"]["kind"], "shutdown");
    assert_eq!(st["reason"]["sandbox"]["exit"]["code"], 0);
}

#[test]
fn operator_allowlist_narrows_the_grant_and_an_ungranted_call_terminates() {
    if !require_root() {
        return;
    }
    // The manifest and the certificate allow emit_event; the operator does not.
    let script = r#"hs '"log","emit_event","register_hook"'
IFS= read -r line
printf '%s\n' '{"jsonrpc":"2.0","id":7,"method":"emit_event","params":{"name":"x"}}'
sleep 5"#;
    let s = session(
        script,
        None,
        &[
            "--allow-capability",
            "log",
            "--allow-capability",
            "register_hook",
        ],
        &[&invoke(1, Some(10_000))],
    );
    assert_eq!(
        s.code, 137,
        "killed by the runtime (128+SIGKILL): {}",
        s.stderr
    );
    let ready = s.ready();
    assert_eq!(ready["granted"], json!(["log", "register_hook"]));
    assert_eq!(s.error_code(1), DENIED);
    terminated_with(&s, "denied");
    assert!(
        s.notes("event").is_empty(),
        "the denied event must not be delivered"
    );
}

#[test]
fn call_outside_the_host_api_terminates() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
printf '%s\n' '{"jsonrpc":"2.0","id":7,"method":"kv_get","params":{"key":"other-plugin/secret"}}'
sleep 5"#;
    let s = session(script, None, &[], &[&invoke(1, Some(10_000))]);
    assert_eq!(s.error_code(1), DENIED);
    terminated_with(&s, "denied");
}

#[test]
fn crash_mid_call_is_plugin_crashed() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
IFS= read -r line
exit 3"#;
    let s = session(
        script,
        None,
        &[],
        &[&invoke(1, Some(10_000)), &invoke(2, None)],
    );
    assert_eq!(s.error_code(1), PLUGIN_CRASHED);
    assert_eq!(s.responses(1), 1);
    assert_eq!(s.responses(2), 1);
    let st = s.final_state();
    assert_eq!(st["state"], "exited");
    assert_eq!(st["reason"]["sandbox"]["exit"]["code"], 3);
}

/// A Python plugin (`/usr/bin/python3 -c`) that handshakes with `register_hook` for
/// `on:flow.new` (`send(message)` writes one line), then runs `body` on the rest of its stdin;
/// `None`, said as a skip, where python3 is not installed.
fn python_plugin(body: &str) -> Option<String> {
    if !require(
        std::path::Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 not installed (Debian package python3)",
    ) {
        return None;
    }
    Some(format!(
        r#"exec /usr/bin/python3 -c '
import json, os, signal, sys
def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()
send({{"jsonrpc": "2.0", "id": 0, "method": "handshake", "params": {{"name": "t",
      "version": "0.1.0", "api": 1, "capabilities": ["register_hook"], "hooks": ["on:flow.new"]}}}})
sys.stdin.readline()
{body}'"#
    ))
}

/// A Python plugin that sends itself SIGTERM during a call dies of it: `run` ends with 128+15
/// (a plugin started with SIGTERM ignored or blocked — dispositions and mask are inherited
/// across exec — would answer `still alive` instead).
#[test]
fn a_python_plugin_that_sigterms_itself_mid_call_ends_with_143() {
    if !require_root() {
        return;
    }
    let Some(script) = python_plugin(
        r#"for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "hook_invoke":
        os.kill(os.getpid(), signal.SIGTERM)
        send({"jsonrpc": "2.0", "id": m["id"], "result": {"still": "alive"}})
"#,
    ) else {
        return;
    };
    let s = session(&script, None, &[], &[&invoke(1, Some(10_000))]);
    assert_eq!(s.error_code(1), PLUGIN_CRASHED, "{:?}", s.msgs);
    let st = s.final_state();
    assert_eq!(
        st["reason"]["sandbox"]["exit"]["signal"],
        libc::SIGTERM,
        "{st}"
    );
    assert_eq!(s.code, 128 + libc::SIGTERM, "{}", s.stderr);
}

/// A plugin the seccomp filter kills (a system call outside its policy: ptrace) is said to have
/// been killed by the filter — its author saw only `"signal": 31` and `exited (exited)`, nothing
/// telling the sandbox's verdict from a crash of their own.
#[test]
fn a_plugin_the_seccomp_filter_kills_is_said_to_be_killed_by_it() {
    if !require_root() {
        return;
    }
    let Some(script) = python_plugin(
        r#"import ctypes
for line in sys.stdin:
    ctypes.CDLL(None).syscall(101, 0, 0, 0, 0)
"#,
    ) else {
        return;
    };
    let s = session(&script, None, &[], &[&invoke(1, Some(10_000))]);
    assert_eq!(s.error_code(1), PLUGIN_CRASHED, "{:?}", s.msgs);
    let st = s.final_state();
    assert_eq!(
        st["reason"]["sandbox"]["exit"]["signal"],
        libc::SIGSYS,
        "{st}"
    );
    let m = st["reason"]["message"].as_str().unwrap_or_default();
    assert!(
        m.starts_with("killed by the seccomp filter (SIGSYS)"),
        "{st}"
    );
}

/// A packaged script's `/dev/fd/N` (what its interpreter is handed) resolves inside the sandbox,
/// to `/plugin/…`: it named the state directory's host path, absent inside, and Node.js —
/// which resolves its script's real path — failed at once with ENOENT on it.
#[test]
fn a_packaged_scripts_own_path_resolves_inside_the_sandbox() {
    if !require_root() {
        return;
    }
    let script = r#"real=$(readlink -f "$0"); test -e "$real" && echo "real=$real" >&2
hs '"log","register_hook"'
IFS= read -r line"#;
    let s = session(script, None, &[], &[&invoke(1, Some(2_000))]);
    let logs: Vec<&str> = s
        .notes("log")
        .iter()
        .filter_map(|m| m["params"]["message"].as_str())
        .collect();
    assert!(
        logs.contains(&"real=/plugin/entrypoint"),
        "{logs:?} {}",
        s.stderr
    );
}

#[test]
fn a_plugin_that_closes_its_stdio_but_keeps_running_is_killed_not_waited_for() {
    if !require_root() {
        return;
    }
    // The agent's input stays open (a long deadline on the call), so only the runtime's own
    // linger limit can end this session: a blocking reap would hang until the fixture's 60 s.
    let script = r#"hs '"log","register_hook"'
IFS= read -r line
exec >&- 2>&-
while :; do sleep 5; done"#;
    let s = session(script, None, &[], &[&invoke(1, Some(30_000))]);
    assert_eq!(s.error_code(1), PLUGIN_CRASHED);
    assert_eq!(s.responses(1), 1);
    let st = s.final_state();
    assert_eq!(st["state"], "exited", "{st}");
    assert_eq!(st["reason"]["sandbox"]["exit"]["signal"], 9, "{st}");
    // The runtime's own kill is said by its warning, not as a cause of the plugin's.
    assert!(st["reason"].get("message").is_none(), "{st}");
    assert_eq!(st["reason"]["sandbox"]["cleaned_up"], true, "{st}");
    assert!(
        s.notes("log").iter().any(|m| m["params"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not exit"))),
        "{:?}",
        s.notes("log")
    );
}

#[test]
fn hang_hits_the_deadline_and_shutdown_kills_after_the_grace() {
    if !require_root() {
        return;
    }
    let policy = "[protocol]\nshutdown_grace_ms = 300\n";
    let s = session(HANG, Some(policy), &[], &[&invoke(1, Some(300))]);
    assert_eq!(
        s.code, 137,
        "killed by the runtime (128+SIGKILL): {}",
        s.stderr
    );
    assert_eq!(s.error_code(1), DEADLINE_EXCEEDED);
    assert_eq!(s.responses(1), 1);
    terminated_with(&s, "shutdown_timeout");
    assert!(s.took.as_secs() < 20, "took {:?}", s.took);
}

#[test]
fn late_answer_is_dropped_never_delivered_twice() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
while IFS= read -r line; do
  case $line in
    *'"method":"hook_invoke"'*) id=$(id_of "$line"); sleep 1; printf '{"jsonrpc":"2.0","id":%s,"result":{"late":true}}\n' "$id" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done"#;
    let s = session(script, None, &[], &[&invoke(1, Some(200))]);
    assert_eq!(s.error_code(1), DEADLINE_EXCEEDED);
    assert_eq!(s.responses(1), 1, "{:#?}", s.msgs);
}

#[test]
fn fail_open_answers_the_default_and_reports_the_bypass() {
    if !require_root() {
        return;
    }
    let policy = r#"[protocol]
shutdown_grace_ms = 200
[hooks."on:flow.new"]
deadline_ms = 200
failure = "open"
default = { allow = true }
"#;
    let s = session(HANG, Some(policy), &[], &[&invoke(1, None)]);
    assert_eq!(s.response(1)["result"], json!({"allow": true}));
    let bypass = s
        .notes("log")
        .into_iter()
        .find(|n| n["params"].get("bypass").is_some())
        .expect("bypass reported");
    assert_eq!(bypass["params"]["bypass"]["reason"], "deadline_exceeded");
}

#[test]
fn garbage_on_stdout_is_a_violation() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
IFS= read -r line
echo "this is not JSON-RPC"
sleep 5"#;
    let s = session(script, None, &[], &[&invoke(1, Some(10_000))]);
    assert_eq!(s.error_code(1), VIOLATION);
    terminated_with(&s, "garbage");
}

/// The counters of a killed sandbox are read before its cgroup goes: a plugin that ran into
/// pids_max (default 64) and was then terminated says so in its report.
#[test]
fn a_terminated_plugins_report_keeps_its_limit_counters() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
IFS= read -r line
i=0
(while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null
echo "this is not JSON-RPC"
sleep 5"#;
    let s = session(script, None, &[], &[&invoke(1, Some(10_000))]);
    terminated_with(&s, "garbage");
    let hit = &s.final_state()["reason"]["sandbox"]["limits_hit"];
    assert!(hit["pids_max_events"].as_u64().unwrap_or(0) > 0, "{hit}");
}

#[test]
fn stray_stdout_before_the_handshake_is_a_violation() {
    if !require_root() {
        return;
    }
    let s = session("echo starting up\nsleep 5", None, &[], &[&invoke(1, None)]);
    violation_or_gone(s.error_code(1));
    terminated_with(&s, "garbage");
}

#[test]
fn oversized_frame_is_a_violation_before_its_newline() {
    if !require_root() {
        return;
    }
    // 300 bytes without a newline against a 256-byte cap, then silence: the cap must trip on
    // the bytes alone.
    let script = r#"hs '"log","register_hook"'
IFS= read -r line
printf '{"jsonrpc":"2.0","method":"log","params":{"message":"%0300d' 0
sleep 5"#;
    let s = session(
        script,
        Some("[protocol]\nmax_frame_bytes = 256\n"),
        &[],
        &[&invoke(1, Some(10_000))],
    );
    assert_eq!(s.error_code(1), VIOLATION);
    terminated_with(&s, "frame");
}

#[test]
fn frame_without_newline_at_exit_is_reported() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
IFS= read -r line
printf '{"jsonrpc":"2.0","id":1,"result":{}}'
exit 0"#;
    let s = session(script, None, &[], &[&invoke(1, Some(10_000))]);
    assert_eq!(s.error_code(1), PLUGIN_CRASHED);
    assert!(s.notes("log").iter().any(|n| n["params"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("inside a frame")));
}

#[test]
fn slowloris_frame_is_a_violation() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
IFS= read -r line
printf '{"jsonrpc":'
sleep 1; printf '"2.0",'
sleep 1; printf '"id":1,'
sleep 10"#;
    let s = session(
        script,
        Some("[protocol]\nframe_timeout_ms = 500\n"),
        &[],
        &[&invoke(1, Some(20_000))],
    );
    assert_eq!(s.error_code(1), VIOLATION);
    terminated_with(&s, "slow_frame");
    assert!(s.took.as_secs() < 10, "took {:?}", s.took);
}

#[test]
fn emit_event_flood_is_rate_limited_and_the_plugin_still_answers() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","emit_event","register_hook"'
i=0
while [ $i -lt 2000 ]; do
  printf '{"jsonrpc":"2.0","method":"emit_event","params":{"name":"flood","data":%s}}\n' $i
  i=$((i + 1))
done
while IFS= read -r line; do
  case $line in
    *'"method":"hook_invoke"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"ok":true}}\n' "$(id_of "$line")" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done"#;
    let s = session(
        script,
        Some("[protocol]\nmax_events_per_sec = 50\n"),
        &[],
        &[&invoke(1, Some(10_000))],
    );
    assert_eq!(s.response(1)["result"], json!({"ok": true}));
    let events = s.notes("event");
    assert!(
        !events.is_empty() && events.len() < 500,
        "{} events",
        events.len()
    );
    assert_eq!(
        events[0]["params"]["plugin"], "t",
        "events are tagged with the plugin"
    );
    assert!(s.notes("log").iter().any(|n| n["params"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("dropped")));
}

#[test]
fn undeclared_hook_registration_terminates() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
printf '%s\n' '{"jsonrpc":"2.0","id":5,"method":"register_hook","params":{"hook":"on:secret"}}'
sleep 5"#;
    let s = session(script, None, &[], &[&invoke(1, Some(10_000))]);
    assert_eq!(s.error_code(1), DENIED);
    terminated_with(&s, "denied");
}

#[test]
fn handshake_lying_about_capabilities_terminates() {
    if !require_root() {
        return;
    }
    let s = session(
        "hs '\"log\",\"kv_put\"'\nsleep 5",
        None,
        &[],
        &[&invoke(1, Some(10_000))],
    );
    violation_or_gone(s.error_code(1));
    terminated_with(&s, "handshake");
}

#[test]
fn missing_handshake_times_out() {
    if !require_root() {
        return;
    }
    let s = session(
        "sleep 10",
        Some("[protocol]\nhandshake_timeout_ms = 300\n"),
        &[],
        &[&invoke(1, Some(10_000))],
    );
    assert_eq!(s.error_code(1), VIOLATION);
    terminated_with(&s, "handshake_timeout");
    assert!(s.took.as_secs() < 8, "took {:?}", s.took);
}

#[test]
fn agent_errors_are_typed_and_unregistered_hooks_refused() {
    if !require_root() {
        return;
    }
    let s = session(
        ANSWER,
        None,
        &[],
        &[
            "not json",
            r#"{"jsonrpc":"2.0","id":3,"method":"no_such_method"}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"hook_invoke","params":{"nohook":1}}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"hook_invoke","params":{"hook":"on:other"}}"#,
            &invoke(6, None),
        ],
    );
    assert!(s
        .msgs
        .iter()
        .any(|m| m["id"].is_null() && m["error"]["code"] == -32700));
    assert_eq!(s.error_code(3), -32601);
    assert_eq!(s.error_code(4), -32602);
    assert_eq!(s.error_code(5), NOT_REGISTERED);
    assert_eq!(s.response(6)["result"], json!({"ok": true}));
}

#[test]
fn stderr_is_forwarded_as_log() {
    if !require_root() {
        return;
    }
    let s = session(
        &format!("echo 'from stderr' >&2\n{ANSWER}"),
        None,
        &[],
        &[&invoke(1, None)],
    );
    assert!(s
        .notes("log")
        .iter()
        .any(|n| n["params"]["source"] == "stderr" && n["params"]["message"] == "from stderr"));
}

/// The audit's finding: a plugin writing to its stderr as fast as it can past
/// `max_stderr_bytes` was read as fast as it wrote (half a core, every byte thrown away). Its
/// stderr is now throttled past the cap: a background loop writing 1 KiB lines, counting them,
/// gets no more into its pipe over the session than the cap, the read that crossed it, what the
/// pipe holds and the throttle's 16 KiB per 100 ms for as long as the whole session took (before:
/// tens of MB); and the plugin still answers and shuts down cleanly.
#[test]
fn a_stderr_flood_past_the_cap_is_throttled_not_read_as_fast_as_it_comes() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
L=$(printf '%01023d' 0)
( n=0; while printf '%s\n' "$L" >&2; do n=$((n + 1)); echo $n > /tmp/n; done ) &
flooder=$!
while IFS= read -r line; do
  case $line in
    *'"method":"hook_invoke"'*)
      sleep 2
      until read -r n < /tmp/n && [ -n "$n" ]; do :; done
      printf '{"jsonrpc":"2.0","id":%s,"result":{"lines":%s}}\n' "$(id_of "$line")" "$n" ;;
    *'"method":"shutdown"'*) kill $flooder; exit 0 ;;
  esac
done"#;
    let cap = 65536;
    let s = session(
        script,
        Some(&format!(
            "[protocol]\nmax_stderr_bytes = {cap}\n[hooks.\"on:flow.new\"]\ndeadline_ms = 30000\n"
        )),
        &[],
        &[&invoke(1, Some(30_000))],
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    let r = s.response(1);
    let written = r["result"]["lines"]
        .as_u64()
        .unwrap_or_else(|| panic!("{r}"))
        * 1024;
    // 64 KiB: the host's read buffer. What the pipe holds is the host's: 16 pages by default,
    // 64 KiB with 4 KiB pages, 1 MiB with 64 KiB pages (arm64, ppc64le kernels); the plugin's
    // stderr pipe is a fresh one of root's, as this one is (never cut down by
    // `pipe-user-pages-soft`, which spares root).
    let throttled = (u64::try_from(s.took.as_millis()).unwrap() / 100 + 1) * 16 * 1024;
    let bound = cap + 65536 + default_pipe_size() + throttled;
    assert!(
        written <= bound,
        "the plugin got {written} bytes into its stderr in {} ms: read faster than the \
         throttle ({bound} at most)",
        s.took.as_millis()
    );
    assert!(s.notes("log").iter().any(|n| n["params"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("stderr exceeded"))));
    assert_eq!(
        s.final_state()["reason"]["kind"],
        "shutdown",
        "{}",
        s.final_state()
    );
}

/// What a new pipe holds on this host (`F_GETPIPE_SZ`).
fn default_pipe_size() -> u64 {
    let (r, _w) = nix::unistd::pipe().unwrap();
    let n = nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap();
    u64::try_from(n).unwrap()
}

#[test]
fn bad_policy_and_bad_package_fail_before_launch() {
    let s = session(
        ANSWER,
        Some("[capabilities]\nallow = [\"fly\"]\n"),
        &[],
        &[],
    );
    assert_eq!(s.code, 65, "{}", s.stderr);
    let s = session(ANSWER, None, &["--allow-capability", "fly"], &[]);
    assert_eq!(s.code, 64, "{}", s.stderr);
    let fx = Fixture::new();
    std::fs::write(fx.path("junk.stockade"), b"junk").unwrap();
    let s = run_stockade(
        fx.dir(),
        &[
            "run",
            "junk.stockade",
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ],
        &[],
    );
    assert!(
        s.code == 65 || (80..=87).contains(&s.code),
        "{} {}",
        s.code,
        s.stderr
    );
    assert!(s.msgs.is_empty());
}

#[test]
fn kv_store_and_config_values_for_a_deployment_bound_plugin() {
    if !require_root() {
        return;
    }
    // kv_* are only in the ceiling of deployment-bound scopes: issue a hardware-scoped cert.
    let fx = Fixture::new();
    let info = fx.run(&["--json", "node", "info", "--state-dir", "state"]);
    let hw = info.json()["hardware_id"].as_str().map(String::from);
    let Some(hw) = hw else {
        require(false, "this machine has no /etc/machine-id");
        return;
    };
    let scope = format!("hardware:{hw}");
    let r = fx.run(&[
        "ca", "init", "-o", "int-hw", "--parent", "root", "--scope", &scope, "--name", "HW Int",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = fx.run(&[
        "ca",
        "issue",
        "--ca",
        "int-hw",
        "--pub",
        "dev.pub",
        "--subject",
        "HW Dev",
        "--scope",
        &scope,
        "-o",
        "dev-hw.cert",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let certs = ("dev-hw.cert", "int-hw/ca.cert");
    let manifest = r#"{"name":"t","version":"0.1.0","author":"tests","description":"kv",
"entrypoint":"entrypoint","requested_capabilities":["kv_get","kv_put","get_config_value","register_hook"],
"hooks":["on:flow.new"],"api":1}"#;
    let script = r#"hs '"kv_get","kv_put","get_config_value","register_hook"'
while IFS= read -r line; do
  case $line in
    *'"method":"hook_invoke"'*)
      id=$(id_of "$line")
      printf '%s\n' '{"jsonrpc":"2.0","id":101,"method":"kv_get","params":{"key":"count"}}'
      IFS= read -r before
      printf '%s\n' '{"jsonrpc":"2.0","id":102,"method":"kv_put","params":{"key":"count","value":"1"}}'
      IFS= read -r put
      printf '%s\n' '{"jsonrpc":"2.0","id":103,"method":"kv_put","params":{"key":"big","value":"0123456789012345678901234567890123456789"}}'
      IFS= read -r big
      printf '%s\n' '{"jsonrpc":"2.0","id":104,"method":"get_config_value","params":{"key":"plugin_name"}}'
      IFS= read -r cfg
      printf '{"jsonrpc":"2.0","id":%s,"result":{"before":%s,"put":%s,"big":%s,"cfg":%s}}\n' "$id" "$before" "$put" "$big" "$cfg"
      ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done"#;
    let policy = Some("[kv]\nmax_value_bytes = 16\n");
    let s = session_in(
        &fx,
        manifest,
        certs,
        script,
        policy,
        &[],
        &[&invoke(1, Some(5000))],
    );
    let r = &s.response(1)["result"];
    assert_eq!(
        r["before"]["result"]["value"],
        serde_json::Value::Null,
        "{r}"
    );
    assert_eq!(r["put"]["result"], json!({}));
    assert_eq!(
        r["big"]["error"]["code"], -32009,
        "over quota, not terminated"
    );
    assert_eq!(r["cfg"]["result"]["value"], "t");
    assert_eq!(s.final_state()["state"], "exited");
    // Kept per signer: under the fingerprint of the developer key that signed it.
    let dev = fx.secret("dev.key").public_key();
    let fp = stockade_trust::index::fingerprint(&dev);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.path(&format!("state/kv/{fp}/t.json"))).unwrap())
            .unwrap();
    assert_eq!(stored, json!({"count": "1"}));
    // A second run sees what the first one persisted.
    let s = session_in(
        &fx,
        manifest,
        certs,
        script,
        policy,
        &[],
        &[&invoke(1, Some(5000))],
    );
    assert_eq!(s.response(1)["result"]["before"]["result"]["value"], "1");
    // A package of the same name from another developer (same scope) has its own store: it
    // does not see the first one's data.
    assert_eq!(fx.run(&["keygen", "-o", "dev2"]).code, 0);
    let r = fx.run(&[
        "ca",
        "issue",
        "--ca",
        "int-hw",
        "--pub",
        "dev2.pub",
        "--subject",
        "Other",
        "--scope",
        &scope,
        "-o",
        "dev2-hw.cert",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = session_signed(
        &fx,
        "dev2.key",
        manifest,
        ("dev2-hw.cert", "int-hw/ca.cert"),
        script,
        policy,
        &[],
        &[&invoke(1, Some(5000))],
    );
    let r = &s.response(1)["result"];
    assert_eq!(
        r["before"]["result"]["value"],
        serde_json::Value::Null,
        "{r}"
    );
}

/// Only `log` and `emit_event` may be notifications (docs/protocol.md §3.7): a request-only host
/// method sent without an id is a violation — never executed with its answer and errors thrown
/// away, which let a plugin drive host work without reading its stdin.
#[test]
fn a_request_only_host_method_sent_as_a_notification_terminates() {
    if !require_root() {
        return;
    }
    let script = r#"hs '"log","register_hook"'
printf '%s\n' '{"jsonrpc":"2.0","method":"log","params":{"message":"a notification may log"}}'
printf '%s\n' '{"jsonrpc":"2.0","method":"register_hook","params":{"hook":"on:flow.new"}}'
while IFS= read -r line; do
  case $line in
    *'"method":"hook_invoke"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"ok":true}}\n' "$(id_of "$line")" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done"#;
    let s = session(script, None, &[], &[&invoke(1, Some(10_000))]);
    violation_or_gone(s.error_code(1));
    terminated_with(&s, "notification");
    assert!(
        s.notes("log")
            .iter()
            .any(|m| m["params"]["message"] == "a notification may log"),
        "{:?}",
        s.msgs
    );
}

/// A plugin error as deep as the plugin's frame allows would make `run`'s answer (which wraps it
/// in `error.data.plugin_error`) deeper than the agent's parser takes: a violation instead.
#[test]
fn a_plugin_error_too_deep_for_the_answer_terminates() {
    if !require_root() {
        return;
    }
    // The frame nests 127 levels: itself, `error`, then 125 in `data`.
    let deep = format!("{}1{}", "[".repeat(125), "]".repeat(125));
    let script = r#"hs '"log","register_hook"'
while IFS= read -r line; do
  case $line in
    *'"method":"hook_invoke"'*) printf '{"jsonrpc":"2.0","id":%s,"error":{"code":1,"message":"deep","data":%s}}\n' "$(id_of "$line")" '@DEEP@' ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done"#
        .replace("@DEEP@", &deep);
    // The fixture parses every line the runtime writes with serde_json.
    let s = session(&script, None, &[], &[&invoke(1, Some(10_000))]);
    assert_eq!(s.error_code(1), VIOLATION);
    terminated_with(&s, "too_deep");
}

/// A session whose developer certificate expires while the agent keeps it open ends then, as
/// at a signal (the plugin shut down gracefully), and exits 83 with `validity.expired` on
/// stderr and a `denial` record (`detail.request` `"expiry"`); under `--trust-mode warn` it
/// runs on, as `serve` runs such a plugin on. The old `run` verified the certificate once, at
/// the start: a session an agent kept for days outlived its certificate.
#[test]
fn a_session_ends_when_its_certificate_expires() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    // Issued a day minus 10 s ago for a day: it expires 10 s from now (a pack and two
    // launches come between, on a loaded 2-core CI machine too: expired at the launch, the
    // session would be refused, not ended).
    let expires = unix_now() + 10;
    let issued = (expires - 86_400).to_string();
    let r = fx.run(&[
        "ca",
        "issue",
        "--ca",
        "int",
        "--pub",
        "dev.pub",
        "--subject",
        "dev",
        "-o",
        "short.cert",
        "--scope",
        "any",
        "--days",
        "1",
        "--now",
        &issued,
    ]);
    assert_eq!(r.code, 0, "ca issue: {}", r.stderr);
    let script = "hs '\"log\"'\nwhile IFS= read -r l; do :; done";
    let audit = fx.path("audit.log");
    let strict = format!("[audit]\nfile = \"{}\"\n", audit.display());
    // A policy in force that leaves the mode unset means strict, whatever the flag.
    let warn = format!("version = 1\n{strict}[trust]\nmode = \"warn\"\n");
    std::fs::write(fx.path("warn.toml"), warn).unwrap();
    let args = pack_session(
        &fx,
        "dev.key",
        MANIFEST,
        ("short.cert", "int/ca.cert"),
        script,
        Some(&strict),
        &[],
    );
    let mut warn_args = args.clone();
    let at = warn_args.iter().position(|a| a == "policy.toml").unwrap();
    warn_args[at] = "warn.toml".into();
    warn_args.extend(["--trust-mode".to_string(), "warn".to_string()]);
    // Both agents keep their end open and never write.
    let mut warned = start_silent_session(&fx, &warn_args);
    let child = start_silent_session(&fx, &args);
    let (out, stderr) = wait_session_end(child, &mut [&mut warned]);
    assert!(unix_now() >= expires, "ended before the expiry: {stderr}");
    assert_eq!(out.status.code(), Some(83), "{stderr}");
    assert!(stderr.contains("validity.expired"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"state\":\"ready\""), "{stdout}");
    assert!(stdout.contains("shutdown"), "ended gracefully: {stdout}");
    // Past the expiry, the warn session runs on until its agent ends it.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let ran_on = warned.try_wait().unwrap().is_none();
    drop(warned.stdin.take());
    let out = warned.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(ran_on, "the warn session ended: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let audit = std::fs::read_to_string(&audit).unwrap();
    let denial = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"] == "denial" && r["detail"]["request"] == "expiry")
        .unwrap_or_else(|| panic!("no expiry denial: {audit}"));
    assert_eq!(denial["outcome"], "validity.expired", "{denial}");
}

/// A session whose launch honoured a grant ends when the grant expires (exit 65,
/// `grant_expired` on stderr): `run` cannot relaunch its plugin without the item as `serve`
/// does, and the old `run` kept the item granted for as long as the agent kept the session.
#[test]
fn a_session_ends_when_a_grant_it_was_launched_with_expires() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let d = fx.dir().to_path_buf();
    let r = fx.run(&["keygen", "-o", "op"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::create_dir(d.join("grants")).unwrap();
    // 10 s: a keygen, a grant, a pack and the launch come between (see above).
    let expires = unix_now() + 10;
    let issued = (expires - 86_400).to_string();
    let r = fx.run(&[
        "grant",
        "issue",
        "--key",
        "op.key",
        "--plugin",
        "t",
        "--plugin-version",
        "0.1.0",
        "--target",
        "capability:emit_event",
        "--days",
        "1",
        "--now",
        &issued,
        "-o",
        "grants/t.grant",
    ]);
    assert_eq!(r.code, 0, "grant issue: {}", r.stderr);
    let policy = format!(
        "[risk]\nemit_event = \"high\"\n[trust]\noperator_keys = [\"{}\"]\ngrants = \"{}\"\n",
        d.join("op.pub").display(),
        d.join("grants").display(),
    );
    let args = pack_session(
        &fx,
        "dev.key",
        MANIFEST,
        ("dev.cert", "int/ca.cert"),
        "hs '\"log\",\"emit_event\"'\nwhile IFS= read -r l; do :; done",
        Some(&policy),
        &[],
    );
    let child = start_silent_session(&fx, &args);
    let (out, stderr) = wait_session_end(child, &mut []);
    assert!(unix_now() >= expires, "ended before the expiry: {stderr}");
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("grant_expired"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("emit_event"),
        "granted at the launch: {stdout}"
    );
}

/// `stockade ARGS` in the fixture's directory, its agent's end of stdin kept open and never
/// written: a session only an expiry (or a kill) ends.
fn start_silent_session(fx: &Fixture, args: &[String]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(args)
        .current_dir(fx.dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait (40 s at most) for `child` to end by itself; killed with `others` and a panic if not.
/// Its output, and its stderr as text.
fn wait_session_end(
    mut child: std::process::Child,
    others: &mut [&mut std::process::Child],
) -> (std::process::Output, String) {
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(40) {
            let _ = child.kill();
            for o in others.iter_mut() {
                let _ = o.kill();
            }
            panic!("never ended");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// A launch that fails for the packaged entrypoint itself (here: its `#!` interpreter is not in
/// the sandbox) names it as the manifest does (`bin/tool`), under `run` and `serve` alike —
/// both said `/proc/self/fd/N/.work-…/bin/tool`, the path the runtime opened the extracted file
/// at (audit-131). Kind and exit as before: 127 `interpreter_not_found`.
#[test]
fn a_launch_error_names_the_entrypoint_as_the_manifest_does() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let d = fx.hello_dir();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap();
    let mut manifest = manifest;
    manifest["entrypoint"] = json!("bin/tool");
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::create_dir(d.join("bin")).unwrap();
    std::fs::rename(d.join("entrypoint"), d.join("bin/tool")).unwrap();
    std::fs::write(
        d.join("bin/tool"),
        "#!/opt/stockade-absent/python3\nprint('never')\n",
    )
    .unwrap();
    std::fs::set_permissions(
        d.join("bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let r = fx.pack_dir("hello", "tool.stockade");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = fx.run(&[
        "--json",
        "run",
        "tool.stockade",
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ]);
    assert_eq!(r.code, 127, "{} {}", r.stdout, r.stderr);
    let e = r.json();
    assert_eq!(e["error"]["kind"], "interpreter_not_found", "{e}");
    let m = e["error"].to_string();
    assert!(m.contains("cannot run `bin/tool`"), "{e}");
    assert!(!m.contains("/proc/self/fd") && !m.contains(".work-"), "{e}");
}

/// A package whose certificate chain does not lead to a trusted root, let through by
/// `--trust-mode warn`, is not recorded as signed by the keys it names (audit-135): its
/// records' `signer_chain` is empty and the verification record keeps the key ids it claims
/// as `detail.claimed_signer_chain`, beside `signature_status: untrusted`. Before, every
/// record (launch, termination) named that chain — a root of anyone's making — as if the
/// host's roots had vouched for it.
#[test]
fn a_package_whose_signature_failed_is_not_recorded_as_its_claimed_signers() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    // A root of the forger's own, not in the trust directory, vouching for the developer's
    // name: the chain names its keys, none of which the host trusts.
    for args in [
        &["ca", "init", "-o", "evil", "--name", "Evil Root"][..],
        &[
            "ca", "init", "-o", "evil-int", "--parent", "evil", "--name", "Evil Int",
        ],
        &["keygen", "-o", "forger"],
        &[
            "ca",
            "issue",
            "--ca",
            "evil-int",
            "--pub",
            "forger.pub",
            "--subject",
            "Test Developer",
            "--scope",
            "any",
            "-o",
            "forger.cert",
        ],
    ] {
        let r = fx.run(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let audit = fx.path("audit.log");
    let policy = format!(
        "[trust]\nmode = \"warn\"\n[audit]\nfile = \"{}\"\n",
        audit.display()
    );
    let s = session_signed(
        &fx,
        "forger.key",
        MANIFEST,
        ("forger.cert", "evil-int/ca.cert"),
        ANSWER,
        Some(&policy),
        &["--trust-mode", "warn"],
        &[&invoke(1, None)],
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(s.ready()["signature_status"], "untrusted");
    let text = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |event: &str| {
        records
            .iter()
            .find(|r| r["event"] == event)
            .unwrap_or_else(|| panic!("no {event}: {text}"))
    };
    let v = of("verification");
    assert_eq!(v["detail"]["signature_status"], "untrusted", "{v}");
    assert!(
        !v["detail"]["claimed_signer_chain"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{v}"
    );
    for r in &records {
        assert_eq!(r["signer_chain"], json!([]), "{r}");
    }
    assert_eq!(of("launch")["outcome"], "ok");
}

/// review-138 L1: a package whose chain is proven but whose certificate is out of scope (here
/// another machine's hardware), let through by `--trust-mode warn`, keeps its `signer_chain`
/// in `run`'s launch record — which now says its `detail.signature_status` too (a key used
/// out of its scope, revoked or expired may be a stolen one), as does its termination record
/// (helper-143: it named the signers without the status).
#[test]
fn a_launch_record_of_a_package_admitted_out_of_scope_says_its_signature_status() {
    if !require_root() {
        return;
    }
    let fx = Fixture::with_dev_scope(&["--scope", "hardware:00000000000000000000000000000000"]);
    let audit = fx.path("audit.log");
    let policy = format!(
        "[trust]\nmode = \"warn\"\n[audit]\nfile = \"{}\"\n",
        audit.display()
    );
    let s = session_in(
        &fx,
        MANIFEST,
        ("dev.cert", "int/ca.cert"),
        ANSWER,
        Some(&policy),
        &["--trust-mode", "warn"],
        &[&invoke(1, None)],
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    let text = std::fs::read_to_string(&audit).unwrap();
    let launch: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"] == "launch")
        .unwrap_or_else(|| panic!("no launch: {text}"));
    assert_eq!(launch["outcome"], "ok", "{launch}");
    assert!(
        !launch["signer_chain"].as_array().unwrap().is_empty(),
        "{launch}"
    );
    assert_eq!(
        launch["detail"]["signature_status"], "out_of_scope",
        "{launch}"
    );
    // helper-143: so does the termination record, which names the same signers.
    let end: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"] == "termination")
        .unwrap_or_else(|| panic!("no termination: {text}"));
    assert_eq!(end["signer_chain"], launch["signer_chain"], "{end}");
    assert_eq!(end["detail"]["signature_status"], "out_of_scope", "{end}");
}
