//! Writing a recording, and rotating it at a size.

use std::{io::Write, path::Path};

use anyhow::{Context as _, Result};

use super::{Header, Line, compact::Encoder};
pub use crate::rotate::{DEFAULT_LIMIT, Limit};
use crate::{
    event::PageEvent,
    format::json::Format,
    rotate::Rotating,
    symbols::{Named, Symbolizer},
};

/// Writes a recording; every line is flushed by [`Writer::flush`].
pub struct Writer {
    out: Rotating,
    /// Bytes of the header and carried-over lines of this file.
    start_bytes: u64,
    /// Version 2: events as compact lines with tables.
    compact: bool,
    enc: Encoder,
    buf: Vec<u8>,
}

impl Writer {
    /// A recording without a size limit.
    pub fn create(path: &Path, header: Header) -> Result<Self> {
        Self::open(path, header, None, &[])
    }

    /// A recording rotated at `limit` ([`Writer::full`], [`Writer::rotate`]).
    pub fn create_rotating(path: &Path, header: Header, limit: Limit) -> Result<Self> {
        Self::open(path, header, Some(limit), &[])
    }

    fn open(path: &Path, header: Header, limit: Option<Limit>, carry: &[Line]) -> Result<Self> {
        let mut w = Self {
            out: Rotating::create(path, limit, "recording")?,
            start_bytes: 0,
            compact: false,
            enc: Encoder::default(),
            buf: Vec::with_capacity(1 << 12),
        };
        w.start(header, carry)?;
        Ok(w)
    }

    /// The header and the carried-over lines.
    fn start(&mut self, header: Header, carry: &[Line]) -> Result<()> {
        self.compact = header.version >= 2;
        self.enc.start(header.started_ns);
        self.line(&Line::Header(header))?;
        for l in carry {
            self.line(l)?;
        }
        self.flush()?;
        self.start_bytes = self.out.bytes();
        Ok(())
    }

    pub fn line(&mut self, l: &Line) -> Result<()> {
        if let (true, Line::Event(j)) = (self.compact, l) {
            self.buf.clear();
            if self.enc.json_event(j, &mut self.buf).is_none() {
                anyhow::bail!("event {:?} has no number in this version", j.event);
            }
            return self.write_buf();
        }
        serde_json::to_writer(&mut self.out, l).context("write recording line")?;
        self.out.write_all(b"\n").context("write recording line")?;
        Ok(())
    }

    /// Writes a live event: as a compact line in version 2, with the
    /// table entries it needs; as the exported JSON object in version 1.
    /// `stack` is the event's stack named by the collector (`None`: no
    /// stack was taken), `cgroup` its process's.
    pub fn live_event(
        &mut self,
        ev: &PageEvent,
        function: &'static str,
        stack: Option<&Named>,
        syms: &mut Symbolizer<'_>,
        fmt: Format,
        cgroup: Option<&str>,
    ) -> Result<()> {
        if !self.compact {
            let mut j = syms.to_json(ev, function, fmt);
            j.cgroup = cgroup.map(Into::into);
            return self.line(&Line::Event(j));
        }
        self.buf.clear();
        self.enc
            .live_event(ev, function, stack, syms, fmt, cgroup, &mut self.buf);
        self.write_buf()
    }

    fn write_buf(&mut self) -> Result<()> {
        self.out
            .write_all(&self.buf)
            .context("write recording line")
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("flush recording")
    }

    /// Bytes written to the current file.
    pub fn bytes(&self) -> u64 {
        self.out.bytes()
    }

    /// Files finished and rotated away so far.
    pub fn rotations(&self) -> u64 {
        self.out.rotations()
    }

    /// Whether the current file reached its size and is to be rotated. A
    /// file whose carried-over state alone is larger than the limit
    /// first holds as much again of new lines (so rotation cannot spin).
    pub fn full(&self) -> bool {
        self.out.full(2 * self.start_bytes)
    }

    /// Ends the current file with `end`, renames it `FILE.1` (after
    /// shifting the older ones, keeping [`Limit::keep`]) and starts a new
    /// `FILE` with `header` and the `carry` lines (the state a report of
    /// the new file needs: see `carry`).
    pub fn rotate(&mut self, end: &Line, header: Header, carry: &[Line]) -> Result<()> {
        self.line(end)?;
        self.out.rotate()?;
        self.start(header, carry)
    }

    /// Flushes and syncs to disk (a regular file).
    pub fn finish(mut self) -> Result<()> {
        self.out.sync()
    }
}
