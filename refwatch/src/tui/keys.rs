//! Keys → state changes, and the [`Command`]s only the runner can carry out.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    model::{
        App, Command, ExportRequest, Focus, Overlay, Prompt, PromptKind, ReplayCommand, Scope,
    },
    view::{self, Column, TYPES, ViewFilter},
};
use crate::format::export::ExportFormat;

/// Seek step of the arrow keys in a replay.
pub const SEEK_NS: i64 = 5_000_000_000;

impl App {
    /// Handles one key. Returns what the runner must do, if anything.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return Some(Command::Quit);
        }
        if self.prompt.is_some() {
            self.prompt_key(key);
            return None;
        }
        match self.overlay {
            Overlay::None => {}
            Overlay::Help => {
                // The scroll keys scroll (a small screen shows part of it);
                // any other key closes the help.
                if !self.scroll_overlay(key.code) {
                    self.overlay = Overlay::None;
                }
                return None;
            }
            Overlay::Probes => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('p' | 'q') | KeyCode::Enter
                ) {
                    self.overlay = Overlay::None;
                } else {
                    self.scroll_overlay(key.code);
                }
                return None;
            }
            Overlay::Export { .. } => return self.export_key(key),
            Overlay::Holders => return self.holders_key(key),
        }
        self.message = None;
        self.main_key(key)
    }

    fn main_key(&mut self, key: KeyEvent) -> Option<Command> {
        let page = self.page_rows().max(1) as isize;
        match key.code {
            KeyCode::Char('q') => {
                self.quit = true;
                return Some(Command::Quit);
            }
            KeyCode::Char('?') | KeyCode::F(1) => {
                self.overlay = Overlay::Help;
                self.scroll = 0;
            }
            KeyCode::Char('p') => {
                self.overlay = Overlay::Probes;
                self.scroll = 0;
            }
            KeyCode::Char('h') => self.open_holders(),
            KeyCode::Char('w') => return self.watch_key(),
            KeyCode::Char('e') => {
                self.overlay = Overlay::Export {
                    scope: Scope::Selected,
                    format: ExportFormat::Jsonl,
                }
            }
            KeyCode::Char(' ') if self.replay.is_some() => {
                return Some(Command::Replay(ReplayCommand::TogglePlay));
            }
            KeyCode::Char(' ') => {
                self.paused = !self.paused;
                if self.paused {
                    self.set_message(
                        "paused: the view is frozen, collection goes on (space resumes)",
                        false,
                    );
                }
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-page),
            KeyCode::PageDown => self.move_by(page),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            // Too low for both panes: Enter switches between them.
            KeyCode::Enter if super::render::compact(self) => {
                self.show_detail = true;
                self.focus = match self.focus {
                    Focus::Table => Focus::Events,
                    Focus::Events => Focus::Table,
                };
                self.after_move();
            }
            KeyCode::Enter => {
                self.show_detail = !self.show_detail;
                if !self.show_detail {
                    self.focus = Focus::Table;
                }
                self.after_move();
            }
            KeyCode::Tab | KeyCode::BackTab if self.show_detail => {
                self.focus = match self.focus {
                    Focus::Table => Focus::Events,
                    Focus::Events => Focus::Table,
                };
            }
            KeyCode::Char(c @ '1'..='8') => {
                let col = Column::ALL[usize::from(c as u8 - b'1')];
                if self.sort.column == col {
                    self.sort.descending = !self.sort.descending;
                } else {
                    self.sort.column = col;
                    self.sort.descending = col.descending_by_default();
                }
                self.reorder();
            }
            KeyCode::Char('s') => {
                let col = self.sort.column.next();
                self.sort.column = col;
                self.sort.descending = col.descending_by_default();
                self.reorder();
            }
            KeyCode::Char('r') => {
                self.sort.descending = !self.sort.descending;
                self.reorder();
            }
            KeyCode::Char('!') => {
                self.sort.stuck_first = !self.sort.stuck_first;
                self.reorder();
            }
            KeyCode::Char('/') => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::Search,
                    text: String::new(),
                })
            }
            KeyCode::Char('n') => self.search_next(true),
            KeyCode::Char('N') => self.search_next(false),
            KeyCode::Char('f') => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::Filter,
                    text: self.filter.to_string(),
                })
            }
            KeyCode::Char('t') => {
                self.cycle_type();
                self.reorder();
            }
            KeyCode::Char('o') => {
                self.filter.stuck_only = !self.filter.stuck_only;
                self.reorder();
            }
            KeyCode::Char('c') => {
                self.filter = ViewFilter::default();
                self.search = None;
                self.reorder();
                self.set_message("filters and search cleared", false);
            }
            KeyCode::Esc => {
                if self.focus == Focus::Events {
                    self.focus = Focus::Table;
                } else {
                    self.search = None;
                }
            }
            _ => return self.replay_key(key),
        }
        None
    }

    /// Scrolls the help or the probe plan; whether `code` is a scroll key.
    fn scroll_overlay(&mut self, code: KeyCode) -> bool {
        let max = super::render::overlay_scroll_max(self);
        if max == 0 {
            return false;
        }
        let page = usize::from(self.size.1.saturating_sub(6)).max(1);
        let cur = self.scroll.min(max);
        self.scroll = match code {
            KeyCode::Up | KeyCode::Char('k') => cur.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => (cur + 1).min(max),
            KeyCode::PageUp => cur.saturating_sub(page),
            KeyCode::PageDown | KeyCode::Char(' ') => (cur + page).min(max),
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => max,
            _ => return false,
        };
        true
    }

    fn replay_key(&mut self, key: KeyEvent) -> Option<Command> {
        let cmd = match key.code {
            KeyCode::Char('.') => ReplayCommand::StepForward,
            KeyCode::Char(',') => ReplayCommand::StepBack,
            KeyCode::Right => ReplayCommand::Seek(SEEK_NS),
            KeyCode::Left => ReplayCommand::Seek(-SEEK_NS),
            KeyCode::Char('+' | '=') => ReplayCommand::Speed(2.0),
            KeyCode::Char('-') => ReplayCommand::Speed(0.5),
            KeyCode::Char('[') => ReplayCommand::Start,
            KeyCode::Char(']') => ReplayCommand::End,
            _ => return None,
        };
        if self.replay.is_none() {
            self.set_message("that key controls replays (refwatch replay FILE)", false);
            return None;
        }
        Some(Command::Replay(cmd))
    }

    /// `w`: asks the runner to watch the selected page (or to stop
    /// watching it); a replay has no kernel to watch in.
    fn watch_key(&mut self) -> Option<Command> {
        if self.replay.is_some() {
            self.set_message(
                "watching needs a live attach; a replay shows what was watched",
                true,
            );
            return None;
        }
        match self.selected_pfn {
            Some(pfn) => Some(Command::Watch(pfn)),
            None => {
                self.set_message("no page selected to watch", true);
                None
            }
        }
    }

    fn move_by(&mut self, delta: isize) {
        match self.focus {
            Focus::Table => {
                let n = self.order.len();
                if n == 0 {
                    return;
                }
                self.selected = self.selected.saturating_add_signed(delta).min(n - 1);
                self.after_move();
            }
            Focus::Events => {
                let Some(d) = &self.detail else {
                    return;
                };
                let n = d.page.history.len();
                if n == 0 {
                    return;
                }
                let cur = self.selected_event().unwrap_or(n - 1);
                let next = cur.saturating_add_signed(delta).min(n - 1);
                // Back at the newest event: follow new ones again.
                self.event_sel = (next + 1 < n).then_some(next);
            }
        }
    }

    fn cycle_type(&mut self) {
        let present: Vec<u32> = TYPES
            .into_iter()
            .filter(|t| self.counts[*t as usize] > 0)
            .collect();
        let cycle = if present.is_empty() {
            TYPES.to_vec()
        } else {
            present
        };
        let next = match self.filter.types.as_slice() {
            [] => cycle.first().copied(),
            [t] => cycle
                .iter()
                .position(|c| c == t)
                .and_then(|i| cycle.get(i + 1))
                .copied(),
            _ => None,
        };
        self.filter.types = next.into_iter().collect();
    }

    /// Index of the next row matching `query` from `from` (inclusive), wrapping.
    fn find(&self, from: usize, forward: bool, query: &str) -> Option<usize> {
        let n = self.order.len();
        let mut scratch = String::new();
        (0..n)
            .map(|k| {
                if forward {
                    (from + k) % n
                } else {
                    (from % n + n - k) % n
                }
            })
            .find(|i| {
                self.row_at(*i)
                    .is_some_and(|r| view::search_matches(r, query, &mut scratch))
            })
    }

    fn search_next(&mut self, forward: bool) {
        let Some(q) = self.search.clone() else {
            self.set_message("no search: press / first", false);
            return;
        };
        let n = self.order.len();
        if n == 0 {
            return;
        }
        let from = if forward {
            self.selected + 1
        } else {
            self.selected + n - 1
        };
        match self.find(from, forward, &q) {
            Some(i) => {
                self.selected = i;
                self.after_move();
            }
            None => self.set_message(format!("no match for {q:?}"), true),
        }
    }

    fn prompt_key(&mut self, key: KeyEvent) {
        let Some(p) = self.prompt.as_mut() else {
            return;
        };
        match key.code {
            KeyCode::Esc => {
                if p.kind == PromptKind::Search {
                    self.search = None;
                }
                self.prompt = None;
                self.message = None;
            }
            KeyCode::Backspace => {
                p.text.pop();
            }
            KeyCode::Enter => {
                let p = p.clone();
                match p.kind {
                    PromptKind::Search => {
                        self.prompt = None;
                        let q = p.text.trim().to_string();
                        self.search = (!q.is_empty()).then_some(q.clone());
                        if !q.is_empty() && self.find(self.selected, true, &q).is_none() {
                            self.set_message(format!("no match for {q:?}"), true);
                        }
                    }
                    PromptKind::Filter => match ViewFilter::parse(&p.text) {
                        Ok(f) => {
                            self.prompt = None;
                            self.message = None;
                            self.filter = f;
                            self.reorder();
                        }
                        Err(e) => self.set_message(e, true),
                    },
                }
                return;
            }
            KeyCode::Char(c) => p.text.push(c),
            _ => return,
        }
        // Incremental search: jump as the query grows.
        if let Some(p) = &self.prompt
            && p.kind == PromptKind::Search
            && !p.text.trim().is_empty()
        {
            let q = p.text.trim().to_string();
            if let Some(i) = self.find(self.selected, true, &q) {
                self.selected = i;
                self.after_move();
            }
            self.search = Some(q);
        }
    }

    fn export_key(&mut self, key: KeyEvent) -> Option<Command> {
        let Overlay::Export { scope, format } = &mut self.overlay else {
            return None;
        };
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => self.overlay = Overlay::None,
            KeyCode::Char('s') => *scope = Scope::Selected,
            KeyCode::Char('a') => *scope = Scope::Filtered,
            KeyCode::Up | KeyCode::Down => {
                *scope = match scope {
                    Scope::Selected => Scope::Filtered,
                    Scope::Filtered => Scope::Selected,
                }
            }
            KeyCode::Char('j') => *format = ExportFormat::Jsonl,
            KeyCode::Char('c') => *format = ExportFormat::Csv,
            KeyCode::Char('p') => *format = ExportFormat::Perfetto,
            KeyCode::Tab | KeyCode::Right | KeyCode::Left => {
                *format = match format {
                    ExportFormat::Jsonl => ExportFormat::Csv,
                    ExportFormat::Csv => ExportFormat::Perfetto,
                    ExportFormat::Perfetto => ExportFormat::Jsonl,
                }
            }
            KeyCode::Enter => {
                let (scope, format) = (*scope, *format);
                self.overlay = Overlay::None;
                let (pfns, label) = match scope {
                    Scope::Selected => match self.selected_pfn {
                        Some(p) => (vec![p], format!("pfn-{p:#x}")),
                        None => {
                            self.set_message("nothing to export: no page selected", true);
                            return None;
                        }
                    },
                    Scope::Filtered => {
                        let pfns: Vec<u64> = self.visible_pfns().collect();
                        if pfns.is_empty() {
                            self.set_message("nothing to export: the table is empty", true);
                            return None;
                        }
                        let label = format!("filtered-{}-pfns", pfns.len());
                        (pfns, label)
                    }
                };
                return Some(Command::Export(ExportRequest {
                    pfns,
                    format,
                    label,
                }));
            }
            _ => {}
        }
        None
    }
}
