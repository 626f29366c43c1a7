//! Writing a recording.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::{Context as _, Result};

use super::{Header, Line};

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
