//! The seccomp layer: one filter per process, a default-deny allowlist whose per-call
//! verdicts close what a plain allowlist leaves open.
//!
//! What the filter decides, for the program:
//! - **a foreign architecture** (e.g. `int 0x80` i386 calls on x86_64) and **x32 numbers** (bit
//!   30 set, which arrive *with the x86_64 audit arch*): kill. Checked first and explicitly, so
//!   the guarantee does not depend on the table.
//! - **the policy's groups**: allow; anything not listed kills the process. `clone` only when no
//!   `CLONE_NEW*` flag is set (masked compare); `ioctl` unless the low 32 bits of the request are
//!   TIOCSTI or TIOCLINUX (the kernel compares `cmd` as 32 bits, so high bits cannot smuggle them
//!   past a 64-bit compare).
//! - **clone3 → ENOSYS** (when the policy admits thread creation): its flags sit in memory
//!   seccomp cannot read; glibc then falls back to `clone`, whose flags are checked.
//! - **socket families → EAFNOSUPPORT**: only AF_UNIX (plus AF_INET/AF_INET6 in loopback mode);
//!   an error rather than a kill because programs probe families routinely.
//!
//! These used to be four stacked filters (the kernel applies the most severe verdict of all);
//! they are one program now because every attached filter has a fixed cost (allocation,
//! conversion, JIT, and the kernel's per-number action-cache emulation): 4 filters took
//! ≈ 180 µs to attach per launch here, the single one ≈ 50 µs (see [`compile_dispatch`]).
//! A unit test checks, on a BPF interpreter, that the single program's verdict is the stacked
//! filters' for every number, architecture and rule-exercising argument.
//!
//! Installed last among the layers, immediately before `execveat`, which the allowlist always
//! admits (the program could not start otherwise; the report says when the policy did not list
//! it). The sandbox's init gets its own, smaller filter of the same form ([`INIT_SYSCALLS`]).

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
/// The architecture whose system-call names [`table`] knows, for messages.
#[cfg(target_arch = "x86_64")]
pub const ARCH_NAME: &str = "x86_64";
/// The architecture whose system-call names [`table`] knows, for messages.
#[cfg(target_arch = "aarch64")]
pub const ARCH_NAME: &str = "aarch64";

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// A policy names a call this architecture does not have and no group explains it.
    #[error("`{0}` is not a system call on {arch}, the architecture of this build", arch = ARCH_NAME)]
    UnknownSyscall(String),
    /// seccompiler refused the rules.
    #[error("cannot compile the seccomp filter")]
    Compile(#[source] seccompiler::BackendError),
    /// The allowlist's dispatch could not be laid out (a bound of classic BPF exceeded).
    #[error("cannot lay out the seccomp allowlist's dispatch: {0} out of range")]
    Dispatch(&'static str),
}

/// The compiled filters, plus what went into them.
#[derive(Debug)]
pub struct Filters {
    /// The program's filter.
    pub program: BpfProgram,
    /// Number of unconditionally allowed calls.
    pub allowed: usize,
    /// Names from the policy's groups absent on this architecture (fine, e.g. `open` on arm64).
    pub absent: Vec<String>,
    /// Calls added because the launch needs them although the policy did not list them.
    pub implied: Vec<String>,
    /// The sandbox init's own filter ([`INIT_SYSCALLS`]), see [`install_init`].
    pub init: BpfProgram,
    /// The program's filter admits `read` whatever its arguments: a held program process (the
    /// warm pool) can install it first and then wait for the go in `read`, taking the attach
    /// off the go's path; otherwise it installs it after the go.
    pub admits_read: bool,
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

fn cond(arg: u8, len: Len, op: Op, v: u64) -> Result<Cond, SeccompError> {
    Cond::new(arg, len, op, v).map_err(SeccompError::Compile)
}

fn rule(c: Vec<Cond>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(c).map_err(SeccompError::Compile)
}

fn nr(name: &str) -> Result<i64, SeccompError> {
    table::number(name).ok_or_else(|| SeccompError::UnknownSyscall(name.into()))
}

/// What a filter answers for one system call number (a number absent from the map: kill).
#[derive(Debug)]
enum Verdict {
    Allow,
    Errno(i32),
    /// Argument rules, compiled by seccompiler: `on_match` when a rule matches, else `mismatch`.
    Rules {
        rules: Vec<SeccompRule>,
        on_match: SeccompAction,
        mismatch: SeccompAction,
    },
}

/// Where a number ends up: a `ret` of this value, or the rule block with this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Ret(u32),
    Block(usize),
}

/// A subtree of the dispatch and its unpatched jumps to rule blocks: (index in the code, block).
type Subtree = (BpfProgram, Vec<(usize, usize)>);

/// One filter from per-number verdicts: the architecture and x32 checks, then a binary search
/// on the number over the intervals with one verdict — a run of allowed numbers and the gap
/// after it are one interval each, whose leaf is a single `ret`; a number with argument rules is
/// an interval of its own whose leaf jumps to a block compiled by seccompiler.
///
/// Written by hand because of what attaching a filter costs, which no crate addresses.
/// seccompiler emits five instructions per unconditional call behind a partial search
/// (≈ 1,350 instructions for the default policy, up to 536 executed for one number) and one
/// filter per action; at attach the kernel (a) converts and JIT-compiles the program, with a
/// fixed cost per filter, and (b) emulates it for every syscall number of every architecture to
/// fill its action cache (`seccomp_cache_prepare`). Here: one filter, ≈ 240 instructions for the
/// default policy, about a dozen executed per number.
fn compile_dispatch(verdicts: BTreeMap<u32, Verdict>) -> Result<BpfProgram, SeccompError> {
    // Intervals: (first number, leaf); each runs up to the next one's first number, the last
    // to u32::MAX, so every number lands in exactly one. Neighbours never share a `ret` leaf.
    let mut starts: Vec<u32> = Vec::new();
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut blocks: Vec<BpfProgram> = Vec::new();
    let push = |starts: &mut Vec<u32>, leaves: &mut Vec<Leaf>, at: u32, leaf: Leaf| {
        if leaves.last() != Some(&leaf) || matches!(leaf, Leaf::Block(_)) {
            starts.push(at);
            leaves.push(leaf);
        }
    };
    let mut next = 0u32;
    for (nr, verdict) in verdicts {
        if nr > next {
            push(&mut starts, &mut leaves, next, Leaf::Ret(RET_KILL_PROCESS));
        }
        let leaf = match verdict {
            Verdict::Allow => Leaf::Ret(RET_ALLOW),
            // SECCOMP_RET_DATA holds the errno: 16 bits.
            Verdict::Errno(e) => Leaf::Ret(
                RET_ERRNO
                    | u32::from(u16::try_from(e).map_err(|_| SeccompError::Dispatch("errno"))?),
            ),
            Verdict::Rules {
                rules,
                on_match,
                mismatch,
            } => {
                let mut one = BTreeMap::new();
                one.insert(i64::from(nr), rules);
                blocks.push(compile(one, mismatch, on_match)?);
                Leaf::Block(blocks.len() - 1)
            }
        };
        push(&mut starts, &mut leaves, nr, leaf);
        next = nr.checked_add(1).ok_or(SeccompError::Dispatch("number"))?;
    }
    push(&mut starts, &mut leaves, next, Leaf::Ret(RET_KILL_PROCESS));
    let ld_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let mut prog = vec![
        // 0: A = arch; 1: native? skip the kill : 2: kill.
        bpf_stmt(ld_abs, 4),
        bpf_jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH,
            1,
            0,
        ),
        bpf_stmt(libc::BPF_RET | libc::BPF_K, RET_KILL_PROCESS),
        // 3: A = nr; 4: x32 bit set? 5: kill : on to the search.
        bpf_stmt(ld_abs, 0),
        bpf_jump(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            X32_SYSCALL_BIT,
            0,
            1,
        ),
        bpf_stmt(libc::BPF_RET | libc::BPF_K, RET_KILL_PROCESS),
    ];
    let base = prog.len();
    let (tree, jumps) = dispatch_tree(&starts, &leaves, 0, leaves.len())?;
    prog.extend(tree);
    let mut block_at = Vec::with_capacity(blocks.len());
    for b in blocks {
        block_at.push(prog.len());
        prog.extend(b);
    }
    for (at, block) in jumps {
        let at = base + at;
        // `ja` is relative to the next instruction; blocks always follow the tree.
        prog[at].k =
            u32::try_from(block_at[block] - at - 1).map_err(|_| SeccompError::Dispatch("jump"))?;
    }
    if prog.len() > usize::try_from(libc::BPF_MAXINSNS).unwrap_or(4096) {
        return Err(SeccompError::Dispatch("program length"));
    }
    Ok(prog)
}

/// The search over intervals `lo..hi` (A holds the number): `A >= starts[mid]` goes to the right
/// half. Conditional jumps reach 255 instructions; a larger left half is jumped over with `ja`.
fn dispatch_tree(
    starts: &[u32],
    leaves: &[Leaf],
    lo: usize,
    hi: usize,
) -> Result<Subtree, SeccompError> {
    if hi - lo == 1 {
        return Ok(match leaves[lo] {
            Leaf::Ret(k) => (vec![bpf_stmt(libc::BPF_RET | libc::BPF_K, k)], vec![]),
            Leaf::Block(b) => (
                vec![bpf_stmt(libc::BPF_JMP | libc::BPF_JA, 0)],
                vec![(0, b)],
            ),
        });
    }
    let mid = (lo + hi) / 2;
    let (left, left_jumps) = dispatch_tree(starts, leaves, lo, mid)?;
    let (right, right_jumps) = dispatch_tree(starts, leaves, mid, hi)?;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let mut code = match u8::try_from(left.len()) {
        Ok(over) => vec![bpf_jump(jge, starts[mid], over, 0)],
        Err(_) => vec![
            // true → the `ja` over the left half; false → skip it.
            bpf_jump(jge, starts[mid], 0, 1),
            bpf_stmt(
                libc::BPF_JMP | libc::BPF_JA,
                u32::try_from(left.len()).map_err(|_| SeccompError::Dispatch("tree jump"))?,
            ),
        ],
    };
    let mut jumps: Vec<(usize, usize)> = left_jumps
        .into_iter()
        .map(|(at, b)| (at + code.len(), b))
        .collect();
    let right_base = code.len() + left.len();
    jumps.extend(right_jumps.into_iter().map(|(at, b)| (at + right_base, b)));
    code.extend(left);
    code.extend(right);
    Ok((code, jumps))
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

/// A name of the policy's allowlist on this architecture: its number; `None` for a group
/// member this architecture lacks (expected: the groups list both spellings, e.g. `open` and
/// `openat`); an error for any other name the table does not know (a typo, or a call of
/// another architecture such as `vm86`), which no filter could ever admit.
fn resolve(name: &str) -> Result<Option<i64>, SeccompError> {
    match table::number(name) {
        Some(n) => Ok(Some(n)),
        None if stockade_policy::sandbox::syscalls::GROUPS
            .iter()
            .any(|g| g.syscalls.contains(&name)) =>
        {
            Ok(None)
        }
        None => Err(SeccompError::UnknownSyscall(name.to_string())),
    }
}

/// Whether every name of the policy's allowlist resolves here as [`build`] needs: checked
/// when the policy is loaded (`sandbox::check_enforceable`), so that a name the filter cannot
/// hold is an invalid policy naming its file:line, not a launch failure.
pub fn check_names(policy: &ValidatedSandboxPolicy) -> Result<(), SeccompError> {
    for name in &policy.seccomp_allow {
        resolve(name)?;
    }
    Ok(())
}

fn allow_rules(policy: &ValidatedSandboxPolicy) -> Result<AllowRules, SeccompError> {
    let mut allow: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut absent = Vec::new();
    for name in &policy.seccomp_allow {
        match resolve(name)? {
            Some(n) => {
                allow.insert(n, vec![]);
            }
            None => absent.push(name.clone()),
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
        // Admitted so that its verdict is ENOSYS (see `build`) instead of a kill.
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

/// Build the filters for a policy.
pub fn build(policy: &ValidatedSandboxPolicy) -> Result<Filters, SeccompError> {
    let AllowRules {
        rules,
        allowed,
        absent,
        implied,
    } = allow_rules(policy)?;
    let (clone3, socket, socketpair) = (nr("clone3")?, nr("socket")?, nr("socketpair")?);
    let unix = libc::AF_UNIX as u64;
    let mut verdicts = BTreeMap::new();
    for (n, r) in rules {
        // `allow_rules` gives clone3, socket and socketpair no argument rules of their own.
        debug_assert!(r.is_empty() || ![clone3, socket, socketpair].contains(&n));
        let verdict = if n == clone3 {
            Verdict::Errno(libc::ENOSYS)
        } else if n == socket || n == socketpair {
            // Admitted calls, restricted to the families the network mode allows.
            let mut not_allowed = vec![cond(0, Len::Dword, Op::Ne, unix)?];
            if n == socket && policy.network == NetworkMode::Loopback {
                not_allowed.push(cond(0, Len::Dword, Op::Ne, libc::AF_INET as u64)?);
                not_allowed.push(cond(0, Len::Dword, Op::Ne, libc::AF_INET6 as u64)?);
            }
            Verdict::Rules {
                rules: vec![rule(not_allowed)?],
                on_match: SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
                mismatch: SeccompAction::Allow,
            }
        } else if r.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Rules {
                rules: r,
                on_match: SeccompAction::Allow,
                mismatch: SeccompAction::KillProcess,
            }
        };
        verdicts.insert(syscall_u32(n)?, verdict);
    }
    let read = syscall_u32(nr("read")?)?;
    let admits_read = matches!(verdicts.get(&read), Some(Verdict::Allow));
    let program = compile_dispatch(verdicts)?;

    let mut init = BTreeMap::new();
    for name in INIT_SYSCALLS {
        init.insert(syscall_u32(nr(name)?)?, Verdict::Allow);
    }
    Ok(Filters {
        program,
        allowed,
        absent,
        implied,
        init: compile_dispatch(init)?,
        admits_read,
    })
}

fn syscall_u32(n: i64) -> Result<u32, SeccompError> {
    u32::try_from(n).map_err(|_| SeccompError::Dispatch("number"))
}

/// Install the program's filter on the calling thread (no_new_privs must already be set).
pub fn install(filters: &Filters) -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter(&filters.program)
}

/// Install the init's filter (no_new_privs must already be set).
pub fn install_init(filters: &Filters) -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter(&filters.init)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_policy::sandbox::{default_policy, parse_policy};

    #[test]
    fn one_filter_that_starts_with_the_arch_and_x32_checks() {
        let f = build(&default_policy()).unwrap();
        let p = &f.program;
        assert_eq!(p[1].k, AUDIT_ARCH);
        // A foreign arch falls through to the kill; x32 jumps to it.
        assert_eq!(usize::from(p[1].jf), 0);
        assert_eq!(p[2].k, RET_KILL_PROCESS);
        assert_eq!(p[4].k, X32_SYSCALL_BIT);
        assert_eq!(p[5].k, RET_KILL_PROCESS);
        assert!(f.allowed > 100);
        assert!(f.implied.is_empty());
        assert!(f.admits_read);
        let bare = parse_policy("version = 1\n[seccomp]\ngroups = []\n").unwrap();
        assert!(!build(&bare).unwrap().admits_read);
        // Far below seccompiler's single chain of the same rules (≈ 1,350).
        assert!(p.len() < 400, "{} instructions", p.len());
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

    /// The stacked filters this module used to install (and what a straightforward use of
    /// seccompiler gives): the arch/x32 prologue, clone3 → ENOSYS, socket families →
    /// EAFNOSUPPORT, and the allowlist as seccompiler's single chain.
    fn stacked_reference(p: &ValidatedSandboxPolicy) -> Vec<BpfProgram> {
        let (stmt, jump) = (bpf_stmt, bpf_jump);
        let ld_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let prologue = vec![
            stmt(ld_abs, 4),
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                AUDIT_ARCH,
                0,
                3,
            ),
            stmt(ld_abs, 0),
            jump(
                libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
                X32_SYSCALL_BIT,
                1,
                0,
            ),
            stmt(libc::BPF_RET | libc::BPF_K, RET_ALLOW),
            stmt(libc::BPF_RET | libc::BPF_K, RET_KILL_PROCESS),
        ];
        let mut enosys = BTreeMap::new();
        enosys.insert(nr("clone3").unwrap(), vec![]);
        let unix = libc::AF_UNIX as u64;
        let mut family = vec![cond(0, Len::Dword, Op::Ne, unix).unwrap()];
        if p.network == NetworkMode::Loopback {
            family.push(cond(0, Len::Dword, Op::Ne, libc::AF_INET as u64).unwrap());
            family.push(cond(0, Len::Dword, Op::Ne, libc::AF_INET6 as u64).unwrap());
        }
        let mut families = BTreeMap::new();
        families.insert(nr("socket").unwrap(), vec![rule(family).unwrap()]);
        families.insert(
            nr("socketpair").unwrap(),
            vec![rule(vec![cond(0, Len::Dword, Op::Ne, unix).unwrap()]).unwrap()],
        );
        let chain = allow_rules(p).unwrap().rules;
        vec![
            prologue,
            compile(
                enosys,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::ENOSYS as u32),
            )
            .unwrap(),
            compile(
                families,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
            )
            .unwrap(),
            compile(chain, SeccompAction::KillProcess, SeccompAction::Allow).unwrap(),
        ]
    }

    /// What the kernel returns for a stack of filters: the most severe action (the action bits
    /// compared as a signed number, as `seccomp_run_filters` does).
    #[allow(clippy::cast_possible_wrap)]
    fn run_stack(stack: &[BpfProgram], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        stack
            .iter()
            .map(|f| run_bpf_arch(f, arch, nr, args).0)
            .min_by_key(|v| (v & 0xffff_0000) as i32)
            .unwrap()
    }

    /// The single filter gives the stacked filters' verdict for every syscall number (x32
    /// aliases included), on the native and a foreign architecture, under arguments that exercise
    /// every rule, and no walk through it is long.
    #[test]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // syscall numbers
    fn one_filter_matches_the_stacked_filters() {
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
            [libc::AF_INET6 as u64, 1, 0, 0, 0, 0],
            [libc::AF_NETLINK as u64, 1, 0, 0, 0, 0],
            [libc::AF_UNIX as u64 | (1 << 32), 1, 0, 0, 0, 0],
            [u64::MAX; 6],
        ];
        let enosys = RET_ERRNO | libc::ENOSYS as u32;
        let eafnosupport = RET_ERRNO | libc::EAFNOSUPPORT as u32;
        for text in [
            None,
            Some("version = 1\n[network]\nmode = \"loopback\"\n"),
            Some("version = 1\n[seccomp]\ngroups = []\n"),
            Some("version = 1\n[seccomp]\ngroups = [\"@default\", \"@basic-io\"]\n"),
        ] {
            let p = match text {
                None => default_policy(),
                Some(t) => parse_policy(t).unwrap(),
            };
            let stack = stacked_reference(&p);
            let one = build(&p).unwrap().program;
            let mut seen = std::collections::BTreeMap::<u32, usize>::new();
            let mut longest = 0;
            for arch in [AUDIT_ARCH, 0x4000_0003] {
                for base in 0u32..1024 {
                    for nr in [base, base | X32_SYSCALL_BIT, base.wrapping_neg()] {
                        for a in &args {
                            let want = run_stack(&stack, arch, nr, *a);
                            let (got, steps) = run_bpf_arch(&one, arch, nr, *a);
                            assert_eq!(got, want, "{text:?}: arch {arch:#x} nr {nr:#x} args {a:?}");
                            longest = longest.max(steps);
                            *seen.entry(got).or_default() += 1;
                        }
                    }
                }
            }
            assert!(seen.contains_key(&RET_ALLOW) && seen.contains_key(&RET_KILL_PROCESS));
            if text.is_none() || text.is_some_and(|t| t.contains("loopback")) {
                // The default groups admit threads (clone3 → ENOSYS) and sockets.
                assert!(seen.contains_key(&enosys), "{seen:?}");
                assert!(seen.contains_key(&eafnosupport), "{seen:?}");
            }
            let read = table::number("read").unwrap() as u32;
            let want_read = if text.is_some_and(|t| t.ends_with("groups = []\n")) {
                RET_KILL_PROCESS
            } else {
                RET_ALLOW
            };
            assert_eq!(run_bpf(&one, read, [0; 6]).0, want_read);
            let kexec = table::number("kexec_load").unwrap() as u32;
            assert_eq!(run_bpf(&one, kexec, [0; 6]).0, RET_KILL_PROCESS);
            // Bounded walk: the checks, the search, at most one rule block.
            assert!(longest < 60, "longest walk {longest}");
        }
    }

    /// The init's filter admits exactly [`INIT_SYSCALLS`] (native arch) and kills the rest.
    #[test]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn init_filter_admits_only_its_calls() {
        let init = build(&default_policy()).unwrap().init;
        let admitted: Vec<u32> = INIT_SYSCALLS
            .iter()
            .map(|n| table::number(n).unwrap() as u32)
            .collect();
        for nr in 0u32..1024 {
            let want = if admitted.contains(&nr) {
                RET_ALLOW
            } else {
                RET_KILL_PROCESS
            };
            assert_eq!(run_bpf(&init, nr, [0; 6]).0, want, "nr {nr}");
            assert_eq!(
                run_bpf_arch(&init, 0x4000_0003, nr, [0; 6]).0,
                RET_KILL_PROCESS
            );
            assert_eq!(
                run_bpf(&init, nr | X32_SYSCALL_BIT, [0; 6]).0,
                RET_KILL_PROCESS
            );
        }
    }

    #[test]
    fn unknown_extra_syscall_is_an_error_and_minimal_policy_implies_exec() {
        let p = parse_policy("version = 1\n[seccomp]\ngroups = []\nallow = [\"no_such_call\"]\n")
            .unwrap();
        assert!(matches!(build(&p), Err(SeccompError::UnknownSyscall(_))));
        assert!(matches!(
            check_names(&p),
            Err(SeccompError::UnknownSyscall(n)) if n == "no_such_call"
        ));
        let p = parse_policy("version = 1\n[seccomp]\ngroups = []\n").unwrap();
        let f = build(&p).unwrap();
        assert_eq!(
            f.implied,
            vec!["execveat".to_string(), "exit_group".to_string()]
        );
    }

    /// What the policy loader checks is exactly what `build` needs: the names it refuses are
    /// the ones `build` would fail on, and a group member this architecture lacks (listed as an
    /// extra too, for a policy shared across architectures) passes both.
    #[test]
    fn load_time_check_agrees_with_build() {
        #[cfg(target_arch = "x86_64")]
        let (foreign, absent_member) = ("vm86", "map_shadow_stack");
        #[cfg(target_arch = "aarch64")]
        let (foreign, absent_member) = ("vm86", "open");
        for extra in ["foobar", foreign, "getdents64", absent_member] {
            let p = parse_policy(&format!(
                "version = 1\n[seccomp]\ngroups = [\"@default\"]\nallow = [\"{extra}\"]\n"
            ))
            .unwrap();
            assert_eq!(
                check_names(&p).is_ok(),
                build(&p).is_ok(),
                "{extra}: {:?}",
                check_names(&p)
            );
        }
        assert!(check_names(&default_policy()).is_ok());
        let p = parse_policy("version = 1\n[seccomp]\nallow = [\"vm86\"]\n").unwrap();
        assert_eq!(
            check_names(&p).unwrap_err().to_string(),
            format!("`vm86` is not a system call on {ARCH_NAME}, the architecture of this build")
        );
    }
}
