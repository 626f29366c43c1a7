//! `refwatch export`: per-PFN histories from a recording as JSON Lines, CSV
//! or a Perfetto-loadable Chrome trace (a refcount counter track per PFN and
//! instant events for drops, frees, pins and migrations).

use std::io::Write;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::json;

use crate::{
    fasthash::FastMap,
    format::json::{Frames, JsonEvent},
};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Perfetto,
}

/// Which events to export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Inclusive PFN ranges; empty means all.
    pub pfns: Vec<(u64, u64)>,
    /// Page-map type names; empty means all.
    pub types: Vec<String>,
}

impl Filter {
    pub fn keeps(&self, e: &JsonEvent) -> bool {
        (self.pfns.is_empty() || self.pfns.iter().any(|(a, b)| (*a..=*b).contains(&e.pfn)))
            && (self.types.is_empty() || self.types.contains(&e.pgmap_type))
    }
}

fn parse_num(s: &str) -> Result<u64> {
    let s = s.trim();
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.with_context(|| {
        format!("bad PFN {s:?}: use decimal or 0x-hex, e.g. 0x40000 or 0x40000-0x400ff")
    })
}

/// Parses `0x40000`, `262144`, `0x40000-0x400ff`, comma-separated.
pub fn parse_pfns(spec: &str) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (parse_num(a)?, parse_num(b)?),
            None => {
                let v = parse_num(part)?;
                (v, v)
            }
        };
        if b < a {
            bail!("bad PFN range {part:?}: the end is below the start");
        }
        out.push((a, b));
    }
    if out.is_empty() {
        bail!("empty PFN list: give e.g. 0x40000 or 0x40000-0x400ff");
    }
    Ok(out)
}

/// Writes `events` in `format`. Kernel addresses in them are hidden
/// ([`JsonEvent::hide_kernel_addresses`]) unless `raw_pointers`.
pub fn write<'a>(
    format: ExportFormat,
    events: impl Iterator<Item = &'a JsonEvent>,
    out: &mut dyn Write,
    raw_pointers: bool,
) -> Result<usize> {
    let mut x = Exporter::new(format, raw_pointers);
    x.begin(out)?;
    for e in events {
        x.event(e.clone(), out)?;
    }
    x.end(out)
}

/// Writes events in a format one at a time, holding nothing per event: a
/// Perfetto trace is one JSON document, written as it goes (a page's track
/// is named when its first event comes).
pub struct Exporter {
    format: ExportFormat,
    raw_pointers: bool,
    /// Perfetto: the track of each PFN seen so far.
    tids: FastMap<u64, u64>,
    n: usize,
    /// One event's output, written to the destination in one call.
    buf: Vec<u8>,
}

impl Exporter {
    pub fn new(format: ExportFormat, raw_pointers: bool) -> Self {
        Self {
            format,
            raw_pointers,
            tids: FastMap::default(),
            n: 0,
            buf: Vec::new(),
        }
    }

    /// What comes before the first event.
    pub fn begin(&mut self, out: &mut dyn Write) -> Result<()> {
        match self.format {
            ExportFormat::Jsonl => {}
            ExportFormat::Csv => writeln!(out, "{}", CSV_HEADER.join(","))?,
            ExportFormat::Perfetto => {
                out.write_all(br#"{"displayTimeUnit":"ns","traceEvents":["#)?;
                serde_json::to_writer(
                    &mut *out,
                    &json!({
                        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
                        "args": {"name": "refwatch: ZONE_DEVICE pages"}
                    }),
                )?;
                out.write_all(b",")?;
                serde_json::to_writer(
                    &mut *out,
                    &json!({
                        "name": "thread_name", "ph": "M", "pid": 1, "tid": 0,
                        "args": {"name": "page maps and forks"}
                    }),
                )?;
            }
        }
        Ok(())
    }

    /// Writes one event (kernel addresses hidden unless raw pointers).
    pub fn event(&mut self, mut e: JsonEvent, out: &mut dyn Write) -> Result<()> {
        if !self.raw_pointers {
            e.hide_kernel_addresses();
        }
        let e = &e;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        match self.format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut buf, e)?;
                buf.push(b'\n');
            }
            ExportFormat::Csv => csv_write(e, &mut buf)?,
            ExportFormat::Perfetto => self.perfetto_event(e, &mut buf)?,
        }
        let written = out.write_all(&buf);
        self.buf = buf;
        written?;
        self.n += 1;
        Ok(())
    }

    /// What comes after the last event; gives the number of events written.
    pub fn end(&mut self, out: &mut dyn Write) -> Result<usize> {
        if self.format == ExportFormat::Perfetto {
            out.write_all(b"]}\n")?;
        }
        Ok(self.n)
    }

    /// A Perfetto instant event on the page's track (page maps and forks on
    /// track 0), and a refcount counter sample.
    fn perfetto_event(&mut self, e: &JsonEvent, out: &mut Vec<u8>) -> Result<()> {
        // Page maps and forks are not page events: they go on track 0.
        let page = !matches!(e.event.as_str(), "fork" | "pgmap_add" | "pgmap_remove");
        let tid = if page {
            let next = self.tids.len() as u64 + 1;
            let tid = *self.tids.entry(e.pfn).or_insert(next);
            if tid == next {
                out.push(b',');
                serde_json::to_writer(
                    &mut *out,
                    &json!({
                        "name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                        "args": {"name": format!("pfn {:#x}", e.pfn)}
                    }),
                )?;
            }
            tid
        } else {
            0
        };
        let ts = e.ts_ns as f64 / 1000.0;
        out.push(b',');
        serde_json::to_writer(
            &mut *out,
            &Instant {
                name: &e.event,
                ph: "i",
                s: "t",
                ts,
                pid: 1,
                tid,
                args: InstantArgs {
                    pfn: Shown(format_args!("{:#x}", e.pfn)),
                    refcount_before: e.refcount_before,
                    refcount_after: e.refcount_after,
                    task: Shown(format_args!("{} ({})", e.comm, e.tgid)),
                    symbol: &e.symbol,
                    ret: e.ret,
                    owner: e.owner.as_deref(),
                    migration: e.migration.as_ref(),
                    stack: Lines(&e.stack),
                },
            },
        )?;
        // A migration's refcount includes the migration's own reference.
        if page
            && e.event != "migrate"
            && let Some(rc) = e.refcount_after.or(e.refcount_before)
        {
            out.push(b',');
            serde_json::to_writer(
                &mut *out,
                &Counter {
                    name: Shown(format_args!("refcount pfn {:#x}", e.pfn)),
                    ph: "C",
                    ts,
                    pid: 1,
                    args: CounterArgs { refcount: rc },
                },
            )?;
        }
        Ok(())
    }
}

/// A string written as it is formatted (no allocation).
struct Shown<'a>(std::fmt::Arguments<'a>);

impl Serialize for Shown<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Frames as one string, a line each.
struct Lines<'a>(&'a [String]);

impl std::fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(l)?;
        }
        Ok(())
    }
}

impl Serialize for Lines<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A Perfetto (Chrome trace) instant event.
#[derive(Serialize)]
struct Instant<'a> {
    name: &'a str,
    ph: &'static str,
    s: &'static str,
    ts: f64,
    pid: u32,
    tid: u64,
    args: InstantArgs<'a>,
}

#[derive(Serialize)]
struct InstantArgs<'a> {
    pfn: Shown<'a>,
    refcount_before: Option<i32>,
    refcount_after: Option<i32>,
    task: Shown<'a>,
    symbol: &'a str,
    ret: Option<i64>,
    owner: Option<&'a str>,
    migration: Option<&'a crate::event::Migration>,
    stack: Lines<'a>,
}

/// A Perfetto counter sample.
#[derive(Serialize)]
struct Counter<'a> {
    name: Shown<'a>,
    ph: &'static str,
    ts: f64,
    pid: u32,
    args: CounterArgs,
}

#[derive(Serialize)]
struct CounterArgs {
    refcount: i32,
}

/// CSV columns.
pub const CSV_HEADER: [&str; 21] = [
    "ts_ns",
    "cpu",
    "pid",
    "tgid",
    "comm",
    "pfn",
    "event",
    "refcount_before",
    "refcount_after",
    "mapcount",
    "pgmap_type",
    "nr_pages",
    "symbol",
    "ret",
    "stack",
    "owner",
    "migration_stage",
    "migration_direction",
    "migration_moved",
    "migration_dst_pfn",
    "flags",
];

/// Writes a CSV field, quoted when it must be.
fn quote_into(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        for part in s.split_inclusive('"') {
            out.extend_from_slice(part.as_bytes());
            if part.ends_with('"') {
                out.push(b'"');
            }
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Writes `v` when there is one.
fn opt_into<T: std::fmt::Display>(out: &mut Vec<u8>, v: Option<T>) -> std::io::Result<()> {
    match v {
        Some(v) => write!(out, "{v}"),
        None => Ok(()),
    }
}

/// Writes one CSV row (the [`CSV_HEADER`] columns) and its newline.
fn csv_write(e: &JsonEvent, out: &mut Vec<u8>) -> std::io::Result<()> {
    write!(out, "{},{},{},{},", e.ts_ns, e.cpu, e.pid, e.tgid)?;
    quote_into(out, &e.comm);
    write!(out, ",{:#x},{},", e.pfn, e.event)?;
    opt_into(out, e.refcount_before)?;
    out.push(b',');
    opt_into(out, e.refcount_after)?;
    out.push(b',');
    opt_into(out, e.mapcount)?;
    write!(out, ",{},{},", e.pgmap_type, e.nr_pages)?;
    quote_into(out, &e.symbol);
    out.push(b',');
    opt_into(out, e.ret)?;
    out.push(b',');
    quote_into(out, &e.stack.join(";"));
    out.push(b',');
    quote_into(out, e.owner.as_deref().unwrap_or_default());
    out.push(b',');
    match e.migration {
        Some(m) => {
            write!(
                out,
                "{},{},{},",
                enum_name(&m.stage),
                enum_name(&m.direction),
                m.moved
            )?;
            opt_into(out, m.dst_pfn.map(|p| format!("{p:#x}")))?;
        }
        None => out.extend_from_slice(b",,,"),
    }
    out.push(b',');
    let flags: Vec<&str> = [
        (e.late, "late"),
        (e.forking, "forking"),
        (!e.stack.taken(), "no-stack"),
        (e.stack_short, "short-stack"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    out.extend_from_slice(flags.join(";").as_bytes());
    out.push(b'\n');
    Ok(())
}

/// The serde name of a unit enum value (`to_device`).
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Inverse of [`enum_name`].
fn enum_from<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .with_context(|| format!("unknown value {s:?}"))
}

/// Splits one CSV record (RFC 4180 quoting).
pub fn csv_split(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// Parses one CSV row back into an event (for round-trip checks and tools).
pub fn csv_parse_row(line: &str) -> Result<JsonEvent> {
    let f = csv_split(line);
    if f.len() != CSV_HEADER.len() {
        bail!(
            "CSV row has {} fields, expected {}",
            f.len(),
            CSV_HEADER.len()
        );
    }
    let o = |s: &str| -> Result<Option<i64>> {
        if s.is_empty() {
            Ok(None)
        } else {
            Ok(Some(s.parse()?))
        }
    };
    let migration = if f[16].is_empty() {
        None
    } else {
        Some(crate::event::Migration {
            stage: enum_from(&f[16])?,
            direction: enum_from(&f[17])?,
            moved: f[18].parse()?,
            dst_pfn: if f[19].is_empty() {
                None
            } else {
                Some(parse_num(&f[19])?)
            },
            extra_count: None,
        })
    };
    let flags: Vec<&str> = f[20].split(';').collect();
    Ok(JsonEvent {
        ts_ns: f[0].parse()?,
        cpu: f[1].parse()?,
        pid: f[2].parse()?,
        tgid: f[3].parse()?,
        comm: f[4].clone(),
        pfn: parse_num(&f[5])?,
        event: f[6].clone(),
        refcount_before: o(&f[7])?.map(|v| v as i32),
        refcount_after: o(&f[8])?.map(|v| v as i32),
        mapcount: o(&f[9])?.map(|v| v as i32),
        pgmap_type: f[10].clone(),
        nr_pages: f[11].parse()?,
        symbol: f[12].clone(),
        ret: o(&f[13])?,
        stack: if flags.contains(&"no-stack") {
            Frames(None)
        } else if f[14].is_empty() {
            Vec::new().into()
        } else {
            f[14]
                .split(';')
                .map(str::to_string)
                .collect::<Vec<_>>()
                .into()
        },
        stack_short: flags.contains(&"short-stack"),
        owner: (!f[15].is_empty()).then(|| f[15].clone()),
        migration,
        late: flags.contains(&"late"),
        forking: flags.contains(&"forking"),
        page: None,
        cgroup: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic events (not from a kernel).
    fn events() -> Vec<JsonEvent> {
        (0..4)
            .map(|i| JsonEvent {
                ts_ns: 1_000 + i,
                cpu: 1,
                pid: 10,
                tgid: 10,
                comm: if i == 0 {
                    "a,\"b\"".into()
                } else {
                    "workload".into()
                },
                pfn: 0x40000 + (i % 2),
                event: ["get", "put", "unpin", "free"][i as usize].into(),
                refcount_before: Some(2),
                refcount_after: if i == 3 { None } else { Some(1) },
                mapcount: Some(-1),
                pgmap_type: "fsdax".into(),
                nr_pages: 1,
                symbol: "gup_put_folio".into(),
                ret: if i == 1 { Some(-11) } else { None },
                stack: vec!["a+0x1".into(), "b+0x2".into()].into(),
                stack_short: false,
                owner: None,
                migration: None,
                late: false,
                forking: false,
                page: None,
                cgroup: None,
            })
            .collect()
    }

    #[test]
    fn jsonl_round_trip() {
        let ev = events();
        let mut buf = Vec::new();
        assert_eq!(
            write(ExportFormat::Jsonl, ev.iter(), &mut buf, false).expect("write"),
            4
        );
        let back: Vec<JsonEvent> = String::from_utf8(buf)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("line"))
            .collect();
        assert_eq!(back, ev);
    }

    #[test]
    fn csv_round_trip() {
        let ev = events();
        let mut buf = Vec::new();
        write(ExportFormat::Csv, ev.iter(), &mut buf, false).expect("write");
        let text = String::from_utf8(buf).expect("utf8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER.join(",").as_str()));
        let back: Vec<JsonEvent> = lines.map(|l| csv_parse_row(l).expect("row")).collect();
        assert_eq!(back, ev);
    }

    /// Synthetic migration, late get and fork events (not from a kernel).
    fn device_events() -> Vec<JsonEvent> {
        let mut ev = events();
        ev[0].event = "migrate".into();
        ev[0].owner = Some("dmirror_devmem_free".into());
        ev[0].migration = Some(crate::event::Migration {
            stage: crate::event::Stage::Finalize,
            direction: crate::event::Direction::ToDevice,
            moved: true,
            dst_pfn: Some(0xfcf_fff0),
            extra_count: None,
        });
        ev[1].late = true;
        ev[2].forking = true;
        ev[3].event = "fork".into();
        ev[3].pfn = 0;
        ev[3].ret = Some(4242);
        ev
    }

    #[test]
    fn new_fields_round_trip_through_every_format() {
        let ev = device_events();
        let mut buf = Vec::new();
        write(ExportFormat::Csv, ev.iter(), &mut buf, false).expect("write");
        let text = String::from_utf8(buf).expect("utf8");
        let back: Vec<JsonEvent> = text
            .lines()
            .skip(1)
            .map(|l| csv_parse_row(l).expect("row"))
            .collect();
        assert_eq!(back, ev);
        let mut buf = Vec::new();
        write(ExportFormat::Jsonl, ev.iter(), &mut buf, false).expect("write");
        let back: Vec<JsonEvent> = String::from_utf8(buf)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("line"))
            .collect();
        assert_eq!(back, ev);
        let mut buf = Vec::new();
        write(ExportFormat::Perfetto, ev.iter(), &mut buf, false).expect("write");
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        let te = v["traceEvents"].as_array().expect("array");
        let fork = te.iter().find(|e| e["name"] == "fork").expect("fork");
        assert_eq!(fork["tid"], 0, "forks go on the page-map track");
        let mig = te.iter().find(|e| e["name"] == "migrate").expect("migrate");
        assert_eq!(mig["args"]["migration"]["direction"], "to_device");
        assert_eq!(mig["args"]["owner"], "dmirror_devmem_free");
        // No refcount sample from a migration (its count is transient) nor a fork.
        let counters = te.iter().filter(|e| e["ph"] == "C").count();
        assert_eq!(counters, 2);
    }

    #[test]
    fn perfetto_has_a_counter_track_per_pfn() {
        let ev = events();
        let mut buf = Vec::new();
        write(ExportFormat::Perfetto, ev.iter(), &mut buf, false).expect("write");
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        let te = v["traceEvents"].as_array().expect("array");
        let counters: Vec<_> = te.iter().filter(|e| e["ph"] == "C").collect();
        let instants: Vec<_> = te.iter().filter(|e| e["ph"] == "i").collect();
        assert_eq!(instants.len(), 4);
        assert_eq!(counters.len(), 4);
        let names: std::collections::BTreeSet<_> = counters
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names.len(), 2);
        assert_eq!(counters[0]["args"]["refcount"], 1);
        assert_eq!(instants[3]["name"], "free");
        let threads = te.iter().filter(|e| e["name"] == "thread_name").count();
        assert_eq!(threads, 3, "two PFN tracks and the page-map track");
    }

    #[test]
    fn pfn_specs() {
        assert_eq!(
            parse_pfns("0x10,20-0x20").expect("ok"),
            vec![(16, 16), (20, 32)]
        );
        assert!(parse_pfns("zz").is_err());
        assert!(parse_pfns("0x20-0x10").is_err());
        assert!(parse_pfns(",").is_err());
        let f = Filter {
            pfns: vec![(0x40001, 0x40001)],
            types: vec!["fsdax".into()],
        };
        assert_eq!(events().iter().filter(|e| f.keeps(e)).count(), 2);
    }
}
