//! Typed errors of the verification pipeline, one enum per step, and their mapping to the
//! documented exit codes (`exit.rs` 80–87), stable machine-readable kinds (`step.reason`) and
//! hints. Causes are linked with `#[source]`; messages never repeat them.

use super::container::ContainerError;
use super::extract::ExtractError;
use crate::exit::Exit;
use crate::fileio::FileError;
use crate::state::StateError;
use stockade_policy::capability::Capability;
use stockade_policy::manifest::ManifestError;
use stockade_trust::cert::CertError;
use stockade_trust::chain::{ChainError, ValidityError};
use stockade_trust::crl::CrlError;
use stockade_trust::license::LicenseError;
use stockade_trust::minisign::{KeyId, MinisignError};
use stockade_trust::statement::StatementError;

/// Step 2 failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The developer certificate (which carries the signing key) is unreadable.
    #[error("cannot read the developer certificate")]
    DeveloperCert(#[source] CertError),
    /// The signature file is malformed.
    #[error("statement.json.minisig is malformed")]
    Malformed(#[source] MinisignError),
    /// The signature does not verify with the developer certificate's key.
    #[error("the statement signature does not verify with the developer certificate's key")]
    Invalid(#[source] MinisignError),
    /// `--pub` given and the package is signed by another key.
    #[error("package is signed by key {found}, not by the pinned key {expected}")]
    NotPinned {
        /// `--pub` key id.
        expected: KeyId,
        /// The signer.
        found: KeyId,
    },
}

/// Step 3 failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainStepError {
    /// The developer certificate is unreadable.
    #[error("cannot read the developer certificate")]
    DeveloperCert(#[source] CertError),
    /// The intermediate certificate is unreadable.
    #[error("cannot read the intermediate certificate")]
    IntermediateCert(#[source] CertError),
    /// The chain does not verify.
    #[error("the certificate chain does not lead to a trusted root")]
    Chain(#[source] ChainError),
    /// A package a `warn` or `disabled` load let pass without a readable certificate (this
    /// one), checked again ([`crate::package::recheck_trust`]): still nothing to trust.
    #[error("the package has no readable {0} certificate")]
    Missing(&'static str),
}

/// Step 5 failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The list is unreadable or invalid (signature, expiry, rollback, the same version with
    /// other content).
    #[error("the revocation list is not acceptable")]
    List(#[source] CrlError),
    /// A certificate is revoked.
    #[error("a certificate in the chain is revoked")]
    Revoked(#[source] CrlError),
    /// A list was seen before and is now missing.
    #[error("the revocation list is missing, but version {version} from {issuer} was seen before (rollback by deletion)")]
    Missing {
        /// Issuer key id.
        issuer: String,
        /// Version seen.
        version: u64,
    },
    /// A valid list from another issuer where one was seen before: it does not replace that one
    /// (whose latest revocations would otherwise disappear with it).
    #[error("the revocation list is signed by {issuer}, but version {version} from {seen_issuer} was seen before: a list from another root does not replace it")]
    OtherIssuer {
        /// The issuer of the list seen before.
        seen_issuer: String,
        /// Its version seen.
        version: u64,
        /// The issuer of the list given now.
        issuer: String,
    },
    /// There is no revocation list and the policy requires one.
    #[error("there is no revocation list, and the policy requires one (trust.require_revocation)")]
    Required,
    /// The state directory cannot be used.
    #[error("cannot use the revocation state")]
    State(#[source] StateError),
}

/// Step 6 failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// No machine id on this node.
    #[error("the certificate is scoped to hardware {0}, and this node has no machine id")]
    NoHardwareId(String),
    /// Another node.
    #[error("the certificate is scoped to hardware {cert}, but this node is {node}")]
    WrongHardware {
        /// In the cert.
        cert: String,
        /// This node.
        node: String,
    },
    /// No license installed.
    #[error("the certificate is scoped to license {0}, and this node has no license")]
    NoLicense(String),
    /// The license does not verify.
    #[error("the node license is not acceptable")]
    License(#[source] LicenseError),
    /// Another license.
    #[error("the certificate is scoped to license {cert}, but this node's license is {node}")]
    WrongLicense {
        /// In the cert.
        cert: String,
        /// Installed.
        node: String,
    },
    /// Capability beyond ceiling.
    #[error("capability beyond ceiling: the manifest requests `{capability}`, which the developer certificate (scope {scope}) does not grant")]
    Capability {
        /// What was requested.
        capability: Capability,
        /// The cert's scope.
        scope: String,
    },
}

/// Step 7 failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileMapError {
    /// Payload size differs from the statement.
    #[error("payload is {found} bytes, the signed statement says {signed}")]
    PayloadSize {
        /// Actual.
        found: u64,
        /// Signed.
        signed: u64,
    },
    /// Payload digest differs.
    #[error("payload sha256 {found} differs from the signed {signed}")]
    PayloadDigest {
        /// Actual.
        found: String,
        /// Signed.
        signed: String,
    },
    /// The map breaks a structural rule.
    #[error("the signed file map is inconsistent")]
    Map(#[source] StatementError),
}

/// Why a package was refused. `exit()` and `kind()` give the documented code and a stable kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The package file cannot be read (or is too large).
    #[error("cannot read the package")]
    Read(#[source] FileError),
    /// Step 1: container layout or entry caps.
    #[error("the package container is invalid")]
    Container(#[source] ContainerError),
    /// Step 1: the statement is malformed.
    #[error("the package statement is invalid")]
    Statement(#[source] StatementError),
    /// Step 2.
    #[error("signature check failed")]
    Signature(#[source] SignatureError),
    /// Step 3.
    #[error("certificate chain check failed")]
    Chain(#[source] ChainStepError),
    /// Step 4.
    #[error("certificate validity check failed")]
    Validity(#[source] ValidityError),
    /// Step 5.
    #[error("revocation check failed")]
    Revocation(#[source] RevocationError),
    /// Step 6.
    #[error("scope check failed")]
    Scope(#[source] ScopeError),
    /// Step 7.
    #[error("file map check failed")]
    FileMap(#[source] FileMapError),
    /// Step 8, or step 7's map check done while extracting (a file that is not the signed one,
    /// a `manifest.json` that is not the signed manifest): then the message names the file map,
    /// as the exit code (86) and the kind (`file_map.…`) do.
    #[error("{}", extract_message(.0))]
    Extract(#[source] ExtractError),
    /// The private extraction directory cannot be created.
    #[error("cannot create the private extraction directory")]
    Workdir(#[source] std::io::Error),
}

fn extract_message(e: &ExtractError) -> &'static str {
    if e.is_file_map() {
        "file map check failed (while extracting)"
    } else if e.is_host_io() {
        "cannot write the extracted package on this host"
    } else {
        "extraction refused"
    }
}

impl VerifyError {
    /// Whether the package file was not there to read (step 1's open): nothing was checked, so
    /// looking again elsewhere changes nothing already done (`store::with_installed`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, VerifyError::Read(e) if e.is_not_found())
    }

    /// The documented exit code.
    pub fn exit(&self) -> Exit {
        match self {
            VerifyError::Read(FileError::TooLarge { .. }) => Exit::SizeCap,
            VerifyError::Read(e) if e.is_not_found() => Exit::NoInput,
            VerifyError::Read(_) => Exit::NoInput,
            VerifyError::Container(e) if e.is_size_cap() => Exit::SizeCap,
            VerifyError::Container(_) => Exit::DataErr,
            VerifyError::Statement(StatementError::TooLarge(_)) => Exit::SizeCap,
            VerifyError::Statement(_) => Exit::DataErr,
            VerifyError::Signature(_) => Exit::Signature,
            VerifyError::Chain(_) => Exit::Chain,
            VerifyError::Validity(_) => Exit::Validity,
            VerifyError::Revocation(RevocationError::State(StateError::LockBusy { .. })) => {
                Exit::TempFail
            }
            VerifyError::Revocation(RevocationError::State(_)) => Exit::Config,
            VerifyError::Revocation(_) => Exit::Revoked,
            VerifyError::Scope(_) => Exit::Scope,
            VerifyError::FileMap(_) => Exit::FileMap,
            VerifyError::Extract(e) if e.is_file_map() => Exit::FileMap,
            VerifyError::Extract(e) if e.is_host_io() => Exit::IoErr,
            VerifyError::Extract(_) => Exit::UnsafeArchive,
            VerifyError::Workdir(_) => Exit::OsErr,
        }
    }

    /// A stable machine-readable kind (`step.reason`).
    pub fn kind(&self) -> &'static str {
        use ChainError as C;
        match self {
            VerifyError::Read(FileError::TooLarge { .. }) => "size_cap.package",
            VerifyError::Read(_) => "input",
            VerifyError::Container(e) if e.is_size_cap() => "size_cap.entry",
            VerifyError::Container(_) => "container",
            VerifyError::Statement(StatementError::TooLarge(_)) => "size_cap.statement",
            VerifyError::Statement(StatementError::Manifest(_)) => "manifest",
            VerifyError::Statement(StatementError::NewerFormat(_)) => "statement.newer_format",
            VerifyError::Statement(_) => "statement",
            VerifyError::Signature(SignatureError::NotPinned { .. }) => "signature.not_pinned",
            VerifyError::Signature(SignatureError::DeveloperCert(_)) => "signature.developer_cert",
            VerifyError::Signature(SignatureError::Malformed(_)) => "signature.malformed",
            VerifyError::Signature(_) => "signature.invalid",
            VerifyError::Chain(
                ChainStepError::IntermediateCert(_)
                | ChainStepError::DeveloperCert(_)
                | ChainStepError::Missing(_),
            ) => "chain.certificate",
            VerifyError::Chain(ChainStepError::Chain(c)) => match c {
                C::UnknownRoot(_) => "chain.unknown_root",
                C::Bounds(_) => "chain.bounds",
                C::Kind { .. } => "chain.kind",
                C::IssuerMismatch { .. } => "chain.issuer_mismatch",
                C::DeveloperSignature(_) | C::IntermediateSignature(_) => "chain.signature",
                _ => "chain",
            },
            VerifyError::Validity(ValidityError::NotYetValid { .. }) => "validity.not_yet_valid",
            VerifyError::Validity(_) => "validity.expired",
            VerifyError::Revocation(r) => match r {
                RevocationError::Revoked(CrlError::RevokedSerial { .. }) => "revocation.serial",
                RevocationError::Revoked(_) => "revocation.key",
                RevocationError::List(CrlError::Rollback { .. }) => "revocation.rollback",
                RevocationError::List(CrlError::Changed { .. }) => "revocation.list_changed",
                RevocationError::List(CrlError::Expired { .. }) => "revocation.list_expired",
                RevocationError::List(_) => "revocation.list_invalid",
                RevocationError::Missing { .. } | RevocationError::Required => {
                    "revocation.list_missing"
                }
                RevocationError::OtherIssuer { .. } => "revocation.other_issuer",
                RevocationError::State(StateError::LockBusy { .. }) => "revocation.state_busy",
                RevocationError::State(StateError::NewerFormat { .. }) => "state.newer_format",
                RevocationError::State(_) => "revocation.state",
            },
            VerifyError::Scope(s) => match s {
                ScopeError::Capability { .. } => "scope.capability_beyond_ceiling",
                ScopeError::NoHardwareId(_) | ScopeError::WrongHardware { .. } => "scope.hardware",
                _ => "scope.license",
            },
            VerifyError::FileMap(FileMapError::Map(_)) => "file_map.structure",
            VerifyError::FileMap(_) => "file_map.payload_digest",
            VerifyError::Extract(e) => e.kind(),
            VerifyError::Workdir(_) => "workdir",
        }
    }

    /// The CLI error: this error's exit code, kind and hint.
    pub fn into_cmd(self) -> crate::error::CmdError {
        let (exit, kind, hint) = (self.exit(), self.kind(), self.hint());
        crate::error::CmdError::new(exit, kind, self).hint(hint)
    }

    /// What the user should do.
    pub fn hint(&self) -> &'static str {
        // The revocation memory is the rollback floor: "check the permissions" would not say
        // that removing it lowers the floor to nothing.
        if let VerifyError::Revocation(RevocationError::State(StateError::LockBusy { .. })) = self {
            return "another process held the state directory's revocation-state.lock while a newer \
                    revocation list was to be recorded (a `stockade verify` or `install` doing so, \
                    or one stopped while it did): nothing was loaded; try again, and if it stays \
                    held find its holder (`fuser -v` on the lock file) and let it finish or end it";
        }
        if let VerifyError::Revocation(RevocationError::State(crate::state::StateError::Lock {
            ..
        })) = self
        {
            return "a newer revocation list is recorded under the state directory's lock: run as \
                    root or as the state directory's owner; what is at the lock's name must be a \
                    regular file of that owner's (remove anything else, it holds no data)";
        }
        if let VerifyError::Statement(
            StatementError::NewerFormat(_)
            | StatementError::Manifest(ManifestError::RuntimeTooOld { .. }),
        ) = self
        {
            return "the package was made for a newer Stockade than this one: upgrade Stockade to \
                    use it; nothing was installed or run";
        }
        // A certificate or revocation list a newer Stockade signed: the CA's tools are newer
        // than this node, and "obtain another copy" or "install a current list" would bring
        // the same format back.
        if let VerifyError::Chain(
            ChainStepError::DeveloperCert(CertError::NewerFormat(_))
            | ChainStepError::IntermediateCert(CertError::NewerFormat(_)),
        )
        | VerifyError::Revocation(RevocationError::List(CrlError::NewerFormat(_))) = self
        {
            return "a certificate or the revocation list is of a format a newer Stockade signs: \
                    upgrade Stockade on this node (until then nothing it covers is verified)";
        }
        if let VerifyError::Revocation(RevocationError::State(StateError::NewerFormat { .. })) =
            self
        {
            return crate::state::NEWER_FORMAT_HINT;
        }
        if let VerifyError::Revocation(RevocationError::State(StateError::Create { .. })) = self {
            return crate::state::CREATE_HINT;
        }
        if let VerifyError::Revocation(RevocationError::State(_)) = self {
            return "restore the state file named (revocation-state.json) or make it a regular file of \
                    the state directory's owner, mode 0600; removing it forgets the revocation lists \
                    seen, so an older one would pass again";
        }
        // Where the extraction directory is made has no room or no inode left, or is closed to
        // this user: "check the path and permissions" named neither space nor where.
        if let VerifyError::Workdir(_) = self {
            return "the extraction directory is made in TMPDIR (`run`, `verify --extract-to`), \
                    the state directory's trees or the store's staging directory (`install`, \
                    `update`): free space or inodes there (`df -i`), or let this user write it";
        }
        match self.exit() {
            Exit::SizeCap | Exit::DataErr => "the file is not a valid stockade package; rebuild it with `stockade pack`",
            Exit::Signature => "the package was modified after signing or signed with another key; obtain an untampered copy",
            Exit::Chain => "pin the issuing root's public key in the trust directory (--trust DIR), or obtain a package signed under a trusted root",
            Exit::Validity => "a certificate is outside its validity window; check the clock or have the CA issue a new certificate",
            Exit::Revoked => "install a current revocation list from your CA (`stockade ca revoke` re-signs it) or stop using the revoked package",
            Exit::Scope => "this package is not for this node or asks for more than its certificate allows; check `stockade node info` and the certificate scope",
            Exit::FileMap => "the payload does not match what was signed; obtain an untampered copy",
            Exit::UnsafeArchive => "the payload contains entries that are unsafe to extract; do not use this package",
            Exit::IoErr => "the package was not judged: this host could not write its files (no space, a quota, a read-only file system, too many open files); nothing was installed or run, free the resource and try again",
            _ => "check the path and permissions",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An extraction directory that cannot be made (ENOSPC: no room or no inode left) is told
    /// where such directories are made and to free space or inodes there, not "check the path
    /// and permissions" (audit-166: `install` on a state directory out of inodes).
    #[test]
    fn an_extraction_directory_not_made_says_where_and_space_or_inodes() {
        let e = VerifyError::Workdir(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!((e.exit(), e.kind()), (Exit::OsErr, "workdir"));
        assert!(e.hint().contains("inodes"), "{}", e.hint());
        assert!(e.hint().contains("TMPDIR"), "{}", e.hint());
    }

    /// A certificate or revocation list of a newer format keeps its step's code and kind, and
    /// its hint says to upgrade: "obtain an untampered copy" or "install a current revocation
    /// list from your CA" (what they said) brings the same newer format back.
    #[test]
    fn a_newer_format_document_says_to_upgrade() {
        let cases = [
            (
                VerifyError::Chain(ChainStepError::DeveloperCert(CertError::NewerFormat(2))),
                Exit::Chain,
                "chain.certificate",
            ),
            (
                VerifyError::Chain(ChainStepError::IntermediateCert(CertError::NewerFormat(2))),
                Exit::Chain,
                "chain.certificate",
            ),
            (
                VerifyError::Revocation(RevocationError::List(CrlError::NewerFormat(2))),
                Exit::Revoked,
                "revocation.list_invalid",
            ),
        ];
        for (e, exit, kind) in cases {
            assert_eq!((e.exit(), e.kind()), (exit, kind), "{e:?}");
            assert!(e.hint().contains("upgrade Stockade"), "{e:?}: {}", e.hint());
        }
    }
}
