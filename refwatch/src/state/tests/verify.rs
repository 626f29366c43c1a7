//! Reading flagged pages back (synthetic events, not from a kernel): which
//! pages are read, when, and what a read that disagrees changes.

use super::*;

/// A 7.2 fs-dax page mapped at `S` (the fault's get) and spliced at `2 S`
/// (a GUP grab), at refcount 2 with one mapping: one reference beyond the
/// mapping's from `2 S`.
fn spliced(t: &mut Tracker, pfn: u64) {
    let mut ins = mapped(ev(S, pfn, Kind::Get, 1, 2, 5), 0);
    ins.hook = hook::MAP_INSERT;
    ins.role = Role::Map;
    t.apply(&ins);
    let mut grab = mapped(ev(2 * S, pfn, Kind::Get, 1, 2, 6), 0);
    grab.hook = hook::TRY_GRAB_FOLIO_FAST;
    t.apply(&grab);
}

fn stuck(t: &Tracker) -> Vec<u64> {
    t.stuck().iter().map(|p| p.pfn).collect()
}

/// What refwatch read of page `pfn` at `ts`.
fn read(ts: u64, pfn: u64, refcount: i32, mapcount: i32) -> PageEvent {
    let mut r = mapped(ev(ts, pfn, Kind::Snapshot, 0, refcount, 0), mapcount);
    r.refcount_before = None;
    r
}

#[test]
fn a_page_is_read_when_a_detector_would_flag_it_and_then_each_second() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    spliced(&mut t, 0x700);
    // Outstanding from 2 S, the threshold 1 S.
    assert!(t.to_verify(2 * S + S / 2, 10).is_empty());
    assert_eq!(t.to_verify(3 * S, 10), [0x700]);
    // The read agrees: the page stays what it was, and is flagged.
    let r = read(3 * S, 0x700, 2, 0);
    assert!(t.agrees(&r));
    t.note_verified(0x700, 3 * S);
    t.advance(3 * S);
    assert_eq!(stuck(&t), [0x700]);
    // Not read again within a second; read again after it.
    assert!(t.to_verify(3 * S + S / 2, 10).is_empty());
    assert_eq!(t.to_verify(4 * S, 10), [0x700]);
}

#[test]
fn a_read_that_finds_a_put_no_hook_saw_clears_the_page() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    spliced(&mut t, 0x700);
    // The pipe was drained by an inline put: the kernel has the mapping's
    // reference only.
    let r = read(3 * S, 0x700, 1, 0);
    assert!(!t.agrees(&r));
    t.apply(&r);
    t.note_verified(0x700, 3 * S);
    t.advance(3 * S);
    assert!(stuck(&t).is_empty(), "{:?}", t.episodes);
    assert!(t.episodes.is_empty());
    let p = t.page(0x700).expect("tracked");
    assert_eq!((p.outstanding, p.refcount), (0, Some(1)));
    // The splice's holder went with its reference; the mapping's stays.
    let roles: Vec<Role> = p.holders.iter().map(|h| h.role).collect();
    assert_eq!(roles, [Role::Map]);
    assert!(t.to_verify(5 * S, 10).is_empty());

    // Flagged first, corrected later: the episode ends at the read.
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    spliced(&mut t, 0x700);
    t.advance(3 * S);
    assert_eq!(stuck(&t), [0x700]);
    assert_eq!(t.to_verify(3 * S, 10), [0x700]);
    t.apply(&read(4 * S, 0x700, 1, 0));
    t.advance(4 * S);
    assert!(stuck(&t).is_empty());
    assert_eq!(t.episodes[0].end_ns, Some(4 * S));
}

#[test]
fn pages_read_least_recently_come_first_within_the_cap() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    for pfn in [0x700, 0x701, 0x702] {
        spliced(&mut t, pfn);
    }
    t.note_verified(0x700, 3 * S);
    t.note_verified(0x701, 2 * S);
    assert_eq!(t.to_verify(4 * S, 2), [0x701, 0x702]);
    assert_eq!(t.to_verify(4 * S, 3), [0x700, 0x701, 0x702]);
    // Pages whose state is unknown (events lost) are read after the loss,
    // not here; RAM pages are not read.
    t.apply_gap(0x702, 3 * S);
    assert_eq!(t.to_verify(4 * S, 3), [0x700, 0x701]);
}
