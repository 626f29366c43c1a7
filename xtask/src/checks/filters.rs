//! The filter scenarios (`+pfn-filter`, `+pid-filter`, `+cgroup-filter`):
//! refwatch started with `--pfn` (half of the pages the workload holds),
//! `--pid` (the workload's process) or `--cgroup` (a cgroup the workload
//! was moved into) while the workload holds its pages, and a second
//! workload run under it on other pages by another process. What the filter
//! keeps must be all there is, each kept page must have its own kernel
//! events, and what it leaves out must be counted apart from losses.

use std::{collections::BTreeSet, fs, path::Path};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{read_events, read_workload};

/// What a filter scenario filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// `--pfn`.
    Pfn,
    /// `--pid` or `--cgroup`: every held page, from the workload's events.
    Task,
}

/// Checks a filter scenario's results in `dir`.
pub fn check_filtered(by: By, dir: &Path) -> Result<Vec<String>> {
    let held: BTreeSet<u64> = read_workload(dir)?.pfns.into_iter().collect();
    let other = other_pfns(dir)?;
    let flags = fs::read_to_string(dir.join("filter.flags")).context("read filter.flags")?;
    let flags = flags.trim();
    // The pages the filter must keep, and only those.
    let kept: BTreeSet<u64> = match by {
        By::Pfn => {
            let Some(list) = flags.strip_prefix("--pfn=") else {
                bail!("filter.flags {flags:?}: not --pfn=…");
            };
            list.split(',')
                .map(|p| {
                    u64::from_str_radix(p.trim_start_matches("0x"), 16)
                        .with_context(|| format!("filter.flags: PFN {p:?}"))
                })
                .collect::<Result<_>>()?
        }
        By::Task => held.clone(),
    };
    let mut bad = Vec::new();
    if kept.is_empty() || !kept.is_subset(&held) {
        bad.push(format!(
            "the filter ({flags}) keeps {kept:x?}: not some of the held pages {held:x?}"
        ));
    }
    if !other.is_disjoint(&held) {
        bad.push(format!(
            "the second workload's pages {other:x?} are some of the held ones"
        ));
    }
    let events = read_events(&dir.join("events.jsonl"))?;
    let page_events: Vec<_> = events
        .iter()
        .filter(|e| !matches!(e.event.as_str(), "pgmap_add" | "pgmap_remove" | "fork"))
        .collect();
    let outside: BTreeSet<u64> = page_events
        .iter()
        .map(|e| e.pfn)
        .filter(|p| !kept.contains(p))
        .collect();
    if !outside.is_empty() {
        bad.push(format!(
            "events of pages the filter leaves out: {outside:x?} (kept: {kept:x?})"
        ));
    }
    for pfn in &kept {
        let n = page_events
            .iter()
            .filter(|e| e.pfn == *pfn && e.event != "snapshot")
            .count();
        if n == 0 {
            bad.push(format!(
                "pfn {pfn:#x}: kept by the filter, but no kernel event"
            ));
        }
    }
    // Under --pfn the snapshot at attach keeps to the filter too, and finds
    // the kept pages held; under a task filter there is none.
    let snapshots: BTreeSet<u64> = page_events
        .iter()
        .filter(|e| e.event == "snapshot")
        .map(|e| e.pfn)
        .collect();
    match by {
        By::Pfn if snapshots != kept => bad.push(format!(
            "snapshot at attach read {snapshots:x?}, expected the kept pages {kept:x?}"
        )),
        By::Task if !snapshots.is_empty() => bad.push(format!(
            "a snapshot at attach under a task filter: {snapshots:x?}"
        )),
        _ => {}
    }
    let end = end_line(dir)?;
    let skipped = end.skipped.unwrap_or(0);
    if end.skipped.is_none() {
        bad.push("refwatch.out: no \"events left out by\" line".to_owned());
    } else if skipped == 0 {
        bad.push("no event was left out: the filter was not exercised".to_owned());
    }
    if end.lost != 0 || end.gapped != 0 || end.unknown != 0 {
        bad.push(format!(
            "losses: {} lost, {} pages with gaps, {} unknown (left-out events must not count)",
            end.lost, end.gapped, end.unknown
        ));
    }
    let recording = fs::read_to_string(dir.join("recording")).context("read recording")?;
    let gaps = recording
        .lines()
        .filter(|l| l.contains("\"type\":\"gap\""))
        .count();
    if gaps != 0 {
        bad.push(format!("{gaps} gap line(s) in the recording"));
    }
    let report: Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).context("read report.json")?)
            .context("parse report.json")?;
    if report["stuck_at_end"]
        .as_array()
        .is_none_or(|a| !a.is_empty())
    {
        bad.push(format!("stuck at the end: {}", report["stuck_at_end"]));
    }
    // The recording says what it was filtered by, and the report repeats it.
    let flag = flags.split('=').next().unwrap_or(flags);
    if !report["filter"]
        .as_str()
        .is_some_and(|f| f.starts_with(flag))
    {
        bad.push(format!(
            "report's filter {} does not name {flag}",
            report["filter"]
        ));
    }
    println!(
        "    filter {flags}: {} of {} held pages kept, {} events on them, {skipped} events left out, {} lost",
        kept.len(),
        held.len(),
        page_events.len(),
        end.lost
    );
    Ok(bad)
}

/// The second workload's pages (`other.json`).
fn other_pfns(dir: &Path) -> Result<BTreeSet<u64>> {
    let p = dir.join("other.json");
    let v: Value =
        serde_json::from_slice(&fs::read(&p).with_context(|| format!("read {}", p.display()))?)
            .with_context(|| format!("parse {}", p.display()))?;
    if v["ok"] != Value::Bool(true) {
        bail!("second workload failed: {}", v["error"]);
    }
    Ok(v["pfns"]
        .as_array()
        .context("other.json: pfns")?
        .iter()
        .filter_map(Value::as_u64)
        .collect())
}

/// Figures of refwatch's last lines (`refwatch.out`).
#[derive(Debug, Default, PartialEq, Eq)]
struct EndLine {
    lost: u64,
    gapped: u64,
    unknown: u64,
    /// From the "N events left out by …" line, when there is one.
    skipped: Option<u64>,
}

fn end_line(dir: &Path) -> Result<EndLine> {
    let text = fs::read_to_string(dir.join("refwatch.out")).context("read refwatch.out")?;
    parse_end(&text)
}

/// The number before `what` in `line` (`"… 3 lost, …"`).
fn number_before(line: &str, what: &str) -> Option<u64> {
    let at = line.find(what)?;
    line[..at].split_whitespace().last()?.parse().ok()
}

fn parse_end(text: &str) -> Result<EndLine> {
    let Some(totals) = text
        .lines()
        .find(|l| l.starts_with("refwatch: ") && l.contains(" pages with gaps"))
    else {
        bail!("refwatch.out: no totals line");
    };
    let get = |what: &str| {
        number_before(totals, what).with_context(|| format!("refwatch.out: no {what:?} figure"))
    };
    Ok(EndLine {
        lost: get(" lost,")?,
        gapped: get(" pages with gaps,")?,
        unknown: get(" of them unknown now")?,
        skipped: text
            .lines()
            .find(|l| l.starts_with("refwatch: ") && l.contains(" events left out by "))
            .and_then(|l| number_before(l, " events left out by ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refwatch_end_lines_are_read() {
        // The lines as refwatch prints them (synthetic figures).
        let text = "refwatch: 40 events, 8 pages, 0 stuck now, 8 episodes (0 old ones forgotten, 0 not kept: the cap was full of open ones), 2 lost, 0 capped by --max-rate, 3 pages with gaps, 1 of them unknown now, 0 undecodable, 0 evicted, 0 events on pages beyond --max-pfns, 0 old events trimmed (--max-events)\n\
                    refwatch: 56 events left out by --pfn 0x48210,0x48211 (not losses)\n";
        assert_eq!(
            parse_end(text).expect("parse"),
            EndLine {
                lost: 2,
                gapped: 3,
                unknown: 1,
                skipped: Some(56)
            }
        );
        let no_filter = text.lines().next().expect("line");
        assert_eq!(parse_end(no_filter).expect("parse").skipped, None);
        assert!(parse_end("refwatch: nothing\n").is_err());
    }
}
