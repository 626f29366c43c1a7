//! What a reference change did to a page's mappings (map, unmap, other),
//! from the kernel functions on its stack.

/// What a reference change did to the page's mappings, judged from the
/// kernel functions on its stack: a reference a page-table entry holds is
/// taken where the entry is installed and dropped where it is zapped, far
/// apart and often by another task, so holders are matched by role first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Role {
    #[default]
    Other,
    /// Installs a page-table entry (fault, fork, migration restore).
    Map,
    /// Zaps page-table entries (munmap, exit, unmapping for migration).
    Unmap,
}

/// Functions that install a page-table entry holding a reference.
const MAP_FUNCTIONS: &[&str] = &[
    "insert_page_into_pte_locked",
    "insert_page",
    "vmf_insert_page_mkwrite",
    "vmf_insert_folio_pmd",
    "vmf_insert_folio_pud",
    "set_pte_range",
    "do_set_pmd",
    "do_anonymous_page",
    "copy_page_range",
    "copy_present_pte",
    "copy_nonpresent_pte",
    "remove_migration_pte",
    "migrate_vma_insert_page",
];

/// Functions that drop the references of zapped page-table entries.
const UNMAP_FUNCTIONS: &[&str] = &[
    "__zap_vma_range",
    "zap_pte_range",
    "zap_present_ptes",
    "zap_nonpresent_ptes",
    "unmap_page_range",
    "unmap_vmas",
    "free_pages_and_swap_cache",
    "tlb_batch_pages_flush",
    "tlb_flush_mmu",
    "try_to_migrate_one",
    "try_to_unmap_one",
];

/// The role of an event from its symbolized stack (`name+0xoff`, innermost
/// first): the innermost frame that installs or zaps page-table entries.
/// Callers put the hooked function first: a hook's own stack starts at its
/// caller.
pub fn role_of<S: AsRef<str>>(frames: impl IntoIterator<Item = S>) -> Role {
    for f in frames {
        let name = f.as_ref().split('+').next().unwrap_or_default();
        if MAP_FUNCTIONS.contains(&name) {
            return Role::Map;
        }
        if UNMAP_FUNCTIONS.contains(&name) {
            return Role::Unmap;
        }
    }
    Role::Other
}
