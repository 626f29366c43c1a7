//! `cargo xtask dist`: a static x86-64 refwatch (musl) and a Debian package
//! of it (cargo-deb) with its man pages and shell completions, in
//! `target/dist/`; and the check `cargo xtask test` runs on them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::{cmd, initramfs, lab, setup, test::workspace_root};

/// The static build's target.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// The cargo-deb release installed into the cache.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Debian packages the check needs: lintian, man-db to render the pages,
/// and the three shells to load their completions.
pub const CHECK_PACKAGES: &[&str] = &[
    "lintian",
    "man-db",
    "file",
    "bash-completion",
    "zsh",
    "fish",
];

/// Where the files are installed: the paths cargo-deb's `assets` in
/// refwatch/Cargo.toml give, and where each shell looks for completions.
const BASH_COMPLETIONS: &str = "usr/share/bash-completion/completions";
const ZSH_COMPLETIONS: &str = "usr/share/zsh/vendor-completions";
const FISH_COMPLETIONS: &str = "usr/share/fish/vendor_completions.d";
const MAN1: &str = "usr/share/man/man1";

/// What `dist` made.
#[derive(Debug)]
pub struct Dist {
    /// The static binary, `refwatch-VERSION-x86_64-linux-musl`.
    pub binary: PathBuf,
    /// `refwatch_VERSION-1_amd64.deb`.
    pub deb: PathBuf,
}

/// `target/dist` (of the workspace's target folder).
pub fn dist_dir() -> Result<PathBuf> {
    Ok(lab::target_dir()?.join("dist"))
}

/// Builds the static refwatch users install (the binary of the package):
/// the lab runs this one too. Returns its path in the target folder.
pub fn build_static() -> Result<PathBuf> {
    ensure_target()?;
    println!("building refwatch for {TARGET} (release, static: the binary of the package)");
    cmd::streamed(
        Command::new("cargo")
            .args(["build", "--release", "-p", "refwatch", "--target", TARGET])
            .current_dir(workspace_root())
            .env("PATH", setup::env_path()),
    )?;
    let built = lab::target_dir()?
        .join(TARGET)
        .join("release")
        .join("refwatch");
    let problems = static_problems(&built)?;
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(built)
}

/// Builds the static binary and the package.
pub fn build() -> Result<Dist> {
    let started = Instant::now();
    let built = build_static()?;
    let release = built.parent().map(Path::to_path_buf).unwrap_or_default();
    let version = version_of(&built)?;
    println!("dist: {version}");

    // The pages, completions and changelog cargo-deb packs (its
    // `target/release/dist-assets/…` paths are this folder).
    let assets = release.join("dist-assets");
    write_assets(&built, &assets)?;

    let out = dist_dir()?;
    fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let cargo_deb = ensure_cargo_deb()?;
    let printed = cmd::stdout(
        Command::new(&cargo_deb)
            .args(["deb", "-p", "refwatch", "--no-build", "--target", TARGET])
            .arg("--output")
            .arg(&out)
            .current_dir(workspace_root()),
    )?;
    let deb = printed
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo-deb printed no .deb path: {printed}"))?;
    if !deb.is_file() {
        bail!("cargo-deb named {} but it does not exist", deb.display());
    }
    drop_empty_depends(&deb, &out.join("repack"))?;

    let binary = out.join(format!(
        "refwatch-{}-x86_64-linux-musl",
        package_version(&version)?
    ));
    // Stripped, as cargo-deb strips the packaged one.
    cmd::output(Command::new("strip").arg("-o").arg(&binary).arg(&built))?;
    println!(
        "dist: {} and {} ({:.0} s)",
        binary.display(),
        deb.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(Dist { binary, deb })
}

/// cargo-deb (3.8.0) writes a `Depends:` line with nothing after it for a
/// package that needs nothing, as the static binary does: an empty field
/// (lintian: empty-field). This takes that line out and packs `deb` again,
/// unpacked in `raw` (a scratch folder, removed after).
fn drop_empty_depends(deb: &Path, raw: &Path) -> Result<()> {
    if raw.exists() {
        fs::remove_dir_all(raw).with_context(|| format!("remove {}", raw.display()))?;
    }
    cmd::output(Command::new("dpkg-deb").arg("-R").arg(deb).arg(raw))?;
    let control = raw.join("DEBIAN").join("control");
    let text =
        fs::read_to_string(&control).with_context(|| format!("read {}", control.display()))?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_end() != "Depends:")
        .collect();
    if kept.len() != text.lines().count() {
        fs::write(&control, kept.join("\n") + "\n")
            .with_context(|| format!("write {}", control.display()))?;
        cmd::output(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zxz", "-b"])
                .arg(raw)
                .arg(deb),
        )?;
    }
    fs::remove_dir_all(raw).with_context(|| format!("remove {}", raw.display()))
}

/// Adds the musl target to the toolchain when it lacks it.
fn ensure_target() -> Result<()> {
    let installed = cmd::stdout(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(workspace_root()),
    )?;
    if installed.lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    println!("dist: adding the {TARGET} target (rustup)");
    cmd::streamed(
        Command::new("rustup")
            .args(["target", "add", TARGET])
            .current_dir(workspace_root()),
    )
}

/// Makes sure the cache holds cargo-deb [`CARGO_DEB_VERSION`]; returns its
/// binary.
fn ensure_cargo_deb() -> Result<PathBuf> {
    setup::ensure_cargo_tool("cargo-deb", CARGO_DEB_VERSION)
}

/// Why `bin` is not a static x86-64 executable (none when it is).
fn static_problems(bin: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if initramfs::has_interpreter(bin)? {
        problems.push(format!(
            "{} asks for a program interpreter (PT_INTERP): not static",
            bin.display()
        ));
    }
    let file = cmd::stdout(Command::new("file").args(["-b", "-L"]).arg(bin))?;
    if !file.contains("x86-64")
        || !(file.contains("statically linked") || file.contains("static-pie linked"))
    {
        problems.push(format!(
            "file(1) says of {}: {}",
            bin.display(),
            file.trim()
        ));
    }
    Ok(problems)
}

/// `BIN --version`, checked to name refwatch.
fn version_of(bin: &Path) -> Result<String> {
    let v = cmd::stdout(Command::new(bin).arg("--version"))?;
    let v = v.trim().to_owned();
    if !v.starts_with("refwatch ") {
        bail!("{} --version printed {v:?}", bin.display());
    }
    Ok(v)
}

/// `0.1.0` of `refwatch 0.1.0 (abc1234)`: the version of the refwatch
/// package, which cargo-deb also takes.
fn package_version(version_line: &str) -> Result<&str> {
    version_line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("no version in {version_line:?}"))
}

/// Runs `bin ARGS`, returning its stdout.
fn run_bin(bin: &Path, args: &[&str]) -> Result<String> {
    cmd::stdout(Command::new(bin).args(args))
}

/// gzip -9n: the best compression, no name or time stamp (reproducible).
fn gzip(file: &Path) -> Result<()> {
    cmd::output(Command::new("gzip").args(["-9nf"]).arg(file)).map(drop)
}

/// The man pages (gzipped), the three completion scripts and a Debian
/// changelog, made by the built binary, into `dir` (emptied first).
fn write_assets(bin: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    let man = dir.join("man");
    cmd::output(Command::new(bin).arg("man").arg("--dir").arg(&man))?;
    for entry in fs::read_dir(&man).with_context(|| format!("read {}", man.display()))? {
        gzip(&entry?.path())?;
    }
    let completions = dir.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("create {}", completions.display()))?;
    for (shell, name) in [
        ("bash", "refwatch"),
        ("zsh", "_refwatch"),
        ("fish", "refwatch.fish"),
    ] {
        let file = completions.join(name);
        fs::write(&file, run_bin(bin, &["completions", shell])?)
            .with_context(|| format!("write {}", file.display()))?;
    }
    let changelog = dir.join("changelog.Debian");
    fs::write(&changelog, debian_changelog(&version_of(bin)?)?)
        .with_context(|| format!("write {}", changelog.display()))?;
    gzip(&changelog)
}

/// The package's maintainer, as in refwatch/Cargo.toml's
/// `[package.metadata.deb]`.
fn maintainer() -> Result<String> {
    let manifest = workspace_root().join("refwatch/Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("read {}", manifest.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("maintainer = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .with_context(|| format!("no maintainer in {}", manifest.display()))
}

/// A one-entry Debian changelog for this build: the version, the revision
/// and the time of the commit it was built from.
fn debian_changelog(version_line: &str) -> Result<String> {
    let root = workspace_root();
    // The commit's time keeps the package reproducible; outside git, now.
    let epoch = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty());
    let mut date = Command::new("date");
    date.args(["-u", "-R"]);
    if let Some(epoch) = &epoch {
        date.arg("-d").arg(format!("@{epoch}"));
    }
    let date = cmd::stdout(&mut date)?;
    Ok(format!(
        "refwatch ({}-1) unstable; urgency=medium\n\n  * Packaged {version_line}.\n\n -- {}  {}\n",
        package_version(version_line)?,
        maintainer()?,
        date.trim()
    ))
}

/// Builds, then checks the package: lintian clean, and the extracted
/// package's binary, man pages and completions where the shells look.
pub fn check() -> Result<Vec<String>> {
    let started = Instant::now();
    setup::install_missing(CHECK_PACKAGES, "dist")?;
    let dist = build()?;
    let mut problems = static_problems(&dist.binary)?;
    problems.extend(lintian(&dist.deb)?);
    let root = extract_dir()?;
    cmd::output(Command::new("dpkg-deb").arg("-x").arg(&dist.deb).arg(&root))?;
    problems.extend(check_tree(&root)?);
    let _ = fs::remove_dir_all(&root);
    println!("dist check: {:.0} s", started.elapsed().as_secs_f64());
    Ok(problems)
}

/// An empty folder for the extracted package in `target/dist`.
fn extract_dir() -> Result<PathBuf> {
    let dir = dist_dir()?.join("extracted");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// lintian's complaints (errors and warnings) about `deb`.
fn lintian(deb: &Path) -> Result<Vec<String>> {
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--display-level", ">=warning"])
        .arg(deb)
        .output()
        .context("cannot start lintian")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut problems: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .map(|l| format!("lintian: {l}"))
        .collect();
    // Exit status 1 with no tag shown: lintian itself failed.
    if !out.status.success() && problems.is_empty() {
        problems.push(format!("lintian failed: {}", cmd::tail(&out.stderr, 4)));
    }
    if problems.is_empty() {
        println!("dist: lintian: no error or warning");
    }
    Ok(problems)
}

/// Checks the tree the package installs, extracted under `root`.
fn check_tree(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let bin = root.join("usr/bin/refwatch");
    match version_of(&bin) {
        Ok(v) => println!("dist: extracted usr/bin/refwatch: {v}"),
        Err(e) => problems.push(format!("{e:#}")),
    }
    // Its own bash completions pass bash -n.
    match run_bin(&bin, &["completions", "bash"]) {
        Ok(script) => problems.extend(shell_ok("bash", &["-n", "-c", &script])),
        Err(e) => problems.push(format!("{e:#}")),
    }
    problems.extend(check_man(root)?);
    problems.extend(check_completions(root)?);
    Ok(problems)
}

/// Runs `shell ARGS`; a problem unless it exits 0 with nothing on stderr.
fn shell_ok(shell: &str, args: &[&str]) -> Option<String> {
    match Command::new(shell).args(args).output() {
        Ok(o) if o.status.success() && o.stderr.is_empty() => None,
        Ok(o) => Some(format!(
            "{shell} {}: {} {}",
            args.first().copied().unwrap_or_default(),
            o.status,
            cmd::tail(&o.stderr, 4)
        )),
        Err(e) => Some(format!("cannot start {shell}: {e}")),
    }
}

/// Every packaged page renders with man(1), without a warning.
fn check_man(root: &Path) -> Result<Vec<String>> {
    let dir = root.join(MAN1);
    let mut problems = Vec::new();
    let mut pages: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    if !pages.iter().any(|p| p.ends_with("refwatch.1.gz")) {
        problems.push(format!("no refwatch.1.gz in {MAN1}"));
    }
    // In the C locale, as on a machine where no locale is set: a character
    // its output lacks (an ellipsis, say) is a warning there.
    let mut failed = 0;
    for page in &pages {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C")
            .output()
            .context("cannot start man")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !out.stderr.is_empty() || !text.contains("SYNOPSIS") {
            failed += 1;
            problems.push(format!(
                "man -l {}: {} {}",
                page.display(),
                out.status,
                cmd::tail(&out.stderr, 4)
            ));
        }
    }
    println!(
        "dist: {} of {} man pages render without a warning (C locale)",
        pages.len() - failed,
        pages.len()
    );
    Ok(problems)
}

/// Each shell, pointed at the extracted tree as it would be at /, finds
/// and loads refwatch's completions from where the package put them.
fn check_completions(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let share = root.join("usr/share");

    // bash-completion loads completions/NAME from each of XDG_DATA_DIRS.
    let bash = format!(
        "source /usr/share/bash-completion/bash_completion && XDG_DATA_DIRS={} && __load_completion refwatch && complete -p refwatch",
        share.display()
    );
    let out = Command::new("bash").args(["-c", &bash]).output()?;
    if !String::from_utf8_lossy(&out.stdout).contains("refwatch") {
        problems.push(format!(
            "bash-completion does not load {BASH_COMPLETIONS}/refwatch: {}",
            cmd::tail(&out.stderr, 4)
        ));
    }

    // zsh's own fpath has the vendor folder; compinit there binds _refwatch.
    let fpath = cmd::stdout(Command::new("zsh").args(["-f", "-c", "print -l $fpath"]))?;
    if !fpath.lines().any(|l| l == format!("/{ZSH_COMPLETIONS}")) {
        problems.push(format!("zsh's fpath lacks /{ZSH_COMPLETIONS}: {fpath}"));
    }
    let zsh = format!(
        "fpath=({} $fpath); autoload -Uz compinit; compinit -u -D; print -r -- ${{_comps[refwatch]}}",
        root.join(ZSH_COMPLETIONS).display()
    );
    let out = Command::new("zsh").args(["-f", "-c", &zsh]).output()?;
    if String::from_utf8_lossy(&out.stdout).trim() != "_refwatch" {
        problems.push(format!(
            "zsh does not bind _refwatch from {ZSH_COMPLETIONS}: {} {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            cmd::tail(&out.stderr, 4)
        ));
    }

    // fish's default completion path has the vendor folder; there, it
    // completes a subcommand.
    // (Its default path is set by its own config: not --no-config.)
    let path =
        cmd::stdout(Command::new("fish").args(["-c", "printf '%s\\n' $fish_complete_path"]))?;
    if !path.lines().any(|l| l == format!("/{FISH_COMPLETIONS}")) {
        problems.push(format!(
            "fish's completion path lacks /{FISH_COMPLETIONS}: {path}"
        ));
    }
    let fish = format!(
        "set fish_complete_path {} $fish_complete_path; complete -C 'refwatch rep'",
        root.join(FISH_COMPLETIONS).display()
    );
    // fish loads a command's completions once the command is on PATH.
    let mut path = vec![root.join("usr/bin")];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let out = Command::new("fish")
        .args(["-c", &fish])
        .env("PATH", std::env::join_paths(path)?)
        .output()?;
    if !String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("replay") || l.starts_with("report"))
    {
        problems.push(format!(
            "fish does not complete `refwatch rep` from {FISH_COMPLETIONS}: {}",
            cmd::tail(&out.stderr, 4)
        ));
    }
    if problems.is_empty() {
        println!("dist: bash, zsh and fish load refwatch's completions from the package");
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_not_static() {
        let problems = static_problems(Path::new("/bin/sh")).expect("read /bin/sh");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("PT_INTERP"), "{problems:?}");
        assert!(problems[1].contains("dynamically linked"), "{problems:?}");
        // (the musl build passes: `cargo xtask dist` checks it)
    }

    #[test]
    fn the_changelog_entry_names_version_revision_and_maintainer() {
        let text = debian_changelog("refwatch 0.1.0 (abc1234-dirty)").expect("changelog");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "refwatch (0.1.0-1) unstable; urgency=medium");
        assert_eq!(lines[2], "  * Packaged refwatch 0.1.0 (abc1234-dirty).");
        let trailer = lines[4]
            .strip_prefix(" -- refwatch developers <refwatch@example.org>  ")
            .expect(lines[4]);
        // RFC 2822 with a two-digit day, as dpkg wants: "Fri, 04 Dec 2026 21:19:50 +0000".
        let parts: Vec<&str> = trailer.split(' ').collect();
        assert_eq!(parts.len(), 6, "{trailer}");
        assert!(parts[0].ends_with(',') && parts[1].len() == 2, "{trailer}");
        assert_eq!(parts[5], "+0000", "{trailer}");
        assert!(package_version("refwatch").is_err());
    }

    /// A package made here with the empty `Depends:` line cargo-deb writes.
    #[test]
    fn the_empty_depends_line_goes_and_the_rest_stays() {
        let t = std::env::temp_dir().join(format!("xtask-dist-test-{}", std::process::id()));
        let tree = t.join("tree");
        fs::create_dir_all(tree.join("DEBIAN")).expect("mkdir");
        fs::create_dir_all(tree.join("usr/bin")).expect("mkdir");
        fs::write(tree.join("usr/bin/hello"), "#!/bin/sh\necho hi\n").expect("write");
        fs::write(
            tree.join("DEBIAN/control"),
            "Package: hello\nVersion: 1.0-1\nArchitecture: all\nMaintainer: A <a@example.org>\nDepends: \nDescription: test\n test package\n",
        )
        .expect("write");
        let deb = t.join("hello.deb");
        cmd::output(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-b"])
                .arg(&tree)
                .arg(&deb),
        )
        .expect("dpkg-deb -b");
        let field = |name: &str| {
            cmd::stdout(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name)).expect("-f")
        };
        assert_eq!(field("Depends").trim(), "");
        let fields =
            |deb: &Path| cmd::stdout(Command::new("dpkg-deb").arg("-f").arg(deb)).expect("-f");
        assert!(fields(&deb).contains("Depends:"));

        drop_empty_depends(&deb, &t.join("raw")).expect("repack");
        let after = fields(&deb);
        assert!(!after.contains("Depends"), "{after}");
        assert!(after.contains("Package: hello") && after.contains("Version: 1.0-1"));
        let files = cmd::stdout(Command::new("dpkg-deb").arg("-c").arg(&deb)).expect("-c");
        assert!(files.contains("./usr/bin/hello"), "{files}");
        assert!(!t.join("raw").exists(), "scratch folder removed");
        // Nothing left to drop: the package is left as it is.
        drop_empty_depends(&deb, &t.join("raw")).expect("again");
        assert_eq!(fields(&deb), after);
        fs::remove_dir_all(&t).expect("clean up");
    }
}
