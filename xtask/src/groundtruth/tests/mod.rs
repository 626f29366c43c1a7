use super::*;

mod matching;
mod parse;

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
