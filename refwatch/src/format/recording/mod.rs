//! The recording format: versioned, streamable JSON Lines (version 2's
//! events are compact lines referring to tables: see [`compact`]).
//!
//! Line 1 is a header (`"type":"header"`, with `"format":"refwatch-recording"`
//! and `"version"`), then `event` lines (the JSON Lines export fields), `tick`
//! lines once a second (monotonic time and loss counters, so replays know how
//! time passed) and, when refwatch stops cleanly, an `end` line. Every line is
//! complete JSON; a recording cut short by a crash is still readable up to its
//! last complete line. A recording rotated at a size is a series of such
//! files, each whole: one ends with its `end` line, the next starts with its
//! header and the state carried over ([`carry`]).

mod carry;
pub mod compact;
mod read;
mod write;

pub use carry::{SYMBOL as CARRIED, carry};
pub use read::{
    MAX_LINE, MAX_TIME_NS, REORDER_WINDOW_NS, Reader, Recording, line_time, parse, read,
};
pub use write::{DEFAULT_LIMIT, Limit, Writer};

use serde::{Deserialize, Serialize};

use crate::{format::json::JsonEvent, rules::Rules, state::Thresholds};

/// Format name in the header.
pub const FORMAT: &str = "refwatch-recording";
/// Current version: 2, compact lines with tables ([`compact`]); version 1
/// (every event a JSON object, its stack spelled out) still reads.
pub const VERSION: u32 = 2;

/// One hook of the probe plan, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRecord {
    pub logical: String,
    pub symbol: Option<String>,
    pub mode: Option<String>,
    pub status: String,
}

/// First line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub kernel: String,
    pub started_ns: u64,
    pub rules: Rules,
    pub thresholds: Thresholds,
    /// References came from the page_ref tracepoints (every get and put).
    #[serde(default)]
    pub precise: bool,
    pub hooks: Vec<HookRecord>,
    /// The filters the events were recorded through (`--pfn`, `--type`,
    /// `--pid`, `--cgroup`, in words); absent: every ZONE_DEVICE page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    Event(JsonEvent),
    Tick {
        now_ns: u64,
        dropped: u64,
        /// Events past `--max-rate` so far, counted, not recorded (their
        /// pages have gaps); absent: none.
        #[serde(default, skip_serializing_if = "is_zero")]
        capped: u64,
    },
    /// Events of `pfn` (of every page when `None`: the kernel could not
    /// note which) were lost; the last loss was at `ts_ns`.
    Gap {
        ts_ns: u64,
        #[serde(default)]
        pfn: Option<u64>,
    },
    End {
        now_ns: u64,
        events: u64,
        dropped: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        capped: u64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod rotate_tests;
#[cfg(test)]
mod tests;
