//! The rlimits of a sandbox: which the init sets (soft = hard, in [`super::child`]): the
//! policy's ([`list`]) and every other one at a value of the runtime's ([`fixed`]); and whether this process can hand them down at all ([`Ceilings`]).
//!
//! ## Why a policy can ask for a limit no launch can set
//! The init sets each limit in its own user namespace. Lowering a hard limit is always allowed;
//! raising one needs `CAP_SYS_RESOURCE` in the *initial* user namespace, which a process in a
//! new one never has — even when the runtime is root. So every value's ceiling is the runtime's
//! own hard limit (the init inherits it), and `RLIMIT_NOFILE` can in any case not exceed
//! `fs.nr_open`. Under systemd's defaults the service's hard limits are 524288 descriptors and
//! 8 MiB of locked memory (the kernel's own default since 5.16), so `memlock = "unlimited"`
//! fails unless the unit says `LimitMEMLOCK=infinity`.
//!
//! [`Ceilings::check`] compares a policy with these ceilings when the policy is loaded
//! (`policyfiles::load`): such a value is then an invalid policy naming its file:line (65),
//! before anything launches, instead of a launch that fails at the rlimits step (125). The
//! ceilings are read from the process that loads the policy, which for `exec`, `run` and
//! `serve` is the one that launches.

use crate::sys;
use stockade_policy::sandbox::{default_policy, Limit, Resources, SIGPENDING, STACK};

/// One rlimit the sandbox sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// `RLIMIT_*`.
    pub resource: libc::__rlimit_resource_t,
    /// The kernel's name, for messages (`RLIMIT_MEMLOCK`).
    pub kernel_name: &'static str,
    /// The name in the launch report's `rlimits` layer.
    pub report_name: &'static str,
    /// The policy key that sets it.
    pub key: &'static str,
    /// How to raise the runtime's hard limit: the systemd directive and the `ulimit -H` flag.
    pub raise_with: (&'static str, &'static str),
    /// Counted in bytes (shown with a K/M/G/T suffix when exact).
    pub bytes: bool,
    /// The policy's value.
    pub limit: Limit,
}

/// Every rlimit the sandbox's init sets, in order, with the policy's values.
pub fn list(r: &Resources) -> [Rlimit; 6] {
    let rl = |resource, kernel_name, report_name, key, raise_with, bytes, limit| Rlimit {
        resource,
        kernel_name,
        report_name,
        key,
        raise_with,
        bytes,
        limit,
    };
    [
        rl(
            libc::RLIMIT_NOFILE,
            "RLIMIT_NOFILE",
            "nofile",
            "resources.nofile",
            ("LimitNOFILE", "-Hn"),
            false,
            r.nofile,
        ),
        rl(
            libc::RLIMIT_NPROC,
            "RLIMIT_NPROC",
            "nproc",
            "resources.nproc",
            ("LimitNPROC", "-Hu"),
            false,
            r.nproc,
        ),
        rl(
            libc::RLIMIT_FSIZE,
            "RLIMIT_FSIZE",
            "fsize",
            "resources.fsize",
            ("LimitFSIZE", "-Hf"),
            true,
            r.fsize,
        ),
        rl(
            libc::RLIMIT_CORE,
            "RLIMIT_CORE",
            "core",
            "resources.core",
            ("LimitCORE", "-Hc"),
            true,
            r.core,
        ),
        rl(
            libc::RLIMIT_MEMLOCK,
            "RLIMIT_MEMLOCK",
            "memlock",
            "resources.memlock",
            ("LimitMEMLOCK", "-Hl"),
            true,
            r.memlock,
        ),
        rl(
            libc::RLIMIT_CPU,
            "RLIMIT_CPU",
            "cpu",
            "resources.cpu_time_secs",
            ("LimitCPU", "-Ht"),
            false,
            r.cpu_time_secs,
        ),
    ]
}

/// A limit no policy key names, which the init sets all the same (soft = hard), so that the
/// runtime's caller's — a unit's `LimitSTACK=`, `ulimit -s unlimited`, `prlimit` — never
/// reaches the program ([`fixed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    /// `RLIMIT_*`.
    pub resource: libc::__rlimit_resource_t,
    /// The name in the launch report's `rlimits` layer.
    pub report_name: &'static str,
    /// The value wanted (`RLIM_INFINITY`: unlimited), before [`bounded`].
    pub value: u64,
}

/// Every rlimit the init sets that no policy key names, in order, with its value; `data_limit`
/// is `memory_max` where no memory cgroup enforces it. Each value is the same whoever started
/// the runtime, but never above the runtime's own hard limit ([`bounded`]).
///
/// - `sigpending` [`SIGPENDING`] (128): the runtime's would let a plugin queue signals up to
///   the host user's whole allowance, on which every `sigqueue` to that user's processes counts.
/// - `nice`, `rtprio` 0: no priority above the one the program starts with (a caller's
///   `LimitNICE=` would let it `setpriority` below 0; `@process` allows the call).
/// - `stack` 8 MiB ([`STACK`]): the kernel's default. Bounded (soft = hard) so that neither a
///   caller's `ulimit -s unlimited` — which also switches the kernel to the legacy bottom-up
///   mmap layout — nor a caller's small one decides a plugin's stack.
/// - `as` unlimited: the memory cgroup (or `data`, below) bounds memory; an address-space limit
///   only breaks programs that reserve large ranges they never touch (Go, JVMs, sanitizers).
/// - `data` unlimited where the memory cgroup bounds memory, else `memory_max` (the fallback).
/// - `locks`, `rss` unlimited: the kernel's defaults, enforced by no kernel since 2.4.25 and
///   2.4.30; set so that the report shows every limit.
/// - `msgqueue` 0: no POSIX message queue can be created (`mq_open` is refused anyway); the
///   runtime's allowance is the host user's, shared with the host's own processes.
/// - `rttime` unlimited, the kernel's default: it bounds only real-time tasks, and the program
///   can be none (`rtprio` 0, the runtime's real-time policy left: process_state.rs), so a
///   value of ours would be one more number to explain that limits nothing.
pub fn fixed(data_limit: Option<u64>) -> [Fixed; 10] {
    let inf = libc::RLIM_INFINITY;
    let f = |resource, report_name, value| Fixed {
        resource,
        report_name,
        value,
    };
    [
        f(libc::RLIMIT_SIGPENDING, "sigpending", SIGPENDING),
        f(libc::RLIMIT_NICE, "nice", 0),
        f(libc::RLIMIT_RTPRIO, "rtprio", 0),
        f(libc::RLIMIT_STACK, "stack", STACK),
        f(libc::RLIMIT_AS, "as", inf),
        f(libc::RLIMIT_DATA, "data", data_limit.unwrap_or(inf)),
        f(libc::RLIMIT_LOCKS, "locks", inf),
        f(libc::RLIMIT_RSS, "rss", inf),
        f(libc::RLIMIT_MSGQUEUE, "msgqueue", 0),
        f(libc::RLIMIT_RTTIME, "rttime", inf),
    ]
}

/// What a sandbox can be given of `wanted`: never more than `inherited_hard`, the runtime's hard
/// limit, which the init inherits and cannot raise (no `CAP_SYS_RESOURCE` in the host's user
/// namespace, root mode included). Lowering is always allowed, so a caller's lower limit is
/// kept rather than the launch refused.
pub fn bounded(wanted: u64, inherited_hard: u64) -> u64 {
    wanted.min(inherited_hard)
}

/// `n` as a report's limit.
pub fn as_limit(n: u64) -> Limit {
    if n == libc::RLIM_INFINITY {
        Limit::Unlimited
    } else {
        Limit::Max(n)
    }
}

/// The value `setrlimit` gets for a limit.
pub fn raw(l: Limit) -> u64 {
    l.max().unwrap_or(libc::RLIM_INFINITY)
}

/// What the init sets `RLIMIT_CORE` to for `core = 0`: one byte, not zero. A host whose
/// `kernel.core_pattern` is a pipe (`|/usr/lib/systemd/systemd-coredump …`, apport) ignores
/// `RLIMIT_CORE` for the dump — 0 included: the helper gets the whole core, memory the policy
/// said never leaves the sandbox — except the value 1, for which the kernel aborts a pipe dump
/// (fs/coredump.c, "RLIMIT_CORE is set to 1, aborting core"). For a core *file* 1 byte is below
/// any format's smallest dump (a page for ELF), so none is written either: 1 means "no core"
/// whatever the core_pattern. Any other value is set as the policy says.
pub const NO_CORE: u64 = 1;

/// The value the init sets for `rl`, within `hard` (the hard limit it inherits and cannot
/// raise): the policy's ([`raw`]), except `core = 0`, set as [`NO_CORE`] — or 0 still when
/// the runtime's own hard limit is 0, the best a sandbox can then do.
pub fn applied(rl: &Rlimit, hard: u64) -> u64 {
    match (rl.resource, rl.limit) {
        (libc::RLIMIT_CORE, Limit::Max(0)) => bounded(NO_CORE, hard),
        _ => raw(rl.limit),
    }
}

/// Why a policy's rlimit can never be set by a sandbox this process launches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RlimitError {
    /// Above the runtime's own hard limit, which a sandbox cannot raise.
    #[error(
        "{resource} {value} is above this process's hard limit ({hard}), which a sandbox \
         cannot raise (it has no CAP_SYS_RESOURCE in the host's user namespace): lower the \
         value, or raise the runtime's hard limit ({directive}= of stockade.service, \
         `ulimit {flag}`)"
    )]
    AboveHardLimit {
        /// The policy key.
        key: &'static str,
        /// `RLIMIT_*`.
        resource: &'static str,
        /// The policy's value, as shown.
        value: String,
        /// The hard limit, as shown.
        hard: String,
        /// The systemd directive that raises it.
        directive: &'static str,
        /// The `ulimit` flag that raises it.
        flag: &'static str,
    },
    /// Above `fs.nr_open`, which caps every process's descriptors.
    #[error(
        "RLIMIT_NOFILE {value} is above fs.nr_open ({nr_open}), the most descriptors the \
         kernel lets any process have"
    )]
    AboveNrOpen {
        /// The policy's value.
        value: u64,
        /// `/proc/sys/fs/nr_open`.
        nr_open: u64,
    },
}

impl RlimitError {
    /// The policy key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            RlimitError::AboveHardLimit { key, .. } => key,
            RlimitError::AboveNrOpen { .. } => "resources.nofile",
        }
    }
}

fn show(n: u64, bytes: bool) -> String {
    if n == libc::RLIM_INFINITY {
        return "unlimited".into();
    }
    if bytes {
        for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if n != 0 && n % (1 << shift) == 0 {
                return format!("{}{suffix}", n >> shift);
            }
        }
    }
    n.to_string()
}

/// What a sandbox launched by this process can be given: its hard limits, and `fs.nr_open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceilings {
    /// `(resource, hard limit)`; a resource whose limit could not be read is not checked (the
    /// launch still reports a failure at its step).
    pub hard: Vec<(libc::__rlimit_resource_t, u64)>,
    /// `/proc/sys/fs/nr_open`, when readable.
    pub nr_open: Option<u64>,
}

impl Ceilings {
    /// This process's.
    pub fn of_this_process() -> Self {
        let hard = list(&default_policy().resources)
            .iter()
            .filter_map(|r| sys::hard_rlimit(r.resource).ok().map(|h| (r.resource, h)))
            .collect();
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Ceilings { hard, nr_open }
    }

    /// The first of the policy's rlimits a sandbox launched under these ceilings cannot set.
    pub fn check(&self, r: &Resources) -> Result<(), RlimitError> {
        for rl in list(r) {
            let value = raw(rl.limit);
            if rl.resource == libc::RLIMIT_NOFILE {
                if let Some(nr_open) = self.nr_open.filter(|n| value > *n) {
                    return Err(RlimitError::AboveNrOpen { value, nr_open });
                }
            }
            let hard = self.hard.iter().find(|(res, _)| *res == rl.resource);
            if let Some(&(_, hard)) = hard.filter(|(_, h)| value > *h) {
                return Err(RlimitError::AboveHardLimit {
                    key: rl.key,
                    resource: rl.kernel_name,
                    value: show(value, rl.bytes),
                    hard: show(hard, rl.bytes),
                    directive: rl.raise_with.0,
                    flag: rl.raise_with.1,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_policy::sandbox::parse_policy;

    /// review-137: `core = 0` is set as 1 byte, which a pipe core_pattern honours (it aborts
    /// the dump) where it ignores 0; within a hard limit of 0 it stays 0; other values as set.
    #[test]
    fn core_zero_is_applied_as_one_byte() {
        let p = parse_policy("version = 1\n[resources]\ncore = 0\n").unwrap();
        let core = |p: &stockade_policy::sandbox::ValidatedSandboxPolicy| {
            list(&p.resources)
                .into_iter()
                .find(|r| r.resource == libc::RLIMIT_CORE)
                .unwrap()
        };
        assert_eq!(applied(&core(&p), libc::RLIM_INFINITY), 1);
        assert_eq!(applied(&core(&p), 0), 0);
        let p = parse_policy("version = 1\n[resources]\ncore = \"1M\"\n").unwrap();
        assert_eq!(applied(&core(&p), libc::RLIM_INFINITY), 1 << 20);
        for rl in list(&default_policy().resources) {
            if rl.resource != libc::RLIMIT_CORE {
                assert_eq!(
                    applied(&rl, libc::RLIM_INFINITY),
                    raw(rl.limit),
                    "{}",
                    rl.key
                );
            }
        }
    }

    /// systemd's defaults for a service: 524288 descriptors, 8 MiB locked, the rest unlimited.
    fn systemd_like() -> Ceilings {
        let inf = libc::RLIM_INFINITY;
        Ceilings {
            hard: vec![
                (libc::RLIMIT_NOFILE, 524_288),
                (libc::RLIMIT_NPROC, 63_000),
                (libc::RLIMIT_FSIZE, inf),
                (libc::RLIMIT_CORE, inf),
                (libc::RLIMIT_MEMLOCK, 8 << 20),
                (libc::RLIMIT_CPU, inf),
            ],
            nr_open: Some(1 << 20),
        }
    }

    fn res(kv: &str) -> Resources {
        parse_policy(&format!("version = 1\n[resources]\n{kv}\n"))
            .unwrap()
            .resources
    }

    #[test]
    fn the_default_policy_fits_and_each_rlimit_is_checked_against_its_own_ceiling() {
        let c = systemd_like();
        assert_eq!(c.check(&default_policy().resources), Ok(()));
        assert_eq!(
            c.check(&res("memlock = \"8M\"\ncore = \"unlimited\"")),
            Ok(())
        );
        let e = c.check(&res("memlock = \"unlimited\"")).unwrap_err();
        assert_eq!(e.key(), "resources.memlock");
        assert_eq!(
            e.to_string(),
            "RLIMIT_MEMLOCK unlimited is above this process's hard limit (8M), which a sandbox \
             cannot raise (it has no CAP_SYS_RESOURCE in the host's user namespace): lower the \
             value, or raise the runtime's hard limit (LimitMEMLOCK= of stockade.service, \
             `ulimit -Hl`)"
        );
        let e = c.check(&res("nproc = 63001")).unwrap_err();
        assert_eq!(e.key(), "resources.nproc");
        let e = c.check(&res("nofile = 600000")).unwrap_err();
        assert_eq!(e.key(), "resources.nofile");
        assert!(e.to_string().contains("(524288)"), "{e}");
        // fs.nr_open binds even a process whose hard limit is higher.
        let c = Ceilings {
            hard: vec![(libc::RLIMIT_NOFILE, libc::RLIM_INFINITY)],
            nr_open: Some(1 << 20),
        };
        assert_eq!(
            c.check(&res("nofile = 1048577")),
            Err(RlimitError::AboveNrOpen {
                value: 1_048_577,
                nr_open: 1 << 20
            })
        );
        assert_eq!(c.check(&res("nofile = 1048576")), Ok(()));
    }

    #[test]
    fn every_rlimit_the_init_sets_is_the_value_of_its_own_key() {
        for rl in list(&default_policy().resources) {
            let key = rl.key.strip_prefix("resources.").unwrap();
            let set = list(&res(&format!("{key} = 12345")));
            for other in set {
                assert_eq!(
                    other.limit == Limit::Max(12345),
                    other.key == rl.key,
                    "{key} sets {}",
                    other.report_name
                );
            }
        }
    }

    #[test]
    fn a_fixed_limit_is_never_above_the_inherited_hard_one() {
        let inf = libc::RLIM_INFINITY;
        assert_eq!(bounded(STACK, inf), STACK);
        assert_eq!(bounded(STACK, 4 << 20), 4 << 20);
        assert_eq!(bounded(inf, inf), inf);
        assert_eq!(bounded(inf, 1 << 30), 1 << 30);
        assert_eq!(bounded(0, inf), 0);
        assert_eq!(bounded(SIGPENDING, 64), 64);
        assert_eq!(as_limit(inf), Limit::Unlimited);
        assert_eq!(as_limit(0), Limit::Max(0));
    }

    #[test]
    fn every_rlimit_is_set_once_the_policys_or_the_runtimes() {
        let policy: Vec<_> = list(&default_policy().resources)
            .iter()
            .map(|r| r.resource)
            .collect();
        let fixed_ones: Vec<_> = fixed(None).iter().map(|f| f.resource).collect();
        let mut all: Vec<_> = policy.iter().chain(&fixed_ones).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            policy.len() + fixed_ones.len(),
            "one resource set twice"
        );
        // Every resource of the kernel's: RLIMIT_CPU (0) … RLIMIT_RTTIME (15).
        assert_eq!(all, (0..16).collect::<Vec<_>>());
        assert_eq!(
            fixed(Some(256 << 20))
                .iter()
                .find(|f| f.resource == libc::RLIMIT_DATA)
                .map(|f| f.value),
            Some(256 << 20)
        );
    }

    /// This process's real ceilings (whatever they are here) admit the default policy, and
    /// refuse one more than its hard memlock when that is finite.
    #[test]
    fn this_process_ceilings_are_read() {
        let c = Ceilings::of_this_process();
        assert_eq!(c.hard.len(), 6);
        assert_eq!(c.check(&default_policy().resources), Ok(()));
        let memlock = c
            .hard
            .iter()
            .find(|(r, _)| *r == libc::RLIMIT_MEMLOCK)
            .unwrap()
            .1;
        if memlock != libc::RLIM_INFINITY {
            let r = res(&format!("memlock = {}", memlock + 1));
            assert!(c.check(&r).is_err());
        }
    }
}
