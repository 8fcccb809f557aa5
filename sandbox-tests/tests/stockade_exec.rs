//! The real thing: the battery and the posture check against the workspace's `stockade exec`,
//! with the built-in default policy and with a tighter custom one (the expectations follow the
//! policy). Needs the `stockade` binary (see `common::stockade`).

mod common;
use common::*;

#[test]
fn battery_against_stockade_exec_has_no_escape() {
    if !is_root() {
        skip_or_fail(
            "battery_against_stockade_exec_has_no_escape",
            "native controls need root",
        );
        return;
    }
    let bin = stockade();
    let out = battery()
        .arg("--stockade")
        .arg(&bin)
        .output()
        .expect("run battery");
    let text = stdout(&out);
    let (passed, failed) = closing(&text);
    assert!(
        out.status.success() && failed == 0 && passed >= 60,
        "battery against {}:\n{text}\n{}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn posture_of_every_thread_is_as_expected() {
    if !is_root() {
        skip_or_fail(
            "posture_of_every_thread_is_as_expected",
            "reading another uid's /proc needs root",
        );
        return;
    }
    let bin = stockade();
    let out = battery()
        .arg("--posture")
        .arg("--stockade")
        .arg(&bin)
        .output()
        .expect("run posture check");
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "posture check:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no differences"), "{text}");
}

fn tight_policy(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stockade-tight-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join("tight.toml");
    std::fs::write(
        &p,
        "version = 1\n[filesystem]\ntmp_size = \"4M\"\ntmp_inodes = 200\n\
         [resources]\nmemory_max = \"96M\"\npids_max = 24\nnproc = 48\nnofile = 80\n\
         fsize = \"2M\"\ncpu_max = \"40%\"\n",
    )
    .expect("write policy");
    p
}

#[test]
fn bombs_stop_at_a_custom_policys_limits() {
    if !is_root() {
        skip_or_fail(
            "bombs_stop_at_a_custom_policys_limits",
            "native controls need root",
        );
        return;
    }
    let bin = stockade();
    let policy = tight_policy("bombs");
    let out = battery()
        .arg("--stockade")
        .arg(&bin)
        .arg("--policy")
        .arg(&policy)
        .args([
            "--only",
            "fork-bomb,mem-bomb,fd-bomb,fsize-bomb,inode-bomb,cpu-bomb,caps-eff",
        ])
        .output()
        .expect("run battery");
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(closing(&text), (7, 0), "{text}");
    // the fd bomb stopped below the policy's nofile, the fork bomb at or below pids_max
    assert!(
        text.lines()
            .any(|l| l.starts_with("fd-bomb") && l.contains("errno=EMFILE")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(policy.parent().expect("dir"));
}

#[test]
fn posture_follows_a_custom_policy() {
    if !is_root() {
        skip_or_fail(
            "posture_follows_a_custom_policy",
            "reading another uid's /proc needs root",
        );
        return;
    }
    let bin = stockade();
    let policy = tight_policy("posture");
    let ok = battery()
        .args(["--posture", "--stockade"])
        .arg(&bin)
        .arg("--policy")
        .arg(&policy)
        .output()
        .expect("run posture check");
    assert!(ok.status.success(), "{}", stdout(&ok));
    // the check can fail: a wrong expectation must show up as a difference on every thread
    let bad = battery()
        .args(["--posture", "--stockade"])
        .arg(&bin)
        .arg("--policy")
        .arg(&policy)
        .args(["--expect-limit", "Max open files=81/81"])
        .output()
        .expect("run posture check");
    let text = stdout(&bad);
    assert!(!bad.status.success(), "{text}");
    assert!(
        text.matches("limit 'Max open files'").count() >= 4,
        "{text}"
    );
    let _ = std::fs::remove_dir_all(policy.parent().expect("dir"));
}
