//! The seccomp layer: a default-deny allowlist built with `seccompiler`, plus stacked filters
//! that close what a plain allowlist leaves open.
//!
//! The kernel runs every installed filter and applies the most severe verdict (kill > errno >
//! allow), so each concern gets its own small filter:
//! 1. **prologue** (hand-written BPF, see [`prologue`]): kill on a foreign architecture (e.g.
//!    `int 0x80` i386 calls on x86_64) and on x32 numbers (bit 30 set). seccompiler checks the
//!    architecture but compares numbers exactly, and x32 calls arrive *with the x86_64 audit
//!    arch*; the allowlist would kill them anyway, but this makes the guarantee explicit and
//!    independent of the table.
//! 2. **allowlist** (seccompiler): the policy's groups; mismatch kills the process. `clone` only
//!    when no `CLONE_NEW*` flag is set (masked compare); `ioctl` unless the low 32 bits of the
//!    request are TIOCSTI or TIOCLINUX (the kernel compares `cmd` as 32 bits, so high bits cannot
//!    smuggle them past a 64-bit compare).
//! 3. **clone3 → ENOSYS**: clone3's flags sit in memory seccomp cannot read; glibc then falls
//!    back to `clone`, whose flags filter 2 checks.
//! 4. **socket families → EAFNOSUPPORT**: only AF_UNIX (plus AF_INET/AF_INET6 in loopback mode);
//!    an error rather than a kill because programs probe families routinely.
//!
//! Installation order is 1, 3, 4, 2 (the verdict does not depend on order; the allowlist must
//! come last because it does not admit `seccomp(2)` itself). Installed last among the layers,
//! immediately before `execveat`, which the allowlist always admits (the program
//! could not start otherwise; the report says when the policy did not list it).

pub mod table;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use stockade_policy::sandbox::{NetworkMode, ValidatedSandboxPolicy};

/// Every namespace-creating clone flag (CLONE_NEWTIME shares its bit with the exit-signal byte of
/// `clone`, so it cannot be created through `clone` at all and is not masked here).
pub const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// x32 system calls are the x86_64 numbers with this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// A policy names a call this architecture does not have and no group explains it.
    #[error("system call `{0}` is unknown on this architecture")]
    UnknownSyscall(String),
    /// seccompiler refused the rules.
    #[error("cannot compile the seccomp filter")]
    Compile(#[source] seccompiler::BackendError),
}

/// The compiled filters, in installation order, plus what went into them.
#[derive(Debug)]
pub struct Filters {
    /// BPF programs, installed in order.
    pub programs: Vec<BpfProgram>,
    /// Number of unconditionally allowed calls.
    pub allowed: usize,
    /// Names from the policy's groups absent on this architecture (fine, e.g. `open` on arm64).
    pub absent: Vec<String>,
    /// Calls added because the launch needs them although the policy did not list them.
    pub implied: Vec<String>,
    /// The sandbox init's own filters (prologue + [`INIT_SYSCALLS`]), see [`install_init`].
    pub init: Vec<BpfProgram>,
}

/// All the sandbox's init does once the program runs: wait for children, write the program's
/// status to the runtime, exit. Anything else kills it (and with it the whole pid namespace).
pub const INIT_SYSCALLS: &[&str] = &[
    "wait4",
    "waitid",
    "write",
    "exit",
    "exit_group",
    "rt_sigreturn",
    "restart_syscall",
];

/// The hand-written first filter (see the module docs for why it exists).
pub fn prologue() -> BpfProgram {
    // BPF opcodes are 16-bit; libc exposes the class/size/mode constants as u32.
    #[allow(clippy::cast_possible_truncation)]
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    #[allow(clippy::cast_possible_truncation)]
    let jump = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    vec![
        // 0: A = seccomp_data.arch
        stmt(ld_abs, 4),
        // 1: native arch? continue : kill (-> 5)
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH,
            0,
            3,
        ),
        // 2: A = seccomp_data.nr
        stmt(ld_abs, 0),
        // 3: x32 bit set? kill (-> 5) : allow (-> 4)
        jump(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            X32_SYSCALL_BIT,
            1,
            0,
        ),
        // 4
        stmt(libc::BPF_RET | libc::BPF_K, RET_ALLOW),
        // 5
        stmt(libc::BPF_RET | libc::BPF_K, RET_KILL_PROCESS),
    ]
}

fn cond(arg: u8, len: Len, op: Op, v: u64) -> Result<Cond, SeccompError> {
    Cond::new(arg, len, op, v).map_err(SeccompError::Compile)
}

fn rule(c: Vec<Cond>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(c).map_err(SeccompError::Compile)
}

fn nr(name: &str) -> Result<i64, SeccompError> {
    table::number(name).ok_or_else(|| SeccompError::UnknownSyscall(name.into()))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    on_match: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let f = SeccompFilter::new(rules, mismatch, on_match, ARCH).map_err(SeccompError::Compile)?;
    BpfProgram::try_from(f).map_err(SeccompError::Compile)
}

/// Build every filter for a policy.
pub fn build(policy: &ValidatedSandboxPolicy) -> Result<Filters, SeccompError> {
    let mut allow: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut absent = Vec::new();
    let group_names: std::collections::BTreeSet<&str> = stockade_policy::sandbox::syscalls::GROUPS
        .iter()
        .flat_map(|g| g.syscalls.iter().copied())
        .collect();
    for name in &policy.seccomp_allow {
        match table::number(name) {
            Some(n) => {
                allow.insert(n, vec![]);
            }
            // Group members missing on this arch are expected; an explicit extra is a mistake.
            None if group_names.contains(name.as_str()) => absent.push(name.clone()),
            None => return Err(SeccompError::UnknownSyscall(name.clone())),
        }
    }
    let mut implied = Vec::new();
    for must in ["execveat", "exit_group"] {
        let n = nr(must)?;
        if let std::collections::btree_map::Entry::Vacant(e) = allow.entry(n) {
            e.insert(vec![]);
            implied.push(must.to_string());
        }
    }
    let allowed = allow.len();
    let cond_on = |n: &str| policy.seccomp_conditional.contains(n);
    if cond_on("clone") {
        allow.insert(
            nr("clone")?,
            vec![rule(vec![cond(
                0,
                Len::Qword,
                Op::MaskedEq(CLONE_NS_FLAGS),
                0,
            )?])?],
        );
    }
    if cond_on("clone3") {
        // Admitted here so that filter 3 decides (ENOSYS) instead of a kill.
        allow.insert(nr("clone3")?, vec![]);
    }
    if cond_on("ioctl") {
        allow.insert(
            nr("ioctl")?,
            vec![rule(vec![
                cond(1, Len::Dword, Op::Ne, libc::TIOCSTI)?,
                cond(1, Len::Dword, Op::Ne, libc::TIOCLINUX)?,
            ])?],
        );
    }
    for s in ["socket", "socketpair"] {
        if cond_on(s) {
            allow.insert(nr(s)?, vec![]);
        }
    }
    let allowlist = compile(allow, SeccompAction::KillProcess, SeccompAction::Allow)?;
    let mut programs = vec![prologue()];

    let mut enosys = BTreeMap::new();
    enosys.insert(nr("clone3")?, vec![]);
    programs.push(compile(
        enosys,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?);

    let unix = libc::AF_UNIX as u64;
    let mut family_conds = vec![cond(0, Len::Dword, Op::Ne, unix)?];
    if policy.network == NetworkMode::Loopback {
        family_conds.push(cond(0, Len::Dword, Op::Ne, libc::AF_INET as u64)?);
        family_conds.push(cond(0, Len::Dword, Op::Ne, libc::AF_INET6 as u64)?);
    }
    let mut families = BTreeMap::new();
    families.insert(nr("socket")?, vec![rule(family_conds)?]);
    families.insert(
        nr("socketpair")?,
        vec![rule(vec![cond(0, Len::Dword, Op::Ne, unix)?])?],
    );
    programs.push(compile(
        families,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
    )?);
    // The allowlist goes last: once it is in force, `seccomp(2)` itself is no longer allowed.
    programs.push(allowlist);

    let mut init_rules = BTreeMap::new();
    for name in INIT_SYSCALLS {
        init_rules.insert(nr(name)?, vec![]);
    }
    let init = vec![
        prologue(),
        compile(init_rules, SeccompAction::KillProcess, SeccompAction::Allow)?,
    ];

    Ok(Filters {
        programs,
        allowed,
        absent,
        implied,
        init,
    })
}

/// Install the filters on the calling thread (no_new_privs must already be set).
pub fn install(filters: &Filters) -> Result<(), seccompiler::Error> {
    for p in &filters.programs {
        seccompiler::apply_filter(p)?;
    }
    Ok(())
}

/// Install the init's filters (no_new_privs must already be set).
pub fn install_init(filters: &Filters) -> Result<(), seccompiler::Error> {
    for p in &filters.init {
        seccompiler::apply_filter(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_policy::sandbox::{default_policy, parse_policy};

    #[test]
    fn prologue_kills_foreign_arch_and_x32() {
        let p = prologue();
        assert_eq!(p.len(), 6);
        assert_eq!(p[1].k, AUDIT_ARCH);
        // Both failure branches land on the kill instruction.
        assert_eq!(1 + 1 + usize::from(p[1].jf), 5);
        assert_eq!(p[3].k, X32_SYSCALL_BIT);
        assert_eq!(3 + 1 + usize::from(p[3].jt), 5);
        assert_eq!(p[5].k, RET_KILL_PROCESS);
        assert_eq!(p[4].k, RET_ALLOW);
    }

    #[test]
    fn default_policy_compiles_to_four_filters() {
        let f = build(&default_policy()).unwrap();
        assert_eq!(f.programs.len(), 4);
        assert!(f.allowed > 100);
        assert!(f.implied.is_empty());
    }

    #[test]
    fn namespace_flags_cover_every_new_namespace() {
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ] {
            assert_ne!(CLONE_NS_FLAGS & u64::from(flag.unsigned_abs()), 0);
        }
        // Thread creation flags must pass.
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(CLONE_NS_FLAGS & thread, 0);
    }

    #[test]
    fn unknown_extra_syscall_is_an_error_and_minimal_policy_implies_exec() {
        let p = parse_policy("version = 1\n[seccomp]\ngroups = []\nallow = [\"no_such_call\"]\n")
            .unwrap();
        assert!(matches!(build(&p), Err(SeccompError::UnknownSyscall(_))));
        let p = parse_policy("version = 1\n[seccomp]\ngroups = []\n").unwrap();
        let f = build(&p).unwrap();
        assert_eq!(
            f.implied,
            vec!["execveat".to_string(), "exit_group".to_string()]
        );
    }
}
