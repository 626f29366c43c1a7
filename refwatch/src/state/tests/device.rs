//! Device-private pages, migrations, forks and page maps.

use super::*;

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

/// Seen in the lab (hmm-blocked in functions mode on 7.2): the page
/// restored at setup with refcount 2, its LRU batch reference already
/// gone, while a remembered GUP reference still holds it (synthetic copy).
#[test]
fn a_remembered_holder_blocks_whatever_the_count_says() {
    let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
    let mut get = ev(S, 0x100, Kind::Get, 0, 2, 7);
    get.late = true;
    get.pgmap_type = pgmap::SYSTEM;
    get.refcount_before = None;
    t.apply(&get);
    t.apply(&migration(
        2 * S,
        0x100,
        false,
        Stage::Setup,
        2,
        pgmap::SYSTEM,
    ));
    assert_eq!(
        t.page(0x100).expect("page").flags(),
        vec![Detector::MigrationBlocked]
    );
    let e = &t.episodes[0];
    assert!(
        e.reason
            .contains("refcount 2, 1 reference(s) refwatch saw taken and not dropped"),
        "{}",
        e.reason
    );
    assert_eq!(e.holders.len(), 1);
    assert_eq!(e.holders[0].tgid, 7);
    t.apply(&migration(
        3 * S,
        0x100,
        true,
        Stage::Finalize,
        1,
        pgmap::SYSTEM,
    ));
    assert_eq!(t.episodes[0].end_ns, Some(3 * S));
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
