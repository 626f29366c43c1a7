//! The live state stays within its documented memory bound
//! ([`refwatch::state::Footprint`]): two million distinct PFNs (synthetic
//! events, not from a kernel), with stacks, some pages held for good, some
//! held and released (more episodes than kept), fed through the stack
//! interner and the tracker, with every byte allocated counted; and every
//! tracked page with many events (synthetic too), where the budget on
//! kept events is what bounds the histories.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use refwatch::{
    event::{Kind, PageEvent, Stack, StackInterner},
    rules::Rules,
    state::{DEFAULT_HISTORY, Footprint, Thresholds, Tracker},
    symbols::{Kallsyms, Role},
};
use refwatch_common::pgmap;

/// Counts the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn note_alloc(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `System::alloc`, with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `System::alloc_zeroed`, with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            note_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One test at a time: the counters are the whole process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const S: u64 = 1_000_000_000;
const PFNS: u64 = 2_000_000;
const MAX_PFNS: usize = 1 << 16;
/// Distinct stacks, and frames in each.
const STACKS: usize = 1024;
/// Episodes kept.
const MAX_EPISODES: usize = 1000;
const FRAMES: usize = 12;
/// Every this many pages is held for good; every this many of those is
/// released later.
const HELD_EVERY: u64 = 1000;
const RELEASED_EVERY: u64 = 3;
/// Every this many pages takes and drops references this many times more.
const BUSY_EVERY: u64 = 256;
/// Event time between two new pages.
const STEP_NS: u64 = 2_500;
const BUSY_PAIRS: u64 = 8;

/// A synthetic event of device-private page `pfn`.
fn event(ts_ns: u64, pfn: u64, kind: Kind, before: i32, after: i32, stack: Stack) -> PageEvent {
    let tgid = 1000 + (pfn % 500) as u32;
    PageEvent {
        ts_ns,
        pfn,
        page: 0,
        pid: tgid,
        tgid,
        cpu: (pfn % 4) as u32,
        comm: "synthetic".into(),
        kind,
        hook: 0,
        refcount_before: Some(before),
        refcount_after: Some(after),
        mapcount: Some(-1),
        pgmap_type: pgmap::PRIVATE,
        nr_pages: 1,
        ret: None,
        aux: 0,
        aux2: 0,
        owner: 0,
        late: false,
        forking: false,
        role: Role::Other,
        stack,
        stack_taken: Default::default(),
    }
}

/// The stacks' frames, synthetic: distinct per stack.
fn frames() -> Vec<Vec<u64>> {
    (0..STACKS as u64)
        .map(|s| {
            (0..FRAMES as u64)
                .map(|f| 0xffff_ffff_8100_0000 + s * 0x1000 + f * 0x10)
                .collect()
        })
        .collect()
}

#[test]
fn two_million_pfns_stay_within_the_documented_bound() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let frames = frames();
    let rules = Rules::from_kernel(&Kallsyms::parse(
        "ffffffff81000100 T zone_device_page_init\n",
    ));
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);

    let mut interner = StackInterner::default();
    // Held for a second is stuck: two million pages come in five seconds.
    let th = Thresholds {
        held_ns: S,
        pinned_ns: S,
        unmapped_ns: S,
    };
    let mut t = Tracker::new(rules, th, DEFAULT_HISTORY, MAX_PFNS);
    // Fewer episodes kept than open: the episode cap is reached too.
    t.set_max_episodes(MAX_EPISODES);
    let mut most_events = 0u64;
    let mut held = 0u64;
    for pfn in 0..PFNS {
        let ts = S + pfn * STEP_NS;
        // Events come in runs from one place: a stack for 16 pages in a row.
        let stack = interner.intern(&frames[(pfn / 16 % STACKS as u64) as usize]);
        t.apply(&event(ts, pfn, Kind::Get, 0, 1, stack.clone()));
        let mut events = 1;
        if pfn % BUSY_EVERY == 0 {
            for k in 0..BUSY_PAIRS {
                t.apply(&event(ts + 2 * k + 1, pfn, Kind::Get, 1, 2, stack.clone()));
                t.apply(&event(ts + 2 * k + 2, pfn, Kind::Put, 2, 1, stack.clone()));
            }
            events += 2 * BUSY_PAIRS;
        }
        if pfn % HELD_EVERY == 0 {
            held += 1;
        } else {
            t.apply(&event(ts + 100, pfn, Kind::Put, 1, 0, stack));
            events += 1;
        }
        most_events = most_events.max(events);
        // Some held pages are released two seconds (of event time) later:
        // their episodes close.
        let back = 800_000;
        if pfn >= back && (pfn - back) % (HELD_EVERY * RELEASED_EVERY) == 0 {
            let old = pfn - back;
            t.apply(&event(ts + 200, old, Kind::Put, 1, 0, Stack::default()));
        }
    }
    t.advance(S + PFNS * STEP_NS + 10 * S);
    let peak = PEAK.load(Ordering::Relaxed) - base;

    assert!(t.len() <= MAX_PFNS, "{} pages tracked", t.len());
    assert!(t.evicted() > 0 && t.over_cap() == 0);
    let still_held = held - held * 2 / 5 / RELEASED_EVERY;
    assert!(
        t.stuck().len() as u64 >= still_held / 2,
        "{}",
        t.stuck().len()
    );
    assert!(t.episodes.len() <= MAX_EPISODES);
    assert!(t.episodes_unkept() > 0 && t.episodes_dropped() > 0);
    assert!(interner.len() <= STACKS);
    let events = MAX_PFNS * most_events as usize;
    let fp = Footprint {
        pages: MAX_PFNS,
        events,
        unusual: 0,
        tasks: events,
        holders: 1,
        episodes: MAX_EPISODES,
        stacks: STACKS,
        frames: FRAMES,
    };
    let bound = fp.bytes();
    eprintln!(
        "synthetic: {PFNS} PFNs, {} tracked, {} evicted, {} episodes kept, {} forgotten, {} not kept: peak {} bytes live, bound {bound} ({} per page)",
        t.len(),
        t.evicted(),
        t.episodes.len(),
        t.episodes_dropped(),
        t.episodes_unkept(),
        peak,
        fp.page_bytes()
    );
    assert!(peak as u64 <= bound, "peak {peak} > bound {bound}");
    // The bound is a bound of this state, not of anything at all.
    assert!(
        peak as u64 * 4 >= bound,
        "peak {peak} is far below the bound {bound}"
    );
}

/// Pages and events of the second test: every page gets [`MANY`] events,
/// eight times what the budget lets them keep together.
const BUSY_PAGES: u64 = 32 * 1024;
const MANY: u64 = 64;
const BUDGET: usize = 256 * 1024;

#[test]
fn many_events_on_every_page_stay_within_the_budget() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let frames = frames();
    let rules = Rules::from_kernel(&Kallsyms::parse(
        "ffffffff81000100 T zone_device_page_init\n",
    ));
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);

    let mut interner = StackInterner::default();
    let mut t = Tracker::new(rules, Thresholds::default(), DEFAULT_HISTORY, MAX_PFNS);
    t.set_max_events(BUDGET);
    // Synthetic: pages come one after another, each taken and dropped
    // MANY / 2 times from stacks that change every few events.
    let mut ts = S;
    for pfn in 0..BUSY_PAGES {
        for k in 0..MANY / 2 {
            let stack = interner.intern(&frames[((pfn * 3 + k) % STACKS as u64) as usize]);
            ts += 1_000;
            t.apply(&event(ts, pfn, Kind::Get, 0, 1, stack.clone()));
            t.apply(&event(ts + 1, pfn, Kind::Put, 1, 0, stack));
        }
        assert!(t.kept_events() <= t.events_bound());
    }
    let peak = PEAK.load(Ordering::Relaxed) - base;

    assert_eq!(t.len() as u64, BUSY_PAGES);
    assert!(t.events_trimmed() > 0);
    assert!(t.kept_events() <= BUDGET);
    assert!(interner.len() <= STACKS);
    let footprint = |events: usize| Footprint {
        pages: BUSY_PAGES as usize,
        events,
        unusual: 0,
        tasks: events,
        holders: 1,
        episodes: 0,
        stacks: STACKS,
        frames: FRAMES,
    };
    let bound = footprint(t.events_bound()).bytes();
    // What the histories would hold without the budget.
    let unbounded = footprint((BUSY_PAGES * MANY) as usize).bytes();
    eprintln!(
        "synthetic: {BUSY_PAGES} pages x {MANY} events, budget {BUDGET}: {} kept, {} trimmed: peak {peak} bytes live, bound {bound} (without the budget {unbounded})",
        t.kept_events(),
        t.events_trimmed(),
    );
    assert!(peak as u64 <= bound, "peak {peak} > bound {bound}");
    assert!(
        peak as u64 * 4 >= bound,
        "peak {peak} is far below the bound {bound}"
    );
    assert!(
        unbounded >= 2 * bound,
        "the budget bounds little: {unbounded} vs {bound}"
    );
}
