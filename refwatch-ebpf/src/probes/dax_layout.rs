//! A DAX layout break found a busy page.
//!
//! `struct page *dax_layout_busy_page_range(struct address_space *, loff_t start, loff_t end)`
//! (all versions): returns the first page of the range that still has
//! references beyond its mappings; truncate and hole punch then wait on it.
use aya_ebpf::{
    macros::{fexit, kretprobe},
    programs::{FExitContext, RetProbeContext},
};
use refwatch_common::{hook, kind};

use crate::{
    emit::{Fields, emit},
    page::device_page,
};

#[fexit]
pub fn fexit_dax_busy(ctx: FExitContext) -> i32 {
    let page: u64 = ctx.ret::<u64>().unwrap_or(0);
    let start: u64 = ctx.arg(1);
    on_busy(&ctx, page, start);
    0
}

#[kretprobe]
pub fn kretprobe_dax_busy(ctx: RetProbeContext) -> u32 {
    on_busy(&ctx, ctx.ret(), 0);
    0
}

#[inline(always)]
fn on_busy<C: aya_ebpf::EbpfContext>(ctx: &C, page: u64, start: u64) {
    let Some(p) = device_page(page) else {
        return;
    };
    emit(
        ctx,
        &Fields {
            aux: start,
            ..Fields::about(kind::LAYOUT_WAIT, hook::DAX_LAYOUT_BUSY, &p)
        },
    );
}
