//! The user's filters (`--pfn`, `--type`, `--pid`, `--cgroup`), tested
//! before an event costs a stack walk or a ring-buffer slot.
//!
//! PFN and type are properties of the page: every event of a page that
//! matches passes, whoever causes it. Pid and cgroup are properties of the
//! task, and a page's refcount is only right when all its events are seen;
//! so a task filter follows a page from the first event a matching task
//! causes on it, and from then on lets every event of that page pass.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_cgroup_id},
    macros::map,
    maps::LruHashMap,
};
use refwatch_common::{FOLLOWED_PFNS, MAX_PFN_RANGES, counter, kind};

use crate::{LAYOUT, emit::count, page::layout};

/// PFNs followed under a task filter (value unused). LRU: when full, the
/// page touched least recently is forgotten.
#[map]
static FOLLOWED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(FOLLOWED_PFNS, 0);

/// Whether the page `pfn` of stable type `pgmap_type` passes `--pfn` and
/// `--type`.
#[inline(always)]
pub fn page_passes(pfn: u64, pgmap_type: u32) -> bool {
    let types = layout!(filter_types);
    if types != 0 && (pgmap_type >= 32 || types & (1 << pgmap_type) == 0) {
        return false;
    }
    pfn_passes(pfn)
}

/// Whether `pfn` is in a `--pfn` range (or none was given).
#[inline(always)]
fn pfn_passes(pfn: u64) -> bool {
    let n = layout!(filter_pfn_ranges) as usize;
    if n == 0 {
        return true;
    }
    for i in 0..MAX_PFN_RANGES {
        if i >= n {
            break;
        }
        // SAFETY: indexes within the arrays of a plain global; volatile for
        // the same reason as `layout!`.
        let (lo, hi) = unsafe {
            (
                core::ptr::read_volatile(&raw const LAYOUT.filter_pfn_lo[i]),
                core::ptr::read_volatile(&raw const LAYOUT.filter_pfn_hi[i]),
            )
        };
        if pfn >= lo && pfn <= hi {
            return true;
        }
    }
    false
}

/// Whether `--pid` or `--cgroup` was given.
#[inline(always)]
fn task_filter_on() -> bool {
    layout!(filter_tgid) != 0 || layout!(filter_cgroup) != 0
}

/// Whether the current task is in the `--pid` process and the `--cgroup`
/// cgroup (each when given).
#[inline(always)]
fn task_matches() -> bool {
    let tgid = layout!(filter_tgid);
    if tgid != 0 && (bpf_get_current_pid_tgid() >> 32) as u32 != tgid {
        return false;
    }
    let cgroup = layout!(filter_cgroup);
    // SAFETY: a helper without arguments.
    if cgroup != 0 && unsafe { bpf_get_current_cgroup_id() } != cgroup {
        return false;
    }
    true
}

/// Whether events of `pfn` pass the task filter now: always without one;
/// with one, when the page is followed, or when the current task matches
/// (the page is followed from then on).
#[inline(always)]
pub fn follows(pfn: u64) -> bool {
    if !task_filter_on() {
        return true;
    }
    if followed(pfn) {
        return true;
    }
    if !task_matches() {
        return false;
    }
    let _ = FOLLOWED.insert(pfn, 1, 0);
    true
}

#[inline(always)]
fn followed(pfn: u64) -> bool {
    // SAFETY: only whether the key is there is used, not the value.
    unsafe { FOLLOWED.get(pfn) }.is_some()
}

/// Whether the user's filters leave out an event of `kind` on `pfn`
/// (counted as [`counter::SKIPPED`]); `aux` is the event's. Page maps
/// coming and going and forks are not events of one page: they always
/// pass. A migration is an event of both its pages (`aux` is the
/// destination PFN + 1): it passes when either does, and a page a followed
/// page moves to is followed too (the type of the destination is not known
/// here: only `--pfn` is asked of it).
#[inline(always)]
pub fn skips(kind: u32, pfn: u64, pgmap_type: u32, aux: u64) -> bool {
    if kind == kind::PGMAP_ADD || kind == kind::PGMAP_REMOVE || kind == kind::FORK {
        return false;
    }
    if kind == kind::MIGRATE && aux != 0 {
        let dst = aux - 1;
        if (page_passes(pfn, pgmap_type) || pfn_passes(dst)) && (follows(pfn) || followed(dst)) {
            if task_filter_on() {
                let _ = FOLLOWED.insert(pfn, 1, 0);
                let _ = FOLLOWED.insert(dst, 1, 0);
            }
            return false;
        }
    } else if page_passes(pfn, pgmap_type) && follows(pfn) {
        return false;
    }
    count(counter::SKIPPED);
    true
}

/// Whether `--pfn` or `--type` leaves out the page (counted as
/// [`counter::SKIPPED`]): for entries that note a page for their exit,
/// where the task filter waits for the event.
#[inline(always)]
pub fn skips_page(pfn: u64, pgmap_type: u32) -> bool {
    if page_passes(pfn, pgmap_type) {
        return false;
    }
    count(counter::SKIPPED);
    true
}
