//! Block I/O releasing the pages it took plain references on.
//!
//! `void __bio_release_pages(struct bio *bio, bool mark_dirty)` (6.1): drops
//! one reference per page with the inline `folio_put_refs`, bypassing the
//! fs-dax devmap put, so on kernels whose direct I/O does not pin this is the
//! only place those drops can be seen. Entry notes every device page of the
//! bio with its refcount; exit reports each page whose refcount went down
//! (see [`super::batch`]).
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_probe_read_kernel, generated::bpf_loop},
    macros::map,
    maps::PerCpuArray,
};
use refwatch_common::{counter, hook};

use super::batch::{self, MAX_BATCH};
use crate::{emit::count, page::device_page, page::layout};

/// Steps of the walk over a bio (one per page, one per bio vector).
const MAX_STEPS: u32 = 160;
/// Never written: an all-zero walk start whose values the verifier cannot
/// know (see `on_entry`).
#[map]
static WALK_START: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn read<T>(addr: u64) -> Option<T> {
    // SAFETY: the helper checks the address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// Walk state of [`entry_step`], on the entry program's stack.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Walk {
    vecs: u64,
    vcnt: u32,
    v: u32,
    page: u64,
    pages: u64,
    p: u64,
    n: u64,
}

#[inline(always)]
fn on_entry(bio: u64) {
    if bio == 0 || layout!(bvec_size) == 0 || layout!(page_struct_size) == 0 {
        return;
    }
    let Some(vecs) = read::<u64>(bio + layout!(off_bio_io_vec) as u64) else {
        return;
    };
    // Verifiers before 6.7 check a bpf_loop callback once, with the caller's
    // exact state, and remove the branches that state makes unreachable. The
    // cursor therefore starts from map memory (zero at run time, unknown to
    // the verifier) instead of constants.
    let Some(start) = WALK_START.get(0) else {
        return;
    };
    let mut w = Walk {
        vecs,
        vcnt: read::<u16>(bio + layout!(off_bio_vcnt) as u64).unwrap_or(0) as u32,
        v: start.v,
        page: start.page,
        pages: start.pages,
        p: start.p,
        n: start.n,
    };
    // bpf_loop: the verifier checks the step once, not once per iteration,
    // and older verifiers reject some loop shapes LLVM emits.
    // SAFETY: `entry_step` has the callback signature bpf_loop expects and
    // `w` outlives the call.
    unsafe { bpf_loop(MAX_STEPS, entry_step as *mut c_void, (&raw mut w).cast(), 0) };
    if w.n > 0 && batch::keep(hook::BIO_RELEASE, w.n) {
        count(counter::BIOS);
    }
}

/// One step of the walk over the bio's pages: 0 to go on, 1 to stop.
extern "C" fn entry_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` that `on_entry` handed to bpf_loop.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let size = layout!(page_struct_size);
    if w.p >= w.pages {
        if w.v >= w.vcnt {
            return 1;
        }
        let bv = w.vecs + w.v as u64 * layout!(bvec_size) as u64;
        w.v += 1;
        let (Some(pg), Some(len), Some(off)) = (
            read::<u64>(bv + layout!(off_bv_page) as u64),
            read::<u32>(bv + layout!(off_bv_len) as u64),
            read::<u32>(bv + layout!(off_bv_offset) as u64),
        ) else {
            return 1;
        };
        let first = (off >> 12) as u64;
        w.page = pg + first * size;
        w.pages = if len == 0 {
            0
        } else {
            ((off as u64 + len as u64 - 1) >> 12) - first + 1
        };
        w.p = 0;
        return 0;
    }
    let ptr = w.page + w.p * size;
    w.p += 1;
    let Some(d) = device_page(ptr) else {
        count(counter::FILTERED);
        return 0;
    };
    if crate::filter::skips_page(d.pfn, d.pgmap_type) {
        return 0;
    }
    // A page of several vectors (or a folio of several pages) once.
    if w.n > 0 && batch::noted_head(w.n - 1) == Some(d.head) {
        return 0;
    }
    if !batch::note(w.n, &d) {
        return 1;
    }
    w.n += 1;
    if w.n as usize >= MAX_BATCH { 1 } else { 0 }
}

#[aya_ebpf::macros::fentry]
pub fn fentry_bio_release(ctx: aya_ebpf::programs::FEntryContext) -> i32 {
    on_entry(super::raw_arg(&ctx, 0));
    0
}

#[aya_ebpf::macros::fexit]
pub fn fexit_bio_release(ctx: aya_ebpf::programs::FExitContext) -> i32 {
    batch::report(&ctx, hook::BIO_RELEASE, false);
    0
}

#[aya_ebpf::macros::kprobe]
pub fn kprobe_bio_release(ctx: aya_ebpf::programs::ProbeContext) -> u32 {
    on_entry(ctx.arg(0).unwrap_or(0));
    0
}

#[aya_ebpf::macros::kretprobe]
pub fn kretprobe_bio_release(ctx: aya_ebpf::programs::RetProbeContext) -> u32 {
    batch::report(&ctx, hook::BIO_RELEASE, false);
    0
}
