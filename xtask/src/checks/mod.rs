//! Assertions on what refwatch wrote in a lab run: real kernel events from a
//! real workload, checked against what the workload says it did and when.
//!
//! Each check returns the problems it found (empty: pass) so that one run
//! reports every failure at once. This module reads what the checks share
//! (the kernels' facts, `workload.json`, `events.jsonl`); the checks are
//! grouped by what they judge:
//!
//! - [`probes`]: how refwatch attached (`refwatch probes`, recorded hook modes);
//! - [`fsdax`]: the fs-dax scenarios' events against the workload and the
//!   kernel's fs-dax refcount rules;
//! - [`hmm`]: the device-private scenarios' events, migrations and frees;
//! - [`loss`]: nothing lost, in every scenario but `+tiny-ring`;
//! - [`report`]: refwatch's own report (`report.json`, `--fail-on-stuck`);
//! - [`groups`]: holders grouped, in the report and the headless stream;
//! - [`groundtruth`]: the comparison with the page_ref tracepoints;
//! - [`lines`]: source lines of holders' frames (`report --vmlinux`, kernels built here);
//! - [`filters`]: `--pfn` and `--pid` (the `+pfn-filter`, `+pid-filter` scenarios);
//! - [`metrics`]: the `/metrics` endpoint and the holder's cgroup (`+metrics`);
//! - [`selftests`]: the kernel's HMM selftests under refwatch (`hmm-selftests`);
//! - [`signals`]: how refwatch ended (every scenario) and the signal scenarios;
//! - [`tui`]: the live TUI's screens (`+tui`).

pub mod costs;
pub mod filters;
pub mod fsdax;
pub mod groundtruth;
pub mod groups;
pub mod hmm;
pub mod lines;
pub mod loss;
pub mod metrics;
pub mod probes;
pub mod releases;
pub mod report;
pub mod selftests;
pub mod signals;
pub mod tui;
pub mod watch;

use std::{collections::BTreeMap, fs, path::Path};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// What a kernel's rules say, for the checks.
#[derive(Debug, Clone, Copy)]
pub struct KernelFacts {
    /// Refcount of an idle fs-dax page (1 before 6.15, 0 after).
    pub fsdax_idle: i64,
    /// Direct I/O pins (FOLL_PIN) its pages; older kernels take plain references.
    pub dio_pins: bool,
    /// The file systems' layout-break wait callbacks (`ext4_wait_dax_page`,
    /// `xfs_wait_dax_page`) are out of line (they are inlined before 6.15),
    /// so a sleeping truncate is seen.
    pub wait_callback: bool,
    /// The kernel has the page_ref tracepoints (`CONFIG_DEBUG_PAGE_REF`):
    /// refwatch runs in precise mode and the lab records them as ground
    /// truth for every scenario, the fs-dax ones included.
    pub page_ref_truth: bool,
    /// Some fs-dax reference changes are inline where refwatch runs in
    /// function mode (6.15+: `folio_ref_inc`/`folio_put` that do not free),
    /// so consecutive events of a page need not agree; see
    /// [`fsdax`](self::fsdax)'s refcount steps.
    pub unseen_puts: bool,
    /// Symbols `refwatch probes` must report attached.
    pub must_attach: &'static [&'static str],
    /// How `refwatch probes` must report GUP's `FOLL_PIN` bit: an
    /// enumerator in BTF since 6.5, a `#define` before (verified in the
    /// kernels' BTF: 6.1 has none, 6.12 and 7.2 have `1 << 19`).
    pub foll_pin: &'static str,
}

/// Facts per lab kernel, as verified in the lab.
pub fn facts(kernel: &str) -> Result<KernelFacts> {
    Ok(match kernel {
        "debian-6.1" => KernelFacts {
            fsdax_idle: 1,
            dio_pins: false,
            wait_callback: false,
            page_ref_truth: false,
            unseen_puts: false,
            must_attach: &[
                "__put_devmap_managed_page_refs",
                "try_grab_folio",
                "dax_layout_busy_page_range",
            ],
            foll_pin: "FOLL_PIN=0x40000 (#define",
        },
        "debian-6.12" => KernelFacts {
            fsdax_idle: 1,
            dio_pins: true,
            wait_callback: false,
            page_ref_truth: false,
            unseen_puts: false,
            must_attach: &[
                "__put_devmap_managed_folio_refs",
                "gup_put_folio",
                "dax_layout_busy_page_range",
            ],
            foll_pin: "FOLL_PIN=0x80000 (BTF)",
        },
        "debian-7.2" => KernelFacts {
            fsdax_idle: 0,
            dio_pins: true,
            wait_callback: true,
            page_ref_truth: false,
            unseen_puts: true,
            must_attach: &[
                "free_zone_device_folio",
                "gup_put_folio",
                "dax_layout_busy_page_range",
                "vmf_insert_page_mkwrite",
                "folios_put_refs",
                "ext4_wait_dax_page",
                "xfs_wait_dax_page",
            ],
            foll_pin: "FOLL_PIN=0x80000 (BTF)",
        },
        // Built with CONFIG_DEBUG_PAGE_REF: precise mode, the get/put
        // functions are covered by the page_ref tracepoints.
        "hmm-7.2" => KernelFacts {
            fsdax_idle: 0,
            dio_pins: true,
            wait_callback: true,
            page_ref_truth: true,
            unseen_puts: false,
            must_attach: &[
                "free_zone_device_folio",
                "dax_layout_busy_page_range",
                "ext4_wait_dax_page",
                "migrate_vma_setup",
                "migrate_vma_finalize",
                "remove_migration_ptes",
                "kernel_clone",
                "page_ref_set",
                "page_ref_mod",
                "page_ref_mod_and_test",
                "page_ref_mod_unless",
            ],
            foll_pin: "FOLL_PIN=0x80000 (BTF)",
        },
        other => bail!("no facts for kernel {other}"),
    })
}

/// Milliseconds from `from` to `t` (negative before it), for messages.
fn ms_from(from: u64, t: u64) -> i64 {
    (t as i64 - from as i64) / 1_000_000
}

/// The workload's own account of a scenario.
#[derive(Debug, Clone)]
pub struct Workload {
    pub pfns: Vec<u64>,
    /// `--hold-secs`.
    pub hold_secs: u64,
    pub marks: BTreeMap<String, u64>,
    /// `held_ram_pfn`, `child_pid`, … where the scenario reports them.
    pub facts: BTreeMap<String, u64>,
}

impl Workload {
    pub fn mark(&self, name: &str) -> Result<u64> {
        self.marks
            .get(name)
            .copied()
            .with_context(|| format!("workload.json has no mark {name}"))
    }

    pub fn fact(&self, name: &str) -> Result<u64> {
        self.facts
            .get(name)
            .copied()
            .with_context(|| format!("workload.json has no fact {name}"))
    }
}

pub fn read_workload(dir: &Path) -> Result<Workload> {
    let p = dir.join("workload.json");
    let v: Value =
        serde_json::from_slice(&fs::read(&p).with_context(|| format!("read {}", p.display()))?)
            .with_context(|| format!("parse {}", p.display()))?;
    if v["ok"] != Value::Bool(true) {
        bail!("workload failed: {}", v["error"]);
    }
    let pfns = v["pfns"]
        .as_array()
        .context("workload.json: pfns")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let marks = v["marks"]
        .as_object()
        .context("workload.json: marks")?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
        .collect();
    let facts = v["facts"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let hold_secs = v["hold_secs"]
        .as_u64()
        .context("workload.json: hold_secs")?;
    Ok(Workload {
        pfns,
        hold_secs,
        marks,
        facts,
    })
}

/// One event of `events.jsonl`, the fields the checks use.
#[derive(Debug, Clone)]
pub struct Ev {
    pub ts: u64,
    pub pfn: u64,
    pub event: String,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub pgmap_type: String,
    pub symbol: String,
    pub comm: String,
    pub owner: Option<String>,
    /// `migration` object of migration events.
    pub migration: Option<Value>,
    pub late: bool,
    pub stack: Vec<String>,
}

pub fn read_events(path: &Path) -> Result<Vec<Ev>> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        // The format's required fields, all present on every line.
        for f in [
            "ts_ns",
            "cpu",
            "pid",
            "comm",
            "pfn",
            "event",
            "refcount_before",
            "refcount_after",
            "pgmap_type",
        ] {
            if v.get(f).is_none() {
                bail!("{}:{}: field {f} missing", path.display(), i + 1);
            }
        }
        out.push(Ev {
            ts: v["ts_ns"].as_u64().context("ts_ns")?,
            pfn: v["pfn"].as_u64().context("pfn")?,
            event: v["event"].as_str().context("event")?.to_string(),
            before: v["refcount_before"].as_i64(),
            after: v["refcount_after"].as_i64(),
            pgmap_type: v["pgmap_type"].as_str().context("pgmap_type")?.to_string(),
            symbol: v["symbol"].as_str().unwrap_or_default().to_string(),
            comm: v["comm"].as_str().unwrap_or_default().to_string(),
            owner: v["owner"].as_str().map(str::to_string),
            migration: v.get("migration").filter(|m| m.is_object()).cloned(),
            late: v["late"].as_bool().unwrap_or(false),
            stack: v["stack"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_for_every_lab_kernel() {
        for k in ["debian-6.1", "debian-6.12", "debian-7.2", "hmm-7.2"] {
            assert!(facts(k).is_ok(), "{k}");
        }
        assert!(facts("debian-5.10").is_err());
        assert_eq!(facts("debian-6.1").map(|f| f.fsdax_idle).ok(), Some(1));
        assert_eq!(facts("debian-7.2").map(|f| f.fsdax_idle).ok(), Some(0));
    }
}
