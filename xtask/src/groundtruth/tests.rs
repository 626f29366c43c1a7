use super::*;

/// The committed SYNTHETIC recording in version 1 and in version 2
/// (compact lines) give the same observations.
#[test]
fn both_recording_versions_give_the_same_observations() {
    let data = crate::test::workspace_root().join("refwatch/tests/data");
    let read = |f: &str| std::fs::read_to_string(data.join(f)).expect("recording");
    let (v1, v2) = (
        read("synthetic-dax-hold-v1.rec"),
        read("synthetic-dax-hold.rec"),
    );
    assert!(v2.lines().nth(1).is_some_and(|l| l.starts_with('[')), "v2");
    let device: BTreeSet<u64> = (0x40000..0x40100).collect();
    let key = |r: &ParsedRecording| -> Vec<String> {
        r.observations
            .iter()
            .map(|o| {
                format!(
                    "{} {} {} {} {} {:?}",
                    o.ts_ns, o.pfn, o.value, o.field, o.event, o.symbol
                )
            })
            .collect()
    };
    let a = parse_recording(&v1, "v1", &device).expect("v1");
    let b = parse_recording(&v2, "v2", &device).expect("v2");
    assert!(a.observations.len() > 20, "{}", a.observations.len());
    assert_eq!(key(&a), key(&b));
    assert_eq!((a.seen_gets, a.seen_puts), (b.seen_gets, b.seen_puts));
}

const PFN: u64 = 0x23ff00;
const PFN2: u64 = 0x23ff01;
const OTHER: u64 = 0x1234;
const US: u64 = 1_000;

/// Hand-written sample of the kernel's format, not captured output: one
/// line of `/sys/kernel/tracing/trace` as Linux 7.2 prints it with the
/// default options (irq-info on, tgid off) and `trace_clock` mono:
/// `trace_print_context` (`"%16s-%-7d "`, `"[%03d] "`, five irq-info
/// flags, `" %5lu.%06lu"`, `": "`), `trace_raw_output_prep` (`"%s: "`)
/// and the `TP_printk` of include/trace/events/page_ref.h.
fn kernel_line(
    ts_us: u64,
    event: &str,
    pfn: u64,
    count: i64,
    val: i64,
    ret: Option<i64>,
) -> String {
    let ret = ret.map(|r| format!(" ret={r}")).unwrap_or_default();
    format!(
        "{:>16}-{:<7} [{:03}] ..... {:>5}.{:06}: {event}: pfn={pfn:#x} flags=uptodate|dirty count={count} mapcount=0 mapping=000000004fc2b3a1 mt=0 val={val}{ret}",
        "hmm-tests",
        412,
        1,
        ts_us / 1_000_000,
        ts_us % 1_000_000,
    )
}

/// A trace file: the tracefs header, then `lines`.
fn trace(lines: &[String]) -> String {
    let n = lines.len();
    let mut t = format!(
        "# tracer: nop\n#\n# entries-in-buffer/entries-written: {n}/{n}   #P:2\n#\n\
         #                                _-----=> irqs-off/BH-disabled\n\
         #                               / _----=> need-resched\n\
         #                              | / _---=> hardirq/softirq\n\
         #                              || / _--=> preempt-depth\n\
         #                              ||| / _-=> migrate-disable\n\
         #                              |||| /     delay\n\
         #           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n\
         #              | |         |   |||||     |         |\n"
    );
    for l in lines {
        t.push_str(l);
        t.push('\n');
    }
    t
}

const HEADER: &str = r#"{"type":"header","format":"refwatch-recording","version":1,"kernel":"7.2.13","started_ns":1,"rules":{},"thresholds":{},"hooks":[]}"#;

/// A recording event line, with the fields refwatch writes today and
/// one it may add later.
fn rec_event(ts_ns: u64, pfn: u64, event: &str, before: Option<i32>, after: Option<i32>) -> String {
    serde_json::json!({
        "type": "event", "ts_ns": ts_ns, "cpu": 0, "pid": 412, "tgid": 412,
        "comm": "hmm-tests", "pfn": pfn, "event": event,
        "refcount_before": before, "refcount_after": after, "mapcount": 0,
        "pgmap_type": "device_private", "nr_pages": 1,
        "symbol": format!("sym_{event}"), "ret": null, "stack": [],
        "a_field_from_the_future": {"x": 1}
    })
    .to_string()
}

fn recording(lines: &[String]) -> String {
    let mut r = format!("{HEADER}\n");
    for l in lines {
        r.push_str(l);
        r.push('\n');
    }
    r.push_str(r#"{"type":"tick","now_ns":99000000000,"dropped":0}"#);
    r.push('\n');
    r
}

fn run(tr: &[String], rec: &[String]) -> GroundTruth {
    compare(
        &trace(tr),
        &recording(rec),
        &[PFN, PFN2],
        "precise",
        DEFAULT_SLACK_NS,
    )
    .expect("compare")
}

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

#[test]
fn exact_observations_match() {
    let tr = [
        kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(2_000, "page_ref_mod_and_test", PFN, 1, -1, Some(0)),
        kernel_line(3_000, "page_ref_freeze", PFN, 0, 1, Some(1)),
        kernel_line(3_001, "page_ref_unfreeze", PFN, 1, 1, None),
    ];
    let rec = [
        // refwatch at the same instant, a bit before and a bit after.
        rec_event(1_000 * US, PFN, "get", Some(1), Some(2)),
        rec_event(2_000 * US - 7 * US, PFN, "put", Some(2), Some(1)),
        rec_event(3_000 * US + 400, PFN, "migrate", Some(1), None),
        rec_event(3_001 * US + 20 * US, PFN, "free", None, Some(1)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!(gt.observations, 6);
    assert_eq!(gt.matched, 6, "{:#?}", gt.mismatches);
    assert_eq!(gt.mismatched, 0);
    assert_eq!(gt.before_truth, 0);
    assert_eq!(gt.match_rate, 1.0);
    assert_eq!((gt.seen_gets, gt.seen_puts, gt.seen_events), (1, 1, 4));
    assert_eq!((gt.truth_gets, gt.truth_puts, gt.truth_sets), (1, 1, 2));
}

#[test]
fn a_wrong_count_is_a_mismatch_with_its_context() {
    let tr = [
        kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(5_000, "page_ref_mod", PFN, 1, -1, None),
    ];
    let rec = [
        rec_event(1_000 * US, PFN, "get", Some(1), Some(2)),
        rec_event(3_000 * US, PFN, "pin", Some(2), Some(1026)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!((gt.observations, gt.matched, gt.mismatched), (4, 3, 1));
    assert!((gt.match_rate - 0.75).abs() < 1e-9);
    assert_eq!(
        gt.mismatches,
        vec![Mismatch {
            pfn: "0x23ff00".into(),
            ts_ns: 3_000 * US,
            value: 1026,
            field: "refcount_after".into(),
            event: "pin".into(),
            symbol: Some("sym_pin".into()),
            line: 3,
            cursor: StateRef {
                index: 1,
                count: Some(2),
                since_ns: Some(1_000 * US),
            },
            plausible_counts: vec![2, 1],
            prev: Some(TruthPoint {
                ts_ns: 1_000 * US,
                count: 2,
                event: "page_ref_mod".into(),
                val: 1,
                ret: None,
            }),
            next: Some(TruthPoint {
                ts_ns: 5_000 * US,
                count: 1,
                event: "page_ref_mod".into(),
                val: -1,
                ret: None,
            }),
        }]
    );
}

#[test]
fn slack_edges() {
    // PFN: 1 until 100 ms, 2 until 200 ms, then 3, and 4 for an instant
    // at 300 ms; a truth event printed as T happened within
    // [T, T + 999 ns]. Every case starts from a fresh cursor.
    let tr = [
        kernel_line(100_000, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(200_000, "page_ref_mod", PFN, 3, 1, None),
        // Two events in one microsecond: 4 existed for an instant.
        kernel_line(300_000, "page_ref_mod", PFN, 4, 1, None),
        kernel_line(300_000, "page_ref_mod", PFN, 3, -1, None),
    ];
    let s = DEFAULT_SLACK_NS;
    let cases = [
        // 2 began at 100 ms: an observation may be up to S earlier.
        (100_000 * US - s, 2, true),
        (100_000 * US - s - 1, 2, false),
        // 2 may hold until 200.000999 ms: up to S later.
        (200_000 * US + 999 + s, 2, true),
        (200_000 * US + 1_000 + s, 2, false),
        // The start count, 1, may hold until 100.000999 ms.
        (0, 1, true),
        (100_000 * US + 999 + s, 1, true),
        (100_000 * US + 1_000 + s, 1, false),
        (200_000 * US - s, 3, true),
        (200_000 * US - s - 1, 3, false),
        (300_000 * US, 4, true),
        (300_000 * US - s, 4, true),
        (300_000 * US + 999 + s, 4, true),
        (300_000 * US + 1_000 + s, 4, false),
        // A count the PFN never had.
        (150_000 * US, 5, false),
    ];
    for (t, v, ok) in cases {
        let gt = run(&tr, &[rec_event(t, PFN, "get", None, Some(v))]);
        assert_eq!(gt.observations, 1);
        assert_eq!(gt.matched == 1, ok, "t={t} v={v}: {:#?}", gt.mismatches);
        assert_eq!(gt.mismatched == 1, !ok, "t={t} v={v}");
        assert_eq!(gt.slack_ns, s);
        if ok {
            assert!(gt.max_slack_used_ns <= s, "t={t} v={v}");
        }
    }
    // The slack used is how far outside the state's own span.
    let gt = run(
        &tr,
        &[rec_event(100_000 * US - s, PFN, "get", None, Some(2))],
    );
    assert_eq!(gt.max_slack_used_ns, s);
    let gt = run(&tr, &[rec_event(150_000 * US, PFN, "get", None, Some(2))]);
    assert_eq!(gt.max_slack_used_ns, 0);
    // A zero slack still matches within the states' own spans.
    let zero = |rec: &[String]| {
        compare(&trace(&tr), &recording(rec), &[PFN], "functions", 0).expect("compare")
    };
    let gt = zero(&[rec_event(150_000 * US, PFN, "get", Some(2), Some(2))]);
    assert_eq!(
        (gt.matched, gt.slack_ns, gt.mode.as_str()),
        (2, 0, "functions")
    );
    let gt = zero(&[rec_event(200_000 * US + 999, PFN, "get", Some(2), Some(3))]);
    assert_eq!(gt.matched, 2);
    let gt = zero(&[rec_event(100_000 * US - 1, PFN, "get", None, Some(2))]);
    assert_eq!(gt.mismatched, 1);
}

#[test]
fn late_tracefs_stamps_match_in_order() {
    // Real lab data (hmm-7.2, hmm-migrate, PFN 0xfcfffff): refwatch's
    // program runs first and tracefs stamps the same operation up to
    // 8.5 ms later (the get at 35377.676407 ms is page_ref_mod at
    // 35386.174 ms). With a 50 µs window four of these mismatched.
    let tr = [
        kernel_line(35_353_517, "page_ref_set", PFN, 1, 1, None),
        kernel_line(35_361_268, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(35_362_339, "page_ref_mod_and_test", PFN, 1, -1, Some(0)),
        kernel_line(35_386_174, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(35_387_612, "page_ref_mod", PFN, 3, 1, None),
        kernel_line(35_387_690, "page_ref_mod_and_test", PFN, 2, -1, Some(0)),
        kernel_line(35_390_488, "page_ref_mod_and_test", PFN, 1, -1, Some(0)),
        kernel_line(35_390_701, "page_ref_mod_and_test", PFN, 0, -1, Some(1)),
    ];
    let rec = [
        rec_event(35_353_170_862, PFN, "set", None, Some(1)),
        rec_event(35_361_229_247, PFN, "get", Some(1), Some(2)),
        rec_event(35_362_305_245, PFN, "put", Some(2), Some(1)),
        rec_event(35_377_676_407, PFN, "get", Some(1), Some(2)),
        rec_event(35_387_535_467, PFN, "get", Some(2), Some(3)),
        rec_event(35_387_685_226, PFN, "put", Some(3), Some(2)),
        rec_event(35_389_477_918, PFN, "migrate", Some(2), Some(2)),
        rec_event(35_389_702_496, PFN, "put", Some(2), Some(1)),
        rec_event(35_390_643_898, PFN, "put", Some(1), Some(0)),
        rec_event(35_396_770_242, PFN, "free", Some(0), Some(0)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!(gt.observations, 19);
    assert_eq!(
        (gt.matched, gt.mismatched, gt.before_truth),
        (19, 0, 0),
        "{:#?}",
        gt.mismatches
    );
    assert_eq!(gt.max_slack_used_ns, 35_386_174_000 - 35_377_676_407);
    assert_eq!((gt.seen_gets, gt.truth_gets), (3, 3));
    assert_eq!((gt.seen_puts, gt.truth_puts), (4, 4));

    // Another lab run: a put stamped 372 µs before tracefs's.
    let tr = [
        kernel_line(10_890_000, "page_ref_set", PFN2, 1, 1, None),
        kernel_line(10_897_000, "page_ref_mod", PFN2, 2, 1, None),
        kernel_line(10_898_668, "page_ref_mod_and_test", PFN2, 1, -1, Some(0)),
    ];
    let rec = [
        rec_event(10_889_990_000, PFN2, "set", None, Some(1)),
        rec_event(10_896_990_000, PFN2, "get", Some(1), Some(2)),
        rec_event(10_898_295_905, PFN2, "put", Some(2), Some(1)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!(
        (gt.observations, gt.matched),
        (5, 5),
        "{:#?}",
        gt.mismatches
    );

    // A genuinely wrong count there still mismatches.
    let mut rec = rec.to_vec();
    rec.push(rec_event(10_898_700_000, PFN2, "put", Some(1), Some(7)));
    let gt = run(&tr, &rec);
    assert_eq!((gt.observations, gt.matched, gt.mismatched), (7, 6, 1));
    let m = &gt.mismatches[0];
    assert_eq!((m.value, m.field.as_str()), (7, "refcount_after"));
    assert_eq!(m.plausible_counts, vec![1]);
    assert_eq!(
        m.cursor,
        StateRef {
            index: 3,
            count: Some(1),
            since_ns: Some(10_898_668 * US),
        }
    );
}

#[test]
fn a_count_before_the_cursor_mismatches() {
    // 1 until 100 ms, 2 until 100.5 ms, then 3: within the slack of
    // every instant here, but refwatch already saw 3.
    let tr = [
        kernel_line(100_000, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(100_500, "page_ref_mod", PFN, 3, 1, None),
    ];
    let rec = [
        rec_event(100_000 * US, PFN, "get", Some(1), Some(2)),
        rec_event(100_500 * US, PFN, "get", Some(2), Some(3)),
        // Stale: 2 and 1 only held before the cursor's state.
        rec_event(100_600 * US, PFN, "migrate", Some(2), Some(1)),
        // The right count still matches afterwards.
        rec_event(100_700 * US, PFN, "migrate", Some(3), Some(3)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!((gt.observations, gt.matched, gt.mismatched), (8, 6, 2));
    let stale: Vec<(i64, &str, Vec<i64>)> = gt
        .mismatches
        .iter()
        .map(|m| (m.value, m.field.as_str(), m.plausible_counts.clone()))
        .collect();
    assert_eq!(
        stale,
        vec![
            (2, "refcount_before", vec![3]),
            (1, "refcount_after", vec![3])
        ]
    );
    assert_eq!(gt.mismatches[0].cursor.index, 2);

    // A future count moves the cursor on: the count between is then
    // stale too, although its own instant is right.
    let rec = [
        rec_event(99_000 * US, PFN, "get", Some(3), None),
        rec_event(100_200 * US, PFN, "get", Some(2), None),
    ];
    let gt = run(&tr, &rec);
    assert_eq!((gt.matched, gt.mismatched), (1, 1));
    assert_eq!(gt.mismatches[0].value, 2);
}

#[test]
fn before_and_after_step_through_consecutive_states() {
    // 1, then 2 at 100 ms, 1 at 100.2 ms and 2 at 100.4 ms: all states
    // are plausible at every instant here, the order decides.
    let tl: Vec<TruthEvent> = [(100_000, 2, 1), (100_200, 1, -1), (100_400, 2, 1)]
        .into_iter()
        .map(|(us, count, val)| TruthEvent {
            ts_ns: us * US,
            pfn: PFN,
            op: RefOp::Mod,
            count,
            val,
            ret: None,
        })
        .collect();
    let mut cur = Cursor::new(&tl, DEFAULT_SLACK_NS);
    // refwatch stamps the get, the put and the get 5 ms early.
    let early = 5_000 * US;
    let mut steps = Vec::new();
    for (t, before, after) in [
        (100_000 * US - early, 1, 2),
        (100_200 * US - early, 2, 1),
        (100_400 * US - early, 1, 2),
    ] {
        for v in [before, after] {
            assert!(
                matches!(cur.observe(t, v), Verdict::Matched { .. }),
                "t={t} v={v}"
            );
            steps.push(cur.state);
        }
    }
    assert_eq!(steps, vec![0, 1, 1, 2, 2, 3]);
    // Nothing goes back: 1 is behind the cursor now.
    assert_eq!(cur.observe(100_400 * US, 1), Verdict::Mismatched);
    assert_eq!(cur.state, 3);
}

#[test]
fn an_unknown_start_competes_with_later_states() {
    // Real lab data (hmm-7.2, hmm-migrate+functions, PFN 0xfcfffff):
    // refwatch reads 0 before `zone_device_page_init` and stamps it
    // 0.58 ms after the page_ref_set inside; the page's count is 0 again
    // from 59289.560 ms on, within the slack. The first state with 0 is
    // that final one, but the unknown start lies nearer: before_truth,
    // and the cursor stays for the rest of the page's life.
    let tr = [
        kernel_line(59_273_475, "page_ref_set", PFN, 1, 1, None),
        kernel_line(59_279_958, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(59_280_003, "page_ref_mod_and_test", PFN, 1, -1, Some(0)),
        kernel_line(59_288_051, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(59_288_257, "page_ref_mod", PFN, 3, 1, None),
        kernel_line(59_288_266, "page_ref_mod_and_test", PFN, 2, -1, Some(0)),
        kernel_line(59_289_497, "page_ref_mod_and_test", PFN, 1, -1, Some(0)),
        kernel_line(59_289_560, "page_ref_mod_and_test", PFN, 0, -1, Some(1)),
    ];
    let rec = [
        rec_event(59_274_051_426, PFN, "get", Some(0), Some(1)),
        rec_event(59_289_414_042, PFN, "migrate", Some(2), Some(2)),
        rec_event(59_290_099_799, PFN, "put", Some(1), Some(0)),
        rec_event(59_291_013_763, PFN, "free", Some(0), Some(0)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!(
        (gt.observations, gt.matched, gt.mismatched, gt.before_truth),
        (8, 7, 0, 1),
        "{:#?}",
        gt.mismatches
    );
    // The put reported when the page is freed, after the last put.
    assert_eq!(gt.max_slack_used_ns, 59_290_099_799 - 59_289_560_999);

    // Synthetic: set to 1 at 100 ms, 2 at 101 ms, 1 at 102 ms, 0 at
    // 110 ms. Each case starts from a fresh cursor.
    let tr = [
        kernel_line(100_000, "page_ref_set", PFN, 1, 1, None),
        kernel_line(101_000, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(102_000, "page_ref_mod_and_test", PFN, 1, -1, Some(0)),
        kernel_line(110_000, "page_ref_mod_and_test", PFN, 0, -1, Some(1)),
    ];
    let one = |t: u64, v: i32| {
        let gt = run(&tr, &[rec_event(t, PFN, "get", Some(v), None)]);
        (gt.matched, gt.before_truth, gt.mismatched)
    };
    // 0 nearer the unknown start than the final 0: unknown.
    assert_eq!(one(100_500 * US, 0), (0, 1, 0));
    // 0 nearer the final 0 (0.1 ms before it): matched.
    assert_eq!(one(109_900 * US, 0), (1, 0, 0));
    // 2 (a later state) nearer than the start, too.
    assert_eq!(one(101_200 * US, 2), (1, 0, 0));
    assert_eq!(one(100_400 * US, 2), (0, 1, 0));
    // s_1 keeps its priority, even before the set.
    assert_eq!(one(99_000 * US, 1), (1, 0, 0));
    // Long after the start may hold (beyond the set + the slack): a
    // mismatch.
    const _: () = assert!(145_000 * US > 100_000 * US + DEFAULT_SLACK_NS);
    assert_eq!(one(145_000 * US, 5), (0, 0, 1));
}

#[test]
fn observations_before_truth() {
    const PFN3: u64 = 0x23ff02;
    let s = DEFAULT_SLACK_NS;
    let tr = [
        // PFN starts from 2 (3 - 1).
        kernel_line(100_000, "page_ref_mod", PFN, 3, 1, None),
        // PFN2's and PFN3's start is unknown: a set.
        kernel_line(100_000, "page_ref_set", PFN2, 1, 1, None),
        kernel_line(100_000, "page_ref_set", PFN3, 1, 1, None),
    ];
    let rec = [
        // Long before the truth: the known start matches, or not.
        rec_event(10_000 * US, PFN, "get", Some(2), None),
        rec_event(10_000 * US, PFN, "get", Some(7), None),
        // The unknown start: anything goes while it may hold.
        rec_event(10_000 * US, PFN2, "get", Some(5), None),
        rec_event(100_000 * US + 999 + s, PFN2, "get", Some(6), None),
        // Not after that.
        rec_event(100_000 * US + 1_000 + s, PFN2, "put", Some(6), None),
        // Once the set's count is matched, the start is behind the
        // cursor: a wrong count is a mismatch, however early.
        rec_event(100_000 * US - 10 * US, PFN3, "get", Some(1), Some(9)),
    ];
    let gt = compare(
        &trace(&tr),
        &recording(&rec),
        &[PFN, PFN2, PFN3],
        "precise",
        s,
    )
    .expect("compare");
    assert_eq!(gt.observations, 7);
    assert_eq!(gt.matched, 2);
    assert_eq!(gt.before_truth, 2);
    assert_eq!(gt.mismatched, 3);
    assert!((gt.match_rate - 0.4).abs() < 1e-9);
    let wrong: Vec<(i64, &str)> = gt
        .mismatches
        .iter()
        .map(|m| (m.value, m.pfn.as_str()))
        .collect();
    assert_eq!(
        wrong,
        vec![(7, "0x23ff00"), (6, "0x23ff01"), (9, "0x23ff02")]
    );
    assert_eq!(gt.mismatches[0].prev, None);
    assert_eq!(gt.mismatches[0].plausible_counts, vec![2]);
    assert_eq!(
        gt.mismatches[0].cursor,
        StateRef {
            index: 0,
            count: Some(2),
            since_ns: None,
        }
    );
    assert_eq!(gt.mismatches[1].plausible_counts, vec![1]);
    assert_eq!(gt.mismatches[1].cursor.count, None);
    assert_eq!(gt.mismatches[2].cursor.index, 1);
    assert_eq!(gt.per_pfn[0].start_count, Some(2));
    assert_eq!(gt.per_pfn[1].before_truth, 2);
    assert_eq!(gt.per_pfn[2].matched, 1);

    // A PFN without any truth event: nothing is known, ever.
    let gt = run(
        &[],
        &[
            rec_event(5, PFN, "get", Some(1), Some(2)),
            rec_event(u64::MAX / 2, PFN, "put", Some(2), Some(1)),
        ],
    );
    assert_eq!((gt.before_truth, gt.mismatched, gt.match_rate), (4, 0, 1.0));
    assert!(
        gt.notes.iter().any(|n| n.contains("no page_ref event")),
        "{:?}",
        gt.notes
    );
}

#[test]
fn lost_and_overwritten_events_are_reported() {
    let mut t = trace(&[kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None)]);
    t = t.replace(
        "entries-in-buffer/entries-written: 1/1",
        "entries-in-buffer/entries-written: 40/45",
    );
    t.push_str("CPU:1 [LOST 17 EVENTS]\n");
    t.push_str(&kernel_line(2_000, "page_ref_mod", PFN, 3, 1, None));
    t.push_str("\nCPU:0 [LOST EVENTS]\n");
    t.push_str(&kernel_line(3_000, "page_ref_mod", PFN, 4, 1, None));
    t.push('\n');
    let gt = compare(&t, &recording(&[]), &[PFN], "precise", DEFAULT_SLACK_NS).expect("compare");
    assert_eq!(gt.truth_events, 3);
    assert_eq!(gt.truth_lost, 17);
    assert_eq!(gt.truth_lost_unknown, 1);
    assert_eq!(gt.truth_overwritten, 5);
    assert!(
        gt.notes.iter().any(|n| n.contains("lost")),
        "{:?}",
        gt.notes
    );
    assert!(
        gt.notes.iter().any(|n| n.contains("overwrote")),
        "{:?}",
        gt.notes
    );
}

#[test]
fn a_cut_recording_line_is_skipped_and_reported() {
    let tr = [kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None)];
    let full = rec_event(1_000 * US, PFN, "get", Some(1), Some(2));
    let mut rec = format!("{HEADER}\n{full}\n");
    rec.push_str(&full[..full.len() / 2]);
    let gt = compare(&trace(&tr), &rec, &[PFN], "precise", DEFAULT_SLACK_NS).expect("compare");
    assert!(gt.recording_truncated);
    assert_eq!((gt.observations, gt.matched), (2, 2));
    assert!(
        gt.notes
            .iter()
            .any(|n| n.contains("recording line 3 was cut short")),
        "{:?}",
        gt.notes
    );

    // A corrupt line before the end is an error naming it.
    let rec = format!("{HEADER}\n{}\n{full}\n", &full[..10]);
    let err = compare(&trace(&tr), &rec, &[PFN], "precise", DEFAULT_SLACK_NS).expect_err("corrupt");
    assert!(
        format!("{err:#}").contains("recording line 2 is corrupt"),
        "{err:#}"
    );
    // So is anything but a recording.
    let err = compare(&trace(&tr), "hello\n", &[PFN], "precise", DEFAULT_SLACK_NS)
        .expect_err("not a recording");
    assert!(
        format!("{err:#}").contains("not a refwatch recording"),
        "{err:#}"
    );
    let err =
        compare(&trace(&tr), &format!("{full}\n"), &[PFN], "precise", 1).expect_err("no header");
    assert!(
        format!("{err:#}").contains("not a refwatch recording"),
        "{err:#}"
    );
    let err = compare(&trace(&tr), "", &[PFN], "precise", 1).expect_err("empty recording");
    assert!(format!("{err:#}").contains("empty"), "{err:#}");
}

#[test]
fn a_cut_trace_line_is_skipped_only_at_the_end() {
    let whole = kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None);
    let cut = &whole[..whole.find("count=").expect("count")];
    let t = format!("{}{cut}", trace(std::slice::from_ref(&whole)));
    let gt = compare(&t, &recording(&[]), &[PFN], "precise", 1).expect("compare");
    assert!(gt.trace_truncated);
    assert_eq!(gt.truth_events, 1);
    let t = format!("{}{cut}\n{whole}\n", trace(&[]));
    let err = compare(&t, &recording(&[]), &[PFN], "precise", 1).expect_err("corrupt");
    assert!(
        format!("{err:#}").contains("page_ref trace line 13"),
        "{err:#}"
    );
}

#[test]
fn pfns_outside_the_set_take_no_part() {
    let tr = [
        kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(1_000, "page_ref_mod", OTHER, 7, 1, None),
        kernel_line(1_001, "page_ref_set", OTHER, 1, 1, None),
    ];
    let rec = [
        rec_event(1_000 * US, PFN, "get", Some(1), Some(2)),
        rec_event(1_000 * US, OTHER, "get", Some(6), Some(99)),
        rec_event(1_000 * US, OTHER, "put", Some(99), Some(98)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!((gt.observations, gt.matched, gt.mismatched), (2, 2, 0));
    assert_eq!((gt.truth_events, gt.truth_gets, gt.truth_sets), (1, 1, 0));
    assert_eq!((gt.truth_other_pfns, gt.seen_other_pfns), (2, 2));
    assert_eq!((gt.seen_gets, gt.seen_puts, gt.seen_events), (1, 0, 1));
    assert_eq!(gt.pfns, vec!["0x23ff00".to_string(), "0x23ff01".into()]);
}

#[test]
fn per_pfn_counts_do_not_cancel_out() {
    // PFN: two gets, refwatch saw one; PFN2: one get, refwatch saw two.
    let tr = [
        kernel_line(1_000, "page_ref_mod", PFN, 1, 1, None),
        kernel_line(1_100, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(1_000, "page_ref_mod", PFN2, 1, 1, None),
        kernel_line(1_200, "page_ref_mod_and_test", PFN2, 0, -1, Some(1)),
    ];
    let rec = [
        rec_event(1_000 * US, PFN, "get", Some(0), Some(1)),
        rec_event(1_000 * US, PFN2, "get", Some(0), Some(1)),
        rec_event(1_000 * US, PFN2, "get", Some(0), Some(1)),
        rec_event(1_200 * US, PFN2, "put", Some(1), Some(0)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!((gt.truth_gets, gt.seen_gets), (3, 3), "the totals agree");
    let p = &gt.per_pfn[0];
    assert_eq!(
        (p.truth_gets, p.seen_gets, p.truth_puts, p.seen_puts),
        (2, 1, 0, 0)
    );
    assert_eq!((p.seen_events, p.last_seen), (1, Some(1)));
    assert_eq!(p.last_truth.as_ref().map(|t| t.count), Some(2));
    let q = &gt.per_pfn[1];
    assert_eq!(
        (q.truth_gets, q.seen_gets, q.truth_puts, q.seen_puts),
        (1, 2, 1, 1)
    );
    assert_eq!((q.seen_events, q.last_seen), (3, Some(0)));
    assert!(gt.unseen_pfns.is_empty());
}

#[test]
fn pfns_with_truth_and_no_recording_event_are_unseen() {
    let tr = [
        kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None),
        kernel_line(1_000, "page_ref_mod", PFN2, 2, 1, None),
        kernel_line(1_000, "page_ref_mod", OTHER, 2, 1, None),
        kernel_line(1_000, "page_ref_mod", OTHER + 1, 2, 1, None),
        // A failed try-get changes nothing: no truth for OTHER + 2.
        kernel_line(1_000, "page_ref_mod_unless", OTHER + 2, 0, 1, Some(0)),
    ];
    let rec = [
        rec_event(1_000 * US, PFN, "get", Some(1), Some(2)),
        rec_event(1_000 * US, OTHER, "get", Some(1), Some(2)),
    ];
    let gt = run(&tr, &rec);
    assert_eq!(
        gt.unseen_pfns,
        vec![hex(OTHER + 1), hex(PFN2)],
        "in PFN order"
    );
    assert_eq!(gt.per_pfn[1].last_seen, None);
}

#[test]
fn only_twenty_mismatches_are_listed() {
    let tr = [kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None)];
    let rec: Vec<String> = (0..30)
        .map(|i| rec_event(2_000 * US + i, PFN, "get", None, Some(50)))
        .collect();
    let gt = run(&tr, &rec);
    assert_eq!(gt.mismatched, 30);
    assert_eq!(gt.mismatches.len(), 20);
    assert_eq!(gt.mismatches[19].ts_ns, 2_000 * US + 19);
    assert_eq!(gt.match_rate, 0.0);
}

#[test]
fn refwatch_drops_are_reported() {
    let mut rec = recording(&[]);
    rec.push_str(r#"{"type":"end","now_ns":99500000000,"events":0,"dropped":3}"#);
    rec.push('\n');
    let gt = compare(&trace(&[]), &rec, &[PFN], "precise", 1).expect("compare");
    assert_eq!(gt.seen_dropped, 3);
}

#[test]
fn workload_pfns_skip_nulls() {
    let pfns =
        workload_pfns(r#"{"scenario":"x","pfns":[256,null,"0x101"],"ok":true}"#).expect("pfns");
    assert_eq!(pfns, vec![256, 257]);
    assert!(workload_pfns(r#"{"scenario":"x"}"#).is_err());
    assert!(workload_pfns(r#"{"pfns":[-1]}"#).is_err());
    assert!(workload_pfns("{").is_err());
}

#[test]
fn write_for_dir_writes_groundtruth_json() {
    let dir = std::env::temp_dir().join(format!("xtask-groundtruth-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("mkdir");

    let err = write_for_dir(&dir, "precise").expect_err("no files");
    assert!(format!("{err:#}").contains(TRACE_FILE), "{err:#}");

    let tr = [kernel_line(1_000, "page_ref_mod", PFN, 2, 1, None)];
    fs::write(dir.join(TRACE_FILE), trace(&tr)).expect("write trace");
    let err = write_for_dir(&dir, "precise").expect_err("no recording");
    assert!(format!("{err:#}").contains(RECORDING_FILE), "{err:#}");

    // A recording cut inside a multi-byte character.
    let mut rec = recording(&[rec_event(1_000 * US, PFN, "get", Some(1), Some(2))]).into_bytes();
    rec.extend_from_slice(r#"{"type":"event","comm":"é"#.as_bytes());
    rec.pop();
    fs::write(dir.join(RECORDING_FILE), rec).expect("write recording");
    fs::write(dir.join(WORKLOAD_FILE), "{\"pfns\":").expect("write workload");
    let err = write_for_dir(&dir, "precise").expect_err("corrupt workload");
    assert!(format!("{err:#}").contains(WORKLOAD_FILE), "{err:#}");

    fs::write(
        dir.join(WORKLOAD_FILE),
        format!("{{\"pfns\":[{PFN},null]}}"),
    )
    .expect("write workload");
    let gt = write_for_dir(&dir, "functions").expect("write_for_dir");
    assert_eq!((gt.matched, gt.observations), (2, 2));
    assert!(gt.recording_truncated);
    let text = fs::read_to_string(dir.join(OUTPUT_FILE)).expect("read back");
    let back: GroundTruth = serde_json::from_str(&text).expect("parse back");
    assert_eq!(back, gt);
    assert_eq!(back.mode, "functions");
    assert!(text.contains("\"match_rate\": 1.0"), "{text}");
    fs::remove_dir_all(&dir).expect("cleanup");
}
