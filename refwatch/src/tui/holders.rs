//! The holders view (`h`): the stuck pages grouped by who holds them
//! ([`crate::state::groups`]), one line per holder with its pages as PFN
//! ranges, and the selected holder's stack. Enter shows that holder's pages
//! in the page table (a `pfn:` filter; `c` clears it).

use ratatui::{
    buffer::Buffer,
    crossterm::event::{KeyCode, KeyEvent},
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::{
    fmt,
    model::{App, Command, Overlay},
    render::{detector_color, fit, popup_with},
};
use crate::{
    event::{Stack, pgmap_name},
    state::{
        Detector, Tracker,
        groups::{self, StackId, ranges_text},
    },
    symbols::Names,
};

/// One holder's stuck pages, as the view shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    /// `workload/812 get`, or `holder unknown`.
    pub who: String,
    pub pages: usize,
    pub ranges: Vec<(u64, u64)>,
    pub types: String,
    pub detector: Detector,
    pub since_ns: u64,
    /// The holder's stack, innermost first.
    pub stack: Vec<String>,
    /// Why no holder is known.
    pub note: Option<String>,
}

/// The groups of the pages stuck in `t`, most pages first.
pub fn rows(t: &Tracker, stacks: &dyn Names) -> Vec<GroupRow> {
    let id = |s: &Stack| -> StackId { stacks.stack_id(s) };
    groups::stuck_groups(t, &id)
        .into_iter()
        .map(|g| {
            let h = g.holder.as_ref();
            let types: Vec<&str> = g.pgmap_types.iter().map(|t| pgmap_name(*t)).collect();
            GroupRow {
                who: h.map_or_else(
                    || "holder unknown".into(),
                    |h| format!("{}/{} {}", h.comm, h.tgid, h.kind.name()),
                ),
                pages: g.pages(),
                ranges: g.ranges(),
                types: types.join(","),
                detector: g.key.detector,
                since_ns: g.since_ns,
                stack: h.map_or_else(Vec::new, |h| stacks.frames(&h.stack)),
                note: g.key.note.clone(),
            }
        })
        .collect()
}

impl App {
    /// `h`: the holders view, the largest holder selected.
    pub(crate) fn open_holders(&mut self) {
        self.overlay = Overlay::Holders;
        self.holder_sel = 0;
    }

    /// Keys in the holders view.
    pub(crate) fn holders_key(&mut self, key: KeyEvent) -> Option<Command> {
        let n = self.holder_groups.len();
        let last = n.saturating_sub(1);
        match key.code {
            KeyCode::Esc | KeyCode::Char('h' | 'q') => self.overlay = Overlay::None,
            KeyCode::Up | KeyCode::Char('k') => self.holder_sel = self.holder_sel.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.holder_sel = (self.holder_sel + 1).min(last),
            KeyCode::Home | KeyCode::Char('g') => self.holder_sel = 0,
            KeyCode::End | KeyCode::Char('G') => self.holder_sel = last,
            KeyCode::Enter => {
                self.overlay = Overlay::None;
                let Some(g) = self.holder_groups.get(self.holder_sel.min(last)).cloned() else {
                    self.set_message("no stuck pages: no holder to show", false);
                    return None;
                };
                self.filter = super::view::ViewFilter {
                    pfns: g.ranges,
                    ..Default::default()
                };
                // The table from its top: the group's first page.
                self.selected = 0;
                self.reorder();
                self.set_message(
                    format!(
                        "the {} page(s) {} holds ({}); c clears the filter",
                        g.pages,
                        g.who,
                        g.detector.name()
                    ),
                    false,
                );
            }
            _ => {}
        }
        None
    }
}

const DIM: Style = Style::new().fg(Color::DarkGray);

/// Draws the holders view over `area`.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let groups = &app.holder_groups;
    let w = area.width.saturating_sub(4).min(140);
    // Rows, then a rule, the stack (up to 8 frames) and the keys.
    let stack_h = groups
        .get(app.holder_sel)
        .map_or(0, |g| g.stack.len().min(8) + usize::from(g.note.is_some()));
    let want = (groups.len().max(1) + 1 + 1 + stack_h + 1 + 2) as u16;
    let h = want.min(area.height.saturating_sub(2));
    let pages: usize = groups.iter().map(|g| g.pages).sum();
    let title = format!(
        "holders · {} page(s) stuck, {} holder(s)",
        pages,
        groups.len()
    );
    let inner = popup_with(area, w, h, &title, None, buf);
    let width = usize::from(inner.width);
    // PAGES, DETECTOR and AGE are fixed; HOLDER and PFNS share the rest.
    let (pw, dw, aw) = (5, 18, 7);
    let flex = width.saturating_sub(pw + dw + aw + 4);
    let hw = (flex * 2 / 5).max(8);
    let rw = flex.saturating_sub(hw);
    let mut lines = vec![Line::styled(
        format!(
            "{:<hw$} {:>pw$} {:<rw$} {:<dw$} {:>aw$}",
            "HOLDER", "PAGES", "PFNS", "DETECTOR", "AGE"
        ),
        Style::new().bold(),
    )];
    // Room for rows: what the stack, the rule and the keys leave.
    let foot = 1 + stack_h + 1;
    let rows_h = usize::from(inner.height).saturating_sub(1 + foot).max(1);
    if groups.is_empty() {
        lines.push(Line::styled("no stuck pages", DIM));
    }
    let sel = app.holder_sel.min(groups.len().saturating_sub(1));
    let first = sel.saturating_sub(rows_h.saturating_sub(1));
    for (i, g) in groups.iter().enumerate().skip(first).take(rows_h) {
        let pfns = format!("{} {}", ranges_text(&g.ranges, 4), g.types);
        let age = fmt::age(app.now_ns.saturating_sub(g.since_ns));
        let mut style = Style::new().fg(detector_color(g.detector));
        if i == sel {
            style = style.add_modifier(Modifier::REVERSED);
        }
        lines.push(Line::styled(
            format!(
                "{:<hw$} {:>pw$} {:<rw$} {:<dw$} {:>aw$}",
                fit(&g.who, hw),
                g.pages,
                fit(&pfns, rw),
                g.detector.name(),
                age
            ),
            style,
        ));
    }
    let body_h = (lines.len() as u16).min(inner.height);
    Paragraph::new(lines).render(Rect::new(inner.x, inner.y, inner.width, body_h), buf);
    let mut foot_lines = vec![Line::styled("─".repeat(width), DIM)];
    if let Some(g) = groups.get(sel) {
        if let Some(n) = &g.note {
            foot_lines.push(Line::styled(fit(n, width), DIM));
        }
        for f in g.stack.iter().take(8) {
            foot_lines.push(Line::raw(fit(&format!("  {}", app.frame_text(f)), width)));
        }
    }
    foot_lines.push(Line::from(vec![Span::styled(
        fit(
            "↑↓ select · Enter: its pages in the table (c clears) · Esc or h closes",
            width,
        ),
        DIM,
    )]));
    let fh = (foot_lines.len() as u16).min(inner.height.saturating_sub(body_h));
    Paragraph::new(foot_lines).render(
        Rect::new(inner.x, inner.y + inner.height - fh, inner.width, fh),
        buf,
    );
}
