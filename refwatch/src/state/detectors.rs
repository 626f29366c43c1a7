//! The time-based detectors, and opening and closing episodes.

use super::{
    Detector, Episode, MAX_HOLDERS, PIN_BIAS, Page, Tracker, UNKEPT,
    holders::{holders_of, unknown_note},
};
use crate::{
    event::{Kind, PageEvent},
    fasthash::FastSet,
    rules::Rules,
};

impl Tracker {
    /// Runs the time-based detectors at `now_ns` (monotonic, like event times).
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.last_advance_ns = self.now_ns;
        // Only as far as losses are known: a page whose events were lost
        // since then must not be judged on the state before the loss.
        let now = self.now_ns.min(self.loss_horizon.unwrap_or(u64::MAX));
        let th = self.thresholds;
        let mut to_open = Vec::new();
        let pages = &mut self.pages;
        self.hot.retain(|pfn| {
            // Pages with nothing outstanding any more (or gone) leave.
            let Some(p) = pages.get_mut(pfn) else {
                return false;
            };
            p.hot = p.outstanding != 0 || p.kept_since.is_some();
            if !p.hot {
                return false;
            }
            let p = &**p;
            // No verdict on a page whose state is unknown (events lost).
            if p.unknown() {
                return true;
            }
            let idle = self.rules.idle(p.pgmap_type);
            let rc = p.refcount.map_or("?".into(), |r| r.to_string());
            if let Some(since) = p.outstanding_since
                && now.saturating_sub(since) >= th.held_ns
                && !p.open.contains_key(&Detector::Held)
            {
                to_open.push((
                    *pfn,
                    Detector::Held,
                    since,
                    format!(
                        "{} reference(s) beyond idle (refcount {rc}, idle {idle}) held for more than {}",
                        p.outstanding,
                        secs(th.held_ns)
                    ),
                ));
            }
            if let Some(since) = p.pinned_since
                && now.saturating_sub(since) >= th.pinned_ns
                && !p.open.contains_key(&Detector::Pinned)
            {
                to_open.push((
                    *pfn,
                    Detector::Pinned,
                    since,
                    format!(
                        "refcount {rc} carries the GUP pin bias ({} pin(s)) for more than {}",
                        p.outstanding / PIN_BIAS,
                        secs(th.pinned_ns)
                    ),
                ));
            }
            if let Some(since) = p.unmapped_since
                && now.saturating_sub(since) >= th.unmapped_ns
                && !p.open.contains_key(&Detector::UnmappedNotFreed)
            {
                to_open.push((
                    *pfn,
                    Detector::UnmappedNotFreed,
                    since,
                    format!(
                        "unmapped but not freed for more than {}: refcount {rc}, {} reference(s) left",
                        secs(th.unmapped_ns),
                        p.outstanding
                    ),
                ));
            }
            if let Some(since) = p.kept_since
                && now.saturating_sub(since) >= th.held_ns
                && !p.open.contains_key(&Detector::KeptByChild)
            {
                let by = p.migrated_by.unwrap_or(0);
                to_open.push((
                    *pfn,
                    Detector::KeptByChild,
                    since,
                    format!(
                        "device memory kept alive by a process forked from pid {by} for more than {} after pid {by}, which migrated it to the device, unmapped it: refcount {rc}, {} mapping(s)",
                        secs(th.held_ns),
                        p.mapcount.map_or("?".into(), |m| (i64::from(m) + 1).to_string())
                    ),
                ));
            }
            true
        });
        to_open.sort_by_key(|(pfn, d, ..)| (*pfn, *d));
        for (pfn, d, since, reason) in to_open {
            self.open_at(pfn, d, since, reason, now);
        }
    }

    /// The pages of the episodes open and kept: their release is the
    /// episode's releaser (`released_by`).
    pub fn open_episode_pfns(&self) -> FastSet<u64> {
        self.episodes
            .iter()
            .filter(|e| e.end_ns.is_none())
            .map(|e| e.pfn)
            .collect()
    }

    pub(super) fn open(&mut self, pfn: u64, d: Detector, start_ns: u64, reason: String) {
        self.open_at(pfn, d, start_ns, reason, self.now_ns);
    }

    /// Opens an episode detected at `now`.
    fn open_at(&mut self, pfn: u64, d: Detector, start_ns: u64, reason: String, now: u64) {
        let Some(page) = self.pages.get_mut(&pfn) else {
            return;
        };
        if page.open.contains_key(&d) {
            return;
        }
        // A page whose state is unknown gets no verdict from state; a layout
        // wait or a migration's refusal is the kernel's own word.
        if page.unknown() && !matches!(d, Detector::LayoutWait | Detector::MigrationBlocked) {
            return;
        }
        // A hard cap: the oldest closed episodes go first; when every
        // kept one is open, the page is flagged all the same but this
        // episode's record is not kept (counted, shown).
        if self.episodes.len() >= self.max_episodes {
            self.forget_closed_episodes();
        }
        let Some(page) = self.pages.get_mut(&pfn) else {
            return;
        };
        if self.episodes.len() >= self.max_episodes {
            page.open.insert(d, UNKEPT);
            self.episodes_unkept = self.episodes_unkept.saturating_add(1);
            return;
        }
        let (holders, holder_note, last_events) = holders_of(page);
        self.episodes_opened = self.episodes_opened.saturating_add(1);
        self.episodes.push(Episode {
            pfn,
            pgmap_type: page.pgmap_type,
            detector: d,
            reason,
            start_ns,
            detected_ns: now,
            end_ns: None,
            holders,
            holder_note,
            last_events,
            ended_by_loss: false,
            released_by: None,
        });
        page.open.insert(d, self.episodes.len() - 1);
    }

    /// Keeps every open episode and the newest closed ones, down to three
    /// quarters of the cap (so this runs once per quarter of the cap), and
    /// points the pages' open episodes at their new places.
    #[cold]
    #[inline(never)]
    fn forget_closed_episodes(&mut self) {
        let target = self.max_episodes - self.max_episodes / 4;
        let open = self.episodes.iter().filter(|e| e.end_ns.is_none()).count();
        let mut closed_to_drop = self.episodes.len().saturating_sub(target.max(open));
        if closed_to_drop == 0 {
            return;
        }
        let mut moved = vec![usize::MAX; self.episodes.len()];
        let mut kept = Vec::with_capacity(self.episodes.len() - closed_to_drop);
        for (i, e) in std::mem::take(&mut self.episodes).into_iter().enumerate() {
            if e.end_ns.is_some() && closed_to_drop > 0 {
                closed_to_drop -= 1;
                self.episodes_dropped += 1;
                continue;
            }
            moved[i] = kept.len();
            kept.push(e);
        }
        self.episodes = kept;
        for p in self.pages.values_mut() {
            for idx in p.open.values_mut() {
                *idx = moved.get(*idx).copied().unwrap_or(UNKEPT);
            }
        }
    }

    pub(super) fn close(&mut self, pfn: u64, d: Detector, ts: u64) {
        if let Some(page) = self.pages.get_mut(&pfn)
            && let Some(idx) = page.open.remove(&d)
            && let Some(ep) = self.episodes.get_mut(idx)
        {
            ep.end_ns = Some(ts);
        }
    }

    /// Open episodes without a holder say why anew: a watch armed or ended
    /// on their page since they opened changes what is known of it.
    pub(super) fn refresh_note(&mut self, pfn: u64) {
        let Some(page) = self.pages.get(&pfn) else {
            return;
        };
        for idx in page.open.values() {
            if let Some(ep) = self.episodes.get_mut(*idx)
                && ep.holders.is_empty()
            {
                ep.holder_note = Some(unknown_note(page));
            }
        }
    }

    /// Open episodes learn of holders that appear while they are open.
    pub(super) fn refresh_holders(&mut self, pfn: u64) {
        let Some(page) = self.pages.get(&pfn) else {
            return;
        };
        if page.holders.is_empty() {
            return;
        }
        for idx in page.open.values() {
            if let Some(ep) = self.episodes.get_mut(*idx) {
                for h in &page.holders {
                    if ep.holders.len() < MAX_HOLDERS && !ep.holders.contains(h) {
                        ep.holders.push(h.clone());
                        ep.holder_note = None;
                    }
                }
            }
        }
    }
}

/// A set of detectors.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Detectors(u8);

impl Detectors {
    pub(super) fn insert(&mut self, d: Detector) {
        self.0 |= 1 << d as u8;
    }

    /// In [`Detector::ALL`] order.
    fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL
            .into_iter()
            .filter(move |d| self.0 & (1 << *d as u8) != 0)
    }
}

/// The episode a layout break waiting on `page` opens.
#[cold]
#[inline(never)]
pub(super) fn layout_wait(ev: &PageEvent, page: &Page, rules: &Rules) -> (Detector, u64, String) {
    (
        Detector::LayoutWait,
        ev.ts_ns,
        format!(
            "a DAX layout break (truncate or hole punch) by {} (pid {}) waits for this page: refcount {}, {} reference(s) beyond idle {}",
            ev.comm,
            ev.tgid,
            page.refcount.map_or("?".into(), |r| r.to_string()),
            page.outstanding,
            rules.idle(page.pgmap_type)
        ),
    )
}

/// Ends the episodes of `page` that `to_close` names, at `ev`'s time; a
/// drop (put, unpin, free) is what released the page.
#[cold]
#[inline(never)]
pub(super) fn close_all(
    page: &mut Page,
    episodes: &mut [Episode],
    to_close: Detectors,
    ev: &PageEvent,
) {
    let released = matches!(ev.kind, Kind::Put | Kind::Unpin | Kind::Free);
    for d in to_close.iter() {
        if let Some(idx) = page.open.remove(&d)
            && let Some(ep) = episodes.get_mut(idx)
        {
            ep.end_ns = Some(ev.ts_ns);
            if released {
                ep.released_by = Some(Box::new(ev.clone()));
            }
        }
    }
}

fn secs(ns: u64) -> String {
    format!("{:.1}s", ns as f64 / 1e9)
}
