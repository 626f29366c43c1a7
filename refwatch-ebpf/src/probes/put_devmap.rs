//! fs-dax reference drops on 1-based kernels.
//!
//! `bool __put_devmap_managed_page_refs(struct page *page, int refs)` (6.1–6.9)
//! and `bool __put_devmap_managed_folio_refs(struct folio *folio, int refs)`
//! (6.10–6.14): subtracts `refs` from an fs-dax page and wakes DAX waiters at 1.
//! Returns false (nothing done) for other page types.
use refwatch_common::hook;

super::entry_exit!(
    hook = hook::PUT_DEVMAP_REFS,
    args = 2,
    fentry = fentry_put_devmap,
    fexit = fexit_put_devmap,
    kprobe = kprobe_put_devmap,
    kretprobe = kretprobe_put_devmap,
);
