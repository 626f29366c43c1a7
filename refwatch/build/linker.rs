//! Where the kernel programs' build finds bpf-linker: on PATH, else where
//! `cargo xtask setup` installs it (the same cache folder rule as xtask's).

use std::{
    ffi::OsStr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

/// The linker's file name.
pub const LINKER: &str = "bpf-linker";

/// The cache folder of `cargo xtask setup`: `$REFWATCH_CACHE`, else
/// `$HOME/.cache/refwatch`, else `refwatch-cache` in the temporary folder.
pub fn cache_dir(refwatch_cache: Option<&OsStr>, home: Option<&OsStr>, tmp: &Path) -> PathBuf {
    if let Some(dir) = refwatch_cache.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("refwatch"),
        None => tmp.join("refwatch-cache"),
    }
}

/// Where bpf-linker is.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// On PATH: nothing to do.
    OnPath,
    /// In this folder of the cache, which is not on PATH.
    InCache(PathBuf),
}

fn executable(file: &Path) -> bool {
    file.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Looks for bpf-linker on `path` (the value of PATH), then in `cache`'s
/// `bpf-linker/bin`; the error is the one line to show the user.
pub fn find(path: Option<&OsStr>, cache: &Path) -> Result<Found, String> {
    if let Some(path) = path
        && std::env::split_paths(path).any(|dir| executable(&dir.join(LINKER)))
    {
        return Ok(Found::OnPath);
    }
    let bin = cache.join("bpf-linker").join("bin");
    if executable(&bin.join(LINKER)) {
        return Ok(Found::InCache(bin));
    }
    Err(format!(
        "bpf-linker (it links refwatch's kernel programs) is neither on PATH nor in {}: run `cargo xtask setup` first (it installs it there), or set REFWATCH_CACHE to the folder setup used",
        bin.display()
    ))
}
