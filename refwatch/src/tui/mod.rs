//! The terminal UI of `refwatch attach` and `refwatch replay`.
//!
//! [`model`] holds the state and handles keys without a terminal, [`render`]
//! draws it (`impl Widget for &App`, never changing it), and one loop here
//! drives both for either source (`source.rs`: a live attach or a recording) from one
//! `tokio::select!` over the UI tick, the keys ([`input`]), SIGWINCH, the
//! source (the collector, or the replay clock) and SIGINT/SIGTERM/SIGHUP.
//! When the terminal goes away ([`crate::tty`]: SIGHUP, a hang-up or error on its
//! input, a failed draw) they stop and return an error, so refwatch exits
//! non-zero.

pub mod detail;
pub mod export;
pub mod fmt;
pub mod holders;
pub mod input;
pub mod keys;
pub mod model;
mod overlays;
pub mod palette;
mod render;
pub mod replay;
mod source;
pub mod synthetic;
pub mod view;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use ratatui::{DefaultTerminal, crossterm::event::Event};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    time::MissedTickBehavior,
};

pub use model::{App, Command, Feed, HeaderInfo, HookLine, ReplayStatus, Stats};
pub use replay::Replay;

use self::{
    input::{Incoming, Input},
    source::{LiveSource, ReplaySource, Source, Step},
};
use crate::{
    cli::{Command as CliCommand, ReplayArgs},
    collector::{self, Collector, Totals},
    format::recording,
    loader::Loaded,
    state::Tracker,
    symbols::kallsyms::Kallsyms,
};

/// How often the screen is redrawn when nothing else happens.
const UI_TICK: Duration = Duration::from_millis(250);

/// Whether the command opens the TUI with no `--log-file`: its warnings
/// and errors are then held until the terminal is restored
/// ([`crate::logging`]), and no log file is written.
pub fn holds_log(cmd: &CliCommand) -> bool {
    match cmd {
        CliCommand::Attach(a) => !a.headless && a.log_file.is_none(),
        CliCommand::Replay(r) => r.log_file.is_none(),
        _ => false,
    }
}

/// The terminal while the TUI runs; restored when dropped (and on panic,
/// by the hook `ratatui::try_init` installs). Restoring a terminal that is
/// gone fails: that is logged, never printed, and stdout and stderr are
/// first pointed away from it (see [`crate::tty::detach_dead_outputs`]), as the
/// `Terminal` prints its own failure to show the cursor, and `eprintln!`
/// panics when stderr is that dead terminal.
struct Term {
    terminal: DefaultTerminal,
    colors: palette::Colors,
}

impl Term {
    /// Takes the terminal; colours unless `NO_COLOR` says otherwise.
    fn start() -> Result<Self> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Self {
                terminal,
                colors: palette::Colors::from_env(),
            }),
            Err(e) => {
                let _ = ratatui::try_restore();
                Err(e).context("set up the terminal")
            }
        }
    }

    fn draw(&mut self, app: &App) -> Result<()> {
        self.terminal
            .draw(|f| palette::draw(f, app, self.colors))
            .context("draw")?;
        Ok(())
    }

    fn size(&self) -> (u16, u16) {
        self.terminal
            .size()
            .map(|s| (s.width, s.height))
            .unwrap_or((80, 24))
    }

    /// The event of a SIGWINCH: the terminal's new size.
    fn resized(&self) -> Event {
        let (w, h) = self.size();
        Event::Resize(w, h)
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        crate::tty::detach_dead_outputs();
        if let Err(e) = ratatui::try_restore() {
            log::debug!("restore the terminal: {e}");
        }
    }
}

/// Why a runner's loop ended.
#[derive(Debug)]
enum End {
    /// `q`, SIGINT, SIGTERM or `--duration`.
    Stop,
    /// The terminal is gone (why): SIGHUP, a hang-up or error on its input,
    /// a failed draw.
    TerminalGone(String),
}

impl End {
    /// What an input-channel message (or its end) means.
    fn of_input(m: Option<Incoming>) -> std::result::Result<Event, End> {
        match m {
            Some(Incoming::Key(k)) => Ok(Event::Key(k)),
            Some(Incoming::Gone(why)) => Err(End::TerminalGone(why)),
            None => Err(End::TerminalGone("the terminal input ended".into())),
        }
    }

    fn sighup() -> Self {
        End::TerminalGone("the terminal hung up (SIGHUP)".into())
    }

    fn draw_failed(e: &anyhow::Error) -> Self {
        End::TerminalGone(format!("the terminal failed: {e:#}"))
    }
}

/// What reaches a TUI loop from outside its own clocks: keys and resizes,
/// and SIGINT/SIGTERM/SIGHUP, which end it. The live and the replay loop
/// each wait on it in one `select!` arm.
struct Outside {
    sigint: Signal,
    sigterm: Signal,
    sighup: Signal,
    winch: Signal,
}

impl Outside {
    fn install() -> Result<Self> {
        let on = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("install {name} handler"))
        };
        Ok(Self {
            sigint: on(SignalKind::interrupt(), "SIGINT")?,
            sigterm: on(SignalKind::terminate(), "SIGTERM")?,
            sighup: on(SignalKind::hangup(), "SIGHUP")?,
            winch: on(SignalKind::window_change(), "SIGWINCH")?,
        })
    }

    /// The next key or resize, or why the loop ends.
    async fn next(&mut self, input: &mut Input, term: &Term) -> std::result::Result<Event, End> {
        tokio::select! {
            m = input.rx.recv() => End::of_input(m),
            _ = self.winch.recv() => Ok(term.resized()),
            _ = self.sigint.recv() => Err(End::Stop),
            _ = self.sigterm.recv() => Err(End::Stop),
            _ = self.sighup.recv() => Err(End::sighup()),
        }
    }
}

/// Rebuilds of the table's rows cost O(tracked PFNs): they happen at most
/// every 250 ms, and less often when they are slow (4× their cost, ≤ 2 s).
struct Throttle {
    last: Option<Instant>,
    cost: Duration,
}

impl Throttle {
    fn new() -> Self {
        Self {
            last: None,
            cost: Duration::ZERO,
        }
    }

    fn due(&self) -> bool {
        let every = (self.cost * 4).clamp(UI_TICK, Duration::from_secs(2));
        self.last
            .is_none_or(|t| t.elapsed() + Duration::from_millis(5) >= every)
    }

    fn run(&mut self, f: impl FnOnce()) {
        let start = Instant::now();
        f();
        self.cost = start.elapsed();
        self.last = Some(start);
    }
}

/// What a terminal event asks of the runner.
fn on_event(app: &mut App, ev: Event) -> Option<Command> {
    match ev {
        Event::Key(k) => app.on_key(k),
        Event::Resize(w, h) => {
            app.resize(w, h);
            None
        }
        _ => None,
    }
}

fn export_message(r: Result<(PathBuf, usize)>) -> (String, bool) {
    match r {
        Ok((p, n)) => (format!("exported {n} events to {}", p.display()), false),
        Err(e) => (format!("export failed: {e:#}"), true),
    }
}

/// `refwatch attach` with the TUI: runs until `q`, SIGINT/SIGTERM or
/// `--duration`, then finishes the collector so the recording and JSON
/// Lines are complete. When the terminal goes away it stops the same way
/// (outputs complete), then fails with why.
pub async fn run_live(
    loaded: &mut Loaded,
    syms: &Kallsyms,
    opts: collector::Options,
    info: HeaderInfo,
    lines: Option<crate::symbols::lines::LineCache>,
) -> Result<(Tracker, Totals)> {
    let mut hooks: HashMap<u32, String> = loaded
        .rows
        .iter()
        .filter(|r| r.attached())
        .filter_map(|r| Some((r.hook?, r.symbol?.to_string())))
        .collect();
    // The watchpoint's events (`--watch`, `w`) go by its name, as in the outputs.
    for (h, name) in crate::watch::HOOK_NAMES {
        hooks.insert(h, name.to_string());
    }
    let mut outside = Outside::install()?;
    // The terminal before the collector: when it cannot be had, no output
    // is started (and none left unfinished).
    let mut term = Term::start()?;
    let mut input = Input::spawn()?;
    let c = Collector::new(loaded, syms, &opts)?;
    let names = crate::symbols::Live {
        syms,
        format: opts.format,
        hooks,
    };
    let mut source = LiveSource::new(c, &mut loaded.ebpf, names, opts.duration);
    let mut app = App::new(info);
    app.source_lines = lines.map(std::rc::Rc::new);
    // Whatever ends the loop (a key, a signal, the terminal going away, an
    // error), the collector is finished below so the recording and JSON
    // Lines are complete.
    let result = run_loop(&mut source, &mut app, &mut term, &mut input, &mut outside).await;
    drop(input);
    drop(term);
    if let Ok(End::TerminalGone(why)) = &result {
        log::error!("{why}: stopping; finishing the outputs");
    }
    let mut c = source.c;
    let finished = c.finish();
    let end = result?;
    finished?;
    match end {
        End::Stop => Ok((c.tracker, c.totals)),
        End::TerminalGone(why) => {
            log::error!("{why}: stopped, the outputs are complete");
            Err(anyhow!("{why}: stopped, the outputs are complete"))
        }
    }
}

/// The screen over `source` until a key, a signal or the source ends it,
/// or the terminal goes away.
async fn run_loop<S: Source>(
    source: &mut S,
    app: &mut App,
    term: &mut Term,
    input: &mut Input,
    outside: &mut Outside,
) -> Result<End> {
    app.export_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let (w, h) = term.size();
    app.resize(w, h);
    let mut ui = tokio::time::interval(UI_TICK);
    ui.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut throttle = Throttle::new();
    let mut changed = true;
    let mut redraw = true;
    loop {
        if changed && throttle.due() {
            source.show(app);
            let feed = source.feed();
            throttle.run(|| app.refresh(&feed));
            changed = false;
            redraw = true;
        }
        if redraw {
            if let Err(e) = term.draw(app) {
                return Ok(End::draw_failed(&e));
            }
            redraw = false;
        }
        let mut ev = None;
        tokio::select! {
            s = source.step() => match s? {
                Step::Changed => changed = true,
                Step::Idle => {}
                Step::Ended => return Ok(End::Stop),
            },
            _ = ui.tick() => {
                // The input thread watches the terminal's input; this, its output too.
                if let Some(why) = input.tty.gone() {
                    return Ok(End::TerminalGone(why));
                }
                changed |= source.refresh_on_tick();
                redraw = true;
            }
            o = outside.next(input, term) => match o {
                Ok(e) => ev = Some(e),
                Err(end) => return Ok(end),
            },
        }
        if let Some(ev) = ev {
            let cmd = on_event(app, ev);
            redraw = true;
            if matches!(cmd, Some(Command::Quit)) {
                return Ok(End::Stop);
            }
            let waited_on = match cmd {
                Some(cmd) => source.command(cmd, app)?,
                None => false,
            };
            if waited_on {
                // A key the user waits on: no throttle.
                throttle.last = None;
                changed = true;
            }
            // The detail follows the selection at once, even between refreshes.
            app.sync(&source.feed());
        }
        if let Some(e) = source.take_error() {
            return Err(e);
        }
    }
}

/// `refwatch replay FILE`: the same TUI over a recording.
pub fn run_replay(args: &ReplayArgs) -> Result<ExitCode> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        anyhow::bail!(
            "--speed {}: give a positive factor, e.g. 0.5, 1 or 10",
            args.speed
        );
    }
    // The header first: the thresholds and the screen's header need it.
    let header = recording::Reader::open(&args.file)?.header().clone();
    let thresholds = if args.thresholds.any() {
        args.thresholds.apply(header.thresholds)?
    } else {
        header.thresholds
    };
    let name = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let info = HeaderInfo::recorded(&name, &header, header.started_ns);
    let lines = match &args.vmlinux {
        Some(path) => {
            let l = crate::symbols::SourceLines::open(path)?;
            l.check_release(&header.kernel, path)?;
            Some(crate::symbols::lines::LineCache::new(l))
        }
        None => None,
    };
    let replay = Replay::open(&args.file, Some(thresholds), args.speed, !args.paused)?;
    let complete = replay.complete();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let (replay, end) = rt.block_on(replay_loop(replay, info, lines))?;
    let st = replay.status();
    if let End::TerminalGone(why) = end {
        let m = format!(
            "{why}: replay stopped at event {} of {}",
            st.events_done, st.events_total
        );
        log::error!("{m}");
        return Err(anyhow!(m));
    }
    println!(
        "refwatch: replayed {} of {} events of {}{}; {} pages, {} stuck at the cursor",
        st.events_done,
        st.events_total,
        args.file.display(),
        if complete {
            ""
        } else {
            " (recording cut short)"
        },
        replay.tracker.len(),
        replay.tracker.stuck().len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn replay_loop(
    replay: Replay,
    info: HeaderInfo,
    lines: Option<crate::symbols::lines::LineCache>,
) -> Result<(Replay, End)> {
    let mut outside = Outside::install()?;
    let mut app = App::new(info);
    app.source_lines = lines.map(std::rc::Rc::new);
    let mut term = Term::start()?;
    let mut input = Input::spawn()?;
    let mut source = ReplaySource::new(replay);
    let end = run_loop(&mut source, &mut app, &mut term, &mut input, &mut outside).await;
    // The terminal restored before any error is said.
    drop(input);
    drop(term);
    Ok((source.replay, end?))
}
