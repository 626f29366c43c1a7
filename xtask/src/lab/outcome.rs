//! What a lab run leaves: the exit codes and notes the guest wrote per
//! scenario, `report.json` beside each recording, and `lab.json`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cmd;
use crate::kernels::KernelId;

/// Exit codes the guest recorded for one scenario (`None`: file missing).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioOutcome {
    pub name: String,
    pub probes_rc: Option<i32>,
    pub refwatch_rc: Option<i32>,
    /// Why refwatch's run was not clean, e.g. "exited before ready",
    /// "not ready after 60 s", "SIGKILL after 30 s".
    pub refwatch_note: Option<String>,
    /// The workload's exit code (`hmm-selftests`: the selftest binary's).
    pub workload_rc: Option<i32>,
    /// Why `report.json` could not be written (`refwatch report --json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_error: Option<String>,
}

/// What a lab run produced; also written to `<out>/lab.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabResult {
    pub kernel: KernelId,
    /// `uname -r` in the guest.
    pub release: String,
    /// The kernel image package and its version.
    pub package: String,
    pub package_version: String,
    /// Version of the suite's `linux-image-amd64`.
    pub meta_version: String,
    pub scenarios: Vec<ScenarioOutcome>,
    /// Whole run: build, initramfs, boot, extraction.
    #[serde(with = "secs")]
    pub elapsed: Duration,
    /// qemu start to qemu exit.
    #[serde(with = "secs")]
    pub guest_elapsed: Duration,
    pub out_dir: PathBuf,
}

impl LabResult {
    pub fn summary(&self) -> String {
        let mut text = format!(
            "lab {} ({} {}, uname -r {}): guest {:.1} s, total {:.1} s, results in {}",
            self.kernel,
            self.package,
            self.package_version,
            self.release,
            self.guest_elapsed.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.out_dir.display()
        );
        let rc = |v: Option<i32>| v.map_or("-".to_owned(), |v| v.to_string());
        for s in &self.scenarios {
            text.push_str(&format!(
                "\n  {:<20} probes rc {:<3} refwatch rc {:<3} workload rc {}{}",
                s.name,
                rc(s.probes_rc),
                rc(s.refwatch_rc),
                rc(s.workload_rc),
                s.refwatch_note
                    .as_ref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default()
            ));
            if let Some(e) = &s.report_error {
                text.push_str(&format!("\n  {:<20} no report.json: {e}", ""));
            }
        }
        text
    }
}

/// Durations as fractional seconds in JSON.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// Leaves `report.json` beside a scenario's recording: the output of
/// `refwatch report --json` (the guest's static refwatch runs on the host).
pub(super) fn write_report(refwatch: &Path, dir: &Path) -> Result<()> {
    let text = cmd::stdout(
        Command::new(refwatch)
            .arg("report")
            .arg("--json")
            .arg(dir.join("recording")),
    )?;
    let path = dir.join("report.json");
    fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

/// How refwatch observed references in a scenario, from its recording's
/// header: "precise" (page_ref tracepoints) or "functions".
pub fn recorded_mode(dir: &Path) -> &'static str {
    let header = fs::read_to_string(dir.join("recording"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok());
    match header.and_then(|h| h.get("precise").and_then(|p| p.as_bool())) {
        Some(true) => "precise",
        _ => "functions",
    }
}

fn read_rc(path: &Path) -> (Option<i32>, Option<String>) {
    let Ok(text) = fs::read_to_string(path) else {
        return (None, None);
    };
    let mut lines = text.lines();
    let rc = lines.next().and_then(|l| l.trim().parse().ok());
    let note = lines
        .filter_map(|l| l.strip_prefix("note: "))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    (rc, (!note.is_empty()).then(|| note.join("; ")))
}

pub(super) fn read_outcome(dir: &Path, name: &str) -> ScenarioOutcome {
    let (probes_rc, _) = read_rc(&dir.parent().unwrap_or(dir).join("probes.rc"));
    let (refwatch_rc, refwatch_note) = read_rc(&dir.join("refwatch.rc"));
    let (workload_rc, _) = match read_rc(&dir.join("workload.rc")) {
        (None, _) => read_rc(&dir.join("selftest.rc")),
        rc => rc,
    };
    ScenarioOutcome {
        name: name.to_owned(),
        probes_rc,
        refwatch_rc,
        refwatch_note,
        workload_rc,
        report_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_files_parse() {
        let dir = std::env::temp_dir().join(format!("xtask-lab-rc-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch dir");
        fs::write(dir.join("a"), "130\nnote: SIGKILL after 30 s\n").expect("write");
        fs::write(dir.join("b"), "0\n").expect("write");
        assert_eq!(
            read_rc(&dir.join("a")),
            (Some(130), Some("SIGKILL after 30 s".to_owned()))
        );
        assert_eq!(read_rc(&dir.join("b")), (Some(0), None));
        assert_eq!(read_rc(&dir.join("missing")), (None, None));
        let _ = fs::remove_dir_all(&dir);
    }
}
