//! The budget on events kept in all histories (`--max-events`), with
//! synthetic events (not from a kernel): its bound holds at every event,
//! trimming keeps each page's latest events, and no verdict changes.

use super::*;

/// Synthetic fs-dax traffic: first on 8 PFNs (their histories fill their
/// large shares), then on `pages` PFNs (more than the trackers' cap, so
/// that idle pages are evicted): each step
/// takes and drops references on one page, a run of them on busy pages,
/// leaves some held (episodes), and has some events unlike their page's
/// others (extra words).
fn traffic(steps: u64, pages: u64) -> Vec<PageEvent> {
    let mut out = Vec::new();
    let mut held = std::collections::BTreeSet::new();
    let mut ts = S;
    for i in 0..steps {
        let pfn = if i < 300 {
            i % 8
        } else {
            (i * 7 + i / 13) % pages
        };
        let runs = if pfn % 5 == 0 { 12 } else { 1 };
        let base = i32::from(held.contains(&pfn));
        for k in 0..runs {
            ts += 1_000_000;
            let tgid = 100 + (pfn % 3) as u32;
            let mut get = ev(ts, pfn, Kind::Get, 1 + base, 2 + base, tgid);
            if (i + k) % 7 == 0 {
                get.aux2 = i + 1;
            }
            if (i + k) % 11 == 0 {
                get.ret = Some(1 << 40);
            }
            out.push(get);
            ts += 1_000;
            out.push(ev(ts, pfn, Kind::Put, 2 + base, 1 + base, tgid));
        }
        // Every 17th step holds its page; every 3rd of those is let go later.
        if i % 17 == 0 && base == 0 {
            ts += 1_000;
            out.push(ev(ts, pfn, Kind::Get, 1, 2, 9));
            held.insert(pfn);
        } else if i % 51 == 25
            && let Some(&old) = held.iter().next()
        {
            ts += 1_000;
            out.push(ev(ts, old, Kind::Put, 2, 1, 9));
            held.remove(&old);
        }
    }
    out
}

fn tracker(max_events: usize) -> Tracker {
    let mut t = Tracker::new(rules_6_1(), th(), 64, 40);
    t.set_max_events(max_events);
    t
}

#[test]
fn kept_events_never_exceed_the_budget_or_min_keep_per_page() {
    let budget = 200;
    let mut t = tracker(budget);
    let mut most = 0;
    for e in traffic(3000, 100) {
        t.apply(&e);
        let kept: usize = t.pages().map(|p| p.history.len()).sum();
        assert_eq!(kept, t.kept_events(), "running total");
        assert!(
            kept <= budget.max(t.len() * MIN_KEEP),
            "{kept} events kept on {} pages",
            t.len()
        );
        most = most.max(kept);
    }
    // The budget is what bounded them, and it was reached.
    assert!(t.events_trimmed() > 0 && t.evicted() > 0);
    assert!(most > budget * 7 / 8, "{most}");
    let note = t.caps_note().unwrap_or_default();
    assert!(
        note.contains("trimmed from histories (--max-events)"),
        "{note}"
    );
}

#[test]
fn trimming_keeps_the_latest_events_and_changes_no_verdict() {
    let mut bounded = tracker(200);
    let mut full = tracker(usize::MAX);
    for e in traffic(3000, 100) {
        bounded.apply(&e);
        full.apply(&e);
    }
    bounded.advance(bounded.now_ns() + 10 * S);
    full.advance(full.now_ns() + 10 * S);
    assert_eq!(full.events_trimmed(), 0);
    assert!(bounded.events_trimmed() > 0);
    assert!(!full.episodes.is_empty());
    assert_eq!(bounded.episodes, full.episodes);
    assert_eq!(bounded.episodes_dropped(), full.episodes_dropped());
    let pfns = |t: &Tracker| t.stuck().iter().map(|p| p.pfn).collect::<Vec<_>>();
    assert_eq!(pfns(&bounded), pfns(&full));
    assert_eq!(bounded.len(), full.len());
    let mut shorter = 0;
    for p in full.pages() {
        let all: Vec<PageEvent> = p.history.iter().collect();
        let b = bounded.page(p.pfn).expect("tracked in both");
        let kept: Vec<PageEvent> = b.history.iter().collect();
        assert!(all.ends_with(&kept), "page {:#x}: not its latest", p.pfn);
        assert!(kept.len() >= all.len().min(MIN_KEEP));
        assert_eq!(b.history.last(), p.history.last());
        shorter += usize::from(kept.len() < all.len());
        assert_eq!(b.holders, p.holders);
        assert_eq!(b.state, p.state);
    }
    assert!(shorter > 0);
}

#[test]
fn histories_grow_again_when_the_budget_allows() {
    // Synthetic: one page filled to its cap of 64, then 39 more pages
    // (the share falls to 5).
    let mut t = Tracker::new(rules_6_1(), th(), 64, 40);
    t.set_max_events(200);
    let mut ts = S;
    let mut applied = Vec::new();
    let mut push = |t: &mut Tracker, pfn: u64, applied: &mut Vec<PageEvent>| {
        ts += 1_000;
        let e = ev(ts, pfn, Kind::Get, 1, 2, 1);
        let put = ev(ts + 1, pfn, Kind::Put, 2, 1, 1);
        t.apply(&e);
        t.apply(&put);
        if pfn == 0 {
            applied.extend([e, put]);
        }
    };
    for _ in 0..40 {
        push(&mut t, 0, &mut applied);
    }
    assert_eq!(t.page(0).map(|p| p.history.len()), Some(64));
    for pfn in 1..40 {
        for _ in 0..8 {
            push(&mut t, pfn, &mut applied);
        }
    }
    let short = t.page(0).map_or(0, |p| p.history.len());
    assert!((MIN_KEEP..64).contains(&short), "{short}");
    assert!(t.kept_events() <= 200);
    // Its ring turned at the lower cap; a larger budget lets it grow back.
    for _ in 0..10 {
        push(&mut t, 0, &mut applied);
    }
    t.set_max_events(10_000);
    for _ in 0..100 {
        push(&mut t, 0, &mut applied);
    }
    let p = t.page(0).expect("tracked");
    let kept: Vec<PageEvent> = p.history.iter().collect();
    assert_eq!(kept.len(), 64);
    assert!(applied.ends_with(&kept));
}

/// README's figures, from the formula: the worst case at the defaults, by
/// part, and the typical case.
#[test]
fn the_documented_bounds_at_defaults() {
    let pages = DEFAULT_MAX_PFNS;
    let w = Footprint::worst(
        pages,
        DEFAULT_HISTORY,
        DEFAULT_MAX_EVENTS,
        DEFAULT_MAX_EPISODES,
    );
    assert_eq!(w.events, pages * MIN_KEEP);
    let histories = |f: &Footprint| f.events_bytes() + (f.events * f.stack_bytes()) as u64;
    let gb = |b: u64| b as f64 / 1e9;
    let h = gb(histories(&w));
    assert!((6.5..7.5).contains(&h), "histories {h} GB");
    let all = pages * DEFAULT_HISTORY;
    let unbudgeted = Footprint {
        events: all,
        unusual: all,
        tasks: all,
        ..w
    };
    let u = gb(histories(&unbudgeted));
    assert!((340.0..380.0).contains(&u), "without the budget {u} GB");
    let holders = gb((pages * MAX_HOLDERS * (2 * size_of::<Holder>() + w.stack_bytes())) as u64);
    assert!((75.0..85.0).contains(&holders), "holders {holders} GB");
    let stacks_per_episode = MAX_HOLDERS + LAST_EVENTS;
    let episodes = gb(
        (DEFAULT_MAX_EPISODES * (w.episode_bytes() + stacks_per_episode * w.stack_bytes())) as u64
    );
    assert!((8.0..9.0).contains(&episodes), "episodes {episodes} GB");
    // Pages with four events and a holder, short stacks shared.
    let typical = Footprint {
        pages,
        events: pages * 4,
        unusual: 0,
        tasks: 256,
        holders: 1,
        episodes: 0,
        stacks: crate::event::DEFAULT_INTERNED_STACKS,
        frames: 20,
    };
    let t = gb(typical.bytes());
    assert!((1.2..1.4).contains(&t), "typical {t} GB");
    let page = (typical.page_bytes() - size_of::<Holder>() * 2) as f64 / 1024.0;
    assert!((0.85..0.95).contains(&page), "{page} KiB per page");
    let ep = gb((DEFAULT_MAX_EPISODES * typical.episode_bytes()) as u64);
    assert!(ep <= 0.2, "episodes {ep} GB");
}
