//! The `+watch` scenarios: refwatch's hardware watchpoints against the
//! page_ref ground truth (`groundtruth.json`'s `watch`, see
//! `crate::groundtruth::watch`).

use std::{fs, path::Path};

use anyhow::{Context, Result};

use crate::groundtruth::{GroundTruth, watch::WatchTruth};

/// Every watched page armed, and every refcount change of each after its
/// arming seen by the watch, at least one per page (its release).
pub fn check_watch(dir: &Path, pages: usize) -> Result<Vec<String>> {
    let p = dir.join("groundtruth.json");
    let g: GroundTruth = serde_json::from_slice(
        &fs::read(&p).with_context(|| format!("read {} (the lab writes it)", p.display()))?,
    )
    .with_context(|| format!("parse {}", p.display()))?;
    let Some(w) = g.watch else {
        return Ok(vec![
            "no watch in groundtruth.json: refwatch listed no armed page".into(),
        ]);
    };
    println!(
        "    watch: {} pages armed, {}/{} refcount changes after arming seen, {} watchpoint events",
        w.per_pfn.len(),
        w.seen,
        w.truth_writes,
        w.hits
    );
    Ok(judge(&w, pages))
}

/// A late attach told to watch the pages the workload holds (`+late+watch`,
/// a kernel without page_ref tracepoints): each held page armed, flagged
/// during the hold as held by references taken before watching, and its
/// release seen by the watchpoint: a put from the workload (which drops the
/// pipe), with a stack.
pub fn check_late_watch(dir: &Path) -> Result<Vec<String>> {
    let w = super::read_workload(dir)?;
    let armed = std::fs::read_to_string(dir.join(crate::lab::WATCH_READY_FILE))
        .with_context(|| format!("read {}", crate::lab::WATCH_READY_FILE))?;
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).context("read report.json")?)
            .context("parse report.json")?;
    let episodes = report["episodes"]
        .as_array()
        .context("report.json: episodes")?;
    let events = super::read_events(&dir.join("events.jsonl"))?;
    let mut bad = Vec::new();
    let mut released = 0;
    for pfn in &w.pfns {
        let hex = format!("{pfn:#x} ");
        if !armed.lines().any(|l| l.starts_with(&hex)) {
            bad.push(format!("pfn {pfn:#x}: not armed"));
        }
        let said = episodes.iter().any(|e| {
            e["pfn"].as_u64() == Some(*pfn)
                && e["holder_note"]
                    .as_str()
                    .is_some_and(|n| n.contains("before watching"))
        });
        if !said {
            bad.push(format!(
                "pfn {pfn:#x}: no episode says its references were taken before watching"
            ));
        }
        let release = events.iter().any(|e| {
            e.pfn == *pfn
                && e.symbol == "watchpoint"
                && e.event == "put"
                && e.comm == "workload"
                && !e.stack.is_empty()
        });
        if release {
            released += 1;
        } else {
            bad.push(format!(
                "pfn {pfn:#x}: no put from the workload, with a stack, seen by the watchpoint"
            ));
        }
    }
    println!(
        "    late watch: {} held pages, {released} releases seen by the watchpoint with the releasing task and stack",
        w.pfns.len()
    );
    Ok(bad)
}

/// A SIGKILL of a refwatch watching pages (`+sigkill+watch`): it had
/// armed pages, and after it was gone a second refwatch (`probes`) could
/// open as many breakpoints as the first `probes` of the boot: nothing of
/// the first one holds a debug register.
pub fn check_slots_freed(out: &Path, dir: &Path) -> Result<Vec<String>> {
    let slots = |p: &Path| -> Result<Option<usize>> {
        let text = fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        Ok(slots_of(&text))
    };
    let before = slots(&out.join("probes.txt"))?;
    let after = slots(&dir.join("probes-after.txt"))?;
    let armed = fs::read_to_string(dir.join(crate::lab::WATCH_READY_FILE))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    println!(
        "    watch slots: {armed} pages armed before SIGKILL; free slots before refwatch {before:?}, after it was killed {after:?}"
    );
    let mut bad = Vec::new();
    if armed == 0 {
        bad.push("no page armed before the kill: nothing was held".into());
    }
    match (before, after) {
        (Some(b), Some(a)) if b > 0 && a == b => {}
        _ => bad.push(format!(
            "hardware breakpoint slots free before {before:?}, after the kill {after:?}: expected the same, at least one"
        )),
    }
    Ok(bad)
}

/// The pages `refwatch probes` says fit at once.
fn slots_of(probes: &str) -> Option<usize> {
    let line = probes
        .lines()
        .find(|l| l.starts_with("watchpoints (--watch): "))?;
    line.trim_start_matches("watchpoints (--watch): ")
        .split_once(" page(s) at once")?
        .0
        .parse()
        .ok()
}

fn judge(w: &WatchTruth, pages: usize) -> Vec<String> {
    let mut bad = Vec::new();
    if w.per_pfn.len() != pages {
        bad.push(format!("{} pages armed, expected {pages}", w.per_pfn.len()));
    }
    for p in &w.per_pfn {
        if p.truth_writes == 0 {
            bad.push(format!(
                "page {}: no refcount change after arming in the trace: nothing checked",
                p.pfn
            ));
        }
        if p.seen != p.truth_writes {
            bad.push(format!(
                "page {}: the watch saw {} of {} refcount changes after arming, first missed: {}",
                p.pfn,
                p.seen,
                p.truth_writes,
                p.first_missed
                    .as_ref()
                    .map(|m| serde_json::to_string(m).unwrap_or_default())
                    .unwrap_or_default()
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groundtruth::watch::WatchPfn;

    /// Synthetic comparison results (not from a lab run).
    fn page(pfn: &str, truth: u64, seen: u64) -> WatchPfn {
        WatchPfn {
            pfn: pfn.into(),
            armed_ns: 1,
            truth_writes: truth,
            seen,
            hits: seen,
            first_missed: None,
        }
    }

    fn truth(per_pfn: Vec<WatchPfn>) -> WatchTruth {
        WatchTruth {
            truth_writes: per_pfn.iter().map(|p| p.truth_writes).sum(),
            seen: per_pfn.iter().map(|p| p.seen).sum(),
            hits: per_pfn.iter().map(|p| p.hits).sum(),
            per_pfn,
        }
    }

    #[test]
    fn the_free_slots_are_read_from_probes() {
        let p = "layout: ...\nwatchpoints (--watch): 4 page(s) at once (free hardware breakpoint slots on every CPU)\n";
        assert_eq!(slots_of(p), Some(4));
        assert_eq!(
            slots_of("watchpoints (--watch): not available: no hardware breakpoints\n"),
            None
        );
    }

    #[test]
    fn every_change_of_every_page_must_be_seen() {
        assert!(judge(&truth(vec![page("0x1", 2, 2), page("0x2", 1, 1)]), 2).is_empty());
        let bad = judge(&truth(vec![page("0x1", 2, 1), page("0x2", 0, 0)]), 3);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].contains("2 pages armed, expected 3"));
        assert!(bad[1].contains("saw 1 of 2"));
        assert!(bad[2].contains("nothing checked"));
    }
}
