//! Which pages hold the hardware watchpoints: the queue and its policy,
//! without any I/O.
//!
//! A watched page takes one debug register on every CPU, and a CPU has
//! four at most (fewer when debuggers or other tools hold some); how many
//! pages fit is learned when arming one fails. The policy:
//! - stuck pages whose holder refwatch could not name (`urgent`) go first,
//!   then every other page in the order it was asked for;
//! - when pages wait and no slot is free, an armed page that saw no write
//!   for [`Slots::idle_ns`] yields its slot to the first waiting page and
//!   goes to the back of the queue; an urgent page yields only to another
//!   urgent one (it waits for its release);
//! - a page that cannot be watched any more (gone) is forgotten.

use std::collections::VecDeque;

/// A page asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Want {
    pfn: u64,
    urgent: bool,
}

/// An armed page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Armed {
    pub pfn: u64,
    pub urgent: bool,
    /// When it was armed.
    pub since_ns: u64,
    /// Its last write seen (or `since_ns`).
    pub active_ns: u64,
}

/// What to do now: disarm these pages, then arm those (in order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub disarm: Vec<u64>,
    pub arm: Vec<u64>,
}

/// The watch queue.
#[derive(Debug, Clone)]
pub struct Slots {
    /// Pages that fit at once (lowered when arming finds no slot).
    capacity: usize,
    /// How long an armed page may see no write before it yields.
    pub idle_ns: u64,
    waiting: VecDeque<Want>,
    armed: Vec<Armed>,
}

impl Slots {
    /// At most `capacity` pages at once; idle pages yield after `idle_ns`.
    pub fn new(capacity: usize, idle_ns: u64) -> Self {
        Self {
            capacity,
            idle_ns,
            waiting: VecDeque::new(),
            armed: Vec::new(),
        }
    }

    /// Asks for `pfn` (again): queued unless armed or queued already; an
    /// urgent ask makes a queued or armed page urgent.
    pub fn ask(&mut self, pfn: u64, urgent: bool) {
        if let Some(a) = self.armed.iter_mut().find(|a| a.pfn == pfn) {
            a.urgent |= urgent;
            return;
        }
        if let Some(w) = self.waiting.iter_mut().find(|w| w.pfn == pfn) {
            w.urgent |= urgent;
            return;
        }
        self.waiting.push_back(Want { pfn, urgent });
    }

    /// A write to `pfn` was seen at `now`.
    pub fn hit(&mut self, pfn: u64, now: u64) {
        if let Some(a) = self.armed.iter_mut().find(|a| a.pfn == pfn) {
            a.active_ns = a.active_ns.max(now);
        }
    }

    /// The pages armed now.
    pub fn armed(&self) -> &[Armed] {
        &self.armed
    }

    /// Pages waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The user's ask about `pfn` (the TUI's `w`): a page armed or
    /// waiting is forgotten (`false`: the caller disarms it); any other
    /// waits for a slot (`true`).
    pub fn toggle(&mut self, pfn: u64) -> bool {
        let asked = self.armed.iter().any(|a| a.pfn == pfn) || self.is_waiting(pfn);
        if asked {
            self.forget(pfn);
        } else {
            self.ask(pfn, false);
        }
        !asked
    }

    /// No more than `n` pages fit at once (found by trying).
    pub fn lower_capacity(&mut self, n: usize) {
        self.capacity = self.capacity.min(n);
    }

    /// Whether `pfn` waits for a slot.
    pub fn is_waiting(&self, pfn: u64) -> bool {
        self.waiting.iter().any(|w| w.pfn == pfn)
    }

    /// The waiting pages, in order asked.
    pub fn waiting_pfns(&self) -> Vec<u64> {
        self.waiting.iter().map(|w| w.pfn).collect()
    }

    /// Pages that fit at once, as known so far.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The first waiting page by the policy: urgent ones first, then in
    /// order asked.
    fn next_waiting(&self) -> Option<usize> {
        self.waiting
            .iter()
            .position(|w| w.urgent)
            .or(if self.waiting.is_empty() {
                None
            } else {
                Some(0)
            })
    }

    /// What to disarm and arm at `now`. The caller reports each arming
    /// with [`Slots::armed_at`] or [`Slots::no_slot`].
    pub fn plan(&mut self, now: u64) -> Plan {
        let mut plan = Plan::default();
        let mut free = self.capacity.saturating_sub(self.armed.len());
        let mut taken: Vec<Want> = Vec::new();
        while let Some(i) = self.next_waiting() {
            let w = self.waiting[i];
            if free > 0 {
                free -= 1;
            } else {
                // The most idle page that may yield to `w`.
                let victim = self
                    .armed
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| {
                        now.saturating_sub(a.active_ns) >= self.idle_ns && (w.urgent || !a.urgent)
                    })
                    .min_by_key(|(_, a)| a.active_ns)
                    .map(|(j, _)| j);
                let Some(j) = victim else { break };
                let a = self.armed.remove(j);
                plan.disarm.push(a.pfn);
                taken.push(Want {
                    pfn: a.pfn,
                    urgent: a.urgent,
                });
            }
            self.waiting.remove(i);
            plan.arm.push(w.pfn);
            // Until the caller says whether it worked.
            self.armed.push(Armed {
                pfn: w.pfn,
                urgent: w.urgent,
                since_ns: now,
                active_ns: now,
            });
        }
        // Those that yielded wait at the back.
        self.waiting.extend(taken);
        plan
    }

    /// `pfn` was armed at `ns` (its breakpoints enabled on every CPU).
    pub fn armed_at(&mut self, pfn: u64, ns: u64) {
        if let Some(a) = self.armed.iter_mut().find(|a| a.pfn == pfn) {
            a.since_ns = ns;
            a.active_ns = a.active_ns.max(ns);
        }
    }

    /// Arming `pfn` found no slot: it waits again at the front, and no
    /// more pages than are armed now fit.
    pub fn no_slot(&mut self, pfn: u64) {
        if let Some(j) = self.armed.iter().position(|a| a.pfn == pfn) {
            let a = self.armed.remove(j);
            self.waiting.push_front(Want {
                pfn,
                urgent: a.urgent,
            });
        }
        self.capacity = self.armed.len();
    }

    /// `pfn` cannot be watched (no device page there, gone): forgotten.
    pub fn forget(&mut self, pfn: u64) {
        self.armed.retain(|a| a.pfn != pfn);
        self.waiting.retain(|w| w.pfn != pfn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn pages_are_armed_in_order_asked_up_to_the_capacity() {
        let mut s = Slots::new(2, 10 * S);
        for pfn in [10, 11, 12] {
            s.ask(pfn, false);
        }
        s.ask(11, false);
        let p = s.plan(0);
        assert_eq!(p.arm, vec![10, 11]);
        assert!(p.disarm.is_empty());
        assert_eq!(s.waiting(), 1);
        // Nothing is idle long enough yet: nothing changes.
        assert_eq!(s.plan(5 * S), Plan::default());
    }

    #[test]
    fn stuck_pages_without_a_holder_go_first() {
        let mut s = Slots::new(1, 10 * S);
        s.ask(10, false);
        s.ask(20, true);
        assert_eq!(s.plan(0).arm, vec![20]);
    }

    #[test]
    fn an_idle_page_yields_its_slot_and_waits_at_the_back() {
        let mut s = Slots::new(1, 10 * S);
        s.ask(10, false);
        s.ask(11, false);
        assert_eq!(s.plan(0).arm, vec![10]);
        // Written to at 8 s: not idle at 12 s.
        s.hit(10, 8 * S);
        assert_eq!(s.plan(12 * S), Plan::default());
        let p = s.plan(18 * S);
        assert_eq!(p.disarm, vec![10]);
        assert_eq!(p.arm, vec![11]);
        assert_eq!(s.armed()[0].since_ns, 18 * S);
        // And 10 comes back when 11 is idle in turn.
        assert_eq!(s.plan(28 * S).arm, vec![10]);
    }

    #[test]
    fn an_urgent_page_yields_only_to_another_urgent_one() {
        let mut s = Slots::new(1, 10 * S);
        s.ask(10, true);
        assert_eq!(s.plan(0).arm, vec![10]);
        s.ask(11, false);
        assert_eq!(s.plan(100 * S), Plan::default());
        s.ask(12, true);
        let p = s.plan(100 * S);
        assert_eq!((p.disarm, p.arm), (vec![10], vec![12]));
    }

    /// The TUI's `w` twice on one page, and on a page asked by `--watch`.
    #[test]
    fn toggling_queues_then_forgets() {
        let mut s = Slots::new(1, 10 * S);
        s.ask(10, false);
        assert!(s.toggle(11), "asked");
        assert_eq!(s.waiting_pfns(), vec![10, 11]);
        assert_eq!(s.plan(0).arm, vec![10]);
        assert!(!s.toggle(10), "an armed page is forgotten");
        assert!(s.armed().is_empty());
        assert_eq!(s.plan(1).arm, vec![11]);
        assert!(!s.toggle(11));
        assert!(s.toggle(11), "asked again");
        assert!(!s.toggle(11), "a waiting page is forgotten");
        assert_eq!(s.waiting(), 0);
        assert_eq!(s.plan(2), Plan::default());
    }

    /// Free slots found by trying lower the capacity, never raise it.
    #[test]
    fn a_probe_lowers_the_capacity() {
        let mut s = Slots::new(64, 10 * S);
        s.lower_capacity(4);
        s.lower_capacity(8);
        assert_eq!(s.capacity(), 4);
        for pfn in 0..6 {
            s.ask(pfn, false);
        }
        assert_eq!(s.plan(0).arm, vec![0, 1, 2, 3]);
        assert_eq!(s.waiting_pfns(), vec![4, 5]);
    }

    #[test]
    fn no_slot_lowers_the_capacity_and_keeps_the_page_first() {
        let mut s = Slots::new(64, 10 * S);
        for pfn in 0..6 {
            s.ask(pfn, false);
        }
        let p = s.plan(0);
        assert_eq!(p.arm, (0..6).collect::<Vec<_>>());
        // The fifth found the debug registers full (the sixth is not
        // tried once one failed).
        s.no_slot(5);
        s.no_slot(4);
        assert_eq!(s.capacity(), 4);
        assert_eq!(s.waiting(), 2);
        s.forget(2);
        assert_eq!(s.plan(1).arm, vec![4]);
    }
}
