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
    /// The hardware watchpoints' share (`+watch` scenarios: refwatch
    /// listed its armed pages in `watch-ready`), see [`watch`]. The
    /// watchpoint's events take no part in the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<watch::WatchTruth>,
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
        None,
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
    let ready_path = dir.join(watch::READY_FILE);
    let armed = if ready_path.exists() {
        Some(watch::parse_ready(&read_text(
            &ready_path,
            "refwatch's list of watched pages",
        )?)?)
    } else {
        None
    };
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
        armed.as_deref(),
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
    armed: Option<&[(u64, u64)]>,
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
    let watch = armed.map(|a| watch::compare(&parsed_trace.events, &rec.watch_hits, a));

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
        watch,
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

mod cursor;
mod recording;
#[cfg(test)]
mod tests;
mod trace;
pub mod watch;

use cursor::*;
use recording::*;
use trace::*;
