//! Which pages refwatch reads from the kernel before it calls them stuck,
//! and again while they stay stuck, and whether a read agrees with the
//! counts the events gave.
//!
//! Not every change of a count reaches a hook. From 6.15 a put that does not
//! drop a page's last reference is an inline `folio_put`: a pipe releasing
//! a spliced fs-dax page whose mapping stays, for one. The count refwatch
//! knows is then one too high until the page's next event, which may never
//! come, and the page would be flagged `held` by a holder long gone. So
//! where the kernel's pages can be read (the peek program), a page a
//! time-based detector flags now or has flagged is read first; a read that
//! disagrees goes in as a snapshot, which the recording keeps, so that a
//! report of the recording reaches the same verdict as the live view.

use std::collections::BinaryHeap;

use super::{Tracker, pgmap};
use crate::event::PageEvent;

/// How long after a read a page is read again while a detector flags it
/// (or would): at each of the detectors' ticks, a second apart, less their
/// jitter.
pub const REVERIFY_NS: u64 = 900_000_000;

/// At most this many pages are read per second; those read longest ago
/// first.
pub const MAX_VERIFY: usize = 4096;

impl Tracker {
    /// The PFNs to read from the kernel at `now_ns` (sorted, at most `max`):
    /// pages with references beyond idle and mappings, pinned, or unmapped
    /// but not freed for as long as the detector of that asks for, not read
    /// in the last [`REVERIFY_NS`]. Not pages whose state is unknown (their
    /// read follows the loss), watched pages (the watchpoint sees every
    /// write) or RAM pages.
    pub fn to_verify(&self, now_ns: u64, max: usize) -> Vec<u64> {
        let now = now_ns
            .max(self.now_ns)
            .min(self.loss_horizon.unwrap_or(u64::MAX));
        let th = self.thresholds;
        let due =
            |since: Option<u64>, after: u64| since.is_some_and(|s| now.saturating_sub(s) >= after);
        // The `max` read longest ago: a bounded max-heap, whatever the
        // number of pages flagged.
        let mut oldest: BinaryHeap<(u64, u64)> = BinaryHeap::new();
        let due_pages = self
            .hot
            .iter()
            .filter_map(|pfn| self.pages.get(pfn))
            .filter(|p| {
                p.pgmap_type != pgmap::SYSTEM
                    && !p.unknown()
                    && p.watched_since == 0
                    && now.saturating_sub(p.verified_ns) >= REVERIFY_NS
                    && (due(p.outstanding_since, th.held_ns)
                        || due(p.pinned_since, th.pinned_ns)
                        || due(p.unmapped_since, th.unmapped_ns))
            });
        for p in due_pages {
            if oldest.len() < max {
                oldest.push((p.verified_ns, p.pfn));
            } else if oldest
                .peek()
                .is_some_and(|top| (p.verified_ns, p.pfn) < *top)
            {
                oldest.pop();
                oldest.push((p.verified_ns, p.pfn));
            }
        }
        let mut pfns: Vec<u64> = oldest.into_iter().map(|(_, pfn)| pfn).collect();
        pfns.sort_unstable();
        pfns
    }

    /// Whether `read` (a snapshot of a page's counts) says what the events
    /// said: the same refcount and mapcount. A page not tracked agrees
    /// (there is nothing to correct).
    pub fn agrees(&self, read: &PageEvent) -> bool {
        self.pages
            .get(&read.pfn)
            .is_none_or(|p| p.refcount == read.refcount_after && p.mapcount == read.mapcount)
    }

    /// Notes that page `pfn` was read at `ts_ns`.
    pub fn note_verified(&mut self, pfn: u64, ts_ns: u64) {
        if let Some(p) = self.pages.get_mut(&pfn) {
            p.verified_ns = p.verified_ns.max(ts_ns);
        }
    }
}
