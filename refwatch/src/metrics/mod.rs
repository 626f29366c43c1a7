//! Prometheus/OpenMetrics numbers for `--metrics`: built from the
//! tracker's state and the collector's counters once a second, rendered as
//! text for [`serve`] to hand out. Pure: no I/O here but the caller's
//! reading of `/proc/self` ([`process`]).

pub mod process;
pub mod serve;

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    event::{Kind, pgmap_name},
    fasthash::FastMap,
    state::Tracker,
};

/// Holder comms given a series of their own in
/// `refwatch_holder_stuck_pages`; the others are summed under
/// [`OTHER_COMMS`].
pub const TOP_COMMS: usize = 20;

/// The `comm` label of the holders beyond the [`TOP_COMMS`] with the most
/// stuck pages.
pub const OTHER_COMMS: &str = "(other)";

/// The OpenMetrics text's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric family refwatch exposes, as named in the text (counters
/// with their `_total`).
pub const NAMES: [&str; 11] = [
    "refwatch_pages_tracked",
    "refwatch_pages_stuck",
    "refwatch_stuck_oldest_seconds",
    "refwatch_episodes_opened_total",
    "refwatch_episodes_closed_total",
    "refwatch_events_seen_total",
    "refwatch_events_lost_total",
    "refwatch_page_reads_total",
    "refwatch_holder_stuck_pages",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    pgmap_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StuckLabels {
    pgmap_type: &'static str,
    detector: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommLabel {
    comm: String,
}

/// The collector's counts a tick hands over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events decoded, by wire kind value ([`Kind::raw`]).
    pub seen_by_kind: [u64; 13],
    /// Events lost because the ring buffer was full.
    pub lost_ring_full: u64,
    /// Events lost because the in-flight table was full.
    pub lost_inflight_full: u64,
    /// Events past `--max-rate`, counted and not recorded.
    pub capped: u64,
    /// Pages read to check their counts before or while flagged, and the
    /// reads that disagreed with the events (applied).
    pub page_reads: u64,
    pub page_reads_corrected: u64,
}

/// refwatch's own use of the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
}

/// The metric values, updated in place.
pub struct Metrics {
    registry: Registry,
    pages_tracked: Family<TypeLabel, Gauge>,
    pages_stuck: Family<StuckLabels, Gauge>,
    oldest: Family<TypeLabel, Gauge<f64, AtomicU64>>,
    opened: Counter,
    closed: Counter,
    seen: Family<KindLabel, Counter>,
    lost: Family<ReasonLabel, Counter>,
    reads: Family<ResultLabel, Counter>,
    holders: Family<CommLabel, Gauge>,
    cpu: Counter<f64, AtomicU64>,
    rss: Gauge,
    /// The monotonic values last added to the counters.
    last: Last,
}

#[derive(Default)]
struct Last {
    opened: u64,
    closed: u64,
    counts: Counts,
    cpu_seconds: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            pages_tracked: Family::default(),
            pages_stuck: Family::default(),
            oldest: Family::default(),
            opened: Counter::default(),
            closed: Counter::default(),
            seen: Family::default(),
            lost: Family::default(),
            reads: Family::default(),
            holders: Family::default(),
            cpu: Counter::default(),
            rss: Gauge::default(),
            last: Last::default(),
        };
        let r = &mut m.registry;
        r.register(
            "refwatch_pages_tracked",
            "Device pages refwatch follows now, by page map type",
            m.pages_tracked.clone(),
        );
        r.register(
            "refwatch_pages_stuck",
            "Device pages a detector flags now, by page map type and detector",
            m.pages_stuck.clone(),
        );
        r.register(
            "refwatch_stuck_oldest_seconds",
            "Age of the oldest open stuck episode, by page map type (absent: none open)",
            m.oldest.clone(),
        );
        r.register(
            "refwatch_episodes_opened",
            "Stuck episodes opened",
            m.opened.clone(),
        );
        r.register(
            "refwatch_episodes_closed",
            "Stuck episodes closed (the page recovered, or its events were lost)",
            m.closed.clone(),
        );
        r.register(
            "refwatch_events_seen",
            "Events decoded, by kind",
            m.seen.clone(),
        );
        r.register(
            "refwatch_events_lost",
            "Events the kernel could not hand over, by reason (ring_full, inflight_full; rate_cap: counted past --max-rate, not recorded)",
            m.lost.clone(),
        );
        r.register(
            "refwatch_page_reads",
            "Pages read from the kernel to check their counts before or while a detector flags them, by result (agreed; corrected: a change no hook saw, applied)",
            m.reads.clone(),
        );
        r.register(
            "refwatch_holder_stuck_pages",
            "Stuck pages by the command name of a holder (the top 20 names; the rest as \"(other)\")",
            m.holders.clone(),
        );
        r.register(
            "process_cpu_seconds",
            "CPU time refwatch used, user and system",
            m.cpu.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "refwatch's resident memory",
            m.rss.clone(),
        );
        for reason in ["ring_full", "inflight_full", "rate_cap"] {
            let _ = m.lost.get_or_create(&ReasonLabel { reason });
        }
        for result in ["agreed", "corrected"] {
            let _ = m.reads.get_or_create(&ResultLabel { result });
        }
        m
    }

    /// Takes the state of `tracker` (at its `now_ns`), the collector's
    /// `counts`, and `process` (when it could be read).
    pub fn update(&mut self, tracker: &Tracker, counts: &Counts, process: Option<Process>) {
        self.pages(tracker);
        self.episodes(tracker);
        self.events(counts);
        if let Some(p) = process {
            let add = p.cpu_seconds - self.last.cpu_seconds;
            if add > 0.0 {
                self.cpu.inc_by(add);
                self.last.cpu_seconds = p.cpu_seconds;
            }
            self.rss
                .set(i64::try_from(p.resident_bytes).unwrap_or(i64::MAX));
        }
    }

    fn pages(&mut self, tracker: &Tracker) {
        let now = tracker.now_ns();
        let mut tracked: FastMap<&'static str, i64> = FastMap::default();
        let mut stuck: FastMap<(&'static str, &'static str), i64> = FastMap::default();
        let mut oldest: FastMap<&'static str, u64> = FastMap::default();
        let mut by_comm: FastMap<&str, i64> = FastMap::default();
        for p in tracker.pages() {
            let ty = pgmap_name(p.pgmap_type);
            *tracked.entry(ty).or_default() += 1;
            if !p.stuck() {
                continue;
            }
            for (d, i) in &p.open {
                *stuck.entry((ty, d.name())).or_default() += 1;
                if let Some(e) = tracker.episodes.get(*i) {
                    let o = oldest.entry(ty).or_insert(e.start_ns);
                    *o = (*o).min(e.start_ns);
                }
            }
            let mut comms: Vec<&str> = p.holders.iter().map(|h| h.comm.as_str()).collect();
            comms.sort_unstable();
            comms.dedup();
            for c in comms {
                *by_comm.entry(c).or_default() += 1;
            }
        }
        self.pages_tracked.clear();
        for (pgmap_type, n) in tracked {
            self.pages_tracked
                .get_or_create(&TypeLabel { pgmap_type })
                .set(n);
        }
        self.pages_stuck.clear();
        for ((pgmap_type, detector), n) in stuck {
            self.pages_stuck
                .get_or_create(&StuckLabels {
                    pgmap_type,
                    detector,
                })
                .set(n);
        }
        self.oldest.clear();
        for (pgmap_type, start) in oldest {
            self.oldest
                .get_or_create(&TypeLabel { pgmap_type })
                .set(now.saturating_sub(start) as f64 / 1e9);
        }
        self.holders.clear();
        for (comm, n) in top_comms(by_comm, TOP_COMMS) {
            self.holders.get_or_create(&CommLabel { comm }).set(n);
        }
    }

    fn episodes(&mut self, tracker: &Tracker) {
        // Closed ones still kept, and those forgotten (only closed ones are).
        let closed = tracker
            .episodes
            .iter()
            .filter(|e| e.end_ns.is_some())
            .count() as u64
            + tracker.episodes_dropped();
        let opened = tracker.episodes_opened();
        self.opened.inc_by(opened.saturating_sub(self.last.opened));
        self.closed.inc_by(closed.saturating_sub(self.last.closed));
        self.last.opened = self.last.opened.max(opened);
        self.last.closed = self.last.closed.max(closed);
    }

    fn events(&mut self, counts: &Counts) {
        for kind in Kind::ALL {
            let i = kind.raw() as usize;
            let (Some(now), Some(last)) = (
                counts.seen_by_kind.get(i),
                self.last.counts.seen_by_kind.get(i),
            ) else {
                continue;
            };
            // A kind shows once it was seen.
            if *now > *last {
                self.seen
                    .get_or_create(&KindLabel { kind: kind.name() })
                    .inc_by(now - last);
            }
        }
        for (reason, now, last) in [
            (
                "ring_full",
                counts.lost_ring_full,
                self.last.counts.lost_ring_full,
            ),
            (
                "inflight_full",
                counts.lost_inflight_full,
                self.last.counts.lost_inflight_full,
            ),
            ("rate_cap", counts.capped, self.last.counts.capped),
        ] {
            self.lost
                .get_or_create(&ReasonLabel { reason })
                .inc_by(now.saturating_sub(last));
        }
        let agreed = |c: &Counts| c.page_reads.saturating_sub(c.page_reads_corrected);
        for (result, now, last) in [
            ("agreed", agreed(counts), agreed(&self.last.counts)),
            (
                "corrected",
                counts.page_reads_corrected,
                self.last.counts.page_reads_corrected,
            ),
        ] {
            self.reads
                .get_or_create(&ResultLabel { result })
                .inc_by(now.saturating_sub(last));
        }
        let mut last = *counts;
        for (l, prev) in last
            .seen_by_kind
            .iter_mut()
            .zip(self.last.counts.seen_by_kind)
        {
            *l = (*l).max(prev);
        }
        self.last.counts = last;
    }

    /// The OpenMetrics text of the values now (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The `n` comms with the most pages (ties by name), and the rest summed
/// under [`OTHER_COMMS`].
fn top_comms(by_comm: FastMap<&str, i64>, n: usize) -> Vec<(String, i64)> {
    let mut v: Vec<(&str, i64)> = by_comm.into_iter().collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let rest: i64 = v.iter().skip(n).map(|(_, k)| k).sum();
    let mut out: Vec<(String, i64)> = v
        .into_iter()
        .take(n)
        .map(|(c, k)| (c.to_string(), k))
        .collect();
    if rest > 0 {
        out.push((OTHER_COMMS.to_string(), rest));
    }
    out
}

#[cfg(test)]
mod tests;
