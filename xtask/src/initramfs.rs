//! The lab's initramfs, written in-process as an uncompressed `newc` cpio:
//! busybox and its applet links, e2fsprogs' real mke2fs and xfsprogs'
//! mkfs.xfs with their shared libraries, the kernel modules (decompressed),
//! the two guest binaries (three with the kernel's HMM selftest) and `/init`.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::cpio::CpioWriter;
use crate::kernels::ModuleFile;

/// Host busybox (Debian busybox-static).
const BUSYBOX: &str = "/bin/busybox";
/// Host mke2fs (Debian e2fsprogs). busybox has its own mke2fs; the guest
/// calls this one by full path.
pub const MKE2FS: &str = "/sbin/mke2fs";
/// Host mkfs.xfs (Debian xfsprogs), for the XFS variant of the scenarios.
pub const MKFS_XFS: &str = "/sbin/mkfs.xfs";

/// Applets /init uses, linked in /bin.
const APPLETS: &[&str] = &[
    "sh", "ash", "awk", "cat", "cp", "cut", "date", "dd", "dmesg", "echo", "env", "false", "grep",
    "head", "insmod", "kill", "ln", "ls", "lsmod", "mkdir", "mknod", "mount", "poweroff", "ps",
    "readlink", "reboot", "rm", "sed", "seq", "sleep", "stat", "sync", "tail", "tar", "test",
    "timeout", "touch", "tr", "true", "umount", "uname", "uptime", "usleep", "wc", "[",
    // `+metrics` scenarios: loopback up, and a scrape of the endpoint.
    "ifconfig", "wget",
];

/// What goes into the archive besides busybox and the mkfs tools.
pub struct Contents<'a> {
    /// The `/init` script.
    pub init: &'a str,
    /// Static refwatch binary, installed as `/bin/refwatch`.
    pub refwatch: &'a Path,
    /// Static workload binary, installed as `/bin/workload`.
    pub workload: &'a Path,
    /// The kernel's static HMM selftest, installed as `/bin/hmm-tests`
    /// (see [`crate::selftests`]), for the runs that have it.
    pub hmm_tests: Option<&'a Path>,
    /// Debian's bpftool (see [`crate::bpftool`]), installed as
    /// `/sbin/bpftool` with its shared libraries, for the runs that list
    /// BPF objects.
    pub bpftool: Option<&'a Path>,
    /// Modules in load order; each lands at [`module_path`].
    pub modules: &'a [ModuleFile],
}

/// Where a module is in the guest.
pub fn module_path(module: &ModuleFile) -> String {
    format!("/lib/modules/{}.ko", module.name)
}

/// Writes the initramfs to `out`; returns its size in bytes.
pub fn build(contents: &Contents<'_>, out: &Path) -> Result<u64> {
    let file = File::create(out).with_context(|| format!("create {}", out.display()))?;
    let mut w = CpioWriter::new(BufWriter::new(file));
    let ctx = || format!("write {}", out.display());

    for dir in [
        "bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "out", "etc", "lib", "root", "run",
    ] {
        w.dir(dir, 0o755).with_context(ctx)?;
    }
    w.char_device("dev/console", 0o600, 5, 1)
        .with_context(ctx)?;
    w.char_device("dev/null", 0o666, 1, 3).with_context(ctx)?;

    add_host_file(&mut w, Path::new(BUSYBOX), "bin/busybox", 0o755)?;
    for applet in APPLETS {
        w.symlink(&format!("bin/{applet}"), "busybox")
            .with_context(ctx)?;
    }

    let mut libs = std::collections::BTreeSet::new();
    for tool in [MKE2FS, MKFS_XFS] {
        add_host_file(&mut w, Path::new(tool), tool, 0o755)?;
        libs.extend(shared_libraries(Path::new(tool))?);
    }
    if let Some(bin) = contents.bpftool {
        add_host_file(&mut w, bin, "sbin/bpftool", 0o755)?;
        libs.extend(shared_libraries(bin)?);
    }
    for lib in libs {
        let inside = lib.to_string_lossy().into_owned();
        add_host_file(&mut w, &lib, &inside, 0o755)?;
    }
    let conf = Path::new("/etc/mke2fs.conf");
    if conf.is_file() {
        add_host_file(&mut w, conf, "etc/mke2fs.conf", 0o644)?;
    }

    add_host_file(&mut w, contents.refwatch, "bin/refwatch", 0o755)?;
    add_host_file(&mut w, contents.workload, "bin/workload", 0o755)?;
    if let Some(bin) = contents.hmm_tests {
        let inside = format!("bin/{}", crate::selftests::HMM_TESTS);
        add_host_file(&mut w, bin, &inside, 0o755)?;
    }

    for module in contents.modules {
        let data = decompressed(&module.path)?;
        w.file(&module_path(module), 0o644, &data)
            .with_context(ctx)?;
    }

    w.file("init", 0o755, contents.init.as_bytes())
        .with_context(ctx)?;
    w.finish().with_context(ctx)?;
    let size = fs::metadata(out)
        .with_context(|| format!("stat {}", out.display()))?
        .len();
    Ok(size)
}

/// Copies the host file `src` (symlinks followed) into the archive at `inside`.
fn add_host_file<W: std::io::Write>(
    w: &mut CpioWriter<W>,
    src: &Path,
    inside: &str,
    perm: u32,
) -> Result<()> {
    let mut file = File::open(src).with_context(|| format!("open {}", src.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("stat {}", src.display()))?
        .len();
    w.file_from(inside, perm, size, &mut file)
        .with_context(|| format!("add {} to the initramfs as /{inside}", src.display()))
}

/// The shared libraries and dynamic loader `ldd` reports for `binary`,
/// with the paths the binary asks for.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let text = cmd::stdout(Command::new("ldd").arg(binary))?;
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path
            && path.starts_with('/')
        {
            libs.push(PathBuf::from(path));
        } else if line.contains("not found") {
            bail!("ldd {}: {line}", binary.display());
        }
    }
    if libs.is_empty() {
        bail!("ldd {} reported no libraries", binary.display());
    }
    Ok(libs)
}

/// The module file's bytes, decompressed by its extension.
fn decompressed(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        Some("xz")
    } else if name.ends_with(".ko.zst") {
        Some("zstd")
    } else if name.ends_with(".ko.gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        Some(tool) => Ok(cmd::output(Command::new(tool).arg("-dc").arg(path))?.stdout),
        None => fs::read(path).with_context(|| format!("read {}", path.display())),
    }
}

/// True when the ELF file at `path` asks for a program interpreter
/// (i.e. is dynamically linked).
pub fn has_interpreter(path: &Path) -> Result<bool> {
    let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let field = |at: usize, len: usize| -> Result<u64> {
        let slice = at
            .checked_add(len)
            .and_then(|end| bytes.get(at..end))
            .with_context(|| format!("{}: truncated ELF header", path.display()))?;
        Ok(slice
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let phoff = usize::try_from(field(0x20, 8)?)?;
    let phentsize = usize::try_from(field(0x36, 2)?)?;
    let phnum = usize::try_from(field(0x38, 2)?)?;
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|off| off.checked_add(phoff))
            .with_context(|| format!("{}: bad ELF program header table", path.display()))?;
        if field(at, 4)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_is_static_and_mke2fs_is_not() {
        if Path::new(BUSYBOX).is_file() {
            assert!(!has_interpreter(Path::new(BUSYBOX)).expect("parse busybox"));
        }
        if Path::new(MKE2FS).is_file() {
            assert!(has_interpreter(Path::new(MKE2FS)).expect("parse mke2fs"));
            let libs = shared_libraries(Path::new(MKE2FS)).expect("ldd mke2fs");
            assert!(
                libs.iter()
                    .any(|l| l.to_string_lossy().contains("ld-linux"))
            );
        }
    }
}
