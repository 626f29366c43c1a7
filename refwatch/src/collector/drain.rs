//! Reading the ring's events: each decoded, named, written to the outputs
//! and applied to the tracker, the reads timed on the thread's CPU clock.

use std::io::Write as _;

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};

use super::{Outputs, Totals};
use crate::{
    event::{PageEvent, StackTaken},
    state::Tracker,
};

/// CPU time of the calling thread in nanoseconds (a system call: taken
/// once per read of the ring, not per event).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; the clock exists on
    // every kernel refwatch runs on (2.6.12 and later).
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Decodes everything the ring holds now into the outputs and the
/// tracker.
pub(super) fn drain(
    ring: &mut RingBuf<MapData>,
    tracker: &mut Tracker,
    totals: &mut Totals,
    out: &mut Outputs<'_>,
) -> Result<()> {
    // Timed from the first event on: an empty read (most polls) costs no
    // clock read.
    let mut started = None;
    let result = drain_items(ring, tracker, totals, out, &mut started);
    if let Some(t0) = started {
        totals.read_cpu_ns += thread_cpu_ns().saturating_sub(t0);
    }
    result
}

fn drain_items(
    ring: &mut RingBuf<MapData>,
    tracker: &mut Tracker,
    totals: &mut Totals,
    out: &mut Outputs<'_>,
    started: &mut Option<u64>,
) -> Result<()> {
    while let Some(item) = ring.next() {
        if started.is_none() {
            *started = Some(thread_cpu_ns());
        }
        match out.decoder.decode(&item) {
            // Most records are one event; a page's free also brings its
            // last put, first.
            Ok(mut ev) => {
                let mut free = if out.decoder.has_last_put() {
                    out.decoder.split_last_put(&mut ev)
                } else {
                    None
                };
                // One place takes every event, so that `take` and its
                // helpers are inlined once, as with one event a record.
                loop {
                    take(&mut ev, tracker, totals, out)?;
                    match free.take() {
                        Some(f) => ev = f,
                        None => break,
                    }
                }
            }
            Err(e) => {
                totals.decode_errors += 1;
                log::warn!("undecodable event: {e}");
            }
        }
    }
    Ok(())
}

/// One decoded event: named, written to the outputs, applied to the
/// tracker. By reference: the event stays where it was decoded.
#[inline(always)]
fn take(
    ev: &mut PageEvent,
    tracker: &mut Tracker,
    totals: &mut Totals,
    out: &mut Outputs<'_>,
) -> Result<()> {
    totals.events += 1;
    if let Some(n) = totals.by_kind.get_mut(ev.kind.raw() as usize) {
        *n += 1;
    }
    let named = out.stacks.get(&ev.stack, &mut out.syms);
    let (sym, hook_role) = out
        .hooks
        .get(ev.hook as usize)
        .copied()
        .unwrap_or(("?", None));
    ev.role = hook_role.unwrap_or(named.role);
    let cgroup = if out.jsonl.is_some() || out.rec.is_some() {
        out.cgroups.get(ev.tgid)
    } else {
        None
    };
    if let Some(w) = out.jsonl.as_mut() {
        let mut j = out.syms.to_json_named(ev, sym, out.format, &named.frames);
        j.cgroup = cgroup.as_deref().map(Into::into);
        serde_json::to_writer(&mut *w, &j).context("write JSON line")?;
        w.write_all(b"\n").context("write JSON line")?;
    }
    if out.print_events {
        println!("{}", crate::watch::event_line(ev, sym, &named.frames));
    }
    if let Some(rec) = out.rec.as_mut() {
        let stack = (ev.stack_taken != StackTaken::No).then_some(named);
        rec.live_event(ev, sym, stack, &mut out.syms, out.format, cgroup.as_deref())?;
    }
    tracker.apply(ev);
    out.rotate_if_full(tracker, totals)
}

/// refwatch's log line of what reading the ring's events cost (the
/// overhead bench reads it back: keep its words).
pub(super) fn read_cost_line(t: &Totals) -> String {
    let per_event = (t.events > 0).then(|| t.read_cpu_ns / t.events);
    format!(
        "events read: {} in {} us of CPU, {} ns per event (decode, stacks named, outputs, per-PFN state)",
        t.events,
        t.read_cpu_ns / 1000,
        per_event.map_or("-".to_owned(), |n| n.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_cost_line_says_the_cpu_time_per_event() {
        let t = Totals {
            events: 1200,
            read_cpu_ns: 3_146_000,
            ..Totals::default()
        };
        // The words `cargo xtask bench overhead` reads back.
        assert_eq!(
            read_cost_line(&t),
            "events read: 1200 in 3146 us of CPU, 2621 ns per event (decode, stacks named, outputs, per-PFN state)"
        );
        assert!(read_cost_line(&Totals::default()).contains("in 0 us of CPU, - ns per event"));
    }

    #[test]
    fn the_thread_cpu_clock_moves_with_work() {
        let t0 = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_ns() > t0, "{x}");
    }
}
