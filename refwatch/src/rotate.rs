//! A file that grows at its path and is rotated at a size: renamed
//! `FILE.1` (the one before becomes `FILE.2`, …, up to `FILE.<keep>`; older
//! ones are removed) and started again. `record`'s recording and the JSON
//! lines of `--jsonl` are written through it, so neither fills a disk.

use std::{
    fs::{self, File, Permissions},
    io::{self, BufWriter, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::output::{self, Dest};

/// When a file is rotated: at `max_bytes`, keeping `keep` finished files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_bytes: u64,
    pub keep: u32,
}

/// The limit unless told otherwise: at most 4 GiB on disk per output.
pub const DEFAULT_LIMIT: Limit = Limit {
    max_bytes: 1 << 30,
    keep: 3,
};

/// Bytes buffered before a write: a recording line is about 40 bytes, a
/// JSON line about 500, and each write is a system call.
pub const WRITE_BUFFER: usize = 1 << 16;

/// A buffered file opened by [`output::create_growing`]'s rules, counting
/// the bytes written to it.
pub struct Rotating {
    out: BufWriter<File>,
    bytes: u64,
    path: PathBuf,
    /// The first file's mode, kept by the files after it.
    mode: u32,
    /// A regular file: rotated and synced (not a FIFO or a device).
    regular: bool,
    limit: Option<Limit>,
    rotations: u64,
    /// What the file is, for messages ("recording", "JSON lines").
    what: &'static str,
}

impl Write for Rotating {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Rotating {
    /// Opens `path` (see [`output::create_growing`]); rotated at `limit`
    /// when it is a regular file.
    pub fn create(path: &Path, limit: Option<Limit>, what: &'static str) -> Result<Self> {
        let regular = matches!(output::check_growing(path)?, Dest::Replace(..));
        let g = output::create_growing(path, None)
            .with_context(|| format!("create {what} {}", path.display()))?;
        Ok(Self {
            out: BufWriter::with_capacity(WRITE_BUFFER, g.file),
            bytes: 0,
            path: path.to_path_buf(),
            mode: g.mode,
            regular,
            limit,
            rotations: 0,
            what,
        })
    }

    /// Bytes written to the current file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Files finished and rotated away so far.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Whether the current file holds its limit's bytes and at least
    /// `min_bytes` (a file must hold more than what each file starts with,
    /// or rotation could spin).
    pub fn full(&self, min_bytes: u64) -> bool {
        self.full_with(0, min_bytes)
    }

    /// [`Rotating::full`] once `pending` more bytes, held by the caller,
    /// are written.
    pub fn full_with(&self, pending: u64, min_bytes: u64) -> bool {
        let bytes = self.bytes + pending;
        self.regular
            && self
                .limit
                .is_some_and(|l| bytes >= l.max_bytes && bytes >= min_bytes)
    }

    /// Flushes and syncs a regular file to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("flush {} {}", self.what, self.path.display()))?;
        if self.regular {
            self.out
                .get_ref()
                .sync_all()
                .with_context(|| format!("sync {} {}", self.what, self.path.display()))?;
        }
        Ok(())
    }

    /// Syncs the current file, renames it `FILE.1` after shifting the
    /// older ones (keeping [`Limit::keep`]) and starts a new, empty `FILE`
    /// with the first file's mode.
    pub fn rotate(&mut self) -> Result<()> {
        let keep = self.limit.map_or(0, |l| l.keep);
        self.sync()?;
        let numbered = |k: u32| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{k}"));
            PathBuf::from(s)
        };
        let oldest = numbered(keep.max(1));
        match fs::remove_file(&oldest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", oldest.display())),
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
            .with_context(|| format!("create {} {}", self.what, self.path.display()))?;
        // Beyond the umask: the mode of the first file.
        g.file
            .set_permissions(Permissions::from_mode(self.mode))
            .with_context(|| format!("set the mode of {}", self.path.display()))?;
        self.out = BufWriter::with_capacity(WRITE_BUFFER, g.file);
        self.bytes = 0;
        self.rotations += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, symlink};

    use super::*;

    fn limit(max_bytes: u64, keep: u32) -> Option<Limit> {
        Some(Limit { max_bytes, keep })
    }

    /// JSON lines through a rotating file on a real directory: the size
    /// is kept, `keep` files are kept, the oldest go, every file has the
    /// first one's mode and only whole lines.
    #[test]
    fn rotation_keeps_n_files_of_whole_lines_with_the_mode() {
        let d = tempfile::tempdir().expect("dir");
        let p = d.path().join("events.jsonl");
        fs::write(&p, "old\n").expect("write");
        fs::set_permissions(&p, Permissions::from_mode(0o600)).expect("chmod");
        let mut f = Rotating::create(&p, limit(100, 2), "JSON lines").expect("create");
        for i in 0..40u32 {
            writeln!(f, "{{\"n\":{i}}}").expect("write");
            if f.full(0) {
                f.rotate().expect("rotate");
            }
        }
        f.sync().expect("sync");
        assert!(f.rotations() >= 3, "{}", f.rotations());
        let mut names: Vec<String> = fs::read_dir(d.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]);
        let mut last = Vec::new();
        for n in ["events.jsonl.2", "events.jsonl.1", "events.jsonl"] {
            let path = d.path().join(n);
            assert_eq!(fs::metadata(&path).expect("meta").mode() & 0o777, 0o600);
            let text = fs::read_to_string(&path).expect("read");
            // At most one line past the limit.
            assert!(text.len() < 100 + 10, "{n}: {}", text.len());
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).expect("a whole line");
                last.push(v["n"].as_u64().expect("n"));
            }
        }
        // The newest files hold the last lines, in order, none twice.
        assert_eq!(last.last(), Some(&39));
        assert!(last.windows(2).all(|w| w[1] == w[0] + 1), "{last:?}");
    }

    /// A link planted at a rotated name is replaced, never written through.
    #[test]
    fn a_planted_link_at_a_rotated_name_is_not_followed() {
        let d = tempfile::tempdir().expect("dir");
        let victim = d.path().join("victim");
        fs::write(&victim, "keep").expect("write");
        let p = d.path().join("out.jsonl");
        symlink(&victim, d.path().join("out.jsonl.1")).expect("link");
        let mut f = Rotating::create(&p, limit(10, 1), "JSON lines").expect("create");
        writeln!(f, "0123456789abc").expect("write");
        assert!(f.full(0));
        f.rotate().expect("rotate");
        writeln!(f, "next").expect("write");
        f.sync().expect("sync");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "keep");
        let rotated = d.path().join("out.jsonl.1");
        assert!(!fs::symlink_metadata(&rotated).expect("meta").is_symlink());
        assert_eq!(
            fs::read_to_string(rotated).expect("read"),
            "0123456789abc\n"
        );
        assert_eq!(fs::read_to_string(&p).expect("read"), "next\n");
    }

    /// A FIFO is written in place and never rotated.
    #[test]
    fn a_fifo_is_never_full() {
        let d = tempfile::tempdir().expect("dir");
        let fifo = d.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read_to_string(fifo).expect("read fifo"))
        };
        let mut f = Rotating::create(&fifo, limit(1, 1), "JSON lines").expect("open");
        writeln!(f, "through").expect("write");
        assert!(!f.full(0));
        f.sync().expect("sync");
        drop(f);
        assert_eq!(reader.join().expect("reader"), "through\n");
    }
}
