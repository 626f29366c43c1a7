//! Hardware watchpoints on pages' `_refcount` words.
//!
//! Userspace opens one breakpoint perf event (`HW_BREAKPOINT_W`, 4 bytes,
//! a kernel address) per CPU per watched page and attaches this program to
//! each. Every write to the word traps, whichever code made it (inline
//! `get_page`/`folio_get`/`page_ref_inc` included); on x86 the trap comes
//! after the write, so the value read here is the value after. The value
//! before is the last one the watch knew: `WATCH_LAST`, written by
//! userspace when it armed the watch and updated by every hit.
use aya_ebpf::{
    macros::{map, perf_event},
    maps::HashMap,
    programs::PerfEventContext,
};
use refwatch_common::{WATCH_PAGES, WatchLast, counter, hook, kind};

use crate::{
    emit::{Fields, count, emit},
    page::{device_page, layout, refcount},
    probes::GUP_PIN_COUNTING_BIAS,
};

/// Watched PFN → what the watch knows of it.
#[map]
static WATCH_LAST: HashMap<u64, WatchLast> = HashMap::with_max_entries(WATCH_PAGES, 0);

#[perf_event]
pub fn watch_hit(ctx: PerfEventContext) -> u32 {
    // SAFETY: a load of the context's `addr` field (the breakpoint's
    // address, `perf_sample_data.addr`), which the verifier rewrites.
    let addr = unsafe { core::ptr::read_volatile(&raw const (*ctx.ctx).addr) };
    on_hit(&ctx, addr);
    0
}

#[inline(always)]
fn on_hit(ctx: &PerfEventContext, addr: u64) {
    let off = layout!(off_refcount) as u64;
    if addr < off {
        count(counter::WATCH_STRAY);
        return;
    }
    let Some(p) = device_page(addr - off) else {
        count(counter::WATCH_STRAY);
        return;
    };
    let after = refcount(p.head);
    let mut before = None;
    let mut hits = 0;
    if let Some(last) = WATCH_LAST.get_ptr_mut(p.pfn) {
        // SAFETY: the map's value for this PFN; hits of one page on two
        // CPUs at once may interleave here, and then one `before` is the
        // other's (the values stay those the word held).
        unsafe {
            before = Some((*last).refcount);
            (*last).hits = (*last).hits.wrapping_add(1);
            hits = (*last).hits;
            if let Some(a) = after {
                (*last).refcount = a;
            }
        }
    }
    // A pin of a small folio adds the pin bias: at once (slow GUP), or 1
    // then the rest (fast GUP); its unpin drops it at once.
    let pin = i64::from(GUP_PIN_COUNTING_BIAS - 1);
    let k = match (before, after) {
        (Some(b), Some(a)) if i64::from(a) - i64::from(b) >= pin => kind::PIN,
        (Some(b), Some(a)) if i64::from(b) - i64::from(a) >= pin => kind::UNPIN,
        (Some(b), Some(a)) if a > b => kind::GET,
        (Some(b), Some(a)) if a < b => kind::PUT,
        _ => kind::SET,
    };
    let mut f = Fields::about(k, hook::WATCHPOINT, &p);
    f.before = before;
    f.after = after;
    f.aux = u64::from(hits);
    emit(ctx, &f);
}
