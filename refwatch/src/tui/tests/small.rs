//! The smallest screen refwatch draws on, 60×12: every view fits, and
//! scrolls where it is longer. Synthetic data and the recorded dax-hold.

use super::*;

const SW: u16 = 60;
const SH: u16 = 12;

#[test]
fn small_main_view() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let app = fx.app(&t, T0 + 12 * S, SW, SH);
    assert!(crate::tui::render::compact(&app), "too low for two panes");
    let term = draw(&app, SW, SH);
    let s = screen(&term);
    assert!(s.contains("● 0x40010"), "{s}");
    assert!(!s.contains(" detail pfn"), "the table alone: {s}");
    assert!(s.contains("Enter detail"), "the way there, first: {s}");
    insta::assert_snapshot!("small_main_60x12", term.backend());
}

#[test]
fn small_detail_is_reached_with_enter_and_left_with_esc() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, SW, SH);
    app.on_key(key(KeyCode::Enter));
    app.sync(&fx.feed(&t, T0 + 12 * S));
    assert_eq!(app.focus, Focus::Events);
    let term = draw(&app, SW, SH);
    let s = screen(&term);
    assert!(s.contains(" detail pfn 0x40010"), "{s}");
    assert!(s.contains("holders: vmsplice-hold/4242"), "{s}");
    assert!(
        !s.contains("PFN "),
        "the detail takes the table's place: {s}"
    );
    insta::assert_snapshot!("small_detail_60x12", term.backend());
    // Enter again, or Esc: back to the table.
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.focus, Focus::Table);
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.focus, Focus::Events, "Tab reaches it too");
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.focus, Focus::Table);
    assert!(screen(&draw(&app, SW, SH)).contains("● 0x40010"));
}

#[test]
fn small_help_scrolls_to_its_end() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, SW, SH);
    app.on_key(ch('?'));
    let top = draw(&app, SW, SH);
    let s = screen(&top);
    assert!(s.contains("↓ more"), "{s}");
    assert!(!s.contains("Esc"), "the last key is below: {s}");
    insta::assert_snapshot!("small_help_60x12", top.backend());
    app.on_key(ch('j'));
    assert_eq!(app.overlay, Overlay::Help, "j scrolls, it does not close");
    assert_eq!(app.scroll, 1);
    app.on_key(key(KeyCode::End));
    let end = draw(&app, SW, SH);
    let s = screen(&end);
    assert!(s.contains("↑ more") && !s.contains("↓ more"), "{s}");
    assert!(s.contains("Esc back, clear search"), "{s}");
    assert!(s.contains("kept-by-child"), "the legend: {s}");
    insta::assert_snapshot!("small_help_scrolled_60x12", end.backend());
    // Further down stays at the end; another key closes.
    let at = app.scroll;
    app.on_key(key(KeyCode::PageDown));
    assert_eq!(app.scroll, at);
    app.on_key(ch('x'));
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn small_probe_plan_scrolls_and_keeps_its_status_column() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, SW, SH);
    app.on_key(ch('p'));
    let top = draw(&app, SW, SH);
    let s = screen(&top);
    assert!(s.contains(" STATUS"), "{s}");
    assert!(
        s.contains(" attached"),
        "the status of the first hooks: {s}"
    );
    assert!(s.contains("↓ more"), "{s}");
    insta::assert_snapshot!("small_probes_60x12", top.backend());
    app.on_key(key(KeyCode::End));
    let end = draw(&app, SW, SH);
    let s = screen(&end);
    let last = &app.info.hooks.last().expect("hooks").logical;
    assert!(s.contains(last.as_str()), "the last hook, {last}: {s}");
    assert!(s.contains("↑ more"), "{s}");
    insta::assert_snapshot!("small_probes_scrolled_60x12", end.backend());
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn small_export_prompt() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, SW, SH);
    app.on_key(ch('e'));
    let term = draw(&app, SW, SH);
    let s = screen(&term);
    assert!(s.contains("Enter write"), "{s}");
    insta::assert_snapshot!("small_export_60x12", term.backend());
}

#[test]
fn small_filter_prompt() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, SW, SH);
    app.on_key(ch('f'));
    typed(&mut app, "type:fsdax");
    let term = draw(&app, SW, SH);
    assert!(screen(&term).contains("filter: type:fsdax"));
    insta::assert_snapshot!("small_filter_prompt_60x12", term.backend());
}

#[test]
fn small_replay_at_the_end() {
    let mut r = Replay::new(recording(), Default::default(), 1.0, false).expect("replay");
    r.command(ReplayCommand::End);
    let mut app = replay_app(&r, SW, SH);
    let term = draw(&app, SW, SH);
    let s = screen(&term);
    assert!(s.contains("■ end"), "{s}");
    assert!(s.contains("● 0x40011"), "{s}");
    insta::assert_snapshot!("small_replay_end_60x12", term.backend());
    // Its detail is reachable too.
    app.on_key(key(KeyCode::Enter));
    app.sync(&Feed {
        tracker: &r.tracker,
        stacks: &r.stacks,
        now_ns: r.cursor_ns,
    });
    let s = screen(&draw(&app, SW, SH));
    assert!(s.contains(" detail pfn 0x40011"), "{s}");
}
