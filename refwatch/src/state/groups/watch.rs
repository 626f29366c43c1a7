//! Groups followed from look to look ([`GroupWatch`]): what opened, grew
//! (at most once a second), moved to another detector and cleared, for the
//! headless stream.

use std::collections::{HashMap, HashSet};

use super::{Group, HolderKey, specificity};
use crate::state::Detector;

/// Least time between two "grew" lines of one group.
pub const GROW_EVERY_NS: u64 = 1_000_000_000;

/// What changed in the groups since the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A holder's first stuck pages.
    Opened(Group),
    /// More pages than last said (at most once per [`GROW_EVERY_NS`]).
    Grew { group: Group, from: usize },
    /// The same holder's pages, now under another detector (e.g. `held`
    /// pages unmapped since: `unmapped-not-freed`).
    Moved { group: Group, was: Detector },
    /// None of its pages is stuck any more: the group as last seen.
    Cleared(Group),
}

struct Seen {
    /// Pages in the last line said of it.
    said: usize,
    said_ns: u64,
    last: Group,
}

/// Follows the groups from snapshot to snapshot and says what changed:
/// a group opening, growing (rate-limited), moving to another detector
/// and clearing.
#[derive(Default)]
pub struct GroupWatch {
    seen: HashMap<HolderKey, Seen>,
}

impl GroupWatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Groups open now.
    pub fn open(&self) -> usize {
        self.seen.len()
    }

    /// [`GroupWatch::update`], and `passed`: groups of episodes that began
    /// and ended since the last look (never seen stuck). Each of those whose
    /// holder had no group open then or now is said opened and cleared, after
    /// the other changes.
    pub fn update_with_passed(
        &mut self,
        groups: &[Group],
        passed: Vec<Group>,
        now_ns: u64,
    ) -> Vec<Change> {
        let before: HashSet<HolderKey> = self.seen.keys().cloned().collect();
        let mut out = self.update(groups, now_ns);
        for g in passed {
            if !before.contains(&g.key) && !self.seen.contains_key(&g.key) {
                out.push(Change::Opened(g.clone()));
                out.push(Change::Cleared(g));
            }
        }
        out
    }

    /// Takes the groups stuck at `now_ns`; returns the changes, opened and
    /// grown ones in `groups`' order, then cleared ones by their since.
    pub fn update(&mut self, groups: &[Group], now_ns: u64) -> Vec<Change> {
        let mut out = Vec::new();
        let mut now_open: HashMap<HolderKey, Seen> = HashMap::with_capacity(groups.len());
        let current: HashSet<&HolderKey> = groups.iter().map(|g| &g.key).collect();
        for g in groups {
            let seen = match self
                .seen
                .remove(&g.key)
                .or_else(|| self.moved(g, &current, &mut out))
            {
                None => {
                    out.push(Change::Opened(g.clone()));
                    Seen {
                        said: g.pages(),
                        said_ns: now_ns,
                        last: g.clone(),
                    }
                }
                Some(mut s) => {
                    if g.pages() > s.said && now_ns >= s.said_ns.saturating_add(GROW_EVERY_NS) {
                        out.push(Change::Grew {
                            group: g.clone(),
                            from: s.said,
                        });
                        s.said = g.pages();
                        s.said_ns = now_ns;
                    }
                    s.last = g.clone();
                    s
                }
            };
            now_open.insert(g.key.clone(), seen);
        }
        let mut cleared: Vec<Group> = self.seen.drain().map(|(_, s)| s.last).collect();
        cleared.sort_by(|a, b| {
            (a.since_ns, a.pfns.first(), a.key.tgid, &a.key.comm).cmp(&(
                b.since_ns,
                b.pfns.first(),
                b.key.tgid,
                &b.key.comm,
            ))
        });
        out.extend(cleared.into_iter().map(Change::Cleared));
        self.seen = now_open;
        out
    }

    /// A group seen under another detector with the same holder and some
    /// of the same pages: taken out of `seen`, the move said.
    fn moved(
        &mut self,
        g: &Group,
        current: &HashSet<&HolderKey>,
        out: &mut Vec<Change>,
    ) -> Option<Seen> {
        let same_holder = |k: &HolderKey| {
            k.comm == g.key.comm
                && k.tgid == g.key.tgid
                && k.stack == g.key.stack
                && k.note == g.key.note
        };
        let key = self
            .seen
            .iter()
            .filter(|(k, s)| {
                same_holder(k)
                    && !current.contains(k)
                    && s.last.pfns.iter().any(|p| g.pfns.binary_search(p).is_ok())
            })
            .map(|(k, _)| k.clone())
            .min_by_key(|k| specificity(k.detector))?;
        let s = self.seen.remove(&key)?;
        out.push(Change::Moved {
            group: g.clone(),
            was: key.detector,
        });
        Some(Seen {
            said: s.said.max(g.pages()),
            said_ns: s.said_ns,
            last: g.clone(),
        })
    }
}
