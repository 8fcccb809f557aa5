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
//! 2. **allowlist** (seccompiler's rules behind a hand-written search on the syscall number,
//!    see `compile_allowlist` for why): the policy's groups; mismatch kills the process. `clone` only
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
    /// The allowlist's dispatch could not be laid out (a bound of classic BPF exceeded).
    #[error("cannot lay out the seccomp allowlist's dispatch: {0} out of range")]
    Dispatch(&'static str),
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
    let (stmt, jump) = (bpf_stmt, bpf_jump);
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

/// Allowlist entries per block (see [`compile_allowlist`]).
const BLOCK_SYSCALLS: usize = 12;

/// The allowlist (kill on anything not listed) as a binary search on the syscall number over
/// blocks: a run of up to [`BLOCK_SYSCALLS`] unconditional calls is one `jeq nr → allow` per
/// call; a call with argument rules is a block of its own compiled by seccompiler (its own
/// architecture check, the rules, kill for anything else).
///
/// Written by hand because of what attaching a filter costs. seccompiler emits five
/// instructions per unconditional call behind a partial search (≈ 1,350 instructions for the
/// default policy, up to 536 executed for one number), and at attach the kernel (a) emulates
/// the new filter for every syscall number to fill its action cache (`seccomp_cache_prepare`)
/// and (b) converts and JIT-compiles it in several passes: ≈ 0.5 ms per launch here, most of a
/// warm-pool launch. This layout is under a third of the size with at most a few dozen instructions
/// per number. The verdict for every number and argument is the single seccompiler filter's; a
/// test checks that on an interpreter.
fn compile_allowlist(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<BpfProgram, SeccompError> {
    // Runs of up to BLOCK_SYSCALLS unconditional calls; a call with argument rules alone.
    let mut chunks: Vec<Vec<(i64, Vec<SeccompRule>)>> = Vec::new();
    for (nr, r) in rules {
        match chunks.last_mut() {
            Some(c) if r.is_empty() && c.len() < BLOCK_SYSCALLS && c[0].1.is_empty() => {
                c.push((nr, r));
            }
            _ => chunks.push(vec![(nr, r)]),
        }
    }
    // Block i handles numbers from starts[i] up to (not including) starts[i + 1]; block 0
    // starts at 0 and the last one runs to u32::MAX, so every number lands in exactly one.
    let mut starts: Vec<u32> = Vec::new();
    let mut blocks: Vec<BpfProgram> = Vec::new();
    for chunk in chunks {
        let first = u32::try_from(chunk[0].0).map_err(|_| SeccompError::Dispatch("number"))?;
        starts.push(if starts.is_empty() { 0 } else { first });
        if !chunk[0].1.is_empty() {
            let rules = chunk.into_iter().collect();
            blocks.push(compile(
                rules,
                SeccompAction::KillProcess,
                SeccompAction::Allow,
            )?);
            continue;
        }
        // i: `A == nr_i`? jump to the allow at index m + 1 : next; m: kill.
        let m = chunk.len();
        let mut block = Vec::with_capacity(m + 2);
        for (i, (nr, _)) in chunk.iter().enumerate() {
            let nr = u32::try_from(*nr).map_err(|_| SeccompError::Dispatch("number"))?;
            let jt = u8::try_from(m - i).map_err(|_| SeccompError::Dispatch("block jump"))?;
            block.push(bpf_jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                nr,
                jt,
                0,
            ));
        }
        block.push(bpf_stmt(libc::BPF_RET | libc::BPF_K, RET_KILL_PROCESS));
        block.push(bpf_stmt(libc::BPF_RET | libc::BPF_K, RET_ALLOW));
        blocks.push(block);
    }
    let ld_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let mut prog = vec![
        // A = arch; native? skip the kill : kill. Blocks compiled by seccompiler check again.
        bpf_stmt(ld_abs, 4),
        bpf_jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH,
            1,
            0,
        ),
        bpf_stmt(libc::BPF_RET | libc::BPF_K, RET_KILL_PROCESS),
        // A = nr
        bpf_stmt(ld_abs, 0),
    ];
    if blocks.is_empty() {
        prog.push(bpf_stmt(libc::BPF_RET | libc::BPF_K, RET_KILL_PROCESS));
        return Ok(prog);
    }
    let mut leaves = Vec::new();
    dispatch_tree(&mut prog, &starts, 0, blocks.len(), &mut leaves)?;
    let mut block_at = Vec::with_capacity(blocks.len());
    for b in blocks {
        block_at.push(prog.len());
        prog.extend(b);
    }
    for (at, block) in leaves {
        // `ja` is relative to the next instruction; blocks always follow the tree.
        prog[at].k =
            u32::try_from(block_at[block] - at - 1).map_err(|_| SeccompError::Dispatch("jump"))?;
    }
    if prog.len() > usize::try_from(libc::BPF_MAXINSNS).unwrap_or(4096) {
        return Err(SeccompError::Dispatch("program length"));
    }
    Ok(prog)
}

/// Emit the search over blocks `lo..hi` (A holds the number): `A >= starts[mid]` jumps over
/// the left half; a leaf is an `ja` to its block, patched once the blocks are laid out.
fn dispatch_tree(
    prog: &mut BpfProgram,
    starts: &[u32],
    lo: usize,
    hi: usize,
    leaves: &mut Vec<(usize, usize)>,
) -> Result<(), SeccompError> {
    if hi - lo == 1 {
        leaves.push((prog.len(), lo));
        prog.push(bpf_stmt(libc::BPF_JMP | libc::BPF_JA, 0));
        return Ok(());
    }
    let mid = (lo + hi) / 2;
    let at = prog.len();
    prog.push(bpf_jump(
        libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
        starts[mid],
        0,
        0,
    ));
    dispatch_tree(prog, starts, lo, mid, leaves)?;
    prog[at].jt =
        u8::try_from(prog.len() - at - 1).map_err(|_| SeccompError::Dispatch("tree jump"))?;
    dispatch_tree(prog, starts, mid, hi, leaves)
}

// BPF opcodes are 16-bit; libc exposes the class/size/mode constants as u32.
#[allow(clippy::cast_possible_truncation)]
fn bpf_stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

#[allow(clippy::cast_possible_truncation)]
fn bpf_jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    on_match: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let f = SeccompFilter::new(rules, mismatch, on_match, ARCH).map_err(SeccompError::Compile)?;
    BpfProgram::try_from(f).map_err(SeccompError::Compile)
}

/// The allowlist's rules for a policy, and what went into them.
struct AllowRules {
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    allowed: usize,
    absent: Vec<String>,
    implied: Vec<String>,
}

fn allow_rules(policy: &ValidatedSandboxPolicy) -> Result<AllowRules, SeccompError> {
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
    Ok(AllowRules {
        rules: allow,
        allowed,
        absent,
        implied,
    })
}

/// Build every filter for a policy.
pub fn build(policy: &ValidatedSandboxPolicy) -> Result<Filters, SeccompError> {
    let AllowRules {
        rules: allow,
        allowed,
        absent,
        implied,
    } = allow_rules(policy)?;
    let allowlist = compile_allowlist(allow)?;
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

    /// A classic-BPF interpreter for the opcodes seccompiler and this module emit (anything else
    /// panics): the verdict and the number of instructions executed.
    fn run_bpf(prog: &[sock_filter], nr: u32, args: [u64; 6]) -> (u32, usize) {
        run_bpf_arch(prog, AUDIT_ARCH, nr, args)
    }

    // Halves of 64-bit arguments, as the kernel's seccomp_data lays them out.
    #[allow(clippy::cast_possible_truncation)]
    fn run_bpf_arch(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> (u32, usize) {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                8 | 12 => 0, // instruction pointer: nothing here depends on it
                16..=63 => {
                    let a = args[((off - 16) / 8) as usize];
                    // seccomp_data is little-endian on the architectures built here.
                    if (off - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                _ => panic!("load beyond seccomp_data: {off}"),
            }
        };
        let (mut pc, mut a, mut steps) = (0usize, 0u32, 0usize);
        loop {
            let i = &prog[pc];
            steps += 1;
            let code = u32::from(i.code);
            let jump = |taken: bool| pc + 1 + usize::from(if taken { i.jt } else { i.jf });
            pc = match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    a = word(i.k);
                    pc + 1
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => {
                    a &= i.k;
                    pc + 1
                }
                c if c == libc::BPF_JMP | libc::BPF_JA => pc + 1 + i.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => jump(a == i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => jump(a > i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => jump(a >= i.k),
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => jump(a & i.k != 0),
                c if c == libc::BPF_RET | libc::BPF_K => return (i.k, steps),
                c => panic!("opcode {c:#x} not interpreted"),
            };
        }
    }

    /// The dispatched allowlist gives the single seccompiler chain's verdict for every syscall
    /// number (x32 aliases included) under arguments that exercise every rule, and no walk
    /// through it is long.
    #[test]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // syscall numbers
    fn dispatched_allowlist_matches_the_single_chain() {
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        let args: Vec<[u64; 6]> = vec![
            [0; 6],
            [thread, 0, 0, 0, 0, 0],
            [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
            [libc::CLONE_NEWNET as u64 | thread, 0, 0, 0, 0, 0],
            [0, libc::TIOCSTI, 0, 0, 0, 0],
            [0, libc::TIOCLINUX | (1 << 32), 0, 0, 0, 0],
            [0, libc::TIOCGWINSZ, 0, 0, 0, 0],
            [libc::AF_UNIX as u64, 1, 0, 0, 0, 0],
            [libc::AF_INET as u64, 1, 0, 0, 0, 0],
            [u64::MAX; 6],
        ];
        for text in [
            None,
            Some("version = 1\n[network]\nmode = \"loopback\"\n"),
            Some("version = 1\n[seccomp]\ngroups = []\n"),
        ] {
            let p = match text {
                None => default_policy(),
                Some(t) => parse_policy(t).unwrap(),
            };
            let single = {
                // The same rules as build() uses, compiled as one chain.
                let f = build(&p).unwrap();
                let chain_rules = allow_rules(&p).unwrap().rules;
                (
                    f,
                    compile(
                        chain_rules,
                        SeccompAction::KillProcess,
                        SeccompAction::Allow,
                    )
                    .unwrap(),
                )
            };
            let (filters, chain) = single;
            let dispatched = filters.programs.last().unwrap();
            assert!(dispatched.len() < 4096);
            let (mut allowed, mut killed, mut longest) = (0, 0, 0);
            for base in 0u32..1024 {
                for nr in [base, base | X32_SYSCALL_BIT, base.wrapping_neg()] {
                    for a in &args {
                        let (want, _) = run_bpf(&chain, nr, *a);
                        let (got, steps) = run_bpf(dispatched, nr, *a);
                        assert_eq!(got, want, "nr {nr:#x} args {a:?}");
                        longest = longest.max(steps);
                        match got {
                            RET_ALLOW => allowed += 1,
                            RET_KILL_PROCESS => killed += 1,
                            v => panic!("unexpected verdict {v:#x}"),
                        }
                    }
                }
            }
            assert!(allowed > 0 && killed > 0);
            // A foreign architecture is killed whatever the number (i386 `int 0x80`).
            for nr in 0u32..512 {
                assert_eq!(
                    run_bpf_arch(dispatched, 0x4000_0003, nr, [0; 6]).0,
                    RET_KILL_PROCESS
                );
                assert_eq!(
                    run_bpf_arch(&chain, 0x4000_0003, nr, [0; 6]).0,
                    RET_KILL_PROCESS
                );
            }
            let read = table::number("read").unwrap() as u32;
            let want_read = match text {
                Some(t) if t.contains("groups = []") => RET_KILL_PROCESS,
                _ => RET_ALLOW,
            };
            assert_eq!(run_bpf(dispatched, read, [0; 6]).0, want_read);
            let kexec = table::number("kexec_load").unwrap() as u32;
            assert_eq!(run_bpf(dispatched, kexec, [0; 6]).0, RET_KILL_PROCESS);
            // Bounded walk: the tree plus one block, far below the single chain's length.
            assert!(
                longest < 150,
                "longest walk {longest}, chain {}",
                chain.len()
            );
        }
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
