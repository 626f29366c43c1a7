//! The ordered match of one PFN's observations against its truth states.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// `slack_used`: how far the observation lay outside the own span of the
    /// nearest plausible state (from the cursor on) with its count.
    Matched {
        slack_used: u64,
    },
    Mismatched,
    BeforeTruth,
}

/// One PFN's truth states `s_0 .. s_n` and the cursor of the ordered match
/// (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct Cursor<'a> {
    /// The PFN's truth events sorted by time: `s_j` (`j >= 1`) is the count
    /// after `tl[j - 1]`, `T_j` its timestamp.
    pub(super) tl: &'a [TruthEvent],
    /// `s_0`, when known.
    pub(super) start: Option<i64>,
    pub(super) slack: u64,
    /// `c`: the state the last matched observation matched.
    pub(super) state: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(tl: &'a [TruthEvent], slack: u64) -> Self {
        Self {
            tl,
            start: tl.first().and_then(TruthEvent::count_before),
            slack,
            state: 0,
        }
    }

    /// The count of `s_j`.
    pub(super) fn count(&self, j: usize) -> Option<i64> {
        match j {
            0 => self.start,
            _ => Some(self.tl[j - 1].count),
        }
    }

    /// `T_j`, when `s_j` began; none for `s_0`.
    pub(super) fn since(&self, j: usize) -> Option<u64> {
        j.checked_sub(1).map(|i| self.tl[i].ts_ns)
    }

    /// `T_j+1 + 999 ns`, the last instant `s_j` may have held; none for `s_n`.
    pub(super) fn until(&self, j: usize) -> Option<u64> {
        self.tl
            .get(j)
            .map(|e| e.ts_ns.saturating_add(TRUTH_RESOLUTION_NS - 1))
    }

    /// The states from the cursor on that are plausible at `t`: `s_j` with
    /// `j >= c` and `T_j - S <= t <= T_j+1 + 999 ns + S`. Both bounds grow
    /// with `j` (the events are sorted), so these form a range.
    pub(super) fn plausible(&self, t: u64) -> Range<usize> {
        let (c, s) = (self.state, self.slack);
        // Skip the states that ended, slack included, before `t`; `tl[j]`
        // ends `s_j`, and `s_n` never ends.
        let lo = c + self.tl[c..].partition_point(|e| {
            e.ts_ns
                .saturating_add(TRUTH_RESOLUTION_NS - 1)
                .saturating_add(s)
                < t
        });
        // Keep the states that began, slack included, by `t`: `s_0` always,
        // `s_j` when `T_j - S <= t` (`tl[j - 1]` begins `s_j`).
        let k = c.max(1);
        let hi = k + self.tl[k - 1..].partition_point(|e| e.ts_ns.saturating_sub(s) <= t);
        lo..hi.max(lo)
    }

    /// How far `t` lies outside `s_j`'s own span `[T_j, T_j+1 + 999 ns]`.
    pub(super) fn slack_used(&self, j: usize, t: u64) -> u64 {
        let early = self.since(j).map_or(0, |since| since.saturating_sub(t));
        let late = self.until(j).map_or(0, |until| t.saturating_sub(until));
        early.max(late)
    }

    /// Judges the observation `(t, v)` and moves the cursor on a match.
    pub(super) fn observe(&mut self, t: u64, v: i64) -> Verdict {
        let plausible = self.plausible(t);
        let first = plausible.clone().find(|&j| self.count(j) == Some(v));
        // The cursor still at an unknown start that may hold at `t`: it may
        // be `v` too, and takes the observation from a later state that
        // lies further from `t`; `s_1`, which it became, keeps priority.
        let unknown_start = self.state == 0 && self.start.is_none() && plausible.start == 0;
        match first {
            Some(j)
                if !unknown_start || j == 1 || self.slack_used(j, t) <= self.slack_used(0, t) =>
            {
                self.state = j;
                // The stamping difference: to the nearest state with `v`
                // (the first one may be an earlier one of the same count).
                let slack_used = plausible
                    .filter(|&k| self.count(k) == Some(v))
                    .map(|k| self.slack_used(k, t))
                    .min()
                    .unwrap_or(0);
                Verdict::Matched { slack_used }
            }
            _ if unknown_start => Verdict::BeforeTruth,
            _ => Verdict::Mismatched,
        }
    }

    /// The details of a mismatched observation (the cursor did not move).
    pub(super) fn mismatch(&self, obs: &Observation) -> Mismatch {
        let mut counts = Vec::new();
        for j in self.plausible(obs.ts_ns) {
            if let Some(n) = self.count(j)
                && counts.last() != Some(&n)
            {
                counts.push(n);
            }
        }
        let p = self.tl.partition_point(|e| e.ts_ns <= obs.ts_ns);
        Mismatch {
            pfn: hex(obs.pfn),
            ts_ns: obs.ts_ns,
            value: obs.value,
            field: obs.field.to_string(),
            event: obs.event.clone(),
            symbol: obs.symbol.clone(),
            line: obs.line,
            cursor: StateRef {
                index: self.state,
                count: self.count(self.state),
                since_ns: self.since(self.state),
            },
            plausible_counts: counts,
            prev: p.checked_sub(1).map(|i| self.tl[i].point()),
            next: self.tl.get(p).map(TruthEvent::point),
        }
    }
}
