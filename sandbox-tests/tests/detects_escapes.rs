//! The battery can fail: with a "sandbox" that isolates nothing (`env --`), every probe must be
//! reported as an escape and the battery must exit non-zero. This guards against a battery
//! that passes whatever happens.

mod common;
use common::*;

#[test]
fn no_sandbox_means_every_probe_escapes() {
    if !is_root() {
        skip_or_fail(
            "no_sandbox_means_every_probe_escapes",
            "native controls need root",
        );
        return;
    }
    let probes = "caps-eff,unshare-user,mount-tmpfs,bpf,read-shadow,net-tcp4,signal-harness,\
                  inherited-fd,write-etc,fork-bomb,survive-daemon,host-proc-visible";
    let out = battery()
        .args(["--wrapper", "env --", "--only", probes, "--json"])
        .output()
        .expect("run battery");
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let entries = report["probes"].as_array().expect("probes array");
    assert_eq!(entries.len(), 12);
    for p in entries {
        assert_eq!(p["verdict"], "ESCAPED", "{p}");
        assert_eq!(p["native"]["judgement"], "good", "{p}");
    }
    assert_eq!(report["passed"], 0);
    assert!(
        report["host_problems"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "{report}"
    );
}
