//! Builds the C escape probes into one static multi-call binary, `stockade-probe`.
//!
//! The probes are C rather than Rust because several of them need exact control over the
//! instruction that enters the kernel (`int 0x80`, x32 syscall numbers, raw `clone3`) and must
//! run unchanged inside a sandbox whose root holds no shared libraries: a static glibc binary
//! from `gcc -static` is the simplest thing that does both. The path of the built binary is
//! exported to the crate as `STOCKADE_PROBE_BUILT`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let probes = dir.join("probes");
    let out =
        PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("stockade-probe");
    println!("cargo:rerun-if-changed=probes");
    println!("cargo:rerun-if-env-changed=STOCKADE_PROBE_CC");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&probes)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", probes.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }

    // Deliberately not $CC: cross-compiling the battery must not cross-compile the probes to
    // another architecture, and the probes need gcc's inline-asm dialect.
    let cc = env::var("STOCKADE_PROBE_CC").unwrap_or_else(|_| "gcc".to_owned());
    let status = Command::new(&cc)
        .args([
            "-static", "-O2", "-pthread", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&out)
        .args(&sources)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "building the static probe binary with `{cc} -static` failed ({s}). The probes need \
             gcc and a static C library: on Debian `apt-get install gcc libc6-dev` \
             (libc6-dev ships libc.a and libpthread.a)."
        ),
        Err(e) => panic!(
            "cannot run `{cc}` to build the escape probes: {e}. Install gcc and the static C \
             library (Debian: `apt-get install gcc libc6-dev`) or set STOCKADE_PROBE_CC."
        ),
    }
    println!("cargo:rustc-env=STOCKADE_PROBE_BUILT={}", out.display());
}
