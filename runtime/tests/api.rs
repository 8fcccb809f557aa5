//! The library API the launcher reuses: `package::open_verified` hands back the validated
//! manifest and a private extraction directory, with exact modes from the signed map.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use stockade_runtime::node::NodeIdentity;
use stockade_runtime::package::open_verified_in;
use stockade_runtime::trustdir::{TrustConfig, TrustMode};

#[test]
fn open_verified_extracts_privately_with_signed_modes() {
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    let cfg = TrustConfig::load(&fx.path("trust"), TrustMode::Strict, &fx.path("state")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let work = fx.path("work");
    std::fs::create_dir(&work).unwrap();
    let v = open_verified_in(&fx.path(&pkg), &cfg, &NodeIdentity::default(), now, &work).unwrap();
    assert_eq!(v.manifest.name(), "hello");
    assert_eq!(v.developer.as_ref().unwrap().body.subject, "Test Developer");
    let dir = v.dir.path().to_path_buf();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let ep = std::fs::metadata(dir.join(v.manifest.entrypoint())).unwrap();
    assert_eq!(ep.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::metadata(dir.join("manifest.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o644
    );
    // The clock is a parameter: the same package is expired ten years from now.
    let later = now + 11 * 365 * 86_400;
    let e =
        open_verified_in(&fx.path(&pkg), &cfg, &NodeIdentity::default(), later, &work).unwrap_err();
    assert_eq!(e.kind(), "validity.expired");
    drop(v);
    assert!(!dir.exists(), "the extraction directory is removed on drop");
}

/// `recheck_trust` (serve's check before a restart and at SIGHUP) decides validity and scope
/// again at the time and with the node it is given, as a launch by `run` would: the package
/// verified now is refused ten years on (its certificates expired), and a license-scoped one
/// on a node whose license is gone. It used to check the chain and revocation alone.
#[test]
fn recheck_trust_decides_validity_and_scope_again() {
    use stockade_runtime::package::recheck_trust;
    let fx = Fixture::with_dev_scope(&["--scope", "license:ACME-1"]);
    fx.install_license("ACME-1", false);
    let pkg = fx.pack_hello();
    let cfg = TrustConfig::load(&fx.path("trust"), TrustMode::Strict, &fx.path("state")).unwrap();
    let node = NodeIdentity::load(&fx.path("state")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let v = open_verified_in(&fx.path(&pkg), &cfg, &node, now, &std::env::temp_dir()).unwrap();
    assert_eq!(recheck_trust(&v, &cfg, &node, now).unwrap(), None);
    let later = now + 11 * 365 * 86_400;
    let e = recheck_trust(&v, &cfg, &node, later).unwrap_err();
    assert_eq!(e.kind(), "validity.expired");
    let e = recheck_trust(&v, &cfg, &NodeIdentity::default(), now).unwrap_err();
    assert_eq!(e.kind(), "scope.license");
    // Under warn each comes back as a warning with the status it gives.
    let warn = TrustConfig::load(&fx.path("trust"), TrustMode::Warn, &fx.path("state")).unwrap();
    let (status, warning) = recheck_trust(&v, &warn, &node, later).unwrap().unwrap();
    assert_eq!(
        stockade_runtime::output::enum_str(&status),
        "expired",
        "{warning}"
    );
}

/// A verification that read the trust directory just before the operator put a newer
/// revocation list in place, and reaches step 5 after a concurrent verification recorded that
/// list's version, holds a list that was current when it read it: it reads the list again and
/// passes, where it used to be refused as a rollback (84) — a false tamper report to agents
/// running plugins while the CA's list is rotated. A list still older after the second read is
/// a rollback as before.
#[test]
fn a_list_replaced_during_verification_is_read_again_not_taken_for_a_rollback() {
    use stockade_runtime::package::verify_only;
    let fx = Fixture::new();
    let pkg = fx.pack_hello();
    ok(fx.dir(), &["ca", "revoke", "--ca", "root", "-o", "v1.json"]);
    ok(fx.dir(), &["ca", "revoke", "--ca", "root", "-o", "v2.json"]);
    let list = fx.path("trust/revocations.json");
    std::fs::copy(fx.path("v1.json"), &list).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let node = NodeIdentity::default();
    // This verification read the trust directory (list 1) ...
    let early = TrustConfig::load(&fx.path("trust"), TrustMode::Strict, &fx.path("state")).unwrap();
    // ... then the operator published list 2, and another verification recorded it.
    std::fs::copy(fx.path("v2.json"), &list).unwrap();
    let late = TrustConfig::load(&fx.path("trust"), TrustMode::Strict, &fx.path("state")).unwrap();
    assert_eq!(
        verify_only(&fx.path(&pkg), &late, &node, now)
            .unwrap()
            .revocation_version,
        Some(2)
    );
    let r = verify_only(&fx.path(&pkg), &early, &node, now)
        .unwrap_or_else(|e| panic!("the earlier verification failed: {} ({e})", e.kind()));
    assert_eq!(
        r.revocation_version,
        Some(2),
        "checked against the list read again"
    );
    // The list is read again from where it came from: a policy's `trust.revocation` naming a
    // stale list is a rollback even while the trust directory holds a newer one (reading the
    // trust directory's instead would hide it behind a list the policy did not choose).
    let mut named = early.clone();
    named.revocations = Some(std::fs::read(fx.path("v1.json")).unwrap());
    named.revocations_path = fx.path("v1.json");
    let e = verify_only(&fx.path(&pkg), &named, &node, now).unwrap_err();
    assert_eq!(e.kind(), "revocation.rollback");
    // A real rollback: list 1 back in place, the second read finds it too.
    std::fs::copy(fx.path("v1.json"), &list).unwrap();
    let e = verify_only(&fx.path(&pkg), &early, &node, now).unwrap_err();
    assert_eq!(e.kind(), "revocation.rollback");
}
