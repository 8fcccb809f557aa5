//! The host-side fixtures the probes aim at: listeners, a secret fd, a host process to signal
//! and ptrace, a marker for survivors. Natively the probes reach every one of them (that is
//! the control); inside the sandbox none must be reachable.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// Caps that bound the bombs (natively they run to the cap, so keep them host-safe).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BombCaps {
    /// Memory bomb cap in MiB.
    pub mem_mb: u64,
    /// Fork bomb cap (processes).
    pub fork_max: u64,
    /// Fd bomb cap.
    pub fd_max: u64,
    /// File-size bomb cap in MiB.
    pub fsize_mb: u64,
    /// tmpfs inode bomb cap (files).
    pub inode_max: u64,
    /// CPU share above which the CPU bomb escaped its quota.
    pub cpu_max: f64,
}

impl Default for BombCaps {
    fn default() -> Self {
        BombCaps {
            mem_mb: 1024,
            fork_max: 1024,
            fd_max: 8192,
            fsize_mb: 256,
            inode_max: 20_000,
            // the default policy's quota is one CPU; 10 % margin for CFS period slack
            cpu_max: 1.1,
        }
    }
}

/// Everything set up before the first probe; dropped (and cleaned) after the last.
pub struct Fixtures {
    _tcp4: Option<TcpListener>,
    _tcp6: Option<TcpListener>,
    _udp4: Option<UdpSocket>,
    _abstract: UnixListener,
    _path: UnixListener,
    // held open (inheritable) for the whole run: the probes aim at it
    _secret_file: File,
    sibling: Child,
    dir: PathBuf,
    pid_path: PathBuf,
    params: Vec<String>,
    /// The survival marker (in every probe's argv).
    pub marker: String,
}

fn io(what: &str, e: impl std::fmt::Display) -> String {
    format!("fixture {what}: {e}")
}

impl Fixtures {
    /// Set up the fixtures. `probe` is the probe binary (the sibling is `probe fixture-sleeper`).
    pub fn new(probe: &Path, caps: BombCaps) -> Result<Self, String> {
        let me = std::process::id();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let tag = format!("stockade-battery-{me}-{nonce}");
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).map_err(|e| io("dir", e))?;

        // Loopback may be down or lack ::1 in a minimal VM: the probe aimed at a missing
        // listener then reports a probe error (a failure with its reason), the rest still runs.
        let tcp4 = TcpListener::bind("127.0.0.1:0").ok();
        let tcp6 = TcpListener::bind("[::1]:0").ok();
        let udp4 = UdpSocket::bind("127.0.0.1:0").ok();
        let abstract_name = format!("{tag}-abstract");
        let addr = SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .map_err(|e| io("abstract name", e))?;
        let abs = UnixListener::bind_addr(&addr).map_err(|e| io("abstract listener", e))?;
        let sock_path = dir.join("sock");
        let path = UnixListener::bind(&sock_path).map_err(|e| io("unix listener", e))?;

        // The secret fd is deliberately inheritable: the runtime must close it.
        let secret = format!("secret-{nonce}");
        let secret_path = dir.join("secret");
        let mut f = File::create(&secret_path).map_err(|e| io("secret", e))?;
        f.write_all(secret.as_bytes())
            .map_err(|e| io("secret", e))?;
        let secret_file = File::open(&secret_path).map_err(|e| io("secret", e))?;
        fcntl(&secret_file, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| io("secret fd", e))?;

        // SysV IPC keys are global to an IPC namespace: derive one from our pid.
        let msg_key = 0x5354_0000 | (me & 0xffff);
        let sibling = Command::new(probe)
            .arg("fixture-sleeper")
            .arg(format!("msg_key={msg_key}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| io("sibling", e))?;

        let start = crate::host::own_start_time().ok_or_else(|| io("start time", "unreadable"))?;
        let marker = format!("{tag}-marker");
        let mut params = vec![
            format!("harness={me}"),
            format!("harness_start={start}"),
            format!("sibling={}", sibling.id()),
            format!("msg_key={msg_key}"),
            format!("secret_fd={}", secret_file.as_raw_fd()),
            format!("secret={secret}"),
            format!("abstract={abstract_name}"),
            format!("unix={}", sock_path.display()),
            format!("marker={marker}"),
            format!("mem_mb={}", caps.mem_mb),
            format!("fork_max={}", caps.fork_max),
            format!("fd_max={}", caps.fd_max),
            format!("fsize_mb={}", caps.fsize_mb),
            format!("inode_max={}", caps.inode_max),
            format!("cpu_max={}", caps.cpu_max),
        ];
        for (key, addr) in [
            ("port4", tcp4.as_ref().and_then(|l| l.local_addr().ok())),
            ("port6", tcp6.as_ref().and_then(|l| l.local_addr().ok())),
            ("udp4", udp4.as_ref().and_then(|l| l.local_addr().ok())),
        ] {
            if let Some(a) = addr {
                params.push(format!("{key}={}", a.port()));
            }
        }
        Ok(Fixtures {
            _tcp4: tcp4,
            _tcp6: tcp6,
            _udp4: udp4,
            _abstract: abs,
            _path: path,
            _secret_file: secret_file,
            sibling,
            dir,
            // in the world-writable temp dir: a rootless `stockade exec` must be able to write it
            pid_path: std::env::temp_dir().join(format!("{tag}.pid")),
            params,
            marker,
        })
    }

    /// The `key=value` arguments every probe gets.
    pub fn probe_args(&self) -> Vec<OsString> {
        self.params.iter().map(OsString::from).collect()
    }

    /// Whether the sibling fixture is still alive (a probe must not have killed it).
    pub fn sibling_alive(&mut self) -> bool {
        matches!(self.sibling.try_wait(), Ok(None))
    }

    /// Where `stockade exec --pid-file` writes the sandboxed probe's host pid.
    pub fn pid_file(&self) -> PathBuf {
        self.pid_path.clone()
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        // SIGTERM: the fixture removes its message queue before exiting
        if let Ok(pid) = i32::try_from(self.sibling.id()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM);
        }
        for _ in 0..50 {
            if !matches!(self.sibling.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.sibling.kill();
        let _ = self.sibling.wait();
        crate::host::reap_marked(&self.marker);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.pid_path);
    }
}
