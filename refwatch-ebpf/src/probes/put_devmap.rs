//! fs-dax reference drops on 1-based kernels.
//!
//! `bool __put_devmap_managed_page_refs(struct page *page, int refs)` (6.1–6.9)
//! and `bool __put_devmap_managed_folio_refs(struct folio *folio, int refs)`
//! (6.10–6.14): subtracts `refs` from an fs-dax page and wakes DAX waiters at 1.
//! Returns false (nothing done) for other page types.
//!
//! Every fs-dax put passes here, so it attaches as one fexit program: the
//! return value says whether it dropped anything, `refs` what, and the
//! refcount before is the one after plus that. It never frees the page (an
//! fs-dax page is idle at 1 on these kernels), so the page is still the
//! same page at the exit. Kprobe mode keeps entry + exit.
use aya_ebpf::programs::FExitContext;
use refwatch_common::{hook, kind, ret};

use super::{DROP_HOOKS, GUP_PIN_COUNTING_BIAS, cover_outer, raw_arg};
use crate::{
    emit::{Fields, emit},
    page::{device_page, mapcount, refcount},
};

super::exit_only!(
    hook = hook::PUT_DEVMAP_REFS,
    on_exit = on_put_exit,
    fexit = fexit_put_devmap,
    kprobe = kprobe_put_devmap,
    kretprobe = kretprobe_put_devmap,
);

/// The exit of the put `h`: arguments 0 (the page or folio) and 1
/// (`refs`) of `ctx`, `raw` its return value.
#[inline(always)]
fn on_put_exit(ctx: &FExitContext, h: u32, raw: i64) {
    // False: not an fs-dax page; the caller drops the reference inline and
    // an enclosing hook (or the free) reports it.
    if ret::value(h, raw) != Some(1) {
        return;
    }
    let Some(p) = device_page(raw_arg(ctx, 0)) else {
        return;
    };
    let refs = raw_arg(ctx, 1) as i32;
    if refs <= 0 || super::precise() || crate::filter::skips_page(p.pfn, p.pgmap_type) {
        return;
    }
    let after = refcount(p.head);
    // The innermost drop hook reports; an unpin entry point around it says
    // what the drop is.
    let unpin = cover_outer(&DROP_HOOKS, h, p.head, true) || refs >= GUP_PIN_COUNTING_BIAS;
    emit(
        ctx,
        &Fields {
            kind: if unpin { kind::UNPIN } else { kind::PUT },
            hook: h,
            pfn: p.pfn,
            head: p.head,
            pgmap_type: p.pgmap_type,
            before: after.map(|a| a.saturating_add(refs)),
            after,
            mapcount: mapcount(p.head),
            ret: Some(1),
            aux: refs as u64,
            aux2: 0,
            owner: p.owner,
            nr_pages: 1,
            stack: true,
            flags: 0,
        },
    );
}
