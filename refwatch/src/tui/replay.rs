//! Replaying a recording into a [`Tracker`] by its event times: play, pause,
//! step one event either way, seek, speed. The recording is read as it
//! plays, not held: going back re-reads it from the start and rebuilds the
//! tracker up to the new cursor (detectors only run forward).

use std::{
    collections::VecDeque,
    io::BufRead,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};

use super::model::{ReplayCommand, ReplayStatus, Stats};
use crate::{
    format::json::JsonEvent,
    format::recording::{Header, Line, Reader, Recording, line_time},
    readback::Readback,
    state::{DEFAULT_HISTORY, DEFAULT_MAX_PFNS, Thresholds, Tracker},
};

/// Slowest and fastest playback.
pub const MIN_SPEED: f64 = 1.0 / 64.0;
pub const MAX_SPEED: f64 = 4096.0;

/// Where the recording is read from, again on every rewind.
#[derive(Clone)]
enum Source {
    File(PathBuf),
    /// A recording already in memory (tests, small uses).
    Bytes(Arc<[u8]>, String),
}

type LineReader = Reader<Box<dyn BufRead>>;

/// Shared bytes a [`std::io::Cursor`] can read.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Source {
    fn open(&self) -> Result<LineReader> {
        match self {
            Self::File(p) => {
                let f = std::fs::File::open(p)
                    .with_context(|| format!("open recording {}", p.display()))?;
                let r: Box<dyn BufRead> = Box::new(std::io::BufReader::with_capacity(1 << 16, f));
                Reader::new(r, &p.display().to_string())
            }
            Self::Bytes(b, name) => {
                let r: Box<dyn BufRead> = Box::new(std::io::Cursor::new(ArcBytes(Arc::clone(b))));
                Reader::new(r, name)
            }
        }
    }
}

/// A recording being replayed.
pub struct Replay {
    source: Source,
    reader: LineReader,
    /// The next line, read but not applied.
    next: Option<Line>,
    /// Lines taken from `reader` since the start (`next` included).
    read: u64,
    /// Lines after the header, as counted when the replay began: the
    /// replay goes no further (a recording still being written grows).
    lines_total: u64,
    header: Header,
    complete: bool,
    thresholds: Thresholds,
    /// Lines applied so far.
    pos: u64,
    pub tracker: Tracker,
    pub cursor_ns: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub playing: bool,
    pub speed: f64,
    /// Function and stack of every event in the tracker, by its stack tag.
    pub stacks: Readback,
    dropped: u64,
    /// Events past `--max-rate` as last recorded.
    capped: u64,
    events_done: u64,
    events_total: u64,
    /// Times of the events applied in the last second before the latest.
    recent: VecDeque<u64>,
    /// Reading the recording again failed (it changed or went away).
    error: Option<anyhow::Error>,
}

impl Replay {
    /// Replays the recording at `path`, reading it once first to check
    /// every line, so playing never fails half way (unless the file
    /// changes).
    pub fn open(
        path: &Path,
        thresholds: Option<Thresholds>,
        speed: f64,
        playing: bool,
    ) -> Result<Self> {
        Self::with_source(Source::File(path.to_path_buf()), thresholds, speed, playing)
    }

    /// Replays a recording already read.
    pub fn new(rec: Recording, thresholds: Thresholds, speed: f64, playing: bool) -> Result<Self> {
        let mut bytes = serde_json::to_vec(&Line::Header(rec.header)).context("encode")?;
        bytes.push(b'\n');
        for l in &rec.lines {
            serde_json::to_writer(&mut bytes, l).context("encode")?;
            bytes.push(b'\n');
        }
        Self::with_source(
            Source::Bytes(Arc::from(bytes), "recording".into()),
            Some(thresholds),
            speed,
            playing,
        )
    }

    fn with_source(
        source: Source,
        thresholds: Option<Thresholds>,
        speed: f64,
        playing: bool,
    ) -> Result<Self> {
        // The first pass: every check, the event count and the time span.
        let mut r = source.open()?;
        let mut lines_total = 0;
        let mut events_total = 0;
        let mut first: Option<u64> = None;
        while let Some((_, l)) = r.next_line()? {
            lines_total += 1;
            if matches!(l, Line::Event(_)) {
                events_total += 1;
            }
            if let Some(t) = line_time(&l) {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        }
        let header = r.header().clone();
        let complete = r.complete();
        let start_ns = first.map_or(header.started_ns, |f| f.min(header.started_ns));
        let end_ns = r.end_ns().max(start_ns);
        let thresholds = thresholds.unwrap_or(header.thresholds);
        let reader = source.open()?;
        Ok(Self {
            tracker: fresh(&header, thresholds),
            source,
            reader,
            next: None,
            read: 0,
            lines_total,
            header,
            complete,
            thresholds,
            pos: 0,
            cursor_ns: start_ns,
            start_ns,
            end_ns,
            playing,
            speed: speed.clamp(MIN_SPEED, MAX_SPEED),
            stacks: Readback::new(),
            dropped: 0,
            capped: 0,
            events_done: 0,
            events_total,
            recent: VecDeque::new(),
            error: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether the recording has its end line.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Why reading the recording again failed, once: the replay stops there.
    pub fn take_error(&mut self) -> Option<anyhow::Error> {
        self.error.take()
    }

    /// Runs `f`, keeping its error for [`Replay::take_error`]; nothing runs
    /// after an error.
    fn guarded(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = f(self) {
            self.playing = false;
            self.error = Some(e);
        }
    }

    fn reset(&mut self) -> Result<()> {
        self.reader = self.source.open()?;
        self.next = None;
        self.read = 0;
        self.tracker = fresh(&self.header, self.thresholds);
        self.pos = 0;
        self.dropped = 0;
        self.capped = 0;
        self.events_done = 0;
        self.recent.clear();
        self.cursor_ns = self.start_ns;
        Ok(())
    }

    /// The next line to apply, read when needed.
    fn peek(&mut self) -> Result<Option<&Line>> {
        if self.next.is_none() && self.read < self.lines_total {
            let Some((_, l)) = self.reader.next_line()? else {
                return Err(anyhow!(
                    "{}: the recording became shorter while it was replayed",
                    self.reader.name()
                ));
            };
            self.read += 1;
            self.next = Some(l);
        }
        Ok(self.next.as_ref())
    }

    fn apply_next(&mut self) -> Result<()> {
        self.peek()?;
        let Some(l) = self.next.take() else {
            return Ok(());
        };
        match l {
            Line::Event(mut j) => {
                // The detail pane shows the recorded stacks as they are.
                j.hide_kernel_addresses();
                if let Some((ev, _)) = self.stacks.page_event(&j) {
                    self.tracker.apply(&ev);
                }
                self.events_done += 1;
                let latest = self.recent.back().map_or(j.ts_ns, |b| (*b).max(j.ts_ns));
                self.recent.push_back(j.ts_ns);
                let lo = latest.saturating_sub(1_000_000_000);
                while self.recent.front().is_some_and(|t| *t <= lo) {
                    self.recent.pop_front();
                }
            }
            Line::Tick {
                now_ns,
                dropped,
                capped,
            }
            | Line::End {
                now_ns,
                dropped,
                capped,
                ..
            } => {
                self.dropped = dropped;
                self.capped = capped;
                self.tracker.set_loss_horizon(now_ns);
                self.tracker.advance(now_ns);
            }
            Line::Gap { ts_ns, pfn } => crate::report::apply_gap(&mut self.tracker, ts_ns, pfn),
            Line::Header(_) => {}
        }
        self.pos += 1;
        Ok(())
    }

    /// Moves the time cursor to `t` (clamped to the recording).
    pub fn seek_to(&mut self, t: u64) {
        self.guarded(|s| s.seek(t));
    }

    fn seek(&mut self, t: u64) -> Result<()> {
        let t = t.clamp(self.start_ns, self.end_ns);
        if t < self.cursor_ns {
            self.reset()?;
        }
        while let Some(lt) = self.peek()?.and_then(line_time) {
            if lt > t {
                break;
            }
            self.apply_next()?;
        }
        self.cursor_ns = t;
        self.tracker.advance(t);
        Ok(())
    }

    /// Applies the next event (and the ticks before it).
    pub fn step_forward(&mut self) {
        self.guarded(|s| {
            while let Some(l) = s.peek()? {
                let is_event = matches!(l, Line::Event(_));
                let t = line_time(l);
                s.apply_next()?;
                if let Some(t) = t {
                    s.cursor_ns = s.cursor_ns.max(t).min(s.end_ns);
                }
                if is_event {
                    break;
                }
            }
            s.tracker.advance(s.cursor_ns);
            Ok(())
        });
    }

    /// Takes the last applied event back (re-reading from the start).
    pub fn step_back(&mut self) {
        self.guarded(|s| {
            if s.events_done == 0 {
                return s.reset();
            }
            let target = s.events_done - 1;
            s.reset()?;
            let mut t = s.start_ns;
            let done = |s: &Self| s.events_done == target;
            loop {
                let at_target = done(s);
                let Some(line) = s.peek()? else { break };
                if matches!(line, Line::Event(_)) && at_target {
                    break;
                }
                if let Some(lt) = line_time(line) {
                    t = t.max(lt);
                }
                s.apply_next()?;
            }
            s.cursor_ns = t.min(s.end_ns);
            s.tracker.advance(s.cursor_ns);
            Ok(())
        });
    }

    /// Advances playback by `elapsed` wall time.
    pub fn tick(&mut self, elapsed: Duration) {
        if !self.playing {
            return;
        }
        let dt = (elapsed.as_nanos() as f64 * self.speed) as u64;
        let t = self.cursor_ns.saturating_add(dt).min(self.end_ns);
        self.seek_to(t);
        if self.at_end() {
            self.playing = false;
        }
    }

    pub fn at_end(&self) -> bool {
        self.cursor_ns >= self.end_ns && self.pos >= self.lines_total
    }

    /// Carries out a replay key.
    pub fn command(&mut self, c: ReplayCommand) {
        match c {
            ReplayCommand::TogglePlay => {
                if self.at_end() && !self.playing {
                    self.guarded(Self::reset);
                }
                self.playing = !self.playing;
            }
            ReplayCommand::StepForward => {
                self.playing = false;
                self.step_forward();
            }
            ReplayCommand::StepBack => {
                self.playing = false;
                self.step_back();
            }
            ReplayCommand::Seek(d) => {
                let t = if d >= 0 {
                    self.cursor_ns.saturating_add(d as u64)
                } else {
                    self.cursor_ns.saturating_sub(d.unsigned_abs())
                };
                self.seek_to(t);
            }
            ReplayCommand::Start => {
                self.guarded(Self::reset);
                self.seek_to(self.start_ns);
            }
            ReplayCommand::End => self.seek_to(self.end_ns),
            ReplayCommand::Speed(f) => self.speed = (self.speed * f).clamp(MIN_SPEED, MAX_SPEED),
        }
    }

    pub fn status(&self) -> ReplayStatus {
        ReplayStatus {
            playing: self.playing,
            speed: self.speed,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            cursor_ns: self.cursor_ns,
            events_done: self.events_done,
            events_total: self.events_total,
        }
    }

    /// Counters at the cursor: events so far, events in the last second of
    /// recording time, drops as last recorded.
    pub fn stats(&self) -> Stats {
        let lo = self.cursor_ns.saturating_sub(1_000_000_000);
        let rate = self
            .recent
            .iter()
            .filter(|t| **t > lo && **t <= self.cursor_ns)
            .count();
        Stats {
            events: self.events_done,
            rate: rate as f64,
            dropped: self.dropped,
            decode_errors: 0,
            evicted: self.tracker.evicted(),
            skipped: 0,
            capped: self.capped,
            ring_fill: None,
        }
    }

    /// The recorded events of `pfns` up to the cursor, read again from the
    /// recording.
    pub fn events_of(&self, pfns: &std::collections::HashSet<u64>) -> Result<Vec<JsonEvent>> {
        let mut r = self.source.open()?;
        let mut out = Vec::new();
        let mut n = 0;
        while n < self.pos
            && let Some((_, l)) = r.next_line()?
        {
            n += 1;
            if let Line::Event(mut e) = l
                && pfns.contains(&e.pfn)
            {
                e.hide_kernel_addresses();
                out.push(e);
            }
        }
        Ok(out)
    }
}

fn fresh(header: &Header, th: Thresholds) -> Tracker {
    let mut t = Tracker::new(header.rules.clone(), th, DEFAULT_HISTORY, DEFAULT_MAX_PFNS);
    // As in the report: losses are known up to each tick.
    t.set_loss_horizon(header.started_ns);
    t
}
