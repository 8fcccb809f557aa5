//! Everything the benchmark launches, made once per run in a throwaway directory: the static
//! plugin, a trust root, the signed package, a policy, a runc bundle and the packages of the
//! verification benchmark. All of it through the real `stockade` CLI, as a user would.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;

/// Errors are strings here: a fixture step that fails ends the benchmark with its message.
pub type Result<T> = std::result::Result<T, String>;

/// The prepared directory.
pub struct Fixture {
    /// Keeps the directory alive.
    _dir: Option<TempDir>,
    /// The directory's path.
    pub root: PathBuf,
    /// The `stockade` binary under test.
    pub stockade: PathBuf,
    /// Directory holding the static plugin as `entrypoint` (+ its manifest).
    pub plugin_dir: PathBuf,
    /// The signed package of that directory.
    pub package: PathBuf,
    /// Trust directory (the throwaway root's public key and revocation list).
    pub trust: PathBuf,
    /// State directory for the runtime.
    pub state: PathBuf,
    /// Policy for `stockade run`: frames large enough for 64 KiB payloads echoed back.
    pub policy: PathBuf,
    /// The same policy with `trust.keep_trees = 0`.
    pub policy_no_trees: PathBuf,
    /// An OCI bundle whose rootfs holds only the plugin.
    pub runc_bundle: PathBuf,
}

/// Runs a command, returning an error with its stderr when it fails.
pub fn sh(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

impl Fixture {
    /// Builds the fixture. `src` is the directory holding `bench-plugin.c` and `manifest.json`.
    pub fn build(stockade: &Path, src: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("stockade-bench.")
            // Under /tmp: firejail refuses to run programs from /var/tmp.
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let root = dir.path().to_path_buf();
        // The plugin's uid must be able to reach the package and the runc rootfs.
        set_mode(&root, 0o755)?;
        let plugin_dir = root.join("plugin");
        fs::create_dir(&plugin_dir).map_err(|e| e.to_string())?;
        let entry = plugin_dir.join("entrypoint");
        sh(Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&entry)
            .arg(src.join("bench-plugin.c")))?;
        fs::copy(src.join("manifest.json"), plugin_dir.join("manifest.json"))
            .map_err(|e| e.to_string())?;

        let f = Self {
            stockade: stockade.to_path_buf(),
            package: root.join("bench-0.1.0.stockade"),
            trust: root.join("trust"),
            state: root.join("state"),
            policy: root.join("policy.toml"),
            policy_no_trees: root.join("policy-no-trees.toml"),
            runc_bundle: root.join("bundle"),
            plugin_dir,
            root,
            _dir: Some(dir),
        };
        f.trust_root()?;
        f.pack(&f.plugin_dir, &f.package)?;
        let policy = "version = 1\n\n[protocol]\nmax_frame_bytes = 262144\ndefault_deadline_ms = 10000\nmax_in_flight = 512\n";
        fs::write(&f.policy, policy).map_err(|e| e.to_string())?;
        // The same with no tree kept between runs: every run extracts, as a package's first does.
        fs::write(
            &f.policy_no_trees,
            format!("{policy}\n[trust]\nkeep_trees = 0\n"),
        )
        .map_err(|e| e.to_string())?;
        f.runc_bundle()?;
        Ok(f)
    }

    fn stockade(&self) -> Command {
        let mut c = Command::new(&self.stockade);
        c.stderr(Stdio::piped());
        c
    }

    fn trust_root(&self) -> Result<()> {
        let r = &self.root;
        sh(self
            .stockade()
            .arg("ca")
            .arg("init")
            .arg("-o")
            .arg(r.join("root")))?;
        sh(self
            .stockade()
            .args(["ca", "init", "-o"])
            .arg(r.join("int"))
            .arg("--parent")
            .arg(r.join("root")))?;
        sh(self.stockade().args(["keygen", "-o"]).arg(r.join("dev")))?;
        sh(self
            .stockade()
            .args(["ca", "issue", "--ca"])
            .arg(r.join("int"))
            .arg("--pub")
            .arg(r.join("dev.pub"))
            .args(["--scope", "any", "-o"])
            .arg(r.join("dev.cert")))?;
        fs::create_dir(&self.trust).map_err(|e| e.to_string())?;
        fs::copy(r.join("root/ca.pub"), self.trust.join("bench-root.pub"))
            .map_err(|e| e.to_string())?;
        sh(self
            .stockade()
            .args(["ca", "revoke", "--ca"])
            .arg(r.join("root"))
            .arg("-o")
            .arg(self.trust.join("revocations.json")))?;
        Ok(())
    }

    /// Packs and signs `dir` into `out`.
    pub fn pack(&self, dir: &Path, out: &Path) -> Result<()> {
        let r = &self.root;
        sh(self
            .stockade()
            .arg("pack")
            .arg(dir)
            .arg("--key")
            .arg(r.join("dev.key"))
            .arg("--devcert")
            .arg(r.join("dev.cert"))
            .arg("--intcert")
            .arg(r.join("int/ca.cert"))
            .arg("-o")
            .arg(out))?;
        Ok(())
    }

    /// A package of the plugin plus `bytes` of random data, for the verification benchmark.
    pub fn package_with_filler(&self, bytes: usize) -> Result<PathBuf> {
        let dir = self.root.join(format!("filler-{bytes}"));
        fs::create_dir(&dir).map_err(|e| e.to_string())?;
        fs::copy(
            self.plugin_dir.join("manifest.json"),
            dir.join("manifest.json"),
        )
        .map_err(|e| e.to_string())?;
        fs::copy(self.plugin_dir.join("entrypoint"), dir.join("entrypoint"))
            .map_err(|e| e.to_string())?;
        let mut data = vec![0u8; bytes];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut data))
            .map_err(|e| e.to_string())?;
        // In files of at most 32 MiB: the packer caps a single file at 64 MiB.
        for (i, chunk) in data.chunks(32 << 20).enumerate() {
            fs::File::create(dir.join(format!("filler-{i}.bin")))
                .and_then(|mut f| f.write_all(chunk))
                .map_err(|e| e.to_string())?;
        }
        let out = self.root.join(format!("filler-{bytes}.stockade"));
        self.pack(&dir, &out)?;
        Ok(out)
    }

    /// A package of the plugin under another name, registered for `hook` (the plugin reads both
    /// from its manifest), for loading many plugins into one `stockade serve`.
    pub fn package_named(&self, name: &str, hook: &str) -> Result<PathBuf> {
        let dir = self.root.join(format!("named-{name}"));
        fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let text =
            fs::read_to_string(self.plugin_dir.join("manifest.json")).map_err(|e| e.to_string())?;
        let mut m: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        m["name"] = name.into();
        m["hooks"] = serde_json::json!([hook]);
        fs::write(dir.join("manifest.json"), m.to_string()).map_err(|e| e.to_string())?;
        fs::copy(self.plugin_dir.join("entrypoint"), dir.join("entrypoint"))
            .map_err(|e| e.to_string())?;
        let out = self.root.join(format!("{name}.stockade"));
        self.pack(&dir, &out)?;
        Ok(out)
    }

    /// `stockade run PKG …` arguments for this fixture, under `policy` (one of its own).
    pub fn run_args(&self, package: &Path, policy: &Path) -> Vec<OsString> {
        vec![
            "run".into(),
            package.into(),
            "--trust".into(),
            self.trust.clone().into(),
            "--state-dir".into(),
            self.state.clone().into(),
            "--policy".into(),
            policy.into(),
        ]
    }

    /// Leave the fixture's directory in place when the fixture is dropped (for profiling by
    /// hand what the harness printed).
    pub fn keep(mut self) {
        if let Some(d) = self._dir.take() {
            let _ = d.keep();
        }
    }

    /// `stockade verify PKG …` arguments.
    pub fn verify_args(&self, package: &Path) -> Vec<OsString> {
        vec![
            "verify".into(),
            package.into(),
            "--trust".into(),
            self.trust.clone().into(),
            "--state-dir".into(),
            self.state.clone().into(),
        ]
    }

    /// An OCI bundle (read-only rootfs with only the plugin, no terminal) for `runc run`.
    fn runc_bundle(&self) -> Result<()> {
        let rootfs = self.runc_bundle.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(|e| e.to_string())?;
        fs::copy(self.plugin_dir.join("entrypoint"), rootfs.join("plugin"))
            .map_err(|e| e.to_string())?;
        if which("runc").is_none() {
            return Ok(());
        }
        sh(Command::new("runc")
            .arg("spec")
            .current_dir(&self.runc_bundle))?;
        let path = self.runc_bundle.join("config.json");
        let text = fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut spec: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/plugin"]);
        spec["root"]["readonly"] = true.into();
        fs::write(&path, spec.to_string()).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

/// The full path of `prog` on PATH, if it is there.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}
