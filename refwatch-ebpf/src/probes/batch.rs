//! What the batch hooks (`__bio_release_pages`, `folios_put_refs`) share:
//! entry notes the device pages of the batch with their refcount, exit
//! reports each whose refcount went down and did not reach 0 (the free hook
//! reports that last put), walking the batch with `bpf_loop`
//! (the verifier checks a step once; a plain loop with an event in each pass
//! took it minutes under emulation).
use aya_ebpf::{
    EbpfContext,
    cty::c_void,
    helpers::generated::bpf_loop,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use refwatch_common::{counter, kind};

use crate::{
    emit::{Fields, NoCtx, SharedStack, count, emit_with, stack_frames},
    page::{DevicePage, mapcount, refcount},
    pending::key,
};

/// Device pages remembered per batch (a power of two).
pub const MAX_BATCH: usize = 64;

/// The device pages of one batch at entry.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Batch {
    n: u32,
    _pad: u32,
    heads: [u64; MAX_BATCH],
    pfns: [u64; MAX_BATCH],
    owners: [u64; MAX_BATCH],
    /// `i32::MIN` when unknown.
    before: [i32; MAX_BATCH],
    types: [u32; MAX_BATCH],
    /// At exit, when read ahead of the events ([`read_step`]); `i32::MIN`
    /// when unknown.
    after: [i32; MAX_BATCH],
}

/// The batch an entry program is filling, on this CPU.
#[map]
static BATCH_SCRATCH: PerCpuArray<Batch> = PerCpuArray::with_max_entries(1, 0);

/// Batches between entry and exit, keyed by thread and hook.
#[map]
static BATCHES: HashMap<u64, Batch> = HashMap::with_max_entries(4096, 0);

/// The stack of the exit that reports a batch.
#[map]
static BATCH_STACK: PerCpuArray<SharedStack> = PerCpuArray::with_max_entries(1, 0);

/// Notes device page `d` as the `n`th of the batch being filled on this
/// CPU. Returns false when there is no scratch slot.
#[inline(always)]
pub fn note(n: u64, d: &DevicePage) -> bool {
    let Some(b) = BATCH_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch slot; programs on one CPU do not interleave.
    let b = unsafe { &mut *b };
    let i = n as usize & (MAX_BATCH - 1);
    b.heads[i] = d.head;
    b.pfns[i] = d.pfn;
    b.owners[i] = d.owner;
    b.before[i] = refcount(d.head).unwrap_or(i32::MIN);
    b.types[i] = d.pgmap_type;
    true
}

/// The head of the `n`th page noted in the batch being filled.
#[inline(always)]
pub fn noted_head(n: u64) -> Option<u64> {
    let b = BATCH_SCRATCH.get_ptr(0)?;
    // SAFETY: this CPU's scratch slot.
    Some(unsafe { (*b).heads[n as usize & (MAX_BATCH - 1)] })
}

/// Keeps the `n` pages noted on this CPU for `hook`'s exit on this thread.
/// Returns whether they were kept.
#[inline(always)]
pub fn keep(hook: u32, n: u64) -> bool {
    let Some(b) = BATCH_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch slot, filled by the entry just now.
    let b = unsafe { &mut *b };
    b.n = n as u32;
    if BATCHES.insert(key(hook), b, 0).is_err() {
        count(counter::INFLIGHT_FULL);
        lost_batch();
        return false;
    }
    true
}

/// Every page of the batch noted on this CPU loses its event.
#[inline(always)]
fn lost_batch() {
    let Some(b) = BATCH_SCRATCH.get_ptr(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot, filled by the entry just now.
    let b = unsafe { &*b };
    for i in 0..MAX_BATCH {
        if i < b.n as usize {
            crate::emit::note_lost(b.pfns[i]);
        }
    }
}

/// State of [`read_step`] and [`exit_step`].
#[repr(C)]
struct ExitWalk {
    hook: u32,
    /// Events carry the stack in `BATCH_STACK`.
    with_stack: u32,
    /// The counts after were read ahead into `Batch::after`.
    read: u32,
    /// Pages whose count went down and not to 0 (found by [`read_step`]).
    pending: u32,
}

/// Whether a page whose count went from `before` to `after` at the batch's
/// exit has an event: down, and not to 0 (the free hook reports that).
#[inline(always)]
fn dropped(before: i32, after: Option<i32>) -> bool {
    before != i32::MIN && after.is_some_and(|a| a < before && a > 0)
}

/// At `hook`'s exit: reports every page of this thread's batch whose
/// refcount went down (and not to 0), with this program's stack when
/// `with_stack`.
#[inline(always)]
pub fn report<C: EbpfContext>(ctx: &C, hook: u32, with_stack: bool) {
    let k = key(hook);
    let Some(b) = BATCHES.get_ptr(k) else {
        return;
    };
    // SAFETY: the entry of this thread (the key holds the tid).
    let n = unsafe { (*b).n }.min(MAX_BATCH as u32);
    let mut w = ExitWalk {
        hook,
        with_stack: with_stack as u32,
        read: 0,
        pending: 0,
    };
    // A walk only when a page has an event: most batches of an unmap free
    // every device page they drop (the free hook reports those), and the
    // walk is most of what the exit would cost.
    if with_stack && stack_frames(kind::PUT) > 0 {
        // SAFETY: `read_step` has the callback signature bpf_loop expects
        // and `w` outlives the call.
        unsafe { bpf_loop(n, read_step as *mut c_void, (&raw mut w).cast(), 0) };
        w.read = 1;
        if w.pending == 0 {
            let _ = BATCHES.remove(k);
            return;
        }
    }
    if with_stack && let Some(s) = BATCH_STACK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe { (*s).take(ctx, kind::PUT) };
    }
    // SAFETY: `exit_step` has the callback signature bpf_loop expects and
    // `w` outlives the call.
    unsafe { bpf_loop(n, exit_step as *mut c_void, (&raw mut w).cast(), 0) };
    let _ = BATCHES.remove(k);
}

/// Reads page `i`'s count after the batch into the batch, and counts it
/// when it has an event.
extern "C" fn read_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `ExitWalk` that `report` handed to bpf_loop.
    let w = unsafe { &mut *(ctx as *mut ExitWalk) };
    let Some(b) = BATCHES.get_ptr_mut(key(w.hook)) else {
        return 1;
    };
    // SAFETY: the entry of this thread, alive until `report` removes it.
    let b = unsafe { &mut *b };
    let i = i as usize & (MAX_BATCH - 1);
    let after = refcount(b.heads[i]);
    b.after[i] = after.unwrap_or(i32::MIN);
    if dropped(b.before[i], after) {
        w.pending += 1;
    }
    0
}

/// Reports page `i` of the batch if its refcount went down and did not
/// reach 0.
extern "C" fn exit_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `ExitWalk` that `report` handed to bpf_loop.
    let w = unsafe { &*(ctx as *const ExitWalk) };
    let Some(b) = BATCHES.get_ptr(key(w.hook)) else {
        return 1;
    };
    // SAFETY: the entry of this thread, alive until `report` removes it.
    let b = unsafe { &*b };
    let i = i as usize & (MAX_BATCH - 1);
    let (head, before) = (b.heads[i], b.before[i]);
    let after = if w.read != 0 {
        Some(b.after[i]).filter(|a| *a != i32::MIN)
    } else {
        refcount(head)
    };
    if !dropped(before, after) {
        return 0;
    }
    let stack = if w.with_stack != 0 {
        // SAFETY: this CPU's slot, written by `report` just before.
        BATCH_STACK.get_ptr(0).map(|s| unsafe { &*s })
    } else {
        None
    };
    emit_with(
        &NoCtx,
        &Fields {
            kind: kind::PUT,
            hook: w.hook,
            pfn: b.pfns[i],
            head,
            pgmap_type: b.types[i],
            before: Some(before),
            after,
            mapcount: mapcount(head),
            ret: None,
            aux: 1,
            aux2: 0,
            owner: b.owners[i],
            nr_pages: 1,
            stack: stack.is_some(),
            flags: 0,
        },
        stack,
    );
    0
}
