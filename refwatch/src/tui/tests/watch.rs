//! Hardware watchpoints in the TUI: the `w` key, the marker beside the
//! PFN, the detail pane's line and the header's count. All data is
//! synthetic: the watcher's status is written by hand, as the live runner
//! would copy it from the collector.

use super::*;
use crate::{
    watch::Status as WatchStatus,
    watch::slots::{Plan, Slots},
};
use refwatch_common::hook;

/// 0x40010 armed at +5 s with 3 writes seen, 0x40020 waiting (synthetic).
fn status() -> WatchStatus {
    WatchStatus {
        armed: vec![(0x40010, T0 + 5 * S, 3)],
        queued: vec![0x40020],
        slots: 4,
    }
}

/// A table row's text (rows start below the header and the table's title
/// and column names).
fn row(term: &Terminal<TestBackend>, i: u16, w: u16) -> String {
    let buf = term.backend().buffer();
    (0..w)
        .map(|x| buf[(x, 5 + i)].symbol().to_string())
        .collect()
}

#[test]
fn watched_pages_are_marked_counted_and_detailed() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 30);
    app.watch = Some(status());
    assert_eq!(app.selected_pfn(), Some(0x40010));
    let term = draw(&app, 100, 30);
    let s = screen(&term);
    assert!(s.contains("watch 1/4 +1 queued"), "{s}");
    assert!(row(&term, 0, 100).starts_with("● 0x40010◉"), "{s}");
    assert!(row(&term, 1, 100).starts_with("● 0x40020○"), "{s}");
    assert!(!row(&term, 2, 100).contains('◉') && !row(&term, 2, 100).contains('○'));
    assert!(s.contains("◉ watched since +5.000s (7.0s) · hits 3"), "{s}");
    insta::assert_snapshot!("watched_100x30", term.backend());

    // The queued page says so in its detail.
    app.on_key(ch('j'));
    app.sync(&fx.feed(&t, T0 + 12 * S));
    assert_eq!(app.selected_pfn(), Some(0x40020));
    let s = screen(&draw(&app, 100, 30));
    assert!(
        s.contains("○ queued for a watchpoint (slots busy: 1 of 4)"),
        "{s}"
    );
}

#[test]
fn no_watch_asked_shows_no_count_and_no_marker() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 30);
    // A watcher with nothing armed or queued (every page unwatched again).
    app.watch = Some(WatchStatus {
        slots: 4,
        ..WatchStatus::default()
    });
    let s = screen(&draw(&app, 100, 30));
    assert!(!s.contains("watch 0/4"), "{s}");
    assert!(!s.contains('◉') && !s.contains('○'), "{s}");
    assert!(!s.contains("watched since"), "{s}");
}

/// Without a live watcher (a replay), the marker and the detail come from
/// the pages' watchpoint events: the read at arming, then each write.
#[test]
fn recorded_watchpoint_events_mark_the_page_and_count_its_hits() {
    let fx = Fixture::new();
    let mut t = synthetic::stuck();
    let fs = refwatch_common::pgmap::FSDAX;
    let mut armed = synthetic::event(
        T0 + 5 * S,
        0x40010,
        crate::event::Kind::Snapshot,
        2,
        2,
        1,
        "refwatch",
        fs,
    );
    armed.hook = hook::WATCHPOINT;
    t.apply(&armed);
    for (i, (kind, before, after)) in [
        (crate::event::Kind::Get, 2, 3),
        (crate::event::Kind::Put, 3, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let mut hit = synthetic::event(
            T0 + 6 * S + i as u64 * S,
            0x40010,
            kind,
            before,
            after,
            4242,
            "vmsplice-hold",
            fs,
        );
        hit.hook = hook::WATCHPOINT;
        t.apply(&hit);
    }
    let app = fx.app(&t, T0 + 12 * S, 100, 30);
    assert!(app.watch.is_none());
    assert_eq!(app.selected_pfn(), Some(0x40010));
    let term = draw(&app, 100, 30);
    let s = screen(&term);
    assert!(row(&term, 0, 100).starts_with("● 0x40010◉"), "{s}");
    assert!(s.contains("◉ watched since +5.000s (7.0s) · hits 2"), "{s}");
    assert!(!s.contains("watch 1/"), "no live count: {s}");
}

/// The release a watchpoint saw names its releaser in the page's detail
/// once the page is no longer stuck.
#[test]
fn a_released_page_names_its_releaser() {
    let fx = Fixture::new();
    let mut t = synthetic::stuck();
    let fs = refwatch_common::pgmap::FSDAX;
    let ev = |ts, kind, before, after, tgid, comm| {
        let mut e = synthetic::event(ts, 0x40010, kind, before, after, tgid, comm, fs);
        e.hook = hook::WATCHPOINT;
        e
    };
    t.apply(&ev(
        T0 + 5 * S,
        crate::event::Kind::Snapshot,
        2,
        2,
        1,
        "refwatch",
    ));
    t.apply(&ev(
        T0 + 6 * S,
        crate::event::Kind::Put,
        2,
        1,
        4243,
        "drainer",
    ));
    assert!(t.page(0x40010).is_some_and(|p| !p.stuck()));
    let mut app = fx.app(&t, T0 + 12 * S, 120, 30);
    // Stuck pages come first: down to it.
    for _ in 0..8 {
        if app.selected_pfn() == Some(0x40010) {
            break;
        }
        app.on_key(ch('j'));
        app.sync(&fx.feed(&t, T0 + 12 * S));
    }
    assert_eq!(app.selected_pfn(), Some(0x40010));
    let s = screen(&draw(&app, 120, 30));
    assert!(
        s.contains("released by drainer/4243 (put via watchpoint)"),
        "{s}"
    );
}

#[test]
fn the_watch_key_asks_the_runner_live_and_says_why_not_in_a_replay() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    app.on_key(ch('j'));
    assert_eq!(app.on_key(ch('w')), Some(Command::Watch(0x40020)));

    // No page to watch.
    let empty = Tracker::new(synthetic::rules(), Default::default(), 16, 100);
    let mut app = fx.app(&empty, T0, 80, 24);
    assert_eq!(app.on_key(ch('w')), None);
    assert!(app.message.as_ref().is_some_and(|m| m.error));

    let mut r = Replay::new(recording(), Default::default(), 1.0, false).expect("replay");
    r.command(ReplayCommand::End);
    let mut app = replay_app(&r, 80, 24);
    assert!(app.selected_pfn().is_some());
    assert_eq!(app.on_key(ch('w')), None);
    let term = draw(&app, 80, 24);
    let s = screen(&term);
    assert!(s.contains("needs a live attach"), "{s}");
    insta::assert_snapshot!("watch_key_in_replay_80x24", term.backend());
}

/// The request path without a kernel: the key's command goes to the
/// watcher's queue ([`Slots::toggle`], what `Watcher::toggle` runs), which
/// arms it at the next plan; the key again stops the watch.
#[test]
fn the_watch_key_queues_the_page_for_the_watcher() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    let mut slots = Slots::new(4, 10 * S);
    let Some(Command::Watch(pfn)) = app.on_key(ch('w')) else {
        panic!("w asks the runner to watch");
    };
    assert_eq!(pfn, 0x40010);
    assert!(slots.toggle(pfn), "queued");
    assert_eq!(slots.waiting_pfns(), vec![0x40010]);
    assert_eq!(slots.plan(T0 + 12 * S).arm, vec![0x40010]);
    let Some(Command::Watch(again)) = app.on_key(ch('w')) else {
        panic!("w again asks the runner too");
    };
    assert!(!slots.toggle(again), "stopped");
    assert!(slots.armed().is_empty());
    assert_eq!(slots.plan(T0 + 13 * S), Plan::default());
}
