//! The sandbox policy file: what a sandboxed program may see, reach and consume.
//!
//! ## Format (TOML, `version = 1`)
//! ```toml
//! version = 1
//!
//! [filesystem]
//! read_only = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
//!              "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"]
//! writable = []            # extra host directories bound read-write at the same path
//! tmp_size = "16M"         # private tmpfs at /tmp
//! tmp_inodes = 1024
//! proc = true              # a fresh /proc of the sandbox's own pid namespace
//! sys = false              # no /sys unless asked
//!
//! [network]
//! mode = "none"            # "none": empty network namespace; "loopback": only `lo`, up
//!
//! [resources]
//! memory_max = "256M"
//! swap_max = 0
//! cpu_max = "100%"         # or "1500m" millicores, or "unlimited"
//! pids_max = 64
//! nofile = 256
//! nproc = 128
//! fsize = "16M"
//! core = 0
//! memlock = "64K"
//! cpu_time_secs = 300
//!
//! [seccomp]
//! groups = ["@default", "@basic-io", "@file-system", "@io-event", "@ipc", "@memory",
//!           "@process", "@signal", "@timer", "@network-io"]
//! allow = []               # extra system-call names
//!
//! [layers]
//! min_landlock_abi = 1
//! allow_degraded = ["landlock_network", "landlock_scope"]
//! allow_degraded_rootless = ["distinct_uid", "cgroup"]
//!
//! [identity]
//! uid_first = 200000       # host uids handed out one per live plugin (root mode)
//! uid_count = 65536
//! inside_uid = 1000
//! inside_gid = 1000
//! hostname = "stockade"
//! ```
//! Every key is optional except `version`; an omitted key takes the built-in default shown
//! above, which is also what `stockade exec` uses without `--policy`. The raw file is kept in
//! [`ValidatedSandboxPolicy::source`] with `None` for omitted keys, so later tools (`policy
//! explain`, `lint`, `diff`) can tell "set to X" from "defaulted to X".
//!
//! Validation refuses, besides malformed values, what no kernel could apply (`nofile`
//! unlimited, `pids_max` or `cpu_max` above the kernel's maxima). What depends on the host —
//! this architecture's system-call names, the hard rlimits the runtime can hand down — the
//! runtime checks when it loads a policy, before anything launches (an invalid policy, not a
//! launch failure).
//!
//! ## Why this shape
//! Parse ([`SandboxPolicyFile`], `deny_unknown_fields`, size-capped) → validate
//! ([`SandboxPolicyFile::validate`], errors name the key) → hand the runtime only a
//! [`ValidatedSandboxPolicy`], whose fields are resolved numbers and enums. Degradations are
//! opt-in per layer: a layer the kernel or the mode cannot provide stops the launch unless the
//! policy names it in `allow_degraded` (or `allow_degraded_rootless` for rootless launches).

pub mod subids;
pub mod syscalls;
pub mod units;

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
pub use units::{CpuQuota, Limit, RawSize, UnitError};

/// The largest `pids_max`: the kernel's `PID_MAX_LIMIT` on 64-bit (4194304); `pids.max` refuses
/// anything above it (EINVAL), so a larger value could never be applied.
pub const MAX_PIDS: u64 = 4 << 20;

/// The smallest `pids_max` and `nproc`: the sandbox's init and the program it forks. A smaller
/// limit refuses the init's fork, so every launch would stop at that step.
pub const MIN_PROCESSES: u64 = 2;

/// The largest `nofile`: no kernel lets `RLIMIT_NOFILE` exceed `fs.nr_open`, and no `fs.nr_open`
/// exceeds this (`INT_MAX` rounded down to a multiple of 64, the kernel's `sysctl_nr_open_max`);
/// so `nofile` can be neither `"unlimited"` nor above it. The host's own `fs.nr_open` (1048576
/// unless raised) and the runtime's hard limits are the runtime's to check, when it loads the
/// policy.
pub const MAX_NOFILE: u64 = 2_147_483_584;

/// Files the sandbox generates in its own /etc unless a `read_only` entry binds the host's
/// (stubs naming only root, the plugin's uid and nobody; the sandbox's hostname). `policy explain`
/// lists them; the runtime's mount plan is checked against this list by a unit test.
pub const GENERATED_ETC: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/nsswitch.conf",
];

/// The only policy format version this build understands.
pub const POLICY_VERSION: u32 = 1;
/// Policy files larger than this are refused before parsing.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Paths the sandbox builds itself; a policy cannot bind over them.
pub const RESERVED_PATHS: &[&str] = &["/", "/proc", "/sys", "/dev", "/tmp", "/plugin"];

/// The policy file as written (every key optional except `version`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxPolicyFile {
    /// Format version; must be 1.
    pub version: u32,
    /// The filesystem view.
    #[serde(default)]
    pub filesystem: FilesystemSection,
    /// The network namespace.
    #[serde(default)]
    pub network: NetworkSection,
    /// cgroup limits and rlimits.
    #[serde(default)]
    pub resources: ResourcesSection,
    /// The seccomp allowlist.
    #[serde(default)]
    pub seccomp: SeccompSection,
    /// Which layers are required and which degradations are tolerated.
    #[serde(default)]
    pub layers: LayersSection,
    /// Uids, gids and hostname.
    #[serde(default)]
    pub identity: IdentitySection,
}

/// `[filesystem]`: the sandbox sees a fresh tmpfs root holding only what is listed here.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemSection {
    /// Host paths bound read-only at the same place (directories or files; a host symlink is
    /// recreated as a symlink, so merged-/usr `/bin -> usr/bin` keeps working). Paths missing on
    /// the host are skipped and reported. Default: the dynamic loader's needs (/usr, /bin, /sbin,
    /// /lib, /lib64, ld.so.cache) and nothing else of /etc.
    pub read_only: Option<Vec<String>>,
    /// Host directories bound read-write at the same place. Default: none. `policy lint` flags
    /// any entry outside the plugin's own directory. A `read_only` entry equal to or beneath
    /// one of these is refused: the read-write bind would cover it.
    pub writable: Option<Vec<String>>,
    /// Size of the private tmpfs at /tmp. Default "16M".
    pub tmp_size: Option<RawSize>,
    /// Inode limit of /tmp (files + directories). Default 1024.
    pub tmp_inodes: Option<u64>,
    /// Mount a fresh /proc (host-revealing files masked). Default true.
    pub proc: Option<bool>,
    /// Bind the host's /sys read-only. Default false.
    pub sys: Option<bool>,
}

/// `[network]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// "none" (default): an empty network namespace, no interface at all is up; only AF_UNIX
    /// sockets can be created. "loopback": a private namespace with `lo` up, AF_INET/AF_INET6
    /// allowed, Landlock TCP rules lifted; nothing outside the sandbox is reachable either way.
    pub mode: Option<NetworkMode>,
}

/// How much network the sandbox has.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Empty network namespace.
    #[default]
    None,
    /// Private network namespace with only loopback up.
    Loopback,
}

/// `[resources]`: cgroup limits (memory, swap, CPU, pids) and rlimits (the rest). Each rlimit
/// must fit under the hard limit of the runtime that launches (checked when the runtime loads
/// the policy): the sandbox can lower a hard limit, never raise it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSection {
    /// cgroup memory limit; the OOM killer acts inside the sandbox when it is hit. Default "256M".
    pub memory_max: Option<RawSize>,
    /// cgroup swap allowance. Default 0 (no swap).
    pub swap_max: Option<RawSize>,
    /// cgroup CPU quota: "50%" of one CPU, "1500m" millicores, or "unlimited". Default "100%".
    /// At least 10m ("1%", the kernel's smallest quota per 100 ms period) and at most
    /// 175921860444m (its largest).
    pub cpu_max: Option<String>,
    /// cgroup limit on processes + threads. Default 64. At most 4194304 (the kernel's pid limit),
    /// or "unlimited".
    pub pids_max: Option<RawSize>,
    /// RLIMIT_NOFILE: open descriptors per process. Default 256. Never "unlimited": the kernel
    /// caps it at `fs.nr_open` (1048576 unless raised).
    pub nofile: Option<RawSize>,
    /// RLIMIT_NPROC: processes and threads of the sandbox uid. Default 128: a backstop above
    /// `pids_max`, so that the cgroup limit (which is reported) is the one normally hit.
    pub nproc: Option<RawSize>,
    /// RLIMIT_FSIZE: largest file a process may write. Default "16M".
    pub fsize: Option<RawSize>,
    /// RLIMIT_CORE. Default 0 (no core dumps, which could leak memory to the host).
    pub core: Option<RawSize>,
    /// RLIMIT_MEMLOCK. Default "64K".
    pub memlock: Option<RawSize>,
    /// RLIMIT_CPU in seconds of CPU time. Default 300.
    pub cpu_time_secs: Option<RawSize>,
}

/// `[seccomp]`: a default-deny allowlist; anything not allowed kills the process.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeccompSection {
    /// Named groups (see [`syscalls::GROUPS`]). Default: every group but the opt-in ones
    /// ([`syscalls::OPT_IN`]: `@file-watch`).
    pub groups: Option<Vec<String>>,
    /// Extra system-call names. Calls in [`syscalls::NEVER`] are refused. A name this host's
    /// architecture does not have (`vm86` on x86_64) is refused when the runtime loads the
    /// policy, unless a group lists it (the groups name both spellings, e.g. `open`/`openat`).
    pub allow: Option<Vec<String>>,
}

/// `[layers]`: isolation layers that may be missing without stopping the launch.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayersSection {
    /// Lowest Landlock ABI accepted (0 = Landlock may be absent). Default 1.
    pub min_landlock_abi: Option<u8>,
    /// Degradations tolerated in every mode. Default ["landlock_network", "landlock_scope"]:
    /// the network and pid namespaces already give what those Landlock features add.
    pub allow_degraded: Option<Vec<Degradation>>,
    /// Degradations tolerated only when the runtime is not root. Default ["distinct_uid",
    /// "cgroup"]: an unprivileged caller cannot switch to another host uid, and cgroups work only
    /// where the caller's cgroup is delegated to it; rlimits and the namespaces still apply.
    pub allow_degraded_rootless: Option<Vec<Degradation>>,
}

/// `layers.allow_degraded` when no file sets it: what the network and pid namespaces already
/// give, so a kernel without these newer Landlock features loses nothing. `policy lint` does
/// not report these (a file that spells the default out weakens nothing).
pub const DEFAULT_ALLOW_DEGRADED: [Degradation; 2] =
    [Degradation::LandlockNetwork, Degradation::LandlockScope];

/// `layers.allow_degraded_rootless` when no file sets it: what an unprivileged caller cannot
/// have (another host uid, an undelegated cgroup). Not reported by `policy lint` either.
pub const DEFAULT_ALLOW_DEGRADED_ROOTLESS: [Degradation; 2] =
    [Degradation::DistinctUid, Degradation::Cgroup];

/// A layer that may be missing if the policy says so.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Degradation {
    /// The plugin runs as the caller's own host uid instead of a dedicated one.
    DistinctUid,
    /// No cgroup (no memory/CPU/pids limits beyond rlimits).
    Cgroup,
    /// A cgroup whose limits cannot all be applied: `cpu_max` when the cpu controller is not
    /// delegated, `swap_max` without swap accounting. Implied by `cgroup` (a group with some
    /// limits is less degraded than none).
    CgroupPartial,
    /// Landlock entirely missing (or below `min_landlock_abi`).
    Landlock,
    /// Landlock cannot restrict TCP bind/connect (ABI < 4).
    LandlockNetwork,
    /// Landlock cannot scope abstract unix sockets and signals (ABI < 6).
    LandlockScope,
}

impl Degradation {
    /// The name used in policy files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Degradation::DistinctUid => "distinct_uid",
            Degradation::Cgroup => "cgroup",
            Degradation::CgroupPartial => "cgroup_partial",
            Degradation::Landlock => "landlock",
            Degradation::LandlockNetwork => "landlock_network",
            Degradation::LandlockScope => "landlock_scope",
        }
    }
}

/// `[identity]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// First host uid (and gid) of the per-plugin range. Default 200000.
    pub uid_first: Option<u32>,
    /// Size of the range. Default 65536.
    pub uid_count: Option<u32>,
    /// The uid the program sees for itself. Default 1000 (never 0).
    pub inside_uid: Option<u32>,
    /// The gid the program sees for itself. Default 1000 (never 0).
    pub inside_gid: Option<u32>,
    /// Hostname in the sandbox's UTS namespace. Default "stockade".
    pub hostname: Option<String>,
}

/// A policy that passed validation: every value resolved. Only this type reaches the launcher.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidatedSandboxPolicy {
    /// Host paths bound read-only.
    pub read_only: Vec<String>,
    /// Host directories bound read-write.
    pub writable: Vec<String>,
    /// /tmp size in bytes.
    pub tmp_size: u64,
    /// /tmp inode limit.
    pub tmp_inodes: u64,
    /// Fresh /proc.
    pub proc: bool,
    /// Read-only /sys.
    pub sys: bool,
    /// Network mode.
    pub network: NetworkMode,
    /// Resolved limits.
    pub resources: Resources,
    /// Selected group names, in file order.
    pub seccomp_groups: Vec<String>,
    /// Every unconditionally allowed system-call name (groups + extras).
    pub seccomp_allow: BTreeSet<String>,
    /// Conditional calls enabled by the selected groups (see [`syscalls::CONDITIONAL`]).
    pub seccomp_conditional: BTreeSet<String>,
    /// Lowest acceptable Landlock ABI.
    pub min_landlock_abi: u8,
    /// Tolerated degradations in every mode.
    pub allow_degraded: BTreeSet<Degradation>,
    /// Tolerated degradations in rootless mode.
    pub allow_degraded_rootless: BTreeSet<Degradation>,
    /// Host uid range start.
    pub uid_first: u32,
    /// Host uid range size.
    pub uid_count: u32,
    /// Inside uid.
    pub inside_uid: u32,
    /// Inside gid.
    pub inside_gid: u32,
    /// Hostname.
    pub hostname: String,
    /// The file as written, for tools that explain where a value came from.
    pub source: SandboxPolicyFile,
}

/// Queued signals a sandbox may have pending (`RLIMIT_SIGPENDING`, set on every launch; not a
/// policy key). Per-user signal counts are charged up the user-namespace chain to the
/// namespace's owner — the runtime's user, root — and checked there against the limit that user
/// had when the namespace was made: without a limit of its own, a plugin could queue root's whole
/// `RLIMIT_SIGPENDING` (tens of thousands) and make every `sigqueue` to root's processes fail.
/// POSIX asks for at least 32 (`_POSIX_SIGQUEUE_MAX`).
pub const SIGPENDING: u64 = 128;

/// A sandbox's stack limit (`RLIMIT_STACK`, soft = hard, set on every launch; not a policy
/// key): 8 MiB, the kernel's default (`_STK_LIM`) and every distribution's soft limit, never
/// the runtime's caller's (`ulimit -s unlimited` also switches the kernel to the legacy
/// bottom-up mmap layout). Never above the runtime's own hard limit, which a sandbox cannot
/// raise.
pub const STACK: u64 = 8 << 20;

/// Resolved resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// cgroup memory.max.
    pub memory_max: Limit,
    /// cgroup swap allowance.
    pub swap_max: Limit,
    /// cgroup CPU quota.
    pub cpu_max: CpuQuota,
    /// cgroup pids.max.
    pub pids_max: Limit,
    /// RLIMIT_NOFILE.
    pub nofile: Limit,
    /// RLIMIT_NPROC.
    pub nproc: Limit,
    /// RLIMIT_FSIZE.
    pub fsize: Limit,
    /// RLIMIT_CORE.
    pub core: Limit,
    /// RLIMIT_MEMLOCK.
    pub memlock: Limit,
    /// RLIMIT_CPU (seconds).
    pub cpu_time_secs: Limit,
}

impl ValidatedSandboxPolicy {
    /// Whether a missing layer is tolerated in this mode.
    pub fn allows(&self, d: Degradation, rootless: bool) -> bool {
        let allowed = |d| {
            self.allow_degraded.contains(&d)
                || (rootless && self.allow_degraded_rootless.contains(&d))
        };
        allowed(d) || (d == Degradation::CgroupPartial && allowed(Degradation::Cgroup))
    }
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxPolicyError {
    /// Larger than [`MAX_POLICY_BYTES`].
    #[error("policy is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Actual size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not valid TOML or not the expected shape (unknown key, wrong type); the cause names the
    /// line, column and key.
    #[error("policy does not parse")]
    Syntax(#[source] crate::TomlSyntax),
    /// An unsupported `version`.
    #[error("policy version {found} is not supported (this build reads version {POLICY_VERSION})")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// A value is out of range or malformed.
    #[error("invalid value for `{key}`{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        /// The dotted key, e.g. `resources.memory_max`.
        key: String,
        /// The 1-based line of the key in the text, when parsed from text.
        line: Option<usize>,
        /// What is wrong with it.
        #[source]
        cause: FieldError,
    },
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// A quantity did not parse.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// A path must be absolute, normalised, without `..`.
    #[error("`{0}` must be an absolute, normalised path without `.`, `..` or `//`")]
    BadPath(String),
    /// A path the sandbox builds itself.
    #[error("`{0}` is built by the sandbox and cannot be bound from the host")]
    ReservedPath(String),
    /// A `read_only` entry at or beneath a `writable` one: writable binds come last and
    /// Landlock grants writes beneath a writable path, so it would be writable.
    #[error(
        "`{read_only}` is listed read-only but lies in the writable `{writable}`, which would \
         make it writable: take it out of one list (a read-only part of a writable tree is not \
         supported)"
    )]
    ReadOnlyUnderWritable {
        /// The `read_only` entry.
        read_only: String,
        /// The `writable` entry that contains it.
        writable: String,
    },
    /// Unknown seccomp group.
    #[error("unknown seccomp group `{0}`")]
    UnknownGroup(String),
    /// A system call that no policy may allow.
    #[error("system call `{0}` can never be allowed (it would let the program leave the sandbox)")]
    ForbiddenSyscall(String),
    /// Not a plausible system-call name.
    #[error("`{0}` is not a system-call name")]
    BadSyscallName(String),
    /// A number out of range.
    #[error("{0}")]
    Range(String),
}

fn invalid(key: &str, cause: impl Into<FieldError>) -> SandboxPolicyError {
    SandboxPolicyError::Invalid {
        key: key.to_string(),
        line: None,
        cause: cause.into(),
    }
}

/// Parse and validate policy text.
pub fn parse_policy(text: &str) -> Result<ValidatedSandboxPolicy, SandboxPolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(SandboxPolicyError::TooLarge {
            size: text.len(),
            max: MAX_POLICY_BYTES,
        });
    }
    if let Some(found) = crate::newer_toml_version(text) {
        return Err(SandboxPolicyError::Version { found });
    }
    let file: SandboxPolicyFile = toml::from_str(text)
        .map_err(|e| SandboxPolicyError::Syntax(crate::TomlSyntax::new(text, &e)))?;
    file.validate().map_err(|e| match e {
        SandboxPolicyError::Invalid { key, cause, .. } => SandboxPolicyError::Invalid {
            line: locate_key(text, &key),
            key,
            cause,
        },
        other => other,
    })
}

/// The 1-based line where a dotted key (`section.key`) is set in policy text, for messages and
/// for tools that explain which line decided a value. Understands the subset of TOML this
/// format uses: `[section]` headers and `key = …` lines (comments and blank lines skipped).
pub fn locate_key(text: &str, dotted: &str) -> Option<usize> {
    let (want_section, want_key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = h.trim().to_string();
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        let (sec, key) = match k.rsplit_once('.') {
            // Dotted keys (`resources.memory_max = …`) at top level.
            Some((s, k)) if section.is_empty() => (s.to_string(), k),
            _ => (section.clone(), k),
        };
        if sec == want_section && key == want_key {
            return Some(i + 1);
        }
    }
    None
}

/// The built-in default policy (what `stockade exec` uses without `--policy`).
pub fn default_policy() -> ValidatedSandboxPolicy {
    let file = SandboxPolicyFile {
        version: POLICY_VERSION,
        ..SandboxPolicyFile::default()
    };
    match file.validate() {
        Ok(p) => p,
        // The defaults are constants checked by a unit test; reaching this is a build defect.
        Err(e) => panic!("built-in default sandbox policy is invalid: {e}"),
    }
}

/// `filesystem.read_only` when no file sets it: what a dynamically linked program may need on
/// some host (a given host lacks some, e.g. `/lib32`; the launch skips what is missing).
/// `policy lint` does not report these as missing: a file that spells the default out (the
/// shipped policy.toml) names nothing the host was expected to have.
pub const DEFAULT_READ_ONLY: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
];

/// Whether `p` is an absolute, normalised path: starts with `/`, no empty, `.` or `..`
/// component, no trailing `/` (except `/` itself), no NUL. The form the sandbox binds (and so
/// the form a `writable:<path>` grant must name to ever match one).
pub fn is_normalised_absolute(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains('\0')
        && (p == "/" || !p.ends_with('/'))
        && !p.contains("//")
        && p.split('/').all(|c| c != "." && c != "..")
}

/// Whether the path `p` is `dir` or lies beneath it, by whole components (`/usr/lib` is under
/// `/usr`, `/usrx` is not). Both are normalised absolute paths ([`is_normalised_absolute`]), so
/// `dir` `/` is matched by `/` alone (`{dir}/` is `//`, which no such path starts with): each
/// caller's lists treat `/` that way (a reserved `/` is `/` itself).
pub fn is_at_or_under(p: &str, dir: &str) -> bool {
    p == dir || p.starts_with(&format!("{dir}/"))
}

/// The first `read_only` entry equal to or beneath a `writable` one, with that writable entry.
///
/// The runtime binds every read-only path, then every writable one, and Landlock grants every
/// access beneath a writable path: a read-only entry inside a writable tree is covered by the
/// read-write bind and ends up writable. A reviewer reads the narrower entry as the one that
/// wins, so the policy is refused rather than enforced the other way round.
fn read_only_under_writable<'a>(
    read_only: &'a [String],
    writable: &'a [String],
) -> Option<(&'a str, &'a str)> {
    read_only.iter().find_map(|r| {
        writable
            .iter()
            .find(|w| is_at_or_under(r, w))
            .map(|w| (r.as_str(), w.as_str()))
    })
}

fn check_path(key: &str, p: &str) -> Result<(), SandboxPolicyError> {
    if !is_normalised_absolute(p) {
        return Err(invalid(key, FieldError::BadPath(p.to_string())));
    }
    let reserved = RESERVED_PATHS.iter().any(|r| is_at_or_under(p, r));
    if reserved {
        return Err(invalid(key, FieldError::ReservedPath(p.to_string())));
    }
    Ok(())
}

fn size(key: &str, raw: Option<&RawSize>, default: Limit) -> Result<Limit, SandboxPolicyError> {
    match raw {
        None => Ok(default),
        Some(r) => units::parse_size(r).map_err(|e| invalid(key, e)),
    }
}

fn finite(key: &str, l: Limit) -> Result<u64, SandboxPolicyError> {
    l.max()
        .ok_or_else(|| invalid(key, FieldError::Range("must be a finite size".into())))
}

impl SandboxPolicyFile {
    /// Check every value and resolve defaults. Errors name the offending key.
    pub fn validate(self) -> Result<ValidatedSandboxPolicy, SandboxPolicyError> {
        if self.version != POLICY_VERSION {
            return Err(SandboxPolicyError::Version {
                found: self.version,
            });
        }
        let fs = &self.filesystem;
        let read_only: Vec<String> = match &fs.read_only {
            Some(v) => v.clone(),
            None => DEFAULT_READ_ONLY.iter().map(|s| s.to_string()).collect(),
        };
        for p in &read_only {
            check_path("filesystem.read_only", p)?;
        }
        let writable = fs.writable.clone().unwrap_or_default();
        for p in &writable {
            check_path("filesystem.writable", p)?;
        }
        if let Some((ro, w)) = read_only_under_writable(&read_only, &writable) {
            return Err(invalid(
                "filesystem.writable",
                FieldError::ReadOnlyUnderWritable {
                    read_only: ro.to_string(),
                    writable: w.to_string(),
                },
            ));
        }
        let tmp_size = finite(
            "filesystem.tmp_size",
            size(
                "filesystem.tmp_size",
                fs.tmp_size.as_ref(),
                Limit::Max(16 << 20),
            )?,
        )?;
        if tmp_size < 4096 {
            return Err(invalid(
                "filesystem.tmp_size",
                FieldError::Range("must be at least 4K".into()),
            ));
        }
        let tmp_inodes = fs.tmp_inodes.unwrap_or(1024);
        if tmp_inodes < 16 {
            return Err(invalid(
                "filesystem.tmp_inodes",
                FieldError::Range("must be at least 16".into()),
            ));
        }

        let r = &self.resources;
        let cpu_max = match &r.cpu_max {
            None => CpuQuota::Millicores(1000),
            Some(s) => units::parse_cpu(s).map_err(|e| invalid("resources.cpu_max", e))?,
        };
        let resources = Resources {
            memory_max: size(
                "resources.memory_max",
                r.memory_max.as_ref(),
                Limit::Max(256 << 20),
            )?,
            swap_max: size("resources.swap_max", r.swap_max.as_ref(), Limit::Max(0))?,
            cpu_max,
            pids_max: size("resources.pids_max", r.pids_max.as_ref(), Limit::Max(64))?,
            nofile: size("resources.nofile", r.nofile.as_ref(), Limit::Max(256))?,
            nproc: size("resources.nproc", r.nproc.as_ref(), Limit::Max(128))?,
            fsize: size("resources.fsize", r.fsize.as_ref(), Limit::Max(16 << 20))?,
            core: size("resources.core", r.core.as_ref(), Limit::Max(0))?,
            memlock: size(
                "resources.memlock",
                r.memlock.as_ref(),
                Limit::Max(64 << 10),
            )?,
            cpu_time_secs: size(
                "resources.cpu_time_secs",
                r.cpu_time_secs.as_ref(),
                Limit::Max(300),
            )?,
        };
        if let Limit::Max(m) = resources.memory_max {
            if m < (4 << 20) {
                return Err(invalid(
                    "resources.memory_max",
                    FieldError::Range(
                        "must be at least 4M (the runtime's own setup needs it)".into(),
                    ),
                ));
            }
        }
        if let CpuQuota::Millicores(m) = resources.cpu_max {
            if m < units::MIN_CPU_MILLICORES {
                return Err(invalid(
                    "resources.cpu_max",
                    FieldError::Range(format!(
                        "must be at least {}m (\"1%\"): the kernel refuses a CPU quota below {} \
                         µs per {} µs period, so a smaller one would run as {}m",
                        units::MIN_CPU_MILLICORES,
                        units::MIN_CPU_QUOTA_US,
                        units::CPU_PERIOD_US,
                        units::MIN_CPU_MILLICORES
                    )),
                ));
            }
            if m > units::MAX_CPU_MILLICORES {
                return Err(invalid(
                    "resources.cpu_max",
                    FieldError::Range(format!(
                        "must be at most {}m: the kernel refuses a CPU quota above {} µs per \
                         {} µs period (or use \"unlimited\")",
                        units::MAX_CPU_MILLICORES,
                        units::MAX_CPU_QUOTA_US,
                        units::CPU_PERIOD_US
                    )),
                ));
            }
        }
        // The sandbox's init and the program are two processes of the sandbox's cgroup and of
        // its uid: below two, the init's fork of the program fails and every launch stops with
        // 125 (pids_max and nproc 0 and 1 passed validation before audit-134).
        for (key, l) in [
            ("resources.pids_max", resources.pids_max),
            ("resources.nproc", resources.nproc),
        ] {
            if matches!(l, Limit::Max(n) if n < MIN_PROCESSES) {
                return Err(invalid(
                    key,
                    FieldError::Range(format!(
                        "must be at least {MIN_PROCESSES}: the sandbox's init and the program \
                         are two processes, so a smaller limit refuses every launch"
                    )),
                ));
            }
        }
        // RLIMIT_CPU 0 is no "no CPU time" the kernel applies gracefully: the first tick of
        // CPU time kills (SIGKILL, soft = hard) whatever runs, so no program could start.
        if resources.cpu_time_secs == Limit::Max(0) {
            return Err(invalid(
                "resources.cpu_time_secs",
                FieldError::Range(
                    "must be at least 1: RLIMIT_CPU 0 kills every program (SIGKILL) as it \
                     starts"
                        .into(),
                ),
            ));
        }
        if matches!(resources.pids_max, Limit::Max(n) if n > MAX_PIDS) {
            return Err(invalid(
                "resources.pids_max",
                FieldError::Range(format!(
                    "must be at most {MAX_PIDS}, the kernel's pid limit (or \"unlimited\")"
                )),
            ));
        }
        // Descriptors 0-2 plus the runtime's descriptors during setup must fit.
        if matches!(resources.nofile, Limit::Max(n) if n < 16) {
            return Err(invalid(
                "resources.nofile",
                FieldError::Range("must be at least 16".into()),
            ));
        }
        let nofile_over = match resources.nofile {
            Limit::Unlimited => Some("cannot be unlimited"),
            Limit::Max(n) if n > MAX_NOFILE => Some("is too large"),
            Limit::Max(_) => None,
        };
        if let Some(what) = nofile_over {
            return Err(invalid(
                "resources.nofile",
                FieldError::Range(format!(
                    "{what}: the kernel caps open descriptors at fs.nr_open (1048576 unless \
                     raised, {MAX_NOFILE} at most)"
                )),
            ));
        }

        let groups: Vec<String> = match &self.seccomp.groups {
            Some(g) => g.clone(),
            None => syscalls::GROUPS
                .iter()
                .filter(|g| !syscalls::OPT_IN.contains(&g.name))
                .map(|g| g.name.to_string())
                .collect(),
        };
        let mut seccomp_allow = BTreeSet::new();
        let mut seccomp_conditional = BTreeSet::new();
        for name in &groups {
            let g = syscalls::group(name)
                .ok_or_else(|| invalid("seccomp.groups", FieldError::UnknownGroup(name.clone())))?;
            seccomp_allow.extend(g.syscalls.iter().map(|s| s.to_string()));
            seccomp_conditional.extend(
                syscalls::CONDITIONAL
                    .iter()
                    .filter(|c| c.group == g.name)
                    .map(|c| c.name.to_string()),
            );
        }
        for name in self.seccomp.allow.iter().flatten() {
            let plausible = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !plausible {
                return Err(invalid(
                    "seccomp.allow",
                    FieldError::BadSyscallName(name.clone()),
                ));
            }
            if syscalls::NEVER.contains(&name.as_str())
                || syscalls::CONDITIONAL.iter().any(|c| c.name == name)
            {
                return Err(invalid(
                    "seccomp.allow",
                    FieldError::ForbiddenSyscall(name.clone()),
                ));
            }
            seccomp_allow.insert(name.clone());
        }

        let l = &self.layers;
        let min_landlock_abi = l.min_landlock_abi.unwrap_or(1);
        if min_landlock_abi > 9 {
            return Err(invalid(
                "layers.min_landlock_abi",
                FieldError::Range("no Landlock ABI above 9 is known".into()),
            ));
        }
        let allow_degraded: BTreeSet<Degradation> = match &l.allow_degraded {
            Some(v) => v.iter().copied().collect(),
            None => DEFAULT_ALLOW_DEGRADED.into(),
        };
        let allow_degraded_rootless: BTreeSet<Degradation> = match &l.allow_degraded_rootless {
            Some(v) => v.iter().copied().collect(),
            None => DEFAULT_ALLOW_DEGRADED_ROOTLESS.into(),
        };

        let id = &self.identity;
        let uid_first = id.uid_first.unwrap_or(200_000);
        let uid_count = id.uid_count.unwrap_or(65_536);
        if uid_first < 1000 || uid_count == 0 || uid_first.checked_add(uid_count).is_none() {
            return Err(invalid(
                "identity.uid_first",
                FieldError::Range(
                    "the range must start at 1000 or above, be non-empty and fit in 32 bits".into(),
                ),
            ));
        }
        let inside_uid = id.inside_uid.unwrap_or(1000);
        let inside_gid = id.inside_gid.unwrap_or(1000);
        if inside_uid == 0 || inside_uid == u32::MAX {
            return Err(invalid(
                "identity.inside_uid",
                FieldError::Range("the sandboxed program never runs as uid 0".into()),
            ));
        }
        if inside_gid == 0 || inside_gid == u32::MAX {
            return Err(invalid(
                "identity.inside_gid",
                FieldError::Range("the sandboxed program never runs as gid 0".into()),
            ));
        }
        let hostname = id.hostname.clone().unwrap_or_else(|| "stockade".into());
        let host_ok = !hostname.is_empty()
            && hostname.len() <= 64
            && hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !host_ok {
            return Err(invalid(
                "identity.hostname",
                FieldError::Range("1-64 characters of [A-Za-z0-9.-]".into()),
            ));
        }

        Ok(ValidatedSandboxPolicy {
            read_only,
            writable,
            tmp_size,
            tmp_inodes,
            proc: fs.proc.unwrap_or(true),
            sys: fs.sys.unwrap_or(false),
            network: self.network.mode.unwrap_or_default(),
            resources,
            seccomp_groups: groups,
            seccomp_allow,
            seccomp_conditional,
            min_landlock_abi,
            allow_degraded,
            allow_degraded_rootless,
            uid_first,
            uid_count,
            inside_uid,
            inside_gid,
            hostname,
            source: self,
        })
    }
}

#[cfg(test)]
mod tests;
