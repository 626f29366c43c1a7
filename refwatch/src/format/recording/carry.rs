//! What a rotated recording's next file starts with, after its header: the
//! state of the pages that a report of that file alone must not get wrong.
//!
//! A page referenced across the rotation may have no event in the new
//! file: without a line for it, `report` would not know it at all and call
//! a stuck page fine. So the new file starts with one `snapshot` event
//! (symbol [`SYMBOL`]) per page with references beyond its idle count,
//! stamped when they became outstanding (so the held detectors keep their
//! start), and a `gap` line per page whose state is unknown because events
//! were lost (so it stays unknown, not fine). Who took the references is
//! in the file before: the new file names no holder for them.

use super::Line;
use crate::{
    event::{Kind, PageEvent, Stack},
    format::json::Format,
    state::Tracker,
    symbols::Role,
    symbols::Symbolizer,
};

/// The `symbol` of carried-over snapshot events.
pub const SYMBOL: &str = "refwatch carried";

/// The lines that carry `tracker`'s state into a new file, in time order;
/// `pid` is refwatch's.
pub fn carry(tracker: &Tracker, syms: &mut Symbolizer<'_>, fmt: Format, pid: u32) -> Vec<Line> {
    let mut out: Vec<(u64, u64, Line)> = tracker
        .unknown_pages()
        .into_iter()
        .filter_map(|(pfn, g)| {
            let ts_ns = g.unknown_since?;
            Some((
                ts_ns,
                pfn,
                Line::Gap {
                    ts_ns,
                    pfn: Some(pfn),
                },
            ))
        })
        .collect();
    for p in tracker.pages() {
        if p.unknown() || !(p.outstanding > 0 || p.stuck() || p.kept_since.is_some()) {
            continue;
        }
        let ts_ns = p
            .outstanding_since
            .or(p.kept_since)
            .unwrap_or(p.state_since_ns);
        let ev = PageEvent {
            ts_ns,
            pfn: p.pfn,
            page: 0,
            pid,
            tgid: pid,
            cpu: 0,
            comm: "refwatch".into(),
            kind: Kind::Snapshot,
            hook: 0,
            refcount_before: None,
            refcount_after: p.refcount,
            mapcount: p.mapcount,
            pgmap_type: p.pgmap_type,
            nr_pages: 1,
            ret: None,
            aux: 0,
            aux2: 0,
            owner: p.owner,
            late: false,
            forking: false,
            role: Role::Other,
            stack: Stack::default(),
            stack_taken: Default::default(),
        };
        out.push((ts_ns, p.pfn, Line::Event(syms.to_json(&ev, SYMBOL, fmt))));
    }
    out.sort_by_key(|(ts, pfn, _)| (*ts, *pfn));
    out.into_iter().map(|(_, _, l)| l).collect()
}
