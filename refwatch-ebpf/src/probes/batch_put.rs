//! Batched reference drops.
//!
//! `void folios_put_refs(struct folio_batch *folios, unsigned int *refs)`
//! (6.10+): drops `refs[i]` (or 1) references of each folio of the batch with
//! an inline `folio_ref_sub_and_test`; a ZONE_DEVICE folio that reaches 0
//! goes to `free_zone_device_folio`. Unmapping goes through it
//! (`free_pages_and_swap_cache`), so on kernels whose fs-dax mappings hold
//! references (6.15+) this is where a munmap drops them. Entry notes every
//! device folio of the batch with its refcount; exit reports each whose
//! refcount went down and did not reach 0 (the free hook reports the last
//! put), all with the one stack exit takes (see [`super::batch`]).
use aya_ebpf::{
    EbpfContext,
    cty::c_void,
    helpers::{bpf_probe_read_kernel, generated::bpf_loop},
};
use refwatch_common::{counter, hook};

use super::batch::{self, MAX_BATCH};
use crate::{
    emit::count,
    page::{device_page, layout, read_u64, typed_load},
};

/// Folios in a `folio_batch` at most (`PAGEVEC_SIZE` is 31).
const MAX_FOLIOS: u32 = 32;
const _: () = assert!(MAX_FOLIOS as usize <= MAX_BATCH);

/// State of [`entry_step`].
#[repr(C)]
struct EntryWalk {
    /// Address of `folio_batch.folios[0]`.
    folios: u64,
    nr: u64,
    n: u64,
}

#[inline(always)]
fn on_entry(fbatch: u64) {
    let folios = layout!(off_fbatch_folios);
    if fbatch == 0 || folios == 0 {
        return;
    }
    let nr_addr = fbatch + layout!(off_fbatch_nr) as u64;
    // SAFETY: the helper checks the address.
    let nr = unsafe { bpf_probe_read_kernel(nr_addr as *const u8) }.unwrap_or(0);
    let mut w = EntryWalk {
        folios: fbatch + folios as u64,
        nr: u64::from(nr),
        n: 0,
    };
    // SAFETY: `entry_step` has the callback signature bpf_loop expects and
    // `w` outlives the call.
    unsafe {
        bpf_loop(
            MAX_FOLIOS,
            entry_step as *mut c_void,
            (&raw mut w).cast(),
            0,
        )
    };
    if w.n == 0 {
        count(counter::FILTERED);
        return;
    }
    batch::keep(hook::BATCH_PUT, w.n);
}

/// Notes folio `i` of the batch if it is a device folio: 0 to go on, 1 to stop.
extern "C" fn entry_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `EntryWalk` that `on_entry` handed to bpf_loop.
    let w = unsafe { &mut *(ctx as *mut EntryWalk) };
    if i >= w.nr {
        return 1;
    }
    let Some(d) = read_u64(w.folios + i * 8).and_then(device_page) else {
        return 0;
    };
    if crate::filter::skips_page(d.pfn, d.pgmap_type) {
        return 0;
    }
    if !batch::note(w.n, &d) {
        return 1;
    }
    w.n += 1;
    0
}

/// Whether the batch at the fentry's typed `fbatch` argument holds a device
/// folio. This runs for every batch every unmap in the system frees, so it
/// reads through the BTF-typed pointers the verifier gives an fentry
/// (one fault-safe load each, no helper call), unrolled so each offset is
/// a constant to the verifier (the layout is a frozen read-only global).
/// `PAGEVEC_SIZE` is 31 on every kernel with `folios_put_refs`.
#[inline(always)]
fn has_device_folio(ctx: &aya_ebpf::programs::FEntryContext) -> bool {
    // SAFETY: argument 0 of `folios_put_refs`, read from the tracing context;
    // the verifier types it as `struct folio_batch *`.
    let fbatch = unsafe { typed_load::<u64>(ctx.as_ptr() as u64) };
    let folios = fbatch + layout!(off_fbatch_folios) as u64;
    let nr_addr = fbatch + layout!(off_fbatch_nr) as u64;
    // SAFETY: a field of the typed batch.
    let nr = unsafe { typed_load::<u8>(nr_addr) };
    let off_flags = layout!(off_flags) as u64;
    let (shift, mask, device) = (
        layout!(zones_shift),
        layout!(zones_mask) as u64,
        layout!(zone_device) as u64,
    );
    macro_rules! check {
        ($($i:literal)*) => {$(
            if $i >= nr {
                return false;
            }
            // SAFETY: element $i (< nr <= 31) of the typed `folios` array,
            // then the flags of the typed folio it points to.
            let flags = unsafe {
                let folio = typed_load::<u64>(folios + $i * 8);
                typed_load::<u64>(folio + off_flags)
            };
            if (flags >> shift) & mask == device {
                return true;
            }
        )*};
    }
    check!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30);
    false
}

#[aya_ebpf::macros::fentry]
pub fn fentry_batch_put(ctx: aya_ebpf::programs::FEntryContext) -> i32 {
    if !has_device_folio(&ctx) {
        count(counter::FILTERED);
        return 0;
    }
    on_entry(super::raw_arg(&ctx, 0));
    0
}

#[aya_ebpf::macros::fexit]
pub fn fexit_batch_put(ctx: aya_ebpf::programs::FExitContext) -> i32 {
    batch::report(&ctx, hook::BATCH_PUT, true);
    0
}

#[aya_ebpf::macros::kprobe]
pub fn kprobe_batch_put(ctx: aya_ebpf::programs::ProbeContext) -> u32 {
    on_entry(ctx.arg(0).unwrap_or(0));
    0
}

#[aya_ebpf::macros::kretprobe]
pub fn kretprobe_batch_put(ctx: aya_ebpf::programs::RetProbeContext) -> u32 {
    batch::report(&ctx, hook::BATCH_PUT, true);
    0
}
