//! A fault maps a fs-dax page, and the mapping takes a reference (6.15+,
//! where fs-dax pages are 0-based).
//!
//! - `vm_fault_t vmf_insert_page_mkwrite(struct vm_fault *, struct page *, bool write)`;
//! - `vm_fault_t vmf_insert_folio_pmd(struct vm_fault *, struct folio *, bool write)`;
//! - `vm_fault_t vmf_insert_folio_pud(struct vm_fault *, struct folio *, bool write)`.
//!
//! The reference is taken inline (`folio_get` in `insert_page`); the event
//! is the refcount change across the call (none when the entry was already
//! there). `aux` is the `write` flag.
use refwatch_common::hook;

super::entry_exit!(
    hook = hook::MAP_INSERT,
    args = 2,
    page_arg = 1,
    fentry = fentry_map_insert,
    fexit = fexit_map_insert,
    kprobe = kprobe_map_insert,
    kretprobe = kretprobe_map_insert,
);

super::entry_exit!(
    hook = hook::MAP_INSERT_PMD,
    args = 2,
    page_arg = 1,
    fentry = fentry_map_insert_pmd,
    fexit = fexit_map_insert_pmd,
    kprobe = kprobe_map_insert_pmd,
    kretprobe = kretprobe_map_insert_pmd,
);

super::entry_exit!(
    hook = hook::MAP_INSERT_PUD,
    args = 2,
    page_arg = 1,
    fentry = fentry_map_insert_pud,
    fexit = fexit_map_insert_pud,
    kprobe = kprobe_map_insert_pud,
    kretprobe = kretprobe_map_insert_pud,
);
