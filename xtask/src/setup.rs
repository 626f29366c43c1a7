//! `cargo xtask setup`: installs what a fresh Debian 12 machine lacks.
//!
//! Idempotent; when everything is present it runs no apt and no cargo
//! install, only a few quick queries.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{apt_plan, cmd};

/// Debian packages the lab (and the TUI's terminal test: tmux) need on the host.
const DEBIAN_PACKAGES: &[&str] = &[
    "tmux",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "e2fsprogs",
    "xfsprogs",
    "xz-utils",
    "zstd",
    // The libraries Debian's bpftool links, copied into the guest of a
    // `+sigkill` scenario from the host.
    "libelf1",
    "libcap2",
    "zlib1g",
    // `systemd-analyze verify` of deploy/refwatch.service (refwatch's tests).
    "systemd",
];

/// Debian packages that build the kernel's HMM selftest (`hmm-tests`, static)
/// for the lab's `hmm-selftests` scenario: `make headers` in the kernel's
/// source tree, then gcc against glibc's static libraries (libc6-dev).
pub const SELFTEST_PACKAGES: &[&str] = &["gcc", "make", "libc6-dev"];

/// The bpf-linker feature matching the nightly toolchain's LLVM major version.
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";

/// The cache folder: `$REFWATCH_CACHE`, else `$HOME/.cache/refwatch`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REFWATCH_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("refwatch"),
        None => std::env::temp_dir().join("refwatch-cache"),
    }
}

fn bpf_linker_root() -> PathBuf {
    cache_dir().join("bpf-linker")
}

fn llvm_prefix() -> PathBuf {
    cache_dir().join("llvm-nightly")
}

/// PATH with the cached bpf-linker first, for cargo builds of the eBPF crate.
pub fn env_path() -> OsString {
    let mut dirs = vec![bpf_linker_root().join("bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| std::env::var_os("PATH").unwrap_or_default())
}

/// Makes sure everything is installed. `verbose` reports each item.
pub fn ensure(verbose: bool) -> Result<()> {
    let started = Instant::now();
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;

    let mut changed = false;
    changed |= ensure_debian_packages(verbose)?;
    changed |= ensure_rust_src(verbose)?;
    changed |= ensure_bpf_linker(verbose)?;

    if verbose || changed {
        println!(
            "setup: {} ({:.1} s, cache {})",
            if changed {
                "done"
            } else {
                "everything present"
            },
            started.elapsed().as_secs_f64(),
            cache.display()
        );
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).ends_with(" installed")
        })
        .unwrap_or(false)
}

fn ensure_debian_packages(verbose: bool) -> Result<bool> {
    let all = [
        DEBIAN_PACKAGES,
        SELFTEST_PACKAGES,
        crate::dist::CHECK_PACKAGES,
    ]
    .concat();
    let changed = install_missing(&all, "setup")?;
    if !changed && verbose {
        println!("setup: Debian packages present: {}", all.join(" "));
    }
    Ok(changed)
}

/// Installs those of `packages` that are not installed, from the machine's
/// own apt sources; `who` prefixes the messages. apt simulates first: when it
/// would remove or downgrade anything, nothing is installed and the error
/// gives the command to run by hand. True when it installed any.
pub fn install_missing(packages: &[&str], who: &str) -> Result<bool> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    println!("{who}: missing Debian packages: {}", missing.join(" "));
    cmd::streamed(&mut apt_get(&["update", "-q"]))?;
    let by_hand = format!(
        "apt-get install --no-install-recommends {}",
        missing.join(" ")
    );
    let simulated =
        cmd::stdout(apt_get(&["install", "-s", "-y", "--no-install-recommends"]).args(&missing))?;
    let mut plan = apt_plan::parse(&simulated);
    let mut from: Vec<String> = Vec::new();
    // A machine whose qemu-utils (say) came from backports that its sources
    // no longer list: qemu-system-x86 from the release would replace it.
    // The missing packages come from the same backports instead, where
    // they are there (`-t`), through a source list of refwatch's own (the
    // machine's sources are left as they are).
    if plan.takes_away()
        && plan.downgrades.is_empty()
        && let Some(release) = plan.removes_backports()
    {
        from = backports_options(release)?;
        println!(
            "{who}: {} came from {release}-backports: taking the missing packages from there too",
            plan.removes.join(", ")
        );
        cmd::streamed(apt_get(&["update", "-q"]).args(&from))?;
        let simulated = cmd::stdout(
            apt_get(&["install", "-s", "-y", "--no-install-recommends"])
                .args(&from)
                .args(&missing),
        )?;
        plan = apt_plan::parse(&simulated);
    }
    if plan.takes_away() {
        bail!(
            "{who}: installing {} would make apt {}; nothing was installed. If that is what you want, run `{by_hand}` yourself",
            missing.join(" "),
            plan.losses()
        );
    }
    // --no-remove: apt stops rather than remove, should its plan change
    // since the simulation; without --allow-downgrades -y never downgrades.
    cmd::streamed(
        apt_get(&[
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--no-remove",
        ])
        .args(&from)
        .args(&missing),
    )?;
    let still: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if !still.is_empty() {
        bail!("apt-get install left packages missing: {}", still.join(" "));
    }
    let (asked, needed): (Vec<&apt_plan::Install>, Vec<&apt_plan::Install>) = plan
        .new_packages()
        .partition(|i| missing.contains(&i.name.as_str()));
    let asked: Vec<String> = asked
        .iter()
        .map(|i| format!("{} {}", i.name, i.new))
        .collect();
    let needed: Vec<&str> = needed.iter().map(|i| i.name.as_str()).collect();
    println!("{who}: installed {}", asked.join(", "));
    if !needed.is_empty() {
        println!(
            "{who}: and {} package(s) they need: {}",
            needed.len(),
            needed.join(" ")
        );
    }
    let upgraded: Vec<String> = plan
        .replaced()
        .map(|i| format!("{} {} → {}", i.name, i.old.as_deref().unwrap_or("?"), i.new))
        .collect();
    if !upgraded.is_empty() {
        println!(
            "{who}: upgraded {} package(s) they need: {}",
            upgraded.len(),
            upgraded.join(", ")
        );
    }
    Ok(true)
}

/// apt options that add `RELEASE-backports` to the machine's sources for
/// one command, preferred for the packages asked for (`-t`): a source list
/// in the cache holding the machine's `/etc/apt/sources.list` (if any) and
/// the backports line; `sources.list.d` is read as always.
fn backports_options(release: &str) -> Result<Vec<String>> {
    let dir = cache_dir().join("apt");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let list = dir.join(format!("{release}-backports.list"));
    let mut text = match fs::read_to_string("/etc/apt/sources.list") {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context("read /etc/apt/sources.list"),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "deb http://deb.debian.org/debian {release}-backports main\n"
    ));
    fs::write(&list, text).with_context(|| format!("write {}", list.display()))?;
    Ok(vec![
        "-o".into(),
        format!("Dir::Etc::SourceList={}", list.display()),
        "-t".into(),
        format!("{release}-backports"),
    ])
}

/// `apt-get ARGS`, non-interactive, its messages in English (parsed).
fn apt_get(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C");
    c
}

fn nightly_installed() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "-V"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ensure_rust_src(verbose: bool) -> Result<bool> {
    let mut changed = false;
    if !nightly_installed() {
        println!("setup: installing the nightly Rust toolchain");
        cmd::streamed(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        changed = true;
    }
    let installed = cmd::stdout(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|l| l.trim() == "rust-src") {
        if verbose {
            println!("setup: rust-src present for nightly");
        }
        return Ok(changed);
    }
    println!("setup: adding rust-src to the nightly toolchain");
    cmd::streamed(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    Ok(true)
}

/// The nightly toolchain's own LLVM shared library (`lib/libLLVM.so.<ver>-rust-…`).
fn nightly_libllvm() -> Result<PathBuf> {
    let sysroot = cmd::stdout(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let entries = fs::read_dir(&lib).with_context(|| format!("read {}", lib.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}", lib.display()))
}

fn ensure_bpf_linker(verbose: bool) -> Result<bool> {
    let root = bpf_linker_root();
    let binary = root.join("bin").join("bpf-linker");
    let stamp = root.join("nightly-version");
    let link = llvm_prefix().join("lib").join("libLLVM.so");

    let nightly = cmd::stdout(Command::new("rustc").args(["+nightly", "-V"]))?
        .trim()
        .to_owned();
    let libllvm = nightly_libllvm()?;

    let link_ok = fs::read_link(&link).is_ok_and(|target| target == libllvm) && libllvm.is_file();
    let stamp_text = fs::read_to_string(&stamp).ok();
    let stamp_ok = match &stamp_text {
        Some(text) => text.trim() == nightly,
        // A linker built before stamps existed: adopt it when its LLVM link still holds.
        None => true,
    };
    if binary.is_file() && link_ok && stamp_ok {
        if stamp_text.is_none() {
            fs::write(&stamp, format!("{nightly}\n"))
                .with_context(|| format!("write {}", stamp.display()))?;
        }
        if verbose {
            println!("setup: bpf-linker present ({nightly})");
        }
        return Ok(false);
    }

    println!("setup: building bpf-linker against {nightly} (about a minute)");
    let lib_dir = llvm_prefix().join("lib");
    fs::create_dir_all(&lib_dir).with_context(|| format!("create {}", lib_dir.display()))?;
    if fs::symlink_metadata(&link).is_ok() {
        fs::remove_file(&link).with_context(|| format!("remove {}", link.display()))?;
    }
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("symlink {} -> {}", link.display(), libllvm.display()))?;
    cmd::streamed(
        Command::new("cargo")
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--force",
                "--no-default-features",
                "--features",
                BPF_LINKER_LLVM_FEATURE,
                "--root",
            ])
            .arg(&root)
            .env("LLVM_PREFIX", llvm_prefix()),
    )?;
    if !binary.is_file() {
        bail!(
            "cargo install bpf-linker finished but {} is missing",
            binary.display()
        );
    }
    fs::write(&stamp, format!("{nightly}\n"))
        .with_context(|| format!("write {}", stamp.display()))?;
    Ok(true)
}

/// The cargo-fuzz release `cargo xtask fuzz` installs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// A cargo subcommand installed from crates.io into its own folder of the
/// cache, `<cache>/NAME`, kept while its `--version` says `NAME VERSION`;
/// returns its binary.
pub fn ensure_cargo_tool(name: &str, version: &str) -> Result<PathBuf> {
    let root = cache_dir().join(name);
    let binary = root.join("bin").join(name);
    let want = format!("{name} {version}");
    let have = Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if have.as_deref() == Some(want.as_str()) {
        return Ok(binary);
    }
    println!("setup: installing {want} into {}", root.display());
    cmd::streamed(
        Command::new("cargo")
            .args([
                "install",
                name,
                "--locked",
                "--force",
                "--version",
                version,
                "--root",
            ])
            .arg(&root)
            // Built in a folder of its own that cargo removes after.
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    if !binary.is_file() {
        bail!(
            "cargo install {name} finished but {} is missing",
            binary.display()
        );
    }
    Ok(binary)
}

/// Makes sure the cache holds cargo-fuzz [`CARGO_FUZZ_VERSION`] (built from
/// crates.io with the stable toolchain the first time, under a minute);
/// returns PATH with its folder first, then bpf-linker's.
pub fn ensure_cargo_fuzz() -> Result<OsString> {
    let binary = ensure_cargo_tool("cargo-fuzz", CARGO_FUZZ_VERSION)?;
    let root = binary
        .parent()
        .and_then(Path::parent)
        .context("cargo-fuzz's folder")?
        .to_path_buf();
    let mut dirs = vec![root.join("bin")];
    dirs.extend(std::env::split_paths(&env_path()));
    std::env::join_paths(dirs).context("PATH with cargo-fuzz")
}
