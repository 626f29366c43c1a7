//! How refwatch `record` ends: the stop of every scenario (SIGINT, exit 0,
//! no SIGKILL needed), and the `+sigint`, `+sigterm`, `+sighup` and
//! `+sigkill` scenarios, whose guest sent the signal during the hold and
//! wrote `signal.txt` (see [`Sent`]).

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

/// What the guest measured (guest uptime, seconds): when the signal was
/// sent, when refwatch was gone, and when the recording's end line was
/// first seen (`None`: never).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub signal: String,
    pub sent: f64,
    pub exited: f64,
    pub ended: Option<f64>,
}

pub fn parse_signal_txt(text: &str) -> Result<Sent> {
    let f: Vec<&str> = text.split_whitespace().collect();
    let [signal, sent, exited, ended] = f.as_slice() else {
        bail!("signal.txt is not \"SIG SENT EXITED ENDED\": {text:?}");
    };
    Ok(Sent {
        signal: (*signal).to_owned(),
        sent: sent.parse().context("signal.txt: sent")?,
        exited: exited.parse().context("signal.txt: exited")?,
        ended: match *ended {
            "-" => None,
            t => Some(t.parse().context("signal.txt: ended")?),
        },
    })
}

/// A `+sig…` scenario: see the module's doc and the README.
pub fn check_signal(dir: &Path, sig: Signal, outcome: &ScenarioOutcome) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if !dir.join("signal.txt").is_file() {
        problems.push("no signal.txt: the guest sent no signal".to_owned());
        problems.extend(check_exit(outcome));
        return Ok(problems);
    }
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
    let ended = sent
        .ended
        .map_or("not seen before the exit".to_owned(), |t| {
            format!("{:.2} s", t - sent.sent)
        });
    println!(
        "    {}: SIG{} → end line {ended}, exit {took:.2} s of guest time",
        dir.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        sig.name()
    );
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

/// The ids bpftool's plain listing (`bpftool prog show` etc.) names: an
/// object's first line starts with `ID: `.
pub fn listed_ids(text: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| l.split_once(": ")?.0.parse().ok())
        .collect()
}

/// The BPF objects `/proc/PID/fdinfo` shows a process holding, by kind:
/// `prog_id:` (program fds, and a link's program), `link_id:`, `map_id:`.
pub fn held_ids(fdinfo: &str) -> [(&'static str, BTreeSet<u32>); 3] {
    let mut held = [
        ("prog", BTreeSet::new()),
        ("link", BTreeSet::new()),
        ("map", BTreeSet::new()),
    ];
    for line in fdinfo.lines() {
        let mut f = line.split_whitespace();
        let (Some(key), Some(Ok(id))) = (f.next(), f.next().map(str::parse)) else {
            continue;
        };
        if let Some((_, ids)) = held
            .iter_mut()
            .find(|(kind, _)| key.strip_suffix("_id:") == Some(*kind))
        {
            ids.insert(id);
        }
    }
    held
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
        // Continuation lines (`\tdirect-->…`) are indented.
        if !line.starts_with([' ', '\t'])
            && let Some(func) = line.split_whitespace().next()
        {
            set.insert(format!("ftrace {func}"));
        }
    }
    set
}

/// `+sigkill`: the BPF programs, links and maps refwatch held before the
/// kill (its `/proc/PID/fdinfo`) were in bpftool's lists of every object
/// the kernel has, so the check can see them, and none is listed after it;
/// and the kernel's own lists of kprobes and ftrace'd functions (BPF
/// trampolines among them) showed hooks before the kill and are back after
/// it to what they were before refwatch started.
fn check_released(dir: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let read = |path: &str| -> Result<String> {
        let path = dir.join(path);
        fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    };
    let mut held_count = 0;
    for (kind, held) in held_ids(&read("bpf-before/fdinfo.txt")?) {
        let listing = |when: &str| -> Result<BTreeSet<u32>> {
            let text = read(&format!("{when}/{kind}.txt"))?;
            if text.contains("Error:") {
                bail!("bpftool {kind} show ({when}): {}", text.trim());
            }
            Ok(listed_ids(&text))
        };
        let before = listing("bpf-before")?;
        let after = listing("bpf-after")?;
        held_count += held.len();
        if kind == "prog" && held.is_empty() {
            problems.push(
                "refwatch's fdinfo showed no BPF program before the kill: the check cannot see its programs"
                    .to_owned(),
            );
        }
        let unseen: Vec<String> = held.difference(&before).map(u32::to_string).collect();
        if !unseen.is_empty() {
            problems.push(format!(
                "bpftool did not list refwatch's {kind} {} before the kill",
                unseen.join(", ")
            ));
        }
        let left: Vec<String> = held.intersection(&after).map(u32::to_string).collect();
        if !left.is_empty() {
            problems.push(format!(
                "after SIGKILL bpftool still lists refwatch's {kind} {}",
                left.join(", ")
            ));
        }
    }
    if held_count == 0 {
        problems.push("refwatch held no BPF object before the kill".to_owned());
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
    fn bpftool_listings_and_fdinfo_parse() {
        // Shaped like bpftool 7.1's `prog show` and a 6.12 kernel's fdinfo.
        let progs = "12: tracing  name put_folio  tag 0123456789abcdef  gpl\n\
            \tloaded_at 2026-12-04T15:00:00+0000  uid 0\n\
            \txlated 512B  jited 300B  memlock 4096B  map_ids 3,4\n\
            13: kprobe  name grab  tag fedcba9876543210  gpl\n\
            \tbtf_id 9\n";
        assert_eq!(listed_ids(progs), BTreeSet::from([12, 13]));
        assert!(listed_ids("").is_empty());
        let fdinfo = "== /proc/275/fdinfo/0\npos:\t0\nflags:\t02\n\
            == /proc/275/fdinfo/9\nlink_type:\ttracing\nlink_id:\t4\nprog_tag:\tab\nprog_id:\t12\n\
            == /proc/275/fdinfo/10\nmap_type:\t27\nmap_id:\t3\n\
            == /proc/275/fdinfo/11\nprog_type:\t26\nprog_id:\t13\n";
        let [prog, link, map] = held_ids(fdinfo);
        assert_eq!(prog, ("prog", BTreeSet::from([12, 13])));
        assert_eq!(link, ("link", BTreeSet::from([4])));
        assert_eq!(map, ("map", BTreeSet::from([3])));
    }

    #[test]
    fn signal_txt_parses() -> Result<()> {
        assert_eq!(
            parse_signal_txt("TERM 40.12 41.30 40.20\n")?,
            Sent {
                signal: "TERM".into(),
                sent: 40.12,
                exited: 41.30,
                ended: Some(40.20),
            }
        );
        assert_eq!(parse_signal_txt("KILL 1.0 2.0 -")?.ended, None);
        assert!(parse_signal_txt("TERM 40.12 41.3").is_err());
        assert!(parse_signal_txt("TERM 40.12 x -").is_err());
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
                ("signal.txt", "HUP 10.00 11.50 10.10\n"),
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
                ("signal.txt", "TERM 10.00 15.20 -\n"),
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
        let fdinfo = "== /proc/275/fdinfo/9\nlink_id:\t3\nprog_id:\t12\n\
            == /proc/275/fdinfo/10\nmap_id:\t7\n";
        let files = |after_prog: &'static str, after_ftrace: &'static str| {
            vec![
                ("signal.txt", "KILL 10.00 10.10 -\n"),
                ("recording", "{\"type\":\"header\"}\n{\"type\":\"ev"),
                ("report.json", "{\"complete\": false, \"events\": 5}"),
                ("bpf-baseline/ftrace.txt", ""),
                ("bpf-baseline/kprobes.txt", ""),
                ("bpf-before/fdinfo.txt", fdinfo),
                ("bpf-before/prog.txt", "12: tracing  name a  tag 00  gpl\n"),
                ("bpf-before/link.txt", "3: tracing  prog 12\n"),
                ("bpf-before/map.txt", "7: ringbuf  name EVENTS  flags 0x0\n"),
                ("bpf-before/kprobes.txt", ""),
                (
                    "bpf-before/ftrace.txt",
                    "gup_put_folio (1) R I tramp: 0x0\n\tdirect-->bpf_trampoline_1+0x0/0x118\n",
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
        fs::write(
            blind.join("bpf-before/fdinfo.txt"),
            "== /proc/275/fdinfo/0\npos:\t0\n",
        )?;
        fs::write(blind.join("bpf-before/ftrace.txt"), "")?;
        let p = check_signal(&blind, Signal::Kill, &killed)?;
        assert_eq!(p.len(), 3, "{p:?}");
        // Held, but not in bpftool's list: that list cannot be trusted.
        let unlisted = scenario("kill-unlisted", &files("", ""));
        fs::write(unlisted.join("bpf-before/map.txt"), "")?;
        let p = check_signal(&unlisted, Signal::Kill, &killed)?;
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("map 7"), "{p:?}");
        // refwatch never got ready: no signal was sent.
        let unsent = scenario("kill-unsent", &[]);
        let p = check_signal(
            &unsent,
            Signal::Kill,
            &outcome(Some(1), Some("exited before ready")),
        )?;
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("no signal.txt"), "{p:?}");
        for d in [clean, left, blind, unlisted, unsent] {
            let _ = fs::remove_dir_all(d);
        }
        Ok(())
    }
}
