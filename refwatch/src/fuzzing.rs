//! What the fuzz targets (the `fuzz` crate, outside the workspace) run, and
//! the seeds of the ring-record target: arbitrary bytes through the
//! recording reader, the tracker and the report; arbitrary ring records
//! through the decoder and the tracker, with ticks and losses, then every
//! view of the tracker. Kept here so that the targets stay a line each and
//! the unit tests can run the same paths on real inputs.
//!
//! A ring input is a 4-byte [`RingConfig`] then steps of one op byte and
//! one ring record ([`EVENT_SIZE`] bytes, the last maybe short). The op's
//! low three bits say what the step does ([`Op`]), the next two the role the
//! collector would have found on the event's stack, and the top three how
//! much of the record the decoder gets ([`record_cut`]): the kernel sizes
//! records to the stack their event asks for.

use std::collections::HashMap;

use refwatch_common::{
    EVENT_HEADER_SIZE, EVENT_SIZE, Event, RECORD_STEP_FRAMES, record_room, record_size,
};

use crate::{
    event::{Decoder, Kind, to_bytes, to_raw},
    format::export::{ExportFormat, Exporter},
    format::json::to_page_event,
    format::recording::{self, Line, Recording},
    report::{self, Report},
    rules::Rules,
    state::{Thresholds, Tracker},
    symbols::Role,
    symbols::kallsyms::Kallsyms,
};

/// Bytes of a ring step: the op byte and a record.
pub const STEP: usize = 1 + EVENT_SIZE;

/// Bytes of the [`RingConfig`] a ring input starts with.
pub const CONFIG: usize = 4;

/// Runs a recording's bytes as `refwatch report` and `refwatch export` do:
/// the streaming reader into the report (text and JSON), and again into
/// every export format. The report, when the bytes were a recording
/// refwatch accepts.
pub fn recording(data: &[u8]) -> Option<Report> {
    let mut rec = recording::Reader::new(data, "fuzz input").ok()?;
    let r = report::build_from(&mut rec, None, false).ok()?;
    let text = report::text(&r);
    assert!(text.ends_with('\n'), "a report ends its last line");
    let json = serde_json::to_string(&r).ok()?;
    assert!(
        serde_json::from_str::<serde_json::Value>(&json).is_ok(),
        "the JSON report reads back"
    );
    for format in [
        ExportFormat::Jsonl,
        ExportFormat::Csv,
        ExportFormat::Perfetto,
    ] {
        export_all(data, format);
    }
    Some(r)
}

/// Every event of a recording the reader accepted, exported in `format`
/// into nothing (as `refwatch export` writes them).
fn export_all(data: &[u8], format: ExportFormat) {
    let Ok(mut rec) = recording::Reader::new(data, "fuzz input") else {
        return;
    };
    let mut x = Exporter::new(format, false);
    let out = &mut std::io::sink();
    x.begin(out).expect("a sink takes every write");
    while let Ok(Some((_, line))) = rec.next_line() {
        if let Line::Event(e) = line {
            x.event(e, out).expect("a sink takes every write");
        }
    }
    x.end(out).expect("a sink takes every write");
}

/// How the tracker of a ring input is set up (its first [`CONFIG`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Events kept per page, less one.
    pub history: u8,
    /// Tracked pages, less one.
    pub max_pfns: u8,
    /// Episodes kept, less one.
    pub max_episodes: u8,
    /// Bit 0: fs-dax is 1-based (`__put_devmap_managed_*_refs`); bit 1:
    /// device-private is 0-based (`zone_device_page_init`); bits 2–7: the
    /// detectors' thresholds in quarter seconds.
    pub flags: u8,
}

impl RingConfig {
    fn from_bytes(b: [u8; CONFIG]) -> Self {
        Self {
            history: b[0],
            max_pfns: b[1],
            max_episodes: b[2],
            flags: b[3],
        }
    }

    fn bytes(self) -> [u8; CONFIG] {
        [self.history, self.max_pfns, self.max_episodes, self.flags]
    }

    /// The rules and thresholds `rules` and `th` come closest to.
    fn of(rules: &Rules, th: Thresholds) -> Self {
        let devmap = rules.fsdax_idle == 1;
        let init = rules.private_idle == 0;
        let quarters = (th.held_ns / QUARTER_NS).min(63) as u8;
        Self {
            history: 63,
            max_pfns: u8::MAX,
            max_episodes: u8::MAX,
            flags: u8::from(devmap) | u8::from(init) << 1 | quarters << 2,
        }
    }

    /// The tracker this config sets up: rules as `Rules::from_kernel` decides
    /// them from the kernel's symbols.
    pub fn tracker(self) -> Tracker {
        let mut symbols = String::new();
        if self.flags & 1 != 0 {
            symbols.push_str("ffffffff81000000 T __put_devmap_managed_page_refs\n");
        }
        if self.flags & 2 != 0 {
            symbols.push_str("ffffffff81000100 T zone_device_page_init\n");
        }
        let rules = Rules::from_kernel(&Kallsyms::parse(&symbols));
        let th = u64::from(self.flags >> 2) * QUARTER_NS;
        let thresholds = Thresholds {
            held_ns: th,
            pinned_ns: th,
            unmapped_ns: th,
        };
        let mut t = Tracker::new(
            rules,
            thresholds,
            usize::from(self.history) + 1,
            usize::from(self.max_pfns) + 1,
        );
        t.set_max_episodes(usize::from(self.max_episodes) + 1);
        t
    }
}

const QUARTER_NS: u64 = 250_000_000;

/// What a ring step does (the op byte's low three bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Decode the record and apply it, as the collector does (ops 0 and 5–7).
    Event = 0,
    /// A tick at the record's `ts_ns`: losses known up to then, detectors run.
    Tick = 1,
    /// A loss on the record's `pfn` at its `ts_ns`.
    Gap = 2,
    /// A loss no page was noted for, at the record's `ts_ns`.
    GapEverywhere = 3,
    /// The record as a page state refwatch read from the kernel (a snapshot).
    Snapshot = 4,
}

impl Op {
    fn of(b: u8) -> Self {
        match b & 7 {
            1 => Self::Tick,
            2 => Self::Gap,
            3 => Self::GapEverywhere,
            4 => Self::Snapshot,
            _ => Self::Event,
        }
    }
}

/// The part of a step's record the decoder gets, by the op's top three
/// bits: 0 all of it; 1–4 the header and room for 0, 8, 16 or 24 frames, as
/// the kernel sizes records; 5–7 a cut inside the header or the stack.
fn record_cut(record: &[u8], op: u8) -> &[u8] {
    let len = match op >> 5 {
        0 => record.len(),
        n @ 1..=4 => record_size(usize::from(n - 1) * RECORD_STEP_FRAMES),
        5 => EVENT_HEADER_SIZE / 2,
        6 => EVENT_HEADER_SIZE - 1,
        _ => EVENT_HEADER_SIZE + 4,
    };
    record.get(..len).unwrap_or(record)
}

fn role_of_op(b: u8) -> Role {
    match (b >> 3) & 3 {
        1 => Role::Map,
        2 => Role::Unmap,
        _ => Role::Other,
    }
}

fn op_of_role(role: Role) -> u8 {
    match role {
        Role::Other => 0,
        Role::Map => 1 << 3,
        Role::Unmap => 2 << 3,
    }
}

/// A record field read as the decoder does (native byte order); 0 when the
/// record is too short for it.
fn field_u64(record: &[u8], offset: usize) -> u64 {
    record
        .get(offset..)
        .and_then(|b| b.first_chunk::<8>())
        .map_or(0, |b| u64::from_ne_bytes(*b))
}

/// Runs ring steps through the decoder and the tracker as the collector
/// does, then reads every view of the tracker and checks that its open
/// episodes are where its pages say. The tracker at the end.
pub fn ring(data: &[u8]) -> Tracker {
    let (config, steps) = match data.split_first_chunk::<CONFIG>() {
        Some((c, rest)) => (RingConfig::from_bytes(*c), rest),
        None => (RingConfig::from_bytes([0; CONFIG]), &[][..]),
    };
    let mut t = config.tracker();
    let mut decoder = Decoder::default();
    for step in steps.chunks(STEP) {
        let Some((&op, record)) = step.split_first() else {
            continue;
        };
        let ts = field_u64(record, std::mem::offset_of!(Event, ts_ns));
        let pfn = field_u64(record, std::mem::offset_of!(Event, pfn));
        match Op::of(op) {
            Op::Tick => {
                t.set_loss_horizon(ts);
                t.advance(ts);
            }
            Op::Gap => t.apply_gap(pfn, ts),
            Op::GapEverywhere => t.apply_gap_everywhere(ts),
            kind @ (Op::Event | Op::Snapshot) => {
                // An undecodable record is counted and skipped.
                let Ok(mut first) = decoder.decode(record_cut(record, op)) else {
                    continue;
                };
                // A free's record that reports the page's last put is
                // both, in order.
                let free = decoder.split_last_put(&mut first);
                for mut ev in std::iter::once(first).chain(free) {
                    ev.role = role_of_op(op);
                    if kind == Op::Snapshot {
                        ev.kind = Kind::Snapshot;
                    }
                    t.apply(&ev);
                }
            }
        }
    }
    views(&t);
    t
}

/// Reads what the TUI, the summary and the report read of a tracker, and
/// checks that every open episode is kept where its page says, unless the
/// episode cap left it unkept.
fn views(t: &Tracker) {
    for p in t.pages_sorted() {
        for (d, idx) in &p.open {
            // Opened when every kept episode was open: flagged, not kept.
            if *idx == crate::state::UNKEPT {
                continue;
            }
            let e = t.episodes.get(*idx);
            assert!(
                e.is_some_and(|e| e.pfn == p.pfn && e.detector == *d && e.end_ns.is_none()),
                "page {:#x}: open {} episode {idx} is {e:?}",
                p.pfn,
                d.name()
            );
        }
        let _ = (p.flags(), p.holder(), p.history.iter().count(), p.unknown());
    }
    let stuck = t.stuck();
    assert!(stuck.windows(2).all(|w| w[0].pfn < w[1].pfn));
    let _ = (t.unknown_pages(), t.gapped_pages(), t.over_cap());
    let _ = report::summary_table(t);
}

/// A ring input holding a recording's events, ticks and losses, for the
/// seed corpus: each event as the kernel would have sent it, its stack's
/// symbols given made-up addresses (one per symbol, plus the offset) and
/// the role its stack says in the op byte.
pub fn ring_seed(rec: &Recording) -> Vec<u8> {
    let mut out = RingConfig::of(&rec.header.rules, rec.header.thresholds)
        .bytes()
        .to_vec();
    let mut symbols: HashMap<&str, u64> = HashMap::new();
    let mut step = |op: u8, raw: &Event| {
        out.push(op);
        out.extend_from_slice(&to_bytes(raw));
    };
    let marker = |ts_ns: u64, pfn: u64| {
        let mut raw = Event::zeroed();
        raw.ts_ns = ts_ns;
        raw.pfn = pfn;
        raw
    };
    for line in &rec.lines {
        match line {
            Line::Event(j) => {
                let Some(mut ev) = to_page_event(j) else {
                    continue;
                };
                let frames: Vec<u64> = j
                    .stack
                    .iter()
                    .map(|f| {
                        let (name, off) = f.split_once("+0x").unwrap_or((f, "0"));
                        let next = 0xffff_ffff_8100_0000 + ((symbols.len() as u64) << 16);
                        let base = *symbols.entry(name).or_insert(next);
                        base + u64::from_str_radix(off, 16).unwrap_or(0) % 0x1_0000
                    })
                    .collect();
                ev.stack = frames.into();
                // The kernel never sends a snapshot: the op says it.
                let op = if ev.kind == Kind::Snapshot {
                    ev.kind = Kind::Set;
                    Op::Snapshot
                } else {
                    Op::Event
                };
                // Sized as the kernel sizes it: room for its stack.
                let cut = (record_room(ev.stack.len()) / RECORD_STEP_FRAMES + 1) as u8;
                step(op as u8 | op_of_role(ev.role) | cut << 5, &to_raw(&ev));
            }
            Line::Tick { now_ns, .. } | Line::End { now_ns, .. } => {
                step(Op::Tick as u8, &marker(*now_ns, 0));
            }
            Line::Gap {
                ts_ns,
                pfn: Some(pfn),
            } => step(Op::Gap as u8, &marker(*ts_ns, *pfn)),
            Line::Gap { ts_ns, pfn: None } => step(Op::GapEverywhere as u8, &marker(*ts_ns, 0)),
            Line::Header(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
