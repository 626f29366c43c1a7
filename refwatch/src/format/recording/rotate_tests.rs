//! Rotation at a size, on real files, what a report of a later file finds
//! thanks to the state carried over, and the event lines a writer holds
//! until they go to the file (synthetic events, not from a kernel).

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use super::write::PENDING;
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

/// Writes a SYNTHETIC live get of page `pfn` at `ts_ns` (no stack) through `w`.
fn live(w: &mut Writer, syms: &mut Symbolizer<'_>, ts_ns: u64, pfn: u64) {
    w.live_event(
        &ev(ts_ns, pfn, Kind::Get, 0, 1),
        "try_grab_folio",
        None,
        syms,
        Format::default(),
        None,
    )
    .expect("live event");
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).expect("meta").len()
}

#[test]
fn event_lines_wait_in_memory_until_a_flush_or_a_buffer_of_them() {
    let k = Kallsyms::parse("");
    let mut syms = Symbolizer::new(&k, 16);
    let d = tempfile::tempdir().expect("dir");
    let p = d.path().join("run.rec");
    let mut w = Writer::create(&p, header(S)).expect("create");
    let start = file_len(&p);
    assert_eq!(start, w.bytes(), "the header is written at once");
    for i in 0..10 {
        live(&mut w, &mut syms, S + i, 0x40 + i);
    }
    // Counted, not yet written: no system call per event.
    assert_eq!(file_len(&p), start);
    assert!(w.bytes() > start);
    w.flush().expect("flush");
    assert_eq!(file_len(&p), w.bytes());
    let rec = read(&p).expect("read");
    assert_eq!(rec.events().count(), 10);
    assert!(!rec.complete && !rec.truncated_tail);
    // Without a flush the lines go out a buffer at a time: what waits in
    // memory stays under a buffer and a line.
    let mut n = 10u64;
    while file_len(&p) < 3 * PENDING as u64 {
        live(&mut w, &mut syms, S + n, 0x40 + n % 64);
        n += 1;
        assert!(w.bytes() - file_len(&p) < PENDING as u64 + 200);
    }
    // A tick line goes after the events before it, those waiting too.
    for _ in 0..5 {
        live(&mut w, &mut syms, S + n, 0x40);
        n += 1;
    }
    assert!(w.bytes() > file_len(&p));
    w.line(&Line::Tick {
        now_ns: S + n,
        dropped: 0,
        capped: 0,
    })
    .expect("tick");
    w.finish().expect("finish");
    let rec = read(&p).expect("read");
    assert_eq!(rec.events().count() as u64, n);
    assert!(matches!(rec.lines.last(), Some(Line::Tick { .. })));
}

#[test]
fn a_writer_dropped_without_finishing_keeps_every_event() {
    let k = Kallsyms::parse("");
    let mut syms = Symbolizer::new(&k, 16);
    let d = tempfile::tempdir().expect("dir");
    let p = d.path().join("run.rec");
    let mut w = Writer::create(&p, header(S)).expect("create");
    for i in 0..100 {
        live(&mut w, &mut syms, S + i, 0x40 + i % 8);
    }
    drop(w);
    let rec = read(&p).expect("read");
    assert_eq!(rec.events().count(), 100);
    assert!(!rec.complete && !rec.truncated_tail);
}

#[test]
fn rotation_puts_the_waiting_events_in_the_file_they_belong_to() {
    let k = Kallsyms::parse("");
    let mut syms = Symbolizer::new(&k, 16);
    let d = tempfile::tempdir().expect("dir");
    let p = d.path().join("run.rec");
    let limit = Limit {
        max_bytes: 4096,
        keep: 20,
    };
    let mut w = Writer::create_rotating(&p, header(S), limit).expect("create");
    let mut n = 0u64;
    while w.rotations() < 4 {
        live(&mut w, &mut syms, S + n, 0x40 + n % 16);
        n += 1;
        if w.full() {
            let end = Line::End {
                now_ns: S + n,
                events: n,
                dropped: 0,
                capped: 0,
            };
            w.rotate(&end, header(S + n), &[]).expect("rotate");
        }
    }
    w.finish().expect("finish");
    let mut seen = 0u64;
    for name in [
        "run.rec.4",
        "run.rec.3",
        "run.rec.2",
        "run.rec.1",
        "run.rec",
    ] {
        let f = d.path().join(name);
        let rec = read(&f).expect("a whole recording");
        // Full at the limit: the file holds its limit and at most a line.
        let len = file_len(&f);
        if name != "run.rec" {
            assert!(
                (limit.max_bytes..limit.max_bytes + 200).contains(&len),
                "{name}: {len}"
            );
            assert!(rec.complete, "{name}");
        }
        seen += rec.events().count() as u64;
        // Each finished file's end counts every event up to it.
        if let Some(Line::End { events, .. }) = rec.lines.last() {
            assert_eq!(*events, seen, "{name}");
        }
    }
    assert_eq!(seen, n);
}
