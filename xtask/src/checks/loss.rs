//! Nothing lost: every lab scenario but those made to lose events
//! ([`may_lose`]) must have every event refwatch's programs emitted reach
//! the recording. Judged from both sides: `report.json` (`dropped` 0, no
//! page with gaps) and the recording itself (no `gap` line, no `tick` or
//! `end` line counting a drop), so that a report that missed a loss cannot
//! hide it.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::lab::Variant;

/// The two places that allow loss: `+tiny-ring` runs with a 4096-byte ring
/// to make refwatch lose events (see [`super::report::check_tiny_ring`]),
/// `+rate-cap` with `--max-rate` to make it count events instead of
/// recording them ([`super::report::check_rate_cap`]). Every other
/// scenario, the signal scenarios and `hmm-selftests` included, must lose
/// nothing.
pub fn may_lose(variant: Variant) -> bool {
    matches!(variant, Variant::TinyRing | Variant::RateCap)
}

/// What the recording's lines say about loss.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RecordingLoss {
    /// `{"type":"gap",…}` lines.
    pub gap_lines: u64,
    /// The first of them, for the message.
    pub first_gap: Option<String>,
    /// The highest `dropped` of the `tick` and `end` lines.
    pub dropped: u64,
}

/// Scans a recording's lines (JSON lines, a header first).
pub fn scan(reader: impl BufRead) -> Result<RecordingLoss> {
    let mut out = RecordingLoss::default();
    for line in reader.split(b'\n') {
        let line = line.context("read the recording")?;
        // Events are most lines: look closer only at the other types.
        // refwatch writes compact JSON with the type first.
        let kind = if line.starts_with(br#"{"type":"gap""#) {
            "gap"
        } else if line.starts_with(br#"{"type":"tick""#) || line.starts_with(br#"{"type":"end""#) {
            "count"
        } else {
            continue;
        };
        let text = String::from_utf8_lossy(&line);
        if kind == "gap" {
            out.gap_lines += 1;
            if out.first_gap.is_none() {
                out.first_gap = Some(text.chars().take(120).collect());
            }
            continue;
        }
        // A line cut by a kill is no count.
        if let Some(d) = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["dropped"].as_u64())
        {
            out.dropped = out.dropped.max(d);
        }
    }
    Ok(out)
}

/// The problems `report` (a `report.json`) and `recording` show: empty
/// when nothing was lost.
pub fn judge(report: &Value, recording: &RecordingLoss) -> Vec<String> {
    let mut bad = Vec::new();
    let gaps = report["gaps"].as_array();
    // A recording without --max-rate caps nothing (`capped` absent or 0).
    let capped = report["capped"].as_u64().unwrap_or(0);
    if report["dropped"].as_u64() != Some(0) || capped != 0 || gaps.is_none_or(|g| !g.is_empty()) {
        bad.push(format!(
            "events were lost: report.json says dropped {}, capped {capped}, {} page(s) with gaps",
            report["dropped"],
            gaps.map_or("?".to_owned(), |g| g.len().to_string())
        ));
    }
    if recording.gap_lines > 0 || recording.dropped > 0 {
        bad.push(format!(
            "events were lost: the recording counts {} dropped and has {} gap line(s){}",
            recording.dropped,
            recording.gap_lines,
            recording
                .first_gap
                .as_ref()
                .map(|g| format!(", the first {g}"))
                .unwrap_or_default()
        ));
    }
    bad
}

/// The recording of scenario folder `dir` and its rotated parts
/// (`recording.1`, `recording.2`, …).
fn recording_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let rotated = name
            .strip_prefix("recording.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if name == "recording" || rotated {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Checks scenario folder `dir`: its `report.json` and its recording.
pub fn check_lossless(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("report.json");
    let report: Value = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("read {}", path.display()))?,
    )
    .with_context(|| format!("parse {}", path.display()))?;
    let files = recording_files(dir)?;
    if files.is_empty() {
        return Ok(vec![format!("no recording in {}", dir.display())]);
    }
    let mut seen = RecordingLoss::default();
    for f in files {
        let file = fs::File::open(&f).with_context(|| format!("open {}", f.display()))?;
        let part = scan(BufReader::new(file)).with_context(|| f.display().to_string())?;
        seen.gap_lines += part.gap_lines;
        seen.first_gap = seen.first_gap.or(part.first_gap);
        seen.dropped = seen.dropped.max(part.dropped);
    }
    Ok(judge(&report, &seen))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // Synthetic recordings, in the format refwatch writes.
    const HEADER: &str = r#"{"type":"header","format":"refwatch-recording","version":1}"#;
    const EVENT: &str = r#"{"type":"event","ts_ns":5,"pfn":4096,"event":"get","comm":"gap"}"#;

    #[test]
    fn a_whole_recording_and_report_pass() -> Result<()> {
        let rec = format!(
            "{HEADER}\n{EVENT}\n{{\"type\":\"tick\",\"now_ns\":9,\"dropped\":0}}\n{{\"type\":\"end\",\"now_ns\":10,\"events\":1,\"dropped\":0}}\n"
        );
        let seen = scan(rec.as_bytes())?;
        assert_eq!(seen, RecordingLoss::default());
        let report = json!({"dropped": 0, "gaps": []});
        assert!(judge(&report, &seen).is_empty());
        Ok(())
    }

    #[test]
    fn gap_lines_and_drop_counts_fail_even_when_the_report_says_nothing() -> Result<()> {
        let rec = format!(
            "{HEADER}\n{EVENT}\n{{\"type\":\"tick\",\"now_ns\":9,\"dropped\":3}}\n{{\"type\":\"gap\",\"ts_ns\":9,\"pfn\":4096}}\n{{\"type\":\"gap\",\"ts_ns\":9}}\n{{\"type\":\"end\",\"now_ns\":10,\"events\":1,\"dr"
        );
        let seen = scan(rec.as_bytes())?;
        assert_eq!((seen.gap_lines, seen.dropped), (2, 3));
        assert!(
            seen.first_gap
                .as_deref()
                .is_some_and(|g| g.contains("4096"))
        );
        let bad = judge(&json!({"dropped": 0, "gaps": []}), &seen);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("counts 3 dropped and has 2 gap line(s)"));
        Ok(())
    }

    #[test]
    fn the_report_alone_fails_too() {
        let clean = RecordingLoss::default();
        for report in [
            json!({"dropped": 2, "gaps": []}),
            json!({"dropped": 0, "gaps": [{"pfn": 1, "gaps": 1, "unknown": true}]}),
            json!({"events": 5}),
        ] {
            assert_eq!(judge(&report, &clean).len(), 1, "{report}");
        }
    }

    #[test]
    fn only_tiny_ring_may_lose() {
        use crate::lab::{Signal, split_variant};
        assert!(may_lose(split_variant("dax-splice+tiny-ring").1));
        for s in [
            "hmm-selftests",
            "dax-hold+late",
            "dax-splice",
            "hmm-migrate+functions",
        ] {
            assert!(!may_lose(split_variant(s).1), "{s}");
        }
        assert!(!may_lose(Variant::Signal(Signal::Kill)));
    }

    #[test]
    fn rotated_parts_count() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-loss-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("report.json"), r#"{"dropped":0,"gaps":[]}"#)?;
        fs::write(dir.join("recording"), format!("{HEADER}\n{EVENT}\n"))?;
        fs::write(dir.join("recording.during-hold"), "{\"type\":\"gap\"}\n")?;
        assert!(check_lossless(&dir)?.is_empty());
        fs::write(
            dir.join("recording.1"),
            format!("{HEADER}\n{{\"type\":\"gap\",\"ts_ns\":1}}\n"),
        )?;
        let bad = check_lossless(&dir)?;
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(bad.len(), 1, "{bad:?}");
        Ok(())
    }
}
