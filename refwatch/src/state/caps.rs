//! The tracker's memory caps: the budget of events all histories keep,
//! eviction of idle pages, and the counts of what the caps left out.

use super::{MIN_KEEP, Tracker};

impl Tracker {
    /// The most events all histories keep together: the budget, or
    /// [`MIN_KEEP`] per page when there are more pages than that allows.
    pub fn events_bound(&self) -> usize {
        self.max_events
            .max(self.pages.len().saturating_mul(MIN_KEEP))
    }

    /// No per-PFN history from now on, for a collector that shows none
    /// (`record`, `attach --headless`): its outputs hold every event, and
    /// `report` and `replay` rebuild the histories from a recording. The
    /// pages' state, holders, episodes and detectors are the same; an
    /// episode then lists no last events, and `--history` and
    /// `--max-events` bound nothing.
    pub fn keep_no_history(&mut self) {
        self.histories = false;
    }

    /// Whether pages keep their history.
    pub fn keeps_history(&self) -> bool {
        self.histories
    }

    /// A page's cap on its history now: its share of the budget, at least
    /// [`MIN_KEEP`], at most `--history`. A push never makes a history
    /// longer than this; one already longer (the cap fell as pages came)
    /// keeps its length until [`Tracker::trim_histories`].
    #[inline]
    pub(super) fn page_cap(&mut self) -> usize {
        let n = self.pages.len();
        if n != self.page_cap_for {
            self.page_cap_for = n;
            self.page_cap = (self.max_events / n.max(1))
                .clamp(MIN_KEEP.min(self.history_cap), self.history_cap);
        }
        self.page_cap
    }

    /// Trims every history to its share of 7/8 of the budget (at least
    /// [`MIN_KEEP`]): the events kept are within [`Tracker::events_bound`]
    /// again. Called when they are not: as pushes never make a history
    /// longer than its page's cap, that takes pages added since the last
    /// trim, or an eighth of the budget in new events, so the walk of every
    /// page is paid by the events that made it needed.
    #[cold]
    #[inline(never)]
    pub(super) fn trim_histories(&mut self) {
        let n = self.pages.len().max(1);
        let keep =
            (self.max_events / 8 * 7 / n).clamp(MIN_KEEP.min(self.history_cap), self.history_cap);
        let cap = self.history_cap;
        let mut dropped = 0;
        for p in self.pages.values_mut() {
            if p.history.len() > keep {
                dropped += p.history.trim(keep, cap);
            }
        }
        self.kept_events -= dropped;
        self.events_trimmed = self.events_trimmed.saturating_add(dropped as u64);
    }

    /// Caps the events kept in all histories together (at least 1); see
    /// [`Tracker::events_bound`].
    pub fn set_max_events(&mut self, n: usize) {
        self.max_events = n.max(1);
        self.page_cap_for = usize::MAX;
        if self.kept_events > self.events_bound() {
            self.trim_histories();
        }
    }

    /// Events kept in all histories now.
    pub fn kept_events(&self) -> usize {
        self.kept_events
    }

    /// Events dropped from histories to stay within the budget (not those a
    /// full `--history` drops).
    pub fn events_trimmed(&self) -> u64 {
        self.events_trimmed
    }

    /// Drops the longest-idle pages without open episodes (10% of the cap).
    pub(super) fn evict(&mut self) {
        let n = (self.max_pfns / 10).max(1);
        let mut done = 0;
        let mut rescanned = false;
        while done < n {
            let Some((last_ns, pfn)) = self.evict_queue.pop() else {
                if rescanned {
                    break;
                }
                self.scan_idle();
                rescanned = true;
                continue;
            };
            // Still idle and untouched since the scan: the oldest left.
            let idle = self
                .pages
                .get(&pfn)
                .is_some_and(|p| p.last_ns == last_ns && p.open.is_empty() && p.outstanding == 0);
            if idle && let Some(p) = self.pages.remove(&pfn) {
                self.kept_events -= p.history.len();
                // A page whose state is unknown stays unknown.
                self.untracked.keep(pfn, p.gaps, self.max_pfns);
                self.evicted += 1;
                done += 1;
            }
        }
    }

    /// Lists the idle pages, newest first, for [`Tracker::evict`] to take
    /// from the end. One scan of the table serves many evictions: a page
    /// touched since is skipped then (it is newer than every page listed),
    /// and a page that turned idle since is newer too, so the order stays
    /// exact.
    #[cold]
    #[inline(never)]
    pub(super) fn scan_idle(&mut self) {
        self.evict_queue.clear();
        self.evict_queue.extend(
            self.pages
                .values()
                .filter(|p| p.open.is_empty() && p.outstanding == 0)
                .map(|p| (p.last_ns, p.pfn)),
        );
        self.evict_queue.sort_unstable_by(|a, b| b.cmp(a));
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Caps the episodes kept (at least 1); the oldest closed ones go first.
    pub fn set_max_episodes(&mut self, n: usize) {
        self.max_episodes = n.max(1);
    }

    /// Closed episodes forgotten to stay within the cap.
    pub fn episodes_dropped(&self) -> u64 {
        self.episodes_dropped
    }

    /// Episodes opened while every kept episode was open: their pages are
    /// flagged, but their records (reason, holders) were not kept.
    pub fn episodes_unkept(&self) -> u64 {
        self.episodes_unkept
    }

    /// Episodes recorded so far, kept or since forgotten: the newest
    /// `episodes_opened() - n` of [`Tracker::episodes`] are those recorded
    /// after the first `n`.
    pub fn episodes_opened(&self) -> u64 {
        self.episodes_opened
    }

    /// Events on new pages not followed: the PFN cap was reached and every
    /// tracked page held references or an open episode.
    pub fn over_cap(&self) -> u64 {
        self.over_cap
    }

    /// What the caps on memory left out so far, for summaries: `None`
    /// while nothing was.
    pub fn caps_note(&self) -> Option<String> {
        let parts: Vec<String> = [
            (self.evicted, "idle pages evicted"),
            (
                self.over_cap,
                "events on new pages not followed (--max-pfns)",
            ),
            (
                self.events_trimmed,
                "old events trimmed from histories (--max-events)",
            ),
            (self.episodes_dropped, "old episodes forgotten"),
            (
                self.episodes_unkept,
                "episodes not kept (all kept ones open)",
            ),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}
