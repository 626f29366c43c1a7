//! Reading a recording back, refusing what a recording cannot hold.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read as _},
    path::Path,
};

use anyhow::{Context as _, Result, bail};

use super::{FORMAT, Header, Line, VERSION};
use crate::jsonl::JsonEvent;

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
