//! The live loop: read the ring buffer through `AsyncFd`, decode, update the
//! per-PFN state, write exports, report drops, stop cleanly on SIGINT/SIGTERM.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufWriter, Write as _},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use refwatch_common::counter;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    event::decode,
    jsonl::{Format, to_json},
    kallsyms::Kallsyms,
    loader::Loaded,
    state::Tracker,
};

/// What the collector does with events.
#[derive(Debug, Clone)]
pub struct Options {
    pub jsonl: Option<PathBuf>,
    pub format: Format,
    pub history: usize,
    /// Period of the one-line summary on stdout (0: none).
    pub summary_every: Duration,
    /// Stop after this long (None: until a signal).
    pub duration: Option<Duration>,
}

/// Totals at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub events: u64,
    pub decode_errors: u64,
    pub dropped: u64,
    pub filtered: u64,
}

/// Runs until SIGINT/SIGTERM (or `duration`), then flushes everything.
pub async fn run(
    loaded: &mut Loaded,
    syms: &Kallsyms,
    opts: &Options,
) -> Result<(Tracker, Totals)> {
    let symbols: HashMap<u32, &'static str> = loaded
        .rows
        .iter()
        .filter(|r| r.attached())
        .filter_map(|r| Some((r.hook?, r.symbol?)))
        .collect();
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
    // SAFETY: the ring buffer owns its map fd, which stays open and the same
    // for as long as the `AsyncFd` owns the ring buffer.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow!("register the ring buffer with tokio: {e}"))?;
    let mut out = match &opts.jsonl {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("create {}", p.display()))?,
        )),
        None => None,
    };
    let mut tracker = Tracker::new(opts.history);
    let mut totals = Totals::default();
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let start = Instant::now();
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let period = if opts.summary_every.is_zero() {
        Duration::from_secs(3600)
    } else {
        opts.summary_every
    };
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    let mut last_events = 0u64;

    let mut drain =
        |ring: &mut RingBuf<MapData>, tracker: &mut Tracker, totals: &mut Totals| -> Result<()> {
            while let Some(item) = ring.next() {
                match decode(&item) {
                    Ok(ev) => {
                        totals.events += 1;
                        if let Some(w) = out.as_mut() {
                            let sym = symbols.get(&ev.hook).copied().unwrap_or("?");
                            let j = to_json(&ev, sym, syms, opts.format);
                            serde_json::to_writer(&mut *w, &j).context("write JSON line")?;
                            w.write_all(b"\n").context("write JSON line")?;
                        }
                        tracker.apply(&ev);
                    }
                    Err(e) => {
                        totals.decode_errors += 1;
                        log::warn!("undecodable event: {e}");
                    }
                }
            }
            Ok(())
        };

    loop {
        let sleep_until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("wait for ring buffer")?;
                drain(guard.get_inner_mut(), &mut tracker, &mut totals)?;
                guard.clear_ready();
            }
            _ = tick.tick() => {
                let (dropped, _) = read_counters(&counters);
                let rate = (totals.events - last_events) as f64 / period.as_secs_f64();
                last_events = totals.events;
                println!(
                    "refwatch: {:>6.1}s events={} ({rate:.0}/s) pfns={} dropped={}",
                    start.elapsed().as_secs_f64(), totals.events, tracker.len(), dropped
                );
                if dropped > 0 {
                    println!("refwatch: {dropped} events were lost (ring buffer full): narrow the probes (--mode, fewer hooks) or turn stacks off (--no-stacks)");
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = tokio::time::sleep_until(sleep_until) => break,
        }
    }
    drain(ring.get_mut(), &mut tracker, &mut totals)?;
    if let Some(mut w) = out.take() {
        w.flush().context("flush JSON lines")?;
        w.get_ref().sync_all().context("sync JSON lines")?;
    }
    let (dropped, filtered) = read_counters(&counters);
    totals.dropped = dropped;
    totals.filtered = filtered;
    Ok((tracker, totals))
}

fn read_counters(c: &PerCpuArray<MapData, u64>) -> (u64, u64) {
    let sum = |idx: u32| -> u64 {
        c.get(&idx, 0)
            .map(|vals| vals.iter().copied().sum())
            .unwrap_or(0)
    };
    (sum(counter::DROPPED), sum(counter::FILTERED))
}
