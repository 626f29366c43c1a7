//! The headless stream's lines about stuck pages, grouped by holder: one
//! when a holder's group opens, grows (at most once a second) and clears
//! ([`GroupWatch`]); `--per-page` keeps a line per episode instead.

use crate::{
    event::pgmap_name,
    format::json::Format,
    report::ReleaserOut,
    state::{
        Episode, Tracker,
        groups::{self, Change, Group, GroupWatch, Releaser, ranges_text},
    },
    symbols::{Kallsyms, stack_strings},
};

/// Ranges shown per line.
const RANGES_SHOWN: usize = 8;

/// The grouped stuck lines of a headless run.
#[derive(Default)]
pub struct GroupStream {
    watch: GroupWatch,
    /// Episodes recorded when last looked ([`Tracker::episodes_opened`]).
    seen_episodes: u64,
}

impl GroupStream {
    /// Prints what changed in the groups of the pages stuck now, and the
    /// groups of episodes that came and went since the last call.
    pub fn print(&mut self, tracker: &Tracker, now_ns: u64, syms: &Kallsyms, fmt: Format) {
        let groups = groups::stuck_groups(tracker, &groups::by_frames);
        let new = tracker.episodes_opened().saturating_sub(self.seen_episodes);
        self.seen_episodes = tracker.episodes_opened();
        let new = usize::try_from(new).unwrap_or(usize::MAX);
        let recent = &tracker.episodes[tracker.episodes.len().saturating_sub(new)..];
        let ended: Vec<Episode> = recent
            .iter()
            .filter(|e| e.end_ns.is_some())
            .cloned()
            .collect();
        let passed = groups::group(groups::episode_members(&ended, &groups::by_frames));
        for mut c in self.watch.update_with_passed(&groups, passed, now_ns) {
            if let Change::Cleared(g) = &mut c
                && g.released_by.is_empty()
            {
                g.released_by = releasers(tracker, &g.pfns);
            }
            println!("{}", line(&c, now_ns, &|g| via(g, syms, fmt)));
        }
    }
}

/// Who released `pfns` (sorted): the drop that ended each one's latest
/// closed episode, counted per releaser.
fn releasers(tracker: &Tracker, pfns: &[u64]) -> Vec<(Releaser, usize)> {
    let mut found = vec![false; pfns.len()];
    let mut out: Vec<(Releaser, usize)> = Vec::new();
    for e in tracker.episodes.iter().rev() {
        let (Ok(i), Some(ev)) = (pfns.binary_search(&e.pfn), e.released_by.as_deref()) else {
            continue;
        };
        if found[i] {
            continue;
        }
        found[i] = true;
        let r = Releaser::of(ev);
        match out.iter_mut().find(|(x, _)| *x == r) {
            Some((_, n)) => *n += 1,
            None => out.push((r, 1)),
        }
    }
    out
}

/// `, released by workload pid 248 (put via watchpoint)`: who released a
/// cleared group's pages, when drops ended them.
fn released(g: &Group) -> String {
    if g.released_by.is_empty() {
        return String::new();
    }
    let who: Vec<String> = g
        .released_by
        .iter()
        .map(|(r, n)| ReleaserOut::new(r, *n).text(g.pages()))
        .collect();
    format!(", released by {}", who.join(", "))
}

fn via(g: &Group, syms: &Kallsyms, fmt: Format) -> String {
    g.holder
        .as_ref()
        .map(|h| stack_strings(&h.stack, syms, fmt).join(" <- "))
        .unwrap_or_default()
}

fn who(g: &Group) -> String {
    match &g.holder {
        Some(h) => format!("{} pid {} ({})", h.comm, h.tgid, h.kind.name()),
        None => "holder unknown".into(),
    }
}

fn pages(g: &Group) -> String {
    let types: Vec<&str> = g.pgmap_types.iter().map(|t| pgmap_name(*t)).collect();
    format!(
        "{} page(s) {} ({})",
        g.pages(),
        ranges_text(&g.ranges(), RANGES_SHOWN),
        types.join(",")
    )
}

/// The line of one change; `stack` names a group's holder stack.
pub fn line(c: &Change, now_ns: u64, stack: &dyn Fn(&Group) -> String) -> String {
    let secs = |ns: u64| ns as f64 / 1e9;
    let l = match c {
        Change::Opened(g) => {
            let tail = match &g.key.note {
                Some(n) => format!(": {n}"),
                None => format!(", via {}", stack(g)),
            };
            format!(
                "STUCK group opened: {} holds {}, {} since {:.3}s{tail}",
                who(g),
                pages(g),
                g.key.detector.name(),
                secs(g.since_ns)
            )
        }
        Change::Grew { group: g, from } => format!(
            "STUCK group grew: {} holds {} (was {from}), {} since {:.3}s",
            who(g),
            pages(g),
            g.key.detector.name(),
            secs(g.since_ns)
        ),
        Change::Moved { group: g, was } => format!(
            "STUCK group now {}: {} holds {} (was {}), since {:.3}s",
            g.key.detector.name(),
            who(g),
            pages(g),
            was.name(),
            secs(g.since_ns)
        ),
        Change::Cleared(g) => format!(
            "STUCK group cleared: {} no longer holds {} stuck ({} since {:.3}s, for {:.1}s){}",
            who(g),
            pages(g),
            g.key.detector.name(),
            secs(g.since_ns),
            secs(g.end_ns.unwrap_or(now_ns).saturating_sub(g.since_ns)),
            released(g)
        ),
    };
    // Task names come from the kernel: no terminal controls.
    l.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::line;
    use crate::{
        event::Kind,
        state::{
            Detector, Holder,
            groups::{Change, Group, HolderKey, Releaser},
        },
        symbols::Role,
    };

    /// Synthetic: `vmsplice-hold` pid 4242 holds 16 fs-dax pages.
    fn group(pages: u64) -> Group {
        Group {
            key: HolderKey {
                comm: "vmsplice-hold".into(),
                tgid: 4242,
                detector: Detector::Held,
                stack: vec![1],
                note: None,
            },
            holder: Some(Holder {
                ts_ns: 2_000_000_000,
                pid: 4242,
                tgid: 4242,
                comm: "vmsplice-hold".into(),
                kind: Kind::Get,
                refs: 1,
                stack: Default::default(),
                forked_from: None,
                fork_pending: false,
                role: Role::Other,
            }),
            pfns: (0x48200..0x48200 + pages).collect(),
            pgmap_types: vec![refwatch_common::pgmap::FSDAX],
            since_ns: 2_000_000_000,
            end_ns: None,
            members: pages as usize,
            released_by: Vec::new(),
        }
    }

    #[test]
    fn lines_say_open_grow_and_clear_once_per_group() {
        let via = |_: &Group| "a+0x1 <- b+0x2".to_string();
        assert_eq!(
            line(&Change::Opened(group(16)), 3_000_000_000, &via),
            "STUCK group opened: vmsplice-hold pid 4242 (get) holds 16 page(s) 0x48200-0x4820f (fsdax), held since 2.000s, via a+0x1 <- b+0x2"
        );
        let grew = Change::Grew {
            group: group(32),
            from: 16,
        };
        assert_eq!(
            line(&grew, 4_000_000_000, &via),
            "STUCK group grew: vmsplice-hold pid 4242 (get) holds 32 page(s) 0x48200-0x4821f (fsdax) (was 16), held since 2.000s"
        );
        assert_eq!(
            line(&Change::Cleared(group(32)), 12_500_000_000, &via),
            "STUCK group cleared: vmsplice-hold pid 4242 (get) no longer holds 32 page(s) 0x48200-0x4821f (fsdax) stuck (held since 2.000s, for 10.5s)"
        );
        // With who released its pages.
        let mut g = group(32);
        let releaser = |comm: &str, tgid| Releaser {
            comm: comm.into(),
            tgid,
            kind: Kind::Put,
            hook: refwatch_common::hook::WATCHPOINT,
        };
        g.released_by = vec![
            (releaser("vmsplice-hold", 4242), 30),
            (releaser("kworker/0:1", 12), 2),
        ];
        assert_eq!(
            line(&Change::Cleared(g), 12_500_000_000, &via),
            "STUCK group cleared: vmsplice-hold pid 4242 (get) no longer holds 32 page(s) 0x48200-0x4821f (fsdax) stuck (held since 2.000s, for 10.5s), released by vmsplice-hold pid 4242 (put via watchpoint, 30 page(s)), kworker/0:1 pid 12 (put via watchpoint, 2 page(s))"
        );
    }
}
