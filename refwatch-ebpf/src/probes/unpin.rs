//! Exported unpin entry points.
//!
//! `void unpin_user_page(struct page *)` (all versions) and
//! `void unpin_user_folio(struct folio *, unsigned long npages)` (6.9+, used by
//! the block layer's `bio_release_pages`).
use refwatch_common::hook;

super::entry_exit!(
    hook = hook::UNPIN_USER_PAGE,
    args = 1,
    fentry = fentry_unpin_page,
    fexit = fexit_unpin_page,
    kprobe = kprobe_unpin_page,
    kretprobe = kretprobe_unpin_page,
);

super::entry_exit!(
    hook = hook::UNPIN_USER_FOLIO,
    args = 2,
    fentry = fentry_unpin_folio,
    fexit = fexit_unpin_folio,
    kprobe = kprobe_unpin_folio,
    kretprobe = kretprobe_unpin_folio,
);
