//! How refwatch `record` ends: the stop of every scenario (SIGINT, exit 0,
//! no SIGKILL needed), and the `+sigint`, `+sigterm`, `+sighup` and
//! `+sigkill` scenarios, whose guest sent the signal during the hold and
//! wrote `signal.txt` ("SIG SENT EXITED", guest uptime in seconds).

use std::{collections::BTreeSet, fs, path::Path};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::lab::{SIGNAL_EXIT_SECS, ScenarioOutcome, Signal};

/// Every scenario but `+sigkill`: refwatch exited by itself with status 0
/// when the guest stopped it. A note means it did not (not ready, exited
/// early, or killed after the guest's wait: a hang).
pub fn check_exit(outcome: &ScenarioOutcome) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(note) = &outcome.refwatch_note {
        problems.push(format!("refwatch: {note}"));
    }
    match outcome.refwatch_rc {
        Some(0) => {}
        Some(rc) => problems.push(format!("refwatch exited with status {rc}, not 0")),
        None => problems.push("refwatch's exit status was not recorded".to_owned()),
    }
    problems
}

/// What the guest measured: the signal's name, when it was sent and when
/// refwatch was gone (guest uptime, seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub signal: String,
    pub sent: f64,
    pub exited: f64,
}

pub fn parse_signal_txt(text: &str) -> Result<Sent> {
    let mut f = text.split_whitespace();
    let (Some(signal), Some(sent), Some(exited), None) = (f.next(), f.next(), f.next(), f.next())
    else {
        bail!("signal.txt is not \"SIG SENT EXITED\": {text:?}");
    };
    Ok(Sent {
        signal: signal.to_owned(),
        sent: sent.parse().context("signal.txt: sent")?,
        exited: exited.parse().context("signal.txt: exited")?,
    })
}

/// A `+sig…` scenario: see the module's doc and the README.
pub fn check_signal(dir: &Path, sig: Signal, outcome: &ScenarioOutcome) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let sent =
        parse_signal_txt(&fs::read_to_string(dir.join("signal.txt")).context("read signal.txt")?)?;
    if sent.signal != sig.name() {
        problems.push(format!(
            "the guest sent SIG{}, not SIG{}",
            sent.signal,
            sig.name()
        ));
    }
    let took = sent.exited - sent.sent;
    let last = last_line(&dir.join("recording"))?;
    let report: Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).context("read report.json")?)
            .context("parse report.json")?;
    let complete = report["complete"].as_bool();
    if sig == Signal::Kill {
        if outcome.refwatch_rc != Some(128 + 9) {
            problems.push(format!(
                "refwatch's status after SIGKILL is {:?}, not 137",
                outcome.refwatch_rc
            ));
        }
        if complete != Some(false) {
            problems.push(format!(
                "report.json says complete: {complete:?} for a recording cut by SIGKILL"
            ));
        }
        if report["events"].as_u64().unwrap_or(0) == 0 {
            problems.push(
                "the recording cut by SIGKILL reads with no event: nothing was flushed in the second before the kill"
                    .to_owned(),
            );
        }
        problems.extend(check_released(dir)?);
        return Ok(problems);
    }
    problems.extend(check_exit(outcome));
    if !(0.0..=SIGNAL_EXIT_SECS).contains(&took) {
        problems.push(format!(
            "refwatch took {took:.2} s of guest time to exit after SIG{}, more than {SIGNAL_EXIT_SECS} s",
            sig.name()
        ));
    }
    let end = serde_json::from_str::<Value>(&last).ok();
    if end.as_ref().map(|e| &e["type"]) != Some(&Value::from("end")) {
        problems.push(format!(
            "the recording's last line is not its end line: {}",
            last.chars().take(120).collect::<String>()
        ));
    }
    if complete != Some(true) {
        problems.push(format!(
            "report.json says complete: {complete:?} after SIG{}",
            sig.name()
        ));
    }
    Ok(problems)
}

/// The last non-empty line of a file.
fn last_line(path: &Path) -> Result<String> {
    let text = fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned())
}

/// One object of `bpftool {prog,link,map} show`: its id and the
/// `comm(pid)` holders of its `pids` line.
#[derive(Debug, Clone, PartialEq)]
pub struct BpfObject {
    pub id: u32,
    pub holders: Vec<String>,
}

/// Parses bpftool's plain listing: an object starts with `ID: `, its
/// holders are on an indented `pids comm(pid), …` line.
pub fn parse_bpftool(text: &str) -> Vec<BpfObject> {
    let mut objects: Vec<BpfObject> = Vec::new();
    for line in text.lines() {
        if let Some((id, _)) = line.split_once(": ")
            && let Ok(id) = id.parse()
        {
            objects.push(BpfObject {
                id,
                holders: Vec::new(),
            });
        } else if let Some(pids) = line.trim_start().strip_prefix("pids ")
            && line.starts_with([' ', '\t'])
            && let Some(obj) = objects.last_mut()
        {
            obj.holders
                .extend(pids.split(", ").map(|p| p.trim().to_owned()));
        }
    }
    objects
}

/// The hooks a kernel list shows: `kprobes/list` lines without their
/// address, `enabled_functions` lines' function names.
fn hooks(dir: &Path) -> BTreeSet<String> {
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    let mut set = BTreeSet::new();
    for line in read("kprobes.txt").lines() {
        let rest: Vec<&str> = line.split_whitespace().skip(1).collect();
        if !rest.is_empty() {
            set.insert(format!("kprobe {}", rest.join(" ")));
        }
    }
    for line in read("ftrace.txt").lines() {
        if let Some(func) = line.split_whitespace().next() {
            set.insert(format!("ftrace {func}"));
        }
    }
    set
}

/// `+sigkill`: refwatch's BPF programs, links and maps were listed before
/// the kill (so the check can see them) and are gone after it, and the
/// kernel's own lists of kprobes and ftrace'd functions (BPF trampolines)
/// are back to what they were before refwatch started.
fn check_released(dir: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let pid = fs::read_to_string(dir.join("refwatch.pid"))
        .context("read refwatch.pid")?
        .trim()
        .to_owned();
    let holder = format!("refwatch({pid})");
    let list = |when: &str, kind: &str| -> Result<Vec<BpfObject>> {
        let path = dir.join(when).join(format!("{kind}.txt"));
        let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        if text.contains("Error:") || text.contains("not found") {
            bail!("{}: {}", path.display(), text.trim());
        }
        Ok(parse_bpftool(&text))
    };
    let mut held_before = 0;
    for kind in ["prog", "link", "map"] {
        let before: Vec<u32> = list("bpf-before", kind)?
            .into_iter()
            .filter(|o| o.holders.contains(&holder))
            .map(|o| o.id)
            .collect();
        if kind == "prog" && before.is_empty() {
            problems.push(format!(
                "bpftool listed no program held by {holder} before the kill: the check cannot see refwatch's programs"
            ));
        }
        held_before += before.len();
        let after = list("bpf-after", kind)?;
        let left: Vec<String> = after
            .iter()
            .filter(|o| {
                before.contains(&o.id) || o.holders.iter().any(|h| h.starts_with("refwatch("))
            })
            .map(|o| format!("{kind} {} (held by {})", o.id, o.holders.join(", ")))
            .collect();
        if !left.is_empty() {
            problems.push(format!(
                "after SIGKILL the kernel still lists refwatch's {}",
                left.join(", ")
            ));
        }
    }
    if held_before == 0 {
        problems.push("no BPF object of refwatch's before the kill".to_owned());
    }
    let baseline = hooks(&dir.join("bpf-baseline"));
    let added_before: Vec<String> = hooks(&dir.join("bpf-before"))
        .difference(&baseline)
        .cloned()
        .collect();
    let added_after: Vec<String> = hooks(&dir.join("bpf-after"))
        .difference(&baseline)
        .cloned()
        .collect();
    if added_before.is_empty() {
        problems.push(
            "the kernel's kprobe and ftrace lists showed no hook of refwatch's before the kill"
                .to_owned(),
        );
    }
    if !added_after.is_empty() {
        problems.push(format!(
            "after SIGKILL these hooks are still in the kernel's lists: {}",
            added_after.join(", ")
        ));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftool_listings_parse() {
        // Shaped like bpftool 7.1's `prog show` and `link show`.
        let progs = "12: tracing  name put_folio  tag 0123456789abcdef  gpl\n\
            \tloaded_at 2026-12-04T15:00:00+0000  uid 0\n\
            \txlated 512B  jited 300B  memlock 4096B  map_ids 3,4\n\
            \tbtf_id 9\n\
            \tpids refwatch(275)\n\
            13: kprobe  name grab  tag fedcba9876543210  gpl\n\
            \tpids refwatch(275), other(3)\n\
            14: tracing  name x  tag 00  gpl\n";
        assert_eq!(
            parse_bpftool(progs),
            [
                BpfObject {
                    id: 12,
                    holders: vec!["refwatch(275)".into()]
                },
                BpfObject {
                    id: 13,
                    holders: vec!["refwatch(275)".into(), "other(3)".into()]
                },
                BpfObject {
                    id: 14,
                    holders: vec![]
                },
            ]
        );
        assert!(parse_bpftool("").is_empty());
    }

    #[test]
    fn signal_txt_parses() -> Result<()> {
        assert_eq!(
            parse_signal_txt("TERM 40.12 41.30\n")?,
            Sent {
                signal: "TERM".into(),
                sent: 40.12,
                exited: 41.30
            }
        );
        assert!(parse_signal_txt("TERM 40.12").is_err());
        assert!(parse_signal_txt("TERM 40.12 x").is_err());
        Ok(())
    }

    fn outcome(rc: Option<i32>, note: Option<&str>) -> ScenarioOutcome {
        ScenarioOutcome {
            name: "dax-hold".into(),
            probes_rc: Some(0),
            refwatch_rc: rc,
            refwatch_note: note.map(str::to_owned),
            workload_rc: Some(0),
            report_error: None,
        }
    }

    #[test]
    fn a_hang_fails_every_scenario() {
        assert!(check_exit(&outcome(Some(0), None)).is_empty());
        let hung = check_exit(&outcome(Some(137), Some("SIGKILL after 30 s")));
        assert_eq!(hung.len(), 2, "{hung:?}");
        assert!(hung[0].contains("SIGKILL after 30 s"));
        assert_eq!(check_exit(&outcome(None, None)).len(), 1);
        assert_eq!(check_exit(&outcome(Some(1), None)).len(), 1);
    }

    /// A scenario folder as the guest leaves it (synthetic contents).
    fn scenario(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-signals-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).expect("scratch dir");
            }
            fs::write(&p, text).expect("write");
        }
        dir
    }

    #[test]
    fn a_slow_or_unclean_exit_fails() -> Result<()> {
        let ended = "{\"type\":\"header\"}\n{\"type\":\"end\",\"events\":3}\n";
        let ok = scenario(
            "ok",
            &[
                ("signal.txt", "HUP 10.00 11.50\n"),
                ("recording", ended),
                ("report.json", "{\"complete\": true, \"events\": 3}"),
            ],
        );
        assert!(check_signal(&ok, Signal::Hup, &outcome(Some(0), None))?.is_empty());
        assert_eq!(
            check_signal(&ok, Signal::Int, &outcome(Some(0), None))?.len(),
            1,
            "the wrong signal"
        );
        let slow = scenario(
            "slow",
            &[
                ("signal.txt", "TERM 10.00 15.20\n"),
                ("recording", "{\"type\":\"header\"}\n{\"type\":\"event\"}\n"),
                ("report.json", "{\"complete\": false, \"events\": 1}"),
            ],
        );
        let p = check_signal(&slow, Signal::Term, &outcome(Some(0), None))?;
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("5.20 s"), "{p:?}");
        let _ = fs::remove_dir_all(&ok);
        let _ = fs::remove_dir_all(&slow);
        Ok(())
    }

    #[test]
    fn sigkill_needs_refwatchs_objects_before_and_none_after() -> Result<()> {
        let held = "12: tracing  name a  tag 00  gpl\n\tpids refwatch(275)\n";
        let link = "3: tracing  prog 12\n\tpids refwatch(275)\n";
        let files = |after_prog: &'static str, after_ftrace: &'static str| {
            vec![
                ("signal.txt", "KILL 10.00 10.10\n"),
                ("recording", "{\"type\":\"header\"}\n{\"type\":\"ev"),
                ("report.json", "{\"complete\": false, \"events\": 5}"),
                ("refwatch.pid", "275\n"),
                ("bpf-baseline/ftrace.txt", ""),
                ("bpf-baseline/kprobes.txt", ""),
                ("bpf-before/prog.txt", held),
                ("bpf-before/link.txt", link),
                ("bpf-before/map.txt", ""),
                ("bpf-before/kprobes.txt", ""),
                (
                    "bpf-before/ftrace.txt",
                    "gup_put_folio (1) R I tramp: 0x0\n",
                ),
                ("bpf-after/prog.txt", after_prog),
                ("bpf-after/link.txt", ""),
                ("bpf-after/map.txt", ""),
                ("bpf-after/kprobes.txt", ""),
                ("bpf-after/ftrace.txt", after_ftrace),
            ]
        };
        let killed = outcome(Some(137), None);
        let clean = scenario("kill-clean", &files("", ""));
        assert!(check_signal(&clean, Signal::Kill, &killed)?.is_empty());
        assert_eq!(
            check_signal(&clean, Signal::Kill, &outcome(Some(0), None))?.len(),
            1,
            "status 0 after SIGKILL"
        );
        let left = scenario(
            "kill-left",
            &files(
                "12: tracing  name a  tag 00  gpl\n",
                "gup_put_folio (1) R I tramp: 0x0\n",
            ),
        );
        let p = check_signal(&left, Signal::Kill, &killed)?;
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("prog 12"), "{p:?}");
        assert!(p[1].contains("ftrace gup_put_folio"), "{p:?}");
        // Nothing seen before the kill: the check could not have failed.
        let blind = scenario("kill-blind", &files("", ""));
        fs::write(blind.join("bpf-before/prog.txt"), "12: tracing  name a\n")?;
        fs::write(blind.join("bpf-before/link.txt"), "")?;
        fs::write(blind.join("bpf-before/ftrace.txt"), "")?;
        let p = check_signal(&blind, Signal::Kill, &killed)?;
        assert_eq!(p.len(), 3, "{p:?}");
        for d in [clean, left, blind] {
            let _ = fs::remove_dir_all(d);
        }
        Ok(())
    }
}
