//! The ordered match of observations against truth states.

use super::*;

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
