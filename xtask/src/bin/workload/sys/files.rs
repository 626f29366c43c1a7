//! Files: the scratch file on the filesystem under test, its DAX check, and
//! O_DIRECT opens.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, ensure};
use rustix::fs::{self as rfs, AtFlags, OFlags, StatxAttributes, StatxFlags};

/// Whether `path` is a DAX file according to statx; `None` when the kernel
/// does not report the DAX attribute.
pub fn is_dax(path: &Path) -> Result<Option<bool>> {
    let stx = rfs::statx(rfs::CWD, path, AtFlags::empty(), StatxFlags::BASIC_STATS)
        .map_err(io::Error::from)
        .with_context(|| format!("statx {}", path.display()))?;
    if !stx.stx_attributes_mask.contains(StatxAttributes::DAX) {
        return Ok(None);
    }
    Ok(Some(stx.stx_attributes.contains(StatxAttributes::DAX)))
}

/// Opens `path` with O_DIRECT, write-only or read-only.
pub fn open_direct(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(OFlags::DIRECT.bits().cast_signed())
        .open(path)
}

/// The scratch file whose pages the scenarios use. It is deleted by
/// [`ScratchFile::remove`], or on drop if a scenario failed on the way.
#[derive(Debug)]
pub struct ScratchFile {
    file: File,
    guard: RemoveOnDrop,
}

/// Deletes a path on drop unless disarmed.
#[derive(Debug)]
struct RemoveOnDrop {
    path: PathBuf,
    armed: bool,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the scenario already failed with a better error.
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl ScratchFile {
    /// Creates a new file of `len` bytes in `dir`, writing every byte with
    /// pwrite and fsyncing, so that its blocks are allocated before mmap.
    pub fn create(dir: &Path, len: usize) -> Result<Self> {
        let path = dir.join(format!("refwatch-workload-{}.dat", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        let scratch = ScratchFile {
            file,
            guard: RemoveOnDrop { path, armed: true },
        };
        let (file, path) = (&scratch.file, &scratch.guard.path);

        let zeros = vec![0u8; len.min(1 << 20)];
        let mut offset = 0;
        while offset < len {
            let chunk = &zeros[..zeros.len().min(len - offset)];
            file.write_all_at(chunk, offset as u64).with_context(|| {
                format!(
                    "pwrite {} bytes at {offset} to {}",
                    chunk.len(),
                    path.display()
                )
            })?;
            offset += chunk.len();
        }
        file.sync_all()
            .with_context(|| format!("fsync {}", path.display()))?;
        let blocks = file
            .metadata()
            .with_context(|| format!("fstat {}", path.display()))?
            .blocks();
        ensure!(
            blocks.saturating_mul(512) >= len as u64,
            "{} has only {blocks} 512-byte blocks allocated for {len} bytes",
            path.display()
        );
        Ok(scratch)
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.guard.path
    }

    /// Closes and deletes the file.
    pub fn remove(self) -> Result<()> {
        let ScratchFile { file, mut guard } = self;
        drop(file);
        guard.armed = false;
        fs::remove_file(&guard.path).with_context(|| format!("delete {}", guard.path.display()))
    }
}
