//! The detail pane of the selected PFN: what the detectors say, the refcount
//! over time, the page's events and the stack of the selected one.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    symbols::Marker,
    text::{Line, Span},
    widgets::{
        Axis, Block, Borders, Cell, Chart, Dataset, GraphType, Paragraph, Row, Sparkline,
        StatefulWidget, Table, TableState, Widget, Wrap,
    },
};

use super::{
    fmt,
    model::{App, DetailSnap, Focus},
    render::detector_color,
};
use crate::event::{Kind, PageEvent, pgmap_name};

const DIM: Style = Style::new().fg(Color::DarkGray);

fn kind_color(k: Kind) -> Color {
    match k {
        Kind::Get | Kind::Pin => Color::Green,
        Kind::Put | Kind::Unpin => Color::LightBlue,
        Kind::Free => Color::DarkGray,
        Kind::Migrate => Color::Cyan,
        Kind::LayoutWait => Color::LightRed,
        Kind::Set | Kind::Snapshot => Color::Gray,
        Kind::PgmapAdd | Kind::PgmapRemove | Kind::Fork => Color::Magenta,
    }
}

fn task(ev: &PageEvent) -> String {
    if ev.pid == ev.tgid {
        format!("{}/{}", ev.comm, ev.tgid)
    } else {
        format!("{}/{}:{}", ev.comm, ev.tgid, ev.pid)
    }
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let focused = app.focus == Focus::Events;
    let mut title = vec![Span::styled(
        " detail ",
        if focused {
            Style::new().bold()
        } else {
            Style::new()
        },
    )];
    // The runner re-reads the detail after every key; until then say nothing stale.
    let detail = app
        .detail
        .as_ref()
        .filter(|d| Some(d.page.pfn) == app.selected_pfn);
    if let Some(d) = detail {
        let p = &d.page;
        title.push(Span::styled(
            format!("pfn {:#x} · {} ", p.pfn, pgmap_name(p.pgmap_type)),
            Style::new().bold(),
        ));
        for e in &d.open {
            title.push(Span::styled(
                format!(" {} ", e.detector.name()),
                Style::new().bold().black().bg(detector_color(e.detector)),
            ));
            title.push(Span::raw(" "));
        }
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(if focused {
            Style::new().fg(Color::Cyan)
        } else {
            DIM
        })
        .title(Line::from(title));
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(d) = detail else {
        let msg = match app.selected_pfn {
            Some(pfn) => format!("pfn {pfn:#x}: no history kept"),
            None => "select a page to see its refcount history".into(),
        };
        Paragraph::new(Line::styled(msg, DIM)).render(inner, buf);
        return;
    };
    let summary = summary(app, d);
    let needed: u16 = summary.iter().map(|l| wrapped_height(l, inner.width)).sum();
    // A low pane (a small terminal) keeps the summary (why the page is
    // stuck, who holds it) over the sparkline and the stack.
    let low = inner.height < 10;
    let chart_h: u16 = if inner.height >= 22 {
        8
    } else if low {
        0
    } else {
        1
    };
    let min_events = if low { 2 } else { 4 };
    let summary_h = needed
        .min(inner.height.saturating_sub(chart_h + min_events))
        .max(1)
        .min(inner.height);
    let chart_h = chart_h.min(inner.height - summary_h);
    let rest_h = inner.height - summary_h - chart_h;
    let mut y = inner.y;
    Paragraph::new(summary)
        .wrap(Wrap { trim: false })
        .render(Rect::new(inner.x, y, inner.width, summary_h), buf);
    y += summary_h;
    let chart_area = Rect::new(inner.x, y, inner.width, chart_h);
    if chart_h >= 4 {
        chart(app, d, chart_area, buf);
    } else if chart_h > 0 {
        sparkline(app, d, chart_area, buf);
    }
    y += chart_h;
    if rest_h == 0 {
        return;
    }
    let rest = Rect::new(inner.x, y, inner.width, rest_h);
    if rest.height < 4 {
        // No room for the stack: the events (header and the selected one).
        events(app, d, rest, buf);
        return;
    }
    let (events_area, stack_area) = if rest.width >= 70 {
        let ew = (rest.width * 3 / 5).max(44).min(rest.width - 24);
        (
            Rect::new(rest.x, rest.y, ew, rest.height),
            Rect::new(rest.x + ew, rest.y, rest.width - ew, rest.height),
        )
    } else {
        let eh = rest.height.div_ceil(2);
        (
            Rect::new(rest.x, rest.y, rest.width, eh),
            Rect::new(rest.x, rest.y + eh, rest.width, rest.height - eh),
        )
    };
    events(app, d, events_area, buf);
    stack(app, d, stack_area, buf, rest.width >= 70);
}

/// Lines `line` takes when word-wrapped at `width` (greedy, like the
/// paragraph's wrapping; a word longer than the width is split).
fn wrapped_height(line: &Line<'_>, width: u16) -> u16 {
    let width = usize::from(width.max(1));
    let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
    let mut lines = 1;
    let mut col = 0;
    for word in text.split(' ') {
        let w = word.chars().count();
        let need = if col == 0 { w } else { col + 1 + w };
        if need <= width {
            col = need;
        } else if w <= width {
            lines += 1;
            col = w;
        } else {
            // Split a long word over as many lines as it takes.
            lines += usize::from(col > 0) + (w - 1) / width;
            col = (w - 1) % width + 1;
        }
    }
    lines.min(usize::from(u16::MAX)) as u16
}

fn summary(app: &App, d: &DetailSnap) -> Vec<Line<'static>> {
    let p = &d.page;
    let t0 = app.info.t0_ns;
    let now = app.now_ns;
    let total: u64 = p.counts.iter().sum();
    let mut lines = vec![Line::from(vec![
        Span::styled(p.state.name(), Style::new().bold()),
        Span::raw(format!(
            " for {}",
            fmt::age(now.saturating_sub(p.state_since_ns))
        )),
        Span::styled(" · ", DIM),
        Span::raw(format!(
            "refcount {} (idle {})",
            fmt::refcount(p.refcount),
            d.idle
        )),
        Span::styled(" · ", DIM),
        Span::raw(format!(
            "mapcount {}",
            p.mapcount.map_or("?".into(), |m| m.to_string())
        )),
        Span::styled(" · ", DIM),
        Span::raw(if total == 1 {
            "1 event".to_string()
        } else {
            format!("{} events", fmt::count(total))
        }),
    ])];
    if let Some(w) = watch_line(app, d) {
        lines.push(w);
    }
    for e in &d.open {
        lines.push(Line::from(vec![
            Span::styled(
                format!("● {}", e.detector.name()),
                Style::new().bold().fg(detector_color(e.detector)),
            ),
            Span::raw(format!(
                " since {} ({}): ",
                fmt::rel(e.start_ns, t0),
                fmt::age(now.saturating_sub(e.start_ns))
            )),
            Span::raw(e.reason.clone()),
        ]));
    }
    if let Some(e) = d.open.first() {
        if !e.holders.is_empty() || !p.holders.is_empty() {
            let holders = if p.holders.is_empty() {
                &e.holders
            } else {
                &p.holders
            };
            let mut spans = vec![Span::styled("holders: ", Style::new().bold())];
            for (i, h) in holders.iter().enumerate() {
                if i > 0 {
                    spans.push(Span::styled(" · ", DIM));
                }
                spans.push(Span::raw(format!(
                    "{}/{} {} ×{} at {}",
                    h.comm,
                    h.tgid,
                    h.kind.name(),
                    h.refs,
                    fmt::rel(h.ts_ns, t0)
                )));
            }
            lines.push(Line::from(spans));
        } else if let Some(n) = &e.holder_note {
            lines.push(Line::from(vec![
                Span::styled("holder unknown: ", Style::new().bold()),
                Span::styled(n.clone(), DIM),
            ]));
        }
    } else if let Some(e) = &d.last_closed {
        let end = e.end_ns.map_or("?".into(), |t| fmt::rel(t, t0));
        let released = e.released_by.as_deref().map_or(String::new(), |r| {
            format!(
                ", released by {}/{} ({} via {})",
                r.comm,
                r.tgid,
                r.kind.name(),
                crate::report::seen_via(r.hook)
            )
        });
        lines.push(Line::styled(
            format!(
                "not stuck now · last: {} from {} to {end}{released}",
                e.detector.name(),
                fmt::rel(e.start_ns, t0)
            ),
            DIM,
        ));
    } else {
        lines.push(Line::styled("not stuck", DIM));
    }
    lines
}

/// Whether a hardware watchpoint watches the page: live, as the watcher
/// says (armed since when, writes seen; or queued); in a replay, from the
/// recording's watchpoint events.
fn watch_line(app: &App, d: &DetailSnap) -> Option<Line<'static>> {
    let p = &d.page;
    let t0 = app.info.t0_ns;
    let (since, hits) = match &app.watch {
        Some(w) => match w.armed(p.pfn) {
            Some(a) => a,
            None if w.queued(p.pfn) => {
                return Some(Line::from(vec![
                    Span::styled("○ queued for a watchpoint", Style::new().bold()),
                    Span::raw(format!(" (slots busy: {} of {})", w.armed.len(), w.slots)),
                ]));
            }
            None => return None,
        },
        None if p.watched_since != 0 => {
            // The read at arming is the watchpoint's first event; writes
            // come after it.
            let hits = d
                .events
                .iter()
                .filter(|e| {
                    e.hook == refwatch_common::hook::WATCHPOINT && e.ts_ns > p.watched_since
                })
                .count();
            (p.watched_since, u32::try_from(hits).unwrap_or(u32::MAX))
        }
        None => return None,
    };
    Some(Line::from(vec![
        Span::styled("◉ watched", Style::new().bold()),
        Span::raw(format!(
            " since {} ({}) · hits {hits}",
            fmt::rel(since, t0),
            fmt::age(app.now_ns.saturating_sub(since))
        )),
    ]))
}

/// The highest refcount in each of `columns` equal time slices from the
/// first kept event to now (so short spikes stay visible), and that maximum.
fn samples(app: &App, d: &DetailSnap, columns: usize) -> (Vec<Option<u64>>, u64) {
    let h = &d.events;
    let Some(first) = h.first() else {
        return (Vec::new(), 0);
    };
    let start = first.ts_ns;
    let end = app.now_ns.max(h.last().map_or(start, |e| e.ts_ns));
    let span = u128::from(end.saturating_sub(start).max(1));
    let mut out = Vec::with_capacity(columns);
    let mut j = 0;
    let mut cur: Option<u64> = None;
    let mut top = 0;
    for c in 0..columns {
        let t = start + (span * (c as u128 + 1) / columns.max(1) as u128) as u64;
        let mut m = cur;
        while j < h.len() && h[j].ts_ns <= t {
            if let Some(rc) = h[j].refcount_after.or(h[j].refcount_before) {
                let v = rc.max(0) as u64;
                cur = Some(v);
                m = Some(m.map_or(v, |x| x.max(v)));
            }
            j += 1;
        }
        top = top.max(m.unwrap_or(0));
        out.push(m);
    }
    (out, top)
}

fn sparkline(app: &App, d: &DetailSnap, area: Rect, buf: &mut Buffer) {
    let label = Span::styled("refcount ", DIM);
    let lw = label.width() as u16;
    let (_, max) = samples(app, d, 1);
    let suffix = format!(" now {} · max {max}", fmt::refcount(d.page.refcount));
    let sw = (suffix.chars().count() as u16).min(area.width.saturating_sub(lw));
    let spark_w = area.width.saturating_sub(lw + sw);
    Line::from(label).render(area, buf);
    let (data, top) = samples(app, d, usize::from(spark_w));
    let color = d
        .open
        .first()
        .map_or(Color::Cyan, |e| detector_color(e.detector));
    Sparkline::default()
        .data(data)
        .max(top.max(1))
        .style(Style::new().fg(color))
        .render(Rect::new(area.x + lw, area.y, spark_w, area.height), buf);
    Line::raw(suffix).render(Rect::new(area.x + lw + spark_w, area.y, sw, 1), buf);
}

fn chart(app: &App, d: &DetailSnap, area: Rect, buf: &mut Buffer) {
    let t0 = app.info.t0_ns;
    let h = &d.events;
    let Some(first) = h.first() else {
        return;
    };
    let secs = |ns: u64| ns.saturating_sub(t0) as f64 / 1e9;
    let start = first.ts_ns;
    let end = app.now_ns.max(h.last().map_or(start, |e| e.ts_ns));
    // A step line: each change holds until the next event.
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(h.len() * 2 + 1);
    let mut last: Option<f64> = None;
    let mut max = 1.0f64;
    for e in h {
        let x = secs(e.ts_ns);
        if let Some(v) = last {
            points.push((x, v));
        }
        if let Some(rc) = e.refcount_after.or(e.refcount_before) {
            let v = f64::from(rc.max(0));
            max = max.max(v);
            points.push((x, v));
            last = Some(v);
        }
    }
    if let Some(v) = last {
        points.push((secs(end), v));
    }
    let (x0, x1) = (secs(start), secs(end).max(secs(start) + 1e-3));
    let color = d
        .open
        .first()
        .map_or(Color::Cyan, |e| detector_color(e.detector));
    let top = (max * 1.1).ceil().max(max + 1.0);
    Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(color))
            .data(&points),
    ])
    .x_axis(
        Axis::default()
            .bounds([x0, x1])
            .style(DIM)
            .labels([fmt::rel(start, t0), fmt::rel(end, t0)]),
    )
    .y_axis(
        Axis::default()
            .title(Span::styled("refcount", DIM))
            .bounds([0.0, top])
            .style(DIM)
            .labels(["0".to_string(), format!("{top:.0}")]),
    )
    .render(area, buf);
}

fn events(app: &App, d: &DetailSnap, area: Rect, buf: &mut Buffer) {
    let focused = app.focus == Focus::Events;
    let h = &d.events;
    let rows_h = area.height.saturating_sub(1) as usize;
    let Some(sel) = app.selected_event() else {
        Paragraph::new(Line::styled("no events kept", DIM)).render(area, buf);
        return;
    };
    let offset = if rows_h == 0 {
        sel
    } else {
        (sel + 1).saturating_sub(rows_h)
    };
    let t0 = app.info.t0_ns;
    let holder_keys: Vec<(u64, u32)> = d.page.holders.iter().map(|h| (h.ts_ns, h.pid)).collect();
    let rows: Vec<Row> = h
        .iter()
        .enumerate()
        .skip(offset)
        .take(rows_h)
        .map(|(_, e)| {
            let held = holder_keys.contains(&(e.ts_ns, e.pid));
            let mut r = Row::new(vec![
                Cell::from(fmt::rel(e.ts_ns, t0)),
                Cell::from(Span::styled(
                    e.kind.name(),
                    Style::new().fg(kind_color(e.kind)),
                )),
                Cell::from(fmt::change(e.refcount_before, e.refcount_after)),
                Cell::from(task(e)),
                Cell::from(e.cpu.to_string()),
            ]);
            if held {
                r = r.style(Style::new().add_modifier(Modifier::BOLD));
            }
            r
        })
        .collect();
    let widths = [
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Max(28),
        Constraint::Length(3),
    ];
    let highlight = if focused {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().bg(Color::DarkGray)
    };
    let mut state = TableState::default().with_selected(Some(sel - offset));
    let table = Table::new(rows, widths)
        .header(Row::new(["TIME", "EVENT", "REF", "TASK", "CPU"]).style(Style::new().bold()))
        .column_spacing(1)
        .row_highlight_style(highlight);
    StatefulWidget::render(table, area, buf, &mut state);
}

fn stack(app: &App, d: &DetailSnap, area: Rect, buf: &mut Buffer, side: bool) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    let block = if side {
        Block::new().borders(Borders::LEFT).border_style(DIM)
    } else {
        Block::new()
    };
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(i) = app.selected_event() else {
        return;
    };
    let (Some(ev), Some((symbol, frames))) = (d.events.get(i), d.stacks.get(i)) else {
        return;
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{} {}", ev.kind.name(), fmt::rel(ev.ts_ns, app.info.t0_ns)),
            Style::new().bold().fg(kind_color(ev.kind)),
        ),
        Span::styled(" in ", DIM),
        Span::styled(symbol.clone(), Style::new().bold()),
    ])];
    if frames.is_empty() {
        lines.push(Line::styled(
            "no stack (not taken for this event, or none captured)",
            DIM,
        ));
    }
    for f in frames {
        lines.push(Line::raw(format!(" {}", app.frame_text(f))));
    }
    Paragraph::new(lines).render(inner, buf);
}
