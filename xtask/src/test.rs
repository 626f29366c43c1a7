//! `cargo xtask test`: everything. Formatting, clippy (userspace and the
//! kernel programs for their target), unit tests, a short fuzz pass, then
//! the lab matrix: each kernel booted once for all scenarios, with
//! assertions on what refwatch wrote about real device pages.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    thread,
    time::Instant,
};

use anyhow::Result;

use crate::{
    checks, cmd, dist, fuzz, kbuild,
    kernels::{self, KernelId, KernelInfo, KernelSource},
    lab::{self, LabRun},
    pointer_scan, setup,
};

/// What `cargo xtask test` runs.
#[derive(Debug, Clone)]
pub struct TestOptions {
    pub static_checks: bool,
    pub unit: bool,
    /// The static binary and the Debian package, checked (lintian…).
    pub dist: bool,
    pub lab: bool,
    pub kernels: Vec<KernelId>,
    /// Only these of each kernel's lab scenarios (all when empty).
    pub scenarios: Vec<String>,
    pub out: PathBuf,
    /// Seconds `cargo xtask setup` took before the run (installing what a
    /// fresh machine lacks; next to nothing once it is there).
    pub setup_secs: f64,
}

/// Tallies passes and failures, printing each as it comes.
#[derive(Default)]
pub struct Tally {
    passed: usize,
    failed: Vec<String>,
    /// The first problems of each failure, repeated at the end: a long
    /// run's log may be read from its tail only.
    recap: Vec<String>,
    /// Wall-clock seconds per phase, in the order run: the closing lines
    /// show where a run's time went (CI's budget is a fresh clone, the
    /// test kernel's build included, in an hour).
    phases: Vec<(String, f64)>,
}

/// How many of a failure's problems the closing recap repeats, and how
/// many characters of each.
const RECAP_PROBLEMS: usize = 3;
const RECAP_CHARS: usize = 400;

impl Tally {
    pub fn record(&mut self, name: &str, problems: Vec<String>) {
        if problems.is_empty() {
            println!("test {name} ... ok");
            self.passed += 1;
        } else {
            println!("test {name} ... FAILED");
            for p in &problems {
                println!("    {p}");
            }
            self.failed.push(name.to_string());
            self.recap.push(format!("{name}:"));
            for p in problems.iter().take(RECAP_PROBLEMS) {
                let cut: String = p.chars().take(RECAP_CHARS).collect();
                let more = if cut.len() < p.len() { " …" } else { "" };
                self.recap.push(format!("    {cut}{more}"));
            }
            if problems.len() > RECAP_PROBLEMS {
                self.recap.push(format!(
                    "    … and {} more (above)",
                    problems.len() - RECAP_PROBLEMS
                ));
            }
        }
    }

    /// Notes that `name` took the time since `started`, and says so.
    fn timed(&mut self, name: &str, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        println!("{name}: {secs:.0} s");
        self.phases.push((name.to_string(), secs));
    }

    /// The phases' times, one line each, with their share of `total`.
    fn phase_lines(&self, total: f64) -> Vec<String> {
        self.phases
            .iter()
            .map(|(name, secs)| {
                let share = if total > 0.0 {
                    secs / total * 100.0
                } else {
                    0.0
                };
                format!("  {secs:>6.0} s {share:>4.0}%  {name}")
            })
            .collect()
    }

    fn result(&mut self, name: &str, r: Result<Vec<String>>) {
        match r {
            Ok(p) => self.record(name, p),
            Err(e) => self.record(name, vec![format!("{e:#}")]),
        }
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.args(args)
        .current_dir(workspace_root())
        .env("PATH", setup::env_path());
    c
}

fn step(tally: &mut Tally, name: &str, c: &mut Command) {
    println!("== {name}: {}", cmd::describe(c));
    let started = Instant::now();
    let r = cmd::streamed(c).map(|()| Vec::new());
    tally.timed(name, started);
    tally.result(name, r);
}

pub fn run(opts: &TestOptions) -> Result<ExitCode> {
    let started = Instant::now();
    let mut tally = Tally::default();
    tally.phases.push(("setup".to_string(), opts.setup_secs));
    let mut builds = if opts.lab {
        start_kernel_builds(&mut tally, &opts.kernels, &opts.scenarios)
    } else {
        Vec::new()
    };
    if opts.static_checks {
        step(
            &mut tally,
            "fmt",
            &mut cargo(&["fmt", "--all", "--", "--check"]),
        );
        step(
            &mut tally,
            "clippy (userspace)",
            &mut cargo(&[
                "clippy",
                "-p",
                "refwatch",
                "-p",
                "refwatch-common",
                "-p",
                "xtask",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        );
        step(
            &mut tally,
            "clippy (kernel programs, bpfel-unknown-none)",
            &mut cargo(&[
                "+nightly",
                "clippy",
                "-p",
                "refwatch-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ]),
        );
    }
    if opts.unit {
        step(
            &mut tally,
            "unit tests",
            &mut cargo(&[
                "test",
                "-p",
                "refwatch",
                "-p",
                "refwatch-common",
                "-p",
                "xtask",
            ]),
        );
        println!("== fuzz (short pass): each target {} s", fuzz::SHORT_SECS);
        let started = Instant::now();
        let r = fuzz::run(&fuzz::TARGETS, fuzz::SHORT_SECS);
        tally.timed("fuzz (short pass)", started);
        tally.result("fuzz (short pass)", r);
    }
    if opts.dist {
        println!("== dist: static binary and Debian package, lintian, the extracted package");
        let started = Instant::now();
        let r = dist::check();
        // (The check prints its own time.)
        tally
            .phases
            .push(("dist".to_string(), started.elapsed().as_secs_f64()));
        tally.result("dist (static binary, .deb)", r);
    }
    if opts.lab {
        let nowhere = lab::run_nowhere(&opts.kernels, &opts.scenarios);
        if !nowhere.is_empty() {
            tally.record("lab scenarios asked for", nowhere);
        }
        for kernel in &opts.kernels {
            let build = builds.iter_mut().find(|(id, _)| id == kernel);
            let build = build.and_then(|(_, b)| b.take());
            lab_kernel(&mut tally, *kernel, build, &opts.scenarios, &opts.out)?;
        }
    }
    let total = started.elapsed().as_secs_f64() + opts.setup_secs;
    println!("\ntime by phase (wall clock):");
    for line in tally.phase_lines(total) {
        println!("{line}");
    }
    println!(
        "\n{} passed, {} failed ({:.0} s, setup included)",
        tally.passed,
        tally.failed.len(),
        total
    );
    if tally.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("failed: {}", tally.failed.join(", "));
        for line in &tally.recap {
            println!("{line}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// A self-built kernel's build, started before the other phases.
type Build = thread::JoinHandle<Result<KernelInfo>>;

/// Starts the build of each self-built kernel of `kernels` the cache lacks:
/// prepared here (packages, pahole, the source: apt, which no other phase
/// may use at the same time), compiled in a thread under `nice -n 19` while
/// the checks and the other kernels' boots run. On a fresh machine that
/// puts its make (8 minutes on a quiet 2-core machine, 12 on a busy one)
/// into the CPU time the other phases leave idle; the kernel's lab boot
/// waits for it.
fn start_kernel_builds(
    tally: &mut Tally,
    kernels: &[KernelId],
    only: &[String],
) -> Vec<(KernelId, Option<Build>)> {
    let mut builds = Vec::new();
    for &id in kernels {
        let KernelSource::Built { suite, package } = id.source() else {
            continue;
        };
        // Only a kernel the run boots.
        if lab::chosen_for(id, only).0.is_empty() {
            continue;
        }
        let started = Instant::now();
        let prepared = kbuild::prepare(id, suite, package, false);
        tally.timed(&format!("kernel {id} (packages and source)"), started);
        match prepared {
            Ok(kbuild::Start::Cached(_)) => {}
            Ok(kbuild::Start::Prepared(p)) => {
                println!("kernel {id}: make runs in the background (nice 19) from now on");
                builds.push((id, Some(thread::spawn(move || p.compile(true)))));
            }
            // Said again, and counted, when the kernel's boot comes.
            Err(e) => println!("kernel {id}: {e:#}"),
        }
    }
    builds
}

/// Boots `kernel` for its scenarios (or those of `only` it runs) and checks
/// the results: one boot for all but the signal scenarios, and one for
/// those, with qemu's instruction-counting clock. Their limit is seconds of
/// guest time, which under plain TCG stretch with the host's load (on a
/// loaded host, SIGTERM to exit took 5.3 s under TCG; 2.8 s on the
/// instruction clock, where the same SIGKILL teardown took 2.9 s).
fn lab_kernel(
    tally: &mut Tally,
    kernel: KernelId,
    build: Option<Build>,
    only: &[String],
    out_root: &Path,
) -> Result<()> {
    let name = kernel.to_string();
    let (scenarios, left_out) = lab::chosen_for(kernel, only);
    if !left_out.is_empty() {
        // Asked for, but not in this kernel's matrix: said, not dropped
        // silently (a scenario no kernel of the run has fails the run).
        println!(
            "== lab {name}: not in this kernel's matrix, not run here: {}",
            left_out.join(", ")
        );
    }
    if scenarios.is_empty() {
        println!("== lab {name}: none of the scenarios asked for is in its matrix: not booted");
        return Ok(());
    }
    // The kernel first, timed on its own: on a fresh machine it is
    // fetched, or built (the test_hmm kernel), before its first boot.
    let started = Instant::now();
    let ready = match build {
        Some(b) => {
            let built = b
                .join()
                .map_err(|_| anyhow::anyhow!("kernel {name}: the build thread panicked"))
                .and_then(|r| r);
            tally.timed(
                &format!("kernel {name} (waiting for its background build)"),
                started,
            );
            built
        }
        None => {
            let r = kernels::ensure(kernel);
            tally.timed(&format!("kernel {name} (fetch or build)"), started);
            r
        }
    };
    if let Err(e) = ready {
        tally.record(&format!("lab {name} kernel"), vec![format!("{e:#}")]);
        return Ok(());
    }
    let (signals, rest): (Vec<&str>, Vec<&str>) = scenarios
        .into_iter()
        .partition(|s| matches!(lab::split_variant(s).1, lab::Variant::Signal(_)));
    // The hardware watchpoints in a boot of their own: no other scenario's
    // refwatch or workload shares the debug registers or the pages.
    let (watched, rest): (Vec<&str>, Vec<&str>) =
        rest.into_iter().partition(|s| lab::split_watch(s).1);
    if !rest.is_empty() {
        let out = out_root.join(&name);
        println!(
            "== lab {name}: {} scenarios in one boot → {}",
            rest.len(),
            out.display()
        );
        lab_boot(tally, &LabRun::new(kernel, &rest), &name, &out)?;
    }
    if !watched.is_empty() {
        let out = out_root.join(format!("{name}-watch"));
        println!(
            "== lab {name}: the watchpoint scenarios in one boot → {}",
            out.display()
        );
        lab_boot(
            tally,
            &LabRun::new(kernel, &watched),
            &format!("{name}-watch"),
            &out,
        )?;
    }
    if !signals.is_empty() {
        let out = out_root.join(format!("{name}-signals"));
        println!(
            "== lab {name}: the signal scenarios in one boot, instruction-counting clock → {}",
            out.display()
        );
        let mut run = LabRun::new(kernel, &signals);
        run.accel = lab::Accel::TcgIcount;
        lab_boot(tally, &run, &format!("{name}-signals"), &out)?;
    }
    Ok(())
}

/// Boots `run` and checks each of its scenarios; `label` names the boot in
/// the tally.
fn lab_boot(tally: &mut Tally, run: &LabRun, label: &str, out: &Path) -> Result<()> {
    let started = Instant::now();
    let checked = lab_boot_checks(tally, run, label, out);
    tally.timed(&format!("lab {label}"), started);
    checked
}

/// [`lab_boot`]'s boot and checks.
fn lab_boot_checks(tally: &mut Tally, run: &LabRun, label: &str, out: &Path) -> Result<()> {
    let name = run.kernel.to_string();
    let result = match lab::run(run, out) {
        Ok(r) => r,
        Err(e) => {
            tally.record(&format!("lab {label} boot"), vec![format!("{e:#}")]);
            return Ok(());
        }
    };
    println!("{}", result.summary());
    let refwatch = lab::build_guest_binaries(None, None)?.refwatch;
    tally.result(
        &format!("lab {label} probes"),
        checks::probes::check_probes(&name, out),
    );
    for s in &run.scenarios {
        let dir = out.join(s);
        let (workload, variant) = lab::split_variant(s);
        let functions = variant == lab::Variant::Functions;
        let mut problems = Vec::new();
        let s = s.as_str();
        let outcome = result.scenarios.iter().find(|o| o.name == s);
        let report_error = outcome.and_then(|o| o.report_error.as_ref());
        if let Some(e) = report_error {
            problems.push(format!("no report.json: {e}"));
        }
        match pointer_scan::check(&refwatch, &dir) {
            Ok(p) => problems.extend(p),
            Err(e) => problems.push(format!("{e:#}")),
        }
        // Nothing lost, in every scenario but those made to lose. (The
        // TUI makes no recording: its screen's drop count is checked.)
        if report_error.is_none() && !checks::loss::may_lose(variant) && variant.records() {
            match checks::loss::check_lossless(&dir) {
                Ok(p) => problems.extend(p),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        // refwatch's log says what its start and its reads cost, and the
        // count agrees with the recording's.
        if report_error.is_none()
            && variant.records()
            && !matches!(variant, lab::Variant::Signal(_))
        {
            match checks::costs::check(&dir) {
                Ok(p) => problems.extend(p),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        let Some(outcome) = outcome else {
            problems.push("no outcome in lab.json".to_owned());
            tally.record(&format!("lab {name} {s}"), problems);
            continue;
        };
        if let lab::Variant::Signal(sig) = variant {
            // The workload goes on after refwatch's exit: only how it ended
            // is judged.
            if report_error.is_none() {
                match checks::signals::check_signal(&dir, sig, outcome) {
                    Ok(p) => problems.extend(p),
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
            if lab::split_watch(s).1 {
                match checks::watch::check_slots_freed(out, &dir) {
                    Ok(p) => problems.extend(p),
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
            tally.record(&format!("lab {name} {s}"), problems);
            continue;
        }
        // A refwatch the guest had to kill (a hang) fails any scenario.
        problems.extend(checks::signals::check_exit(outcome));
        let checked = if s == lab::SELFTESTS {
            if report_error.is_none() {
                checks::selftests::check_selftests(&refwatch, &name, &dir)
            } else {
                Ok(Vec::new())
            }
        } else if let Some(by) = variant.filter_by() {
            let by = if by == "pfn" {
                checks::filters::By::Pfn
            } else {
                checks::filters::By::Task
            };
            if report_error.is_none() {
                checks::filters::check_filtered(by, &dir)
            } else {
                Ok(Vec::new())
            }
        } else if matches!(
            variant,
            lab::Variant::TinyRing
                | lab::Variant::RateCap
                | lab::Variant::Late
                | lab::Variant::WatchCmd
        ) {
            match (report_error, variant) {
                (Some(_), _) => Ok(Vec::new()),
                (None, lab::Variant::TinyRing) => checks::report::check_tiny_ring(&refwatch, &dir),
                (None, lab::Variant::RateCap) => checks::report::check_rate_cap(&refwatch, &dir),
                (None, lab::Variant::WatchCmd) => checks::report::check_late(&refwatch, &dir)
                    .and_then(|mut p| {
                        p.extend(checks::watch::check_watch_cmd(&dir)?);
                        Ok(p)
                    }),
                (None, _) => checks::report::check_late(&refwatch, &dir),
            }
        } else if variant == lab::Variant::Tui {
            // Its events (--jsonl) as any fs-dax run's, then its screens.
            let mut p = checks::tui::check_tui(&dir).unwrap_or_else(|e| vec![format!("{e:#}")]);
            checks::fsdax::check_scenario(&name, workload, "ext4", &dir).map(|q| {
                p.extend(q);
                p
            })
        } else if workload.starts_with("hmm-") {
            checks::hmm::check_hmm(workload, functions, &dir)
        } else {
            let fs = if variant == lab::Variant::Xfs {
                "xfs"
            } else {
                "ext4"
            };
            checks::fsdax::check_scenario(&name, workload, fs, &dir)
        };
        let checked = match checked {
            Ok(mut p) if lab::split_watch(s).1 && report_error.is_none() => {
                let watched = if variant == lab::Variant::Late {
                    checks::watch::check_late_watch(&dir)
                } else if workload == "dax-pin-long" {
                    checks::watch::check_pin_watch(&dir, lab::WATCH_PAGES as usize)
                } else {
                    checks::watch::check_watch(&dir, lab::WATCH_PAGES as usize)
                };
                watched.map(|q| {
                    p.extend(q);
                    p
                })
            }
            c => c,
        };
        let checked = match (checked, variant) {
            (Ok(mut p), lab::Variant::Kprobe) => {
                checks::probes::check_recorded_modes(&dir, "kprobe").map(|q| {
                    p.extend(q);
                    p
                })
            }
            (Ok(mut p), lab::Variant::Metrics) if report_error.is_none() => {
                checks::metrics::check_metrics(&refwatch, &dir).map(|q| {
                    p.extend(q);
                    p
                })
            }
            (c, _) => c,
        };
        match checked {
            Ok(p) => problems.extend(p),
            Err(e) => problems.push(format!("{e:#}")),
        }
        // hmm-selftests has no workload.json; its report is judged above.
        if report_error.is_none()
            && variant != lab::Variant::TinyRing
            && variant != lab::Variant::RateCap
            && variant != lab::Variant::Late
            && variant != lab::Variant::WatchCmd
            && variant.filter_by().is_none()
            && variant.records()
            && s != lab::SELFTESTS
        {
            match checks::report::check_report(&refwatch, &name, workload, functions, &dir) {
                Ok(p) => problems.extend(p),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        tally.record(&format!("lab {name} {s}"), problems);
    }
    // `report --vmlinux` on a kernel built here, whose image has DWARF.
    let lined: Vec<&String> = run
        .scenarios
        .iter()
        .filter(|s| SOURCE_LINE_SCENARIOS.contains(&s.as_str()))
        .collect();
    if !lined.is_empty()
        && let kernels::KernelSource::Built { .. } = run.kernel.source()
    {
        let tree = kbuild::cached(run.kernel)
            .ok_or_else(|| anyhow::anyhow!("kernel {name}: no build in the cache"))
            .and_then(|info| kbuild::source_tree(run.kernel, &info.version));
        for s in lined {
            let checked = tree
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|t| checks::lines::check_source_lines(&refwatch, &out.join(s), t));
            tally.result(&format!("lab {label} {s} source lines"), checked);
        }
    }
    Ok(())
}

/// The scenarios whose holders' frames `report --vmlinux` names by source
/// line, on the kernels built here: a GUP holder of fs-dax pages, and a
/// device-private page's (`test_hmm` is built in).
const SOURCE_LINE_SCENARIOS: &[&str] = &["dax-hold", "hmm-leak"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_recapped_with_its_first_problems() {
        let mut t = Tally::default();
        t.record("unit", Vec::new());
        let long = "x".repeat(RECAP_CHARS + 10);
        t.record(
            "lab k s",
            vec![long, "b".into(), "c".into(), "d".into(), "e".into()],
        );
        assert_eq!(
            (t.passed, t.failed.as_slice()),
            (1, &["lab k s".to_string()][..])
        );
        assert_eq!(t.recap.len(), 1 + RECAP_PROBLEMS + 1, "{:?}", t.recap);
        assert_eq!(t.recap[0], "lab k s:");
        assert_eq!(t.recap[1], format!("    {} …", "x".repeat(RECAP_CHARS)));
        assert_eq!(t.recap[3], "    c");
        assert_eq!(t.recap[4], "    … and 2 more (above)");
    }

    #[test]
    fn phases_are_listed_with_their_share_of_the_run() {
        let mut t = Tally::default();
        t.phases.push(("setup".into(), 30.0));
        t.phases.push(("lab debian-6.12".into(), 270.0));
        assert_eq!(
            t.phase_lines(600.0),
            [
                "      30 s    5%  setup",
                "     270 s   45%  lab debian-6.12"
            ]
        );
        assert_eq!(t.phase_lines(0.0)[0], "      30 s    0%  setup");
    }
}
