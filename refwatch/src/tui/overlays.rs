//! The boxes drawn over the main screen: help, the probe plan, the export
//! dialog, and the popup frame they (and the holders view) share.

use ratatui::{
    buffer::Buffer,
    layout::{Alignment, Rect},
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Block, Clear, Paragraph, Widget},
};

use super::{
    fmt,
    model::{App, Overlay, Scope},
    render::{DIM, KEY, detector_color},
};
use crate::{format::export::ExportFormat, state::Detector};

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

pub(super) fn help(app: &App, area: Rect, buf: &mut Buffer) {
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

pub(super) fn probes(app: &App, area: Rect, buf: &mut Buffer) {
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

pub(super) fn export_dialog(
    app: &App,
    scope: Scope,
    format: ExportFormat,
    area: Rect,
    buf: &mut Buffer,
) {
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
