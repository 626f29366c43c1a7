//! Lost events: which pages a loss may have touched, and what refwatch
//! then knows of them. A page with a gap whose state no later event has
//! told is unknown: no episode opens or stays open on it.

use super::{Detector, Page, Tracker};
use crate::fasthash::FastMap;

/// How much later than a loss an event must be stamped to tell the page's
/// state after it: events are stamped after their stack walk, on several
/// CPUs, so one stamped a little after a loss may have read the page
/// before the lost operation.
pub const GAP_SLACK_NS: u64 = 40_000_000;

/// What loss did to one page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gaps {
    /// Losses noted on the page.
    pub gaps: u32,
    /// Since when its state is unknown (the last loss no later event told).
    pub unknown_since: Option<u64>,
}

/// Losses on pages refwatch has not tracked (yet), or no longer tracks
/// (evicted). Bounded like the pages (`--max-pfns`): when full, the tenth
/// whose state is known or has been unknown the longest goes.
#[derive(Debug, Clone, Default)]
pub(super) struct Untracked(FastMap<u64, Gaps>);

impl Untracked {
    /// Makes room for `pfn` within `cap` entries.
    pub(super) fn make_room(&mut self, pfn: u64, cap: usize) {
        if self.0.len() < cap || self.0.contains_key(&pfn) {
            return;
        }
        let mut by_age: Vec<(Option<u64>, u64)> =
            self.0.iter().map(|(p, g)| (g.unknown_since, *p)).collect();
        let n = (cap / 10).max(1).min(by_age.len());
        if n > 0 && n < by_age.len() {
            by_age.select_nth_unstable(n - 1);
        }
        for (_, p) in by_age.into_iter().take(n) {
            self.0.remove(&p);
        }
    }

    /// Keeps what loss did to an evicted page.
    pub(super) fn keep(&mut self, pfn: u64, g: Gaps, cap: usize) {
        if g.gaps > 0 {
            self.make_room(pfn, cap);
            self.0.insert(pfn, g);
        }
    }
}

impl Tracker {
    /// An event of `pfn` was lost at `ts_ns`: the page's history gets a gap,
    /// and unless an event stamped well after the loss was already applied,
    /// its state is unknown until the next one; the episodes open on it
    /// end (their condition can no longer be told).
    pub fn apply_gap(&mut self, pfn: u64, ts_ns: u64) {
        self.gaps_total = self.gaps_total.saturating_add(1);
        let Some(page) = self.pages.get_mut(&pfn) else {
            let cap = self.max_pfns;
            self.untracked.make_room(pfn, cap);
            let g = self.untracked.0.entry(pfn).or_default();
            g.gaps = g.gaps.saturating_add(1);
            g.unknown_since = Some(g.unknown_since.unwrap_or(0).max(ts_ns));
            return;
        };
        page.gaps.gaps = page.gaps.gaps.saturating_add(1);
        if page.last_ns <= ts_ns.saturating_add(GAP_SLACK_NS) {
            let since = page.gaps.unknown_since.unwrap_or(0).max(ts_ns);
            page.gaps.unknown_since = Some(since);
            end_on_loss(page, &mut self.episodes, ts_ns);
        }
    }

    /// A loss whose page could not be noted: every tracked page may have
    /// lost an event.
    pub fn apply_gap_everywhere(&mut self, ts_ns: u64) {
        let pfns: Vec<u64> = self.pages.keys().copied().collect();
        for pfn in pfns {
            self.apply_gap(pfn, ts_ns);
        }
        self.unattributed = self.unattributed.saturating_add(1);
    }

    /// Every loss up to `ts_ns` has been applied: the time-based detectors
    /// may judge pages up to then. Once set, they never look past it.
    pub fn set_loss_horizon(&mut self, ts_ns: u64) {
        self.loss_horizon = Some(self.loss_horizon.unwrap_or(0).max(ts_ns));
    }

    /// Gaps noted in all.
    pub fn gaps_total(&self) -> u64 {
        self.gaps_total
    }

    /// Losses whose page was not known (every page was marked).
    pub fn unattributed(&self) -> u64 {
        self.unattributed
    }

    /// Pages whose state is unknown now because of loss, by PFN, with
    /// their gaps (tracked or not).
    pub fn unknown_pages(&self) -> Vec<(u64, Gaps)> {
        let mut v: Vec<(u64, Gaps)> = self
            .pages()
            .filter(|p| p.gaps.unknown_since.is_some())
            .map(|p| (p.pfn, p.gaps))
            .chain(
                self.untracked
                    .0
                    .iter()
                    .filter(|(_, g)| g.unknown_since.is_some())
                    .map(|(pfn, g)| (*pfn, *g)),
            )
            .collect();
        v.sort_by_key(|(pfn, _)| *pfn);
        v
    }

    /// Pages with any gap, by PFN.
    pub fn gapped_pages(&self) -> Vec<(u64, Gaps)> {
        let mut v: Vec<(u64, Gaps)> = self
            .pages()
            .filter(|p| p.gaps.gaps > 0)
            .map(|p| (p.pfn, p.gaps))
            .chain(self.untracked.0.iter().map(|(pfn, g)| (*pfn, *g)))
            .collect();
        v.sort_by_key(|(pfn, _)| *pfn);
        v
    }

    /// Whether losses on pages not tracked wait for their page.
    #[inline]
    pub(super) fn has_untracked(&self) -> bool {
        !self.untracked.0.is_empty()
    }

    /// What a page first seen now lost before (taken over from the
    /// untracked losses).
    pub(super) fn take_untracked(&mut self, pfn: u64) -> Option<Gaps> {
        if self.untracked.0.is_empty() {
            return None;
        }
        self.untracked.0.remove(&pfn)
    }
}

/// Tells `page` of an event stamped `ts_ns`: one well after its last loss
/// carries its state again.
#[inline]
pub(super) fn resync(page: &mut Page, ev: &crate::event::PageEvent) {
    // A snapshot read the page after the loss was noted; another event may
    // have been stamped a little after a loss it read the page before.
    let slack = if ev.kind == crate::event::Kind::Snapshot {
        0
    } else {
        GAP_SLACK_NS
    };
    if let Some(since) = page.gaps.unknown_since
        && ev.ts_ns >= since.saturating_add(slack).saturating_add(1)
    {
        page.gaps.unknown_since = None;
    }
}

/// Ends the page's episodes whose condition a loss hides.
fn end_on_loss(page: &mut Page, episodes: &mut [super::Episode], ts_ns: u64) {
    for d in Detector::ALL {
        if let Some(idx) = page.open.remove(&d)
            && let Some(ep) = episodes.get_mut(idx)
        {
            ep.end_ns = Some(ts_ns);
            ep.ended_by_loss = true;
        }
    }
    page.outstanding_since = None;
    page.pinned_since = None;
    page.unmapped_since = None;
    page.kept_since = None;
}
