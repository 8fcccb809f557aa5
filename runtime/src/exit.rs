//! Process exit codes: the contract with agents and scripts (documented in `docs/exit-codes.md`).
//!
//! The 64–78 range follows BSD `sysexits.h`, so shell callers can tell "you called me wrong"
//! from "your input is bad" from "the system failed". Verification gets one code per fail-closed
//! step (80–87) so that an agent can act on *which* check rejected a package without parsing text.
//! `stockade exec`/`run` pass the program's own status through (128+N for signal N) and use the
//! 125/126/127 convention of `env(1)` and container runtimes when the runtime itself fails.

/// A documented exit status. The numeric values are a public interface: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The command ran and found problems at or above the requested level (e.g. `policy lint`).
    Findings = 1,
    /// EX_USAGE: the command line is wrong.
    Usage = 64,
    /// EX_DATAERR: an input (manifest, certificate, policy, key, package layout) is malformed.
    DataErr = 65,
    /// EX_NOINPUT: an input file does not exist or cannot be read.
    NoInput = 66,
    /// EX_UNAVAILABLE: a required service or kernel feature is unavailable.
    Unavailable = 69,
    /// EX_SOFTWARE: an internal error (a bug in Stockade).
    Software = 70,
    /// EX_OSERR: an operating-system call failed.
    OsErr = 71,
    /// EX_CANTCREAT: an output file cannot be created (or already exists).
    CantCreate = 73,
    /// EX_IOERR: reading or writing failed midway.
    IoErr = 74,
    /// EX_TEMPFAIL: try again later (`serve`: another daemon listens on the socket; a locked
    /// store is [`Exit::StoreLocked`]).
    TempFail = 75,
    /// EX_NOPERM: the caller lacks permission.
    NoPerm = 77,
    /// EX_CONFIG: the configuration (trust directory, state directory) is unusable.
    Config = 78,
    /// Verification step 1 failed: a size cap was exceeded.
    SizeCap = 80,
    /// Verification step 2 failed: a signature does not verify over the bytes read.
    Signature = 81,
    /// Verification step 3 failed: the certificate chain does not lead to a trusted root.
    Chain = 82,
    /// Verification step 4 failed: a certificate (or list) is expired or not yet valid.
    Validity = 83,
    /// Verification step 5 failed: revoked serial or key, or a rolled-back/expired revocation list;
    /// also the node license rolled back (older than one installed before, or deleted).
    Revoked = 84,
    /// Verification step 6 failed: the certificate scope does not admit this node, or the package
    /// asks for more than the scope allows.
    Scope = 85,
    /// Verification step 7 failed: manifest and signed file map disagree with the payload.
    FileMap = 86,
    /// Verification step 8 failed: the archive is unsafe to extract.
    UnsafeArchive = 87,
    /// Index: a download failed or exceeded its cap.
    IndexFetch = 90,
    /// Index step 1: the index is not signed by the pinned operator key (or the key changed
    /// without a rotation proof).
    IndexSignature = 91,
    /// Index step 1: rollback (older than seen) or the same version with other content.
    IndexRollback = 92,
    /// Index step 1: the index expired (freeze).
    IndexExpired = 93,
    /// No source lists the plugin at that version, or it is delisted.
    IndexNotFound = 94,
    /// No build of the plugin for this platform.
    IndexUnavailable = 95,
    /// Index step 2: the artifact's size or SHA-256 differs from the index.
    ArtifactDigest = 96,
    /// Index step 3: the artifact's detached signature does not verify against the author key.
    ArtifactSignature = 97,
    /// Index step 4: the author key changed without a rotation proof.
    AuthorPin = 98,
    /// Index step 5: the package disagrees with its index entry (id, version, tier, signer).
    IndexMismatch = 99,
    /// The node's license is frozen, so nothing new may be installed, nor started by `run` or
    /// `serve` unless installed before the freeze (installed plugins keep running).
    LicenseFrozen = 100,
    /// Store: a dependency is missing or installed in a version the requirement does not admit.
    Dependency = 101,
    /// Store: the dependencies form a cycle.
    DependencyCycle = 102,
    /// Store: other installed plugins need this one (remove, or an install that would break them).
    InUse = 103,
    /// Store: no plugin of that name is installed.
    NotInstalled = 104,
    /// Store: an installed tree no longer matches its signed file map.
    Tampered = 105,
    /// Store: the registry is corrupt or has an unknown schema.
    StoreCorrupt = 106,
    /// Store: the install would replace a newer version, or the same version with other content.
    Conflict = 107,
    /// Store: another stockade process holds the store lock (`--no-wait`), or a plugin was
    /// installed anew at each check of a `verify` without the lock (installs in progress).
    StoreLocked = 108,
    /// HTTP plugin (seed 003): it cannot be launched as configured (its policy's network mode
    /// is not `loopback`, or its interpreter is missing).
    HttpTransport = 110,
    /// `serve --sertone-listen`: the address is refused (not loopback and the config does not
    /// allow more) or cannot be bound.
    SertoneListen = 111,
    /// The sandbox runtime failed before the program started (a layer could not be enforced).
    SandboxSetup = 125,
    /// The program was found but could not be executed.
    CannotExec = 126,
    /// The program was not found.
    NotFound = 127,
}

impl Exit {
    /// The numeric status passed to `exit(2)`.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    /// docs/exit-codes.md's row for a code must name what uses it: 75 is `serve` finding another
    /// daemon on its socket; a locked store has its own code (108), which the row once claimed.
    #[test]
    fn documented_temp_fail_names_its_one_use() {
        let doc = include_str!("../../docs/exit-codes.md");
        let row = |code: Exit| {
            let prefix = format!("| {} |", code.code());
            doc.lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no row for {}", code.code()))
        };
        let temp = row(Exit::TempFail);
        assert!(temp.contains("serve"), "{temp}");
        assert!(!temp.contains("store is locked"), "{temp}");
        assert!(row(Exit::StoreLocked).contains("store.locked"));
    }
}
