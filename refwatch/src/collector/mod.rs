//! The live loop: read the ring buffer through `AsyncFd`, decode, update the
//! per-PFN state, run the detectors, write exports and the recording, report
//! losses, and stop cleanly on SIGINT/SIGTERM with everything flushed.

use std::{
    io::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use refwatch_common::counter;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    event::{Decoder, PageEvent, cgroup::Cgroups, pgmap_name},
    format::json::Format,
    format::recording::{self, Line},
    loader::Loaded,
    peek::{self, Peeker},
    rotate::Rotating,
    rules::Rules,
    snapshot,
    state::{Thresholds, Tracker},
    symbols::{
        DEFAULT_NAMED_STACKS, DEFAULT_SYMBOL_CACHE, Kallsyms, Role, StackTable, Symbolizer,
        role_of, stack_strings,
    },
};

mod drain;
mod releases;
mod reread;
mod watch;

use drain::{drain, read_cost_line};

/// What the collector does with events.
pub struct Options {
    pub jsonl: Option<PathBuf>,
    pub recording: Option<(PathBuf, recording::Header)>,
    /// Where the recording is rotated (`None`: it grows unbounded).
    pub rotate: Option<recording::Limit>,
    /// Where the JSON lines are rotated.
    pub jsonl_rotate: crate::rotate::Limit,
    pub format: Format,
    pub history: usize,
    /// Keep each page's history (the TUI shows it). Without (`record`,
    /// `attach --headless`), the outputs hold the events and the tracker
    /// only their state ([`Tracker::keep_no_history`]).
    pub histories: bool,
    pub max_pfns: usize,
    /// Events kept in all histories together (`--max-events`).
    pub max_events: usize,
    pub rules: Rules,
    pub thresholds: Thresholds,
    /// Period of the one-line summary on stdout (0: none).
    pub summary_every: Duration,
    /// Print each stuck page on stdout as it appears.
    pub print_stuck: bool,
    /// With `print_stuck`: a line per episode, not per holder group.
    pub per_page: bool,
    /// Stop after this long (None: until a signal).
    pub duration: Option<Duration>,
    /// Attach the page reader through a kprobe, not fentry (`--mode kprobe`).
    pub kprobe_only: bool,
    /// Size of the kernel's ring buffer (`--ring-size`), for its fill level.
    pub ring_bytes: u32,
    /// The user's filters: the snapshot at attach keeps to them.
    pub watch: crate::filter::Watch,
    /// Where each tick's metrics text goes (`--metrics`).
    pub metrics: Option<crate::metrics::serve::Published>,
    /// Hardware watchpoints asked for (`--watch`).
    pub watchpoints: Option<crate::watch::Options>,
    /// `offsetof(struct page, _refcount)`: for a watcher made on demand
    /// (the TUI's `w` without `--watch`).
    pub off_refcount: u32,
    /// Print each event as a line on stdout (`refwatch watch`).
    pub print_events: bool,
    /// `--stacks`: under `holders` a page's last put walks its stack only
    /// while the page has an open episode ([`releases`]).
    pub stacks: crate::stacks::StackPolicy,
}

/// Totals at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub events: u64,
    pub decode_errors: u64,
    pub dropped: u64,
    pub filtered: u64,
    /// Events the user's filters left out in the kernel (not losses).
    pub skipped: u64,
    /// Events past `--max-rate`: counted, not recorded (their pages have
    /// gaps).
    pub capped: u64,
    /// The ring buffer's fullest, as a share of its size (0–1): over the
    /// last second ([`Collector::tick`]) and over the run.
    pub ring_fill_last: f64,
    pub ring_fill_peak: f64,
    /// Events decoded, by wire kind value.
    pub by_kind: [u64; 13],
    /// Pages read to check their counts before (or while) a detector flags
    /// them, and the reads that disagreed (applied as snapshots).
    pub verify_reads: u64,
    pub verify_corrections: u64,
    /// CPU time this thread spent on the ring's events, from the first
    /// event of each read to the last (decode, stacks named, outputs,
    /// per-PFN state): with [`Totals::events`], the reader's cost per
    /// event apart from its waits, ticks and polls.
    pub read_cpu_ns: u64,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Outputs<'a> {
    jsonl: Option<Rotating>,
    rec: Option<recording::Writer>,
    /// The recording's header, for the files after a rotation.
    rec_header: Option<recording::Header>,
    /// By hook id: the function its events are seen in, and the role the
    /// function itself says (`vmf_insert_*`: Map), which its stacks,
    /// starting at the caller, do not show.
    hooks: Vec<(&'static str, Option<Role>)>,
    /// Kallsyms with a per-address cache.
    syms: Symbolizer<'a>,
    /// Each distinct stack named once (frames, role, id).
    stacks: StackTable,
    /// Shares equal stacks between events.
    decoder: Decoder,
    /// Processes' cgroups, for the outputs.
    cgroups: Cgroups,
    format: Format,
    /// Print each event as a line on stdout.
    print_events: bool,
}

impl Outputs<'_> {
    /// Rotates the recording when it reached its size: the file ends, and
    /// the next starts with the state of the pages a report of it needs
    /// ([`recording::carry`]).
    fn rotate_if_full(&mut self, tracker: &Tracker, totals: &Totals) -> Result<()> {
        if let Some(j) = self.jsonl.as_mut()
            && j.full(0)
        {
            j.rotate()?;
            log::info!("JSON lines rotated ({} so far)", j.rotations());
        }
        let Some(rec) = self.rec.as_mut() else {
            return Ok(());
        };
        if !rec.full() {
            return Ok(());
        }
        let now = monotonic_ns();
        let Some(mut header) = self.rec_header.clone() else {
            return Ok(());
        };
        header.started_ns = now;
        let carry = recording::carry(tracker, &mut self.syms, self.format, std::process::id());
        let end = Line::End {
            now_ns: now,
            events: totals.events,
            dropped: totals.dropped,
            capped: totals.capped,
        };
        rec.rotate(&end, header, &carry)?;
        log::info!(
            "recording rotated ({} so far): the new file starts with {} page(s) carried over",
            rec.rotations(),
            carry.len()
        );
        Ok(())
    }
}

/// The collector: ring buffer, counters, outputs and per-PFN state. The
/// headless loop ([`run`]) and the TUI both drive it.
pub struct Collector<'a> {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Kernel-side aya-log lines, forwarded into refwatch's own log.
    klog: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    counters: PerCpuArray<MapData, u64>,
    /// PFNs whose events the kernel lost → time of the last loss.
    lost: BpfHashMap<MapData, u64, u64>,
    /// Unattributed losses already marked on every page.
    unattributed_seen: u64,
    /// Every loss counted at the last look at the table of losses, and
    /// whether the count had not moved since the look before.
    losses_seen: u64,
    losses_settled: bool,
    /// Reads pages' state from the kernel (snapshot at attach, state after
    /// loss); `None` where its program could not attach.
    peeker: Option<Peeker>,
    /// The hardware watchpoints (`--watch`, or made on the TUI's first `w`).
    watcher: Option<crate::watch::Watcher>,
    /// The pages whose last put walks its stack (`--stacks holders`, not
    /// in precise mode, where the free hook reports no put).
    releases: Option<releases::Releases>,
    /// Why a watcher could not be made on demand (said again on each ask).
    watcher_failed: Option<String>,
    off_refcount: u32,
    /// A kernel variable to count the free breakpoint slots on.
    probe_addr: Option<u64>,
    /// When to read the ring buffer unasked: the programs wake the reader
    /// only once a sixteenth of it waits (see the kernel side's `submit`).
    poll: tokio::time::Interval,
    out: Outputs<'a>,
    pub tracker: Tracker,
    pub totals: Totals,
    /// Size of the ring buffer in bytes.
    ring_bytes: u32,
    /// Reads of the ring so far: woken by the kernel, by the poll timer,
    /// and kernel log reads (in refwatch's log at the end).
    wakeups: [u64; 3],
    /// `--metrics`: the values, and where their text goes.
    metrics: Option<(crate::metrics::Metrics, crate::metrics::serve::Published)>,
}

/// PFNs the snapshot at attach reads and keeps at once.
const SNAPSHOT_CHUNK: u64 = 1 << 16;

/// How long before reading the table of losses a loss is sure to be in it.
const LOSS_NOTE_SLACK_NS: u64 = 1_000_000;

/// How often the ring buffer is read when no wakeup came: what the kernel
/// submitted without waking the reader shows this late at most.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

impl<'a> Collector<'a> {
    /// Takes the maps of `loaded` and opens the outputs.
    pub fn new(loaded: &mut Loaded, syms: &'a Kallsyms, opts: &Options) -> Result<Self> {
        let ring = loaded
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| anyhow!("EVENTS ring buffer missing from the kernel object"))?;
        let ring = RingBuf::try_from(ring).context("EVENTS is not a ring buffer")?;
        let counters: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
            loaded
                .ebpf
                .take_map("COUNTERS")
                .ok_or_else(|| anyhow!("COUNTERS map missing from the kernel object"))?,
        )
        .context("COUNTERS is not a per-CPU array")?;
        let lost: BpfHashMap<MapData, u64, u64> = BpfHashMap::try_from(
            loaded
                .ebpf
                .take_map("LOST")
                .ok_or_else(|| anyhow!("LOST map missing from the kernel object"))?,
        )
        .context("LOST is not a hash map")?;
        // SAFETY: the ring buffer owns its map fd, which stays open and the same
        // for as long as the `AsyncFd` owns the ring buffer.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow!("register the ring buffer with tokio: {e}"))?;
        let klog = match aya_log::EbpfLogger::init(&mut loaded.ebpf) {
            // SAFETY: the logger owns its ring buffer fd, open and unchanged
            // for as long as the `AsyncFd` owns the logger.
            Ok(l) => Some(
                unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }
                    .map_err(|e| anyhow!("register the kernel log with tokio: {e}"))?,
            ),
            Err(e) => {
                log::warn!("kernel-side log not available: {e}");
                None
            }
        };
        let out = Outputs {
            jsonl: match &opts.jsonl {
                Some(p) => Some(Rotating::create(p, Some(opts.jsonl_rotate), "JSON lines")?),
                None => None,
            },
            rec: match (opts.recording.clone(), opts.rotate) {
                (Some((p, h)), Some(limit)) => {
                    Some(recording::Writer::create_rotating(&p, h, limit)?)
                }
                (Some((p, h)), None) => Some(recording::Writer::create(&p, h)?),
                (None, _) => None,
            },
            rec_header: opts.recording.as_ref().map(|(_, h)| h.clone()),
            hooks: {
                let mut hooks = vec![("?", None); refwatch_common::hook::COUNT as usize];
                for r in loaded.rows.iter().filter(|r| r.attached()) {
                    if let (Some(h), Some(sym)) = (r.hook, r.symbol)
                        && let Some(slot) = hooks.get_mut(h as usize)
                    {
                        let role = role_of([sym]);
                        *slot = (sym, (role != Role::Other).then_some(role));
                    }
                }
                for (h, name) in crate::watch::HOOK_NAMES {
                    if let Some(slot) = hooks.get_mut(h as usize) {
                        *slot = (name, None);
                    }
                }
                hooks
            },
            syms: Symbolizer::new(syms, DEFAULT_SYMBOL_CACHE),
            stacks: StackTable::new(opts.format, DEFAULT_NAMED_STACKS),
            decoder: Decoder::default(),
            cgroups: Cgroups::default(),
            format: opts.format,
            print_events: opts.print_events,
        };
        let mut poll = tokio::time::interval(DRAIN_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let peeker = match Peeker::attach(&mut loaded.ebpf, syms, opts.kprobe_only) {
            Ok(p) => {
                log::info!("page reader: {}", p.how);
                Some(p)
            }
            Err(e) => {
                log::warn!(
                    "no page reader ({e:#}): no snapshot at attach, and pages whose events are lost stay unknown until their next event"
                );
                None
            }
        };
        let watcher = match &opts.watchpoints {
            Some(w) => {
                let mut watcher = crate::watch::Watcher::new(&mut loaded.ebpf, w.clone())?;
                // How many fit, as far as trying says (arming finds out too).
                if let Some(Ok(n)) = crate::watch::probe_address(syms).map(crate::watch::probe)
                    && n > 0
                {
                    watcher.fit(n);
                }
                Some(watcher)
            }
            None => None,
        };
        let releases = if opts.stacks == crate::stacks::StackPolicy::Holders && !loaded.precise {
            Some(releases::Releases::take(&mut loaded.ebpf)?)
        } else {
            None
        };
        let mut c = Self {
            watcher,
            releases,
            watcher_failed: None,
            off_refcount: opts.off_refcount,
            probe_addr: crate::watch::probe_address(syms),
            ring,
            klog,
            counters,
            lost,
            unattributed_seen: 0,
            losses_seen: 0,
            losses_settled: false,
            poll,
            out,
            tracker: {
                let mut t = Tracker::new(
                    opts.rules.clone(),
                    opts.thresholds,
                    opts.history,
                    opts.max_pfns,
                );
                t.set_max_events(opts.max_events);
                if !opts.histories {
                    t.keep_no_history();
                }
                t
            },
            totals: Totals::default(),
            peeker,
            wakeups: [0; 3],
            ring_bytes: opts.ring_bytes,
            metrics: opts
                .metrics
                .clone()
                .map(|p| (crate::metrics::Metrics::new(), p)),
        };
        c.snapshot_at_attach(&opts.watch)?;
        c.sync_releases()?;
        c.publish_metrics();
        c.tick_watch(monotonic_ns())?;
        if let Some(why) = c.watcher.as_ref().and_then(|w| w.nothing_to_watch()) {
            anyhow::bail!("none of the pages asked for can be watched: {why}");
        }
        Ok(c)
    }

    /// Decodes everything the ring holds now.
    fn drain_ring(&mut self) -> Result<()> {
        drain(
            self.ring.get_mut(),
            &mut self.tracker,
            &mut self.totals,
            &mut self.out,
        )?;
        // An event opened an episode (a layout wait): its page's release
        // walks from now, not from the next tick.
        if self
            .releases
            .as_ref()
            .is_some_and(|r| r.opened_seen() != self.tracker.episodes_opened())
        {
            self.sync_releases()?;
        }
        Ok(())
    }

    /// Once a second: detectors, recording tick, flushes. Returns the events lost so far.
    pub fn tick(&mut self, now: u64) -> Result<u64> {
        self.take_losses()?;
        self.verify(now)?;
        self.tracker.advance(now);
        self.sync_releases()?;
        self.tick_watch(now)?;
        let (dropped, _) = read_counters(&self.counters);
        self.totals.dropped = dropped;
        self.read_ring_fill();
        if let Some(rec) = self.out.rec.as_mut() {
            rec.line(&Line::Tick {
                now_ns: now,
                dropped,
                capped: self.totals.capped,
            })?;
            rec.flush()?;
        }
        self.out.rotate_if_full(&self.tracker, &self.totals)?;
        if let Some(j) = self.out.jsonl.as_mut() {
            j.flush().context("flush JSON lines")?;
        }
        self.publish_metrics();
        Ok(dropped)
    }

    /// The kernel walks the last puts of the pages with an open episode
    /// (under `--stacks holders`).
    fn sync_releases(&mut self) -> Result<()> {
        match self.releases.as_mut() {
            Some(r) => r.sync(
                self.tracker.open_episode_pfns(),
                self.tracker.episodes_opened(),
            ),
            None => Ok(()),
        }
    }

    /// `--metrics`: the values now, rendered for the endpoint.
    fn publish_metrics(&mut self) {
        let Some((m, text)) = self.metrics.as_mut() else {
            return;
        };
        let counts = crate::metrics::Counts {
            seen_by_kind: self.totals.by_kind,
            lost_ring_full: read_counter(&self.counters, counter::DROPPED),
            lost_inflight_full: read_counter(&self.counters, counter::INFLIGHT_FULL),
            capped: self.totals.capped,
            page_reads: self.totals.verify_reads,
            page_reads_corrected: self.totals.verify_corrections,
        };
        m.update(&self.tracker, &counts, crate::metrics::process::read());
        text.set(m.render());
    }

    /// The ring's fullest since the last call (the kernel's per-CPU peaks,
    /// reset to 0 after the read) into the totals.
    fn read_ring_fill(&mut self) {
        let Ok(peaks) = self.counters.get(&counter::RING_PEAK, 0) else {
            return;
        };
        let peak = peaks.iter().copied().max().unwrap_or(0);
        let cpus = peaks.iter().count();
        if let Ok(zero) = aya::maps::PerCpuValues::try_from(vec![0u64; cpus]) {
            let _ = self.counters.set(counter::RING_PEAK, zero, 0);
        }
        let fill = (peak as f64 / self.ring_bytes.max(1) as f64).min(1.0);
        self.totals.ring_fill_last = fill;
        self.totals.ring_fill_peak = self.totals.ring_fill_peak.max(fill);
    }

    /// Marks the pages whose events the kernel lost since the last call
    /// with a gap (after reading the events submitted before the losses
    /// were taken), in the tracker and the recording.
    fn take_losses(&mut self) -> Result<()> {
        // Losses stamped before this are in the table now (a program notes
        // its loss right after reading the clock).
        let horizon = monotonic_ns().saturating_sub(LOSS_NOTE_SLACK_NS);
        // Every loss is counted before its page is noted: while the count
        // stays where it was at the last look, which found the table in
        // that state, the table has nothing new. Walking it costs the
        // kernel a scan of all its buckets when it is empty (65 536: a few
        // million instructions, 50 times a second), so it is looked at
        // only after the count moved, and once more after it settled (a
        // page noted just after its count was read).
        let unattributed = read_counter(&self.counters, counter::LOST_UNATTRIBUTED);
        let capped = read_counter(&self.counters, counter::CAPPED);
        self.totals.capped = capped;
        let losses = read_counter(&self.counters, counter::DROPPED)
            + read_counter(&self.counters, counter::INFLIGHT_FULL)
            + capped
            + unattributed;
        let settled = losses == self.losses_seen;
        if settled && self.losses_settled {
            self.tracker.set_loss_horizon(horizon);
            return Ok(());
        }
        self.losses_seen = losses;
        self.losses_settled = settled;
        let pfns: Vec<u64> = self.lost.keys().filter_map(Result::ok).collect();
        if pfns.is_empty() && unattributed == self.unattributed_seen {
            self.tracker.set_loss_horizon(horizon);
            return Ok(());
        }
        self.drain_ring()?;
        let mut gaps = Vec::with_capacity(pfns.len());
        for pfn in pfns {
            let Ok(ts) = self.lost.get(&pfn, 0) else {
                continue;
            };
            let _ = self.lost.remove(&pfn);
            // A loss of this page between the read and the removal is gone
            // with the entry: it happened after `horizon` (within the slack
            // a later event needs to tell the state again), and the page is
            // read from the kernel right after.
            gaps.push((ts.max(horizon), Some(pfn)));
        }
        if unattributed != self.unattributed_seen {
            self.unattributed_seen = unattributed;
            gaps.push((monotonic_ns(), None));
        }
        gaps.sort_unstable();
        let mut reread = Vec::new();
        for (ts_ns, pfn) in gaps {
            match pfn {
                Some(pfn) => {
                    self.tracker.apply_gap(pfn, ts_ns);
                    reread.push(pfn);
                }
                None => {
                    self.tracker.apply_gap_everywhere(ts_ns);
                    reread.extend(self.tracker.pages().map(|p| p.pfn));
                }
            }
            if let Some(rec) = self.out.rec.as_mut() {
                rec.line(&Line::Gap { ts_ns, pfn })?;
            }
        }
        reread.sort_unstable();
        reread.dedup();
        self.reread(&reread)?;
        self.tracker.set_loss_horizon(horizon);
        Ok(())
    }

    /// Drains what is left and closes the outputs (the recording gets its `end`).
    pub fn finish(&mut self) -> Result<()> {
        self.drain_ring()?;
        self.take_losses()?;
        let now = monotonic_ns();
        self.verify(now)?;
        self.tracker.advance(now);
        if self.totals.verify_reads > 0 {
            log::info!(
                "pages read to check their counts before or while flagged: {} reads, {} disagreed with the events (a change no hook saw) and were applied",
                self.totals.verify_reads,
                self.totals.verify_corrections
            );
        }
        let (dropped, filtered) = read_counters(&self.counters);
        self.totals.dropped = dropped;
        self.totals.filtered = filtered;
        self.totals.skipped = read_counter(&self.counters, counter::SKIPPED);
        let all: Vec<u64> = (0..counter::COUNT)
            .map(|i| {
                self.counters
                    .get(&i, 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0)
            })
            .collect();
        log::info!(
            "kernel counters: submitted {} lost {} filtered {} in-flight full {} bios {} system-page grabs remembered {} capped by --max-rate {}",
            all[counter::SUBMITTED as usize],
            all[counter::DROPPED as usize],
            all[counter::FILTERED as usize],
            all[counter::INFLIGHT_FULL as usize],
            all[counter::BIOS as usize],
            all[counter::RAM_GETS as usize],
            all[counter::CAPPED as usize]
        );
        self.read_ring_fill();
        log::info!(
            "ring buffer: {} MiB, at its fullest {:.1}% (in any second)",
            self.ring_bytes >> 20,
            self.totals.ring_fill_peak * 100.0
        );
        log::info!(
            "reads: {} woken by the kernel, {} by the poll timer, {} of the kernel log",
            self.wakeups[0],
            self.wakeups[1],
            self.wakeups[2]
        );
        log::info!("{}", read_cost_line(&self.totals));
        if let Some(mut w) = self.out.jsonl.take() {
            // A FIFO or a device has nothing to sync.
            w.sync()?;
        }
        if let Some(mut rec) = self.out.rec.take() {
            rec.line(&Line::End {
                now_ns: now,
                events: self.totals.events,
                dropped,
                capped: self.totals.capped,
            })?;
            rec.finish()?;
        }
        Ok(())
    }
}

/// Headless: runs until SIGINT/SIGTERM/SIGHUP (or `duration`), then flushes
/// everything. A hang-up (the terminal went away) also points dead outputs at
/// /dev/null first, so the final lines cannot fail.
pub async fn run(loaded: &mut Loaded, syms: &Kallsyms, opts: Options) -> Result<(Tracker, Totals)> {
    let mut c = Collector::new(loaded, syms, &opts)?;
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("install SIGHUP handler")?;
    let start = Instant::now();
    let deadline = opts
        .duration
        .map(|d| tokio::time::Instant::now() + d)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86400));
    let mut second = tokio::time::interval(Duration::from_secs(1));
    let mut seconds = 0u64;
    let mut last_events = 0u64;
    let mut reported = 0u64;
    let mut groups = crate::stream::GroupStream::default();
    loop {
        tokio::select! {
            r = c.readable() => r?,
            _ = second.tick() => {
                seconds += 1;
                let now = monotonic_ns();
                let dropped = c.tick(now)?;
                if opts.print_stuck && opts.per_page {
                    reported = print_new_episodes(&c.tracker, reported, syms, opts.format);
                } else if opts.print_stuck {
                    groups.print(&c.tracker, now, syms, opts.format);
                }
                let every = opts.summary_every.as_secs();
                if every > 0 && seconds.is_multiple_of(every) {
                    let rate = (c.totals.events - last_events) as f64 / every as f64;
                    last_events = c.totals.events;
                    let capped = if c.totals.capped > 0 {
                        format!(" capped={}", c.totals.capped)
                    } else {
                        String::new()
                    };
                    println!(
                        "refwatch: {:>6.1}s events={} ({rate:.0}/s) pfns={} stuck={} lost={} ring≤{:.0}%{capped}",
                        start.elapsed().as_secs_f64(), c.totals.events, c.tracker.len(), c.tracker.stuck().len(), dropped,
                        c.totals.ring_fill_last * 100.0
                    );
                    if let Some(note) = c.tracker.caps_note() {
                        println!("refwatch: memory caps: {note}");
                    }
                    if dropped > 0 {
                        println!("refwatch: {dropped} events were lost (ring buffer full): a larger --ring-size, or watch less (--pfn, --type, --pid, --cgroup, --stacks none)");
                    }
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => {
                crate::tty::detach_dead_outputs();
                log::warn!("terminal hung up: stopping and saving what was asked for");
                break;
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    c.finish()?;
    if opts.print_stuck && opts.per_page {
        print_new_episodes(&c.tracker, reported, syms, opts.format);
    } else if opts.print_stuck {
        let now = c.tracker.now_ns();
        groups.print(&c.tracker, now, syms, opts.format);
    }
    Ok((c.tracker, c.totals))
}

/// A state refwatch read from the kernel: into the outputs, then the tracker.
fn apply_read(ev: &PageEvent, tracker: &mut Tracker, out: &mut Outputs<'_>) -> Result<()> {
    // A read when a watchpoint was armed or ended goes by its name.
    let symbol = crate::watch::HOOK_NAMES
        .iter()
        .find(|(h, _)| *h == ev.hook)
        .map_or(snapshot::SYMBOL, |(_, s)| *s);
    if out.jsonl.is_some() || out.rec.is_some() {
        let j = out.syms.to_json(ev, symbol, out.format);
        if let Some(w) = out.jsonl.as_mut() {
            serde_json::to_writer(&mut *w, &j).context("write JSON line")?;
            w.write_all(b"\n").context("write JSON line")?;
        }
        if let Some(rec) = out.rec.as_mut() {
            rec.line(&Line::Event(j))?;
        }
    }
    tracker.apply(ev);
    Ok(())
}

/// Prints the episodes recorded since `from` (counted by
/// [`Tracker::episodes_opened`]: the oldest kept ones may have been
/// forgotten since) and returns the new count.
fn print_new_episodes(tracker: &Tracker, from: u64, syms: &Kallsyms, fmt: Format) -> u64 {
    let new = tracker.episodes_opened().saturating_sub(from);
    let new = usize::try_from(new).unwrap_or(usize::MAX);
    let skip = tracker.episodes.len().saturating_sub(new);
    for ep in tracker.episodes.iter().skip(skip) {
        println!(
            "STUCK pfn={:#x} type={} detector={} since={:.3}s: {}",
            ep.pfn,
            pgmap_name(ep.pgmap_type),
            ep.detector.name(),
            ep.start_ns as f64 / 1e9,
            ep.reason
        );
        for h in &ep.holders {
            println!(
                "  holder: {} pid {} ({}) at {:.3}s via {}",
                h.comm,
                h.tgid,
                h.kind.name(),
                h.ts_ns as f64 / 1e9,
                stack_strings(&h.stack, syms, fmt).join(" <- ")
            );
        }
        if let Some(n) = &ep.holder_note {
            println!("  holder: unknown: {n}");
        }
    }
    tracker.episodes_opened()
}

fn read_counter(c: &PerCpuArray<MapData, u64>, idx: u32) -> u64 {
    c.get(&idx, 0)
        .map(|vals| vals.iter().copied().sum())
        .unwrap_or(0)
}

/// Events lost (every kind: ring buffer full, in-flight or batch table
/// full) and events filtered in the kernel.
fn read_counters(c: &PerCpuArray<MapData, u64>) -> (u64, u64) {
    let lost = read_counter(c, counter::DROPPED) + read_counter(c, counter::INFLIGHT_FULL);
    (lost, read_counter(c, counter::FILTERED))
}
