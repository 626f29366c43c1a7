//! Device pages' lifecycles: migrations into and out of device memory,
//! page maps coming and going, forks sharing device entries.

use super::{Detector, Holder, Page, PageState, PgmapInfo, Tracker};
use crate::{
    event::{Kind, Migration, PageEvent, Stage},
    rules::Rules,
    symbols::Role,
};
use refwatch_common::pgmap;

impl Tracker {
    /// A migration event: a moved page clears `migration-blocked` (and the
    /// event joins the destination's history); a page that stayed with more
    /// references than the migration expects opens it.
    pub(super) fn apply_migration(&mut self, ev: &PageEvent, m: Migration) {
        if m.moved {
            self.close(ev.pfn, Detector::MigrationBlocked, ev.ts_ns);
            // A system page's remembered holders (their drops are not
            // watched) are done with once it moved.
            if let Some(p) = self.pages.get_mut(&ev.pfn)
                && p.pgmap_type == pgmap::SYSTEM
            {
                p.holders.clear();
            }
            let (cap, max) = (self.page_cap(), self.history_cap);
            if let Some(dst) = m.dst_pfn
                && dst != ev.pfn
                && let Some(d) = self.pages.get_mut(&dst)
            {
                if self.histories {
                    self.kept_events +=
                        usize::from(d.history.push(ev, self.tasks.of(ev), cap, max));
                }
                if matches!(d.pgmap_type, pgmap::PRIVATE | pgmap::COHERENT) {
                    d.migrated_by = Some(ev.tgid);
                    entry_takes_over(d, ev, &self.rules);
                }
            }
            return;
        }
        // In i64: the counts are the kernel's, any value.
        let mappings = ev.mapcount.map_or(0, |m| (i64::from(m) + 1).max(0));
        // When a page is restored the migration still holds one reference
        // of its own (dropped right after), a system page one more for the
        // per-CPU LRU batch it is put back through; each mapping holds one.
        let own: i64 = if ev.pgmap_type == pgmap::SYSTEM { 2 } else { 1 };
        let expected = own + mappings;
        let rc = ev.refcount_after.or(ev.refcount_before);
        let extra = rc.map(|r| i64::from(r) - expected);
        let dir = m.direction_words();
        // A system page's references refwatch saw taken and not dropped
        // (GUP holders, `--ram-holders`): the migration left the page
        // behind while they were held, whatever the count says (the LRU
        // batch's reference comes and goes, so `expected` may be one too
        // many). A device page's holders include its owner's reference:
        // there the count decides.
        let held = self
            .pages
            .get(&ev.pfn)
            .filter(|p| p.pgmap_type == pgmap::SYSTEM)
            .map_or(0, |p| p.holders.len());
        let stage = if m.stage == Stage::Setup {
            "setup"
        } else {
            "finalize"
        };
        let reason = match m.stage {
            Stage::Copy => format!(
                "migration {dir} refused at the copy stage (folio_migrate_mapping -EAGAIN): refcount {} is not the count the migration expected{}",
                rc.map_or("?".into(), |r| r.to_string()),
                m.extra_count
                    .map_or(String::new(), |x| format!(" (extra_count {x})"))
            ),
            _ if extra.is_some_and(|e| e > 0) => format!(
                "migration {dir} left this page behind ({stage} stage, by {} pid {}): refcount {}, the migration expected {expected} ({own} of its own + {mappings} mapping(s)): {} extra reference(s)",
                ev.comm,
                ev.tgid,
                rc.unwrap_or(0),
                extra.unwrap_or(0)
            ),
            _ if held > 0 => format!(
                "migration {dir} left this page behind ({stage} stage, by {} pid {}): refcount {}, {held} reference(s) refwatch saw taken and not dropped",
                ev.comm,
                ev.tgid,
                rc.map_or("?".into(), |r| r.to_string()),
            ),
            // Failed for another reason (no destination page, a race): not
            // a reference problem.
            _ => return,
        };
        self.open(ev.pfn, Detector::MigrationBlocked, ev.ts_ns, reason);
        if let Some(p) = self.pages.get(&ev.pfn)
            && p.pgmap_type == pgmap::SYSTEM
            && p.holders.is_empty()
            && let Some(idx) = p.open.get(&Detector::MigrationBlocked)
            && let Some(ep) = self.episodes.get_mut(*idx)
        {
            ep.holder_note = Some(
                "a system page: refwatch names GUP holders of system pages only when run with --ram-holders, and other references (page cache, kernel users) not at all"
                    .into(),
            );
        }
    }

    /// A page map came up or is going away; references still outstanding on
    /// its pages when it goes are `orphaned`.
    pub(super) fn apply_pgmap(&mut self, ev: &PageEvent) {
        let first = ev.pfn;
        let pages = u64::from(ev.nr_pages);
        let known = self
            .pgmaps
            .iter()
            .position(|p| p.first_pfn == first && p.pages == pages);
        let idx = known.unwrap_or_else(|| {
            self.pgmaps.push(PgmapInfo {
                first_pfn: first,
                pages,
                pgmap_type: ev.pgmap_type,
                owner: ev.owner,
                added_ns: None,
                removed_ns: None,
            });
            self.pgmaps.len() - 1
        });
        let info = &mut self.pgmaps[idx];
        if ev.kind == Kind::PgmapAdd {
            info.added_ns = Some(ev.ts_ns);
            info.removed_ns = None;
            return;
        }
        info.removed_ns = Some(ev.ts_ns);
        let mut hit: Vec<(u64, i32)> = self
            .pages
            .values()
            .filter(|p| p.pfn >= first && p.pfn - first < pages && p.outstanding > 0)
            .map(|p| (p.pfn, p.outstanding))
            .collect();
        hit.sort_unstable();
        for (pfn, n) in hit {
            self.open(
                pfn,
                Detector::Orphaned,
                ev.ts_ns,
                format!(
                    "its page map (PFNs {first:#x}..{:#x}) is being torn down by {} (pid {}) while {n} reference(s) are outstanding",
                    first.saturating_add(pages),
                    ev.comm,
                    ev.tgid
                ),
            );
        }
    }

    /// A fork finished: references its parent thread took while forking
    /// belong to the child.
    pub(super) fn apply_fork(&mut self, ev: &PageEvent) {
        let Some(child) = ev.ret.and_then(|c| u32::try_from(c).ok()) else {
            return;
        };
        let Some(pfns) = self.fork_pending.remove(&ev.pid) else {
            return;
        };
        let fix = |h: &mut Holder| {
            if h.fork_pending && h.pid == ev.pid {
                h.fork_pending = false;
                h.forked_from = Some((h.tgid, h.pid));
                h.pid = child;
                h.tgid = child;
            }
        };
        for pfn in pfns {
            let Some(page) = self.pages.get_mut(&pfn) else {
                continue;
            };
            page.holders.iter_mut().for_each(fix);
            for idx in page.open.values() {
                if let Some(ep) = self.episodes.get_mut(*idx) {
                    ep.holders.iter_mut().for_each(fix);
                }
            }
        }
    }
}

/// A migration moved a page into device page `d`: its entry holds a
/// reference from now on, and the driver's allocation reference goes
/// (`migrate_vma_finalize`). Where refwatch saw neither (function mode:
/// `folio_get` in `remove_migration_pte` and the finalize's `folio_put` are
/// inline), the allocation's holder becomes the entry's: the count is the
/// same, and what holds it is the mapping. Where the entry's get was seen
/// (precise mode), nothing changes.
fn entry_takes_over(d: &mut Page, ev: &PageEvent, rules: &Rules) {
    if d.holders.iter().any(|h| h.role == Role::Map) {
        return;
    }
    let Some(h) = d.holders.iter_mut().rev().find(|h| h.kind == Kind::Get) else {
        return;
    };
    h.role = Role::Map;
    h.pid = ev.pid;
    h.tgid = ev.tgid;
    h.comm.clone_from(&ev.comm);
    h.ts_ns = ev.ts_ns;
    let Some(rc) = d.refcount else {
        return;
    };
    let map_refs = d.holders.iter().filter(|h| h.role == Role::Map).count();
    d.outstanding = rules.outstanding(
        d.pgmap_type,
        rc,
        d.mapcount,
        i32::try_from(map_refs).unwrap_or(i32::MAX),
    );
    if d.outstanding == 0 {
        d.outstanding_since = None;
        d.pinned_since = None;
        d.unmapped_since = None;
        d.state = PageState::Idle;
        d.state_since_ns = ev.ts_ns;
    }
}

/// Whether `ev` is the process that migrated a device-private page into
/// device memory unmapping it while other mappings keep it alive: device
/// entries are only shared by `fork`, so what keeps it is a child.
pub(super) fn kept_by_another(page: &Page, ev: &PageEvent) -> bool {
    page.migrated_by == Some(ev.tgid)
        && matches!(ev.kind, Kind::Put)
        && ev.role == Role::Unmap
        && still_kept(page, ev)
}

/// Whether a page another process keeps is still mapped and referenced.
pub(super) fn still_kept(page: &Page, ev: &PageEvent) -> bool {
    ev.kind != Kind::Free
        && page.refcount.is_some_and(|r| r > 0)
        && page.mapcount.is_some_and(|m| m >= 0)
}
