//! The live TUI on a real kernel (`dax-hold+tui`): `refwatch attach` ran on
//! a pseudo-terminal in the guest (`workload pty`, which captured what it
//! drew, see [`crate::ptycap`]) while the workload held its pages. The
//! capture is played through a terminal emulator (`vt100`) and the screens
//! are judged at the workload's marks:
//!
//! - at `hold_start`: the TUI is on the alternate screen with its header
//!   (`refwatch`, `live`, the probes);
//! - at `hold_end` (the last screen of the hold): every held PFN has a row
//!   marked stuck (`●`) naming the holder, the workload's process
//!   (`workload/PID`), and the header counts them all stuck, none dropped;
//! - when `q` is typed (after the hold): nothing stuck any more;
//! - at the end: refwatch exited 0 on that `q`, the terminal is restored
//!   (alternate screen left, cursor shown) and its last words say nothing is
//!   stuck or lost.
//!
//! Each screen's expectations are a function of their own
//! ([`held_screen`], …), so a later view (e.g. holder groups) is one more
//! expectation there.

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};

use super::read_workload;
use crate::ptycap::{self, Capture, Kind};

/// The capture the guest writes in a `+tui` scenario's folder.
pub const CAPTURE: &str = "tui.capture";

/// What the workload says it held, and when.
#[derive(Debug, Clone)]
pub struct Held {
    pub pfns: Vec<u64>,
    /// The workload's process id: the holder's, as the TUI shows it.
    pub pid: u32,
    pub hold_start: u64,
    pub hold_end: u64,
}

/// A capture played through a terminal emulator, up to a time at a time.
pub struct Player<'a> {
    cap: &'a Capture,
    parser: vt100::Parser,
    next: usize,
}

impl<'a> Player<'a> {
    pub fn new(cap: &'a Capture) -> Result<Self> {
        let size = |n: u16, what: &str| {
            std::num::NonZeroU16::new(n).with_context(|| format!("the capture has 0 {what}"))
        };
        Ok(Self {
            cap,
            parser: vt100::Parser::new(size(cap.rows, "rows")?, size(cap.cols, "columns")?, 0),
            next: 0,
        })
    }

    /// The screen with everything written before `ns` shown.
    pub fn at(&mut self, ns: u64) -> &vt100::Screen {
        while let Some(r) = self.cap.records.get(self.next) {
            if r.ns >= ns {
                break;
            }
            if let Kind::Output(b) = &r.kind {
                self.parser.process(b);
            }
            self.next += 1;
        }
        self.parser.screen()
    }

    /// The screen once everything was written.
    pub fn end(&mut self) -> &vt100::Screen {
        self.at(u64::MAX)
    }
}

/// The screen's rows as text.
pub fn rows(screen: &vt100::Screen) -> Vec<String> {
    let (_, cols) = screen.size();
    screen.rows(0, cols.get()).collect()
}

/// The number after `word ` in the header (its first three rows).
fn header_count(rows: &[String], word: &str) -> Option<u64> {
    let pat = format!("{word} ");
    rows.iter().take(3).find_map(|r| {
        let at = r.find(&pat)? + pat.len();
        let digits: String = r[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

/// The page watched from the TUI (`w` on the first held page): its
/// release came through the watchpoint, by the workload, with a stack.
fn watched_release(dir: &Path, held: &Held) -> Result<Vec<String>> {
    let Some(first) = held.pfns.iter().min() else {
        return Ok(vec!["the workload held no page".to_owned()]);
    };
    let path = dir.join("events.jsonl");
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let puts = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["symbol"] == "watchpoint"
                && e["event"] == "put"
                && e["pfn"].as_u64() == Some(*first)
                && e["tgid"].as_u64() == Some(u64::from(held.pid))
                && e["stack"].as_array().is_some_and(|s| !s.is_empty())
        })
        .count();
    println!(
        "    tui: {puts} put(s) of the watched page {first:#x} by the workload through the watchpoint"
    );
    Ok(if puts == 0 {
        vec![format!(
            "no put of the watched page {first:#x} by the workload (pid {}) through the watchpoint in events.jsonl",
            held.pid
        )]
    } else {
        Vec::new()
    })
}

/// PFNs as refwatch writes their runs: `0x48200-0x4820f,0x48300`, the
/// first two runs.
fn ranges_text(pfns: &[u64]) -> String {
    let mut sorted = pfns.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for p in sorted {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(p) => *last = p,
            _ => runs.push((p, p)),
        }
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(2)
        .map(|&(a, b)| {
            if a == b {
                format!("{a:#x}")
            } else {
                format!("{a:#x}-{b:#x}")
            }
        })
        .collect();
    if runs.len() > 2 {
        parts.push(format!("(+{} more ranges)", runs.len() - 2));
    }
    parts.join(",")
}

/// The page table's row of `pfn`: its PFN cell (`0x…`) first, after the
/// stuck marker.
fn pfn_row(rows: &[String], pfn: u64) -> Option<&String> {
    let want = format!("{pfn:#x}");
    rows.iter().find(|r| {
        r.trim_start_matches('●')
            .split_whitespace()
            .next()
            .map(|cell| cell.trim_end_matches(WATCH_MARKS))
            == Some(want.as_str())
    })
}

/// What the TUI writes right after a PFN: watched, queued for a watchpoint.
const WATCH_MARKS: [char; 2] = ['◉', '○'];

/// Whether the row's PFN cell carries the watched mark.
fn watched(row: &str) -> bool {
    row.trim_start_matches('●')
        .split_whitespace()
        .next()
        .is_some_and(|cell| cell.ends_with('◉'))
}

/// What a screen shows, for messages: its non-empty rows.
fn shown(rows: &[String]) -> String {
    rows.iter()
        .map(|r| r.trim_end())
        .filter(|r| !r.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The TUI's first screen: on the alternate screen, with its header.
pub fn header_screen(screen: &vt100::Screen) -> Vec<String> {
    let rows = rows(screen);
    let mut bad = Vec::new();
    if !screen.alternate_screen() {
        bad.push("the TUI is not on the alternate screen".to_owned());
    }
    let head = rows.first().map(String::as_str).unwrap_or_default();
    for word in ["refwatch", "live", "probes "] {
        if !head.contains(word) {
            bad.push(format!("its header lacks {word:?}: {head:?}"));
        }
    }
    bad
}

/// The last screen of the hold: each held page on a row marked stuck that
/// names the holder, all of them counted stuck, nothing dropped.
pub fn held_screen(screen: &vt100::Screen, held: &Held) -> Vec<String> {
    let rows = rows(screen);
    let mut bad = Vec::new();
    let holder = format!("workload/{}", held.pid);
    for pfn in &held.pfns {
        match pfn_row(&rows, *pfn) {
            None => bad.push(format!("held pfn {pfn:#x} has no row")),
            Some(r) if !r.starts_with('●') || !r.contains(&holder) => bad.push(format!(
                "held pfn {pfn:#x}: row {:?} is not marked stuck (●) with the holder {holder}",
                r.trim_end()
            )),
            Some(_) => {}
        }
    }
    // The holder group on the main screen: one holder, every held page.
    let group = format!(
        "holder {holder} get {} page(s) {}",
        held.pfns.len(),
        ranges_text(&held.pfns)
    );
    if !rows.iter().take(3).any(|r| r.contains(&group)) {
        bad.push(format!(
            "the header does not name the holder group {group:?}"
        ));
    }
    // `w` was typed on the selected page, the first held one: a hardware
    // watchpoint now watches it.
    if let Some(first) = held.pfns.iter().min()
        && !pfn_row(&rows, *first).is_some_and(|r| watched(r))
    {
        bad.push(format!(
            "held pfn {first:#x} is not marked watched (◉) after w"
        ));
    }
    if header_count(&rows, "watch") != Some(1) {
        bad.push("the header does not count 1 page watched (watch 1/…)".to_owned());
    }
    let stuck = header_count(&rows, "stuck");
    if stuck != Some(held.pfns.len() as u64) {
        bad.push(format!(
            "the header counts {stuck:?} pages stuck, not the {} held",
            held.pfns.len()
        ));
    }
    if header_count(&rows, "drops") != Some(0) {
        bad.push("the header counts drops".to_owned());
    }
    if !bad.is_empty() {
        bad.push(format!("the screen: {}", shown(&rows)));
    }
    bad
}

/// The screen after the hold: no page stuck.
pub fn cleared_screen(screen: &vt100::Screen) -> Vec<String> {
    let rows = rows(screen);
    let mut bad = Vec::new();
    if header_count(&rows, "stuck") != Some(0) {
        bad.push(format!(
            "the header still counts {:?} pages stuck",
            header_count(&rows, "stuck")
        ));
    }
    if let Some(r) = rows.iter().find(|r| r.starts_with('●')) {
        bad.push(format!("a row is still marked stuck: {:?}", r.trim_end()));
    }
    if let Some(r) = rows.iter().take(3).find(|r| r.contains("│ holder ")) {
        bad.push(format!(
            "the header still names a holder: {:?}",
            r.trim_end()
        ));
    }
    if !bad.is_empty() {
        bad.push(format!("the screen: {}", shown(&rows)));
    }
    bad
}

/// The terminal after refwatch: restored, and its summary says nothing is
/// stuck or lost.
pub fn restored_screen(screen: &vt100::Screen) -> Vec<String> {
    let mut bad = Vec::new();
    if screen.alternate_screen() {
        bad.push("the terminal was left on the alternate screen".to_owned());
    }
    if screen.hide_cursor() {
        bad.push("the cursor was left hidden".to_owned());
    }
    let text = screen.contents();
    for words in [" 0 stuck now", " 0 lost"] {
        if !text.contains(words) {
            bad.push(format!(
                "refwatch's last words lack {words:?}: {}",
                text.trim()
            ));
        }
    }
    bad
}

/// Judges a capture against what the workload held.
pub fn judge(cap: &Capture, held: &Held) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let quit = cap.inputs().find(|(_, b)| *b == b"q").map(|(ns, _)| ns);
    let exit = cap.exit();
    let mut play = Player::new(cap)?;
    let mut on = |what: &str, problems: Vec<String>| {
        bad.extend(problems.into_iter().map(|p| format!("{what}: {p}")));
    };
    on(
        "at the hold's start",
        header_screen(play.at(held.hold_start)),
    );
    on(
        "at the hold's end",
        held_screen(play.at(held.hold_end), held),
    );
    match quit {
        Some(q) if q > held.hold_end => on("when q was typed", cleared_screen(play.at(q))),
        Some(q) => on(
            "q",
            vec![format!(
                "typed {} ms before the hold ended",
                (held.hold_end - q) / 1_000_000
            )],
        ),
        None => on("q", vec!["never typed".to_owned()]),
    }
    on("at the end", restored_screen(play.end()));
    match (exit, quit) {
        (Some((_, 0)), Some(_)) => {}
        (Some((_, code)), _) => bad.push(format!("refwatch attach exited with {code}, not 0")),
        (None, _) => bad.push("refwatch attach's end is not in the capture".to_owned()),
    }
    Ok(bad)
}

/// Checks the `+tui` scenario in `dir`.
pub fn check_tui(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(CAPTURE);
    if !path.is_file() {
        let err = fs::read_to_string(dir.join("pty.err")).unwrap_or_default();
        bail!(
            "no {CAPTURE}: the pseudo-terminal recorder said {:?}",
            err.trim()
        );
    }
    let w = read_workload(dir)?;
    let pid_file = dir.join("workload.pid");
    let pid = fs::read_to_string(&pid_file)
        .with_context(|| format!("read {}", pid_file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("parse {}", pid_file.display()))?;
    let held = Held {
        pfns: w.pfns.clone(),
        pid,
        hold_start: w.mark("hold_start")?,
        hold_end: w.mark("hold_end")?,
    };
    let cap = ptycap::parse(&fs::read(&path).with_context(|| format!("read {}", path.display()))?)
        .with_context(|| format!("parse {}", path.display()))?;
    let mut bad = judge(&cap, &held)?;
    bad.extend(watched_release(dir, &held)?);
    let mut play = Player::new(&cap)?;
    let screen = rows(play.at(held.hold_end));
    println!(
        "    tui: {}×{} capture of {} records; at the hold's end: {}",
        cap.cols,
        cap.rows,
        cap.records.len(),
        screen
            .iter()
            .take(3)
            .map(|r| r.trim())
            .collect::<Vec<_>>()
            .join(" / ")
    );
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ptycap::Writer;

    /// A real `dax-hold+tui` run of the lab (debian-6.12, TCG): the
    /// capture, the workload's report and pid.
    fn real_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dax-hold-tui")
    }

    fn real() -> (Capture, Held) {
        let dir = real_dir();
        let cap = ptycap::parse(&fs::read(dir.join(CAPTURE)).expect("read the capture"))
            .expect("parse the capture");
        let w = read_workload(&dir).expect("workload.json");
        let held = Held {
            pfns: w.pfns.clone(),
            pid: fs::read_to_string(dir.join("workload.pid"))
                .expect("workload.pid")
                .trim()
                .parse()
                .expect("a pid"),
            hold_start: w.mark("hold_start").expect("hold_start"),
            hold_end: w.mark("hold_end").expect("hold_end"),
        };
        (cap, held)
    }

    #[test]
    fn the_real_capture_passes() {
        let (cap, held) = real();
        assert_eq!((cap.cols, cap.rows), (120, 50));
        assert_eq!(held.pfns.len(), 16);
        assert_eq!(judge(&cap, &held).expect("judge"), Vec::<String>::new());
        assert_eq!(check_tui(&real_dir()).expect("check"), Vec::<String>::new());
    }

    #[test]
    fn the_real_screens_show_what_the_workload_held() {
        let (cap, held) = real();
        let mut play = Player::new(&cap).expect("player");
        // Before refwatch drew anything: no header.
        let first = cap.records.first().expect("a record").ns;
        assert!(!header_screen(play.at(first)).is_empty());
        let during = rows(play.at(held.hold_end));
        for pfn in &held.pfns {
            let row = pfn_row(&during, *pfn).unwrap_or_else(|| panic!("{pfn:#x}: {during:#?}"));
            assert!(row.starts_with('●'), "{row}");
            assert!(row.contains(&format!("workload/{}", held.pid)), "{row}");
            assert!(row.contains("held"), "{row}");
        }
        assert_eq!(header_count(&during, "stuck"), Some(16));
        assert_eq!(header_count(&during, "PFNs"), Some(16));
        let (q, _) = cap.inputs().find(|(_, b)| *b == b"q").expect("q typed");
        let after = rows(play.at(q));
        assert_eq!(header_count(&after, "stuck"), Some(0));
        // The pages are still listed, none stuck.
        for pfn in &held.pfns {
            let row = pfn_row(&after, *pfn).unwrap_or_else(|| panic!("{pfn:#x}: {after:#?}"));
            assert!(!row.starts_with('●'), "{row}");
        }
    }

    #[test]
    fn the_real_capture_fails_what_it_does_not_show() {
        let (cap, held) = real();
        // Another holder, another page.
        let mut other = held.clone();
        other.pid += 1;
        other.pfns.push(0x1234);
        let bad = judge(&cap, &other).expect("judge").join("\n");
        assert!(bad.contains("held pfn 0x1234 has no row"), "{bad}");
        assert!(bad.contains("with the holder workload/"), "{bad}");
        assert!(
            bad.contains("counts Some(16) pages stuck, not the 17 held"),
            "{bad}"
        );
        // Judged before the pages were flagged: not stuck yet.
        let mut early = held.clone();
        early.hold_end = held.hold_start;
        let bad = judge(&cap, &early).expect("judge").join("\n");
        assert!(bad.contains("at the hold's end: held pfn"), "{bad}");
        // The capture cut before refwatch restored the terminal and ended.
        let mut cut = cap.clone();
        let q = cap.inputs().find(|(_, b)| *b == b"q").expect("q").0;
        cut.records.retain(|r| r.ns <= q);
        let bad = judge(&cut, &held).expect("judge").join("\n");
        assert!(bad.contains("left on the alternate screen"), "{bad}");
        assert!(bad.contains("cursor was left hidden"), "{bad}");
        assert!(bad.contains("end is not in the capture"), "{bad}");
        // No q: refwatch ended otherwise.
        let mut no_q = cap.clone();
        no_q.records.retain(|r| !matches!(r.kind, Kind::Input(_)));
        let bad = judge(&no_q, &held).expect("judge").join("\n");
        assert!(bad.contains("q: never typed"), "{bad}");
    }

    /// A synthetic capture, written by hand in the TUI's escape sequences:
    /// the alternate screen with a header and one stuck row, then that row
    /// cleared, then the terminal restored (or not, with `restore` false).
    fn synthetic(restore: bool, exit: i32) -> Capture {
        let mut w = Writer::new(Vec::new(), 120, 12).expect("header");
        w.output(
            100,
            b"\x1b[?1049h\x1b[?25l\x1b[1;1H refwatch  live | 6.12 | probes 3/4\
              \x1b[2;1H events 9 (1/s) | drops 0 | stuck 1 | watch 1/4 | holder workload/306 get 1 page(s) 0x48200 held\
              \x1b[5;1H\xe2\x97\x8f 0x48200\xe2\x97\x89 fsdax  2  held  workload/306  held",
        )
        .expect("draw");
        w.output(
            300,
            b"\x1b[2;1H events 9 (0/s) | drops 0 | stuck 0\x1b[K\
              \x1b[5;1H  0x48200  fsdax  1  idle  (workload)\x1b[K",
        )
        .expect("clear");
        w.input(400, b"q").expect("q");
        if restore {
            w.output(
                500,
                b"\x1b[?1049l\x1b[?25hrefwatch: 9 events, 1 pages, 0 stuck now, 0 lost\r\n",
            )
            .expect("restore");
        } else {
            w.output(500, b"\x1b[?1049l").expect("half restore");
        }
        w.exit(600, exit).expect("exit");
        ptycap::parse(&w.into_inner()).expect("parse")
    }

    fn synthetic_held() -> Held {
        Held {
            pfns: vec![0x48200],
            pid: 306,
            hold_start: 150,
            hold_end: 250,
        }
    }

    #[test]
    fn a_synthetic_capture_is_judged_screen_by_screen() {
        assert_eq!(
            judge(&synthetic(true, 0), &synthetic_held()).expect("judge"),
            Vec::<String>::new()
        );
        let bad = judge(&synthetic(false, 1), &synthetic_held())
            .expect("judge")
            .join("\n");
        assert!(bad.contains("cursor was left hidden"), "{bad}");
        assert!(bad.contains("lack \" 0 stuck now\""), "{bad}");
        assert!(bad.contains("exited with 1, not 0"), "{bad}");
        assert!(!bad.contains("alternate screen"), "{bad}");
        // q typed during the hold: refwatch was quit too early.
        let mut early = synthetic(true, 0);
        for r in &mut early.records {
            if matches!(r.kind, Kind::Input(_)) {
                r.ns = 200;
            }
        }
        let bad = judge(&early, &synthetic_held()).expect("judge").join("\n");
        assert!(bad.contains("q: typed 0 ms before the hold ended"), "{bad}");
    }

    #[test]
    fn header_counts_and_pfn_rows_are_read_from_the_text() {
        let rows: Vec<String> = [
            " refwatch  live",
            " events 1,234 (5/s) │ drops 0 │ stuck 12",
            " PFNs 16: fsdax 16",
            "● 0x48200  fsdax",
            "  0x48201  fsdax",
            "─ pfn 0x48202 · fsdax ─",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(header_count(&rows, "events"), Some(1234));
        assert_eq!(header_count(&rows, "stuck"), Some(12));
        assert_eq!(header_count(&rows, "drops"), Some(0));
        assert_eq!(header_count(&rows, "lost"), None);
        assert!(pfn_row(&rows, 0x48200).is_some_and(|r| r.starts_with('●')));
        assert!(pfn_row(&rows, 0x48201).is_some());
        // The detail pane's title is no table row.
        assert!(pfn_row(&rows, 0x48202).is_none());
    }
}
