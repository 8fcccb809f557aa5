//! Host-side observations: processes carrying a marker, a process's start time, whether the
//! host can still fork.

use std::fs;
use std::path::Path;

/// Pids of every process (other than us) whose command line contains `marker`.
pub fn processes_with_marker(marker: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| u32::try_from(pid).is_ok_and(|p| p != me))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect();
    found.sort_unstable();
    found
}

/// SIGKILL each pid (best effort).
pub fn kill_all(pids: &[i32]) {
    for &p in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
    }
}

/// Find marked processes, kill them, and wait until they are gone (bounded). Returns how many
/// were found.
pub fn reap_marked(marker: &str) -> usize {
    let found = processes_with_marker(marker);
    kill_all(&found);
    for _ in 0..100 {
        if processes_with_marker(marker).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    found.len()
}

/// Field 22 (start time in clock ticks) of a `/proc/PID/stat` text.
pub fn start_time_of(stat: &str) -> Option<u64> {
    // the command name (field 2) may contain spaces and parentheses: count after the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Our own start time.
pub fn own_start_time() -> Option<u64> {
    start_time_of(&fs::read_to_string("/proc/self/stat").ok()?)
}

/// Whether the host can still create a process (run `probe --list`).
pub fn can_fork(probe: &Path) -> Result<(), String> {
    match std::process::Command::new(probe).arg("--list").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{} --list exited with {}",
            probe.display(),
            o.status
        )),
        Err(e) => Err(format!("cannot spawn {}: {e}", probe.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_odd_command_names() {
        let stat = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time_of(stat), Some(987_654));
        assert_eq!(start_time_of("garbage"), None);
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(own_start_time().is_some());
    }
}
