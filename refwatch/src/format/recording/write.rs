//! Writing a recording, and rotating it at a size.

use std::{io::Write, path::Path};

use anyhow::{Context as _, Result};

use super::{Header, Line};
use crate::rotate::Rotating;
pub use crate::rotate::{DEFAULT_LIMIT, Limit};

/// Writes a recording; every line is flushed by [`Writer::flush`].
pub struct Writer {
    out: Rotating,
    /// Bytes of the header and carried-over lines of this file.
    start_bytes: u64,
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
        };
        w.start(header, carry)?;
        Ok(w)
    }

    /// The header and the carried-over lines.
    fn start(&mut self, header: Header, carry: &[Line]) -> Result<()> {
        self.line(&Line::Header(header))?;
        for l in carry {
            self.line(l)?;
        }
        self.flush()?;
        self.start_bytes = self.out.bytes();
        Ok(())
    }

    pub fn line(&mut self, l: &Line) -> Result<()> {
        serde_json::to_writer(&mut self.out, l).context("write recording line")?;
        self.out.write_all(b"\n").context("write recording line")?;
        Ok(())
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
