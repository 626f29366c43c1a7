//! The hardware watchpoints' share of the ground truth (`+watch`
//! scenarios): refwatch's `watchpoint` events against the page_ref trace,
//! per watched PFN, from the moment refwatch armed it.
//!
//! Every operation that changed a watched page's `_refcount` after it was
//! armed (the trace's events of the PFN stamped at or after the arming;
//! failed try-gets and failed freezes wrote nothing and do not count) must
//! be seen by the watch: the counts the trace gives after each operation
//! must appear, in order, among the `refcount_after` of the page's
//! watchpoint events (a watch may see more writes than the trace names,
//! never fewer). Inline gets and puts count like the others: the trace
//! has them all, whatever the code path. The watchpoint events are left
//! out of the main comparison (they would count a hook's get twice). Each
//! page's `gets` (watchpoint events that raised the count) are set against
//! the hooks' (`per_pfn.seen_gets`) by `checks::watch`: the watch must see
//! the inline gets no hook sees.

use super::*;

/// refwatch's list of armed pages (`--watch-ready`): `PFN armed-at-ns`
/// lines.
pub const READY_FILE: &str = "watch-ready";

/// The watch's share, in `groundtruth.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchTruth {
    /// Refcount changes of the watched pages after arming, in the trace.
    pub truth_writes: u64,
    /// Of these, those the watch saw (in order, with the same count).
    pub seen: u64,
    /// Watchpoint events of the watched pages after arming.
    pub hits: u64,
    pub per_pfn: Vec<WatchPfn>,
}

/// One watched page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchPfn {
    pub pfn: String,
    pub armed_ns: u64,
    pub truth_writes: u64,
    pub seen: u64,
    pub hits: u64,
    /// Of the hits, those that raised the count (gets, inline ones
    /// included).
    pub gets: u64,
    /// The first trace operation the watch did not see, if any.
    pub first_missed: Option<TruthPoint>,
}

/// A watchpoint event of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub(super) ts_ns: u64,
    pub(super) pfn: u64,
    pub(super) after: Option<i64>,
    /// Whether refwatch called it a get or a pin (the count rose).
    pub(super) get: bool,
}

/// Parses the `--watch-ready` list.
pub(super) fn parse_ready(text: &str) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(pfn), Some(since), None) = (it.next(), it.next(), it.next()) else {
            bail!("{READY_FILE}: {line:?} is not `PFN armed-at-ns`");
        };
        let since: u64 = since
            .parse()
            .with_context(|| format!("{READY_FILE}: {line:?}"))?;
        out.push((
            parse_u64(pfn).with_context(|| format!("{READY_FILE}: {line:?}"))?,
            since,
        ));
    }
    Ok(out)
}

/// Whether a trace event wrote the refcount.
fn wrote(ev: &TruthEvent) -> bool {
    let failed = matches!(ev.op, RefOp::ModUnless | RefOp::Freeze) && ev.ret == Some(0);
    !failed
}

/// The watch's share for the pages `armed` (PFN, armed at).
pub(super) fn compare(truth: &[TruthEvent], hits: &[Hit], armed: &[(u64, u64)]) -> WatchTruth {
    let mut w = WatchTruth {
        truth_writes: 0,
        seen: 0,
        hits: 0,
        per_pfn: Vec::new(),
    };
    for &(pfn, since) in armed {
        let mut ops: Vec<&TruthEvent> = truth
            .iter()
            .filter(|e| e.pfn == pfn && e.ts_ns >= since && wrote(e))
            .collect();
        ops.sort_by_key(|e| e.ts_ns);
        let page_hits: Vec<&Hit> = hits
            .iter()
            .filter(|h| h.pfn == pfn && h.ts_ns >= since)
            .collect();
        let afters: Vec<Option<i64>> = page_hits.iter().map(|h| h.after).collect();
        // In order: each operation's count at or after the last one found.
        let mut at = 0;
        let mut seen = 0;
        let mut first_missed = None;
        for op in &ops {
            match afters[at..].iter().position(|a| *a == Some(op.count)) {
                Some(i) => {
                    at += i + 1;
                    seen += 1;
                }
                None => {
                    first_missed.get_or_insert_with(|| op.point());
                }
            }
        }
        w.truth_writes += ops.len() as u64;
        w.seen += seen;
        w.hits += afters.len() as u64;
        w.per_pfn.push(WatchPfn {
            pfn: hex(pfn),
            armed_ns: since,
            truth_writes: ops.len() as u64,
            seen,
            hits: afters.len() as u64,
            gets: page_hits.iter().filter(|h| h.get).count() as u64,
            first_missed,
        });
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic trace operations and watchpoint events (not from a kernel).
    fn op(ts_ns: u64, pfn: u64, op: RefOp, count: i64, val: i64, ret: Option<i64>) -> TruthEvent {
        TruthEvent {
            ts_ns,
            pfn,
            op,
            count,
            val,
            ret,
        }
    }

    fn hit(ts_ns: u64, pfn: u64, after: i64, get: bool) -> Hit {
        Hit {
            ts_ns,
            pfn,
            after: Some(after),
            get,
        }
    }

    #[test]
    fn every_write_after_arming_must_be_seen_in_order() {
        let truth = [
            // Before arming: not the watch's.
            op(5, 1, RefOp::Set, 1, 1, None),
            op(20, 1, RefOp::Mod, 2, 1, None),
            // A failed try-get wrote nothing.
            op(25, 1, RefOp::ModUnless, 0, 1, Some(0)),
            op(30, 1, RefOp::ModAndTest, 1, -1, Some(0)),
            op(40, 1, RefOp::ModAndTest, 0, -1, Some(1)),
        ];
        let armed = [(1, 10)];
        let all = [
            hit(21, 1, 2, true),
            hit(31, 1, 1, false),
            hit(41, 1, 0, false),
        ];
        let w = compare(&truth, &all, &armed);
        assert_eq!((w.truth_writes, w.seen, w.hits), (3, 3, 3));
        assert_eq!(w.per_pfn[0].first_missed, None);
        assert_eq!(w.per_pfn[0].gets, 1);
        // The put to 1 not seen: the watch's 0 cannot stand for it.
        let w = compare(&truth, &[hit(21, 1, 2, true), hit(41, 1, 0, false)], &armed);
        assert_eq!((w.truth_writes, w.seen), (3, 2));
        assert_eq!(
            w.per_pfn[0].first_missed.as_ref().map(|p| p.ts_ns),
            Some(30)
        );
        // Out of order is not seen.
        let w = compare(
            &truth,
            &[
                hit(21, 1, 0, false),
                hit(31, 1, 1, true),
                hit(41, 1, 2, true),
            ],
            &armed,
        );
        assert_eq!(w.seen, 1);
    }

    #[test]
    fn the_ready_list_parses() {
        assert_eq!(
            parse_ready("0xfcfffff 16804504567\n0x10 5\n\n").expect("valid"),
            vec![(0xfcfffff, 16804504567), (0x10, 5)]
        );
        assert!(parse_ready("0x10\n").is_err());
        assert!(parse_ready("zz 1\n").is_err());
    }
}
