//! The last reference of a folio went away.
//!
//! `void __folio_put(struct folio *)` (6.1+): the refcount is already 0 at
//! entry; ZONE_DEVICE folios go on to `free_zone_device_*`.
use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use refwatch_common::{counter, hook, kind};

use crate::{
    emit::{Fields, count, emit},
    page::{device_page, mapcount, refcount},
};

#[fentry]
pub fn fentry_folio_put(ctx: FEntryContext) -> i32 {
    let folio: u64 = super::raw_arg(&ctx, 0);
    on_folio_put(&ctx, folio);
    0
}

#[kprobe]
pub fn kprobe_folio_put(ctx: ProbeContext) -> u32 {
    on_folio_put(&ctx, ctx.arg(0).unwrap_or(0));
    0
}

#[inline(always)]
fn on_folio_put<C: aya_ebpf::EbpfContext>(ctx: &C, folio: u64) {
    let Some(p) = device_page(folio) else {
        count(counter::FILTERED);
        return;
    };
    let after = refcount(p.head);
    emit(
        ctx,
        &Fields {
            kind: kind::PUT,
            hook: hook::FOLIO_PUT,
            pfn: p.pfn,
            head: p.head,
            pgmap_type: p.pgmap_type,
            before: after.map(|a| a + 1),
            after,
            mapcount: mapcount(p.head),
            ret: None,
            aux: 1,
            aux2: 0,
            owner: p.owner,
            nr_pages: 1,
            stack: true,
        },
    );
}
