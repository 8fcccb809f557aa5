//! `stockade-bench`: Stockade side by side with its peers and with the physical floor, in one
//! run, on one machine (these VMs are noisy: compare ratios measured together, not absolute
//! times across runs). Prints tables and, with `--docs DIR`, writes `DIR/PERFORMANCE.md` and
//! the SVG plots of the latency distributions.
//!
//! Measured (see `docs/PERFORMANCE.md` for the method and the analysis):
//! 1. cold launch to handshake, Stockade against bare exec, `unshare -Upmn`, bwrap, runc, firejail;
//! 2. hook round trip over `stockade run` at 64 B / 4 KiB / 64 KiB against a pipe ping-pong;
//! 3. pipelined hooks per second through one plugin, and through `stockade serve` fanned out to
//!    8 plugins;
//! 4. scale: 1, 10, 100, 1000 plugins in one `stockade serve` (RSS, per-plugin overhead, hook p99);
//! 5. `stockade verify` against `sha256sum` of the same 1 / 10 / 100 MB packages.
//!
//! `--quick` runs every measurement a few times only: CI uses it to prove the harness works; its
//! figures mean nothing. No test ever asserts a time.

mod fixture;
mod launch;
mod report;
mod rtt;
mod serve;
mod stats;

use clap::Parser;
use fixture::{sh, which, Fixture};
use launch::Launcher;
use report::{cdf_svg, series_table, targets_table, Target};
use stats::{fmt_us, Series};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "stockade-bench",
    about = "Stockade against its peers and the physical floor"
)]
struct Args {
    /// A handful of runs per measurement (proves the harness works; figures are meaningless).
    #[arg(long)]
    quick: bool,
    /// The `stockade` binary to measure (a release build for real figures).
    #[arg(long)]
    stockade: PathBuf,
    /// Write PERFORMANCE.md and the plots into this directory.
    #[arg(long)]
    docs: Option<PathBuf>,
    /// Fail unless every peer is installed (CI: a missing peer is an error, not a skip).
    #[arg(long)]
    require_peers: bool,
    /// Only the scale section, at these sizes (e.g. `1,1000`), printed, nothing written: for
    /// profiling one figure without the ten-minute run.
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    only_scale: Vec<usize>,
    /// Only the warm-pool section (this many restarts each, and as many quiet bare execs first),
    /// printed with both ratios, nothing written.
    #[arg(long, value_name = "N")]
    only_warm: Option<usize>,
    /// Only the 64 B round trip (this many calls, floor and `stockade run`), printed, nothing
    /// written.
    #[arg(long, value_name = "N")]
    only_rtt: Option<usize>,
    /// Only the cold launches of bare exec, bwrap, `stockade exec` and `stockade run` (this many
    /// each), printed, nothing written.
    #[arg(long, value_name = "N")]
    only_launch: Option<usize>,
    /// Only the verification of one package of this many MB (5 runs), printed; the fixture is
    /// kept and the verify command printed (for profiling `stockade verify` by hand).
    #[arg(long, value_name = "MB")]
    only_verify: Option<usize>,
    /// Internal: the floor's echo process.
    #[arg(long, hide = true)]
    echo: bool,
}

struct Plan {
    launches: usize,
    round_trips: usize,
    pipelined: usize,
    verify_sizes_mb: Vec<usize>,
    verify_runs: usize,
    scale_sizes: Vec<usize>,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("echo") {
        return match rtt::echo_loop() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let args = Args::parse();
    if args.echo {
        return match rtt::echo_loop() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockade-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let plan = if args.quick {
        Plan {
            launches: 3,
            round_trips: 30,
            pipelined: 500,
            verify_sizes_mb: vec![1],
            verify_runs: 2,
            scale_sizes: vec![1, 4],
        }
    } else {
        Plan {
            launches: 40,
            round_trips: 3000,
            pipelined: 50_000,
            verify_sizes_mb: vec![1, 10, 100],
            verify_runs: 10,
            scale_sizes: vec![1, 10, 100, 1000],
        }
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin");
    let stockade = std::fs::canonicalize(&args.stockade)
        .map_err(|e| format!("{}: {e}", args.stockade.display()))?;
    if let Some(d) = &args.docs {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let f = Fixture::build(&stockade, &src)?;
    if let Some(n) = args.only_warm {
        // The quiet baseline first, as in a full run's section 1.
        let quiet = (0..n)
            .map(|i| Launcher::Bare.measure(&f, i))
            .collect::<Result<Vec<_>, _>>()?;
        let quiet = Series::new("bare exec, quiet", &quiet);
        print_series(&quiet);
        let pool = warm_pool(&f, n)?;
        for series in pool.rows() {
            print_series(series);
        }
        println!(
            "warm spare / bare exec: {:.2}× quiet, {:.2}× between the restarts",
            pool.warm.median() / quiet.median(),
            pool.warm.median() / pool.bare_between.median()
        );
        return Ok(());
    }
    if let Some(mb) = args.only_verify {
        let pkg = f.package_with_filler(mb * 1024 * 1024)?;
        let (mut sha, mut ver) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            sha.push(time(Command::new("sha256sum").arg(&pkg))?);
            ver.push(time(Command::new(&f.stockade).args(f.verify_args(&pkg)))?);
        }
        let (sha, ver) = (Series::new("sha256sum", &sha), Series::new("verify", &ver));
        println!(
            "sha256sum {:.1} ms, stockade verify {:.1} ms ({:.2}×); kept: {} {}",
            sha.median() / 1000.0,
            ver.median() / 1000.0,
            ver.median() / sha.median(),
            f.stockade.display(),
            f.verify_args(&pkg)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        f.keep();
        return Ok(());
    }
    if let Some(n) = args.only_launch {
        for l in [
            Launcher::Bare,
            Launcher::Bwrap,
            Launcher::StockadeExec,
            Launcher::StockadeRun,
            Launcher::StockadeRunFirst,
        ] {
            l.measure(&f, 0)?;
            let v = (1..=n)
                .map(|i| l.measure(&f, i))
                .collect::<Result<Vec<_>, _>>()?;
            print_series(&Series::new(l.name(), &v));
        }
        return Ok(());
    }
    if let Some(n) = args.only_rtt {
        let (fl, st) = rtt_pair(&f, 64, n / 10, n)?;
        let (fl1, st1) = rtt::on_one_cpu(|| rtt_pair(&f, 64, n / 10, n))?;
        for (series, label) in [
            (fl, "pipe floor"),
            (st, "stockade run"),
            (fl1, "pipe floor, one CPU"),
            (st1, "stockade run, one CPU"),
        ] {
            print_series(&Series::new(format!("{label}, 64 B"), &series));
        }
        return Ok(());
    }
    if !args.only_scale.is_empty() {
        let (st, _, _) = scale(&f, &args.only_scale, 50, plan.round_trips)?;
        println!("{st}");
        return Ok(());
    }
    let mut md = String::new();
    let mut targets = Vec::new();
    let mut plots = String::new();
    header(&mut md, &stockade, args.quick);

    // 1. Cold launch.
    let mut launches = Vec::new();
    for l in Launcher::ALL {
        if !l.available() {
            let tool = l.tool().unwrap_or("?");
            if args.require_peers {
                return Err(format!("{tool} is not installed (needed for {})", l.name()));
            }
            eprintln!("skipping {}: {tool} is not installed", l.name());
            continue;
        }
        eprintln!("cold launch: {} × {}", l.name(), plan.launches);
        // One unmeasured run warms the page cache and the tool's own start-up.
        l.measure(&f, 0)?;
        let mut v = Vec::with_capacity(plan.launches);
        for i in 1..=plan.launches {
            v.push(l.measure(&f, i)?);
        }
        launches.push((l, Series::new(l.name(), &v)));
    }
    let find = |want: Launcher| launches.iter().position(|(l, _)| *l == want);
    let rows: Vec<Series> = launches.iter().map(|(_, s)| s.clone()).collect();
    let _ = writeln!(
        md,
        "## 1. Cold launch to handshake\n\nFrom `spawn` to the plugin's handshake line (peers, \
         `stockade exec`) or to `plugin_state: ready` (`stockade run`: verification, every layer, \
         handshake checked and answered). Same static plugin everywhere. `stockade run` is \
         measured as an agent running the same package again and again meets it — its tree kept \
         from the earlier runs and checked file by file against the signed map (`trust.keep_trees`, \
         the default) — and as in a package's first run, the payload extracted (`keep_trees = 0`); \
         both verify the signature, chain, revocation and every file's digest.\n\n{}",
        series_table(&rows, find(Launcher::Bare))
    );
    match (find(Launcher::StockadeRun), find(Launcher::Bwrap)) {
        (Some(s), Some(b)) => targets.push(Target::ratio(
            "cold launch (`stockade run`) median ≤ 0.5× `bwrap --unshare-all`",
            rows[s].median(),
            rows[b].median(),
            0.5,
        )),
        _ => targets.push(Target::unmeasured(
            "cold launch median ≤ 0.5× bwrap",
            "bwrap not installed",
        )),
    }
    for (launcher, what) in [
        (
            Launcher::StockadeRunFirst,
            "(for reference) `stockade run`, package extracted, median ≤ 0.5× `bwrap --unshare-all`",
        ),
        (
            Launcher::StockadeExec,
            "(for reference) `stockade exec` median ≤ 0.5× `bwrap --unshare-all`",
        ),
    ] {
        if let (Some(s), Some(b)) = (find(launcher), find(Launcher::Bwrap)) {
            targets.push(Target::ratio(
                what,
                rows[s].median(),
                rows[b].median(),
                0.5,
            ));
        }
    }
    // 1b. The warm pool: a restart inside `stockade serve`, cold and from a held spare, against
    // the quiet bare exec of section 1 (the target) and a bare exec made between the restarts.
    let pool = warm_pool(&f, plan.launches)?;
    let quiet = find(Launcher::Bare)
        .map(|b| launches[b].1.clone())
        .ok_or("the bare exec baseline is missing")?;
    let mut rows = vec![quiet];
    rows.extend(pool.rows().into_iter().cloned());
    let _ = writeln!(
        md,
        "### Warm pool\n\n`stockade serve` with `[serve] warm`: each loaded plugin has a held \
         spare sandbox (uid, cgroup, namespaces, mounts, rlimits, capabilities, Landlock all \
         applied; the program's process forked, under its seccomp filter, waiting before its \
         exec). A restart then only gives it the go: it executes. Measured by the daemon \
         itself, from the start of the launch to the handshake processed \
         (`plugin_status.launch_us`), against bare exec on a quiet machine (section 1; the \
         target is judged against it) and against a bare exec made after each warm restart once \
         the daemon holds its next spare, which shares the restarts' conditions (the kernel's \
         deferred clean-up of the previous incarnation's namespaces and cgroups): warm spare \
         / that baseline = {:.2}×.\n\n{}",
        pool.warm.median() / pool.bare_between.median(),
        series_table(&rows, Some(0))
    );
    targets.push(Target::ratio(
        "warm pool launch median ≤ 2× bare exec",
        pool.warm.median(),
        rows[0].median(),
        2.0,
    ));
    if let Some(d) = &args.docs {
        cdf_svg(
            &d.join("perf-launch.svg"),
            "Cold launch to handshake",
            &rows,
        )?;
        plots.push_str("![cold launch CDF](perf-launch.svg)\n\n");
    }

    // 2. Round trips.
    let sizes = [(64usize, "64 B"), (4096, "4 KiB"), (65536, "64 KiB")];
    let mut rtt_rows = Vec::new();
    let mut pairs = Vec::new();
    let warmup = (plan.round_trips / 10).max(5);
    for (k, (size, label)) in sizes.iter().enumerate() {
        eprintln!("round trip {label} × {}", plan.round_trips);
        let (fl, st) = rtt_pair(&f, *size, warmup, plan.round_trips)?;
        let fl = Series::new(format!("pipe floor, {label}"), &fl);
        let st = Series::new(format!("stockade run, {label}"), &st);
        if k == 0 {
            targets.push(Target::ratio(
                "hook round trip p50 ≤ 1.5× the pipe floor (64 B)",
                st.median(),
                fl.median(),
                1.5,
            ));
            targets.push(Target {
                goal: "hook round trip p99 ≤ 100 µs (64 B)".into(),
                measured: fmt_us(st.p99()),
                met: Some(st.p99() <= 100.0),
            });
        }
        pairs.push((fl.clone(), st.clone()));
        rtt_rows.push(fl);
        rtt_rows.push(st);
    }
    let mut t = String::from(
        "| payload | floor p50 | floor p99 | stockade p50 | stockade p99 | p50 ratio |\n|---|---:|---:|---:|---:|---:|\n",
    );
    // The same 64 B calls with every process on one CPU: what the processes themselves cost,
    // without the wake-ups of an idle CPU (see PERFORMANCE.md, "Round trip").
    eprintln!("round trip 64 B on one CPU × {}", plan.round_trips);
    let (fl1, st1) = rtt::on_one_cpu(|| rtt_pair(&f, 64, warmup, plan.round_trips))?;
    let one_cpu = (
        Series::new("pipe floor, 64 B, one CPU", &fl1),
        Series::new("stockade run, 64 B, one CPU", &st1),
    );
    let labels = sizes.iter().map(|(_, l)| *l).chain(["64 B, one CPU"]);
    for ((fl, st), label) in pairs.iter().chain([&one_cpu]).zip(labels) {
        let _ = writeln!(
            t,
            "| {label} | {} | {} | {} | {} | {:.2}× |",
            fmt_us(fl.median()),
            fmt_us(fl.p99()),
            fmt_us(st.median()),
            fmt_us(st.p99()),
            st.median() / fl.median()
        );
    }
    let _ = writeln!(
        md,
        "## 2. Hook round trip\n\nAgent → `stockade run` → plugin → runtime → agent, sequential \
         calls ({} measured after {warmup} warm-up), payload echoed back by the plugin; the floor \
         is the same lines ping-ponged through a pipe pair with one echo process. The last row \
         runs the benchmark (the agent), the echo process, `stockade run` and its plugin all on \
         one CPU (an inherited affinity): the cost of the processes without the wake-up of an \
         idle CPU.\n\n{t}",
        plan.round_trips
    );
    if let Some(d) = &args.docs {
        cdf_svg(&d.join("perf-rtt.svg"), "Hook round trip", &rtt_rows)?;
        plots.push_str("![round trip CDF](perf-rtt.svg)\n\n");
    }

    // 3. Pipelined throughput.
    eprintln!("pipelined × {}", plan.pipelined);
    let mut s = rtt::Session::stockade(&f)?;
    let rate = s.pipelined(64, plan.pipelined, 256)?;
    s.finish()?;
    // 3b. Fan-out through `stockade serve`.
    eprintln!("serve fan-out to 8 plugins");
    let mut sv = serve::Serve::start(&f)?;
    for i in 0..8 {
        sv.load(&f.package_named(&format!("fan{i}"), "on:bench.fan")?)?;
    }
    let fan = sv.round_trips("on:bench.fan", 8, warmup, plan.round_trips / 4)?;
    let fan = Series::new("serve, fan-out to 8", &fan);
    let fan_rate = sv.pipelined("on:bench.fan", plan.pipelined / 8, 64)?;
    sv.stop()?;
    let _ = writeln!(
        md,
        "## 3. Pipelined throughput\n\n{} hook calls of 64 B through one plugin (`stockade run`), \
         at most 256 in flight: **{rate:.0} hooks/s**.\n\nThrough `stockade serve`, one \
         `hook_invoke` fanned out to 8 plugins and aggregated: sequential p50 {} / p99 {} \
         ({} calls); pipelined (64 in flight, {} calls) **{fan_rate:.0} fan-out calls/s** = \
         {:.0} plugin answers/s.\n",
        plan.pipelined,
        fmt_us(fan.median()),
        fmt_us(fan.p99()),
        plan.round_trips / 4,
        plan.pipelined / 8,
        fan_rate * 8.0
    );
    targets.push(Target {
        goal: "≥ 150,000 pipelined hooks/s, one plugin".into(),
        measured: format!("{rate:.0}/s"),
        met: Some(rate >= 150_000.0),
    });

    // 4. Scale.
    // As many calls as the round-trip section: a p99 needs enough samples to mean something.
    let scale_calls = plan.round_trips.max(20);
    let (st, first, last) = scale(&f, &plan.scale_sizes, warmup, scale_calls)?;
    let _ = writeln!(
        md,
        "## 4. Scale\n\nOne `stockade serve`; one plugin answers `on:bench.echo`, the others are \
         loaded, supervised (health pings) and idle. RSS is the daemon's own (`VmRSS`), not the \
         plugins'. Hook round trip over the agent socket, {scale_calls} sequential 64 B calls per \
         size.\n\n{st}"
    );
    if let (Some((_, p99_1)), Some((n, rss, p99))) = (first, last) {
        // 50 MB = 50,000,000 bytes (47.7 MiB): the stricter reading of the unit.
        targets.push(Target {
            goal: format!("{n} plugins: daemon RSS ≤ 50 MB (issue: at 1,000)"),
            measured: format!(
                "{:.1} MB ({:.1} MiB)",
                rss as f64 * 1024.0 / 1e6,
                rss as f64 / 1024.0
            ),
            met: Some(rss * 1024 <= 50_000_000),
        });
        targets.push(Target::ratio(
            &format!("{n} plugins: hook p99 ≤ 2× the 1-plugin p99"),
            p99,
            p99_1,
            2.0,
        ));
    }

    // 5. Verification.
    let mut vt = String::from(
        "| package | sha256sum median | stockade verify median | ratio |\n|---|---:|---:|---:|\n",
    );
    let mut largest: Option<(f64, f64)> = None;
    for mb in &plan.verify_sizes_mb {
        eprintln!("verify {mb} MB × {}", plan.verify_runs);
        let pkg = f.package_with_filler(mb * 1024 * 1024)?;
        let size = std::fs::metadata(&pkg).map_err(|e| e.to_string())?.len();
        let mut sha = Vec::new();
        let mut ver = Vec::new();
        for i in 0..=plan.verify_runs {
            let a = time(Command::new("sha256sum").arg(&pkg))?;
            let b = time(Command::new(&f.stockade).args(f.verify_args(&pkg)))?;
            if i > 0 {
                sha.push(a);
                ver.push(b);
            }
        }
        let sha = Series::new("sha256sum", &sha);
        let ver = Series::new("stockade verify", &ver);
        let r = ver.median() / sha.median();
        let _ = writeln!(
            vt,
            "| {mb} MB ({size} bytes) | {} | {} | {r:.2}× |",
            fmt_us(sha.median()),
            fmt_us(ver.median())
        );
        // Sizes ascend: the last one is the largest, the one the target speaks of.
        largest = Some((ver.median(), sha.median()));
    }
    let _ = writeln!(
        md,
        "## 5. Verification\n\nThe whole `stockade verify` (chain, revocation, signature, every \
         file's digest) against `sha256sum` of the same file, page cache warm.\n\n{vt}"
    );
    if let Some((v, s)) = largest {
        targets.push(Target::ratio(
            "verification ≤ 1.2× `sha256sum` (largest package)",
            v,
            s,
            1.2,
        ));
    }

    let tt = targets_table(&targets);
    println!("{md}");
    println!("## Targets\n\n{tt}");
    if let Some(d) = &args.docs {
        let mut doc = String::from(
            "# Performance\n\nGenerated by `sandbox-tests/bench/run.sh` (`stockade-bench --docs docs`); \
             the analysis below the figures is written by hand.\n\n",
        );
        doc.push_str(&md);
        let _ = writeln!(doc, "## Targets\n\n{tt}\n## Distributions\n\n{plots}");
        let analysis = d.join("PERFORMANCE.analysis.md");
        if let Ok(text) = std::fs::read_to_string(&analysis) {
            doc.push_str(&text);
        }
        std::fs::write(d.join("PERFORMANCE.md"), doc).map_err(|e| e.to_string())?;
        eprintln!("wrote {}", d.join("PERFORMANCE.md").display());
    }
    Ok(())
}

/// One line for an `--only-…` run: the series' median and p99.
fn print_series(s: &Series) {
    println!(
        "{}: median {:.1} µs, p99 {:.1} µs",
        s.name,
        s.median(),
        s.p99()
    );
}

/// Sequential round trips through the floor, then through `stockade run`.
fn rtt_pair(
    f: &Fixture,
    size: usize,
    warmup: usize,
    n: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let mut floor = rtt::Session::floor()?;
    let fl = floor.round_trips(size, warmup, n, 1)?;
    floor.finish()?;
    let mut s = rtt::Session::stockade(f)?;
    let st = s.round_trips(size, warmup, n, 1)?;
    s.finish()?;
    Ok((fl, st))
}

fn time(cmd: &mut Command) -> Result<Duration, String> {
    let t0 = Instant::now();
    sh(cmd)?;
    Ok(t0.elapsed())
}

fn header(md: &mut String, stockade: &Path, quick: bool) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let version = |prog: &str, arg: &str| -> String {
        if which(prog).is_none() {
            return "not installed".into();
        }
        Command::new(prog)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let t = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&t)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        md,
        "Machine: Linux {}, {cpus} CPUs. `stockade`: {} ({}). Peers: {}; {}; {}; {}.{}\n",
        kernel.trim(),
        stockade.display(),
        version(&stockade.to_string_lossy(), "--version"),
        version("bwrap", "--version"),
        version("runc", "--version"),
        version("firejail", "--version"),
        version("unshare", "--version"),
        if quick {
            "\n\n**Quick mode: a handful of runs per figure; these numbers mean nothing.**"
        } else {
            ""
        }
    );
}

/// The scale section's table, the first size's (RSS KiB, hook p99) and the last size's
/// (plugins, RSS KiB, hook p99).
type ScaleResult = (String, Option<(u64, f64)>, Option<(usize, u64, f64)>);

/// The scale section: grow one `stockade serve` to each size and measure it.
fn scale(
    f: &Fixture,
    sizes: &[usize],
    warmup: usize,
    scale_calls: usize,
) -> Result<ScaleResult, String> {
    let mut sv = serve::Serve::start(f)?;
    sv.load(&f.package_named("probe", "on:bench.echo")?)?;
    let mut loaded = 1;
    let mut st = String::from(
        "| plugins | daemon RSS | per-plugin RSS | hook p50 | hook p99 |\n|---:|---:|---:|---:|---:|\n",
    );
    let mut first: Option<(u64, f64)> = None;
    let mut last: Option<(usize, u64, f64)> = None;
    for &n in sizes {
        eprintln!("serve scale: {n} plugins");
        while loaded < n {
            sv.load(&f.package_named(&format!("idle{loaded}"), "on:bench.idle")?)?;
            loaded += 1;
        }
        let rtt = sv.round_trips("on:bench.echo", 1, warmup, scale_calls)?;
        let rtt = Series::new(format!("{n} plugins"), &rtt);
        let rss = sv.rss_kib();
        let (rss1, _) = *first.get_or_insert((rss, rtt.p99()));
        let per = if n > 1 {
            format!(
                "{:.0} KiB",
                (rss.saturating_sub(rss1)) as f64 / (n - 1) as f64
            )
        } else {
            "–".into()
        };
        let _ = writeln!(
            st,
            "| {n} | {:.1} MiB | {per} | {} | {} |",
            rss as f64 / 1024.0,
            fmt_us(rtt.median()),
            fmt_us(rtt.p99())
        );
        last = Some((n, rss, rtt.p99()));
    }
    sv.stop()?;
    Ok((st, first, last))
}

/// The warm-pool section's series.
struct WarmPool {
    /// A bare exec made after each warm restart once the daemon holds its next spare. It shares
    /// the restarts' conditions — the kernel's deferred clean-up of the previous incarnation (its
    /// network namespace, its cgroups) runs on — and is slower than a bare exec on a quiet
    /// machine; the target is judged against the quiet one.
    bare_between: Series,
    /// Restarts inside `stockade serve` without the warm pool: the daemon's launch → ready.
    cold: Series,
    /// Restarts from a held spare.
    warm: Series,
}

impl WarmPool {
    fn rows(&self) -> [&Series; 3] {
        [&self.bare_between, &self.cold, &self.warm]
    }
}

/// Restarts inside `stockade serve`, cold then from a held spare, and the bare exec between the
/// warm ones (see [`WarmPool`]).
fn warm_pool(f: &Fixture, launches: usize) -> Result<WarmPool, String> {
    let pool_pkg = f.package_named("pool", "on:bench.echo")?;
    let cold = restarts(f, &pool_pkg, launches, None)?;
    let mut bare = Vec::with_capacity(launches);
    let warm = restarts(f, &pool_pkg, launches, Some(&mut bare))?;
    Ok(WarmPool {
        bare_between: Series::new("bare exec, between the warm restarts", &bare),
        cold,
        warm,
    })
}

/// `launches` restarts of the `pool` plugin in a fresh `stockade serve`, with the warm pool when
/// `bare` is given — and then, after each, a bare exec into `bare` once the daemon holds its next
/// spare.
fn restarts(
    f: &Fixture,
    pkg: &std::path::Path,
    launches: usize,
    mut bare: Option<&mut Vec<Duration>>,
) -> Result<Series, String> {
    let warm = bare.is_some();
    let what = if warm { "warm spare" } else { "cold" };
    eprintln!("serve restart ({what}) × {launches}");
    let mut sv = serve::Serve::start_with(
        f,
        &format!("[serve]\nwarm = {warm}\n[health]\nping_interval_ms = 0\n"),
    )?;
    sv.load(pkg)?;
    sv.restart_launch("pool")?;
    let mut v = Vec::with_capacity(launches);
    for _ in 0..launches {
        let (d, was_warm) = sv.restart_launch("pool")?;
        if was_warm != warm {
            return Err(format!("a {what} restart reported warm = {was_warm}"));
        }
        v.push(d);
        if let Some(bare) = bare.as_deref_mut() {
            // Not while the daemon builds the next spare (milliseconds of work on a two-CPU
            // machine): that would slow the baseline.
            sv.wait_spare("pool")?;
            bare.push(Launcher::Bare.measure(f, bare.len())?);
        }
    }
    sv.stop()?;
    Ok(Series::new(format!("serve restart, {what}"), &v))
}
