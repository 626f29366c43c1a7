//! refwatch's own report of a scenario: the episodes of `report.json` and
//! the exit code of `refwatch report --fail-on-stuck`.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Workload, facts, ms_from, read_events, read_workload};

/// The share of a fs-dax hold scenario's episodes that must name a holder.
const NAMED_MIN_PERCENT: usize = 95;

/// How `refwatch report --fail-on-stuck FILE` ended: its exit code and,
/// when it said anything on stderr, its last line (why it failed, when it
/// did), so that a check's message shows it.
#[derive(Debug)]
pub(super) struct Exit {
    code: i32,
    said: String,
}

impl PartialEq<i32> for Exit {
    fn eq(&self, code: &i32) -> bool {
        self.code == *code
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.said.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.code, self.said)
        }
    }
}

/// Runs `refwatch report --fail-on-stuck FILE`.
pub(super) fn fail_on_stuck(refwatch: &Path, file: &Path) -> Result<Exit> {
    let out = Command::new(refwatch)
        .arg("report")
        .arg("--fail-on-stuck")
        .arg(file)
        .output()
        .context("run refwatch report")?;
    let code = out
        .status
        .code()
        .context("refwatch report killed by a signal")?;
    let said = String::from_utf8_lossy(&out.stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(Exit { code, said })
}

/// `dax-drained`: the pages' only references after the drain are their
/// mapping's, so no episode may open, neither by the end nor in the
/// recording as it stood during the hold (from 6.15 the drain's puts are
/// unseen: the count refwatch last saw is one too high until it reads the
/// page).
fn check_drained(refwatch: &Path, episodes: &[Value], dir: &Path) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    if !episodes.is_empty() {
        bad.push(format!(
            "{} episode(s) on pages nothing held: {}",
            episodes.len(),
            episodes
                .iter()
                .take(4)
                .map(|e| format!(
                    "{} on {:#x} ({})",
                    e["detector"].as_str().unwrap_or("?"),
                    e["pfn"].as_u64().unwrap_or_default(),
                    e["reason"].as_str().unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let rc = fail_on_stuck(refwatch, &dir.join("recording.during-hold"))?;
    if rc != 0 {
        bad.push(format!(
            "report --fail-on-stuck exited {rc} on the recording taken during the hold, expected 0"
        ));
    }
    Ok(bad)
}

/// Checks on refwatch's own report of the scenario.
/// Whether the free hook reports the last puts of fs-dax pages on
/// `kernel` under refwatch's defaults: 0-based fs-dax (6.15 and later)
/// without the page_ref tracepoints.
fn free_hook_puts(kernel: &str) -> Result<bool> {
    let f = facts(kernel)?;
    Ok(f.fsdax_idle == 0 && !f.page_ref_truth)
}

pub fn check_report(
    refwatch: &Path,
    kernel: &str,
    scenario: &str,
    functions: bool,
    dir: &Path,
) -> Result<Vec<String>> {
    let w = read_workload(dir)?;
    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    let episodes = report["episodes"]
        .as_array()
        .context("report.json: episodes")?;
    // Every verdict below rests on a complete history: that nothing was
    // lost is asserted for every scenario by [`super::loss`].
    let mut bad = Vec::new();
    if report["stuck_at_end"]
        .as_array()
        .is_none_or(|a| !a.is_empty())
    {
        bad.push(format!(
            "pages still stuck at the end: {}",
            report["stuck_at_end"]
        ));
    }
    let eps_of = |pfn: u64, dets: &[&str]| -> Vec<&Value> {
        episodes
            .iter()
            .filter(|e| e["pfn"].as_u64() == Some(pfn) && dets.iter().any(|d| e["detector"] == *d))
            .collect()
    };
    match scenario {
        "dax-splice" => {
            if !episodes.is_empty() {
                bad.push(format!(
                    "{} episodes where nothing was held",
                    episodes.len()
                ));
            }
            let rc = fail_on_stuck(refwatch, &dir.join("recording"))?;
            if rc != 0 {
                bad.push(format!("report --fail-on-stuck exited {rc} on dax-splice"));
            }
            let events = super::read_events(&dir.join("events.jsonl"))?;
            bad.extend(super::releases::check_unwalked_last_puts(
                &events,
                episodes,
                free_hook_puts(kernel)?,
            ));
            // The compact recording: bytes per event, header and tables
            // included.
            let bytes = std::fs::metadata(dir.join("recording"))?.len();
            let events = report["events"].as_u64().unwrap_or(0);
            let per_event = bytes / events.max(1);
            println!(
                "    recording: {bytes} bytes for {events} events, {per_event} bytes per event"
            );
            if events == 0 || per_event > crate::lab::scenarios::MAX_RECORDING_BYTES_PER_EVENT {
                bad.push(format!(
                    "recording: {bytes} bytes for {events} events, {per_event} per event (at most {} wanted)",
                    crate::lab::scenarios::MAX_RECORDING_BYTES_PER_EVENT
                ));
            }
        }
        "dax-drained" => bad.extend(check_drained(refwatch, episodes, dir)?),
        "dax-hold" | "dax-truncate-pinned" => {
            let hold_start = w.mark("hold_start")?;
            let hold_end = w.mark("hold_end")?;
            for pfn in &w.pfns {
                let eps = eps_of(*pfn, &["held", "unmapped-not-freed"]);
                // Flagged during the hold: detected after it began (the
                // detectors' threshold is far shorter than the hold, and
                // the pages were unmapped just before it), cleared after.
                let during = eps.iter().any(|e| {
                    e["detected_ns"]
                        .as_u64()
                        .is_some_and(|d| d >= hold_start && d < hold_end)
                        && e["end_ns"].as_u64().is_some_and(|end| end >= hold_end)
                });
                if !during {
                    let rel = |k: &str, e: &Value| e[k].as_u64().map(|t| ms_from(hold_start, t));
                    bad.push(format!(
                        "pfn {pfn:#x}: not flagged held/unmapped-not-freed during the hold (detected at or after its start, before its end at {} ms) and cleared after; episodes (detector, detected ms, end ms, from the hold's start): {:?}",
                        ms_from(hold_start, hold_end),
                        eps.iter()
                            .map(|e| (
                                e["detector"].as_str().unwrap_or_default(),
                                rel("detected_ns", e),
                                rel("end_ns", e)
                            ))
                            .collect::<Vec<_>>()
                    ));
                }
            }
            bad.extend(super::releases::check_releasers_named(
                episodes,
                free_hook_puts(kernel)?,
            ));
            if scenario == "dax-hold" {
                bad.extend(held_by_the_second_fill(episodes, &w)?);
                bad.extend(super::groups::check_dax_hold(&report, &w, dir)?);
                let snap = dir.join("recording.during-hold");
                let rc = fail_on_stuck(refwatch, &snap)?;
                if rc != 3 {
                    bad.push(format!("report --fail-on-stuck exited {rc} on the recording taken during the hold, expected 3"));
                }
            } else {
                let t0 = w.mark("truncate_start")?;
                let named = episodes.iter().any(|e| {
                    e["detector"] == "layout-wait"
                        && e["start_ns"].as_u64().is_some_and(|s| s >= t0)
                        && e["holders"]
                            .as_array()
                            .is_some_and(|h| h.iter().any(|h| h["comm"] == "workload"))
                });
                if !named {
                    bad.push("no layout-wait episode naming the workload as holder".into());
                }
            }
            // Everything held here was taken by the workload's vmsplice
            // (GUP, hooked on every kernel): refwatch must name a holder.
            let unnamed: Vec<String> = episodes
                .iter()
                .filter(|e| e["holders"].as_array().is_none_or(|h| h.is_empty()))
                .map(|e| {
                    format!(
                        "{} on {:#x}",
                        e["detector"].as_str().unwrap_or("?"),
                        e["pfn"].as_u64().unwrap_or_default()
                    )
                })
                .collect();
            let named = episodes.len() - unnamed.len();
            if episodes.is_empty() || named * 100 < NAMED_MIN_PERCENT * episodes.len() {
                bad.push(format!(
                    "holder named in {named} of {} episodes, expected at least {NAMED_MIN_PERCENT}%; without: {unnamed:?}",
                    episodes.len()
                ));
            }
            println!(
                "    {kernel} {scenario}: {} episodes, holder named in {named} ({:.0}%)",
                episodes.len(),
                if episodes.is_empty() {
                    0.0
                } else {
                    100.0 * named as f64 / episodes.len() as f64
                }
            );
        }
        "dax-pin-long" => bad.extend(check_pin_long(refwatch, kernel, &w, episodes, dir)?),
        "hmm-blocked" => {
            let held = w.fact("held_ram_pfn")?;
            let released = w.mark("released")?;
            let retried = w.mark("cpu_touch_start")?;
            let blocked: Vec<&Value> = episodes
                .iter()
                .filter(|e| e["detector"] == "migration-blocked")
                .collect();
            let ok = match blocked.as_slice() {
                [e] => {
                    e["pfn"].as_u64() == Some(held)
                        && e["end_ns"]
                            .as_u64()
                            .is_some_and(|end| end >= released && end <= retried)
                        && e["holders"].as_array().is_some_and(|h| {
                            h.iter().any(|h| {
                                h["comm"] == "workload"
                                    && h["stack"].as_array().is_some_and(|s| {
                                        s.iter().any(|f| {
                                            f.as_str().is_some_and(|f| f.contains("vmsplice"))
                                        })
                                    })
                            })
                        })
                }
                _ => false,
            };
            if !ok {
                bad.push(format!(
                    "expected one migration-blocked episode on the held page {held:#x}, naming the vmsplice holder and cleared by the retry; got {}",
                    serde_json::to_string(&blocked)?
                ));
            }
            if let Some(e) = blocked.first() {
                println!("    {kernel} {scenario}: {}", e["reason"]);
            }
            bad.extend(super::groups::check_blocked_stream(dir)?);
        }
        // Precise mode sees the parent's unmap (the zap's inline put) and
        // names the child keeping the device memory; function mode does not
        // see that put (docs/refcount-rules.md) and must give no verdict.
        "hmm-leak" if functions => {
            if !episodes.is_empty() {
                bad.push(format!(
                    "{} episodes in function mode, which cannot see the parent's unmap: {}",
                    episodes.len(),
                    episodes[0]["reason"]
                ));
            }
            println!(
                "    {kernel} {scenario} (functions): {} episodes (the unmap's put is inline there)",
                episodes.len()
            );
        }
        "hmm-leak" => {
            let child = w.fact("child_pid")?;
            let child_start = w.mark("child_start")?;
            let parent_unmap = w.mark("parent_unmap")?;
            let hold_end = w.mark("hold_end")?;
            // The child's last reference goes as it exits, a little before
            // the parent sees it gone.
            let child_exit = w.mark("child_exit")?;
            let mut named = 0;
            let others: Vec<&Value> = episodes
                .iter()
                .filter(|e| e["detector"] != "kept-by-child")
                .collect();
            if !others.is_empty() {
                bad.push(format!(
                    "{} episodes other than kept-by-child (the pages are mapped by the child, nothing else holds them): {}",
                    others.len(),
                    others[0]["reason"]
                ));
            }
            for pfn in &w.pfns {
                let eps = eps_of(*pfn, &["kept-by-child"]);
                let flagged = eps.iter().any(|e| {
                    // From the parent's munmap (its put is stamped before
                    // the workload's mark after munmap returns).
                    e["start_ns"]
                        .as_u64()
                        .is_some_and(|s| s >= child_start && s <= parent_unmap)
                        && e["detected_ns"].as_u64().is_some_and(|d| d < hold_end)
                        && e["end_ns"]
                            .as_u64()
                            .is_some_and(|end| end >= hold_end && end <= child_exit)
                });
                if !flagged || eps.len() != 1 {
                    bad.push(format!(
                        "pfn {pfn:#x}: not flagged kept-by-child once, from the parent's unmap while the child lived, cleared when it exited ({} episodes)",
                        eps.len()
                    ));
                }
                let by_child = eps.iter().any(|e| {
                    e["holders"]
                        .as_array()
                        .is_some_and(|h| h.iter().any(|h| h["pid"].as_u64() == Some(child)))
                });
                named += usize::from(by_child);
                if !by_child {
                    bad.push(format!(
                        "pfn {pfn:#x}: the child (pid {child}) is not named as holder"
                    ));
                }
            }
            println!(
                "    {kernel} {scenario}{}: child named as holder on {named} of {} pages",
                if functions { " (functions)" } else { "" },
                w.pfns.len()
            );
            let rc = fail_on_stuck(refwatch, &dir.join("recording.during-hold"))?;
            if rc != 3 {
                bad.push(format!(
                    "report --fail-on-stuck exited {rc} on the recording taken during the hold, expected 3"
                ));
            }
        }
        // Pages resident on the device (hmm-resident: for the whole hold,
        // longer than the detectors' threshold) are not stuck.
        "hmm-migrate" | "hmm-release" | "hmm-resident" if !episodes.is_empty() => {
            bad.push(format!(
                "{} episodes where nothing was held: {}",
                episodes.len(),
                episodes[0]["reason"]
            ));
        }
        _ => {}
    }
    Ok(bad)
}

/// `dax-hold` fills the pipe and drains it once before the splice that
/// holds: from 6.15 the drain's puts are inline and no hook sees them. Each
/// page held during the hold names one splice holder, taken after that
/// first fill was drained; the first fill's reference is gone (its grab at
/// the idle count told refwatch so) and must not be named.
fn held_by_the_second_fill(episodes: &[Value], w: &Workload) -> Result<Vec<String>> {
    let drained = w.mark("first_fill_drained")?;
    let hold_start = w.mark("hold_start")?;
    let mut bad = Vec::new();
    for pfn in &w.pfns {
        let Some(ep) = episodes.iter().find(|e| {
            e["pfn"].as_u64() == Some(*pfn)
                && e["detector"] == "held"
                && e["detected_ns"].as_u64().is_some_and(|d| d >= hold_start)
        }) else {
            // Not flagged held at all: the hold's own check says so.
            continue;
        };
        let splices: Vec<u64> = ep["holders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| {
                h["stack"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|f| f.as_str().is_some_and(|f| f.contains("vmsplice")))
                })
            })
            .filter_map(|h| h["ts_ns"].as_u64())
            .collect();
        if splices.len() != 1 || splices.iter().any(|t| *t < drained) {
            bad.push(format!(
                "pfn {pfn:#x}: held, naming {} vmsplice holder(s) taken at {:?} ms from the first fill's drain; expected one, taken after it",
                splices.len(),
                splices
                    .iter()
                    .map(|t| (*t as i64 - drained as i64) / 1_000_000)
                    .collect::<Vec<_>>()
            ));
        }
    }
    Ok(bad)
}

/// `dax-pin-long`: the slow O_DIRECT write holds every source page for the
/// hold, longer than the detectors' threshold. Where direct I/O pins
/// (6.2 on), each page gets a `pinned` episode (and a `held` one: a pin is
/// a reference beyond idle too); before, its plain reference gets `held`
/// only, and nothing is `pinned`. The episode must start and be detected
/// during the write and end with the page's release by the write's
/// completion (the unpin or put in `events.jsonl`), before the write
/// returned. The pages stay mapped and nothing else holds them: no other
/// detector fires. `report --fail-on-stuck` exits 3 on the recording
/// copied during the write.
///
/// Where the write pins, only `pinned` is timed: on Debian's 7.2 (function
/// mode) the `held` episode starts at the page's fault, not at the write.
/// `dax_fault_iter` brackets `vmf_insert_page_mkwrite` with an inline
/// `folio_ref_inc`/`folio_put` that no function hook sees, so refwatch
/// counts the fault's temporary reference as held until the next event (the
/// pin). The page_ref tracepoints (hmm-7.2) see both, and `held` starts at
/// the pin there.
fn check_pin_long(
    refwatch: &Path,
    kernel: &str,
    w: &Workload,
    episodes: &[Value],
    dir: &Path,
) -> Result<Vec<String>> {
    let f = facts(kernel)?;
    let t0 = w.mark("write_start")?;
    let t1 = w.mark("write_end")?;
    let (detector, release) = if f.dio_pins {
        ("pinned", "unpin")
    } else {
        ("held", "put")
    };
    let allowed: &[&str] = if f.dio_pins {
        &["pinned", "held"]
    } else {
        &["held"]
    };
    let events = read_events(&dir.join("events.jsonl"))?;
    let mut bad = Vec::new();
    let others: Vec<&Value> = episodes
        .iter()
        .filter(|e| {
            !allowed.iter().any(|d| e["detector"] == *d)
                || e["pfn"].as_u64().is_none_or(|p| !w.pfns.contains(&p))
        })
        .collect();
    if !others.is_empty() {
        bad.push(format!(
            "{} episodes other than {} on the written pages: {}: {}",
            others.len(),
            allowed.join("/"),
            others[0]["detector"],
            others[0]["reason"]
        ));
    }
    let rel = |e: &Value, k: &str| e[k].as_u64().map(|t| ms_from(t0, t));
    let mut named = 0;
    let mut lasted = Vec::new();
    for pfn in &w.pfns {
        let releases = || {
            events
                .iter()
                .filter(|e| e.pfn == *pfn && e.event == release && e.ts >= t0 && e.ts <= t1)
        };
        // Under `+watch` the watchpoint's release is the page's (the hook
        // reports the same write just after).
        let released = releases()
            .filter(|e| super::watch::from_watch(e))
            .map(|e| e.ts)
            .max()
            .or_else(|| releases().map(|e| e.ts).max());
        let eps: Vec<&Value> = episodes
            .iter()
            .filter(|e| e["pfn"].as_u64() == Some(*pfn) && e["detector"] == detector)
            .collect();
        let ok = match (eps.as_slice(), released) {
            ([e], Some(rel_ts)) => {
                e["start_ns"].as_u64().is_some_and(|s| s >= t0)
                    && e["detected_ns"]
                        .as_u64()
                        .is_some_and(|d| d >= t0 && d < rel_ts)
                    && e["end_ns"]
                        .as_u64()
                        .is_some_and(|end| end >= rel_ts && end <= t1)
            }
            _ => false,
        };
        if !ok {
            bad.push(format!(
                "pfn {pfn:#x}: expected one {detector} episode, started and detected during the O_DIRECT write (0 to {} ms) and ended by its {release} at {:?} ms; got (start, detected, end ms from the write's start): {:?}",
                ms_from(t0, t1),
                released.map(|r| ms_from(t0, r)),
                eps.iter()
                    .map(|e| (
                        rel(e, "start_ns"),
                        rel(e, "detected_ns"),
                        rel(e, "end_ns")
                    ))
                    .collect::<Vec<_>>()
            ));
        }
        if let [e] = eps.as_slice() {
            if let (Some(s), Some(end)) = (e["start_ns"].as_u64(), e["end_ns"].as_u64()) {
                lasted.push(end.saturating_sub(s) / 1_000_000);
            }
            // The direct I/O's GUP (hooked on every kernel) took the
            // reference: refwatch names the workload, in that path.
            let by_dio = e["holders"].as_array().is_some_and(|h| {
                h.iter().any(|h| {
                    h["comm"] == "workload"
                        && h["stack"].as_array().is_some_and(|s| {
                            s.iter().any(|f| {
                                f.as_str()
                                    .is_some_and(|f| f.starts_with("bio_iov_iter_get_pages"))
                            })
                        })
                })
            });
            named += usize::from(by_dio);
            if !by_dio {
                bad.push(format!(
                    "pfn {pfn:#x}: the {detector} episode does not name the workload's direct I/O (a bio_iov_iter_get_pages frame) as holder: {}",
                    e["holders"]
                ));
            }
        }
    }
    let rc = fail_on_stuck(refwatch, &dir.join("recording.during-hold"))?;
    if rc != 3 {
        bad.push(format!(
            "report --fail-on-stuck exited {rc} on the recording taken during the write, expected 3"
        ));
    }
    println!(
        "    {kernel} dax-pin-long: write {} ms, {detector} on {} of {} pages for {}–{} ms, the direct I/O named as holder on {named}",
        ms_from(t0, t1),
        lasted.len(),
        w.pfns.len(),
        lasted.iter().min().copied().unwrap_or_default(),
        lasted.iter().max().copied().unwrap_or_default(),
    );
    Ok(bad)
}

/// `+tiny-ring`: most events are lost. The report must say so and give no
/// verdict that loss could have made up: no episode on a page whose
/// release was not seen, and `--fail-on-stuck` never says "stuck" (3),
/// only "unknown" (4) or nothing (0).
pub fn check_tiny_ring(refwatch: &Path, dir: &Path) -> Result<Vec<String>> {
    check_degraded(refwatch, dir, false)
}

/// `+rate-cap`: the events past `--max-rate` are counted, not recorded, and
/// none lost to a full ring; the report says how many and, as for a loss,
/// gives no verdict they could have made up ([`check_tiny_ring`]).
pub fn check_rate_cap(refwatch: &Path, dir: &Path) -> Result<Vec<String>> {
    check_degraded(refwatch, dir, true)
}

/// A run that could not record every event: lost to a tiny ring, or
/// `capped` past `--max-rate`.
fn check_degraded(refwatch: &Path, dir: &Path, capped: bool) -> Result<Vec<String>> {
    let w = read_workload(dir)?;
    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    let mut bad = Vec::new();
    let dropped = report["dropped"].as_u64().context("report.json: dropped")?;
    let over = report["capped"].as_u64().context("report.json: capped")?;
    let gaps = report["gaps"].as_array().context("report.json: gaps")?;
    let episodes = report["episodes"]
        .as_array()
        .context("report.json: episodes")?;
    if capped {
        let said = std::fs::read_to_string(dir.join("refwatch.out")).unwrap_or_default();
        let end_says = said
            .lines()
            .any(|l| l.contains(&format!(" {over} capped by --max-rate,")));
        if over == 0 || dropped != 0 || gaps.is_empty() || !end_says {
            bad.push(format!(
                "--max-rate on {} pages: {over} events capped (the end line says so: {end_says}), {dropped} lost to the ring (expected 0), {} pages with gaps",
                w.pfns.len(),
                gaps.len()
            ));
        }
    } else if dropped == 0 || gaps.is_empty() || over != 0 {
        bad.push(format!(
            "a 4096-byte ring on {} pages lost nothing? dropped {dropped}, {} pages with gaps, {over} capped (expected 0: no --max-rate)",
            w.pfns.len(),
            gaps.len()
        ));
    }
    let gapped: std::collections::BTreeSet<u64> =
        gaps.iter().filter_map(|g| g["pfn"].as_u64()).collect();
    let seen: std::collections::BTreeSet<u64> = super::read_events(&dir.join("events.jsonl"))?
        .iter()
        .map(|e| e.pfn)
        .collect();
    let unaccounted = w
        .pfns
        .iter()
        .filter(|p| !gapped.contains(p) && !seen.contains(p))
        .count();
    if unaccounted > 0 {
        bad.push(format!(
            "{unaccounted} of the workload's {} pages neither have events nor a gap",
            w.pfns.len()
        ));
    }
    // dax-splice holds nothing: every episode would be made up by loss.
    if !episodes.is_empty() {
        bad.push(format!(
            "{} episodes where nothing was held (loss made them up): {}",
            episodes.len(),
            episodes[0]["reason"]
        ));
    }
    let rc = fail_on_stuck(refwatch, &dir.join("recording"))?;
    if rc != 0 && rc != 4 {
        bad.push(format!(
            "report --fail-on-stuck exited {rc} after loss; expected 4 (unknown) or 0"
        ));
    }
    println!(
        "    {}: {dropped} events lost, {over} capped, {} pages with gaps ({} unknown at the end), {} of {} pages seen, --fail-on-stuck {rc}",
        if capped { "rate cap" } else { "tiny ring" },
        gaps.len(),
        report["unknown_at_end"].as_array().map_or(0, Vec::len),
        seen.len(),
        w.pfns.len()
    );
    Ok(bad)
}

/// `+late` (`dax-hold` with refwatch started during the hold): the snapshot
/// at attach finds every held page, flags it as held by references taken
/// before refwatch started, and the drain clears it.
pub fn check_late(refwatch: &Path, dir: &Path) -> Result<Vec<String>> {
    let w = read_workload(dir)?;
    let hold_end = w.mark("hold_end")?;
    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    let episodes = report["episodes"]
        .as_array()
        .context("report.json: episodes")?;
    let snapshots: std::collections::BTreeSet<u64> = super::read_events(&dir.join("events.jsonl"))?
        .iter()
        .filter(|e| e.event == "snapshot")
        .map(|e| e.pfn)
        .collect();
    // Nothing lost: asserted by [`super::loss`], as in every scenario.
    let mut bad = Vec::new();
    let mut flagged = 0;
    for pfn in &w.pfns {
        if !snapshots.contains(pfn) {
            bad.push(format!("pfn {pfn:#x}: not in the snapshot at attach"));
        }
        let ok = episodes.iter().any(|e| {
            e["pfn"].as_u64() == Some(*pfn)
                && (e["detector"] == "held" || e["detector"] == "unmapped-not-freed")
                && e["detected_ns"].as_u64().is_some_and(|d| d < hold_end)
                && e["end_ns"].as_u64().is_some_and(|end| end >= hold_end)
                && e["holder_note"]
                    .as_str()
                    .is_some_and(|n| n.contains("before refwatch started"))
        });
        if ok {
            flagged += 1;
        } else {
            bad.push(format!(
                "pfn {pfn:#x}: not flagged during the hold as held by references taken before refwatch started, cleared after"
            ));
        }
    }
    if report["stuck_at_end"]
        .as_array()
        .is_none_or(|a| !a.is_empty())
    {
        bad.push(format!("stuck at the end: {}", report["stuck_at_end"]));
    }
    let during = fail_on_stuck(refwatch, &dir.join("recording.during-hold"))?;
    if during != 3 {
        bad.push(format!(
            "report --fail-on-stuck exited {during} on the recording taken during the hold, expected 3"
        ));
    }
    println!(
        "    late attach: {} of {} held pages in the snapshot, {flagged} flagged as held from before refwatch started",
        w.pfns.iter().filter(|p| snapshots.contains(p)).count(),
        w.pfns.len()
    );
    Ok(bad)
}
