//! GUP reference and pin grabs.
//!
//! - `int try_grab_folio(struct folio *, int refs, unsigned int flags)` (6.6.47+, 6.10+);
//! - `struct folio *try_grab_folio(struct page *, int refs, unsigned int flags)` (6.1–6.6.46);
//! - `static struct folio *try_grab_folio_fast(struct page *, int refs, unsigned int flags)` (6.10+);
//! - `bool/int try_grab_page(struct page *, unsigned int flags)` (≤6.6.46).
//!
//! Every page a process hands to the kernel passes these, so their cost on
//! ordinary pages is what refwatch costs a GUP-heavy program. The three
//! folio grabs therefore attach as one fexit program each, without an
//! entry program: fexit has the arguments and the return value, so it
//! knows whether the grab succeeded and what it added (`refs`, or `refs`
//! × the pin bias for a pin of a small folio), and the refcount before is
//! the one after less that. One trampoline program instead of two per
//! grab, and no in-flight entry for device pages.
//!
//! `try_grab_page` keeps an entry program that reads the refcount before:
//! it returns `bool` before 6.2 and `int` after, where success is 1 and 0
//! respectively. In kprobe mode every grab does, as kretprobes have no
//! arguments. There the event is decided from the refcount change.
//!
//! The two that return a folio record what it means as `ret` (1: the
//! folio, 0: NULL, or the errno of an `ERR_PTR`), never its address
//! (`refwatch_common::ret`).
use aya_ebpf::programs::FExitContext;
use refwatch_common::{counter, hook, kind, ret};

use super::{GET_HOOKS, GUP_PIN_COUNTING_BIAS, cover_outer, raw_arg};
use crate::{
    emit::{Fields, count, emit},
    page::{DevicePage, device_page, layout, mapcount, read_u64, refcount},
};

super::exit_only!(
    hook = hook::TRY_GRAB_FOLIO,
    on_exit = on_grab_exit,
    fexit = fexit_grab_folio,
    kprobe = kprobe_grab_folio,
    kretprobe = kretprobe_grab_folio,
);

super::exit_only!(
    hook = hook::TRY_GRAB_FOLIO_PAGE,
    on_exit = on_grab_exit,
    fexit = fexit_grab_folio_page,
    kprobe = kprobe_grab_folio_page,
    kretprobe = kretprobe_grab_folio_page,
);

super::exit_only!(
    hook = hook::TRY_GRAB_FOLIO_FAST,
    on_exit = on_grab_exit,
    fexit = fexit_grab_fast,
    kprobe = kprobe_grab_fast,
    kretprobe = kretprobe_grab_fast,
);

super::entry_exit!(
    hook = hook::TRY_GRAB_PAGE,
    args = 1,
    fentry = fentry_grab_page,
    fexit = fexit_grab_page,
    kprobe = kprobe_grab_page,
    kretprobe = kretprobe_grab_page,
);

/// Whether a folio grab succeeded, from its raw return: 0 for the `int`
/// one, a folio (not NULL, not an `ERR_PTR`) for the others.
#[inline(always)]
fn succeeded(hook: u32, raw: i64) -> bool {
    match ret::type_of(hook) {
        ret::INT => raw as i32 == 0,
        _ => ret::value(hook, raw) == Some(1),
    }
}

/// Whether `page` belongs to a large folio: a tail page, or a head page
/// (`PG_head`).
#[inline(always)]
fn large(page: u64, p: &DevicePage) -> bool {
    if page != p.head {
        return true;
    }
    read_u64(p.head + layout!(off_flags) as u64)
        .is_some_and(|f| (f >> (layout!(pg_head) & 63)) & 1 != 0)
}

/// The exit of a folio grab `hook`: arguments 0 (the page or folio), 1
/// (`refs`) and 2 (GUP's flags) of `ctx`, `raw` its return value.
#[inline(always)]
fn on_grab_exit(ctx: &FExitContext, hook: u32, raw: i64) {
    let ptr = raw_arg(ctx, 0);
    let refs = raw_arg(ctx, 1) as i32;
    let gup_flags = raw_arg(ctx, 2) as u32;
    let ok = succeeded(hook, raw);
    let Some(p) = device_page(ptr) else {
        if ok {
            super::ram_gets::remember(ctx, hook, ptr, refs as u64);
        }
        count(counter::FILTERED);
        return;
    };
    // A failed grab took nothing (what it took and gave back on the way,
    // `folio_put_refs`, nets out); precise mode's tracepoints see grabs.
    if !ok || refs <= 0 || super::precise() || crate::filter::skips_page(p.pfn, p.pgmap_type) {
        return;
    }
    let pin = gup_flags & layout!(foll_pin) != 0;
    // GUP's rule: a pin of a small folio adds the bias per reference; of a
    // large one, one reference (and the pin count) per reference.
    let added = if pin && !large(ptr, &p) {
        refs.saturating_mul(GUP_PIN_COUNTING_BIAS)
    } else {
        refs
    };
    let after = refcount(p.head);
    cover_outer(&GET_HOOKS, hook, p.head, false);
    emit(
        ctx,
        &Fields {
            kind: if added >= GUP_PIN_COUNTING_BIAS {
                kind::PIN
            } else {
                kind::GET
            },
            hook,
            pfn: p.pfn,
            head: p.head,
            pgmap_type: p.pgmap_type,
            before: after.map(|a| a.saturating_sub(added)),
            after,
            mapcount: mapcount(p.head),
            ret: ret::value(hook, raw),
            aux: refs as u64,
            aux2: 0,
            owner: p.owner,
            nr_pages: 1,
            stack: true,
            flags: 0,
        },
    );
}
