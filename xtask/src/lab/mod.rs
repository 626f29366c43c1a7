//! The lab: boots a kernel in qemu with an fs-dax ext4 on an emulated pmem
//! region, runs workload scenarios under refwatch, and brings the results
//! back through a raw "out" disk holding a tar archive.
//!
//! Guest layout: `/dev/vda` is the out disk (256 MiB; 1 GiB for runs with
//! `hmm-selftests`), `/dev/vdb` a scratch non-DAX disk (64 MiB) for the
//! direct-I/O scenario, `/dev/vdc` the slow disk (32 MiB, writes throttled,
//! see [`qemu::slow_disk_bps`]) for `dax-pin-long`, `/dev/pmem0` the
//! `memmap=512M!1G` region with ext4 mounted `-o dax` on `/mnt/dax` (XFS for
//! the `+xfs` runs: mkfs.xfs wants at least 300 MB).
//!
//! This module builds the guest binaries and the initramfs and runs a boot
//! end to end; [`scenarios`] names the scenarios and their variants,
//! [`guest`] fills the guest's `/init` (`xtask/guest/init.sh`, through
//! [`template`]), [`qemu`] runs the emulator and reads its console, and
//! [`outcome`] reads back what the guest left.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::initramfs;
use crate::kernels::{self, KernelId, ModuleWant};
use crate::setup;
use qemu::{Disks, boot, console_tail, oops_report, out_disk_bytes};

pub mod guest;
pub mod live;
pub mod outcome;
pub mod qemu;
pub mod scenarios;
pub mod template;

pub use outcome::{LabResult, ScenarioOutcome, recorded_mode};
pub use qemu::Accel;
pub use scenarios::*;

pub const DEFAULT_PAGES: u32 = 16;
pub const DEFAULT_HOLD_SECS: u32 = 3;
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
pub const DEFAULT_READY_SECS: u32 = 60;

/// Modules the guest needs, in load order; each comes with its own
/// dependencies from modules.dep, and built-in ones are skipped.
const MODULES: &[ModuleWant] = &[
    ModuleWant {
        name: "virtio_pci",
        required: true,
    },
    ModuleWant {
        name: "virtio_blk",
        required: true,
    },
    // ext4 asks the crypto API for crc32c on 6.1 and 6.12 (no symbol dependency).
    ModuleWant {
        name: "crc32c_generic",
        required: false,
    },
    ModuleWant {
        name: "ext4",
        required: true,
    },
    // For the `+xfs` runs; the HMM test kernel has no XFS.
    ModuleWant {
        name: "xfs",
        required: false,
    },
    ModuleWant {
        name: "libnvdimm",
        required: true,
    },
    ModuleWant {
        name: "nd_btt",
        required: false,
    },
    ModuleWant {
        name: "nd_pmem",
        required: true,
    },
    ModuleWant {
        name: "nd_e820",
        required: true,
    },
];

/// One lab run: a kernel and the scenarios to run in one boot.
#[derive(Clone, Debug)]
pub struct LabRun {
    pub kernel: KernelId,
    pub scenarios: Vec<String>,
    pub pages: u32,
    pub hold_secs: u32,
    pub accel: Accel,
    pub timeout_secs: u64,
    /// Seconds the guest waits for refwatch's ready file.
    pub ready_secs: u32,
    /// Prebuilt static refwatch; built from the workspace when `None`.
    pub refwatch_bin: Option<PathBuf>,
    /// Prebuilt static workload; built from the workspace when `None`.
    pub workload_bin: Option<PathBuf>,
    /// Stream the whole guest console to the terminal (else only `LAB:` lines).
    pub verbose: bool,
    /// Extra arguments for refwatch in every scenario (`--refwatch-arg`).
    pub refwatch_args: Vec<String>,
    /// A guest shell script run instead of the scenarios (after the fs-dax
    /// mount and `refwatch probes`, before the results are written); what it
    /// writes under `/out` comes back to the host. For `cargo xtask bench`.
    pub script: Option<String>,
    /// The terminal of the `+tui` scenarios.
    pub tui: TuiConsole,
    /// Guest CPUs.
    pub cpus: u32,
}

/// Guest CPUs of a lab boot: the workload on one and refwatch's reader on
/// the other, as on any multi-core machine.
pub const DEFAULT_CPUS: u32 = 2;

impl LabRun {
    /// A run with default settings.
    #[allow(dead_code, reason = "API for the test, demo and bench commands")]
    pub fn new(kernel: KernelId, scenarios: &[&str]) -> LabRun {
        LabRun {
            kernel,
            scenarios: scenarios.iter().map(|s| (*s).to_owned()).collect(),
            pages: DEFAULT_PAGES,
            hold_secs: DEFAULT_HOLD_SECS,
            accel: Accel::Tcg,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            ready_secs: DEFAULT_READY_SECS,
            refwatch_bin: None,
            workload_bin: None,
            verbose: false,
            refwatch_args: Vec::new(),
            script: None,
            tui: TuiConsole::default(),
            cpus: DEFAULT_CPUS,
        }
    }
}

/// Static guest binaries.
pub struct GuestBinaries {
    pub refwatch: PathBuf,
    pub workload: PathBuf,
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

pub(crate) fn target_dir() -> Result<PathBuf> {
    let text = cmd::stdout(
        Command::new("cargo")
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(workspace_root()),
    )?;
    let meta: serde_json::Value = serde_json::from_str(&text).context("parse cargo metadata")?;
    meta.get("target_directory")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// The workload's target (linked statically): glibc's, as the workload
/// is the lab's own tool. refwatch is the static musl build users install
/// (`crate::dist::build_static`): what the lab checks and the benchmarks
/// time is the binary of the package.
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the static guest binaries (only those not given).
pub fn build_guest_binaries(
    refwatch: Option<&Path>,
    workload: Option<&Path>,
) -> Result<GuestBinaries> {
    let release_dir =
        || -> Result<PathBuf> { Ok(target_dir()?.join(GUEST_TARGET).join("release")) };
    let build = |args: &[&str]| -> Result<()> {
        cmd::streamed(
            Command::new("cargo")
                .args(["build", "--release", "--target", GUEST_TARGET])
                .args(args)
                .current_dir(workspace_root())
                .env("PATH", setup::env_path())
                .env(
                    "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                    "-C target-feature=+crt-static",
                ),
        )
    };
    let refwatch = match refwatch {
        Some(path) => path.to_path_buf(),
        None => crate::dist::build_static()?,
    };
    let workload = match workload {
        Some(path) => path.to_path_buf(),
        None => {
            build(&["-p", "xtask", "--bin", "workload"])?;
            release_dir()?.join("workload")
        }
    };
    for bin in [&refwatch, &workload] {
        if !bin.is_file() {
            bail!("guest binary {} does not exist", bin.display());
        }
        if initramfs::has_interpreter(bin)? {
            bail!(
                "{} is dynamically linked; the guest needs a static binary (-C target-feature=+crt-static)",
                bin.display()
            );
        }
    }
    Ok(GuestBinaries { refwatch, workload })
}

/// Boots `run.kernel`, runs the scenarios, and leaves the results in `out`.
pub fn run(run: &LabRun, out: &Path) -> Result<LabResult> {
    let started = Instant::now();
    if run.scenarios.is_empty() && run.script.is_none() {
        bail!("lab: no scenario given (known: {})", SCENARIOS.join(", "));
    }
    for s in &run.scenarios {
        parse_scenario(s).map_err(|e| anyhow::anyhow!("scenario `{s}`: {e}"))?;
        if !scenarios_for(run.kernel).contains(&s.as_str()) {
            bail!(
                "scenario `{s}` needs the HMM test driver, which kernel {} lacks (it runs: {})",
                run.kernel,
                scenarios_for(run.kernel).join(", ")
            );
        }
    }
    prepare_out_dir(out)?;
    let kernel = kernels::ensure(run.kernel)?;
    let bins = build_guest_binaries(run.refwatch_bin.as_deref(), run.workload_bin.as_deref())?;
    let hmm_tests = if run.scenarios.iter().any(|s| s == SELFTESTS) {
        Some(crate::selftests::hmm_tests(&kernel)?)
    } else {
        None
    };

    let work = out.join(".lab");
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;

    let plan = kernel.resolve_modules(MODULES)?;
    let module_paths: Vec<String> = plan.load.iter().map(initramfs::module_path).collect();
    let init = guest::init_script(run, &module_paths)?;
    let bpftool = if run
        .scenarios
        .iter()
        .any(|s| split_variant(s).1 == Variant::Signal(Signal::Kill))
    {
        Some(crate::bpftool::ensure()?)
    } else {
        None
    };
    let initrd = work.join("initramfs.cpio");
    let size = initramfs::build(
        &initramfs::Contents {
            init: &init,
            refwatch: &bins.refwatch,
            workload: &bins.workload,
            hmm_tests: hmm_tests.as_deref(),
            bpftool: bpftool.as_deref(),
            modules: &plan.load,
        },
        &initrd,
    )?;
    let names: Vec<&str> = plan.load.iter().map(|m| m.name.as_str()).collect();
    println!(
        "lab {}: initramfs {:.1} MiB, modules: {}{}",
        run.kernel,
        size as f64 / (1 << 20) as f64,
        names.join(" "),
        if plan.builtin.is_empty() {
            String::new()
        } else {
            format!("; built in: {}", plan.builtin.join(" "))
        }
    );

    let out_img = work.join("out.img");
    let scratch_img = work.join("scratch.img");
    let slow_img = work.join("slow.img");
    let disks = Disks {
        out: &out_img,
        scratch: &scratch_img,
        slow: &slow_img,
        out_bytes: out_disk_bytes(run),
    };
    disks.create()?;

    let console = out.join("console.log");
    let read_console = || {
        fs::read(&console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let mut guest_started = Instant::now();
    boot(run, &kernel, &initrd, &disks, &console)?;
    let mut console_text = read_console();
    // A panic before /init ran is the emulator's, not the lab's (seen once
    // under TCG: an int3 left by boot-time code patching hit on another
    // vCPU): boot once more, keeping the first console.
    if console_text.contains("Kernel panic") && !console_text.contains("LAB: init started") {
        let first = out.join("console.early-panic.log");
        fs::rename(&console, &first)
            .with_context(|| format!("keep {} as {}", console.display(), first.display()))?;
        println!(
            "lab {}: the guest kernel panicked before /init ran (console: {}); booting once more",
            run.kernel,
            first.display()
        );
        disks.create()?;
        guest_started = Instant::now();
        boot(run, &kernel, &initrd, &disks, &console)?;
        console_text = read_console();
    }
    let guest_elapsed = guest_started.elapsed();
    let extracted = cmd::output(
        Command::new("tar")
            .arg("-xf")
            .arg(&out_img)
            .arg("-C")
            .arg(out),
    );
    if let Some(line) = console_text.lines().find(|l| l.contains("LAB: FAIL:")) {
        bail!(
            "lab {}: the guest failed: {} (console: {})",
            run.kernel,
            line.trim().trim_start_matches("LAB: FAIL:").trim(),
            console.display()
        );
    }
    if let Some(line) = console_text.lines().find(|l| l.contains("Kernel panic")) {
        bail!(
            "lab {}: guest kernel panicked: {} (console: {})\n{}",
            run.kernel,
            line.trim(),
            console.display(),
            oops_report(&console_text)
        );
    }
    if let Err(err) = extracted {
        bail!(
            "lab {}: no results on the out disk ({err}); console tail: {}",
            run.kernel,
            console_tail(&console_text)
        );
    }
    if !console_text.contains("LAB: done") {
        bail!(
            "lab {}: the guest did not finish; console tail: {}",
            run.kernel,
            console_tail(&console_text)
        );
    }

    let release = fs::read_to_string(out.join("uname.txt"))
        .ok()
        .and_then(|u| u.split_whitespace().nth(2).map(str::to_owned))
        .unwrap_or_else(|| kernel.release.clone());
    let scenarios = run
        .scenarios
        .iter()
        .map(|name| {
            let dir = out.join(name);
            let mut outcome = outcome::read_outcome(&dir, name);
            // `+tui` runs `refwatch attach`: events.jsonl, no recording.
            if split_variant(name).1.records() {
                outcome.report_error = outcome::write_report(&bins.refwatch, &dir)
                    .err()
                    .map(|e| format!("{e:#}"));
            }
            outcome
        })
        .collect();
    for name in &run.scenarios {
        let dir = out.join(name);
        if dir.join("page_ref.trace").is_file() {
            let mode = recorded_mode(&dir);
            match crate::groundtruth::write_for_dir(&dir, mode) {
                Ok(g) => println!(
                    "lab {}: {name}: ground truth ({mode}): {} of {} refcount observations match, gets {}/{} puts {}/{} seen",
                    run.kernel,
                    g.matched,
                    g.observations - g.before_truth,
                    g.seen_gets,
                    g.truth_gets,
                    g.seen_puts,
                    g.truth_puts
                ),
                Err(e) => println!("lab {}: {name}: no ground truth: {e:#}", run.kernel),
            }
        }
    }
    let image = kernel.packages.first();
    let result = LabResult {
        kernel: run.kernel,
        release,
        package: image.map(|p| p.name.clone()).unwrap_or_default(),
        package_version: image.map(|p| p.version.clone()).unwrap_or_default(),
        meta_version: kernel.version.clone(),
        scenarios,
        elapsed: started.elapsed(),
        guest_elapsed,
        out_dir: out.to_path_buf(),
    };
    fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    let json = serde_json::to_string_pretty(&result).context("encode lab.json")?;
    fs::write(out.join("lab.json"), json + "\n")
        .with_context(|| format!("write {}/lab.json", out.display()))?;
    Ok(result)
}

/// Makes `out` an empty folder. A folder that holds anything but an earlier
/// lab run (recognised by `lab.json` or `.lab`) is refused.
fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists() {
        let mut entries = fs::read_dir(out)
            .with_context(|| format!("read {}", out.display()))?
            .filter_map(|e| e.ok())
            .peekable();
        if entries.peek().is_some() {
            if !out.join("lab.json").is_file() && !out.join(".lab").is_dir() {
                bail!(
                    "{} is not empty and holds no earlier lab run; give an empty or new folder",
                    out.display()
                );
            }
            for entry in entries {
                let path = entry.path();
                let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                removed.with_context(|| format!("remove {}", path.display()))?;
            }
        }
    }
    fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))
}
