//! Rotation at a size, on real files, and what a report of a later file
//! finds thanks to the state carried over (synthetic events, not from a
//! kernel).

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use super::*;
use crate::{
    event::{Kind, PageEvent},
    format::json::Format,
    report,
    state::Tracker,
    symbols::Role,
    symbols::Symbolizer,
    symbols::kallsyms::Kallsyms,
};
use refwatch_common::pgmap;

const S: u64 = 1_000_000_000;

fn rules() -> Rules {
    Rules::from_kernel(&Kallsyms::parse(
        "ffffffff81000000 T zone_device_page_init\n",
    ))
}

fn header(started_ns: u64) -> Header {
    Header {
        format: FORMAT.into(),
        version: VERSION,
        kernel: "test".into(),
        started_ns,
        rules: rules(),
        thresholds: Thresholds::default(),
        precise: false,
        hooks: vec![],
        filter: None,
    }
}

/// A synthetic event of device-private page `pfn`.
fn ev(ts_ns: u64, pfn: u64, kind: Kind, before: i32, after: i32) -> PageEvent {
    PageEvent {
        ts_ns,
        pfn,
        page: 0,
        pid: 7,
        tgid: 7,
        cpu: 0,
        comm: "holder".into(),
        kind,
        hook: 0,
        refcount_before: Some(before),
        refcount_after: Some(after),
        mapcount: Some(-1),
        pgmap_type: pgmap::PRIVATE,
        nr_pages: 1,
        ret: None,
        aux: 0,
        aux2: 0,
        owner: 0,
        late: false,
        forking: false,
        role: Role::Other,
        stack: Default::default(),
        stack_taken: Default::default(),
    }
}

fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn rotation_keeps_n_whole_files_of_bounded_size() {
    let d = tempfile::tempdir().expect("dir");
    let p = d.path().join("run.rec");
    // An old recording of the user's, private: its mode carries on.
    fs::write(&p, "old").expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
    let limit = Limit {
        max_bytes: 2048,
        keep: 2,
    };
    let mut w = Writer::create_rotating(&p, header(S), limit).expect("create");
    let mut ticks = 0u64;
    while w.rotations() < 5 {
        ticks += 1;
        w.line(&Line::Tick {
            now_ns: S + ticks,
            dropped: 0,
            capped: 0,
        })
        .expect("tick");
        assert!(w.bytes() < limit.max_bytes + 200, "{}", w.bytes());
        if w.full() {
            let end = Line::End {
                now_ns: S + ticks,
                events: 0,
                dropped: 0,
                capped: 0,
            };
            w.rotate(&end, header(S + ticks), &[]).expect("rotate");
        }
    }
    w.finish().expect("finish");
    assert_eq!(names(d.path()), vec!["run.rec", "run.rec.1", "run.rec.2"]);
    let mut last_start = u64::MAX;
    for name in ["run.rec.2", "run.rec.1", "run.rec"] {
        let f = d.path().join(name);
        assert!(fs::metadata(&f).expect("meta").len() <= limit.max_bytes + 200);
        assert_eq!(
            fs::metadata(&f).expect("meta").mode() & 0o777,
            0o600,
            "{name}"
        );
        let rec = read(&f).expect("a whole recording");
        // Each finished file has its end line; newer files start later.
        assert_eq!(rec.complete, name != "run.rec", "{name}");
        assert!(last_start == u64::MAX || rec.header.started_ns > last_start);
        last_start = rec.header.started_ns;
    }
}

#[test]
fn a_planted_symlink_at_a_rotated_name_is_replaced_not_followed() {
    let d = tempfile::tempdir().expect("dir");
    let p = d.path().join("run.rec");
    let victim = d.path().join("victim");
    fs::write(&victim, "root's").expect("write");
    std::os::unix::fs::symlink(&victim, d.path().join("run.rec.1")).expect("symlink");
    std::os::unix::fs::symlink(&victim, d.path().join("run.rec.2")).expect("symlink");
    let limit = Limit {
        max_bytes: 1024,
        keep: 2,
    };
    let mut w = Writer::create_rotating(&p, header(S), limit).expect("create");
    for i in 0..200 {
        w.line(&Line::Tick {
            now_ns: S + i,
            dropped: 0,
            capped: 0,
        })
        .expect("tick");
        if w.full() {
            let end = Line::End {
                now_ns: S + i,
                events: 0,
                dropped: 0,
                capped: 0,
            };
            w.rotate(&end, header(S + i), &[]).expect("rotate");
        }
    }
    assert!(w.rotations() >= 2);
    assert_eq!(fs::read_to_string(&victim).expect("read"), "root's");
    for name in ["run.rec.1", "run.rec.2"] {
        let m = fs::symlink_metadata(d.path().join(name)).expect("meta");
        assert!(m.is_file(), "{name} is a recording now");
    }
}

#[test]
fn a_stuck_page_with_no_event_after_a_rotation_is_still_stuck_in_the_new_file() {
    let syms = Kallsyms::parse("");
    let mut t = Tracker::new(rules(), Thresholds::default(), 16, 100);
    // Page 0x40: a reference taken at 1 s and never dropped. Page 0x41:
    // taken and dropped. Page 0x42: its events were lost at 2 s.
    t.apply(&ev(S, 0x40, Kind::Get, 0, 1));
    t.apply(&ev(S, 0x41, Kind::Get, 0, 1));
    t.apply(&ev(S + 1, 0x41, Kind::Put, 1, 0));
    t.apply(&ev(S, 0x42, Kind::Get, 0, 1));
    t.apply_gap(0x42, 2 * S);
    let mut cache = Symbolizer::new(&syms, 16);
    let carried = carry(&t, &mut cache, Format::default(), 99);
    assert_eq!(carried.len(), 2, "{carried:?}");

    // The file after the rotation at 3 s: nothing happens to the pages.
    let d = tempfile::tempdir().expect("dir");
    let build = |carry: &[Line], name: &str| {
        let p = d.path().join(name);
        let mut w = Writer::create(&p, header(3 * S)).expect("create");
        for l in carry {
            w.line(l).expect("carry");
        }
        for s in 4..=20 {
            w.line(&Line::Tick {
                now_ns: s * S,
                dropped: 0,
                capped: 0,
            })
            .expect("tick");
        }
        w.line(&Line::End {
            now_ns: 20 * S,
            events: 0,
            dropped: 0,
            capped: 0,
        })
        .expect("end");
        w.finish().expect("finish");
        report::build(&read(&p).expect("read"), None, false).expect("report")
    };
    let r = build(&carried, "with-carry.rec");
    assert_eq!(r.stuck_at_end, vec![0x40]);
    assert_eq!(r.unknown_at_end, vec![0x42]);
    // Held since the reference was taken, in the file before.
    let held = r
        .episodes
        .iter()
        .find(|e| e.pfn == 0x40 && e.detector == "held")
        .expect("held episode");
    assert_eq!(held.start_ns, S);
    assert!(held.holders.is_empty());
    assert!(
        held.holder_note
            .as_deref()
            .is_some_and(|n| n.contains("was carried over")),
        "{:?}",
        held.holder_note
    );
    // Without the carried state, the same file says all is well.
    let r = build(&[], "without.rec");
    assert!(r.stuck_at_end.is_empty() && r.unknown_at_end.is_empty());
}
