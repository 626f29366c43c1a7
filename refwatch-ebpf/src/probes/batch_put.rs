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
//! put), all with the one stack exit takes. Both walk the batch with
//! `bpf_loop`: the verifier checks a step once, where a plain loop with an
//! event inside each pass took it minutes under emulation.
use aya_ebpf::{
    EbpfContext,
    cty::c_void,
    helpers::{bpf_probe_read_kernel, generated::bpf_loop},
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use refwatch_common::{counter, hook, kind};

use crate::{
    emit::{Fields, NoCtx, SharedStack, count, emit_with},
    page::{device_page, layout, mapcount, read_u64, refcount},
    pending::key,
};

/// Folios per batch (`PAGEVEC_SIZE` is 31).
const MAX_BATCH: usize = 32;

/// The device folios of one batch at entry.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PutBatch {
    n: u32,
    _pad: u32,
    heads: [u64; MAX_BATCH],
    pfns: [u64; MAX_BATCH],
    owners: [u64; MAX_BATCH],
    before: [i32; MAX_BATCH],
    types: [u32; MAX_BATCH],
}

#[map]
static PUT_SCRATCH: PerCpuArray<PutBatch> = PerCpuArray::with_max_entries(1, 0);

#[map]
static PUT_BATCHES: HashMap<u64, PutBatch> = HashMap::with_max_entries(4096, 0);

/// The stack of the exit that reports a batch.
#[map]
static PUT_STACK: PerCpuArray<SharedStack> = PerCpuArray::with_max_entries(1, 0);

/// State of [`entry_step`].
#[repr(C)]
struct EntryWalk {
    /// Address of `folio_batch.folios[0]`.
    folios: u64,
    nr: u64,
    n: u64,
}

#[inline(always)]
fn on_entry(batch: u64) {
    let folios = layout!(off_fbatch_folios);
    if batch == 0 || folios == 0 {
        return;
    }
    let nr_addr = batch + layout!(off_fbatch_nr) as u64;
    // SAFETY: the helper checks the address.
    let nr = unsafe { bpf_probe_read_kernel(nr_addr as *const u8) }.unwrap_or(0);
    let mut w = EntryWalk {
        folios: batch + folios as u64,
        nr: u64::from(nr),
        n: 0,
    };
    // SAFETY: `entry_step` has the callback signature bpf_loop expects and
    // `w` outlives the call.
    unsafe {
        bpf_loop(
            MAX_BATCH as u32,
            entry_step as *mut c_void,
            (&raw mut w).cast(),
            0,
        )
    };
    if w.n == 0 {
        count(counter::FILTERED);
        return;
    }
    let Some(b) = PUT_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot, filled by `entry_step` just now.
    let b = unsafe { &mut *b };
    b.n = w.n as u32;
    if PUT_BATCHES.insert(key(hook::BATCH_PUT), b, 0).is_err() {
        count(counter::INFLIGHT_FULL);
    }
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
    let Some(b) = PUT_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch slot.
    let b = unsafe { &mut *b };
    let j = w.n as usize & (MAX_BATCH - 1);
    b.heads[j] = d.head;
    b.pfns[j] = d.pfn;
    b.owners[j] = d.owner;
    b.before[j] = refcount(d.head).unwrap_or(i32::MIN);
    b.types[j] = d.pgmap_type;
    w.n += 1;
    0
}

#[inline(always)]
fn on_exit<C: EbpfContext>(ctx: &C) {
    let k = key(hook::BATCH_PUT);
    let Some(b) = PUT_BATCHES.get_ptr(k) else {
        return;
    };
    // SAFETY: the entry of this thread (the key holds the tid).
    let n = unsafe { (*b).n };
    if let Some(s) = PUT_STACK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe { (*s).take(ctx) };
    }
    let mut idx: u64 = 0;
    // SAFETY: `exit_step` has the callback signature bpf_loop expects.
    unsafe {
        bpf_loop(
            n.min(MAX_BATCH as u32),
            exit_step as *mut c_void,
            (&raw mut idx).cast(),
            0,
        )
    };
    let _ = PUT_BATCHES.remove(k);
}

/// Reports folio `i` of this thread's batch if its refcount went down and
/// did not reach 0 (then the free hook reported the last put).
extern "C" fn exit_step(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(b) = PUT_BATCHES.get_ptr(key(hook::BATCH_PUT)) else {
        return 1;
    };
    // SAFETY: the entry of this thread, alive until `on_exit` removes it.
    let b = unsafe { &*b };
    let i = i as usize & (MAX_BATCH - 1);
    let before = b.before[i];
    let after = refcount(b.heads[i]);
    if before == i32::MIN || after.is_none_or(|a| a >= before || a <= 0) {
        return 0;
    }
    // SAFETY: this CPU's slot, written by `on_exit` just before.
    let stack = PUT_STACK.get_ptr(0).map(|s| unsafe { &*s });
    emit_with(
        &NoCtx,
        &Fields {
            kind: kind::PUT,
            hook: hook::BATCH_PUT,
            pfn: b.pfns[i],
            head: b.heads[i],
            pgmap_type: b.types[i],
            before: Some(before),
            after,
            mapcount: mapcount(b.heads[i]),
            ret: None,
            aux: 1,
            aux2: 0,
            owner: b.owners[i],
            nr_pages: 1,
            stack: true,
        },
        stack,
    );
    0
}

#[aya_ebpf::macros::fentry]
pub fn fentry_batch_put(ctx: aya_ebpf::programs::FEntryContext) -> i32 {
    on_entry(super::raw_arg(&ctx, 0));
    0
}

#[aya_ebpf::macros::fexit]
pub fn fexit_batch_put(ctx: aya_ebpf::programs::FExitContext) -> i32 {
    on_exit(&ctx);
    0
}

#[aya_ebpf::macros::kprobe]
pub fn kprobe_batch_put(ctx: aya_ebpf::programs::ProbeContext) -> u32 {
    on_entry(ctx.arg(0).unwrap_or(0));
    0
}

#[aya_ebpf::macros::kretprobe]
pub fn kretprobe_batch_put(ctx: aya_ebpf::programs::RetProbeContext) -> u32 {
    on_exit(&ctx);
    0
}
