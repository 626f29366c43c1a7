use std::path::{Path, PathBuf};

use super::*;
use crate::event::{Comm, Direction, Migration, PageEvent, Stack, Stage};
use refwatch_common::pgmap;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The recordings in `tests/data` (real, from the lab, and synthetic).
fn recordings() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(data_dir())
        .expect("tests/data")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rec"))
        .map(|p| {
            let name = p.file_stem().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read recording"))
        })
        .collect();
    v.sort();
    assert!(v.len() >= 2, "recordings in {}", data_dir().display());
    v
}

/// Where the ring target's seeds are kept, outside the crate.
fn ring_seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/ring")
}

#[test]
fn recording_target_reports_the_recordings_as_refwatch_report_does() {
    for (name, bytes) in recordings() {
        let rec = recording::parse(&bytes[..], &name).expect("parse");
        let want = report::build(&rec, None, false).expect("report");
        let got = recording(&bytes).unwrap_or_else(|| panic!("{name}: no report"));
        assert_eq!(got, want, "{name}");
        // Each holds a page kept past the threshold.
        assert!(!got.episodes.is_empty(), "{name}: no episode");
    }
}

#[test]
fn recording_target_refuses_what_is_not_a_recording() {
    assert!(recording(b"").is_none());
    assert!(recording(b"\x00\xff{").is_none());
    assert!(recording(br#"{"type":"tick","now_ns":1,"dropped":0}"#).is_none());
}

/// The recordings' events as ring records, with their ticks: the tracker
/// finds the stuck pages and episodes the report of the recording lists.
#[test]
fn ring_seeds_find_what_the_report_finds() {
    for (name, bytes) in recordings() {
        let rec = recording::parse(&bytes[..], &name).expect("parse");
        let report = report::build(&rec, None, false).expect("report");
        let seed = ring_seed(&rec);
        assert_eq!((seed.len() - CONFIG) % STEP, 0, "{name}: whole steps");
        let t = ring(&seed);
        assert_eq!(t.events(), report.events, "{name}: events");
        let stuck: Vec<u64> = t.stuck().iter().map(|p| p.pfn).collect();
        assert_eq!(stuck, report.stuck_at_end, "{name}: stuck at the end");
        let episodes = |v: Vec<(u64, String, u64)>| {
            let mut v = v;
            v.sort();
            v
        };
        assert_eq!(
            episodes(
                t.episodes
                    .iter()
                    .map(|e| (e.pfn, e.detector.name().to_string(), e.start_ns))
                    .collect()
            ),
            episodes(
                report
                    .episodes
                    .iter()
                    .map(|e| (e.pfn, e.detector.clone(), e.start_ns))
                    .collect()
            ),
            "{name}: episodes"
        );
        // Holders carry the made-up stacks the records had.
        let named = report.episodes.iter().any(|e| !e.holders.is_empty());
        assert_eq!(
            t.episodes
                .iter()
                .flat_map(|e| &e.holders)
                .any(|h| !h.stack.is_empty()),
            named,
            "{name}: holders with a stack"
        );
    }
}

/// The seeds `cargo xtask fuzz` starts the ring target from are those
/// [`ring_seed`] makes of the recordings now. `REFWATCH_WRITE_SEEDS=1`
/// writes them anew (after a change of the record or the seed format).
#[test]
fn kept_ring_seeds_are_current() {
    let write = std::env::var_os("REFWATCH_WRITE_SEEDS").is_some_and(|v| v == "1");
    for (name, bytes) in recordings() {
        let rec = recording::parse(&bytes[..], &name).expect("parse");
        let seed = ring_seed(&rec);
        let path = ring_seeds_dir().join(format!("{name}.bin"));
        if write {
            std::fs::create_dir_all(ring_seeds_dir()).expect("seeds dir");
            std::fs::write(&path, &seed).expect("write seed");
        }
        let kept = std::fs::read(&path).unwrap_or_default();
        assert!(
            kept == seed,
            "{} is not the seed of {name}.rec: run `REFWATCH_WRITE_SEEDS=1 cargo test -p refwatch --lib fuzzing::` to write it",
            path.display()
        );
    }
}

#[test]
fn ring_target_takes_short_and_empty_inputs() {
    assert_eq!(ring(&[]).events(), 0);
    assert_eq!(ring(&[1, 2]).events(), 0);
    // A config, then a record cut short: not decoded.
    assert_eq!(ring(&[0, 0, 0, 0, 0, 1, 0, 0]).events(), 0);
}

/// Synthetic: one pinned page and a tick past the threshold: the ring
/// path opens the pinned episode, and a loss on the page ends it.
#[test]
fn ring_ticks_and_losses_reach_the_detectors() {
    let pin = synthetic(Kind::Pin, 0x4000, (1, 1025), -1, pgmap::FSDAX);
    // 1-based fs-dax, thresholds of one second.
    let mut input = ring_input([63, 255, 255, 1 | 4 << 2], &[pin]);
    let tick = |ts_ns: u64, pfn: u64| {
        let mut raw = Event::zeroed();
        raw.ts_ns = ts_ns;
        raw.pfn = pfn;
        to_bytes(&raw)
    };
    input.push(Op::Tick as u8);
    input.extend(tick(2_500_000_000, 0));
    let t = ring(&input);
    assert_eq!(t.stuck().len(), 1);
    assert!(t.episodes.iter().any(|e| e.detector.name() == "pinned"));
    input.push(Op::Gap as u8);
    input.extend(tick(2_600_000_000, 0x4000));
    let t = ring(&input);
    assert!(t.stuck().is_empty());
    assert_eq!(t.unknown_pages().len(), 1);
    assert!(t.episodes.iter().all(|e| e.ended_by_loss));
}

/// Inputs that crashed a fuzz target once (`tests/data/fuzz/<target>/`,
/// also seeds of `cargo xtask fuzz`): each runs through again.
fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = data_dir().join("fuzz").join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.expect("entry").path())
                .map(|p| {
                    let name = p.file_name().expect("name").to_string_lossy().into_owned();
                    (name, std::fs::read(&p).expect("read input"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn past_crashes_of_the_ring_target_run_through() {
    let inputs = regressions("ring");
    assert!(!inputs.is_empty());
    for (_, input) in inputs {
        ring(&input);
    }
}

#[test]
fn past_crashes_of_the_recording_target_run_through() {
    for (_, input) in regressions("recording") {
        recording(&input);
    }
}

fn regression(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join("fuzz").join(target).join(name)).expect("regression input")
}

/// A get whose count goes from below zero to near `i32::MAX`: the holder's
/// references were `after - before`, which overflowed.
#[test]
fn ring_holder_refs_overflow() {
    let input = regression("ring", "holder-refs-overflow");
    let ev = crate::event::decode(&input[CONFIG + 1..])
        .expect("one record")
        .event;
    let (before, after) = (
        ev.refcount_before.expect("before"),
        ev.refcount_after.expect("after"),
    );
    assert!(before < 0 && after > 0 && after.checked_sub(before).is_none());
    let t = ring(&input);
    let page = t.page(ev.pfn).expect("tracked");
    assert_eq!(
        page.holders.iter().map(|h| h.refs).collect::<Vec<_>>(),
        [i32::MAX]
    );
}

/// A SYNTHETIC event for the ring target.
fn synthetic(kind: Kind, pfn: u64, rc: (i32, i32), mapcount: i32, pgmap_type: u32) -> PageEvent {
    PageEvent {
        ts_ns: 1_000_000_000,
        pfn,
        page: 0,
        pid: 7,
        tgid: 7,
        cpu: 0,
        comm: Comm::from("synthetic"),
        kind,
        hook: 0,
        refcount_before: Some(rc.0),
        refcount_after: Some(rc.1),
        mapcount: Some(mapcount),
        pgmap_type,
        nr_pages: 1,
        ret: None,
        aux: 0,
        aux2: 0,
        owner: 0,
        late: false,
        forking: false,
        role: Role::Other,
        stack: Stack::default(),
        stack_taken: Default::default(),
    }
}

/// A ring input: `config`, then each event as an event step.
fn ring_input(config: [u8; CONFIG], events: &[PageEvent]) -> Vec<u8> {
    let mut input = config.to_vec();
    for ev in events {
        input.push(Op::Event as u8);
        input.extend(to_bytes(&to_raw(ev)));
    }
    input
}

/// A migration that left a page behind with counts at the ends of `i32`:
/// the expected count (one per mapping, plus the migration's own) and the
/// extra references were `i32` sums, which overflowed.
#[test]
fn ring_migration_with_extreme_counts() {
    let (aux, aux2) = Migration {
        stage: Stage::Finalize,
        direction: Direction::ToDevice,
        moved: false,
        dst_pfn: None,
        extra_count: None,
    }
    .to_aux();
    let left_behind = |rc: i32, mapcount: i32| {
        let mut ev = synthetic(Kind::Migrate, 0x1000, (rc, rc), mapcount, pgmap::SYSTEM);
        (ev.aux, ev.aux2) = (aux, aux2);
        ring(&ring_input([63, 255, 255, 0], &[ev]))
    };
    for (rc, mapcount) in [(1, i32::MAX), (i32::MIN, 0), (i32::MIN, i32::MAX)] {
        let t = left_behind(rc, mapcount);
        assert!(t.episodes.is_empty(), "{rc} {mapcount}: {:?}", t.episodes);
    }
    // Mapped 1001 times: the migration expected 2 + 1001.
    let t = left_behind(i32::MAX, 1000);
    let reasons: Vec<&str> = t.episodes.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("expected 1003 (2 of its own + 1001 mapping(s)): 2147482644 extra"),
        "{reasons:?}"
    );
}

/// A page map whose range runs to the top of the PFN space going away:
/// its end was `first + pages`, which overflowed.
#[test]
fn ring_page_map_at_the_top_of_the_pfn_space() {
    let held = synthetic(Kind::Get, u64::MAX, (1, 5), -1, pgmap::FSDAX);
    let mut remove = synthetic(Kind::PgmapRemove, u64::MAX - 1, (0, 0), -1, pgmap::FSDAX);
    remove.nr_pages = 512;
    // Thresholds of 5 s: only the page map's going flags the page.
    let t = ring(&ring_input([63, 255, 255, 20 << 2], &[held, remove]));
    let orphaned: Vec<(u64, &str)> = t
        .episodes
        .iter()
        .map(|e| (e.pfn, e.detector.name()))
        .collect();
    assert_eq!(orphaned, [(u64::MAX, "orphaned")]);
    assert!(
        t.episodes[0]
            .reason
            .contains("PFNs 0xfffffffffffffffe..0xffffffffffffffff"),
        "{}",
        t.episodes[0].reason
    );
}

/// A recorded migration to the last PFN: the ring's form of its
/// destination (PFN + 1, 0 for none) was `dst_pfn + 1`, which overflowed.
#[test]
fn recording_migration_to_the_last_pfn() {
    let input = regression("recording", "migration-to-the-last-pfn.rec");
    let rec = recording::parse(&input[..], "regression").expect("a recording");
    let dst = rec.events().find_map(|e| e.migration?.dst_pfn);
    assert_eq!(dst, Some(u64::MAX));
    let r = recording(&input).expect("a report");
    assert_eq!((r.events, r.pages), (1, 1));
}

/// Found by the ring target: an episode opened when every kept episode was
/// open is not kept (the cap is hard) yet its page is flagged; the views
/// take the page's mark for an unkept episode, not a missing one.
#[test]
fn ring_unkept_open_episode() {
    let t = ring(&regression("ring", "unkept-open-episode"));
    assert!(t.episodes_unkept() > 0);
    let unkept: Vec<u64> = t
        .pages_sorted()
        .into_iter()
        .filter(|p| p.open.values().any(|i| *i == crate::state::UNKEPT))
        .map(|p| p.pfn)
        .collect();
    assert!(!unkept.is_empty());
    let stuck: Vec<u64> = t.stuck().iter().map(|p| p.pfn).collect();
    assert!(
        unkept.iter().all(|p| stuck.contains(p)),
        "{unkept:x?} {stuck:x?}"
    );
}
