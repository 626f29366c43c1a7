//! A DAX layout break found a busy page, and sleeps on it.
//!
//! - `struct page *dax_layout_busy_page_range(struct address_space *, loff_t start, loff_t end)`
//!   (all versions): returns the first page of the range that still has
//!   references beyond its mappings; truncate and hole punch then wait on it.
//! - `void ext4_wait_dax_page(struct inode *)` / `void xfs_wait_dax_page(struct inode *)`:
//!   the file system's wait callback, called each time the breaking task
//!   goes to sleep until that page is idle; the page is the one
//!   `dax_layout_busy_page_range` returned last on the thread.
//!
//! The returned page pointer only picks the page: the events carry its PFN,
//! no `ret`, and as `aux` the range start (a file offset).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use refwatch_common::{hook, kind};

use crate::{
    emit::{Fields, emit},
    page::device_page,
};

/// The busy page each breaking thread got last (thread → `struct page *`).
#[map]
static LAST_BUSY: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

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
    let _ = LAST_BUSY.insert(bpf_get_current_pid_tgid(), page, 0);
    emit(
        ctx,
        &Fields {
            aux: start,
            ..Fields::about(kind::LAYOUT_WAIT, hook::DAX_LAYOUT_BUSY, &p)
        },
    );
}

#[fentry]
pub fn fentry_layout_sleep(ctx: FEntryContext) -> i32 {
    on_sleep(&ctx, hook::LAYOUT_SLEEP);
    0
}

#[kprobe]
pub fn kprobe_layout_sleep(ctx: ProbeContext) -> u32 {
    on_sleep(&ctx, hook::LAYOUT_SLEEP);
    0
}

#[fentry]
pub fn fentry_layout_sleep_xfs(ctx: FEntryContext) -> i32 {
    on_sleep(&ctx, hook::LAYOUT_SLEEP_XFS);
    0
}

#[kprobe]
pub fn kprobe_layout_sleep_xfs(ctx: ProbeContext) -> u32 {
    on_sleep(&ctx, hook::LAYOUT_SLEEP_XFS);
    0
}

#[inline(always)]
fn on_sleep<C: aya_ebpf::EbpfContext>(ctx: &C, hook: u32) {
    // SAFETY: this thread's entry; a copy is taken at once.
    let Some(page) = (unsafe { LAST_BUSY.get(bpf_get_current_pid_tgid()) }).copied() else {
        return;
    };
    let Some(p) = device_page(page) else {
        return;
    };
    emit(ctx, &Fields::about(kind::LAYOUT_WAIT, hook, &p));
}
