//! The recording format: versioned, streamable JSON Lines.
//!
//! Line 1 is a header (`"type":"header"`, with `"format":"refwatch-recording"`
//! and `"version"`), then `event` lines (the JSON Lines export fields), `tick`
//! lines once a second (monotonic time and loss counters, so replays know how
//! time passed) and, when refwatch stops cleanly, an `end` line. Every line is
//! complete JSON; a recording cut short by a crash is still readable up to its
//! last complete line.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Read as _, Write},
    path::Path,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::{jsonl::JsonEvent, rules::Rules, state::Thresholds};

/// Format name in the header.
pub const FORMAT: &str = "refwatch-recording";
/// Current version.
pub const VERSION: u32 = 1;

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
    },
}

/// Writes a recording; every line is flushed by [`Writer::flush`].
pub struct Writer {
    out: BufWriter<File>,
}

impl Writer {
    pub fn create(path: &Path, header: Header) -> Result<Self> {
        let f =
            File::create(path).with_context(|| format!("create recording {}", path.display()))?;
        let mut w = Self {
            out: BufWriter::new(f),
        };
        w.line(&Line::Header(header))?;
        w.flush()?;
        Ok(w)
    }

    pub fn line(&mut self, l: &Line) -> Result<()> {
        serde_json::to_writer(&mut self.out, l).context("write recording line")?;
        self.out.write_all(b"\n").context("write recording line")?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("flush recording")
    }

    /// Flushes and syncs to disk.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.out.get_ref().sync_all().context("sync recording")
    }
}

/// A recording read back.
#[derive(Debug, Clone)]
pub struct Recording {
    pub header: Header,
    pub lines: Vec<Line>,
    /// Whether the recording has its `end` line.
    pub complete: bool,
    /// A last line cut short (crash or kill), ignored.
    pub truncated_tail: bool,
}

impl Recording {
    pub fn events(&self) -> impl Iterator<Item = &JsonEvent> {
        self.lines.iter().filter_map(|l| match l {
            Line::Event(e) => Some(e),
            _ => None,
        })
    }

    /// Hides the kernel addresses of every event
    /// ([`JsonEvent::hide_kernel_addresses`]).
    pub fn hide_kernel_addresses(&mut self) {
        for l in &mut self.lines {
            if let Line::Event(e) = l {
                e.hide_kernel_addresses();
            }
        }
    }

    /// Latest monotonic time in the recording.
    pub fn end_ns(&self) -> u64 {
        self.lines
            .iter()
            .map(|l| match l {
                Line::Event(e) => e.ts_ns,
                Line::Tick { now_ns, .. } | Line::End { now_ns, .. } => *now_ns,
                Line::Gap { ts_ns, .. } => *ts_ns,
                Line::Header(h) => h.started_ns,
            })
            .max()
            .unwrap_or(self.header.started_ns)
    }
}

/// Reads a recording. A corrupt line anywhere but the very end is an error
/// naming the line; a last line without its newline is taken as cut short.
pub fn read(path: &Path) -> Result<Recording> {
    let f = File::open(path).with_context(|| format!("open recording {}", path.display()))?;
    parse(BufReader::new(f), &path.display().to_string())
}

/// Longest line a recording may have (an event with a full 127-frame stack
/// is about 6 KiB; the header lists every hook).
pub const MAX_LINE: usize = 1 << 20;

/// The next line of `r` (without its newline), at most [`MAX_LINE`] bytes;
/// `None` at the end. The flag says whether the line ended with a newline.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    let ended = buf.last() == Some(&b'\n');
    if ended {
        buf.pop();
    }
    Ok(Some(ended))
}

/// A line's kind, for messages.
fn kind_name(l: &Line) -> &'static str {
    match l {
        Line::Header(_) => "a header",
        Line::Event(_) => "an event",
        Line::Tick { .. } => "a tick",
        Line::Gap { .. } => "a gap",
        Line::End { .. } => "an end",
    }
}

/// [`read`] from any reader; `name` is used in messages.
pub fn parse(mut r: impl BufRead, name: &str) -> Result<Recording> {
    let mut header: Option<Header> = None;
    let mut lines = Vec::new();
    let mut complete = false;
    let mut truncated_tail = false;
    let mut buf = Vec::new();
    let mut i = 0usize;
    while let Some(ended) = next_line(&mut r, &mut buf).with_context(|| format!("read {name}"))? {
        i += 1;
        let i = i - 1;
        if buf.len() > MAX_LINE {
            bail!(
                "{name}: line {} is longer than {MAX_LINE} bytes: not a refwatch recording",
                i + 1
            );
        }
        // A line without its newline can only be the last, cut short.
        let last = !ended;
        let raw = &buf;
        if raw.is_empty() {
            continue;
        }
        if complete {
            bail!(
                "{name}: line {}: more after the recording's end line",
                i + 1
            );
        }
        let parsed: Result<Line, _> = serde_json::from_slice(raw);
        let line = match parsed {
            Ok(l) => l,
            Err(_) if last && header.is_some() => {
                truncated_tail = true;
                break;
            }
            Err(e) if i == 0 => bail!(
                "{name} is not a refwatch recording (first line: {e}); record one with `refwatch record -o FILE`"
            ),
            Err(e) => bail!("{name}: line {} is corrupt: {e}", i + 1),
        };
        match line {
            Line::Header(h) => {
                if i != 0 {
                    bail!("{name}: line {}: a second header", i + 1);
                }
                if h.format != FORMAT {
                    bail!("{name}: format {:?}, expected {FORMAT:?}", h.format);
                }
                if h.version == 0 {
                    bail!("{name}: recording version 0 does not exist: not a refwatch recording");
                }
                if h.version > VERSION {
                    bail!(
                        "{name}: recording version {} is newer than this refwatch understands ({VERSION}); upgrade refwatch",
                        h.version
                    );
                }
                header = Some(h);
            }
            other if header.is_none() => {
                bail!(
                    "{name}: line {}: {} line before the header: not a refwatch recording",
                    i + 1,
                    kind_name(&other)
                )
            }
            l @ Line::End { .. } => {
                complete = true;
                lines.push(l);
            }
            l => lines.push(l),
        }
    }
    let Some(header) = header else {
        bail!("{name} is empty: not a refwatch recording");
    };
    Ok(Recording {
        header,
        lines,
        complete,
        truncated_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kallsyms::Kallsyms;

    fn header() -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            kernel: "test".into(),
            started_ns: 1,
            rules: Rules::from_kernel(&Kallsyms::parse(
                "ffffffff81000000 T zone_device_page_init\n",
            )),
            thresholds: Thresholds::default(),
            precise: false,
            hooks: vec![],
        }
    }

    /// Synthetic event line (not from a kernel).
    fn event(ts: u64) -> JsonEvent {
        JsonEvent {
            ts_ns: ts,
            cpu: 0,
            pid: 1,
            tgid: 1,
            comm: "t".into(),
            pfn: 0x1234,
            event: "get".into(),
            refcount_before: Some(0),
            refcount_after: Some(1),
            mapcount: Some(-1),
            pgmap_type: "fsdax".into(),
            nr_pages: 1,
            symbol: "try_grab_folio".into(),
            ret: None,
            stack: vec!["f+0x1".into()],
            owner: None,
            migration: None,
            late: false,
            forking: false,
            page: None,
        }
    }

    fn write(lines: &[Line]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend(serde_json::to_vec(l).expect("json"));
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = std::env::temp_dir().join(format!("refwatch-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("rec");
        let mut w = Writer::create(&p, header()).expect("create");
        w.line(&Line::Event(event(5))).expect("line");
        w.line(&Line::Tick {
            now_ns: 9,
            dropped: 0,
        })
        .expect("line");
        w.line(&Line::End {
            now_ns: 10,
            events: 1,
            dropped: 0,
        })
        .expect("line");
        w.finish().expect("finish");
        let r = read(&p).expect("read");
        assert_eq!(r.header, header());
        assert!(r.complete);
        assert!(!r.truncated_tail);
        assert_eq!(r.events().count(), 1);
        assert_eq!(r.end_ns(), 10);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn cut_short_is_readable() {
        let mut bytes = write(&[Line::Header(header()), Line::Event(event(5))]);
        bytes.extend_from_slice(b"{\"type\":\"event\",\"ts_ns\":6,\"cp");
        let r = parse(&bytes[..], "x").expect("readable");
        assert!(!r.complete);
        assert!(r.truncated_tail);
        assert_eq!(r.events().count(), 1);
    }

    #[test]
    fn corruption_is_an_error_with_a_line_number() {
        let mut bytes = write(&[Line::Header(header())]);
        bytes.extend_from_slice(b"garbage\n");
        bytes.extend(write(&[Line::Event(event(5))]));
        let e = parse(&bytes[..], "x").expect_err("corrupt");
        assert!(e.to_string().contains("line 2 is corrupt"), "{e}");
        let e = parse(&b"hello\n"[..], "x").expect_err("not a recording");
        assert!(e.to_string().contains("not a refwatch recording"), "{e}");
        let e = parse(&b""[..], "x").expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
        let mut h = header();
        h.version = VERSION + 1;
        let e = parse(&write(&[Line::Header(h)])[..], "x").expect_err("newer");
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn hostile_recordings_are_refused_with_the_line() {
        let end = Line::End {
            now_ns: 10,
            events: 1,
            dropped: 0,
        };
        // Anything after the end line.
        let mut bytes = write(&[Line::Header(header()), Line::Event(event(5)), end.clone()]);
        bytes.extend_from_slice(b"garbage\n");
        let e = parse(&bytes[..], "x").expect_err("after end");
        assert!(
            e.to_string()
                .contains("line 4: more after the recording's end"),
            "{e}"
        );
        let mut bytes = write(&[Line::Header(header()), end.clone(), end]);
        let e = parse(&bytes[..], "x").expect_err("two ends");
        assert!(e.to_string().contains("line 3"), "{e}");
        // A complete garbage line at the end is corruption, not a cut.
        bytes = write(&[Line::Header(header()), Line::Event(event(5))]);
        bytes.extend_from_slice(b"{\"type\":\"event\",\"ts\n");
        let e = parse(&bytes[..], "x").expect_err("corrupt last line");
        assert!(e.to_string().contains("line 3 is corrupt"), "{e}");
        // Version 0.
        let mut h = header();
        h.version = 0;
        let e = parse(&write(&[Line::Header(h)])[..], "x").expect_err("version 0");
        assert!(e.to_string().contains("version 0"), "{e}");
        // A line longer than the cap, without reading past it.
        let mut bytes = write(&[Line::Header(header())]);
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        let e = parse(&bytes[..], "x").expect_err("long line");
        assert!(e.to_string().contains("line 2 is longer than"), "{e}");
        let e = parse(std::io::BufReader::new(std::io::repeat(0)), "zeros").expect_err("endless");
        assert!(e.to_string().contains("longer than"), "{e}");
        // A line before the header is named by its kind, not debug text.
        let tick = Line::Tick {
            now_ns: 1,
            dropped: 0,
        };
        let mut bytes = write(&[Line::Header(header())]);
        bytes = [write(&[tick]), bytes].concat();
        let e = parse(&bytes[..], "x").expect_err("tick first");
        assert!(!e.to_string().contains('{'), "{e}");
    }

    /// Synthetic: a held page whose release was lost, and a page stuck
    /// with a complete history.
    #[test]
    fn gap_lines_reach_the_report_and_its_exit_code() {
        let mut h = header();
        h.thresholds = Thresholds {
            held_ns: 1_000_000_000,
            pinned_ns: 1_000_000_000,
            unmapped_ns: 1_000_000_000,
        };
        let mut held = event(1_000);
        held.refcount_before = Some(0);
        held.refcount_after = Some(1);
        let lines = vec![
            Line::Header(h.clone()),
            Line::Event(held.clone()),
            Line::Gap {
                ts_ns: 2_000,
                pfn: Some(0x1234),
            },
            Line::End {
                now_ns: 10_000_000_000,
                events: 1,
                dropped: 1,
            },
        ];
        let r = crate::report::build(&parse(&write(&lines)[..], "x").expect("parse"), None, false)
            .expect("report");
        assert_eq!((r.dropped, r.unknown_at_end.clone()), (1, vec![0x1234]));
        assert!(r.episodes.is_empty() && r.stuck_at_end.is_empty());
        assert_eq!(r.gaps.len(), 1);
        assert_eq!(r.fail_on_stuck_code(), crate::report::EXIT_UNKNOWN);
        assert!(crate::report::text(&r).contains("1 of them in an unknown state"));
        // Without the gap the same page is stuck.
        let lines = vec![
            Line::Header(h),
            Line::Event(held),
            Line::End {
                now_ns: 10_000_000_000,
                events: 1,
                dropped: 0,
            },
        ];
        let r = crate::report::build(&parse(&write(&lines)[..], "x").expect("parse"), None, false)
            .expect("report");
        assert_eq!(r.stuck_at_end, vec![0x1234]);
        assert_eq!(r.fail_on_stuck_code(), crate::report::EXIT_STUCK);
    }
}
