//! `+metrics` scenarios: refwatch's `/metrics` endpoint as the guest
//! scraped it during the hold (`metrics.during-hold`, with the recording
//! and JSON lines copied right after) and once the workload ended
//! (`metrics.after`), checked against the report of the same run; and the
//! holder's cgroup (the workload runs in [`METRICS_CGROUP`]) in the report
//! and the JSON lines.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{read_events, read_workload};
use crate::lab::scenarios::METRICS_CGROUP;

/// One sample of the text: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of an OpenMetrics text (which must end with `# EOF`).
pub fn parse(text: &str) -> Result<Vec<Sample>> {
    if text.lines().last() != Some("# EOF") {
        bail!("the text does not end with # EOF");
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let bad = || format!("line {}: {line:?}", i + 1);
        let (series, value) = line.rsplit_once(' ').with_context(bad)?;
        let value: f64 = value.parse().with_context(bad)?;
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').with_context(bad)?),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Label values here never hold `",` (comms could: the checks only
        // compare what the workload names).
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").with_context(bad)?;
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.push(Sample {
            name: name.to_string(),
            labels: map,
            value,
        });
    }
    Ok(out)
}

fn of<'a>(samples: &'a [Sample], name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
    samples.iter().filter(move |s| s.name == name)
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    of(samples, name).map(|s| s.value).sum()
}

/// `{label value: sample value}` of one family.
fn by(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for s in of(samples, name) {
        *m.entry(s.labels.get(label).cloned().unwrap_or_default())
            .or_insert(0.0) += s.value;
    }
    m
}

fn report_of(refwatch: &Path, recording: &Path) -> Result<Value> {
    let out = Command::new(refwatch)
        .arg("report")
        .arg("--json")
        .arg(recording)
        .output()
        .context("run refwatch report")?;
    if !out.status.success() {
        bail!(
            "refwatch report {} failed: {}",
            recording.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("refwatch report --json")
}

/// Events refwatch read from the ring (not its own `snapshot` reads) by
/// kind, from JSON lines, those up to `until` ns only when given.
fn ring_events(path: &Path, until: Option<u64>) -> Result<BTreeMap<String, f64>> {
    let mut m = BTreeMap::new();
    for e in read_events(path)? {
        if e.event != "snapshot" && until.is_none_or(|u| e.ts <= u) {
            *m.entry(e.event).or_insert(0.0) += 1.0;
        }
    }
    Ok(m)
}

/// Open episodes of a report by detector, and their holders' comms.
fn open_episodes(report: &Value) -> (BTreeMap<String, f64>, BTreeSet<u64>, BTreeSet<String>) {
    let mut by_detector = BTreeMap::new();
    let mut pfns = BTreeSet::new();
    let mut comms = BTreeSet::new();
    for e in report["episodes"].as_array().into_iter().flatten() {
        if !e["end_ns"].is_null() {
            continue;
        }
        *by_detector
            .entry(e["detector"].as_str().unwrap_or_default().to_string())
            .or_insert(0.0) += 1.0;
        pfns.extend(e["pfn"].as_u64());
        for h in e["holders"].as_array().into_iter().flatten() {
            comms.extend(h["comm"].as_str().map(str::to_string));
        }
    }
    (by_detector, pfns, comms)
}

/// Events seen by kind must lie between `low` (what happened before the
/// scrape) and `high` (what the JSON lines had right after it).
fn events_between(
    what: &str,
    seen: &BTreeMap<String, f64>,
    low: &BTreeMap<String, f64>,
    high: &BTreeMap<String, f64>,
    bad: &mut Vec<String>,
) {
    let kinds: BTreeSet<&String> = seen.keys().chain(low.keys()).chain(high.keys()).collect();
    for k in kinds {
        let s = seen.get(k).copied().unwrap_or(0.0);
        let (l, h) = (
            low.get(k).copied().unwrap_or(0.0),
            high.get(k).copied().unwrap_or(0.0),
        );
        if s < l || s > h {
            bad.push(format!(
                "{what}: refwatch_events_seen_total{{kind=\"{k}\"}} = {s}, not within the {l} events of the JSON lines before the scrape and the {h} in them right after"
            ));
        }
    }
}

fn lossless(what: &str, m: &[Sample], bad: &mut Vec<String>) {
    let lost = by(m, "refwatch_events_lost_total", "reason");
    // Every reason is published from the start; the run has no --max-rate.
    let want: BTreeSet<&str> = ["ring_full", "inflight_full", "rate_cap"].into();
    if lost.keys().map(String::as_str).collect::<BTreeSet<_>>() != want
        || lost.values().any(|v| *v != 0.0)
    {
        bad.push(format!(
            "{what}: refwatch_events_lost_total is {lost:?}, want 0 for ring_full, inflight_full and rate_cap"
        ));
    }
}

fn process_plausible(what: &str, m: &[Sample], bad: &mut Vec<String>) -> (f64, f64) {
    let cpu = sum(m, "process_cpu_seconds_total");
    let rss = sum(m, "process_resident_memory_bytes");
    if !(cpu > 0.0 && cpu < 3600.0) {
        bad.push(format!(
            "{what}: process_cpu_seconds_total = {cpu}, not within (0, 3600)"
        ));
    }
    if !((1u64 << 20) as f64..(2u64 << 30) as f64).contains(&rss) {
        bad.push(format!(
            "{what}: process_resident_memory_bytes = {rss}, not within 1 MiB .. 2 GiB"
        ));
    }
    (cpu, rss)
}

/// The container id [`METRICS_CGROUP`] names.
fn lab_container() -> &'static str {
    METRICS_CGROUP
        .rsplit_once("docker-")
        .and_then(|(_, id)| id.strip_suffix(".scope"))
        .unwrap_or_default()
}

pub fn check_metrics(refwatch: &Path, dir: &Path) -> Result<Vec<String>> {
    let w = read_workload(dir)?;
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).with_context(|| format!("read {f} (the scrape)"))
    };
    let during = parse(&read("metrics.during-hold")?).context("metrics.during-hold")?;
    let after = parse(&read("metrics.after")?).context("metrics.after")?;
    let report_during = report_of(refwatch, &dir.join("recording.during-hold"))?;
    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    let mut bad = Vec::new();
    let held = w.pfns.len() as f64;
    let pfns: BTreeSet<u64> = w.pfns.iter().copied().collect();

    // During the hold: the held pages are stuck, as the report of the
    // recording copied then says, held by the workload.
    let (open, open_pfns, comms) = open_episodes(&report_during);
    let stuck = by(&during, "refwatch_pages_stuck", "detector");
    if stuck != open {
        bad.push(format!(
            "during the hold: refwatch_pages_stuck by detector {stuck:?}, the report of the recording then {open:?}"
        ));
    }
    if open_pfns != pfns {
        bad.push(format!(
            "during the hold: the report's stuck pages {open_pfns:x?} are not the workload's {pfns:x?}"
        ));
    }
    if of(&during, "refwatch_pages_stuck")
        .any(|s| s.labels.get("pgmap_type").map(String::as_str) != Some("fsdax"))
    {
        bad.push("during the hold: stuck pages of a type other than fsdax".into());
    }
    let holders = by(&during, "refwatch_holder_stuck_pages", "comm");
    let want_holders: BTreeMap<String, f64> = comms.iter().map(|c| (c.clone(), held)).collect();
    if holders != want_holders || !comms.contains("workload") {
        bad.push(format!(
            "during the hold: refwatch_holder_stuck_pages {holders:?}, want the {held} held pages under each holder the report names ({comms:?}, the workload among them)"
        ));
    }
    let tracked = sum(&during, "refwatch_pages_tracked");
    if tracked < held {
        bad.push(format!(
            "during the hold: refwatch_pages_tracked = {tracked}, fewer than the {held} held pages"
        ));
    }
    let oldest = sum(&during, "refwatch_stuck_oldest_seconds");
    let limit = w.hold_secs as f64 + 60.0;
    if !(oldest >= f64::from(crate::lab::scenarios::DETECTOR_SECS) && oldest < limit) {
        bad.push(format!(
            "during the hold: refwatch_stuck_oldest_seconds = {oldest}, not within the detectors' threshold and {limit} s"
        ));
    }
    let opened = sum(&during, "refwatch_episodes_opened_total");
    let closed = sum(&during, "refwatch_episodes_closed_total");
    let open_now: f64 = stuck.values().sum();
    if opened - closed != open_now {
        bad.push(format!(
            "during the hold: {opened} episodes opened, {closed} closed, but {open_now} open"
        ));
    }
    let seen_during = by(&during, "refwatch_events_seen_total", "kind");
    let recorded = report_during["events"].as_f64().unwrap_or(0.0);
    if seen_during.values().sum::<f64>() > recorded {
        bad.push(format!(
            "during the hold: {} events seen, more than the {recorded} of the recording copied right after",
            seen_during.values().sum::<f64>()
        ));
    }
    events_between(
        "during the hold",
        &seen_during,
        &ring_events(&dir.join("events.jsonl"), Some(w.mark("hold_start")?))?,
        &ring_events(&dir.join("events.during-hold.jsonl"), None)?,
        &mut bad,
    );
    lossless("during the hold", &during, &mut bad);
    let (cpu_during, rss_during) = process_plausible("during the hold", &during, &mut bad);

    // After: nothing stuck, every episode closed, every event counted.
    // `+ 0.0`: an empty sum is -0.0.
    let stuck_after = sum(&after, "refwatch_pages_stuck") + 0.0;
    if stuck_after != 0.0 || of(&after, "refwatch_holder_stuck_pages").next().is_some() {
        bad.push(format!(
            "after the workload: {stuck_after} stuck pages, holders {:?}",
            by(&after, "refwatch_holder_stuck_pages", "comm")
        ));
    }
    let episodes = report["episodes"].as_array().map_or(0, Vec::len) as f64
        + report["episodes_dropped"].as_f64().unwrap_or(0.0);
    let opened_after = sum(&after, "refwatch_episodes_opened_total");
    let closed_after = sum(&after, "refwatch_episodes_closed_total");
    if opened_after != episodes || closed_after != episodes {
        bad.push(format!(
            "after the workload: {opened_after} episodes opened and {closed_after} closed, the report has {episodes}"
        ));
    }
    let last_mark = w.marks.values().copied().max().unwrap_or(0);
    let seen_after = by(&after, "refwatch_events_seen_total", "kind");
    events_between(
        "after the workload",
        &seen_after,
        &ring_events(&dir.join("events.jsonl"), Some(last_mark))?,
        &ring_events(&dir.join("events.jsonl"), None)?,
        &mut bad,
    );
    lossless("after the workload", &after, &mut bad);
    let (cpu_after, _) = process_plausible("after the workload", &after, &mut bad);
    if cpu_after < cpu_during {
        bad.push(format!(
            "process_cpu_seconds_total went back from {cpu_during} to {cpu_after}"
        ));
    }

    // The holder's cgroup, as the kernel says it, and its container.
    let container = lab_container();
    let mut named = 0;
    for e in report["episodes"].as_array().into_iter().flatten() {
        for h in e["holders"].as_array().into_iter().flatten() {
            if h["comm"] != "workload" {
                continue;
            }
            named += 1;
            if h["cgroup"] != METRICS_CGROUP || h["container"] != container {
                bad.push(format!(
                    "report: holder workload pid {} has cgroup {} container {}, want {METRICS_CGROUP} and {container}",
                    h["pid"], h["cgroup"], h["container"]
                ));
                break;
            }
        }
    }
    if named == 0 {
        bad.push("report: no holder named workload".into());
    }
    let jsonl = std::fs::read_to_string(dir.join("events.jsonl"))?;
    let (mut in_cgroup, mut of_workload) = (0, 0);
    for l in jsonl.lines() {
        let v: Value = serde_json::from_str(l)?;
        if v["comm"] == "workload" {
            of_workload += 1;
            in_cgroup += usize::from(v["cgroup"] == METRICS_CGROUP);
        }
    }
    if of_workload == 0 || in_cgroup != of_workload {
        bad.push(format!(
            "events.jsonl: {in_cgroup} of the workload's {of_workload} events carry its cgroup"
        ));
    }
    println!(
        "    metrics during the hold: {} stuck ({stuck:?}), holders {holders:?}, oldest {oldest:.1} s, {} events seen, {} lost; after: {} stuck, {opened_after} episodes opened and closed, {} events seen; refwatch {cpu_after:.2} s CPU, {:.1} MiB resident; {named} holder(s) in {container:.12}…",
        open_now,
        seen_during.values().sum::<f64>(),
        sum(&during, "refwatch_events_lost_total"),
        stuck_after,
        seen_after.values().sum::<f64>(),
        rss_during / f64::from(1u32 << 20),
    );
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::{lab_container, parse};

    #[test]
    fn openmetrics_text_parses_into_samples() {
        // As refwatch renders it (synthetic values).
        let text = "# HELP refwatch_pages_stuck Device pages a detector flags now.\n\
                    # TYPE refwatch_pages_stuck gauge\n\
                    refwatch_pages_stuck{pgmap_type=\"fsdax\",detector=\"held\"} 8\n\
                    # TYPE refwatch_episodes_opened counter\n\
                    refwatch_episodes_opened_total 8\n\
                    process_cpu_seconds_total 0.25\n\
                    # EOF\n";
        let s = parse(text).expect("parses");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "refwatch_pages_stuck");
        assert_eq!(s[0].labels["detector"], "held");
        assert_eq!(s[0].labels["pgmap_type"], "fsdax");
        assert_eq!(s[0].value, 8.0);
        assert_eq!(
            (s[2].name.as_str(), s[2].value),
            ("process_cpu_seconds_total", 0.25)
        );
        assert!(parse("x 1\n").is_err(), "no # EOF");
        assert!(parse("x one\n# EOF\n").is_err());
        assert_eq!(lab_container().len(), 64);
    }
}
