//! The refcount rules of the running kernel: at which value a page of each
//! type is idle (1-based or 0-based), decided from what the kernel has.

use serde::{Deserialize, Serialize};

use crate::symbols::kallsyms::Kallsyms;
use refwatch_common::pgmap;

/// Idle refcount per page-map type, and whether fs-dax mappings hold references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub private_idle: i32,
    pub fsdax_idle: i32,
    pub generic_idle: i32,
    pub p2pdma_idle: i32,
    /// fs-dax mappings take a reference each (6.15+).
    pub fsdax_mapping_refs: bool,
    /// How the rules were decided.
    pub basis: String,
}

impl Rules {
    /// Decides from the kernel's symbols:
    /// - fs-dax is 1-based while `__put_devmap_managed_*_refs` exists (≤6.14),
    ///   0-based with mapping references after;
    /// - device-private/coherent pages are 0-based where `zone_device_page_init`
    ///   exists (6.1+), 1-based before;
    /// - P2PDMA moved to 0-based with fs-dax (6.15); device-dax stays 1-based.
    pub fn from_kernel(k: &Kallsyms) -> Self {
        let devmap =
            k.has("__put_devmap_managed_page_refs") || k.has("__put_devmap_managed_folio_refs");
        let init = k.has("zone_device_page_init");
        let fsdax_idle = i32::from(devmap);
        let mut basis = Vec::new();
        basis.push(if devmap {
            "fs-dax 1-based (__put_devmap_managed_*_refs present)"
        } else {
            "fs-dax 0-based, mappings hold references (no __put_devmap_managed_*_refs)"
        });
        basis.push(if init {
            "device-private 0-based (zone_device_page_init present)"
        } else {
            "device-private 1-based (no zone_device_page_init)"
        });
        Self {
            private_idle: i32::from(!init),
            fsdax_idle,
            generic_idle: 1,
            p2pdma_idle: fsdax_idle,
            fsdax_mapping_refs: !devmap,
            basis: basis.join("; "),
        }
    }

    /// The idle refcount of a page of `pgmap_type`.
    pub fn idle(&self, pgmap_type: u32) -> i32 {
        match pgmap_type {
            pgmap::PRIVATE | pgmap::COHERENT => self.private_idle,
            pgmap::FSDAX => self.fsdax_idle,
            pgmap::GENERIC => self.generic_idle,
            pgmap::P2PDMA => self.p2pdma_idle,
            _ => self.fsdax_idle,
        }
    }

    /// Whether each mapping of a page of `pgmap_type` holds a reference of
    /// its own: device-private and coherent pages always (a migration's
    /// `remove_migration_pte` and a fork's `copy_nonpresent_pte` take one
    /// per entry they install, a zap drops it); fs-dax, device-dax and
    /// P2PDMA pages from 6.15 (the fs-dax rework).
    pub fn mappings_hold_refs(&self, pgmap_type: u32) -> bool {
        match pgmap_type {
            pgmap::PRIVATE | pgmap::COHERENT => true,
            pgmap::FSDAX | pgmap::GENERIC | pgmap::P2PDMA => self.fsdax_mapping_refs,
            _ => false,
        }
    }

    /// References beyond idle and beyond those its mappings hold.
    /// `mapcount` is the raw `_mapcount` (−1 = unmapped) as last read;
    /// `map_refs` the references refwatch saw page-table entries take and
    /// not yet drop (a fork's copy takes its reference before it counts the
    /// mapping, so the count read at that get is one short).
    pub fn outstanding(
        &self,
        pgmap_type: u32,
        refcount: i32,
        mapcount: Option<i32>,
        map_refs: i32,
    ) -> i32 {
        let mut extra = i64::from(refcount) - i64::from(self.idle(pgmap_type));
        if self.mappings_hold_refs(pgmap_type) {
            let mapped = mapcount.map_or(0, |m| (i64::from(m) + 1).max(0));
            extra -= mapped.max(i64::from(map_refs.max(0)));
        }
        i32::try_from(extra.max(0)).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_6_1_is_one_based_for_fsdax() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T __put_devmap_managed_page_refs\nffffffff81000100 T zone_device_page_init\n",
        );
        let r = Rules::from_kernel(&k);
        assert_eq!(r.idle(pgmap::FSDAX), 1);
        assert_eq!(r.idle(pgmap::PRIVATE), 0);
        assert_eq!(r.outstanding(pgmap::FSDAX, 2, Some(0), 0), 1);
        assert_eq!(r.outstanding(pgmap::FSDAX, 1, Some(0), 0), 0);
    }

    #[test]
    fn seven_two_is_zero_based_with_mapping_refs() {
        let k = Kallsyms::parse("ffffffff81000100 T zone_device_page_init\n");
        let r = Rules::from_kernel(&k);
        assert_eq!(r.idle(pgmap::FSDAX), 0);
        // Mapped once, plus one pipe reference.
        assert_eq!(r.outstanding(pgmap::FSDAX, 2, Some(0), 0), 1);
        // Mapped, nothing else.
        assert_eq!(r.outstanding(pgmap::FSDAX, 1, Some(0), 0), 0);
        // Unmapped, the pipe still holds it.
        assert_eq!(r.outstanding(pgmap::FSDAX, 1, Some(-1), 0), 1);
        assert_eq!(r.idle(pgmap::GENERIC), 1);
    }

    #[test]
    fn device_private_mappings_hold_their_references() {
        for rules in [
            "ffffffff81000100 T zone_device_page_init\n",
            "ffffffff81000000 T __put_devmap_managed_page_refs\nffffffff81000100 T zone_device_page_init\n",
        ] {
            let r = Rules::from_kernel(&Kallsyms::parse(rules));
            // Migrated to the device and mapped by one process: nothing extra.
            assert_eq!(r.outstanding(pgmap::PRIVATE, 1, Some(0), 1), 0);
            // Mapped by a parent and a forked child.
            assert_eq!(r.outstanding(pgmap::PRIVATE, 2, Some(1), 2), 0);
            // The fork's get read the count before the child's mapping was
            // counted: the entries' references say two.
            assert_eq!(r.outstanding(pgmap::PRIVATE, 2, Some(0), 2), 0);
            // Mapped once, and a pipe holds it.
            assert_eq!(r.outstanding(pgmap::PRIVATE, 2, Some(0), 1), 1);
            // Unmapped and still referenced.
            assert_eq!(r.outstanding(pgmap::PRIVATE, 1, Some(-1), 0), 1);
        }
    }

    #[test]
    fn hostile_counts_do_not_overflow() {
        let r = Rules::from_kernel(&Kallsyms::parse(
            "ffffffff81000100 T zone_device_page_init\n",
        ));
        assert_eq!(
            r.outstanding(pgmap::PRIVATE, i32::MAX, Some(i32::MAX), 0),
            0
        );
        assert_eq!(r.outstanding(pgmap::FSDAX, i32::MAX, Some(-1), 0), i32::MAX);
        assert_eq!(
            r.outstanding(pgmap::PRIVATE, i32::MIN, Some(i32::MIN), i32::MIN),
            0
        );
    }
}
