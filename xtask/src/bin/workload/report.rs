//! What a run reports: its marks (printed as `workload: <mark> <ns>`), notes
//! and facts, and the JSON report written atomically to `--out`.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::{Context, Result};
use serde::{
    Serialize,
    ser::{SerializeMap, Serializer},
};

use crate::sys::clock::monotonic_ns;

/// Timestamps of the scenario's steps, in the order they were taken; shared
/// with the truncate thread.
#[derive(Debug, Clone, Default)]
pub struct Marks(Arc<Mutex<Vec<(&'static str, u64)>>>);

impl Marks {
    /// Stamps `name` with CLOCK_MONOTONIC, prints it and returns the stamp.
    pub fn mark(&self, name: &'static str) -> Result<u64> {
        let ns = monotonic_ns().with_context(|| format!("clock_gettime for mark {name}"))?;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, ns));
        println!("workload: {name} {ns}");
        Ok(ns)
    }

    /// A copy of the marks taken so far.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a run collects for its report.
#[derive(Debug, Default)]
pub struct Run {
    pub marks: Marks,
    pub pfns: Vec<u64>,
    pub notes: Vec<String>,
    /// Facts a check needs beyond the PFNs (`held_ram_pfn`, `child_pid`).
    pub facts: BTreeMap<&'static str, u64>,
}

impl Run {
    /// Adds a note to the report and echoes it on stderr.
    pub fn note(&mut self, note: String) {
        eprintln!("workload note: {note}");
        self.notes.push(note);
    }
}

/// The JSON report written to `--out`.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub scenario: &'a str,
    pub pages: u32,
    pub hold_secs: u64,
    pub pfns: &'a [u64],
    pub marks: MarkList<'a>,
    pub ok: bool,
    pub error: Option<String>,
    pub notes: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: &'a BTreeMap<&'static str, u64>,
}

/// Serialises marks as a JSON object whose keys keep the order of the steps.
#[derive(Debug)]
pub struct MarkList<'a>(pub &'a [(&'static str, u64)]);

impl Serialize for MarkList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, ns) in self.0 {
            map.serialize_entry(name, ns)?;
        }
        map.end()
    }
}

/// Writes `report` to a temporary file beside `out`, syncs it, then renames
/// it over `out`, so readers never see half a report.
pub fn write_json_atomically(out: &Path, report: &impl Serialize) -> Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("--out {} has no file name", out.display()))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(".tmp");
    let tmp = out.with_file_name(tmp_name);

    let mut json = serde_json::to_vec_pretty(report).context("serialise the report")?;
    json.push(b'\n');
    let mut file = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(&json)
        .with_context(|| format!("write {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, out).with_context(|| format!("rename {} to {}", tmp.display(), out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_has_the_agreed_shape() -> Result<()> {
        let marks = [("start", 30), ("touched", 10), ("end", 20)];
        let notes = ["a note".to_owned()];
        let report = Report {
            scenario: "dax-hold",
            pages: 2,
            hold_secs: 3,
            pfns: &[0x100, 0x101],
            marks: MarkList(&marks),
            ok: false,
            error: Some("boom".to_owned()),
            notes: &notes,
            facts: &BTreeMap::new(),
        };
        let json = serde_json::to_string(&report)?;
        assert_eq!(
            json,
            r#"{"scenario":"dax-hold","pages":2,"hold_secs":3,"pfns":[256,257],"marks":{"start":30,"touched":10,"end":20},"ok":false,"error":"boom","notes":["a note"]}"#
        );
        Ok(())
    }
}
