//! GUP references on system pages, remembered for naming who blocks a
//! migration to device memory (`--ram-holders`).
//!
//! A page of a process's buffer that someone holds an extra reference on
//! (a pipe after vmsplice, a direct I/O, a pin) cannot move to device memory.
//! Those pages are ordinary RAM, filtered out everywhere else, so the GUP
//! grab hooks remember the last grab per PFN in an LRU map, and the migration
//! hook reports it (flagged `LATE`) when a migration of that PFN fails.
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{self, bpf_probe_read_kernel},
    },
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use refwatch_common::{Event, MAX_STACK, counter, flags, kind, pgmap, stack_flags};

use crate::{
    EVENTS,
    emit::{count, stack_frames, walk_stack, write_comm},
    page::{any_page, layout},
};

/// One remembered grab.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RamGet {
    ts_ns: u64,
    pid_tgid: u64,
    head: u64,
    refs: u64,
    hook: u32,
    stack_bytes: u32,
    comm: [u8; 16],
    stack: [u64; MAX_STACK],
}

#[map]
static RAM_GETS: LruHashMap<u64, RamGet> = LruHashMap::with_max_entries(16384, 0);

#[map]
static RAM_SCRATCH: PerCpuArray<RamGet> = PerCpuArray::with_max_entries(1, 0);

/// Remembers a GUP grab of the system page `ptr` (when asked to).
#[inline(always)]
pub fn remember<C: EbpfContext>(ctx: &C, hook: u32, ptr: u64, refs: u64) {
    if layout!(ram_holders) == 0 {
        return;
    }
    let Some((head, pfn)) = any_page(ptr) else {
        return;
    };
    if !crate::filter::page_passes(pfn, pgmap::SYSTEM) {
        return;
    }
    let Some(r) = RAM_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let frames = stack_frames(kind::GET);
    // SAFETY: per-CPU scratch slot of this CPU, used only within this program.
    unsafe {
        (*r).ts_ns = generated::bpf_ktime_get_ns();
        (*r).pid_tgid = bpf_get_current_pid_tgid();
        (*r).head = head;
        (*r).refs = refs;
        (*r).hook = hook;
        write_comm(&raw mut (*r).comm);
        let n = walk_stack(ctx, (&raw mut (*r).stack).cast(), frames);
        (*r).stack_bytes = if n > 0 { n as u32 } else { 0 };
        if RAM_GETS.insert(pfn, *r, 0).is_ok() {
            count(counter::RAM_GETS);
        }
    }
}

/// Emits the remembered grab of `pfn`, if any, as a late `get` event, and
/// forgets it.
#[inline(always)]
pub fn report(pfn: u64, refcount: Option<i32>) {
    // SAFETY: read-only use of the map value; a concurrent update only makes
    // the copy inconsistent, never unsafe (the helper copies).
    let Some(r) = (unsafe { RAM_GETS.get(pfn) }) else {
        return;
    };
    if crate::filter::skips(kind::GET, pfn, pgmap::SYSTEM, 0) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count(counter::DROPPED);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is a reserved ring-buffer slot of `size_of::<Event>()`
    // bytes written only here until submitted.
    unsafe {
        (*ev).ts_ns = r.ts_ns;
        (*ev).pfn = pfn;
        (*ev).page = r.head;
        (*ev).ret = 0;
        (*ev).aux = r.refs;
        (*ev).aux2 = 0;
        (*ev).owner = 0;
        (*ev).pid = r.pid_tgid as u32;
        (*ev).tgid = (r.pid_tgid >> 32) as u32;
        (*ev).cpu = generated::bpf_get_smp_processor_id();
        (*ev).kind = kind::GET;
        (*ev).hook = r.hook;
        (*ev).flags = flags::LATE
            | stack_flags(stack_frames(kind::GET), true)
            | if refcount.is_some() {
                flags::HAS_AFTER
            } else {
                0
            };
        (*ev).refcount_before = 0;
        (*ev).refcount_after = refcount.unwrap_or(0);
        (*ev).mapcount = 0;
        (*ev).pgmap_type = pgmap::SYSTEM;
        (*ev).nr_pages = 1;
        (*ev).comm = r.comm;
        let n = r.stack_bytes.min((MAX_STACK * 8) as u32);
        (*ev).stack = [0; MAX_STACK];
        if n > 0 {
            bpf_probe_read_kernel(
                (&raw mut (*ev).stack).cast(),
                n,
                (&raw const r.stack).cast(),
            );
        }
        (*ev).stack_bytes = n;
    }
    crate::emit::submit(entry);
    count(counter::SUBMITTED);
    // Reported once: userspace keeps it as the page's holder until the
    // page moves.
    let _ = RAM_GETS.remove(pfn);
}
