//! The kernel's own HMM selftests for the lab's `hmm-selftests` scenario:
//! `tools/testing/selftests/mm/hmm-tests.c` of the source tree a self-built
//! kernel came from (see [`crate::kbuild`]), compiled static for the
//! busybox guest. Nothing of it is kept in this repository.
//!
//! The build does what the selftests' Makefile does, without its make
//! machinery: `make headers` puts the kernel's sanitized UAPI headers in the
//! tree's `usr/include` (the Makefile's `KHDR_INCLUDES`), then one gcc call
//! compiles the test with the two helpers it links (`vm_util.c`,
//! `hugepage_settings.c`). `-I <tree>` finds `lib/test_hmm_uapi.h` and
//! `mm/gup_test.h`, `-I <tree>/tools/testing/selftests` the harness. No
//! `-lpthread`/`-lrt`/`-lm`: glibc ≥ 2.34 has them in libc.
//!
//! Cache: `<cache>/kernels/<id>/selftests/<source version>/hmm-tests`, with
//! `hmm-tests.cmd` (the gcc command and version); built only when missing.
//! Folders of other source versions are removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::initramfs;
use crate::kbuild;
use crate::kernels::{self, KernelInfo};
use crate::setup;

/// The test binary's name, in the cache and in the guest's `/bin`.
pub const HMM_TESTS: &str = "hmm-tests";

/// Where the selftests live in the kernel source tree.
const MM_SELFTESTS: &str = "tools/testing/selftests/mm";

/// The sources the binary is made of, in that folder.
const SOURCES: &[&str] = &["hmm-tests.c", "vm_util.c", "hugepage_settings.c"];

/// The gcc arguments building [`HMM_TESTS`] from `tree` into `out`.
fn gcc_args(tree: &Path, out: &Path) -> Vec<String> {
    let mm = tree.join(MM_SELFTESTS);
    let mut args: Vec<String> = vec![
        "-static".into(),
        "-O2".into(),
        format!("-I{}", tree.display()),
        format!("-I{}", tree.join("tools/testing/selftests").display()),
        "-isystem".into(),
        tree.join("usr/include").display().to_string(),
    ];
    args.extend(SOURCES.iter().map(|s| mm.join(s).display().to_string()));
    args.push("-o".into());
    args.push(out.display().to_string());
    args
}

/// The static `hmm-tests` of `kernel`'s source version, built once.
pub fn hmm_tests(kernel: &KernelInfo) -> Result<PathBuf> {
    let base = kernels::kernel_dir(kernel.id).join("selftests");
    let dir = base.join(&kernel.version);
    let bin = dir.join(HMM_TESTS);
    if bin.is_file() {
        println!("selftests {}: {} (cached)", kernel.id, bin.display());
        return Ok(bin);
    }
    let started = Instant::now();
    setup::install_missing(
        setup::SELFTEST_PACKAGES,
        &format!("selftests {}", kernel.id),
    )?;
    let tree = kbuild::source_tree(kernel.id, &kernel.version)?;
    if let Ok(entries) = fs::read_dir(&base) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.path() != dir {
                fs::remove_dir_all(entry.path())
                    .with_context(|| format!("remove {}", entry.path().display()))?;
            }
        }
    }
    println!(
        "selftests {}: building {HMM_TESTS} from {}",
        kernel.id,
        tree.join(MM_SELFTESTS).display()
    );
    cmd::output(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&tree)
            .arg("headers"),
    )?;
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let partial = dir.join(format!(".{HMM_TESTS}.{}", std::process::id()));
    let args = gcc_args(&tree, &partial);
    cmd::output(Command::new("gcc").args(&args))?;
    if initramfs::has_interpreter(&partial)? {
        bail!("{} is not static", partial.display());
    }
    let gcc = cmd::stdout(Command::new("gcc").arg("--version"))?
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let final_args = gcc_args(&tree, &bin);
    fs::write(
        dir.join(format!("{HMM_TESTS}.cmd")),
        format!("# {gcc}\ngcc {}\n", final_args.join(" ")),
    )
    .with_context(|| format!("write {}", dir.display()))?;
    fs::rename(&partial, &bin)
        .with_context(|| format!("rename {} to {}", partial.display(), bin.display()))?;
    println!(
        "selftests {}: {} built in {:.0} s",
        kernel.id,
        bin.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcc_builds_static_against_the_trees_own_headers() {
        let args = gcc_args(Path::new("/k"), Path::new("/c/hmm-tests"));
        assert_eq!(args[0], "-static");
        let pos = |a: &str| args.iter().position(|x| x == a);
        assert!(pos("-I/k").is_some() && pos("-I/k/tools/testing/selftests").is_some());
        assert_eq!(pos("/k/usr/include"), pos("-isystem").map(|i| i + 1));
        for s in SOURCES {
            assert!(pos(&format!("/k/{MM_SELFTESTS}/{s}")).is_some(), "{s}");
        }
        assert!(args.ends_with(&["-o".to_owned(), "/c/hmm-tests".to_owned()]));
    }
}
