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
    page::device_page,
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
    let f = Fields::about(kind::PUT, hook::FOLIO_PUT, &p);
    emit(
        ctx,
        &Fields {
            // The count is already 0: the last reference went at entry.
            before: f.after.map(|a| a + 1),
            aux: 1,
            ..f
        },
    );
}
