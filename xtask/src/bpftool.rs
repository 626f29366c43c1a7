//! Debian's `bpftool` for the lab guest, where the `+sigkill` scenarios list
//! the kernel's BPF programs, links and maps with it: bookworm's package,
//! downloaded with the lab's private apt configuration and unpacked once
//! into `<cache>/bpftool/<version>/`. It links libc, libelf, zlib and
//! libcap dynamically; the initramfs takes those from the host (`ldd`), as
//! it does for mke2fs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd;
use crate::kernels::{Apt, Package};
use crate::setup;

/// The suite whose bpftool the lab uses (the suite of the host's libraries).
const SUITE: &str = "bookworm";

/// Where the package puts the binary.
const BIN: &str = "usr/sbin/bpftool";

/// The unpacked bpftool: the one in the cache, else downloaded now.
pub fn ensure() -> Result<PathBuf> {
    let base = setup::cache_dir().join("bpftool");
    if let Some(bin) = cached(&base) {
        return Ok(bin);
    }
    let apt = Apt::new()?;
    apt.update_once()?;
    let version = apt.version_in("bpftool", SUITE)?;
    println!("lab: fetching bpftool {version} from {SUITE}");
    let work = base.join(format!(".new-{}", std::process::id()));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    }
    let root = work.join("root");
    fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    let deb = apt.download(
        &Package {
            name: "bpftool".to_owned(),
            version: version.clone(),
        },
        &work,
    )?;
    cmd::output(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    if !root.join(BIN).is_file() {
        anyhow::bail!("the bpftool package {version} has no /{BIN}");
    }
    let dest = base.join(version.replace([':', '/'], "_"));
    fs::rename(&root, &dest)
        .with_context(|| format!("move {} to {}", root.display(), dest.display()))?;
    fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    Ok(dest.join(BIN))
}

/// A bpftool unpacked earlier under `base`.
fn cached(base: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path().join(BIN))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}
