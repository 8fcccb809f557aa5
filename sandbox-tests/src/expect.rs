//! Expectations derived from the sandbox policy under test.
//!
//! The battery and the posture check read the policy with `stockade-policy`'s own parser and
//! defaults, so that they never restate a default (which would drift): the fork bomb must stop
//! at `pids_max`, the CPU bomb at the quota, `/proc/PID/limits` must show the policy's rlimits,
//! the plugin uid must come from the policy's range. Bomb caps are raised above the policy's
//! limits so that the native control (reaching the cap) really exceeds what the sandbox allows.

use std::path::Path;

use stockade_policy::sandbox::{
    default_policy, parse_policy, CpuQuota, Limit, ValidatedSandboxPolicy, MAX_POLICY_BYTES,
};

use crate::fixtures::BombCaps;
use crate::posture;
use crate::rules;

const MIB: u64 = 1 << 20;

/// The policy at `path`, or the built-in default policy.
pub fn load(path: Option<&Path>) -> Result<ValidatedSandboxPolicy, String> {
    let Some(path) = path else {
        return Ok(default_policy());
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("policy {}: {e}", path.display()))?;
    if meta.len() > u64::try_from(MAX_POLICY_BYTES).unwrap_or(u64::MAX) {
        return Err(format!(
            "policy {}: larger than {MAX_POLICY_BYTES} bytes",
            path.display()
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("policy {}: {e}", path.display()))?;
    parse_policy(&text).map_err(|e| format!("policy {}: {e}", path.display()))
}

/// Twice the limit, at least `floor`, at most `ceiling` (a host-safe bound for the native run).
fn above(limit: Limit, unit: u64, floor: u64, ceiling: u64) -> u64 {
    match limit.max() {
        Some(n) => (n.div_ceil(unit).saturating_mul(2)).clamp(floor, ceiling.max(floor)),
        None => floor,
    }
}

/// Bomb caps above the policy's limits.
pub fn bomb_caps(p: &ValidatedSandboxPolicy) -> BombCaps {
    let d = BombCaps::default();
    let r = &p.resources;
    let procs = match (r.pids_max.max(), r.nproc.max()) {
        (Some(a), Some(b)) => Limit::Max(a.min(b)),
        (Some(a), None) | (None, Some(a)) => Limit::Max(a),
        (None, None) => Limit::Unlimited,
    };
    let file = match (r.fsize.max(), p.tmp_size) {
        (Some(f), t) => Limit::Max(f.min(t)),
        (None, t) => Limit::Max(t),
    };
    BombCaps {
        mem_mb: above(r.memory_max, MIB, d.mem_mb, 4096),
        fork_max: above(procs, 1, d.fork_max, 4096),
        fd_max: above(r.nofile, 1, d.fd_max, 16_384),
        fsize_mb: above(file, MIB, d.fsize_mb, 2048),
        inode_max: above(Limit::Max(p.tmp_inodes), 1, d.inode_max, 200_000),
        cpu_max: cpu_max(r.cpu_max).unwrap_or(d.cpu_max),
    }
}

/// The CPU share above which the CPU bomb escaped: the quota plus 10 % for CFS period slack.
pub fn cpu_max(q: CpuQuota) -> Option<f64> {
    match q {
        CpuQuota::Millicores(m) => {
            let m = u32::try_from(m).ok()?;
            Some(f64::from(m) / 1000.0 * 1.1)
        }
        CpuQuota::Unlimited => None,
    }
}

/// What the battery checks beyond "blocked".
pub fn battery(p: &ValidatedSandboxPolicy) -> rules::Expected {
    rules::Expected {
        pids: p.resources.pids_max.max(),
    }
}

fn limit_text(l: Limit) -> String {
    l.max()
        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// The posture a process under this policy must show.
pub fn posture(p: &ValidatedSandboxPolicy) -> posture::Expected {
    let r = &p.resources;
    let rows = [
        ("Max open files", r.nofile),
        ("Max processes", r.nproc),
        ("Max file size", r.fsize),
        // `core = 0` is set as 1 byte: the value a pipe core_pattern honours (it aborts the
        // dump where it ignores 0); below any core file's size (review-137).
        (
            "Max core file size",
            if r.core == Limit::Max(0) {
                Limit::Max(1)
            } else {
                r.core
            },
        ),
        ("Max locked memory", r.memlock),
        ("Max cpu time", r.cpu_time_secs),
        (
            "Max pending signals",
            Limit::Max(stockade_policy::sandbox::SIGPENDING),
        ),
        // No policy key sets these: the runtime's values, whoever started it (the stack's is
        // the runner's hard limit where that is below 8 MiB; not so under the matrix's root).
        (
            "Max stack size",
            Limit::Max(stockade_policy::sandbox::STACK),
        ),
        ("Max msgqueue size", Limit::Max(0)),
        ("Max nice priority", Limit::Max(0)),
        ("Max realtime priority", Limit::Max(0)),
    ];
    posture::Expected {
        uid: None,
        gid: None,
        id_range: Some((p.uid_first, p.uid_first.saturating_add(p.uid_count))),
        limits: rows
            .iter()
            .map(|(name, l)| ((*name).to_owned(), limit_text(*l), limit_text(*l)))
            .collect(),
        own_cgroup: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_expectations_exceed_its_limits() {
        let p = default_policy();
        let caps = bomb_caps(&p);
        let r = &p.resources;
        assert!(caps.fork_max > r.pids_max.max().unwrap_or(0));
        assert!(caps.mem_mb * MIB > r.memory_max.max().unwrap_or(0));
        assert!(caps.fd_max > r.nofile.max().unwrap_or(0));
        assert!(caps.inode_max > p.tmp_inodes);
        assert!(caps.fsize_mb * MIB > p.tmp_size);
        assert_eq!(battery(&p).pids, r.pids_max.max());
        let post = posture(&p);
        assert_eq!(post.limits.len(), 11);
        assert!(post
            .limits
            .iter()
            .any(|(n, s, h)| n == "Max core file size" && s == "1" && h == "1"));
    }

    #[test]
    fn a_policy_file_is_parsed_with_the_real_parser() {
        let dir = std::env::temp_dir().join(format!("stockade-expect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let f = dir.join("p.toml");
        std::fs::write(
            &f,
            "version = 1\n[resources]\npids_max = 32\ncpu_max = \"50%\"\n",
        )
        .expect("write");
        let p = load(Some(&f)).expect("valid policy");
        assert_eq!(battery(&p).pids, Some(32));
        let cpu = bomb_caps(&p).cpu_max;
        assert!((cpu - 0.55).abs() < 1e-9, "{cpu}");
        std::fs::write(&f, "version = 1\nbogus = 1\n").expect("write");
        assert!(load(Some(&f)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
