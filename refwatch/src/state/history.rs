//! A page's bounded, compact event history.

use std::{collections::VecDeque, rc::Rc};

use crate::event::{Comm, Kind, PageEvent, Stack};
use crate::symbols::Role;
use refwatch_common::flags;

/// A page's most recent events, oldest first, bounded, kept compactly: a
/// history holds up to `--history` events for each of up to `--max-pfns`
/// pages (`--max-events` in all), and every event is written into one, so its size is most of the
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
    /// Bits 0–40: nanoseconds since the page's previous event (signed, up
    /// to 18 minutes; unless [`X_STEP`]); 41–46: the return value (signed;
    /// unless [`X_RET`]); 47–54: the wire flags ([`ENTRY_FLAGS`], how the
    /// stack was taken included); 55–58: the kind; 59–60: the role; 61–63:
    /// [`X_RET`], [`X_STEP`], [`X_EXT`].
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
const STEP: Field = Field { shift: 0, bits: 41 };
const RET: Field = Field { shift: 41, bits: 6 };
const FLAGS_SHIFT: u32 = 47;
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

/// The wire flags an entry keeps (all below bit 8).
const ENTRY_FLAGS: u32 = flags::HAS_BEFORE
    | flags::HAS_AFTER
    | flags::HAS_MAPCOUNT
    | flags::HAS_RET
    | flags::LATE
    | flags::FORKING
    | flags::STACK_SHORT
    | flags::NO_STACK;
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
pub(super) const BLOCK: usize = 1 << BLOCK_SHIFT;

/// History entries, oldest first from `head`, in fixed-size blocks: it
/// grows a block at a time until it holds its cap of entries (`--history`,
/// or the page's share of `--max-events`), then each new entry takes the
/// place of the oldest; trimmed, it moves to fewer blocks. Blocks, not one allocation:
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

    /// Slots in the blocks.
    fn slots(&self) -> usize {
        self.blocks
            .last()
            .map_or(0, |b| (self.blocks.len() - 1) * BLOCK + b.len())
    }

    /// The slot for one more entry, in a history of at most `cap` entries
    /// now and `max` ever (`--history`): at `cap` entries or more (the cap
    /// fell since the history grew), the oldest's. Whether the history grew.
    #[inline]
    fn next_slot(&mut self, cap: usize, max: usize) -> (Option<&mut Option<Entry>>, bool) {
        let grew = self.len < cap;
        let at = if grew {
            // Only a last block that ends the history at `max` is short: at
            // fewer entries, it is not full.
            if self.len == self.blocks.len() * BLOCK || self.head != 0 {
                self.grow(max);
            }
            self.len += 1;
            self.len - 1
        } else {
            let at = self.head;
            self.head = if at + 1 >= self.len { 0 } else { at + 1 };
            at
        };
        let slot = self
            .blocks
            .get_mut(at / BLOCK)
            .and_then(|b| b.get_mut(at % BLOCK));
        (slot, grew)
    }

    /// Room for one more entry, in a history of at most `max` entries: one
    /// more block (short if the history ends in it), or the entries moved to
    /// new blocks when the ring turned (the cap on it rose after it was
    /// reached).
    #[inline(never)]
    fn grow(&mut self, max: usize) {
        if self.head == 0 {
            let room = max - self.len;
            self.blocks.push(if room >= BLOCK {
                Box::new([const { None }; BLOCK])
            } else {
                vec![None; room].into_boxed_slice()
            });
            return;
        }
        let slots = self.slots();
        let room = if self.len < slots {
            slots
        } else {
            (self.len + 1).next_multiple_of(BLOCK).min(max)
        };
        self.rebuild(0, room);
    }

    /// Moves the entries but the oldest `skip` into new blocks of `room`
    /// slots (at least what is kept; a multiple of [`BLOCK`] or the most
    /// the history holds), the oldest first; the others are dropped.
    #[cold]
    #[inline(never)]
    fn rebuild(&mut self, skip: usize, room: usize) {
        let keep = self.len - skip.min(self.len);
        let room = room.max(keep);
        let mut old = std::mem::take(&mut self.blocks);
        self.blocks = (0..room.div_ceil(BLOCK))
            .map(|b| vec![None; (room - b * BLOCK).min(BLOCK)].into_boxed_slice())
            .collect();
        for i in 0..keep {
            let at = self.head + skip + i;
            let at = if at >= self.len { at - self.len } else { at };
            let e = old
                .get_mut(at / BLOCK)
                .and_then(|b| b.get_mut(at % BLOCK))
                .and_then(Option::take);
            if let Some(slot) = self
                .blocks
                .get_mut(i / BLOCK)
                .and_then(|b| b.get_mut(i % BLOCK))
            {
                *slot = e;
            }
        }
        self.head = 0;
        self.len = keep;
    }
}

/// The thread of an event, shared between the history entries it made.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Task {
    pid: u32,
    tgid: u32,
    cpu: u32,
    comm: Comm,
}

impl History {
    /// An empty history for the page whose first event is `first`.
    pub(super) fn new(first: &PageEvent) -> Self {
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

    /// Appends `ev` (from `task`); at `cap` events or more it takes the
    /// oldest's place (`max`: `--history`, the most `cap` is). Whether the
    /// history grew.
    #[inline]
    pub(super) fn push(&mut self, ev: &PageEvent, task: Rc<Task>, cap: usize, max: usize) -> bool {
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
            | flag(ev.forking, flags::FORKING)
            | u64::from(ev.stack_taken.flags());
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
        let (Some(slot), grew) = self.entries.next_slot(cap, max) else {
            return false;
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
        grew
    }

    /// Drops the oldest events beyond `keep`, and the memory they took (in
    /// a history of at most `max`). The events dropped.
    pub(super) fn trim(&mut self, keep: usize, max: usize) -> usize {
        let len = self.entries.len();
        let Some(skip) = len.checked_sub(keep).filter(|n| *n > 0) else {
            return 0;
        };
        let gone: usize = (0..skip)
            .filter_map(|i| self.entries.get(i))
            .map(Entry::extra_len)
            .sum();
        if let Some(q) = &mut self.extras {
            q.drain(..gone.min(q.len()));
            if q.is_empty() {
                self.extras = None;
            } else if q.capacity() > 2 * q.len() {
                q.shrink_to_fit();
            }
        }
        self.entries
            .rebuild(skip, keep.next_multiple_of(BLOCK).min(max.max(keep)));
        skip
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
            stack_taken: crate::event::StackTaken::from_flags(fl & ENTRY_FLAGS),
        }
    }
}

/// Shares one [`Task`] between the history entries of a thread on a CPU:
/// a small direct-mapped cache by (pid, CPU), so bounded by construction.
/// Two threads that meet in one slot each get a task of their own in turn
/// (more memory, never a wrong name).
#[derive(Debug, Clone)]
pub(super) struct Tasks {
    slots: Vec<Option<Rc<Task>>>,
}

/// Slots of [`Tasks`] (a power of two).
const TASK_SLOTS: usize = 256;

impl Tasks {
    pub(super) fn new() -> Self {
        Self {
            slots: vec![None; TASK_SLOTS],
        }
    }

    /// The shared task of `ev`.
    #[inline]
    pub(super) fn of(&mut self, ev: &PageEvent) -> Rc<Task> {
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
