//! A driver hands out a device page.
//!
//! `void zone_device_page_init(struct page *)` (6.1–6.18) and
//! `void zone_device_page_init(struct page *, struct dev_pagemap *, unsigned int order)` (6.19+):
//! 0 → 1.
use refwatch_common::hook;

super::entry_exit!(
    hook = hook::ZONE_DEVICE_INIT,
    args = 1,
    fentry = fentry_dev_init,
    fexit = fexit_dev_init,
    kprobe = kprobe_dev_init,
    kretprobe = kretprobe_dev_init,
);
