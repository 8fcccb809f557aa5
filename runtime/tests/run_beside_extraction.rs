//! `stockade run` builds the sandbox while the package is extracted (verification step 8,
//! cmd/run.rs `extract_beside_build`): a compiled plugin starts from that sandbox; a large `#!`
//! script is found out once written and gets a sandbox of its own; a package step 8 refuses
//! while its sandbox is being built is refused as always (exit 87, an audit `refused` record,
//! no launch record) and leaves no extraction directory, cgroup or process behind. The audit
//! record of each launch says how its sandbox was built (`detail.prepared`) and where its files
//! came from (`detail.tree`: a tree kept from an earlier run, one kept now, or temporary).

mod common;
mod leftovers;

use common::*;
use leftovers::assert_no_sandbox_left;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// examples/hello-c built static (≈ 750 KB: far above `RESERVE_MIN_BYTES`).
fn static_hello_c(out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-c/hello.c");
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(out)
        .arg(src)
        .status()
        .expect("cc (CI installs gcc and libc6-dev)");
    assert!(st.success(), "cc -static failed");
}

/// A fixture with examples/hello-c built static and packed as `c.stockade`, and a state
/// directory: trees are kept there, and a run does not make it (packaging does).
fn hello_c_fixture() -> Fixture {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("state")).unwrap();
    std::fs::create_dir(fx.path("plugin")).unwrap();
    static_hello_c(&fx.path("plugin/entrypoint"));
    std::fs::write(fx.path("plugin/manifest.json"), hello_c_manifest()).unwrap();
    pack(&fx, "plugin", "c.stockade");
    fx
}

fn hello_c_manifest() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-c/manifest.json"),
    )
    .unwrap()
}

/// A policy that writes audit records to `audit.log` in the fixture, plus `extra`.
fn audit_policy(fx: &Fixture, extra: &str) -> PathBuf {
    // Written aside and renamed: runs at once must never read a half-written policy.
    let p = fx.path("policy.toml");
    let aside = fx.path(&format!("policy.toml.{:?}", std::thread::current().id()));
    std::fs::write(
        &aside,
        format!(
            "version = 1\n[audit]\nfile = \"{}\"\n{extra}",
            fx.path("audit.log").display()
        ),
    )
    .unwrap();
    std::fs::rename(&aside, &p).unwrap();
    p
}

fn audit_records(fx: &Fixture) -> Vec<Value> {
    std::fs::read_to_string(fx.path("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct Ran {
    code: i32,
    stderr: String,
    ready: bool,
    runtime_pid: u32,
}

/// `stockade run PKG` with the audit policy and TMPDIR inside the fixture; the agent's side
/// stays open until the plugin is ready (or the run ends), then closes: a clean shutdown.
/// Killed after 60 s (a hang is a failure, never a stuck test run).
fn run(fx: &Fixture, pkg: &str) -> Ran {
    run_with(fx, pkg, "")
}

/// [`run`] with `extra` appended to the policy.
fn run_with(fx: &Fixture, pkg: &str, extra: &str) -> Ran {
    run_in_tmp(fx, pkg, extra, &fx.path("tmp"))
}

/// [`run_with`] with TMPDIR at `tmp`.
fn run_in_tmp(fx: &Fixture, pkg: &str, extra: &str, tmp: &Path) -> Ran {
    std::fs::create_dir_all(tmp).unwrap();
    std::fs::set_permissions(tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let policy = audit_policy(fx, extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["run", pkg, "--trust", "trust", "--state-dir", "state"])
        .arg("--policy")
        .arg(&policy)
        .env("TMPDIR", tmp)
        .current_dir(fx.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runtime_pid = child.id();
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["method"] == "plugin_state" && v["params"]["state"] == "ready" {
                let _ = tx.send(());
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let start = std::time::Instant::now();
    let mut ready = false;
    let status = loop {
        if rx.try_recv().is_ok() {
            ready = true;
            // The end of the agent's input: a clean shutdown.
            if let Some(mut s) = stdin.take() {
                let _ = s.flush();
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("stockade run hung (killed after 60 s)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    reader.join().unwrap();
    ready |= rx.try_recv().is_ok();
    Ran {
        code: status.code().unwrap_or(-1),
        stderr: err.join().unwrap(),
        ready,
        runtime_pid,
    }
}

fn pack(fx: &Fixture, dir: &str, out: &str) {
    let r = fx.pack_dir(dir, out);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// The launch record's `detail.prepared` (exactly one launch record).
fn prepared(fx: &Fixture) -> String {
    let launches: Vec<Value> = audit_records(fx)
        .into_iter()
        .filter(|r| r["event"] == "launch")
        .collect();
    assert_eq!(launches.len(), 1, "{launches:?}");
    launches[0]["detail"]["prepared"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The plugin became ready, the run ended cleanly, and [`nothing_left`] of it.
fn started_and_left_nothing(fx: &Fixture, r: &Ran) {
    assert!(r.ready, "never ready: {}", r.stderr);
    assert_eq!(r.code, 0, "{}", r.stderr);
    nothing_left(fx, r.runtime_pid);
}

/// The launch records' `detail` (one per launch, in order).
fn launch_details(fx: &Fixture) -> Vec<Value> {
    audit_records(fx)
        .into_iter()
        .filter(|r| r["event"] == "launch")
        .map(|r| r["detail"].clone())
        .collect()
}

/// The names in the state directory's kept trees (none when it was never made), without the
/// directory of their lock files (`.locks`).
fn trees(fx: &Fixture) -> Vec<String> {
    std::fs::read_dir(fx.path("state/trees"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".locks")
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of the run is left but what it kept: no extraction directory (in TMPDIR or a work
/// directory among the trees), no cgroup, no process.
fn nothing_left(fx: &Fixture, runtime_pid: u32) {
    let left: Vec<_> = std::fs::read_dir(fx.path("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    let work: Vec<String> = trees(fx)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(work.is_empty(), "left among the trees: {work:?}");
    assert_no_sandbox_left(runtime_pid);
}

#[test]
fn a_compiled_plugin_starts_from_the_sandbox_built_beside_extraction() {
    if !require_root() {
        return;
    }
    let fx = hello_c_fixture();
    let r = run(&fx, "c.stockade");
    started_and_left_nothing(&fx, &r);
    assert_eq!(prepared(&fx), "beside the package's extraction");
}

/// audit-171: a TMPDIR whose name is not UTF-8 holds the extraction and is cleaned after. The
/// runtime reaches the package's files through the directory's descriptor
/// (`/proc/self/fd/N/.work-…`), so TMPDIR's bytes never become a path it opens by text: this
/// passed before the audit and guards it (the entrypoint is now also opened by its bytes, not
/// by its lossy text, should that ever change).
#[test]
fn a_tmpdir_not_utf8_holds_the_extraction() {
    use std::os::unix::ffi::OsStrExt;
    if !require_root() {
        return;
    }
    let fx = hello_c_fixture();
    let tmp = fx.dir().join(std::ffi::OsStr::from_bytes(b"tmp-\xff"));
    let r = run_in_tmp(&fx, "c.stockade", "", &tmp);
    assert!(r.ready, "never ready: {}", r.stderr);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "left in TMPDIR"
    );
}

#[test]
fn a_large_script_gets_a_sandbox_of_its_own() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir(fx.path("plugin")).unwrap();
    // A `#!` entrypoint above the reservation threshold: reserved, found to be a script once
    // written, so launched afresh (its descriptor must reach the interpreter).
    let mut script = String::from(concat!(
        "#!/bin/sh\n",
        r#"printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"handshake","params":{"name":"t","version":"0.1.0","api":1,"capabilities":["log","register_hook"],"hooks":["on:flow.new"]}}'"#,
        "\nIFS= read -r reply\n",
        "while IFS= read -r line; do case $line in *'\"method\":\"shutdown\"'*) exit 0 ;; esac; done\n",
        "exit 0\n",
    ));
    while script.len() < 80 * 1024 {
        script.push_str("# padding: a large script is still a script\n");
    }
    std::fs::write(fx.path("plugin/entrypoint"), script).unwrap();
    std::fs::set_permissions(
        fx.path("plugin/entrypoint"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        fx.path("plugin/manifest.json"),
        r#"{"name":"t","version":"0.1.0","author":"tests","description":"large script",
"entrypoint":"entrypoint","requested_capabilities":["log","register_hook"],
"hooks":["on:flow.new"],"api":1}"#,
    )
    .unwrap();
    pack(&fx, "plugin", "s.stockade");
    let r = run(&fx, "s.stockade");
    started_and_left_nothing(&fx, &r);
    assert_eq!(prepared(&fx), "at launch");
}

#[test]
fn a_package_refused_while_its_sandbox_is_built_leaves_nothing() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    static_hello_c(&fx.path("hello-c"));
    let exe = std::fs::read(fx.path("hello-c")).unwrap();
    let manifest: Value = serde_json::from_str(&hello_c_manifest()).unwrap();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let mut map = std::collections::BTreeMap::new();
    map.insert("entrypoint".to_string(), entry(0o755, &exe));
    map.insert("manifest.json".to_string(), entry(0o644, &manifest_bytes));
    // Signed and consistent up to step 7; step 8 meets the absolute path after having written
    // the entrypoint into its reserved file.
    let payload = raw_tar_gz(&[
        RawEntry::file("entrypoint", 0o755, &exe),
        RawEntry::file("manifest.json", 0o644, &manifest_bytes),
        RawEntry::file("/tmp/stockade-escaped", 0o644, b"x"),
    ]);
    fx.craft("evil.stockade", &manifest, &map, payload);
    let r = run(&fx, "evil.stockade");
    assert_eq!(r.code, 87, "{}", r.stderr);
    assert!(!r.ready);
    assert!(r.stderr.contains("absolute path"), "{}", r.stderr);
    assert!(!Path::new("/tmp/stockade-escaped").exists());
    let records = audit_records(&fx);
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(events, ["verification"], "{records:?}");
    assert_eq!(records[0]["outcome"], "refused");
    assert_eq!(records[0]["detail"]["kind"], "unsafe_archive.absolute_path");
    nothing_left(&fx, r.runtime_pid);
    assert!(
        trees(&fx).is_empty(),
        "a refused package kept: {:?}",
        trees(&fx)
    );
}

/// `trust.keep_trees`: the first run keeps the tree it extracted, the next one checks and reuses
/// it (its sandbox built around the kept entrypoint meanwhile); a kept tree changed since is
/// found out, set aside and the package extracted again, reported on stderr and in the
/// verification record, and the plugin still starts; with `keep_trees = 0` nothing is kept.
#[test]
fn a_kept_tree_is_reused_and_one_changed_since_is_set_aside() {
    if !require_root() {
        return;
    }
    let fx = hello_c_fixture();
    let ok = |r: &Ran| started_and_left_nothing(&fx, r);
    let last = |fx: &Fixture| launch_details(fx).pop().unwrap();

    let r = run(&fx, "c.stockade");
    ok(&r);
    assert_eq!(last(&fx)["tree"], "kept", "{}", r.stderr);
    let kept = trees(&fx);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let entry = fx.path("state/trees").join(&kept[0]).join("entrypoint");

    let r = run(&fx, "c.stockade");
    ok(&r);
    assert_eq!(last(&fx)["tree"], "reused");
    assert_eq!(last(&fx)["prepared"], "beside the package's extraction");
    assert!(!r.stderr.contains("signed map"), "{}", r.stderr);

    // Changed in place, same size: only the digest tells.
    let mut bytes = std::fs::read(&entry).unwrap();
    let last_byte = bytes.len() - 1;
    bytes[last_byte] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let r = run(&fx, "c.stockade");
    ok(&r);
    assert!(
        r.stderr.contains("did not match its signed map") && r.stderr.contains("entrypoint"),
        "{}",
        r.stderr
    );
    assert_eq!(last(&fx)["tree"], "kept");
    let verified: Vec<Value> = audit_records(&fx)
        .into_iter()
        .filter(|r| r["event"] == "verification")
        .collect();
    let warned = verified[verified.len() - 1]["detail"]["warnings"].to_string();
    assert!(warned.contains("set aside"), "{verified:?}");
    assert_eq!(trees(&fx), kept, "the tree is the package's again");
    assert_ne!(std::fs::read(&entry).unwrap(), bytes);
    // Readable by the plugin's uid, as a first extraction's.
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(entry.parent().unwrap()), 0o755);

    // The entrypoint gone: it cannot be opened to build the sandbox around; extracted again.
    std::fs::remove_file(&entry).unwrap();
    let r = run(&fx, "c.stockade");
    ok(&r);
    assert!(r.stderr.contains("missing: entrypoint"), "{}", r.stderr);
    assert_eq!(last(&fx)["tree"], "kept");
    assert_eq!(mode(entry.parent().unwrap()), 0o755);

    let r = run(&fx, "c.stockade");
    ok(&r);
    assert_eq!(last(&fx)["tree"], "reused");

    // Off: extracted into TMPDIR and removed, whatever is kept is left alone.
    let r = run_with(&fx, "c.stockade", "[trust]\nkeep_trees = 0\n");
    ok(&r);
    assert_eq!(last(&fx)["tree"], "temporary");
    assert_eq!(trees(&fx), kept);
    // A size budget of 0 keeps none either.
    let r = run_with(&fx, "c.stockade", "[trust]\nkeep_trees_max_mib = 0\n");
    ok(&r);
    assert_eq!(last(&fx)["tree"], "temporary");
    assert_eq!(trees(&fx), kept);
}

/// A state directory that became read-only (a full or remounted file system) still runs the
/// tree it keeps: the tree, 0755 already, is not changed again (its chmod failed with a bare
/// "Read-only file system" and 73, naming nothing).
#[test]
fn a_kept_tree_runs_from_a_read_only_state_directory() {
    if !require_root() {
        return;
    }
    let fx = hello_c_fixture();
    started_and_left_nothing(&fx, &run(&fx, "c.stockade"));
    assert_eq!(trees(&fx).len(), 1);
    let state = fx.path("state");
    let _unmount = bind_read_only(&state);
    let r = run(&fx, "c.stockade");
    started_and_left_nothing(&fx, &r);
    assert_eq!(launch_details(&fx).pop().unwrap()["tree"], "reused");
}

/// A state directory and TMPDIR on file systems mounted `noexec` (a hardened `/var`, `/tmp`):
/// the package's tree is kept or extracted on one of them, and the kernel runs nothing from it
/// whatever its modes. The run fails with 126 `cannot_execute` saying so and naming the mount —
/// it said only "Permission denied" with advice about modes and interpreters —, its launch
/// record says the same, and nothing of it is left.
#[test]
fn a_package_on_a_noexec_mount_is_refused_naming_the_mount() {
    if !require_root() {
        return;
    }
    let fx = hello_c_fixture();
    let mut mounted = Vec::new();
    for dir in ["state", "tmp"] {
        let at = fx.path(dir);
        std::fs::create_dir_all(&at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m,mode=0755,noexec", "tmpfs"])
            .arg(&at)
            .status();
        assert!(st.unwrap().success(), "mount a noexec tmpfs at {dir}");
        mounted.push(Unmount(at));
    }
    let r = run(&fx, "c.stockade");
    assert!(!r.ready, "a program ran from a noexec mount: {}", r.stderr);
    assert_eq!(r.code, 126, "{}", r.stderr);
    let named = mounted.iter().any(|m| {
        r.stderr
            .contains(&format!("mounted noexec at {}", m.0.display()))
    });
    assert!(named, "{}", r.stderr);
    assert!(
        !r.stderr.contains("executable regular file"),
        "{}",
        r.stderr
    );
    let detail = launch_details(&fx).pop().unwrap();
    assert_eq!(detail["kind"], "cannot_execute", "{detail}");
    assert!(
        detail["error"].as_str().unwrap().contains("mounted noexec"),
        "{detail}"
    );
    nothing_left(&fx, r.runtime_pid);
}

/// A state directory that was read-only from the start (an image-based host's read-only `/var`)
/// runs a plugin that asks for no key/value store: its package is extracted into TMPDIR and it
/// starts, the state directory left as it was. Every `run` opened the plugin's key/value store
/// first, making `<state>/kv/<signer>` for it, so every plugin was refused there with 78
/// `kv_store` ("Read-only file system"), kv or not.
#[test]
fn a_plugin_without_kv_runs_from_a_state_directory_read_only_from_the_start() {
    if !require_root() {
        return;
    }
    let fx = hello_c_fixture();
    let state = fx.path("state");
    let _unmount = bind_read_only(&state);
    let r = run(&fx, "c.stockade");
    started_and_left_nothing(&fx, &r);
    assert_eq!(launch_details(&fx).pop().unwrap()["tree"], "temporary");
    let made: Vec<_> = std::fs::read_dir(&state).unwrap().flatten().collect();
    assert!(made.is_empty(), "{made:?}");
}

/// Runs of one package at once, none with a tree kept yet: each extracts into a work directory
/// of its own, one of them keeps its tree (the name is taken once, by a rename that never
/// replaces), the others' directories are removed when they end; every plugin starts.
#[test]
fn runs_at_once_keep_one_tree_and_leave_no_work_directory() {
    if !require_root() {
        return;
    }
    let fx = hello_c_fixture();
    let runs: Vec<Ran> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| run(&fx, "c.stockade"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &runs {
        assert!(r.ready, "never ready: {}", r.stderr);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_no_sandbox_left(r.runtime_pid);
    }
    let trees_left = trees(&fx);
    assert_eq!(trees_left.len(), 1, "{trees_left:?}");
    assert!(!trees_left[0].starts_with('.'), "{trees_left:?}");
    let tmp: Vec<_> = std::fs::read_dir(fx.path("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    let kinds: Vec<String> = launch_details(&fx)
        .iter()
        .map(|d| d["tree"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "kept"), "{kinds:?}");
}

/// The packaged layout: root's `run` on a state directory of the service user's. At 0750 the
/// sandbox (root's host uid, no capability over the host's files) cannot search it, so no tree
/// is kept or made there and the package is extracted into TMPDIR (a warning only when the
/// policy asks for trees explicitly) — the launch
/// failed (125, `mount_sources`) when a tree was made there. Searchable (0755), root keeps its
/// trees in `trees-0`, leaving `trees` to the directory's owner.
#[test]
fn root_on_the_service_users_state_directory_keeps_trees_only_where_a_sandbox_reaches() {
    if !require_root() {
        return;
    }
    let fx = hello_c_fixture();
    let state = fx.path("state");
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let trees_dirs = || -> Vec<String> {
        std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("trees"))
            .collect()
    };
    // By default (trust.keep_trees not set) that is the layout's normal case: no warning.
    let r = run(&fx, "c.stockade");
    started_and_left_nothing(&fx, &r);
    assert!(!r.stderr.contains("no tree can be kept"), "{}", r.stderr);
    assert_eq!(launch_details(&fx).pop().unwrap()["tree"], "temporary");
    assert!(trees_dirs().is_empty(), "{:?}", trees_dirs());
    // Asked for by the operator: said at every run.
    let r = run_with(&fx, "c.stockade", "[trust]\nkeep_trees = 8\n");
    started_and_left_nothing(&fx, &r);
    assert!(
        r.stderr.contains("no tree can be kept") && r.stderr.contains("not searchable by others"),
        "{}",
        r.stderr
    );
    assert_eq!(launch_details(&fx).pop().unwrap()["tree"], "temporary");
    assert!(trees_dirs().is_empty(), "{:?}", trees_dirs());

    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = run(&fx, "c.stockade");
    started_and_left_nothing(&fx, &r);
    assert_eq!(
        launch_details(&fx).pop().unwrap()["tree"],
        "kept",
        "{}",
        r.stderr
    );
    assert_eq!(trees_dirs(), ["trees-0"]);
    let r = run(&fx, "c.stockade");
    started_and_left_nothing(&fx, &r);
    assert_eq!(
        launch_details(&fx).pop().unwrap()["tree"],
        "reused",
        "{}",
        r.stderr
    );
}

/// A kept tree is 0755 (the plugin's uid reads it) in a trees directory others may search
/// (0711, the sandbox's init binds from it), and its name, the statement's SHA-256, is no
/// secret: where the state directory can be searched by others too (0755 here; the service
/// user's group at the packaged 0750), any user can open the tree and hold an exclusive lock
/// on it for ever. `run` waited for that lock (killed after 60 s here), and so did every run of
/// the package; then it passed such a tree over and extracted the package afresh for as long
/// as the lock was held. A tree's lock is now its lock file's, which that user cannot open: the
/// lock on the directory changes nothing, and the tree is reused.
#[test]
fn another_user_locking_a_kept_tree_stalls_no_run() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root() || !require_tool("flock", "holding the kept tree's lock as another user") {
        return;
    }
    let fx = hello_c_fixture();
    let nobody = 65534;
    for d in [fx.dir().to_path_buf(), fx.path("state")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let tree_of_last = |fx: &Fixture| launch_details(fx).pop().unwrap()["tree"].clone();
    let r = run(&fx, "c.stockade");
    started_and_left_nothing(&fx, &r);
    assert_eq!(tree_of_last(&fx), "kept", "{}", r.stderr);
    let kept = trees(&fx);
    assert_eq!(kept.len(), 1, "{kept:?}");

    let tree = format!("state/trees/{}", kept[0]);
    let (held, holder) = hold_lock_as(fx.dir(), nobody, nobody, &tree, true);
    assert!(held, "the other user could not lock the kept tree");
    let r = run(&fx, "c.stockade");
    drop(holder);
    started_and_left_nothing(&fx, &r);
    assert_eq!(tree_of_last(&fx), "reused", "{}", r.stderr);
    assert_eq!(trees(&fx), kept);
}

/// `dir` bound onto itself read only (a read-only state directory), unbound when the guard is
/// dropped.
fn bind_read_only(dir: &std::path::Path) -> Unmount {
    let mount = |args: &[&str]| {
        let st = Command::new("mount").args(args).arg(dir).arg(dir).status();
        assert!(st.unwrap().success(), "mount {args:?}");
    };
    mount(&["--bind"]);
    let unmount = Unmount(dir.to_path_buf());
    mount(&["-o", "remount,ro,bind"]);
    unmount
}
