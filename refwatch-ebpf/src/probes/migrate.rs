//! Device migrations and their per-page results.
//!
//! The driver calls `migrate_vma_setup` (collect, isolate and unmap the range;
//! pages that cannot be unmapped or carry unexpected references are restored
//! there), copies, then `migrate_vma_finalize`; driver eviction uses
//! `migrate_device_range`/`_pfns` and `migrate_device_finalize`. Every page,
//! moved or restored, goes through `remove_migration_ptes(src, dst, …)` inside
//! one of those calls: `src == dst` means the page stayed. The outer calls only
//! mark the thread as migrating (with the stage and direction); the per-page
//! event comes from `remove_migration_ptes`, which also runs for ordinary
//! NUMA and compaction migrations and is ignored outside a device migration.
//!
//! `folio_migrate_mapping` returning -EAGAIN is the copy-stage refusal: the
//! folio's refcount was not what the migration expected.
use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::HashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use refwatch_common::{hook, kind, migrate, pgmap};

use crate::{
    emit::{Fields, emit},
    page::{any_page, device_page, layout, mapcount, read_u64, refcount},
};

use super::{ram_gets, raw_arg};

/// What the thread is migrating now.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MigCtx {
    stage: u64,
    dir: u64,
}

#[map]
static MIGRATING: HashMap<u64, MigCtx> = HashMap::with_max_entries(4096, 0);

const EBUSY: i64 = -16;
const EAGAIN: i64 = -11;

#[inline(always)]
fn begin(stage: u64, dir: u64) {
    let _ = MIGRATING.insert(bpf_get_current_pid_tgid(), MigCtx { stage, dir }, 0);
}

#[inline(always)]
fn end() {
    let _ = MIGRATING.remove(bpf_get_current_pid_tgid());
}

/// Direction of a `struct migrate_vma` migration.
#[inline(always)]
fn direction(args: u64) -> u64 {
    let off = layout!(off_mv_flags);
    if args == 0 || off == 0 {
        return migrate::DIR_UNKNOWN;
    }
    let flags = read_u64(args + off as u64).unwrap_or(0);
    if flags & layout!(select_system) as u64 != 0 {
        return migrate::DIR_TO_DEVICE;
    }
    let fault = layout!(off_mv_fault_page);
    if fault != 0 && read_u64(args + fault as u64).unwrap_or(0) != 0 {
        migrate::DIR_FAULT
    } else {
        migrate::DIR_TO_RAM
    }
}

/// Entry and exit programs of a call that frames a device migration.
macro_rules! frame {
    ($fentry:ident, $fexit:ident, $kprobe:ident, $kretprobe:ident, $stage:expr, |$a0:ident| $dir:expr) => {
        #[fentry]
        pub fn $fentry(ctx: FEntryContext) -> i32 {
            let $a0: u64 = raw_arg(&ctx, 0);
            begin($stage, $dir);
            0
        }

        #[fexit]
        pub fn $fexit(_ctx: FExitContext) -> i32 {
            end();
            0
        }

        #[kprobe]
        pub fn $kprobe(ctx: ProbeContext) -> u32 {
            let $a0: u64 = ctx.arg(0).unwrap_or(0);
            begin($stage, $dir);
            0
        }

        #[kretprobe]
        pub fn $kretprobe(_ctx: RetProbeContext) -> u32 {
            end();
            0
        }
    };
}

frame!(
    fentry_mv_setup,
    fexit_mv_setup,
    kprobe_mv_setup,
    kretprobe_mv_setup,
    migrate::STAGE_SETUP,
    |args| direction(args)
);
frame!(
    fentry_mv_finalize,
    fexit_mv_finalize,
    kprobe_mv_finalize,
    kretprobe_mv_finalize,
    migrate::STAGE_FINALIZE,
    |args| direction(args)
);
frame!(
    fentry_md_range,
    fexit_md_range,
    kprobe_md_range,
    kretprobe_md_range,
    migrate::STAGE_SETUP,
    |_a| migrate::DIR_EVICT
);
frame!(
    fentry_md_pfns,
    fexit_md_pfns,
    kprobe_md_pfns,
    kretprobe_md_pfns,
    migrate::STAGE_SETUP,
    |_a| migrate::DIR_EVICT
);
frame!(
    fentry_md_finalize,
    fexit_md_finalize,
    kprobe_md_finalize,
    kretprobe_md_finalize,
    migrate::STAGE_FINALIZE,
    |_a| migrate::DIR_EVICT
);

#[fentry]
pub fn fentry_rm_ptes(ctx: FEntryContext) -> i32 {
    let src: u64 = raw_arg(&ctx, 0);
    let dst: u64 = raw_arg(&ctx, 1);
    on_page(&ctx, src, dst);
    0
}

#[kprobe]
pub fn kprobe_rm_ptes(ctx: ProbeContext) -> u32 {
    on_page(&ctx, ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0));
    0
}

/// Type and owner of a page: its page map's for device pages, system otherwise.
#[inline(always)]
fn kind_of(page: u64) -> (u32, u64) {
    match device_page(page) {
        Some(p) => (p.pgmap_type, p.owner),
        None => (pgmap::SYSTEM, 0),
    }
}

/// One page of a device migration: moved (`src != dst`) or restored.
#[inline(always)]
fn on_page<C: EbpfContext>(ctx: &C, src: u64, dst: u64) {
    // SAFETY: read-only copy of this thread's entry.
    let Some(m) = (unsafe { MIGRATING.get(bpf_get_current_pid_tgid()) }).copied() else {
        return;
    };
    let moved = dst != 0 && dst != src;
    let Some(f) = page_fields(
        hook::REMOVE_MIGRATION_PTES,
        src,
        if moved { dst } else { 0 },
    ) else {
        return;
    };
    if !moved && f.pgmap_type == pgmap::SYSTEM {
        ram_gets::report(f.pfn, f.after);
    }
    let result = if moved {
        migrate::RESULT_MOVED
    } else {
        migrate::RESULT_FAILED
    };
    emit(
        ctx,
        &Fields {
            ret: Some(if moved { 0 } else { EBUSY }),
            aux2: migrate::pack(m.stage, m.dir, result),
            stack: !moved,
            ..f
        },
    );
}

/// A migration event about the page `src` (device or system), its refcount
/// and mapcount read now; `aux` is the destination `dst`'s PFN + 1 (0: none)
/// and the owner the source's page map's, or else the destination's.
#[inline(always)]
fn page_fields(hook: u32, src: u64, dst: u64) -> Option<Fields> {
    let (head, pfn) = any_page(src)?;
    let (pgmap_type, mut owner) = kind_of(head);
    let mut aux = 0;
    if let Some((dhead, dpfn)) = any_page(dst) {
        aux = dpfn + 1;
        if owner == 0 {
            owner = kind_of(dhead).1;
        }
    }
    let rc = refcount(head);
    Some(Fields {
        kind: kind::MIGRATE,
        hook,
        pfn,
        head,
        pgmap_type,
        before: rc,
        after: rc,
        mapcount: mapcount(head),
        ret: None,
        aux,
        aux2: 0,
        owner,
        nr_pages: 1,
        stack: true,
        flags: 0,
    })
}

/// `int folio_migrate_mapping(struct address_space *, struct folio *dst,
/// struct folio *src, int extra_count)`: -EAGAIN when the source folio's
/// refcount is not the expected one.
#[fexit]
pub fn fexit_fmm(ctx: FExitContext) -> i32 {
    let ret: i64 = ctx.ret::<i64>().unwrap_or(0);
    if ret as i32 as i64 != EAGAIN {
        return 0;
    }
    let dst: u64 = raw_arg(&ctx, 1);
    let src: u64 = raw_arg(&ctx, 2);
    let extra: u64 = raw_arg(&ctx, 3);
    // SAFETY: read-only copy of this thread's entry.
    let m = unsafe { MIGRATING.get(bpf_get_current_pid_tgid()) }.copied();
    let Some(f) = page_fields(hook::FOLIO_MIGRATE_MAPPING, src, dst) else {
        return 0;
    };
    if m.is_none() && f.pgmap_type == pgmap::SYSTEM {
        // An ordinary (NUMA, compaction) migration of system memory.
        return 0;
    }
    let dir = m.map_or(migrate::DIR_UNKNOWN, |m| m.dir);
    emit(
        &ctx,
        &Fields {
            ret: Some(EAGAIN),
            aux2: migrate::pack(migrate::STAGE_COPY, dir, migrate::RESULT_FAILED)
                | (extra & 0xff) << 24,
            ..f
        },
    );
    0
}

/// `memremap_pages(struct dev_pagemap *, int nid)` and
/// `memunmap_pages(struct dev_pagemap *)`: a page map comes and goes.
#[inline(always)]
fn on_pgmap<C: EbpfContext>(ctx: &C, hook: u32, kind: u32, pgmap_ptr: u64) {
    let off = layout!(off_pgmap_range);
    if pgmap_ptr == 0 || off == 0 {
        return;
    }
    let start = read_u64(pgmap_ptr + off as u64).unwrap_or(0);
    let end = read_u64(pgmap_ptr + off as u64 + 8).unwrap_or(0);
    if end <= start {
        return;
    }
    emit(
        ctx,
        &Fields {
            kind,
            hook,
            pfn: start >> 12,
            head: 0,
            pgmap_type: crate::page::pgmap_type(pgmap_ptr),
            before: None,
            after: None,
            mapcount: None,
            ret: None,
            aux: 0,
            aux2: 0,
            owner: crate::page::owner(pgmap_ptr),
            nr_pages: ((end - start + 1) >> 12) as u32,
            flags: 0,
            stack: true,
        },
    );
}

#[fentry]
pub fn fentry_memremap(ctx: FEntryContext) -> i32 {
    on_pgmap(&ctx, hook::MEMREMAP, kind::PGMAP_ADD, raw_arg(&ctx, 0));
    0
}

#[kprobe]
pub fn kprobe_memremap(ctx: ProbeContext) -> u32 {
    on_pgmap(
        &ctx,
        hook::MEMREMAP,
        kind::PGMAP_ADD,
        ctx.arg(0).unwrap_or(0),
    );
    0
}

#[fentry]
pub fn fentry_memunmap(ctx: FEntryContext) -> i32 {
    on_pgmap(&ctx, hook::MEMUNMAP, kind::PGMAP_REMOVE, raw_arg(&ctx, 0));
    0
}

#[kprobe]
pub fn kprobe_memunmap(ctx: ProbeContext) -> u32 {
    on_pgmap(
        &ctx,
        hook::MEMUNMAP,
        kind::PGMAP_REMOVE,
        ctx.arg(0).unwrap_or(0),
    );
    0
}
