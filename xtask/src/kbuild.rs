//! Kernels built here (`cargo xtask kernel`): Debian's `linux-source-*`
//! package from the private apt configuration of [`crate::kernels`],
//! `make tinyconfig` plus a fragment committed under `xtask/kernel/`, and a
//! bzImage made with the machine's gcc. BTF on 7.x wants pahole ≥ 1.26, newer
//! than bookworm's, so sid's pahole and the libraries it needs (sid's glibc
//! included) are extracted into the cache and run through sid's own dynamic
//! loader by a wrapper script given to every make step as `PAHOLE=`.
//!
//! Cache: `<cache>/kernels/<id>/<source version>-<fragment sha256 prefix>/`
//! holds `bzImage`, `config` (the full .config) and `kernel.json`; a build
//! happens only when no folder matches the fragment (or, with `--refresh`,
//! the archive's source version). The unpacked source tree stays in
//! `<cache>/kernels/<id>/src/<source version>/` for quick rebuilds.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cmd;
use crate::kernels::{self, Apt, KernelId, KernelInfo, Package};
use crate::setup;

/// The fragment of the `hmm-7.2` kernel.
const HMM_7_2_FRAGMENT: &str = include_str!("../kernel/hmm-7.2.config");

/// Host packages the build needs (kconfig, objtool, resolve_btfids, timeconst).
const BUILD_PACKAGES: &[&str] = &[
    "gcc",
    "make",
    "libc6-dev",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "xz-utils",
];

/// The package holding pahole in the archive (`dwarves` in sid is a
/// transitional package that depends on `pahole`).
const PAHOLE_PACKAGE: &str = "dwarves";

/// Most packages pahole's dependency closure may have.
const PAHOLE_CLOSURE_MAX: usize = 40;

/// Characters of the fragment's sha256 in the cache folder name.
const DIGEST_PREFIX: usize = 12;

/// Seconds between progress lines while make runs.
const PROGRESS_SECS: u64 = 60;

/// How a self-built kernel was made, kept in its `kernel.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildInfo {
    /// The fragment, relative to the workspace.
    pub fragment: String,
    /// sha256 of the fragment, hex.
    pub fragment_digest: String,
    /// `pahole --version` and the package it came from.
    pub pahole: String,
    /// First line of `gcc --version`.
    pub gcc: String,
    /// make jobs.
    pub jobs: usize,
    /// Wall time of the whole build (configuration and bzImage).
    pub build_secs: f64,
    pub bzimage_bytes: u64,
}

/// A self-built kernel's fragment: where it lives and its text.
fn fragment(id: KernelId) -> Result<(&'static str, &'static str)> {
    match id {
        KernelId::Hmm7_2 => Ok(("xtask/kernel/hmm-7.2.config", HMM_7_2_FRAGMENT)),
        other => bail!("kernel {other} is not built here"),
    }
}

/// Hex sha256 of `data` (coreutils' sha256sum).
fn sha256_hex(data: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start `sha256sum`")?;
    child
        .stdin
        .take()
        .context("sha256sum stdin")?
        .write_all(data)
        .context("write to sha256sum")?;
    let out = child.wait_with_output().context("wait for sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum failed: {}", cmd::tail(&out.stderr, 2));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or("");
    if hex.len() != 64 {
        bail!("sha256sum printed `{}`", text.trim());
    }
    Ok(hex.to_owned())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads a complete build from `dir`, if it is one for `id` and `digest`.
fn read_build(dir: &Path, id: KernelId, digest: &str) -> Option<KernelInfo> {
    let text = fs::read_to_string(dir.join("kernel.json")).ok()?;
    let mut info: KernelInfo = serde_json::from_str(&text).ok()?;
    info.dir = dir.to_path_buf();
    let ok = info.id == id
        && info
            .build
            .as_ref()
            .is_some_and(|b| b.fragment_digest == digest)
        && info.vmlinuz_path().is_file();
    ok.then_some(info)
}

/// The newest cached build of `id` from its current fragment.
pub fn cached(id: KernelId) -> Option<KernelInfo> {
    let (_, text) = fragment(id).ok()?;
    let digest = sha256_hex(text.as_bytes()).ok()?;
    let suffix = format!("-{}", &digest[..DIGEST_PREFIX]);
    fs::read_dir(kernels::kernel_dir(id))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        .filter_map(|e| read_build(&e.path(), id, &digest))
        .max_by_key(|info| info.fetched_at)
}

/// Builds `id` from `package` of `suite` unless the cache has it. Without
/// `refresh` any cached build of the current fragment is taken; with it,
/// only one of the archive's current source version.
pub fn build(id: KernelId, suite: &str, package: &str, refresh: bool) -> Result<KernelInfo> {
    match prepare(id, suite, package, refresh)? {
        Start::Cached(info) => Ok(info),
        Start::Prepared(p) => p.compile(false),
    }
}

/// What [`prepare`] found: the cached build, or one to compile.
pub enum Start {
    Cached(KernelInfo),
    Prepared(Prepared),
}

/// A build whose packages, pahole and source tree are in place: what is
/// left is make ([`Prepared::compile`]), which needs neither apt nor the
/// network, so it may run in a thread of its own beside other work.
pub struct Prepared {
    id: KernelId,
    suite: String,
    package: String,
    version: String,
    digest: String,
    fragment_name: &'static str,
    fragment_text: &'static str,
    pahole: Pahole,
    src: PathBuf,
    dir: PathBuf,
    started: Instant,
}

/// Everything of a build but make: the cache looked up, the build
/// packages installed, pahole and the source fetched and unpacked.
pub fn prepare(id: KernelId, suite: &str, package: &str, refresh: bool) -> Result<Start> {
    let (fragment_name, fragment_text) = fragment(id)?;
    if !refresh && let Some(info) = cached(id) {
        println!("kernel {} (cached)", info.describe());
        return Ok(Start::Cached(info));
    }
    let digest = sha256_hex(fragment_text.as_bytes())?;
    let apt = Apt::new()?;
    apt.update_once()?;
    let version = apt.version_in(package, suite)?;
    let base = kernels::kernel_dir(id);
    let dir = base.join(format!("{version}-{}", &digest[..DIGEST_PREFIX]));
    if let Some(info) = read_build(&dir, id, &digest) {
        println!("kernel {} (cached, up to date)", info.describe());
        return Ok(Start::Cached(info));
    }

    let started = Instant::now();
    println!("kernel {id}: building Linux from {package} {version} ({suite}) with {fragment_name}");
    setup::install_missing(BUILD_PACKAGES, &format!("kernel {id}"))?;
    let pahole = ensure_pahole(&apt, suite)?;
    let src = ensure_source(&apt, id, package, &version)?;
    Ok(Start::Prepared(Prepared {
        id,
        suite: suite.to_owned(),
        package: package.to_owned(),
        version,
        digest,
        fragment_name,
        fragment_text,
        pahole,
        src,
        dir,
        started,
    }))
}

impl Prepared {
    /// Configures and builds the kernel into the cache. With `low_priority`
    /// make runs under `nice -n 19`: a build beside the lab's boots takes
    /// the CPU they leave idle and little of what they use.
    pub fn compile(self, low_priority: bool) -> Result<KernelInfo> {
        let Prepared {
            id,
            suite,
            package,
            version,
            digest,
            fragment_name,
            fragment_text,
            pahole,
            src,
            dir,
            started,
        } = self;
        let base = kernels::kernel_dir(id);
        let suite = suite.as_str();
        let package = package.as_str();
        let make = |target: &[&str]| -> Command {
            let mut c = if low_priority {
                let mut c = Command::new("nice");
                c.args(["-n", "19", "make"]);
                c
            } else {
                Command::new("make")
            };
            c.arg("-C")
                .arg(&src)
                .arg(format!("PAHOLE={}", pahole.wrapper.display()))
                .args(target)
                .env("KBUILD_BUILD_USER", "refwatch")
                .env("KBUILD_BUILD_HOST", "lab");
            c
        };

        // Configuration: tinyconfig, the fragment, olddefconfig, then a check
        // that every line of the fragment survived.
        let frag_file = src.join(".refwatch-fragment.config");
        fs::write(&frag_file, fragment_text)
            .with_context(|| format!("write {}", frag_file.display()))?;
        cmd::output(&mut make(&["-s", "tinyconfig"]))?;
        cmd::output(
            Command::new(src.join("scripts/kconfig/merge_config.sh"))
                .arg("-m")
                .arg(".config")
                .arg(&frag_file)
                .current_dir(&src),
        )?;
        cmd::output(&mut make(&["-s", "olddefconfig"]))?;
        let config_text = fs::read_to_string(src.join(".config"))
            .with_context(|| format!("read {}/.config", src.display()))?;
        let missing = check_fragment(fragment_text, &config_text);
        if !missing.is_empty() {
            bail!(
                "kernel {id}: {} line(s) of {fragment_name} did not survive olddefconfig: {}",
                missing.len(),
                missing.join("; ")
            );
        }
        let configured = started.elapsed();

        let jobs = thread::available_parallelism().map_or(1, |n| n.get());
        let log = src.join("build.log");
        println!(
            "kernel {id}: configured ({:.1} s); make -j{jobs} bzImage, log in {}",
            configured.as_secs_f64(),
            log.display()
        );
        let mut bz = make(&[&format!("-j{jobs}"), "bzImage"]);
        run_logged(&mut bz, &log, &format!("kernel {id}"))?;
        let release = cmd::stdout(&mut make(&["-s", "kernelrelease"]))?
            .trim()
            .to_owned();
        let build_secs = started.elapsed().as_secs_f64();

        let bzimage = src.join("arch/x86/boot/bzImage");
        let bzimage_bytes = fs::metadata(&bzimage)
            .with_context(|| format!("stat {}", bzimage.display()))?
            .len();
        let gcc = cmd::stdout(Command::new("gcc").arg("--version"))?
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();

        let work = base.join(format!(".new-{}", std::process::id()));
        if work.exists() {
            fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
        }
        fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
        fs::copy(&bzimage, work.join("bzImage"))
            .with_context(|| format!("copy {}", bzimage.display()))?;
        fs::write(work.join("config"), &config_text).context("write config")?;
        let info = KernelInfo {
            id,
            suite: suite.to_owned(),
            version: version.clone(),
            packages: vec![Package {
                name: package.to_owned(),
                version,
            }],
            release,
            vmlinuz: PathBuf::from("bzImage"),
            modules_dir: None,
            config: Some(PathBuf::from("config")),
            fetched_at: now_secs(),
            build: Some(BuildInfo {
                fragment: fragment_name.to_owned(),
                fragment_digest: digest,
                pahole: pahole.describe,
                gcc,
                jobs,
                build_secs: (build_secs * 10.0).round() / 10.0,
                bzimage_bytes,
            }),
            dir: PathBuf::new(),
        };
        let json = serde_json::to_string_pretty(&info).context("encode kernel.json")?;
        fs::write(work.join("kernel.json"), json + "\n").context("write kernel.json")?;
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        fs::rename(&work, &dir)
            .with_context(|| format!("rename {} to {}", work.display(), dir.display()))?;
        let info = KernelInfo { dir, ..info };
        println!("kernel {} (built)", info.describe());
        println!("{}", build_summary(&info));
        Ok(info)
    }
}

/// One line with a build's time and bzImage size.
pub fn build_summary(info: &KernelInfo) -> String {
    match &info.build {
        Some(b) => format!(
            "kernel {}: bzImage {} bytes ({:.1} MiB), built in {:.0} s ({:.1} min) with make -j{}, {}, {}; {}",
            info.id,
            b.bzimage_bytes,
            b.bzimage_bytes as f64 / f64::from(1u32 << 20),
            b.build_secs,
            b.build_secs / 60.0,
            b.jobs,
            b.gcc,
            b.pahole,
            info.vmlinuz_path().display()
        ),
        None => format!("kernel {}: not built here", info.id),
    }
}

/// Lines of `fragment` that `config` does not honour, each with what the
/// config says instead.
fn check_fragment(fragment: &str, config: &str) -> Vec<String> {
    let value_of = |name: &str| -> Option<&str> {
        config
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
    };
    let mut bad = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            if let Some(v) = value_of(name) {
                bad.push(format!("{name} is {v}, not unset"));
            }
        } else if !line.starts_with('#')
            && let Some((name, want)) = line.split_once('=')
        {
            match value_of(name) {
                Some(v) if v == want => {}
                Some(v) => bad.push(format!("{name}={v}, wanted {want}")),
                None => bad.push(format!("{name} unset, wanted {want}")),
            }
        }
    }
    bad
}

/// Runs `c` with stdout and stderr into `log`, printing a progress line now
/// and then; on failure quotes the log's error lines.
fn run_logged(c: &mut Command, log: &Path, who: &str) -> Result<()> {
    let file = File::create(log).with_context(|| format!("create {}", log.display()))?;
    let err = file
        .try_clone()
        .with_context(|| format!("reopen {}", log.display()))?;
    let started = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::describe(c)))?;
    let mut next = Duration::from_secs(PROGRESS_SECS);
    let status = loop {
        if let Some(status) = child.try_wait().context("wait for make")? {
            break status;
        }
        if started.elapsed() >= next {
            next += Duration::from_secs(PROGRESS_SECS);
            let text = fs::read_to_string(log).unwrap_or_default();
            let compiled = text.lines().filter(|l| l.starts_with("  CC ")).count();
            let last = text.lines().last().unwrap_or("").trim().to_owned();
            println!(
                "{who}: {:.0} s, {compiled} files compiled, now: {last}",
                started.elapsed().as_secs_f64()
            );
        }
        thread::sleep(Duration::from_millis(500));
    };
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("error") || l.contains("Error"))
            .take(6)
            .collect();
        bail!(
            "`{}` failed with {status} after {:.0} s: {} (log: {})",
            cmd::describe(c),
            started.elapsed().as_secs_f64(),
            if errors.is_empty() {
                cmd::tail(text.as_bytes(), 6)
            } else {
                errors.join(" | ")
            },
            log.display()
        );
    }
    Ok(())
}

/// The unpacked source tree a self-built kernel came from (`version` of its
/// source package), unpacked again if it is gone.
pub fn source_tree(id: KernelId, version: &str) -> Result<PathBuf> {
    let kernels::KernelSource::Built { package, .. } = id.source() else {
        bail!("kernel {id} is not built here: no source tree");
    };
    let here = kernels::kernel_dir(id).join("src").join(version);
    let tree = here.join(package);
    if here.join("extracted").is_file() && tree.join("Makefile").is_file() {
        return Ok(tree);
    }
    let apt = Apt::new()?;
    apt.update_once()?;
    ensure_source(&apt, id, package, version)
}

/// The unpacked source tree of `package` `version`, extracted once. Trees
/// of other versions are removed.
fn ensure_source(apt: &Apt, id: KernelId, package: &str, version: &str) -> Result<PathBuf> {
    let src_base = kernels::kernel_dir(id).join("src");
    let here = src_base.join(version);
    let tree = here.join(package);
    let stamp = here.join("extracted");
    if let Ok(entries) = fs::read_dir(&src_base) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.path() != here {
                println!(
                    "kernel {id}: removing the old source tree {}",
                    entry.path().display()
                );
                fs::remove_dir_all(entry.path())
                    .with_context(|| format!("remove {}", entry.path().display()))?;
            }
        }
    }
    if stamp.is_file() && tree.join("Makefile").is_file() {
        println!("kernel {id}: reusing the source tree {}", tree.display());
        return Ok(tree);
    }
    let started = Instant::now();
    if here.exists() {
        fs::remove_dir_all(&here).with_context(|| format!("remove {}", here.display()))?;
    }
    let debs = here.join("debs");
    let pkg = here.join("pkg");
    fs::create_dir_all(&debs).with_context(|| format!("create {}", debs.display()))?;
    let deb = apt.download(
        &Package {
            name: package.to_owned(),
            version: version.to_owned(),
        },
        &debs,
    )?;
    cmd::output(Command::new("dpkg").arg("-x").arg(&deb).arg(&pkg))?;
    fs::remove_dir_all(&debs).with_context(|| format!("remove {}", debs.display()))?;
    let tarball = fs::read_dir(pkg.join("usr/src"))
        .with_context(|| format!("read {}/usr/src", pkg.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(package) && n.contains(".tar"))
        })
        .with_context(|| format!("no {package}.tar.* in {package} {version}"))?;
    cmd::output(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&here),
    )?;
    fs::remove_dir_all(&pkg).with_context(|| format!("remove {}", pkg.display()))?;
    if !tree.join("Makefile").is_file() {
        bail!("{package} {version} did not unpack to {}", tree.display());
    }
    fs::write(&stamp, format!("{package} {version}\n"))
        .with_context(|| format!("write {}", stamp.display()))?;
    println!(
        "kernel {id}: {package} {version} unpacked in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tree)
}

/// A pahole the kernel build can run.
struct Pahole {
    /// Script to pass as `PAHOLE=`.
    wrapper: PathBuf,
    /// e.g. "pahole v1.32 (sid pahole 1.32-1)".
    describe: String,
}

/// sid's pahole with the libraries it needs (sid's glibc included),
/// extracted under `<cache>/kernels/tools/` and run through sid's loader.
fn ensure_pahole(apt: &Apt, suite: &str) -> Result<Pahole> {
    let meta_version = apt.version_in(PAHOLE_PACKAGE, suite)?;
    // The package that ships usr/bin/pahole: dwarves itself, or the
    // `pahole` package a transitional dwarves depends on.
    let holder = if apt
        .depends(PAHOLE_PACKAGE, &meta_version)?
        .iter()
        .any(|d| d == "pahole")
    {
        "pahole"
    } else {
        PAHOLE_PACKAGE
    };
    let version = apt.version_in(holder, suite)?;
    let dir = kernels::kernels_dir()
        .join("tools")
        .join(format!("{holder}-{version}"));
    let wrapper = dir.join("pahole");
    let stamp = dir.join("ok");
    let origin = format!("{suite} {holder} {version}");
    if stamp.is_file() && wrapper.is_file() {
        let v = pahole_version(&wrapper)?;
        return Ok(Pahole {
            wrapper,
            describe: format!("pahole {v} ({origin})"),
        });
    }
    let started = Instant::now();
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    let root = dir.join("root");
    let debs = dir.join("debs");
    fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    fs::create_dir_all(&debs).with_context(|| format!("create {}", debs.display()))?;

    // The Depends closure of the holder, libc6 included.
    let mut todo = vec![holder.to_owned(), "libc6".to_owned()];
    let mut seen = BTreeSet::new();
    let mut packages = Vec::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if seen.len() > PAHOLE_CLOSURE_MAX {
            bail!("{holder} ({suite}) depends on more than {PAHOLE_CLOSURE_MAX} packages");
        }
        let version = match apt.version_in(&name, suite) {
            Ok(v) => v,
            // An alternative of a dependency that the suite does not have.
            Err(e) if name != holder => {
                println!("kernel: skipping {name} for pahole: {e:#}");
                continue;
            }
            Err(e) => return Err(e),
        };
        todo.extend(apt.depends(&name, &version)?);
        packages.push(Package { name, version });
    }
    for package in &packages {
        let deb = apt.download(package, &debs)?;
        cmd::output(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
        fs::remove_file(&deb).with_context(|| format!("remove {}", deb.display()))?;
    }
    fs::remove_dir_all(&debs).ok();

    let loader = [
        "usr/lib/x86_64-linux-gnu",
        "lib/x86_64-linux-gnu",
        "usr/lib64",
        "lib64",
    ]
    .iter()
    .map(|d| root.join(d).join("ld-linux-x86-64.so.2"))
    .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    .with_context(|| format!("no ld-linux-x86-64.so.2 in {}", root.display()))?;
    let lib_path: Vec<String> = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
        .iter()
        .map(|d| root.join(d))
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    let binary = ["usr/bin/pahole", "bin/pahole"]
        .iter()
        .map(|b| root.join(b))
        .find(|p| p.is_file())
        .with_context(|| format!("no pahole in {}", root.display()))?;
    let script = format!(
        "#!/bin/sh\n# {origin}, run through its own glibc (written by cargo xtask kernel)\n\
         exec '{}' --library-path '{}' '{}' \"$@\"\n",
        loader.display(),
        lib_path.join(":"),
        binary.display()
    );
    fs::write(&wrapper, script).with_context(|| format!("write {}", wrapper.display()))?;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", wrapper.display()))?;
    let v = pahole_version(&wrapper)?;
    fs::write(&stamp, format!("{origin}\n"))
        .with_context(|| format!("write {}", stamp.display()))?;
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    println!(
        "kernel: pahole {v} from {origin} ready in {:.0} s ({})",
        started.elapsed().as_secs_f64(),
        names.join(" ")
    );
    Ok(Pahole {
        wrapper,
        describe: format!("pahole {v} ({origin})"),
    })
}

fn pahole_version(wrapper: &Path) -> Result<String> {
    Ok(cmd::stdout(Command::new(wrapper).arg("--version"))?
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_check_reports_dropped_and_set_lines() {
        let fragment = "# comment\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_N=8\n# CONFIG_C is not set\n\
                        # CONFIG_D is not set\n";
        let config = "CONFIG_A=y\nCONFIG_AB=y\nCONFIG_N=2\n# CONFIG_C is not set\nCONFIG_D=y\n";
        assert_eq!(
            check_fragment(fragment, config),
            [
                "CONFIG_B unset, wanted y",
                "CONFIG_N=2, wanted 8",
                "CONFIG_D is y, not unset"
            ]
        );
    }

    #[test]
    fn hmm_fragment_has_what_the_lab_needs() {
        let (_, text) = fragment(KernelId::Hmm7_2).expect("fragment");
        for line in [
            "CONFIG_TEST_HMM=y",
            "CONFIG_RUNTIME_TESTING_MENU=y",
            "CONFIG_DEVICE_PRIVATE=y",
            "CONFIG_DEBUG_PAGE_REF=y",
            "CONFIG_DEBUG_INFO_BTF=y",
            "CONFIG_FS_DAX=y",
            "CONFIG_BLK_DEV_PMEM=y",
            "CONFIG_VIRTIO_BLK=y",
            "CONFIG_EXT4_FS=y",
            "# CONFIG_MODULES is not set",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing");
        }
    }

    #[test]
    fn digest_is_hex() {
        let d = sha256_hex(b"abc").expect("sha256sum");
        assert_eq!(
            d,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
