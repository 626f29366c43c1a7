//! Per-PFN state built from the event stream, and the detectors that flag
//! stuck pages. Pure: no I/O, time only comes from events and [`Tracker::advance`].

use std::{collections::VecDeque, rc::Rc};

use crate::{
    event::{Comm, Kind, Migration, PageEvent, Role, Stack, Stage, pgmap_name},
    fasthash::{FastMap, FastSet},
    rules::Rules,
};
use refwatch_common::{flags, hook, pgmap};

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
    pub comm: Comm,
    pub kind: Kind,
    pub refs: i32,
    pub stack: Stack,
    /// Taken by this parent (tgid, tid) while forking the holder.
    pub forked_from: Option<(u32, u32)>,
    /// Taken while forking; the child is not known yet.
    pub fork_pending: bool,
    /// Whether a page-table entry holds this reference.
    pub role: Role,
}

impl Holder {
    fn from_event(ev: &PageEvent) -> Self {
        let refs = match (ev.refcount_before, ev.refcount_after) {
            (Some(b), Some(a)) if a > b => a - b,
            (None, Some(a)) if ev.kind == Kind::Set => a,
            _ => 1,
        };
        Self {
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm.clone(),
            kind: if ev.kind == Kind::Set {
                Kind::Get
            } else {
                ev.kind
            },
            refs,
            stack: ev.stack.clone(),
            forked_from: None,
            fork_pending: ev.forking,
            role: ev.role,
        }
    }

    /// The thread whose event took the reference (its stack is that event's).
    pub fn taken_by(&self) -> u32 {
        self.forked_from.map_or(self.pid, |(_, tid)| tid)
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
}

/// A page's most recent events, oldest first, bounded, kept compactly: a
/// history holds up to `--history` events for each of up to `--max-pfns`
/// pages, and every event is written into one, so its size is most of the
/// per-event cost in memory traffic. An entry is 32 bytes where a
/// [`PageEvent`] is 152: the thread (pid, tgid, CPU, name) is shared
/// between the entries of one thread, the time is kept as the step from
/// the page's previous event, small numbers (refcount step, mapcount, hook,
/// `aux`, return value) are kept narrow, and what a page's events have in
/// common (its PFN, `struct page` address, owner and type, one page, no
/// `aux2`) is left out. What does not fit goes, whole, to a side queue of
/// words: a return value that is not a small number (8 bytes), a step of
/// more than an hour (8 bytes), an event unlike the page's others (64
/// bytes). [`History::iter`] and [`History::get`] give back the events
/// exactly as they were applied.
#[derive(Debug, Clone)]
pub struct History {
    /// The PFN, `struct page` address, owner and page-map type of the
    /// page's first event: what entries without [`X_EXT`] have.
    pfn: u64,
    page: u64,
    owner: u64,
    pgmap_type: u32,
    /// Time of the newest event: the others' are steps back from it.
    last_ns: u64,
    entries: Ring,
    /// The words of the entries that keep some beyond their 32 bytes
    /// ([`Entry::extra_len`]), in their order.
    extras: Extras,
}

/// Boxed, and only once needed: many pages never have an event with more
/// than an entry keeps, and every page has a history.
type Extras = Option<Box<VecDeque<u64>>>;

/// One event of a [`History`]: two words of packed fields and the shared
/// stack and thread. Fields that do not fit are in [`History::extras`],
/// flagged in `head`.
#[derive(Debug, Clone)]
struct Entry {
    /// Bits 0–42: nanoseconds since the page's previous event (signed;
    /// unless [`X_STEP`]); 43–48: the return value (signed; unless
    /// [`X_RET`]); 49–54: the wire flags ([`ENTRY_FLAGS`]); 55–58: the
    /// kind; 59–60: the role; 61–63: [`X_RET`], [`X_STEP`], [`X_EXT`].
    head: u64,
    /// Bits 0–31: the refcount after (before when there is no after);
    /// 32–43: before minus after, when both; 44–51: the mapcount; 52–57:
    /// the hook; 58–63: `aux` (signed). All but the first unless [`X_EXT`].
    refs: u64,
    stack: Stack,
    task: Rc<Task>,
}

/// Half a cache line per event.
const _: () = assert!(std::mem::size_of::<Entry>() <= 32);

/// A field of `bits` bits at `shift` in a word of an [`Entry`].
#[derive(Clone, Copy)]
struct Field {
    shift: u32,
    bits: u32,
}

impl Field {
    /// Whether `v` fits, signed.
    #[inline]
    fn fits(self, v: i64) -> bool {
        (v << (64 - self.bits)) >> (64 - self.bits) == v
    }

    /// `v`, truncated to the field, in place.
    #[inline]
    fn put(self, v: i64) -> u64 {
        (v as u64 & ((1 << self.bits) - 1)) << self.shift
    }

    /// The field of `word`, sign-extended.
    fn get(self, word: u64) -> i64 {
        ((word >> self.shift) << (64 - self.bits)) as i64 >> (64 - self.bits)
    }

    /// The field of `word`, unsigned.
    fn get_unsigned(self, word: u64) -> u64 {
        (word >> self.shift) & ((1 << self.bits) - 1)
    }
}

// `Entry::head`.
const STEP: Field = Field { shift: 0, bits: 43 };
const RET: Field = Field { shift: 43, bits: 6 };
const FLAGS_SHIFT: u32 = 49;
const KIND_SHIFT: u32 = 55;
const ROLE_SHIFT: u32 = 59;
/// The return value is the entry's first extra word.
const X_RET: u64 = 1 << 61;
/// The step (all 64 bits) is the next extra word.
const X_STEP: u64 = 1 << 62;
/// The event's fields unlike its page's follow, whole ([`EXT_WORDS`]).
const X_EXT: u64 = 1 << 63;

// `Entry::refs`.
const BEFORE_STEP: Field = Field {
    shift: 32,
    bits: 12,
};
const MAPCOUNT: Field = Field { shift: 44, bits: 8 };
const HOOK: Field = Field { shift: 52, bits: 6 };
const AUX: Field = Field { shift: 58, bits: 6 };

/// The wire flags an entry keeps (all below bit 6).
const ENTRY_FLAGS: u32 = flags::HAS_BEFORE
    | flags::HAS_AFTER
    | flags::HAS_MAPCOUNT
    | flags::HAS_RET
    | flags::LATE
    | flags::FORKING;
const _: () = assert!(ENTRY_FLAGS < 1 << (KIND_SHIFT - FLAGS_SHIFT));
const _: () = assert!(Kind::ALL.len() <= 1 << (ROLE_SHIFT - KIND_SHIFT));
// An entry keeps the kind as its place in `Kind::ALL`.
const _: () = {
    let mut i = 0;
    while i < Kind::ALL.len() {
        assert!(Kind::ALL[i] as usize == i);
        i += 1;
    }
};

/// An event's fields that differ from its page's usual ones (or do not
/// fit an entry), whole: refcount before and mapcount, PFN, `struct page`,
/// owner, `aux`, `aux2`, hook and page-map type, pages.
const EXT_WORDS: usize = 8;

/// Most extra words an entry has: return value, step, [`EXT_WORDS`].
const MAX_EXTRA: usize = 2 + EXT_WORDS;

impl Entry {
    /// Words of [`History::extras`] that are this entry's.
    #[inline]
    fn extra_len(&self) -> usize {
        usize::from(self.head & X_RET != 0)
            + usize::from(self.head & X_STEP != 0)
            + usize::from(self.head & X_EXT != 0) * EXT_WORDS
    }

    /// Nanoseconds since the page's previous event, with the entry's
    /// extra words `x`.
    fn step(&self, x: &[u64]) -> u64 {
        if self.head & X_STEP != 0 {
            x.get(usize::from(self.head & X_RET != 0))
                .copied()
                .unwrap_or_default()
        } else {
            STEP.get(self.head) as u64
        }
    }
}

/// Entries per block of a [`Ring`] (log2).
const BLOCK_SHIFT: u32 = 3;
const BLOCK: usize = 1 << BLOCK_SHIFT;

/// History entries, oldest first from `head`, in fixed-size blocks: it
/// grows a block at a time until it holds `--history` entries, then each
/// new entry takes the place of the oldest. Blocks, not one allocation:
/// growing never copies entries (a page's history grows from nothing to
/// `--history` events), a page with a few events takes a block, and blocks
/// are allocated in the order events come, so the entries of pages busy at
/// the same time are near each other in memory (one vector per page puts
/// every page's newest entry a whole history away from the next page's).
#[derive(Debug, Clone)]
struct Ring {
    /// [`BLOCK`] slots each, but for a last one no larger than the
    /// history needs (one entry for `--history 1`).
    blocks: Vec<Box<[Option<Entry>]>>,
    /// Slot of the oldest entry (0 until full).
    head: usize,
    len: usize,
}

impl Ring {
    fn new() -> Self {
        Self {
            blocks: Vec::new(),
            head: 0,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`th entry, oldest first.
    fn get(&self, i: usize) -> Option<&Entry> {
        if i >= self.len {
            return None;
        }
        let at = self.head + i;
        let at = if at >= self.len { at - self.len } else { at };
        self.blocks.get(at / BLOCK)?.get(at % BLOCK)?.as_ref()
    }

    fn back(&self) -> Option<&Entry> {
        self.get(self.len.checked_sub(1)?)
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = &Entry> {
        let slots = self
            .blocks
            .iter()
            .flat_map(|b| b.iter())
            .take(self.len)
            .filter_map(Option::as_ref);
        slots.clone().skip(self.head).chain(slots.take(self.head))
    }

    /// The slot for one more entry: at `cap` entries, the oldest's.
    #[inline]
    fn next_slot(&mut self, cap: usize) -> Option<&mut Option<Entry>> {
        let at = if self.len < cap {
            if self.len == self.blocks.len() * BLOCK {
                self.grow(cap);
            }
            self.len += 1;
            self.len - 1
        } else {
            let at = self.head;
            self.head = if at + 1 >= self.len { 0 } else { at + 1 };
            at
        };
        self.blocks
            .get_mut(at / BLOCK)
            .and_then(|b| b.get_mut(at % BLOCK))
    }

    /// One more block, for a history of at most `cap` entries.
    #[inline(never)]
    fn grow(&mut self, cap: usize) {
        let room = cap - self.len;
        self.blocks.push(if room >= BLOCK {
            Box::new([const { None }; BLOCK])
        } else {
            vec![None; room].into_boxed_slice()
        });
    }
}

/// The thread of an event, shared between the history entries it made.
#[derive(Debug, PartialEq, Eq)]
struct Task {
    pid: u32,
    tgid: u32,
    cpu: u32,
    comm: Comm,
}

impl History {
    /// An empty history for the page whose first event is `first`.
    fn new(first: &PageEvent) -> Self {
        Self {
            pfn: first.pfn,
            page: first.page,
            owner: first.owner,
            pgmap_type: first.pgmap_type,
            last_ns: first.ts_ns,
            entries: Ring::new(),
            extras: None,
        }
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`th event, oldest first.
    pub fn get(&self, i: usize) -> Option<PageEvent> {
        self.iter().nth(i)
    }

    /// The most recent event.
    pub fn last(&self) -> Option<PageEvent> {
        let e = self.entries.back()?;
        let n = self.extras.as_ref().map_or(0, |x| x.len());
        let x = self.extra_words(n.saturating_sub(e.extra_len()), e);
        Some(self.event(e, &x, self.last_ns))
    }

    /// The events, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = PageEvent> + '_ {
        // Each entry keeps its step from the one before: the oldest's time
        // is the newest's less the steps between them.
        let mut at = 0;
        let mut steps = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                steps = steps.wrapping_add(e.step(&self.extra_words(at, e)));
            }
            at += e.extra_len();
        }
        let mut ts = self.last_ns.wrapping_sub(steps);
        let mut at = 0;
        self.entries.iter().enumerate().map(move |(i, e)| {
            let x = self.extra_words(at, e);
            at += e.extra_len();
            if i > 0 {
                ts = ts.wrapping_add(e.step(&x));
            }
            self.event(e, &x, ts)
        })
    }

    /// The extra words of `e`, from word `at` of [`History::extras`].
    fn extra_words(&self, at: usize, e: &Entry) -> [u64; MAX_EXTRA] {
        let mut x = [0; MAX_EXTRA];
        if let Some(q) = &self.extras {
            for (w, v) in x
                .iter_mut()
                .zip(q.range(at.min(q.len())..).take(e.extra_len()))
            {
                *w = *v;
            }
        }
        x
    }

    /// Appends `ev` (from `task`), dropping the oldest event beyond `cap`.
    #[inline]
    fn push(&mut self, ev: &PageEvent, task: Rc<Task>, cap: usize) {
        let step = ev.ts_ns.wrapping_sub(self.last_ns) as i64;
        self.last_ns = ev.ts_ns;
        let ret = ev.ret.unwrap_or(0);
        let aux = ev.aux as i64;
        let before_step = match (ev.refcount_before, ev.refcount_after) {
            (Some(b), Some(a)) => i64::from(b) - i64::from(a),
            _ => 0,
        };
        let mapcount = ev.mapcount.map_or(0, i64::from);
        let flag = |v: bool, bit: u32| u64::from(v) * u64::from(bit);
        let fl = flag(ev.refcount_before.is_some(), flags::HAS_BEFORE)
            | flag(ev.refcount_after.is_some(), flags::HAS_AFTER)
            | flag(ev.mapcount.is_some(), flags::HAS_MAPCOUNT)
            | flag(ev.ret.is_some(), flags::HAS_RET)
            | flag(ev.late, flags::LATE)
            | flag(ev.forking, flags::FORKING);
        let role: u64 = match ev.role {
            Role::Other => 0,
            Role::Map => 1,
            Role::Unmap => 2,
        };
        // Both words first, so that little else is live after. The fields
        // kept elsewhere are written too, truncated, and not read.
        let head = STEP.put(step)
            | RET.put(ret)
            | fl << FLAGS_SHIFT
            | (ev.kind as u64) << KIND_SHIFT
            | role << ROLE_SHIFT;
        let refs = u64::from(ev.refcount_after.or(ev.refcount_before).unwrap_or(0) as u32)
            | BEFORE_STEP.put(before_step)
            | MAPCOUNT.put(mapcount)
            | HOOK.put(i64::from(ev.hook))
            | AUX.put(aux);
        // An event like most of the page's: the same page, owner, `struct
        // page` and type, one page, no `aux2`, and numbers that fit.
        // Tested at once, without a branch for each.
        let ext = (ev.pfn ^ self.pfn)
            | (ev.page ^ self.page)
            | (ev.owner ^ self.owner)
            | u64::from(ev.pgmap_type ^ self.pgmap_type)
            | ev.aux2
            | u64::from(ev.nr_pages ^ 1)
            | u64::from(ev.hook >> HOOK.bits)
            | u64::from(!(AUX.fits(aux) & BEFORE_STEP.fits(before_step) & MAPCOUNT.fits(mapcount)))
            != 0;
        let out = (u64::from(!RET.fits(ret)) * X_RET)
            | (u64::from(!STEP.fits(step)) * X_STEP)
            | (u64::from(ext) * X_EXT);
        if out != 0 {
            self.push_extras(ev, out, step, ret);
        }
        let stack = ev.stack.clone();
        let Some(slot) = self.entries.next_slot(cap) else {
            return;
        };
        // The oldest event leaves with its extra words (the queue's front).
        let gone = slot.as_ref().map_or(0, Entry::extra_len);
        if gone > 0
            && let Some(q) = &mut self.extras
        {
            q.drain(..gone.min(q.len()));
        }
        // Written in place (the oldest dropped there).
        *slot = Some(Entry {
            head: head | out,
            refs,
            stack,
            task,
        });
    }

    /// Keeps the fields of `ev` its entry cannot (`out`: [`X_RET`],
    /// [`X_STEP`], [`X_EXT`]), in that order.
    #[cold]
    #[inline(never)]
    fn push_extras(&mut self, ev: &PageEvent, out: u64, step: i64, ret: i64) {
        let q = self.extras.get_or_insert_default();
        if out & X_RET != 0 {
            q.push_back(ret as u64);
        }
        if out & X_STEP != 0 {
            q.push_back(step as u64);
        }
        if out & X_EXT != 0 {
            let pair = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
            q.extend([
                pair(
                    ev.refcount_before.unwrap_or(0) as u32,
                    ev.mapcount.unwrap_or(0) as u32,
                ),
                ev.pfn,
                ev.page,
                ev.owner,
                ev.aux,
                ev.aux2,
                pair(ev.hook, ev.pgmap_type),
                u64::from(ev.nr_pages),
            ]);
        }
    }

    /// The event `e` (with its extra words `x`) was made from, at `ts_ns`.
    fn event(&self, e: &Entry, x: &[u64], ts_ns: u64) -> PageEvent {
        let fl = (e.head >> FLAGS_SHIFT) as u32;
        let has = |bit: u32| fl & bit != 0;
        let mut x = x.iter().copied();
        let ret = if e.head & X_RET != 0 {
            x.next().unwrap_or_default() as i64
        } else {
            RET.get(e.head)
        };
        if e.head & X_STEP != 0 {
            x.next();
        }
        let after = e.refs as u32 as i32;
        let (before, mapcount, pfn, page, owner, aux, aux2, hook, pgmap_type, nr_pages) =
            if e.head & X_EXT != 0 {
                let mut w = || x.next().unwrap_or_default();
                let (refs, pfn, page, owner, aux, aux2, types, nr_pages) =
                    (w(), w(), w(), w(), w(), w(), w(), w());
                (
                    refs as u32 as i32,
                    (refs >> 32) as u32 as i32,
                    pfn,
                    page,
                    owner,
                    aux,
                    aux2,
                    types as u32,
                    (types >> 32) as u32,
                    nr_pages as u32,
                )
            } else {
                (
                    if has(flags::HAS_AFTER) {
                        after.wrapping_add(BEFORE_STEP.get(e.refs) as i32)
                    } else {
                        after
                    },
                    MAPCOUNT.get(e.refs) as i32,
                    self.pfn,
                    self.page,
                    self.owner,
                    AUX.get(e.refs) as u64,
                    0,
                    HOOK.get_unsigned(e.refs) as u32,
                    self.pgmap_type,
                    1,
                )
            };
        PageEvent {
            ts_ns,
            pfn,
            page,
            pid: e.task.pid,
            tgid: e.task.tgid,
            cpu: e.task.cpu,
            comm: e.task.comm.clone(),
            kind: Kind::ALL[(e.head >> KIND_SHIFT) as usize & 0xf],
            hook,
            refcount_before: has(flags::HAS_BEFORE).then_some(before),
            refcount_after: has(flags::HAS_AFTER).then_some(after),
            mapcount: has(flags::HAS_MAPCOUNT).then_some(mapcount),
            pgmap_type,
            nr_pages,
            ret: has(flags::HAS_RET).then_some(ret),
            aux,
            aux2,
            owner,
            late: has(flags::LATE),
            forking: has(flags::FORKING),
            role: match (e.head >> ROLE_SHIFT) & 3 {
                1 => Role::Map,
                2 => Role::Unmap,
                _ => Role::Other,
            },
            stack: e.stack.clone(),
        }
    }
}

/// Shares one [`Task`] between the history entries of a thread on a CPU:
/// a small direct-mapped cache by (pid, CPU), so bounded by construction.
/// Two threads that meet in one slot each get a task of their own in turn
/// (more memory, never a wrong name).
#[derive(Debug, Clone)]
struct Tasks {
    slots: Vec<Option<Rc<Task>>>,
}

/// Slots of [`Tasks`] (a power of two).
const TASK_SLOTS: usize = 256;

impl Tasks {
    fn new() -> Self {
        Self {
            slots: vec![None; TASK_SLOTS],
        }
    }

    /// The shared task of `ev`.
    #[inline]
    fn of(&mut self, ev: &PageEvent) -> Rc<Task> {
        let key = (u64::from(ev.pid) << 32 | u64::from(ev.cpu)).wrapping_mul(FIB);
        let i = (key >> 56) as usize % TASK_SLOTS;
        match self.slots.get(i) {
            Some(Some(t))
                if t.pid == ev.pid && t.cpu == ev.cpu && t.tgid == ev.tgid && t.comm == ev.comm =>
            {
                Rc::clone(t)
            }
            _ => self.insert(i, ev),
        }
    }

    /// A new task for `ev`, in slot `i`.
    #[cold]
    #[inline(never)]
    fn insert(&mut self, i: usize, ev: &PageEvent) -> Rc<Task> {
        let t = Rc::new(Task {
            pid: ev.pid,
            tgid: ev.tgid,
            cpu: ev.cpu,
            comm: ev.comm.clone(),
        });
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(Rc::clone(&t));
        }
        t
    }
}

/// 2^64 / φ: multiplying by it spreads keys over the high bits.
const FIB: u64 = 0x9e37_79b9_7f4a_7c15;

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
    pub pgmap_type: u32,
    pub state: PageState,
    pub last_kind: Kind,
    /// Listed in [`Tracker::hot`].
    hot: bool,
    /// Open episodes: detector → index in [`Tracker::episodes`].
    pub open: FastMap<Detector, usize>,
    /// Events seen per kind (index: wire kind value).
    pub counts: [u64; 12],
    pub pfn: u64,
    pub first_ns: u64,
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
            counts: [0; 12],
            owner: 0,
            last_kind: ev.kind,
            last_comm: Comm::default(),
            history: History::new(ev),
            outstanding: 0,
            outstanding_since: None,
            pinned_since: None,
            unmapped_since: None,
            holders: Vec::new(),
            open: FastMap::default(),
            hot: false,
        })
    }

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
            pages: FastMap::default(),
            pgmaps: Vec::new(),
            fork_pending: FastMap::default(),
            tasks: Tasks::new(),
            hot: FastSet::default(),
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
        match ev.kind {
            Kind::PgmapAdd | Kind::PgmapRemove => return self.apply_pgmap(ev),
            Kind::Fork => return self.apply_fork(ev),
            _ => {}
        }
        if self.pages.len() >= self.max_pfns && !self.pages.contains_key(&ev.pfn) {
            self.evict();
        }
        let rules = &self.rules;
        let history_cap = self.history_cap;
        let task = self.tasks.of(ev);
        let page = self.pages.entry(ev.pfn).or_insert_with(|| Page::new(ev));
        if page.pgmap_type == pgmap::UNKNOWN {
            page.pgmap_type = ev.pgmap_type;
        }
        page.last_ns = page.last_ns.max(ev.ts_ns);
        if ev.owner != 0 {
            page.owner = ev.owner;
        }
        // A migration event's refcount includes the migration's own
        // transient reference: history only.
        if ev.kind != Kind::Migrate {
            if let Some(rc) = ev.refcount_after.or(ev.refcount_before) {
                page.refcount = Some(rc);
            }
            if ev.mapcount.is_some() {
                page.mapcount = ev.mapcount;
            }
        }
        page.counts[(ev.kind.raw() as usize).min(11)] += 1;
        page.last_kind = ev.kind;
        page.last_comm.clone_from(&ev.comm);

        let mut forked = false;
        match ev.kind {
            Kind::Get | Kind::Pin => {
                // Room for one at first (not the vector's usual four): most
                // pages have at most one holder at a time.
                if page.holders.capacity() == 0 {
                    page.holders.reserve_exact(1);
                }
                page.holders.push(Holder::from_event(ev));
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
            Kind::Set
            | Kind::Migrate
            | Kind::LayoutWait
            | Kind::PgmapAdd
            | Kind::PgmapRemove
            | Kind::Fork => {}
        }
        // After the holders: the loads of a page not in cache that those
        // wait for overlap with the history's.
        page.history.push(ev, task, history_cap);
        let system = page.pgmap_type == pgmap::SYSTEM;
        if forked {
            note_fork(&mut self.fork_pending, ev);
        }
        if system {
            return self.apply_system(ev);
        }
        let outstanding = match page.refcount {
            Some(rc) if ev.kind != Kind::Free => {
                rules.outstanding(page.pgmap_type, rc, page.mapcount)
            }
            _ => 0,
        };
        page.outstanding = outstanding;
        let mut to_open: Option<(Detector, u64, String)> = None;
        let mut to_close = Detectors::default();
        if outstanding == 0 {
            // Nothing beyond idle and mappings: only references that
            // mappings hold can be left (where mappings hold references).
            let mappings_hold = rules.fsdax_mapping_refs
                && matches!(
                    page.pgmap_type,
                    pgmap::FSDAX | pgmap::GENERIC | pgmap::P2PDMA
                );
            if !page.holders.is_empty() {
                page.holders
                    .retain(|h| mappings_hold && h.role == Role::Map);
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
        // Most pages have nothing open: no episode to look at.
        if !page.open.is_empty() {
            close_all(page, &mut self.episodes, to_close, ev.ts_ns);
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

    /// A migration event: a moved page clears `migration-blocked` (and the
    /// event joins the destination's history); a page that stayed with more
    /// references than the migration expects opens it.
    fn apply_migration(&mut self, ev: &PageEvent, m: Migration) {
        if m.moved {
            self.close(ev.pfn, Detector::MigrationBlocked, ev.ts_ns);
            // A system page's remembered holders (their drops are not
            // watched) are done with once it moved.
            if let Some(p) = self.pages.get_mut(&ev.pfn)
                && p.pgmap_type == pgmap::SYSTEM
            {
                p.holders.clear();
            }
            let cap = self.history_cap;
            if let Some(dst) = m.dst_pfn
                && dst != ev.pfn
                && let Some(d) = self.pages.get_mut(&dst)
            {
                d.history.push(ev, self.tasks.of(ev), cap);
            }
            return;
        }
        let mappings = ev.mapcount.map_or(0, |m| (m + 1).max(0));
        // When a page is restored the migration still holds one reference
        // of its own (dropped right after), a system page one more for the
        // per-CPU LRU batch it is put back through; each mapping holds one.
        let own = if ev.pgmap_type == pgmap::SYSTEM { 2 } else { 1 };
        let expected = own + mappings;
        let rc = ev.refcount_after.or(ev.refcount_before);
        let extra = rc.map(|r| r - expected);
        let dir = m.direction_words();
        let reason = match m.stage {
            Stage::Copy => format!(
                "migration {dir} refused at the copy stage (folio_migrate_mapping -EAGAIN): refcount {} is not the count the migration expected{}",
                rc.map_or("?".into(), |r| r.to_string()),
                m.extra_count
                    .map_or(String::new(), |x| format!(" (extra_count {x})"))
            ),
            _ if extra.is_some_and(|e| e > 0) => format!(
                "migration {dir} left this page behind ({} stage, by {} pid {}): refcount {}, the migration expected {expected} ({own} of its own + {mappings} mapping(s)): {} extra reference(s)",
                if m.stage == Stage::Setup {
                    "setup"
                } else {
                    "finalize"
                },
                ev.comm,
                ev.tgid,
                rc.unwrap_or(0),
                extra.unwrap_or(0)
            ),
            // Failed for another reason (no destination page, a race): not
            // a reference problem.
            _ => return,
        };
        self.open(ev.pfn, Detector::MigrationBlocked, ev.ts_ns, reason);
        if let Some(p) = self.pages.get(&ev.pfn)
            && p.pgmap_type == pgmap::SYSTEM
            && p.holders.is_empty()
            && let Some(idx) = p.open.get(&Detector::MigrationBlocked)
            && let Some(ep) = self.episodes.get_mut(*idx)
        {
            ep.holder_note = Some(
                "a system page: refwatch names GUP holders of system pages only when run with --ram-holders, and other references (page cache, kernel users) not at all"
                    .into(),
            );
        }
    }

    /// A page map came up or is going away; references still outstanding on
    /// its pages when it goes are `orphaned`.
    fn apply_pgmap(&mut self, ev: &PageEvent) {
        let first = ev.pfn;
        let pages = u64::from(ev.nr_pages);
        let known = self
            .pgmaps
            .iter()
            .position(|p| p.first_pfn == first && p.pages == pages);
        let idx = known.unwrap_or_else(|| {
            self.pgmaps.push(PgmapInfo {
                first_pfn: first,
                pages,
                pgmap_type: ev.pgmap_type,
                owner: ev.owner,
                added_ns: None,
                removed_ns: None,
            });
            self.pgmaps.len() - 1
        });
        let info = &mut self.pgmaps[idx];
        if ev.kind == Kind::PgmapAdd {
            info.added_ns = Some(ev.ts_ns);
            info.removed_ns = None;
            return;
        }
        info.removed_ns = Some(ev.ts_ns);
        let mut hit: Vec<(u64, i32)> = self
            .pages
            .values()
            .filter(|p| p.pfn >= first && p.pfn < first + pages && p.outstanding > 0)
            .map(|p| (p.pfn, p.outstanding))
            .collect();
        hit.sort_unstable();
        for (pfn, n) in hit {
            self.open(
                pfn,
                Detector::Orphaned,
                ev.ts_ns,
                format!(
                    "its page map (PFNs {first:#x}..{:#x}) is being torn down by {} (pid {}) while {n} reference(s) are outstanding",
                    first + pages,
                    ev.comm,
                    ev.tgid
                ),
            );
        }
    }

    /// A fork finished: references its parent thread took while forking
    /// belong to the child.
    fn apply_fork(&mut self, ev: &PageEvent) {
        let Some(child) = ev.ret.and_then(|c| u32::try_from(c).ok()) else {
            return;
        };
        let Some(pfns) = self.fork_pending.remove(&ev.pid) else {
            return;
        };
        let fix = |h: &mut Holder| {
            if h.fork_pending && h.pid == ev.pid {
                h.fork_pending = false;
                h.forked_from = Some((h.tgid, h.pid));
                h.pid = child;
                h.tgid = child;
            }
        };
        for pfn in pfns {
            let Some(page) = self.pages.get_mut(&pfn) else {
                continue;
            };
            page.holders.iter_mut().for_each(fix);
            for idx in page.open.values() {
                if let Some(ep) = self.episodes.get_mut(*idx) {
                    ep.holders.iter_mut().for_each(fix);
                }
            }
        }
    }

    /// Runs the time-based detectors at `now_ns` (monotonic, like event times).
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        self.last_advance_ns = self.now_ns;
        let now = self.now_ns;
        let th = self.thresholds;
        let mut to_open = Vec::new();
        let pages = &mut self.pages;
        self.hot.retain(|pfn| {
            // Pages with nothing outstanding any more (or gone) leave.
            let Some(p) = pages.get_mut(pfn) else {
                return false;
            };
            p.hot = p.outstanding != 0;
            if !p.hot {
                return false;
            }
            let p = &**p;
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
            true
        });
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

    pub fn evicted(&self) -> u64 {
        self.evicted
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

/// A set of detectors.
#[derive(Debug, Clone, Copy, Default)]
struct Detectors(u8);

impl Detectors {
    fn insert(&mut self, d: Detector) {
        self.0 |= 1 << d as u8;
    }

    /// In [`Detector::ALL`] order.
    fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL
            .into_iter()
            .filter(move |d| self.0 & (1 << *d as u8) != 0)
    }
}

/// Notes that `ev`'s thread took a reference while forking: it belongs to
/// the child the fork event names.
#[cold]
#[inline(never)]
fn note_fork(pending: &mut FastMap<u32, Vec<u64>>, ev: &PageEvent) {
    pending.entry(ev.pid).or_default().push(ev.pfn);
}

/// The episode a layout break waiting on `page` opens.
#[cold]
#[inline(never)]
fn layout_wait(ev: &PageEvent, page: &Page, rules: &Rules) -> (Detector, u64, String) {
    (
        Detector::LayoutWait,
        ev.ts_ns,
        format!(
            "a DAX layout break (truncate or hole punch) by {} (pid {}) waits for this page: refcount {}, {} reference(s) beyond idle {}",
            ev.comm,
            ev.tgid,
            page.refcount.map_or("?".into(), |r| r.to_string()),
            page.outstanding,
            rules.idle(page.pgmap_type)
        ),
    )
}

/// Ends the episodes of `page` that `to_close` names, at `ts_ns`.
#[cold]
#[inline(never)]
fn close_all(page: &mut Page, episodes: &mut [Episode], to_close: Detectors, ts_ns: u64) {
    for d in to_close.iter() {
        if let Some(idx) = page.open.remove(&d)
            && let Some(ep) = episodes.get_mut(idx)
        {
            ep.end_ns = Some(ts_ns);
        }
    }
}

fn secs(ns: u64) -> String {
    format!("{:.1}s", ns as f64 / 1e9)
}

/// Removes the holder a drop most likely matches. A drop that zaps a
/// page-table entry matches only a reference an entry holds ([`Role::Map`]),
/// any other drop another reference first, then any; within that, same class
/// (pin/unpin, get/put) and same process first, then same class, the most
/// recent first. A drop that matches no holder removes nothing (its get was
/// not observable).
fn drop_holder(holders: &mut Vec<Holder>, ev: &PageEvent) {
    let want = if ev.kind == Kind::Unpin {
        Kind::Pin
    } else {
        Kind::Get
    };
    let mapping = |h: &Holder| h.role == Role::Map;
    let same_role = |h: &Holder| mapping(h) == (ev.role == Role::Unmap);
    let pos = holders
        .iter()
        .rposition(|h| h.kind == want && same_role(h) && h.tgid == ev.tgid)
        .or_else(|| holders.iter().rposition(|h| h.kind == want && same_role(h)));
    // A zap only drops what an entry held; other drops may match anything.
    let pos = match pos {
        None if ev.role != Role::Unmap => holders
            .iter()
            .rposition(|h| h.kind == want && h.tgid == ev.tgid)
            .or_else(|| holders.iter().rposition(|h| h.kind == want)),
        p => p,
    };
    match pos {
        // The most recent, mostly: nothing to shift.
        Some(i) if i + 1 == holders.len() => drop(holders.pop()),
        Some(i) => drop(holders.remove(i)),
        None => {}
    }
}

fn holders_of(page: &Page) -> (Vec<Holder>, Option<String>, Vec<PageEvent>) {
    let kept = page.history.len();
    let last: Vec<PageEvent> = page
        .history
        .iter()
        .skip(kept.saturating_sub(LAST_EVENTS))
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
            comm: format!("task{tgid}").into(),
            kind,
            hook: 0,
            refcount_before: Some(before),
            refcount_after: Some(after),
            mapcount: Some(-1),
            pgmap_type: pgmap::FSDAX,
            nr_pages: 1,
            ret: None,
            aux: 0,
            aux2: 0,
            owner: 0,
            late: false,
            forking: false,
            role: crate::event::Role::Other,
            stack: vec![0xffff_ffff_8100_0000 + u64::from(tgid)].into(),
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
        assert_eq!(p.history.last().map(|e| e.kind), Some(Kind::Put));
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

    /// The compact history gives back every event exactly as applied,
    /// including fields that differ from the page's usual ones.
    #[test]
    fn history_keeps_events_exactly() {
        // 24 of 40 kept: rare events leave with theirs.
        let mut t = Tracker::new(rules_6_1(), th(), 24, 100);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut applied = Vec::new();
        for i in 0..40u64 {
            let mut e = ev(
                1000 + i,
                9,
                Kind::ALL[(i % 8) as usize],
                1,
                2,
                (i % 3) as u32,
            );
            e.page = 0xffff_ea00_0000_0240;
            e.owner = 0xffff_ffff_8200_0000;
            e.aux = 1;
            e.cpu = (next() % 4) as u32;
            e.role = [Role::Other, Role::Map, Role::Unmap][(i % 3) as usize];
            e.hook = (i % 29) as u32 + 1;
            let r = next();
            e.refcount_before = (r & 1 != 0).then_some((r >> 8) as i32 % 2048);
            e.refcount_after = (r & 2 != 0).then_some((r >> 20) as i32 % 2048);
            e.mapcount = (r & 4 != 0).then_some(-1);
            e.ret = (r & 8 != 0).then_some(r as i64);
            e.late = r & 16 != 0;
            e.forking = r & 32 != 0;
            match i % 7 {
                1 => e.aux = u64::MAX,
                2 => e.aux2 = 7,
                3 => e.nr_pages = 512,
                4 => e.owner = 0,
                5 => e.hook = 1000,
                6 => e.comm = "a-name-longer-than-sixteen-bytes".into(),
                _ => {}
            }
            if i == 20 {
                e.pgmap_type = 300;
                e.stack = Stack::default();
            }
            // Earlier than the page's first event, far later (kept whole),
            // and at the end of time.
            if i == 33 {
                e.ts_ns = 0;
            }
            if i == 35 {
                e.ts_ns = 1 << 60;
            }
            if i == 37 {
                e.ts_ns = u64::MAX;
            }
            t.apply(&e);
            applied.push(e);
        }
        let p = t.page(9).expect("tracked");
        let kept: Vec<PageEvent> = p.history.iter().collect();
        assert_eq!(kept, applied[applied.len() - 24..]);
        for (i, want) in applied[applied.len() - 24..].iter().enumerate() {
            assert_eq!(p.history.get(i).as_ref(), Some(want), "event {i}");
        }
        assert_eq!(p.history.last().as_ref(), applied.last());
        assert_eq!(p.history.get(24), None);
        // Any bound, whole blocks or not.
        for cap in [1, 2, 3, 5, 8, 9, 17] {
            let mut t = Tracker::new(rules_6_1(), th(), cap, 100);
            let events: Vec<PageEvent> = (0..30)
                .map(|i| ev(i, 4, [Kind::Get, Kind::Put][i as usize % 2], 1, 2, 1))
                .collect();
            for e in &events {
                t.apply(e);
            }
            let p = t.page(4).expect("tracked");
            let kept: Vec<PageEvent> = p.history.iter().collect();
            assert_eq!(kept, events[30 - cap..], "--history {cap}");
            assert_eq!(p.history.len(), cap);
        }
    }

    /// Events whose fields go to the side queue leave it with their
    /// entries, whichever is oldest when: every bound, times far apart and
    /// back, large return values and fields unlike the page's.
    #[test]
    fn history_side_words_leave_with_their_events() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for cap in [1, 2, 3, 7, 8, 9, 16] {
            let mut t = Tracker::new(rules_6_1(), th(), cap, 100);
            let mut applied = Vec::new();
            let mut ts: u64 = 5 * S;
            for i in 0..60u64 {
                let r = next();
                // Steps of nanoseconds to days, some backwards.
                ts = match r % 5 {
                    0 => ts.wrapping_add(r >> 20),
                    1 => ts.wrapping_sub(r >> 44),
                    _ => ts + (r >> 50),
                };
                let mut e = ev(ts, 6, Kind::ALL[(r >> 8) as usize % 8], 1, 2, 3);
                e.ret = (r & 1 != 0).then_some(if r & 2 != 0 { (r >> 3) as i64 } else { -3 });
                e.aux = [1, u64::MAX, 31, 32, r][(r >> 12) as usize % 5];
                e.mapcount = [None, Some(-1), Some(127), Some(128)][(r >> 16) as usize % 4];
                e.refcount_before = [None, Some(1), Some(1 << 20)][(r >> 20) as usize % 3];
                if i % 11 == 3 {
                    e.owner = r;
                }
                applied.push(e.clone());
                t.apply(&e);
                let p = t.page(6).expect("tracked");
                let kept = applied.len().min(cap);
                let want = &applied[applied.len() - kept..];
                let got: Vec<PageEvent> = p.history.iter().collect();
                assert_eq!(got, want, "--history {cap}, event {i}");
                assert_eq!(p.history.last().as_ref(), want.last());
                assert_eq!(p.history.get(0).as_ref(), want.first());
            }
        }
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

    /// Synthetic migration event (not from a kernel).
    fn migration(
        ts: u64,
        pfn: u64,
        moved: bool,
        stage: Stage,
        rc: i32,
        pgmap_type: u32,
    ) -> PageEvent {
        let m = crate::event::Migration {
            stage,
            direction: crate::event::Direction::ToDevice,
            moved,
            dst_pfn: moved.then_some(0x10_0000 + pfn),
            extra_count: (stage == Stage::Copy).then_some(0),
        };
        let (aux, aux2) = m.to_aux();
        let mut e = ev(ts, pfn, Kind::Migrate, rc, rc, 1);
        e.comm = "migrator".into();
        e.pgmap_type = pgmap_type;
        e.aux = aux;
        e.aux2 = aux2;
        e
    }

    #[test]
    fn migration_blocked_names_the_remembered_holder_and_clears_on_success() {
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        // A remembered GUP reference on a system page (synthetic).
        let mut get = ev(S, 0x100, Kind::Get, 0, 2, 7);
        get.late = true;
        get.pgmap_type = pgmap::SYSTEM;
        get.refcount_before = None;
        t.apply(&get);
        // Restored at setup: refcount 3 unmapped (the migration's own, the
        // LRU batch's, and one too many).
        t.apply(&migration(
            2 * S,
            0x100,
            false,
            Stage::Setup,
            3,
            pgmap::SYSTEM,
        ));
        let p = t.page(0x100).expect("page");
        assert_eq!(p.flags(), vec![Detector::MigrationBlocked]);
        let e = &t.episodes[0];
        assert!(e.reason.contains("1 extra reference"), "{}", e.reason);
        assert_eq!(e.holders.len(), 1);
        assert_eq!(e.holders[0].tgid, 7);
        // No time-based detector ever runs on a system page.
        t.advance(100 * S);
        assert_eq!(t.episodes.len(), 1);
        // The retry moves it.
        t.apply(&migration(
            101 * S,
            0x100,
            true,
            Stage::Finalize,
            1,
            pgmap::SYSTEM,
        ));
        assert!(!t.page(0x100).expect("page").stuck());
        assert!(t.page(0x100).expect("page").holders.is_empty());
        assert_eq!(t.episodes[0].end_ns, Some(101 * S));
    }

    #[test]
    fn a_failure_without_extra_references_is_not_blocking() {
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        t.apply(&migration(
            S,
            0x200,
            false,
            Stage::Finalize,
            2,
            pgmap::SYSTEM,
        ));
        assert!(t.episodes.is_empty());
        // Copy-stage refusals are reference problems by definition.
        t.apply(&migration(
            2 * S,
            0x201,
            false,
            Stage::Copy,
            3,
            pgmap::PRIVATE,
        ));
        assert_eq!(t.episodes.len(), 1);
        assert!(t.episodes[0].reason.contains("-EAGAIN"));
        let e = &t.episodes[0];
        assert_eq!(e.detector, Detector::MigrationBlocked);
    }

    #[test]
    fn a_moved_page_joins_the_destination_history_and_keeps_its_refcount() {
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        let mut init = ev(S, 0x10_0300, Kind::Get, 0, 1, 1);
        init.pgmap_type = pgmap::PRIVATE;
        t.apply(&init);
        t.apply(&migration(
            2 * S,
            0x300,
            true,
            Stage::Finalize,
            2,
            pgmap::SYSTEM,
        ));
        let d = t.page(0x10_0300).expect("destination");
        assert_eq!(d.history.len(), 2);
        assert_eq!(d.history.get(1).map(|e| e.kind), Some(Kind::Migrate));
        // The migration's transient reference is not the page's refcount.
        assert_eq!(t.page(0x300).expect("source").refcount, None);
    }

    #[test]
    fn a_zap_drops_the_mapping_reference_not_the_pipe_one() {
        // The fs-dax sequence seen in precise mode on 7.2 (synthetic copy):
        // fault +1, map +1, fault -1, vmsplice +1, munmap -1.
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        let with = |mut e: PageEvent, role: Role| {
            e.role = role;
            e
        };
        t.apply(&ev(S, 0x600, Kind::Get, 0, 1, 5));
        t.apply(&with(ev(S + 1, 0x600, Kind::Get, 1, 2, 5), Role::Map));
        // Mapped now: nothing beyond the mapping's reference.
        t.apply(&mapped(ev(S + 2, 0x600, Kind::Put, 2, 1, 5), 0));
        assert_eq!(t.page(0x600).expect("page").holders.len(), 1);
        t.apply(&mapped(ev(S + 3, 0x600, Kind::Get, 1, 2, 5), 0));
        t.apply(&with(ev(S + 4, 0x600, Kind::Put, 2, 1, 5), Role::Unmap));
        let h = &t.page(0x600).expect("page").holders;
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!((h[0].ts_ns, h[0].role), (S + 3, Role::Other));
    }

    #[test]
    fn references_taken_while_forking_belong_to_the_child() {
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        let private = |mut e: PageEvent| {
            e.pgmap_type = pgmap::PRIVATE;
            e
        };
        let mut set = private(ev(S, 0x400, Kind::Set, 0, 1, 10));
        set.refcount_before = None;
        set.hook = hook::PAGE_REF_SET;
        t.apply(&set);
        let mut get = private(ev(2 * S, 0x400, Kind::Get, 1, 2, 10));
        get.forking = true;
        t.apply(&get);
        let mut fork = ev(2 * S + 1, 0, Kind::Fork, 0, 0, 10);
        fork.ret = Some(11);
        t.apply(&fork);
        // The parent unmaps: its own reference goes.
        t.apply(&private(ev(3 * S, 0x400, Kind::Put, 2, 1, 10)));
        t.advance(10 * S);
        let p = t.page(0x400).expect("page");
        assert!(p.flags().contains(&Detector::Held), "{:?}", p.flags());
        let h = &p.holders;
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!((h[0].tgid, h[0].forked_from), (11, Some((10, 10))));
        assert_eq!(h[0].taken_by(), 10);
        let e = t
            .episodes
            .iter()
            .find(|e| e.detector == Detector::Held)
            .expect("held");
        assert!(
            e.holders
                .iter()
                .any(|h| h.tgid == 11 && h.forked_from == Some((10, 10))),
            "{:?}",
            e.holders
        );
        // The child exits.
        t.apply(&private(ev(11 * S, 0x400, Kind::Put, 1, 0, 11)));
        assert!(!t.page(0x400).expect("page").stuck());
    }

    #[test]
    fn pages_still_referenced_when_their_map_goes_are_orphaned() {
        let mut t = Tracker::new(rules_7_2(), th(), 16, 100);
        let mut get = ev(S, 0x505, Kind::Get, 0, 1, 3);
        get.pgmap_type = pgmap::PRIVATE;
        t.apply(&get);
        let mut idle = ev(S, 0x506, Kind::Put, 1, 0, 3);
        idle.pgmap_type = pgmap::PRIVATE;
        t.apply(&idle);
        let mut down = ev(2 * S, 0x500, Kind::PgmapRemove, 0, 0, 4);
        down.nr_pages = 16;
        down.pgmap_type = pgmap::PRIVATE;
        t.apply(&down);
        assert_eq!(t.pgmaps.len(), 1);
        assert_eq!(
            t.page(0x505).expect("page").flags(),
            vec![Detector::Orphaned]
        );
        assert!(!t.page(0x506).expect("page").stuck());
        assert!(t.page(0x500).is_none(), "a page map event is not a page");
        let mut put = ev(3 * S, 0x505, Kind::Put, 1, 0, 3);
        put.pgmap_type = pgmap::PRIVATE;
        t.apply(&put);
        assert!(!t.page(0x505).expect("page").stuck());
    }
}
