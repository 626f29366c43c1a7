//! The kernel's HMM selftests under refwatch (`hmm-selftests`): the suite
//! passes, and refwatch's report of it holds no verdict the suite does not
//! warrant. There is no `workload.json`: what ran when comes from the
//! suite's own output, each line of which the guest kept with the uptime it
//! was read at (`selftest.out`, see `run_selftests` in the lab's init).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use anyhow::{Context, Result};
use serde_json::Value;

use super::report::fail_on_stuck;

/// Frames of the page map's setup: `memremap_pages` initialising every
/// page of a new chunk (`__init_zone_device_page`). A reference seen there
/// is no holder, so no episode may rest on it alone.
pub const SETUP_FRAMES: &[&str] = &["__init_zone_device_page", "memremap_pages"];

/// Fewest events a run of the suite gives refwatch: a dozen tests migrate
/// hundreds of device pages there and back (a run recorded 178,000).
pub const MIN_EVENTS: u64 = 10_000;

/// Fewest pages with events: the tests' buffers are 1,024 pages each.
pub const MIN_PAGES: u64 = 1_000;

/// What `refwatch report --fail-on-stuck` must exit with on the suite's
/// recording: 0, nothing stuck and no page whose state is unknown. Unknown
/// (4) follows only from lost events, and the suite, like every scenario
/// but `+tiny-ring`, must lose none: [`super::loss`] asserts it (`dropped`
/// 0, no gaps, no gap line). The suite is the hardest case: each new 256
/// MiB chunk of device memory initialises 65,536 pages in one go (two
/// refcount sets each), and the suite adds five such chunks.
pub const FAIL_ON_STUCK: i32 = 0;

/// Most episodes per page with events.
pub const MAX_EPISODES_PER_PAGE: u64 = 2;

/// The harness's counts (`# Totals: pass:N fail:N xfail:N xpass:N skip:N error:N`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub pass: u64,
    pub fail: u64,
    pub xfail: u64,
    pub xpass: u64,
    pub skip: u64,
    pub error: u64,
}

/// One test of the run: its name and when it ran (guest uptime, s).
#[derive(Debug, Clone, PartialEq)]
pub struct TestRun {
    pub name: String,
    pub start: f64,
    pub end: Option<f64>,
    /// "ok", "not ok", "skip".
    pub result: Option<String>,
}

/// What `selftest.out` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SuiteOutput {
    pub totals: Option<Totals>,
    /// The harness's last line: `PASSED: 74 / 74 tests passed.` or `FAILED: …`.
    pub verdict: Option<String>,
    pub tests: Vec<TestRun>,
}

impl SuiteOutput {
    /// The test running at guest uptime `t` (seconds).
    pub fn test_at(&self, t: f64) -> Option<&TestRun> {
        self.tests
            .iter()
            .rev()
            .find(|r| r.start <= t && r.end.is_none_or(|e| t <= e))
    }

    pub fn failed(&self) -> Vec<&str> {
        self.tests
            .iter()
            .filter(|t| t.result.as_deref() == Some("not ok"))
            .map(|t| t.name.as_str())
            .collect()
    }
}

/// Parses `selftest.out`: lines `<uptime> <harness line>`.
pub fn parse_output(text: &str) -> SuiteOutput {
    let mut out = SuiteOutput::default();
    for line in text.lines() {
        let Some((t, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(t) = t.parse::<f64>() else {
            continue;
        };
        if let Some(counts) = rest.strip_prefix("# Totals: ") {
            let mut totals = Totals::default();
            for pair in counts.split_whitespace() {
                let Some((k, v)) = pair.split_once(':') else {
                    continue;
                };
                let v = v.parse().unwrap_or(0);
                match k {
                    "pass" => totals.pass = v,
                    "fail" => totals.fail = v,
                    "xfail" => totals.xfail = v,
                    "xpass" => totals.xpass = v,
                    "skip" => totals.skip = v,
                    "error" => totals.error = v,
                    _ => {}
                }
            }
            out.totals = Some(totals);
        } else if let Some(v) = rest
            .strip_prefix("# ")
            .filter(|v| v.starts_with("PASSED: ") || v.starts_with("FAILED: "))
        {
            out.verdict = Some(v.to_owned());
        } else if let Some(name) = rest
            .strip_prefix("#  RUN ")
            .map(|n| n.trim().trim_end_matches("...").trim())
        {
            out.tests.push(TestRun {
                name: name.to_owned(),
                start: t,
                end: None,
                result: None,
            });
        } else {
            let (result, tail) = if let Some(tail) = rest.strip_prefix("not ok ") {
                ("not ok", tail)
            } else if let Some(tail) = rest.strip_prefix("ok ") {
                ("ok", tail)
            } else {
                continue;
            };
            // "ok 9 hmm.hmm_device_private.compound # SKIP Not enough huge pages"
            let mut words = tail.splitn(2, ' ');
            let _number = words.next();
            let rest = words.next().unwrap_or("");
            let (name, note) = rest.split_once(" # ").unwrap_or((rest, ""));
            let result = if note.starts_with("SKIP") {
                "skip"
            } else {
                result
            };
            if let Some(run) = out
                .tests
                .iter_mut()
                .rev()
                .find(|r| r.name == name.trim() && r.end.is_none())
            {
                run.end = Some(t);
                run.result = Some(result.to_owned());
            }
        }
    }
    out
}

/// Function names of a stack (`memremap_pages+0x2c1` → `memremap_pages`).
fn functions(stack: &Value) -> Vec<&str> {
    stack
        .as_array()
        .map(|frames| {
            frames
                .iter()
                .filter_map(Value::as_str)
                .map(|f| f.split('+').next().unwrap_or(f))
                .collect()
        })
        .unwrap_or_default()
}

/// True when every piece of holder evidence of `episode` comes from the
/// page map's setup: the holders' stacks, or without holders the stacks
/// of its last events. An episode without any evidence is not one.
pub fn setup_only(episode: &Value) -> bool {
    let holders = episode["holders"].as_array().cloned().unwrap_or_default();
    let evidence: Vec<Vec<&str>> = if holders.is_empty() {
        episode["last_events"]
            .as_array()
            .map(|evs| evs.iter().map(|e| functions(&e["stack"])).collect())
            .unwrap_or_default()
    } else {
        episode["holders"]
            .as_array()
            .map(|hs| hs.iter().map(|h| functions(&h["stack"])).collect())
            .unwrap_or_default()
    };
    !evidence.is_empty()
        && evidence
            .iter()
            .all(|frames| frames.iter().any(|f| SETUP_FRAMES.contains(f)))
}

/// Checks the `hmm-selftests` scenario in `dir`.
pub fn check_selftests(refwatch: &Path, kernel: &str, dir: &Path) -> Result<Vec<String>> {
    let mut bad = Vec::new();

    // The suite passed.
    let rc_text = fs::read_to_string(dir.join("selftest.rc")).unwrap_or_default();
    let rc: Option<i32> = rc_text.trim().parse().ok();
    let out_path = dir.join("selftest.out");
    let suite = parse_output(
        &fs::read_to_string(&out_path).with_context(|| format!("read {}", out_path.display()))?,
    );
    if rc != Some(0) {
        bad.push(format!(
            "hmm-tests exited {} (failed: {:?})",
            rc.map_or("?".to_owned(), |r| r.to_string()),
            suite.failed()
        ));
    }
    match &suite.totals {
        Some(t) if t.fail == 0 && t.error == 0 && t.xpass == 0 && t.pass > 0 => {}
        Some(t) => bad.push(format!(
            "harness totals: {t:?}; failed: {:?}",
            suite.failed()
        )),
        None => bad.push("no `# Totals:` line in selftest.out".into()),
    }
    if !suite
        .verdict
        .as_deref()
        .is_some_and(|v| v.starts_with("PASSED: "))
    {
        bad.push(format!("harness verdict: {:?}", suite.verdict));
    }

    // refwatch's report of it.
    let report: Value =
        serde_json::from_slice(&fs::read(dir.join("report.json"))?).context("parse report.json")?;
    let events = report["events"].as_u64().context("report.json: events")?;
    let pages = report["pages"].as_u64().context("report.json: pages")?;
    let dropped = report["dropped"].as_u64().context("report.json: dropped")?;
    let gaps = report["gaps"].as_array().context("report.json: gaps")?;
    let unknown = report["unknown_at_end"]
        .as_array()
        .context("report.json: unknown_at_end")?;
    let stuck = report["stuck_at_end"]
        .as_array()
        .context("report.json: stuck_at_end")?;
    let episodes = report["episodes"]
        .as_array()
        .context("report.json: episodes")?;
    if !stuck.is_empty() {
        bad.push(format!(
            "{} page(s) stuck at the end: {:#x?}",
            stuck.len(),
            stuck
                .iter()
                .take(8)
                .filter_map(Value::as_u64)
                .collect::<Vec<_>>()
        ));
    }
    let rc = fail_on_stuck(refwatch, &dir.join("recording"))?;
    if rc != FAIL_ON_STUCK {
        bad.push(format!(
            "report --fail-on-stuck exited {rc}, expected {FAIL_ON_STUCK} (nothing stuck, nothing unknown)"
        ));
    }
    // Loss is reported consistently: lost events leave gaps, and only then.
    let lossless = dropped == 0;
    if lossless != gaps.is_empty() || (gaps.is_empty() && !unknown.is_empty()) {
        bad.push(format!(
            "loss reported inconsistently: dropped {dropped}, {} page(s) with gaps, {} unknown at the end",
            gaps.len(),
            unknown.len()
        ));
    }
    if events < MIN_EVENTS || pages < MIN_PAGES {
        bad.push(format!(
            "{events} events on {pages} pages: expected at least {MIN_EVENTS} on {MIN_PAGES}"
        ));
    }
    if episodes.len() as u64 > MAX_EPISODES_PER_PAGE * pages.max(1) {
        bad.push(format!(
            "{} episodes on {pages} pages: more than {MAX_EPISODES_PER_PAGE} per page",
            episodes.len()
        ));
    }
    let setup: Vec<&Value> = episodes.iter().filter(|e| setup_only(e)).collect();
    if let Some(e) = setup.first() {
        bad.push(format!(
            "{} episode(s) whose only holder evidence is the page map's setup ({}), e.g. {} on {:#x} ({}): {}",
            setup.len(),
            SETUP_FRAMES.join(", "),
            e["detector"].as_str().unwrap_or("?"),
            e["pfn"].as_u64().unwrap_or_default(),
            e["pgmap_type"].as_str().unwrap_or("?"),
            e["reason"].as_str().unwrap_or("?")
        ));
    }

    // What the report says, by detector and by the test that ran then.
    let gapped: BTreeSet<u64> = gaps.iter().filter_map(|g| g["pfn"].as_u64()).collect();
    let on_whole = episodes
        .iter()
        .filter(|e| e["pfn"].as_u64().is_some_and(|p| !gapped.contains(&p)))
        .count();
    let mut by_detector: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut by_test: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for e in episodes {
        let det = e["detector"].as_str().unwrap_or("?");
        let slot = by_detector.entry(det).or_default();
        slot.0 += 1;
        slot.1 += usize::from(e["ended_by_loss"].as_bool().unwrap_or(false));
        let at = e["start_ns"].as_u64().unwrap_or_default() as f64 / 1e9;
        let test = suite
            .test_at(at)
            .map_or_else(|| "(between tests)".to_owned(), |t| t.name.clone());
        *by_test.entry((test, det)).or_default() += 1;
    }
    let totals = suite.totals.clone().unwrap_or_default();
    let first = suite.tests.first().map_or(0.0, |t| t.start);
    let last = suite.tests.last().and_then(|t| t.end).unwrap_or(first);
    println!(
        "    {kernel} hmm-selftests: suite pass {} skip {} fail {} error {} in {:.0} s; refwatch: {events} events on {pages} pages, {dropped} lost ({} pages with gaps, {} unknown at the end), {} episodes ({} on pages without lost events, {} from the page map's setup), {} stuck at the end, --fail-on-stuck {rc}",
        totals.pass,
        totals.skip,
        totals.fail,
        totals.error,
        last - first,
        gaps.len(),
        unknown.len(),
        episodes.len(),
        on_whole,
        setup.len(),
        stuck.len()
    );
    for (det, (n, lost)) in &by_detector {
        println!("      episodes {det}: {n} ({lost} ended by loss)");
    }
    for ((test, det), n) in &by_test {
        println!("      during {test}: {n} {det}");
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OUT: &str = "\
20.80 TAP version 13
20.82 1..3
20.83 #  RUN           hmm.hmm_device_private.open_close ...
21.06 #            OK  hmm.hmm_device_private.open_close
21.06 ok 1 hmm.hmm_device_private.open_close
21.07 #  RUN           hmm.hmm_device_private.compound ...
21.08 #      SKIP      Not enough huge pages
21.10 ok 2 hmm.hmm_device_private.compound # SKIP Not enough huge pages
21.11 #  RUN           hmm2.hmm2_device_private.double_map ...
25.00 # double_map: Test terminated by timeout
25.00 not ok 3 hmm2.hmm2_device_private.double_map
25.01 # FAILED: 2 / 3 tests passed.
25.01 # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
";

    #[test]
    fn output_gives_totals_tests_and_their_times() {
        let s = parse_output(OUT);
        assert_eq!(
            s.totals,
            Some(Totals {
                pass: 1,
                fail: 1,
                skip: 1,
                ..Totals::default()
            })
        );
        assert_eq!(s.verdict.as_deref(), Some("FAILED: 2 / 3 tests passed."));
        assert_eq!(s.tests.len(), 3);
        assert_eq!(s.tests[1].result.as_deref(), Some("skip"));
        assert_eq!(s.failed(), ["hmm2.hmm2_device_private.double_map"]);
        assert_eq!(
            s.test_at(21.0).map(|t| t.name.as_str()),
            Some("hmm.hmm_device_private.open_close")
        );
        assert_eq!(
            s.test_at(24.0).map(|t| t.end),
            Some(Some(25.0)),
            "the last test runs until its ok line"
        );
        assert!(s.test_at(30.0).is_none());
    }

    #[test]
    fn setup_only_episodes_are_recognised() {
        let setup = json!({"holders": [{"stack": [
            "__init_zone_device_page+0xd2", "memmap_init_zone_device+0xbd",
            "memremap_pages+0x2c1", "dmirror_allocate_chunk+0xd6"]}]});
        assert!(setup_only(&setup));
        let mixed = json!({"holders": [
            {"stack": ["__init_zone_device_page+0xd2", "memremap_pages+0x2c1"]},
            {"stack": ["remove_migration_pte+0x419", "remove_migration_ptes+0x7f"]}]});
        assert!(!setup_only(&mixed));
        let by_events = json!({"holders": [], "last_events": [
            {"stack": ["memremap_pages+0x2c1"]}]});
        assert!(setup_only(&by_events));
        let nothing = json!({"holders": [], "last_events": []});
        assert!(!setup_only(&nothing));
        let driver = json!({"holders": [{"stack": [
            "zone_device_page_init+0xfe", "dmirror_devmem_alloc_page.isra.0+0xb6"]}]});
        assert!(!setup_only(&driver));
    }
}
