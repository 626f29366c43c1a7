use super::*;

use crate::{
    event::{Role, Stack},
    kallsyms::Kallsyms,
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
        role: crate::event::Role::Other,
        stack: vec![0xffff_ffff_8100_0000 + u64::from(tgid)].into(),
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

/// Synthetic migration event (not from a kernel).
fn migration(ts: u64, pfn: u64, moved: bool, stage: Stage, rc: i32, pgmap_type: u32) -> PageEvent {
    let m = crate::event::Migration {
        stage,
        direction: crate::event::Direction::ToDevice,
        moved,
        dst_pfn: moved.then_some(0x10_0000 + pfn),
        extra_count: (stage == Stage::Copy).then_some(0),
    };
    let (aux, aux2) = m.to_aux();
    let mut e = ev(ts, pfn, Kind::Migrate, rc, rc, 1);
    e.comm = "migrator".into();
    e.pgmap_type = pgmap_type;
    e.aux = aux;
    e.aux2 = aux2;
    e
}

#[test]
fn migration_blocked_names_the_remembered_holder_and_clears_on_success() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    // A remembered GUP reference on a system page (synthetic).
    let mut get = ev(S, 0x100, Kind::Get, 0, 2, 7);
    get.late = true;
    get.pgmap_type = pgmap::SYSTEM;
    get.refcount_before = None;
    t.apply(&get);
    // Restored at setup: refcount 3 unmapped (the migration's own, the
    // LRU batch's, and one too many).
    t.apply(&migration(
        2 * S,
        0x100,
        false,
        Stage::Setup,
        3,
        pgmap::SYSTEM,
    ));
    let p = t.page(0x100).expect("page");
    assert_eq!(p.flags(), vec![Detector::MigrationBlocked]);
    let e = &t.episodes[0];
    assert!(e.reason.contains("1 extra reference"), "{}", e.reason);
    assert_eq!(e.holders.len(), 1);
    assert_eq!(e.holders[0].tgid, 7);
    // No time-based detector ever runs on a system page.
    t.advance(100 * S);
    assert_eq!(t.episodes.len(), 1);
    // The retry moves it.
    t.apply(&migration(
        101 * S,
        0x100,
        true,
        Stage::Finalize,
        1,
        pgmap::SYSTEM,
    ));
    assert!(!t.page(0x100).expect("page").stuck());
    assert!(t.page(0x100).expect("page").holders.is_empty());
    assert_eq!(t.episodes[0].end_ns, Some(101 * S));
}

#[test]
fn a_failure_without_extra_references_is_not_blocking() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    t.apply(&migration(
        S,
        0x200,
        false,
        Stage::Finalize,
        2,
        pgmap::SYSTEM,
    ));
    assert!(t.episodes.is_empty());
    // Copy-stage refusals are reference problems by definition.
    t.apply(&migration(
        2 * S,
        0x201,
        false,
        Stage::Copy,
        3,
        pgmap::PRIVATE,
    ));
    assert_eq!(t.episodes.len(), 1);
    assert!(t.episodes[0].reason.contains("-EAGAIN"));
    let e = &t.episodes[0];
    assert_eq!(e.detector, Detector::MigrationBlocked);
}

#[test]
fn a_moved_page_joins_the_destination_history_and_keeps_its_refcount() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let mut init = ev(S, 0x10_0300, Kind::Get, 0, 1, 1);
    init.pgmap_type = pgmap::PRIVATE;
    t.apply(&init);
    t.apply(&migration(
        2 * S,
        0x300,
        true,
        Stage::Finalize,
        2,
        pgmap::SYSTEM,
    ));
    let d = t.page(0x10_0300).expect("destination");
    assert_eq!(d.history.len(), 2);
    assert_eq!(d.history.get(1).map(|e| e.kind), Some(Kind::Migrate));
    // The migration's transient reference is not the page's refcount.
    assert_eq!(t.page(0x300).expect("source").refcount, None);
}

#[test]
fn a_zap_drops_the_mapping_reference_not_the_pipe_one() {
    // The fs-dax sequence seen in precise mode on 7.2 (synthetic copy):
    // fault +1, map +1, fault -1, vmsplice +1, munmap -1.
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let with = |mut e: PageEvent, role: Role| {
        e.role = role;
        e
    };
    t.apply(&ev(S, 0x600, Kind::Get, 0, 1, 5));
    t.apply(&with(ev(S + 1, 0x600, Kind::Get, 1, 2, 5), Role::Map));
    // Mapped now: nothing beyond the mapping's reference.
    t.apply(&mapped(ev(S + 2, 0x600, Kind::Put, 2, 1, 5), 0));
    assert_eq!(t.page(0x600).expect("page").holders.len(), 1);
    t.apply(&mapped(ev(S + 3, 0x600, Kind::Get, 1, 2, 5), 0));
    t.apply(&with(ev(S + 4, 0x600, Kind::Put, 2, 1, 5), Role::Unmap));
    let h = &t.page(0x600).expect("page").holders;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!((h[0].ts_ns, h[0].role), (S + 3, Role::Other));
}

/// A device-private page's life on 7.2 in precise mode (synthetic events
/// in the kernel's order, see docs/refcount-rules.md): the driver's
/// allocation reference, one reference per mapping installed by the
/// migration (taken before the mapping is counted), the allocation
/// reference dropped by `migrate_vma_finalize`.
fn migrated_to_device(t: &mut Tracker, dev: u64, ram: u64, tgid: u32) {
    let private = |mut e: PageEvent, mapcount: i32, role: Role| {
        e.pgmap_type = pgmap::PRIVATE;
        e.mapcount = Some(mapcount);
        e.role = role;
        e
    };
    let mut set = private(ev(S, dev, Kind::Set, 0, 1, tgid), -1, Role::Other);
    set.refcount_before = None;
    set.hook = hook::PAGE_REF_SET;
    t.apply(&set);
    t.apply(&private(
        ev(S + 1, dev, Kind::Get, 1, 2, tgid),
        -1,
        Role::Map,
    ));
    let mut m = migration(S + 2, ram, true, Stage::Finalize, 1, pgmap::SYSTEM);
    m.tgid = tgid;
    m.pid = tgid;
    t.apply(&m);
    assert_eq!(m.migration().and_then(|m| m.dst_pfn), Some(dev));
    t.apply(&private(
        ev(S + 3, dev, Kind::Put, 2, 1, tgid),
        0,
        Role::Other,
    ));
}

fn private_ev(
    ts: u64,
    pfn: u64,
    kind: Kind,
    rc: (i32, i32),
    tgid: u32,
    mapcount: i32,
    role: Role,
) -> PageEvent {
    let mut e = ev(ts, pfn, kind, rc.0, rc.1, tgid);
    e.pgmap_type = pgmap::PRIVATE;
    e.mapcount = Some(mapcount);
    e.role = role;
    e
}

#[test]
fn device_pages_resident_on_the_device_are_not_stuck() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let dev = 0x10_0100;
    migrated_to_device(&mut t, dev, 0x100, 10);
    // Minutes on the device, mapped by the process that migrated it.
    t.advance(600 * S);
    let p = t.page(dev).expect("page");
    assert_eq!((p.refcount, p.outstanding), (Some(1), 0));
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
    // The process unmaps it: the page goes back to the driver.
    t.apply(&private_ev(
        601 * S,
        dev,
        Kind::Put,
        (1, 0),
        10,
        -1,
        Role::Unmap,
    ));
    let mut free = private_ev(601 * S + 1, dev, Kind::Free, (0, 0), 10, -1, Role::Other);
    free.refcount_before = None;
    t.apply(&free);
    t.advance(700 * S);
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
    assert_eq!(t.page(dev).expect("page").migrated_by, None);
}

#[test]
fn a_page_migrated_back_to_ram_is_not_kept_by_anyone() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let dev = 0x10_0200;
    migrated_to_device(&mut t, dev, 0x200, 10);
    // A CPU fault migrates it back: collected (the migration's own
    // reference), unmapped by try_to_migrate_one, freed.
    t.apply(&private_ev(
        5 * S,
        dev,
        Kind::Get,
        (1, 2),
        10,
        0,
        Role::Other,
    ));
    t.apply(&private_ev(
        5 * S + 1,
        dev,
        Kind::Put,
        (2, 1),
        10,
        -1,
        Role::Unmap,
    ));
    t.advance(5 * S + 2);
    assert_eq!(t.page(dev).expect("page").kept_since, None);
    t.apply(&private_ev(
        5 * S + 3,
        dev,
        Kind::Put,
        (1, 0),
        10,
        -1,
        Role::Other,
    ));
    t.advance(100 * S);
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
}

#[test]
fn a_forked_child_keeping_device_memory_is_named() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let dev = 0x10_0400;
    migrated_to_device(&mut t, dev, 0x400, 10);
    // fork copies the device entry: a reference taken before the child's
    // mapping is counted.
    let mut get = private_ev(2 * S, dev, Kind::Get, (1, 2), 10, 0, Role::Map);
    get.forking = true;
    t.apply(&get);
    let mut fork = ev(2 * S + 1, 0, Kind::Fork, 0, 0, 10);
    fork.ret = Some(11);
    t.apply(&fork);
    // Both processes map it, for as long as they like.
    t.advance(60 * S);
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
    // The parent unmaps: its own entry's reference goes; the child's keeps
    // the page.
    t.apply(&private_ev(
        61 * S,
        dev,
        Kind::Put,
        (2, 1),
        10,
        0,
        Role::Unmap,
    ));
    t.advance(61 * S + S / 2);
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
    t.advance(63 * S);
    let p = t.page(dev).expect("page");
    assert_eq!(p.flags(), vec![Detector::KeptByChild]);
    let h = &p.holders;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!((h[0].tgid, h[0].forked_from), (11, Some((10, 10))));
    let e = &t.episodes[0];
    assert_eq!((e.detector, e.start_ns), (Detector::KeptByChild, 61 * S));
    assert!(e.reason.contains("forked from pid 10"), "{}", e.reason);
    assert!(e.holders.iter().any(|h| h.tgid == 11), "{:?}", e.holders);
    // The child exits: its entry's reference goes, the page is freed.
    t.apply(&private_ev(
        70 * S,
        dev,
        Kind::Put,
        (1, 0),
        11,
        -1,
        Role::Unmap,
    ));
    assert!(!t.page(dev).expect("page").stuck());
    assert_eq!(t.episodes[0].end_ns, Some(70 * S));
    assert_eq!(t.episodes.len(), 1);
}

#[test]
fn an_unmapped_device_page_still_referenced_is_flagged() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let dev = 0x10_0500;
    migrated_to_device(&mut t, dev, 0x500, 10);
    // A driver keeps a reference of its own, then the process unmaps.
    t.apply(&private_ev(
        2 * S,
        dev,
        Kind::Get,
        (1, 2),
        10,
        0,
        Role::Other,
    ));
    t.apply(&private_ev(
        3 * S,
        dev,
        Kind::Put,
        (2, 1),
        10,
        -1,
        Role::Unmap,
    ));
    t.advance(10 * S);
    let flags = t.page(dev).expect("page").flags();
    assert!(flags.contains(&Detector::UnmappedNotFreed), "{flags:?}");
    assert!(!flags.contains(&Detector::KeptByChild), "{flags:?}");
}

#[test]
fn pages_still_referenced_when_their_map_goes_are_orphaned() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let mut get = ev(S, 0x505, Kind::Get, 0, 1, 3);
    get.pgmap_type = pgmap::PRIVATE;
    t.apply(&get);
    let mut idle = ev(S, 0x506, Kind::Put, 1, 0, 3);
    idle.pgmap_type = pgmap::PRIVATE;
    t.apply(&idle);
    let mut down = ev(2 * S, 0x500, Kind::PgmapRemove, 0, 0, 4);
    down.nr_pages = 16;
    down.pgmap_type = pgmap::PRIVATE;
    t.apply(&down);
    assert_eq!(t.pgmaps.len(), 1);
    assert_eq!(
        t.page(0x505).expect("page").flags(),
        vec![Detector::Orphaned]
    );
    assert!(!t.page(0x506).expect("page").stuck());
    assert!(t.page(0x500).is_none(), "a page map event is not a page");
    let mut put = ev(3 * S, 0x505, Kind::Put, 1, 0, 3);
    put.pgmap_type = pgmap::PRIVATE;
    t.apply(&put);
    assert!(!t.page(0x505).expect("page").stuck());
}

// Loss (synthetic events and losses, not from a kernel).

#[test]
fn a_lost_final_put_leaves_the_page_unknown_not_held() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(S, 0x600, Kind::Get, 1, 2, 5));
    // The put that released it was lost.
    t.apply_gap(0x600, S + S / 2);
    t.advance(100 * S);
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
    let p = t.page(0x600).expect("page");
    assert!(p.unknown() && !p.stuck());
    assert_eq!(t.unknown_pages(), vec![(0x600, p.gaps)]);
    assert_eq!((p.gaps.gaps, t.gaps_total()), (1, 1));
}

#[test]
fn a_loss_ends_the_open_episodes_of_its_page() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(S, 0x601, Kind::Get, 1, 2, 5));
    t.advance(3 * S);
    assert_eq!(t.episodes.len(), 1);
    t.apply_gap(0x601, 4 * S);
    let e = &t.episodes[0];
    assert_eq!((e.end_ns, e.ended_by_loss), (Some(4 * S), true));
    assert!(t.stuck().is_empty());
    t.advance(50 * S);
    assert_eq!(t.episodes.len(), 1);
}

#[test]
fn an_event_after_the_loss_tells_the_state_again() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(S, 0x602, Kind::Get, 1, 2, 5));
    t.apply_gap(0x602, 2 * S);
    // Stamped within the slack: may have read the page before the loss.
    t.apply(&ev(2 * S + GAP_SLACK_NS / 2, 0x602, Kind::Get, 2, 3, 5));
    assert!(t.page(0x602).expect("page").unknown());
    t.apply(&ev(3 * S, 0x602, Kind::Get, 3, 4, 5));
    assert!(!t.page(0x602).expect("page").unknown());
    t.advance(10 * S);
    let e = t.episodes.iter().find(|e| e.detector == Detector::Held);
    let e = e.expect("held once the state is known");
    // Its holder list may miss the lost reference, and says so.
    assert!(
        e.holder_note.as_deref().is_some_and(|n| n.contains("loss")),
        "{:?}",
        e.holder_note
    );
    // A loss long before the last event leaves the state known.
    t.apply_gap(0x602, S);
    let p = t.page(0x602).expect("page");
    assert!(!p.unknown() && p.stuck());
    assert_eq!(p.gaps.gaps, 2);
}

#[test]
fn a_page_whose_only_events_were_lost_is_unknown() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply_gap(0x700, S);
    assert!(t.page(0x700).is_none());
    assert_eq!(t.unknown_pages().len(), 1);
    assert_eq!(t.gapped_pages()[0].0, 0x700);
    // Its next event tracks it, with its gap, and tells its state.
    t.apply(&ev(2 * S, 0x700, Kind::Put, 2, 1, 5));
    let p = t.page(0x700).expect("page");
    assert_eq!((p.gaps.gaps, p.unknown()), (1, false));
    assert!(t.unknown_pages().is_empty());
}

#[test]
fn an_unattributed_loss_marks_every_page() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
    t.apply(&ev(S, 0x800, Kind::Get, 1, 2, 5));
    t.apply(&ev(S, 0x801, Kind::Get, 1, 2, 5));
    t.apply_gap_everywhere(S + 1);
    assert_eq!(t.unknown_pages().len(), 2);
    assert_eq!(t.unattributed(), 1);
    t.advance(100 * S);
    assert!(t.episodes.is_empty());
}

/// Function mode on 7.2 (synthetic events in the kernel's order): the
/// allocation's get is seen, the entry's get and the finalize's put are
/// inline and not; the migration's own event says the page moved in.
#[test]
fn function_mode_sees_a_resident_device_page_as_mapped() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let dev = 0x10_0300;
    t.apply(&private_ev(S, dev, Kind::Get, (0, 1), 10, -1, Role::Other));
    let mut m = migration(S + 2, 0x300, true, Stage::Finalize, 1, pgmap::SYSTEM);
    (m.tgid, m.pid) = (10, 10);
    t.apply(&m);
    t.advance(100 * S);
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
    let p = t.page(dev).expect("page");
    assert_eq!(p.outstanding, 0);
    assert_eq!((p.holders[0].role, p.holders[0].tgid), (Role::Map, 10));
    // The last mapping goes: its put is the free hook's last put.
    t.apply(&private_ev(
        101 * S,
        dev,
        Kind::Put,
        (1, 0),
        10,
        -1,
        Role::Other,
    ));
    t.advance(200 * S);
    assert!(t.episodes.is_empty(), "{:?}", t.episodes);
}

// Bounds (synthetic events).

#[test]
fn the_pfn_cap_holds_when_every_page_is_referenced() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 10);
    for pfn in 0..10 {
        t.apply(&ev(S, pfn, Kind::Get, 1, 2, 1));
    }
    t.apply(&ev(2 * S, 0x99, Kind::Get, 1, 2, 1));
    assert_eq!((t.len(), t.over_cap()), (10, 1));
    assert!(t.page(0x99).is_none());
    // A tracked page still takes its events.
    t.apply(&ev(3 * S, 3, Kind::Put, 2, 1, 1));
    assert_eq!(t.page(3).and_then(|p| p.refcount), Some(1));
}

#[test]
fn old_closed_episodes_go_first_and_open_ones_stay_reachable() {
    let mut t = Tracker::new(rules_6_1(), th(), 16, 1000);
    t.set_max_episodes(8);
    // One page stuck for good, opened first.
    t.apply(&ev(S, 0x1, Kind::Get, 1, 2, 1));
    t.advance(3 * S);
    // Then 20 pages held and released, one after another.
    for i in 0..20u64 {
        let at = 10 * S + i * 5 * S;
        t.apply(&ev(at, 0x100 + i, Kind::Get, 1, 2, 1));
        t.advance(at + 2 * S);
        t.apply(&ev(at + 3 * S, 0x100 + i, Kind::Put, 2, 1, 1));
    }
    assert!(t.episodes.len() <= 8, "{}", t.episodes.len());
    assert_eq!(t.episodes_dropped() as usize + t.episodes.len(), 21);
    // The open episode survived and its page still finds it.
    let p = t.page(0x1).expect("page");
    let idx = p.open[&Detector::Held];
    assert_eq!((t.episodes[idx].pfn, t.episodes[idx].end_ns), (0x1, None));
    // The newest closed ones are kept.
    assert!(t.episodes.iter().any(|e| e.pfn == 0x100 + 19));
    assert!(!t.episodes.iter().any(|e| e.pfn == 0x100));
    // It still closes when released.
    t.apply(&ev(500 * S, 0x1, Kind::Put, 2, 1, 1));
    assert_eq!(t.episodes[idx].end_ns, Some(500 * S));
}
