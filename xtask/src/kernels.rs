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

/// A module the lab wants loaded.
#[derive(Clone, Copy, Debug)]
pub struct ModuleWant {
    pub name: &'static str,
    /// Missing (neither module nor built in) is an error, not a note.
    pub required: bool,
}

/// A module file to load.
#[derive(Clone, Debug)]
pub struct ModuleFile {
    /// Module name (`-` normalized to `_`).
    pub name: String,
    /// The file, possibly compressed (`.ko.xz`, `.ko.zst`, `.ko.gz`).
    pub path: PathBuf,
}

/// What [`KernelInfo::resolve_modules`] found.
#[derive(Clone, Debug, Default)]
pub struct ModulePlan {
    /// To insmod, in this order.
    pub load: Vec<ModuleFile>,
    /// Wanted but built into the kernel.
    pub builtin: Vec<String>,
    /// Wanted, optional, and not in this kernel at all.
    pub absent: Vec<String>,
}

struct ModulesDep {
    /// module name -> path relative to the modules folder
    paths: HashMap<String, String>,
    /// path -> dependency paths
    by_path: HashMap<String, Vec<String>>,
}

fn parse_modules_dep(text: &str) -> ModulesDep {
    let mut paths = HashMap::new();
    let mut by_path = HashMap::new();
    for line in text.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let path = path.trim().to_owned();
        if let Some(name) = module_name(&path) {
            paths.insert(name, path.clone());
        }
        by_path.insert(path, rest.split_whitespace().map(str::to_owned).collect());
    }
    ModulesDep { paths, by_path }
}

fn visit(
    path: &str,
    by_path: &HashMap<String, Vec<String>>,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<ModuleFile>,
    dir: &Path,
) -> Result<()> {
    if !seen.insert(path.to_owned()) {
        return Ok(());
    }
    for dep in by_path.get(path).map(Vec::as_slice).unwrap_or(&[]) {
        visit(dep, by_path, seen, out, dir)?;
    }
    let name = module_name(path).with_context(|| format!("odd module path {path}"))?;
    out.push(ModuleFile {
        name,
        path: dir.join(path),
    });
    Ok(())
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/fs/ext4/ext4.ko.xz` -> `ext4`.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split_once(".ko")?.0;
    (!stem.is_empty()).then(|| normalize(stem))
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

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// apt with a private configuration under `<cache>/apt`.
pub(crate) struct Apt {
    dir: PathBuf,
}

impl Apt {
    pub(crate) fn new() -> Result<Apt> {
        let dir = setup::cache_dir().join("apt");
        for sub in ["lists/partial", "cache/archives/partial"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        }
        let uri = debian_archive_uri()?;
        let mut sources = String::new();
        for suite in ["bookworm", "trixie", "sid"] {
            sources.push_str(&format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {suite} main\n"
            ));
        }
        let list = dir.join("sources.list");
        if fs::read_to_string(&list).ok().as_deref() != Some(sources.as_str()) {
            fs::write(&list, sources).with_context(|| format!("write {}", list.display()))?;
        }
        Ok(Apt { dir })
    }

    fn options(&self) -> Vec<OsString> {
        let opt = |key: &str, value: &Path| {
            let mut s = OsString::from(format!("{key}="));
            s.push(value.as_os_str());
            ["-o".into(), s]
        };
        let mut args = Vec::new();
        args.extend(opt("Dir::Etc::SourceList", &self.dir.join("sources.list")));
        args.extend(opt("Dir::Etc::SourceParts", Path::new("/dev/null")));
        args.extend(opt("Dir::State::Lists", &self.dir.join("lists")));
        args.extend(opt("Dir::Cache", &self.dir.join("cache")));
        args.extend(opt("Dir::State::status", Path::new("/dev/null")));
        args.extend(opt("Dir::Etc::Preferences", Path::new("/dev/null")));
        args.extend(opt("Dir::Etc::PreferencesParts", Path::new("/dev/null")));
        for setting in [
            // Kept in our own cache folder (some machines turn the cache off).
            "Dir::Cache::pkgcache=pkgcache.bin",
            "Dir::Cache::srcpkgcache=srcpkgcache.bin",
            "APT::Sandbox::User=root",
            "Acquire::Languages=none",
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
        ] {
            args.extend(["-o".into(), setting.into()]);
        }
        args
    }

    fn get(&self) -> Command {
        let mut c = Command::new("apt-get");
        c.args(self.options())
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    fn cache(&self) -> Command {
        let mut c = Command::new("apt-cache");
        c.args(self.options());
        c
    }

    /// `apt-get update` at most once per xtask run.
    pub(crate) fn update_once(&self) -> Result<()> {
        if APT_UPDATED.load(Ordering::SeqCst) {
            return Ok(());
        }
        let started = Instant::now();
        println!(
            "kernels: apt-get update (private lists in {})",
            self.dir.display()
        );
        cmd::output(self.get().args(["update", "-q"]))?;
        println!(
            "kernels: apt-get update done ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        APT_UPDATED.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The version of `package` that `suite` has.
    pub(crate) fn version_in(&self, package: &str, suite: &str) -> Result<String> {
        let text = cmd::stdout(self.cache().args(["madison", package]))?;
        for line in text.lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            if let [name, version, source] = cols.as_slice()
                && *name == package
                && source
                    .split_whitespace()
                    .any(|w| w == format!("{suite}/main"))
            {
                return Ok((*version).to_owned());
            }
        }
        bail!("apt-cache madison {package}: no version in {suite}")
    }

    /// Names `package=version` depends on (Depends and PreDepends only).
    pub(crate) fn depends(&self, package: &str, version: &str) -> Result<Vec<String>> {
        let text = cmd::stdout(
            self.cache()
                .args(["depends", &format!("{package}={version}")]),
        )?;
        let mut names = Vec::new();
        for line in text.lines() {
            let line = line.trim_start().trim_start_matches('|');
            let dep = line
                .strip_prefix("Depends:")
                .or_else(|| line.strip_prefix("PreDepends:"));
            if let Some(dep) = dep {
                let name = dep.trim();
                if !name.starts_with('<') {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    /// The packages of `suite`'s current kernel: the versioned image
    /// package plus the versioned packages it depends on (binary, modules,
    /// base files, depending on how the suite splits the kernel).
    fn resolve(&self, suite: &str) -> Result<Resolved> {
        let meta = "linux-image-amd64";
        let meta_version = self.version_in(meta, suite)?;
        let image: Vec<String> = self
            .depends(meta, &meta_version)?
            .into_iter()
            .filter(|d| d.starts_with("linux-image-") && d != meta)
            .collect();
        let image = match image.as_slice() {
            [one] => one.clone(),
            other => bail!(
                "{meta}={meta_version} ({suite}) depends on {} linux-image packages: {other:?}",
                other.len()
            ),
        };
        let abi = image
            .strip_prefix("linux-image-")
            .unwrap_or(&image)
            .to_owned();
        let image_version = self.version_in(&image, suite)?;
        let mut packages = vec![Package {
            name: image.clone(),
            version: image_version.clone(),
        }];
        let mut extra: BTreeSet<String> = BTreeSet::new();
        for dep in self.depends(&image, &image_version)? {
            if dep.starts_with("linux-") && dep.ends_with(&format!("-{abi}")) && dep != image {
                extra.insert(dep);
            }
        }
        for name in extra {
            let version = self.version_in(&name, suite)?;
            packages.push(Package { name, version });
        }
        Ok(Resolved {
            meta_version,
            packages,
        })
    }

    pub(crate) fn download(&self, package: &Package, dest: &Path) -> Result<PathBuf> {
        cmd::output(
            self.get()
                .args([
                    "download",
                    "-q",
                    &format!("{}={}", package.name, package.version),
                ])
                .current_dir(dest),
        )?;
        let prefix = format!("{}_", package.name);
        fs::read_dir(dest)
            .with_context(|| format!("read {}", dest.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .with_context(|| format!("apt-get download {} left no .deb", package.name))
    }
}

/// The Debian archive URI this machine's apt configuration uses: the first
/// URI whose path ends in `/debian`.
fn debian_archive_uri() -> Result<String> {
    let mut candidates = Vec::new();
    let parts = Path::new("/etc/apt/sources.list.d");
    let mut files: Vec<PathBuf> = fs::read_dir(parts)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for file in &files {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => candidates.extend(deb822_uris(&text)),
            Some("list") => candidates.extend(one_line_uris(&text)),
            _ => {}
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        candidates.extend(one_line_uris(&text));
    }
    candidates
        .into_iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .find(|u| u.ends_with("/debian"))
        .context("no Debian archive URI (path ending in /debian) in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources")
}

/// `URIs:` of enabled `deb` stanzas in a deb822 sources file.
fn deb822_uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fields: HashMap<String, String> = HashMap::new();
    let flush = |fields: &mut HashMap<String, String>, out: &mut Vec<String>| {
        let types = fields.get("types").cloned().unwrap_or_default();
        let enabled = fields
            .get("enabled")
            .is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        if enabled
            && types.split_whitespace().any(|t| t == "deb")
            && let Some(uris) = fields.get("uris")
        {
            out.extend(uris.split_whitespace().map(str::to_owned));
        }
        fields.clear();
    };
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields, &mut out);
            last_key = None;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(key) = &last_key
                && let Some(value) = fields.get_mut(key)
            {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            let key = key.trim().to_ascii_lowercase();
            fields.insert(key.clone(), value.trim().to_owned());
            last_key = Some(key);
        }
    }
    flush(&mut fields, &mut out);
    out
}

/// URIs of `deb` lines in a one-line-style sources.list.
fn one_line_uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = if rest.starts_with('[') {
            rest.split_once(']')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("")
        } else {
            rest
        };
        if let Some(uri) = rest.split_whitespace().next() {
            out.push(uri.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_picks_enabled_deb_uris() {
        let text = "Types: deb\n# comment\nURIs: http://a.example/debian\nSuites: bookworm\n\n\
                    Types: deb-src\nURIs: http://b.example/debian\n\n\
                    Types: deb\nEnabled: no\nURIs: http://c.example/debian\n\n\
                    Types: deb\nURIs: http://d.example/debian-security\n  http://e.example/debian/\n";
        assert_eq!(
            deb822_uris(text),
            [
                "http://a.example/debian",
                "http://d.example/debian-security",
                "http://e.example/debian/"
            ]
        );
    }

    #[test]
    fn one_line_skips_options_and_comments() {
        let text = "# deb http://x.example/debian sid main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://y.example/debian bookworm main\n\
                    deb-src http://z.example/debian bookworm main\n";
        assert_eq!(one_line_uris(text), ["http://y.example/debian"]);
    }

    #[test]
    fn module_names_normalize() {
        assert_eq!(
            module_name("kernel/fs/ext4/ext4.ko.xz").as_deref(),
            Some("ext4")
        );
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko").as_deref(),
            Some("crc32c_intel")
        );
        assert_eq!(module_name("kernel/fs/ext4/ext4"), None);
    }

    #[test]
    fn modules_dep_closure_is_dependencies_first() {
        let deps = parse_modules_dep(
            "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n\
             kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n",
        );
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let path = deps.paths.get("ext4").expect("ext4 parsed");
        visit(path, &deps.by_path, &mut seen, &mut out, Path::new("m")).expect("closure");
        let names: Vec<&str> = out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["jbd2", "mbcache", "crc16", "ext4"]);
    }
}
