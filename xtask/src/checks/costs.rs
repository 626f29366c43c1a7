//! refwatch's account of its own costs in its log, checked in every
//! recording scenario: the `start:` line names each step of the start with
//! its time, and the `events read:` line says how many events refwatch read
//! and the CPU time they took. The count must be the one the recording's
//! `end` line gives, and the time there whenever events were read.

use std::{fs, path::Path};

use anyhow::{Context, Result};
use serde_json::Value;

/// Steps every start has, in this order.
const STEPS: [&str; 4] = [
    "kernel symbols read",
    "kernel BTF read",
    "programs loaded (relocated and verified)",
    "hooks attached",
];

/// `events read: N in T us of CPU, P ns per event …`.
#[derive(Debug, PartialEq)]
pub struct ReadCost {
    pub events: u64,
    pub cpu_us: u64,
    pub ns_per_event: Option<u64>,
}

/// The last `events read:` line of a log.
pub fn read_cost(log: &str) -> Option<ReadCost> {
    let line = log.lines().rev().find(|l| l.contains("events read: "))?;
    let (_, rest) = line.split_once("events read: ")?;
    let (events, rest) = rest.split_once(" in ")?;
    let (cpu_us, rest) = rest.split_once(" us of CPU, ")?;
    let per = rest.split_whitespace().next()?;
    Some(ReadCost {
        events: events.parse().ok()?,
        cpu_us: cpu_us.parse().ok()?,
        ns_per_event: if per == "-" {
            None
        } else {
            Some(per.parse().ok()?)
        },
    })
}

/// The problems of a log's `start:` line: missing, a step missing or out
/// of order, a time that is not a number of seconds.
pub fn start_problems(log: &str) -> Vec<String> {
    let Some(line) = log.lines().find(|l| l.contains("start: ")) else {
        return vec!["refwatch's log has no `start:` line".to_owned()];
    };
    let mut problems = Vec::new();
    let steps: Vec<(&str, &str)> = line
        .split_once("start: ")
        .map_or("", |(_, s)| s)
        .split(", ")
        .filter_map(|s| s.rsplit_once(" in "))
        .collect();
    for (what, secs) in &steps {
        let ok = secs
            .strip_suffix(" s")
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v.is_finite() && v >= 0.0);
        if !ok {
            problems.push(format!("start step {what:?}: {secs:?} is not a time"));
        }
    }
    let mut at = 0;
    for want in STEPS {
        match steps.iter().skip(at).position(|(w, _)| *w == want) {
            Some(i) => at += i + 1,
            None => problems.push(format!("start line lacks {want:?} (in order): {line}")),
        }
    }
    problems
}

/// Checks scenario folder `dir`: its `refwatch.log` against its recording.
pub fn check(dir: &Path) -> Result<Vec<String>> {
    let log_path = dir.join("refwatch.log");
    let log =
        fs::read_to_string(&log_path).with_context(|| format!("read {}", log_path.display()))?;
    let mut problems = start_problems(&log);
    let rec_path = dir.join("recording");
    let rec =
        fs::read_to_string(&rec_path).with_context(|| format!("read {}", rec_path.display()))?;
    let end = rec.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .filter(|v| v["type"] == "end")
    });
    let Some(cost) = read_cost(&log) else {
        problems.push("refwatch's log has no `events read:` line".to_owned());
        return Ok(problems);
    };
    match end.as_ref().and_then(|e| e["events"].as_u64()) {
        Some(n) if n == cost.events => {}
        other => problems.push(format!(
            "the log read {} events, the recording's end line says {other:?}",
            cost.events
        )),
    }
    // refwatch divides nanoseconds; the line gives microseconds, rounded
    // down: the two agree within 1000 / events (and a rounding).
    let adds_up = match cost.ns_per_event {
        None => cost.events == 0,
        Some(p) => {
            cost.events > 0
                && p > 0
                && p.abs_diff(cost.cpu_us * 1000 / cost.events) <= 1000 / cost.events + 1
        }
    };
    if !adds_up {
        problems.push(format!("the events-read figures do not add up: {cost:?}"));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_log_passes() {
        // Lines as refwatch writes them (the figures of a lab run:
        // debian-7.2, dax-hold).
        let log = "[INFO] refwatch::app: start: capabilities read in 0.00 s, kernel symbols read in 1.50 s, kernel BTF read in 0.50 s, kernel layout resolved in 0.01 s, kprobe support checked in 0.00 s, probe plan made in 0.00 s, kernel BTF read by the loader in 0.13 s, programs loaded (relocated and verified) in 0.15 s, kernel BTF read for attaching in 0.13 s, hooks attached in 2.51 s, BPF symbols read in 0.72 s\n\
                   [INFO] refwatch::collector: events read: 247296 in 626016 us of CPU, 2531 ns per event (decode, stacks named, outputs, per-PFN state)\n";
        assert_eq!(start_problems(log), Vec::<String>::new());
        assert_eq!(
            read_cost(log),
            Some(ReadCost {
                events: 247_296,
                cpu_us: 626_016,
                ns_per_event: Some(2531)
            })
        );
        assert_eq!(
            read_cost("x: events read: 0 in 0 us of CPU, - ns per event (…)"),
            Some(ReadCost {
                events: 0,
                cpu_us: 0,
                ns_per_event: None
            })
        );
    }

    #[test]
    fn a_missing_or_broken_start_line_is_a_problem() {
        assert_eq!(start_problems("[INFO] nothing\n").len(), 1);
        let missing = start_problems("start: kernel symbols read in 1.0 s, hooks attached in 2 s");
        assert!(
            missing.iter().any(|p| p.contains("kernel BTF read")),
            "{missing:?}"
        );
        // Out of order.
        let order = start_problems(
            "start: hooks attached in 1 s, kernel symbols read in 1 s, kernel BTF read in 1 s, programs loaded (relocated and verified) in 1 s",
        );
        assert!(
            order.iter().any(|p| p.contains("hooks attached")),
            "{order:?}"
        );
        let time = start_problems(
            "start: kernel symbols read in soon, kernel BTF read in 1 s, programs loaded (relocated and verified) in 1 s, hooks attached in 1 s",
        );
        assert!(time.iter().any(|p| p.contains("not a time")), "{time:?}");
    }

    #[test]
    fn the_log_and_the_recording_must_agree() {
        let dir = std::env::temp_dir().join(format!("xtask-costs-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch dir");
        let start = "start: kernel symbols read in 1 s, kernel BTF read in 1 s, programs loaded (relocated and verified) in 1 s, hooks attached in 1 s\n";
        let write = |events_log: &str, events_end: u64| {
            fs::write(
                dir.as_path().join("refwatch.log"),
                format!("{start}{events_log}\n"),
            )
            .expect("log");
            fs::write(
                dir.as_path().join("recording"),
                format!("{{\"version\":2}}\n{{\"type\":\"end\",\"now_ns\":1,\"events\":{events_end},\"dropped\":0}}\n"),
            )
            .expect("recording");
            check(dir.as_path()).expect("checked")
        };
        assert!(write("events read: 64 in 128 us of CPU, 2000 ns per event", 64).is_empty());
        assert_eq!(
            write("events read: 64 in 128 us of CPU, 2000 ns per event", 65).len(),
            1
        );
        assert_eq!(
            write("events read: 64 in 128 us of CPU, 7 ns per event", 64).len(),
            1
        );
        assert_eq!(
            write("events read: 64 in 0 us of CPU, - ns per event", 64).len(),
            1
        );
        assert_eq!(write("no such line", 64).len(), 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
