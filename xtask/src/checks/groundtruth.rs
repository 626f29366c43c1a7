//! The lab's ground truth comparison (`groundtruth.json`, written by
//! `crate::groundtruth`): refwatch's refcounts against the page_ref
//! tracepoints.

use std::{fs, path::Path};

use anyhow::{Context, Result};
use serde_json::Value;

/// The lab's ground truth comparison: every refcount refwatch reported
/// matches the page_ref tracepoints; in precise mode every get and put was seen.
pub fn check_groundtruth(functions: bool, dir: &Path) -> Result<Vec<String>> {
    let p = dir.join("groundtruth.json");
    let g: Value = serde_json::from_slice(
        &fs::read(&p).with_context(|| format!("read {} (the lab writes it)", p.display()))?,
    )
    .with_context(|| format!("parse {}", p.display()))?;
    let n = |k: &str| g[k].as_u64().unwrap_or(0);
    let mut bad = Vec::new();
    let mode = g["mode"].as_str().unwrap_or_default();
    let want = if functions { "functions" } else { "precise" };
    if mode != want {
        bad.push(format!("ground truth mode {mode}, expected {want}"));
    }
    if n("truth_events") == 0 || n("observations") == 0 {
        bad.push("no truth events or no observations to compare".into());
    }
    if n("mismatched") != 0 {
        bad.push(format!(
            "{} of {} refcount observations differ from the page_ref truth, first: {}",
            n("mismatched"),
            n("observations"),
            g["mismatches"][0]
        ));
    }
    for k in ["truth_lost", "truth_overwritten", "seen_dropped"] {
        if n(k) != 0 {
            bad.push(format!("{k}: {}", n(k)));
        }
    }
    if !functions && (n("seen_gets"), n("seen_puts")) != (n("truth_gets"), n("truth_puts")) {
        bad.push(format!(
            "precise mode saw {}/{} gets and {}/{} puts",
            n("seen_gets"),
            n("truth_gets"),
            n("seen_puts"),
            n("truth_puts")
        ));
    }
    println!(
        "    ground truth ({mode}): {}/{} observations match ({} before the truth), gets {}/{}, puts {}/{}",
        n("matched"),
        n("observations"),
        n("before_truth"),
        n("seen_gets"),
        n("truth_gets"),
        n("seen_puts"),
        n("truth_puts")
    );
    Ok(bad)
}
