//! Per-PFN state built from the event stream, and the detectors that flag
//! stuck pages. Pure: no I/O, time only comes from events and [`Tracker::advance`].

use std::collections::{HashMap, HashSet, VecDeque};

use crate::{
    event::{Kind, PageEvent, pgmap_name},
    rules::Rules,
};
use refwatch_common::pgmap;

/// Default number of events kept per PFN.
pub const DEFAULT_HISTORY: usize = 256;
/// Default cap on tracked PFNs.
pub const DEFAULT_MAX_PFNS: usize = 1 << 20;
/// GUP's pin bias on small folios.
pub const PIN_BIAS: i32 = 1024;
/// Event time after which [`Tracker::apply`] runs the time-based detectors.
const ADVANCE_EVERY_NS: u64 = 50_000_000;
/// Events kept in an episode when no holder is known.
const LAST_EVENTS: usize = 5;

/// Detector thresholds, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    pub held_ns: u64,
    pub pinned_ns: u64,
    pub unmapped_ns: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            held_ns: 5_000_000_000,
            pinned_ns: 5_000_000_000,
            unmapped_ns: 5_000_000_000,
        }
    }
}

/// The detectors, with stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    Held,
    Pinned,
    UnmappedNotFreed,
    MigrationBlocked,
    LayoutWait,
    Orphaned,
}

impl Detector {
    pub const ALL: [Detector; 6] = [
        Self::Held,
        Self::Pinned,
        Self::UnmappedNotFreed,
        Self::MigrationBlocked,
        Self::LayoutWait,
        Self::Orphaned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Pinned => "pinned",
            Self::UnmappedNotFreed => "unmapped-not-freed",
            Self::MigrationBlocked => "migration-blocked",
            Self::LayoutWait => "layout-wait",
            Self::Orphaned => "orphaned",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }
}

/// A page's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageState {
    Idle,
    Referenced,
    Pinned,
    Migrating,
    /// Went back to its driver (device-private, coherent, P2PDMA).
    Freed,
    /// Back at its free value (fs-dax, device-dax).
    Free,
}

impl PageState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Referenced => "referenced",
            Self::Pinned => "pinned",
            Self::Migrating => "migrating",
            Self::Freed => "freed",
            Self::Free => "free",
        }
    }
}

/// A reference refwatch saw being taken and not yet dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub ts_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub kind: Kind,
    pub refs: i32,
    pub stack: Vec<u64>,
}

impl Holder {
    fn from_event(ev: &PageEvent) -> Self {
        let refs = match (ev.refcount_before, ev.refcount_after) {
            (Some(b), Some(a)) if a > b => a - b,
            _ => 1,
        };
        Self {
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm.clone(),
            kind: ev.kind,
            refs,
            stack: ev.stack.clone(),
        }
    }
}

/// One stuck period of one page under one detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub pfn: u64,
    pub pgmap_type: u32,
    pub detector: Detector,
    pub reason: String,
    /// When the condition began (e.g. when the references became outstanding).
    pub start_ns: u64,
    /// When the detector fired.
    pub detected_ns: u64,
    /// When it cleared; `None` while still stuck.
    pub end_ns: Option<u64>,
    pub holders: Vec<Holder>,
    /// Said when no holder could be matched.
    pub holder_note: Option<String>,
    /// The page's last events when it was flagged.
    pub last_events: Vec<PageEvent>,
}

/// What refwatch knows of one page.
#[derive(Debug, Clone)]
pub struct Page {
    pub pfn: u64,
    pub pgmap_type: u32,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Last known refcount.
    pub refcount: Option<i32>,
    /// Last known raw `_mapcount`.
    pub mapcount: Option<i32>,
    pub state: PageState,
    pub state_since_ns: u64,
    /// Events seen per kind (index: wire kind value).
    pub counts: [u64; 8],
    pub last_kind: Kind,
    pub last_comm: String,
    /// The most recent events, oldest first, bounded.
    pub history: VecDeque<PageEvent>,
    /// References beyond idle and mappings.
    pub outstanding: i32,
    pub outstanding_since: Option<u64>,
    pub pinned_since: Option<u64>,
    pub unmapped_since: Option<u64>,
    pub holders: Vec<Holder>,
    /// Open episodes: detector → index in [`Tracker::episodes`].
    pub open: HashMap<Detector, usize>,
}

impl Page {
    /// The most recent holder, if any.
    pub fn holder(&self) -> Option<&Holder> {
        self.holders.last()
    }

    /// Whether any detector flags this page now.
    pub fn stuck(&self) -> bool {
        !self.open.is_empty()
    }

    /// Names of the detectors flagging this page, sorted.
    pub fn flags(&self) -> Vec<Detector> {
        let mut v: Vec<Detector> = self.open.keys().copied().collect();
        v.sort();
        v
    }
}

/// All tracked pages, and every episode so far.
#[derive(Debug, Clone)]
pub struct Tracker {
    pages: HashMap<u64, Page>,
    /// PFNs with outstanding references (candidates for time-based detectors).
    hot: HashSet<u64>,
    pub episodes: Vec<Episode>,
    pub rules: Rules,
    pub thresholds: Thresholds,
    history_cap: usize,
    max_pfns: usize,
    events: u64,
    evicted: u64,
    now_ns: u64,
    last_advance_ns: u64,
}

impl Tracker {
    pub fn new(rules: Rules, thresholds: Thresholds, history_cap: usize, max_pfns: usize) -> Self {
        Self {
            pages: HashMap::new(),
            hot: HashSet::new(),
            episodes: Vec::new(),
            rules,
            thresholds,
            history_cap: history_cap.max(1),
            max_pfns: max_pfns.max(1),
            events: 0,
            evicted: 0,
            now_ns: 0,
            last_advance_ns: 0,
        }
    }

    /// Folds one event in, then runs the time-based detectors up to its time.
    pub fn apply(&mut self, ev: &PageEvent) {
        self.events += 1;
        self.now_ns = self.now_ns.max(ev.ts_ns);
        if !self.pages.contains_key(&ev.pfn) && self.pages.len() >= self.max_pfns {
            self.evict();
        }
        let rules = &self.rules;
        let history_cap = self.history_cap;
        let page = self.pages.entry(ev.pfn).or_insert_with(|| Page {
            pfn: ev.pfn,
            pgmap_type: ev.pgmap_type,
            first_ns: ev.ts_ns,
            last_ns: ev.ts_ns,
            refcount: None,
            mapcount: None,
            state: PageState::Idle,
            state_since_ns: ev.ts_ns,
            counts: [0; 8],
            last_kind: ev.kind,
            last_comm: String::new(),
            history: VecDeque::new(),
            outstanding: 0,
            outstanding_since: None,
            pinned_since: None,
            unmapped_since: None,
            holders: Vec::new(),
            open: HashMap::new(),
        });
        if page.pgmap_type == pgmap::UNKNOWN {
            page.pgmap_type = ev.pgmap_type;
        }
        page.last_ns = page.last_ns.max(ev.ts_ns);
        if let Some(rc) = ev.refcount_after.or(ev.refcount_before) {
            page.refcount = Some(rc);
        }
        if ev.mapcount.is_some() {
            page.mapcount = ev.mapcount;
        }
        page.counts[(ev.kind.raw() as usize).min(7)] += 1;
        page.last_kind = ev.kind;
        page.last_comm.clone_from(&ev.comm);
        if page.history.len() == history_cap {
            page.history.pop_front();
        }
        page.history.push_back(ev.clone());

        match ev.kind {
            Kind::Get | Kind::Pin => page.holders.push(Holder::from_event(ev)),
            Kind::Put | Kind::Unpin => drop_holder(&mut page.holders, ev),
            Kind::Free => page.holders.clear(),
            Kind::Migrate | Kind::LayoutWait => {}
        }

        let outstanding = match page.refcount {
            Some(rc) if ev.kind != Kind::Free => {
                rules.outstanding(page.pgmap_type, rc, page.mapcount)
            }
            _ => 0,
        };
        page.outstanding = outstanding;
        let mut to_open: Vec<(Detector, u64, String)> = Vec::new();
        let mut to_close: Vec<Detector> = Vec::new();
        if outstanding == 0 {
            page.holders.clear();
            page.outstanding_since = None;
            page.pinned_since = None;
            page.unmapped_since = None;
            to_close.extend([
                Detector::Held,
                Detector::Pinned,
                Detector::UnmappedNotFreed,
                Detector::LayoutWait,
            ]);
            self.hot.remove(&ev.pfn);
        } else {
            page.outstanding_since.get_or_insert(ev.ts_ns);
            if outstanding >= PIN_BIAS {
                page.pinned_since.get_or_insert(ev.ts_ns);
            } else {
                page.pinned_since = None;
                to_close.push(Detector::Pinned);
            }
            let leak_visible = match page.pgmap_type {
                pgmap::FSDAX => rules.fsdax_mapping_refs,
                pgmap::PRIVATE | pgmap::COHERENT => rules.private_idle == 0,
                _ => false,
            };
            if leak_visible && page.mapcount == Some(-1) {
                page.unmapped_since.get_or_insert(ev.ts_ns);
            } else {
                page.unmapped_since = None;
                to_close.push(Detector::UnmappedNotFreed);
            }
            if ev.kind == Kind::LayoutWait {
                to_open.push((
                    Detector::LayoutWait,
                    ev.ts_ns,
                    format!(
                        "a DAX layout break (truncate or hole punch) by {} (pid {}) waits for this page: refcount {}, {} reference(s) beyond idle {}",
                        ev.comm,
                        ev.tgid,
                        page.refcount.map_or("?".into(), |r| r.to_string()),
                        outstanding,
                        rules.idle(page.pgmap_type)
                    ),
                ));
            }
            self.hot.insert(ev.pfn);
        }
        let state = if ev.kind == Kind::Free {
            match page.pgmap_type {
                pgmap::PRIVATE | pgmap::COHERENT | pgmap::P2PDMA => PageState::Freed,
                _ => PageState::Free,
            }
        } else if outstanding >= PIN_BIAS {
            PageState::Pinned
        } else if outstanding > 0 {
            PageState::Referenced
        } else {
            PageState::Idle
        };
        if state != page.state {
            page.state = state;
            page.state_since_ns = ev.ts_ns;
        }
        let pfn = ev.pfn;
        for d in to_close {
            self.close(pfn, d, ev.ts_ns);
        }
        for (d, start, reason) in to_open {
            self.open(pfn, d, start, reason);
        }
        self.refresh_holders(pfn);
        // The time-based detectors walk every referenced page: run them when
        // event time has moved on enough, and on every tick (`advance`).
        if ev.ts_ns >= self.last_advance_ns.saturating_add(ADVANCE_EVERY_NS) {
            self.advance(ev.ts_ns);
        }
    }

    /// Runs the time-based detectors at `now_ns` (monotonic, like event times).
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.last_advance_ns = self.now_ns;
        let now = self.now_ns;
        let th = self.thresholds;
        let mut to_open = Vec::new();
        for pfn in &self.hot {
            let Some(p) = self.pages.get(pfn) else {
                continue;
            };
            let idle = self.rules.idle(p.pgmap_type);
            let rc = p.refcount.map_or("?".into(), |r| r.to_string());
            if let Some(since) = p.outstanding_since
                && now.saturating_sub(since) >= th.held_ns
                && !p.open.contains_key(&Detector::Held)
            {
                to_open.push((
                    *pfn,
                    Detector::Held,
                    since,
                    format!(
                        "{} reference(s) beyond idle (refcount {rc}, idle {idle}) held for more than {}",
                        p.outstanding,
                        secs(th.held_ns)
                    ),
                ));
            }
            if let Some(since) = p.pinned_since
                && now.saturating_sub(since) >= th.pinned_ns
                && !p.open.contains_key(&Detector::Pinned)
            {
                to_open.push((
                    *pfn,
                    Detector::Pinned,
                    since,
                    format!(
                        "refcount {rc} carries the GUP pin bias ({} pin(s)) for more than {}",
                        p.outstanding / PIN_BIAS,
                        secs(th.pinned_ns)
                    ),
                ));
            }
            if let Some(since) = p.unmapped_since
                && now.saturating_sub(since) >= th.unmapped_ns
                && !p.open.contains_key(&Detector::UnmappedNotFreed)
            {
                to_open.push((
                    *pfn,
                    Detector::UnmappedNotFreed,
                    since,
                    format!(
                        "unmapped but not freed for more than {}: refcount {rc}, {} reference(s) left",
                        secs(th.unmapped_ns),
                        p.outstanding
                    ),
                ));
            }
        }
        to_open.sort_by_key(|(pfn, d, ..)| (*pfn, *d));
        for (pfn, d, since, reason) in to_open {
            self.open(pfn, d, since, reason);
        }
    }

    fn open(&mut self, pfn: u64, d: Detector, start_ns: u64, reason: String) {
        let now = self.now_ns;
        let Some(page) = self.pages.get_mut(&pfn) else {
            return;
        };
        if page.open.contains_key(&d) {
            return;
        }
        let (holders, holder_note, last_events) = holders_of(page);
        self.episodes.push(Episode {
            pfn,
            pgmap_type: page.pgmap_type,
            detector: d,
            reason,
            start_ns,
            detected_ns: now,
            end_ns: None,
            holders,
            holder_note,
            last_events,
        });
        page.open.insert(d, self.episodes.len() - 1);
    }

    fn close(&mut self, pfn: u64, d: Detector, ts: u64) {
        if let Some(page) = self.pages.get_mut(&pfn)
            && let Some(idx) = page.open.remove(&d)
            && let Some(ep) = self.episodes.get_mut(idx)
        {
            ep.end_ns = Some(ts);
        }
    }

    /// Open episodes learn of holders that appear while they are open.
    fn refresh_holders(&mut self, pfn: u64) {
        let Some(page) = self.pages.get(&pfn) else {
            return;
        };
        if page.holders.is_empty() {
            return;
        }
        for idx in page.open.values() {
            if let Some(ep) = self.episodes.get_mut(*idx) {
                for h in &page.holders {
                    if !ep.holders.contains(h) {
                        ep.holders.push(h.clone());
                        ep.holder_note = None;
                    }
                }
            }
        }
    }

    /// Drops the longest-idle pages without open episodes (10% of the cap).
    fn evict(&mut self) {
        let mut idle: Vec<(u64, u64)> = self
            .pages
            .values()
            .filter(|p| p.open.is_empty() && p.outstanding == 0)
            .map(|p| (p.last_ns, p.pfn))
            .collect();
        idle.sort_unstable();
        let n = (self.max_pfns / 10).max(1).min(idle.len());
        for (_, pfn) in idle.into_iter().take(n) {
            self.pages.remove(&pfn);
            self.evicted += 1;
        }
    }

    pub fn page(&self, pfn: u64) -> Option<&Page> {
        self.pages.get(&pfn)
    }

    pub fn pages(&self) -> impl Iterator<Item = &Page> {
        self.pages.values()
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Pages any detector flags now.
    pub fn stuck(&self) -> Vec<&Page> {
        let mut v: Vec<&Page> = self.pages.values().filter(|p| p.stuck()).collect();
        v.sort_by_key(|p| p.pfn);
        v
    }

    /// Pages sorted by PFN.
    pub fn pages_sorted(&self) -> Vec<&Page> {
        let mut v: Vec<&Page> = self.pages.values().collect();
        v.sort_by_key(|p| p.pfn);
        v
    }

    /// A readable per-PFN table.
    pub fn summary_table(&self) -> String {
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
        for p in self.pages_sorted() {
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
}

fn secs(ns: u64) -> String {
    format!("{:.1}s", ns as f64 / 1e9)
}

/// Removes the holder a drop most likely matches: same class (pin/unpin,
/// get/put) and same process first, then same class. A drop that matches no
/// holder removes nothing (its get was not observable).
fn drop_holder(holders: &mut Vec<Holder>, ev: &PageEvent) {
    let want = if ev.kind == Kind::Unpin {
        Kind::Pin
    } else {
        Kind::Get
    };
    let pos = holders
        .iter()
        .rposition(|h| h.kind == want && h.tgid == ev.tgid)
        .or_else(|| holders.iter().rposition(|h| h.kind == want));
    if let Some(i) = pos {
        holders.remove(i);
    }
}

fn holders_of(page: &Page) -> (Vec<Holder>, Option<String>, Vec<PageEvent>) {
    let last: Vec<PageEvent> = page
        .history
        .iter()
        .rev()
        .take(LAST_EVENTS)
        .rev()
        .cloned()
        .collect();
    if page.holders.is_empty() {
        (
            Vec::new(),
            Some(
                "the outstanding reference was taken where this kernel offers no hook (an inline get); see the page's last events"
                    .into(),
            ),
            last,
        )
    } else {
        (page.holders.clone(), None, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kallsyms::Kallsyms;

    const S: u64 = 1_000_000_000;

    fn rules_6_1() -> Rules {
        Rules::from_kernel(&Kallsyms::parse(
            "ffffffff81000000 T __put_devmap_managed_page_refs\nffffffff81000100 T zone_device_page_init\n",
        ))
    }

    fn rules_7_2() -> Rules {
        Rules::from_kernel(&Kallsyms::parse(
            "ffffffff81000100 T zone_device_page_init\n",
        ))
    }

    fn th() -> Thresholds {
        Thresholds {
            held_ns: S,
            pinned_ns: S,
            unmapped_ns: S,
        }
    }

    /// Synthetic event (not from a kernel).
    fn ev(ts: u64, pfn: u64, kind: Kind, before: i32, after: i32, tgid: u32) -> PageEvent {
        PageEvent {
            ts_ns: ts,
            pfn,
            page: 0,
            pid: tgid,
            tgid,
            cpu: 0,
            comm: format!("task{tgid}"),
            kind,
            hook: 0,
            refcount_before: Some(before),
            refcount_after: Some(after),
            mapcount: Some(-1),
            pgmap_type: pgmap::FSDAX,
            nr_pages: 1,
            ret: None,
            aux: 0,
            stack: vec![0xffff_ffff_8100_0000 + u64::from(tgid)],
        }
    }

    fn mapped(mut e: PageEvent, mapcount: i32) -> PageEvent {
        e.mapcount = Some(mapcount);
        e
    }

    #[test]
    fn history_is_bounded_and_counts_add_up() {
        let mut t = Tracker::new(rules_6_1(), th(), 3, 100);
        for i in 0..10 {
            t.apply(&ev(i, 7, Kind::Get, 1, 2, 1));
            t.apply(&ev(i, 7, Kind::Put, 2, 1, 1));
        }
        let p = t.page(7).expect("tracked");
        assert_eq!(p.history.len(), 3);
        assert_eq!(p.history.back().map(|e| e.kind), Some(Kind::Put));
        assert_eq!(p.counts[Kind::Get.raw() as usize], 10);
        assert_eq!(p.refcount, Some(1));
        assert_eq!(p.state, PageState::Idle);
        assert_eq!(t.events(), 20);
        assert!(t.episodes.is_empty());
        let table = t.summary_table();
        assert!(
            table.lines().nth(1).is_some_and(|l| l.starts_with("0x7 ")),
            "{table}"
        );
    }

    /// dax-hold on a 1-based kernel: a pipe holds the page past the threshold.
    #[test]
    fn held_opens_after_threshold_and_names_the_holder() {
        let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
        t.apply(&ev(10 * S, 1, Kind::Get, 1, 2, 42));
        t.advance(10 * S + S / 2);
        assert!(t.episodes.is_empty(), "not before the threshold");
        t.advance(11 * S + 1);
        assert_eq!(t.episodes.len(), 1);
        let e = &t.episodes[0];
        assert_eq!(e.detector, Detector::Held);
        assert_eq!(e.start_ns, 10 * S);
        assert_eq!(e.end_ns, None);
        assert_eq!(e.holders.len(), 1);
        assert_eq!(e.holders[0].tgid, 42);
        assert!(e.reason.contains("refcount 2, idle 1"), "{}", e.reason);
        assert_eq!(t.stuck().len(), 1);
        t.apply(&ev(14 * S, 1, Kind::Put, 2, 1, 42));
        assert_eq!(t.episodes[0].end_ns, Some(14 * S));
        assert!(t.stuck().is_empty());
        assert_eq!(t.page(1).map(|p| p.state), Some(PageState::Idle));
    }

    #[test]
    fn short_holds_are_not_flagged() {
        let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
        t.apply(&ev(0, 1, Kind::Get, 1, 2, 1));
        t.apply(&ev(S / 2, 1, Kind::Put, 2, 1, 1));
        t.advance(10 * S);
        assert!(t.episodes.is_empty());
    }

    #[test]
    fn pinned_needs_the_pin_bias() {
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        t.apply(&mapped(ev(0, 5, Kind::Pin, 1, 1025, 9), 0));
        t.advance(2 * S);
        let names: Vec<_> = t.episodes.iter().map(|e| e.detector).collect();
        assert_eq!(names, vec![Detector::Held, Detector::Pinned]);
        assert_eq!(t.page(5).map(|p| p.state), Some(PageState::Pinned));
        t.apply(&mapped(ev(3 * S, 5, Kind::Unpin, 1025, 1, 9), 0));
        assert!(t.episodes.iter().all(|e| e.end_ns == Some(3 * S)));
    }

    /// 0-based fs-dax: a mapped page at 1 is fine; unmapped at 1 is a leak.
    #[test]
    fn unmapped_not_freed_on_zero_based_kernels() {
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        t.apply(&mapped(ev(0, 3, Kind::Get, 1, 2, 7), 0));
        // After munmap the kernel shows mapcount -1 at the next event.
        t.apply(&mapped(ev(S / 10, 3, Kind::LayoutWait, 1, 1, 8), -1));
        t.advance(3 * S);
        let names: Vec<_> = t.episodes.iter().map(|e| e.detector).collect();
        assert!(names.contains(&Detector::LayoutWait), "{names:?}");
        assert!(names.contains(&Detector::UnmappedNotFreed), "{names:?}");
        assert!(names.contains(&Detector::Held), "{names:?}");
        let lw = t
            .episodes
            .iter()
            .find(|e| e.detector == Detector::LayoutWait)
            .expect("layout-wait");
        assert_eq!(lw.start_ns, S / 10);
        assert_eq!(lw.holders.first().map(|h| h.tgid), Some(7));
        t.apply(&mapped(ev(4 * S, 3, Kind::Put, 1, 0, 7), -1));
        t.apply(&mapped(ev(4 * S, 3, Kind::Free, 0, 0, 7), -1));
        assert!(t.episodes.iter().all(|e| e.end_ns == Some(4 * S)));
        assert_eq!(t.page(3).map(|p| p.state), Some(PageState::Free));
    }

    #[test]
    fn mapped_pages_are_not_held_on_zero_based_kernels() {
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        t.apply(&mapped(ev(0, 3, Kind::Get, 0, 1, 7), 0));
        t.advance(10 * S);
        assert!(t.episodes.is_empty());
    }

    #[test]
    fn unknown_get_is_said() {
        let mut t = Tracker::new(rules_6_1(), th(), 16, 100);
        // Only a drop seen, leaving the page at 3: two references of unknown origin.
        t.apply(&ev(0, 1, Kind::Put, 4, 3, 1));
        t.advance(2 * S);
        let e = &t.episodes[0];
        assert!(e.holders.is_empty());
        assert!(
            e.holder_note
                .as_deref()
                .is_some_and(|n| n.contains("no hook"))
        );
        assert_eq!(e.last_events.len(), 1);
    }

    #[test]
    fn pfn_cap_evicts_idle_pages_only() {
        let mut t = Tracker::new(rules_6_1(), th(), 4, 10);
        t.apply(&ev(0, 1000, Kind::Get, 1, 2, 1)); // stays outstanding
        for pfn in 0..50 {
            t.apply(&ev(pfn + 1, pfn, Kind::Put, 2, 1, 1));
        }
        assert!(t.len() <= 10, "{}", t.len());
        assert!(t.evicted() >= 40);
        assert!(t.page(1000).is_some(), "a referenced page is never evicted");
    }
}
