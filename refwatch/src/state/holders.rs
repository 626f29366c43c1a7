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

/// Keeps the holders `stays` keeps, in order: one pass in place. A page
/// has few, and most often the last goes, alone or after a mapping's that
/// stays: it is dropped where it is, and `retain`'s setup, which costs
/// more than such a list, is left out.
#[inline]
pub(super) fn keep_holders(holders: &mut Vec<Holder>, stays: impl Fn(&Holder) -> bool) {
    let mut i = 0;
    while let Some(h) = holders.get(i) {
        if stays(h) {
            i += 1;
        } else if i + 1 == holders.len() {
            holders.truncate(i);
        } else {
            holders.remove(i);
        }
    }
}

/// Longest time between the two writes of one fast-GUP pin (the 1, then
/// the rest of the bias) for the watchpoint's two events to be one pin.
const PIN_STEPS_NS: u64 = 1_000_000;

/// A pin the watchpoint saw as the last 1023 of the bias (fast GUP adds 1
/// first, then the rest): the 1 the same thread added just before is the
/// same pin, not a get of its own. Folds it into `pin`, so that its unpin
/// (the whole bias at once) leaves no holder behind.
pub(super) fn fold_pin_steps(holders: &mut Vec<Holder>, pin: &mut Holder) {
    if pin.refs != super::PIN_BIAS - 1 {
        return;
    }
    let Some(first) = holders.last() else {
        return;
    };
    if first.kind == Kind::Get
        && first.refs == 1
        && first.pid == pin.pid
        && pin.ts_ns.saturating_sub(first.ts_ns) <= PIN_STEPS_NS
    {
        pin.ts_ns = first.ts_ns;
        pin.refs = super::PIN_BIAS;
        holders.pop();
    }
}

pub(super) fn holders_of(page: &Page) -> (Vec<Holder>, Option<String>, Vec<PageEvent>) {
    let kept = page.history.len();
    let last: Vec<PageEvent> = page
        .history
        .iter()
        .skip(kept.saturating_sub(LAST_EVENTS))
        .collect();
    if page.holders.is_empty() {
        (Vec::new(), Some(unknown_note(page)), last)
    } else {
        (page.holders.clone(), lost_note(page).map(Into::into), last)
    }
}

/// Said of a page some of whose events were lost.
fn lost_note(page: &Page) -> Option<&'static str> {
    (page.gaps.gaps > 0).then_some(
        "a loss of this page's events: a reference taken in a lost event has no holder here",
    )
}

/// Why a page with references has no holder. The same words for every
/// page in the same case, so that such pages group together.
pub(super) fn unknown_note(page: &Page) -> String {
    let before = page.before_refwatch.then_some(
        "the reference(s) were taken before refwatch started (it read the page's state at attach), or before this file of a rotated recording began (the state was carried over); who took them is unknown here",
    );
    // Without the arming time: pages that differ only by it are one group
    // (the arming is the page's event from the watchpoint).
    let watched = (page.watched_since != 0).then_some(if page.before_refwatch {
        "taken before refwatch started, so before watching: the hardware watchpoint on its refcount saw no get of it; its release will name who drops it"
    } else {
        "taken before watching: the hardware watchpoint on its refcount saw no get of it; its release will name who drops it"
    });
    lost_note(page)
        .or(watched)
        .or(before)
        .unwrap_or(
            "the outstanding reference was taken where this kernel offers no hook (an inline get); see the page's last events",
        )
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(ts_ns: u64) -> Holder {
        Holder {
            ts_ns,
            pid: 1,
            tgid: 1,
            comm: Comm::default(),
            kind: Kind::Get,
            refs: 1,
            stack: Stack::default(),
            forked_from: None,
            fork_pending: false,
            role: Role::Other,
        }
    }

    /// Every choice of what stays among up to five holders: the same
    /// holders, in the same order, as `retain` keeps.
    #[test]
    fn keep_holders_keeps_what_retain_keeps() {
        for len in 0..=5u64 {
            for keep in 0..(1u32 << len) {
                let stays = |h: &Holder| keep & (1 << h.ts_ns) != 0;
                let mut ours: Vec<Holder> = (0..len).map(holder).collect();
                let mut want = ours.clone();
                keep_holders(&mut ours, stays);
                want.retain(stays);
                assert_eq!(ours, want, "{len} holders, kept {keep:#b}");
            }
        }
    }
}
