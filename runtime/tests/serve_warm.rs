//! `[serve] warm`: the warm pool. A loaded plugin gets a held spare sandbox (every layer built,
//! the program not forked); a restart or a crash uses it; a policy change makes it stale (the
//! next launch is cold and a new spare is built under the new policy); unloading, stopping and
//! a quarantine leave no held sandbox, cgroup or process behind; a spare given up that the kernel
//! holds is reaped by the loop later, never waited for in it; one that died while held is
//! replaced by a cold launch; a warm incarnation enforces exactly the values a cold one does.
//! Real sandboxes (root).

mod serve_common;
use serde_json::json;
use serve_common::*;

const CONFIG: &str =
    "[serve]\nwarm = true\n[restart]\nbackoff_base_ms = 20\nbackoff_max_ms = 100\n\
jitter_percent = 0\n[quarantine]\nmax_crashes = 100\n[health]\nping_interval_ms = 0\n";

fn status(c: &mut Client, name: &str) -> serde_json::Value {
    c.ok("plugin_status", json!({"name": name}))
}

/// The sandboxes' inits under the daemon (running and held alike are its children).
fn inits(serve_pid: i32) -> usize {
    children_of(serve_pid).len()
}

/// The held spare's init: of the daemon's children, the one that is not the parent of the
/// running program (`st`: its `plugin_status`).
fn spare_init(serve_pid: i32, st: &serde_json::Value) -> i32 {
    let program = st["pid"].as_i64().unwrap();
    let running_init = std::fs::read_to_string(format!("/proc/{program}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .map(|p| p.trim().parse::<i32>().unwrap())
        .unwrap();
    children_of(serve_pid)
        .into_iter()
        .find(|p| *p != running_init)
        .expect("the spare's init")
}

#[test]
fn restarts_use_the_held_spare_and_a_policy_change_makes_it_stale() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let mut s = Serve::start(&fx, CONFIG, Some("[resources]\npids_max = 32\n"));
    let serve_pid = s.pid();
    let mut c = s.client();
    let r = c.ok("plugin_load", json!({"package": a}));
    assert_eq!(r["state"], "ready", "{r}");
    let st = status(&mut c, "a");
    assert_eq!(st["warm"], false, "the first launch is cold: {st}");
    assert!(st["launch_us"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["spare"], true, "a spare is built once ready: {st}");
    assert_eq!(inits(serve_pid), 2, "the running sandbox and the held one");
    let cgroups_with_spare = cgroups_of(serve_pid).len();

    // A requested restart runs in the spare, and a new spare follows.
    c.ok("plugin_restart", json!({"name": "a"}));
    c.wait_state("a", "exited");
    c.wait_state("a", "starting");
    c.wait_state("a", "ready");
    let st = status(&mut c, "a");
    assert_eq!(st["warm"], true, "{st}");
    assert_eq!(st["spare"], true, "{st}");
    let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");

    // A crash too.
    let r = c.ok("hook_invoke", invoke("on:x", json!({"a": "crash"}), None));
    assert_eq!(r["results"][0]["error"]["code"], PLUGIN_CRASHED, "{r}");
    c.wait_state("a", "restarting");
    c.wait_state("a", "starting");
    c.wait_state("a", "ready");
    let st = status(&mut c, "a");
    assert_eq!(st["warm"], true, "{st}");
    assert_eq!(inits(serve_pid), 2, "no spare left over: {st}");

    // A new policy (SIGHUP): the spare was built under the old one, so it is not used.
    std::fs::write(
        fx.dir().join("policy.toml"),
        "version = 1\n[resources]\npids_max = 16\n",
    )
    .unwrap();
    signal(serve_pid, "HUP");
    let t = std::time::Instant::now();
    while !s.log().contains("SIGHUP: policy reloaded") {
        assert!(t.elapsed().as_secs() < 30, "{}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.ok("plugin_restart", json!({"name": "a"}));
    c.wait_state("a", "exited");
    c.wait_state("a", "starting");
    c.wait_state("a", "ready");
    let st = status(&mut c, "a");
    assert_eq!(st["warm"], false, "a stale spare must not be used: {st}");
    assert_eq!(st["spare"], true, "{st}");
    // The next restart uses the spare built under the new policy.
    c.ok("plugin_restart", json!({"name": "a"}));
    c.wait_state("a", "exited");
    c.wait_state("a", "starting");
    c.wait_state("a", "ready");
    assert_eq!(status(&mut c, "a")["warm"], true);
    assert_eq!(inits(serve_pid), 2);
    assert_eq!(cgroups_of(serve_pid).len(), cgroups_with_spare);

    // Unload: the running sandbox and the held one are gone, cgroups too.
    c.ok("plugin_unload", json!({"name": "a"}));
    assert_eq!(inits(serve_pid), 0, "a held sandbox outlived its plugin");
    assert_eq!(cgroups_of(serve_pid), Vec::<std::path::PathBuf>::new());

    // Stop with a spare held: nothing is left either.
    let b = pack_worker(&fx, "b", &["on:x"]);
    c.ok("plugin_load", json!({"package": b}));
    assert_eq!(status(&mut c, "b")["spare"], true);
    assert_eq!(s.stop(), 0, "{}", s.log());
    assert_eq!(cgroups_of(serve_pid), Vec::<std::path::PathBuf>::new());
    let t = std::time::Instant::now();
    while !children_of(serve_pid).is_empty() {
        assert!(t.elapsed().as_secs() < 10, "processes left after stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A crash-looping plugin's spare goes with its quarantine (no incarnation is coming to use
/// it): no held init, uid or cgroup is kept for a plugin that gets no restarts. After
/// `plugin_restart` the plugin runs again and gets a spare once ready.
#[test]
fn a_quarantined_plugin_keeps_no_spare_until_plugin_restart() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let config = "[serve]\nwarm = true\n[restart]\nbackoff_base_ms = 20\nbackoff_max_ms = 100\n\
                  jitter_percent = 0\n[quarantine]\nmax_crashes = 2\nwindow_ms = 600000\n\
                  [health]\nping_interval_ms = 0\n";
    let mut s = Serve::start(&fx, config, None);
    let serve_pid = s.pid();
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    assert_eq!(status(&mut c, "a")["spare"], true);
    // Crash 1: restarted in the spare; a new spare follows once ready.
    let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    assert_eq!(r["results"][0]["error"]["code"], PLUGIN_CRASHED, "{r}");
    c.wait_state("a", "restarting");
    c.wait_state("a", "ready");
    let st = status(&mut c, "a");
    assert_eq!(
        (&st["warm"], &st["spare"]),
        (&json!(true), &json!(true)),
        "{st}"
    );
    let spare_pids: Vec<i64> = children_of(serve_pid).into_iter().map(i64::from).collect();
    assert_eq!(
        spare_pids.len(),
        2,
        "the running sandbox's init and the spare's"
    );
    // Crash 2: quarantined, and the spare is gone with everything it held.
    let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    assert_eq!(r["results"][0]["error"]["code"], PLUGIN_CRASHED, "{r}");
    c.wait_state("a", "quarantined");
    let st = status(&mut c, "a");
    assert_eq!(st["state"], "quarantined", "{st}");
    assert_eq!(
        st["spare"], false,
        "a quarantined plugin kept its spare: {st}"
    );
    assert_eq!(
        alive(&spare_pids),
        Vec::<i64>::new(),
        "the spare's init is left"
    );
    assert_eq!(inits(serve_pid), 0);
    assert_eq!(cgroups_of(serve_pid), Vec::<std::path::PathBuf>::new());
    // Out of quarantine: launched (cold), then a spare again.
    c.ok("plugin_restart", json!({"name": "a"}));
    c.wait_state("a", "starting");
    c.wait_state("a", "ready");
    let st = status(&mut c, "a");
    assert_eq!(
        (&st["warm"], &st["spare"]),
        (&json!(false), &json!(true)),
        "{st}"
    );
    assert_eq!(inits(serve_pid), 2);
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// Plugin `name`'s held spare, its waiting program frozen by the v1 freezer (the kernel holds
/// it: SIGKILL waits for the thaw, as for a process in uninterruptible sleep): the spare's init
/// and the freeze. `None` (a `require` failure, an error under CI) without a freezer.
fn freeze_the_spare(c: &mut Client, serve_pid: i32, name: &str) -> Option<(i32, Frozen)> {
    let st = status(c, name);
    assert_eq!(st["spare"], true, "{st}");
    let spare_init = spare_init(serve_pid, &st);
    let frozen = Frozen::freeze(i64::from(held_program(spare_init)));
    if frozen.is_none() {
        require(
            false,
            "no v1 freezer controller at /sys/fs/cgroup/freezer: nothing here can hold a spare",
        );
    }
    Some((spare_init, frozen?))
}

/// The spare's waiting program: its init's only child. `plugin_status` says `spare` once the
/// spare is built, which can be just before its init has forked the program: looked for again
/// until it is there.
fn held_program(spare_init: i32) -> i32 {
    let start = std::time::Instant::now();
    loop {
        let held = children_of(spare_init);
        match held.as_slice() {
            [one] => return *one,
            [] if start.elapsed() < std::time::Duration::from_secs(10) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => panic!("the spare's waiting program: {held:?}"),
        }
    }
}

/// A spare the kernel holds (its waiting program frozen by the v1 freezer: SIGKILL waits for
/// the thaw, as for a process in uninterruptible sleep) is given up as a plugin's killed sandbox
/// is — reaped by the loop once it ends — never waited for in the loop: the unload is
/// answered, and another plugin loads and is called meanwhile. Once thawed the spare is reaped
/// and its cgroups removed.
#[test]
fn a_spare_that_does_not_end_never_stops_the_daemon() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let b = pack_worker(&fx, "b", &["on:y"]);
    let mut s = Serve::start(&fx, CONFIG, None);
    let serve_pid = s.pid();
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    let Some((spare_init, frozen)) = freeze_the_spare(&mut c, serve_pid, "a") else {
        return;
    };
    // Unloaded: the spare is killed and does not end; the daemon answers all the same.
    let r = c.ok("plugin_unload", json!({"name": "a"}));
    assert_eq!(r["state"], "unloaded", "{r}");
    let spare_cgroups = cgroups_of(serve_pid);
    assert!(
        !spare_cgroups.is_empty(),
        "the held spare's cgroups are kept until it ends"
    );
    assert_eq!(
        alive(&[i64::from(spare_init)]),
        vec![i64::from(spare_init)],
        "the spare ended after all"
    );
    let st = c.ok("plugin_load", json!({"package": b}));
    assert_eq!(st["state"], "ready", "{st}");
    let r = c.ok("hook_invoke", invoke("on:y", json!({}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    // Thawed, it ends: reaped by the loop, its cgroups removed.
    frozen.thaw();
    loop {
        let m = c.recv().expect("serve closed the connection");
        let msg = m["params"]["message"].as_str().unwrap_or("");
        if m["method"] == "log" && m["params"]["plugin"] == "a" && msg.contains("reaped") {
            assert!(msg.contains("cleaned_up: true"), "{m}");
            break;
        }
    }
    assert!(alive(&[i64::from(spare_init)]).is_empty(), "not reaped");
    let left: Vec<_> = spare_cgroups.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "the spare's cgroups are left: {left:?}");
    drop(frozen);
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// A spare that cannot be released because the kernel holds its program (frozen: it never
/// reports its fork) is given up through the loop's reaping once its release fails, and the
/// restart it was for goes cold: the daemon answers meanwhile. The old daemon dropped the failed
/// spare in place, which waited for an init that cannot end while its program is frozen — no
/// agent answered, no log line, until the thaw (review-80). The release itself still waits up to
/// the setup timeout (30 s), as a cold launch whose sandbox does not move would.
#[test]
fn a_spare_that_cannot_be_released_is_reaped_by_the_loop_and_the_restart_goes_cold() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let mut s = Serve::start(&fx, CONFIG, None);
    let serve_pid = s.pid();
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    let Some((spare_init, frozen)) = freeze_the_spare(&mut c, serve_pid, "a") else {
        return;
    };
    // The crash's restart takes the frozen spare: its release fails at the setup timeout.
    c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    let start = std::time::Instant::now();
    while !s
        .log()
        .contains("plugin a: the warm spare could not be used")
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(90),
            "the failed spare was never given up: {}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Still frozen, and the daemon answers: the cold incarnation is ready and serves.
    let start = std::time::Instant::now();
    while status(&mut c, "a")["state"] != "ready" {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = c.ok("hook_invoke", invoke("on:x", json!({}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    assert_eq!(
        alive(&[i64::from(spare_init)]),
        vec![i64::from(spare_init)],
        "the frozen spare ended after all"
    );
    // Thawed, it ends and is reaped by the loop.
    frozen.thaw();
    let start = std::time::Instant::now();
    while !alive(&[i64::from(spare_init)]).is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "not reaped"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(frozen);
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// A spare whose init ended while it was held (killed from outside, as an ancestor group's OOM
/// killer would) says nothing about the plugin: the restart it was for is launched cold, not
/// failed and counted as one more crash — which, here, would have quarantined the plugin.
#[test]
fn a_spare_that_died_while_held_is_replaced_by_a_cold_launch() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let config = "[serve]\nwarm = true\n[restart]\nbackoff_base_ms = 20\nbackoff_max_ms = 100\n\
                  jitter_percent = 0\n[quarantine]\nmax_crashes = 2\nwindow_ms = 600000\n\
                  [health]\nping_interval_ms = 0\n";
    let mut s = Serve::start(&fx, config, None);
    let serve_pid = s.pid();
    let mut c = s.client();
    c.ok("plugin_load", json!({"package": a}));
    let st = status(&mut c, "a");
    assert_eq!(st["spare"], true, "{st}");
    signal(spare_init(serve_pid, &st), "KILL");
    // One crash: its restart finds the spare dead.
    let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "crash"}), None));
    assert_eq!(r["results"][0]["error"]["code"], PLUGIN_CRASHED, "{r}");
    c.wait_state("a", "restarting");
    let next = loop {
        let m = c.recv().expect("serve closed the connection");
        let p = &m["params"];
        if m["method"] == "plugin_state" && p["plugin"] == "a" && p["state"] != "starting" {
            break p.clone();
        }
    };
    assert_eq!(next["state"], "ready", "{next}\n{}", s.log());
    let st = status(&mut c, "a");
    assert_eq!(
        (&st["state"], &st["crashes"], &st["warm"]),
        (&json!("ready"), &json!(1), &json!(false)),
        "{st}"
    );
    assert!(s.log().contains("could not be used"), "{}", s.log());
    let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "ok"}), None));
    assert_eq!(r["results"][0]["result"]["ok"], true, "{r}");
    assert_eq!(s.stop(), 0, "{}", s.log());
    assert_eq!(cgroups_of(serve_pid), Vec::<std::path::PathBuf>::new());
}

/// What a running plugin's process has of its policy, read from the host: its rlimits
/// (`/proc/PID/limits`, soft and hard), its cgroup's limits (v1 or v2, as the kernel writes
/// them back), its hostname (its UTS namespace's, through `nsenter`) and its supplementary
/// groups, seccomp mode and no_new_privs.
fn enforced(pid: i64) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    for (key, row) in [
        ("nofile", "Max open files"),
        ("nproc", "Max processes"),
        ("fsize", "Max file size"),
        ("core", "Max core file size"),
        ("memlock", "Max locked memory"),
        ("cpu_time_secs", "Max cpu time"),
    ] {
        let line = limits.lines().find(|l| l.starts_with(row)).unwrap();
        let f: Vec<&str> = line[row.len()..].split_whitespace().collect();
        m.insert(key.to_string(), format!("{} {}", f[0], f[1]));
    }
    let read = |p: String| std::fs::read_to_string(&p).map(|s| s.trim().to_string());
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let base = |c: &str| format!("/sys/fs/cgroup/{c}{path}");
        let files: &[(&str, &str)] = match ctrl {
            "memory" => &[
                ("memory_max", "memory.limit_in_bytes"),
                ("memory+swap", "memory.memsw.limit_in_bytes"),
            ],
            "pids" => &[("pids_max", "pids.max")],
            "cpu" => &[
                ("cpu quota", "cpu.cfs_quota_us"),
                ("cpu period", "cpu.cfs_period_us"),
            ],
            "" if !cgroup.contains(":memory:") => &[
                ("memory_max", "memory.max"),
                ("swap_max", "memory.swap.max"),
                ("pids_max", "pids.max"),
                ("cpu.max", "cpu.max"),
            ],
            _ => &[],
        };
        let dir = if ctrl.is_empty() {
            format!("/sys/fs/cgroup{path}")
        } else {
            base(ctrl)
        };
        for (k, f) in files {
            if let Ok(v) = read(format!("{dir}/{f}")) {
                m.insert(k.to_string(), v);
            }
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for k in ["Groups", "NoNewPrivs", "Seccomp"] {
        let v = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or("")
            .trim()
            .to_string();
        m.insert(k.to_string(), v);
    }
    let uts = std::process::Command::new("nsenter")
        .args(["-u", "-t", &pid.to_string(), "hostname"])
        .output();
    if let Ok(o) = uts {
        if o.status.success() {
            m.insert(
                "hostname".into(),
                String::from_utf8_lossy(&o.stdout).trim().to_string(),
            );
        }
    }
    m
}

/// audit-134: a warm spare is built ahead of the launch that uses it; the incarnation it
/// becomes has the same enforced values as a cold one, and both the policy's, in its units
/// (rlimits soft = hard; `cpu_max = "250m"`: 25000 µs per 100000 µs; `swap_max` on top of
/// `memory_max`, v1's memory+swap).
#[test]
fn a_warm_incarnation_enforces_the_same_values_as_a_cold_one() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new();
    let a = pack_worker(&fx, "a", &["on:x"]);
    let policy = "[resources]\nmemory_max = \"96M\"\nswap_max = \"8M\"\ncpu_max = \"250m\"\n\
        pids_max = 32\nnofile = 100\nnproc = 50\nfsize = \"2M\"\ncore = \"1M\"\n\
        memlock = \"32K\"\ncpu_time_secs = 77\n[identity]\nhostname = \"warmhost\"\n";
    let mut s = Serve::start(&fx, CONFIG, Some(policy));
    let mut c = s.client();
    let r = c.ok("plugin_load", json!({"package": a}));
    assert_eq!(r["state"], "ready", "{r}");
    let st = status(&mut c, "a");
    assert_eq!(st["warm"], false, "{st}");
    let cold = enforced(st["pid"].as_i64().unwrap());
    c.ok("plugin_restart", json!({"name": "a"}));
    c.wait_state("a", "exited");
    c.wait_state("a", "starting");
    c.wait_state("a", "ready");
    let st = status(&mut c, "a");
    assert_eq!(st["warm"], true, "{st}");
    let warm = enforced(st["pid"].as_i64().unwrap());
    assert_eq!(cold, warm, "a warm incarnation differs from a cold one");
    for (k, v) in [
        ("nofile", "100 100"),
        ("nproc", "50 50"),
        ("fsize", "2097152 2097152"),
        ("core", "1048576 1048576"),
        ("memlock", "32768 32768"),
        ("cpu_time_secs", "77 77"),
        ("pids_max", "32"),
        ("memory_max", "100663296"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
        ("Groups", ""),
    ] {
        assert_eq!(cold.get(k).map(String::as_str), Some(v), "{k}: {cold:?}");
    }
    if cold.contains_key("cpu quota") {
        assert_eq!(cold["cpu quota"], "25000", "{cold:?}");
        assert_eq!(cold["cpu period"], "100000", "{cold:?}");
        if let Some(ms) = cold.get("memory+swap") {
            assert_eq!(ms, "109051904", "{cold:?}");
        }
    } else if let Some(cpu) = cold.get("cpu.max") {
        assert_eq!(cpu, "25000 100000", "{cold:?}");
        assert_eq!(cold["swap_max"], "8388608", "{cold:?}");
    }
    if let Some(h) = cold.get("hostname") {
        assert_eq!(h, "warmhost");
    }
    assert_eq!(s.stop(), 0, "{}", s.log());
}

/// `pids_max = 2` and `nproc = 2`, the smallest a policy may say (the init and the program):
/// every launch path runs at exactly that — two plugins at once (each its own uid, cgroup and
/// user namespace, so neither counts against the other), cold and warm, with a spare held
/// beside each running incarnation, through requested restarts and crashes (the spare used
/// while the old incarnation ends). review-137 checked the minimum audit-134 set; no change.
#[test]
fn the_smallest_process_limits_run_every_launch_path() {
    if !require_root() {
        return;
    }
    for warm in [false, true] {
        let fx = Fixture::new();
        let a = pack_worker(&fx, "a", &["on:x"]);
        let b = pack_worker(&fx, "b", &["on:x"]);
        let config = CONFIG.replace("warm = true", &format!("warm = {warm}"));
        let mut s = Serve::start(&fx, &config, Some("[resources]\npids_max = 2\nnproc = 2\n"));
        let mut c = s.client();
        for p in [&a, &b] {
            let r = c.ok("plugin_load", json!({"package": p}));
            assert_eq!(r["state"], "ready", "{r} {}", s.log());
        }
        for round in 0..4 {
            let r = c.ok("hook_invoke", invoke("on:x", json!({"act": "ok"}), None));
            for i in 0..2 {
                assert_eq!(r["results"][i]["result"]["ok"], true, "{round}: {r}");
            }
            if round % 2 == 0 {
                c.ok("plugin_restart", json!({"name": "a"}));
                c.wait_state("a", "exited");
            } else {
                c.ok("hook_invoke", invoke("on:x", json!({"a": "crash"}), None));
                c.wait_state("a", "restarting");
            }
            c.wait_state("a", "starting");
            c.wait_state("a", "ready");
            let st = status(&mut c, "a");
            assert_eq!(st["warm"], warm, "{st}");
            assert_eq!(st["spare"], warm, "{st}");
            let limits = enforced(st["pid"].as_i64().unwrap());
            assert_eq!(limits["nproc"], "2 2", "{limits:?}");
            assert_eq!(limits["pids_max"], "2", "{limits:?}");
        }
        assert_eq!(s.stop(), 0, "{}", s.log());
    }
}
