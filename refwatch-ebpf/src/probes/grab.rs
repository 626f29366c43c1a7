//! GUP reference and pin grabs.
//!
//! - `int try_grab_folio(struct folio *, int refs, unsigned int flags)` (6.6.47+, 6.10+);
//! - `struct folio *try_grab_folio(struct page *, int refs, unsigned int flags)` (6.1–6.6.46);
//! - `static struct folio *try_grab_folio_fast(struct page *, int refs, unsigned int flags)` (6.10+);
//! - `bool/int try_grab_page(struct page *, unsigned int flags)` (≤6.6.46).
//!
//! The event is decided from the refcount change, not the return value, so one
//! body serves every prototype; userspace picks the hook id by the BTF
//! prototype of the first argument. The two that return a folio record what
//! it means as `ret` (1: the folio, 0: NULL, or the errno of an `ERR_PTR`),
//! never its address (`refwatch_common::ret`).
use refwatch_common::hook;

super::entry_exit!(
    hook = hook::TRY_GRAB_FOLIO,
    args = 2,
    fentry = fentry_grab_folio,
    fexit = fexit_grab_folio,
    kprobe = kprobe_grab_folio,
    kretprobe = kretprobe_grab_folio,
);

super::entry_exit!(
    hook = hook::TRY_GRAB_FOLIO_PAGE,
    args = 2,
    fentry = fentry_grab_folio_page,
    fexit = fexit_grab_folio_page,
    kprobe = kprobe_grab_folio_page,
    kretprobe = kretprobe_grab_folio_page,
);

super::entry_exit!(
    hook = hook::TRY_GRAB_FOLIO_FAST,
    args = 2,
    fentry = fentry_grab_fast,
    fexit = fexit_grab_fast,
    kprobe = kprobe_grab_fast,
    kretprobe = kretprobe_grab_fast,
);

super::entry_exit!(
    hook = hook::TRY_GRAB_PAGE,
    args = 1,
    fentry = fentry_grab_page,
    fexit = fexit_grab_page,
    kprobe = kprobe_grab_page,
    kretprobe = kretprobe_grab_page,
);
