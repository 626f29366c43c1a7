//! The TUI's state: what the screen shows and how keys change it. No I/O and
//! no terminal: the runner feeds it data ([`App::refresh`]) and keys
//! ([`App::on_key`]), and carries out the [`Command`]s it returns.

use crate::{
    event::PageEvent,
    format::export::ExportFormat,
    format::recording,
    loader::PlanRow,
    plan::ModeChoice,
    rules::Rules,
    state::{Episode, Page, Tracker},
    symbols::Names,
};

use super::view::{self, Column, Row, SortSpec, ViewFilter};

/// One hook of the probe plan, as the header and the plan overlay show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookLine {
    pub logical: String,
    pub events: String,
    pub symbol: Option<String>,
    /// The mode it attached with; `None` when it is missing.
    pub mode: Option<String>,
    pub status: String,
    pub notes: Vec<String>,
}

impl HookLine {
    pub fn attached(&self) -> bool {
        self.mode.is_some()
    }
}

/// What the header says about the run: kernel, source, probe plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Kernel release.
    pub kernel: String,
    /// `live`, or the recording's file name.
    pub source: String,
    /// The attach mode asked for (`auto`, `fentry`, `kprobe`); empty when unknown.
    pub mode: String,
    pub hooks: Vec<HookLine>,
    /// How the refcount rules were decided.
    pub rules: String,
    /// Times are shown relative to this (monotonic ns).
    pub t0_ns: u64,
}

impl HeaderInfo {
    /// For a live run, from the attached plan.
    pub fn live(
        kernel: &str,
        mode: ModeChoice,
        precise: bool,
        rows: &[PlanRow],
        rules: &Rules,
        t0_ns: u64,
    ) -> Self {
        let mode = clap::ValueEnum::to_possible_value(&mode)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        // How references are observed: the page_ref tracepoints, or functions.
        let mode = format!("{mode}, {}", if precise { "precise" } else { "functions" });
        Self {
            kernel: kernel.to_string(),
            source: "live".into(),
            mode,
            hooks: rows
                .iter()
                .map(|r| HookLine {
                    logical: r.logical.into(),
                    events: r.events.into(),
                    symbol: r.symbol.map(Into::into),
                    mode: r.mode.map(|m| m.name().into()),
                    status: r.status.clone(),
                    notes: r.notes.clone(),
                })
                .collect(),
            rules: rules.basis.clone(),
            t0_ns,
        }
    }

    /// For a replay, from the recording's header.
    pub fn recorded(name: &str, h: &recording::Header, t0_ns: u64) -> Self {
        Self {
            kernel: h.kernel.clone(),
            source: name.to_string(),
            mode: if h.precise {
                "recorded, precise".into()
            } else {
                "recorded".into()
            },
            hooks: h
                .hooks
                .iter()
                .map(|r| HookLine {
                    logical: r.logical.clone(),
                    events: String::new(),
                    symbol: r.symbol.clone(),
                    mode: r.mode.clone(),
                    status: r.status.clone(),
                    notes: Vec::new(),
                })
                .collect(),
            rules: h.rules.basis.clone(),
            t0_ns,
        }
    }

    /// `fentry 5, kprobe 2`: how many hooks attached in each mode.
    pub fn modes_used(&self) -> String {
        let mut by: Vec<(String, usize)> = Vec::new();
        for h in &self.hooks {
            if let Some(m) = &h.mode {
                match by.iter_mut().find(|(n, _)| n == m) {
                    Some((_, c)) => *c += 1,
                    None => by.push((m.clone(), 1)),
                }
            }
        }
        let v: Vec<String> = by.into_iter().map(|(m, c)| format!("{m} {c}")).collect();
        v.join(", ")
    }
}

/// Counters from the collector (or the replay).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub events: u64,
    /// Events per second over the last second.
    pub rate: f64,
    /// Events the kernel side could not queue (ring buffer full).
    pub dropped: u64,
    pub decode_errors: u64,
    pub evicted: u64,
    /// Events the user's filters left out in the kernel (not losses).
    pub skipped: u64,
    /// Events past `--max-rate`: counted, not recorded.
    pub capped: u64,
    /// The ring buffer's fullest over the last second, as a share of its
    /// size (0–1); `None` in a replay.
    pub ring_fill: Option<f64>,
}

/// Where a replay stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayStatus {
    pub playing: bool,
    pub speed: f64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub cursor_ns: u64,
    pub events_done: u64,
    pub events_total: u64,
}

/// What [`App::refresh`] reads.
#[derive(Clone, Copy)]
pub struct Feed<'a> {
    pub tracker: &'a Tracker,
    /// How the events name their code (live or recorded).
    pub stacks: &'a dyn Names,
    /// The time the view is at (monotonic ns): now when live, the cursor in a replay.
    pub now_ns: u64,
}

/// The selected page, copied out of the tracker.
#[derive(Debug, Clone)]
pub struct DetailSnap {
    pub page: Page,
    /// The page's history, as events.
    pub events: Vec<PageEvent>,
    /// Per history event: the function it was seen in and its stack.
    pub stacks: Vec<(String, Vec<String>)>,
    /// Episodes open now, by detector.
    pub open: Vec<Episode>,
    /// The latest closed episode, when none is open.
    pub last_closed: Option<Episode>,
    /// The page type's idle refcount.
    pub idle: i32,
    key: (u64, u64, usize, usize),
}

/// The pane keys go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Table,
    Events,
}

/// Export scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Selected,
    Filtered,
}

/// What is drawn over the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Probes,
    Export {
        scope: Scope,
        format: ExportFormat,
    },
    /// The stuck pages by holder ([`super::holders`]).
    Holders,
}

/// A line being typed in the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Search,
    Filter,
}

/// A message in the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// Something only the runner can do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Quit,
    Export(ExportRequest),
    Replay(ReplayCommand),
    /// Watch this page with a hardware watchpoint, or stop watching it
    /// when it is watched or queued already (live only).
    Watch(u64),
}

/// Write these PFNs' events.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub pfns: Vec<u64>,
    pub format: ExportFormat,
    /// For the file name: `pfn-0x40000`, `filtered-12-pfns`.
    pub label: String,
}

/// Replay controls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayCommand {
    TogglePlay,
    StepForward,
    StepBack,
    /// Relative seek in nanoseconds.
    Seek(i64),
    Start,
    End,
    /// Multiply the speed.
    Speed(f64),
}

/// The whole TUI state.
#[derive(Debug, Clone)]
pub struct App {
    pub info: HeaderInfo,
    pub stats: Stats,
    /// `Some` in a replay.
    pub replay: Option<ReplayStatus>,
    /// The hardware watchpoints, once the live session has a watcher.
    pub watch: Option<crate::watch::Status>,
    pub(crate) sort: SortSpec,
    pub(crate) filter: ViewFilter,
    pub(crate) search: Option<String>,
    pub(crate) paused: bool,
    /// Every tracked page, in no order.
    pub(crate) rows: Vec<Row>,
    /// Indices into `rows` the table shows, in order.
    pub(crate) order: Vec<u32>,
    /// Tracked pages per page-map type (index: type value).
    pub(crate) counts: [u64; 8],
    pub(crate) stuck: u64,
    /// Pages whose state is unknown because events were lost.
    pub(crate) unknown: u64,
    /// Events on new pages not followed (`--max-pfns` full), and episodes
    /// forgotten or not kept (episode cap).
    pub(crate) over_cap: u64,
    pub(crate) episodes_left_out: u64,
    pub(crate) now_ns: u64,
    data_key: Option<(u64, usize, usize, u64)>,
    pub(crate) detail: Option<DetailSnap>,
    /// The stuck pages by holder, and the one selected in the holders view.
    pub(crate) holder_groups: Vec<super::holders::GroupRow>,
    pub(crate) holder_sel: usize,
    pub(crate) selected: usize,
    pub(crate) offset: usize,
    pub(crate) selected_pfn: Option<u64>,
    pub(crate) size: (u16, u16),
    pub(crate) focus: Focus,
    pub(crate) show_detail: bool,
    /// Selected event in the detail pane; `None` follows the latest.
    pub(crate) event_sel: Option<usize>,
    pub(crate) overlay: Overlay,
    /// How far the help or the probe plan is scrolled (lines).
    pub(crate) scroll: usize,
    pub(crate) prompt: Option<Prompt>,
    pub(crate) message: Option<Message>,
    pub(crate) quit: bool,
    /// Where exports are written (shown in the export dialog).
    pub export_dir: std::path::PathBuf,
    /// `--vmlinux` (or Debian's debug image of the running kernel): the
    /// source line of each frame shown.
    pub source_lines: Option<std::rc::Rc<crate::symbols::lines::LineCache>>,
}

impl App {
    /// A frame as the stack panes show it: with its source line when known.
    pub(crate) fn frame_text(&self, frame: &str) -> String {
        match self.source_lines.as_ref().and_then(|c| c.of(frame)) {
            Some(l) => format!("{frame}  {l}"),
            None => frame.to_owned(),
        }
    }

    pub fn new(info: HeaderInfo) -> Self {
        Self {
            info,
            stats: Stats::default(),
            replay: None,
            watch: None,
            sort: SortSpec::default(),
            filter: ViewFilter::default(),
            search: None,
            paused: false,
            rows: Vec::new(),
            order: Vec::new(),
            counts: [0; 8],
            stuck: 0,
            unknown: 0,
            over_cap: 0,
            episodes_left_out: 0,
            now_ns: 0,
            data_key: None,
            detail: None,
            holder_groups: Vec::new(),
            holder_sel: 0,
            selected: 0,
            offset: 0,
            selected_pfn: None,
            size: (80, 24),
            focus: Focus::Table,
            show_detail: true,
            event_sel: None,
            overlay: Overlay::None,
            scroll: 0,
            prompt: None,
            message: None,
            quit: false,
            export_dir: std::path::PathBuf::from("."),
            source_lines: None,
        }
    }

    /// Whether a quit was asked for.
    pub fn quitting(&self) -> bool {
        self.quit
    }

    /// Whether the live view is frozen.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// PFNs the table shows, in order.
    pub fn visible_pfns(&self) -> impl Iterator<Item = u64> + '_ {
        self.order.iter().map(|i| self.rows[*i as usize].pfn)
    }

    /// Number of rows the table shows.
    pub fn shown(&self) -> usize {
        self.order.len()
    }

    /// The selected PFN.
    pub fn selected_pfn(&self) -> Option<u64> {
        self.selected_pfn
    }

    pub fn set_message(&mut self, text: impl Into<String>, error: bool) {
        self.message = Some(Message {
            text: text.into(),
            error,
        });
    }

    /// The terminal size; the table's height follows from it.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.size = (width, height);
        self.keep_selection_visible();
    }

    /// Rows of the page table that fit on screen.
    pub(crate) fn page_rows(&self) -> usize {
        let (w, h) = self.size;
        super::render::areas(self, ratatui::layout::Rect::new(0, 0, w, h))
            .table
            .height
            .saturating_sub(2) as usize
    }

    /// Takes in new data: rebuilds the rows when the tracker changed (unless
    /// paused), then the order, then the selected page's detail.
    pub fn refresh(&mut self, feed: &Feed<'_>) {
        if !self.paused {
            self.now_ns = feed.now_ns;
            let t = feed.tracker;
            let key = (t.events(), t.episodes.len(), t.len(), t.evicted());
            if self.data_key != Some(key) {
                self.data_key = Some(key);
                self.rebuild_rows(t);
                self.holder_groups = super::holders::rows(t, feed.stacks);
                self.reorder();
            }
        }
        self.refresh_detail(feed);
    }

    /// After keys: the detail follows the selection.
    pub fn sync(&mut self, feed: &Feed<'_>) {
        self.refresh_detail(feed);
    }

    fn rebuild_rows(&mut self, t: &Tracker) {
        self.rows.clear();
        self.rows.extend(t.pages().map(Row::from_page));
        self.counts = [0; 8];
        self.stuck = 0;
        self.unknown = t.unknown_pages().len() as u64;
        self.over_cap = t.over_cap();
        self.episodes_left_out = t.episodes_dropped() + t.episodes_unkept();
        for r in &self.rows {
            self.counts[usize::from(r.pgmap_type).min(7)] += 1;
            self.stuck += u64::from(r.stuck());
        }
    }

    /// Recomputes the order from the rows, keeping the selected PFN selected
    /// at the same height on screen when it is still shown.
    pub(crate) fn reorder(&mut self) {
        let screen_pos = self.selected.saturating_sub(self.offset);
        // On the first row, the selection follows the top of the table (the
        // worst page, by default); elsewhere it stays on its PFN.
        let follow_top = self.selected == 0;
        self.order = view::order(&self.rows, &self.filter, self.sort);
        let found = if follow_top {
            Some(0)
        } else {
            self.selected_pfn.and_then(|pfn| self.position_of(pfn))
        };
        match found {
            Some(i) => {
                self.selected = i;
                self.offset = i.saturating_sub(screen_pos);
            }
            None => {
                self.selected = self.selected.min(self.order.len().saturating_sub(1));
            }
        }
        self.after_move();
    }

    fn position_of(&self, pfn: u64) -> Option<usize> {
        self.order
            .iter()
            .position(|i| self.rows[*i as usize].pfn == pfn)
    }

    pub(crate) fn row_at(&self, i: usize) -> Option<&Row> {
        self.order.get(i).map(|r| &self.rows[*r as usize])
    }

    /// Updates the selected PFN and scroll offset after the selection moved.
    pub(crate) fn after_move(&mut self) {
        let pfn = self.row_at(self.selected).map(|r| r.pfn);
        if pfn != self.selected_pfn {
            self.event_sel = None;
        }
        self.selected_pfn = pfn;
        self.keep_selection_visible();
    }

    fn keep_selection_visible(&mut self) {
        let h = self.page_rows().max(1);
        let len = self.order.len();
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + h {
            self.offset = self.selected + 1 - h;
        }
        // No empty space below the last row.
        self.offset = self.offset.min(len.saturating_sub(h));
    }

    fn refresh_detail(&mut self, feed: &Feed<'_>) {
        let Some(pfn) = self.selected_pfn else {
            self.detail = None;
            return;
        };
        let Some(page) = feed.tracker.page(pfn) else {
            self.detail = None;
            return;
        };
        let key = (
            pfn,
            page.last_ns,
            page.history.len(),
            feed.tracker.episodes.len(),
        );
        if let Some(d) = &self.detail
            && d.page.pfn == pfn
            && (self.paused || (d.key == key && d.page.counts == page.counts))
        {
            return;
        }
        let mut open: Vec<Episode> = page
            .open
            .values()
            .filter_map(|i| feed.tracker.episodes.get(*i).cloned())
            .collect();
        open.sort_by_key(|e| e.detector);
        let last_closed = if open.is_empty() {
            feed.tracker
                .episodes
                .iter()
                .rev()
                .find(|e| e.pfn == pfn)
                .cloned()
        } else {
            None
        };
        let events: Vec<PageEvent> = page.history.iter().collect();
        self.detail = Some(DetailSnap {
            stacks: events.iter().map(|e| feed.stacks.of(e)).collect(),
            events,
            page: page.clone(),
            open,
            last_closed,
            idle: feed.tracker.rules.idle(page.pgmap_type),
            key,
        });
    }

    /// The selected event of the detail pane (index into the page's history).
    pub(crate) fn selected_event(&self) -> Option<usize> {
        let n = self.detail.as_ref()?.page.history.len();
        if n == 0 {
            return None;
        }
        Some(self.event_sel.map_or(n - 1, |i| i.min(n - 1)))
    }

    /// The sort order.
    pub fn sort(&self) -> (Column, bool, bool) {
        (
            self.sort.column,
            self.sort.descending,
            self.sort.stuck_first,
        )
    }

    /// The filter, in the syntax the filter prompt reads.
    pub fn filter_text(&self) -> String {
        self.filter.to_string()
    }

    /// Counts of tracked pages per type, and stuck pages.
    pub fn counts(&self) -> (&[u64; 8], u64) {
        (&self.counts, self.stuck)
    }
}
