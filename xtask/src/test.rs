//! `cargo xtask test`: everything. Formatting, clippy (userspace and the
//! kernel programs for their target), unit tests, then the lab matrix: each
//! kernel booted once for all scenarios, with assertions on what refwatch
//! wrote about real device pages.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{
    checks, cmd,
    kernels::KernelId,
    lab::{self, LabRun},
    pointer_scan, setup,
};

/// What `cargo xtask test` runs.
#[derive(Debug, Clone)]
pub struct TestOptions {
    pub static_checks: bool,
    pub unit: bool,
    pub lab: bool,
    pub kernels: Vec<KernelId>,
    pub out: PathBuf,
}

/// Tallies passes and failures, printing each as it comes.
#[derive(Default)]
pub struct Tally {
    passed: usize,
    failed: Vec<String>,
}

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
        }
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
    let r = cmd::streamed(c).map(|()| Vec::new());
    tally.result(name, r);
}

pub fn run(opts: &TestOptions) -> Result<ExitCode> {
    let started = Instant::now();
    let mut tally = Tally::default();
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
    }
    if opts.lab {
        for kernel in &opts.kernels {
            lab_kernel(&mut tally, *kernel, &opts.out)?;
        }
    }
    println!(
        "\n{} passed, {} failed ({:.0} s)",
        tally.passed,
        tally.failed.len(),
        started.elapsed().as_secs_f64()
    );
    if tally.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("failed: {}", tally.failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Boots `kernel` once for every scenario and checks the results.
fn lab_kernel(tally: &mut Tally, kernel: KernelId, out_root: &Path) -> Result<()> {
    let name = kernel.to_string();
    let out = out_root.join(&name);
    println!(
        "== lab {name}: all scenarios in one boot → {}",
        out.display()
    );
    let scenarios = lab::scenarios_for(kernel);
    let run = LabRun::new(kernel, &scenarios);
    let result = match lab::run(&run, &out) {
        Ok(r) => r,
        Err(e) => {
            tally.record(&format!("lab {name} boot"), vec![format!("{e:#}")]);
            return Ok(());
        }
    };
    println!("{}", result.summary());
    let refwatch = lab::build_guest_binaries(None, None)?.refwatch;
    tally.result(
        &format!("lab {name} probes"),
        checks::check_probes(&name, &out),
    );
    for s in &scenarios {
        let dir = out.join(s);
        let (workload, variant) = lab::split_variant(s);
        let functions = variant == lab::Variant::Functions;
        let rc = postprocess(&refwatch, &dir);
        let mut problems = Vec::new();
        if let Err(e) = &rc {
            problems.push(format!("{e:#}"));
        }
        match pointer_scan::check(&refwatch, &dir) {
            Ok(p) => problems.extend(p),
            Err(e) => problems.push(format!("{e:#}")),
        }
        let checked = if workload.starts_with("hmm-") {
            checks::check_hmm(workload, functions, &dir)
        } else {
            let fs = if variant == lab::Variant::Xfs {
                "xfs"
            } else {
                "ext4"
            };
            checks::check_scenario(&name, workload, fs, &dir)
        };
        let checked = match (checked, variant) {
            (Ok(mut p), lab::Variant::Kprobe) => {
                checks::check_recorded_modes(&dir, "kprobe").map(|q| {
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
        if rc.is_ok() {
            match check_report(&refwatch, &name, workload, functions, &dir) {
                Ok(p) => problems.extend(p),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        tally.record(&format!("lab {name} {s}"), problems);
    }
    Ok(())
}

/// Leaves `report.json` beside the recording (`refwatch report --json`).
pub fn postprocess(refwatch: &Path, dir: &Path) -> Result<()> {
    let text = cmd::stdout(
        Command::new(refwatch)
            .arg("report")
            .arg("--json")
            .arg(dir.join("recording")),
    )?;
    std::fs::write(dir.join("report.json"), text).context("write report.json")?;
    Ok(())
}

/// Exit code of `refwatch report --fail-on-stuck FILE`.
fn fail_on_stuck(refwatch: &Path, file: &Path) -> Result<i32> {
    let out = Command::new(refwatch)
        .arg("report")
        .arg("--fail-on-stuck")
        .arg(file)
        .output()
        .context("run refwatch report")?;
    out.status
        .code()
        .context("refwatch report killed by a signal")
}

/// Checks on refwatch's own report of the scenario.
fn check_report(
    refwatch: &Path,
    kernel: &str,
    scenario: &str,
    functions: bool,
    dir: &Path,
) -> Result<Vec<String>> {
    let w = checks::read_workload(dir)?;
    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    let episodes = report["episodes"]
        .as_array()
        .context("report.json: episodes")?;
    let mut bad = Vec::new();
    if report["stuck_at_end"]
        .as_array()
        .is_none_or(|a| !a.is_empty())
    {
        bad.push(format!(
            "pages still stuck at the end: {}",
            report["stuck_at_end"]
        ));
    }
    let eps_of = |pfn: u64, dets: &[&str]| -> Vec<&Value> {
        episodes
            .iter()
            .filter(|e| e["pfn"].as_u64() == Some(pfn) && dets.iter().any(|d| e["detector"] == *d))
            .collect()
    };
    match scenario {
        "dax-splice" => {
            if !episodes.is_empty() {
                bad.push(format!(
                    "{} episodes where nothing was held",
                    episodes.len()
                ));
            }
            let rc = fail_on_stuck(refwatch, &dir.join("recording"))?;
            if rc != 0 {
                bad.push(format!("report --fail-on-stuck exited {rc} on dax-splice"));
            }
        }
        "dax-hold" | "dax-truncate-pinned" => {
            let hold_start = w.mark("hold_start")?;
            let hold_end = w.mark("hold_end")?;
            for pfn in &w.pfns {
                let eps = eps_of(*pfn, &["held", "unmapped-not-freed"]);
                let during = eps.iter().any(|e| {
                    e["detected_ns"].as_u64().is_some_and(|d| d < hold_end)
                        && e["end_ns"].as_u64().is_some_and(|end| end >= hold_end)
                });
                if !during {
                    bad.push(format!(
                        "pfn {pfn:#x}: not flagged held/unmapped-not-freed during the hold and cleared after ({} episodes)",
                        eps.len()
                    ));
                }
            }
            if scenario == "dax-hold" {
                let snap = dir.join("recording.during-hold");
                let rc = fail_on_stuck(refwatch, &snap)?;
                if rc != 3 {
                    bad.push(format!("report --fail-on-stuck exited {rc} on the recording taken during the hold, expected 3"));
                }
            } else {
                let t0 = w.mark("truncate_start")?;
                let named = episodes.iter().any(|e| {
                    e["detector"] == "layout-wait"
                        && e["start_ns"].as_u64().is_some_and(|s| s >= t0)
                        && e["holders"]
                            .as_array()
                            .is_some_and(|h| h.iter().any(|h| h["comm"] == "workload"))
                });
                if !named {
                    bad.push("no layout-wait episode naming the workload as holder".into());
                }
                let _ = hold_start;
            }
            let named = episodes
                .iter()
                .filter(|e| e["holders"].as_array().is_some_and(|h| !h.is_empty()))
                .count();
            println!(
                "    {kernel} {scenario}: {} episodes, holder named in {named} ({:.0}%)",
                episodes.len(),
                if episodes.is_empty() {
                    0.0
                } else {
                    100.0 * named as f64 / episodes.len() as f64
                }
            );
        }
        "hmm-blocked" => {
            let held = w.fact("held_ram_pfn")?;
            let released = w.mark("released")?;
            let retried = w.mark("cpu_touch_start")?;
            let blocked: Vec<&Value> = episodes
                .iter()
                .filter(|e| e["detector"] == "migration-blocked")
                .collect();
            let ok = match blocked.as_slice() {
                [e] => {
                    e["pfn"].as_u64() == Some(held)
                        && e["end_ns"]
                            .as_u64()
                            .is_some_and(|end| end >= released && end <= retried)
                        && e["holders"].as_array().is_some_and(|h| {
                            h.iter().any(|h| {
                                h["comm"] == "workload"
                                    && h["stack"].as_array().is_some_and(|s| {
                                        s.iter().any(|f| {
                                            f.as_str().is_some_and(|f| f.contains("vmsplice"))
                                        })
                                    })
                            })
                        })
                }
                _ => false,
            };
            if !ok {
                bad.push(format!(
                    "expected one migration-blocked episode on the held page {held:#x}, naming the vmsplice holder and cleared by the retry; got {}",
                    serde_json::to_string(&blocked)?
                ));
            }
            if let Some(e) = blocked.first() {
                println!("    {kernel} {scenario}: {}", e["reason"]);
            }
        }
        "hmm-leak" => {
            let child = w.fact("child_pid")?;
            let hold_end = w.mark("hold_end")?;
            // The child's last reference goes as it exits, a little before
            // the parent sees it gone.
            let child_exit = w.mark("child_exit")?;
            let mut named = 0;
            for pfn in &w.pfns {
                let eps = eps_of(*pfn, &["held", "unmapped-not-freed"]);
                let flagged = eps.iter().any(|e| {
                    e["detected_ns"].as_u64().is_some_and(|d| d < hold_end)
                        && e["end_ns"]
                            .as_u64()
                            .is_some_and(|end| end >= hold_end && end <= child_exit)
                });
                if !flagged {
                    bad.push(format!(
                        "pfn {pfn:#x}: not flagged while the child lived and cleared when it exited"
                    ));
                }
                let by_child = eps.iter().any(|e| {
                    e["holders"]
                        .as_array()
                        .is_some_and(|h| h.iter().any(|h| h["pid"].as_u64() == Some(child)))
                });
                named += usize::from(by_child);
                // Only the page_ref tracepoints see fork copy the references.
                if !functions && !by_child {
                    bad.push(format!(
                        "pfn {pfn:#x}: the child (pid {child}) is not named as holder"
                    ));
                }
            }
            println!(
                "    {kernel} {scenario}{}: child named as holder on {named} of {} pages",
                if functions { " (functions)" } else { "" },
                w.pfns.len()
            );
            let rc = fail_on_stuck(refwatch, &dir.join("recording.during-hold"))?;
            if rc != 3 {
                bad.push(format!(
                    "report --fail-on-stuck exited {rc} on the recording taken during the hold, expected 3"
                ));
            }
        }
        "hmm-migrate" | "hmm-release" if !episodes.is_empty() => {
            bad.push(format!(
                "{} episodes where nothing was held: {}",
                episodes.len(),
                episodes[0]["reason"]
            ));
        }
        _ => {}
    }
    Ok(bad)
}
