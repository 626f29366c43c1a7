//! A page goes back to its driver or owner.
//!
//! `void free_zone_device_page(struct page *)` (6.1–6.9) and
//! `void free_zone_device_folio(struct folio *)` (6.10+), called when the
//! refcount reached 0.
use refwatch_common::hook;

super::entry_exit!(
    hook = hook::FREE_ZONE_DEVICE,
    args = 1,
    fentry = fentry_free,
    fexit = fexit_free,
    kprobe = kprobe_free,
    kretprobe = kretprobe_free,
);
