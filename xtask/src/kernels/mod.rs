//! Kernels for the lab VM: Debian's packaged kernels, fetched once into the
//! cache with a private apt configuration (the machine's apt sources are
//! never changed) and reused until `cargo xtask kernels --refresh`, and
//! kernels built here from Debian's source package (see [`crate::kbuild`]).

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cmd;
use crate::setup;

/// The kernels the lab can boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
pub enum KernelId {
    /// Debian 12 bookworm's kernel (6.1).
    #[value(name = "debian-6.1")]
    #[serde(rename = "debian-6.1")]
    Debian6_1,
    /// Debian 13 trixie's kernel (6.12).
    #[value(name = "debian-6.12")]
    #[serde(rename = "debian-6.12")]
    Debian6_12,
    /// Debian sid's kernel (7.2 at the time of writing).
    #[value(name = "debian-7.2")]
    #[serde(rename = "debian-7.2")]
    Debian7_2,
    /// Linux 7.2 built here from sid's `linux-source-7.2` with TEST_HMM
    /// (device-private memory), everything built in.
    #[value(name = "hmm-7.2")]
    #[serde(rename = "hmm-7.2")]
    Hmm7_2,
}

/// Where a kernel comes from. A self-built kernel (e.g. one with TEST_HMM)
/// becomes a new variant here and a new arm in [`ensure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// `linux-image-amd64` from a Debian suite.
    Debian { suite: &'static str },
    /// Built by `cargo xtask kernel` from `package` (a `linux-source-*`
    /// package of `suite`), `make tinyconfig` and the fragment
    /// `xtask/kernel/<id>.config`; no modules.
    Built {
        suite: &'static str,
        package: &'static str,
    },
}

impl KernelId {
    /// The Debian kernels: the default test matrix.
    pub const ALL: [KernelId; 3] = [
        KernelId::Debian6_1,
        KernelId::Debian6_12,
        KernelId::Debian7_2,
    ];

    /// Every kernel the lab can boot, self-built ones included.
    pub const LAB: [KernelId; 4] = [
        KernelId::Debian6_1,
        KernelId::Debian6_12,
        KernelId::Debian7_2,
        KernelId::Hmm7_2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KernelId::Debian6_1 => "debian-6.1",
            KernelId::Debian6_12 => "debian-6.12",
            KernelId::Debian7_2 => "debian-7.2",
            KernelId::Hmm7_2 => "hmm-7.2",
        }
    }

    pub fn source(self) -> KernelSource {
        match self {
            KernelId::Debian6_1 => KernelSource::Debian { suite: "bookworm" },
            KernelId::Debian6_12 => KernelSource::Debian { suite: "trixie" },
            KernelId::Debian7_2 => KernelSource::Debian { suite: "sid" },
            KernelId::Hmm7_2 => KernelSource::Built {
                suite: "sid",
                package: "linux-source-7.2",
            },
        }
    }

    /// True when the kernel has the HMM test driver (`/dev/hmm_dmirror*`).
    pub fn has_test_hmm(self) -> bool {
        matches!(self, KernelId::Hmm7_2)
    }
}

impl fmt::Display for KernelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for KernelId {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        KernelId::LAB
            .into_iter()
            .find(|k| k.name() == s)
            .with_context(|| {
                let names: Vec<&str> = KernelId::LAB.iter().map(|k| k.name()).collect();
                format!("unknown kernel `{s}` (known: {})", names.join(", "))
            })
    }
}

/// A package as fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// A kernel in the cache, as recorded in `<cache>/kernels/<id>/kernel.json`.
/// Paths are relative to the kernel's folder; use the `*_path` methods.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelInfo {
    pub id: KernelId,
    pub suite: String,
    /// Version of the `linux-image-amd64` meta package that was resolved
    /// (for a self-built kernel: of its source package).
    pub version: String,
    /// The packages extracted, image first (for a self-built kernel: the
    /// source package).
    pub packages: Vec<Package>,
    /// `uname -r` of the kernel (the `lib/modules` folder name).
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `None` for a kernel without modules (everything built in).
    #[serde(default)]
    pub modules_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// Seconds since the epoch when it was fetched (or built).
    pub fetched_at: u64,
    /// A self-built kernel's build: fragment digest, build time, etc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::kbuild::BuildInfo>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl KernelInfo {
    pub fn vmlinuz_path(&self) -> PathBuf {
        self.dir.join(&self.vmlinuz)
    }

    pub fn modules_path(&self) -> Option<PathBuf> {
        self.modules_dir.as_ref().map(|m| self.dir.join(m))
    }

    #[allow(dead_code, reason = "for callers that check kernel options")]
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config.as_ref().map(|c| self.dir.join(c))
    }

    /// One line naming the kernel and its package version.
    pub fn describe(&self) -> String {
        if let Some(build) = &self.build {
            return format!(
                "{} = {} built from {} {} ({}) with {}, fragment sha256 {}",
                self.id,
                self.release,
                self.packages
                    .first()
                    .map(|p| p.name.as_str())
                    .unwrap_or("?"),
                self.version,
                self.suite,
                build.fragment,
                build
                    .fragment_digest
                    .get(..12)
                    .unwrap_or(&build.fragment_digest)
            );
        }
        format!(
            "{} = {} {} (linux-image-amd64 {}, {})",
            self.id,
            self.packages
                .first()
                .map(|p| p.name.as_str())
                .unwrap_or("?"),
            self.packages
                .first()
                .map(|p| p.version.as_str())
                .unwrap_or("?"),
            self.version,
            self.suite
        )
    }

    /// Resolves `wanted` modules to files in load order (dependencies
    /// first), using modules.dep; built-in ones are reported, not loaded.
    /// A kernel without modules has all of them built in.
    pub fn resolve_modules(&self, wanted: &[ModuleWant]) -> Result<ModulePlan> {
        let Some(dir) = self.modules_path() else {
            return Ok(ModulePlan {
                builtin: wanted.iter().map(|w| normalize(w.name)).collect(),
                ..ModulePlan::default()
            });
        };
        let dep_file = dir.join("modules.dep");
        let dep_text = fs::read_to_string(&dep_file)
            .with_context(|| format!("read {}", dep_file.display()))?;
        let deps = parse_modules_dep(&dep_text);
        let builtin: BTreeSet<String> = fs::read_to_string(dir.join("modules.builtin"))
            .map(|text| text.lines().filter_map(|l| module_name(l.trim())).collect())
            .unwrap_or_default();
        let has_builtin_list = dir.join("modules.builtin").is_file();

        let mut plan = ModulePlan::default();
        let mut seen = BTreeSet::new();
        for want in wanted {
            let name = normalize(want.name);
            if let Some(path) = deps.paths.get(&name) {
                visit(path, &deps.by_path, &mut seen, &mut plan.load, &dir)?;
            } else if builtin.contains(&name) {
                plan.builtin.push(name);
            } else if want.required && has_builtin_list {
                bail!(
                    "kernel module {name} is neither a module nor built in ({} of {})",
                    dir.display(),
                    self.id
                );
            } else {
                plan.absent.push(name);
            }
        }
        Ok(plan)
    }
}

pub(crate) fn kernels_dir() -> PathBuf {
    setup::cache_dir().join("kernels")
}

pub(crate) fn kernel_dir(id: KernelId) -> PathBuf {
    kernels_dir().join(id.name())
}

/// The cached kernel, if a complete one is there.
pub fn cached(id: KernelId) -> Option<KernelInfo> {
    if let KernelSource::Built { .. } = id.source() {
        return crate::kbuild::cached(id);
    }
    let dir = kernel_dir(id);
    let text = fs::read_to_string(dir.join("kernel.json")).ok()?;
    let mut info: KernelInfo = serde_json::from_str(&text).ok()?;
    info.dir = dir;
    (info.id == id
        && info.vmlinuz_path().is_file()
        && info
            .modules_path()
            .is_some_and(|m| m.join("modules.dep").is_file()))
    .then_some(info)
}

/// The kernel from the cache, fetched first if it is not there. Never moves
/// a cached kernel to a newer upload (that is [`refresh`]).
pub fn ensure(id: KernelId) -> Result<KernelInfo> {
    if let Some(info) = cached(id) {
        println!("kernel {} (cached)", info.describe());
        return Ok(info);
    }
    match id.source() {
        KernelSource::Debian { suite } => {
            let apt = Apt::new()?;
            apt.update_once()?;
            let packages = apt.resolve(suite)?;
            fetch(id, suite, &apt, packages)
        }
        KernelSource::Built { suite, package } => crate::kbuild::build(id, suite, package, false),
    }
}

/// Asks the archive again and replaces the cached kernel if the upload moved.
pub fn refresh(id: KernelId) -> Result<KernelInfo> {
    match id.source() {
        KernelSource::Debian { suite } => {
            let apt = Apt::new()?;
            apt.update_once()?;
            let resolved = apt.resolve(suite)?;
            if let Some(info) = cached(id) {
                if info.version == resolved.meta_version && info.packages == resolved.packages {
                    println!("kernel {} (cached, up to date)", info.describe());
                    return Ok(info);
                }
                println!(
                    "kernel {id}: the archive moved from linux-image-amd64 {} to {}",
                    info.version, resolved.meta_version
                );
            }
            fetch(id, suite, &apt, resolved)
        }
        KernelSource::Built { suite, package } => crate::kbuild::build(id, suite, package, true),
    }
}

/// What `linux-image-amd64` of a suite resolves to.
struct Resolved {
    meta_version: String,
    packages: Vec<Package>,
}

fn fetch(id: KernelId, suite: &str, apt: &Apt, resolved: Resolved) -> Result<KernelInfo> {
    let started = Instant::now();
    let names: Vec<String> = resolved
        .packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    println!("kernel {id}: fetching {} from {suite}", names.join(", "));

    let base = kernels_dir();
    let work = base.join(format!(".new-{}-{}", id.name(), std::process::id()));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    }
    let debs = work.join("debs");
    let root = work.join("root");
    fs::create_dir_all(&debs).with_context(|| format!("create {}", debs.display()))?;
    fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;

    for package in &resolved.packages {
        let deb = apt.download(package, &debs)?;
        cmd::output(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
        fs::remove_file(&deb).with_context(|| format!("remove {}", deb.display()))?;
    }
    fs::remove_dir(&debs).ok();

    // usr-merged packages put modules under usr/lib; depmod -b looks in lib/.
    if !root.join("lib").exists() && root.join("usr/lib/modules").is_dir() {
        std::os::unix::fs::symlink("usr/lib", root.join("lib"))
            .with_context(|| format!("symlink {}/lib", root.display()))?;
    }
    let release = find_release(&root)?;
    let modules_rel = PathBuf::from("root/lib/modules").join(&release);
    let vmlinuz_rel = [
        PathBuf::from(format!("root/boot/vmlinuz-{release}")),
        PathBuf::from(format!("root/usr/lib/modules/{release}/vmlinuz")),
        PathBuf::from(format!("root/lib/modules/{release}/vmlinuz")),
    ]
    .into_iter()
    .find(|p| work.join(p).is_file())
    .with_context(|| format!("no vmlinuz for {release} in {}", root.display()))?;
    let config_rel = [
        PathBuf::from(format!("root/boot/config-{release}")),
        PathBuf::from(format!("root/usr/lib/modules/{release}/config")),
        PathBuf::from(format!("root/lib/modules/{release}/config")),
    ]
    .into_iter()
    .find(|p| work.join(p).is_file());

    if !work.join(&modules_rel).join("modules.dep").is_file() {
        let depmod_started = Instant::now();
        cmd::output(Command::new("depmod").arg("-b").arg(&root).arg(&release))?;
        println!(
            "kernel {id}: depmod {release} ({:.1} s)",
            depmod_started.elapsed().as_secs_f64()
        );
    }

    let info = KernelInfo {
        id,
        suite: suite.to_owned(),
        version: resolved.meta_version,
        packages: resolved.packages,
        release,
        vmlinuz: vmlinuz_rel,
        modules_dir: Some(modules_rel),
        config: config_rel,
        fetched_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        build: None,
        dir: PathBuf::new(),
    };
    let json = serde_json::to_string_pretty(&info).context("encode kernel.json")?;
    fs::write(work.join("kernel.json"), json + "\n")
        .with_context(|| format!("write {}/kernel.json", work.display()))?;

    let dir = kernel_dir(id);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    fs::rename(&work, &dir)
        .with_context(|| format!("rename {} to {}", work.display(), dir.display()))?;
    let info = KernelInfo { dir, ..info };
    println!(
        "kernel {} (fetched in {:.1} s)",
        info.describe(),
        started.elapsed().as_secs_f64()
    );
    Ok(info)
}

/// The single `lib/modules/<release>` folder of an extracted kernel.
fn find_release(root: &Path) -> Result<String> {
    let modules = root.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&modules)
        .with_context(|| format!("read {}", modules.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no kernel release folder in {}", modules.display()),
        many => bail!(
            "several kernel releases in {}: {}",
            modules.display(),
            many.join(", ")
        ),
    }
}

mod apt;
mod modules;

pub(crate) use apt::Apt;
pub use modules::*;
