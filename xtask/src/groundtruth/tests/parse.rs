//! The kernel's page_ref lines and their timeline.

use super::*;

#[test]
fn the_helper_prints_the_kernel_layout() {
    assert_eq!(
        kernel_line(57_318_004, "page_ref_mod", PFN, 2, 1, None),
        "       hmm-tests-412     [001] .....    57.318004: page_ref_mod: pfn=0x23ff00 flags=uptodate|dirty count=2 mapcount=0 mapping=000000004fc2b3a1 mt=0 val=1"
    );
}

#[test]
fn parses_every_page_ref_event_in_the_kernel_format() {
    // Hand-written samples of the kernel's format (see `kernel_line`),
    // with the variants the context and the flags text can take.
    let lines = [
        // The mod template, no flags set: "none"; NULL mapping.
        "          <idle>-0       [000] d.h1.     3.000001: page_ref_set: pfn=0x23ff00 flags=none count=1 mapcount=-1 mapping=0000000000000000 mt=0 val=1",
        // Known flags and left-over bits.
        "     kworker/u8:3-77      [003] .....    12.345678: page_ref_mod: pfn=0x23ff00 flags=referenced|uptodate|head|0x4000 count=2 mapcount=0 mapping=00000000deadbeef mt=0 val=1",
        // A task name with spaces, colons and even an event-like text;
        // %pGp-style flags with node/zone parts and '=' inside.
        "  a b: page_ref_x-1234    [002] .N...   100.000100: page_ref_mod_and_test: pfn=0x23ff00 flags=0x17ffffc0000000(node=0|zone=2|lastcpupid=0x1fffff) count=0 mapcount=0 mapping=0000000000000000 mt=0 val=-2 ret=1",
        // The tgid column.
        "       hmm-tests-412     (    412) [001] .....    57.318004: page_ref_mod_and_return: pfn=0x23ff01 flags=uptodate count=3 mapcount=0 mapping=000000004fc2b3a1 mt=0 val=1 ret=3",
        // Without irq-info.
        "       hmm-tests-412     [001]    57.318005: page_ref_mod_unless: pfn=0x23ff01 flags=uptodate count=4 mapcount=0 mapping=000000004fc2b3a1 mt=0 val=1 ret=1",
        "       hmm-tests-412     [001] .....    57.318006: page_ref_freeze: pfn=0x23ff01 flags=uptodate count=0 mapcount=0 mapping=000000004fc2b3a1 mt=0 val=4 ret=1",
        "       hmm-tests-412     [001] .....    57.318007: page_ref_unfreeze: pfn=0x23ff01 flags=uptodate count=4 mapcount=0 mapping=000000004fc2b3a1 mt=0 val=4",
    ];
    let events: Vec<TruthEvent> = lines
        .iter()
        .map(|l| {
            parse_trace_line(l)
                .expect("parse")
                .expect("a page_ref event")
        })
        .collect();
    let ev = |ts_ns, pfn, op, count, val, ret| TruthEvent {
        ts_ns,
        pfn,
        op,
        count,
        val,
        ret,
    };
    assert_eq!(
        events,
        vec![
            ev(3_000_001_000, PFN, RefOp::Set, 1, 1, None),
            ev(12_345_678_000, PFN, RefOp::Mod, 2, 1, None),
            ev(100_000_100_000, PFN, RefOp::ModAndTest, 0, -2, Some(1)),
            ev(57_318_004_000, PFN2, RefOp::ModAndReturn, 3, 1, Some(3)),
            ev(57_318_005_000, PFN2, RefOp::ModUnless, 4, 1, Some(1)),
            ev(57_318_006_000, PFN2, RefOp::Freeze, 0, 4, Some(1)),
            ev(57_318_007_000, PFN2, RefOp::Unfreeze, 4, 4, None),
        ]
    );
    // Other tracepoints are no truth and no error.
    let sched = "       hmm-tests-412     [001] d..2.    57.318008: sched_switch: prev_comm=hmm-tests prev_pid=412";
    assert_eq!(parse_trace_line(sched).expect("parse"), None);
    // A page_ref line without its count is an error...
    let broken = "       hmm-tests-412     [001] .....    57.318004: page_ref_mod: pfn=0x23ff00 flags=none mapcount=0 val=1";
    let err = parse_trace_line(broken).expect_err("no count");
    assert!(format!("{err:#}").contains("count="), "{err:#}");
    // ...and a counter clock is refused with a hint.
    let tsc = "       hmm-tests-412     [001] .....  1234567890: page_ref_mod: pfn=0x23ff00 flags=none count=1 mapcount=0 mapping=0000000000000000 mt=0 val=1";
    let err = parse_trace_line(tsc).expect_err("counter clock");
    assert!(format!("{err:#}").contains("mono"), "{err:#}");
}

#[test]
fn timestamps_are_nanoseconds() {
    assert_eq!(parse_trace_ts("0.000001").expect("ts"), 1_000);
    assert_eq!(parse_trace_ts("123.456789").expect("ts"), 123_456_789_000);
    assert_eq!(parse_trace_ts("1.5").expect("ts"), 1_500_000_000);
    assert!(parse_trace_ts("1.x").is_err());
    assert!(parse_trace_ts("1.").is_err());
}

#[test]
fn timeline_counts_gets_puts_and_sets() {
    let tr = [
        kernel_line(1_000, "page_ref_set", PFN, 1, 1, None),
        kernel_line(1_010, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(1_020, "page_ref_mod_and_return", PFN, 3, 1, Some(3)),
        kernel_line(1_030, "page_ref_mod_unless", PFN, 4, 1, Some(1)),
        // Failed: ignored, though the guest's filter should drop it.
        kernel_line(1_035, "page_ref_mod_unless", PFN, 0, 1, Some(0)),
        kernel_line(1_040, "page_ref_mod_and_test", PFN, 3, -1, Some(0)),
        kernel_line(1_050, "page_ref_mod", PFN, 1, -2, None),
        kernel_line(1_060, "page_ref_freeze", PFN, 0, 1, Some(1)),
        kernel_line(1_070, "page_ref_unfreeze", PFN, 1, 1, None),
    ];
    let gt = run(&tr, &[]);
    assert_eq!(gt.truth_events, 8);
    assert_eq!(gt.truth_gets, 3);
    assert_eq!(gt.truth_puts, 2);
    assert_eq!(gt.truth_sets, 3);
    assert_eq!(gt.truth_failed_unless, 1);
    assert_eq!(gt.observations, 0);
    assert_eq!(gt.match_rate, 1.0);
    let s = &gt.per_pfn[0];
    assert_eq!(s.pfn, "0x23ff00");
    assert_eq!(s.truth_events, 8);
    assert_eq!(s.start_count, None, "a set first: unknown start");
    assert_eq!(s.last_truth.as_ref().map(|p| p.count), Some(1));
    assert_eq!(gt.per_pfn[1].truth_events, 0);
}

#[test]
fn count_before_of_each_event() {
    let ev = |op, count, val, ret| TruthEvent {
        ts_ns: 0,
        pfn: PFN,
        op,
        count,
        val,
        ret,
    };
    assert_eq!(ev(RefOp::Mod, 3, 1, None).count_before(), Some(2));
    assert_eq!(ev(RefOp::Mod, 1, -2, None).count_before(), Some(3));
    assert_eq!(
        ev(RefOp::ModAndTest, 0, -1, Some(1)).count_before(),
        Some(1)
    );
    assert_eq!(
        ev(RefOp::ModAndReturn, 5, 1, Some(5)).count_before(),
        Some(4)
    );
    assert_eq!(ev(RefOp::ModUnless, 2, 1, Some(1)).count_before(), Some(1));
    assert_eq!(ev(RefOp::Freeze, 0, 2, Some(1)).count_before(), Some(2));
    assert_eq!(ev(RefOp::Freeze, 3, 2, Some(0)).count_before(), Some(3));
    assert_eq!(ev(RefOp::Unfreeze, 2, 2, None).count_before(), Some(0));
    assert_eq!(ev(RefOp::Set, 1, 1, None).count_before(), None);
}
