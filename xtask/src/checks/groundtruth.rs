//! The lab's ground truth comparison (`groundtruth.json`, written by
//! `crate::groundtruth`): refwatch's refcounts against the page_ref
//! tracepoints, judged page by page.

use std::{fs, path::Path};

use anyhow::{Context, Result};

use crate::groundtruth::GroundTruth;

/// The lab's ground truth comparison in `dir`: every refcount refwatch
/// reported matches the page_ref tracepoints, page by page, and each page
/// ends where the truth ends; in precise mode every get and put of every
/// page was seen. `groundtruth.json` is read into its own type, so a field
/// missing from it is an error, never a zero.
pub fn check_groundtruth(functions: bool, dir: &Path) -> Result<Vec<String>> {
    let p = dir.join("groundtruth.json");
    let g: GroundTruth = serde_json::from_slice(
        &fs::read(&p).with_context(|| format!("read {} (the lab writes it)", p.display()))?,
    )
    .with_context(|| format!("parse {}", p.display()))?;
    let bad = judge(&g, functions);
    println!(
        "    ground truth ({}): {}/{} observations match ({} before the truth), gets {}/{}, puts {}/{}, {} pages",
        g.mode,
        g.matched,
        g.observations,
        g.before_truth,
        g.seen_gets,
        g.truth_gets,
        g.seen_puts,
        g.truth_puts,
        g.per_pfn.len()
    );
    Ok(bad)
}

/// The problems of one comparison.
fn judge(g: &GroundTruth, functions: bool) -> Vec<String> {
    let mut bad = Vec::new();
    let want = if functions { "functions" } else { "precise" };
    if g.mode != want {
        bad.push(format!("ground truth mode {}, expected {want}", g.mode));
    }
    if g.truth_events == 0 || g.observations == 0 {
        bad.push("no truth events or no observations to compare".into());
    }
    if g.mismatched != 0 {
        bad.push(format!(
            "{} of {} refcount observations differ from the page_ref truth, first: {}",
            g.mismatched,
            g.observations,
            g.mismatches
                .first()
                .map(|m| serde_json::to_string(m).unwrap_or_default())
                .unwrap_or_default()
        ));
    }
    // Either side incomplete: the comparison would prove nothing.
    for (k, v) in [
        ("truth_lost", g.truth_lost),
        ("truth_lost_unknown", g.truth_lost_unknown),
        ("truth_overwritten", g.truth_overwritten),
        ("seen_dropped", g.seen_dropped),
    ] {
        if v != 0 {
            bad.push(format!("{k}: {v}"));
        }
    }
    if g.trace_truncated {
        bad.push("the page_ref trace was cut short".into());
    }
    if g.recording_truncated {
        bad.push("refwatch's recording was cut short".into());
    }
    if !g.unseen_pfns.is_empty() {
        bad.push(format!(
            "pages the page_ref truth changed and refwatch has no event of: {:?}",
            g.unseen_pfns
        ));
    }
    if g.pfns.is_empty() || g.per_pfn.len() != g.pfns.len() {
        bad.push(format!(
            "{} pages compared, {} summarised",
            g.pfns.len(),
            g.per_pfn.len()
        ));
    }
    for p in &g.per_pfn {
        if p.truth_events == 0 {
            bad.push(format!(
                "pfn {}: no page_ref truth event (is the trace filter right?)",
                p.pfn
            ));
            continue;
        }
        let last_truth = p.last_truth.as_ref().map(|t| t.count);
        if p.last_seen != last_truth {
            bad.push(format!(
                "pfn {}: refwatch's last refcount {:?}, the truth's {:?}",
                p.pfn, p.last_seen, last_truth
            ));
        }
        if !functions && (p.seen_gets, p.seen_puts) != (p.truth_gets, p.truth_puts) {
            bad.push(format!(
                "pfn {}: precise mode saw {}/{} gets and {}/{} puts",
                p.pfn, p.seen_gets, p.truth_gets, p.seen_puts, p.truth_puts
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groundtruth::{PfnSummary, TruthPoint};

    fn pfn(name: &str, gets: (u64, u64), puts: (u64, u64), last: (i64, i64)) -> PfnSummary {
        PfnSummary {
            pfn: name.into(),
            truth_events: gets.0 + puts.0,
            truth_gets: gets.0,
            truth_puts: puts.0,
            seen_events: gets.1 + puts.1,
            seen_gets: gets.1,
            seen_puts: puts.1,
            last_seen: Some(last.1),
            start_count: Some(0),
            first_truth: None,
            last_truth: Some(TruthPoint {
                ts_ns: 1,
                count: last.0,
                event: "page_ref_mod".into(),
                val: -1,
                ret: None,
            }),
            observations: 2,
            matched: 2,
            mismatched: 0,
            before_truth: 0,
        }
    }

    fn gt(per_pfn: Vec<PfnSummary>) -> GroundTruth {
        GroundTruth {
            mode: "precise".into(),
            slack_ns: 1,
            pfns: per_pfn.iter().map(|p| p.pfn.clone()).collect(),
            observations: 4,
            matched: 4,
            mismatched: 0,
            before_truth: 0,
            match_rate: 1.0,
            max_slack_used_ns: 0,
            truth_events: per_pfn.iter().map(|p| p.truth_events).sum(),
            truth_gets: per_pfn.iter().map(|p| p.truth_gets).sum(),
            seen_gets: per_pfn.iter().map(|p| p.seen_gets).sum(),
            truth_puts: per_pfn.iter().map(|p| p.truth_puts).sum(),
            seen_puts: per_pfn.iter().map(|p| p.seen_puts).sum(),
            truth_sets: 0,
            truth_lost: 0,
            truth_lost_unknown: 0,
            truth_overwritten: 0,
            truth_failed_unless: 0,
            truth_other_pfns: 0,
            seen_events: 4,
            seen_other_pfns: 0,
            unseen_pfns: Vec::new(),
            seen_dropped: 0,
            recording_truncated: false,
            trace_truncated: false,
            notes: Vec::new(),
            per_pfn,
            mismatches: Vec::new(),
            watch: None,
        }
    }

    #[test]
    fn a_clean_comparison_passes() {
        let g = gt(vec![pfn("0x1", (1, 1), (1, 1), (0, 0))]);
        assert_eq!(judge(&g, false), Vec::<String>::new());
    }

    #[test]
    fn a_miss_and_a_duplicate_on_two_pages_do_not_cancel() {
        let g = gt(vec![
            pfn("0x1", (2, 1), (1, 1), (1, 1)),
            pfn("0x2", (1, 2), (1, 1), (0, 0)),
        ]);
        assert_eq!((g.truth_gets, g.seen_gets), (3, 3));
        let bad = judge(&g, false);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad[0].contains("pfn 0x1: precise mode saw 1/2 gets"),
            "{bad:?}"
        );
        // Function mode does not count gets and puts.
        assert!(
            judge(
                &GroundTruth {
                    mode: "functions".into(),
                    ..g
                },
                true
            )
            .is_empty()
        );
    }

    #[test]
    fn a_page_must_end_where_the_truth_ends() {
        let g = gt(vec![pfn("0x1", (1, 1), (1, 1), (0, 1))]);
        let bad = judge(&g, false);
        assert!(
            bad.iter()
                .any(|b| b.contains("last refcount Some(1), the truth's Some(0)")),
            "{bad:?}"
        );
    }

    #[test]
    fn unseen_pages_lost_truth_and_cut_inputs_fail() {
        let mut g = gt(vec![pfn("0x1", (1, 1), (1, 1), (0, 0))]);
        g.unseen_pfns = vec!["0x2".into()];
        g.truth_lost_unknown = 1;
        g.trace_truncated = true;
        g.recording_truncated = true;
        let bad = judge(&g, false);
        assert_eq!(bad.len(), 4, "{bad:?}");
    }

    #[test]
    fn a_page_without_truth_fails() {
        let mut p = pfn("0x1", (0, 1), (0, 0), (0, 1));
        p.last_truth = None;
        let bad = judge(&gt(vec![p]), false);
        assert!(
            bad.iter().any(|b| b.contains("no page_ref truth event")),
            "{bad:?}"
        );
    }

    #[test]
    fn a_missing_field_is_an_error() {
        let g = gt(vec![pfn("0x1", (1, 1), (1, 1), (0, 0))]);
        let mut v = serde_json::to_value(&g).expect("to json");
        assert!(serde_json::from_value::<GroundTruth>(v.clone()).is_ok());
        v.as_object_mut().expect("object").remove("truth_lost");
        assert!(serde_json::from_value::<GroundTruth>(v).is_err());
    }
}
