//! `refwatch report`: replays a recording through the detectors and lists
//! every stuck episode, with holders, and the pages still stuck at its end.

mod groups;
mod lines;

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::{
    event::{Kind, cgroup::container_id, pgmap_name},
    fasthash::FastMap,
    format::json::{Frames, JsonEvent},
    format::recording::{Header, Line, Reader, Recording},
    readback::Readback,
    state::{Thresholds, Tracker},
};

pub use groups::{HolderGroupOut, ReleaserOut, seen_via};

/// A holder in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderOut {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub ts_ns: u64,
    pub event: String,
    pub stack: Vec<String>,
    /// The reference was taken by this parent process while it forked the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<u32>,
    /// The holder process's cgroup, when the recording has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The container id its cgroup names ([`container_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// One episode in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeOut {
    pub pfn: u64,
    pub pgmap_type: String,
    pub detector: String,
    /// The page map's owner (free callback or ops symbol), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub reason: String,
    pub start_ns: u64,
    pub detected_ns: u64,
    pub end_ns: Option<u64>,
    /// At most [`MAX_HOLDERS_SHOWN`] (16), the earliest taken first.
    pub holders: Vec<HolderOut>,
    /// Holders beyond those listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub holders_omitted: u64,
    pub holder_note: Option<String>,
    /// The page's last events before detection (at most 5).
    pub last_events: Vec<JsonEvent>,
    /// Ended because events of the page were lost: from `end_ns` its state
    /// is unknown, not known to be fine.
    #[serde(default)]
    pub ended_by_loss: bool,
    /// The drop that ended it (put, unpin or free): who released the page,
    /// with its stack (from the hardware watchpoint under `--watch`, which
    /// names the releaser of references taken before watching).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_by: Option<JsonEvent>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A page some of whose events were lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageGaps {
    pub pfn: u64,
    /// Losses noted on it.
    pub gaps: u32,
    /// Its state is unknown at the end (no event after its last loss).
    pub unknown: bool,
}

/// The whole report (the stable `--json` form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub kernel: String,
    pub complete: bool,
    pub events: u64,
    pub pages: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub episodes: Vec<EpisodeOut>,
    /// The episodes grouped by holder, most pages first.
    #[serde(default)]
    pub holder_groups: Vec<HolderGroupOut>,
    /// PFNs still flagged at the end, sorted.
    pub stuck_at_end: Vec<u64>,
    /// Fraction of episodes whose holder was named.
    pub holders_named: f64,
    /// Events the kernel lost, every kind (the recording's last count).
    #[serde(default)]
    pub dropped: u64,
    /// Events past `--max-rate`: counted, not recorded; their pages have
    /// gaps like lost events' (the recording's last count).
    #[serde(default)]
    pub capped: u64,
    /// Pages whose state is unknown at the end because events were lost.
    #[serde(default)]
    pub unknown_at_end: Vec<u64>,
    /// Every page with lost events.
    #[serde(default)]
    pub gaps: Vec<PageGaps>,
    /// Closed episodes left out to stay within the episode cap (the oldest).
    #[serde(default)]
    pub episodes_dropped: u64,
    /// Events of pages the report could not follow: [`REPORT_MAX_PFNS`]
    /// pages were tracked, each referenced or stuck, when they came. Those
    /// pages' state is unknown.
    #[serde(default)]
    pub events_not_followed: u64,
    /// The filters the recording was made through (absent: none): pages
    /// and tasks they leave out are not in it, stuck or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// `--vmlinux`: the source line of each frame shown that the image
    /// knows, by frame (`"try_grab_folio_fast+0x5": "mm/gup.c:412"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_lines: BTreeMap<String, String>,
}

/// Pages a report tracks at once (as many as `attach` by default); idle
/// pages make room for new ones, so only a recording with more pages
/// referenced at one time than this loses any.
pub const REPORT_MAX_PFNS: usize = crate::state::DEFAULT_MAX_PFNS;

/// `report --fail-on-stuck`: a page with a known state is stuck at the end.
pub const EXIT_STUCK: u8 = 3;
/// `report --fail-on-stuck`: nothing known to be stuck, but some page's
/// state is unknown because events were lost.
pub const EXIT_UNKNOWN: u8 = 4;

impl Report {
    /// The exit code of `report --fail-on-stuck`: [`EXIT_STUCK`], else
    /// [`EXIT_UNKNOWN`] (lost events, or pages not followed), else 0.
    pub fn fail_on_stuck_code(&self) -> u8 {
        if !self.stuck_at_end.is_empty() {
            EXIT_STUCK
        } else if !self.unknown_at_end.is_empty() || self.events_not_followed > 0 {
            EXIT_UNKNOWN
        } else {
            0
        }
    }
}

/// A recording's `gap` line, applied to `t`.
pub fn apply_gap(t: &mut Tracker, ts_ns: u64, pfn: Option<u64>) {
    match pfn {
        Some(pfn) => t.apply_gap(pfn, ts_ns),
        None => t.apply_gap_everywhere(ts_ns),
    }
}

/// Most holders listed per episode; the rest are counted in
/// [`EpisodeOut::holders_omitted`].
pub const MAX_HOLDERS_SHOWN: usize = 16;

/// Processes whose cgroup a report remembers (forgotten all at once when full).
const MAX_CGROUPS: usize = 1 << 16;

/// Builds a report line by line: state per page (the tracker's), per
/// distinct stack ([`Readback`]) and per page map owner, not per event.
pub struct Builder {
    t: Tracker,
    rb: Readback,
    /// The entry of the last event of each PFN that named its owner.
    owners: FastMap<u64, u32>,
    /// Processes' cgroups, as their events said.
    cgroups: FastMap<u32, std::rc::Rc<str>>,
    kernel: String,
    start_ns: u64,
    filter: Option<String>,
}

impl Builder {
    /// `thresholds` overrides the recorded ones.
    pub fn new(header: &Header, thresholds: Option<Thresholds>) -> Self {
        Self::with_max_pfns(header, thresholds, REPORT_MAX_PFNS)
    }

    /// [`Builder::new`] tracking at most `max_pfns` pages at once.
    pub fn with_max_pfns(header: &Header, thresholds: Option<Thresholds>, max_pfns: usize) -> Self {
        let th = thresholds.unwrap_or(header.thresholds);
        let mut t = Tracker::new(header.rules.clone(), th, 64, max_pfns);
        // Losses are known up to each tick: the detectors judge no further.
        t.set_loss_horizon(header.started_ns);
        Self {
            t,
            rb: Readback::new(),
            owners: FastMap::default(),
            cgroups: FastMap::default(),
            kernel: header.kernel.clone(),
            start_ns: header.started_ns,
            filter: header.filter.clone(),
        }
    }

    /// Folds one line in; `no` is its line number, for messages.
    pub fn line(&mut self, no: usize, line: &Line) -> Result<()> {
        match line {
            Line::Event(j) => {
                let Some((ev, id)) = self.rb.page_event(j) else {
                    bail!("line {no}: unknown event name {:?}", j.event);
                };
                if j.owner.is_some() {
                    self.owners.insert(j.pfn, id);
                }
                if let Some(c) = &j.cgroup
                    && self.cgroups.get(&j.tgid).is_none_or(|k| **k != **c)
                {
                    if self.cgroups.len() >= MAX_CGROUPS {
                        self.cgroups.clear();
                    }
                    self.cgroups.insert(j.tgid, c.as_str().into());
                }
                self.t.apply(&ev);
            }
            Line::Tick { now_ns, .. } | Line::End { now_ns, .. } => {
                self.t.set_loss_horizon(*now_ns);
                self.t.advance(*now_ns);
            }
            Line::Gap { ts_ns, pfn } => apply_gap(&mut self.t, *ts_ns, *pfn),
            Line::Header(_) => {}
        }
        Ok(())
    }

    /// The report once every line is in. Kernel addresses the recording
    /// holds are hidden ([`JsonEvent::hide_kernel_addresses`]) unless
    /// `raw_pointers`.
    pub fn finish(
        mut self,
        complete: bool,
        end_ns: u64,
        dropped: u64,
        raw_pointers: bool,
    ) -> Report {
        let t = &mut self.t;
        t.advance(end_ns);
        let rb = &self.rb;
        let shown = |mut j: JsonEvent| {
            if !raw_pointers {
                j.hide_kernel_addresses();
            }
            j
        };
        let owner_of = |pfn: u64| {
            let o = rb.owner(*self.owners.get(&pfn)?)?;
            let mut o = o.to_string();
            if !raw_pointers {
                o = shown(JsonEvent {
                    owner: Some(o),
                    ..placeholder()
                })
                .owner?;
            }
            Some(o)
        };
        let stack_of = |s: &crate::event::Stack| {
            let frames = rb.stack(s).map(<[String]>::to_vec).unwrap_or_default();
            if raw_pointers {
                frames
            } else {
                shown(JsonEvent {
                    stack: frames.into(),
                    ..placeholder()
                })
                .stack
                .to_vec()
            }
        };
        let episodes: Vec<EpisodeOut> = t
            .episodes
            .iter()
            .map(|e| EpisodeOut {
                pfn: e.pfn,
                pgmap_type: pgmap_name(e.pgmap_type).into(),
                detector: e.detector.name().into(),
                owner: owner_of(e.pfn),
                reason: e.reason.clone(),
                start_ns: e.start_ns,
                detected_ns: e.detected_ns,
                end_ns: e.end_ns,
                holders: e
                    .holders
                    .iter()
                    .take(MAX_HOLDERS_SHOWN)
                    .map(|h| HolderOut {
                        pid: h.tgid,
                        tid: h.pid,
                        comm: h.comm.to_string(),
                        ts_ns: h.ts_ns,
                        event: h.kind.name().into(),
                        stack: stack_of(&h.stack),
                        forked_from: h.forked_from.map(|(tgid, _)| tgid),
                        cgroup: self.cgroups.get(&h.tgid).map(|c| c.to_string()),
                        container: self
                            .cgroups
                            .get(&h.tgid)
                            .and_then(|c| container_id(c))
                            .map(Into::into),
                    })
                    .collect(),
                holders_omitted: e.holders.len().saturating_sub(MAX_HOLDERS_SHOWN) as u64,
                holder_note: e.holder_note.clone(),
                ended_by_loss: e.ended_by_loss,
                released_by: e
                    .released_by
                    .as_deref()
                    .and_then(|ev| rb.json(ev))
                    .map(shown),
                last_events: e
                    .last_events
                    .iter()
                    .filter_map(|ev| rb.json(ev).map(shown))
                    .collect(),
            })
            .collect();
        let holder_groups = groups::holder_groups(
            &t.episodes,
            &|s| rb.stack_id(s),
            &stack_of,
            &owner_of,
            &|tgid| self.cgroups.get(&tgid).map(|c| c.to_string()),
        );
        let named = episodes.iter().filter(|e| !e.holders.is_empty()).count();
        let holders_named = if episodes.is_empty() {
            1.0
        } else {
            named as f64 / episodes.len() as f64
        };
        Report {
            kernel: self.kernel,
            filter: self.filter,
            complete,
            events: t.events(),
            pages: t.len() as u64,
            start_ns: self.start_ns,
            end_ns,
            stuck_at_end: t.stuck().iter().map(|p| p.pfn).collect(),
            episodes,
            holder_groups,
            holders_named,
            dropped,
            capped: 0,
            episodes_dropped: t.episodes_dropped(),
            events_not_followed: t.over_cap(),
            source_lines: BTreeMap::new(),
            unknown_at_end: t.unknown_pages().iter().map(|(pfn, _)| *pfn).collect(),
            gaps: t
                .gapped_pages()
                .into_iter()
                .map(|(pfn, g)| PageGaps {
                    pfn,
                    gaps: g.gaps,
                    unknown: g.unknown_since.is_some(),
                })
                .collect(),
        }
    }
}

/// An event with nothing in it, to run a name or stack through
/// [`JsonEvent::hide_kernel_addresses`].
fn placeholder() -> JsonEvent {
    JsonEvent {
        ts_ns: 0,
        cpu: 0,
        pid: 0,
        tgid: 0,
        comm: String::new(),
        pfn: 0,
        event: String::new(),
        refcount_before: None,
        refcount_after: None,
        mapcount: None,
        pgmap_type: String::new(),
        nr_pages: 0,
        symbol: String::new(),
        ret: None,
        stack: Frames::default(),
        stack_short: false,
        owner: None,
        migration: None,
        late: false,
        forking: false,
        page: None,
        cgroup: None,
    }
}

/// Builds the report of a recording read whole; `thresholds` overrides the
/// recorded ones.
pub fn build(
    rec: &Recording,
    thresholds: Option<Thresholds>,
    raw_pointers: bool,
) -> Result<Report> {
    let mut b = Builder::new(&rec.header, thresholds);
    for (i, line) in rec.lines.iter().enumerate() {
        b.line(i + 2, line)?;
    }
    let counts = |of: fn(&Line) -> Option<u64>| rec.lines.iter().filter_map(of).max().unwrap_or(0);
    let dropped = counts(|l| match l {
        Line::Tick { dropped, .. } | Line::End { dropped, .. } => Some(*dropped),
        _ => None,
    });
    let capped = counts(|l| match l {
        Line::Tick { capped, .. } | Line::End { capped, .. } => Some(*capped),
        _ => None,
    });
    let mut r = b.finish(rec.complete, rec.end_ns(), dropped, raw_pointers);
    r.capped = capped;
    Ok(r)
}

/// Builds the report streaming from `r`, one line at a time.
pub fn build_from<R: std::io::BufRead>(
    r: &mut Reader<R>,
    thresholds: Option<Thresholds>,
    raw_pointers: bool,
) -> Result<Report> {
    let mut b = Builder::new(r.header(), thresholds);
    while let Some((no, line)) = r.next_line()? {
        b.line(no, &line).with_context(|| r.name().to_string())?;
    }
    let mut report = b.finish(r.complete(), r.end_ns(), r.dropped(), raw_pointers);
    report.capped = r.capped();
    Ok(report)
}

/// The text form of a report, for a terminal: the episodes grouped by
/// holder ([`HolderGroupOut`]). Task names and every other string from a
/// recording come out with control characters replaced, so a crafted `comm`
/// cannot clear the screen or retitle the terminal.
pub fn text(r: &Report) -> String {
    text_with(r, false)
}

/// [`text`] with one block per episode (`report --per-page`).
pub fn text_per_page(r: &Report) -> String {
    text_with(r, true)
}

fn text_with(r: &Report, per_page: bool) -> String {
    let rel = |ns: u64| (ns.saturating_sub(r.start_ns)) as f64 / 1e9;
    let mut out = format!(
        "kernel {}: {} events on {} pages over {:.1}s{}\n",
        r.kernel,
        r.events,
        r.pages,
        rel(r.end_ns),
        if r.complete {
            ""
        } else {
            " (recording cut short)"
        }
    );
    if let Some(f) = &r.filter {
        out.push_str(&format!(
            "recorded through a filter, other pages and tasks left out: {}\n",
            printable(f)
        ));
    }
    if r.events_not_followed > 0 {
        out.push_str(&format!(
            "{} events of pages not followed: {REPORT_MAX_PFNS} pages were tracked, each referenced, when they came (those pages' state is unknown)\n",
            r.events_not_followed
        ));
    }
    if r.episodes.is_empty() {
        out.push_str("no stuck pages\n");
    } else if per_page {
        episodes_text(r, &mut out);
    } else {
        groups::text(r, &mut out);
    }
    if r.dropped > 0 || r.capped > 0 || !r.gaps.is_empty() {
        let capped = if r.capped > 0 {
            format!(
                ", {} more counted and not recorded past --max-rate",
                r.capped
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} event(s) lost{capped}; {} page(s) with gaps in their history, {} of them in an unknown state at the end (no verdict on those)\n",
            r.dropped,
            r.gaps.len(),
            r.unknown_at_end.len()
        ));
    }
    if r.stuck_at_end.is_empty() {
        out.push_str("no page is stuck at the end\n");
    } else if per_page {
        let pfns: Vec<String> = r.stuck_at_end.iter().map(|p| format!("{p:#x}")).collect();
        out.push_str(&format!("stuck at the end: {}\n", pfns.join(" ")));
    } else {
        let ranges = crate::state::groups::pfn_ranges(&r.stuck_at_end);
        out.push_str(&format!(
            "stuck at the end: {} page(s): {}\n",
            r.stuck_at_end.len(),
            crate::state::groups::ranges_text(&ranges, usize::MAX)
        ));
    }
    printable(&out)
}

/// One block per episode.
fn episodes_text(r: &Report, out: &mut String) {
    let rel = |ns: u64| (ns.saturating_sub(r.start_ns)) as f64 / 1e9;
    for e in &r.episodes {
        let end = match e.end_ns {
            Some(t) if e.ended_by_loss => format!(
                "until +{:.3}s, when events of the page were lost (its state unknown from then)",
                rel(t)
            ),
            Some(t) => format!(
                "until +{:.3}s ({:.3}s)",
                rel(t),
                t.saturating_sub(e.start_ns) as f64 / 1e9
            ),
            None => "still open at the end".into(),
        };
        let owner = e
            .owner
            .as_ref()
            .map_or(String::new(), |o| format!(", owner {o}"));
        out.push_str(&format!(
            "pfn {:#x} ({}{owner}) {}: from +{:.3}s {end}\n  {}\n",
            e.pfn,
            e.pgmap_type,
            e.detector,
            rel(e.start_ns),
            e.reason
        ));
        for h in &e.holders {
            let fork = h.forked_from.map_or(String::new(), |p| {
                format!(", taken for it by its parent pid {p} while forking")
            });
            out.push_str(&format!(
                "  holder: {} pid {} ({}{fork}) at +{:.3}s\n",
                h.comm,
                h.pid,
                h.event,
                rel(h.ts_ns)
            ));
            if let Some(c) = &h.cgroup {
                let container = h
                    .container
                    .as_ref()
                    .map_or(String::new(), |id| format!(", container {id}"));
                out.push_str(&format!("    in cgroup {c}{container}\n"));
            }
            for f in &h.stack {
                out.push_str(&r.frame_text(f));
            }
        }
        if e.holders_omitted > 0 {
            out.push_str(&format!(
                "  and {} more holder(s), not listed\n",
                e.holders_omitted
            ));
        }
        if let Some(n) = &e.holder_note {
            out.push_str(&format!("  holder unknown: {n}\n"));
            for ev in &e.last_events {
                out.push_str(&format!(
                    "    +{:.3}s {} {:?}->{:?} by {} pid {} in {}\n",
                    rel(ev.ts_ns),
                    ev.event,
                    ev.refcount_before,
                    ev.refcount_after,
                    ev.comm,
                    ev.tgid,
                    ev.symbol
                ));
            }
        }
        if let Some(rel_by) = &e.released_by {
            out.push_str(&format!(
                "  released by {} pid {} ({} in {}) at +{:.3}s\n",
                rel_by.comm,
                rel_by.tgid,
                rel_by.event,
                rel_by.symbol,
                rel(rel_by.ts_ns)
            ));
            for f in rel_by.stack.0.iter().flatten() {
                out.push_str(&r.frame_text(f));
            }
        }
    }
}

/// A readable per-PFN table.
pub fn summary_table(tracker: &Tracker) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:>6} {:>4} {:>4} {:>4} {:>5} {:>4} {:>5} {:>8}  {:<10} {:<11} {:<16} {}\n",
        "PFN",
        "TYPE",
        "EVENTS",
        "GET",
        "PUT",
        "PIN",
        "UNPIN",
        "FREE",
        "WAIT",
        "REFCOUNT",
        "STATE",
        "LAST",
        "TASK",
        "FLAGS"
    );
    for p in tracker.pages_sorted() {
        let c = |k: Kind| p.counts[k.raw() as usize];
        let total: u64 = p.counts.iter().sum();
        let flags: Vec<&str> = p.flags().iter().map(|d| d.name()).collect();
        out.push_str(&format!(
            "{:<12} {:<8} {:>6} {:>4} {:>4} {:>4} {:>5} {:>4} {:>5} {:>8}  {:<10} {:<11} {:<16} {}\n",
            format!("{:#x}", p.pfn),
            pgmap_name(p.pgmap_type),
            total,
            c(Kind::Get),
            c(Kind::Put),
            c(Kind::Pin),
            c(Kind::Unpin),
            c(Kind::Free),
            c(Kind::LayoutWait),
            p.refcount.map_or("?".to_string(), |r| r.to_string()),
            p.state.name(),
            p.last_kind.name(),
            p.last_comm,
            flags.join(","),
        ));
    }
    out
}

/// `text` with every control character but newlines and tabs replaced by `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod text_tests {
    use super::*;

    /// A recording made through a filter says so in its report, text and
    /// JSON; one made without says nothing (the SYNTHETIC demo recording).
    #[test]
    fn a_filtered_recording_says_so() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/synthetic-dax-hold.rec");
        let text = std::fs::read_to_string(path).expect("recording");
        let plain = crate::format::recording::parse(text.as_bytes(), "plain").expect("parse");
        let r = build(&plain, None, false).expect("report");
        assert_eq!(r.filter, None);
        assert!(!super::text(&r).contains("filter"));
        let json = serde_json::to_value(&r).expect("json");
        assert!(json.get("filter").is_none(), "{json}");

        let (first, rest) = text.split_once('\n').expect("header line");
        let mut header: serde_json::Value = serde_json::from_str(first).expect("header");
        header["filter"] = "--pfn 0x40000-0x4000f --pid 42".into();
        let filtered = format!("{header}\n{rest}");
        let rec = crate::format::recording::parse(filtered.as_bytes(), "filtered").expect("parse");
        let r = build(&rec, None, false).expect("report");
        assert_eq!(r.filter.as_deref(), Some("--pfn 0x40000-0x4000f --pid 42"));
        assert!(
            super::text(&r).contains(
                "recorded through a filter, other pages and tasks left out: --pfn 0x40000-0x4000f --pid 42\n"
            ),
            "{}",
            super::text(&r)
        );
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["filter"], "--pfn 0x40000-0x4000f --pid 42");
    }

    #[test]
    fn terminal_controls_do_not_reach_the_terminal() {
        let comm = "evil\x1b]0;owned\x07\x1b[2J\u{9b}31m";
        let out = printable(&format!("holder: {comm} pid 1\n"));
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert_eq!(out, "holder: evil?]0;owned??[2J?31m pid 1\n");
    }
}

#[cfg(test)]
mod cgroup_tests {
    use crate::{format::recording::Line, tui::synthetic};

    /// The synthetic dax-hold recording with the holder's events in a
    /// container's cgroup: its holder names the cgroup and the container.
    #[test]
    fn holders_name_their_cgroup_and_container() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cg = format!("/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope");
        let (header, mut lines) = synthetic::dax_hold_recording();
        for l in &mut lines {
            if let Line::Event(j) = l
                && j.tgid == 4242
            {
                j.cgroup = Some(cg.clone());
            }
        }
        let mut b = super::Builder::new(&header, None);
        for (i, l) in lines.iter().enumerate() {
            b.line(i + 2, l).expect("line");
        }
        let end = lines
            .iter()
            .filter_map(|l| match l {
                Line::Tick { now_ns, .. } | Line::End { now_ns, .. } => Some(*now_ns),
                _ => None,
            })
            .max()
            .unwrap_or(header.started_ns);
        let r = b.finish(true, end, 0, false);
        let holders: Vec<_> = r.episodes.iter().flat_map(|e| &e.holders).collect();
        assert!(!holders.is_empty());
        for h in &holders {
            if h.pid == 4242 {
                assert_eq!(h.cgroup.as_deref(), Some(cg.as_str()));
                assert_eq!(h.container.as_deref(), Some(id));
            } else {
                assert_eq!((h.cgroup.as_deref(), h.container.as_deref()), (None, None));
            }
        }
        let json = serde_json::to_value(&r).expect("json");
        let h = &json["episodes"][0]["holders"][0];
        assert_eq!(h["cgroup"], cg.as_str(), "{h}");
        assert_eq!(h["container"], id);
        let g = &json["holder_groups"][0];
        assert_eq!(
            (&g["pid"], &g["cgroup"], &g["container"]),
            (&4242.into(), &cg.as_str().into(), &id.into()),
            "{g}"
        );
        let text = super::text(&r);
        assert!(
            text.contains(&format!("\n  in cgroup {cg}, container {id}\n")),
            "{text}"
        );
        let per_page = super::text_per_page(&r);
        assert!(
            per_page.contains(&format!("    in cgroup {cg}, container {id}\n")),
            "{per_page}"
        );
    }
}
