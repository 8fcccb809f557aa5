//! Isolation between the plugins of one `stockade serve`, and what a plugin inherits from the
//! daemon (audit-101). Two plugins and their warm spares run side by side; each must be alone:
//! its own host uid, its own namespaces (none shared with the other plugin, its spare or the
//! daemon), its own `/tmp` (not even shared with its own next incarnation), no descriptor of the
//! daemon's, and none of the daemon's process state (umask, personality flags, ignored or
//! blocked signals, nice value, oom_score_adj below 0, rlimits) — even when the daemon is started
//! with `umask 000` under `setarch -R`, `nice -n -5`, `prlimit` and `choom`.
//! Real sandboxes (root).

mod serve_common;
use serde_json::{json, Value};
use serve_common::*;
use std::collections::BTreeSet;

/// Answers each call with what it sees (flat strings only: no JSON escaping needed in `sh`),
/// then marks its `/tmp` for the next call and incarnation to find.
const PROBE: &str = r#"#!/bin/sh
printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"@NAME@","version":"0.1.0","api":1,"capabilities":["log","register_hook"],"hooks":[@HOOKS@]}}'
IFS= read -r reply || exit 0
while IFS= read -r line; do
  id=${line#*\"id\":}; id=${id%%,*}
  case $line in
    *'"method":"ping"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    *'"method":"hook_invoke"'*)
      tmp=$(ls -A /tmp | tr '\n' ',')
      pers=$(cat /proc/self/personality)
      sig=$(grep -E '^Sig(Ign|Blk):' /proc/self/status | tr -d ' \t' | tr '\n' ',')
      nice=$(cut -d' ' -f19,41 /proc/self/stat)
      oom=$(cat /proc/self/oom_score_adj)
      lim=$(grep -E '^Max (stack size|msgqueue size)' /proc/self/limits | tr -s ' ' | cut -d' ' -f4,5 | tr '\n' ',')
      : > "/tmp/mark-@NAME@"
      printf '{"jsonrpc":"2.0","id":%s,"result":{"plugin":"@NAME@","umask":"%s","personality":"%s","signals":"%s","tmp":"%s","nice":"%s","oom":"%s","limits":"%s"}}\n' \
        "$id" "$(umask)" "$pers" "$sig" "$tmp" "$nice" "$oom" "$lim" ;;
    *'"method":"shutdown"'*) exit 0 ;;
  esac
done
"#;

const CONFIG: &str = "[serve]\nwarm = true\n[health]\nping_interval_ms = 0\n";

fn status_line(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {key} for {pid}"))
}

fn ppid(pid: i32) -> i32 {
    status_line(pid, "PPid:").parse().unwrap()
}

/// The namespaces of `pid`, as `/proc/<pid>/ns/*` links name them.
fn namespaces(pid: i32) -> BTreeSet<String> {
    ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"]
        .iter()
        .map(|ns| {
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Every descriptor of `pid`: (number, what it is).
fn fds(pid: i32) -> Vec<(u32, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().parse().unwrap();
            let to = std::fs::read_link(e.path()).unwrap_or_default();
            (n, to.to_string_lossy().into_owned())
        })
        .collect()
}

/// Each plugin's entry of an aggregate, by name.
fn by_plugin(r: &Value) -> std::collections::BTreeMap<String, Value> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e.get("result").is_some(), "{r}");
            (
                e["plugin"].as_str().unwrap().to_string(),
                e["result"].clone(),
            )
        })
        .collect()
}

#[test]
fn plugins_are_alone_and_inherit_nothing_of_the_daemon() {
    if !require_root()
        || !require(
            std::process::Command::new("setarch")
                .arg("--version")
                .output()
                .is_ok(),
            "needs setarch (util-linux)",
        )
    {
        return;
    }
    let fx = Fixture::new();
    let a = pack_script(&fx, "a", &["on:x"], PROBE);
    let b = pack_script(&fx, "b", &["on:x"], PROBE);
    // The daemon gets a permissive umask, ADDR_NO_RANDOMIZE, nice -5, a raised stack limit and
    // a message-queue allowance, and an oom_score_adj from whoever starts it: -500 where this
    // host lets root give one below 0 (CAP_SYS_RESOURCE), else 300 (kept: more killable).
    let oom_negative = std::process::Command::new("choom")
        .args(["-n", "-500", "--", "/bin/true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let (oom, oom_plugin) = if oom_negative { (-500, 0) } else { (300, 300) };
    let wrapper: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "umask 000; exec setarch \"$(uname -m)\" -R nice -n -5 prlimit --stack=unlimited: \
             --msgqueue=1000: choom -n {oom} -- \"$0\" \"$@\""
        ),
    ];
    let mut s = Serve::start_under(&fx, CONFIG, None, &[], &wrapper);
    let daemon = s.pid();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{daemon}/personality")).unwrap(),
        "00040000\n",
        "the control: the daemon runs with the flag"
    );
    let daemon_stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    assert_eq!(
        daemon_stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(16),
        Some("-5"),
        "the control: the daemon runs at nice -5"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{daemon}/oom_score_adj")).unwrap(),
        format!("{oom}\n"),
        "the control: the daemon's oom_score_adj"
    );
    let mut c = s.client();
    // A second agent connection: its socket is one more descriptor of the daemon's.
    let mut other = s.client();
    for p in [&a, &b] {
        assert_eq!(c.ok("plugin_load", json!({"package": p}))["state"], "ready");
    }
    let program = |c: &mut Client, name: &str| {
        let st = c.ok("plugin_status", json!({"name": name}));
        assert_eq!(st["spare"], true, "{st}");
        i32::try_from(st["pid"].as_i64().unwrap()).unwrap()
    };
    let (pa, pb) = (program(&mut c, "a"), program(&mut c, "b"));
    // Four inits under the daemon: a's and b's running ones and their held spares.
    let inits = children_of(daemon);
    assert_eq!(inits.len(), 4, "{inits:?}");
    assert!(inits.contains(&ppid(pa)) && inits.contains(&ppid(pb)));

    // A host uid of its own for every sandbox, held ones included.
    let uids: BTreeSet<String> = inits.iter().map(|p| status_line(*p, "Uid:")).collect();
    assert_eq!(uids.len(), 4, "{uids:?}");
    assert!(!uids.contains(&status_line(daemon, "Uid:")));
    // No namespace shared between the daemon and any sandbox, nor between two sandboxes. The
    // held spares' inits are in their sandbox's namespaces already (made before the go).
    let daemon_ns = namespaces(daemon);
    let mut seen = BTreeSet::new();
    for p in &inits {
        let ns = namespaces(*p);
        assert!(ns.is_disjoint(&daemon_ns), "init {p} shares {ns:?}");
        assert!(
            ns.is_disjoint(&seen),
            "init {p} shares a namespace with another sandbox"
        );
        seen.extend(ns);
    }
    // The programs: stdio pipes and their `#!` script's descriptor, nothing of the daemon's.
    for p in [pa, pb] {
        for (n, to) in fds(p) {
            assert!(
                (n <= 2 && to.starts_with("pipe:")) || to.ends_with("/entrypoint"),
                "program {p} holds fd {n} -> {to}"
            );
        }
    }
    // The running inits keep only their status pipe.
    for p in [ppid(pa), ppid(pb)] {
        assert!(fds(p).iter().all(|(_, to)| to.starts_with("pipe:")), "{p}");
    }

    // What each sees: the state is a login's, not the daemon's; `/tmp` is its own.
    let first = by_plugin(&other.ok("hook_invoke", invoke("on:x", json!({}), None)));
    for (name, r) in &first {
        assert_eq!(r["umask"], "0022", "{name}: {r}");
        assert_eq!(r["personality"], "00000000", "{name}: {r}");
        assert_eq!(
            r["signals"], "SigBlk:0000000000000000,SigIgn:0000000000000000,",
            "{name}: {r}"
        );
        assert_eq!(r["tmp"], "", "{name}: {r}");
        assert_eq!(r["nice"], "0 0", "{name}: {r}");
        assert_eq!(r["oom"], oom_plugin.to_string(), "{name}: {r}");
        assert_eq!(r["limits"], "8388608 8388608,0 0,", "{name}: {r}");
    }
    let second = by_plugin(&other.ok("hook_invoke", invoke("on:x", json!({}), None)));
    assert_eq!(second["a"]["tmp"], "mark-a,", "{second:?}");
    assert_eq!(second["b"]["tmp"], "mark-b,", "{second:?}");

    // A restart runs in a's held spare: nothing of the previous incarnation's /tmp, and still
    // nothing of b's.
    c.ok("plugin_restart", json!({"name": "a"}));
    c.wait_state("a", "exited");
    c.wait_state("a", "starting");
    c.wait_state("a", "ready");
    assert_eq!(
        c.ok("plugin_status", json!({"name": "a"}))["warm"],
        true,
        "the restart used the spare"
    );
    let third = by_plugin(&other.ok("hook_invoke", invoke("on:x", json!({}), None)));
    assert_eq!(third["a"]["tmp"], "", "{third:?}");
    assert_eq!(third["a"]["umask"], "0022", "{third:?}");
    assert_eq!(third["a"]["personality"], "00000000", "{third:?}");
    assert_eq!(third["a"]["nice"], "0 0", "{third:?}");
    assert_eq!(third["a"]["limits"], "8388608 8388608,0 0,", "{third:?}");
    assert_eq!(third["b"]["tmp"], "mark-b,", "{third:?}");
    assert_eq!(s.stop(), 0, "{}", s.log());
}
