//! The command-line interface. Subcommand and flag names are a public interface that agents and
//! scripts depend on (see the issues that fixed them): add, never rename.
//!
//! The doc comments below are the terminal's help text and the man pages (clap), not markdown:
//! placeholders such as `license:<serial>` are written as a user types them, so rustdoc's
//! HTML-tag check does not apply here.
#![allow(rustdoc::invalid_html_tags)]

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// Stockade: verify signed plugins and run them in a hardened Linux sandbox.
#[derive(Debug, Parser)]
#[command(name = "stockade", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Print one machine-readable JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Whether a command line clap refused asked for `--json`: the flag is global, so it counts
/// anywhere before the `--` that starts a program's own arguments (`exec -- prog --json` is the
/// program's). Said by hand because clap, having refused the line, parsed none of it, and an
/// agent that asked for JSON must get JSON for a usage error too.
pub fn json_requested<I, S>(args: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    args.into_iter()
        .skip(1)
        .map_while(|a| (a.as_ref() != "--").then_some(a))
        .any(|a| a.as_ref() == "--json")
}

/// A command line clap refused, as the command error every other usage mistake is (64
/// `usage`): clap's first line is the message (without its `error: ` prefix), the usage and
/// tips after it the hint.
pub fn usage_error(e: &clap::Error) -> crate::error::CmdError {
    let text = e.render().to_string();
    // `stockade node` alone: clap's "error" is the command's help, whose first line is its
    // description, not what went wrong.
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return crate::error::CmdError::msg(
            crate::exit::Exit::Usage,
            "usage",
            "this command needs a subcommand (listed in the hint)".to_string(),
        )
        .hint(text.trim());
    }
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let message = first.trim().trim_start_matches("error:").trim().to_string();
    let err = crate::error::CmdError::msg(crate::exit::Exit::Usage, "usage", message);
    match rest.trim() {
        "" => err,
        rest => err.hint(rest),
    }
}

/// Every subcommand. Each one's arguments (or nested subcommands) are built only when the command
/// line selects it ([`Deferred`]).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 key pair in minisign's formats: NAME.key (secret, 0600) and NAME.pub.
    Keygen(Deferred<KeygenArgs>),
    /// Run a certificate authority: create roots and intermediates, issue and revoke certificates.
    #[command(subcommand)]
    Ca(Deferred<CaCommand>),
    /// Validate a plugin directory and produce one signed, shippable package file.
    Pack(Deferred<PackArgs>),
    /// Run the whole fail-closed verification of a package and print the report.
    Verify(Deferred<VerifyArgs>),
    /// Print a package's manifest, signer, chain, scope and file list without running anything.
    Inspect(Deferred<InspectArgs>),
    /// Facts about this node.
    #[command(subcommand)]
    Node(Deferred<NodeCommand>),
    /// Run any executable under a sandbox policy (no package needed).
    Exec(Deferred<ExecArgs>),
    /// Verify a package, launch it sandboxed and serve its hooks to the agent over this
    /// process's stdin/stdout (NDJSON JSON-RPC, docs/protocol.md). EOF on stdin stops it.
    Run(Deferred<RunArgs>),
    /// Daemon: supervise many plugins for many agents on a Unix socket (NDJSON JSON-RPC,
    /// docs/protocol.md); systemd socket activation and sd_notify aware. SIGTERM stops it.
    Serve(Deferred<ServeArgs>),
    /// Audit the operator policy: lint, explain, diff, schema (stockade-policy(5)).
    #[command(subcommand)]
    Policy(Deferred<PolicyCommand>),
    /// Signed authorization grants for high-risk items: issue and verify.
    #[command(subcommand)]
    Grant(Deferred<GrantCommand>),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(Deferred<AuditCommand>),
    /// Verify packages and install them into the store, dependencies first, atomically.
    Install(Deferred<InstallArgs>),
    /// The installed plugins, with signature_status, signer and dependencies.
    List(Deferred<ListArgs>),
    /// Remove an installed plugin (refused while others need it, unless --force).
    Remove(Deferred<RemoveArgs>),
    /// Update plugins installed from sources to the newest version listed (delisted ones are
    /// flagged and left alone).
    Update(Deferred<UpdateArgs>),
    /// Signed plugin indexes: add, list, remove, and the explicit re-pin flows.
    #[command(subcommand)]
    Source(Deferred<SourceCommand>),
    /// Internal: the program an HTTP plugin's sandbox runs (docs/http-plugins.md). Not for
    /// people: it expects /plugin and the runtime on its stdin/stdout.
    #[command(hide = true)]
    HttpBridge,
}

/// `stockade update`
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Only this installed plugin.
    pub id: Option<String>,
    #[command(flatten)]
    pub lock: StoreLockArg,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub root: PolicyRootArg,
    #[command(flatten)]
    pub sources: SourcesDirArg,
}

/// `stockade source …`
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Add a source: pin its operator key (the fingerprint is shown) and verify its index now.
    Add(SourceAddArgs),
    /// The configured sources, their pinned keys and last verified index.
    List(SourceListArgs),
    /// Remove a source (plugins installed from it stay installed and get no updates).
    Remove(SourceRemoveArgs),
    /// Fetch and verify every source's index now (or one's), as install and update do: rollback,
    /// freeze and key checks; the verified index replaces the cached one (delistings then show
    /// in `list`). Every source is tried; one that fails keeps its cached index and is reported,
    /// and the status is the first failure's code. Run on a schedule by stockade-refresh.timer.
    Refresh(SourceRefreshArgs),
    /// WARNING: replace a source's pinned operator key without a rotation proof.
    Repin(SourceRepinArgs),
    /// WARNING: replace a plugin's pinned author key without a rotation proof.
    RepinAuthor(SourceRepinAuthorArgs),
}

/// `stockade source add`
#[derive(Debug, Args)]
pub struct SourceAddArgs {
    /// A name for the source.
    pub name: String,
    /// URL of its index.json (file://, https://, or http:// to loopback only).
    pub url: String,
    /// The operator's minisign public key, obtained out of band.
    #[arg(long, value_name = "KEY.pub")]
    pub operator_key: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub sources: SourcesDirArg,
    // The operator policy: its `[audit]` log records the change.
    #[command(flatten)]
    pub root: PolicyRootArg,
}

/// `stockade source list`
#[derive(Debug, Args)]
pub struct SourceListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub sources: SourcesDirArg,
}

/// `stockade source refresh`
#[derive(Debug, Args)]
pub struct SourceRefreshArgs {
    /// Only this source.
    pub name: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub sources: SourcesDirArg,
}

/// `stockade source remove`
#[derive(Debug, Args)]
pub struct SourceRemoveArgs {
    /// The source's name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub sources: SourcesDirArg,
    // The operator policy: its `[audit]` log records the change.
    #[command(flatten)]
    pub root: PolicyRootArg,
}

/// `stockade source repin`
#[derive(Debug, Args)]
pub struct SourceRepinArgs {
    /// The source's name.
    pub name: String,
    /// The new operator key, verified out of band.
    #[arg(long, value_name = "KEY.pub")]
    pub operator_key: PathBuf,
    /// Confirm: you checked the new key's fingerprint with the operator out of band.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub sources: SourcesDirArg,
    // The operator policy: its `[audit]` log records the change.
    #[command(flatten)]
    pub root: PolicyRootArg,
}

/// `stockade source repin-author`
#[derive(Debug, Args)]
pub struct SourceRepinAuthorArgs {
    /// The plugin id.
    pub id: String,
    /// The new author key, verified out of band.
    #[arg(long, value_name = "KEY.pub")]
    pub author_key: PathBuf,
    /// Also re-pin this author name (an index's `author.name`), whose key is pinned apart
    /// from the plugin id's.
    #[arg(long, value_name = "NAME")]
    pub author: Option<String>,
    /// Confirm: you checked the new key's fingerprint with the author out of band.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub sources: SourcesDirArg,
    // The operator policy: its `[audit]` log records the change.
    #[command(flatten)]
    pub root: PolicyRootArg,
}

/// The store's state directory and locking behaviour.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// State directory holding the store (`<DIR>/store`).
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_STATE_DIR",
        default_value = DEFAULT_STATE_DIR,
        value_parser = state_dir_parser()
    )]
    pub state_dir: PathBuf,
    #[command(flatten)]
    pub lock: StoreLockArg,
}

/// How a command that takes the store lock waits for it: one definition for `install`, `update`
/// and every command of [`StoreArgs`], so their `--no-wait` and its exit code read the same.
#[derive(Debug, Args, Clone)]
pub struct StoreLockArg {
    /// Fail with exit 108 instead of waiting when another stockade process holds the store lock.
    #[arg(long)]
    pub no_wait: bool,
}

/// Where root's source configuration (`sources.json`, `pins.json`) is kept when the state
/// directory is another user's (docs/sources.md, "State").
#[derive(Debug, Args, Clone)]
pub struct SourcesDirArg {
    /// Directory of the sources' configuration (sources.json, pins.json). Not given: the state
    /// directory when it is this user's, else /etc/stockade/sources. Given: always this one.
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_SOURCES_DIR",
        value_parser = sources_dir_parser()
    )]
    pub sources_dir: Option<PathBuf>,
}

/// `stockade install`
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Package files, or `ID[@VERSION]` from the configured sources (VERSION exact, or a semver
    /// requirement). Several are installed together, dependencies first, in one commit; with
    /// sources, missing dependencies are fetched too. An existing file always wins.
    #[arg(required = true, value_name = "PKG_FILE|ID[@VERSION]")]
    pub targets: Vec<String>,
    /// Allow replacing a newer installed version (downgrade) or the same version with
    /// different content.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub lock: StoreLockArg,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub root: PolicyRootArg,
    #[command(flatten)]
    pub sources: SourcesDirArg,
}

/// `stockade list`
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub sources: SourcesDirArg,
}

/// `stockade remove`
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The plugin's name.
    pub id: String,
    /// Remove even if other installed plugins depend on it (they are reported).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub root: PolicyRootArg,
}

/// Where the operator policy is read from: `<DIR>/etc/stockade`, `<DIR>/run/stockade`,
/// `<DIR>/usr/lib/stockade` (each `policy.toml` + `policy.d/*.toml`).
#[derive(Debug, Args, Clone)]
pub struct PolicyRootArg {
    /// Root under which etc/, run/ and usr/lib/ are looked up (for tests and packagers).
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_POLICY_ROOT",
        default_value = "/"
    )]
    pub policy_root: PathBuf,
}

/// `stockade policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Report findings (severity + file:line); exit 1 at or above --fail-level, 65 if invalid.
    Lint(PolicyLintArgs),
    /// The effective decision for every item, who decided it, and an exposure score.
    Explain(PolicyExplainArgs),
    /// What a change from policy A to policy B widens or narrows.
    Diff(PolicyDiffArgs),
    /// The JSON Schema of the policy file format.
    Schema,
}

/// `stockade policy lint`
#[derive(Debug, Args)]
pub struct PolicyLintArgs {
    /// Policy files, applied as layers in the order given; the operator layers when omitted.
    pub files: Vec<PathBuf>,
    /// Lowest severity that makes the exit status 1: info, warning or error.
    #[arg(long, default_value = "warning")]
    pub fail_level: String,
    #[command(flatten)]
    pub root: PolicyRootArg,
}

/// `stockade policy explain`
#[derive(Debug, Args)]
pub struct PolicyExplainArgs {
    /// A package: verify it and explain exactly what `stockade run` would grant it.
    pub package: Option<PathBuf>,
    /// Explain for this plugin name (its `[plugin."NAME"]` section; no package needed).
    #[arg(long, value_name = "NAME", conflicts_with = "package", value_parser = plugin_name)]
    pub plugin: Option<String>,
    /// Also apply this signer's `[signer."KEYID"]` section (with --plugin): 16 uppercase hex
    /// digits, as `stockade inspect` prints it.
    #[arg(long, value_name = "KEYID", value_parser = signer_id)]
    pub signer: Option<String>,
    /// With --plugin: check the grants for this exact version (a grant is bound to plugin,
    /// version and scope) and report each high-risk item's grant status.
    #[arg(long = "plugin-version", value_name = "VERSION", requires = "plugin")]
    pub plugin_version: Option<String>,
    /// With --plugin-version: the developer certificate's scope the grants must name.
    #[arg(
        long = "scope",
        value_name = "SCOPE",
        default_value = "any",
        requires = "plugin_version"
    )]
    pub scope: String,
    /// One whole policy file instead of the operator layers (as `exec`/`run --policy`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub root: PolicyRootArg,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `stockade policy diff`
#[derive(Debug, Args)]
pub struct PolicyDiffArgs {
    /// The old policy: a file, or a directory used as a policy root.
    pub a: PathBuf,
    /// The new policy: a file, or a directory used as a policy root.
    pub b: PathBuf,
    /// Compare the resolution for this plugin name.
    #[arg(long, value_name = "NAME", value_parser = plugin_name)]
    pub plugin: Option<String>,
}

/// `--state-dir DIR`: made when missing, but something there that is not a directory (a file
/// given by mistake) is refused here, by name, instead of surfacing as "cannot read
/// DIR/license.json: Not a directory" from whichever file is read first.
fn state_dir_parser() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    // OsString: a path need not be UTF-8 (clap's PathBuf parser takes any; so does this one).
    clap::builder::OsStringValueParser::new().try_map(|s| state_dir(&s))
}

/// `--sources-dir DIR`: not empty (an empty `STOCKADE_SOURCES_DIR` is a mistake, not "the
/// current directory").
fn sources_dir_parser() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().try_map(|s| {
        if s.is_empty() {
            Err("the sources directory cannot be empty (STOCKADE_SOURCES_DIR set but empty?)")
        } else {
            Ok(PathBuf::from(s))
        }
    })
}

fn state_dir(s: &std::ffi::OsStr) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.as_os_str().is_empty() {
        return Err(
            "the state directory cannot be empty (STOCKADE_STATE_DIR set but empty?)".into(),
        );
    }
    match std::fs::metadata(&p) {
        Ok(m) if !m.is_dir() => Err(format!(
            "`{}` exists and is not a directory (the state directory is created when missing)",
            p.display()
        )),
        _ => Ok(p),
    }
}

/// `--plugin NAME` of the policy tools: a manifest name, the only kind a `[plugin."NAME"]`
/// section can have (any other would explain a plugin that cannot exist).
fn plugin_name(s: &str) -> Result<String, stockade_policy::manifest::ManifestError> {
    if stockade_policy::manifest::valid_name(s) {
        Ok(s.to_string())
    } else {
        Err(stockade_policy::manifest::ManifestError::Name(
            s.to_string(),
        ))
    }
}

/// `--signer KEYID`: the form `[signer."KEYID"]` sections must use, so that a lowercase id is
/// refused here as it is in the policy file instead of silently matching no section.
fn signer_id(s: &str) -> Result<String, stockade_policy::operator::SignerIdError> {
    stockade_policy::operator::check_signer_id(s).map(|()| s.to_string())
}

/// `stockade grant …`
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Sign a grant with an operator key.
    Issue(GrantIssueArgs),
    /// Check a grant against operator keys and a binding; exit 65 with the refusal's kind.
    Verify(GrantVerifyArgs),
}

/// `stockade grant issue`
#[derive(Debug, Args)]
pub struct GrantIssueArgs {
    /// Operator secret key (from `stockade keygen`; its owner's alone: 0600 or narrower).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The password of an encrypted --key: the first line of this file (a regular file or a
    /// pipe). Without it, an encrypted key's password is asked for on the terminal, and with
    /// no terminal the command fails (key.password_required). Unused for an unencrypted key.
    #[arg(long = "password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Plugin name.
    #[arg(long)]
    pub plugin: String,
    /// Plugin version (exact).
    #[arg(long = "plugin-version", value_name = "VERSION")]
    pub plugin_version: String,
    /// The developer certificate scope it is valid under.
    #[arg(long, default_value = "any")]
    pub scope: String,
    /// What to authorise (repeatable): capability:<cap>, network:loopback,
    /// writable:<absolute normalised path>.
    #[arg(long = "target", value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Validity in days (at least 1).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Output file (conventionally `<grants dir>/<plugin>.grant`); refused if it exists,
    /// unless --force.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Replace an existing output file (renewing a grant).
    #[arg(long)]
    pub force: bool,
    /// Issue as if the current time were this (unix seconds); for back-dating and tests.
    #[arg(long, value_name = "UNIX_SECONDS", hide = true)]
    pub now: Option<u64>,
}

/// `stockade grant verify`
#[derive(Debug, Args)]
pub struct GrantVerifyArgs {
    /// The grant file.
    pub file: PathBuf,
    /// Operator public key(s) accepted (repeatable).
    #[arg(long = "operator-key", value_name = "KEY.pub", required = true)]
    pub operator_keys: Vec<PathBuf>,
    /// Required plugin name.
    #[arg(long)]
    pub plugin: String,
    /// Required plugin version.
    #[arg(long = "plugin-version", value_name = "VERSION")]
    pub plugin_version: String,
    /// Required scope.
    #[arg(long, default_value = "any")]
    pub scope: String,
    /// Required target.
    #[arg(long, value_name = "TARGET")]
    pub target: String,
    /// Check as if the current time were this (unix seconds).
    #[arg(long, value_name = "UNIX_SECONDS", hide = true)]
    pub now: Option<u64>,
}

/// `stockade audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check an audit log's hash chain; names the first record that breaks it.
    ///
    /// Several files, oldest first (rotated logs, then the log), are checked as one chain across
    /// rotations.
    Verify(AuditVerifyArgs),
    /// Rotate the audit log, keeping its hash chain across the files.
    ///
    /// The old records are renamed to FILE.<UTC time>, and the new log starts with a `rotation`
    /// record chained to their last one, under the writers' lock, so the chain stays verifiable
    /// across files and no writer ever finds a log shorter than its head. Never rotate the log
    /// any other way (logrotate's rename or copytruncate): every audited action then fails (74,
    /// audit.truncated); --after-loss recovers from that.
    Rotate(AuditRotateArgs),
}

/// `stockade audit verify`
#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The audit log file (its head file `<FILE>.head`, when present, is checked too). Several:
    /// oldest first, the log last (whose head is checked); each file after the first must begin
    /// with the rotation record that continues the one before it.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Fail when the head file is missing (without it, records cut off the end of the log
    /// cannot be detected).
    #[arg(long)]
    pub require_head: bool,
    /// Give the log alone: the rotated files it continues are found through the rotation
    /// records (each names the file before it, in the log's directory) and checked with it as
    /// one chain, back to the first record ever written or to the oldest file `[audit] keep`
    /// left (its removal recorded in the chain); a named file that is missing fails.
    #[arg(long)]
    pub follow: bool,
}

/// `stockade audit rotate`
#[derive(Debug, Args)]
pub struct AuditRotateArgs {
    /// The audit log; the operator policy's `[audit] file` when omitted (and then its `[audit]
    /// keep`: older rotated files past it are removed, named in the rotation record).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Rotate only a log of at least this size (bytes, or with a K, M or G suffix): what a timer
    /// running it daily passes so that small logs are left alone.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub min_size: Option<u64>,
    /// The log is shorter than its head file says (it was rotated by something else, e.g.
    /// logrotate): start a new log whose first record records the loss and chains to the last
    /// record the head names. Keep the file the records were moved to: `audit verify` of it and
    /// the new log shows whether anything is really missing. Refused for a log that is not
    /// shorter than its head.
    #[arg(long)]
    pub after_loss: bool,
    #[command(flatten)]
    pub root: PolicyRootArg,
}

/// A size: bytes, or a number with a `K`, `M` or `G` suffix (powers of 1024), as `[audit]
/// rotate_size` takes it.
fn parse_size(s: &str) -> Result<u64, String> {
    stockade_policy::operator::try_parse_size(s).map_err(|e| e.to_string())
}

/// `stockade keygen`
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Output path prefix: writes PREFIX.key and PREFIX.pub.
    #[arg(short = 'o', long = "output", value_name = "NAME")]
    pub output: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Encrypt the secret key with the password on the first line of this file (a regular file
    /// or a pipe), as `minisign -G` does: scrypt at minisign's cost (1 GiB, a few seconds), so
    /// that stock minisign reads it too. Without it the key is written unencrypted, as
    /// `minisign -G -W` writes it.
    #[arg(long = "password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// `stockade ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA directory with a fresh key. With --parent, make it an intermediate signed by
    /// the root in that directory.
    Init(CaInitArgs),
    /// Issue a certificate for a public key.
    Issue(CaIssueArgs),
    /// Revoke serials or keys and write a new signed, versioned, expiring revocation list.
    Revoke(CaRevokeArgs),
    /// Issue a signed node license (for `license:<serial>` scopes), signed by a root CA.
    License(CaLicenseArgs),
}

/// `stockade ca license`
#[derive(Debug, Args)]
pub struct CaLicenseArgs {
    /// The root CA directory whose key signs the license.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// The password of an encrypted `ca.key` (of --ca): the first line of this file (a regular file or a
    /// pipe). Without it, an encrypted key's password is asked for on the terminal, and with
    /// no terminal the command fails (key.password_required). Unused for an unencrypted key.
    #[arg(long = "password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// License serial ([A-Za-z0-9._-], at most 64).
    #[arg(long, value_name = "SERIAL")]
    pub serial: String,
    /// Bind the license to this hardware id (see `stockade node info`).
    #[arg(long, value_name = "ID")]
    pub hardware: Option<String>,
    /// Issue the license in the frozen state (no new plugins admitted).
    #[arg(long)]
    pub frozen: bool,
    /// Validity in days; without it the license does not expire.
    #[arg(long)]
    pub days: Option<u32>,
    /// Output license file (refused if it exists, unless --force).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Issue as if the current time were this (unix seconds); for back-dating and tests.
    #[arg(long, value_name = "UNIX_SECONDS", hide = true)]
    pub now: Option<u64>,
}

/// `stockade ca init`
#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// The CA directory to create.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// Make an intermediate CA, certified by the root CA in this directory.
    #[arg(long, value_name = "ROOT_DIR")]
    pub parent: Option<PathBuf>,
    /// Encrypt the new CA's `ca.key` with the password on the first line of this file, as
    /// `keygen --password-file` does (minisign's format and cost), so that it is never on disk
    /// unencrypted; every `ca` command using the CA then needs the password.
    #[arg(long = "new-password-file", value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// The password of an encrypted --parent's `ca.key`: the first line of this file (a regular file or a
    /// pipe). Without it, an encrypted key's password is asked for on the terminal, and with
    /// no terminal the command fails (key.password_required). Unused for an unencrypted key.
    #[arg(long = "password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Scope ceiling of the intermediate (with --parent): any, license:<serial> or hardware:<id>.
    #[arg(long, default_value = "any")]
    pub scope: String,
    /// Validity in days (at least 1).
    #[arg(long, default_value_t = 3650)]
    pub days: u32,
    /// A human-readable name for the CA.
    #[arg(long)]
    pub name: Option<String>,
    /// Issue as if the current time were this (unix seconds); for back-dating and tests.
    #[arg(long, value_name = "UNIX_SECONDS", hide = true)]
    pub now: Option<u64>,
}

/// `stockade ca issue`
#[derive(Debug, Args)]
pub struct CaIssueArgs {
    /// The issuing CA directory (a root for --intermediate, an intermediate otherwise).
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// The password of an encrypted `ca.key` (of --ca): the first line of this file (a regular file or a
    /// pipe). Without it, an encrypted key's password is asked for on the terminal, and with
    /// no terminal the command fails (key.password_required). Unused for an unencrypted key.
    #[arg(long = "password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The subject's public key (minisign format).
    #[arg(long = "pub", value_name = "KEY.pub")]
    pub public_key: PathBuf,
    /// any | license:<serial> | hardware:<id>
    #[arg(long, default_value = "any")]
    pub scope: String,
    /// Capability ceiling (comma-separated); defaults to everything the scope allows.
    #[arg(long, value_delimiter = ',')]
    pub capabilities: Option<Vec<String>>,
    /// Validity in days (at least 1).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Issue an intermediate CA certificate instead of a developer certificate.
    #[arg(long)]
    pub intermediate: bool,
    /// Subject name recorded in the certificate.
    #[arg(long)]
    pub subject: Option<String>,
    /// Output certificate file (refused if it exists, unless --force).
    #[arg(short = 'o', long = "output", value_name = "FILE.cert")]
    pub output: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Issue as if the current time were this (unix seconds); for back-dating and tests.
    #[arg(long, value_name = "UNIX_SECONDS", hide = true)]
    pub now: Option<u64>,
}

/// `stockade ca revoke`
#[derive(Debug, Args)]
pub struct CaRevokeArgs {
    /// The CA directory (the root whose key signs the list).
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// The password of an encrypted `ca.key` (of --ca): the first line of this file (a regular file or a
    /// pipe). Without it, an encrypted key's password is asked for on the terminal, and with
    /// no terminal the command fails (key.password_required). Unused for an unencrypted key.
    #[arg(long = "password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Certificate serial to revoke (repeatable).
    #[arg(long = "serial", value_name = "SERIAL")]
    pub serials: Vec<String>,
    /// Public key to revoke, as a minisign .pub file (repeatable).
    #[arg(long = "key", value_name = "KEY.pub")]
    pub keys: Vec<PathBuf>,
    /// Days until the list expires and must be re-issued.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Output revocation list file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Issue as if the current time were this (unix seconds); for back-dating and tests.
    #[arg(long, value_name = "UNIX_SECONDS", hide = true)]
    pub now: Option<u64>,
}

/// `stockade pack`
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The plugin directory (manifest.json plus the entrypoint and its files). Every file in it
    /// is shipped; one that is a private key (minisign, PEM, OpenSSH, PGP, PuTTY) is refused
    /// (keep keys outside it), one named like credentials (.env, .netrc…) is warned about.
    pub dir: PathBuf,
    /// The developer's secret key (minisign format; its owner's alone: 0600 or narrower).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The password of an encrypted --key: the first line of this file (a regular file or a
    /// pipe). Without it, an encrypted key's password is asked for on the terminal, and with
    /// no terminal the command fails (key.password_required). Unused for an unencrypted key.
    #[arg(long = "password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The developer certificate.
    #[arg(long, value_name = "FILE")]
    pub devcert: PathBuf,
    /// The intermediate CA certificate that issued the developer certificate.
    #[arg(long, value_name = "FILE")]
    pub intcert: PathBuf,
    /// Output package; defaults to NAME-VERSION.stockade in the current directory. Refused if
    /// it exists, unless --force.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Pack this file although it holds a PEM, OpenSSH, PGP or PuTTY private key (a vendored
    /// library's test key, say): PATH as inside the plugin directory (lib/tests/test.key).
    /// Repeatable; each must name such a file. The key is then public: every node that
    /// installs the package gets it. A minisign secret key is never packed.
    #[arg(long = "allow-private-key", value_name = "PATH")]
    pub allow_private_key: Vec<String>,
}

/// Trust options shared by every command that verifies a package.
#[derive(Debug, Args, Clone)]
pub struct TrustArgs {
    /// Trust directory holding pinned root keys (*.pub) and the revocation list.
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_TRUST_DIR",
        default_value = DEFAULT_TRUST_DIR
    )]
    pub trust: PathBuf,
    /// Also require the package to be signed by exactly this developer key.
    #[arg(long = "pub", value_name = "KEY.pub")]
    pub public_key: Option<PathBuf>,
    /// Trust mode: strict (refuse), warn (load but report), disabled (skip signature checks).
    // Checked by clap, so an unknown mode is a usage error before any file is read.
    #[arg(long, value_name = "MODE", default_value = "strict",
          value_parser = ["strict", "warn", "disabled"])]
    pub trust_mode: String,
    /// State directory: the highest revocation-list version seen and the license; for the
    /// commands that install, run or serve plugins also the store, kept trees, kv data and
    /// quarantine records.
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_STATE_DIR",
        default_value = DEFAULT_STATE_DIR,
        value_parser = state_dir_parser()
    )]
    pub state_dir: PathBuf,
}

/// The default of `--trust` (a policy's `trust.roots` replaces it when the flag is left alone):
/// the `default_value` of every `--trust` that has one, so the comparison in `cmd/run.rs` cannot
/// drift from it.
pub const DEFAULT_TRUST_DIR: &str = "/etc/stockade/trust";

/// The default of every `--state-dir`. Its copies stay apart because each one's help says what
/// that command keeps there (the store, the rollback memory, the license); the default and the
/// parser (`state_dir_parser`) are the same for all.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/stockade";

/// `stockade verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A package file; or the name of an installed plugin (re-verify it and its installed tree
    /// against the signed file map); or nothing (every installed plugin). An existing file is
    /// always taken as a package file.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub root: PolicyRootArg,
    /// After a successful verification, move the verified, extracted tree to DIR (which must not
    /// exist; its parent must). The tree is exactly the signed file map, nothing else.
    #[arg(long, value_name = "DIR")]
    pub extract_to: Option<PathBuf>,
}

/// `stockade inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The package file, or the name of an installed plugin (its stored package).
    pub file: PathBuf,
    /// State directory holding the store, for an installed plugin's name.
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_STATE_DIR",
        default_value = DEFAULT_STATE_DIR,
        value_parser = state_dir_parser()
    )]
    pub state_dir: PathBuf,
}

/// `stockade node …`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Print this node's hardware id and license.
    Info(NodeInfoArgs),
    /// Manage this node's license.
    #[command(subcommand)]
    License(NodeLicenseCommand),
}

/// `stockade node license …`
#[derive(Debug, Subcommand)]
pub enum NodeLicenseCommand {
    /// Verify a license file against the trust roots and install it as license.json in the state directory.
    Install(NodeLicenseInstallArgs),
}

/// `stockade node license install`
#[derive(Debug, Args)]
pub struct NodeLicenseInstallArgs {
    /// The license file from `stockade ca license`.
    pub file: PathBuf,
    /// Trust directory holding the root keys that may sign licenses.
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_TRUST_DIR",
        default_value = DEFAULT_TRUST_DIR
    )]
    pub trust: PathBuf,
    /// State directory to install into.
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_STATE_DIR",
        default_value = DEFAULT_STATE_DIR,
        value_parser = state_dir_parser()
    )]
    pub state_dir: PathBuf,
    // The operator policy: its `[audit]` log records the install.
    #[command(flatten)]
    pub root: PolicyRootArg,
}

/// `stockade node info`
#[derive(Debug, Args)]
pub struct NodeInfoArgs {
    /// State directory holding the license.
    #[arg(
        long,
        value_name = "DIR",
        env = "STOCKADE_STATE_DIR",
        default_value = DEFAULT_STATE_DIR,
        value_parser = state_dir_parser()
    )]
    pub state_dir: PathBuf,
    /// Also verify the license signature against the roots in this trust directory.
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Also say which layers a launch under this sandbox policy file (as `exec --policy`) would
    /// enforce, degrade or refuse on this host, for this caller.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// `stockade exec`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox policy file (TOML); the built-in strict default when omitted.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Pass one environment variable into the sandbox (repeatable): KEY=VALUE, or KEY alone for
    /// its value in stockade's own environment (for a secret: the command line, VALUE included,
    /// is visible to every local user in /proc/<pid>/cmdline). The environment is otherwise
    /// PATH, HOME and TMPDIR only.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Write the sandboxed program's host pid to this file once it is running (removed again
    /// when it ends). Its directory must be writable: checked before anything runs (73).
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Also write the JSON launch report to this file when the program ends. Its directory must
    /// be writable: checked before anything runs (73).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Mount this directory read-only at /plugin inside the sandbox (what `stockade run` does
    /// with a verified package), e.g. to try an extracted plugin by hand.
    #[arg(long, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub root: PolicyRootArg,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `stockade run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The package file, or the name of an installed plugin (`stockade list`; an existing file
    /// of that name wins).
    pub package: PathBuf,
    /// Policy file (TOML): the sandbox policy plus the host sections `[capabilities]`,
    /// `[protocol]`, `[kv]` and `[hooks."<hook>"]`; built-in defaults when omitted.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Operator allowlist of capabilities (repeatable); combined with the policy's
    /// `[capabilities] allow`, the stricter wins. Without either, the operator does not restrict.
    #[arg(long = "allow-capability", value_name = "CAP")]
    pub allow_capability: Vec<String>,
    #[command(flatten)]
    pub root: PolicyRootArg,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `stockade serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The agent socket to create (mode 0660; PATH.lock is held while serving; a stale socket
    /// is replaced, a live one or any other file is not). Not needed when systemd passes the socket (LISTEN_FDS).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Serve config (TOML): socket allowlist, restart/quarantine/health, packages to load.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// One whole policy file instead of the operator layers (as for `run`); without it the
    /// layers under --policy-root, resolved per plugin as `run` does.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Operator allowlist of capabilities (repeatable), as for `run`.
    #[arg(long = "allow-capability", value_name = "CAP")]
    pub allow_capability: Vec<String>,
    /// Serve the Sertone plugin API (GET /sertone/info, POST /sertone/pre-request and
    /// /sertone/post-response) on IP:PORT, fanned out to the loaded HTTP plugins (seed 003).
    /// Loopback only unless the serve config sets `[sertone] allow_remote = true`.
    #[arg(long, value_name = "IP:PORT")]
    pub sertone_listen: Option<String>,
    #[command(flatten)]
    pub root: PolicyRootArg,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// A subcommand whose arguments (or nested subcommands) clap builds only when the command line
/// selects it, with [`clap::Command::defer`]. clap's derive builds the whole tree on every
/// invocation otherwise: ≈ 280 µs of every `stockade exec` or `run` here (measured with uprobes
/// on the release build), for the ~30 subcommands' arguments and help texts of which one is used.
/// `--help`, `help SUBCOMMAND` and errors are unchanged: clap builds a subcommand before it
/// renders or parses it. The man page and completion generators need the whole tree at once
/// (clap mirrors it into the `help` subcommand before building deferred parts), so they build it
/// inside [`eagerly`]; a test checks that every subcommand's help is identical both ways.
///
/// Written here because clap's derive has no switch for it yet (clap-rs/clap#4959).
#[derive(Debug)]
pub struct Deferred<T>(pub T);

thread_local! {
    static EAGER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with [`Deferred`] building its part at once, as clap's derive does by default: for the
/// man page and completion generators, which walk the whole tree, e.g.
/// `cli::eagerly(Cli::command)`. Only this thread, only for the call (also when `f` panics and
/// the panic is caught: the flag is restored as the stack unwinds).
pub fn eagerly<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the flag back on drop.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            EAGER.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(EAGER.with(|e| e.replace(true)));
    f()
}

/// `cmd` with its part added now (inside [`eagerly`]) or deferred until it is selected.
fn augment(
    cmd: clap::Command,
    now: fn(clap::Command) -> clap::Command,
    later: fn(clap::Command) -> clap::Command,
) -> clap::Command {
    if EAGER.with(std::cell::Cell::get) {
        now(cmd)
    } else {
        cmd.defer(later)
    }
}

/// The deferred builders keep the subcommand's own `about`: the derive sets it from the
/// variant's doc comment *after* `augment_args`, which would otherwise (now running later)
/// replace it with the argument struct's doc comment.
fn keep_about(
    cmd: clap::Command,
    build: impl FnOnce(clap::Command) -> clap::Command,
) -> clap::Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let built = build(cmd);
    let reset = || clap::builder::Resettable::<clap::builder::StyledStr>::Reset;
    built
        .about(about.map_or_else(reset, Into::into))
        .long_about(long_about.map_or_else(reset, Into::into))
}

fn deferred_args<T: Args>(cmd: clap::Command) -> clap::Command {
    keep_about(cmd, T::augment_args)
}

fn deferred_args_for_update<T: Args>(cmd: clap::Command) -> clap::Command {
    keep_about(cmd, T::augment_args_for_update)
}

fn deferred_subcommands<T: Subcommand>(cmd: clap::Command) -> clap::Command {
    keep_about(cmd, T::augment_subcommands)
}

fn deferred_subcommands_for_update<T: Subcommand>(cmd: clap::Command) -> clap::Command {
    keep_about(cmd, T::augment_subcommands_for_update)
}

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Self)
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(matches).map(Self)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }

    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(matches)
    }
}

impl<T: Args> Args for Deferred<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }

    fn augment_args(cmd: clap::Command) -> clap::Command {
        augment(cmd, T::augment_args, deferred_args::<T>)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        augment(
            cmd,
            T::augment_args_for_update,
            deferred_args_for_update::<T>,
        )
    }
}

impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        augment(cmd, T::augment_subcommands, deferred_subcommands::<T>)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        augment(
            cmd,
            T::augment_subcommands_for_update,
            deferred_subcommands_for_update::<T>,
        )
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `--json` asked for anywhere before `--`, never after it (a program's own argument), and
    /// never by the program name (argv[0]).
    #[test]
    fn json_is_requested_before_the_programs_arguments_only() {
        let asks = |line: &[&str]| json_requested(line);
        assert!(asks(&["stockade", "--json", "bogus"]));
        assert!(asks(&["stockade", "verify", "x", "--json"]));
        assert!(!asks(&["stockade", "bogus"]));
        assert!(!asks(&["stockade", "exec", "--", "prog", "--json"]));
        assert!(!asks(&["--json", "bogus"][..1]));
        let e = Cli::try_parse_from(["stockade", "--json", "bogus"]).unwrap_err();
        let j = usage_error(&e).to_json();
        assert_eq!(j["exit_code"], 64);
        assert_eq!(j["error"]["kind"], "usage");
        assert_eq!(j["error"]["message"], "unrecognized subcommand 'bogus'");
    }

    /// Every (sub)command path of the tree, e.g. `["node", "license", "install"]`.
    fn paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut p = prefix.to_vec();
            p.push(sub.get_name().to_string());
            out.push(p.clone());
            paths(sub, &p, out);
        }
    }

    /// What clap prints for `stockade PATH… FLAG` (help or an error), from a fresh tree.
    fn render(path: &[String], flag: &str) -> String {
        let mut argv = vec!["stockade".to_string()];
        argv.extend(path.iter().cloned());
        argv.push(flag.into());
        match Cli::command().try_get_matches_from(argv) {
            Ok(_) => "parsed".into(),
            Err(e) => format!("{:?}: {}", e.kind(), e.render()),
        }
    }

    fn find<'a>(cmd: &'a clap::Command, name: &str) -> &'a clap::Command {
        cmd.get_subcommands()
            .find(|s| s.get_name() == name)
            .expect(name)
    }

    #[test]
    fn a_subcommand_is_built_only_when_selected() {
        assert!(find(&Cli::command(), "exec")
            .get_arguments()
            .next()
            .is_none());
        let tree = eagerly(Cli::command);
        assert!(find(&tree, "exec")
            .get_arguments()
            .any(|a| a.get_id() == "policy"));
        assert!(find(find(&tree, "ca"), "init")
            .get_arguments()
            .next()
            .is_some());
    }

    #[test]
    fn eagerly_restores_the_flag_also_after_a_panic() {
        let deferred = || {
            find(&Cli::command(), "exec")
                .get_arguments()
                .next()
                .is_none()
        };
        let caught = std::panic::catch_unwind(|| eagerly(|| panic!("in a generator")));
        assert!(caught.is_err());
        assert!(deferred(), "back to deferred after the panic");
        // Nested: the inner call gives the outer one its eager flag back.
        eagerly(|| {
            eagerly(|| ());
            assert!(!deferred());
        });
        assert!(deferred());
    }

    #[test]
    fn deferred_subcommands_render_what_the_eager_tree_renders() {
        let mut all = vec![Vec::new()];
        paths(&eagerly(Cli::command), &[], &mut all);
        assert!(all.len() > 30, "{} paths", all.len());
        for p in &all {
            for flag in ["--help", "-h", "--no-such-flag"] {
                let deferred = render(p, flag);
                let eager = eagerly(|| render(p, flag));
                assert_eq!(deferred, eager, "stockade {} {flag}", p.join(" "));
            }
        }
        // The help subcommand resolves nested subcommands in both.
        let path = ["help", "node", "license", "install"].map(String::from);
        assert!(render(&path[..3], "install").contains("license.json"));
    }
}
