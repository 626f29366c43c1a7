use std::path::{Path, PathBuf};

use super::*;

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
    use crate::event::{Comm, PageEvent, Stack};
    let ev = PageEvent {
        ts_ns: 1_000_000_000,
        pfn: 0x4000,
        page: 0,
        pid: 7,
        tgid: 7,
        cpu: 0,
        comm: Comm::from("pinner"),
        kind: Kind::Pin,
        hook: 0,
        refcount_before: Some(1),
        refcount_after: Some(1025),
        mapcount: Some(-1),
        pgmap_type: refwatch_common::pgmap::FSDAX,
        nr_pages: 1,
        ret: None,
        aux: 0,
        aux2: 0,
        owner: 0,
        late: false,
        forking: false,
        role: Role::Other,
        stack: Stack::default(),
    };
    // 1-based fs-dax, thresholds of one second.
    let mut input = vec![63, 255, 255, 1 | 4 << 2];
    input.push(Op::Event as u8);
    input.extend(to_bytes(&to_raw(&ev)));
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
    let ev = crate::event::decode(&input[CONFIG + 1..]).expect("one record");
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
