//! The `+watch` scenarios: refwatch's hardware watchpoints against the
//! page_ref ground truth (`groundtruth.json`'s `watch`, see
//! `crate::groundtruth::watch`).

use std::{fs, path::Path};

use anyhow::{Context, Result};

use crate::groundtruth::{GroundTruth, watch::WatchTruth};

/// Whether `e` comes from a page's watch (`--watch`): a watchpoint hit, or
/// the state read when a watch was armed or ended.
pub fn from_watch(e: &super::Ev) -> bool {
    e.symbol == "watchpoint" || e.symbol == "watch ended"
}

/// Refcount changes a watched page must show after its arming, when it is
/// watched from before the workload allocates it (the HMM `+watch`
/// scenarios, see `lab::HMM_WATCH_PFNS`): its initialisation, the
/// migration's get (inline `folio_get` in `remove_migration_pte`), the put
/// that ends the migration, and the release.
pub const MIN_WATCHED_WRITES: u64 = 4;

/// Every watched page armed, every refcount change of each after its
/// arming seen by the watch, at least [`MIN_WATCHED_WRITES`] per page, and
/// more gets seen by the watch than by refwatch's hooks on the same page
/// (the inline ones, which no hook sees).
pub fn check_watch(dir: &Path, pages: usize) -> Result<Vec<String>> {
    let g = read_truth(dir)?;
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
    let hook_gets: Vec<(String, u64)> = g
        .per_pfn
        .iter()
        .map(|p| (p.pfn.clone(), p.seen_gets))
        .collect();
    for p in &w.per_pfn {
        println!(
            "    watch {}: {}/{} changes seen, {} watchpoint events, {} gets by the watch, {} by the hooks",
            p.pfn,
            p.seen,
            p.truth_writes,
            p.hits,
            p.gets,
            hook_gets_of(&hook_gets, &p.pfn)
        );
    }
    Ok(judge(&w, &hook_gets, pages))
}

/// `groundtruth.json` of a scenario folder.
fn read_truth(dir: &Path) -> Result<GroundTruth> {
    let p = dir.join("groundtruth.json");
    serde_json::from_slice(
        &fs::read(&p).with_context(|| format!("read {} (the lab writes it)", p.display()))?,
    )
    .with_context(|| format!("parse {}", p.display()))
}

/// The episodes of a scenario folder's `report.json`.
fn report_episodes(dir: &Path) -> Result<Vec<serde_json::Value>> {
    let mut report: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).context("read report.json")?)
            .context("parse report.json")?;
    match report["episodes"].take() {
        serde_json::Value::Array(e) => Ok(e),
        _ => anyhow::bail!("report.json: no episodes"),
    }
}

/// The hooks' gets of a page (`groundtruth.json`'s `per_pfn.seen_gets`,
/// the watchpoint's events left out), 0 when it has none.
fn hook_gets_of(hook_gets: &[(String, u64)], pfn: &str) -> u64 {
    hook_gets
        .iter()
        .find(|(p, _)| p == pfn)
        .map_or(0, |(_, n)| *n)
}

/// A late attach told to watch the pages the workload holds (`+late+watch`,
/// a kernel without page_ref tracepoints): each held page armed, flagged
/// during the hold as held by references taken before watching, and its
/// release seen by the watchpoint: a put from the workload (which drops the
/// pipe), with a stack, which the report names as the episode's releaser.
pub fn check_late_watch(dir: &Path) -> Result<Vec<String>> {
    let w = super::read_workload(dir)?;
    let armed = std::fs::read_to_string(dir.join(crate::lab::WATCH_READY_FILE))
        .with_context(|| format!("read {}", crate::lab::WATCH_READY_FILE))?;
    let episodes = report_episodes(dir)?;
    let events = super::read_events(&dir.join("events.jsonl"))?;
    let mut bad = Vec::new();
    let mut released = 0;
    for pfn in &w.pfns {
        let hex = format!("{pfn:#x} ");
        if !armed.lines().any(|l| l.starts_with(&hex)) {
            bad.push(format!("pfn {pfn:#x}: not armed"));
        }
        let said: Vec<&serde_json::Value> = episodes
            .iter()
            .filter(|e| {
                e["pfn"].as_u64() == Some(*pfn)
                    && e["holder_note"]
                        .as_str()
                        .is_some_and(|n| n.contains("before watching"))
            })
            .collect();
        if said.is_empty() {
            bad.push(format!(
                "pfn {pfn:#x}: no episode says its references were taken before watching"
            ));
        }
        // The report names the releaser on the episode the release ended.
        let named = said.iter().any(|e| {
            let r = &e["released_by"];
            r["symbol"] == "watchpoint"
                && r["comm"] == "workload"
                && r["stack"].as_array().is_some_and(|s| !s.is_empty())
        });
        if !named {
            bad.push(format!(
                "pfn {pfn:#x}: its episode's released_by is not the workload's put seen by the watchpoint, with a stack: {}",
                said.first().map_or("no episode".into(), |e| e["released_by"].to_string())
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

/// `+watch-cmd`: `refwatch watch PFN` beside a late attach, on the first
/// held page (the guest's `watch_cmd_start`): it armed the page, printed
/// its release as a line (a put by the workload, via the watchpoint, with
/// a stack) and ended with status 0 on SIGINT.
pub fn check_watch_cmd(dir: &Path) -> Result<Vec<String>> {
    let w = super::read_workload(dir)?;
    let Some(first) = w.pfns.first() else {
        return Ok(vec!["the workload held no page".into()]);
    };
    let out = fs::read_to_string(dir.join("watch-cmd.out")).context("read watch-cmd.out")?;
    let rc = fs::read_to_string(dir.join("watch-cmd.rc")).context("read watch-cmd.rc")?;
    let mut bad = Vec::new();
    if !out.contains(&format!("watching page {first:#x} ")) {
        bad.push(format!(
            "refwatch watch {first:#x}: never said the page was armed"
        ));
    }
    let release = out.lines().find(|l| {
        l.contains(&format!(" pfn {first:#x} put "))
            && l.contains(" by workload[")
            && l.contains(" via watchpoint: ")
            && !l.ends_with("no stack")
    });
    match release {
        Some(l) => println!("    refwatch watch {first:#x}: {l}"),
        None => bad.push(format!(
            "refwatch watch {first:#x}: no line of the workload's put via the watchpoint with a stack: {out}"
        )),
    }
    if rc.trim() != "0" {
        bad.push(format!(
            "refwatch watch ended with status {}, expected 0",
            rc.trim()
        ));
    }
    Ok(bad)
}

/// `dax-pin-long+watch` (a kernel with page_ref tracepoints): the pages
/// armed from their fault, before the O_DIRECT write; every refcount change
/// after arming seen; the pin and the unpin each seen by the watchpoint,
/// the pin from the workload with its stack; in the report, each page's
/// `pinned` episode names the workload's pin as holder (one pin, its two
/// writes folded) and the watchpoint's unpin as the release.
pub fn check_pin_watch(dir: &Path, pages: usize) -> Result<Vec<String>> {
    let w = super::read_workload(dir)?;
    let g = read_truth(dir)?;
    let episodes = report_episodes(dir)?;
    let events = super::read_events(&dir.join("events.jsonl"))?;
    let mut bad = Vec::new();
    match &g.watch {
        None => bad.push("no watch in groundtruth.json: refwatch listed no armed page".into()),
        Some(t) => {
            println!(
                "    pin watch: {} pages armed, {}/{} refcount changes after arming seen",
                t.per_pfn.len(),
                t.seen,
                t.truth_writes
            );
            if t.per_pfn.len() != pages {
                bad.push(format!("{} pages armed, expected {pages}", t.per_pfn.len()));
            }
            for p in t.per_pfn.iter().filter(|p| p.seen != p.truth_writes) {
                bad.push(format!(
                    "page {}: the watch saw {} of {} refcount changes after arming",
                    p.pfn, p.seen, p.truth_writes
                ));
            }
        }
    }
    let mut released = 0;
    for pfn in &w.pfns {
        let by_watch = |event: &str| {
            events.iter().any(|e| {
                e.pfn == *pfn
                    && e.symbol == "watchpoint"
                    && e.event == event
                    && e.comm == "workload"
                    && !e.stack.is_empty()
            })
        };
        for event in ["pin", "unpin"] {
            if !by_watch(event) {
                bad.push(format!(
                    "pfn {pfn:#x}: no {event} from the workload, with a stack, seen by the watchpoint"
                ));
            }
        }
        let pinned: Vec<&serde_json::Value> = episodes
            .iter()
            .filter(|e| e["pfn"].as_u64() == Some(*pfn) && e["detector"] == "pinned")
            .collect();
        let named = pinned.iter().any(|e| {
            let holders = e["holders"].as_array().map_or(&[][..], Vec::as_slice);
            let pins = holders
                .iter()
                .filter(|h| h["comm"] == "workload" && h["event"] == "pin")
                .count();
            let r = &e["released_by"];
            pins == 1 && r["symbol"] == "watchpoint" && r["event"] == "unpin"
        });
        if named {
            released += 1;
        } else {
            bad.push(format!(
                "pfn {pfn:#x}: no pinned episode with one pin by the workload as holder and the watchpoint's unpin as release: {}",
                serde_json::to_string(&pinned).unwrap_or_default()
            ));
        }
    }
    println!(
        "    pin watch: {released} of {} pages' pinned episodes name the workload's pin and the watchpoint's unpin",
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

fn judge(w: &WatchTruth, hook_gets: &[(String, u64)], pages: usize) -> Vec<String> {
    let mut bad = Vec::new();
    if w.per_pfn.len() != pages {
        bad.push(format!("{} pages armed, expected {pages}", w.per_pfn.len()));
    }
    for p in &w.per_pfn {
        if p.truth_writes < MIN_WATCHED_WRITES {
            bad.push(format!(
                "page {}: {} refcount changes after arming in the trace, expected at least {MIN_WATCHED_WRITES} (armed after the workload took the page?)",
                p.pfn, p.truth_writes
            ));
        }
        let hooked = hook_gets_of(hook_gets, &p.pfn);
        if p.gets <= hooked {
            bad.push(format!(
                "page {}: the watch saw {} gets, the hooks {hooked}: no inline get seen",
                p.pfn, p.gets
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
    fn page(pfn: &str, truth: u64, seen: u64, gets: u64) -> WatchPfn {
        WatchPfn {
            pfn: pfn.into(),
            armed_ns: 1,
            truth_writes: truth,
            seen,
            hits: seen,
            gets,
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
        let hooks = [("0x1".to_string(), 1), ("0x2".to_string(), 1)];
        let good = truth(vec![page("0x1", 4, 4, 2), page("0x2", 5, 5, 3)]);
        assert!(judge(&good, &hooks, 2).is_empty());
        let bad = judge(
            &truth(vec![page("0x1", 4, 3, 2), page("0x2", 1, 1, 1)]),
            &hooks,
            3,
        );
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(bad[0].contains("2 pages armed, expected 3"));
        assert!(bad[1].contains("saw 3 of 4"));
        assert!(bad[2].contains("1 refcount changes after arming"));
        assert!(bad[3].contains("the watch saw 1 gets, the hooks 1"));
        // A page the hooks never saw: any get of the watch is beyond them.
        assert!(judge(&truth(vec![page("0x3", 4, 4, 1)]), &hooks, 1).is_empty());
    }
}
