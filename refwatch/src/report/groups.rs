//! The report's episodes grouped by holder ([`crate::state::groups`]): the
//! `holder_groups` of the JSON form, and the default text.

use serde::{Deserialize, Serialize};

use super::Report;
use crate::{
    event::{Stack, pgmap_name},
    state::groups::{self, Group, Releaser, StackId},
    state::{Episode, groups::ranges_text},
};

/// Ranges shown per group in the text (the JSON has them all).
const RANGES_SHOWN: usize = 16;

/// One holder and the pages whose episodes name it (`holder_groups`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderGroupOut {
    /// The holder's task name; `null` when no holder is known
    /// (`holder_note` says why).
    pub comm: Option<String>,
    /// The holder's process id; `null` when unknown.
    pub pid: Option<u32>,
    /// The most specific detector that flagged the pages.
    pub detector: String,
    /// The holder's stack, innermost first (symbol+offset).
    pub stack: Vec<String>,
    /// How the holder took its reference (`get`, `pin`); `null` when unknown.
    pub event: Option<String>,
    /// Pages held.
    pub pages: u64,
    /// The pages as runs of consecutive PFNs, `[first, last]` inclusive,
    /// numbers (like episodes' `pfn`).
    pub pfn_ranges: Vec<[u64; 2]>,
    /// Page-map types of the pages.
    pub pgmap_types: Vec<String>,
    /// Their page maps' owners (free callback or ops symbols), when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// When the first of its pages' conditions began.
    pub since_ns: u64,
    /// When the last of them cleared; `null` while one is still stuck.
    pub end_ns: Option<u64>,
    /// Episodes folded in (a page flagged by several detectors has several).
    pub episodes: u64,
    /// Why no holder is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_note: Option<String>,
    /// The holder process's cgroup, when the recording has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The container id its cgroup names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Who released the pages that cleared (each page's last release).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released_by: Vec<ReleaserOut>,
}

/// Who released some of a group's pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaserOut {
    pub comm: String,
    pub pid: u32,
    /// `put`, `unpin` or `free`.
    pub event: String,
    /// What saw the drop: `watchpoint` (the hardware watchpoint), or the
    /// hook's name.
    pub via: String,
    pub pages: u64,
}

/// What saw a drop: the watchpoint, or the hook's logical name.
pub fn seen_via(hook: u32) -> &'static str {
    if hook == refwatch_common::hook::WATCHPOINT {
        crate::watch::SYMBOL
    } else {
        crate::plan::catalog::of_hook(hook).map_or("?", |l| l.name)
    }
}

impl ReleaserOut {
    /// `r`, who released `pages` pages.
    pub fn new(r: &Releaser, pages: usize) -> Self {
        Self {
            comm: r.comm.clone(),
            pid: r.tgid,
            event: r.kind.name().into(),
            via: seen_via(r.hook).into(),
            pages: pages as u64,
        }
    }

    /// `workload pid 248 (put via watchpoint)`, with the page count when
    /// `of` is more than one page.
    pub fn text(&self, of: usize) -> String {
        let pages = if of > 1 {
            format!(", {} page(s)", self.pages)
        } else {
            String::new()
        };
        format!(
            "{} pid {} ({} via {}{pages})",
            self.comm, self.pid, self.event, self.via
        )
    }
}

/// The groups of `episodes`, their stacks as `stack_of` names them.
pub(super) fn holder_groups(
    episodes: &[Episode],
    stack_id: &dyn Fn(&Stack) -> StackId,
    stack_of: &dyn Fn(&Stack) -> Vec<String>,
    owner_of: &dyn Fn(u64) -> Option<String>,
    cgroup_of: &dyn Fn(u32) -> Option<String>,
) -> Vec<HolderGroupOut> {
    groups::group(groups::episode_members(episodes, stack_id))
        .iter()
        .map(|g| out(g, stack_of, owner_of, cgroup_of))
        .collect()
}

fn out(
    g: &Group,
    stack_of: &dyn Fn(&Stack) -> Vec<String>,
    owner_of: &dyn Fn(u64) -> Option<String>,
    cgroup_of: &dyn Fn(u32) -> Option<String>,
) -> HolderGroupOut {
    let h = g.holder.as_ref();
    let cgroup = h.and_then(|h| cgroup_of(h.tgid));
    let mut owners: Vec<String> = g.pfns.iter().filter_map(|p| owner_of(*p)).collect();
    owners.sort_unstable();
    owners.dedup();
    HolderGroupOut {
        comm: h.map(|h| h.comm.to_string()),
        pid: h.map(|h| h.tgid),
        detector: g.key.detector.name().into(),
        stack: h.map(|h| stack_of(&h.stack)).unwrap_or_default(),
        event: h.map(|h| h.kind.name().into()),
        pages: g.pages() as u64,
        pfn_ranges: g.ranges().into_iter().map(|(a, b)| [a, b]).collect(),
        pgmap_types: g
            .pgmap_types
            .iter()
            .map(|t| pgmap_name(*t).to_string())
            .collect(),
        owners,
        since_ns: g.since_ns,
        end_ns: g.end_ns,
        episodes: g.members as u64,
        holder_note: g.key.note.clone(),
        container: cgroup
            .as_deref()
            .and_then(crate::event::cgroup::container_id)
            .map(Into::into),
        cgroup,
        released_by: g
            .released_by
            .iter()
            .map(|(r, n)| ReleaserOut::new(r, *n))
            .collect(),
    }
}

/// Whether `pfn` lies in one of `ranges` (sorted, not overlapping).
fn in_ranges(ranges: &[(u64, u64)], pfn: u64) -> bool {
    let i = ranges.partition_point(|&(_, last)| last < pfn);
    ranges.get(i).is_some_and(|&(first, _)| first <= pfn)
}

/// The text of the groups, one block each: who, the pages, the detector,
/// since when and until when, the stack once.
pub(super) fn text(r: &Report, out: &mut String) {
    let rel = |ns: u64| (ns.saturating_sub(r.start_ns)) as f64 / 1e9;
    for g in &r.holder_groups {
        let ranges: Vec<(u64, u64)> = g.pfn_ranges.iter().map(|[a, b]| (*a, *b)).collect();
        let who = match (&g.comm, g.pid) {
            (Some(c), Some(p)) => format!(
                "{c} pid {p} ({})",
                g.event.as_deref().unwrap_or("reference")
            ),
            _ => "holder unknown".into(),
        };
        let end = match g.end_ns {
            Some(t) => format!(
                "until +{:.3}s ({:.3}s)",
                rel(t),
                t.saturating_sub(g.since_ns) as f64 / 1e9
            ),
            None => {
                // Some of its pages may have cleared before the end.
                let still = r
                    .stuck_at_end
                    .iter()
                    .filter(|&&p| in_ranges(&ranges, p))
                    .count() as u64;
                if still >= g.pages {
                    "still stuck at the end".into()
                } else {
                    format!("{still} of them still stuck at the end")
                }
            }
        };
        let owners = if g.owners.is_empty() {
            String::new()
        } else {
            format!(", owner {}", g.owners.join(","))
        };
        out.push_str(&format!(
            "{who} holds {} page(s): {} ({}{owners}), {}, from +{:.3}s {end}\n",
            g.pages,
            ranges_text(&ranges, RANGES_SHOWN),
            g.pgmap_types.join(","),
            g.detector,
            rel(g.since_ns),
        ));
        if let Some(c) = &g.cgroup {
            let container = g
                .container
                .as_ref()
                .map_or(String::new(), |id| format!(", container {id}"));
            out.push_str(&format!("  in cgroup {c}{container}\n"));
        }
        if let Some(n) = &g.holder_note {
            out.push_str(&format!(
                "  {n} (--per-page lists each page's last events)\n"
            ));
        }
        for f in &g.stack {
            out.push_str(&r.frame_text(f));
        }
        if !g.released_by.is_empty() {
            let who: Vec<String> = g
                .released_by
                .iter()
                .map(|r| r.text(g.pages as usize))
                .collect();
            out.push_str(&format!("  released by {}\n", who.join(", ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{format::recording::Recording, report, tui::synthetic};

    /// The synthetic dax-hold recording (not from a kernel): `vmsplice-hold`
    /// keeps 0x40010 and 0x40011 past the 5 s threshold through one stack.
    fn synthetic_report() -> report::Report {
        let (header, lines) = synthetic::dax_hold_recording();
        let rec = Recording {
            header,
            lines,
            complete: true,
            truncated_tail: false,
        };
        report::build(&rec, None, false).expect("report")
    }

    #[test]
    fn holder_groups_in_json_one_per_holder() {
        let r = synthetic_report();
        assert_eq!(r.episodes.len(), 2, "{:#?}", r.episodes);
        let json = serde_json::to_value(&r).expect("json");
        let groups = json["holder_groups"].as_array().expect("holder_groups");
        assert_eq!(groups.len(), 1, "{groups:#?}");
        let g = &groups[0];
        assert_eq!(g["comm"], "vmsplice-hold");
        assert_eq!(g["pid"], 4242);
        assert_eq!(g["detector"], "held");
        assert_eq!(g["event"], "get");
        assert_eq!(g["pages"], 2);
        assert_eq!(g["pfn_ranges"], serde_json::json!([[0x40010, 0x40011]]));
        assert_eq!(g["pgmap_types"], serde_json::json!(["fsdax"]));
        assert_eq!(g["since_ns"], r.start_ns + 2_000_000_000);
        // One page is still held at the end.
        assert!(g["end_ns"].is_null(), "{g}");
        assert_eq!(g["episodes"], 2);
        assert!(g.get("holder_note").is_none(), "{g}");
        // The page that cleared names who released it, as its episode does.
        assert_eq!(
            g["released_by"],
            serde_json::json!([{"comm": "vmsplice-hold", "pid": 4242, "event": "put", "via": "fsdax-put", "pages": 1}])
        );
        let released = &json["episodes"][0]["released_by"];
        assert_eq!(released["symbol"], "__put_devmap_managed_page_refs");
        assert_eq!(released["stack"][1], "pipe_buf_release+0x21");
        assert!(json["episodes"][1].get("released_by").is_none());
        // Symbolized frames, as the episodes' holders have them.
        let stack: Vec<&str> = g["stack"]
            .as_array()
            .expect("stack")
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        assert_eq!(
            stack,
            json["episodes"][0]["holders"][0]["stack"]
                .as_array()
                .expect("episode stack")
                .iter()
                .filter_map(|f| f.as_str())
                .collect::<Vec<_>>()
        );
        assert!(stack.iter().any(|f| f.starts_with("__do_sys_vmsplice+0x")));
        // Read back as written.
        let back: report::Report = serde_json::from_value(json).expect("read back");
        assert_eq!(back, r);
    }

    /// `--vmlinux`: the frames the image knows get their line in the text
    /// and in `source_lines`, the others stay as they were. The image is
    /// this test binary (ELF with DWARF), the frame its function
    /// `refwatch_source_lines_probe` (`symbols/lines.rs`'s tests).
    #[test]
    fn frames_the_image_knows_are_shown_with_their_source_line() {
        let mut r = synthetic_report();
        let probe = "refwatch_source_lines_probe+0x4".to_owned();
        for g in &mut r.holder_groups {
            g.stack.insert(0, probe.clone());
        }
        for e in &mut r.episodes {
            for h in &mut e.holders {
                h.stack.insert(0, probe.clone());
            }
        }
        let exe = std::env::current_exe().expect("the test binary");
        let lines = crate::symbols::SourceLines::open(&exe).expect("the test binary's DWARF");
        r.add_source_lines(&lines);
        assert_eq!(r.source_lines.len(), 1, "{:?}", r.source_lines);
        let line = r.source_lines.get(&probe).expect("the probe's line");
        assert!(line.contains("src/symbols/lines.rs:"), "{line}");
        let text = report::text(&r);
        assert_eq!(
            text.matches(&format!("      {probe}  {line}\n")).count(),
            1,
            "{text}"
        );
        assert!(text.contains("__do_sys_vmsplice+0x"), "{text}");
        assert!(text.contains("      __do_sys_vmsplice+0x9d\n"), "{text}");
        let per_page = report::text_per_page(&r);
        assert_eq!(
            per_page.matches(&format!("{probe}  {line}")).count(),
            2,
            "{per_page}"
        );
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["source_lines"][&probe], serde_json::json!(line));
        // Without the image, no key at all.
        r.source_lines.clear();
        let json = serde_json::to_value(&r).expect("json");
        assert!(json.get("source_lines").is_none());
    }

    #[test]
    fn text_shows_each_holder_once_and_per_page_each_episode() {
        let r = synthetic_report();
        let text = report::text(&r);
        assert_eq!(text.matches("__do_sys_vmsplice").count(), 1, "{text}");
        assert!(
            text.contains(
                "vmsplice-hold pid 4242 (get) holds 2 page(s): 0x40010-0x40011 (fsdax), held, from +2.000s 1 of them still stuck at the end"
            ),
            "{text}"
        );
        assert!(!text.contains("holder: "), "{text}");
        assert!(
            text.contains("  released by vmsplice-hold pid 4242 (put via fsdax-put, 1 page(s))\n"),
            "{text}"
        );
        assert!(
            text.contains("stuck at the end: 1 page(s): 0x40011"),
            "{text}"
        );
        let per_page = report::text_per_page(&r);
        assert_eq!(
            per_page.matches("__do_sys_vmsplice").count(),
            2,
            "{per_page}"
        );
        assert_eq!(per_page.matches("  holder: vmsplice-hold").count(), 2);
        assert_eq!(
            per_page
                .matches("  released by vmsplice-hold pid 4242 (put in __put_devmap_managed_page_refs) at +")
                .count(),
            1,
            "{per_page}"
        );
        assert!(
            per_page.contains("stuck at the end: 0x40011\n"),
            "{per_page}"
        );
    }
}
