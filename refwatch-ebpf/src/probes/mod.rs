//! The hooks. Each file holds one logical hook with the kernel functions it is
//! attached to; userspace picks the symbol and the mode (fentry/fexit or
//! kprobe/kretprobe) for the running kernel. The logic shared by all hooks is
//! here; the entry points are thin.

mod batch;
mod batch_put;
mod bio_release;
mod dax_layout;
mod fork;
mod free;
mod grab;
mod gup_put;
mod init;
mod map_insert;
mod migrate;
mod page_ref;
mod peek;
mod put_devmap;
mod ram_gets;
mod unpin;

use aya_ebpf::EbpfContext;
use refwatch_common::{counter, flags, hook, kind, ret, setting};

use crate::{
    ENTERED, INFLIGHT,
    emit::{Fields, count, emit},
    page::{device_page, layout, mapcount, refcount, typed_load},
    pending::{Pending, key},
};

/// Pin bias GUP adds per `FOLL_PIN` reference on a small folio.
pub(crate) const GUP_PIN_COUNTING_BIAS: i32 = 1024;

/// Hooks that drop references; the innermost one that emits covers the others.
const DROP_HOOKS: [u32; 4] = [
    hook::PUT_DEVMAP_REFS,
    hook::GUP_PUT_FOLIO,
    hook::UNPIN_USER_PAGE,
    hook::UNPIN_USER_FOLIO,
];

/// Hooks that take references.
const GET_HOOKS: [u32; 8] = [
    hook::TRY_GRAB_FOLIO,
    hook::TRY_GRAB_FOLIO_PAGE,
    hook::TRY_GRAB_FOLIO_FAST,
    hook::TRY_GRAB_PAGE,
    hook::ZONE_DEVICE_INIT,
    hook::MAP_INSERT,
    hook::MAP_INSERT_PMD,
    hook::MAP_INSERT_PUD,
];

/// The GUP grabs: they also remember references on system pages
/// (`--ram-holders`).
const GUP_GRABS: [u32; 4] = [
    hook::TRY_GRAB_FOLIO,
    hook::TRY_GRAB_FOLIO_PAGE,
    hook::TRY_GRAB_FOLIO_FAST,
    hook::TRY_GRAB_PAGE,
];

/// Generates the four entry points of a hook that records at entry and emits
/// at exit: fentry + fexit (BTF trampolines) and kprobe + kretprobe. The page
/// (or folio) is argument `page_arg` (0 unless given); with `args = 2` the
/// argument after it is kept as the event's `aux`.
macro_rules! entry_exit {
    (
        hook = $hook:expr,
        args = $nargs:literal,
        $(page_arg = $page_arg:literal,)?
        fentry = $fentry:ident,
        fexit = $fexit:ident,
        kprobe = $kprobe:ident,
        kretprobe = $kretprobe:ident $(,)?
    ) => {
        #[aya_ebpf::macros::fentry]
        pub fn $fentry(ctx: aya_ebpf::programs::FEntryContext) -> i32 {
            let first: usize = 0 $(+ $page_arg)?;
            if $crate::probes::typed_filtered(&ctx, $hook, first) {
                $crate::emit::count(refwatch_common::counter::FILTERED);
                return 0;
            }
            let a0: u64 = $crate::probes::raw_arg(&ctx, first);
            let a1: u64 = if $nargs > 1 {
                $crate::probes::raw_arg(&ctx, first + 1)
            } else {
                0
            };
            $crate::probes::on_entry(&ctx, $hook, a0, a1);
            0
        }

        #[aya_ebpf::macros::fexit]
        pub fn $fexit(ctx: aya_ebpf::programs::FExitContext) -> i32 {
            if $crate::probes::typed_filtered(&ctx, $hook, 0 $(+ $page_arg)?) {
                return 0;
            }
            let ret: Option<i64> = ctx.ret::<i64>().ok();
            $crate::probes::on_exit(&ctx, $hook, ret);
            0
        }

        #[aya_ebpf::macros::kprobe]
        pub fn $kprobe(ctx: aya_ebpf::programs::ProbeContext) -> u32 {
            let first: usize = 0 $(+ $page_arg)?;
            let a0: u64 = ctx.arg(first).unwrap_or(0);
            let a1: u64 = if $nargs > 1 {
                ctx.arg(first + 1).unwrap_or(0)
            } else {
                0
            };
            $crate::probes::on_entry(&ctx, $hook, a0, a1);
            0
        }

        #[aya_ebpf::macros::kretprobe]
        pub fn $kretprobe(ctx: aya_ebpf::programs::RetProbeContext) -> u32 {
            let ret: i64 = ctx.ret();
            $crate::probes::on_exit(&ctx, $hook, Some(ret));
            0
        }
    };
}
pub(crate) use entry_exit;

/// Generates the entry points of a hook whose fentry mode needs only the
/// exit program, as fexit sees the arguments too: `fexit` filters the page
/// (argument 0) and hands the rest to `on_exit(&ctx, hook, raw return)`.
/// Kprobe mode keeps entry + exit (a kretprobe has no arguments), with the
/// page and argument 1 kept at entry as in [`entry_exit!`].
macro_rules! exit_only {
    (
        hook = $hook:expr,
        on_exit = $on_exit:path,
        fexit = $fexit:ident,
        kprobe = $kprobe:ident,
        kretprobe = $kretprobe:ident $(,)?
    ) => {
        #[aya_ebpf::macros::fexit]
        pub fn $fexit(ctx: aya_ebpf::programs::FExitContext) -> i32 {
            if $crate::probes::typed_filtered(&ctx, $hook, 0) {
                $crate::emit::count(refwatch_common::counter::FILTERED);
                return 0;
            }
            let raw: i64 = ctx.ret::<i64>().unwrap_or(0);
            $on_exit(&ctx, $hook, raw);
            0
        }

        #[aya_ebpf::macros::kprobe]
        pub fn $kprobe(ctx: aya_ebpf::programs::ProbeContext) -> u32 {
            let a0: u64 = ctx.arg(0).unwrap_or(0);
            let a1: u64 = ctx.arg(1).unwrap_or(0);
            $crate::probes::on_entry(&ctx, $hook, a0, a1);
            0
        }

        #[aya_ebpf::macros::kretprobe]
        pub fn $kretprobe(ctx: aya_ebpf::programs::RetProbeContext) -> u32 {
            let ret: i64 = ctx.ret();
            $crate::probes::on_exit(&ctx, $hook, Some(ret));
            0
        }
    };
}
pub(crate) use exit_only;

/// Argument `n` of a tracing (fentry/fexit) program as a plain number. The
/// verifier types BTF pointer arguments (`struct page *`), and older kernels
/// (6.1) refuse to pass such typed pointers on to BPF subprograms; reading the
/// context slot through a helper yields an untyped scalar.
#[inline(always)]
pub fn raw_arg<C: EbpfContext>(ctx: &C, n: usize) -> u64 {
    let slot = (ctx.as_ptr() as *const u64).wrapping_add(n);
    // SAFETY: `slot` is within the tracing context (the callers only read the
    // hooked function's declared arguments); the helper checks the read.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(slot) }.unwrap_or(0)
}

/// The first filter of the fentry/fexit programs: whether argument `n`, a
/// `struct page *` or `struct folio *`, is a page outside ZONE_DEVICE that
/// `hook` need not look at. These hooks sit on paths every page of the
/// system takes (GUP, unmapping), so the check reads the page's flags through
/// the BTF-typed argument (a fault-safe load the verifier checks against the
/// type) instead of helper calls. The GUP grabs look at every page when
/// system-page holders are asked for (`--ram-holders`).
#[inline(always)]
pub fn typed_filtered<C: EbpfContext>(ctx: &C, hook: u32, n: usize) -> bool {
    if GUP_GRABS.contains(&hook) && layout!(ram_holders) != 0 {
        return false;
    }
    let slot = ctx.as_ptr() as u64 + 8 * n as u64;
    // SAFETY: argument `n` of the traced function, a typed page or folio
    // pointer (every hook built with `entry_exit!`).
    let page = unsafe { typed_load::<u64>(slot) };
    let flags_addr = page + layout!(off_flags) as u64;
    // SAFETY: the flags word of that page (a NULL page reads as 0).
    let flags = unsafe { typed_load::<u64>(flags_addr) };
    (flags >> layout!(zones_shift)) & layout!(zones_mask) as u64 != layout!(zone_device) as u64
}

/// Whether precise mode is on: the page_ref tracepoints report every
/// reference, and the hooks that take or drop them stay quiet.
#[inline(always)]
fn precise() -> bool {
    crate::SETTINGS
        .get(setting::PRECISE)
        .is_some_and(|v| *v != 0)
}

/// Entry of a hook: resolve the page, remember its refcount for the exit.
#[inline(always)]
pub fn on_entry<C: EbpfContext>(ctx: &C, hook: u32, ptr: u64, aux: u64) {
    let Some(p) = device_page(ptr) else {
        if GUP_GRABS.contains(&hook) {
            ram_gets::remember(ctx, hook, ptr, aux);
        }
        count(counter::FILTERED);
        return;
    };
    let precise = precise();
    let refs_hook = GET_HOOKS.contains(&hook) || DROP_HOOKS.contains(&hook);
    if refs_hook && precise {
        // Precise mode: the page_ref tracepoints report this page's references.
        return;
    }
    // The page's last reference just went: its free reports that put too,
    // in the one record it sends at its exit (see `put_enclosed`).
    let last_put = hook == hook::FREE_ZONE_DEVICE && !precise && !put_enclosed(&p);
    if crate::filter::skips_page(p.pfn, p.pgmap_type) {
        if last_put {
            // The put's, which the page's filters leave out too.
            count(counter::SKIPPED);
        }
        return;
    }
    let before = refcount(p.head);
    let pending = Pending {
        head: p.head,
        pfn: p.pfn,
        aux,
        owner: p.owner,
        before: before.unwrap_or(0),
        pgmap_type: p.pgmap_type,
        covered: 0,
        has_before: before.is_some() as u32,
        last_put: last_put as u32,
        reserved: 0,
    };
    mark_entered(hook);
    if INFLIGHT.insert(key(hook), pending, 0).is_err() {
        if last_put {
            // The free will not be followed: its put is sent on its own.
            emit_last_put(ctx, &p);
        }
        count(counter::INFLIGHT_FULL);
        crate::emit::note_lost(p.pfn);
        aya_log_ebpf::warn!(
            ctx,
            "in-flight table full: hook {} on pfn {} not followed to its exit",
            hook,
            p.pfn
        );
    }
}

/// Exit of a hook: emit the event its entry prepared. `ret` is the raw
/// return register; the event records what it means for the hook's return
/// type ([`ret::value`]): nothing for a `void` function, 0, an errno or 1
/// for a pointer, never the address.
#[inline(always)]
pub fn on_exit<C: EbpfContext>(ctx: &C, hook: u32, ret: Option<i64>) {
    let ret = match ret {
        Some(raw) => ret::value(hook, raw),
        None => None,
    };
    let k = key(hook);
    // SAFETY: the entry is only touched by this thread (the key holds the tid).
    let Some(p) = (unsafe { INFLIGHT.get(k) }).copied() else {
        return;
    };
    let _ = INFLIGHT.remove(k);
    if p.covered != 0 {
        return;
    }
    let before = if p.has_before != 0 {
        Some(p.before)
    } else {
        None
    };
    let after = refcount(p.head);
    let mut f = Fields {
        kind: kind::PUT,
        hook,
        pfn: p.pfn,
        head: p.head,
        pgmap_type: p.pgmap_type,
        before,
        after,
        mapcount: mapcount(p.head),
        ret,
        aux: p.aux,
        aux2: 0,
        owner: p.owner,
        nr_pages: 1,
        stack: true,
        flags: 0,
    };
    let delta = match (before, after) {
        (Some(b), Some(a)) => a - b,
        _ => 0,
    };
    match hook {
        hook::FREE_ZONE_DEVICE => {
            f.kind = kind::FREE;
            f.stack = false;
            if p.last_put != 0 {
                f.flags = flags::LAST_PUT;
                f.stack = last_put_walks(p.pfn);
            }
        }
        hook::PUT_DEVMAP_REFS
        | hook::GUP_PUT_FOLIO
        | hook::UNPIN_USER_PAGE
        | hook::UNPIN_USER_FOLIO => {
            // `__put_devmap_managed_*_refs` returns false for pages that are
            // not fs-dax; the caller then drops the reference inline and an
            // enclosing hook reports it.
            if hook == hook::PUT_DEVMAP_REFS && ret == Some(0) {
                return;
            }
            let mut unpin = hook == hook::UNPIN_USER_PAGE
                || hook == hook::UNPIN_USER_FOLIO
                || -delta >= GUP_PIN_COUNTING_BIAS;
            unpin |= cover_outer(&DROP_HOOKS, hook, p.head, true);
            f.kind = if unpin { kind::UNPIN } else { kind::PUT };
        }
        _ => {
            if delta <= 0 {
                // The grab failed or raced; nothing was taken.
                return;
            }
            cover_outer(&GET_HOOKS, hook, p.head, false);
            f.kind = if delta >= GUP_PIN_COUNTING_BIAS {
                kind::PIN
            } else {
                kind::GET
            };
        }
    }
    emit(ctx, &f);
}

/// The page is being freed to its owner: its last reference just went.
/// That put is reported by the free hook rather than in `__folio_put`,
/// which every folio of the system passes through when freed (the hottest
/// put path there is), while `free_zone_device_*` sees only device pages;
/// it also sees the last puts of batched releases (`folios_put_refs`) that
/// never enter `__folio_put`. The free's exit sends the put and the free
/// as one record ([`flags::LAST_PUT`]; one ring record, one stack walk at
/// most, instead of two records), unless a drop hook still in flight on
/// this thread and page (`gup_put_folio`, `unpin_user_*`) reports the drop
/// itself at its exit: whether one does.
#[inline(always)]
fn put_enclosed(p: &crate::page::DevicePage) -> bool {
    DROP_HOOKS.iter().any(|&h| {
        // SAFETY: entries of this thread only (the key holds the tid).
        entered(h) && unsafe { INFLIGHT.get(key(h)) }.is_some_and(|o| o.head == p.head)
    })
}

/// A page's last put on its own, at the free's entry: for a free whose
/// exit will not be followed (the in-flight table was full).
#[inline(always)]
fn emit_last_put<C: EbpfContext>(ctx: &C, p: &crate::page::DevicePage) {
    let f = Fields::about(kind::PUT, hook::FREE_ZONE_DEVICE, p);
    emit(
        ctx,
        &Fields {
            // The count is already 0: the last reference went just before.
            before: f.after.map(|a| a + 1),
            aux: 1,
            stack: last_put_walks(p.pfn),
            ..f
        },
    );
}

/// Whether the last put of page `pfn` walks its stack (as deep as the
/// layout asks for puts): always, unless userspace asked for it on demand
/// ([`setting::LAST_PUT_ON_DEMAND`], under `--stacks holders`), then only
/// for the pages it listed in [`crate::RELEASES`], those with an open
/// episode. Any other last put only ends the page's references, which its
/// free then does anyway: the walk (about 6,500 instructions) would name
/// nobody a verdict needs.
#[inline(always)]
fn last_put_walks(pfn: u64) -> bool {
    let on_demand = crate::SETTINGS
        .get(setting::LAST_PUT_ON_DEMAND)
        .is_some_and(|v| *v != 0);
    // SAFETY: only whether the key is there is used, not the value.
    !on_demand || unsafe { crate::RELEASES.get(pfn) }.is_some()
}

/// Notes in [`ENTERED`] that `hook` leaves in-flight entries (written once,
/// so CPUs do not keep taking the slot's cache line from each other).
#[inline(always)]
fn mark_entered(hook: u32) {
    if let Some(slot) = ENTERED.get_ptr_mut(hook) {
        // SAFETY: the hook's slot; every writer stores 1.
        unsafe {
            if *slot == 0 {
                *slot = 1;
            }
        }
    }
}

/// Whether `hook` ever left an in-flight entry: only then can one of this
/// thread's be in [`INFLIGHT`].
#[inline(always)]
fn entered(hook: u32) -> bool {
    ENTERED.get(hook).is_none_or(|v| *v != 0)
}

/// Marks the pending entries of the other hooks in `family` on this thread
/// and page as covered. Returns whether one of them is an unpin entry point.
#[inline(always)]
fn cover_outer(family: &[u32], me: u32, head: u64, track_unpin: bool) -> bool {
    let mut unpin = false;
    for &outer in family {
        if outer == me || !entered(outer) {
            continue;
        }
        if let Some(o) = INFLIGHT.get_ptr_mut(key(outer)) {
            // SAFETY: entry of this thread, see `on_exit`.
            unsafe {
                if (*o).head == head {
                    (*o).covered = 1;
                    if track_unpin
                        && (outer == hook::UNPIN_USER_PAGE || outer == hook::UNPIN_USER_FOLIO)
                    {
                        unpin = true;
                    }
                }
            }
        }
    }
    unpin
}
