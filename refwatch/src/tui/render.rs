//! Drawing: `impl Widget for &App`. Reads the state, never changes it; only
//! the rows on screen are built, so a million tracked PFNs draw as fast as ten.

use ratatui::{
    buffer::Buffer,
    layout::{Alignment, Constraint, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{
        Block, Borders, Cell, Paragraph, Row as TableRow, StatefulWidget, Table, TableState,
        Widget, Wrap,
    },
};

use super::overlays::{export_dialog, help, probes};
pub(super) use super::overlays::{fit, overlay_scroll_max, popup_with};
use super::{
    detail, fmt,
    model::{App, Focus, Overlay, PromptKind},
    view::{self, Column, TYPES},
};
use crate::{event::pgmap_name, state::Detector};

/// Smallest screen the layout is made for.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 12;

/// Where each part of the screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub timeline: Option<Rect>,
    pub table: Rect,
    pub detail: Option<Rect>,
    pub footer: Rect,
}

/// The layout for `area` (pure: the key handler uses it for page sizes).
pub fn areas(app: &App, area: Rect) -> Areas {
    let header_h = 3.min(area.height);
    let timeline_h = u16::from(app.replay.is_some()).min(area.height - header_h);
    let footer_h = 1.min(area.height - header_h - timeline_h);
    let body_h = area.height - header_h - timeline_h - footer_h;
    let body_y = area.y + header_h + timeline_h;
    let (table_h, detail_h) = if app.show_detail && body_h >= SPLIT_MIN {
        let t = (body_h * 9 / 20).max(6);
        (t, body_h - t)
    } else if app.show_detail && app.focus == Focus::Events {
        // Too low for both: the detail pane takes the table's place.
        (0, body_h)
    } else {
        (body_h, 0)
    };
    let row = |y: u16, h: u16| Rect::new(area.x, y, area.width, h);
    Areas {
        header: row(area.y, header_h),
        timeline: (timeline_h > 0).then(|| row(area.y + header_h, 1)),
        table: row(body_y, table_h),
        detail: (detail_h > 0).then(|| row(body_y + table_h, detail_h)),
        footer: row(body_y + body_h, footer_h),
    }
}

/// The body's height from which the table and the detail pane share it.
const SPLIT_MIN: u16 = 12;

/// Whether the screen is too low for the table and the detail pane at once:
/// then Enter and Tab switch between them.
pub fn compact(app: &App) -> bool {
    let (w, h) = app.size;
    let a = areas(app, Rect::new(0, 0, w, h));
    let body = a.table.height + a.detail.map_or(0, |d| d.height);
    body < SPLIT_MIN
}

/// The colour of a detector's rows.
pub fn detector_color(d: Detector) -> Color {
    match d {
        Detector::Held => Color::Yellow,
        Detector::Pinned => Color::Magenta,
        Detector::UnmappedNotFreed => Color::Red,
        Detector::MigrationBlocked => Color::Cyan,
        Detector::LayoutWait => Color::LightRed,
        Detector::Orphaned => Color::Blue,
        Detector::KeptByChild => Color::LightMagenta,
    }
}

pub(super) const DIM: Style = Style::new().fg(Color::DarkGray);
pub(super) const KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            too_small(area, buf);
            return;
        }
        let a = areas(self, area);
        header(self, a.header, buf);
        if let Some(t) = a.timeline {
            timeline(self, t, buf);
        }
        table(self, a.table, buf);
        if let Some(d) = a.detail {
            detail::render(self, d, buf);
        }
        footer(self, a.footer, buf);
        match &self.overlay {
            Overlay::None => {}
            Overlay::Help => help(self, area, buf),
            Overlay::Probes => probes(self, area, buf),
            Overlay::Export { scope, format } => export_dialog(self, *scope, *format, area, buf),
            Overlay::Holders => super::holders::render(self, area, buf),
        }
    }
}

fn too_small(area: Rect, buf: &mut Buffer) {
    let text = format!(
        "refwatch needs {MIN_WIDTH}×{MIN_HEIGHT}; this terminal is {}×{} (q quits)",
        area.width, area.height
    );
    Paragraph::new(text)
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

fn sep() -> Span<'static> {
    Span::styled(" │ ", DIM)
}

fn header(app: &App, area: Rect, buf: &mut Buffer) {
    let info = &app.info;
    let attached = info.hooks.iter().filter(|h| h.attached()).count();
    let missing = info.hooks.len() - attached;
    let mut l1 = vec![
        Span::styled(
            " refwatch ",
            Style::new().bold().fg(Color::Black).bg(Color::Cyan),
        ),
        Span::raw(" "),
        Span::styled(info.source.clone(), Style::new().bold()),
        sep(),
        Span::raw(info.kernel.clone()),
        sep(),
        Span::raw(format!("probes {attached}/{}", info.hooks.len())),
    ];
    if missing > 0 {
        l1.push(Span::styled(
            format!(", {missing} missing"),
            Style::new().fg(Color::Yellow),
        ));
    }
    l1.push(Span::styled(" (p)", DIM));
    let used = info.modes_used();
    let mode = match (info.mode.as_str(), used.is_empty()) {
        (_, true) if info.mode.is_empty() => String::new(),
        (m, true) => m.to_string(),
        ("" | "recorded", false) => used,
        (m, false) => format!("{m}: {used}"),
    };
    if !mode.is_empty() {
        l1.push(sep());
        l1.push(Span::raw(mode));
    }

    let s = &app.stats;
    let mut l2 = vec![
        Span::raw(" events "),
        Span::styled(fmt::count(s.events), Style::new().bold()),
        Span::raw(format!(" ({}/s)", fmt::rate(s.rate))),
        sep(),
        Span::raw("drops "),
    ];
    if s.dropped > 0 {
        l2.push(Span::styled(
            format!(" {} ", fmt::count(s.dropped)),
            Style::new().bold().white().on_red(),
        ));
    } else {
        l2.push(Span::raw("0"));
    }
    // How near the ring is to losing events: shown live once it holds a
    // tenth of its size, yellow from half, red from nine tenths.
    if let Some(fill) = s.ring_fill.filter(|f| *f >= 0.1) {
        let style = if fill >= 0.9 {
            Style::new().bold().fg(Color::Red)
        } else if fill >= 0.5 {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        l2.push(Span::styled(
            format!(" ring {:.0}%", (fill * 100.0).min(100.0)),
            style,
        ));
    }
    // Past --max-rate: counted, not recorded; their pages have gaps.
    if s.capped > 0 {
        l2.push(Span::styled(
            format!(" capped {}", fmt::count(s.capped)),
            Style::new().bold().fg(Color::Yellow),
        ));
    }
    if s.skipped > 0 {
        l2.push(Span::styled(
            format!(" skipped {}", fmt::count(s.skipped)),
            DIM,
        ));
    }
    if app.unknown > 0 {
        l2.push(Span::raw(" unknown "));
        l2.push(Span::styled(
            format!(" {} ", fmt::count(app.unknown)),
            Style::new().bold().white().on_red(),
        ));
    }
    l2.push(sep());
    l2.push(Span::raw("stuck "));
    if app.stuck > 0 {
        l2.push(Span::styled(
            fmt::count(app.stuck),
            Style::new().bold().fg(Color::Red),
        ));
    } else {
        l2.push(Span::raw("0"));
    }
    if s.decode_errors > 0 {
        l2.push(sep());
        l2.push(Span::styled(
            format!("undecodable {}", fmt::count(s.decode_errors)),
            Style::new().fg(Color::Yellow),
        ));
    }
    if s.evicted > 0 {
        l2.push(sep());
        l2.push(Span::raw(format!("evicted {}", fmt::count(s.evicted))));
    }
    if app.over_cap > 0 {
        l2.push(sep());
        l2.push(Span::styled(
            format!("over --max-pfns {}", fmt::count(app.over_cap)),
            Style::new().fg(Color::Yellow),
        ));
    }
    if app.episodes_left_out > 0 {
        l2.push(sep());
        l2.push(Span::raw(format!(
            "episodes forgotten {}",
            fmt::count(app.episodes_left_out)
        )));
    }
    // Pages armed / pages that fit at once, once any watch is asked for.
    if let Some(w) = app.watch.as_ref().filter(|w| w.any()) {
        l2.push(sep());
        l2.push(Span::raw(format!("watch {}/{}", w.armed.len(), w.slots)));
        if !w.queued.is_empty() {
            l2.push(Span::raw(format!(" +{} queued", w.queued.len())));
        }
    }
    if app.paused {
        l2.push(Span::raw("  "));
        l2.push(Span::styled(
            " PAUSED ",
            Style::new().bold().black().on_yellow(),
        ));
    }
    // The largest holder on the main screen: who holds the stuck pages is
    // the question the tool answers; `h` lists every holder.
    if let Some(g) = app.holder_groups.first() {
        l2.push(sep());
        l2.push(Span::styled("holder ", DIM));
        l2.push(Span::styled(g.who.clone(), Style::new().bold()));
        l2.push(Span::raw(format!(
            " {} page(s) {} {}",
            fmt::count(g.pages as u64),
            crate::state::groups::ranges_text(&g.ranges, 2),
            g.detector.name()
        )));
        let more = app.holder_groups.len() - 1;
        if more > 0 {
            l2.push(Span::raw(format!(" · {more} more")));
        }
        l2.push(Span::styled(" (h)", DIM));
    }

    let total: u64 = app.counts.iter().sum();
    let mut l3 = vec![
        Span::raw(" PFNs "),
        Span::styled(fmt::count(total), Style::new().bold()),
    ];
    let mut first = true;
    for t in TYPES {
        let n = app.counts[t as usize];
        if n == 0 {
            continue;
        }
        l3.push(Span::styled(if first { ": " } else { " · " }, DIM));
        first = false;
        l3.push(Span::raw(format!("{} {}", pgmap_name(t), fmt::count(n))));
    }
    if total == 0 {
        l3.push(Span::styled(
            "  waiting for events on ZONE_DEVICE pages",
            DIM,
        ));
    }
    Paragraph::new(vec![Line::from(l1), Line::from(l2), Line::from(l3)]).render(area, buf);
}

fn timeline(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(r) = app.replay else {
        return;
    };
    let at_end = r.cursor_ns >= r.end_ns && r.events_done >= r.events_total;
    let (icon, style) = if at_end {
        ("■ end", Style::new().bold())
    } else if r.playing {
        ("▶ playing", Style::new().bold().fg(Color::Green))
    } else {
        ("⏸ paused", Style::new().bold().fg(Color::Yellow))
    };
    let t0 = app.info.t0_ns;
    let spans = vec![
        Span::raw(" "),
        Span::styled(icon, style),
        Span::raw(format!(" ×{}", speed(r.speed))),
        sep(),
        Span::styled(fmt::rel(r.cursor_ns, t0), Style::new().bold()),
        Span::styled(format!(" / {}", fmt::rel(r.end_ns, t0)), DIM),
        sep(),
        Span::raw(format!(
            "event {}/{} ",
            fmt::count(r.events_done),
            fmt::count(r.events_total)
        )),
    ];
    let line = Line::from(spans);
    let used = (line.width() as u16).min(area.width);
    line.render(area, buf);
    let bar = Rect::new(
        area.x + used,
        area.y,
        area.width.saturating_sub(used + 1),
        1,
    );
    if bar.width > 3 {
        let span = r.end_ns.saturating_sub(r.start_ns).max(1);
        let ratio = r.cursor_ns.saturating_sub(r.start_ns) as f64 / span as f64;
        let filled = ((ratio.clamp(0.0, 1.0) * f64::from(bar.width)).round() as u16).min(bar.width);
        Line::from(vec![
            Span::styled(
                "━".repeat(usize::from(filled)),
                Style::new().fg(Color::Cyan),
            ),
            Span::styled("─".repeat(usize::from(bar.width - filled)), DIM),
        ])
        .render(bar, buf);
    }
}

fn speed(s: f64) -> String {
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{s:.0}")
    } else if s >= 0.1 {
        format!("{s:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{s:.3}")
    }
}

/// Which columns fit: LAST goes first when the screen is narrow.
fn columns(width: u16) -> Vec<Column> {
    Column::ALL
        .into_iter()
        .filter(|c| width >= 100 || *c != Column::Last)
        .collect()
}

/// Column widths: fixed ones, the task column a little over half of what is
/// left (8 to 24), the detectors the rest.
fn widths(cols: &[Column], pfn_w: u16, width: u16) -> Vec<Constraint> {
    let fixed = |c: Column| match c {
        Column::Pfn => pfn_w,
        Column::Type => 8,
        Column::Refcount => 5,
        Column::State => 10,
        Column::Age => 8,
        Column::Last => 11,
        Column::Task | Column::Detector => 0,
    };
    // The marker column, and one space between columns.
    let used: u16 = 1 + cols.len() as u16 + cols.iter().map(|c| fixed(*c)).sum::<u16>();
    let task = (width.saturating_sub(used) * 11 / 20).clamp(8, 24);
    let mut out = vec![Constraint::Length(1)];
    out.extend(cols.iter().map(|c| match c {
        Column::Task => Constraint::Length(task),
        Column::Detector => Constraint::Fill(1),
        other => Constraint::Length(fixed(*other)),
    }));
    out
}

fn table_title(app: &App) -> Line<'static> {
    let focused = app.focus == Focus::Table;
    let total: u64 = app.counts.iter().sum();
    let mut spans = vec![Span::styled(
        format!(
            " pages {} of {} ",
            fmt::count(app.order.len() as u64),
            fmt::count(total)
        ),
        if focused {
            Style::new().bold()
        } else {
            Style::new()
        },
    )];
    let arrow = if app.sort.descending { "↓" } else { "↑" };
    spans.push(Span::styled(
        format!(
            "· sort {} {arrow}{} ",
            app.sort.column.describe(),
            if app.sort.stuck_first {
                " · stuck first"
            } else {
                ""
            }
        ),
        DIM,
    ));
    if !app.filter.is_empty() {
        spans.push(Span::styled(
            format!(" filter {} ", app.filter),
            Style::new().fg(Color::Black).bg(Color::Cyan),
        ));
        spans.push(Span::raw(" "));
    }
    if let Some(q) = &app.search {
        spans.push(Span::styled(
            format!(" search {q} "),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
        spans.push(Span::raw(" "));
    }
    Line::from(spans)
}

/// Beside a PFN: `◉` watched by a hardware watchpoint, `○` queued for one.
/// Live, the watcher says; in a replay, the recording's watchpoint events.
fn watch_mark(app: &App, r: &view::Row) -> &'static str {
    match &app.watch {
        Some(w) if w.armed(r.pfn).is_some() => "◉",
        Some(w) if w.queued(r.pfn) => "○",
        Some(_) => "",
        None if r.watched => "◉",
        None => "",
    }
}

fn table(app: &App, area: Rect, buf: &mut Buffer) {
    let focused = app.focus == Focus::Table;
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(if focused {
            Style::new().fg(Color::Cyan)
        } else {
            DIM
        })
        .title(table_title(app));
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 {
        return;
    }
    let h = inner.height.saturating_sub(1) as usize;
    let n = app.order.len();
    // Clamp here too: the state may not have seen this size yet.
    let mut offset = app.offset.min(n.saturating_sub(h.max(1)));
    if app.selected < offset {
        offset = app.selected;
    } else if h > 0 && app.selected >= offset + h {
        offset = app.selected + 1 - h;
    }
    let visible: Vec<&view::Row> = (offset..n.min(offset + h))
        .filter_map(|i| app.row_at(i))
        .collect();
    let pfn_w = visible
        .iter()
        .map(|r| format!("{:#x}", r.pfn).len() as u16)
        .max()
        .unwrap_or(0)
        .max(7)
        + u16::from(visible.iter().any(|r| !watch_mark(app, r).is_empty()));
    let cols = columns(inner.width);
    let widths = widths(&cols, pfn_w, inner.width);
    let mut head = vec![Cell::from("")];
    head.extend(cols.iter().map(|c| {
        let mut t = c.title().to_string();
        if *c == app.sort.column {
            t.push_str(if app.sort.descending { "↓" } else { "↑" });
        }
        let cell = if *c == Column::Refcount {
            Cell::from(Line::from(t).alignment(Alignment::Right))
        } else {
            Cell::from(t)
        };
        if *c == app.sort.column {
            cell.style(Style::new().fg(Color::Cyan))
        } else {
            cell
        }
    }));
    let header = TableRow::new(head).style(Style::new().bold());
    let now = app.now_ns;
    let mut scratch = String::new();
    let rows: Vec<TableRow> = visible
        .iter()
        .map(|r| {
            let color = r.detector().map(detector_color);
            let mut cells = vec![Cell::from(if r.stuck() { "●" } else { " " })];
            for c in &cols {
                cells.push(match c {
                    Column::Pfn => Cell::from(format!("{:#x}{}", r.pfn, watch_mark(app, r))),
                    Column::Type => Cell::from(r.type_name()),
                    Column::Refcount => Cell::from(
                        Line::from(fmt::refcount(r.refcount)).alignment(Alignment::Right),
                    ),
                    Column::State => Cell::from(r.state.name()),
                    Column::Age => Cell::from(fmt::age(now.saturating_sub(r.state_since_ns))),
                    Column::Last => Cell::from(r.last.name()),
                    Column::Task => {
                        if r.holder {
                            Cell::from(format!("{}/{}", r.comm.as_str(), r.tgid))
                        } else if r.comm.as_str().is_empty() {
                            Cell::from("-").style(DIM)
                        } else {
                            Cell::from(format!("({})", r.comm.as_str())).style(DIM)
                        }
                    }
                    Column::Detector => {
                        // The most specific first, so a narrow column keeps it.
                        let first = r.detector();
                        let mut names: Vec<&str> = first.iter().map(|d| d.name()).collect();
                        names.extend(
                            view::detectors(r.flags)
                                .filter(|d| Some(*d) != first)
                                .map(|d| d.name()),
                        );
                        Cell::from(names.join(","))
                    }
                });
            }
            let mut style = Style::new();
            if let Some(c) = color {
                style = style.fg(c);
            }
            if app
                .search
                .as_deref()
                .is_some_and(|q| view::search_matches(r, q, &mut scratch))
            {
                style = style.add_modifier(Modifier::UNDERLINED);
            }
            TableRow::new(cells).style(style)
        })
        .collect();
    if n == 0 {
        let msg = if app.filter.is_empty() {
            "no device pages tracked yet"
        } else {
            "no page matches the filter (c clears it)"
        };
        header_only(header, &widths, inner, buf);
        let y = inner.y + inner.height / 2;
        Paragraph::new(Line::styled(msg, DIM))
            .alignment(Alignment::Center)
            .render(Rect::new(inner.x, y, inner.width, 1), buf);
        return;
    }
    let highlight = if focused {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().bg(Color::DarkGray)
    };
    let mut state = TableState::default().with_selected(Some(app.selected - offset));
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(highlight);
    StatefulWidget::render(table, inner, buf, &mut state);
}

fn header_only(header: TableRow<'_>, widths: &[Constraint], area: Rect, buf: &mut Buffer) {
    Widget::render(
        Table::new(Vec::<TableRow>::new(), widths.to_vec())
            .header(header)
            .column_spacing(1),
        area,
        buf,
    );
}

fn hints(app: &App) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("?", "help"), ("q", "quit")];
    // A small screen cuts the hints short: the way to the detail pane first.
    let compact = compact(app);
    if compact {
        v.push((
            "Enter",
            if app.focus == Focus::Events {
                "table"
            } else {
                "detail"
            },
        ));
    }
    if app.replay.is_some() {
        v.extend([
            ("space", "play"),
            (". ,", "step"),
            ("← →", "5s"),
            ("+ -", "speed"),
            ("[ ]", "start/end"),
        ]);
    } else {
        v.push(("space", if app.paused { "resume" } else { "pause" }));
    }
    v.extend([("/", "search"), ("f", "filter"), ("1-8", "sort")]);
    if !compact {
        v.extend([("Enter", "detail"), ("Tab", "events")]);
    }
    v.extend([("e", "export"), ("p", "probes"), ("h", "holders")]);
    v
}

fn footer(app: &App, area: Rect, buf: &mut Buffer) {
    if area.height == 0 {
        return;
    }
    if let Some(p) = &app.prompt {
        let (label, help) = match p.kind {
            PromptKind::Search => ("/", "  Enter keep · Esc cancel · n N next/prev"),
            PromptKind::Filter => (
                "filter: ",
                "  type: state: task: pfn: detector: stuck · Enter apply · Esc cancel",
            ),
        };
        let mut spans = vec![
            Span::styled(label, KEY),
            Span::raw(p.text.clone()),
            Span::styled("█", Style::new().fg(Color::Cyan)),
        ];
        match &app.message {
            Some(m) if m.error => spans.push(Span::styled(
                format!("  {}", m.text),
                Style::new().fg(Color::Red),
            )),
            _ => spans.push(Span::styled(help, DIM)),
        }
        Line::from(spans).render(area, buf);
        return;
    }
    if let Some(m) = &app.message {
        let style = if m.error {
            Style::new().fg(Color::Red).bold()
        } else {
            Style::new().fg(Color::Green)
        };
        Line::from(vec![Span::raw(" "), Span::styled(m.text.clone(), style)]).render(area, buf);
        return;
    }
    let mut spans = vec![Span::raw(" ")];
    for (k, what) in hints(app) {
        spans.push(Span::styled(k, KEY));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    Line::from(spans).render(area, buf);
}
