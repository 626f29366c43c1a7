//! A tracker that keeps no per-PFN history (`record`, `attach --headless`)
//! against one that does, on the same SYNTHETIC events (not from a
//! kernel): the same pages, holders, verdicts and episodes.

use super::*;

/// A fixed pseudo-random walk over eight fs-dax pages of a 7.2 kernel:
/// gets and grabs (some whose puts no hook sees), puts, pins, unpins,
/// frees, reads of the state, moves to another page and losses, with the
/// detectors run every 100 ms of event time.
fn walk(t: &mut Tracker) {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut refs = [0i32; 8];
    let mut ts = S;
    for i in 0..20_000u64 {
        let r = next();
        let slot = (r % 8) as usize;
        let pfn = 0x4000 + slot as u64;
        let tgid = 100 + (r >> 8) as u32 % 4;
        ts += 1_000 + (r >> 16) % 40_000_000;
        let before = refs[slot];
        let e = match (r >> 32) % 10 {
            0..=2 => {
                refs[slot] += 1;
                let mut e = ev(ts, pfn, Kind::Get, before, before + 1, tgid);
                // A GUP grab: a put of the one before may have gone unseen.
                if r >> 40 & 1 == 1 {
                    e.hook = hook::TRY_GRAB_FOLIO_FAST;
                }
                e
            }
            3 | 4 if before > 0 => {
                refs[slot] -= 1;
                ev(ts, pfn, Kind::Put, before, before - 1, tgid)
            }
            5 => {
                refs[slot] += PIN_BIAS;
                ev(ts, pfn, Kind::Pin, before, before + PIN_BIAS, tgid)
            }
            6 if before >= PIN_BIAS => {
                refs[slot] -= PIN_BIAS;
                ev(ts, pfn, Kind::Unpin, before, before - PIN_BIAS, tgid)
            }
            7 if before == 1 => {
                refs[slot] = 0;
                ev(ts, pfn, Kind::Free, 1, 0, tgid)
            }
            8 => {
                // A put no hook sees (inline): the next grab finds the
                // count lower than the holders say.
                refs[slot] = (before - 1).max(0);
                continue;
            }
            _ if i % 3 == 0 => {
                t.apply_gap(pfn, ts);
                continue;
            }
            _ => {
                // The page read as it is.
                let mut e = ev(ts, pfn, Kind::Snapshot, before, before, tgid);
                e.refcount_before = None;
                e
            }
        };
        t.apply(&mapped(e, -1));
        if i % 50 == 0 {
            t.advance(ts);
        }
    }
    t.advance(ts + 10 * S);
}

/// What a headless run shows of a tracker: its pages and their verdicts,
/// its episodes without their last events.
fn verdicts(t: &Tracker) -> String {
    let mut out = String::new();
    for p in t.pages_sorted() {
        out += &format!(
            "{:#x} rc={:?} out={} state={:?} flags={:?} holders={:?} unknown={} counts={:?}\n",
            p.pfn,
            p.refcount,
            p.outstanding,
            p.state,
            p.flags(),
            p.holders
                .iter()
                .map(|h| (h.tgid, h.kind, h.ts_ns, h.refs))
                .collect::<Vec<_>>(),
            p.unknown(),
            p.counts
        );
    }
    for e in &t.episodes {
        out += &format!(
            "episode {:#x} {:?} {}..{:?} holders={} note={:?} by={:?}\n",
            e.pfn,
            e.detector,
            e.start_ns,
            e.end_ns,
            e.holders.len(),
            e.holder_note,
            e.released_by.as_ref().map(|r| (r.tgid, r.kind, r.ts_ns))
        );
    }
    out
}

#[test]
fn a_tracker_without_histories_reaches_the_same_verdicts() {
    let mut with = Tracker::new(rules_7_2(), th(), DEFAULT_HISTORY, 100);
    let mut without = Tracker::new(rules_7_2(), th(), DEFAULT_HISTORY, 100);
    without.keep_no_history();
    assert!(with.keeps_history() && !without.keeps_history());
    walk(&mut with);
    walk(&mut without);
    let v = verdicts(&with);
    // The walk reaches every kind of verdict it is there to compare.
    assert!(with.episodes.len() >= 8, "{v}");
    assert!(v.contains("Held") && v.contains("Pinned"), "{v}");
    assert!(!with.gapped_pages().is_empty(), "{v}");
    assert!(with.pages().any(|p| !p.holders.is_empty()), "{v}");
    assert_eq!(verdicts(&without), v);
    // What the headless tracker leaves out: the histories and the
    // episodes' last events, and with them the memory they take.
    assert!(with.kept_events() > 0);
    assert_eq!(without.kept_events(), 0);
    assert!(without.pages().all(|p| p.history.is_empty()));
    assert!(without.episodes.iter().all(|e| e.last_events.is_empty()));
    assert!(with.episodes.iter().any(|e| !e.last_events.is_empty()));
}
