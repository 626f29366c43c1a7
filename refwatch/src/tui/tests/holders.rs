//! The holders view (`h`) on synthetic data: the stuck pages grouped by
//! holder, Enter showing a holder's pages in the table, `c` clearing it.

use super::*;
use crate::{event::Kind, tui::synthetic::event};
use refwatch_common::pgmap;

/// Synthetic: [`synthetic::stuck`] with seven more pages the pipe of
/// `vmsplice-hold` keeps, 0x40011–0x40017 (eight with 0x40010).
fn pipe_of_eight() -> Tracker {
    let mut t = synthetic::stuck();
    for pfn in 0x40011..=0x40017u64 {
        let ts = T0 + 2 * S + (pfn - 0x40010) * 1_000;
        let get = event(
            ts,
            pfn,
            Kind::Get,
            1,
            2,
            4242,
            "vmsplice-hold",
            pgmap::FSDAX,
        );
        t.apply(&get);
    }
    t.advance(T0 + 12 * S);
    t
}

#[test]
fn holders_view_lists_each_holder_once() {
    let fx = Fixture::new();
    let t = pipe_of_eight();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 30);
    assert_eq!(app.on_key(ch('h')), None);
    assert_eq!(app.overlay, Overlay::Holders);
    let who: Vec<(&str, usize, &str)> = app
        .holder_groups
        .iter()
        .map(|g| (g.who.as_str(), g.pages, g.detector.name()))
        .collect();
    assert_eq!(
        who,
        vec![
            ("vmsplice-hold/4242 get", 8, "held"),
            ("fio/311 pin", 1, "pinned"),
            ("vmsplice-hold/4242 get", 1, "layout-wait"),
        ]
    );
    assert_eq!(app.holder_groups[0].ranges, vec![(0x40010, 0x40017)]);
    let term = draw(&app, 100, 30);
    // The first holder's pages on one line, its stack below.
    let text = screen(&term);
    assert!(text.contains("0x40010-0x40017 fsdax"), "{text}");
    assert!(text.contains("  iov_iter_extract_pages+0x61"), "{text}");
    insta::assert_snapshot!("holders_100x30", term.backend());
}

#[test]
fn enter_shows_a_holders_pages_and_c_clears() {
    let fx = Fixture::new();
    let t = pipe_of_eight();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 30);
    let all = app.shown();
    app.on_key(ch('h'));
    // The second holder: fio's pin.
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.overlay, Overlay::None);
    assert_eq!(app.visible_pfns().collect::<Vec<_>>(), vec![0x40020]);
    // The first: the pipe's eight pages, the first of them selected.
    app.on_key(ch('h'));
    app.on_key(key(KeyCode::Enter));
    let pfns: Vec<u64> = app.visible_pfns().collect();
    assert_eq!(pfns, (0x40010..=0x40017).collect::<Vec<_>>());
    assert_eq!(app.selected_pfn(), Some(0x40010));
    assert_eq!(app.filter_text(), "pfn:0x40010-0x40017");
    let text = screen(&draw(&app, 100, 30));
    assert!(
        text.contains("the 8 page(s) vmsplice-hold/4242 get holds"),
        "{text}"
    );
    app.on_key(ch('c'));
    assert_eq!(app.shown(), all);
    // Esc closes without filtering.
    app.on_key(ch('h'));
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.overlay, Overlay::None);
    assert_eq!(app.shown(), all);
}

/// A replay groups by the recorded stacks: the synthetic dax-hold
/// recording's pipe keeps 0x40011 to its end.
#[test]
fn replayed_holders_are_grouped_by_recorded_stack() {
    let mut r = Replay::new(recording(), Default::default(), 1.0, false).expect("replay");
    r.command(ReplayCommand::End);
    let app = replay_app(&r, 100, 30);
    let g = &app.holder_groups;
    assert_eq!(g.len(), 1, "{g:#?}");
    assert_eq!(g[0].who, "vmsplice-hold/4242 get");
    assert_eq!(g[0].ranges, vec![(0x40011, 0x40011)]);
    assert!(
        g[0].stack.iter().any(|f| f == "__do_sys_vmsplice+0x9d"),
        "{:?}",
        g[0].stack
    );
}

#[test]
fn holders_view_with_nothing_stuck() {
    let fx = Fixture::new();
    let t = Tracker::new(synthetic::rules(), Default::default(), 16, 100);
    let mut app = fx.app(&t, T0, 80, 24);
    app.on_key(ch('h'));
    assert!(screen(&draw(&app, 80, 24)).contains("no stuck pages"));
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.overlay, Overlay::None);
    assert!(app.filter_text().is_empty());
}
