//! explain == enforcement: for a corpus of policies, run probes in a real sandbox (`stockade exec
//! --policy FILE`) and check every outcome against what `stockade policy explain --policy FILE
//! --json` predicts. No expectation is written here: each one is derived from explain's items
//! (network mode granted, read-only and writable paths, memory/pids/tmp limits, /proc, seccomp
//! groups), so a divergence between what is explained and what is enforced fails the test.
//!
//! One sandbox per policy runs every probe as a child process of one driver shell and prints
//! `name=status`; a probe killed by seccomp shows 159 (128 + SIGSYS), one that fails shows
//! non-zero, one that works 0.
//!
//! Needs root (cgroup memory/pids limits, per-plugin uid) and python3 on the host (the probes
//! use it inside the sandbox through the read-only /usr).

mod exec_common;
use exec_common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A host directory the sandbox may bind (not under /tmp, /dev, /proc, which it builds itself).
fn bindable_base() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if ["/tmp", "/dev", "/proc"]
        .iter()
        .any(|p| target.starts_with(p))
    {
        PathBuf::from("/var/tmp")
    } else {
        target.to_path_buf()
    }
}

const PY: &str = "/usr/bin/python3";

fn corpus(w: &str) -> Vec<(&'static str, String)> {
    let all =
        "\"@default\", \"@basic-io\", \"@file-system\", \"@memory\", \"@process\", \"@signal\"";
    vec![
        ("defaults", "version = 1\n".into()),
        ("loopback", "version = 1\n[network]\nmode = \"loopback\"\n".into()),
        (
            "writable",
            format!("version = 1\n[filesystem]\nwritable = [\"{w}\"]\n"),
        ),
        (
            "memory-48M",
            "version = 1\n[resources]\nmemory_max = \"48M\"\n".into(),
        ),
        ("pids-12", "version = 1\n[resources]\npids_max = 12\n".into()),
        (
            "no-timer-no-ipc",
            format!("version = 1\n[seccomp]\ngroups = [{all}, \"@io-event\", \"@network-io\"]\n"),
        ),
        (
            "no-io-event-no-network-io",
            format!("version = 1\n[network]\nmode = \"loopback\"\n[seccomp]\ngroups = [{all}, \"@ipc\", \"@timer\"]\n"),
        ),
        (
            "etc-visible",
            "version = 1\n[filesystem]\nread_only = [\"/usr\", \"/bin\", \"/sbin\", \"/lib\", \"/lib64\", \"/etc\"]\n".into(),
        ),
        (
            "small-tmp-no-proc",
            "version = 1\n[filesystem]\ntmp_size = \"256K\"\nproc = false\n".into(),
        ),
        (
            "tight",
            format!("version = 1\n[network]\nmode = \"loopback\"\n[resources]\nmemory_max = \"40M\"\npids_max = 10\n[filesystem]\nwritable = [\"{w}\"]\ntmp_size = \"1M\"\n"),
        ),
        (
            "drop-in-style-dotted",
            "version = 1\nresources.pids_max = 20\nfilesystem.proc = true\nnetwork.mode = \"none\"\n".into(),
        ),
    ]
}

/// explain's items by (section, name).
fn explain(policy: &Path) -> BTreeMap<(String, String), Value> {
    let o = stockade(
        &[
            "--json",
            "policy",
            "explain",
            "--policy",
            &policy.to_string_lossy(),
            "--policy-root",
            "/nonexistent-root",
        ],
        b"",
    );
    assert_eq!(code(&o), 0, "{}", err(&o));
    let v: Value = serde_json::from_str(&out(&o)).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                (
                    i["section"].as_str().unwrap().to_string(),
                    i["name"].as_str().unwrap().to_string(),
                ),
                i.clone(),
            )
        })
        .collect()
}

fn granted(items: &BTreeMap<(String, String), Value>, s: &str, n: &str) -> bool {
    items
        .get(&(s.to_string(), n.to_string()))
        .and_then(|i| i["granted"].as_bool())
        .unwrap_or(false)
}

fn number(items: &BTreeMap<(String, String), Value>, s: &str, n: &str) -> Option<u64> {
    items[&(s.to_string(), n.to_string())]["value"].as_u64()
}

/// A probe: name, shell command, predicted success (`Some(true)`: exit 0; `Some(false)`: not 0;
/// the seccomp probes predict 0 or 159 exactly).
struct Probe {
    name: String,
    cmd: String,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Ok,
    Fails,
    Killed,
}

fn py(code: &str) -> String {
    format!("{PY} -c \"{code}\"")
}

fn probes(items: &BTreeMap<(String, String), Value>, w: &Path) -> Vec<Probe> {
    let mut p = Vec::new();
    let yes = |b: bool| if b { Expect::Ok } else { Expect::Fails };
    let net_io = granted(items, "seccomp", "@network-io");
    // Network: a TCP connection over loopback works only with loopback granted and the socket
    // calls allowed.
    p.push(Probe {
        name: "network".into(),
        cmd: py("import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(1); c=socket.create_connection(s.getsockname())"),
        expect: if !granted(items, "network", "mode") {
            Expect::Fails
        } else {
            yes(net_io)
        },
    });
    // Reads: every read-only path that exists on the host is visible; a host path under none of
    // them is not.
    let ro: Vec<String> = items
        .keys()
        .filter(|(s, n)| s == "filesystem" && n.starts_with("read_only "))
        .map(|(_, n)| n["read_only ".len()..].to_string())
        .collect();
    for path in ro.iter().filter(|p| Path::new(p).exists()) {
        p.push(Probe {
            name: format!("see {path}"),
            cmd: format!("test -e {path}"),
            expect: Expect::Ok,
        });
    }
    for path in ["/etc/passwd", "/etc/group", "/root", "/var/log", "/home"] {
        if !Path::new(path).exists() {
            continue;
        }
        let covered = ro
            .iter()
            .any(|r| path == r || path.starts_with(&format!("{r}/")));
        let generated = granted(items, "filesystem", &format!("generated {path}"));
        p.push(Probe {
            name: format!("see {path}"),
            cmd: format!("test -e {path}"),
            expect: yes(covered || generated),
        });
    }
    // A generated /etc/passwd is a stub, not the host's: the host's `daemon` user shows only
    // when the host file is bound.
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if host_passwd.lines().any(|l| l.starts_with("daemon:")) {
        let covered = ro
            .iter()
            .any(|r| r == "/etc/passwd" || r == "/etc" || r == "/");
        p.push(Probe {
            name: "host /etc/passwd content".into(),
            cmd: "grep -q '^daemon:' /etc/passwd".into(),
            expect: yes(covered),
        });
    }
    p.push(Probe {
        name: "write /usr".into(),
        cmd: "echo x > /usr/.stockade-probe".into(),
        expect: Expect::Fails,
    });
    let wpath = w.display().to_string();
    let w_granted = granted(items, "filesystem", &format!("writable {wpath}"));
    p.push(Probe {
        name: format!("write {wpath}"),
        cmd: format!("echo x > {wpath}/probe"),
        expect: yes(w_granted),
    });
    // Memory: twice the limit cannot be touched; an eighth can.
    if let Some(m) = number(items, "resource", "memory_max") {
        p.push(Probe {
            name: "memory 2x".into(),
            cmd: py(&format!("b=bytearray({})", 2 * m)),
            expect: Expect::Fails,
        });
        p.push(Probe {
            name: "memory 1/8".into(),
            cmd: py(&format!("b=bytearray({})", m / 8)),
            expect: Expect::Ok,
        });
    }
    // Pids: more processes than the limit cannot all exist at once; two can.
    if let Some(n) = number(items, "resource", "pids_max") {
        // Children sleep until killed; the parent reports whether all k forks succeeded and
        // reaps them, so no process outlives the probe.
        let spawn = |k: u64| {
            py(&format!(
                "import os,time\nk={k}; kids=[]; ok=True\nfor i in range(k):\n  try: pid=os.fork()\n  except OSError: ok=False; break\n  if pid==0: time.sleep(30); os._exit(0)\n  kids.append(pid)\nfor p in kids: os.kill(p,9)\nfor p in kids: os.waitpid(p,0)\nraise SystemExit(0 if ok else 1)"
            ))
        };
        p.push(Probe {
            name: "pids over".into(),
            cmd: spawn(n + 4),
            expect: Expect::Fails,
        });
        p.push(Probe {
            name: "pids 2".into(),
            cmd: spawn(2),
            expect: Expect::Ok,
        });
    }
    // /tmp: more than its size cannot be written; a quarter can.
    if let Some(t) = number(items, "filesystem", "tmp_size") {
        p.push(Probe {
            name: "tmp over".into(),
            cmd: py(&format!("open('/tmp/big','wb').write(bytes({}))", 2 * t)),
            expect: Expect::Fails,
        });
        p.push(Probe {
            name: "tmp quarter".into(),
            cmd: format!(
                "rm -f /tmp/big; {}",
                py(&format!("open('/tmp/small','wb').write(bytes({}))", t / 4))
            ),
            expect: Expect::Ok,
        });
    }
    p.push(Probe {
        name: "proc".into(),
        cmd: "test -e /proc/self/status".into(),
        expect: yes(granted(items, "filesystem", "proc")),
    });
    // Seccomp: one call of each optional group, made directly with syscall(2). Numbers are
    // x86_64 (the only ABI this runtime builds its filter for here).
    for (group, call) in [
        ("@ipc", "getattr(ctypes.CDLL(None),'syscall')(29, 0, 0, 0)"), // shmget
        (
            "@timer",
            "getattr(ctypes.CDLL(None),'syscall')(36, 0, ctypes.create_string_buffer(64))",
        ), // getitimer
        ("@io-event", "getattr(ctypes.CDLL(None),'syscall')(291, 0)"), // epoll_create1
        (
            "@network-io",
            "getattr(ctypes.CDLL(None),'syscall')(51, -1, 0, 0)",
        ), // getsockname
    ] {
        p.push(Probe {
            name: format!("seccomp {group}"),
            cmd: py(&format!("import ctypes; {call}")),
            expect: if granted(items, "seccomp", group) {
                Expect::Ok
            } else {
                Expect::Killed
            },
        });
    }
    p
}

#[test]
fn explain_predicts_every_enforced_outcome() {
    if !require(is_root(), "root needed (cgroup limits, per-plugin uid)")
        || !require(Path::new(PY).exists(), "python3 needed for the probes")
        || !require(
            cfg!(target_arch = "x86_64"),
            "seccomp probe numbers are x86_64",
        )
    {
        return;
    }
    let dir = tempfile::tempdir_in(bindable_base()).unwrap();
    let w = dir.path().join("writable");
    std::fs::create_dir(&w).unwrap();
    // The sandbox's uid must be able to write there.
    std::fs::set_permissions(&w, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut checked = 0;
    let mut disagreements = Vec::new();
    let corpus = corpus(&w.display().to_string());
    assert!(corpus.len() >= 10);
    for (name, text) in &corpus {
        let pol = dir.path().join(format!("{name}.toml"));
        std::fs::write(&pol, text).unwrap();
        let items = explain(&pol);
        let probes = probes(&items, &w);
        let script: String = probes
            .iter()
            .enumerate()
            .map(|(i, p)| format!("({}) >/dev/null 2>&1; echo \"{i}=$?\"\n", p.cmd))
            .collect();
        let o = sh(&["--policy", &pol.to_string_lossy()], &script);
        assert_eq!(code(&o), 0, "policy {name}: driver failed: {}", err(&o));
        let got: BTreeMap<usize, i32> = out(&o)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(i, s)| (i.parse().unwrap(), s.parse().unwrap()))
            .collect();
        for (i, p) in probes.iter().enumerate() {
            let status = got[&i];
            let agrees = match p.expect {
                Expect::Ok => status == 0,
                Expect::Fails => status != 0,
                Expect::Killed => status == 159,
            };
            checked += 1;
            if !agrees {
                disagreements.push(format!(
                    "policy {name}: probe `{}` exited {status}, explain predicted {:?}",
                    p.name, p.expect
                ));
            }
        }
        let _ = std::fs::remove_file(w.join("probe"));
    }
    assert!(
        disagreements.is_empty(),
        "{} of {checked} outcomes disagree with explain:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(checked > 100, "only {checked} probes ran");
}
