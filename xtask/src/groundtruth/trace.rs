//! The kernel's `page_ref` tracefs output: its events and losses.

use super::*;

/// The `page_ref` tracepoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefOp {
    Set,
    Mod,
    ModAndTest,
    ModAndReturn,
    ModUnless,
    Freeze,
    Unfreeze,
}

impl RefOp {
    const ALL: [RefOp; 7] = [
        RefOp::Set,
        RefOp::Mod,
        RefOp::ModAndTest,
        RefOp::ModAndReturn,
        RefOp::ModUnless,
        RefOp::Freeze,
        RefOp::Unfreeze,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            RefOp::Set => "page_ref_set",
            RefOp::Mod => "page_ref_mod",
            RefOp::ModAndTest => "page_ref_mod_and_test",
            RefOp::ModAndReturn => "page_ref_mod_and_return",
            RefOp::ModUnless => "page_ref_mod_unless",
            RefOp::Freeze => "page_ref_freeze",
            RefOp::Unfreeze => "page_ref_unfreeze",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Events of the `page_ref_mod_and_test_template` class print `ret=`.
    pub(super) fn has_ret(self) -> bool {
        matches!(
            self,
            RefOp::ModAndTest | RefOp::ModAndReturn | RefOp::ModUnless | RefOp::Freeze
        )
    }

    /// `val` is a signed change of the count (a get or a put).
    pub(super) fn is_mod(self) -> bool {
        matches!(
            self,
            RefOp::Mod | RefOp::ModAndTest | RefOp::ModAndReturn | RefOp::ModUnless
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TruthEvent {
    pub(super) ts_ns: u64,
    pub(super) pfn: u64,
    pub(super) op: RefOp,
    /// The count after the operation.
    pub(super) count: i64,
    pub(super) val: i64,
    pub(super) ret: Option<i64>,
}

impl TruthEvent {
    /// The count the operation started from, when the line tells it.
    pub(super) fn count_before(&self) -> Option<i64> {
        match self.op {
            RefOp::Set => None,
            RefOp::Freeze if self.ret == Some(0) => Some(self.count),
            RefOp::Freeze => Some(self.val),
            RefOp::Unfreeze => Some(0),
            RefOp::Mod | RefOp::ModAndTest | RefOp::ModAndReturn | RefOp::ModUnless => {
                Some(self.count - self.val)
            }
        }
    }

    pub(super) fn point(&self) -> TruthPoint {
        TruthPoint {
            ts_ns: self.ts_ns,
            count: self.count,
            event: self.op.name().to_string(),
            val: self.val,
            ret: self.ret,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct ParsedTrace {
    pub(super) events: Vec<TruthEvent>,
    pub(super) lost: u64,
    pub(super) lost_unknown: u64,
    pub(super) overwritten: u64,
    /// 1-based line number of a cut-short last line.
    pub(super) truncated_line: Option<usize>,
}

pub(super) fn parse_trace(text: &str, name: &str) -> Result<ParsedTrace> {
    let mut out = ParsedTrace::default();
    let last = last_nonempty_line(text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('#') {
            out.overwritten += overwritten_in_header(header).unwrap_or(0);
            continue;
        }
        if let Some(lost) = lost_events(line) {
            match lost {
                Some(n) => out.lost += n,
                None => out.lost_unknown += 1,
            }
            continue;
        }
        match parse_trace_line(line) {
            Ok(Some(ev)) => out.events.push(ev),
            // Another tracepoint, or a page_ref event this kernel has and
            // this module does not know.
            Ok(None) => {}
            Err(_) if Some(i) == last => out.truncated_line = Some(i + 1),
            Err(e) => return Err(e.context(format!("{name} line {}: {line:?}", i + 1))),
        }
    }
    Ok(out)
}

/// `entries-in-buffer/entries-written: E/W   #P:n` gives `W - E`.
pub(super) fn overwritten_in_header(header: &str) -> Option<u64> {
    let rest = header
        .trim()
        .strip_prefix("entries-in-buffer/entries-written:")?;
    let (entries, written) = rest.split_whitespace().next()?.split_once('/')?;
    let entries: u64 = entries.parse().ok()?;
    let written: u64 = written.parse().ok()?;
    Some(written.saturating_sub(entries))
}

/// `CPU:N [LOST n EVENTS]` gives `Some(Some(n))`, `CPU:N [LOST EVENTS]`
/// `Some(None)`, anything else `None`.
pub(super) fn lost_events(line: &str) -> Option<Option<u64>> {
    let rest = line.strip_prefix("CPU:")?;
    let (_cpu, rest) = rest.split_once(' ')?;
    let inner = rest
        .trim()
        .strip_prefix("[LOST")?
        .strip_suffix("EVENTS]")?
        .trim();
    Some(inner.parse().ok())
}

/// One event line; `Ok(None)` when it is not a known `page_ref` event.
pub(super) fn parse_trace_line(line: &str) -> Result<Option<TruthEvent>> {
    // The task name comes first and may hold anything, the event's own text
    // never holds ": page_ref_": take the last one.
    let Some(at) = line.rfind(": page_ref_") else {
        return Ok(None);
    };
    let Some((name, fields)) = line[at + 2..].split_once(':') else {
        bail!("no ':' after the event name");
    };
    let Some(op) = RefOp::from_name(name) else {
        return Ok(None);
    };
    let Some(ts) = line[..at].split_whitespace().last() else {
        bail!("no timestamp");
    };
    let ts_ns = parse_trace_ts(ts)?;
    let fields: Vec<(&str, &str)> = fields
        .split_whitespace()
        .filter_map(|tok| tok.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect();
    let field = |key: &str| -> Result<&str> {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .with_context(|| format!("{name} without {key}="))
    };
    let int = |key: &str| -> Result<i64> {
        let v = field(key)?;
        v.parse()
            .with_context(|| format!("{name}: {key}={v} is not a number"))
    };
    let pfn = parse_u64(field("pfn")?).with_context(|| format!("{name}: pfn"))?;
    Ok(Some(TruthEvent {
        ts_ns,
        pfn,
        op,
        count: int("count")?,
        val: int("val")?,
        ret: if op.has_ret() {
            Some(int("ret")?)
        } else {
            None
        },
    }))
}

/// `secs.micros` (tracefs with a clock such as `mono`) in nanoseconds.
pub(super) fn parse_trace_ts(tok: &str) -> Result<u64> {
    let Some((secs, frac)) = tok.split_once('.') else {
        bail!("timestamp {tok:?} is not seconds.micros: was trace_clock a counter? set it to mono");
    };
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        bail!("timestamp {tok:?} is not seconds.micros");
    }
    let secs: u64 = secs
        .parse()
        .with_context(|| format!("timestamp {tok:?} is not seconds.micros"))?;
    // At most 9 digits: fits, and scales to nanoseconds.
    let scale = 10u64.pow(9 - frac.len() as u32);
    let frac: u64 = frac.parse()?;
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(frac * scale))
        .with_context(|| format!("timestamp {tok:?} is out of range"))
}
