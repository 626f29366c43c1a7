//! Stuck pages grouped by who holds them: one group per holder (task,
//! process, detector, stack), with its pages as PFN ranges, so that sixteen
//! pages one `vmsplice` holds read as one verdict, not sixteen copies of one
//! stack. Pure: the caller says what makes two stacks the same
//! ([`StackId`]), and gives the time.

use std::collections::HashMap;

mod watch;

pub use watch::{Change, GROW_EVERY_NS, GroupWatch};

use super::{Detector, Episode, Holder, Page, Tracker, UNKEPT, holders::unknown_note};
use crate::{
    event::{Kind, PageEvent, Stack},
    symbols::Role,
};

/// What makes two holders' stacks the same to the caller: the frames live
/// (interned or not), the recorded stack's entry in a report or replay.
pub type StackId = Vec<u64>;

/// Detectors from the most specific to the least: a page several flag is
/// grouped under the first (`held` says least, as every other condition
/// also holds references).
pub const SPECIFIC_FIRST: [Detector; 7] = [
    Detector::LayoutWait,
    Detector::UnmappedNotFreed,
    Detector::Pinned,
    Detector::MigrationBlocked,
    Detector::KeptByChild,
    Detector::Orphaned,
    Detector::Held,
];

fn specificity(d: Detector) -> usize {
    SPECIFIC_FIRST
        .iter()
        .position(|x| *x == d)
        .unwrap_or(SPECIFIC_FIRST.len())
}

/// The most specific of `ds` ([`SPECIFIC_FIRST`]).
pub fn primary_detector(ds: impl IntoIterator<Item = Detector>) -> Option<Detector> {
    ds.into_iter().min_by_key(|d| specificity(*d))
}

/// The holder a verdict names: the earliest reference not held by a
/// page-table entry (mappings are not what is outstanding), else the
/// earliest.
pub fn primary_holder(holders: &[Holder]) -> Option<&Holder> {
    holders
        .iter()
        .find(|h| h.role != Role::Map)
        .or_else(|| holders.first())
}

/// Who holds a group's pages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HolderKey {
    /// The holder's task name; empty when the holder is unknown.
    pub comm: String,
    /// The holder's process id; 0 when unknown.
    pub tgid: u32,
    pub detector: Detector,
    /// The holder's stack ([`StackId`]); empty when unknown.
    pub stack: StackId,
    /// Why no holder is known (pages without one group by it).
    pub note: Option<String>,
}

/// Who released a page: the task of the drop that ended its episode
/// ([`Episode::released_by`]) and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Releaser {
    pub comm: String,
    pub tgid: u32,
    /// `put`, `unpin` or `free`.
    pub kind: Kind,
    /// The hook that saw it (`hook::WATCHPOINT`: the hardware watchpoint).
    pub hook: u32,
}

impl Releaser {
    pub fn of(ev: &PageEvent) -> Self {
        Self {
            comm: ev.comm.to_string(),
            tgid: ev.tgid,
            kind: ev.kind,
            hook: ev.hook,
        }
    }
}

/// One stuck page (or one episode of one) and who holds it.
#[derive(Debug, Clone)]
pub struct Member {
    pub key: HolderKey,
    /// The holder, when known.
    pub holder: Option<Holder>,
    pub pfn: u64,
    pub pgmap_type: u32,
    /// When the page's stuck condition began.
    pub since_ns: u64,
    /// When it cleared; `None` while stuck.
    pub end_ns: Option<u64>,
    /// Who released it, when a drop ended it.
    pub released_by: Option<Releaser>,
}

impl Member {
    fn new(
        pfn: u64,
        pgmap_type: u32,
        detector: Detector,
        holder: Option<&Holder>,
        note: Option<String>,
        stack_id: &dyn Fn(&Stack) -> StackId,
    ) -> Self {
        let key = match holder {
            Some(h) => HolderKey {
                comm: h.comm.to_string(),
                tgid: h.tgid,
                detector,
                stack: stack_id(&h.stack),
                note: None,
            },
            None => HolderKey {
                comm: String::new(),
                tgid: 0,
                detector,
                stack: StackId::new(),
                note,
            },
        };
        Self {
            key,
            holder: holder.cloned(),
            pfn,
            pgmap_type,
            since_ns: 0,
            end_ns: None,
            released_by: None,
        }
    }
}

/// Pages (or their episodes) with one holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub key: HolderKey,
    /// The holder of the group's first page (same task, process and stack
    /// as the others'; its time and event kind are that page's).
    pub holder: Option<Holder>,
    /// Sorted, distinct.
    pub pfns: Vec<u64>,
    /// Page-map types of the pages, sorted, distinct.
    pub pgmap_types: Vec<u32>,
    /// The earliest since of its pages.
    pub since_ns: u64,
    /// The latest end of its pages; `None` while one is still stuck.
    pub end_ns: Option<u64>,
    /// Members (episodes, in a report) folded in.
    pub members: usize,
    /// Who released its pages, with how many each, in the order first
    /// seen (a page's last release counts).
    pub released_by: Vec<(Releaser, usize)>,
}

impl Group {
    pub fn pages(&self) -> usize {
        self.pfns.len()
    }

    /// Runs of consecutive PFNs.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        pfn_ranges(&self.pfns)
    }
}

/// Runs of consecutive PFNs in `pfns` (sorted ascending; repeats are
/// skipped), as inclusive `(first, last)`.
pub fn pfn_ranges(pfns: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pfns {
        match out.last_mut() {
            Some((_, last)) if *last == p => {}
            Some((_, last)) if last.checked_add(1) == Some(p) => *last = p,
            _ => out.push((p, p)),
        }
    }
    out
}

/// `0x48200-0x4820f,0x48300`: ranges as `--pfn` reads them, at most `max`
/// of them, then how many more.
pub fn ranges_text(ranges: &[(u64, u64)], max: usize) -> String {
    let mut parts: Vec<String> = ranges
        .iter()
        .take(max)
        .map(|(a, b)| {
            if a == b {
                format!("{a:#x}")
            } else {
                format!("{a:#x}-{b:#x}")
            }
        })
        .collect();
    if ranges.len() > max {
        parts.push(format!("(+{} more ranges)", ranges.len() - max));
    }
    parts.join(",")
}

/// One member per page any detector flags now (by PFN), under its most
/// specific detector; since is when that detector's episode began.
pub fn stuck_members(t: &Tracker, stack_id: &dyn Fn(&Stack) -> StackId) -> Vec<Member> {
    t.stuck()
        .into_iter()
        .filter_map(|p| page_member(t, p, stack_id))
        .collect()
}

fn page_member(t: &Tracker, p: &Page, stack_id: &dyn Fn(&Stack) -> StackId) -> Option<Member> {
    let d = primary_detector(p.open.keys().copied())?;
    let holder = primary_holder(&p.holders);
    let note = holder.is_none().then(|| unknown_note(p));
    let mut m = Member::new(p.pfn, p.pgmap_type, d, holder, note, stack_id);
    let episode = p
        .open
        .get(&d)
        .filter(|i| **i != UNKEPT)
        .and_then(|i| t.episodes.get(*i));
    m.since_ns = episode.map_or_else(
        || p.outstanding_since.unwrap_or(p.state_since_ns),
        |e| e.start_ns,
    );
    Some(m)
}

/// One member per episode (its primary holder, or its note).
pub fn episode_members(eps: &[Episode], stack_id: &dyn Fn(&Stack) -> StackId) -> Vec<Member> {
    eps.iter()
        .map(|e| {
            let holder = primary_holder(&e.holders);
            let note = if holder.is_none() {
                e.holder_note.clone()
            } else {
                None
            };
            let mut m = Member::new(e.pfn, e.pgmap_type, e.detector, holder, note, stack_id);
            m.since_ns = e.start_ns;
            m.end_ns = e.end_ns;
            m.released_by = e.released_by.as_deref().map(Releaser::of);
            m
        })
        .collect()
}

/// Who holds a page, whatever the detector: a page counts once per holder.
type PageHolder = (u64, String, u32, StackId, Option<String>);

/// Groups `members` by holder: a page with one holder under several
/// detectors counts once, under the most specific ([`SPECIFIC_FIRST`]).
/// Sorted by pages held, most first; ties keep the order in which their
/// first member came.
pub fn group(members: Vec<Member>) -> Vec<Group> {
    // One member per page and holder.
    let mut by_page: HashMap<PageHolder, usize> = HashMap::new();
    let mut pages: Vec<(Member, usize)> = Vec::new();
    for m in members {
        let k = &m.key;
        let id = (
            m.pfn,
            k.comm.clone(),
            k.tgid,
            k.stack.clone(),
            k.note.clone(),
        );
        match by_page.get(&id) {
            Some(&i) => {
                let (kept, n) = &mut pages[i];
                *n += 1;
                kept.since_ns = kept.since_ns.min(m.since_ns);
                // The page's last release is the one that counts.
                if m.released_by.is_some() && m.end_ns >= kept.end_ns {
                    kept.released_by = m.released_by;
                }
                kept.end_ns = match (kept.end_ns, m.end_ns) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                if specificity(m.key.detector) < specificity(kept.key.detector) {
                    kept.key.detector = m.key.detector;
                }
            }
            None => {
                by_page.insert(id, pages.len());
                pages.push((m, 1));
            }
        }
    }
    let mut index: HashMap<HolderKey, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (m, n) in pages {
        match index.get(&m.key) {
            Some(&i) => {
                let g = &mut groups[i];
                g.pfns.push(m.pfn);
                g.pgmap_types.push(m.pgmap_type);
                g.since_ns = g.since_ns.min(m.since_ns);
                g.end_ns = match (g.end_ns, m.end_ns) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                g.members += n;
                add_release(&mut g.released_by, m.released_by);
            }
            None => {
                index.insert(m.key.clone(), groups.len());
                let mut released_by = Vec::new();
                add_release(&mut released_by, m.released_by);
                groups.push(Group {
                    key: m.key,
                    holder: m.holder,
                    pfns: vec![m.pfn],
                    pgmap_types: vec![m.pgmap_type],
                    since_ns: m.since_ns,
                    end_ns: m.end_ns,
                    members: n,
                    released_by,
                });
            }
        }
    }
    for g in &mut groups {
        g.pfns.sort_unstable();
        g.pfns.dedup();
        g.pgmap_types.sort_unstable();
        g.pgmap_types.dedup();
    }
    // Stable: equal counts keep their order.
    groups.sort_by_key(|g| std::cmp::Reverse(g.pfns.len()));
    groups
}

/// Counts one page released by `r` (pages of one group are one holder's:
/// its releasers are few).
fn add_release(counts: &mut Vec<(Releaser, usize)>, r: Option<Releaser>) {
    let Some(r) = r else {
        return;
    };
    match counts.iter_mut().find(|(x, _)| *x == r) {
        Some((_, n)) => *n += 1,
        None => counts.push((r, 1)),
    }
}

/// The groups of the pages stuck now.
pub fn stuck_groups(t: &Tracker, stack_id: &dyn Fn(&Stack) -> StackId) -> Vec<Group> {
    group(stuck_members(t, stack_id))
}

/// A stack's identity by its frames (live: kernel addresses).
pub fn by_frames(s: &Stack) -> StackId {
    s.frames().to_vec()
}
