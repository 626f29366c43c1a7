//! How refwatch attached: `refwatch probes` output and the hook modes a
//! recording's header names.

use std::{fs, path::Path};

use anyhow::{Context, Result};
use serde_json::Value;

use super::facts;

/// Checks `refwatch probes` output for a kernel.
pub fn check_probes(kernel: &str, dir: &Path) -> Result<Vec<String>> {
    let f = facts(kernel)?;
    let text = fs::read_to_string(dir.join("probes.txt")).context("read probes.txt")?;
    let rc = fs::read_to_string(dir.join("probes.rc")).unwrap_or_default();
    let mut bad = Vec::new();
    if rc.trim() != "0" {
        bad.push(format!("refwatch probes exited {}", rc.trim()));
    }
    if !text.contains(f.foll_pin) {
        bad.push(format!(
            "refwatch probes does not say {}: the GUP grabs would misjudge pins",
            f.foll_pin
        ));
    }
    if kernel == "hmm-7.2" && !text.contains("references: precise") {
        bad.push("refwatch probes does not report precise mode".into());
    }
    let attached = |text: &str, sym: &str, mode: Option<&str>| {
        text.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.contains(&sym)
                && mode.is_none_or(|m| words.contains(&m))
                && l.trim_end().ends_with("attached")
                && !l.contains("not attached")
        })
    };
    for sym in f.must_attach {
        if !attached(&text, sym, None) {
            bad.push(format!("refwatch probes does not show {sym} attached"));
        }
    }
    // `--mode kprobe`: the same hooks through kprobes (tracepoints stay tp_btf).
    let text =
        fs::read_to_string(dir.join("probes-kprobe.txt")).context("read probes-kprobe.txt")?;
    let rc = fs::read_to_string(dir.join("probes-kprobe.rc")).unwrap_or_default();
    if rc.trim() != "0" {
        bad.push(format!(
            "refwatch probes --mode kprobe exited {}",
            rc.trim()
        ));
    }
    for sym in f.must_attach {
        let mode = if sym.starts_with("page_ref_") {
            "tp_btf"
        } else {
            "kprobe"
        };
        if !attached(&text, sym, Some(mode)) {
            bad.push(format!(
                "refwatch probes --mode kprobe does not show {sym} attached by {mode}"
            ));
        }
    }
    Ok(bad)
}

/// Every hook the recording in `dir` says was attached used `mode` (or
/// `tp_btf`, for tracepoints), and at least one did.
pub fn check_recorded_modes(dir: &Path, mode: &str) -> Result<Vec<String>> {
    let p = dir.join("recording");
    let text = fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
    let header: Value = serde_json::from_str(text.lines().next().unwrap_or_default())
        .with_context(|| format!("{}: header", p.display()))?;
    let hooks = header["hooks"]
        .as_array()
        .context("recording header: hooks")?;
    let mut bad = Vec::new();
    let mut used = 0;
    for h in hooks {
        match h["mode"].as_str() {
            Some(m) if m == mode => used += 1,
            Some("tp_btf") | None => {}
            Some(other) => bad.push(format!(
                "hook {} attached by {other}, expected {mode}",
                h["logical"]
            )),
        }
    }
    if used == 0 {
        bad.push(format!("no hook attached by {mode}"));
    }
    Ok(bad)
}
