//! Frame render time of the TUI with 1 M tracked PFNs into a 200×50
//! `TestBackend` (goal: ≤ 16 ms per frame), and the cost of the throttled
//! row rebuild and re-sort. The state is synthetic
//! (`refwatch::tui::synthetic::busy`), not from a kernel.

use std::{collections::HashMap, hint::black_box};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};
use refwatch::{
    format::json::Format,
    state::Tracker,
    symbols::{Kallsyms, Live},
    tui::{
        App, Feed,
        synthetic::{self, S, T0},
    },
};

const PFNS: u64 = 1_000_000;

fn feed<'a>(t: &'a Tracker, names: &'a Live<'a>) -> Feed<'a> {
    Feed {
        tracker: t,
        stacks: names,
        now_ns: T0 + 20 * S,
    }
}

fn names(syms: &Kallsyms, hooks: HashMap<u32, String>) -> Live<'_> {
    Live {
        syms,
        format: Format::default(),
        hooks,
    }
}

fn app(f: &Feed<'_>) -> App {
    let mut app = App::new(synthetic::header_info());
    app.resize(200, 50);
    app.refresh(f);
    app
}

fn benches(c: &mut Criterion) {
    let tracker = synthetic::busy(PFNS);
    assert_eq!(tracker.len() as u64, PFNS);
    let syms = synthetic::kallsyms();
    let hooks = synthetic::hook_symbols();
    let names = names(&syms, hooks);
    let f = feed(&tracker, &names);
    let mut app = app(&f);
    assert_eq!(app.shown() as u64, PFNS);
    let mut term = Terminal::new(TestBackend::new(200, 50)).expect("test terminal");

    c.bench_function("render frame, 1M synthetic PFNs, 200x50, top", |b| {
        b.iter(|| {
            term.draw(|fr| fr.render_widget(black_box(&app), fr.area()))
                .expect("draw");
        })
    });

    // Deep in the table: only the visible window is built either way.
    for _ in 0..3 {
        app.on_key(KeyEvent::new(KeyCode::PageDown, KeyModifiers::NONE));
    }
    app.on_key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE));
    app.sync(&f);
    c.bench_function("render frame, 1M synthetic PFNs, 200x50, last row", |b| {
        b.iter(|| {
            term.draw(|fr| fr.render_widget(black_box(&app), fr.area()))
                .expect("draw");
        })
    });

    let mut g = c.benchmark_group("throttled, not per frame");
    g.sample_size(10);
    g.bench_function("re-sort 1M synthetic rows (key r)", |b| {
        b.iter(|| app.on_key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE)))
    });
    g.bench_function("rebuild rows + sort from 1M tracked pages", |b| {
        b.iter_batched(
            || App::new(synthetic::header_info()),
            |mut a| {
                a.resize(200, 50);
                a.refresh(&f);
                a
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(render, benches);
criterion_main!(render);
