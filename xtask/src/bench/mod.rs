//! `cargo xtask bench overhead`: what refwatch attached costs a put-heavy
//! workload on a real kernel.
//!
//! One lab boot (see [`crate::lab`]) runs `workload bench-put` on ordinary
//! anonymous pages and on fs-dax pages (`/mnt/dax`), in rounds: per round and
//! target one run without refwatch and one with `refwatch record` attached
//! (started for that run, waited for until its ready file exists, stopped
//! with SIGINT after it), the order of the two alternating from round to
//! round. A round's ratio is ops/s without over ops/s with (= time per
//! operation with / without); the result per target is the median over the
//! rounds, judged with the events lost and refwatch's own CPU time per
//! event against the goals of [`goals`]. A missed goal is reported, not an
//! error. The default accelerator counts guest time in instructions (see
//! [`Accel::TcgIcount`]), so the ratios do not move with the host's load,
//! and a guest nanosecond of refwatch's CPU time is a guest instruction.

pub mod goals;
pub mod offline;
pub mod pipeline;
pub mod reader;
pub mod soak;

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use goals::{Stacks, TARGETS, TargetSummary, summarize};
use reader::ReaderCpu;

use crate::{
    cmd,
    kernels::KernelId,
    lab::{self, Accel, LabRun},
};

/// Host seconds allowed per guest second of the rounds (see
/// [`estimate_secs`]) before the lab gives up on the guest.
const HOST_SECS_PER_GUEST_SEC: u64 = 10;

/// Seconds of the unmeasured warm-up run per target.
const WARMUP_SECS: u64 = 1;

/// The helpers of the guest script ([`guest_script`]).
const OVERHEAD_SH: &str = include_str!("../../guest/overhead.sh");

/// Where refwatch records in the guest (RAM; deleted after each run).
const GUEST_RECORDING: &str = "/tmp/refwatch-bench.rec";
const GUEST_READY: &str = "/tmp/refwatch-bench.ready";

/// What `cargo xtask bench overhead` was asked for.
#[derive(Debug, Clone)]
pub struct OverheadOptions {
    pub kernel: KernelId,
    pub rounds: u32,
    pub secs: u64,
    pub accel: Accel,
    pub out: PathBuf,
    /// Prebuilt static refwatch; built from the workspace when `None`.
    pub refwatch_bin: Option<PathBuf>,
    /// The targets to run (names from [`TARGETS`]), in [`TARGETS`] order.
    pub targets: Vec<&'static str>,
    /// Extra arguments for `refwatch record` (ablations, e.g.
    /// `--stacks=none`).
    pub refwatch_args: Vec<String>,
    /// Guest CPUs.
    pub cpus: u32,
}

/// The [`TARGETS`] named in `names` (all when empty), in [`TARGETS`] order.
pub fn select_targets(names: &[String]) -> Result<Vec<&'static str>> {
    if let Some(bad) = names.iter().find(|n| !TARGETS.iter().any(|t| t == n)) {
        bail!(
            "unknown target {bad:?}: the targets are {}",
            TARGETS.join(", ")
        );
    }
    Ok(TARGETS
        .iter()
        .copied()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t))
        .collect())
}

/// One run of `workload bench-put` as it reported itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutRun {
    pub target: String,
    pub secs: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    #[serde(default)]
    pub iterations: u64,
    #[serde(default)]
    pub pages: u32,
}

/// What refwatch said about one attached run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefwatchRun {
    /// Exit code after SIGINT.
    pub rc: Option<i32>,
    pub note: Option<String>,
    /// From the recording's `end` line (`None`: no clean end).
    pub events: Option<u64>,
    pub dropped: Option<u64>,
    /// Hook entries on pages that are not ZONE_DEVICE, which the in-kernel
    /// filter returned on (refwatch's `kernel counters` log line).
    pub filtered: Option<u64>,
    /// Size of the recording.
    pub recording_bytes: Option<u64>,
    /// (events + dropped) per operation of the attached run: ~1 when every
    /// reference taken or dropped reached refwatch's ring buffer (fs-dax),
    /// 0 when the filter dropped them all (anon).
    pub seen_per_op: Option<f64>,
    /// With `--refwatch-arg=--prog-stats`: refwatch's kernel programs as the
    /// kernel timed them, busiest first.
    pub programs: Vec<ProgramRun>,
    /// Nanoseconds all of refwatch's kernel programs ran, per operation of
    /// the attached run (with `--prog-stats`).
    pub program_ns_per_op: Option<f64>,
    /// refwatch's own CPU time from ready to just before the SIGINT.
    pub reader: Option<ReaderCpu>,
    /// [`Self::reader`] per event recorded: guest instructions on the
    /// instruction clock.
    pub reader_instructions_per_event: Option<f64>,
    /// The part of it spent on the events themselves, as refwatch timed
    /// its reads of the ring (its `events read:` log line: the thread's CPU
    /// clock from the first event of each read to the last, over the
    /// whole run): what is left of the reader without its waits, ticks
    /// and polls.
    pub read_instructions_per_event: Option<u64>,
}

/// One line of `refwatch record --prog-stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramRun {
    pub program: String,
    pub runs: u64,
    pub run_ns: u64,
}

/// The `refwatch: program NAME: N runs, T ns, P ns/run` lines of refwatch's
/// output.
fn program_lines(out: &str) -> Vec<ProgramRun> {
    out.lines()
        .filter_map(|l| {
            let (program, rest) = l.strip_prefix("refwatch: program ")?.split_once(": ")?;
            let mut nums = rest
                .split(", ")
                .map(|part| part.split_whitespace().next()?.parse::<u64>().ok());
            Some(ProgramRun {
                program: program.to_owned(),
                runs: nums.next()??,
                run_ns: nums.next()??,
            })
        })
        .collect()
}

/// One round of one target.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub target: String,
    pub round: u32,
    /// `"without,with"` or `"with,without"`.
    pub order: &'static str,
    pub without: PutRun,
    pub with: PutRun,
    pub refwatch: RefwatchRun,
    /// ops/s without ÷ ops/s with.
    pub ratio: f64,
}

/// `DIR/overhead.json`.
#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    pub kernel: KernelId,
    pub release: String,
    pub package_version: String,
    pub accel: Accel,
    pub rounds: u32,
    pub secs: u64,
    /// Extra arguments `refwatch record` ran with.
    pub refwatch_args: Vec<String>,
    /// Guest CPUs.
    pub cpus: u32,
    /// Holder stacks on or off (from [`Self::refwatch_args`]), which picks
    /// the `dax-unmap` goal.
    pub stacks: Stacks,
    /// `/proc/loadavg` of the host before and after the boot.
    pub host_loadavg_before: String,
    pub host_loadavg_after: String,
    pub runs: Vec<Round>,
    pub summary: Vec<TargetSummary>,
    pub all_goals_met: bool,
}

/// The order of the two runs in `round` (1-based): without first in odd
/// rounds, with first in even ones.
fn with_first(round: u32) -> bool {
    round.is_multiple_of(2)
}

/// Run names: `anon-r2-without`, `anon-r2-with`, `anon-r2-refwatch`.
fn run_name(target: &str, round: u32, what: &str) -> String {
    format!("{target}-r{round}-{what}")
}

/// The median of `values` (the mean of the middle two for an even count);
/// `None` when empty or when a value is not a number.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// A round's ratio: time per operation with refwatch over without, i.e.
/// ops/s without over ops/s with.
pub fn ratio(without_ops_per_sec: f64, with_ops_per_sec: f64) -> f64 {
    without_ops_per_sec / with_ops_per_sec
}

/// The guest script: a warm-up run per target, then the rounds.
fn guest_script(
    rounds: u32,
    secs: u64,
    targets: &[&str],
    refwatch_args: &[String],
) -> Result<String> {
    let extra: String = refwatch_args
        .iter()
        .map(|a| format!(" '{}'", a.replace('\'', "'\\''")))
        .collect();
    let mut s = lab::template::fill(
        OVERHEAD_SH,
        &[
            ("REC", GUEST_RECORDING.to_owned()),
            ("READY", GUEST_READY.to_owned()),
            ("EXTRA", extra),
            (
                "READY_TICKS",
                (u64::from(lab::DEFAULT_READY_SECS) * 10).to_string(),
            ),
            ("READY_SECS", lab::DEFAULT_READY_SECS.to_string()),
            ("STOP_TICKS", "300".to_owned()),
            ("STOP_SECS", "30".to_owned()),
            ("WATCH_PAGES", goals::WATCHED_PAGES.to_string()),
        ],
    )?;
    for &target in targets {
        s.push_str(&format!(
            "bench_put warmup-{target} {target} {WARMUP_SECS}\n"
        ));
    }
    for round in 1..=rounds {
        s.push_str(&format!("say \"bench: round {round} of {rounds}\"\n"));
        for &target in targets {
            let without = format!(
                "bench_put {} {target} {secs}\n",
                run_name(target, round, "without")
            );
            let watch = if target == "dax-watch" { " watch" } else { "" };
            let with = format!(
                "rw_start {}{watch}\nbench_put {} {target} {secs}\nrw_stop\n",
                run_name(target, round, "refwatch"),
                run_name(target, round, "with")
            );
            if with_first(round) {
                s.push_str(&with);
                s.push_str(&without);
            } else {
                s.push_str(&without);
                s.push_str(&with);
            }
        }
    }
    s.push_str("say \"bench: all rounds done\"\n");
    Ok(s)
}

fn read_put(dir: &Path, name: &str) -> Result<PutRun> {
    let path = dir.join(format!("{name}.json"));
    let text = fs::read_to_string(&path).with_context(|| {
        let out = fs::read(dir.join(format!("{name}.out"))).unwrap_or_default();
        format!(
            "no result of workload run {name} ({}); its output: {}",
            path.display(),
            cmd::tail(&out, 3)
        )
    })?;
    let run: PutRun =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    if !(run.ops_per_sec.is_finite() && run.ops_per_sec > 0.0) {
        bail!(
            "workload run {name} measured {} ops/s ({} ops in {} s)",
            run.ops_per_sec,
            run.ops,
            run.secs
        );
    }
    Ok(run)
}

fn read_refwatch(dir: &Path, name: &str) -> RefwatchRun {
    let read = |ext: &str| fs::read_to_string(dir.join(format!("{name}.{ext}"))).ok();
    let mut run = RefwatchRun::default();
    if let Some(text) = read("rc") {
        let mut lines = text.lines();
        run.rc = lines.next().and_then(|l| l.trim().parse().ok());
        run.note = lines
            .filter_map(|l| l.strip_prefix("note: "))
            .next()
            .map(str::to_owned);
    }
    if let Some(end) = read("end")
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t.trim()).ok())
        .filter(|v| v["type"] == "end")
    {
        run.events = end["events"].as_u64();
        run.dropped = end["dropped"].as_u64();
    }
    run.recording_bytes = read("size").and_then(|t| t.trim().parse().ok());
    let log = read("log");
    run.filtered = log
        .as_deref()
        .and_then(|log| counter_in_log(log, "filtered"));
    run.read_instructions_per_event = log
        .as_deref()
        .and_then(crate::checks::costs::read_cost)
        .and_then(|c| c.ns_per_event);
    run.programs = read("out").map(|o| program_lines(&o)).unwrap_or_default();
    run.reader = read("cpu").as_deref().and_then(reader::parse);
    run
}

/// Counter `name` of the last `kernel counters: submitted N lost N filtered
/// N …` line of refwatch's log.
fn counter_in_log(log: &str, name: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains("kernel counters:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == name)?;
    words.next()?.parse().ok()
}

/// Reads every round's results from `dir` (the guest's `/out/bench`).
fn read_rounds(dir: &Path, rounds: u32, targets: &[&str]) -> Result<Vec<Round>> {
    let mut all = Vec::new();
    for &target in targets {
        for round in 1..=rounds {
            let without = read_put(dir, &run_name(target, round, "without"))?;
            let with = read_put(dir, &run_name(target, round, "with"))?;
            let name = run_name(target, round, "refwatch");
            let mut refwatch = read_refwatch(dir, &name);
            refwatch.seen_per_op = match (refwatch.events, refwatch.dropped) {
                (Some(e), Some(d)) if with.ops > 0 => Some((e + d) as f64 / with.ops as f64),
                _ => None,
            };
            refwatch.reader_instructions_per_event = match (&refwatch.reader, refwatch.events) {
                (Some(cpu), Some(events)) => reader::per_event(cpu, events),
                _ => None,
            };
            if !refwatch.programs.is_empty() && with.ops > 0 {
                let ns: u64 = refwatch.programs.iter().map(|p| p.run_ns).sum();
                refwatch.program_ns_per_op = Some(ns as f64 / with.ops as f64);
            }
            if refwatch.rc != Some(0) {
                let log = fs::read(dir.join(format!("{name}.log"))).unwrap_or_default();
                bail!(
                    "refwatch in run {name} ended with {}{}; its log ends: {}",
                    refwatch
                        .rc
                        .map_or("no exit code".to_owned(), |rc| format!("exit code {rc}")),
                    refwatch
                        .note
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    cmd::tail(&log, 3)
                );
            }
            if refwatch.events.is_some_and(|e| e > 0)
                && refwatch.read_instructions_per_event.is_none()
            {
                bail!(
                    "refwatch in run {name} recorded events but its log has no `events read:` figure"
                );
            }
            if let (Some(cpu), Some(instructions), Some(read)) = (
                &refwatch.reader,
                refwatch.reader_instructions_per_event,
                refwatch.read_instructions_per_event,
            ) && let Err(e) = reader::check_read(cpu, instructions, read)
            {
                bail!("the reader's figures of run {name} disagree: {e}");
            }
            if target == "dax" && refwatch.events == Some(0) {
                bail!(
                    "refwatch recorded no event during {}: its hooks did not fire on the fs-dax pages, so this does not measure its overhead",
                    run_name(target, round, "with")
                );
            }
            all.push(Round {
                target: target.to_owned(),
                round,
                order: if with_first(round) {
                    "with,without"
                } else {
                    "without,with"
                },
                ratio: ratio(without.ops_per_sec, with.ops_per_sec),
                without,
                with,
                refwatch,
            });
        }
    }
    Ok(all)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The table printed at the end.
pub fn render(report: &OverheadReport) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut t = format!(
        "refwatch overhead on {} (uname -r {}, package {}), qemu {}, {} guest CPU(s), {} rounds × {} s per run\n\
         host load average before/after: {} / {}{}\n\n",
        report.kernel,
        report.release,
        report.package_version,
        report.accel.label(),
        report.cpus,
        report.rounds,
        report.secs,
        report.host_loadavg_before,
        report.host_loadavg_after,
        if report.refwatch_args.is_empty() {
            String::new()
        } else {
            format!(
                "\nrefwatch record ran with: {}",
                report.refwatch_args.join(" ")
            )
        },
    );
    if report.stacks == Stacks::Off {
        t.push_str("holder stacks off: dax-unmap is judged against its goal without stacks\n\n");
    }
    t.push_str(&format!(
        "{:<10}{:>6}  {:<13}{:>15}{:>15}{:>8}{:>10}{:>10}{:>8}{:>10}{:>11}{:>6}{:>10}{:>9}\n",
        "target",
        "round",
        "order",
        "without ops/s",
        "with ops/s",
        "ratio",
        "events",
        "dropped",
        "seen/op",
        "filtered",
        "reader ms",
        "sys%",
        "instr/ev",
        "read/ev"
    ));
    for r in &report.runs {
        t.push_str(&format!(
            "{:<10}{:>6}  {:<13}{:>15.0}{:>15.0}{:>8.3}{:>10}{:>10}{:>8}{:>10}{:>11}{:>6}{:>10}{:>9}\n",
            r.target,
            r.round,
            r.order,
            r.without.ops_per_sec,
            r.with.ops_per_sec,
            r.ratio,
            opt(r.refwatch.events),
            opt(r.refwatch.dropped),
            r.refwatch
                .seen_per_op
                .map_or("-".to_owned(), |v| format!("{v:.2}")),
            opt(r.refwatch.filtered),
            r.refwatch
                .reader
                .as_ref()
                .map_or("-".to_owned(), |c| format!("{:.1}", c.ns as f64 / 1e6)),
            r.refwatch
                .reader
                .as_ref()
                .and_then(reader::system_percent)
                .map_or("-".to_owned(), |v| format!("{v:.0}")),
            r.refwatch
                .reader_instructions_per_event
                .map_or("-".to_owned(), |v| format!("{v:.0}")),
            opt(r.refwatch.read_instructions_per_event)
        ));
    }
    for r in &report.runs {
        if let Some(note) = r.refwatch.reader.as_ref().and_then(|c| c.note.as_ref()) {
            t.push_str(&format!(
                "{} round {}: reader time: {note}\n",
                r.target, r.round
            ));
        }
    }
    t.push('\n');
    t.push_str(&programs_text(report));
    t.push_str(&format!(
        "{:<10}{:>14}{:>17}{:>8}{:>10}{:>6}{:>10}{:>8}  verdict\n",
        "target", "median ratio", "min–max", "goal", "lost", "goal", "instr/ev", "goal"
    ));
    for s in &report.summary {
        t.push_str(&format!(
            "{:<10}{:>14.3}{:>17}{:>8}{:>10}{:>6}{:>10}{:>8}  {}\n",
            s.target,
            s.median_ratio,
            format!("{:.3}–{:.3}", s.min_ratio, s.max_ratio),
            s.goal.map_or("-".to_owned(), |g| format!("≤ {g:.2}")),
            opt(s.lost),
            format!("{}", s.lost_goal),
            s.reader_instructions_per_event
                .map_or("-".to_owned(), |v| format!("{v:.0}")),
            s.reader_goal
                .map_or("-".to_owned(), |g| format!("≤ {g:.0}")),
            s.verdict
        ));
    }
    t.push_str(
        "ratio = ops/s without refwatch ÷ ops/s with (time per reference with ÷ without); \
         ops = page references taken + dropped; events/dropped: refwatch's count \
         (dropped: ring buffer full); seen/op = (events + dropped) ÷ ops of the attached run; \
         filtered: hook entries on non-device pages; reader ms: refwatch's own CPU time \
         from ready to the SIGINT (guest ms = M instructions on the instruction clock); \
         sys%: the kernel's share of its utime + stime ticks (10 ms each); \
         instr/ev: that time in guest instructions ÷ events (the summary: median over rounds); \
         read/ev: the part of it refwatch timed on the events themselves (decode, outputs, \
         per-PFN state; its log's `events read:`); \
         lost: dropped over all rounds\n",
    );
    t
}

/// Per attached run timed with `--prog-stats`: the operation's time without
/// refwatch, refwatch's kernel programs per operation, and the busiest
/// programs.
fn programs_text(report: &OverheadReport) -> String {
    let mut t = String::new();
    for r in &report.runs {
        let Some(per_op) = r.refwatch.program_ns_per_op else {
            continue;
        };
        let busiest: Vec<String> = r
            .refwatch
            .programs
            .iter()
            .take(4)
            .map(|p| {
                format!(
                    "{} {}×{} ns",
                    p.program,
                    p.runs,
                    p.run_ns.checked_div(p.runs).unwrap_or(0)
                )
            })
            .collect();
        t.push_str(&format!(
            "{} round {}: an op takes {:.0} ns without refwatch; refwatch's kernel programs ran {:.0} ns per op ({})\n",
            r.target,
            r.round,
            1e9 / r.without.ops_per_sec,
            per_op,
            busiest.join(", ")
        ));
    }
    if !t.is_empty() {
        t.push('\n');
    }
    t
}

/// `cargo xtask bench overhead`.
pub fn overhead(opts: &OverheadOptions) -> Result<ExitCode> {
    if opts.rounds == 0 || opts.secs == 0 {
        bail!("--rounds and --secs must be at least 1");
    }
    println!(
        "bench overhead: {} rounds × {} s per run on {} in one lab boot (qemu {}: boot ~1 min, then ~{} s)",
        opts.rounds,
        opts.secs,
        opts.kernel,
        opts.accel.label(),
        estimate_secs(opts.rounds, opts.secs, opts.targets.len())
    );
    let mut run = LabRun::new(opts.kernel, &[]);
    run.accel = opts.accel;
    run.cpus = opts.cpus;
    run.refwatch_bin.clone_from(&opts.refwatch_bin);
    run.script = Some(guest_script(
        opts.rounds,
        opts.secs,
        &opts.targets,
        &opts.refwatch_args,
    )?);
    // The estimate is guest time; on the instruction clock a loaded host
    // runs the guest several times slower than that (one round of the five
    // targets took 89 guest s in 570 host s while other builds ran).
    run.timeout_secs = lab::DEFAULT_TIMEOUT_SECS.max(
        300 + HOST_SECS_PER_GUEST_SEC * estimate_secs(opts.rounds, opts.secs, opts.targets.len()),
    );
    let before = loadavg();
    let result = lab::run(&run, &opts.out)?;
    let after = loadavg();
    let bench_dir = opts.out.join("bench");
    let runs = read_rounds(&bench_dir, opts.rounds, &opts.targets)
        .with_context(|| format!("results in {}", bench_dir.display()))?;
    let stacks = Stacks::of(&opts.refwatch_args);
    let summary = summarize(&runs, stacks);
    let report = OverheadReport {
        kernel: opts.kernel,
        release: result.release,
        package_version: result.package_version,
        accel: opts.accel,
        rounds: opts.rounds,
        secs: opts.secs,
        refwatch_args: opts.refwatch_args.clone(),
        cpus: opts.cpus,
        stacks,
        host_loadavg_before: before,
        host_loadavg_after: after,
        all_goals_met: summary.iter().all(|s| s.all_met),
        runs,
        summary,
    };
    println!("\n{}", render(&report));
    let path = opts.out.join("overhead.json");
    let json = serde_json::to_string_pretty(&report).context("encode overhead.json")?;
    fs::write(&path, json + "\n").with_context(|| format!("write {}", path.display()))?;
    let missed: Vec<&str> = report
        .summary
        .iter()
        .filter(|s| !s.all_met)
        .map(|s| s.target.as_str())
        .collect();
    println!(
        "{}; results in {}",
        if missed.is_empty() {
            "every goal met".to_owned()
        } else {
            format!("goal not met in {} (see the table)", missed.join(", "))
        },
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Rough guest seconds after boot: warm-up, then per round and target two
/// runs plus starting (~6 s under TCG) and stopping refwatch.
fn estimate_secs(rounds: u32, secs: u64, targets: usize) -> u64 {
    let targets = targets as u64;
    targets * (WARMUP_SECS + 1) + u64::from(rounds) * targets * (2 * (secs + 1) + 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.5]), Some(1.5));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn script_alternates_the_order_and_brackets_each_attached_run() -> Result<()> {
        let s = guest_script(2, 3, TARGETS, &[])?;
        let targets = TARGETS.len();
        assert_eq!(s.matches("\nbench_put ").count(), targets + 2 * targets * 2);
        assert!(s.contains("\nbench_put warmup-dax dax 1\n"));
        // Round 1 without first, round 2 with first.
        let pos = |p: &str| s.find(p).unwrap_or_else(|| panic!("{p} missing"));
        assert!(pos("bench_put anon-r1-without ") < pos("rw_start anon-r1-refwatch\n"));
        assert!(pos("rw_start anon-r2-refwatch\n") < pos("bench_put anon-r2-without "));
        assert!(s.contains("rw_start dax-r2-refwatch\nbench_put dax-r2-with dax 3\nrw_stop\n"));
        // Only dax-watch's refwatch watches.
        assert!(s.contains(
            "rw_start dax-watch-r2-refwatch watch\nbench_put dax-watch-r2-with dax-watch 3\nrw_stop\n"
        ));
        assert_eq!(s.matches(" watch\n").count(), 2);
        assert!(s.contains("refwatch record -o /tmp/refwatch-bench.rec "));
        assert!(s.contains("--summary-secs 0"));
        // refwatch's CPU time is sampled once it is ready and before the
        // SIGINT.
        let start = pos("rw_start() {");
        let stop = pos("rw_stop() {");
        assert!(s[start..stop].contains("cpu_sample ready\n}"));
        assert!(s[stop..].starts_with("rw_stop() {\n    cpu_sample stop\n    kill -INT $RW"));
        Ok(())
    }

    #[test]
    fn a_subset_of_targets_and_extra_refwatch_arguments() -> Result<()> {
        let targets = select_targets(&["dax".to_owned(), "free".to_owned()])?;
        assert_eq!(targets, ["free", "dax"]);
        assert_eq!(select_targets(&[])?.len(), TARGETS.len());
        let err = select_targets(&["nope".to_owned()]).expect_err("unknown target");
        assert!(err.to_string().contains("free, unmap, anon, dax"), "{err}");
        let s = guest_script(
            1,
            2,
            &targets,
            &["--no-stacks".to_owned(), "it's".to_owned()],
        )?;
        assert!(!s.contains("anon"));
        assert!(s.contains("bench_put dax-r1-with dax 2\n"));
        assert!(
            s.contains("--summary-secs 0 '--no-stacks' 'it'\\''s' $W > "),
            "{s}"
        );
        Ok(())
    }

    #[test]
    fn program_statistics_lines_parse() {
        let out = "refwatch: 10 events\n\
                   refwatch: program fexit_grab_fast: 4 runs, 10002 ns, 2500 ns/run\n\
                   refwatch: program fentry_free: 1 runs, 7 ns, 7 ns/run\n\
                   refwatch: program statistics: no program ran\n";
        assert_eq!(
            program_lines(out),
            [
                ProgramRun {
                    program: "fexit_grab_fast".into(),
                    runs: 4,
                    run_ns: 10002
                },
                ProgramRun {
                    program: "fentry_free".into(),
                    runs: 1,
                    run_ns: 7
                }
            ]
        );
    }

    #[test]
    fn refwatch_results_parse() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch dir");
        fs::write(dir.join("x.rc"), "0\n").expect("write");
        fs::write(
            dir.join("x.end"),
            "{\"type\":\"end\",\"now_ns\":5,\"events\":1200,\"dropped\":7}\n",
        )
        .expect("write");
        fs::write(dir.join("x.size"), "4096\n").expect("write");
        fs::write(dir.join("x.cpu"), "ready 100000000 10\nstop 160000000 16\n").expect("write");
        fs::write(
            dir.join("x.log"),
            "[INFO] refwatch::collector: kernel counters: submitted 0 lost 0 filtered 890138 in-flight full 0 bios 0\n\
             [INFO] refwatch::collector: events read: 1200 in 3146 us of CPU, 2622 ns per event (decode, stacks named, outputs, per-PFN state)\n",
        )
        .expect("write");
        let r = read_refwatch(&dir, "x");
        assert_eq!(r.read_instructions_per_event, Some(2622));
        assert_eq!(
            (r.rc, r.events, r.dropped, r.recording_bytes, r.filtered),
            (Some(0), Some(1200), Some(7), Some(4096), Some(890138))
        );
        assert_eq!(
            r.reader.map(|c| (c.ns, c.source, c.ticks)),
            Some((60_000_000, "schedstat", Some(6)))
        );
        let none = read_refwatch(&dir, "missing");
        assert_eq!((none.rc, none.events), (None, None));
        let _ = fs::remove_dir_all(&dir);
    }
}
