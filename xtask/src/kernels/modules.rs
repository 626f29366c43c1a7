//! The kernel modules the lab loads: `modules.dep` read, each wanted
//! module's dependencies first.

use super::*;

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

pub(super) struct ModulesDep {
    /// module name -> path relative to the modules folder
    pub(super) paths: HashMap<String, String>,
    /// path -> dependency paths
    pub(super) by_path: HashMap<String, Vec<String>>,
}

pub(super) fn parse_modules_dep(text: &str) -> ModulesDep {
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

pub(super) fn visit(
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

pub(super) fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/fs/ext4/ext4.ko.xz` -> `ext4`.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split_once(".ko")?.0;
    (!stem.is_empty()).then(|| normalize(stem))
}

#[cfg(test)]
mod tests {
    use super::*;

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
