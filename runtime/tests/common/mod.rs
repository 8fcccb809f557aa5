//! Shared helpers for the CLI integration tests: run the real `stockade` binary, build a CA
//! fixture through the CLI, craft properly signed packages around arbitrary payloads (so that
//! the step under test, not the signature, is what rejects them), and write raw tar entries the
//! tar crate's builder would refuse to write.
#![allow(dead_code)]

#[path = "../skip/mod.rs"]
mod skip;
#[allow(unused_imports)] // each test crate uses its own subset
pub use skip::{is_root, require, require_root};
#[path = "../hold/mod.rs"]
mod hold;
#[allow(unused_imports)] // each test crate uses its own subset
pub use hold::{hold_lock_as, Holder};

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use stockade_runtime::package::container::{self, Container};
use stockade_trust::minisign::SecretKey;
use stockade_trust::statement::{FileEntry, Statement};

/// Result of one CLI run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout parsed as JSON (every command supports `--json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
    /// The error kind of a failed `--json` run.
    pub fn kind(&self) -> String {
        self.json()["error"]["kind"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Run `stockade ARGS` in `cwd`.
pub fn stockade(cwd: &Path, args: &[&str]) -> Run {
    stockade_cmd(Command::new(env!("CARGO_BIN_EXE_stockade")), cwd, args)
}

/// [`stockade`] as user `uid` (its group the same number): the packaged layout's service user
/// is another uid than root's CLI (tests use 65534).
pub fn stockade_as(uid: u32, cwd: &Path, args: &[&str]) -> Run {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(env!("CARGO_BIN_EXE_stockade"));
    c.uid(uid).gid(uid);
    stockade_cmd(c, cwd, args)
}

/// The sources directory of a fixture whose `state` is another user's (the packaged layout):
/// where root keeps its source configuration there, in place of the host's
/// `/etc/stockade/sources` (no test touches the host's own).
pub const SOURCES_DIR: &str = "etc-sources";

fn stockade_cmd(mut c: Command, cwd: &Path, args: &[&str]) -> Run {
    use std::os::unix::fs::MetadataExt;
    c.env_remove("STOCKADE_SOURCES_DIR");
    // In the packaged layout (`state` not the test's user's, or others may write it: root's
    // configuration is not kept there) every run, root's and the service user's alike, is told
    // the fixture's sources directory, as the shipped refresh unit tells the timer the host's;
    // elsewhere the configuration stays in `state`, as it always did.
    let me = nix::unistd::geteuid().as_raw();
    if std::fs::metadata(cwd.join("state")).is_ok_and(|m| m.uid() != me || m.mode() & 0o022 != 0) {
        c.env("STOCKADE_SOURCES_DIR", cwd.join(SOURCES_DIR));
    }
    let out = c
        .args(args)
        .current_dir(cwd)
        .env_remove("STOCKADE_TRUST_DIR")
        .env_remove("STOCKADE_STATE_DIR")
        .output()
        .expect("run stockade");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `stockade ARGS` in `cwd` (stdin empty), held where it first reaches the test point `point`
/// (a debug build's `STOCKADE_TEST_STOP_AT`: it stops itself with SIGSTOP there). Returns once it
/// has stopped — waited for with `waitpid(WUNTRACED)`, no timing — so the test can change the
/// world right there; [`resume`] lets it go on. A command that ends without stopping fails the
/// test.
pub fn stockade_stopped_at(cwd: &Path, args: &[&str], point: &str) -> std::process::Child {
    use std::process::Stdio;
    let child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(args)
        .current_dir(cwd)
        .env("STOCKADE_TEST_STOP_AT", point)
        .env_remove("STOCKADE_TRUST_DIR")
        .env_remove("STOCKADE_STATE_DIR")
        .env_remove("STOCKADE_SOURCES_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stockade");
    wait_stopped(child.id(), point);
    child
}

/// Wait until process `pid`, a child of this one, has stopped at test point `point`
/// ([`stockade_stopped_at`]); fail if it ends instead.
pub fn wait_stopped(pid: u32, point: &str) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    let st = waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap();
    assert!(
        matches!(st, WaitStatus::Stopped(_, _)),
        "it did not stop at `{point}`: {st:?}"
    );
}

/// Let a process held at a test point go on (SIGCONT).
pub fn go_on(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
}

/// Let a command [`stockade_stopped_at`] held go on, and wait for its end.
pub fn resume(child: std::process::Child) -> Run {
    go_on(child.id());
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run and require success.
pub fn ok(cwd: &Path, args: &[&str]) -> Run {
    let r = stockade(cwd, args);
    assert_eq!(
        r.code, 0,
        "stockade {args:?} failed:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r
}

/// Whether an external tool is available. When it is not, the test is skipped with a message,
/// except under `CI=true`, where a skip is a failure (the CI image must provide it).
pub fn require_tool(tool: &str, why: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require(
        found,
        &format!("`{tool}` is not installed ({why}; Debian package `{tool}`)"),
    )
}

/// Makes a directory unwritable for the life of the guard — to root too (`chattr +i`), since
/// these tests run as root in CI; to anyone else by its mode.
pub struct Unwritable(std::path::PathBuf);

impl Unwritable {
    /// `None`: skipped (said on stderr), unless CI forbids it.
    pub fn new(dir: std::path::PathBuf) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;
        if is_root() {
            let done = std::process::Command::new("chattr")
                .arg("+i")
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !require(
                done,
                "`chattr +i` is unavailable here (no chattr, or a filesystem without the immutable flag)",
            ) {
                return None;
            }
        } else {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        Some(Self(dir))
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if is_root() {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        } else {
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

/// A root CA, an intermediate, a developer key and certificate, a trust dir and a state dir.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    /// Build through the CLI.
    pub fn new() -> Self {
        Self::with_dev_scope(&["--scope", "any"])
    }

    /// Build with extra `ca issue` arguments for the developer certificate.
    pub fn with_dev_scope(issue_args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        ok(d, &["ca", "init", "-o", "root", "--name", "Test Root"]);
        ok(
            d,
            &[
                "ca",
                "init",
                "-o",
                "int",
                "--parent",
                "root",
                "--name",
                "Test Intermediate",
            ],
        );
        ok(d, &["keygen", "-o", "dev"]);
        issue_dev_cert(d, issue_args);
        std::fs::create_dir(d.join("trust")).unwrap();
        std::fs::copy(d.join("root/ca.pub"), d.join("trust/root.pub")).unwrap();
        Self { tmp }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// Run stockade in the fixture directory.
    pub fn run(&self, args: &[&str]) -> Run {
        stockade(self.dir(), args)
    }

    /// `verify FILE --json --trust trust --state-dir state` plus extra args.
    pub fn verify(&self, file: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "--json",
            "verify",
            file,
            "--trust",
            "trust",
            "--state-dir",
            "state",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Copy `examples/hello` into the fixture (so tests can modify it) and return its path.
    pub fn hello_dir(&self) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
        let dst = self.path("hello");
        if !dst.exists() {
            std::fs::create_dir(&dst).unwrap();
            for f in ["manifest.json", "entrypoint"] {
                std::fs::copy(src.join(f), dst.join(f)).unwrap();
            }
        }
        dst
    }

    /// Pack a copy of the hello example as NAME VERSION with these dependencies.
    pub fn pack_plugin(&self, name: &str, version: &str, deps: &[(&str, &str)]) -> String {
        self.pack_custom(
            name,
            version,
            deps,
            serde_json::json!({}),
            "dev",
            &format!("{name}-{version}.stockade"),
        )
    }

    /// Pack a copy of the hello example as NAME VERSION with these dependencies, extra manifest
    /// fields, signed by developer `<signer>.key` / `<signer>.cert`, into `out`.
    pub fn pack_custom(
        &self,
        name: &str,
        version: &str,
        deps: &[(&str, &str)],
        extra: Value,
        signer: &str,
        out: &str,
    ) -> String {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
        let dir = self.path(&format!("src-{out}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(src.join("entrypoint"), dir.join("entrypoint")).unwrap();
        let mut m: Value =
            serde_json::from_slice(&std::fs::read(src.join("manifest.json")).unwrap()).unwrap();
        m["name"] = name.into();
        m["version"] = version.into();
        m["dependencies"] = deps
            .iter()
            .map(|(n, r)| serde_json::json!({"name": n, "version": r}))
            .collect();
        if let (Some(o), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec_pretty(&m).unwrap(),
        )
        .unwrap();
        let (key, cert) = (format!("{signer}.key"), format!("{signer}.cert"));
        ok(
            self.dir(),
            &[
                "pack",
                dir.to_str().unwrap(),
                "--key",
                &key,
                "--devcert",
                &cert,
                "--intcert",
                "int/ca.cert",
                "-o",
                out,
            ],
        );
        out.to_string()
    }

    /// Binds the fixture's developer to this machine, so that its packages may request
    /// `kv_get` and `kv_put` (only in the ceiling of deployment-bound scopes): the intermediate
    /// `int` becomes one of scope `hardware:<this machine>` (the one of scope any is kept as
    /// `int-any`) and `dev.cert` is issued again by it for the same key — a store's place
    /// (the key's fingerprint) does not change. `false` (said, an error in CI) on a machine
    /// without a hardware id (/etc/machine-id).
    pub fn bind_to_this_machine(&self) -> bool {
        let info = self.run(&["--json", "node", "info", "--state-dir", "node-state"]);
        let Some(hw) = info.json()["hardware_id"].as_str().map(String::from) else {
            return require(false, "this machine has no hardware id (/etc/machine-id)");
        };
        let scope = format!("hardware:{hw}");
        let d = self.dir();
        ok(
            d,
            &[
                "ca", "init", "-o", "int-hw", "--parent", "root", "--scope", &scope, "--name",
                "HW Int",
            ],
        );
        std::fs::rename(self.path("int"), self.path("int-any")).unwrap();
        std::fs::rename(self.path("int-hw"), self.path("int")).unwrap();
        issue_dev_cert(d, &["--scope", &scope, "--force"]);
        true
    }

    /// The hello example with `kv_get` requested too — `run` and `serve` open a key/value
    /// store only for a plugin that requests kv — packed into `kv.stockade` by the developer
    /// [bound to this machine](Fixture::bind_to_this_machine). `None` where it cannot be.
    pub fn pack_kv_hello(&self) -> Option<String> {
        if !self.bind_to_this_machine() {
            return None;
        }
        let asked =
            serde_json::json!({"requested_capabilities": ["log", "register_hook", "kv_get"]});
        Some(self.pack_custom("hello", "0.1.0", &[], asked, "dev", "kv.stockade"))
    }

    /// Another developer key and certificate (`<name>.key`, `<name>.cert`), scope any.
    pub fn add_developer(&self, name: &str) {
        let (pubf, cert) = (format!("{name}.pub"), format!("{name}.cert"));
        ok(self.dir(), &["keygen", "-o", name]);
        ok(
            self.dir(),
            &[
                "ca",
                "issue",
                "--ca",
                "int",
                "--pub",
                &pubf,
                "--subject",
                name,
                "-o",
                &cert,
                "--scope",
                "any",
            ],
        );
    }

    /// `stockade pack DIR -o OUT`, signed by the fixture's developer (`dev.key`, `dev.cert`,
    /// the intermediate's certificate); paths relative to the fixture directory or absolute.
    pub fn pack_dir(&self, dir: &str, out: &str) -> Run {
        self.pack_dir_with(&[], dir, out)
    }

    /// [`Fixture::pack_dir`] with global flags before the subcommand (e.g. `--json`).
    pub fn pack_dir_with(&self, global: &[&str], dir: &str, out: &str) -> Run {
        self.pack_args(global, dir, Some(out), &[])
    }

    /// [`Fixture::pack_dir`] replacing an existing `out` (`--force`), for tests that pack
    /// again over their own earlier package.
    pub fn pack_dir_replacing(&self, dir: &str, out: &str) -> Run {
        self.pack_args(&[], dir, Some(out), &["--force"])
    }

    /// `GLOBAL… pack DIR` with the fixture's keys, `-o OUT` when given (else the default name,
    /// NAME-VERSION.stockade), then `EXTRA…`.
    pub fn pack_args(&self, global: &[&str], dir: &str, out: Option<&str>, extra: &[&str]) -> Run {
        let mut args = global.to_vec();
        args.extend([
            "pack",
            dir,
            "--key",
            "dev.key",
            "--devcert",
            "dev.cert",
            "--intcert",
            "int/ca.cert",
        ]);
        if let Some(out) = out {
            args.extend(["-o", out]);
        }
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Pack the hello example into `hello.stockade`, replacing it (`--force`): tests pack it
    /// again after changing the tree or the developer certificate.
    pub fn pack_hello(&self) -> String {
        self.hello_dir();
        let r = self.pack_dir_replacing("hello", "hello.stockade");
        assert_eq!(r.code, 0, "pack failed: {}", r.stderr);
        "hello.stockade".into()
    }

    /// `stockade ca revoke --ca root -o trust/revocations.json EXTRA…`, which must succeed: the
    /// root's next revocation list (versions count up from 1), installed in the trust directory.
    pub fn install_list(&self, extra: &[&str]) {
        let mut args = vec![
            "ca",
            "revoke",
            "--ca",
            "root",
            "-o",
            "trust/revocations.json",
        ];
        args.extend_from_slice(extra);
        let r = self.run(&args);
        assert_eq!(r.code, 0, "ca revoke {extra:?}: {}", r.stderr);
    }

    /// The dev certificate's serial.
    pub fn dev_serial(&self) -> String {
        let v: Value =
            serde_json::from_slice(&std::fs::read(self.path("dev.cert")).unwrap()).unwrap();
        v["certificate"]["serial"].as_str().unwrap().to_string()
    }

    /// When to issue this node's next license (`ca license --now`): now, or a second after the
    /// license installed in `state` if it was issued this second — a license issued in the same
    /// second as the one installed last is refused as a rollback (unless it is that file).
    pub fn next_license_time(&self) -> String {
        let now = unix_now();
        let last = std::fs::read(self.path("state/license.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["license"]["issued_at"].as_u64());
        last.map_or(now, |t| now.max(t + 1)).to_string()
    }

    /// Issue license `serial` from the root CA in the frozen state and install it on this node
    /// (`state`): the node then admits no new plugin.
    pub fn install_frozen_license(&self, serial: &str) {
        self.install_license(serial, true);
    }

    /// Issue license `serial` from the root CA (active, or `frozen`) and install it on this
    /// node (`state`), in place of any license it had.
    pub fn install_license(&self, serial: &str, frozen: bool) {
        let out = format!("{serial}-{frozen}.license");
        let at = self.next_license_time();
        let mut issue = vec![
            "ca", "license", "--ca", "root", "--serial", serial, "--now", &at, "-o", &out,
            "--force",
        ];
        if frozen {
            issue.push("--frozen");
        }
        for args in [
            &issue[..],
            &[
                "node",
                "license",
                "install",
                &out,
                "--trust",
                "trust",
                "--state-dir",
                "state",
            ],
        ] {
            let r = self.run(args);
            assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        }
    }

    pub fn secret(&self, p: &str) -> SecretKey {
        SecretKey::parse(&std::fs::read_to_string(self.path(p)).unwrap()).unwrap()
    }

    /// Write a package around any manifest/file map/payload, properly signed by `key` (default
    /// the developer key) with the fixture's certificates.
    pub fn craft(
        &self,
        out: &str,
        manifest: &Value,
        files: &BTreeMap<String, FileEntry>,
        payload: Vec<u8>,
    ) {
        self.craft_with(
            out,
            manifest,
            files,
            payload,
            "dev.key",
            "dev.cert",
            "int/ca.cert",
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn craft_with(
        &self,
        out: &str,
        manifest: &Value,
        files: &BTreeMap<String, FileEntry>,
        payload: Vec<u8>,
        key: &str,
        devcert: &str,
        intcert: &str,
    ) {
        let sha: [u8; 32] =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&payload))
                .into();
        let statement =
            Statement::to_canonical(manifest, files, &sha, payload.len() as u64).unwrap();
        let sig = self
            .secret(key)
            .sign(&statement, "crafted by a test")
            .unwrap();
        let c = Container {
            statement,
            signature: sig.to_text().into_bytes(),
            developer_cert: std::fs::read(self.path(devcert)).unwrap(),
            intermediate_cert: std::fs::read(self.path(intcert)).unwrap(),
            payload,
        };
        std::fs::write(self.path(out), container::write(&c).unwrap()).unwrap();
    }
}

/// The hello manifest as JSON.
pub fn hello_manifest() -> Value {
    serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/manifest.json"),
        )
        .unwrap(),
    )
    .unwrap()
}

/// One raw tar entry.
pub struct RawEntry {
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    /// Header size when it should differ from `data.len()`.
    pub size: Option<u64>,
}

impl RawEntry {
    pub fn file(name: &str, mode: u32, data: &[u8]) -> Self {
        Self {
            name: name.as_bytes().to_vec(),
            kind: tar::EntryType::Regular,
            mode,
            data: data.to_vec(),
            link: vec![],
            size: None,
        }
    }
    pub fn special(name: &str, kind: tar::EntryType, link: &str) -> Self {
        Self {
            name: name.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            data: vec![],
            link: link.as_bytes().to_vec(),
            size: None,
        }
    }
}

/// A gzip'd tar written header by header (names are copied verbatim, so `..` and absolute paths
/// survive, which tar::Builder would refuse).
pub fn raw_tar_gz(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..e.name.len()].copy_from_slice(&e.name);
            old.linkname[..e.link.len()].copy_from_slice(&e.link);
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_size(e.size.unwrap_or(e.data.len() as u64));
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&out).unwrap();
    gz.finish().unwrap()
}

/// File map entry for `data`.
pub fn entry(mode: u32, data: &[u8]) -> FileEntry {
    FileEntry::File {
        mode,
        sha256: sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(data))
            .into(),
        size: data.len() as u64,
    }
}

/// The hello files (manifest bytes + entrypoint) as raw entries and map.
pub fn hello_parts() -> (Vec<RawEntry>, BTreeMap<String, FileEntry>) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let m = std::fs::read(base.join("manifest.json")).unwrap();
    let e = std::fs::read(base.join("entrypoint")).unwrap();
    let mut map = BTreeMap::new();
    map.insert("entrypoint".to_string(), entry(0o755, &e));
    map.insert("manifest.json".to_string(), entry(0o644, &m));
    (
        vec![
            RawEntry::file("entrypoint", 0o755, &e),
            RawEntry::file("manifest.json", 0o644, &m),
        ],
        map,
    )
}

/// Trust, state and (empty) policy root of the fixture, as the store and source tests pass them.
pub const STORE_FLAGS: [&str; 6] = [
    "--trust",
    "trust",
    "--state-dir",
    "state",
    "--policy-root",
    "policy-root",
];

/// `--json node license install FILE` on the fixture's node (`trust`, `state`).
pub fn install_license(fx: &Fixture, file: &str) -> Run {
    fx.run(&[
        "--json",
        "node",
        "license",
        "install",
        file,
        "--trust",
        "trust",
        "--state-dir",
        "state",
    ])
}

/// Assert a run's exit code and, when `kind` is not empty, its `--json` error kind.
pub fn expect(r: &Run, code: i32, kind: &str) {
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    if !kind.is_empty() {
        assert_eq!(r.kind(), kind, "{}", r.stdout);
    }
}

impl Fixture {
    /// `--json install TARGETS… STORE_FLAGS EXTRA…`.
    pub fn store_install(&self, targets: &[&str], extra: &[&str]) -> Run {
        let mut args = vec!["--json", "install"];
        args.extend_from_slice(targets);
        args.extend_from_slice(&STORE_FLAGS);
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `list --json`, by plugin name.
    pub fn installed(&self) -> BTreeMap<String, Value> {
        let r = ok(self.dir(), &["--json", "list", "--state-dir", "state"]);
        r.json()["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p.clone()))
            .collect()
    }
}

/// A command prefix that runs a program with `subuid` as /etc/subuid (and an empty /etc/subgid)
/// in a mount namespace of its own, the files written in `dir`: how a test makes another
/// user's subordinate ids reach into the plugins' uid range (`distinct_uid` then only partly
/// enforced) without touching the host's files. The bind needs the host's files to exist: one
/// missing is created empty (what `useradd` does on first use).
pub fn with_subuid(dir: &Path, subuid: &str) -> Vec<String> {
    let (uids, gids) = (dir.join("subuid"), dir.join("subgid"));
    std::fs::write(&uids, subuid).unwrap();
    std::fs::write(&gids, "").unwrap();
    for f in ["/etc/subuid", "/etc/subgid"] {
        if !Path::new(f).exists() {
            std::fs::write(f, "").unwrap();
        }
    }
    let script = r#"mount --bind "$1" /etc/subuid && mount --bind "$2" /etc/subgid && shift 2 &&
                    exec "$@""#;
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        script,
        "sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        [uids, gids]
            .iter()
            .map(|p| p.to_string_lossy().into_owned()),
    )
    .collect()
}

/// A command running `program`, or, when `wrapper` is not empty, `wrapper` (a program and its
/// arguments) with `program` as its next argument: e.g. [`with_subuid`]'s prefix.
pub fn command_under(wrapper: &[String], program: &str) -> std::process::Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => std::process::Command::new(program),
    }
}

/// The clock now, in Unix seconds (what certificates, grants and licenses are dated in).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A tmpfs of `size` at `dir` (made if missing, its root of `mode`), unmounted (lazily) when
/// dropped, also when the test fails: the tests of a host's disk filling up (root only; they
/// say so with `require`). One copy, for audit_rotate_cli and store_cli.
pub struct Tmpfs(Unmount);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str, mode: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode={mode}"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs at {}", dir.display());
        Tmpfs(Unmount(dir.to_path_buf()))
    }

    /// Give it `size` (`remount`): room made, or taken, while the test runs.
    pub fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0 .0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// Unmounts (lazily) the mount a test made at its path when dropped, also when the test fails.
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `int` issues `dev.cert` for `dev.pub` (subject "Test Developer") in the fixture's directory
/// `d`, with `extra` arguments (a scope, `--force`): the fixture's first issue and its re-issue
/// by a machine-bound intermediate.
fn issue_dev_cert(d: &Path, extra: &[&str]) {
    let mut args = vec![
        "ca",
        "issue",
        "--ca",
        "int",
        "--pub",
        "dev.pub",
        "--subject",
        "Test Developer",
        "-o",
        "dev.cert",
    ];
    args.extend_from_slice(extra);
    ok(d, &args);
}
