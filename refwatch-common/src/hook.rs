//! Where an event came from (`Event::hook`): one value per logical hook, not
//! per kernel symbol; userspace knows which symbol it attached for each.

/// `__put_devmap_managed_page_refs` / `__put_devmap_managed_folio_refs`.
pub const PUT_DEVMAP_REFS: u32 = 1;
/// `free_zone_device_page` / `free_zone_device_folio`.
pub const FREE_ZONE_DEVICE: u32 = 2;
/// `__folio_put`: only in recordings of earlier versions (the free hook
/// reports the last put now).
pub const FOLIO_PUT: u32 = 3;
/// `gup_put_folio` (static; out of line on the kernels seen).
pub const GUP_PUT_FOLIO: u32 = 4;
/// `unpin_user_page`.
pub const UNPIN_USER_PAGE: u32 = 5;
/// `try_grab_folio` with a folio argument (6.6.47+/6.10+).
pub const TRY_GRAB_FOLIO: u32 = 6;
/// `try_grab_folio_fast` (page argument, returns the folio).
pub const TRY_GRAB_FOLIO_FAST: u32 = 7;
/// `try_grab_page` (5.15 … 6.6.46; page argument).
pub const TRY_GRAB_PAGE: u32 = 8;
/// `dax_layout_busy_page_range` (return value is the busy page).
pub const DAX_LAYOUT_BUSY: u32 = 9;
/// `zone_device_page_init`.
pub const ZONE_DEVICE_INIT: u32 = 10;
/// `unpin_user_folio` (folio, npages).
pub const UNPIN_USER_FOLIO: u32 = 11;
/// `try_grab_folio` with a page argument (6.1 … 6.6.46; returns the folio).
pub const TRY_GRAB_FOLIO_PAGE: u32 = 12;
/// `__bio_release_pages` (block I/O done with pages it took plain
/// references on; drops them inline with `folio_put_refs`).
pub const BIO_RELEASE: u32 = 13;
/// `migrate_vma_setup` (context of the per-page migration events).
pub const MIGRATE_VMA_SETUP: u32 = 14;
/// `migrate_vma_finalize`.
pub const MIGRATE_VMA_FINALIZE: u32 = 15;
/// `migrate_device_range` / `migrate_device_pfns` (driver eviction).
pub const MIGRATE_DEVICE_RANGE: u32 = 16;
/// `migrate_device_finalize`.
pub const MIGRATE_DEVICE_FINALIZE: u32 = 17;
/// `remove_migration_ptes` inside a device migration: one page's result.
pub const REMOVE_MIGRATION_PTES: u32 = 18;
/// `folio_migrate_mapping` returning -EAGAIN (copy-stage refusal).
pub const FOLIO_MIGRATE_MAPPING: u32 = 19;
/// `page_ref_set` tracepoint (precise mode).
pub const PAGE_REF_SET: u32 = 20;
/// `page_ref_mod` tracepoint.
pub const PAGE_REF_MOD: u32 = 21;
/// `page_ref_mod_and_test` tracepoint.
pub const PAGE_REF_MOD_AND_TEST: u32 = 22;
/// `page_ref_mod_and_return` tracepoint.
pub const PAGE_REF_MOD_AND_RETURN: u32 = 23;
/// `page_ref_mod_unless` tracepoint (successful try-gets only).
pub const PAGE_REF_MOD_UNLESS: u32 = 24;
/// `page_ref_freeze` tracepoint.
pub const PAGE_REF_FREEZE: u32 = 25;
/// `page_ref_unfreeze` tracepoint.
pub const PAGE_REF_UNFREEZE: u32 = 26;
/// `memremap_pages` (a device page map comes up).
pub const MEMREMAP: u32 = 27;
/// `memunmap_pages` (a device page map is torn down).
pub const MEMUNMAP: u32 = 28;
/// `kernel_clone` (fork): references taken while it runs belong to the child.
pub const KERNEL_CLONE: u32 = 29;
/// `vmf_insert_page_mkwrite` (6.15+: a fs-dax fault maps the page and
/// the mapping holds a reference).
pub const MAP_INSERT: u32 = 30;
/// `vmf_insert_folio_pmd` (the same for a PMD mapping).
pub const MAP_INSERT_PMD: u32 = 31;
/// `vmf_insert_folio_pud` (the same for a PUD mapping).
pub const MAP_INSERT_PUD: u32 = 32;
/// `folios_put_refs` (a batch drop, e.g. the unmap of fs-dax mappings on
/// 6.15+).
pub const BATCH_PUT: u32 = 33;
/// `ext4_wait_dax_page`: a layout break sleeps on the busy page
/// `dax_layout_busy_page_range` gave it last.
pub const LAYOUT_SLEEP: u32 = 34;
/// `xfs_wait_dax_page` (the same on XFS).
pub const LAYOUT_SLEEP_XFS: u32 = 35;
/// A hardware data watchpoint on the page's `_refcount` word fired
/// (`source: watch`): a write to the refcount from any path, inline
/// or not. `refcount_after` is the value read in the trap (x86 data
/// breakpoints trap after the write), `refcount_before` the last value
/// the watch knew (read when it was armed, then each hit's `after`);
/// the kind is `PIN` when the value rose by the pin bias (1024) or
/// its last 1023 (fast GUP adds 1 first), `UNPIN` when it fell by as
/// much, else `GET` when it rose, `PUT` when it fell, `SET` when it
/// stayed (a rewrite of the same value) or no earlier value is known. `aux` is the hit's number since the watch was armed (1, 2,
/// …: a jump says hits were lost).
pub const WATCHPOINT: u32 = 36;
/// Not a kernel hook: userspace's record that a page's watchpoint ended
/// (its slot yielded to a waiting page, or the TUI's `w` stopped it), a
/// read of the page's state then (`snapshot` kind), so that a recording
/// says until when the page was watched.
pub const WATCH_END: u32 = 37;
/// Number of hook ids + 1 (for tables indexed by hook).
pub const COUNT: u32 = 38;
