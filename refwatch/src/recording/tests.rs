//! Recording round trips and hostile inputs (synthetic lines).

use super::*;
use crate::kallsyms::Kallsyms;

fn header() -> Header {
    Header {
        format: FORMAT.into(),
        version: VERSION,
        kernel: "test".into(),
        started_ns: 1,
        rules: Rules::from_kernel(&Kallsyms::parse(
            "ffffffff81000000 T zone_device_page_init\n",
        )),
        thresholds: Thresholds::default(),
        precise: false,
        hooks: vec![],
    }
}

/// Synthetic event line (not from a kernel).
fn event(ts: u64) -> JsonEvent {
    JsonEvent {
        ts_ns: ts,
        cpu: 0,
        pid: 1,
        tgid: 1,
        comm: "t".into(),
        pfn: 0x1234,
        event: "get".into(),
        refcount_before: Some(0),
        refcount_after: Some(1),
        mapcount: Some(-1),
        pgmap_type: "fsdax".into(),
        nr_pages: 1,
        symbol: "try_grab_folio".into(),
        ret: None,
        stack: vec!["f+0x1".into()],
        owner: None,
        migration: None,
        late: false,
        forking: false,
        page: None,
    }
}

fn write(lines: &[Line]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend(serde_json::to_vec(l).expect("json"));
        out.push(b'\n');
    }
    out
}

#[test]
fn round_trip_through_a_file() {
    let dir = std::env::temp_dir().join(format!("refwatch-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("rec");
    let mut w = Writer::create(&p, header()).expect("create");
    w.line(&Line::Event(event(5))).expect("line");
    w.line(&Line::Tick {
        now_ns: 9,
        dropped: 0,
    })
    .expect("line");
    w.line(&Line::End {
        now_ns: 10,
        events: 1,
        dropped: 0,
    })
    .expect("line");
    w.finish().expect("finish");
    let r = read(&p).expect("read");
    assert_eq!(r.header, header());
    assert!(r.complete);
    assert!(!r.truncated_tail);
    assert_eq!(r.events().count(), 1);
    assert_eq!(r.end_ns(), 10);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cut_short_is_readable() {
    let mut bytes = write(&[Line::Header(header()), Line::Event(event(5))]);
    bytes.extend_from_slice(b"{\"type\":\"event\",\"ts_ns\":6,\"cp");
    let r = parse(&bytes[..], "x").expect("readable");
    assert!(!r.complete);
    assert!(r.truncated_tail);
    assert_eq!(r.events().count(), 1);
}

#[test]
fn corruption_is_an_error_with_a_line_number() {
    let mut bytes = write(&[Line::Header(header())]);
    bytes.extend_from_slice(b"garbage\n");
    bytes.extend(write(&[Line::Event(event(5))]));
    let e = parse(&bytes[..], "x").expect_err("corrupt");
    assert!(e.to_string().contains("line 2 is corrupt"), "{e}");
    let e = parse(&b"hello\n"[..], "x").expect_err("not a recording");
    assert!(e.to_string().contains("not a refwatch recording"), "{e}");
    let e = parse(&b""[..], "x").expect_err("empty");
    assert!(e.to_string().contains("empty"), "{e}");
    let mut h = header();
    h.version = VERSION + 1;
    let e = parse(&write(&[Line::Header(h)])[..], "x").expect_err("newer");
    assert!(e.to_string().contains("newer"), "{e}");
}

#[test]
fn hostile_recordings_are_refused_with_the_line() {
    let end = Line::End {
        now_ns: 10,
        events: 1,
        dropped: 0,
    };
    // Anything after the end line.
    let mut bytes = write(&[Line::Header(header()), Line::Event(event(5)), end.clone()]);
    bytes.extend_from_slice(b"garbage\n");
    let e = parse(&bytes[..], "x").expect_err("after end");
    assert!(
        e.to_string()
            .contains("line 4: more after the recording's end"),
        "{e}"
    );
    let mut bytes = write(&[Line::Header(header()), end.clone(), end]);
    let e = parse(&bytes[..], "x").expect_err("two ends");
    assert!(e.to_string().contains("line 3"), "{e}");
    // A complete garbage line at the end is corruption, not a cut.
    bytes = write(&[Line::Header(header()), Line::Event(event(5))]);
    bytes.extend_from_slice(b"{\"type\":\"event\",\"ts\n");
    let e = parse(&bytes[..], "x").expect_err("corrupt last line");
    assert!(e.to_string().contains("line 3 is corrupt"), "{e}");
    // Version 0.
    let mut h = header();
    h.version = 0;
    let e = parse(&write(&[Line::Header(h)])[..], "x").expect_err("version 0");
    assert!(e.to_string().contains("version 0"), "{e}");
    // A line longer than the cap, without reading past it.
    let mut bytes = write(&[Line::Header(header())]);
    bytes.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
    let e = parse(&bytes[..], "x").expect_err("long line");
    assert!(e.to_string().contains("line 2 is longer than"), "{e}");
    let e = parse(std::io::BufReader::new(std::io::repeat(0)), "zeros").expect_err("endless");
    assert!(e.to_string().contains("longer than"), "{e}");
    // A line before the header is named by its kind, not debug text.
    let tick = Line::Tick {
        now_ns: 1,
        dropped: 0,
    };
    let mut bytes = write(&[Line::Header(header())]);
    bytes = [write(&[tick]), bytes].concat();
    let e = parse(&bytes[..], "x").expect_err("tick first");
    assert!(!e.to_string().contains('{'), "{e}");
}

/// Synthetic: a held page whose release was lost, and a page stuck
/// with a complete history.
#[test]
fn gap_lines_reach_the_report_and_its_exit_code() {
    let mut h = header();
    h.thresholds = Thresholds {
        held_ns: 1_000_000_000,
        pinned_ns: 1_000_000_000,
        unmapped_ns: 1_000_000_000,
    };
    let mut held = event(1_000);
    held.refcount_before = Some(0);
    held.refcount_after = Some(1);
    let lines = vec![
        Line::Header(h.clone()),
        Line::Event(held.clone()),
        Line::Gap {
            ts_ns: 2_000,
            pfn: Some(0x1234),
        },
        Line::End {
            now_ns: 10_000_000_000,
            events: 1,
            dropped: 1,
        },
    ];
    let r = crate::report::build(&parse(&write(&lines)[..], "x").expect("parse"), None, false)
        .expect("report");
    assert_eq!((r.dropped, r.unknown_at_end.clone()), (1, vec![0x1234]));
    assert!(r.episodes.is_empty() && r.stuck_at_end.is_empty());
    assert_eq!(r.gaps.len(), 1);
    assert_eq!(r.fail_on_stuck_code(), crate::report::EXIT_UNKNOWN);
    assert!(crate::report::text(&r).contains("1 of them in an unknown state"));
    // Without the gap the same page is stuck.
    let lines = vec![
        Line::Header(h),
        Line::Event(held),
        Line::End {
            now_ns: 10_000_000_000,
            events: 1,
            dropped: 0,
        },
    ];
    let r = crate::report::build(&parse(&write(&lines)[..], "x").expect("parse"), None, false)
        .expect("report");
    assert_eq!(r.stuck_at_end, vec![0x1234]);
    assert_eq!(r.fail_on_stuck_code(), crate::report::EXIT_STUCK);
}
