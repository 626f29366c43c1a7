//! Ground truth for refwatch's refcounts: the kernel's own `page_ref`
//! tracepoints, captured with tracefs in the lab guest, against refwatch's
//! recording of the same scenario. The result is `groundtruth.json`.
//!
//! # Inputs (one scenario folder)
//!
//! - `page_ref.trace`: `/sys/kernel/tracing/trace` after the scenario, with
//!   `trace_clock` `mono` (the clock of `bpf_ktime_get_ns`, printed by tracefs
//!   as `seconds.micros`) and the `page_ref:*` events enabled. Each event line
//!   is the tracefs context (`comm-pid`, maybe `(tgid)`, `[cpu]`, maybe the
//!   irq-info flags, the timestamp) and then `NAME: ` and the event's
//!   `TP_printk` from `include/trace/events/page_ref.h`:
//!   `pfn=0x%lx flags=%s count=%d mapcount=%d mapping=%p mt=%d val=%d`, with
//!   ` ret=%d` for the `mod_and_test` class (`page_ref_mod_and_test`,
//!   `page_ref_mod_and_return`, `page_ref_mod_unless`, `page_ref_freeze`).
//!   The event is found from the right (`: page_ref_NAME:`; a task name may
//!   hold anything), the timestamp is the token before it, and the fields are
//!   looked up by name (`pfn=`, `count=`, `val=`, `ret=`), never by position,
//!   so whatever the flags text holds (`a|b|0x40`, `none`, `%pGp`-style
//!   `0x..(node=0|zone=2)`) does not matter. Lines starting with `#` are the
//!   header; its `entries-in-buffer/entries-written: E/W` gives the events
//!   the ring buffer overwrote (`W - E`, `truth_overwritten`). `CPU:N [LOST n
//!   EVENTS]` lines add `n` to `truth_lost` (`CPU:N [LOST EVENTS]`, without a
//!   number, counts in `truth_lost_unknown`). A failed `page_ref_mod_unless`
//!   (`ret=0`: the count was zero and stays so) changes nothing and is only
//!   counted (`truth_failed_unless`). A last line cut short is skipped.
//! - `recording`: refwatch's JSON Lines recording, read as untyped JSON so
//!   fields added later do not matter. Line 1 must be the header; `event`
//!   lines give observations; `tick`/`end` lines give refwatch's own drop
//!   counter (`seen_dropped`); other line types are ignored. A last line
//!   that is not complete JSON (refwatch killed mid-write) is skipped and
//!   reported (`recording_truncated`); a corrupt line anywhere else is an
//!   error naming the line.
//! - `workload.json`: its `pfns` array; the non-null entries are the device
//!   PFNs. Only these take part, on both sides.
//!
//! # Truth timeline
//!
//! Every `page_ref` event prints `count=`, the page's refcount read right
//! after the operation, so each truth event *sets* its PFN's state to
//! `count` at its timestamp (file order breaks ties; tracefs merges the CPUs
//! by their nanosecond timestamps). Per PFN, with its events sorted by time,
//! the truth is the sequence of states `s_0, s_1 .. s_n`: `s_j` (`j >= 1`)
//! is the count after event `j`, stamped `T_j`, and `s_0` the count the PFN
//! started from. Timestamps are printed in whole microseconds (rounded down),
//! so an event printed as `T` happened within `[T, T + 999 ns]`: state `s_j`
//! held within `[T_j, T_j+1 + 999 ns]` (closed: even two events in the same
//! microsecond leave the state between them existing for an instant), the
//! last one from `T_n` on, and `s_0` up to `T_1 + 999 ns`.
//!
//! `s_0` is the count the first event started from: `count - val` for
//! `page_ref_mod`, `_mod_and_test`, `_mod_and_return` and a successful
//! `_mod_unless` (`val` is the signed change); `val` for a successful
//! `page_ref_freeze` (it swaps the expected count `val` for 0) and `count`
//! for a failed one; 0 for `page_ref_unfreeze` (only a frozen page is
//! unfrozen). A `page_ref_set` overwrites whatever was there, so before it
//! the count is unknown, and so it is for a PFN without any truth event (its
//! only state, `s_0`, then holds at every instant).
//!
//! Counters: `truth_gets` are the mod-type events with `val > 0`,
//! `truth_puts` those with `val < 0`; sets, freezes and unfreezes count in
//! `truth_sets` only. `truth_events` counts every truth event of a device
//! PFN (failed `_mod_unless` excluded).
//!
//! # Matching
//!
//! refwatch and tracefs observe the same operations, each stamping them with
//! its own clock reading. In precise mode refwatch's BPF program runs first
//! at a `page_ref` tracepoint (and takes a stack) and tracefs stamps the
//! event after it; in functions mode refwatch may stamp an operation after
//! it (a function it hooks does the refcount change inside; the last put is
//! reported when the page reaches `free_zone_device_folio`). Under qemu TCG on a loaded host the vCPU may be
//! descheduled in between, so the two stamps of one operation lie up to
//! ~10 ms apart (23 ms once, with the host's other core busy), while several operations on one page may happen within a
//! few ms. A symmetric time window around each observation cannot tell these
//! apart: too narrow and the same operation mismatches, too wide and a stale
//! or future count hides behind it. What "the refcount at that moment" means
//! for two observers of one sequence of operations is an *ordered* match:
//! refwatch's observations of a PFN must walk through its truth states in
//! order.
//!
//! Every recording event of a device PFN gives up to two observations at its
//! `ts_ns`: `refcount_before`, then `refcount_after`. Each PFN's observations
//! are taken in recording order with a cursor `c` into its truth states,
//! starting at `s_0`. State `s_j` is *plausible* at `t` when its span
//! widened by the slack, `[T_j - S, T_j+1 + 999 ns + S]` (S = `slack_ns`,
//! default 40 ms; no start for `s_0`, no end for `s_n`), contains `t`. An
//! observation `(t, v)` is:
//!
//! - **matched** by the first state `s_j` with `j >= c`, count `v` and
//!   plausible at `t`; the cursor moves to `j`. So the `before` and `after`
//!   of one event step through two consecutive states, and several
//!   observations may match one state (the `after` of one event is the
//!   `before` of the next). One exception, the unknown start below;
//! - otherwise **before_truth** when `s_0` is unknown, the cursor is still
//!   at it and `s_0` is plausible at `t` (`t <= T_1 + 999 ns + S`): `v` may
//!   well be right, nothing can tell;
//! - otherwise **mismatched**; the cursor stays.
//!
//! The exception: an unknown `s_0` under the cursor, plausible at `t`, may
//! hold `v` as well, so it competes with that first state `s_j` when
//! `j >= 2`: if `t` lies nearer to `s_0` (less slack needed, measured
//! against the states' own spans `[T_j, T_j+1 + 999 ns]`), the observation
//! is before_truth and the cursor stays. Without this, the count 0 that
//! refwatch reads in functions mode when a device page is initialised
//! (`zone_device_page_init`, stamped after its `page_ref_set` to 1) matched
//! the page's final 0 some 15 ms later, and every observation in between
//! was refused as lying before the cursor. `s_1`, the state the first
//! event made of the unknown start, keeps its priority: nothing lies
//! between them to be skipped, and refwatch stamps that event (precise
//! mode: `page_ref_set` itself) just before tracefs does.
//!
//! An observation can therefore never match a state that precedes one
//! already matched: order is enforced, so a stale or future count cannot
//! hide behind the slack, which only absorbs the stamping difference
//! between the two observers of one operation. Taking the *first* plausible
//! state keeps the cursor as early as the data allows, so a later
//! observation is never refused for a jump it did not need. An observation
//! well before the PFN's first truth event matches only `s_0`, or `s_1`
//! within the slack of `T_1`.
//!
//! `max_slack_used_ns` measures the stamping differences the slack absorbed:
//! for each matched observation, how far `t` lies outside the own span of
//! the nearest plausible state from the cursor on with count `v` (the first
//! such state, which the cursor takes, may be an earlier one with the same
//! count), and the largest of these.
//!
//! Per PFN (`per_pfn`) the same counts are kept, so that totals cannot hide
//! a miss on one page behind a duplicate on another: its truth and seen gets
//! and puts, its recording events, and `last_seen`, the value of its last
//! observation in recording order (to compare with the count of its last
//! truth event). `unseen_pfns` lists the PFNs, of the set or not, that have
//! truth events but no recording event at all.
//!
//! `match_rate` is `matched / (observations - before_truth)`, 1.0 when that
//! is zero. The first 20 mismatches (in recording order) are listed with the
//! truth events before and after them, the state the cursor was at and the
//! counts of the states from the cursor on that were plausible at `ts_ns`.
//! `seen_gets` counts refwatch's `get` and `pin` events, `seen_puts` its `put`
//! and `unpin` events, both for device PFNs only.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    ops::Range,
    path::Path,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default slack: refwatch and tracefs stamp one operation at most this far
/// apart (up to ~10 ms seen under qemu TCG on a loaded host; 23 ms once,
/// a free hook's last put stamped after its stack walk while the host's
/// other core was busy).
pub const DEFAULT_SLACK_NS: u64 = 40_000_000;
/// tracefs output of the scenario, in its folder.
pub const TRACE_FILE: &str = "page_ref.trace";
/// refwatch's recording, in the scenario folder.
pub const RECORDING_FILE: &str = "recording";
/// The workload's report, with the device PFNs.
pub const WORKLOAD_FILE: &str = "workload.json";
/// What [`write_for_dir`] writes.
pub const OUTPUT_FILE: &str = "groundtruth.json";

/// Mismatches listed in detail.
const MAX_MISMATCHES: usize = 20;
/// tracefs prints `mono` timestamps in microseconds.
const TRUTH_RESOLUTION_NS: u64 = 1_000;

/// The comparison, as written to `groundtruth.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// How refwatch hooked the kernel: "precise" or "functions".
    pub mode: String,
    /// How far a truth state's span is widened on both sides for matching.
    pub slack_ns: u64,
    /// Device PFNs compared, as hex strings.
    pub pfns: Vec<String>,
    pub observations: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// Observations the unknown start of a PFN (before its first event, a
    /// `page_ref_set`, or of a PFN without truth) may explain.
    pub before_truth: u64,
    pub match_rate: f64,
    /// The largest stamping difference the slack absorbed: how far a matched
    /// observation lay outside the own span of the nearest state with its
    /// count.
    pub max_slack_used_ns: u64,
    /// Truth events of device PFNs (failed `page_ref_mod_unless` excluded).
    pub truth_events: u64,
    pub truth_gets: u64,
    pub seen_gets: u64,
    pub truth_puts: u64,
    pub seen_puts: u64,
    /// `page_ref_set`, `_freeze` and `_unfreeze` events.
    pub truth_sets: u64,
    /// Sum of the `CPU:N [LOST n EVENTS]` lines.
    pub truth_lost: u64,
    /// `CPU:N [LOST EVENTS]` lines, which do not say how many.
    pub truth_lost_unknown: u64,
    /// Events the ring buffer overwrote (header `entries-written` minus
    /// `entries-in-buffer`): the earliest truth is missing.
    pub truth_overwritten: u64,
    /// Failed `page_ref_mod_unless` events (ignored).
    pub truth_failed_unless: u64,
    /// Truth events of PFNs outside the device set (ignored).
    pub truth_other_pfns: u64,
    /// Recording events of device PFNs.
    pub seen_events: u64,
    /// Recording events of other PFNs (ignored).
    pub seen_other_pfns: u64,
    /// PFNs (of the set or not) with truth events and no recording event.
    pub unseen_pfns: Vec<String>,
    /// refwatch's own drop counter, the highest `dropped` of `tick`/`end`.
    pub seen_dropped: u64,
    pub recording_truncated: bool,
    pub trace_truncated: bool,
    /// Plain-language remarks: cut lines, lost events, empty inputs.
    pub notes: Vec<String>,
    pub per_pfn: Vec<PfnSummary>,
    /// The first 20 mismatches.
    pub mismatches: Vec<Mismatch>,
}

/// One device PFN's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PfnSummary {
    pub pfn: String,
    pub truth_events: u64,
    pub truth_gets: u64,
    pub truth_puts: u64,
    /// Recording events of this PFN, and its gets (`get`, `pin`) and puts
    /// (`put`, `unpin`).
    pub seen_events: u64,
    pub seen_gets: u64,
    pub seen_puts: u64,
    /// The value of its last observation, in recording order.
    pub last_seen: Option<i64>,
    /// The count before the first truth event, when known.
    pub start_count: Option<i64>,
    pub first_truth: Option<TruthPoint>,
    pub last_truth: Option<TruthPoint>,
    pub observations: u64,
    pub matched: u64,
    pub mismatched: u64,
    pub before_truth: u64,
}

/// One truth event, for humans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthPoint {
    pub ts_ns: u64,
    pub count: i64,
    pub event: String,
    pub val: i64,
    pub ret: Option<i64>,
}

/// An observation no truth state from the PFN's cursor on explains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    pub pfn: String,
    pub ts_ns: u64,
    pub value: i64,
    /// `refcount_before` or `refcount_after`.
    pub field: String,
    /// refwatch's event name and the kernel function it was seen in.
    pub event: String,
    pub symbol: Option<String>,
    /// Line of the recording.
    pub line: usize,
    /// The truth state the PFN's cursor was at: the one its last matched
    /// observation matched.
    pub cursor: StateRef,
    /// The counts of the states from the cursor on that were plausible at
    /// `ts_ns` (span widened by the slack), in order: what the observation
    /// could have matched.
    pub plausible_counts: Vec<i64>,
    /// The last truth event of the PFN at or before `ts_ns`, and the next.
    pub prev: Option<TruthPoint>,
    pub next: Option<TruthPoint>,
}

/// One truth state of a PFN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRef {
    /// `j` of `s_j`: 0 is the start, `j` the state after the PFN's `j`-th
    /// truth event.
    pub index: usize,
    /// Its count, `None` for an unknown start.
    pub count: Option<i64>,
    /// `T_j`, when it began (`None` for the start).
    pub since_ns: Option<u64>,
}

/// Compares a tracefs `page_ref` trace with a refwatch recording for the
/// device PFNs `pfns`; see the module docs for the rules.
#[cfg(test)]
pub fn compare(
    trace: &str,
    recording: &str,
    pfns: &[u64],
    mode: &str,
    slack_ns: u64,
) -> Result<GroundTruth> {
    compare_named(
        Named {
            text: trace,
            name: "page_ref trace",
        },
        Named {
            text: recording,
            name: "recording",
        },
        pfns,
        mode,
        slack_ns,
    )
}

/// Reads `page_ref.trace`, `recording` and `workload.json` in `dir`, compares
/// them with the default slack and writes `groundtruth.json` there.
pub fn write_for_dir(dir: &Path, mode: &str) -> Result<GroundTruth> {
    let trace_path = dir.join(TRACE_FILE);
    let recording_path = dir.join(RECORDING_FILE);
    let workload_path = dir.join(WORKLOAD_FILE);
    let trace = read_text(&trace_path, "the page_ref trace")?;
    let recording = read_text(&recording_path, "refwatch's recording")?;
    let workload = read_text(&workload_path, "the workload report")?;
    let pfns = workload_pfns(&workload)
        .with_context(|| format!("{} is corrupt", workload_path.display()))?;
    let trace_name = trace_path.display().to_string();
    let recording_name = recording_path.display().to_string();
    let gt = compare_named(
        Named {
            text: &trace,
            name: &trace_name,
        },
        Named {
            text: &recording,
            name: &recording_name,
        },
        &pfns,
        mode,
        DEFAULT_SLACK_NS,
    )?;
    let out = dir.join(OUTPUT_FILE);
    let tmp = dir.join(format!("{OUTPUT_FILE}.tmp"));
    let mut json = serde_json::to_string_pretty(&gt).context("serialize the ground truth")?;
    json.push('\n');
    fs::write(&tmp, json).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, &out)
        .with_context(|| format!("rename {} to {}", tmp.display(), out.display()))?;
    Ok(gt)
}

/// An input text and the name its errors use.
#[derive(Clone, Copy)]
struct Named<'a> {
    text: &'a str,
    name: &'a str,
}

/// Reads a file as text; bytes that are not UTF-8 (a recording cut inside a
/// character) become U+FFFD instead of failing the read.
fn read_text(path: &Path, what: &str) -> Result<String> {
    let bytes = fs::read(path).with_context(|| format!("read {what} {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The non-null `pfns` of a workload report.
fn workload_pfns(text: &str) -> Result<Vec<u64>> {
    let report: Value = serde_json::from_str(text).context("not JSON")?;
    let Some(list) = report.get("pfns") else {
        bail!("no \"pfns\" field");
    };
    let Some(list) = list.as_array() else {
        bail!("\"pfns\" is not an array: {list}");
    };
    let mut pfns = Vec::with_capacity(list.len());
    for item in list {
        match item {
            Value::Null => {}
            Value::Number(n) => match n.as_u64() {
                Some(pfn) => pfns.push(pfn),
                None => bail!("\"pfns\" holds {n}, not a PFN"),
            },
            Value::String(s) => pfns.push(parse_u64(s).with_context(|| format!("PFN {s:?}"))?),
            other => bail!("\"pfns\" holds {other}, not a PFN"),
        }
    }
    Ok(pfns)
}

fn compare_named(
    trace: Named<'_>,
    recording: Named<'_>,
    pfns: &[u64],
    mode: &str,
    slack_ns: u64,
) -> Result<GroundTruth> {
    let mut order = Vec::new();
    let mut device = BTreeSet::new();
    for &pfn in pfns {
        if device.insert(pfn) {
            order.push(pfn);
        }
    }
    let parsed_trace = parse_trace(trace.text, trace.name)?;
    let rec = parse_recording(recording.text, recording.name, &device)?;

    let mut gt = GroundTruth {
        mode: mode.to_string(),
        slack_ns,
        pfns: order.iter().map(|p| hex(*p)).collect(),
        observations: 0,
        matched: 0,
        mismatched: 0,
        before_truth: 0,
        match_rate: 1.0,
        max_slack_used_ns: 0,
        truth_events: 0,
        truth_gets: 0,
        seen_gets: rec.seen_gets,
        truth_puts: 0,
        seen_puts: rec.seen_puts,
        truth_sets: 0,
        truth_lost: parsed_trace.lost,
        truth_lost_unknown: parsed_trace.lost_unknown,
        truth_overwritten: parsed_trace.overwritten,
        truth_failed_unless: 0,
        truth_other_pfns: 0,
        seen_events: rec.seen_events,
        seen_other_pfns: rec.other_pfn_events,
        unseen_pfns: Vec::new(),
        seen_dropped: rec.dropped,
        recording_truncated: rec.truncated_line.is_some(),
        trace_truncated: parsed_trace.truncated_line.is_some(),
        notes: Vec::new(),
        per_pfn: Vec::new(),
        mismatches: Vec::new(),
    };

    let mut timelines: BTreeMap<u64, Vec<TruthEvent>> =
        device.iter().map(|&pfn| (pfn, Vec::new())).collect();
    // Every PFN with a truth event that changed something, in the set or not.
    let mut truth_pfns = BTreeSet::new();
    for ev in parsed_trace.events {
        let failed_unless = ev.op == RefOp::ModUnless && ev.ret == Some(0);
        if !failed_unless {
            truth_pfns.insert(ev.pfn);
        }
        if !device.contains(&ev.pfn) {
            gt.truth_other_pfns += 1;
            continue;
        }
        if failed_unless {
            gt.truth_failed_unless += 1;
            continue;
        }
        gt.truth_events += 1;
        if ev.op.is_mod() {
            if ev.val > 0 {
                gt.truth_gets += 1;
            } else if ev.val < 0 {
                gt.truth_puts += 1;
            }
        } else {
            gt.truth_sets += 1;
        }
        if let Some(tl) = timelines.get_mut(&ev.pfn) {
            tl.push(ev);
        }
    }
    for tl in timelines.values_mut() {
        // Stable: events printed in the same microsecond keep file order.
        tl.sort_by_key(|e| e.ts_ns);
    }

    let mut per_pfn: BTreeMap<u64, PfnSummary> = timelines
        .iter()
        .map(|(&pfn, tl)| {
            let seen = rec.per_pfn.get(&pfn).copied().unwrap_or_default();
            let mods = |sign: i64| {
                tl.iter()
                    .filter(|e| e.op.is_mod() && e.val.signum() == sign)
                    .count() as u64
            };
            let summary = PfnSummary {
                pfn: hex(pfn),
                truth_events: tl.len() as u64,
                truth_gets: mods(1),
                truth_puts: mods(-1),
                seen_events: seen.events,
                seen_gets: seen.gets,
                seen_puts: seen.puts,
                last_seen: rec
                    .observations
                    .iter()
                    .rev()
                    .find(|o| o.pfn == pfn)
                    .map(|o| o.value),
                start_count: tl.first().and_then(TruthEvent::count_before),
                first_truth: tl.first().map(TruthEvent::point),
                last_truth: tl.last().map(TruthEvent::point),
                observations: 0,
                matched: 0,
                mismatched: 0,
                before_truth: 0,
            };
            (pfn, summary)
        })
        .collect();

    // One cursor per PFN; the observations come in recording order.
    let mut cursors: BTreeMap<u64, Cursor<'_>> = timelines
        .iter()
        .map(|(&pfn, tl)| (pfn, Cursor::new(tl, slack_ns)))
        .collect();
    for obs in &rec.observations {
        // Observations are of device PFNs only, and each has a timeline.
        let Some(cur) = cursors.get_mut(&obs.pfn) else {
            continue;
        };
        let verdict = cur.observe(obs.ts_ns, obs.value);
        gt.observations += 1;
        let summary = per_pfn.get_mut(&obs.pfn);
        match verdict {
            Verdict::Matched { slack_used } => {
                gt.matched += 1;
                gt.max_slack_used_ns = gt.max_slack_used_ns.max(slack_used);
            }
            Verdict::BeforeTruth => gt.before_truth += 1,
            Verdict::Mismatched => {
                gt.mismatched += 1;
                if gt.mismatches.len() < MAX_MISMATCHES {
                    gt.mismatches.push(cur.mismatch(obs));
                }
            }
        }
        if let Some(s) = summary {
            s.observations += 1;
            match verdict {
                Verdict::Matched { .. } => s.matched += 1,
                Verdict::BeforeTruth => s.before_truth += 1,
                Verdict::Mismatched => s.mismatched += 1,
            }
        }
    }
    let judged = gt.observations - gt.before_truth;
    gt.match_rate = if judged == 0 {
        1.0
    } else {
        gt.matched as f64 / judged as f64
    };
    gt.per_pfn = order.iter().filter_map(|pfn| per_pfn.remove(pfn)).collect();
    gt.unseen_pfns = truth_pfns
        .iter()
        .filter(|pfn| {
            if device.contains(pfn) {
                rec.per_pfn.get(pfn).is_none_or(|s| s.events == 0)
            } else {
                !rec.other_pfns.contains(pfn)
            }
        })
        .map(|pfn| hex(*pfn))
        .collect();
    gt.notes = notes(
        &gt,
        parsed_trace.truncated_line,
        rec.truncated_line,
        trace,
        recording,
    );
    Ok(gt)
}

fn notes(
    gt: &GroundTruth,
    trace_cut: Option<usize>,
    recording_cut: Option<usize>,
    trace: Named<'_>,
    recording: Named<'_>,
) -> Vec<String> {
    let mut notes = Vec::new();
    if gt.pfns.is_empty() {
        notes.push("no device PFN: nothing to compare".to_string());
    } else if gt.truth_events == 0 {
        notes.push(format!(
            "{} has no page_ref event of a device PFN: were the events enabled and the filter right?",
            trace.name
        ));
    }
    if let Some(line) = recording_cut {
        notes.push(format!(
            "{} line {line} was cut short (refwatch stopped mid-write) and is skipped",
            recording.name
        ));
    }
    if let Some(line) = trace_cut {
        notes.push(format!(
            "{} line {line} was cut short and is skipped",
            trace.name
        ));
    }
    if gt.truth_lost > 0 || gt.truth_lost_unknown > 0 {
        notes.push(format!(
            "the trace lost events ({} counted, {} lines without a count): the truth has gaps and mismatches near them are expected",
            gt.truth_lost, gt.truth_lost_unknown
        ));
    }
    if gt.truth_overwritten > 0 {
        notes.push(format!(
            "the trace ring buffer overwrote {} events: the earliest truth is missing; use a larger buffer_size_kb",
            gt.truth_overwritten
        ));
    }
    if gt.seen_dropped > 0 {
        notes.push(format!(
            "refwatch itself dropped {} events",
            gt.seen_dropped
        ));
    }
    if !gt.unseen_pfns.is_empty() {
        notes.push(format!(
            "{} pages changed in the trace have no event in {}: {}",
            gt.unseen_pfns.len(),
            recording.name,
            gt.unseen_pfns.join(" ")
        ));
    }
    notes
}

fn hex(pfn: u64) -> String {
    format!("{pfn:#x}")
}

/// `0x`-prefixed hex or decimal.
fn parse_u64(s: &str) -> Result<u64> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    parsed.with_context(|| format!("{s:?} is not a number"))
}

/// Index of the last line holding more than whitespace.
fn last_nonempty_line(text: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, _)| i)
        .last()
}

// ---------------------------------------------------------------- trace --

/// The `page_ref` tracepoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefOp {
    Set,
    Mod,
    ModAndTest,
    ModAndReturn,
    ModUnless,
    Freeze,
    Unfreeze,
}

impl RefOp {
    const ALL: [RefOp; 7] = [
        RefOp::Set,
        RefOp::Mod,
        RefOp::ModAndTest,
        RefOp::ModAndReturn,
        RefOp::ModUnless,
        RefOp::Freeze,
        RefOp::Unfreeze,
    ];

    fn name(self) -> &'static str {
        match self {
            RefOp::Set => "page_ref_set",
            RefOp::Mod => "page_ref_mod",
            RefOp::ModAndTest => "page_ref_mod_and_test",
            RefOp::ModAndReturn => "page_ref_mod_and_return",
            RefOp::ModUnless => "page_ref_mod_unless",
            RefOp::Freeze => "page_ref_freeze",
            RefOp::Unfreeze => "page_ref_unfreeze",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Events of the `page_ref_mod_and_test_template` class print `ret=`.
    fn has_ret(self) -> bool {
        matches!(
            self,
            RefOp::ModAndTest | RefOp::ModAndReturn | RefOp::ModUnless | RefOp::Freeze
        )
    }

    /// `val` is a signed change of the count (a get or a put).
    fn is_mod(self) -> bool {
        matches!(
            self,
            RefOp::Mod | RefOp::ModAndTest | RefOp::ModAndReturn | RefOp::ModUnless
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TruthEvent {
    ts_ns: u64,
    pfn: u64,
    op: RefOp,
    /// The count after the operation.
    count: i64,
    val: i64,
    ret: Option<i64>,
}

impl TruthEvent {
    /// The count the operation started from, when the line tells it.
    fn count_before(&self) -> Option<i64> {
        match self.op {
            RefOp::Set => None,
            RefOp::Freeze if self.ret == Some(0) => Some(self.count),
            RefOp::Freeze => Some(self.val),
            RefOp::Unfreeze => Some(0),
            RefOp::Mod | RefOp::ModAndTest | RefOp::ModAndReturn | RefOp::ModUnless => {
                Some(self.count - self.val)
            }
        }
    }

    fn point(&self) -> TruthPoint {
        TruthPoint {
            ts_ns: self.ts_ns,
            count: self.count,
            event: self.op.name().to_string(),
            val: self.val,
            ret: self.ret,
        }
    }
}

#[derive(Debug, Default)]
struct ParsedTrace {
    events: Vec<TruthEvent>,
    lost: u64,
    lost_unknown: u64,
    overwritten: u64,
    /// 1-based line number of a cut-short last line.
    truncated_line: Option<usize>,
}

fn parse_trace(text: &str, name: &str) -> Result<ParsedTrace> {
    let mut out = ParsedTrace::default();
    let last = last_nonempty_line(text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('#') {
            out.overwritten += overwritten_in_header(header).unwrap_or(0);
            continue;
        }
        if let Some(lost) = lost_events(line) {
            match lost {
                Some(n) => out.lost += n,
                None => out.lost_unknown += 1,
            }
            continue;
        }
        match parse_trace_line(line) {
            Ok(Some(ev)) => out.events.push(ev),
            // Another tracepoint, or a page_ref event this kernel has and
            // this module does not know.
            Ok(None) => {}
            Err(_) if Some(i) == last => out.truncated_line = Some(i + 1),
            Err(e) => return Err(e.context(format!("{name} line {}: {line:?}", i + 1))),
        }
    }
    Ok(out)
}

/// `entries-in-buffer/entries-written: E/W   #P:n` gives `W - E`.
fn overwritten_in_header(header: &str) -> Option<u64> {
    let rest = header
        .trim()
        .strip_prefix("entries-in-buffer/entries-written:")?;
    let (entries, written) = rest.split_whitespace().next()?.split_once('/')?;
    let entries: u64 = entries.parse().ok()?;
    let written: u64 = written.parse().ok()?;
    Some(written.saturating_sub(entries))
}

/// `CPU:N [LOST n EVENTS]` gives `Some(Some(n))`, `CPU:N [LOST EVENTS]`
/// `Some(None)`, anything else `None`.
fn lost_events(line: &str) -> Option<Option<u64>> {
    let rest = line.strip_prefix("CPU:")?;
    let (_cpu, rest) = rest.split_once(' ')?;
    let inner = rest
        .trim()
        .strip_prefix("[LOST")?
        .strip_suffix("EVENTS]")?
        .trim();
    Some(inner.parse().ok())
}

/// One event line; `Ok(None)` when it is not a known `page_ref` event.
fn parse_trace_line(line: &str) -> Result<Option<TruthEvent>> {
    // The task name comes first and may hold anything, the event's own text
    // never holds ": page_ref_": take the last one.
    let Some(at) = line.rfind(": page_ref_") else {
        return Ok(None);
    };
    let Some((name, fields)) = line[at + 2..].split_once(':') else {
        bail!("no ':' after the event name");
    };
    let Some(op) = RefOp::from_name(name) else {
        return Ok(None);
    };
    let Some(ts) = line[..at].split_whitespace().last() else {
        bail!("no timestamp");
    };
    let ts_ns = parse_trace_ts(ts)?;
    let fields: Vec<(&str, &str)> = fields
        .split_whitespace()
        .filter_map(|tok| tok.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect();
    let field = |key: &str| -> Result<&str> {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .with_context(|| format!("{name} without {key}="))
    };
    let int = |key: &str| -> Result<i64> {
        let v = field(key)?;
        v.parse()
            .with_context(|| format!("{name}: {key}={v} is not a number"))
    };
    let pfn = parse_u64(field("pfn")?).with_context(|| format!("{name}: pfn"))?;
    Ok(Some(TruthEvent {
        ts_ns,
        pfn,
        op,
        count: int("count")?,
        val: int("val")?,
        ret: if op.has_ret() {
            Some(int("ret")?)
        } else {
            None
        },
    }))
}

/// `secs.micros` (tracefs with a clock such as `mono`) in nanoseconds.
fn parse_trace_ts(tok: &str) -> Result<u64> {
    let Some((secs, frac)) = tok.split_once('.') else {
        bail!("timestamp {tok:?} is not seconds.micros: was trace_clock a counter? set it to mono");
    };
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        bail!("timestamp {tok:?} is not seconds.micros");
    }
    let secs: u64 = secs
        .parse()
        .with_context(|| format!("timestamp {tok:?} is not seconds.micros"))?;
    // At most 9 digits: fits, and scales to nanoseconds.
    let scale = 10u64.pow(9 - frac.len() as u32);
    let frac: u64 = frac.parse()?;
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(frac * scale))
        .with_context(|| format!("timestamp {tok:?} is out of range"))
}

// ------------------------------------------------------------ recording --

#[derive(Debug, Clone, PartialEq)]
struct Observation {
    /// 1-based line of the recording.
    line: usize,
    ts_ns: u64,
    pfn: u64,
    value: i64,
    field: &'static str,
    event: String,
    symbol: Option<String>,
}

/// One set PFN's recording events.
#[derive(Debug, Default, Clone, Copy)]
struct SeenPfn {
    events: u64,
    gets: u64,
    puts: u64,
}

#[derive(Debug, Default)]
struct ParsedRecording {
    observations: Vec<Observation>,
    seen_events: u64,
    seen_gets: u64,
    seen_puts: u64,
    per_pfn: BTreeMap<u64, SeenPfn>,
    other_pfn_events: u64,
    /// The PFNs outside the set that have recording events.
    other_pfns: BTreeSet<u64>,
    dropped: u64,
    truncated_line: Option<usize>,
}

fn parse_recording(text: &str, name: &str, device: &BTreeSet<u64>) -> Result<ParsedRecording> {
    let mut out = ParsedRecording::default();
    let last = last_nonempty_line(text);
    let mut header_seen = false;
    let mut compact = Compact::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if header_seen && Some(i) == last => {
                out.truncated_line = Some(n);
                break;
            }
            Err(e) if !header_seen => {
                bail!("{name} line {n}: not a refwatch recording (no JSON header): {e}")
            }
            Err(e) => bail!("{name} line {n} is corrupt: {e}"),
        };
        let kind = value.get("type").and_then(Value::as_str);
        if !header_seen {
            if kind != Some("header") {
                bail!(
                    "{name} line {n}: not a refwatch recording (the first line is not {{\"type\":\"header\",...}})"
                );
            }
            header_seen = true;
            compact.prev_ts = value["started_ns"].as_u64().unwrap_or(0);
            continue;
        }
        if let Some(items) = value.as_array() {
            if let Some(ev) = compact
                .line(items)
                .with_context(|| format!("{name} line {n}"))?
            {
                out.event(&ev, n, name, device)?;
            }
            continue;
        }
        match kind {
            Some("event") => out.event(&value, n, name, device)?,
            Some("tick" | "end") => {
                if let Some(d) = value.get("dropped").and_then(Value::as_u64) {
                    out.dropped = out.dropped.max(d);
                }
            }
            // A second header, or line types of a later version.
            _ => {}
        }
    }
    if !header_seen {
        bail!("{name} is empty: not a refwatch recording");
    }
    Ok(out)
}

/// The tables of a version 2 recording (refwatch's
/// `format/recording/compact.rs`), as far as the comparison needs them: the
/// time, PFN, kind, counts and function of each event, rebuilt as the
/// version 1 event object.
#[derive(Debug, Default)]
struct Compact {
    prev_ts: u64,
    functions: BTreeMap<u64, String>,
}

/// The stable event names by `refwatch_common::kind` number.
const KIND_NAMES: [&str; 13] = [
    "?",
    "get",
    "put",
    "pin",
    "unpin",
    "free",
    "migrate",
    "layout_wait",
    "set",
    "pgmap_add",
    "pgmap_remove",
    "fork",
    "snapshot",
];

impl Compact {
    /// A compact line: `None` for a table entry, the event otherwise.
    fn line(&mut self, items: &[Value]) -> Result<Option<Value>> {
        match items.first() {
            Some(Value::String(tag)) => {
                match (
                    tag.as_str(),
                    items.get(1).and_then(Value::as_u64),
                    items.get(2),
                ) {
                    ("f", Some(id), Some(Value::String(f))) => {
                        self.functions.insert(id, f.clone());
                    }
                    ("r", ..) => self.functions.clear(),
                    _ => {}
                }
                Ok(None)
            }
            Some(Value::Number(dt)) => {
                let num = |i: usize| items.get(i).and_then(Value::as_u64);
                let dt = dt.as_u64().context("a time delta")?;
                // Zigzag: 2n for n ≥ 0, −2n − 1 below.
                let dt = ((dt >> 1) as i64) ^ -((dt & 1) as i64);
                let ts = self
                    .prev_ts
                    .checked_add_signed(dt)
                    .context("a time out of range")?;
                self.prev_ts = ts;
                let kind = num(2).context("an event kind")? as usize;
                let function = num(8)
                    .and_then(|f| self.functions.get(&f))
                    .cloned()
                    .context("an undefined function")?;
                Ok(Some(serde_json::json!({
                    "ts_ns": ts,
                    "pfn": num(1).context("a PFN")?,
                    "event": KIND_NAMES.get(kind).copied().unwrap_or("?"),
                    "refcount_before": items.get(3),
                    "refcount_after": items.get(4),
                    "symbol": function,
                })))
            }
            _ => Ok(None),
        }
    }
}

impl ParsedRecording {
    fn event(&mut self, v: &Value, n: usize, name: &str, device: &BTreeSet<u64>) -> Result<()> {
        let num = |key: &str| -> Result<u64> {
            v.get(key)
                .and_then(Value::as_u64)
                .with_context(|| format!("{name} line {n}: an event without a numeric {key}"))
        };
        let ts_ns = num("ts_ns")?;
        let pfn = num("pfn")?;
        if !device.contains(&pfn) {
            self.other_pfn_events += 1;
            self.other_pfns.insert(pfn);
            return Ok(());
        }
        let event = v
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        self.seen_events += 1;
        let seen = self.per_pfn.entry(pfn).or_default();
        seen.events += 1;
        match event.as_str() {
            "get" | "pin" => {
                self.seen_gets += 1;
                seen.gets += 1;
            }
            "put" | "unpin" => {
                self.seen_puts += 1;
                seen.puts += 1;
            }
            _ => {}
        }
        let symbol = v.get("symbol").and_then(Value::as_str).map(str::to_string);
        for field in ["refcount_before", "refcount_after"] {
            if let Some(value) = v.get(field).and_then(Value::as_i64) {
                self.observations.push(Observation {
                    line: n,
                    ts_ns,
                    pfn,
                    value,
                    field,
                    event: event.clone(),
                    symbol: symbol.clone(),
                });
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------- matching --

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// `slack_used`: how far the observation lay outside the own span of the
    /// nearest plausible state (from the cursor on) with its count.
    Matched {
        slack_used: u64,
    },
    Mismatched,
    BeforeTruth,
}

/// One PFN's truth states `s_0 .. s_n` and the cursor of the ordered match
/// (see the module docs).
#[derive(Debug, Clone)]
struct Cursor<'a> {
    /// The PFN's truth events sorted by time: `s_j` (`j >= 1`) is the count
    /// after `tl[j - 1]`, `T_j` its timestamp.
    tl: &'a [TruthEvent],
    /// `s_0`, when known.
    start: Option<i64>,
    slack: u64,
    /// `c`: the state the last matched observation matched.
    state: usize,
}

impl<'a> Cursor<'a> {
    fn new(tl: &'a [TruthEvent], slack: u64) -> Self {
        Self {
            tl,
            start: tl.first().and_then(TruthEvent::count_before),
            slack,
            state: 0,
        }
    }

    /// The count of `s_j`.
    fn count(&self, j: usize) -> Option<i64> {
        match j {
            0 => self.start,
            _ => Some(self.tl[j - 1].count),
        }
    }

    /// `T_j`, when `s_j` began; none for `s_0`.
    fn since(&self, j: usize) -> Option<u64> {
        j.checked_sub(1).map(|i| self.tl[i].ts_ns)
    }

    /// `T_j+1 + 999 ns`, the last instant `s_j` may have held; none for `s_n`.
    fn until(&self, j: usize) -> Option<u64> {
        self.tl
            .get(j)
            .map(|e| e.ts_ns.saturating_add(TRUTH_RESOLUTION_NS - 1))
    }

    /// The states from the cursor on that are plausible at `t`: `s_j` with
    /// `j >= c` and `T_j - S <= t <= T_j+1 + 999 ns + S`. Both bounds grow
    /// with `j` (the events are sorted), so these form a range.
    fn plausible(&self, t: u64) -> Range<usize> {
        let (c, s) = (self.state, self.slack);
        // Skip the states that ended, slack included, before `t`; `tl[j]`
        // ends `s_j`, and `s_n` never ends.
        let lo = c + self.tl[c..].partition_point(|e| {
            e.ts_ns
                .saturating_add(TRUTH_RESOLUTION_NS - 1)
                .saturating_add(s)
                < t
        });
        // Keep the states that began, slack included, by `t`: `s_0` always,
        // `s_j` when `T_j - S <= t` (`tl[j - 1]` begins `s_j`).
        let k = c.max(1);
        let hi = k + self.tl[k - 1..].partition_point(|e| e.ts_ns.saturating_sub(s) <= t);
        lo..hi.max(lo)
    }

    /// How far `t` lies outside `s_j`'s own span `[T_j, T_j+1 + 999 ns]`.
    fn slack_used(&self, j: usize, t: u64) -> u64 {
        let early = self.since(j).map_or(0, |since| since.saturating_sub(t));
        let late = self.until(j).map_or(0, |until| t.saturating_sub(until));
        early.max(late)
    }

    /// Judges the observation `(t, v)` and moves the cursor on a match.
    fn observe(&mut self, t: u64, v: i64) -> Verdict {
        let plausible = self.plausible(t);
        let first = plausible.clone().find(|&j| self.count(j) == Some(v));
        // The cursor still at an unknown start that may hold at `t`: it may
        // be `v` too, and takes the observation from a later state that
        // lies further from `t`; `s_1`, which it became, keeps priority.
        let unknown_start = self.state == 0 && self.start.is_none() && plausible.start == 0;
        match first {
            Some(j)
                if !unknown_start || j == 1 || self.slack_used(j, t) <= self.slack_used(0, t) =>
            {
                self.state = j;
                // The stamping difference: to the nearest state with `v`
                // (the first one may be an earlier one of the same count).
                let slack_used = plausible
                    .filter(|&k| self.count(k) == Some(v))
                    .map(|k| self.slack_used(k, t))
                    .min()
                    .unwrap_or(0);
                Verdict::Matched { slack_used }
            }
            _ if unknown_start => Verdict::BeforeTruth,
            _ => Verdict::Mismatched,
        }
    }

    /// The details of a mismatched observation (the cursor did not move).
    fn mismatch(&self, obs: &Observation) -> Mismatch {
        let mut counts = Vec::new();
        for j in self.plausible(obs.ts_ns) {
            if let Some(n) = self.count(j)
                && counts.last() != Some(&n)
            {
                counts.push(n);
            }
        }
        let p = self.tl.partition_point(|e| e.ts_ns <= obs.ts_ns);
        Mismatch {
            pfn: hex(obs.pfn),
            ts_ns: obs.ts_ns,
            value: obs.value,
            field: obs.field.to_string(),
            event: obs.event.clone(),
            symbol: obs.symbol.clone(),
            line: obs.line,
            cursor: StateRef {
                index: self.state,
                count: self.count(self.state),
                since_ns: self.since(self.state),
            },
            plausible_counts: counts,
            prev: p.checked_sub(1).map(|i| self.tl[i].point()),
            next: self.tl.get(p).map(TruthEvent::point),
        }
    }
}

#[cfg(test)]
mod tests {
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

    use super::*;

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
    fn rec_event(
        ts_ns: u64,
        pfn: u64,
        event: &str,
        before: Option<i32>,
        after: Option<i32>,
    ) -> String {
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
        let gt =
            compare(&t, &recording(&[]), &[PFN], "precise", DEFAULT_SLACK_NS).expect("compare");
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
        let err =
            compare(&trace(&tr), &rec, &[PFN], "precise", DEFAULT_SLACK_NS).expect_err("corrupt");
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
        let err = compare(&trace(&tr), &format!("{full}\n"), &[PFN], "precise", 1)
            .expect_err("no header");
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
        let mut rec =
            recording(&[rec_event(1_000 * US, PFN, "get", Some(1), Some(2))]).into_bytes();
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
}
