//! Writing a recording, and rotating it at a size.

use std::{
    fs::{self, File, Permissions},
    io::{self, BufWriter, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::{Header, Line};
use crate::output::{self, Dest};

/// When a recording is rotated: at `max_bytes`, the file is ended and
/// renamed `FILE.1` (the one before `FILE.2`, …, up to `FILE.<keep>`; older
/// ones are removed), and a new `FILE` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_bytes: u64,
    pub keep: u32,
}

/// `record`'s limit unless told otherwise: at most 4 GiB on disk.
pub const DEFAULT_LIMIT: Limit = Limit {
    max_bytes: 1 << 30,
    keep: 3,
};

/// Writes a recording; every line is flushed by [`Writer::flush`].
pub struct Writer {
    out: Counted,
    path: PathBuf,
    /// The file's mode, kept by the files after it.
    mode: u32,
    /// A regular file: rotated and synced (not a FIFO or a device).
    regular: bool,
    limit: Option<Limit>,
    /// Bytes of the header and carried-over lines of this file.
    start_bytes: u64,
    rotations: u64,
}

/// The file, with the bytes written to it.
struct Counted {
    out: BufWriter<File>,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
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
        let regular = matches!(output::check_growing(path)?, Dest::Replace(..));
        let g = output::create_growing(path, None)
            .with_context(|| format!("create recording {}", path.display()))?;
        let mut w = Self {
            out: Counted {
                out: BufWriter::new(g.file),
                bytes: 0,
            },
            path: path.to_path_buf(),
            mode: g.mode,
            regular,
            limit,
            start_bytes: 0,
            rotations: 0,
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
        self.start_bytes = self.out.bytes;
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
        self.out.bytes
    }

    /// Files finished and rotated away so far.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Whether the current file reached its size and is to be rotated. A
    /// file whose carried-over state alone is larger than the limit
    /// first holds as much again of new lines (so rotation cannot spin).
    pub fn full(&self) -> bool {
        self.regular
            && self.limit.is_some_and(|l| {
                self.out.bytes >= l.max_bytes && self.out.bytes >= 2 * self.start_bytes
            })
    }

    /// Ends the current file with `end`, renames it `FILE.1` (after
    /// shifting the older ones, keeping [`Limit::keep`]) and starts a new
    /// `FILE` with `header` and the `carry` lines (the state a report of
    /// the new file needs: see `carry`).
    pub fn rotate(&mut self, end: &Line, header: Header, carry: &[Line]) -> Result<()> {
        let keep = self.limit.map_or(0, |l| l.keep);
        self.line(end)?;
        self.flush()?;
        self.out
            .out
            .get_ref()
            .sync_all()
            .context("sync recording")?;
        let numbered = |k: u32| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{k}"));
            PathBuf::from(s)
        };
        let oldest = numbered(keep.max(1));
        match fs::remove_file(&oldest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("remove {}", oldest.display()));
            }
        }
        for k in (1..keep).rev() {
            match fs::rename(numbered(k), numbered(k + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("rename {}", numbered(k).display()));
                }
            }
        }
        let first = numbered(1);
        if keep == 0 {
            fs::remove_file(&self.path)
        } else {
            fs::rename(&self.path, &first)
        }
        .with_context(|| format!("rotate {} to {}", self.path.display(), first.display()))?;
        let g = output::create_growing(&self.path, Some(self.mode))
            .with_context(|| format!("create recording {}", self.path.display()))?;
        // Beyond the umask: the mode of the first file.
        g.file
            .set_permissions(Permissions::from_mode(self.mode))
            .with_context(|| format!("set the mode of {}", self.path.display()))?;
        self.out = Counted {
            out: BufWriter::new(g.file),
            bytes: 0,
        };
        self.rotations += 1;
        self.start(header, carry)
    }

    /// Flushes and syncs to disk (a regular file).
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        if !self.regular {
            return Ok(());
        }
        self.out.out.get_ref().sync_all().context("sync recording")
    }
}
