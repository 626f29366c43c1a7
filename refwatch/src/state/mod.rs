//! Per-PFN state built from the event stream, and the detectors that flag
//! stuck pages. Pure: no I/O, time only comes from events and [`Tracker::advance`].

mod bounds;
mod caps;
mod detectors;
mod device;
pub mod groups;
mod history;
mod holders;
mod loss;
mod verify;

use crate::{
    event::{Comm, Kind, PageEvent},
    fasthash::{FastMap, FastSet},
    rules::Rules,
    symbols::Role,
};
use refwatch_common::{hook, pgmap};

pub use bounds::Footprint;
use detectors::{Detectors, close_all, layout_wait};
use device::{kept_by_another, still_kept};
pub use history::History;
use history::Tasks;
pub use holders::Holder;
use holders::{drop_holder, fold_pin_steps, note_fork};
pub use loss::{GAP_SLACK_NS, Gaps};
pub use verify::{MAX_VERIFY, REVERIFY_NS};

/// Default number of events kept per PFN.
pub const DEFAULT_HISTORY: usize = 256;
/// Default cap on tracked PFNs.
pub const DEFAULT_MAX_PFNS: usize = 1 << 20;
/// Default budget of events kept in all histories together
/// (`--max-events`): with [`MIN_KEEP`] per page, at most 5 Mi events at
/// the default PFN cap (see [`Footprint::worst`]).
pub const DEFAULT_MAX_EVENTS: usize = 4 << 20;
/// Events every page may keep whatever the budget: its latest ones, as
/// many as an episode copies ([`LAST_EVENTS`]), so that trimming a history
/// never changes what an episode shows.
pub const MIN_KEEP: usize = LAST_EVENTS;
const _: () = assert!(MIN_KEEP >= LAST_EVENTS);
/// Default cap on kept episodes: beyond it the oldest closed ones go.
pub const DEFAULT_MAX_EPISODES: usize = 100_000;
/// Holders kept per page and per episode: beyond it a page's oldest
/// holder goes (a page whose puts are not seen would otherwise grow one
/// holder per get for as long as it lives).
pub const MAX_HOLDERS: usize = 64;
/// Pids whose fork is awaited, and pages per pid ([`Tracker`]'s
/// `fork_pending`): a fork event that never comes (lost) leaves its entry
/// until the table is full, then the table starts again.
const MAX_FORKS_PENDING: usize = 256;
const MAX_FORK_PAGES: usize = 4096;
/// [`Page::open`]'s index of an episode that is open but whose record was
/// not kept: every kept episode was open when it opened (the page is
/// flagged all the same).
pub(crate) const UNKEPT: usize = usize::MAX;
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
    KeptByChild,
}

impl Detector {
    pub const ALL: [Detector; 7] = [
        Self::Held,
        Self::Pinned,
        Self::UnmappedNotFreed,
        Self::MigrationBlocked,
        Self::LayoutWait,
        Self::Orphaned,
        Self::KeptByChild,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Pinned => "pinned",
            Self::UnmappedNotFreed => "unmapped-not-freed",
            Self::MigrationBlocked => "migration-blocked",
            Self::LayoutWait => "layout-wait",
            Self::Orphaned => "orphaned",
            Self::KeptByChild => "kept-by-child",
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

/// A device page map refwatch saw come up or go away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgmapInfo {
    pub first_pfn: u64,
    pub pages: u64,
    pub pgmap_type: u32,
    /// Free callback (or ops) address; 0 when unknown.
    pub owner: u64,
    pub added_ns: Option<u64>,
    pub removed_ns: Option<u64>,
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
    /// Ended because events of the page were lost: its state is unknown
    /// from `end_ns`, not known to be fine.
    pub ended_by_loss: bool,
    /// The drop that ended it (a put, unpin or free): who released the
    /// page, with its stack. `None` while open, and for an episode that
    /// ended otherwise (a migration, a loss, a rewrite of the count).
    pub released_by: Option<Box<PageEvent>>,
}

/// What refwatch knows of one page. In C order, what every event reads
/// or writes first: an event touches the first five cache lines of a page,
/// not most of the seven it spans.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Page {
    /// The most recent events, oldest first, bounded.
    pub history: History,
    pub holders: Vec<Holder>,
    pub last_comm: Comm,
    /// Last known refcount.
    pub refcount: Option<i32>,
    /// Last known raw `_mapcount`.
    pub mapcount: Option<i32>,
    pub last_ns: u64,
    pub state_since_ns: u64,
    /// The page map's free callback (or ops) address; 0 when unknown.
    pub owner: u64,
    pub outstanding_since: Option<u64>,
    pub pinned_since: Option<u64>,
    pub unmapped_since: Option<u64>,
    /// References beyond idle and mappings.
    pub outstanding: i32,
    /// The process whose migration to device memory filled this page.
    pub migrated_by: Option<u32>,
    /// Since when processes other than [`Page::migrated_by`] keep the page
    /// mapped, after that process unmapped it.
    pub kept_since: Option<u64>,
    pub pgmap_type: u32,
    pub state: PageState,
    pub last_kind: Kind,
    /// Listed in [`Tracker::hot`].
    hot: bool,
    /// First seen referenced in refwatch's snapshot at attach: references
    /// taken before refwatch started (a known state, holders unknown).
    /// (Here, in what would be padding.)
    pub before_refwatch: bool,
    /// Open episodes: detector → index in [`Tracker::episodes`].
    pub open: FastMap<Detector, usize>,
    /// Events seen per kind (index: wire kind value).
    pub counts: [u64; 13],
    pub pfn: u64,
    pub first_ns: u64,
    /// Lost events of this page, and whether its state is unknown now.
    pub gaps: Gaps,
    /// Since when a hardware watchpoint watches the page's refcount
    /// (`--watch`): then its gets and puts come from the watchpoint, which
    /// sees every write, and the hooks' events of them are history only.
    /// 0: not watched.
    pub watched_since: u64,
    /// When refwatch last read the page's counts (a snapshot; 0: never).
    /// Ring events stamped before it, still unread at the time, carry counts
    /// the read already includes: they do not set the counts back.
    pub read_ns: u64,
    /// When refwatch last read the page's counts to check them before (or
    /// while) a detector flags it, whether or not the read disagreed
    /// ([`Tracker::to_verify`]); 0: never.
    pub verified_ns: u64,
}

impl Page {
    /// A page first seen in `ev`.
    #[inline(never)]
    fn new(ev: &PageEvent) -> Box<Self> {
        Box::new(Page {
            pfn: ev.pfn,
            pgmap_type: ev.pgmap_type,
            first_ns: ev.ts_ns,
            last_ns: ev.ts_ns,
            refcount: None,
            mapcount: None,
            state: PageState::Idle,
            state_since_ns: ev.ts_ns,
            counts: [0; 13],
            owner: 0,
            last_kind: ev.kind,
            last_comm: Comm::default(),
            history: History::new(ev),
            outstanding: 0,
            migrated_by: None,
            kept_since: None,
            outstanding_since: None,
            pinned_since: None,
            unmapped_since: None,
            holders: Vec::new(),
            open: FastMap::default(),
            hot: false,
            gaps: Gaps::default(),
            before_refwatch: false,
            watched_since: 0,
            read_ns: 0,
            verified_ns: 0,
        })
    }

    /// The most recent holder, if any.
    pub fn holder(&self) -> Option<&Holder> {
        self.holders.last()
    }

    /// Whether its state is unknown because events were lost.
    pub fn unknown(&self) -> bool {
        self.gaps.unknown_since.is_some()
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

/// Notes a watchpoint event on `page` (the watch since then; the end of
/// its watch: no longer), and says
/// whether `ev` is a hook's event of a page the watchpoint watches: its get
/// or put is the watchpoint's too, and only the watchpoint's counts.
fn watch_event(page: &mut Page, ev: &PageEvent) -> bool {
    if ev.hook == hook::WATCHPOINT {
        if page.watched_since == 0 {
            page.watched_since = ev.ts_ns.max(1);
        }
        return false;
    }
    if ev.hook == hook::WATCH_END {
        page.watched_since = 0;
        return false;
    }
    page.watched_since != 0 && ev.ts_ns >= page.watched_since
}

/// All tracked pages, and every episode so far.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Boxed: the table stays small (16-byte slots), and growing it moves
    /// pointers, not pages.
    pages: FastMap<u64, Box<Page>>,
    /// Page maps seen coming up or going away.
    pub pgmaps: Vec<PgmapInfo>,
    /// Threads that took references while forking → the PFNs, until the
    /// fork event names the child.
    fork_pending: FastMap<u32, Vec<u64>>,
    /// The threads of the events in the histories.
    tasks: Tasks,
    /// PFNs with outstanding references (candidates for time-based
    /// detectors), and those whose references went since the detectors
    /// last ran: they leave then, not on every drop (see [`Page::hot`]).
    hot: FastSet<u64>,
    pub episodes: Vec<Episode>,
    /// Losses on pages not tracked.
    untracked: loss::Untracked,
    gaps_total: u64,
    unattributed: u64,
    /// The time up to which every loss has been applied ([`Tracker::apply_gap`]);
    /// the time-based detectors look no further. `None`: no losses are
    /// reported to this tracker (synthetic use).
    loss_horizon: Option<u64>,
    pub rules: Rules,
    pub thresholds: Thresholds,
    history_cap: usize,
    /// Whether pages keep their history ([`Tracker::keep_no_history`]).
    histories: bool,
    max_pfns: usize,
    /// Budget of events kept in all histories together, and those kept now.
    max_events: usize,
    kept_events: usize,
    /// A page's cap on its history ([`Tracker::page_cap`]) and the number
    /// of pages it is for.
    page_cap: usize,
    page_cap_for: usize,
    /// Events dropped from histories shorter than `history_cap` to stay
    /// within `max_events`.
    events_trimmed: u64,
    max_episodes: usize,
    /// Closed episodes forgotten to stay within `max_episodes`.
    episodes_dropped: u64,
    /// Episodes opened while every kept one was open: their pages are
    /// flagged, their records not kept.
    episodes_unkept: u64,
    /// Episodes recorded in [`Tracker::episodes`] so far (kept or since
    /// forgotten).
    episodes_opened: u64,
    /// Events on new pages not followed because the PFN cap was reached
    /// and no tracked page could be evicted.
    over_cap: u64,
    events: u64,
    evicted: u64,
    /// Idle pages as last listed, newest first ([`Tracker::scan_idle`]).
    evict_queue: Vec<(u64, u64)>,
    now_ns: u64,
    last_advance_ns: u64,
}

impl Tracker {
    pub fn new(rules: Rules, thresholds: Thresholds, history_cap: usize, max_pfns: usize) -> Self {
        Self {
            pages: FastMap::default(),
            pgmaps: Vec::new(),
            fork_pending: FastMap::default(),
            tasks: Tasks::new(),
            hot: FastSet::default(),
            episodes: Vec::new(),
            untracked: loss::Untracked::default(),
            gaps_total: 0,
            unattributed: 0,
            loss_horizon: None,
            rules,
            thresholds,
            history_cap: history_cap.max(1),
            histories: true,
            max_pfns: max_pfns.max(1),
            max_events: DEFAULT_MAX_EVENTS,
            kept_events: 0,
            page_cap: history_cap.max(1),
            page_cap_for: 0,
            events_trimmed: 0,
            max_episodes: DEFAULT_MAX_EPISODES,
            episodes_dropped: 0,
            episodes_unkept: 0,
            episodes_opened: 0,
            over_cap: 0,
            events: 0,
            evicted: 0,
            evict_queue: Vec::new(),
            now_ns: 0,
            last_advance_ns: 0,
        }
    }

    /// Folds one event in, then runs the time-based detectors up to its time.
    pub fn apply(&mut self, ev: &PageEvent) {
        self.apply_event(ev);
        // Within the budget, mostly: one compare.
        if self.kept_events > self.max_events && self.kept_events > self.events_bound() {
            self.trim_histories();
        }
    }

    fn apply_event(&mut self, ev: &PageEvent) {
        self.events += 1;
        self.now_ns = self.now_ns.max(ev.ts_ns);
        match ev.kind {
            Kind::PgmapAdd | Kind::PgmapRemove => return self.apply_pgmap(ev),
            Kind::Fork => return self.apply_fork(ev),
            _ => {}
        }
        if self.pages.len() >= self.max_pfns && !self.pages.contains_key(&ev.pfn) {
            self.evict();
            if self.pages.len() >= self.max_pfns {
                // Every tracked page holds references or an open episode:
                // this one is not followed (counted, shown).
                self.over_cap = self.over_cap.saturating_add(1);
                return;
            }
        }
        // Losses on untracked pages are rare: their check (one compare)
        // before the page's lookup, which the entry below makes anyway.
        if self.has_untracked()
            && !self.pages.contains_key(&ev.pfn)
            && let Some(g) = self.take_untracked(ev.pfn)
        {
            let mut page = Page::new(ev);
            page.gaps = g;
            self.pages.insert(ev.pfn, page);
        }
        // The cap for the pages tracked before this event's: a new page's
        // first event fits any cap.
        let history = self
            .histories
            .then(|| (self.page_cap(), self.history_cap, self.tasks.of(ev)));
        let rules = &self.rules;
        let page = self.pages.entry(ev.pfn).or_insert_with(|| Page::new(ev));
        loss::resync(page, ev);
        if page.pgmap_type == pgmap::UNKNOWN {
            page.pgmap_type = ev.pgmap_type;
        }
        page.last_ns = page.last_ns.max(ev.ts_ns);
        if ev.owner != 0 {
            page.owner = ev.owner;
        }
        // Counts older than the page's last read (by more than the stamping
        // slack) are history only: the read already includes them.
        let superseded = ev.kind != Kind::Snapshot
            && !ev.late
            && ev.ts_ns.saturating_add(loss::GAP_SLACK_NS) < page.read_ns;
        // A read that found no counts (the end of a watch, unread) is none.
        if ev.kind == Kind::Snapshot && ev.refcount_after.is_some() {
            page.read_ns = page.read_ns.max(ev.ts_ns);
        }
        // A migration event's refcount includes the migration's own
        // transient reference: history only.
        if ev.kind != Kind::Migrate && !superseded {
            if let Some(rc) = ev.refcount_after.or(ev.refcount_before) {
                page.refcount = Some(rc.saturating_sub(fault_transient(ev)));
            }
            if ev.mapcount.is_some() {
                page.mapcount = ev.mapcount;
            }
        }
        page.counts[(ev.kind.raw() as usize).min(12)] += 1;
        page.last_kind = ev.kind;
        page.last_comm.clone_from(&ev.comm);
        let watched = watch_event(page, ev);

        let mut forked = false;
        match ev.kind {
            // The watchpoint saw (or will see) this write: one holder per
            // reference.
            Kind::Get | Kind::Pin | Kind::Put | Kind::Unpin if watched => {}
            Kind::Get | Kind::Pin => {
                if !superseded && !page.holders.is_empty() {
                    drop_unseen_puts(page, ev, rules);
                }
                // Room for one at first (not the vector's usual four): most
                // pages have at most one holder at a time.
                if page.holders.capacity() == 0 {
                    page.holders.reserve_exact(1);
                }
                let mut h = Holder::from_event(ev);
                if ev.kind == Kind::Pin && ev.hook == hook::WATCHPOINT {
                    fold_pin_steps(&mut page.holders, &mut h);
                }
                if page.holders.len() >= MAX_HOLDERS {
                    page.holders.remove(0);
                }
                page.holders.push(h);
                forked = ev.forking;
            }
            Kind::Put | Kind::Unpin => drop_holder(&mut page.holders, ev),
            Kind::Free => page.holders.clear(),
            // `set_page_count`: whatever was held before is gone; a device
            // page allocation sets its first reference this way.
            Kind::Set if ev.hook == hook::PAGE_REF_SET => {
                page.holders.clear();
                if ev.refcount_after.is_some_and(|a| a > 0) {
                    page.holders.push(Holder::from_event(ev));
                }
            }
            // The state as read: references refwatch did not see taken
            // when they are the page's first event (taken before it started).
            Kind::Snapshot => {
                if page.counts.iter().sum::<u64>() == 1 {
                    page.before_refwatch = true;
                }
            }
            Kind::Set
            | Kind::Migrate
            | Kind::LayoutWait
            | Kind::PgmapAdd
            | Kind::PgmapRemove
            | Kind::Fork => {}
        }
        if ev.kind == Kind::Free {
            page.before_refwatch = false;
        }
        // After the holders: the loads of a page not in cache that those
        // wait for overlap with the history's.
        if let Some((cap, max, task)) = history {
            self.kept_events += usize::from(page.history.push(ev, task, cap, max));
        }
        let system = page.pgmap_type == pgmap::SYSTEM;
        if forked {
            note_fork(&mut self.fork_pending, ev);
        }
        if system {
            return self.apply_system(ev);
        }
        let outstanding = match page.refcount {
            Some(rc) if ev.kind != Kind::Free => {
                let map_refs = page.holders.iter().filter(|h| h.role == Role::Map).count();
                let map_refs = i32::try_from(map_refs).unwrap_or(i32::MAX);
                rules.outstanding(page.pgmap_type, rc, page.mapcount, map_refs)
            }
            _ => 0,
        };
        page.outstanding = outstanding;
        let mut to_open: Option<(Detector, u64, String)> = None;
        let mut to_close = Detectors::default();
        if outstanding == 0 {
            // Nothing beyond idle and mappings: only references that
            // mappings hold can be left (where mappings hold references).
            let mappings_hold = rules.mappings_hold_refs(page.pgmap_type);
            if !mappings_hold {
                page.holders.clear();
            } else if !page.holders.is_empty() {
                holders::keep_holders(&mut page.holders, |h| h.role == Role::Map);
            }
            page.outstanding_since = None;
            page.pinned_since = None;
            page.unmapped_since = None;
            for d in [
                Detector::Held,
                Detector::Pinned,
                Detector::UnmappedNotFreed,
                Detector::LayoutWait,
                Detector::Orphaned,
            ] {
                to_close.insert(d);
            }
        } else {
            page.outstanding_since.get_or_insert(ev.ts_ns);
            if outstanding >= PIN_BIAS {
                page.pinned_since.get_or_insert(ev.ts_ns);
            } else {
                page.pinned_since = None;
                to_close.insert(Detector::Pinned);
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
                to_close.insert(Detector::UnmappedNotFreed);
            }
            if ev.kind == Kind::LayoutWait {
                to_open = Some(layout_wait(ev, page, rules));
            }
            // A page taken and dropped over and over is listed once.
            if !page.hot {
                page.hot = true;
                self.hot.insert(ev.pfn);
            }
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
        if ev.kind == Kind::Free {
            to_close.insert(Detector::MigrationBlocked);
        }
        if kept_by_another(page, ev) {
            page.kept_since.get_or_insert(ev.ts_ns);
            if !page.hot {
                page.hot = true;
                self.hot.insert(pfn);
            }
        } else if page.kept_since.is_some() && !still_kept(page, ev) {
            page.kept_since = None;
            to_close.insert(Detector::KeptByChild);
        }
        if ev.kind == Kind::Free {
            page.migrated_by = None;
        }
        // Most pages have nothing open: no episode to look at.
        if !page.open.is_empty() {
            close_all(page, &mut self.episodes, to_close, ev);
        }
        // Only open episodes learn of holders: most events have none to tell.
        let may_be_open = !page.open.is_empty() || to_open.is_some() || ev.kind == Kind::Migrate;
        if let Some((d, start, reason)) = to_open {
            self.open(pfn, d, start, reason);
        }
        if let Some(m) = ev.migration() {
            self.apply_migration(ev, m);
        }
        if may_be_open {
            self.refresh_holders(pfn);
        }
        // A watch armed (its read) or ended: what open episodes say of
        // holders they could not name changes.
        if ev.kind == Kind::Snapshot && matches!(ev.hook, hook::WATCHPOINT | hook::WATCH_END) {
            self.refresh_note(pfn);
        }
        // The time-based detectors walk every referenced page: run them when
        // event time has moved on enough, and on every tick (`advance`).
        if ev.ts_ns >= self.last_advance_ns.saturating_add(ADVANCE_EVERY_NS) {
            self.advance(ev.ts_ns);
        }
    }

    /// The rest of an event on a system page: only migrations are followed
    /// there (their other references are not watched), no refcount-based
    /// detectors.
    #[cold]
    #[inline(never)]
    fn apply_system(&mut self, ev: &PageEvent) {
        if let Some(m) = ev.migration() {
            self.apply_migration(ev, m);
        }
        self.refresh_holders(ev.pfn);
    }

    /// A hardware watchpoint on `pfn`'s refcount was armed at `since_ns`
    /// (`--watch`); `None`: it was disarmed.
    pub fn watch_armed(&mut self, pfn: u64, since_ns: Option<u64>) {
        if let Some(p) = self.pages.get_mut(&pfn) {
            p.watched_since = since_ns.map_or(0, |s| s.max(1));
            self.refresh_note(pfn);
        }
    }

    pub fn page(&self, pfn: u64) -> Option<&Page> {
        self.pages.get(&pfn).map(|p| &**p)
    }

    pub fn pages(&self) -> impl Iterator<Item = &Page> {
        self.pages.values().map(|p| &**p)
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

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Pages any detector flags now.
    pub fn stuck(&self) -> Vec<&Page> {
        let mut v: Vec<&Page> = self.pages().filter(|p| p.stuck()).collect();
        v.sort_by_key(|p| p.pfn);
        v
    }

    /// Pages sorted by PFN.
    pub fn pages_sorted(&self) -> Vec<&Page> {
        let mut v: Vec<&Page> = self.pages().collect();
        v.sort_by_key(|p| p.pfn);
        v
    }
}

/// A GUP grab that found nothing outstanding on its page (its count
/// before was the idle count with what the mappings hold): every holder
/// taken before it has dropped its reference by a put no hook saw (an
/// inline `folio_put` that did not free the page, as on the fs-dax pages
/// of 6.15 and later), so they go; the mappings' stay. Without this a page
/// that is spliced over and over lists as many stale holders as
/// [`MAX_HOLDERS`] allows, one per get, and each get shifts them all.
/// Only the grabs: they change no mapping (an insert's count and mapcount
/// are read after the mapping it adds), and a count before that still
/// holds another's transient reference only keeps more holders.
fn drop_unseen_puts(page: &mut Page, ev: &PageEvent, rules: &Rules) {
    let grab = matches!(
        ev.hook,
        hook::TRY_GRAB_FOLIO
            | hook::TRY_GRAB_FOLIO_FAST
            | hook::TRY_GRAB_PAGE
            | hook::TRY_GRAB_FOLIO_PAGE
    );
    let Some(before) = ev.refcount_before.filter(|_| grab && !ev.late) else {
        return;
    };
    if page.pgmap_type == pgmap::SYSTEM {
        return;
    }
    let map_refs = page.holders.iter().filter(|h| h.role == Role::Map).count();
    let map_refs = i32::try_from(map_refs).unwrap_or(i32::MAX);
    if rules.outstanding(page.pgmap_type, before, page.mapcount, map_refs) == 0 {
        let mappings_hold = rules.mappings_hold_refs(page.pgmap_type);
        let stays = |h: &Holder| (mappings_hold && h.role == Role::Map) || h.ts_ns > ev.ts_ns;
        // Most often the last grab's holder goes, alone or after the
        // mapping's, which stays.
        holders::keep_holders(&mut page.holders, stays);
    }
}

/// The reference a fs-dax fault holds around installing its entry and
/// drops inline right after (`dax_fault_iter` and `dax_insert_pfn_mkwrite`
/// bracket `vmf_insert_page_mkwrite`/`vmf_insert_folio_pmd` with
/// `folio_ref_inc`/`folio_put`): the count after the insert hook is one
/// more than the page keeps. Device-dax faults insert without it.
fn fault_transient(ev: &PageEvent) -> i32 {
    let insert = matches!(
        ev.hook,
        hook::MAP_INSERT | hook::MAP_INSERT_PMD | hook::MAP_INSERT_PUD
    );
    i32::from(insert && ev.pgmap_type == pgmap::FSDAX && ev.refcount_after.is_some())
}

#[cfg(test)]
mod tests;
