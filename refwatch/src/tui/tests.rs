//! Screens as insta snapshots of ratatui's `TestBackend`, and keys driven on
//! the state without a terminal. All data is synthetic ([`super::synthetic`]).

use ratatui::{
    Terminal,
    backend::TestBackend,
    buffer::Buffer,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    layout::Rect,
    style::Color,
    widgets::Widget as _,
};

use super::{
    model::{App, Command, Feed, Focus, Overlay, ReplayCommand, Scope},
    replay::Replay,
    synthetic::{self, S, T0},
    view::Column,
};
use crate::{
    format::export::ExportFormat, format::json::Format, format::recording::Recording,
    state::Tracker, symbols::Live, symbols::kallsyms::Kallsyms,
};

/// The synthetic kernel's names, as a live session has them (the symbols
/// leaked: the names borrow them for every test's duration).
struct Fixture {
    names: Live<'static>,
}

impl Fixture {
    fn new() -> Self {
        let syms: &'static Kallsyms = Box::leak(Box::new(synthetic::kallsyms()));
        Self {
            names: Live {
                syms,
                format: Format::default(),
                hooks: synthetic::hook_symbols(),
            },
        }
    }

    fn feed<'a>(&'a self, t: &'a Tracker, now_ns: u64) -> Feed<'a> {
        Feed {
            tracker: t,
            stacks: &self.names,
            now_ns,
        }
    }

    fn app(&self, t: &Tracker, now_ns: u64, w: u16, h: u16) -> App {
        let mut app = App::new(synthetic::header_info());
        app.resize(w, h);
        app.refresh(&self.feed(t, now_ns));
        app
    }
}

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| f.render_widget(app, f.area())).expect("draw");
    term
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        assert_eq!(app.on_key(ch(c)), None);
    }
}

fn screen(term: &Terminal<TestBackend>) -> String {
    term.backend().to_string()
}

/// The dax-hold recording, read back through the recording parser.
fn recording() -> Recording {
    let (header, lines) = synthetic::dax_hold_recording();
    let mut bytes =
        serde_json::to_vec(&crate::format::recording::Line::Header(header)).expect("json");
    bytes.push(b'\n');
    for l in &lines {
        bytes.extend(serde_json::to_vec(l).expect("json"));
        bytes.push(b'\n');
    }
    crate::format::recording::parse(&bytes[..], "synthetic-dax-hold.rec").expect("parse")
}

fn replay_app(r: &Replay, w: u16, h: u16) -> App {
    let info =
        super::HeaderInfo::recorded("synthetic-dax-hold.rec", r.header(), r.header().started_ns);
    let mut app = App::new(info);
    app.replay = Some(r.status());
    app.stats = r.stats();
    app.resize(w, h);
    app.refresh(&Feed {
        tracker: &r.tracker,
        stacks: &r.stacks,
        now_ns: r.cursor_ns,
    });
    app
}

// ---- screens ----

#[test]
fn empty() {
    let fx = Fixture::new();
    let t = Tracker::new(synthetic::rules(), Default::default(), 16, 100);
    let app = fx.app(&t, T0, 80, 24);
    insta::assert_snapshot!("empty_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn busy() {
    let fx = Fixture::new();
    let t = synthetic::busy(5_000);
    let mut app = fx.app(&t, T0 + 20 * S, 80, 24);
    app.stats.events = 5_000;
    app.stats.rate = 12_345.0;
    insta::assert_snapshot!("busy_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn busy_wide_has_a_chart_and_every_column() {
    let fx = Fixture::new();
    let t = synthetic::busy(5_000);
    let mut app = fx.app(&t, T0 + 20 * S, 200, 50);
    app.stats.events = 5_000;
    let term = draw(&app, 200, 50);
    let s = screen(&term);
    assert!(s.contains("LAST"), "{s}");
    insta::assert_snapshot!("busy_200x50", term.backend());
}

#[test]
fn stuck_pages_come_first_marked_and_coloured() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let app = fx.app(&t, T0 + 12 * S, 80, 24);
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("stuck_80x24", term.backend());
    let pfns: Vec<u64> = app.visible_pfns().take(3).collect();
    assert_eq!(pfns, vec![0x40010, 0x40020, 0x40030]);
    // Rows start below the header (3 lines), the table's title and its header.
    let buf = term.backend().buffer();
    let row_y = 5;
    let line: String = (0..80)
        .map(|x| buf[(x, row_y)].symbol().to_string())
        .collect();
    assert!(line.starts_with("● 0x40010"), "{line}");
    // Held is yellow; the selected row is reversed on top of its colour.
    assert_eq!(buf[(2, row_y)].fg, Color::Yellow);
    assert_eq!(buf[(2, row_y + 1)].fg, Color::Magenta, "pinned");
    assert_eq!(buf[(2, row_y + 3)].fg, Color::Reset, "not stuck");
}

/// Synthetic state with a synthetic loss on one of its pages.
#[test]
fn pages_in_an_unknown_state_are_counted_in_the_header() {
    let fx = Fixture::new();
    let mut t = synthetic::stuck();
    let pfn = t.pages_sorted()[0].pfn;
    t.apply_gap(pfn, T0 + 11 * S);
    t.apply_gap(0xdead, T0 + 11 * S);
    let app = fx.app(&t, T0 + 12 * S, 80, 24);
    let term = draw(&app, 80, 24);
    let buf = term.backend().buffer();
    let cells: Vec<String> = (0..80).map(|x| buf[(x, 1)].symbol().to_string()).collect();
    let line = cells.concat();
    assert!(line.contains("unknown  2 "), "{line}");
    let two = (0..80)
        .find(|&x| cells[x] == "2" && x > 0 && cells[x - 1] == " " && line.contains("unknown"))
        .expect("the count") as u16;
    assert_eq!(buf[(two, 1)].bg, Color::Red, "{line}");
}

#[test]
fn drops_above_zero_are_highlighted() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    app.stats.events = 123_456;
    app.stats.rate = 950.0;
    app.stats.dropped = 17;
    let term = draw(&app, 80, 24);
    insta::assert_snapshot!("drops_80x24", term.backend());
    let buf = term.backend().buffer();
    let line: String = (0..80).map(|x| buf[(x, 1)].symbol().to_string()).collect();
    let x = line.find(" 17 ").expect("drop count shown") as u16;
    assert_eq!(buf[(x + 1, 1)].bg, Color::Red);
    // None dropped: not highlighted.
    app.stats.dropped = 0;
    let term = draw(&app, 80, 24);
    let buf = term.backend().buffer();
    assert!((0..80).all(|x| buf[(x, 1)].bg != Color::Red));
}

#[test]
fn help_overlay() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    app.on_key(ch('?'));
    assert_eq!(app.overlay, Overlay::Help);
    insta::assert_snapshot!("help_80x24", draw(&app, 80, 24).backend());
    insta::assert_snapshot!("help_120x30", draw(&app, 120, 30).backend());
    app.on_key(ch('x'));
    assert_eq!(app.overlay, Overlay::None, "any key closes the help");
    assert!(!app.quitting());
}

#[test]
fn detail_pane_shows_reason_holder_events_and_stack() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 30);
    // 0x40030: held, then a layout break waits for it.
    typed(&mut app, "/40030");
    app.on_key(key(KeyCode::Enter));
    app.sync(&fx.feed(&t, T0 + 12 * S));
    assert_eq!(app.selected_pfn(), Some(0x40030));
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.focus, Focus::Events);
    app.on_key(key(KeyCode::Up));
    let term = draw(&app, 100, 30);
    let s = screen(&term);
    assert!(s.contains("layout-wait"), "{s}");
    assert!(s.contains("holders: vmsplice-hold/4242"), "{s}");
    assert!(
        s.contains("try_grab_folio+0x1a"),
        "the get's stack, symbolized: {s}"
    );
    insta::assert_snapshot!("detail_100x30", term.backend());
}

#[test]
fn probe_plan_overlay() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 24);
    app.on_key(ch('p'));
    insta::assert_snapshot!("probes_100x24", draw(&app, 100, 24).backend());
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn export_dialog() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    app.on_key(ch('e'));
    app.on_key(ch('a'));
    app.on_key(ch('c'));
    insta::assert_snapshot!("export_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn replay_at_the_end() {
    let mut r = Replay::new(recording(), Default::default(), 1.0, false).expect("replay");
    r.command(ReplayCommand::End);
    let app = replay_app(&r, 80, 24);
    insta::assert_snapshot!("replay_end_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn filter_prompt_and_title() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    app.on_key(ch('f'));
    typed(&mut app, "type:fsdax state:idle");
    insta::assert_snapshot!("filter_prompt_80x24", draw(&app, 80, 24).backend());
    app.on_key(key(KeyCode::Enter));
    app.sync(&fx.feed(&t, T0 + 12 * S));
    insta::assert_snapshot!("filtered_80x24", draw(&app, 80, 24).backend());
}

#[test]
fn too_small_says_so() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let app = fx.app(&t, T0, 40, 3);
    let mut buf = Buffer::empty(Rect::new(0, 0, 40, 3));
    (&app).render(buf.area, &mut buf);
    assert_eq!(
        buf,
        Buffer::with_lines([
            "refwatch needs 60×12; this terminal is  ",
            "40×3 (q quits)                          ",
            "                                        ",
        ])
    );
}

#[test]
fn any_size_renders_and_resizes() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    app.on_key(key(KeyCode::End));
    for (w, h) in [
        (1, 1),
        (20, 5),
        (59, 11),
        (60, 12),
        (80, 24),
        (81, 13),
        (300, 100),
        (80, 24),
    ] {
        app.resize(w, h);
        for overlay in [
            Overlay::None,
            Overlay::Help,
            Overlay::Probes,
            Overlay::Export {
                scope: Scope::Filtered,
                format: ExportFormat::Csv,
            },
        ] {
            app.overlay = overlay;
            draw(&app, w, h);
        }
        app.overlay = Overlay::None;
        // The selection stays on screen.
        let rows = app.page_rows();
        if rows > 0 {
            assert!(app.selected >= app.offset && app.selected < app.offset + rows);
        }
    }
}

// ---- keys ----

#[test]
fn quit_keys() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0, 80, 24);
    assert_eq!(app.on_key(ch('q')), Some(Command::Quit));
    assert!(app.quitting());
    let mut app = fx.app(&t, T0, 80, 24);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.on_key(ctrl_c), Some(Command::Quit));
    // In a prompt, q is text.
    let mut app = fx.app(&t, T0, 80, 24);
    app.on_key(ch('/'));
    assert_eq!(app.on_key(ch('q')), None);
    assert!(!app.quitting());
}

#[test]
fn sorting_by_any_column() {
    let fx = Fixture::new();
    let t = synthetic::busy(3_000);
    let mut app = fx.app(&t, T0 + 20 * S, 80, 24);
    assert_eq!(app.sort(), (Column::Pfn, false, true));
    // Stuck first (every 997th page is held), then by PFN.
    let first: Vec<u64> = app.visible_pfns().take(4).collect();
    assert_eq!(
        first,
        vec![0x40000, 0x40000 + 997, 0x40000 + 1994, 0x40000 + 2991]
    );
    app.on_key(ch('!'));
    let first: Vec<u64> = app.visible_pfns().take(2).collect();
    assert_eq!(first, vec![0x40000, 0x40001]);
    app.on_key(ch('1'));
    assert_eq!(app.sort(), (Column::Pfn, true, false), "again: reverse");
    assert_eq!(app.visible_pfns().next(), Some(0x40000 + 2999));
    app.on_key(ch('3'));
    assert_eq!(app.sort().0, Column::Refcount);
    let rc = |app: &App| -> Vec<i32> {
        app.visible_pfns()
            .map(|p| t.page(p).and_then(|p| p.refcount).unwrap_or(0))
            .collect()
    };
    let v = rc(&app);
    assert!(v.windows(2).all(|w| w[0] >= w[1]), "descending refcount");
    app.on_key(ch('r'));
    let v = rc(&app);
    assert!(v.windows(2).all(|w| w[0] <= w[1]), "ascending refcount");
    app.on_key(ch('s'));
    assert_eq!(app.sort().0, Column::State);
    for (i, c) in Column::ALL.into_iter().enumerate() {
        app.on_key(ch(char::from(b'1' + i as u8)));
        assert_eq!(app.sort().0, c);
        assert_eq!(app.shown(), 3_000);
    }
}

#[test]
fn navigation_is_bounded_and_keeps_the_pfn_across_reorders() {
    let fx = Fixture::new();
    let t = synthetic::busy(1_000);
    let mut app = fx.app(&t, T0 + 20 * S, 80, 24);
    app.on_key(ch('k'));
    assert_eq!(app.selected, 0);
    app.on_key(key(KeyCode::End));
    assert_eq!(app.selected, 999);
    app.on_key(ch('j'));
    assert_eq!(app.selected, 999);
    app.on_key(key(KeyCode::Home));
    app.on_key(key(KeyCode::PageDown));
    let rows = app.page_rows();
    assert_eq!(app.selected, rows);
    app.on_key(ch('j'));
    let pfn = app.selected_pfn().expect("selected");
    app.on_key(ch('r'));
    assert_eq!(app.selected_pfn(), Some(pfn), "a reorder keeps the page");
    app.on_key(key(KeyCode::Enter));
    assert!(!app.show_detail);
    assert!(app.page_rows() > rows, "the table grows without the detail");
}

#[test]
fn filters_by_type_state_task_pfn_and_stuck() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    let all = app.shown();
    app.on_key(ch('t'));
    assert_eq!(app.filter_text(), "type:fsdax");
    app.on_key(ch('t'));
    assert_eq!(app.filter_text(), "type:private");
    assert_eq!(app.visible_pfns().collect::<Vec<_>>(), vec![0x80000]);
    app.on_key(ch('t'));
    assert_eq!(app.filter_text(), "", "back to all types");
    app.on_key(ch('o'));
    assert_eq!(app.shown(), 3);
    app.on_key(ch('c'));
    assert_eq!(app.shown(), all);

    app.on_key(ch('f'));
    typed(&mut app, "task:vmsplice pfn:0x40000-0x4001f");
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.visible_pfns().collect::<Vec<_>>(), vec![0x40010]);
    app.on_key(ch('f'));
    assert_eq!(
        app.prompt.as_ref().map(|p| p.text.as_str()),
        Some("task:vmsplice pfn:0x40000-0x4001f"),
        "the prompt starts from the current filter"
    );
    for _ in 0..40 {
        app.on_key(key(KeyCode::Backspace));
    }
    typed(&mut app, "state:bogus");
    app.on_key(key(KeyCode::Enter));
    assert!(app.prompt.is_some(), "a bad filter keeps the prompt open");
    assert!(
        app.message
            .as_ref()
            .is_some_and(|m| m.error && m.text.contains("unknown state")),
        "{:?}",
        app.message
    );
    app.on_key(key(KeyCode::Esc));
    assert!(app.prompt.is_none());
    assert_eq!(
        app.visible_pfns().collect::<Vec<_>>(),
        vec![0x40010],
        "unchanged"
    );
    app.on_key(ch('f'));
    for _ in 0..40 {
        app.on_key(key(KeyCode::Backspace));
    }
    typed(&mut app, "state:pinned detector:pinned");
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.visible_pfns().collect::<Vec<_>>(), vec![0x40020]);
    app.on_key(ch('f'));
    for _ in 0..60 {
        app.on_key(key(KeyCode::Backspace));
    }
    typed(&mut app, "task:311");
    app.on_key(key(KeyCode::Enter));
    assert_eq!(
        app.visible_pfns().collect::<Vec<_>>(),
        vec![0x40020],
        "a pid matches holders"
    );
}

#[test]
fn search_jumps_and_repeats() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    app.on_key(ch('/'));
    typed(&mut app, "0x8");
    assert_eq!(app.selected_pfn(), Some(0x80000), "incremental");
    app.on_key(key(KeyCode::Enter));
    app.on_key(ch('/'));
    typed(&mut app, "fio");
    app.on_key(key(KeyCode::Enter));
    let first = app.selected_pfn();
    app.on_key(ch('n'));
    let second = app.selected_pfn();
    assert_ne!(first, second);
    app.on_key(ch('N'));
    assert_eq!(app.selected_pfn(), first);
    app.on_key(ch('/'));
    typed(&mut app, "nothing-like-this");
    app.on_key(key(KeyCode::Enter));
    assert!(app.message.as_ref().is_some_and(|m| m.error));
}

#[test]
fn pause_freezes_the_view_but_not_the_header() {
    let fx = Fixture::new();
    let mut t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    let before = app.shown();
    app.on_key(ch(' '));
    assert!(app.paused());
    t.apply(&synthetic::event(
        T0 + 13 * S,
        0x90000,
        crate::event::Kind::Get,
        0,
        1,
        1,
        "late",
        refwatch_common::pgmap::PRIVATE,
    ));
    app.refresh(&fx.feed(&t, T0 + 13 * S));
    assert_eq!(app.shown(), before, "frozen");
    assert_eq!(app.now_ns, T0 + 12 * S, "time frozen too");
    app.stats.dropped = 3;
    assert!(screen(&draw(&app, 80, 24)).contains("PAUSED"));
    app.on_key(ch(' '));
    app.refresh(&fx.feed(&t, T0 + 13 * S));
    assert_eq!(app.shown(), before + 1);
}

#[test]
fn export_keys_ask_the_runner() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 80, 24);
    app.on_key(ch('e'));
    assert!(matches!(
        app.overlay,
        Overlay::Export {
            scope: Scope::Selected,
            format: ExportFormat::Jsonl
        }
    ));
    let sel = app.selected_pfn().expect("selected");
    match app.on_key(key(KeyCode::Enter)) {
        Some(Command::Export(r)) => {
            assert_eq!(r.pfns, vec![sel]);
            assert_eq!(r.format, ExportFormat::Jsonl);
            assert_eq!(r.label, format!("pfn-{sel:#x}"));
        }
        other => panic!("expected an export, got {other:?}"),
    }
    app.on_key(ch('o'));
    app.on_key(ch('e'));
    app.on_key(ch('a'));
    app.on_key(ch('p'));
    match app.on_key(key(KeyCode::Enter)) {
        Some(Command::Export(r)) => {
            assert_eq!(r.pfns, vec![0x40010, 0x40020, 0x40030]);
            assert_eq!(r.format, ExportFormat::Perfetto);
            assert_eq!(r.label, "filtered-3-pfns");
        }
        other => panic!("expected an export, got {other:?}"),
    }
    app.on_key(ch('e'));
    assert_eq!(app.on_key(key(KeyCode::Esc)), None);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn export_writes_the_file_and_says_where() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let dir = std::env::temp_dir().join(format!("refwatch-tui-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let events = super::export::live_events(
        &t,
        &[0x40030],
        &fx.names.hooks,
        fx.names.syms,
        Format::default(),
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].symbol, "try_grab_folio");
    assert_eq!(events[0].stack[0], "try_grab_folio+0x1a");
    let (path, n) =
        super::export::write(&dir, "pfn-0x40030", ExportFormat::Csv, events.iter(), false)
            .expect("write");
    assert_eq!(n, 2);
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 3, "{text}");
    // A second export in the same second gets a new name.
    let (again, _) =
        super::export::write(&dir, "pfn-0x40030", ExportFormat::Csv, events.iter(), false)
            .expect("write");
    assert_ne!(path, again);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn replay_keys_only_in_a_replay() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0, 80, 24);
    assert_eq!(app.on_key(ch('.')), None);
    assert!(app.message.is_some(), "says the key is for replays");
    let r = Replay::new(recording(), Default::default(), 1.0, true).expect("replay");
    let mut app = replay_app(&r, 80, 24);
    for (k, c) in [
        (ch(' '), ReplayCommand::TogglePlay),
        (ch('.'), ReplayCommand::StepForward),
        (ch(','), ReplayCommand::StepBack),
        (
            key(KeyCode::Right),
            ReplayCommand::Seek(super::keys::SEEK_NS),
        ),
        (
            key(KeyCode::Left),
            ReplayCommand::Seek(-super::keys::SEEK_NS),
        ),
        (ch('+'), ReplayCommand::Speed(2.0)),
        (ch('-'), ReplayCommand::Speed(0.5)),
        (ch('['), ReplayCommand::Start),
        (ch(']'), ReplayCommand::End),
    ] {
        assert_eq!(app.on_key(k), Some(Command::Replay(c)));
    }
}

// ---- replay ----

#[test]
fn replay_steps_seeks_and_plays() {
    let mut r = Replay::new(recording(), Default::default(), 2.0, false).expect("replay");
    let total = r.status().events_total;
    assert_eq!(r.cursor_ns, T0);
    r.step_forward();
    assert_eq!(r.status().events_done, 1);
    assert_eq!(r.tracker.events(), 1);
    r.step_forward();
    r.step_back();
    assert_eq!(r.status().events_done, 1);
    assert_eq!(r.tracker.events(), 1);
    r.command(ReplayCommand::End);
    assert_eq!(r.status().events_done, total);
    assert!(r.at_end());
    let stuck: Vec<u64> = r.tracker.stuck().iter().map(|p| p.pfn).collect();
    assert_eq!(stuck, vec![0x40011], "the page the pipe keeps");
    // Back to +8.5 s: both spliced pages are held there (judged as far as
    // the recording's last tick says losses are known: +8 s).
    r.seek_to(T0 + 8 * S + S / 2);
    let stuck: Vec<u64> = r.tracker.stuck().iter().map(|p| p.pfn).collect();
    assert_eq!(stuck, vec![0x40010, 0x40011]);
    // Before the threshold nothing is.
    r.seek_to(T0 + 6 * S);
    assert!(r.tracker.stuck().is_empty());
    // Playing moves the cursor by wall time × speed.
    r.command(ReplayCommand::TogglePlay);
    r.tick(std::time::Duration::from_millis(500));
    assert_eq!(r.cursor_ns, T0 + 7 * S);
    r.command(ReplayCommand::Speed(1e9));
    assert_eq!(r.speed, super::replay::MAX_SPEED);
    r.tick(std::time::Duration::from_secs(1));
    assert!(r.at_end());
    assert!(!r.playing, "stops at the end");
    r.command(ReplayCommand::Start);
    assert_eq!(r.status().events_done, 0);
    assert_eq!(r.tracker.len(), 0);
}

#[test]
fn replay_stacks_come_from_the_recording() {
    let mut r = Replay::new(recording(), Default::default(), 1.0, false).expect("replay");
    r.command(ReplayCommand::End);
    let mut app = replay_app(&r, 100, 30);
    assert_eq!(app.selected_pfn(), Some(0x40011));
    let s = screen(&draw(&app, 100, 30));
    assert!(s.contains("__do_sys_vmsplice+0x9d"), "{s}");
    // Export from a replay: the recorded events up to the cursor.
    let set = [0x40010u64, 0x40011].into_iter().collect();
    assert_eq!(r.events_of(&set).expect("read again").len(), 3);
    app.on_key(ch('q'));
}

mod header;
mod holders;
mod small;
mod watch;

/// `--vmlinux`: the stack panes show a frame's source line after it when
/// the image knows the frame, and the frame alone when not. The image is
/// this test binary (ELF with DWARF; `symbols/lines.rs`'s tests define
/// `refwatch_source_lines_probe`); the synthetic stacks' frames are not in
/// it.
#[test]
fn stack_frames_with_their_source_lines() {
    let fx = Fixture::new();
    let t = synthetic::stuck();
    let mut app = fx.app(&t, T0 + 12 * S, 100, 30);
    let exe = std::env::current_exe().expect("the test binary");
    let lines = crate::symbols::SourceLines::open(&exe).expect("the test binary's DWARF");
    app.source_lines = Some(std::rc::Rc::new(crate::symbols::lines::LineCache::new(
        lines,
    )));
    let probe = app.frame_text("refwatch_source_lines_probe+0x4");
    assert!(
        probe.starts_with("refwatch_source_lines_probe+0x4  ")
            && probe.contains("src/symbols/lines.rs:"),
        "{probe}"
    );
    assert_eq!(app.frame_text("try_grab_folio+0x1a"), "try_grab_folio+0x1a");
    typed(&mut app, "/40030");
    app.on_key(key(KeyCode::Enter));
    app.sync(&fx.feed(&t, T0 + 12 * S));
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::Up));
    let s = screen(&draw(&app, 100, 30));
    assert!(
        s.contains(" try_grab_folio+0x1a "),
        "unchanged without a line: {s}"
    );
}
