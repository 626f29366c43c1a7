//! Where the TUI's events come from: a live attach (the collector reading
//! the kernel's ring) or a recording played back. One interface, so that
//! one loop ([`super::run_loop`]) drives the screen for both.

use std::{collections::HashSet, path::Path, time::Duration};

use anyhow::Result;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval};

use super::{
    Command, Feed, Replay, Stats, export,
    model::{App, ExportRequest},
};
use crate::{
    collector::{Collector, monotonic_ns},
    symbols::Live,
};

/// Replay clock resolution while playing.
const PLAY_TICK: Duration = Duration::from_millis(100);

/// What a source's step did.
pub(super) enum Step {
    /// The tracker moved on: the views want a refresh.
    Changed,
    /// Nothing to show.
    Idle,
    /// The source is done (`--duration`).
    Ended,
}

/// A source of events for the TUI.
pub(super) trait Source {
    /// What the views read now.
    fn feed(&self) -> Feed<'_>;

    /// Waits for what moves the source on (the ring, its clock) and applies
    /// it. Cancel-safe: dropped at its only await, it loses nothing.
    async fn step(&mut self) -> Result<Step>;

    /// Copies the source's counters and status into `app`.
    fn show(&self, app: &mut App);

    /// Whether the views refresh on every UI tick even when nothing came
    /// (live: ages and time-based verdicts move with the clock).
    fn refresh_on_tick(&self) -> bool;

    /// Carries out what the keys asked (all but quitting). Whether the
    /// user waits on the result (refresh now, unthrottled).
    fn command(&mut self, cmd: Command, app: &mut App) -> Result<bool>;

    /// An error that ends the run, taken once.
    fn take_error(&mut self) -> Option<anyhow::Error> {
        None
    }
}

/// A live attach: the collector, the names of its events, its clocks.
pub(super) struct LiveSource<'a> {
    pub c: Collector<'a>,
    ebpf: &'a mut aya::Ebpf,
    names: Live<'a>,
    second: Interval,
    deadline: Instant,
    last_events: u64,
    last_second: std::time::Instant,
    stats: Stats,
}

impl<'a> LiveSource<'a> {
    /// `c` reading the kernel until `duration` (forever without),
    /// `ebpf` for the watchpoints the `w` key asks for.
    pub fn new(
        c: Collector<'a>,
        ebpf: &'a mut aya::Ebpf,
        names: Live<'a>,
        duration: Option<Duration>,
    ) -> Self {
        let mut second = interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let deadline = duration
            .map(|d| Instant::now() + d)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86400));
        Self {
            c,
            ebpf,
            names,
            second,
            deadline,
            last_events: 0,
            last_second: std::time::Instant::now(),
            stats: Stats::default(),
        }
    }

    /// Once a second: the collector's tick, and the counters.
    fn second(&mut self) -> Result<()> {
        let c = &mut self.c;
        c.tick(monotonic_ns())?;
        let secs = self.last_second.elapsed().as_secs_f64().max(1e-3);
        self.last_second = std::time::Instant::now();
        self.stats = Stats {
            events: c.totals.events,
            rate: (c.totals.events - self.last_events) as f64 / secs,
            dropped: c.totals.dropped,
            decode_errors: c.totals.decode_errors,
            evicted: c.tracker.evicted(),
            skipped: c.totals.skipped,
            capped: c.totals.capped,
            ring_fill: Some(c.totals.ring_fill_last),
        };
        self.last_events = c.totals.events;
        Ok(())
    }
}

impl Source for LiveSource<'_> {
    fn feed(&self) -> Feed<'_> {
        Feed {
            tracker: &self.c.tracker,
            stacks: &self.names,
            now_ns: monotonic_ns(),
        }
    }

    async fn step(&mut self) -> Result<Step> {
        tokio::select! {
            r = self.c.readable() => r.map(|()| Step::Changed),
            _ = self.second.tick() => self.second().map(|()| Step::Changed),
            _ = tokio::time::sleep_until(self.deadline) => Ok(Step::Ended),
        }
    }

    fn show(&self, app: &mut App) {
        app.stats = self.stats;
        app.watch = self.c.watch_status();
    }

    fn refresh_on_tick(&self) -> bool {
        true
    }

    fn command(&mut self, cmd: Command, app: &mut App) -> Result<bool> {
        match cmd {
            Command::Export(req) => {
                let names = &self.names;
                let events = export::live_events(
                    &self.c.tracker,
                    &req.pfns,
                    &names.hooks,
                    names.syms,
                    names.format,
                );
                write_export(app, &req, events.iter(), names.format.raw_pointers);
            }
            Command::Watch(pfn) => {
                let (m, err) = self.c.watch_toggle(self.ebpf, pfn)?;
                app.watch = self.c.watch_status();
                app.set_message(m, err);
            }
            Command::Replay(_) | Command::Quit => {}
        }
        Ok(false)
    }
}

/// A recording played back: the replay and its clock.
pub(super) struct ReplaySource {
    pub replay: Replay,
    tick: Interval,
    last_tick: std::time::Instant,
}

impl ReplaySource {
    pub fn new(replay: Replay) -> Self {
        let mut tick = interval(PLAY_TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Self {
            replay,
            tick,
            last_tick: std::time::Instant::now(),
        }
    }
}

impl Source for ReplaySource {
    fn feed(&self) -> Feed<'_> {
        Feed {
            tracker: &self.replay.tracker,
            stacks: &self.replay.stacks,
            now_ns: self.replay.cursor_ns,
        }
    }

    async fn step(&mut self) -> Result<Step> {
        self.tick.tick().await;
        let elapsed = self.last_tick.elapsed();
        self.last_tick = std::time::Instant::now();
        if self.replay.playing {
            self.replay.tick(elapsed);
            return Ok(Step::Changed);
        }
        Ok(Step::Idle)
    }

    fn show(&self, app: &mut App) {
        app.replay = Some(self.replay.status());
        app.stats = self.replay.stats();
    }

    fn refresh_on_tick(&self) -> bool {
        false
    }

    fn command(&mut self, cmd: Command, app: &mut App) -> Result<bool> {
        match cmd {
            Command::Replay(rc) => {
                self.replay.command(rc);
                self.last_tick = std::time::Instant::now();
                return Ok(true);
            }
            Command::Export(req) => {
                let set: HashSet<u64> = req.pfns.iter().copied().collect();
                match self.replay.events_of(&set) {
                    Ok(events) => write_export(app, &req, events.iter(), false),
                    Err(e) => {
                        let (m, err) = super::export_message(Err(e));
                        app.set_message(m, err);
                    }
                }
            }
            // The key says so itself in a replay; never asked here.
            Command::Watch(_) => app.set_message("watching a page needs a live attach", true),
            Command::Quit => {}
        }
        Ok(false)
    }

    fn take_error(&mut self) -> Option<anyhow::Error> {
        self.replay
            .take_error()
            .map(|e| e.context("replay stopped"))
    }
}

/// Writes an export the keys asked for into the app's folder and says
/// where (or why not) on the message line.
fn write_export<'e>(
    app: &mut App,
    req: &ExportRequest,
    events: impl Iterator<Item = &'e crate::format::json::JsonEvent>,
    raw_pointers: bool,
) {
    let dir: &Path = &app.export_dir;
    let r = export::write(dir, &req.label, req.format, events, raw_pointers);
    let (m, err) = super::export_message(r);
    if err {
        log::warn!("{m}");
    }
    app.set_message(m, err);
}
