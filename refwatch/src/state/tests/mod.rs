//! Synthetic events (not from a kernel) through the tracker: histories and
//! the fs-dax detectors here; device pages and loss in their own files.

use super::*;

use crate::{
    event::{Stack, StackTaken, Stage},
    symbols::Role,
    symbols::kallsyms::Kallsyms,
};

const S: u64 = 1_000_000_000;

fn rules_6_1() -> Rules {
    Rules::from_kernel(&Kallsyms::parse(
        "ffffffff81000000 T __put_devmap_managed_page_refs\nffffffff81000100 T zone_device_page_init\n",
    ))
}

fn rules_7_2() -> Rules {
    Rules::from_kernel(&Kallsyms::parse(
        "ffffffff81000100 T zone_device_page_init\n",
    ))
}

fn th() -> Thresholds {
    Thresholds {
        held_ns: S,
        pinned_ns: S,
        unmapped_ns: S,
    }
}

/// Synthetic event (not from a kernel).
fn ev(ts: u64, pfn: u64, kind: Kind, before: i32, after: i32, tgid: u32) -> PageEvent {
    PageEvent {
        ts_ns: ts,
        pfn,
        page: 0,
        pid: tgid,
        tgid,
        cpu: 0,
        comm: format!("task{tgid}").into(),
        kind,
        hook: 0,
        refcount_before: Some(before),
        refcount_after: Some(after),
        mapcount: Some(-1),
        pgmap_type: pgmap::FSDAX,
        nr_pages: 1,
        ret: None,
        aux: 0,
        aux2: 0,
        owner: 0,
        late: false,
        forking: false,
        role: crate::symbols::Role::Other,
        stack: vec![0xffff_ffff_8100_0000 + u64::from(tgid)].into(),
        stack_taken: Default::default(),
    }
}

fn mapped(mut e: PageEvent, mapcount: i32) -> PageEvent {
    e.mapcount = Some(mapcount);
    e
}

#[test]
fn history_is_bounded_and_counts_add_up() {
    let mut t = Tracker::new(rules_6_1(), th(), 3, 100);
    for i in 0..10 {
        t.apply(&ev(i, 7, Kind::Get, 1, 2, 1));
        t.apply(&ev(i, 7, Kind::Put, 2, 1, 1));
    }
    let p = t.page(7).expect("tracked");
    assert_eq!(p.history.len(), 3);
    assert_eq!(p.history.last().map(|e| e.kind), Some(Kind::Put));
    assert_eq!(p.counts[Kind::Get.raw() as usize], 10);
    assert_eq!(p.refcount, Some(1));
    assert_eq!(p.state, PageState::Idle);
    assert_eq!(t.events(), 20);
    assert!(t.episodes.is_empty());
    let table = crate::report::summary_table(&t);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("0x7 ")),
        "{table}"
    );
}

/// The compact history gives back every event exactly as applied,
/// including fields that differ from the page's usual ones.
#[test]
fn history_keeps_events_exactly() {
    // 24 of 40 kept: rare events leave with theirs.
    let mut t = Tracker::new(rules_6_1(), th(), 24, 100);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut applied = Vec::new();
    for i in 0..40u64 {
        let mut e = ev(
            1000 + i,
            9,
            Kind::ALL[(i % 8) as usize],
            1,
            2,
            (i % 3) as u32,
        );
        e.page = 0xffff_ea00_0000_0240;
        e.owner = 0xffff_ffff_8200_0000;
        e.aux = 1;
        e.cpu = (next() % 4) as u32;
        e.role = [Role::Other, Role::Map, Role::Unmap][(i % 3) as usize];
        e.hook = (i % 29) as u32 + 1;
        let r = next();
        e.refcount_before = (r & 1 != 0).then_some((r >> 8) as i32 % 2048);
        e.refcount_after = (r & 2 != 0).then_some((r >> 20) as i32 % 2048);
        e.mapcount = (r & 4 != 0).then_some(-1);
        e.ret = (r & 8 != 0).then_some(r as i64);
        e.late = r & 16 != 0;
        e.forking = r & 32 != 0;
        e.stack_taken =
            [StackTaken::Full, StackTaken::Short, StackTaken::No][(r >> 40) as usize % 3];
        match i % 7 {
            1 => e.aux = u64::MAX,
            2 => e.aux2 = 7,
            3 => e.nr_pages = 512,
            4 => e.owner = 0,
            5 => e.hook = 1000,
            6 => e.comm = "a-name-longer-than-sixteen-bytes".into(),
            _ => {}
        }
        if i == 20 {
            e.pgmap_type = 300;
            e.stack = Stack::default();
        }
        // Earlier than the page's first event, far later (kept whole),
        // and at the end of time.
        if i == 33 {
            e.ts_ns = 0;
        }
        if i == 35 {
            e.ts_ns = 1 << 60;
        }
        // 20 minutes after the one before (past what an entry's step holds).
        if i == 30 {
            e.ts_ns = 1000 + 29 + 1_200_000_000_000;
        }
        if i == 37 {
            e.ts_ns = u64::MAX;
        }
        t.apply(&e);
        applied.push(e);
    }
    let p = t.page(9).expect("tracked");
    let kept: Vec<PageEvent> = p.history.iter().collect();
    assert_eq!(kept, applied[applied.len() - 24..]);
    for (i, want) in applied[applied.len() - 24..].iter().enumerate() {
        assert_eq!(p.history.get(i).as_ref(), Some(want), "event {i}");
    }
    assert_eq!(p.history.last().as_ref(), applied.last());
    assert_eq!(p.history.get(24), None);
    // Any bound, whole blocks or not.
    for cap in [1, 2, 3, 5, 8, 9, 17] {
        let mut t = Tracker::new(rules_6_1(), th(), cap, 100);
        let events: Vec<PageEvent> = (0..30)
            .map(|i| ev(i, 4, [Kind::Get, Kind::Put][i as usize % 2], 1, 2, 1))
            .collect();
        for e in &events {
            t.apply(e);
        }
        let p = t.page(4).expect("tracked");
        let kept: Vec<PageEvent> = p.history.iter().collect();
        assert_eq!(kept, events[30 - cap..], "--history {cap}");
        assert_eq!(p.history.len(), cap);
    }
}

/// Events whose fields go to the side queue leave it with their
/// entries, whichever is oldest when: every bound, times far apart and
/// back, large return values and fields unlike the page's.
#[test]
fn history_side_words_leave_with_their_events() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for cap in [1, 2, 3, 7, 8, 9, 16] {
        let mut t = Tracker::new(rules_6_1(), th(), cap, 100);
        let mut applied = Vec::new();
        let mut ts: u64 = 5 * S;
        for i in 0..60u64 {
            let r = next();
            // Steps of nanoseconds to days, some backwards.
            ts = match r % 5 {
                0 => ts.wrapping_add(r >> 20),
                1 => ts.wrapping_sub(r >> 44),
                _ => ts + (r >> 50),
            };
            let mut e = ev(ts, 6, Kind::ALL[(r >> 8) as usize % 8], 1, 2, 3);
            e.ret = (r & 1 != 0).then_some(if r & 2 != 0 { (r >> 3) as i64 } else { -3 });
            e.aux = [1, u64::MAX, 31, 32, r][(r >> 12) as usize % 5];
            e.mapcount = [None, Some(-1), Some(127), Some(128)][(r >> 16) as usize % 4];
            e.refcount_before = [None, Some(1), Some(1 << 20)][(r >> 20) as usize % 3];
            if i % 11 == 3 {
                e.owner = r;
            }
            applied.push(e.clone());
            t.apply(&e);
            let p = t.page(6).expect("tracked");
            let kept = applied.len().min(cap);
            let want = &applied[applied.len() - kept..];
            let got: Vec<PageEvent> = p.history.iter().collect();
            assert_eq!(got, want, "--history {cap}, event {i}");
            assert_eq!(p.history.last().as_ref(), want.last());
            assert_eq!(p.history.get(0).as_ref(), want.first());
        }
    }
}

/// dax-hold on a 1-based kernel: a pipe holds the page past the threshold.
#[test]
fn held_opens_after_threshold_and_names_the_holder() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(10 * S, 1, Kind::Get, 1, 2, 42));
    t.advance(10 * S + S / 2);
    assert!(t.episodes.is_empty(), "not before the threshold");
    t.advance(11 * S + 1);
    assert_eq!(t.episodes.len(), 1);
    let e = &t.episodes[0];
    assert_eq!(e.detector, Detector::Held);
    assert_eq!(e.start_ns, 10 * S);
    assert_eq!(e.end_ns, None);
    assert_eq!(e.holders.len(), 1);
    assert_eq!(e.holders[0].tgid, 42);
    assert!(e.reason.contains("refcount 2, idle 1"), "{}", e.reason);
    assert_eq!(t.stuck().len(), 1);
    t.apply(&ev(14 * S, 1, Kind::Put, 2, 1, 42));
    assert_eq!(t.episodes[0].end_ns, Some(14 * S));
    assert!(t.stuck().is_empty());
    assert_eq!(t.page(1).map(|p| p.state), Some(PageState::Idle));
}

#[test]
fn short_holds_are_not_flagged() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(0, 1, Kind::Get, 1, 2, 1));
    t.apply(&ev(S / 2, 1, Kind::Put, 2, 1, 1));
    t.advance(10 * S);
    assert!(t.episodes.is_empty());
}

#[test]
fn pinned_needs_the_pin_bias() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    t.apply(&mapped(ev(0, 5, Kind::Pin, 1, 1025, 9), 0));
    t.advance(2 * S);
    let names: Vec<_> = t.episodes.iter().map(|e| e.detector).collect();
    assert_eq!(names, vec![Detector::Held, Detector::Pinned]);
    assert_eq!(t.page(5).map(|p| p.state), Some(PageState::Pinned));
    t.apply(&mapped(ev(3 * S, 5, Kind::Unpin, 1025, 1, 9), 0));
    assert!(t.episodes.iter().all(|e| e.end_ns == Some(3 * S)));
}

/// 0-based fs-dax: a mapped page at 1 is fine; unmapped at 1 is a leak.
#[test]
fn unmapped_not_freed_on_zero_based_kernels() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    t.apply(&mapped(ev(0, 3, Kind::Get, 1, 2, 7), 0));
    // After munmap the kernel shows mapcount -1 at the next event.
    t.apply(&mapped(ev(S / 10, 3, Kind::LayoutWait, 1, 1, 8), -1));
    t.advance(3 * S);
    let names: Vec<_> = t.episodes.iter().map(|e| e.detector).collect();
    assert!(names.contains(&Detector::LayoutWait), "{names:?}");
    assert!(names.contains(&Detector::UnmappedNotFreed), "{names:?}");
    assert!(names.contains(&Detector::Held), "{names:?}");
    let lw = t
        .episodes
        .iter()
        .find(|e| e.detector == Detector::LayoutWait)
        .expect("layout-wait");
    assert_eq!(lw.start_ns, S / 10);
    assert_eq!(lw.holders.first().map(|h| h.tgid), Some(7));
    t.apply(&mapped(ev(4 * S, 3, Kind::Put, 1, 0, 7), -1));
    t.apply(&mapped(ev(4 * S, 3, Kind::Free, 0, 0, 7), -1));
    assert!(t.episodes.iter().all(|e| e.end_ns == Some(4 * S)));
    assert_eq!(t.page(3).map(|p| p.state), Some(PageState::Free));
}

#[test]
fn mapped_pages_are_not_held_on_zero_based_kernels() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    t.apply(&mapped(ev(0, 3, Kind::Get, 0, 1, 7), 0));
    t.advance(10 * S);
    assert!(t.episodes.is_empty());
}

#[test]
fn unknown_get_is_said() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    // Only a drop seen, leaving the page at 3: two references of unknown origin.
    t.apply(&ev(0, 1, Kind::Put, 4, 3, 1));
    t.advance(2 * S);
    let e = &t.episodes[0];
    assert!(e.holders.is_empty());
    assert!(
        e.holder_note
            .as_deref()
            .is_some_and(|n| n.contains("no hook"))
    );
    assert_eq!(e.last_events.len(), 1);
}

#[test]
fn pfn_cap_evicts_idle_pages_only() {
    let mut t = Tracker::new(rules_6_1(), th(), 4, 10);
    t.apply(&ev(0, 1000, Kind::Get, 1, 2, 1)); // stays outstanding
    for pfn in 0..50 {
        t.apply(&ev(pfn + 1, pfn, Kind::Put, 2, 1, 1));
    }
    assert!(t.len() <= 10, "{}", t.len());
    assert!(t.evicted() >= 40);
    assert!(t.page(1000).is_some(), "a referenced page is never evicted");
}

mod budget;
mod device;
mod groups;
mod histories;
mod loss;
mod verify;
mod watch;

/// Debian 7.2 in function mode (synthetic events in the kernel's order):
/// the fault's insert hook sees the count with the fault's own transient
/// reference, which `dax_fault_iter` drops inline right after; a page
/// faulted in and left mapped is not held.
#[test]
fn a_dax_fault_leaves_only_its_mapping_reference() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let mut ins = mapped(ev(S, 0x700, Kind::Get, 1, 2, 5), 0);
    ins.hook = hook::MAP_INSERT;
    ins.role = Role::Map;
    t.apply(&ins);
    t.advance(60 * S);
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
    assert_eq!(t.page(0x700).and_then(|p| p.refcount), Some(1));
    // A pipe takes one more: that one is held.
    t.apply(&mapped(ev(61 * S, 0x700, Kind::Get, 1, 2, 5), 0));
    t.advance(70 * S);
    assert_eq!(t.episodes.len(), 1);
    assert_eq!(t.episodes[0].detector, Detector::Held);
}

/// fs-dax on 6.15 and later: a pipe's put of a spliced page is an inline
/// `folio_put` no hook sees. A splice's grab that finds the page at its idle
/// count with the mapping's reference tells that the earlier splices'
/// references are gone: their holders go, the mapping's and its own stay.
#[test]
fn a_grab_at_the_idle_count_drops_holders_whose_puts_were_unseen() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let mut ins = mapped(ev(S, 0x700, Kind::Get, 1, 2, 5), 0);
    ins.hook = hook::MAP_INSERT;
    ins.role = Role::Map;
    t.apply(&ins);
    let grab = |ts: u64, before: i32, tgid: u32| {
        let mut g = mapped(ev(ts, 0x700, Kind::Get, before, before + 1, tgid), 0);
        g.hook = hook::TRY_GRAB_FOLIO_FAST;
        g
    };
    for i in 0..100 {
        t.apply(&grab(2 * S + i, 1, 6));
    }
    let holders = |t: &Tracker| -> Vec<(u32, u64)> {
        let p = t.page(0x700).expect("tracked");
        p.holders.iter().map(|h| (h.tgid, h.ts_ns)).collect()
    };
    assert_eq!(holders(&t), [(5, S), (6, 2 * S + 99)]);
    // The last splice is held past the threshold: it is named, beside the
    // mapping, and none of the 99 before it.
    t.advance(4 * S);
    assert_eq!(t.episodes.len(), 1);
    assert_eq!(t.episodes[0].detector, Detector::Held);
    let named: Vec<(u32, u64)> = t.episodes[0]
        .holders
        .iter()
        .map(|h| (h.tgid, h.ts_ns))
        .collect();
    assert_eq!(named, [(5, S), (6, 2 * S + 99)]);

    // A grab that finds another reference outstanding keeps its holder.
    t.apply(&grab(5 * S, 2, 7));
    assert_eq!(holders(&t), [(5, S), (6, 2 * S + 99), (7, 5 * S)]);
    // A late grab (a count read in the past) prunes nothing either.
    let mut late = grab(6 * S, 1, 8);
    late.late = true;
    t.apply(&late);
    assert_eq!(holders(&t).len(), 4);

    // A grab stamped before a holder taken on another CPU keeps that one,
    // wherever it is in the list, and drops the older ones around it.
    t.apply(&grab(9 * S, 2, 9));
    t.apply(&grab(8 * S, 1, 10));
    assert_eq!(holders(&t), [(5, S), (9, 9 * S), (10, 8 * S)]);
}

/// The pages whose last put must walk its stack (synthetic events): those
/// with an open episode, until it closes.
#[test]
fn open_episode_pfns_are_the_pages_still_stuck() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    // Page 7 held (refcount 2, idle 1); page 8 idle.
    t.apply(&ev(0, 7, Kind::Snapshot, 2, 2, 1));
    t.apply(&ev(0, 8, Kind::Snapshot, 1, 1, 1));
    assert!(t.open_episode_pfns().is_empty());
    t.advance(3 * S);
    assert_eq!(t.open_episode_pfns().into_iter().collect::<Vec<_>>(), [7]);
    // Its release closes the episode: nothing left to walk for.
    t.apply(&ev(4 * S, 7, Kind::Put, 2, 1, 99));
    assert_eq!(t.episodes.len(), 1);
    assert!(t.open_episode_pfns().is_empty());
}
