//! The page table's data: one compact [`Row`] per tracked PFN, the filter,
//! the sort order and the search. Pure functions of the rows; the tracker is
//! only read when the rows are rebuilt.

use std::fmt::Write as _;

use refwatch_common::pgmap;

use crate::{
    event::{Kind, pgmap_from_name, pgmap_name},
    format::export::parse_pfns,
    state::{Detector, Page, PageState},
};

/// A task name kept inline (the kernel's `comm` is at most 15 bytes), so a
/// million rows cost no allocation.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(16);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; 16];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        Self {
            bytes,
            len: end as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    fn prefix_key(&self) -> u64 {
        let mut k = [0u8; 8];
        k.copy_from_slice(&self.bytes[..8]);
        u64::from_be_bytes(k)
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Bit of a detector in [`Row::flags`].
pub fn detector_bit(d: Detector) -> u8 {
    match d {
        Detector::Held => 1,
        Detector::Pinned => 2,
        Detector::UnmappedNotFreed => 4,
        Detector::MigrationBlocked => 8,
        Detector::LayoutWait => 16,
        Detector::Orphaned => 32,
        Detector::KeptByChild => 64,
    }
}

/// The detectors set in `flags`, in [`Detector::ALL`] order.
pub fn detectors(flags: u8) -> impl Iterator<Item = Detector> {
    Detector::ALL
        .into_iter()
        .filter(move |d| flags & detector_bit(*d) != 0)
}

/// What the table shows of one page.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub pfn: u64,
    pub state_since_ns: u64,
    pub last_ns: u64,
    pub refcount: Option<i32>,
    /// Holder's process id, when a holder is known.
    pub tgid: u32,
    pub pgmap_type: u8,
    pub state: PageState,
    pub last: Kind,
    /// Open detectors ([`detector_bit`]).
    pub flags: u8,
    /// `comm` is the holder's (else the last task that touched the page).
    pub holder: bool,
    pub comm: Comm,
    /// A hardware watchpoint watches it (as the tracker knows).
    pub watched: bool,
}

impl Row {
    pub fn from_page(p: &Page) -> Self {
        let mut flags = 0;
        for d in p.open.keys() {
            flags |= detector_bit(*d);
        }
        let (holder, tgid, comm) = match p.holder() {
            Some(h) => (true, h.tgid, Comm::new(&h.comm)),
            None => (false, 0, Comm::new(&p.last_comm)),
        };
        Self {
            pfn: p.pfn,
            state_since_ns: p.state_since_ns,
            last_ns: p.last_ns,
            refcount: p.refcount,
            tgid,
            pgmap_type: p.pgmap_type.min(u32::from(u8::MAX)) as u8,
            state: p.state,
            last: p.last_kind,
            flags,
            holder,
            comm,
            watched: p.watched_since != 0,
        }
    }

    pub fn stuck(&self) -> bool {
        self.flags != 0
    }

    /// The most specific detector flagging the page (the row's colour):
    /// `held` says least, as every other condition also holds references.
    pub fn detector(&self) -> Option<Detector> {
        [
            Detector::LayoutWait,
            Detector::UnmappedNotFreed,
            Detector::Pinned,
            Detector::MigrationBlocked,
            Detector::Orphaned,
            Detector::Held,
        ]
        .into_iter()
        .find(|d| self.flags & detector_bit(*d) != 0)
    }

    pub fn type_name(&self) -> &'static str {
        pgmap_name(u32::from(self.pgmap_type))
    }
}

/// A sortable column of the page table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Pfn,
    Type,
    Refcount,
    State,
    Age,
    Last,
    Task,
    Detector,
}

impl Column {
    pub const ALL: [Column; 8] = [
        Self::Pfn,
        Self::Type,
        Self::Refcount,
        Self::State,
        Self::Age,
        Self::Last,
        Self::Task,
        Self::Detector,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Pfn => "PFN",
            Self::Type => "TYPE",
            Self::Refcount => "REF",
            Self::State => "STATE",
            Self::Age => "IN STATE",
            Self::Last => "LAST",
            Self::Task => "TASK",
            Self::Detector => "DETECTOR",
        }
    }

    /// Said in the table title.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Pfn => "pfn",
            Self::Type => "type",
            Self::Refcount => "refcount",
            Self::State => "state",
            Self::Age => "time in state",
            Self::Last => "last event",
            Self::Task => "task",
            Self::Detector => "detector",
        }
    }

    /// Whether the column starts descending when chosen: biggest refcount,
    /// longest in state, latest event and flagged pages first.
    pub fn descending_by_default(self) -> bool {
        matches!(self, Self::Refcount | Self::Last | Self::Detector)
    }

    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|c| *c == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Primary key, ascending. Time in state sorts by the time the state
    /// began, so ascending is "longest first".
    fn key(self, r: &Row) -> u64 {
        match self {
            Self::Pfn => r.pfn,
            Self::Type => u64::from(r.pgmap_type),
            Self::Refcount => r.refcount.map_or(0, |v| (i64::from(v) + (1 << 32)) as u64),
            Self::State => state_rank(r.state),
            Self::Age => r.state_since_ns,
            Self::Last => r.last_ns,
            Self::Task => r.comm.prefix_key(),
            Self::Detector => u64::from(r.flags.reverse_bits()),
        }
    }
}

fn state_rank(s: PageState) -> u64 {
    match s {
        PageState::Pinned => 0,
        PageState::Referenced => 1,
        PageState::Migrating => 2,
        PageState::Idle => 3,
        PageState::Free => 4,
        PageState::Freed => 5,
    }
}

const STATES: [PageState; 6] = [
    PageState::Idle,
    PageState::Referenced,
    PageState::Pinned,
    PageState::Migrating,
    PageState::Freed,
    PageState::Free,
];

/// Which rows the table shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewFilter {
    /// Page-map types; empty: all.
    pub types: Vec<u32>,
    /// States; empty: all.
    pub states: Vec<PageState>,
    /// Task name substring (case-insensitive) or process id.
    pub task: Option<String>,
    /// Inclusive PFN ranges; empty: all.
    pub pfns: Vec<(u64, u64)>,
    /// Only pages a detector flags.
    pub stuck_only: bool,
    /// Only pages these detectors flag ([`detector_bit`]s; 0: any).
    pub detectors: u8,
}

impl ViewFilter {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn keeps(&self, r: &Row) -> bool {
        (self.types.is_empty() || self.types.contains(&u32::from(r.pgmap_type)))
            && (self.states.is_empty() || self.states.contains(&r.state))
            && (!self.stuck_only || r.stuck())
            && (self.detectors == 0 || r.flags & self.detectors != 0)
            && (self.pfns.is_empty() || self.pfns.iter().any(|(a, b)| (*a..=*b).contains(&r.pfn)))
            && self.task.as_deref().is_none_or(|t| task_matches(r, t))
    }

    /// Parses `type:fsdax,private state:pinned task:dd pfn:0x40000-0x400ff
    /// detector:held stuck` (terms in any order, `=` works as well as `:`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut f = Self::default();
        for term in s.split_whitespace() {
            let (key, value) = match term.split_once([':', '=']) {
                Some((k, v)) => (k, v),
                None => (term, ""),
            };
            match key {
                "stuck" if value.is_empty() => f.stuck_only = true,
                "type" | "t" => {
                    for v in value.split(',').filter(|v| !v.is_empty()) {
                        let t = pgmap_from_name(v).ok_or_else(|| {
                            format!("unknown type {v:?}: private, coherent, fsdax, generic, p2pdma")
                        })?;
                        f.types.push(t);
                    }
                }
                "state" | "s" => {
                    for v in value.split(',').filter(|v| !v.is_empty()) {
                        let st = STATES.into_iter().find(|s| s.name() == v).ok_or_else(|| {
                            format!(
                                "unknown state {v:?}: idle, referenced, pinned, migrating, freed, free"
                            )
                        })?;
                        f.states.push(st);
                    }
                }
                "task" | "comm" | "pid" => {
                    if value.is_empty() {
                        return Err("task: give a name or a pid, e.g. task:dd".into());
                    }
                    f.task = Some(value.to_string());
                }
                "pfn" => f.pfns = parse_pfns(value).map_err(|e| format!("{e:#}"))?,
                "detector" | "d" => {
                    for v in value.split(',').filter(|v| !v.is_empty()) {
                        let d = Detector::from_name(v).ok_or_else(|| {
                            let names: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
                            format!("unknown detector {v:?}: {}", names.join(", "))
                        })?;
                        f.detectors |= detector_bit(d);
                    }
                }
                other => {
                    return Err(format!(
                        "unknown filter {other:?}: use type: state: task: pfn: detector: stuck"
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl std::fmt::Display for ViewFilter {
    /// The syntax [`ViewFilter::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut terms: Vec<String> = Vec::new();
        if !self.types.is_empty() {
            let v: Vec<&str> = self.types.iter().map(|t| pgmap_name(*t)).collect();
            terms.push(format!("type:{}", v.join(",")));
        }
        if !self.states.is_empty() {
            let v: Vec<&str> = self.states.iter().map(|s| s.name()).collect();
            terms.push(format!("state:{}", v.join(",")));
        }
        if let Some(t) = &self.task {
            terms.push(format!("task:{t}"));
        }
        if !self.pfns.is_empty() {
            terms.push(format!(
                "pfn:{}",
                crate::state::groups::ranges_text(&self.pfns, usize::MAX)
            ));
        }
        if self.detectors != 0 {
            let v: Vec<&str> = detectors(self.detectors).map(|d| d.name()).collect();
            terms.push(format!("detector:{}", v.join(",")));
        }
        if self.stuck_only {
            terms.push("stuck".into());
        }
        f.write_str(&terms.join(" "))
    }
}

fn task_matches(r: &Row, t: &str) -> bool {
    if let Ok(pid) = t.parse::<u32>() {
        return r.holder && r.tgid == pid;
    }
    contains_ignore_case(r.comm.as_str(), t)
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let hay = hay.as_bytes();
    let needle = needle.as_bytes();
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The order the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortSpec {
    pub column: Column,
    pub descending: bool,
    pub stuck_first: bool,
}

impl Default for SortSpec {
    fn default() -> Self {
        Self {
            column: Column::Pfn,
            descending: false,
            stuck_first: true,
        }
    }
}

type Key = (u8, u64, u64, u32);

/// Indices of the rows `filter` keeps, in `sort` order (PFN breaks ties, so
/// the order is total and stable across rebuilds).
pub fn order(rows: &[Row], filter: &ViewFilter, sort: SortSpec) -> Vec<u32> {
    let col = sort.column;
    let all = filter.is_empty();
    let mut keys: Vec<Key> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| all || filter.keeps(r))
        .map(|(i, r)| {
            let k = col.key(r);
            let k = if sort.descending { !k } else { k };
            let rank = u8::from(sort.stuck_first && !r.stuck());
            (rank, k, r.pfn, i as u32)
        })
        .collect();
    if col == Column::Task {
        // The key holds the first 8 bytes of the name; longer names need a look.
        keys.sort_unstable_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| {
                    let (x, y) = (rows[a.3 as usize].comm, rows[b.3 as usize].comm);
                    let o = x.as_str().cmp(y.as_str());
                    if sort.descending { o.reverse() } else { o }
                })
                .then(a.2.cmp(&b.2))
        });
    } else {
        keys.sort_unstable();
    }
    keys.into_iter().map(|k| k.3).collect()
}

/// Whether a row matches a search query: PFN (hex, with or without `0x`, or
/// decimal), task name, type, state or detector name.
pub fn search_matches(r: &Row, query: &str, scratch: &mut String) -> bool {
    let q = query.trim();
    if q.is_empty() {
        return false;
    }
    let hex = q
        .strip_prefix("0x")
        .or_else(|| q.strip_prefix("0X"))
        .unwrap_or(q);
    if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        scratch.clear();
        let _ = write!(scratch, "{:x}", r.pfn);
        if scratch.starts_with(&hex.to_ascii_lowercase()) {
            return true;
        }
    }
    if let Ok(dec) = q.parse::<u64>()
        && dec == r.pfn
    {
        return true;
    }
    contains_ignore_case(r.comm.as_str(), q)
        || r.type_name() == q
        || r.state.name().starts_with(q)
        || detectors(r.flags).any(|d| d.name().starts_with(q))
}

/// Page-map types in the header, in display order.
pub const TYPES: [u32; 6] = [
    pgmap::FSDAX,
    pgmap::PRIVATE,
    pgmap::COHERENT,
    pgmap::GENERIC,
    pgmap::P2PDMA,
    pgmap::UNKNOWN,
];
