//! A writer for `newc` cpio archives, the format the kernel unpacks as an
//! initramfs. Parent directories are emitted before their entries.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

const TRAILER: &str = "TRAILER!!!";

pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    dirs: BTreeSet<String>,
    names: BTreeSet<String>,
}

/// One entry's header fields beyond the name.
struct Header {
    mode: u32,
    nlink: u32,
    size: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

fn clean(path: &str) -> io::Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad archive path `{path}`"),
        ));
    }
    Ok(trimmed.to_owned())
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
            dirs: BTreeSet::new(),
            names: BTreeSet::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..pad])
    }

    fn header(&mut self, name: &str, h: Header) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let namesize = name.len() + 1;
        let text = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {maj:08x}{min:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
            mode = h.mode,
            uid = 0,
            gid = 0,
            nlink = h.nlink,
            mtime = 0,
            size = h.size,
            maj = 0,
            min = 0,
            rmaj = h.rdev_major,
            rmin = h.rdev_minor,
            check = 0,
        );
        self.put(text.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad4()
    }

    /// Claims `path` (cleaned); a second entry with the same path is an error.
    fn claim(&mut self, path: &str) -> io::Result<String> {
        let name = clean(path)?;
        if !self.names.insert(name.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("archive already has `{name}`"),
            ));
        }
        Ok(name)
    }

    fn parents(&mut self, name: &str) -> io::Result<()> {
        let mut prefix = String::new();
        let comps: Vec<&str> = name.split('/').collect();
        for comp in &comps[..comps.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if !self.dirs.contains(&prefix) {
                let dir = prefix.clone();
                self.dir(&dir, 0o755)?;
            }
        }
        Ok(())
    }

    /// A directory (and any missing parents). Repeating a directory is fine.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        let name = clean(path)?;
        if self.dirs.contains(&name) {
            return Ok(());
        }
        self.parents(&name)?;
        self.claim(&name)?;
        self.dirs.insert(name.clone());
        self.header(
            &name,
            Header {
                mode: S_IFDIR | (perm & 0o7777),
                nlink: 2,
                size: 0,
                rdev_major: 0,
                rdev_minor: 0,
            },
        )
    }

    /// A regular file with `data`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.file_from(path, perm, data.len() as u64, &mut &data[..])
    }

    /// A regular file of `size` bytes read from `data`.
    pub fn file_from(
        &mut self,
        path: &str,
        perm: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let size32 = u32::try_from(size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{path}` is over 4 GiB"),
            )
        })?;
        let name = clean(path)?;
        self.parents(&name)?;
        let name = self.claim(&name)?;
        self.header(
            &name,
            Header {
                mode: S_IFREG | (perm & 0o7777),
                nlink: 1,
                size: size32,
                rdev_major: 0,
                rdev_minor: 0,
            },
        )?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        self.written += copied;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("`{name}`: expected {size} bytes, read {copied}"),
            ));
        }
        self.pad4()
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let name = clean(path)?;
        self.parents(&name)?;
        let name = self.claim(&name)?;
        self.header(
            &name,
            Header {
                mode: S_IFLNK | 0o777,
                nlink: 1,
                size: target.len() as u32,
                rdev_major: 0,
                rdev_minor: 0,
            },
        )?;
        self.put(target.as_bytes())?;
        self.pad4()
    }

    /// A character device node.
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let name = clean(path)?;
        self.parents(&name)?;
        let name = self.claim(&name)?;
        self.header(
            &name,
            Header {
                mode: S_IFCHR | (perm & 0o7777),
                nlink: 1,
                size: 0,
                rdev_major: major,
                rdev_minor: minor,
            },
        )
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(
            TRAILER,
            Header {
                mode: 0,
                nlink: 1,
                size: 0,
                rdev_major: 0,
                rdev_minor: 0,
            },
        )?;
        // Whole 512-byte blocks, as cpio(1) writes them.
        let pad = (512 - (self.written % 512) as usize) % 512;
        self.put(&vec![0u8; pad])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    #[test]
    fn rejects_bad_and_duplicate_paths() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("../x", 0o644, b"").is_err());
        assert!(w.file("", 0o644, b"").is_err());
        w.file("a/b", 0o644, b"1").expect("first");
        assert!(w.file("a/b", 0o644, b"2").is_err());
        w.dir("a", 0o755).expect("repeating a directory is fine");
    }

    #[test]
    fn layout_is_newc() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("f", 0o644, b"hello").expect("file");
        let bytes = w.finish().expect("finish");
        assert_eq!(&bytes[..6], b"070701");
        // 110-byte header + "f\0" = 112, then 5 data bytes padded to 8.
        assert_eq!(&bytes[110..112], b"f\0");
        assert_eq!(&bytes[112..117], b"hello");
        assert_eq!(&bytes[120..126], b"070701");
        assert_eq!(bytes.len() % 512, 0);
    }

    #[test]
    fn round_trip_through_cpio() {
        // The lab's host tools include cpio (`cargo xtask setup` installs
        // it): without it this test cannot check the archive, so it fails.
        assert!(
            Command::new("cpio").arg("--version").output().is_ok(),
            "cpio(1) is not installed: the round trip needs it to unpack the archive; `cargo xtask setup` installs it (Debian package cpio)"
        );
        let dir = scratch("roundtrip");
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin", 0o755).expect("dir");
        w.file("bin/tool", 0o755, b"#!/bin/sh\necho hi\n")
            .expect("file");
        w.file("etc/deep/conf.txt", 0o644, b"abc")
            .expect("file with parents");
        w.file("empty", 0o644, b"").expect("empty file");
        let big: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        w.file_from("data/big.bin", 0o644, big.len() as u64, &mut &big[..])
            .expect("big file");
        w.symlink("bin/sh", "tool").expect("symlink");
        let archive = w.finish().expect("finish");
        fs::write(dir.join("a.cpio"), &archive).expect("write archive");

        let root = dir.join("out");
        fs::create_dir_all(&root).expect("create out");
        let status = Command::new("cpio")
            .args(["-idv", "--quiet", "-F"])
            .arg(dir.join("a.cpio"))
            .current_dir(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run cpio");
        assert!(status.success(), "cpio -idv failed: {status}");

        use std::os::unix::fs::PermissionsExt;
        let tool = root.join("bin/tool");
        assert_eq!(fs::read(&tool).expect("read tool"), b"#!/bin/sh\necho hi\n");
        let mode = fs::metadata(&tool).expect("stat tool").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read(root.join("etc/deep/conf.txt")).expect("conf"),
            b"abc"
        );
        assert!(root.join("etc/deep").is_dir());
        assert_eq!(fs::read(root.join("empty")).expect("empty").len(), 0);
        assert_eq!(fs::read(root.join("data/big.bin")).expect("big"), big);
        assert_eq!(
            fs::read_link(root.join("bin/sh")).expect("readlink"),
            PathBuf::from("tool")
        );
        let conf_mode = fs::metadata(root.join("etc/deep/conf.txt"))
            .expect("stat conf")
            .permissions()
            .mode();
        assert_eq!(conf_mode & 0o777, 0o644);
        let _ = fs::remove_dir_all(&dir);
    }
}
