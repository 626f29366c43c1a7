//! fs-dax scenarios: refwatch's events on the touched pages against the
//! workload's account and the kernel's fs-dax refcount rules.

use std::{collections::BTreeSet, path::Path};

use anyhow::Result;

use super::{
    Ev, KernelFacts, Workload, facts, groundtruth::check_groundtruth, read_events, read_workload,
};

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
        "dax-pin-long" => bad.extend(check_pin_long(&dax, &touched, &f, &w)?),
        _ => {}
    }
    if f.page_ref_truth {
        bad.extend(check_groundtruth(false, dir)?);
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

/// `dax-pin-long`: the slow O_DIRECT write keeps its references on every
/// source page for the hold. Each page shows, during the write, the direct
/// I/O's reference taken — a pin adding `GUP_PIN_COUNTING_BIAS` (1024)
/// where direct I/O pins (`dio_pins`), else a plain get adding 1 — and
/// dropped (unpin, put) by the bio's completion at least `hold_secs` later,
/// the count never below idle plus that reference in between.
fn check_pin_long(
    dax: &[&Ev],
    touched: &BTreeSet<u64>,
    f: &KernelFacts,
    w: &Workload,
) -> Result<Vec<String>> {
    const GUP_PIN_COUNTING_BIAS: i64 = 1024;
    let t0 = w.mark("write_start")?;
    let t1 = w.mark("write_end")?;
    let hold_ns = w.hold_secs * 1_000_000_000;
    let idle = f.fsdax_idle;
    let (take, drop, by) = if f.dio_pins {
        ("pin", "unpin", GUP_PIN_COUNTING_BIAS)
    } else {
        ("get", "put", 1)
    };
    let mut bad = Vec::new();
    for pfn in touched {
        let during: Vec<&Ev> = dax
            .iter()
            .copied()
            .filter(|e| e.pfn == *pfn && e.ts >= t0 && e.ts <= t1)
            .collect();
        let names = || during.iter().map(|e| e.event.as_str()).collect::<Vec<_>>();
        let Some(got) = during.iter().position(|e| e.event == take) else {
            bad.push(format!(
                "pfn {pfn:#x}: no {take} during the O_DIRECT write, saw {:?}",
                names()
            ));
            continue;
        };
        let Some(dropped) = during.iter().rposition(|e| e.event == drop) else {
            bad.push(format!(
                "pfn {pfn:#x}: no {drop} during the O_DIRECT write, saw {:?}",
                names()
            ));
            continue;
        };
        let (g, d) = (during[got], during[dropped]);
        if dropped < got {
            bad.push(format!(
                "pfn {pfn:#x}: the {drop} came before the {take} during the O_DIRECT write, saw {:?}",
                names()
            ));
            continue;
        }
        // The reference the write took: from the count before its first
        // event to the count after the take. A FOLL_PIN grab
        // (`try_grab_folio_fast`) takes one speculative reference, then adds
        // the rest of the bias (+1023): the page_ref tracepoints (precise
        // mode, hmm-7.2) show a get and then the pin, the function hooks
        // one pin of +1024.
        match (during[0].before, g.after) {
            (Some(b), Some(a)) if a - b == by => {}
            other => bad.push(format!(
                "pfn {pfn:#x}: the write took the refcount from {:?} to {:?} by its {take}, expected +{by}; saw {:?}",
                other.0,
                other.1,
                names()
            )),
        }
        match (d.before, d.after) {
            (Some(b), Some(a)) if b - a == by => {}
            other => bad.push(format!(
                "pfn {pfn:#x}: the {drop} took the refcount {:?} → {:?}, expected -{by}",
                other.0, other.1
            )),
        }
        if d.ts - g.ts < hold_ns {
            bad.push(format!(
                "pfn {pfn:#x}: the {take} was dropped after {} ms, before the hold of {} s",
                (d.ts - g.ts) / 1_000_000,
                w.hold_secs
            ));
        }
        if let Some(e) = during[got + 1..dropped]
            .iter()
            .find(|e| e.event == "free" || e.after.is_some_and(|a| a < idle + by))
        {
            bad.push(format!(
                "pfn {pfn:#x}: {} to refcount {:?}, below idle + {by}, while the write held the page ({} ms after the {take})",
                e.event,
                e.after,
                (e.ts - g.ts) / 1_000_000
            ));
        }
    }
    Ok(bad)
}
