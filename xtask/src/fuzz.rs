//! `cargo xtask fuzz`: runs the fuzz targets of `fuzz/` (cargo-fuzz,
//! libFuzzer; nightly, AddressSanitizer, overflow checks) one after the
//! other, each for a set time, from seeds made of the recordings in
//! `refwatch/tests/data` and the inputs of crashes found before. What it
//! keeps lives in `<cache>/fuzz`: the build (a warm run does not rebuild),
//! the corpus each target grew, crash artifacts and the logs.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup, test::workspace_root};

/// The fuzz targets, in the order they run.
pub const TARGETS: [&str; 2] = ["recording", "ring"];
/// Seconds each target runs by default.
pub const DEFAULT_SECS: u64 = 600;
/// Seconds each target runs in `cargo xtask test`.
pub const SHORT_SECS: u64 = 30;
/// An input taking longer than this is a failure (a hang).
const TIMEOUT_SECS: u64 = 10;
/// Memory an input may take (libFuzzer's `-rss_limit_mb`, also the
/// largest single allocation).
const RSS_LIMIT_MB: u64 = 2048;

/// Where the fuzz build, corpora, artifacts and logs are kept.
fn fuzz_cache() -> PathBuf {
    setup::cache_dir().join("fuzz")
}

/// `cargo +nightly fuzz <sub>` for the project's fuzz crate, on `path`. The
/// eBPF object is not built (the targets do not load kernel programs:
/// refwatch's build script honours `AYA_BUILD_SKIP`).
fn cargo_fuzz(path: &std::ffi::OsStr, sub: &str) -> Command {
    let root = workspace_root();
    let mut c = Command::new("cargo");
    c.args(["+nightly", "fuzz", sub, "--debug-assertions", "--fuzz-dir"])
        .arg(root.join("fuzz"))
        .arg("--target-dir")
        .arg(fuzz_cache().join("target"))
        .current_dir(&root)
        .env("PATH", path)
        .env("AYA_BUILD_SKIP", "1");
    c
}

/// Checks target names; every target when none is given.
pub fn targets(asked: &[String]) -> Result<Vec<&'static str>> {
    if asked.is_empty() {
        return Ok(TARGETS.to_vec());
    }
    asked
        .iter()
        .map(|a| match TARGETS.iter().find(|t| *t == a) {
            Some(t) => Ok(*t),
            None => bail!("unknown fuzz target `{a}` (known: {})", TARGETS.join(", ")),
        })
        .collect()
}

/// The files seeding `target`: kept seeds and the inputs of past crashes
/// (kept as regression tests in `refwatch/tests/data/fuzz/<target>`).
fn seed_sources(target: &str) -> Result<Vec<PathBuf>> {
    let root = workspace_root();
    let mut dirs = vec![root.join("refwatch/tests/data/fuzz").join(target)];
    dirs.push(match target {
        "recording" => root.join("refwatch/tests/data"),
        _ => root.join("fuzz/seeds").join(target),
    });
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.with_context(|| format!("read {}", dir.display()))?.path();
            let wanted = match target {
                "recording" if dir.ends_with("tests/data") => {
                    p.extension().is_some_and(|x| x == "rec")
                }
                _ => true,
            };
            if wanted && p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no seeds for fuzz target {target}");
    }
    Ok(files)
}

/// A folder holding exactly `target`'s seeds now.
fn seeds_dir(target: &str) -> Result<PathBuf> {
    let dir = fuzz_cache().join("seeds").join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    for f in seed_sources(target)? {
        let name = f.file_name().context("seed without a name")?;
        fs::copy(&f, dir.join(name)).with_context(|| format!("copy {}", f.display()))?;
    }
    Ok(dir)
}

/// Crash, out-of-memory, timeout and leak inputs libFuzzer left in `dir`.
fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                ["crash-", "oom-", "timeout-", "leak-"]
                    .iter()
                    .any(|k| n.starts_with(k))
            })
        })
        .collect();
    v.sort();
    v
}

/// Builds the targets, then runs each for `secs` seconds. Returns the
/// problems: a failed build, and for each target that crashed, the input
/// that did it and how to run it again.
pub fn run(targets: &[&str], secs: u64) -> Result<Vec<String>> {
    let path = setup::ensure_cargo_fuzz()?;
    let started = Instant::now();
    let mut build = cargo_fuzz(&path, "build");
    println!("fuzz: build: {}", cmd::describe(&build));
    cmd::streamed(&mut build)?;
    println!(
        "fuzz: built in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        fuzz_cache().join("target").display()
    );
    let mut problems = Vec::new();
    for target in targets {
        problems.extend(run_target(&path, target, secs)?);
    }
    Ok(problems)
}

/// Runs one target for `secs` seconds.
fn run_target(path: &std::ffi::OsStr, target: &str, secs: u64) -> Result<Vec<String>> {
    let cache = fuzz_cache();
    let corpus = cache.join("corpus").join(target);
    let found = cache.join("artifacts").join(target);
    let logs = cache.join("logs");
    for d in [&corpus, &found, &logs] {
        fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let seeds = seeds_dir(target)?;
    let before = artifacts(&found);
    let log_path = logs.join(format!("{target}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let mut c = cargo_fuzz(path, "run");
    c.arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={TIMEOUT_SECS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-artifact_prefix={}/", found.display()))
        .arg("-print_final_stats=1");
    let dict = workspace_root().join("fuzz").join(format!("{target}.dict"));
    if dict.is_file() {
        c.arg(format!("-dict={}", dict.display()));
    }
    c.stdin(Stdio::null())
        .stdout(log.try_clone().context("log file")?)
        .stderr(log);
    println!("fuzz {target}: {secs} s, log {}", log_path.display());
    let started = Instant::now();
    let status = c
        .status()
        .with_context(|| format!("cannot start `{}`", cmd::describe(&c)))?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let new: Vec<PathBuf> = artifacts(&found)
        .into_iter()
        .filter(|a| !before.contains(a))
        .collect();
    let runs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map_or("?".to_string(), |n| n.trim().to_string());
    let inputs = fs::read_dir(&corpus).map_or(0, |d| d.count());
    if status.success() && new.is_empty() {
        println!(
            "fuzz {target}: {runs} runs in {:.0} s, corpus {inputs} inputs, no crash",
            started.elapsed().as_secs_f64()
        );
        return Ok(Vec::new());
    }
    let why = cause(&text);
    if new.is_empty() {
        return Ok(vec![format!(
            "fuzz {target}: {status} without an artifact {why} (log {})",
            log_path.display()
        )]);
    }
    Ok(new
        .iter()
        .map(|a| {
            format!(
                "fuzz {target}: {} {why}; again: cargo xtask fuzz --target {target} --input {} (log {})",
                a.display(),
                a.display(),
                log_path.display()
            )
        })
        .collect())
}

/// What the log says went wrong: a panic's place and message, else
/// libFuzzer's or the sanitizer's error line.
fn cause(log: &str) -> String {
    let lines: Vec<&str> = log.lines().map(str::trim).collect();
    if let Some(i) = lines.iter().position(|l| l.contains("panicked at")) {
        let msg = lines.get(i + 1).copied().unwrap_or_default();
        return format!("({} {msg})", lines[i]);
    }
    lines
        .iter()
        .find(|l| l.starts_with("==") && l.contains("ERROR:"))
        .map_or(String::new(), |l| format!("({l})"))
}

/// Runs `target` on one input, output to the terminal: whether it passed.
pub fn run_input(target: &str, input: &Path) -> Result<bool> {
    if !input.is_file() {
        bail!("fuzz input {} is not a file", input.display());
    }
    let path = setup::ensure_cargo_fuzz()?;
    let input = fs::canonicalize(input).with_context(|| format!("resolve {}", input.display()))?;
    let mut c = cargo_fuzz(&path, "run");
    c.arg(target).arg(&input);
    println!("fuzz {target}: {}", cmd::describe(&c));
    let status = c
        .status()
        .with_context(|| format!("cannot start `{}`", cmd::describe(&c)))?;
    Ok(status.success())
}
