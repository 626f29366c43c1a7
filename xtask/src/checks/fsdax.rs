//! fs-dax scenarios: refwatch's events on the touched pages against the
//! workload's account and the kernel's fs-dax refcount rules.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::Result;

use super::{
    Ev, KernelFacts, Workload, facts, groundtruth::check_groundtruth, ms_from, read_events,
    read_workload,
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
    // The hooks' events: under `+watch` the watchpoint sees the same
    // writes again (its own checks are `checks::watch`'s).
    let dax: Vec<&Ev> = events
        .iter()
        .filter(|e| e.pgmap_type == "fsdax" && !super::watch::from_watch(e))
        .collect();
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
    // The kernel's rule: never below idle (1 or 0, so never negative);
    // every page back at idle at the end. And the counts add up, event by
    // event: the check that can fail where idle is 0.
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
    bad.extend(check_refcount_steps(&dax, f.unseen_puts));
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
                bad.extend(check_truncate_waits(
                    &dax,
                    &w.pfns,
                    f.fsdax_idle,
                    t0,
                    t1,
                    hold_end,
                ));
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
                // The truncate went to sleep (the file system's wait
                // callback, out of line from 6.15), not only found the page
                // busy: first on the file's first page, during the hold.
                let wait_symbol = format!("{fs}_wait_dax_page");
                let first_sleep = dax
                    .iter()
                    .filter(|e| {
                        e.event == "layout_wait"
                            && e.symbol == wait_symbol
                            && e.ts >= t0
                            && e.ts <= t1
                    })
                    .min_by_key(|e| e.ts);
                let slept = !f.wait_callback
                    || first_sleep
                        .is_some_and(|e| w.pfns.first() == Some(&e.pfn) && e.ts < hold_end);
                if !slept {
                    bad.push(format!(
                        "expected the truncate to sleep first on the file's first page {:#x?} during the hold (layout_wait in {wait_symbol}), saw {:?}",
                        w.pfns.first(),
                        first_sleep.map(|e| (e.pfn, ms_from(hold_end, e.ts)))
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

/// The name of an event's function and those of its stack frames.
fn names(e: &Ev) -> impl Iterator<Item = &str> {
    std::iter::once(e.symbol.as_str()).chain(
        e.stack
            .iter()
            .map(|f| f.split('+').next().unwrap_or_default()),
    )
}

/// The refcounts refwatch reported add up, page by page:
///
/// - each event moves the count the way its kind says: a get or a pin
///   raises it, a put or an unpin lowers it, anything else (a free, a
///   layout wait) only reads it;
/// - between two consecutive events of a page nothing changed unseen: an
///   event's `refcount_before` is the previous one's `refcount_after`.
///
/// Except where refwatch cannot see every change (`unseen_puts`: function
/// mode from 6.15, where fs-dax references are plain folio references and
/// only a page's last put reaches an out-of-line function). Seen in the lab
/// on 7.2, and all the kernel does inline there: `dax_fault_iter` takes
/// its own reference around `vmf_insert_page_mkwrite` (`folio_ref_inc`
/// before, `folio_put` after), and a pipe releasing a page something else
/// still holds drops a reference with a `folio_put` that does not free.
/// So there the count may drop between two events, and rise by one only
/// into the fault's `vmf_insert_*` get; every other get is seen (a missed
/// get next to an unseen put cannot be told, though).
fn check_refcount_steps(dax: &[&Ev], unseen_puts: bool) -> Vec<String> {
    let mut bad = Vec::new();
    let mut by_pfn: BTreeMap<u64, Vec<&Ev>> = BTreeMap::new();
    // The watchpoint (a page watched from the TUI) is a second observer of
    // the same writes, stamped apart from the hooks: its events are judged
    // by the checks of the watch.
    for e in dax.iter().filter(|e| e.symbol != "watchpoint") {
        by_pfn.entry(e.pfn).or_default().push(e);
    }
    for (pfn, evs) in by_pfn {
        let mut prev: Option<&Ev> = None;
        for e in count_order(evs) {
            if let (Some(b), Some(a)) = (e.before, e.after) {
                let moved = match e.event.as_str() {
                    "get" | "pin" => a > b,
                    "put" | "unpin" => a < b,
                    // A page_ref_set (precise mode) may write any count.
                    "set" => true,
                    _ => a == b,
                };
                if !moved {
                    bad.push(format!(
                        "pfn {pfn:#x}: {} in {} took the refcount from {b} to {a}",
                        e.event, e.symbol
                    ));
                }
            }
            if let (Some(p), Some(b)) = (prev, e.before)
                && let Some(pa) = p.after
                && b != pa
            {
                let into_fault = b == pa + 1
                    && e.event == "get"
                    && names(e).any(|n| n.starts_with("vmf_insert_"));
                if !(unseen_puts && (b < pa || into_fault)) {
                    bad.push(format!(
                        "pfn {pfn:#x}: refcount {pa} after {} in {}, then {b} before {} in {} ({} µs later): a change refwatch did not see",
                        p.event,
                        p.symbol,
                        e.event,
                        e.symbol,
                        (e.ts - p.ts) / 1_000
                    ));
                }
            }
            if e.after.is_some() {
                prev = Some(e);
            } else if e.before.is_some() {
                // Where it went is unknown: nothing to compare the next with.
                prev = None;
            }
        }
    }
    bad
}

/// One page's events (in the order of `events.jsonl`) in the order of their
/// counts: the hooks' events as they reached the ring, refwatch's own reads
/// (`snapshot`) by their time.
///
/// A hook's program reads the count, reserves its record and then walks the
/// stack; the time is stamped after the walk (milliseconds under emulation),
/// so two events of one page from two CPUs can carry times in the other
/// order than their counts: a truncate's `layout_wait` that read 2 can be
/// stamped after the drain's put that took the same page from 2 to 1 and
/// reached the ring after it. refwatch applies counts in ring order, as
/// read here. Its reads are
/// made while it works through the ring, so their place in it says nothing:
/// after a loss, a read can precede events of the backlog that happened
/// before it.
fn count_order(evs: Vec<&Ev>) -> Vec<&Ev> {
    let (mut reads, hooks): (Vec<&Ev>, Vec<&Ev>) =
        evs.into_iter().partition(|e| e.event == "snapshot");
    reads.sort_by_key(|e| e.ts);
    let mut reads = reads.into_iter().peekable();
    let mut out = Vec::with_capacity(hooks.len() + reads.len());
    for h in hooks {
        while let Some(r) = reads.next_if(|r| r.ts < h.ts) {
            out.push(r);
        }
        out.push(h);
    }
    out.extend(reads);
    out
}

/// What the truncate of `dax-truncate-pinned` waited for, `pfns` being the
/// held pages in file order, the truncate running from `t0` to `t1` and the
/// hold ending at `hold_end`.
///
/// The layout break (`ext4_break_layouts`, `xfs_break_dax_layouts`) asks
/// `dax_layout_busy_page_range` for the first busy page of the file, sleeps
/// until that page is idle, and asks again, until no page is busy. So it
/// waits first on the file's first page (the pipe holds them all for the
/// whole hold) and then, after the drain began, only on the pages the drain
/// (releasing them in file order) had not reached when it looked again. Not
/// every held page gets a `layout_wait`: in the lab the truncate waited on
/// one or two of the 16 (the first, and at most one page the drain had not
/// reached when the woken truncate looked again: the 2nd or the 14th; 6.1,
/// 6.12 and 7.2, ext4 and XFS). What holds for every page is that the truncate
/// returned only after that page was released.
fn check_truncate_waits(
    dax: &[&Ev],
    pfns: &[u64],
    idle: i64,
    t0: u64,
    t1: u64,
    hold_end: u64,
) -> Vec<String> {
    let mut bad = Vec::new();
    let index = |pfn: u64| pfns.iter().position(|p| *p == pfn);
    let mut waits: Vec<&&Ev> = dax
        .iter()
        .filter(|e| e.event == "layout_wait" && e.ts >= t0 && e.ts <= t1)
        .collect();
    waits.sort_by_key(|e| e.ts);
    let order: Vec<Option<usize>> = waits.iter().map(|e| index(e.pfn)).collect();
    let seen = || {
        waits
            .iter()
            .map(|e| (e.pfn, e.symbol.as_str(), ms_from(hold_end, e.ts)))
            .collect::<Vec<_>>()
    };
    match waits.first() {
        Some(e) if index(e.pfn) == Some(0) && e.ts < hold_end => {}
        _ => bad.push(format!(
            "expected the truncate's first layout_wait on the file's first page {:#x?} during the hold; layout_waits (pfn, symbol, ms from the hold's end): {:#x?}",
            pfns.first(),
            seen()
        )),
    }
    if order.iter().any(Option::is_none) || !order.is_sorted() {
        bad.push(format!(
            "expected the truncate's layout_waits on held pages in file order (it looks again from the start once a page is idle, and the drain releases them in order); got pages {order:?}: {:#x?}",
            seen()
        ));
    }
    for pfn in pfns {
        let released = dax
            .iter()
            .filter(|e| e.pfn == *pfn && e.ts >= hold_end && e.after == Some(idle))
            .map(|e| e.ts)
            .min();
        match released {
            // refwatch stamps an event after its stack walk (milliseconds
            // under emulation), so a release may carry a time a little after
            // the truncate's return that it let happen.
            Some(r) if r <= t1.saturating_add(crate::groundtruth::DEFAULT_SLACK_NS) => {}
            Some(r) => bad.push(format!(
                "pfn {pfn:#x}: the truncate returned {} ms before this page was released",
                ms_from(t1, r)
            )),
            // Reported by the release check.
            None => {}
        }
    }
    bad
}

/// Where fs-dax mappings hold references (0-based fs-dax, 6.15+): every
/// touched page shows the fault's mapping reference taken (in
/// `vmf_insert_*`) and, before the hold ends, the munmap dropping it while
/// the pipe still holds the page (a put by the zap, still referenced after).
fn check_mapping_refs(dax: &[&Ev], touched: &BTreeSet<u64>, hold_end: u64) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ev(ts_ms: u64, pfn: u64, event: &str, after: i64) -> Ev {
        Ev {
            ts: ts_ms * MS,
            pfn,
            event: event.into(),
            before: Some(after),
            after: Some(after),
            pgmap_type: "fsdax".into(),
            symbol: "dax_layout_busy_page_range".into(),
            comm: "truncate".into(),
            owner: None,
            migration: None,
            late: false,
            stack: Vec::new(),
        }
    }

    /// Pages 1, 2, 3 held from before 100 ms to 3000 ms; the truncate runs
    /// from 100 ms to `t1`.
    fn judge(waits: &[(u64, u64)], releases: &[(u64, u64)], t1: u64) -> Vec<String> {
        let mut all: Vec<Ev> = waits
            .iter()
            .map(|&(t, pfn)| ev(t, pfn, "layout_wait", 2))
            .collect();
        all.extend(releases.iter().map(|&(t, pfn)| ev(t, pfn, "put", 1)));
        let refs: Vec<&Ev> = all.iter().collect();
        check_truncate_waits(&refs, &[1, 2, 3], 1, 100 * MS, t1 * MS, 3000 * MS)
    }

    fn step(ts_ms: u64, event: &str, symbol: &str, before: i64, after: i64) -> Ev {
        Ev {
            before: Some(before),
            symbol: symbol.into(),
            ..ev(ts_ms, 7, event, after)
        }
    }

    /// A 7.2 page seen in function mode: the fault's get (after the
    /// inline `folio_ref_inc` of `dax_fault_iter`, whose `folio_put` follows
    /// unseen), the pipe's get, the unmap's put, the pipe's last put.
    fn fault_pipe_unmap() -> Vec<Ev> {
        vec![
            step(1, "get", "vmf_insert_page_mkwrite", 1, 2),
            step(2, "get", "try_grab_folio_fast", 1, 2),
            step(3, "put", "folios_put_refs", 2, 1),
            step(4, "put", "free_zone_device_folio", 1, 0),
            step(5, "free", "free_zone_device_folio", 0, 0),
        ]
    }

    fn steps(evs: &[Ev], unseen_puts: bool) -> Vec<String> {
        check_refcount_steps(&evs.iter().collect::<Vec<_>>(), unseen_puts)
    }

    #[test]
    fn consecutive_refcounts_must_agree() {
        let evs = fault_pipe_unmap();
        assert!(steps(&evs, true).is_empty());
        // Where every change is seen, the unseen put is a problem.
        let bad = steps(&evs, false);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("refcount 2 after get in vmf_insert_page_mkwrite, then 1"));
    }

    #[test]
    fn only_the_faults_own_reference_rises_unseen() {
        let mut evs = fault_pipe_unmap();
        // The first event's unseen rise of one is the fault's.
        evs.insert(0, step(0, "free", "free_zone_device_folio", 0, 0));
        assert!(steps(&evs, true).is_empty());
        // The pipe's get missed while the fault's put was seen: the
        // unmap's put starts from one more than refwatch knew of. (Missed
        // together with an unseen put, a get cannot be told.)
        let mut evs = fault_pipe_unmap();
        evs[1] = step(2, "put", "some_put", 2, 1);
        let bad = steps(&evs, true);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0]
                .contains("refcount 1 after put in some_put, then 2 before put in folios_put_refs"),
            "{bad:?}"
        );
    }

    #[test]
    fn each_event_moves_the_count_its_way() {
        let mut evs = fault_pipe_unmap();
        evs[3] = step(4, "put", "free_zone_device_folio", 1, 1);
        evs[4] = step(5, "free", "free_zone_device_folio", 1, 0);
        let bad = steps(&evs, true);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].contains("put in free_zone_device_folio took the refcount from 1 to 1"));
        assert!(bad[1].contains("free in free_zone_device_folio took the refcount from 1 to 0"));
    }

    #[test]
    fn counts_chain_in_ring_order_and_reads_by_time() {
        // The truncate's layout_wait read 2 and reached the ring before the
        // drain's put, but its longer walk stamped it later.
        let wait = step(10, "layout_wait", "dax_layout_busy_page_range", 2, 2);
        let put = step(9, "put", "__put_devmap_managed_folio_refs", 2, 1);
        assert!(steps(&[wait.clone(), put.clone()], false).is_empty());
        // The other way round in the ring, the wait's 2 follows the put's 1.
        let bad = steps(&[put, wait], false);
        assert_eq!(bad.len(), 1, "{bad:?}");
        // A read after a loss, ahead of a backlog event that happened
        // before it, counts after it.
        let read = Ev {
            before: None,
            ..step(20, "snapshot", "refwatch snapshot", 1, 1)
        };
        let late = step(15, "put", "__put_devmap_managed_folio_refs", 2, 1);
        assert!(steps(&[read.clone(), late.clone()], false).is_empty());
        let later = step(25, "put", "__put_devmap_managed_folio_refs", 2, 1);
        let bad = steps(&[read, later], false);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("refcount 1 after snapshot"), "{bad:?}");
    }

    const RELEASED: [(u64, u64); 3] = [(3001, 1), (3002, 2), (3003, 3)];

    #[test]
    fn the_truncate_waits_on_the_first_page_then_in_file_order() {
        assert!(judge(&[(103, 1)], &RELEASED, 3010).is_empty());
        assert!(judge(&[(103, 1), (3002, 2), (3002, 2)], &RELEASED, 3010).is_empty());
        // Not on the first page, or not in file order.
        assert_eq!(judge(&[(103, 2)], &RELEASED, 3010).len(), 1);
        assert_eq!(
            judge(&[(103, 1), (3002, 3), (3003, 2)], &RELEASED, 3010).len(),
            1
        );
        // On a page that is not held, or no wait at all.
        assert_eq!(judge(&[(103, 1), (3002, 9)], &RELEASED, 3010).len(), 1);
        assert_eq!(judge(&[], &RELEASED, 3010).len(), 1);
        // The first wait only after the hold.
        assert_eq!(judge(&[(3001, 1)], &RELEASED, 3010).len(), 1);
    }

    #[test]
    fn the_truncate_returns_after_every_release() {
        let bad = judge(&[(103, 1)], &[(3001, 1), (3002, 2), (3100, 3)], 3010);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with("pfn 0x3:"), "{bad:?}");
        // A release stamped within the stamping slack after the return is
        // the one the truncate waited for.
        assert!(judge(&[(103, 1)], &[(3001, 1), (3002, 2), (3020, 3)], 3010).is_empty());
    }
}
