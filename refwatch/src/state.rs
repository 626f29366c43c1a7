//! Per-PFN state built from the event stream. Pure: no I/O.

use std::collections::{HashMap, VecDeque};

use crate::event::{Kind, PageEvent, pgmap_name};

/// Default number of events kept per PFN.
pub const DEFAULT_HISTORY: usize = 256;

/// What refwatch knows of one page.
#[derive(Debug, Clone)]
pub struct Page {
    pub pfn: u64,
    pub pgmap_type: u32,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Last known refcount.
    pub refcount: Option<i32>,
    /// Events seen per kind (index: wire kind value).
    pub counts: [u64; 8],
    pub last_kind: Kind,
    pub last_comm: String,
    /// The most recent events, oldest first, bounded.
    pub history: VecDeque<PageEvent>,
}

/// All tracked pages.
#[derive(Debug, Clone)]
pub struct Tracker {
    pages: HashMap<u64, Page>,
    history_cap: usize,
    events: u64,
}

impl Tracker {
    pub fn new(history_cap: usize) -> Self {
        Self {
            pages: HashMap::new(),
            history_cap: history_cap.max(1),
            events: 0,
        }
    }

    /// Folds one event in.
    pub fn apply(&mut self, ev: &PageEvent) {
        self.events += 1;
        let page = self.pages.entry(ev.pfn).or_insert_with(|| Page {
            pfn: ev.pfn,
            pgmap_type: ev.pgmap_type,
            first_ns: ev.ts_ns,
            last_ns: ev.ts_ns,
            refcount: None,
            counts: [0; 8],
            last_kind: ev.kind,
            last_comm: String::new(),
            history: VecDeque::new(),
        });
        page.last_ns = page.last_ns.max(ev.ts_ns);
        if ev.refcount_after.is_some() {
            page.refcount = ev.refcount_after;
        } else if ev.refcount_before.is_some() {
            page.refcount = ev.refcount_before;
        }
        page.counts[(ev.kind.raw() as usize).min(7)] += 1;
        page.last_kind = ev.kind;
        page.last_comm.clone_from(&ev.comm);
        if page.history.len() == self.history_cap {
            page.history.pop_front();
        }
        page.history.push_back(ev.clone());
    }

    pub fn page(&self, pfn: u64) -> Option<&Page> {
        self.pages.get(&pfn)
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

    /// Pages sorted by PFN.
    pub fn pages_sorted(&self) -> Vec<&Page> {
        let mut v: Vec<&Page> = self.pages.values().collect();
        v.sort_by_key(|p| p.pfn);
        v
    }

    /// A readable per-PFN table.
    pub fn summary_table(&self) -> String {
        let mut out = format!(
            "{:<12} {:<8} {:>6} {:>4} {:>4} {:>4} {:>5} {:>4} {:>5} {:>8}  {:<11} {}\n",
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
            "LAST",
            "TASK"
        );
        for p in self.pages_sorted() {
            let c = |k: Kind| p.counts[k.raw() as usize];
            let total: u64 = p.counts.iter().sum();
            out.push_str(&format!(
                "{:<12} {:<8} {:>6} {:>4} {:>4} {:>4} {:>5} {:>4} {:>5} {:>8}  {:<11} {}\n",
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
                p.last_kind.name(),
                p.last_comm,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic event (not from a kernel).
    fn ev(ts: u64, pfn: u64, kind: Kind, before: i32, after: i32) -> PageEvent {
        PageEvent {
            ts_ns: ts,
            pfn,
            page: 0,
            pid: 1,
            tgid: 1,
            cpu: 0,
            comm: "t".into(),
            kind,
            hook: 0,
            refcount_before: Some(before),
            refcount_after: Some(after),
            mapcount: None,
            pgmap_type: refwatch_common::pgmap::FSDAX,
            nr_pages: 1,
            ret: None,
            aux: 0,
            stack: vec![],
        }
    }

    #[test]
    fn history_is_bounded_and_counts_add_up() {
        let mut t = Tracker::new(3);
        for i in 0..10 {
            t.apply(&ev(i, 7, Kind::Get, 1, 2));
            t.apply(&ev(i, 7, Kind::Put, 2, 1));
        }
        let p = t.page(7).expect("tracked");
        assert_eq!(p.history.len(), 3);
        assert_eq!(p.history.back().map(|e| e.kind), Some(Kind::Put));
        assert_eq!(p.counts[Kind::Get.raw() as usize], 10);
        assert_eq!(p.refcount, Some(1));
        assert_eq!(t.events(), 20);
        let table = t.summary_table();
        assert!(
            table.lines().nth(1).is_some_and(|l| l.starts_with("0x7 ")),
            "{table}"
        );
    }
}
