//! Who holds a page's references: the holders refwatch saw take them, and
//! which one a drop releases.

use super::{LAST_EVENTS, MAX_FORK_PAGES, MAX_FORKS_PENDING, Page};
use crate::{
    event::{Comm, Kind, PageEvent, Stack},
    fasthash::FastMap,
    symbols::Role,
};

/// A reference refwatch saw being taken and not yet dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub ts_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub comm: Comm,
    pub kind: Kind,
    pub refs: i32,
    pub stack: Stack,
    /// Taken by this parent (tgid, tid) while forking the holder.
    pub forked_from: Option<(u32, u32)>,
    /// Taken while forking; the child is not known yet.
    pub fork_pending: bool,
    /// Whether a page-table entry holds this reference.
    pub role: Role,
}

impl Holder {
    pub(super) fn from_event(ev: &PageEvent) -> Self {
        let refs = match (ev.refcount_before, ev.refcount_after) {
            (Some(b), Some(a)) if a > b => a.saturating_sub(b),
            (None, Some(a)) if ev.kind == Kind::Set => a,
            _ => 1,
        };
        Self {
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm.clone(),
            kind: if ev.kind == Kind::Set {
                Kind::Get
            } else {
                ev.kind
            },
            refs,
            stack: ev.stack.clone(),
            forked_from: None,
            fork_pending: ev.forking,
            role: ev.role,
        }
    }

    /// The thread whose event took the reference (its stack is that event's).
    pub fn taken_by(&self) -> u32 {
        self.forked_from.map_or(self.pid, |(_, tid)| tid)
    }
}

/// Notes that `ev`'s thread took a reference while forking: it belongs to
/// the child the fork event names.
#[cold]
#[inline(never)]
pub(super) fn note_fork(pending: &mut FastMap<u32, Vec<u64>>, ev: &PageEvent) {
    // Bounded: forks whose event was lost would otherwise stay for good.
    if pending.len() >= MAX_FORKS_PENDING && !pending.contains_key(&ev.pid) {
        pending.clear();
    }
    let pfns = pending.entry(ev.pid).or_default();
    if pfns.len() < MAX_FORK_PAGES {
        pfns.push(ev.pfn);
    }
}

/// Removes the holder a drop most likely matches. A drop that zaps a
/// page-table entry matches only a reference an entry holds ([`Role::Map`]),
/// any other drop another reference first, then any; within that, same class
/// (pin/unpin, get/put) and same process first, then same class, the most
/// recent first. A drop that matches no holder removes nothing (its get was
/// not observable).
pub(super) fn drop_holder(holders: &mut Vec<Holder>, ev: &PageEvent) {
    let want = if ev.kind == Kind::Unpin {
        Kind::Pin
    } else {
        Kind::Get
    };
    let mapping = |h: &Holder| h.role == Role::Map;
    let same_role = |h: &Holder| mapping(h) == (ev.role == Role::Unmap);
    let pos = holders
        .iter()
        .rposition(|h| h.kind == want && same_role(h) && h.tgid == ev.tgid)
        .or_else(|| holders.iter().rposition(|h| h.kind == want && same_role(h)));
    // A zap only drops what an entry held; other drops may match anything.
    let pos = match pos {
        None if ev.role != Role::Unmap => holders
            .iter()
            .rposition(|h| h.kind == want && h.tgid == ev.tgid)
            .or_else(|| holders.iter().rposition(|h| h.kind == want)),
        p => p,
    };
    match pos {
        // The most recent, mostly: nothing to shift.
        Some(i) if i + 1 == holders.len() => drop(holders.pop()),
        Some(i) => drop(holders.remove(i)),
        None => {}
    }
}

pub(super) fn holders_of(page: &Page) -> (Vec<Holder>, Option<String>, Vec<PageEvent>) {
    let kept = page.history.len();
    let last: Vec<PageEvent> = page
        .history
        .iter()
        .skip(kept.saturating_sub(LAST_EVENTS))
        .collect();
    let lost = (page.gaps.gaps > 0).then(|| {
        format!(
            "{} loss(es) of this page's events: a reference taken in a lost event has no holder here",
            page.gaps.gaps
        )
    });
    if page.holders.is_empty() {
        let before = page.before_refwatch.then(|| {
            "the reference(s) were taken before refwatch started (it read the page's state at attach), or before this file of a rotated recording began (the state was carried over); who took them is unknown here"
                .to_string()
        });
        let watched = (page.watched_since != 0).then(|| {
            let when = if page.before_refwatch {
                "taken before refwatch started, so before watching"
            } else {
                "taken before watching"
            };
            format!(
                "{when}: the hardware watchpoint on its refcount, armed at {:.3} s, saw no get of it; its release will name who drops it",
                page.watched_since as f64 / 1e9
            )
        });
        let note = lost.or(watched).or(before).unwrap_or_else(|| {
            "the outstanding reference was taken where this kernel offers no hook (an inline get); see the page's last events"
                .into()
        });
        (Vec::new(), Some(note), last)
    } else {
        (page.holders.clone(), lost, last)
    }
}
