//! The header's live counters: how full the ring buffer is and what the
//! user's filters left out in the kernel. The counters are written by hand
//! (synthetic), as the live runner copies them from the collector.

use super::*;

/// The second header line, as text, and the buffer to read its colours.
fn line2(app: &App, w: u16) -> (String, Terminal<TestBackend>) {
    let term = draw(app, w, 24);
    let buf = term.backend().buffer();
    let line = (0..w).map(|x| buf[(x, 1)].symbol().to_string()).collect();
    (line, term)
}

#[test]
fn the_ring_fill_shows_from_a_tenth_and_turns_red_near_full() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 24);
    // Nearly empty, or a replay (no ring): nothing said.
    for fill in [None, Some(0.0), Some(0.05)] {
        app.stats.ring_fill = fill;
        let (l, _) = line2(&app, 100);
        assert!(!l.contains("ring"), "{fill:?}: {l}");
    }
    app.stats.ring_fill = Some(0.42);
    let (l, _) = line2(&app, 100);
    assert!(l.contains("drops 0 ring 42%"), "{l}");
    app.stats.ring_fill = Some(0.97);
    let (l, term) = line2(&app, 100);
    let x = l.find("ring 97%").expect("ring fill shown") as u16;
    assert_eq!(term.backend().buffer()[(x, 1)].fg, Color::Red);
}

#[test]
fn events_left_out_by_filters_are_counted_apart_from_drops() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 24);
    let (l, _) = line2(&app, 100);
    assert!(!l.contains("skipped"), "{l}");
    app.stats.skipped = 12_345;
    let (l, _) = line2(&app, 100);
    assert!(l.contains("drops 0 skipped 12"), "{l}");
}

#[test]
fn events_past_the_rate_cap_are_counted_in_yellow() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 24);
    let (l, _) = line2(&app, 100);
    assert!(!l.contains("capped"), "{l}");
    app.stats.capped = 4_200;
    let (l, term) = line2(&app, 100);
    let x = l.find("capped 4").expect("capped shown") as u16;
    assert_eq!(term.backend().buffer()[(x, 1)].fg, Color::Yellow);
}
