//! Reading a recording back, refusing what a recording cannot hold.
//!
//! [`Reader`] streams: the header first, then one line at a time with its
//! line number, so the offline tools hold one line, not the recording.
//! [`read`]/[`parse`] collect every line, for tests and small uses.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read as _},
    path::Path,
};

use anyhow::{Context as _, Result, bail};

use super::{FORMAT, Header, Line, VERSION, compact};
use crate::format::json::JsonEvent;

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
            .filter_map(line_time)
            .max()
            .unwrap_or(self.header.started_ns)
            .max(self.header.started_ns)
    }
}

/// The monotonic time a line carries (none for a header).
pub fn line_time(l: &Line) -> Option<u64> {
    match l {
        Line::Event(e) => Some(e.ts_ns),
        Line::Tick { now_ns, .. } | Line::End { now_ns, .. } => Some(*now_ns),
        Line::Gap { ts_ns, .. } => Some(*ts_ns),
        Line::Header(_) => None,
    }
}

/// Reads a whole recording. A corrupt line anywhere but the very end is an
/// error naming the line; a last line without its newline is taken as cut
/// short.
pub fn read(path: &Path) -> Result<Recording> {
    Reader::open(path)?.collect()
}

/// [`read`] from any reader; `name` is used in messages.
pub fn parse(r: impl BufRead, name: &str) -> Result<Recording> {
    Reader::new(r, name)?.collect()
}

/// Longest line a recording may have (an event with a full 127-frame stack
/// is about 6 KiB; the header lists every hook).
pub const MAX_LINE: usize = 1 << 20;

/// How far back in time an event may be stamped behind the latest event
/// before it. Events are stamped on several CPUs before their stack walk and
/// reach the recording in the order they were handed over, so a genuine
/// recording interleaves by microseconds to milliseconds; one second is
/// far beyond that. An event older than (latest event time − window) would
/// make the detectors judge a page on a state it no longer had: refused.
/// Events flagged `late` are exempt: they keep the time the reference was
/// taken, seconds before the failed migration that reports them. Snapshot
/// events (pages refwatch read) are held to the window but do not move it:
/// they are stamped when read, ahead of the ring's events still unread. One
/// watermark for the whole recording (not one per page): constant memory,
/// and an edit that moves a page's events moves them behind other pages'
/// events too.
pub const REORDER_WINDOW_NS: u64 = 1_000_000_000;

/// Latest time a recording may hold: kernel times (`ktime_t`) are signed
/// 64-bit nanoseconds, so a larger one cannot come from a kernel.
pub const MAX_TIME_NS: u64 = i64::MAX as u64;

/// The next line of `r` (without its newline), at most [`MAX_LINE`] bytes;
/// `None` at the end. The flag says whether the line ended with a newline.
fn next_raw(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
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

/// A recording read one line at a time. Every check of the format is made
/// as the lines go by: the header's, corrupt and overlong lines, anything
/// after the end line, unknown event names, times beyond [`MAX_TIME_NS`]
/// and events older than the [`REORDER_WINDOW_NS`] allows. Memory: one line
/// and a few numbers.
pub struct Reader<R> {
    r: R,
    name: String,
    buf: Vec<u8>,
    /// Number of the last line read (1-based).
    line_no: usize,
    header: Header,
    complete: bool,
    truncated_tail: bool,
    done: bool,
    /// Latest event time so far (the reorder watermark).
    latest_event_ns: Option<u64>,
    /// Latest time of any line so far.
    end_ns: u64,
    /// The last loss count a tick or the end line gave.
    dropped: u64,
    /// The last count of events past `--max-rate` they gave.
    capped: u64,
    /// The tables of a version 2 file.
    compact: Option<compact::Decoder>,
}

impl Reader<BufReader<File>> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).with_context(|| format!("open recording {}", path.display()))?;
        Self::new(
            BufReader::with_capacity(1 << 16, f),
            &path.display().to_string(),
        )
    }
}

impl<R: BufRead> Reader<R> {
    /// Reads the header of `r`; `name` is used in messages.
    pub fn new(mut r: R, name: &str) -> Result<Self> {
        let mut buf = Vec::new();
        let mut line_no = 0;
        let header = loop {
            let Some(ended) = next_raw(&mut r, &mut buf).with_context(|| format!("read {name}"))?
            else {
                bail!("{name} is empty: not a refwatch recording");
            };
            line_no += 1;
            if buf.len() > MAX_LINE {
                bail!(
                    "{name}: line {line_no} is longer than {MAX_LINE} bytes: not a refwatch recording"
                );
            }
            if buf.is_empty() {
                if !ended {
                    bail!("{name} is empty: not a refwatch recording");
                }
                continue;
            }
            let line: Line = match serde_json::from_slice(&buf) {
                Ok(l) => l,
                Err(e) => bail!(
                    "{name} is not a refwatch recording (line {line_no}: {e}); record one with `refwatch record -o FILE`"
                ),
            };
            match line {
                Line::Header(h) => break h,
                other => bail!(
                    "{name}: line {line_no}: {} line before the header: not a refwatch recording",
                    kind_name(&other)
                ),
            }
        };
        if header.format != FORMAT {
            bail!("{name}: format {:?}, expected {FORMAT:?}", header.format);
        }
        if header.version == 0 {
            bail!("{name}: recording version 0 does not exist: not a refwatch recording");
        }
        if header.version > VERSION {
            bail!(
                "{name}: recording version {} is newer than this refwatch understands ({VERSION}); upgrade refwatch",
                header.version
            );
        }
        if header.started_ns > MAX_TIME_NS {
            bail!(
                "{name}: line {line_no}: start time {} is beyond any kernel time (at most {MAX_TIME_NS} ns)",
                header.started_ns
            );
        }
        Ok(Self {
            r,
            name: name.to_string(),
            buf,
            line_no,
            end_ns: header.started_ns,
            compact: (header.version >= 2).then(|| compact::Decoder::new(header.started_ns)),
            header,
            complete: false,
            truncated_tail: false,
            done: false,
            latest_event_ns: None,
            dropped: 0,
            capped: 0,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the end line was read (known once [`Reader::next_line`]
    /// gave `None`).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Whether a last line cut short was left out.
    pub fn truncated_tail(&self) -> bool {
        self.truncated_tail
    }

    /// Latest time of the lines read so far (the header's start at least).
    pub fn end_ns(&self) -> u64 {
        self.end_ns
    }

    /// The last loss count a tick or end line gave so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The last count of events past `--max-rate` (counted, not recorded)
    /// a tick or end line gave so far.
    pub fn capped(&self) -> u64 {
        self.capped
    }

    /// The next line after the header with its 1-based line number; `None`
    /// after the last. An error names the line.
    pub fn next_line(&mut self) -> Result<Option<(usize, Line)>> {
        while !self.done {
            let name = &self.name;
            let Some(ended) =
                next_raw(&mut self.r, &mut self.buf).with_context(|| format!("read {name}"))?
            else {
                self.done = true;
                break;
            };
            self.line_no += 1;
            let no = self.line_no;
            if self.buf.len() > MAX_LINE {
                bail!(
                    "{name}: line {no} is longer than {MAX_LINE} bytes: not a refwatch recording"
                );
            }
            if self.buf.is_empty() {
                continue;
            }
            if self.complete {
                bail!("{name}: line {no}: more after the recording's end line");
            }
            let parsed = match self.compact.as_mut() {
                Some(dec) if self.buf.first() == Some(&b'[') => match dec.line(&self.buf) {
                    Ok(None) => continue,
                    Ok(Some(e)) => Ok(Line::Event(e)),
                    Err(e) => Err(e),
                },
                _ => serde_json::from_slice(&self.buf).map_err(anyhow::Error::from),
            };
            let line: Line = match parsed {
                Ok(l) => l,
                // A line without its newline can only be the last, cut short.
                Err(_) if !ended => {
                    self.truncated_tail = true;
                    self.done = true;
                    break;
                }
                Err(e) => bail!("{name}: line {no} is corrupt: {e}"),
            };
            self.check(no, &line)?;
            return Ok(Some((no, line)));
        }
        Ok(None)
    }

    /// The checks of one line after the header.
    fn check(&mut self, no: usize, line: &Line) -> Result<()> {
        let name = &self.name;
        if let Some(t) = line_time(line)
            && t > MAX_TIME_NS
        {
            bail!(
                "{name}: line {no}: time {t} is beyond any kernel time (at most {MAX_TIME_NS} ns)"
            );
        }
        match line {
            Line::Header(_) => bail!("{name}: line {no}: a second header"),
            Line::Event(e) => {
                if e.kind().is_none() {
                    bail!(
                        "{name}: line {no}: unknown event name {:?}",
                        printable(&e.event)
                    );
                }
                // A late event (a remembered reference reported when a
                // migration failed) keeps the time the reference was taken.
                if e.late {
                    self.note_time(line);
                    return Ok(());
                }
                if let Some(latest) = self.latest_event_ns
                    && e.ts_ns < latest.saturating_sub(REORDER_WINDOW_NS)
                {
                    bail!(
                        "{name}: line {no}: event at {} ns is {:.3} s older than an earlier event (at {latest} ns); events may be out of order by at most {} s: the recording was reordered or edited",
                        e.ts_ns,
                        (latest - e.ts_ns) as f64 / 1e9,
                        REORDER_WINDOW_NS / 1_000_000_000
                    );
                }
                // A snapshot is stamped when refwatch read the page, after
                // the ring events read before it but ahead of those still in
                // the ring (seconds, when a loss is re-read under load): it
                // does not move the watermark of the ring's events.
                if e.event != "snapshot" {
                    self.latest_event_ns =
                        Some(self.latest_event_ns.map_or(e.ts_ns, |l| l.max(e.ts_ns)));
                }
            }
            Line::Tick {
                dropped, capped, ..
            } => {
                self.dropped = self.dropped.max(*dropped);
                self.capped = self.capped.max(*capped);
            }
            Line::End {
                dropped, capped, ..
            } => {
                self.dropped = self.dropped.max(*dropped);
                self.capped = self.capped.max(*capped);
                self.complete = true;
            }
            Line::Gap { .. } => {}
        }
        self.note_time(line);
        Ok(())
    }

    /// Moves the recording's end to `line`'s time.
    fn note_time(&mut self, line: &Line) {
        if let Some(t) = line_time(line) {
            self.end_ns = self.end_ns.max(t);
        }
    }

    /// Reads every remaining line into a [`Recording`].
    pub fn collect(mut self) -> Result<Recording> {
        let mut lines = Vec::new();
        while let Some((_, l)) = self.next_line()? {
            lines.push(l);
        }
        Ok(Recording {
            header: self.header,
            lines,
            complete: self.complete,
            truncated_tail: self.truncated_tail,
        })
    }
}

/// `s` with control characters replaced, for messages, at most 64 chars.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
