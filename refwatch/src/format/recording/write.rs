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
    /// Event lines not yet handed to the file: encoded straight into it,
    /// and written [`PENDING`] bytes at a time (to the file itself, past
    /// the file's own buffer), so that an event's line is not copied
    /// again on its way. Written before any other line, at every
    /// [`Writer::flush`] (each second), at the end and when dropped.
    buf: Vec<u8>,
}

/// Bytes of event lines [`Writer`] gathers before writing them: the
/// file's buffer, so that they go to the file without a copy into it.
pub(super) const PENDING: usize = crate::rotate::WRITE_BUFFER;

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
            // Room for the longest event (with its table entries) past the
            // mark: the vector does not grow in the steady state.
            buf: Vec::with_capacity(PENDING + (1 << 14)),
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
            let at = self.buf.len();
            if self.enc.json_event(j, &mut self.buf).is_none() {
                self.buf.truncate(at);
                anyhow::bail!("event {:?} has no number in this version", j.event);
            }
            return self.write_if_due();
        }
        self.write_pending()?;
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
        self.enc
            .live_event(ev, function, stack, syms, fmt, cgroup, &mut self.buf);
        self.write_if_due()
    }

    /// The pending lines to the file once they are [`PENDING`] bytes.
    #[inline]
    fn write_if_due(&mut self) -> Result<()> {
        if self.buf.len() < PENDING {
            return Ok(());
        }
        self.write_pending()
    }

    /// The pending lines to the file.
    fn write_pending(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.out.write_all(&self.buf);
        self.buf.clear();
        r.context("write recording line")
    }

    pub fn flush(&mut self) -> Result<()> {
        self.write_pending()?;
        self.out.flush().context("flush recording")
    }

    /// Bytes of the current file, the lines not yet written included.
    pub fn bytes(&self) -> u64 {
        self.out.bytes() + self.buf.len() as u64
    }

    /// Files finished and rotated away so far.
    pub fn rotations(&self) -> u64 {
        self.out.rotations()
    }

    /// Whether the current file reached its size and is to be rotated. A
    /// file whose carried-over state alone is larger than the limit
    /// first holds as much again of new lines (so rotation cannot spin).
    pub fn full(&self) -> bool {
        self.out
            .full_with(self.buf.len() as u64, 2 * self.start_bytes)
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
        self.write_pending()?;
        self.out.sync()
    }
}

/// A writer dropped without [`Writer::finish`] (an error on the way out)
/// still hands its pending lines to the file, whose own buffer is written
/// when it is dropped in turn: what was recorded stays, as far as the file
/// takes it.
impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.write_pending();
    }
}
