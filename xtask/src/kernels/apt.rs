//! apt with a private configuration in the cache: Debian's kernel packages
//! fetched without touching the machine's apt sources.

use super::*;

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
    pub(super) fn resolve(&self, suite: &str) -> Result<Resolved> {
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
}
