//! `stockade-battery`: run the escape-probe battery or the posture check.
//!
//! ```text
//! stockade-battery [--stockade PATH [--stockade-prefix "CMD ARGS…"] | --wrapper "CMD ARGS… --"
//!                   | --native-only]
//!                  [--probe PATH] [--policy FILE] [--only NAME]… [--json] [--timeout SECS]
//!                  [--expect-pids N] [--mem-mb N] [--fork-max N] [--fd-max N] [--fsize-mb N]
//!                  [--inode-max N] [--cpu-max F]
//! stockade-battery --posture --stockade PATH [--probe PATH] [--policy FILE]
//!                  [--expect-uid N] [--expect-gid N] [--expect-limit "NAME=SOFT/HARD"]…
//! ```
//! Exit status: 0 all passed; 1 a probe failed (escape, failed control, error) or the host
//! was affected; 64 bad command line; 65 unusable policy file. Arguments are parsed by hand to
//! keep the binary small for the static qemu build.
//!
//! With `--stockade`, the expectations (pids limit, CPU quota, bomb caps above the limits,
//! rlimits and uid range of the posture) come from the policy under test: `--policy FILE`, or
//! the built-in default policy. Explicit flags override them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use stockade_sandbox_tests::battery::{self, Config, Sandbox};
use stockade_sandbox_tests::fixtures::BombCaps;
use stockade_sandbox_tests::{expect, posture, rules};

const USAGE: &str =
    "usage: stockade-battery [--stockade PATH | --wrapper \"CMD ARGS -- \" | --native-only] \
[--probe PATH] [--policy FILE] [--only NAME]... [--json] [--timeout SECS] [--expect-pids N] \
[--mem-mb N] [--fork-max N] [--fd-max N] [--fsize-mb N] [--inode-max N] [--cpu-max F]\n\
       stockade-battery --posture --stockade PATH [--probe PATH] [--policy FILE] [--expect-uid N] \
[--expect-gid N] [--expect-limit \"NAME=SOFT/HARD\"]...";

#[derive(Default)]
struct Args {
    stockade: Option<PathBuf>,
    stockade_prefix: Vec<OsString>,
    wrapper: Option<Vec<OsString>>,
    native_only: bool,
    probe: Option<PathBuf>,
    policy: Option<PathBuf>,
    only: Vec<String>,
    json: bool,
    timeout: u64,
    mem_mb: Option<u64>,
    fork_max: Option<u64>,
    fd_max: Option<u64>,
    fsize_mb: Option<u64>,
    inode_max: Option<u64>,
    cpu_max: Option<f64>,
    expect_pids: Option<u64>,
    posture: bool,
    expect_uid: Option<u32>,
    expect_gid: Option<u32>,
    expect_limits: Vec<(String, String, String)>,
}

impl Args {
    fn caps(&self, base: BombCaps) -> BombCaps {
        BombCaps {
            mem_mb: self.mem_mb.unwrap_or(base.mem_mb),
            fork_max: self.fork_max.unwrap_or(base.fork_max),
            fd_max: self.fd_max.unwrap_or(base.fd_max),
            fsize_mb: self.fsize_mb.unwrap_or(base.fsize_mb),
            inode_max: self.inode_max.unwrap_or(base.inode_max),
            cpu_max: self.cpu_max.unwrap_or(base.cpu_max),
        }
    }
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        timeout: 60,
        ..Default::default()
    };
    let mut it = std::env::args_os().skip(1);
    let value = |it: &mut dyn Iterator<Item = OsString>, flag: &str| {
        it.next()
            .ok_or_else(|| format!("{flag} needs a value"))
            .map(|v| v.to_string_lossy().into_owned())
    };
    fn num<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
        s.parse().map_err(|_| format!("{flag}: not a number: {s}"))
    }
    while let Some(arg) = it.next() {
        let flag = arg.to_string_lossy().into_owned();
        match flag.as_str() {
            "--stockade" => a.stockade = Some(value(&mut it, &flag)?.into()),
            "--wrapper" => {
                a.wrapper = Some(
                    value(&mut it, &flag)?
                        .split_whitespace()
                        .map(OsString::from)
                        .collect(),
                )
            }
            "--stockade-prefix" => {
                a.stockade_prefix = value(&mut it, &flag)?
                    .split_whitespace()
                    .map(OsString::from)
                    .collect()
            }
            "--native-only" => a.native_only = true,
            "--probe" => a.probe = Some(value(&mut it, &flag)?.into()),
            "--policy" => a.policy = Some(value(&mut it, &flag)?.into()),
            "--only" => a
                .only
                .extend(value(&mut it, &flag)?.split(',').map(str::to_owned)),
            "--json" => a.json = true,
            "--timeout" => a.timeout = num(&value(&mut it, &flag)?, &flag)?,
            "--expect-pids" => a.expect_pids = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--mem-mb" => a.mem_mb = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--fork-max" => a.fork_max = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--fd-max" => a.fd_max = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--fsize-mb" => a.fsize_mb = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--inode-max" => a.inode_max = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--cpu-max" => a.cpu_max = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--posture" => a.posture = true,
            "--expect-uid" => a.expect_uid = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--expect-gid" => a.expect_gid = Some(num(&value(&mut it, &flag)?, &flag)?),
            "--expect-limit" => {
                let v = value(&mut it, &flag)?;
                let (name, sh) = v
                    .split_once('=')
                    .ok_or("--expect-limit wants NAME=SOFT/HARD")?;
                let (s, h) = sh.split_once('/').unwrap_or((sh, sh));
                a.expect_limits
                    .push((name.trim().into(), s.into(), h.into()));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    let modes = usize::from(a.stockade.is_some() && !a.posture)
        + usize::from(a.wrapper.is_some())
        + usize::from(a.native_only);
    if !a.posture && modes != 1 {
        return Err("give exactly one of --stockade, --wrapper, --native-only".into());
    }
    if a.posture && a.stockade.is_none() {
        return Err("--posture needs --stockade (it uses --pid-file)".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("stockade-battery: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    let probe = args
        .probe
        .clone()
        .unwrap_or_else(|| PathBuf::from(stockade_sandbox_tests::BUILT_PROBE));
    if !stockade_sandbox_tests::ci::is_root() {
        eprintln!(
            "stockade-battery: warning: not root; most native controls need root and will fail"
        );
    }
    // expectations from the policy under test (only meaningful for stockade itself)
    let policy = if args.stockade.is_some() {
        match expect::load(args.policy.as_deref()) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("stockade-battery: {e}");
                return ExitCode::from(65);
            }
        }
    } else {
        None
    };
    if args.posture {
        let mut exp = policy.as_ref().map(expect::posture).unwrap_or_default();
        exp.uid = args.expect_uid.or(exp.uid);
        exp.gid = args.expect_gid.or(exp.gid);
        for row in &args.expect_limits {
            exp.limits.retain(|(n, _, _)| n != &row.0);
            exp.limits.push(row.clone());
        }
        if !exp.limits.iter().any(|(n, _, _)| n == "Max core file size") {
            exp = exp.with_default_limits();
        }
        return posture_mode(&args, probe, &exp);
    }
    let sandbox = match (&args.stockade, &args.wrapper) {
        (Some(bin), _) => Sandbox::Stockade {
            prefix: args.stockade_prefix.clone(),
            bin: bin.clone(),
            policy: args.policy.clone(),
        },
        (None, Some(w)) => Sandbox::Wrapper(w.clone()),
        (None, None) => Sandbox::None,
    };
    let cfg = Config {
        probe,
        sandbox,
        only: args.only.clone(),
        caps: args.caps(policy.as_ref().map(expect::bomb_caps).unwrap_or_default()),
        expected: rules::Expected {
            pids: args
                .expect_pids
                .or(policy.as_ref().and_then(|p| expect::battery(p).pids)),
        },
        timeout: Duration::from_secs(args.timeout),
    };
    if !args.json {
        println!("{}", battery::table_header());
    }
    let report = battery::run_battery(&cfg, |o| {
        if !args.json {
            println!("{}", battery::table_row(o));
        }
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stockade-battery: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    for p in &report.host_problems {
        eprintln!("host check failed: {p}");
    }
    let closing = format!("{} passed, {} failed", report.passed(), report.failed());
    if args.json {
        println!("{}", battery::to_json(&report));
        eprintln!("{closing}");
    } else {
        println!("{closing}");
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn posture_mode(args: &Args, probe: PathBuf, exp: &posture::Expected) -> ExitCode {
    let Some(bin) = &args.stockade else {
        return ExitCode::from(64);
    };
    let pid_file =
        std::env::temp_dir().join(format!("stockade-posture-{}.pid", std::process::id()));
    let report_file =
        std::env::temp_dir().join(format!("stockade-posture-{}.report", std::process::id()));
    let mut prefix: Vec<OsString> = args.stockade_prefix.clone();
    prefix.extend([
        bin.into(),
        "exec".into(),
        "--pid-file".into(),
        pid_file.clone().into(),
        "--report".into(),
        report_file.clone().into(),
    ]);
    if let Some(p) = &args.policy {
        prefix.push("--policy".into());
        prefix.push(p.into());
    }
    prefix.push("--".into());
    let res = posture::run_posture(
        &prefix,
        &probe,
        &pid_file,
        exp,
        Duration::from_secs(args.timeout),
    );
    let _ = std::fs::remove_file(&pid_file);
    // The report is written when the target ends (run_posture killed and reaped it).
    let res = res.map(|mut diff| {
        match std::fs::read_to_string(&report_file) {
            Ok(r) => diff.extend(posture::cgroup_join_diff(&r)),
            Err(e) => diff.push(format!("launch report {}: {e}", report_file.display())),
        }
        diff
    });
    let _ = std::fs::remove_file(&report_file);
    match res {
        Ok(diff) if diff.is_empty() => {
            println!("posture: no differences (every thread as expected)");
            ExitCode::SUCCESS
        }
        Ok(diff) => {
            for d in &diff {
                println!("posture diff: {d}");
            }
            println!("posture: {} difference(s)", diff.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("posture: ERROR {e}");
            ExitCode::FAILURE
        }
    }
}
