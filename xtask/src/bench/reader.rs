//! refwatch's own CPU time over an attached run of `bench overhead`, from
//! the two samples the guest script takes (`cpu_sample` in
//! `xtask/guest/overhead.sh`): once refwatch is ready, and just before the
//! SIGINT that stops it.

use serde::Serialize;

/// Nanoseconds of a clock tick of `/proc/PID/stat` (USER_HZ is 100 on
/// every architecture the lab runs).
const TICK_NS: u64 = 10_000_000;

/// What refwatch spent on a CPU between the two samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReaderCpu {
    /// Nanoseconds on a CPU (guest instructions on the instruction clock).
    pub ns: u64,
    /// `"schedstat"` (per-thread run time, in ns) or `"ticks"` (utime +
    /// stime of the process, 10 ms resolution), whichever gave `ns`.
    pub source: &'static str,
    /// utime + stime between the samples, in ticks (the cross-check).
    pub ticks: Option<u64>,
    /// The stime part of [`Self::ticks`]: the kernel's work on refwatch's
    /// behalf (wake-ups, polls, the recording's writes), which splits the
    /// reader's cost between its own code and the kernel.
    pub system_ticks: Option<u64>,
    /// Set when schedstat and the ticks disagree by more than the ticks'
    /// resolution allows (a thread that exited between the samples takes
    /// its schedstat with it; the process's ticks keep it).
    pub note: Option<String>,
}

/// One sample: schedstat ns, utime + stime ticks, stime ticks.
struct Sample {
    ns: Option<u64>,
    ticks: Option<u64>,
    system_ticks: Option<u64>,
}

/// One `LABEL NS TICKS STIME` line (NS `-`: no schedstat; STIME absent in
/// the files of older scripts).
fn sample(text: &str, label: &str) -> Option<Sample> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))?;
    let mut f = line.split_whitespace().skip(1);
    let mut next = || f.next().and_then(|v| v.parse().ok());
    Some(Sample {
        ns: next(),
        ticks: next(),
        system_ticks: next(),
    })
}

/// `b - a` when both are there and the counter did not go backwards.
fn between(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    b?.checked_sub(a?)
}

/// The CPU time between the `ready` and `stop` samples of `text` (the
/// guest's `NAME.cpu`); `None` when a sample is missing or unreadable.
pub fn parse(text: &str) -> Option<ReaderCpu> {
    let (s0, s1) = (sample(text, "ready")?, sample(text, "stop")?);
    let ticks = between(s0.ticks, s1.ticks);
    let ns = between(s0.ns, s1.ns);
    let system_ticks = between(s0.system_ticks, s1.system_ticks).filter(|&s| Some(s) <= ticks);
    match (ns, ticks) {
        (Some(ns), ticks) => {
            // Ticks are charged whole to whoever runs when one arrives: a
            // run's count can be off by one per thread and sample; allow
            // two ticks and 10 %.
            let note = ticks
                .filter(|&t| {
                    let by_ticks = t * TICK_NS;
                    by_ticks.abs_diff(ns) > 2 * TICK_NS + ns.max(by_ticks) / 10
                })
                .map(|t| {
                    format!(
                        "schedstat says {:.1} ms, utime + stime {} ticks ({} ms)",
                        ns as f64 / 1e6,
                        t,
                        t * 10
                    )
                });
            Some(ReaderCpu {
                ns,
                source: "schedstat",
                ticks,
                system_ticks,
                note,
            })
        }
        (None, Some(t)) => Some(ReaderCpu {
            ns: t * TICK_NS,
            source: "ticks",
            ticks: Some(t),
            system_ticks,
            note: Some("no schedstat: 10 ms resolution".to_owned()),
        }),
        (None, None) => None,
    }
}

/// The kernel's share of the ticks, in percent (`None` without a split or
/// without ticks).
pub fn system_percent(cpu: &ReaderCpu) -> Option<f64> {
    let (sys, all) = (cpu.system_ticks?, cpu.ticks?);
    (all > 0).then(|| sys as f64 * 100.0 / all as f64)
}

/// Guest instructions refwatch spent per event it recorded (on the
/// instruction clock a guest ns is an instruction); `None` without events.
pub fn per_event(cpu: &ReaderCpu, events: u64) -> Option<f64> {
    (events > 0).then(|| cpu.ns as f64 / events as f64)
}

/// How far refwatch's own timing of its reads may exceed the samples'
/// figure per event: the reads' time is part of the time between the
/// samples, but it also covers the drain after the SIGINT (the ring's
/// last events, at most a few percent of a run's: the ring was at most
/// 4% full in the README's runs), which the `stop` sample precedes.
pub const READ_SLACK: f64 = 0.10;

/// Runs shorter than this on a CPU (between the samples) are not judged:
/// a handful of events over the fixed cost of a run's polls and ticks.
const JUDGED_NS: u64 = 50_000_000;

/// Checks the two figures of a run against each other: the reads' time per
/// event (`read`, from refwatch's `events read:` line) cannot be more than
/// the whole reader's per event (`instructions`, from the samples) but for
/// the drain after the stop ([`READ_SLACK`]). A larger one means one of
/// the two measures something else than it says. Judged on schedstat
/// samples of at least [`JUDGED_NS`]; `Err` says which figures disagree.
pub fn check_read(cpu: &ReaderCpu, instructions: f64, read: u64) -> Result<(), String> {
    if cpu.source != "schedstat" || cpu.ns < JUDGED_NS {
        return Ok(());
    }
    let bound = instructions * (1.0 + READ_SLACK);
    if read as f64 > bound {
        return Err(format!(
            "refwatch timed {read} instructions per event on its reads, more than the {instructions:.0} its whole process spent per event between the samples (at most {bound:.0} with the drain after the stop)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_between_the_samples() {
        // As the guest script writes it: 31.5 ms of schedstat, 3 ticks.
        let cpu = parse("ready 812000000 81 20\nstop 843500000 84 21\n").expect("parsed");
        assert_eq!(
            cpu,
            ReaderCpu {
                ns: 31_500_000,
                source: "schedstat",
                ticks: Some(3),
                system_ticks: Some(1),
                note: None
            }
        );
        assert_eq!(system_percent(&cpu).map(f64::round), Some(33.0));
        assert_eq!(per_event(&cpu, 63_000), Some(500.0));
        assert_eq!(per_event(&cpu, 0), None);
    }

    #[test]
    fn ticks_when_schedstat_is_missing_and_a_note_when_they_disagree() {
        let cpu = parse("ready - 10\nstop - 25\n").expect("parsed");
        assert_eq!((cpu.ns, cpu.source), (150_000_000, "ticks"));
        // A file of the older script: no stime, no split.
        assert_eq!((cpu.system_ticks, system_percent(&cpu)), (None, None));
        assert!(cpu.note.is_some());
        // 1 s by ticks against 0.2 s by schedstat: a thread went missing.
        let cpu = parse("ready 0 0\nstop 200000000 100\n").expect("parsed");
        assert_eq!(cpu.source, "schedstat");
        assert!(cpu.note.as_deref().is_some_and(|n| n.contains("100 ticks")));
    }

    #[test]
    fn missing_or_broken_samples() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("ready 5 1\n"), None);
        assert_eq!(parse("ready - \nstop - \n"), None);
        // A counter that went backwards is no measurement.
        assert_eq!(parse("ready 9 \nstop 5 \n"), None);
        // An stime larger than the whole is no split.
        let cpu = parse("ready 0 0 0\nstop 50000000 5 9\n").expect("parsed");
        assert_eq!(cpu.system_ticks, None);
    }

    #[test]
    fn the_reads_cannot_cost_more_than_the_whole_reader() {
        let cpu = parse("ready 0 0\nstop 200000000 20\n").expect("parsed");
        // As measured: the reads 0.7-1.5% under the whole (2,409 and 2,389 here).
        assert_eq!(check_read(&cpu, 2409.0, 2389), Ok(()));
        // The drain after the stop may add up to the slack.
        assert_eq!(check_read(&cpu, 2000.0, 2200), Ok(()));
        let err = check_read(&cpu, 2000.0, 2201).expect_err("past the slack");
        assert!(err.contains("2201") && err.contains("2000"), "{err}");
        // Ticks (10 ms) and short runs are not judged.
        let ticks = parse("ready - 10\nstop - 25\n").expect("parsed");
        assert_eq!(check_read(&ticks, 100.0, 5000), Ok(()));
        let short = parse("ready 0 0\nstop 40000000 4\n").expect("parsed");
        assert_eq!(check_read(&short, 100.0, 5000), Ok(()));
    }
}
