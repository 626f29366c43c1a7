//! Holders grouped (`dax-hold`): the workload's `vmsplice` that holds (the
//! second: the first fill is drained at once) holds every page, so the report's `holder_groups` has one group for it with all the
//! pages, and the headless stream (`refwatch.out`) says the group opened
//! and cleared, once each, with no per-page holder lines. `hmm-blocked`:
//! a group that comes and goes between two of the stream's looks is said.

use std::{collections::BTreeSet, path::Path};

use anyhow::{Context, Result};
use serde_json::Value;

use super::Workload;

/// The PFNs of a group's `pfn_ranges` (`[[first, last], ...]`).
fn pfns_of(g: &Value) -> BTreeSet<u64> {
    g["pfn_ranges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r[0].as_u64()?, r[1].as_u64()?)))
        .flat_map(|(a, b)| a..=b)
        .collect()
}

/// Whether a stack names `vmsplice`.
fn through_vmsplice(stack: &Value) -> bool {
    stack.as_array().is_some_and(|s| {
        s.iter()
            .any(|f| f.as_str().is_some_and(|f| f.contains("vmsplice")))
    })
}

/// The problems with the groups of a `dax-hold` run in `dir`.
pub fn check_dax_hold(report: &Value, w: &Workload, dir: &Path) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let held: BTreeSet<u64> = w.pfns.iter().copied().collect();
    let hold_end = w.mark("hold_end")?;
    let groups = report["holder_groups"]
        .as_array()
        .context("report.json: holder_groups")?;
    // Groups holding any of the workload's pages: its vmsplice, once.
    let theirs: Vec<&Value> = groups
        .iter()
        .filter(|g| !pfns_of(g).is_disjoint(&held))
        .collect();
    let pid = match theirs.as_slice() {
        [g] if g["comm"] == "workload" && through_vmsplice(&g["stack"]) => {
            if pfns_of(g) != held || g["pages"].as_u64() != Some(held.len() as u64) {
                bad.push(format!(
                    "holder_groups: the vmsplice group holds {} pages {:?}, expected the {} held pages",
                    g["pages"],
                    g["pfn_ranges"],
                    held.len()
                ));
            }
            if g["end_ns"].as_u64().is_none_or(|e| e < hold_end) {
                bad.push(format!(
                    "holder_groups: the vmsplice group ends at {}, expected after the hold",
                    g["end_ns"]
                ));
            }
            g["pid"].as_u64()
        }
        _ => {
            bad.push(format!(
                "holder_groups: expected one group, the workload's vmsplice, holding the {} held pages; groups holding them: {}",
                held.len(),
                serde_json::to_string(&theirs)?
            ));
            None
        }
    };
    let out = std::fs::read_to_string(dir.join("refwatch.out")).context("read refwatch.out")?;
    bad.extend(check_stream(&out, pid, held.len()));
    println!(
        "    holder groups: {} in the report; the workload's vmsplice holds {} pages in one",
        groups.len(),
        held.len()
    );
    Ok(bad)
}

/// The headless stream: one line opening the workload's group (naming
/// vmsplice), the pages it says growing to all `pages`, one line clearing
/// it, and no per-page lines.
fn check_stream(out: &str, pid: Option<u64>, pages: usize) -> Vec<String> {
    let mut bad = Vec::new();
    let Some(pid) = pid else {
        return bad;
    };
    let who = format!("workload pid {pid} (");
    let lines = |prefix: &str| -> Vec<&str> {
        out.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(&who))
            .collect()
    };
    let opened = lines("STUCK group opened: ");
    let cleared = lines("STUCK group cleared: ");
    if opened.len() != 1 || !opened.iter().all(|l| l.contains("vmsplice")) {
        bad.push(format!(
            "refwatch.out: expected one line opening the group of {who}…) naming vmsplice, got {opened:?}"
        ));
    }
    if cleared.len() != 1 {
        bad.push(format!(
            "refwatch.out: expected one line clearing the group of {who}…), got {cleared:?}"
        ));
    }
    // The most pages a line said it holds.
    let said = out
        .lines()
        .filter(|l| l.starts_with("STUCK group") && l.contains(&who))
        .filter_map(|l| {
            let (_, rest) = l.split_once(" holds ")?;
            rest.split_once(" page(s)")?.0.parse::<usize>().ok()
        })
        .max();
    if said != Some(pages) {
        bad.push(format!(
            "refwatch.out: the group's lines say at most {said:?} pages, expected {pages}"
        ));
    }
    let per_page: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("STUCK pfn=") || l.trim_start().starts_with("holder: "))
        .collect();
    if !per_page.is_empty() {
        bad.push(format!(
            "refwatch.out: {} per-page lines without --per-page, first {:?}",
            per_page.len(),
            per_page.first()
        ));
    }
    bad
}

/// `hmm-blocked`: the migration leaves the page behind for milliseconds,
/// between two of the stream's looks; the stream still says the workload's
/// `migration-blocked` group opened and cleared.
pub fn check_blocked_stream(dir: &Path) -> Result<Vec<String>> {
    let out = std::fs::read_to_string(dir.join("refwatch.out")).context("read refwatch.out")?;
    Ok(blocked_stream(&out))
}

fn blocked_stream(out: &str) -> Vec<String> {
    let said = |what: &str| {
        out.lines()
            .filter(|l| {
                l.starts_with(what)
                    && l.contains(" workload pid ")
                    && l.contains("migration-blocked")
            })
            .count()
    };
    let (opened, cleared) = (said("STUCK group opened: "), said("STUCK group cleared: "));
    if (opened, cleared) == (1, 1) {
        Vec::new()
    } else {
        vec![format!(
            "refwatch.out: {opened} line(s) opening and {cleared} clearing the workload's migration-blocked group, expected one each"
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::{blocked_stream, check_stream};

    /// The stream of a dax-hold run as refwatch prints it (synthetic text).
    const GOOD: &str = "refwatch: kernel 6.12, 20 of 20 hooks attached\n\
        STUCK group opened: workload pid 812 (get) holds 10 page(s) 0x48200-0x48209 (fsdax), held since 5.000s, via try_grab_folio+0x1 <- __do_sys_vmsplice+0x9d\n\
        STUCK group grew: workload pid 812 (get) holds 16 page(s) 0x48200-0x4820f (fsdax) (was 10), held since 5.000s\n\
        STUCK group cleared: workload pid 812 (get) no longer holds 16 page(s) 0x48200-0x4820f (fsdax) stuck (held since 5.000s, for 10.0s)\n";

    #[test]
    fn the_stream_check_accepts_groups_and_refuses_per_page_lines() {
        assert_eq!(check_stream(GOOD, Some(812), 16), Vec::<String>::new());
        // Fewer pages than held.
        assert_eq!(check_stream(GOOD, Some(812), 17).len(), 1);
        // Another holder's lines are not the workload's.
        assert_eq!(check_stream(GOOD, Some(813), 16).len(), 3);
        let per_page = format!(
            "{GOOD}STUCK pfn=0x48200 type=fsdax detector=held since=5.000s: x\n  holder: workload pid 812 (get) at 5.000s via a\n"
        );
        assert_eq!(check_stream(&per_page, Some(812), 16).len(), 1);
        let twice = format!("{GOOD}{}", GOOD.lines().nth(1).unwrap_or_default());
        assert_eq!(check_stream(&twice, Some(812), 16).len(), 1);
    }

    #[test]
    fn a_group_that_came_and_went_is_found() {
        let out = "STUCK group opened: workload pid 291 (get) holds 1 page(s) 0x4052 (system), migration-blocked since 39.955s, via a+0x1\n\
            STUCK group cleared: workload pid 291 (get) no longer holds 1 page(s) 0x4052 (system) stuck (migration-blocked since 39.955s, for 0.0s)\n";
        assert_eq!(blocked_stream(out), Vec::<String>::new());
        assert_eq!(
            blocked_stream(out.lines().next().unwrap_or_default()).len(),
            1
        );
        assert_eq!(blocked_stream("").len(), 1);
    }
}
