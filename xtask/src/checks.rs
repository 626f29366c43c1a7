//! Assertions on what refwatch wrote in a lab run: real kernel events from a
//! real workload, checked against what the workload says it did and when.
//!
//! Each check returns the problems it found (empty: pass) so that one run
//! reports every failure at once.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

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
    /// Symbols `refwatch probes` must report attached.
    pub must_attach: &'static [&'static str],
}

/// Facts per lab kernel, as verified in the lab.
pub fn facts(kernel: &str) -> Result<KernelFacts> {
    Ok(match kernel {
        "debian-6.1" => KernelFacts {
            fsdax_idle: 1,
            dio_pins: false,
            wait_callback: false,
            must_attach: &[
                "__put_devmap_managed_page_refs",
                "try_grab_folio",
                "dax_layout_busy_page_range",
            ],
        },
        "debian-6.12" => KernelFacts {
            fsdax_idle: 1,
            dio_pins: true,
            wait_callback: false,
            must_attach: &[
                "__put_devmap_managed_folio_refs",
                "gup_put_folio",
                "dax_layout_busy_page_range",
            ],
        },
        "debian-7.2" => KernelFacts {
            fsdax_idle: 0,
            dio_pins: true,
            wait_callback: true,
            must_attach: &[
                "free_zone_device_folio",
                "gup_put_folio",
                "dax_layout_busy_page_range",
                "vmf_insert_page_mkwrite",
                "folios_put_refs",
                "ext4_wait_dax_page",
                "xfs_wait_dax_page",
            ],
        },
        // Built with CONFIG_DEBUG_PAGE_REF: precise mode, the get/put
        // functions are covered by the page_ref tracepoints.
        "hmm-7.2" => KernelFacts {
            fsdax_idle: 0,
            dio_pins: true,
            wait_callback: true,
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
        },
        other => bail!("no facts for kernel {other}"),
    })
}

/// The workload's own account of a scenario.
#[derive(Debug, Clone)]
pub struct Workload {
    pub pfns: Vec<u64>,
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
    Ok(Workload { pfns, marks, facts })
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

/// Checks one scenario's results in `dir` for `kernel`, its files on the
/// file system `fs` (`ext4` or `xfs`). Returns the problems.
pub fn check_scenario(kernel: &str, scenario: &str, fs: &str, dir: &Path) -> Result<Vec<String>> {
    let f = facts(kernel)?;
    let w = read_workload(dir)?;
    let events = read_events(&dir.join("events.jsonl"))?;
    let mut bad = Vec::new();
    let touched: BTreeSet<u64> = w.pfns.iter().copied().collect();
    if touched.len() != w.pfns.len() || touched.is_empty() {
        bad.push(format!(
            "workload reported {} PFNs, {} distinct",
            w.pfns.len(),
            touched.len()
        ));
    }
    let dax: Vec<&Ev> = events.iter().filter(|e| e.pgmap_type == "fsdax").collect();
    let seen: BTreeSet<u64> = dax.iter().map(|e| e.pfn).collect();
    let missing: Vec<_> = touched.difference(&seen).collect();
    if !missing.is_empty() {
        bad.push(format!(
            "{} touched PFNs have no event: {:#x?}",
            missing.len(),
            missing
        ));
    }
    let extra: Vec<_> = seen.difference(&touched).collect();
    if !extra.is_empty() {
        bad.push(format!(
            "events for fs-dax PFNs the workload did not touch: {extra:#x?}"
        ));
    }
    // The kernel's rule: never below idle; every page back at idle at the end.
    for e in &dax {
        for v in [e.before, e.after].into_iter().flatten() {
            if v < f.fsdax_idle {
                bad.push(format!(
                    "pfn {:#x}: refcount {v} below the idle value {} in {} ({})",
                    e.pfn, f.fsdax_idle, e.event, e.symbol
                ));
            }
        }
    }
    for pfn in &touched {
        let last = dax
            .iter()
            .rev()
            .find(|e| e.pfn == *pfn && e.after.is_some());
        match last.and_then(|e| e.after) {
            Some(v) if v == f.fsdax_idle => {}
            other => bad.push(format!(
                "pfn {pfn:#x}: last refcount {other:?}, expected idle {} at the end",
                f.fsdax_idle
            )),
        }
    }
    if f.fsdax_idle == 0 && scenario == "dax-hold" {
        bad.extend(check_mapping_refs(&dax, &touched, w.mark("hold_end")?));
    }
    match scenario {
        "dax-hold" | "dax-truncate-pinned" => {
            let hold_start = w.mark("hold_start")?;
            let hold_end = w.mark("hold_end")?;
            for pfn in &touched {
                for e in dax
                    .iter()
                    .filter(|e| e.pfn == *pfn && e.ts > hold_start && e.ts < hold_end)
                {
                    if e.event == "free" || e.after == Some(f.fsdax_idle) {
                        bad.push(format!(
                            "pfn {pfn:#x}: {} to refcount {:?} during the hold ({} ms after it began)",
                            e.event,
                            e.after,
                            (e.ts - hold_start) / 1_000_000
                        ));
                    }
                }
                let released = dax
                    .iter()
                    .any(|e| e.pfn == *pfn && e.ts >= hold_end && e.after == Some(f.fsdax_idle));
                if !released {
                    bad.push(format!("pfn {pfn:#x}: never back at idle after the hold"));
                }
            }
            if scenario == "dax-truncate-pinned" {
                let t0 = w.mark("truncate_start")?;
                let t1 = w.mark("truncate_end")?;
                let waits: BTreeSet<u64> = dax
                    .iter()
                    .filter(|e| e.event == "layout_wait" && e.ts >= t0 && e.ts <= t1)
                    .map(|e| e.pfn)
                    .collect();
                if waits.is_empty() || !waits.is_subset(&touched) {
                    bad.push(format!(
                        "expected layout_wait events on held PFNs during the truncate, got {waits:#x?}"
                    ));
                }
                // The layout break came through this file system's own code
                // (`ext4_break_layouts`, `xfs_break_dax_layouts`, …).
                let fs_prefix = format!("{fs}_");
                let through_fs = dax.iter().any(|e| {
                    e.event == "layout_wait" && e.stack.iter().any(|f| f.starts_with(&fs_prefix))
                });
                if !through_fs {
                    bad.push(format!(
                        "no layout_wait came through {fs}: no {fs}_* frame in their stacks"
                    ));
                }
                // The truncate went to sleep on a held page (the file
                // system's wait callback, out of line from 6.15), not only
                // found it busy.
                let wait_symbol = format!("{fs}_wait_dax_page");
                let slept = !f.wait_callback
                    || dax.iter().any(|e| {
                        e.event == "layout_wait"
                            && e.symbol == wait_symbol
                            && e.ts >= t0
                            && e.ts <= t1
                            && touched.contains(&e.pfn)
                    });
                if !slept {
                    bad.push(format!(
                        "expected the truncate to sleep on a held PFN (layout_wait in {wait_symbol})"
                    ));
                }
                if t1 < hold_end {
                    bad.push(format!(
                        "the truncate returned {} ms before the references were dropped",
                        (hold_end - t1) / 1_000_000
                    ));
                }
            }
        }
        "dax-direct-io" => {
            let t0 = w.mark("dio_write_start")?;
            let t1 = w.mark("dio_write_end")?;
            let (take, drop) = if f.dio_pins {
                ("pin", "unpin")
            } else {
                ("get", "put")
            };
            for pfn in &touched {
                let during: Vec<&&Ev> = dax
                    .iter()
                    .filter(|e| e.pfn == *pfn && e.ts >= t0 && e.ts <= t1)
                    .collect();
                let got = during.iter().find(|e| e.event == take);
                let dropped = during.iter().rev().find(|e| e.event == drop);
                match (got, dropped) {
                    (Some(g), Some(d)) if d.ts >= g.ts => {}
                    _ => bad.push(format!(
                        "pfn {pfn:#x}: expected a {take} and then a {drop} during the O_DIRECT write, saw {:?}",
                        during.iter().map(|e| e.event.as_str()).collect::<Vec<_>>()
                    )),
                }
            }
        }
        _ => {}
    }
    Ok(bad)
}

/// Where fs-dax mappings hold references (0-based fs-dax, 6.15+): every
/// touched page shows the fault's mapping reference taken (in
/// `vmf_insert_*`) and, before the hold ends, the munmap dropping it while
/// the pipe still holds the page (a put by the zap, still referenced after).
fn check_mapping_refs(dax: &[&Ev], touched: &BTreeSet<u64>, hold_end: u64) -> Vec<String> {
    fn names(e: &Ev) -> impl Iterator<Item = &str> {
        std::iter::once(e.symbol.as_str()).chain(
            e.stack
                .iter()
                .map(|f| f.split('+').next().unwrap_or_default()),
        )
    }
    let mut bad = Vec::new();
    for pfn in touched {
        let mapped = dax.iter().any(|e| {
            e.pfn == *pfn && e.event == "get" && names(e).any(|n| n.starts_with("vmf_insert_"))
        });
        let unmapped = dax.iter().any(|e| {
            e.pfn == *pfn
                && e.event == "put"
                && e.ts < hold_end
                && e.after.is_some_and(|a| a >= 1)
                && names(e).any(|n| n == "__zap_vma_range" || n == "free_pages_and_swap_cache")
        });
        if !mapped || !unmapped {
            bad.push(format!(
                "pfn {pfn:#x}: expected the mapping's reference taken by the fault (vmf_insert_*) and dropped by the munmap during the hold; taken: {mapped}, dropped: {unmapped}"
            ));
        }
    }
    bad
}

/// A migration event's direction, whether it moved, and its destination.
fn migration_of(e: &Ev) -> Option<(&str, bool, Option<u64>, &str)> {
    let m = e.migration.as_ref()?;
    Some((
        m["direction"].as_str()?,
        m["moved"].as_bool()?,
        m["dst_pfn"].as_u64(),
        m["stage"].as_str()?,
    ))
}

/// Checks one device-private scenario (`hmm-*`, `functions`: refwatch ran
/// with `--no-precise`) in `dir`: refwatch's events against the workload's
/// account, and the ground truth comparison the lab wrote.
pub fn check_hmm(scenario: &str, functions: bool, dir: &Path) -> Result<Vec<String>> {
    let w = read_workload(dir)?;
    let events = read_events(&dir.join("events.jsonl"))?;
    let mut bad = Vec::new();
    let device: BTreeSet<u64> = w.pfns.iter().copied().collect();
    if device.len() != w.pfns.len() || device.is_empty() {
        bad.push(format!(
            "workload reported {} device PFNs, {} distinct",
            w.pfns.len(),
            device.len()
        ));
    }
    let private: Vec<&Ev> = events
        .iter()
        .filter(|e| e.pgmap_type == "private")
        .collect();
    let seen: BTreeSet<u64> = private.iter().map(|e| e.pfn).collect();
    let missing: Vec<_> = device.difference(&seen).collect();
    if !missing.is_empty() {
        bad.push(format!("device PFNs without events: {missing:#x?}"));
    }
    let stray: Vec<_> = seen.difference(&device).collect();
    if !stray.is_empty() {
        bad.push(format!(
            "events on device-private PFNs the workload does not own: {stray:#x?}"
        ));
    }
    let owners: BTreeSet<&str> = private.iter().filter_map(|e| e.owner.as_deref()).collect();
    if owners != BTreeSet::from(["dmirror_devmem_free"]) {
        bad.push(format!(
            "owner of the device pages: {owners:?}, expected the test driver's dmirror_devmem_free"
        ));
    }
    // Every page moved to the device, its destination one of the device PFNs.
    let to_device: BTreeSet<u64> = events
        .iter()
        .filter_map(|e| match migration_of(e)? {
            ("to_device", true, Some(dst), _) => Some(dst),
            _ => None,
        })
        .collect();
    if to_device != device {
        bad.push(format!(
            "pages moved to the device: {} with destinations {:#x?}, expected the {} device PFNs",
            to_device.len(),
            to_device.difference(&device).collect::<Vec<_>>(),
            device.len()
        ));
    }
    let freed: BTreeSet<u64> = private
        .iter()
        .filter(|e| e.event == "free")
        .map(|e| e.pfn)
        .collect();
    if freed != device {
        let never: Vec<_> = device.difference(&freed).collect();
        bad.push(format!(
            "device PFNs never freed to the driver: {never:#x?}"
        ));
    }
    let failed: Vec<&Ev> = events
        .iter()
        .filter(|e| migration_of(e).is_some_and(|(_, moved, _, _)| !moved))
        .collect();
    match scenario {
        "hmm-migrate" => {
            let back: BTreeSet<u64> = events
                .iter()
                .filter(|e| {
                    migration_of(e).is_some_and(|(dir, moved, _, _)| dir == "fault" && moved)
                })
                .map(|e| e.pfn)
                .collect();
            if back != device {
                bad.push(format!(
                    "CPU faults moved {} device pages back, expected all {}",
                    back.len(),
                    device.len()
                ));
            }
        }
        "hmm-blocked" => {
            let held = w.fact("held_ram_pfn")?;
            let on: Vec<(u64, &str, &str)> = failed
                .iter()
                .filter_map(|e| {
                    let (dir, _, _, stage) = migration_of(e)?;
                    Some((e.pfn, dir, stage))
                })
                .collect();
            if on != [(held, "to_device", "setup")] {
                bad.push(format!(
                    "failed migrations {on:#x?}, expected exactly the held page {held:#x} (to_device, setup)"
                ));
            }
            let late = events
                .iter()
                .find(|e| e.late && e.pfn == held && e.event == "get");
            match late {
                Some(e)
                    if e.comm == "workload" && e.stack.iter().any(|f| f.contains("vmsplice")) => {}
                other => bad.push(format!(
                    "no remembered vmsplice reference on the held page {held:#x}: {other:?}"
                )),
            }
        }
        _ => {
            if !failed.is_empty() {
                bad.push(format!("{} failed page migrations", failed.len()));
            }
        }
    }
    bad.extend(check_groundtruth(functions, dir)?);
    Ok(bad)
}

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

/// Checks `refwatch probes` output for a kernel.
pub fn check_probes(kernel: &str, dir: &Path) -> Result<Vec<String>> {
    let f = facts(kernel)?;
    let text = fs::read_to_string(dir.join("probes.txt")).context("read probes.txt")?;
    let rc = fs::read_to_string(dir.join("probes.rc")).unwrap_or_default();
    let mut bad = Vec::new();
    if rc.trim() != "0" {
        bad.push(format!("refwatch probes exited {}", rc.trim()));
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
