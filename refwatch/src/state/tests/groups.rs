//! Stuck pages grouped by holder, on synthetic events (not from a kernel).

use super::*;
use crate::state::groups::{
    Change, GROW_EVERY_NS, GroupWatch, by_frames, episode_members, group, pfn_ranges, ranges_text,
    stuck_groups,
};

/// Synthetic: `tgid` takes a reference on `pfn` at `ts` through `stack`.
fn get(ts: u64, pfn: u64, tgid: u32, stack: &[u64]) -> PageEvent {
    let mut e = ev(ts, pfn, Kind::Get, 1, 2, tgid);
    e.stack = stack.into();
    e
}

const SPLICE: &[u64] = &[0xffff_ffff_8100_1000, 0xffff_ffff_8100_2000];
const DIO: &[u64] = &[0xffff_ffff_8100_3000];

#[test]
fn ranges_compress_runs_and_keep_gaps() {
    assert_eq!(pfn_ranges(&[]), vec![]);
    assert_eq!(pfn_ranges(&[7]), vec![(7, 7)]);
    assert_eq!(
        pfn_ranges(&[1, 2, 3, 5, 7, 8]),
        vec![(1, 3), (5, 5), (7, 8)]
    );
    // Repeats are one page.
    assert_eq!(pfn_ranges(&[4, 4, 5]), vec![(4, 5)]);
    // The ends of u64: no overflow, and no run across the wrap.
    assert_eq!(
        pfn_ranges(&[0, 1, u64::MAX - 1, u64::MAX]),
        vec![(0, 1), (u64::MAX - 1, u64::MAX)]
    );
    assert_eq!(pfn_ranges(&[u64::MAX]), vec![(u64::MAX, u64::MAX)]);
    let r = pfn_ranges(&(0x48200..=0x4820f).chain([0x48300]).collect::<Vec<_>>());
    assert_eq!(ranges_text(&r, 8), "0x48200-0x4820f,0x48300");
    assert_eq!(ranges_text(&r, 1), "0x48200-0x4820f,(+1 more ranges)");
}

/// Synthetic: 16 pages one process holds through one stack, 2 another
/// process holds through another, and one whose reference has no holder.
fn three_holders() -> Tracker {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 1000);
    for pfn in 0x48200..0x48210 {
        t.apply(&get(S + pfn - 0x48200, pfn, 42, SPLICE));
    }
    t.apply(&get(S / 2, 0x50000, 7, DIO));
    t.apply(&get(S / 2, 0x50002, 7, DIO));
    // Only a drop seen: a reference of unknown origin.
    t.apply(&ev(S, 0x60000, Kind::Put, 4, 3, 1));
    t.advance(5 * S);
    t
}

#[test]
fn pages_group_by_holder_most_pages_first() {
    let t = three_holders();
    let g = stuck_groups(&t, &by_frames);
    assert_eq!(g.len(), 3, "{g:#?}");
    assert_eq!((g[0].key.tgid, g[0].pages()), (42, 16));
    assert_eq!(g[0].key.comm, "task42");
    assert_eq!(g[0].key.detector, Detector::Held);
    assert_eq!(g[0].ranges(), vec![(0x48200, 0x4820f)]);
    assert_eq!(g[0].pgmap_types, vec![pgmap::FSDAX]);
    // The earliest since of its pages.
    assert_eq!(g[0].since_ns, S);
    assert_eq!(g[0].end_ns, None);
    assert_eq!(
        g[0].holder.as_ref().map(|h| h.stack.frames().to_vec()),
        Some(SPLICE.to_vec())
    );
    assert_eq!((g[1].key.tgid, g[1].pages()), (7, 2));
    assert_eq!(g[1].ranges(), vec![(0x50000, 0x50000), (0x50002, 0x50002)]);
    assert_eq!(g[1].since_ns, S / 2);
    // Unknown holder: grouped by detector and why.
    assert_eq!(g[2].pfns, vec![0x60000]);
    assert!(g[2].holder.is_none());
    assert_eq!(g[2].key.tgid, 0);
    assert!(
        g[2].key
            .note
            .as_deref()
            .is_some_and(|n| n.contains("no hook")),
        "{:?}",
        g[2].key.note
    );
}

#[test]
fn unknown_holders_of_one_kind_are_one_group() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 1000);
    for pfn in [3, 4, 9] {
        t.apply(&ev(S, pfn, Kind::Put, 4, 3, 1));
    }
    t.advance(5 * S);
    let g = stuck_groups(&t, &by_frames);
    assert_eq!(g.len(), 1, "{g:#?}");
    assert_eq!(g[0].ranges(), vec![(3, 4), (9, 9)]);
}

#[test]
fn same_stack_in_two_processes_is_two_groups() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 1000);
    t.apply(&get(0, 1, 10, SPLICE));
    t.apply(&get(0, 2, 11, SPLICE));
    t.apply(&get(0, 3, 11, SPLICE));
    t.advance(5 * S);
    let g = stuck_groups(&t, &by_frames);
    let who: Vec<(u32, Vec<u64>)> = g.iter().map(|g| (g.key.tgid, g.pfns.clone())).collect();
    assert_eq!(who, vec![(11, vec![2, 3]), (10, vec![1])]);
    // Same process, another stack: apart too.
    t.apply(&get(6 * S, 4, 10, DIO));
    t.advance(8 * S);
    let g = stuck_groups(&t, &by_frames);
    assert_eq!(g.len(), 3, "{g:#?}");
}

#[test]
fn ties_keep_the_order_of_their_first_page() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 1000);
    // By PFN: 30's holder first, then 10's, then 20's (most pages).
    t.apply(&get(0, 30, 3, SPLICE));
    t.apply(&get(0, 40, 1, SPLICE));
    t.apply(&get(0, 50, 2, SPLICE));
    t.apply(&get(0, 51, 2, SPLICE));
    t.advance(5 * S);
    let g = stuck_groups(&t, &by_frames);
    let order: Vec<u32> = g.iter().map(|g| g.key.tgid).collect();
    assert_eq!(order, vec![2, 3, 1]);
}

/// A page flagged by several detectors counts once, under the most
/// specific; its mapping references do not name the holder.
#[test]
fn a_page_counts_once_under_its_most_specific_detector() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 1000);
    for pfn in [3, 4] {
        // Mapped (a page-table entry's reference), then a pipe's get, then
        // unmapped: held and unmapped-not-freed both open.
        let mut m = mapped(get(0, pfn, 5, DIO), 0);
        m.role = Role::Map;
        t.apply(&m);
        t.apply(&mapped(get(S / 10, pfn, 7, SPLICE), 0));
        let mut unmap = mapped(ev(S / 5, pfn, Kind::Put, 3, 2, 5), -1);
        unmap.role = Role::Unmap;
        t.apply(&unmap);
    }
    t.advance(3 * S);
    let dets: Vec<Detector> = t.episodes.iter().map(|e| e.detector).collect();
    assert!(dets.contains(&Detector::Held), "{dets:?}");
    assert!(dets.contains(&Detector::UnmappedNotFreed), "{dets:?}");
    let live = stuck_groups(&t, &by_frames);
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(live[0].key.detector, Detector::UnmappedNotFreed);
    assert_eq!(live[0].key.tgid, 7);
    assert_eq!(live[0].pfns, vec![3, 4]);
    // The same from the episodes (a report): one group, every episode in it.
    let eps = group(episode_members(&t.episodes, &by_frames));
    assert_eq!(eps.len(), 1, "{eps:#?}");
    assert_eq!(eps[0].key, live[0].key);
    assert_eq!(eps[0].members, t.episodes.len());
    assert_eq!(eps[0].end_ns, None);
    for pfn in [3, 4] {
        t.apply(&mapped(ev(4 * S, pfn, Kind::Put, 2, 0, 7), -1));
        t.apply(&mapped(ev(4 * S, pfn, Kind::Free, 0, 0, 7), -1));
    }
    let eps = group(episode_members(&t.episodes, &by_frames));
    assert_eq!(eps[0].end_ns, Some(4 * S));
    assert!(stuck_groups(&t, &by_frames).is_empty());
}

#[test]
fn changes_open_grow_once_a_second_and_clear() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 1000);
    let mut w = GroupWatch::new();
    t.apply(&get(0, 1, 42, SPLICE));
    t.advance(2 * S);
    let c = w.update(&stuck_groups(&t, &by_frames), 2 * S);
    assert!(
        matches!(c.as_slice(), [Change::Opened(g)] if g.pfns == [1]),
        "{c:#?}"
    );
    // Nothing new: nothing said.
    assert!(
        w.update(&stuck_groups(&t, &by_frames), 2 * S + 1)
            .is_empty()
    );
    // Grows within the second: said once the second is over.
    t.apply(&get(2 * S, 2, 42, SPLICE));
    t.advance(3 * S + 1);
    let g = stuck_groups(&t, &by_frames);
    assert_eq!(g[0].pages(), 2);
    assert!(w.update(&g, 2 * S + GROW_EVERY_NS / 2).is_empty());
    let c = w.update(&g, 2 * S + GROW_EVERY_NS);
    assert!(
        matches!(c.as_slice(), [Change::Grew { group, from: 1 }] if group.pages() == 2),
        "{c:#?}"
    );
    // Grows again at once: held back for a second.
    t.apply(&get(3 * S, 3, 42, SPLICE));
    t.advance(4 * S + 1);
    let g = stuck_groups(&t, &by_frames);
    assert_eq!(g[0].pages(), 3);
    assert!(w.update(&g, 3 * S + 1).is_empty());
    assert!(matches!(
        w.update(&g, 4 * S).as_slice(),
        [Change::Grew { from: 2, .. }]
    ));
    assert_eq!(w.open(), 1);
    // All released: cleared, with the pages it had.
    for pfn in 1..=3 {
        t.apply(&ev(5 * S, pfn, Kind::Put, 2, 1, 42));
    }
    let c = w.update(&stuck_groups(&t, &by_frames), 5 * S);
    assert!(
        matches!(c.as_slice(), [Change::Cleared(g)] if g.pfns == [1, 2, 3] && g.since_ns == 0),
        "{c:#?}"
    );
    assert_eq!(w.open(), 0);
    assert!(w.update(&[], 6 * S).is_empty());
}

/// Held pages unmapped since: the same holder's group moves to
/// `unmapped-not-freed`; it neither clears nor opens again.
#[test]
fn a_group_moves_to_a_more_specific_detector() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 1000);
    let mut w = GroupWatch::new();
    for pfn in [3, 4] {
        t.apply(&mapped(get(0, pfn, 7, SPLICE), 0));
    }
    t.advance(S + 1);
    let c = w.update(&stuck_groups(&t, &by_frames), S + 1);
    assert!(
        matches!(c.as_slice(), [Change::Opened(g)] if g.key.detector == Detector::Held),
        "{c:#?}"
    );
    for pfn in [3, 4] {
        let mut unmap = mapped(ev(S + 2, pfn, Kind::Put, 3, 2, 5), -1);
        unmap.role = Role::Unmap;
        t.apply(&unmap);
    }
    t.advance(3 * S);
    let c = w.update(&stuck_groups(&t, &by_frames), 3 * S);
    assert!(
        matches!(c.as_slice(), [Change::Moved { group, was: Detector::Held }]
            if group.key.detector == Detector::UnmappedNotFreed && group.pfns == [3, 4]),
        "{c:#?}"
    );
    assert_eq!(w.open(), 1);
}

/// An episode that opens and ends between two looks (a migration refused
/// for 10 ms) is still said, opened and cleared; one of a holder whose
/// group is open is part of it.
#[test]
fn groups_that_come_and_go_between_looks_are_said() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 1000);
    let mut w = GroupWatch::new();
    t.apply(&get(0, 1, 42, SPLICE));
    t.advance(2 * S);
    t.apply(&ev(2 * S + 10, 1, Kind::Put, 2, 1, 42));
    assert!(stuck_groups(&t, &by_frames).is_empty());
    let passed = group(episode_members(&t.episodes, &by_frames));
    let c = w.update_with_passed(&[], passed.clone(), 3 * S);
    assert!(
        matches!(c.as_slice(), [Change::Opened(a), Change::Cleared(b)]
            if a.pfns == [1] && b.end_ns == Some(2 * S + 10)),
        "{c:#?}"
    );
    // The same holder open meanwhile: nothing more to say.
    t.apply(&get(4 * S, 2, 42, SPLICE));
    t.advance(6 * S);
    let open = stuck_groups(&t, &by_frames);
    let c = w.update_with_passed(&open, passed, 6 * S);
    assert!(
        matches!(c.as_slice(), [Change::Opened(g)] if g.pfns == [2]),
        "{c:#?}"
    );
}
