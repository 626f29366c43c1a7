//! refwatch's recording (versions 1 and 2) as the observations of device
//! PFNs it makes.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Observation {
    /// 1-based line of the recording.
    pub(super) line: usize,
    pub(super) ts_ns: u64,
    pub(super) pfn: u64,
    pub(super) value: i64,
    pub(super) field: &'static str,
    pub(super) event: String,
    pub(super) symbol: Option<String>,
}

/// One set PFN's recording events.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SeenPfn {
    pub(super) events: u64,
    pub(super) gets: u64,
    pub(super) puts: u64,
}

#[derive(Debug, Default)]
pub(super) struct ParsedRecording {
    pub(super) observations: Vec<Observation>,
    pub(super) seen_events: u64,
    pub(super) seen_gets: u64,
    pub(super) seen_puts: u64,
    pub(super) per_pfn: BTreeMap<u64, SeenPfn>,
    pub(super) other_pfn_events: u64,
    /// The PFNs outside the set that have recording events.
    pub(super) other_pfns: BTreeSet<u64>,
    pub(super) dropped: u64,
    pub(super) truncated_line: Option<usize>,
    /// Events of the hardware watchpoint (`+watch`), apart.
    pub(super) watch_hits: Vec<super::watch::Hit>,
}

pub(super) fn parse_recording(
    text: &str,
    name: &str,
    device: &BTreeSet<u64>,
) -> Result<ParsedRecording> {
    let mut out = ParsedRecording::default();
    let last = last_nonempty_line(text);
    let mut header_seen = false;
    let mut compact = Compact::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if header_seen && Some(i) == last => {
                out.truncated_line = Some(n);
                break;
            }
            Err(e) if !header_seen => {
                bail!("{name} line {n}: not a refwatch recording (no JSON header): {e}")
            }
            Err(e) => bail!("{name} line {n} is corrupt: {e}"),
        };
        let kind = value.get("type").and_then(Value::as_str);
        if !header_seen {
            if kind != Some("header") {
                bail!(
                    "{name} line {n}: not a refwatch recording (the first line is not {{\"type\":\"header\",...}})"
                );
            }
            header_seen = true;
            compact.prev_ts = value["started_ns"].as_u64().unwrap_or(0);
            continue;
        }
        if let Some(items) = value.as_array() {
            if let Some(ev) = compact
                .line(items)
                .with_context(|| format!("{name} line {n}"))?
            {
                out.event(&ev, n, name, device)?;
            }
            continue;
        }
        match kind {
            Some("event") => out.event(&value, n, name, device)?,
            Some("tick" | "end") => {
                if let Some(d) = value.get("dropped").and_then(Value::as_u64) {
                    out.dropped = out.dropped.max(d);
                }
            }
            // A second header, or line types of a later version.
            _ => {}
        }
    }
    if !header_seen {
        bail!("{name} is empty: not a refwatch recording");
    }
    Ok(out)
}

/// The tables of a version 2 recording (refwatch's
/// `format/recording/compact.rs`), as far as the comparison needs them: the
/// time, PFN, kind, counts and function of each event, rebuilt as the
/// version 1 event object.
#[derive(Debug, Default)]
pub(super) struct Compact {
    pub(super) prev_ts: u64,
    pub(super) functions: BTreeMap<u64, String>,
}

/// The stable event names by `refwatch_common::kind` number.
pub(super) const KIND_NAMES: [&str; 13] = [
    "?",
    "get",
    "put",
    "pin",
    "unpin",
    "free",
    "migrate",
    "layout_wait",
    "set",
    "pgmap_add",
    "pgmap_remove",
    "fork",
    "snapshot",
];

impl Compact {
    /// A compact line: `None` for a table entry, the event otherwise.
    pub(super) fn line(&mut self, items: &[Value]) -> Result<Option<Value>> {
        match items.first() {
            Some(Value::String(tag)) => {
                match (
                    tag.as_str(),
                    items.get(1).and_then(Value::as_u64),
                    items.get(2),
                ) {
                    ("f", Some(id), Some(Value::String(f))) => {
                        self.functions.insert(id, f.clone());
                    }
                    ("r", ..) => self.functions.clear(),
                    _ => {}
                }
                Ok(None)
            }
            Some(Value::Number(dt)) => {
                let num = |i: usize| items.get(i).and_then(Value::as_u64);
                let dt = dt.as_u64().context("a time delta")?;
                // Zigzag: 2n for n ≥ 0, −2n − 1 below.
                let dt = ((dt >> 1) as i64) ^ -((dt & 1) as i64);
                let ts = self
                    .prev_ts
                    .checked_add_signed(dt)
                    .context("a time out of range")?;
                self.prev_ts = ts;
                let kind = num(2).context("an event kind")? as usize;
                let function = num(8)
                    .and_then(|f| self.functions.get(&f))
                    .cloned()
                    .context("an undefined function")?;
                Ok(Some(serde_json::json!({
                    "ts_ns": ts,
                    "pfn": num(1).context("a PFN")?,
                    "event": KIND_NAMES.get(kind).copied().unwrap_or("?"),
                    "refcount_before": items.get(3),
                    "refcount_after": items.get(4),
                    "symbol": function,
                })))
            }
            _ => Ok(None),
        }
    }
}

impl ParsedRecording {
    pub(super) fn event(
        &mut self,
        v: &Value,
        n: usize,
        name: &str,
        device: &BTreeSet<u64>,
    ) -> Result<()> {
        let num = |key: &str| -> Result<u64> {
            v.get(key)
                .and_then(Value::as_u64)
                .with_context(|| format!("{name} line {n}: an event without a numeric {key}"))
        };
        let ts_ns = num("ts_ns")?;
        let pfn = num("pfn")?;
        let symbol = v.get("symbol").and_then(Value::as_str);
        if symbol == Some("watchpoint") || symbol == Some("watch ended") {
            // The states read when a watch was armed or ended are no hits.
            if v.get("event").and_then(Value::as_str) == Some("snapshot") {
                return Ok(());
            }
            let event = v.get("event").and_then(Value::as_str);
            self.watch_hits.push(super::watch::Hit {
                ts_ns,
                pfn,
                after: v.get("refcount_after").and_then(Value::as_i64),
                get: event == Some("get") || event == Some("pin"),
            });
            return Ok(());
        }
        if !device.contains(&pfn) {
            self.other_pfn_events += 1;
            self.other_pfns.insert(pfn);
            return Ok(());
        }
        let event = v
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        self.seen_events += 1;
        let seen = self.per_pfn.entry(pfn).or_default();
        seen.events += 1;
        match event.as_str() {
            "get" | "pin" => {
                self.seen_gets += 1;
                seen.gets += 1;
            }
            "put" | "unpin" => {
                self.seen_puts += 1;
                seen.puts += 1;
            }
            _ => {}
        }
        let symbol = v.get("symbol").and_then(Value::as_str).map(str::to_string);
        for field in ["refcount_before", "refcount_after"] {
            if let Some(value) = v.get(field).and_then(Value::as_i64) {
                self.observations.push(Observation {
                    line: n,
                    ts_ns,
                    pfn,
                    value,
                    field,
                    event: event.clone(),
                    symbol: symbol.clone(),
                });
            }
        }
        Ok(())
    }
}
