//! `cargo xtask bench soak`: does refwatch's memory stay flat over a long
//! recording?
//!
//! One lab boot runs `refwatch record` with its defaults while the guest
//! script (`xtask/guest/soak.sh`) runs the `dax-splice` workload in a loop for
//! the asked minutes of guest time (each run maps fresh fs-dax pages,
//! splices them into a pipe and lets go: a steady stream of events on pages
//! that come and go). The script samples refwatch's resident set (VmRSS)
//! every [`SAMPLE_SECS`]; this side judges the series with [`flatness`].

use std::{fs, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::{
    kernels::KernelId,
    lab::{self, Accel, LabRun, template},
};

const SOAK_SH: &str = include_str!("../../guest/soak.sh");

/// The workload the soak loops.
const WORKLOAD: &str = "dax-splice";
/// Pages per workload run.
const PAGES: u32 = 16;
/// Seconds between two samples of refwatch's VmRSS.
pub const SAMPLE_SECS: u32 = 5;
/// Samples in the first seconds after refwatch is ready are left out: the
/// first events fill its caches (symbols resolved, JSON buffers grown) and
/// the allocator's arenas, which is growth by design, not over time.
pub const WARMUP_SECS: f64 = 60.0;
/// The rule's tolerance: the last third's peak may exceed the first third's
/// by this fraction of it …
pub const TOLERANCE: f64 = 0.10;
/// … plus this many KiB.
pub const SLACK_KIB: u64 = 1024;

/// What `cargo xtask bench soak` was asked for.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub kernel: KernelId,
    pub minutes: u32,
    pub accel: Accel,
    pub out: PathBuf,
    pub refwatch_bin: Option<PathBuf>,
}

/// One sample: guest uptime, VmRSS, workload runs completed by then.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    pub secs: f64,
    pub rss_kib: u64,
    pub runs: u64,
}

/// The verdict on a series of samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flatness {
    /// Samples judged (after the warm-up).
    pub samples: usize,
    pub first_third_max_kib: u64,
    pub middle_third_max_kib: u64,
    pub last_third_max_kib: u64,
    /// `first_third_max × (1 + TOLERANCE) + SLACK_KIB`.
    pub limit_kib: u64,
    /// Least-squares slope over the judged samples, KiB per minute (for
    /// the reader; the verdict is the rule on the thirds).
    pub slope_kib_per_min: f64,
    pub flat: bool,
}

/// Parses the guest's `rss.txt` lines (`<uptime> <VmRSS kB> <runs>`).
pub fn parse_samples(text: &str) -> Result<Vec<Sample>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let mut f = l.split_whitespace();
            let mut next = |what: &str| {
                f.next()
                    .with_context(|| format!("rss.txt line {}: no {what}: {l:?}", i + 1))
            };
            Ok(Sample {
                secs: next("uptime")?
                    .parse()
                    .with_context(|| format!("rss.txt line {}: uptime", i + 1))?,
                rss_kib: next("VmRSS")?
                    .parse()
                    .with_context(|| format!("rss.txt line {}: VmRSS", i + 1))?,
                runs: next("run count")?
                    .parse()
                    .with_context(|| format!("rss.txt line {}: run count", i + 1))?,
            })
        })
        .collect()
}

/// Judges a VmRSS series. After [`WARMUP_SECS`], the samples are cut in
/// thirds by count; the series is flat when the last third's peak is at
/// most the first third's peak × (1 + [`TOLERANCE`]) + [`SLACK_KIB`].
///
/// Peaks rather than means: RSS moves in steps (the allocator returns and
/// takes whole chunks), and a leak shows as a peak that keeps rising. The
/// first third is the baseline since the load is the same throughout: a
/// tracker or buffer that grows with the events seen would make the last
/// third's peak exceed it by what grew over two thirds of the run. The 10 %
/// covers allocator arenas that settle late; the 1 MiB, page-granular
/// jitter of a small process (256 pages). Errors with fewer than 6 samples.
pub fn flatness(samples: &[Sample]) -> Result<Flatness> {
    let Some(first) = samples.first() else {
        bail!("no VmRSS sample");
    };
    let judged: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.secs >= first.secs + WARMUP_SECS)
        .collect();
    if judged.len() < 6 {
        bail!(
            "{} VmRSS samples after the {WARMUP_SECS} s warm-up, need at least 6",
            judged.len()
        );
    }
    let third = judged.len() / 3;
    let max = |part: &[&Sample]| part.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let first_max = max(&judged[..third]);
    let middle_max = max(&judged[third..judged.len() - third]);
    let last_max = max(&judged[judged.len() - third..]);
    let limit = (first_max as f64 * (1.0 + TOLERANCE)).ceil() as u64 + SLACK_KIB;
    Ok(Flatness {
        samples: judged.len(),
        first_third_max_kib: first_max,
        middle_third_max_kib: middle_max,
        last_third_max_kib: last_max,
        limit_kib: limit,
        slope_kib_per_min: slope(&judged) * 60.0,
        flat: last_max <= limit,
    })
}

/// Least-squares slope of VmRSS over time, KiB per second.
fn slope(samples: &[&Sample]) -> f64 {
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.secs).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
    let (num, den) = samples.iter().fold((0.0, 0.0), |(num, den), s| {
        let dt = s.secs - mean_t;
        (num + dt * (s.rss_kib as f64 - mean_r), den + dt * dt)
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// `DIR/soak.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub kernel: KernelId,
    pub release: String,
    pub accel: Accel,
    pub minutes: u32,
    pub workload: &'static str,
    pub workload_runs: u64,
    pub workload_failures: u64,
    /// From the recording's `end` line.
    pub events: u64,
    pub dropped: u64,
    pub recording_bytes: Option<u64>,
    /// VmHWM just before the stop.
    pub peak_kib: Option<u64>,
    pub flatness: Flatness,
    pub samples: Vec<Sample>,
}

/// `cargo xtask bench soak`.
pub fn soak(opts: &SoakOptions) -> Result<ExitCode> {
    if opts.minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    let secs = u64::from(opts.minutes) * 60;
    println!(
        "bench soak: {WORKLOAD} in a loop for {} min of guest time under refwatch record on {} (qemu {}), VmRSS every {SAMPLE_SECS} s",
        opts.minutes,
        opts.kernel,
        opts.accel.label()
    );
    let mut run = LabRun::new(opts.kernel, &[]);
    run.accel = opts.accel;
    run.refwatch_bin.clone_from(&opts.refwatch_bin);
    run.script = Some(guest_script(secs)?);
    run.timeout_secs = lab::DEFAULT_TIMEOUT_SECS + secs + u64::from(lab::guest::STOP_SECS);
    let result = lab::run(&run, &opts.out)?;
    let dir = opts.out.join("soak");
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    };
    let samples = parse_samples(&read("rss.txt")?)?;
    let rc = read("refwatch.rc")?;
    if rc.trim() != "0" {
        bail!(
            "refwatch did not exit 0 on SIGINT: {} (log: {})",
            rc.trim().replace('\n', "; "),
            dir.join("refwatch.log").display()
        );
    }
    let runs = read("workload-runs.txt")?;
    let mut runs = runs.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(workload_runs)), Some(Ok(workload_failures))) = (runs.next(), runs.next()) else {
        bail!("workload-runs.txt: not two counts");
    };
    let end: serde_json::Value = serde_json::from_str(read("recording.end")?.trim())
        .context("the recording's last line is not JSON")?;
    if end["type"] != "end" {
        bail!("the recording's last line is not its end line: {end}");
    }
    let events = end["events"].as_u64().unwrap_or(0);
    let dropped = end["dropped"].as_u64().unwrap_or(0);
    if workload_failures > 0 {
        bail!(
            "{workload_failures} of {workload_runs} workload runs failed (the last: {})",
            dir.join("workload-failed.out").display()
        );
    }
    if events == 0 {
        bail!("refwatch recorded no event in {workload_runs} workload runs: nothing was soaked");
    }
    let flat = flatness(&samples)?;
    let report = SoakReport {
        kernel: opts.kernel,
        release: result.release,
        accel: opts.accel,
        minutes: opts.minutes,
        workload: WORKLOAD,
        workload_runs,
        workload_failures,
        events,
        dropped,
        recording_bytes: read("recording.size")
            .ok()
            .and_then(|t| t.trim().parse().ok()),
        peak_kib: read("hwm.txt").ok().and_then(|t| t.trim().parse().ok()),
        flatness: flat,
        samples,
    };
    println!("\n{}", render(&report));
    let path = opts.out.join("soak.json");
    let json = serde_json::to_string_pretty(&report).context("encode soak.json")?;
    fs::write(&path, json + "\n").with_context(|| format!("write {}", path.display()))?;
    println!("results in {}", path.display());
    Ok(if report.flatness.flat {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn guest_script(secs: u64) -> Result<String> {
    template::fill(
        SOAK_SH,
        &[
            ("WORKLOAD", WORKLOAD.to_owned()),
            ("SECS", secs.to_string()),
            ("SAMPLE_SECS", SAMPLE_SECS.to_string()),
            ("PAGES", PAGES.to_string()),
            (
                "READY_TICKS",
                (u64::from(lab::DEFAULT_READY_SECS) * 10).to_string(),
            ),
            ("READY_SECS", lab::DEFAULT_READY_SECS.to_string()),
        ],
    )
}

/// The summary printed at the end.
pub fn render(r: &SoakReport) -> String {
    let f = &r.flatness;
    let first = r.samples.first().map_or(0, |s| s.rss_kib);
    let last = r.samples.last().map_or(0, |s| s.rss_kib);
    format!(
        "refwatch soak on {} (uname -r {}), qemu {}, {} min of {}: {} runs, {} events ({} dropped), recording {} bytes\n\
         VmRSS: {} samples every {SAMPLE_SECS} s; first {first} KiB, last {last} KiB, peak (VmHWM) {} KiB\n\
         after the {WARMUP_SECS} s warm-up, {} samples in thirds: peaks {} / {} / {} KiB; slope {:+.1} KiB/min\n\
         rule: last third's peak ≤ first third's × {:.2} + {SLACK_KIB} KiB = {} KiB → {}",
        r.kernel,
        r.release,
        r.accel.label(),
        r.minutes,
        r.workload,
        r.workload_runs,
        r.events,
        r.dropped,
        r.recording_bytes.map_or("?".to_owned(), |b| b.to_string()),
        r.samples.len(),
        r.peak_kib.map_or("?".to_owned(), |b| b.to_string()),
        f.samples,
        f.first_third_max_kib,
        f.middle_third_max_kib,
        f.last_third_max_kib,
        f.slope_kib_per_min,
        1.0 + TOLERANCE,
        f.limit_kib,
        if f.flat { "flat" } else { "NOT FLAT" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic series: one sample every 5 s for 10 minutes.
    fn series(rss: impl Fn(f64) -> u64) -> Vec<Sample> {
        (0u32..120)
            .map(|i| {
                let secs = 100.0 + 5.0 * f64::from(i);
                Sample {
                    secs,
                    rss_kib: rss(secs - 100.0),
                    runs: u64::from(i) * 10,
                }
            })
            .collect()
    }

    #[test]
    fn a_flat_series_passes_and_a_leak_fails() -> Result<()> {
        // Synthetic: a warm-up peak, then a steady 20 MiB with jitter.
        let flat = flatness(&series(|t| {
            if t < 30.0 {
                40_000
            } else {
                20_000 + (t as u64 % 3) * 100
            }
        }))?;
        assert!(flat.flat, "{flat:?}");
        assert_eq!(flat.samples, 108, "the first minute is left out");
        assert_eq!(flat.first_third_max_kib, 20_200);
        assert!(flat.slope_kib_per_min.abs() < 10.0, "{flat:?}");

        // Synthetic: 20 MiB growing by 1 MiB a minute.
        let leak = flatness(&series(|t| 20_000 + (t * 1024.0 / 60.0) as u64))?;
        assert!(!leak.flat, "{leak:?}");
        assert!((leak.slope_kib_per_min - 1024.0).abs() < 1.0, "{leak:?}");
        assert!(leak.last_third_max_kib > leak.limit_kib);
        Ok(())
    }

    #[test]
    fn too_few_samples_is_an_error() {
        assert!(flatness(&[]).is_err());
        assert!(
            flatness(&series(|_| 1)[..15]).is_err(),
            "all in the warm-up"
        );
    }

    #[test]
    fn samples_parse() -> Result<()> {
        let s = parse_samples("12.50 20480 0\n17.51 20500 31\n\n")?;
        assert_eq!(
            s,
            [
                Sample {
                    secs: 12.5,
                    rss_kib: 20480,
                    runs: 0
                },
                Sample {
                    secs: 17.51,
                    rss_kib: 20500,
                    runs: 31
                }
            ]
        );
        assert!(parse_samples("12.5 x 0\n").is_err());
        assert!(parse_samples("12.5 100\n").is_err());
        Ok(())
    }

    #[test]
    fn the_guest_script_is_complete() -> Result<()> {
        let s = guest_script(600)?;
        assert!(s.contains("end=$((start + 600))"), "{s}");
        assert!(s.contains("workload dax-splice --dir /mnt/dax --pages 16 "));
        assert!(s.contains("sleep 5\n"));
        Ok(())
    }
}
