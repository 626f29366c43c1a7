//! What refwatch reads of device pages at attach and after loss, as events:
//! a snapshot event carries the page's refcount and mapcount as the kernel
//! had them (`event: "snapshot"`, symbol [`SYMBOL`]).

use std::ops::Range;

use crate::{
    event::{Kind, PageEvent, Stack, StackTaken},
    rules::Rules,
    symbols::Role,
};
use refwatch_common::PagePeek;

/// The `symbol` of snapshot events.
pub const SYMBOL: &str = "refwatch snapshot";

/// Largest range of `/proc/iomem` refwatch reads at attach (64 GiB).
pub const MAX_RANGE_PAGES: u64 = 1 << 24;

/// The snapshot event of a page read at `ts_ns` by refwatch (`pid`).
pub fn event(p: &PagePeek, ts_ns: u64, pid: u32) -> PageEvent {
    PageEvent {
        ts_ns,
        pfn: p.head_pfn,
        page: 0,
        pid,
        tgid: pid,
        cpu: 0,
        comm: "refwatch".into(),
        kind: Kind::Snapshot,
        hook: 0,
        refcount_before: None,
        refcount_after: (p.refcount != i32::MIN).then_some(p.refcount),
        mapcount: (p.mapcount != i32::MIN).then_some(p.mapcount),
        pgmap_type: p.pgmap_type,
        nr_pages: 1,
        ret: None,
        aux: 0,
        aux2: 0,
        owner: p.owner,
        late: false,
        forking: false,
        role: Role::Other,
        stack: Stack::default(),
        stack_taken: StackTaken::No,
    }
}

/// Whether a page read at attach holds references beyond those its type
/// and mappings explain (then refwatch tracks it from the start).
pub fn referenced(rules: &Rules, p: &PagePeek) -> bool {
    p.valid != 0
        && p.refcount != i32::MIN
        && rules.outstanding(
            p.pgmap_type,
            p.refcount,
            (p.mapcount != i32::MIN).then_some(p.mapcount),
            0,
        ) > 0
}

/// The head pages among `read` (a compound page's tails repeat its head),
/// in PFN order.
pub fn heads(read: &[(u64, PagePeek)]) -> Vec<PagePeek> {
    let mut out: Vec<PagePeek> = read
        .iter()
        .filter(|(pfn, p)| p.valid != 0 && p.head_pfn == *pfn)
        .map(|(_, p)| *p)
        .collect();
    out.sort_by_key(|p| p.head_pfn);
    out.dedup_by_key(|p| p.head_pfn);
    out
}

/// What the snapshot at attach found, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub ranges: Vec<Range<u64>>,
    pub pages: u64,
    pub referenced: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::kallsyms::Kallsyms;
    use refwatch_common::pgmap;

    fn peek(pfn: u64, head: u64, refcount: i32, mapcount: i32) -> (u64, PagePeek) {
        (
            pfn,
            PagePeek {
                head_pfn: head,
                owner: 0,
                refcount,
                mapcount,
                pgmap_type: pgmap::FSDAX,
                valid: 1,
                page: 0,
            },
        )
    }

    #[test]
    fn only_pages_with_unexplained_references_are_tracked() {
        let r72 = Rules::from_kernel(&Kallsyms::parse(
            "ffffffff81000100 T zone_device_page_init\n",
        ));
        // 7.2 fs-dax: mapped once, nothing else.
        assert!(!referenced(&r72, &peek(1, 1, 1, 0).1));
        // Mapped once and held by a pipe.
        assert!(referenced(&r72, &peek(1, 1, 2, 0).1));
        // Not a device page.
        let mut p = peek(1, 1, 5, -1).1;
        p.valid = 0;
        assert!(!referenced(&r72, &p));
        // A resident device-private page mapped by its process.
        let mut p = peek(1, 1, 1, 0).1;
        p.pgmap_type = pgmap::PRIVATE;
        assert!(!referenced(&r72, &p));
    }

    #[test]
    fn a_compound_page_is_read_once() {
        let read = [peek(8, 8, 3, -1), peek(9, 8, 3, -1), peek(10, 10, 0, -1)];
        let h = heads(&read);
        assert_eq!(
            h.iter().map(|p| p.head_pfn).collect::<Vec<_>>(),
            vec![8, 10]
        );
        let ev = event(&h[0], 5, 42);
        assert_eq!(
            (ev.kind, ev.pfn, ev.refcount_after),
            (Kind::Snapshot, 8, Some(3))
        );
    }
}
