//! Replaying a recording into a [`Tracker`] by its event times: play, pause,
//! step one event either way, seek, speed. Going back rebuilds the tracker
//! from the start (detectors only run forward).

use std::{collections::HashMap, time::Duration};

use anyhow::{Result, bail};

use super::model::{ReplayCommand, ReplayStatus, Stats};
use crate::{
    jsonl::{JsonEvent, to_page_event},
    recording::{Line, Recording},
    state::{DEFAULT_HISTORY, DEFAULT_MAX_PFNS, Thresholds, Tracker},
};

/// Slowest and fastest playback.
pub const MIN_SPEED: f64 = 1.0 / 64.0;
pub const MAX_SPEED: f64 = 4096.0;

/// A recording being replayed.
pub struct Replay {
    rec: Recording,
    thresholds: Thresholds,
    /// Lines applied so far.
    pos: usize,
    pub tracker: Tracker,
    pub cursor_ns: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub playing: bool,
    pub speed: f64,
    /// Recorded function and stack per event, by `(pfn, ts_ns, pid)`.
    pub stacks: HashMap<(u64, u64, u32), (String, Vec<String>)>,
    dropped: u64,
    events_done: u64,
    events_total: u64,
    /// Every event time, sorted (for the rate at the cursor).
    times: Vec<u64>,
}

fn line_time(l: &Line) -> Option<u64> {
    match l {
        Line::Event(e) => Some(e.ts_ns),
        Line::Tick { now_ns, .. } | Line::End { now_ns, .. } => Some(*now_ns),
        Line::Gap { ts_ns, .. } => Some(*ts_ns),
        Line::Header(_) => None,
    }
}

impl Replay {
    /// Checks every event up front, so playing never fails half way.
    pub fn new(rec: Recording, thresholds: Thresholds, speed: f64, playing: bool) -> Result<Self> {
        let mut stacks = HashMap::new();
        let mut times = Vec::new();
        for (i, l) in rec.lines.iter().enumerate() {
            if let Line::Event(e) = l {
                if to_page_event(e).is_none() {
                    bail!("recording line {}: unknown event name {:?}", i + 2, e.event);
                }
                stacks.insert((e.pfn, e.ts_ns, e.pid), (e.symbol.clone(), e.stack.clone()));
                times.push(e.ts_ns);
            }
        }
        times.sort_unstable();
        let first = rec.lines.iter().filter_map(line_time).min();
        let start_ns = first.map_or(rec.header.started_ns, |f| f.min(rec.header.started_ns));
        let end_ns = rec.end_ns().max(start_ns);
        let tracker = Self::fresh(&rec, thresholds);
        Ok(Self {
            thresholds,
            pos: 0,
            tracker,
            cursor_ns: start_ns,
            start_ns,
            end_ns,
            playing,
            speed: speed.clamp(MIN_SPEED, MAX_SPEED),
            stacks,
            dropped: 0,
            events_done: 0,
            events_total: times.len() as u64,
            times,
            rec,
        })
    }

    fn fresh(rec: &Recording, th: Thresholds) -> Tracker {
        let mut t = Tracker::new(
            rec.header.rules.clone(),
            th,
            DEFAULT_HISTORY,
            DEFAULT_MAX_PFNS,
        );
        // As in the report: losses are known up to each tick.
        t.set_loss_horizon(rec.header.started_ns);
        t
    }

    pub fn header(&self) -> &crate::recording::Header {
        &self.rec.header
    }

    fn reset(&mut self) {
        self.tracker = Self::fresh(&self.rec, self.thresholds);
        self.pos = 0;
        self.dropped = 0;
        self.events_done = 0;
        self.cursor_ns = self.start_ns;
    }

    fn apply_next(&mut self) {
        let Some(l) = self.rec.lines.get(self.pos) else {
            return;
        };
        match l {
            Line::Event(j) => {
                if let Some(ev) = to_page_event(j) {
                    self.tracker.apply(&ev);
                }
                self.events_done += 1;
            }
            Line::Tick { now_ns, dropped }
            | Line::End {
                now_ns, dropped, ..
            } => {
                self.dropped = *dropped;
                self.tracker.set_loss_horizon(*now_ns);
                self.tracker.advance(*now_ns);
            }
            Line::Gap { ts_ns, pfn } => crate::report::apply_gap(&mut self.tracker, *ts_ns, *pfn),
            Line::Header(_) => {}
        }
        self.pos += 1;
    }

    /// Moves the time cursor to `t` (clamped to the recording).
    pub fn seek_to(&mut self, t: u64) {
        let t = t.clamp(self.start_ns, self.end_ns);
        if t < self.cursor_ns {
            self.reset();
        }
        while let Some(lt) = self.rec.lines.get(self.pos).and_then(line_time) {
            if lt > t {
                break;
            }
            self.apply_next();
        }
        // Skip a header line if one was kept.
        while matches!(self.rec.lines.get(self.pos), Some(Line::Header(_))) {
            self.pos += 1;
        }
        self.cursor_ns = t;
        self.tracker.advance(t);
    }

    /// Applies the next event (and the ticks before it).
    pub fn step_forward(&mut self) {
        while self.pos < self.rec.lines.len() {
            let is_event = matches!(self.rec.lines[self.pos], Line::Event(_));
            let t = line_time(&self.rec.lines[self.pos]);
            self.apply_next();
            if let Some(t) = t {
                self.cursor_ns = self.cursor_ns.max(t).min(self.end_ns);
            }
            if is_event {
                break;
            }
        }
        self.tracker.advance(self.cursor_ns);
    }

    /// Takes the last applied event back (rebuilding from the start).
    pub fn step_back(&mut self) {
        if self.events_done == 0 {
            self.reset();
            return;
        }
        let target = self.events_done - 1;
        self.reset();
        let mut t = self.start_ns;
        while self.pos < self.rec.lines.len() {
            let line = &self.rec.lines[self.pos];
            if matches!(line, Line::Event(_)) && self.events_done == target {
                break;
            }
            if let Some(lt) = line_time(line) {
                t = t.max(lt);
            }
            self.apply_next();
        }
        self.cursor_ns = t.min(self.end_ns);
        self.tracker.advance(self.cursor_ns);
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
        self.cursor_ns >= self.end_ns && self.pos >= self.rec.lines.len()
    }

    /// Carries out a replay key.
    pub fn command(&mut self, c: ReplayCommand) {
        match c {
            ReplayCommand::TogglePlay => {
                if self.at_end() && !self.playing {
                    self.reset();
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
                self.reset();
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
        let a = self.times.partition_point(|t| *t <= lo);
        let b = self.times.partition_point(|t| *t <= self.cursor_ns);
        Stats {
            events: self.events_done,
            rate: (b - a) as f64,
            dropped: self.dropped,
            decode_errors: 0,
            evicted: self.tracker.evicted(),
        }
    }

    /// The recorded events of `pfns` up to the cursor.
    pub fn events_of<'a>(
        &'a self,
        pfns: &'a std::collections::HashSet<u64>,
    ) -> impl Iterator<Item = &'a JsonEvent> + 'a {
        self.rec.lines[..self.pos]
            .iter()
            .filter_map(move |l| match l {
                Line::Event(e) if pfns.contains(&e.pfn) => Some(e),
                _ => None,
            })
    }
}
