//! Holding a lock as another user, for the integration tests (`common`) and the crate's unit
//! tests (`src/test_support.rs`), which include this file by `#[path]`: test crates are
//! separate crates and cannot share a module any other way without a support crate.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Start `sh -c 'exec 3<LOCK && flock -s 3 …'` (`-x` when `exclusive`) as `uid`:`gid` in `cwd`:
/// what any user who can open a file or directory, even read-only, does to hold a lock on it
/// for ever (`flock -s FILE sleep infinity`). Whether it holds the lock (it says so once it
/// does), and the process, ended when dropped (also when the test fails while it holds it).
pub fn hold_lock_as(cwd: &Path, uid: u32, gid: u32, lock: &str, exclusive: bool) -> (bool, Holder) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let how = if exclusive { "-x" } else { "-s" };
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!("exec 3<{lock} && flock {how} 3 && echo held && exec sleep 100000"),
        ])
        .current_dir(cwd)
        .uid(uid)
        .gid(gid)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // Either "held", or nothing (EOF): the open or the flock failed and the shell exited.
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (line.trim() == "held", Holder(child))
}

/// A process of [`hold_lock_as`], killed and reaped when dropped.
pub struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
