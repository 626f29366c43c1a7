//! Synthetic events (not from a kernel) of pages a hardware watchpoint
//! watches (`--watch`).

use super::*;

/// A watchpoint event (synthetic).
fn hit(ts: u64, pfn: u64, kind: Kind, before: i32, after: i32, tgid: u32) -> PageEvent {
    let mut e = ev(ts, pfn, kind, before, after, tgid);
    e.hook = hook::WATCHPOINT;
    e
}

/// A get a hook saw and the watchpoint saw too counts once; an inline get
/// only the watchpoint saw names its holder.
#[test]
fn watched_pages_count_each_reference_once() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.watch_armed(1, Some(0));
    t.apply(&ev(0, 1, Kind::Snapshot, 1, 1, 1));
    t.watch_armed(1, Some(0));
    // GUP: the write traps first, the hook's exit reports after.
    t.apply(&hit(S, 1, Kind::Get, 1, 2, 42));
    t.apply(&ev(S + 10, 1, Kind::Get, 1, 2, 42));
    // An inline get_page (no hook).
    t.apply(&hit(2 * S, 1, Kind::Get, 2, 3, 43));
    let p = t.page(1).expect("tracked");
    assert_eq!(
        p.holders.iter().map(|h| h.tgid).collect::<Vec<_>>(),
        [42, 43]
    );
    // Its put, also inline.
    t.apply(&hit(3 * S, 1, Kind::Put, 3, 2, 43));
    let p = t.page(1).expect("tracked");
    assert_eq!(p.holders.iter().map(|h| h.tgid).collect::<Vec<_>>(), [42]);
    assert_eq!(p.refcount, Some(2));
}

/// A reference taken before the watch: "taken before watching" until its
/// release, which the watchpoint sees with the releaser.
#[test]
fn a_reference_taken_before_watching_is_said_until_its_release() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    // Read at attach: held already (refcount 2, idle 1).
    t.apply(&ev(0, 7, Kind::Snapshot, 2, 2, 1));
    t.watch_armed(7, Some(S));
    t.advance(3 * S);
    let e = t.episodes.last().expect("stuck");
    assert!(e.holders.is_empty());
    let note = e.holder_note.as_deref().unwrap_or("");
    assert!(note.contains("before watching"), "{note}");
    t.apply(&hit(4 * S, 7, Kind::Put, 2, 1, 99));
    let e = t.episodes.last().expect("episode");
    assert_eq!(e.end_ns, Some(4 * S));
    // The episode names its releaser: the watchpoint's put.
    let r = e.released_by.as_deref().expect("released by");
    assert_eq!((r.hook, r.tgid, r.kind), (hook::WATCHPOINT, 99, Kind::Put));
    let last = t
        .page(7)
        .and_then(|p| p.history.iter().last())
        .expect("event");
    assert_eq!((last.hook, last.tgid), (hook::WATCHPOINT, 99));
}

/// A recording knows since when a page was watched from the state read at
/// arming (a snapshot from the watchpoint), as the live tracker does.
#[test]
fn the_read_at_arming_starts_the_watch_in_a_replay() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(0, 7, Kind::Snapshot, 2, 2, 1));
    let mut armed = ev(S / 2, 7, Kind::Snapshot, 2, 2, 1);
    armed.hook = hook::WATCHPOINT;
    t.apply(&armed);
    assert_eq!(t.page(7).map(|p| p.watched_since), Some(S / 2));
    t.advance(3 * S);
    let note = t.episodes.last().and_then(|e| e.holder_note.clone());
    let note = note.unwrap_or_default();
    assert!(
        note.contains("before refwatch started, so before watching"),
        "{note}"
    );
    // A hook's put after arming is the watchpoint's to count.
    t.apply(&ev(4 * S, 7, Kind::Put, 2, 1, 5));
    assert!(t.page(7).is_some_and(|p| p.holders.is_empty()));
}

/// An episode that ends otherwise than by a drop names no releaser.
#[test]
fn only_a_drop_names_a_releaser() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(0, 7, Kind::Snapshot, 2, 2, 1));
    t.advance(3 * S);
    assert!(t.page(7).is_some_and(|p| p.stuck()));
    // A read that finds it idle again: no drop seen.
    t.apply(&ev(4 * S, 7, Kind::Snapshot, 1, 1, 1));
    let e = t.episodes.last().expect("episode");
    assert_eq!(e.end_ns, Some(4 * S));
    assert!(e.released_by.is_none());
}

/// The end of a watch (a slot yielded, `w` again) in a recording: from
/// then on the hooks' gets and puts count again, as live.
#[test]
fn the_end_of_a_watch_gives_the_counting_back_to_the_hooks() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    let mut armed = ev(S, 7, Kind::Snapshot, 1, 1, 1);
    armed.hook = hook::WATCHPOINT;
    t.apply(&armed);
    assert_eq!(t.page(7).map(|p| p.watched_since), Some(S));
    let mut ended = ev(2 * S, 7, Kind::Snapshot, 1, 1, 1);
    ended.hook = hook::WATCH_END;
    t.apply(&ended);
    assert_eq!(t.page(7).map(|p| p.watched_since), Some(0));
    // A hook's get after the end names its holder.
    t.apply(&ev(3 * S, 7, Kind::Get, 1, 2, 42));
    let p = t.page(7).expect("tracked");
    assert_eq!(p.holders.iter().map(|h| h.tgid).collect::<Vec<_>>(), [42]);
    // An end without a read (no counts) is no read: the get stays current.
    let mut unread = ev(4 * S, 7, Kind::Snapshot, 0, 0, 1);
    unread.hook = hook::WATCH_END;
    (
        unread.refcount_before,
        unread.refcount_after,
        unread.mapcount,
    ) = (None, None, None);
    t.apply(&unread);
    assert_eq!(t.page(7).and_then(|p| p.refcount), Some(2));
    assert_eq!(t.page(7).map(|p| p.read_ns), Some(2 * S));
}

/// A pin through fast GUP writes 1, then the rest of the bias; the
/// watchpoint sees a get and a pin of 1023 from one thread: one pin of
/// 1024, which its unpin (1024 at once) drops, leaving no holder.
#[test]
fn a_fast_gup_pin_in_two_writes_is_one_pin() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    let mut armed = ev(0, 7, Kind::Snapshot, 1, 1, 1);
    armed.hook = hook::WATCHPOINT;
    t.apply(&armed);
    t.apply(&hit(S, 7, Kind::Get, 1, 2, 42));
    t.apply(&hit(S + 2_000, 7, Kind::Pin, 2, 1025, 42));
    let p = t.page(7).expect("tracked");
    let held: Vec<_> = p
        .holders
        .iter()
        .map(|h| (h.kind, h.refs, h.ts_ns))
        .collect();
    assert_eq!(held, [(Kind::Pin, 1024, S)]);
    t.advance(3 * S);
    assert!(
        t.page(7)
            .is_some_and(|p| p.flags().contains(&Detector::Pinned))
    );
    t.apply(&hit(4 * S, 7, Kind::Unpin, 1025, 1, 42));
    let p = t.page(7).expect("tracked");
    assert!(p.holders.is_empty(), "{:?}", p.holders);
    assert!(!p.stuck());
    // A slow-GUP pin (1024 at once) keeps a get before it.
    t.apply(&hit(5 * S, 7, Kind::Get, 1, 2, 43));
    t.apply(&hit(5 * S + 1_000, 7, Kind::Pin, 2, 1026, 42));
    let p = t.page(7).expect("tracked");
    let held: Vec<_> = p.holders.iter().map(|h| (h.tgid, h.kind, h.refs)).collect();
    assert_eq!(held, [(43, Kind::Get, 1), (42, Kind::Pin, 1024)]);
}

/// `--watch unknown`: the page is flagged first, with no holder, then
/// armed; its open episode then says "before watching", as one opened on
/// a watched page does.
#[test]
fn an_episode_open_when_its_page_is_armed_says_taken_before_watching() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(0, 7, Kind::Snapshot, 2, 2, 1));
    t.advance(3 * S);
    let note = |t: &Tracker| t.episodes.last().and_then(|e| e.holder_note.clone());
    assert!(
        note(&t).is_some_and(|n| !n.contains("watching")),
        "{:?}",
        note(&t)
    );
    let mut armed = ev(4 * S, 7, Kind::Snapshot, 2, 2, 1);
    armed.hook = hook::WATCHPOINT;
    t.apply(&armed);
    let n = note(&t).unwrap_or_default();
    assert!(
        n.contains("before refwatch started, so before watching"),
        "{n}"
    );
    // The watch ends before the release: unknown again.
    let mut ended = ev(5 * S, 7, Kind::Snapshot, 2, 2, 1);
    ended.hook = hook::WATCH_END;
    t.apply(&ended);
    assert!(
        note(&t).is_some_and(|n| !n.contains("watching")),
        "{:?}",
        note(&t)
    );
}
