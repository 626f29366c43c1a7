//! Drawing: `impl Widget for &App`. Reads the state, never changes it; only
//! the rows on screen are built, so a million tracked PFNs draw as fast as ten.

use ratatui::{
    buffer::Buffer,
    layout::{Alignment, Constraint, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{
        Block, Borders, Cell, Clear, Paragraph, Row as TableRow, StatefulWidget, Table, TableState,
        Widget, Wrap,
    },
};

use super::{
    detail, fmt,
    model::{App, Focus, Overlay, PromptKind, Scope},
    view::{self, Column, TYPES},
};
use crate::{event::pgmap_name, format::export::ExportFormat, state::Detector};

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

const DIM: Style = Style::new().fg(Color::DarkGray);
const KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);

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

/// A centred box of at most `w`×`h`, cleared.
fn popup(area: Rect, w: u16, h: u16, title: &str, buf: &mut Buffer) -> Rect {
    popup_with(area, w, h, title, None, buf)
}

/// [`popup`] with a note on its bottom border (right-aligned).
pub(super) fn popup_with(
    area: Rect,
    w: u16,
    h: u16,
    title: &str,
    bottom: Option<&str>,
    buf: &mut Buffer,
) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    Clear.render(r, buf);
    let mut block = Block::bordered()
        .border_style(Style::new().fg(Color::Cyan))
        .title(Span::styled(format!(" {title} "), Style::new().bold()));
    if let Some(b) = bottom {
        block = block.title_bottom(
            Line::styled(format!(" {b} "), Style::new().bold().fg(Color::Yellow))
                .alignment(Alignment::Right),
        );
    }
    let inner = block.inner(r);
    block.render(r, buf);
    inner
}

/// Every key, for the help overlay.
pub const HELP: &[(&str, &str)] = &[
    ("↑ ↓ j k", "move"),
    ("PgUp PgDn", "page up, down"),
    ("g G Home End", "first, last"),
    ("Enter", "detail pane on/off"),
    ("Tab", "table ↔ the page's events"),
    ("1 … 8", "sort; again: reverse"),
    ("s  r", "next sort column, reverse"),
    ("!", "stuck pages first on/off"),
    ("/  n  N", "search, next, previous"),
    ("f", "filter type state task pfn"),
    ("t  o", "cycle type, only stuck"),
    ("c", "clear filters and search"),
    ("h", "stuck pages by holder"),
    ("w", "watch page (live) on/off"),
    ("e", "export jsonl csv perfetto"),
    ("p", "probe plan"),
    ("space", "pause live, play replay"),
    (". ,", "replay: step one event"),
    ("← →", "replay: seek 5 s back, on"),
    ("+ -", "replay: speed ×2, ÷2"),
    ("[ ]", "replay: start, end"),
    ("q  Ctrl-C", "quit"),
    ("Esc", "back, clear search"),
];

/// The help box for a screen: its size, and whether it has two columns.
fn help_box(area: Rect) -> (u16, u16, bool) {
    let two = area.width >= 80;
    let w = (if two { 80 } else { 42 }).min(area.width);
    let n = help_lines(two, w.saturating_sub(2), false).len() as u16;
    (w, (n + 2).min(area.height), two)
}

/// `s` cut to `w` columns, with `…` when cut.
pub(super) fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(w - 1).collect();
        t.push('…');
        t
    }
}

/// The help's lines for a box `width` wide: the keys (in two columns when
/// `two`), the detectors' colours, and how to close it.
fn help_lines(two: bool, width: u16, scrolls: bool) -> Vec<Line<'static>> {
    let per_col = if two {
        HELP.len().div_ceil(2)
    } else {
        HELP.len()
    };
    let col_w = usize::from(if two { width / 2 } else { width });
    let entry = |(k, d): &(&str, &str)| {
        [
            Span::styled(format!("{k:>12} "), KEY),
            Span::raw(fit(d, col_w.saturating_sub(13))),
        ]
    };
    let mut lines = Vec::new();
    for (i, first) in HELP.iter().take(per_col).enumerate() {
        let mut spans = entry(first).to_vec();
        if two && let Some(e) = HELP.get(i + per_col) {
            let used: usize = spans.iter().map(Span::width).sum();
            spans.push(Span::raw(" ".repeat(col_w.saturating_sub(used))));
            spans.extend(entry(e));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(""));
    let width = usize::from(width);
    let mut cur = vec![Span::raw(" "), Span::styled("detectors:", DIM)];
    let mut used = 11;
    for d in Detector::ALL {
        let item = 3 + d.name().len();
        if used + item > width && used > 1 {
            lines.push(Line::from(std::mem::take(&mut cur)));
            cur.push(Span::raw(""));
            used = 0;
        }
        cur.push(Span::styled(" ● ", Style::new().fg(detector_color(d))));
        cur.push(Span::raw(d.name()));
        used += item;
    }
    lines.push(Line::from(cur));
    lines.push(Line::styled(
        if scrolls {
            " ↑↓ scroll · other keys close"
        } else {
            " any key closes"
        },
        DIM,
    ));
    lines
}

/// The lines of a scrolled view `h` high: from `scroll` (clamped), and a
/// note of what is above and below.
fn scroll_view<T>(items: Vec<T>, scroll: usize, h: usize) -> (Vec<T>, Option<&'static str>) {
    let n = items.len();
    let off = scroll.min(n.saturating_sub(h));
    let above = off > 0;
    let below = off + h < n;
    let note = match (above, below) {
        (true, true) => Some("↑↓ more"),
        (false, true) => Some("↓ more"),
        (true, false) => Some("↑ more"),
        (false, false) => None,
    };
    (items.into_iter().skip(off).take(h).collect(), note)
}

fn help(app: &App, area: Rect, buf: &mut Buffer) {
    let (w, h, two) = help_box(area);
    let inner_h = usize::from(h.saturating_sub(2));
    let mut lines = help_lines(two, w.saturating_sub(2), false);
    if lines.len() > inner_h {
        lines = help_lines(two, w.saturating_sub(2), true);
    }
    let (lines, note) = scroll_view(lines, app.scroll, inner_h);
    let inner = popup_with(area, w, h, "refwatch keys", note, buf);
    Paragraph::new(lines).render(inner, buf);
}

/// How far the open overlay scrolls on a screen of the app's size.
pub fn overlay_scroll_max(app: &App) -> usize {
    let (w, h) = app.size;
    let area = Rect::new(0, 0, w, h);
    match app.overlay {
        Overlay::Help => {
            let (bw, bh, two) = help_box(area);
            help_lines(two, bw.saturating_sub(2), false)
                .len()
                .saturating_sub(usize::from(bh.saturating_sub(2)))
        }
        Overlay::Probes => {
            let (_, _, rows) = probes_box(app, area);
            probe_count(app).saturating_sub(rows)
        }
        _ => 0,
    }
}

/// Lines of the plan: one per hook and one per note.
fn probe_count(app: &App) -> usize {
    app.info.hooks.iter().map(|h| 1 + h.notes.len()).sum()
}

/// The plan box for a screen: its size, and how many plan lines it shows
/// (below its header line; the rules and keys take two lines at its foot).
fn probes_box(app: &App, area: Rect) -> (u16, u16, usize) {
    let n = probe_count(app) as u16;
    let w = area.width.saturating_sub(4);
    let h = (n + 6).min(area.height);
    (w, h, usize::from(h.saturating_sub(5)))
}

/// Column widths of the plan (HOOK, SYMBOL, MODE, STATUS) in `width`:
/// STATUS keeps at least two fifths; SYMBOL gives way first, then HOOK.
fn probe_widths(app: &App, width: u16) -> [usize; 4] {
    let hooks = &app.info.hooks;
    let longest = |f: &dyn Fn(&super::HookLine) -> usize, min: usize| {
        hooks.iter().map(f).max().unwrap_or(0).max(min)
    };
    let mut hook = longest(&|h| h.logical.chars().count(), 4);
    let mut sym = longest(&|h| h.symbol.as_ref().map_or(1, |s| s.chars().count()), 6);
    let mode = longest(&|h| h.mode.as_ref().map_or(1, |s| s.chars().count()), 4);
    let avail = usize::from(width).saturating_sub(3);
    let status_min = (avail * 2 / 5).max(16).min(avail);
    let mut over = (hook + sym + mode).saturating_sub(avail - status_min);
    let cut = over.min(sym.saturating_sub(8));
    sym -= cut;
    over -= cut;
    let cut = over.min(hook.saturating_sub(8));
    hook -= cut;
    let status = avail.saturating_sub(hook + sym + mode);
    [hook, sym, mode, status]
}

/// The plan as lines `width` wide: a line per hook, then its notes.
fn probe_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let [hw, sw, mw, stw] = probe_widths(app, width);
    let mut out = Vec::new();
    for hk in &app.info.hooks {
        let style = if hk.attached() {
            Style::new()
        } else {
            Style::new().fg(Color::Yellow)
        };
        let text = format!(
            "{:<hw$} {:<sw$} {:<mw$} {}",
            fit(&hk.logical, hw),
            fit(hk.symbol.as_deref().unwrap_or("-"), sw),
            fit(hk.mode.as_deref().unwrap_or("-"), mw),
            fit(&hk.status, stw),
        );
        out.push(Line::styled(text, style));
        for n in &hk.notes {
            let room = usize::from(width).saturating_sub(hw + 1);
            out.push(Line::from(vec![
                Span::raw(" ".repeat(hw + 1)),
                Span::styled(fit(&format!("note: {n}"), room), DIM),
            ]));
        }
    }
    out
}

fn probes(app: &App, area: Rect, buf: &mut Buffer) {
    let info = &app.info;
    let attached = info.hooks.iter().filter(|h| h.attached()).count();
    let (w, h, rows) = probes_box(app, area);
    let inner_w = w.saturating_sub(2);
    let title = format!(
        "probe plan · kernel {} · {attached}/{} attached",
        info.kernel,
        info.hooks.len()
    );
    let lines = probe_lines(app, inner_w);
    let total = lines.len();
    let (shown, note) = scroll_view(lines, app.scroll, rows);
    let inner = popup_with(area, w, h, &title, note, buf);
    let [hw, sw, mw, _] = probe_widths(app, inner_w);
    let mut body = vec![Line::styled(
        format!(
            "{:<hw$} {:<sw$} {:<mw$} {}",
            "HOOK", "SYMBOL", "MODE", "STATUS"
        ),
        Style::new().bold(),
    )];
    body.extend(shown);
    Paragraph::new(body).render(
        Rect::new(
            inner.x,
            inner.y,
            inner.width,
            inner.height.saturating_sub(2),
        ),
        buf,
    );
    let keys = if total > rows {
        let first = app.scroll.min(total - rows);
        format!(
            "lines {}–{} of {total} · ↑↓ PgUp PgDn scroll · Esc or p closes",
            first + 1,
            first + rows
        )
    } else {
        "Esc or p closes".to_string()
    };
    let foot = vec![
        Line::from(vec![
            Span::styled("rules: ", DIM),
            Span::raw(info.rules.clone()),
        ]),
        Line::styled(keys, DIM),
    ];
    Paragraph::new(foot).render(
        Rect::new(
            inner.x,
            inner.y + inner.height.saturating_sub(2),
            inner.width,
            2.min(inner.height),
        ),
        buf,
    );
}

fn export_dialog(app: &App, scope: Scope, format: ExportFormat, area: Rect, buf: &mut Buffer) {
    let inner = popup(area, 64, 10, "export", buf);
    let mark = |on: bool| if on { "◉" } else { "○" };
    let pick = |on: bool| {
        if on {
            Style::new().bold().fg(Color::Cyan)
        } else {
            Style::new()
        }
    };
    let sel = match app.selected_pfn {
        Some(p) => format!("selected PFN {p:#x}"),
        None => "selected PFN (none)".into(),
    };
    let fmt_span = |f: ExportFormat, key: &'static str, name: &'static str| {
        vec![
            Span::styled(key, KEY),
            Span::styled(
                format!(" {} {name}  ", mark(format == f)),
                pick(format == f),
            ),
        ]
    };
    let mut formats = vec![Span::raw("format  ")];
    formats.extend(fmt_span(ExportFormat::Jsonl, "j", "jsonl"));
    formats.extend(fmt_span(ExportFormat::Csv, "c", "csv"));
    formats.extend(fmt_span(ExportFormat::Perfetto, "p", "perfetto"));
    let source = if app.replay.is_some() {
        "the recording's events up to the time cursor"
    } else {
        "the events refwatch keeps per page (--history)"
    };
    let lines = vec![
        Line::from(vec![
            Span::raw("what    "),
            Span::styled("s", KEY),
            Span::styled(
                format!(" {} {sel}", mark(scope == Scope::Selected)),
                pick(scope == Scope::Selected),
            ),
        ]),
        Line::from(vec![
            Span::raw("        "),
            Span::styled("a", KEY),
            Span::styled(
                format!(
                    " {} the filtered set: {} PFNs",
                    mark(scope == Scope::Filtered),
                    fmt::count(app.order.len() as u64)
                ),
                pick(scope == Scope::Filtered),
            ),
        ]),
        Line::from(formats),
        Line::from(vec![
            Span::raw("to      "),
            Span::raw(app.export_dir.display().to_string()),
        ]),
        Line::styled(format!("        {source}"), DIM),
        Line::raw(""),
        Line::from(vec![
            Span::styled("Enter", KEY),
            Span::raw(" write  "),
            Span::styled("Esc", KEY),
            Span::raw(" cancel"),
        ]),
    ];
    Paragraph::new(lines).render(inner, buf);
}
