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
    /// Set when schedstat and the ticks disagree by more than the ticks'
    /// resolution allows (a thread that exited between the samples takes
    /// its schedstat with it; the process's ticks keep it).
    pub note: Option<String>,
}

/// One `LABEL NS TICKS` line (NS `-`: no schedstat).
fn sample(text: &str, label: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))?;
    let mut f = line.split_whitespace().skip(1);
    let ns = f.next().and_then(|v| v.parse().ok());
    let ticks = f.next().and_then(|v| v.parse().ok());
    Some((ns, ticks))
}

/// The CPU time between the `ready` and `stop` samples of `text` (the
/// guest's `NAME.cpu`); `None` when a sample is missing or unreadable.
pub fn parse(text: &str) -> Option<ReaderCpu> {
    let (ns0, t0) = sample(text, "ready")?;
    let (ns1, t1) = sample(text, "stop")?;
    let ticks = match (t0, t1) {
        (Some(a), Some(b)) => b.checked_sub(a),
        _ => None,
    };
    let ns = match (ns0, ns1) {
        (Some(a), Some(b)) => b.checked_sub(a),
        _ => None,
    };
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
                note,
            })
        }
        (None, Some(t)) => Some(ReaderCpu {
            ns: t * TICK_NS,
            source: "ticks",
            ticks: Some(t),
            note: Some("no schedstat: 10 ms resolution".to_owned()),
        }),
        (None, None) => None,
    }
}

/// Guest instructions refwatch spent per event it recorded (on the
/// instruction clock a guest ns is an instruction); `None` without events.
pub fn per_event(cpu: &ReaderCpu, events: u64) -> Option<f64> {
    (events > 0).then(|| cpu.ns as f64 / events as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_between_the_samples() {
        // As the guest script writes it: 31.5 ms of schedstat, 3 ticks.
        let cpu = parse("ready 812000000 81\nstop 843500000 84\n").expect("parsed");
        assert_eq!(
            cpu,
            ReaderCpu {
                ns: 31_500_000,
                source: "schedstat",
                ticks: Some(3),
                note: None
            }
        );
        assert_eq!(per_event(&cpu, 63_000), Some(500.0));
        assert_eq!(per_event(&cpu, 0), None);
    }

    #[test]
    fn ticks_when_schedstat_is_missing_and_a_note_when_they_disagree() {
        let cpu = parse("ready - 10\nstop - 25\n").expect("parsed");
        assert_eq!((cpu.ns, cpu.source), (150_000_000, "ticks"));
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
    }
}
