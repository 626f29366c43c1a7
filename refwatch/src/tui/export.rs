//! Writing an export from the view: the selected PFN or the filtered set, in
//! the formats of [`crate::format::export`].

use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    format::export::{self, ExportFormat},
    format::json::{Format, JsonEvent, to_json},
    state::Tracker,
    symbols::kallsyms::Kallsyms,
};

fn extension(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::Jsonl => "jsonl",
        ExportFormat::Csv => "csv",
        ExportFormat::Perfetto => "perfetto.json",
    }
}

/// Creates a new file in `dir` named after `label` (never overwrites).
fn create(dir: &Path, label: &str, format: ExportFormat) -> Result<(PathBuf, File)> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for n in 0..100 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = dir.join(format!(
            "refwatch-{label}-{stamp}{suffix}.{}",
            extension(format)
        ));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
        }
    }
    bail!("no free file name for the export in {}", dir.display())
}

/// Writes `events` to a new file in `dir`; returns its path and the number
/// of events. Kernel addresses are hidden unless `raw_pointers`.
pub fn write<'a>(
    dir: &Path,
    label: &str,
    format: ExportFormat,
    events: impl Iterator<Item = &'a JsonEvent>,
    raw_pointers: bool,
) -> Result<(PathBuf, usize)> {
    let (path, f) = create(dir, label, format)?;
    let result = (|| -> Result<usize> {
        let mut w = BufWriter::new(f);
        let n = export::write(format, events, &mut w, raw_pointers)?;
        w.flush().context("flush export")?;
        Ok(n)
    })();
    match result {
        Ok(n) => Ok((path, n)),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e).with_context(|| format!("write {}", path.display()))
        }
    }
}

/// The events a live tracker keeps for `pfns`, oldest first, in export form.
pub fn live_events(
    tracker: &Tracker,
    pfns: &[u64],
    hooks: &std::collections::HashMap<u32, String>,
    syms: &Kallsyms,
    format: Format,
) -> Vec<JsonEvent> {
    let mut out: Vec<JsonEvent> = pfns
        .iter()
        .filter_map(|p| tracker.page(*p))
        .flat_map(|page| page.history.iter())
        .map(|ev| {
            let sym = hooks.get(&ev.hook).map_or("?", String::as_str);
            to_json(&ev, sym, syms, format)
        })
        .collect();
    out.sort_by_key(|e| (e.ts_ns, e.pfn));
    out
}
