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
