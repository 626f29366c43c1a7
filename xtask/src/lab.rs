//! The lab: boots a kernel in qemu with an fs-dax ext4 on an emulated pmem
//! region, runs workload scenarios under refwatch, and brings the results
//! back through a raw "out" disk holding a tar archive.
//!
//! Guest layout: `/dev/vda` is the out disk (256 MiB; 1 GiB for runs with
//! `hmm-selftests`), `/dev/vdb` a scratch non-DAX disk (64 MiB) for the
//! direct-I/O scenario, `/dev/vdc` the slow disk (32 MiB, writes throttled,
//! see [`slow_disk_bps`]) for `dax-pin-long`, `/dev/pmem0` the
//! `memmap=512M!1G` region with ext4 mounted `-o dax` on `/mnt/dax` (XFS for
//! the `+xfs` runs: mkfs.xfs wants at least 300 MB).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cmd;
use crate::initramfs;
use crate::kernels::{self, KernelId, KernelInfo, ModuleWant};
use crate::setup;

/// The fs-dax scenarios, which every lab kernel runs, in a sensible order.
pub const SCENARIOS: &[&str] = &[
    "dax-splice",
    "dax-hold",
    "dax-direct-io",
    "dax-truncate-pinned",
    "dax-pin-long",
];

/// The device-private scenarios: only for kernels with the HMM test driver
/// (`/dev/hmm_dmirror0`), see [`scenarios_for`].
pub const HMM_SCENARIOS: &[&str] = &[
    "hmm-migrate",
    "hmm-release",
    "hmm-resident",
    "hmm-blocked",
    "hmm-leak",
];

/// The kernel's own HMM selftests (`tools/testing/selftests/mm/hmm-tests`,
/// built from the kernel's source by [`crate::selftests`]) under refwatch
/// with its defaults, instead of a workload: only for kernels with the HMM
/// test driver built from source, see [`scenarios_for`]. No variants.
pub const SELFTESTS: &str = "hmm-selftests";

/// Tests of the HMM selftests the lab leaves out (the harness's `-T`).
/// `benchmark_thp_migration` is a benchmark, not a check: it migrates
/// buffers of up to 256 MiB five times each way, with and without THP, under
/// the harness's limit of 120 s. Under TCG it took 28 s without refwatch;
/// with refwatch recording (every page_ref event of every page goes through
/// its programs: about 14 million in that test, against 1.7 million in all
/// the others) the harness killed it at 120 s, in the 256 MiB step, on a
/// busy host (and the OOM killer did, once, in the 2 GiB guest). The other
/// tests migrate the same way at smaller sizes.
pub const SELFTEST_EXCLUDED: &[&str] = &["benchmark_thp_migration"];

/// Seconds the guest gives the HMM selftests before killing them. Without
/// [`SELFTEST_EXCLUDED`] the suite took 25 s under refwatch on a quiet host
/// (TCG); a loaded host slows it several times. The harness itself ends a
/// test after 30 s.
pub const SELFTEST_SECS: u32 = 300;

/// Suffix of a scenario run with refwatch in function mode (`--no-precise`),
/// e.g. `hmm-migrate+functions`: the same workload, compared against the
/// same ground truth, so both modes are measured.
pub const FUNCTIONS: &str = "+functions";

/// The device-private scenarios again, in function mode.
pub const HMM_FUNCTIONS: &[&str] = &[
    "hmm-migrate+functions",
    "hmm-release+functions",
    "hmm-resident+functions",
    "hmm-blocked+functions",
    "hmm-leak+functions",
];

/// Suffix of a scenario run with refwatch forced onto kprobes
/// (`--mode kprobe`), e.g. `dax-hold+kprobe`: the fallback for kernels whose
/// BPF trampolines do not work, exercised end to end.
pub const KPROBE: &str = "+kprobe";

/// The fs-dax scenarios again through kprobes (kernels without precise mode).
pub const DAX_KPROBE: &[&str] = &["dax-hold+kprobe", "dax-direct-io+kprobe"];

/// Suffix of a scenario run on XFS (`-o dax=always`) instead of ext4, e.g.
/// `dax-truncate-pinned+xfs`: XFS breaks layouts through its own paths
/// (`xfs_break_dax_layouts`, `xfs_wait_dax_page`).
pub const XFS: &str = "+xfs";

/// The fs-dax scenarios again on XFS (the Debian kernels, where XFS is a
/// module; the HMM test kernel is built without it).
pub const DAX_XFS: &[&str] = &["dax-truncate-pinned+xfs"];

/// Suffix of a scenario run with the smallest ring buffer refwatch accepts
/// (`--ring-size 4096`: three events) on [`TINY_RING_PAGES`] pages, e.g.
/// `dax-splice+tiny-ring`: most events are lost, and the run shows that
/// loss is reported and gives no false verdict.
pub const TINY_RING: &str = "+tiny-ring";

/// Pages a `+tiny-ring` scenario works on.
pub const TINY_RING_PAGES: u32 = 1000;

/// Suffix of a scenario whose refwatch starts only once the workload holds
/// its references (after `hold_start`), e.g. `dax-hold+late`: refwatch's
/// snapshot at attach must find the held pages, as a user who attaches
/// after the hang expects.
pub const LATE: &str = "+late";

/// The hold of a `+late` scenario: long enough for refwatch to get ready
/// (7 to 20 s under TCG, more on a busy host), flag the pages and be copied during the hold.
pub const LATE_HOLD_SECS: u32 = 30;

/// How refwatch runs for a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Defaults: precise mode where the kernel has it, fentry where it works.
    Default,
    /// `--no-precise`.
    Functions,
    /// `--mode kprobe`.
    Kprobe,
    /// Defaults, with the workload's files on XFS.
    Xfs,
    /// `--ring-size 4096`, on [`TINY_RING_PAGES`] pages.
    TinyRing,
    /// Defaults, started once the workload holds ([`LATE`]).
    Late,
}

impl Variant {
    /// refwatch's extra flags.
    pub fn flags(self) -> &'static str {
        match self {
            Variant::Default | Variant::Xfs | Variant::Late => "",
            Variant::Functions => "--no-precise",
            Variant::Kprobe => "--mode kprobe",
            Variant::TinyRing => "--ring-size 4096",
        }
    }

    /// Pages the workload works on, when not the run's.
    pub fn pages(self) -> Option<u32> {
        (self == Variant::TinyRing).then_some(TINY_RING_PAGES)
    }
}

/// The workload scenario of a run name and how refwatch runs.
pub fn split_variant(run: &str) -> (&str, Variant) {
    if let Some(base) = run.strip_suffix(FUNCTIONS) {
        (base, Variant::Functions)
    } else if let Some(base) = run.strip_suffix(KPROBE) {
        (base, Variant::Kprobe)
    } else if let Some(base) = run.strip_suffix(XFS) {
        (base, Variant::Xfs)
    } else if let Some(base) = run.strip_suffix(TINY_RING) {
        (base, Variant::TinyRing)
    } else if let Some(base) = run.strip_suffix(LATE) {
        (base, Variant::Late)
    } else {
        (run, Variant::Default)
    }
}

/// The scenarios `kernel` runs, in run order: the fs-dax ones, then the
/// device-private ones (precise mode, then function mode) and the kernel's
/// HMM selftests where the kernel has the HMM test driver, else two fs-dax
/// ones again through kprobes.
pub fn scenarios_for(kernel: KernelId) -> Vec<&'static str> {
    let mut all = SCENARIOS.to_vec();
    all.push("dax-splice+tiny-ring");
    all.push("dax-hold+late");
    if kernel.has_test_hmm() {
        all.extend_from_slice(HMM_SCENARIOS);
        all.extend_from_slice(HMM_FUNCTIONS);
        all.push(SELFTESTS);
    } else {
        all.extend_from_slice(DAX_KPROBE);
        all.extend_from_slice(DAX_XFS);
    }
    all
}

pub const DEFAULT_PAGES: u32 = 16;
pub const DEFAULT_HOLD_SECS: u32 = 3;
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
pub const DEFAULT_READY_SECS: u32 = 60;

/// Seconds the guest waits for refwatch to exit after SIGINT before SIGKILL.
const STOP_SECS: u32 = 30;

const OUT_DISK_BYTES: u64 = 256 << 20;
/// The out disk of a run: 1 GiB for a run with the HMM selftests, whose
/// recording and JSON lines (about 100 MB each) alone nearly fill the
/// default 256 MiB. The disk image is sparse.
fn out_disk_bytes(run: &LabRun) -> u64 {
    if run.scenarios.iter().any(|s| s == SELFTESTS) {
        1 << 30
    } else {
        OUT_DISK_BYTES
    }
}

const SCRATCH_DISK_BYTES: u64 = 64 << 20;
const SLOW_DISK_BYTES: u64 = 32 << 20;

/// The scenarios that write to the slow disk (`/dev/vdc`) instead of the
/// scratch disk (`/dev/vdb`).
const SLOW_DISK_SCENARIOS: &[&str] = &["dax-pin-long"];

/// The largest request the guest sends the slow disk, in KiB
/// (`queue/max_sectors_kb`, whose least value is a page): a write of N
/// pages reaches qemu as N requests.
const SLOW_DISK_REQUEST_KB: u32 = 4;

/// The write rate qemu allows the slow disk (`throttling.bps-write`), in
/// bytes per second, for a run of `pages` pages and a hold of `hold_secs`.
///
/// qemu's throttle lets a request through while its bucket holds at most a
/// tenth of a second's bytes and holds the next ones until the bucket has
/// drained that far: the first 4 KiB request of a write goes at once, and
/// the last of N waits about (N - 1) × 4 KiB / rate − 0.1 s. The rate makes
/// that half a second longer than the hold, so that `dax-pin-long`'s single
/// O_DIRECT write of its pages (one bio, completed with its last request)
/// keeps the pages' references for at least `hold_secs`. Reads are not
/// throttled.
pub fn slow_disk_bps(pages: u32, hold_secs: u32) -> u64 {
    let bytes = u64::from(pages.max(2) - 1) * u64::from(SLOW_DISK_REQUEST_KB) * 1024;
    // bytes / (hold + 0.5 s), rounded up, at least 1.
    (bytes * 2).div_ceil(u64::from(hold_secs) * 2 + 1).max(1)
}

const KERNEL_CMDLINE: &str = "console=ttyS0 memmap=512M!1G panic=-1 oops=panic quiet";

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

/// The command line that starts refwatch in the guest for one scenario,
/// `scenario_dir` being that scenario's result folder.
pub fn refwatch_cmd(scenario_dir: &str, extra_flags: &str) -> String {
    let d = scenario_dir;
    format!(
        "refwatch record -o {d}/recording --jsonl {d}/events.jsonl --ready-file {d}/ready \
         --log-file {d}/refwatch.log --held-secs {t} --pinned-secs {t} --unmapped-secs {t} \
         --summary-secs 0 {extra_flags} > {d}/refwatch.out 2>&1",
        t = DETECTOR_SECS
    )
}

/// refwatch's flags a workload needs beyond the defaults, whatever the
/// variant. The lab runs refwatch with its defaults wherever it can, so that
/// the default paths are the ones checked: `--ram-holders` switches off the
/// in-kernel ZONE_DEVICE filter of the GUP grabs (every page's grab is then
/// looked at and remembered) and, in precise mode, keeps the grab hooks
/// attached beside the page_ref tracepoints. Only `hmm-blocked` needs it: it
/// asserts that refwatch names the vmsplice holder of the system-RAM page
/// the migration to the device left behind (a `late` get, and the holder of
/// the `migration-blocked` episode).
pub fn extra_flags(workload: &str) -> &'static str {
    match workload {
        "hmm-blocked" => "--ram-holders",
        _ => "",
    }
}

/// All of refwatch's extra flags for a run name (`dax-hold+kprobe`, …): the
/// variant's, then the workload's.
pub fn run_flags(run: &str) -> String {
    let (workload, variant) = split_variant(run);
    [variant.flags(), extra_flags(workload)]
        .into_iter()
        .filter(|f| !f.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Detector threshold refwatch runs with in the lab: well under the hold.
pub const DETECTOR_SECS: u32 = 1;

/// clap value parser for scenario names.
pub fn parse_scenario(name: &str) -> Result<String, String> {
    let base = split_variant(name).0;
    if name == SELFTESTS || SCENARIOS.contains(&base) || HMM_SCENARIOS.contains(&base) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "unknown scenario (known: {}, {}, {SELFTESTS}; add {FUNCTIONS} to run refwatch without precise mode, {KPROBE} to force kprobes, {XFS} to run on XFS, {TINY_RING} for a 4096-byte ring on {TINY_RING_PAGES} pages, {LATE} to start refwatch during the hold)",
            SCENARIOS.join(", "),
            HMM_SCENARIOS.join(", ")
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// TCG, the vCPUs in turn on one host thread (`thread=single`). With a
    /// thread per vCPU, a guest died at boot of `Oops: int3` while the
    /// kernel patched its code (the int3 of `text_poke_bp` run on the other
    /// vCPU), and one died in an interrupt with refwatch attached, whose
    /// programs and the `page_ref` tracepoints' static keys patch code too
    /// (every inlined get/put of that kernel). One thread leaves no other
    /// vCPU running while code changes.
    Tcg,
    /// TCG with the guest clock counting instructions (`-icount shift=0`, one
    /// per nanosecond; idle time skipped): time measured in the guest no
    /// longer depends on the host's load, at the price of running the vCPUs
    /// in turn on one host thread.
    #[value(name = "tcg-icount")]
    #[serde(rename = "tcg-icount")]
    TcgIcount,
    Kvm,
}

impl Accel {
    fn qemu_name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg,thread=single",
            // `-icount` runs the vCPUs on one thread already.
            Accel::TcgIcount => "tcg",
            Accel::Kvm => "kvm",
        }
    }

    /// How reports name it.
    pub fn label(self) -> &'static str {
        match self {
            Accel::Tcg => "TCG",
            Accel::TcgIcount => "TCG, instruction-counting clock",
            Accel::Kvm => "KVM",
        }
    }
}

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
}

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
        }
    }
}

/// Exit codes the guest recorded for one scenario (`None`: file missing).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioOutcome {
    pub name: String,
    pub probes_rc: Option<i32>,
    pub refwatch_rc: Option<i32>,
    /// Why refwatch's run was not clean, e.g. "exited before ready",
    /// "not ready after 60 s", "SIGKILL after 30 s".
    pub refwatch_note: Option<String>,
    /// The workload's exit code (`hmm-selftests`: the selftest binary's).
    pub workload_rc: Option<i32>,
    /// Why `report.json` could not be written (`refwatch report --json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_error: Option<String>,
}

/// What a lab run produced; also written to `<out>/lab.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabResult {
    pub kernel: KernelId,
    /// `uname -r` in the guest.
    pub release: String,
    /// The kernel image package and its version.
    pub package: String,
    pub package_version: String,
    /// Version of the suite's `linux-image-amd64`.
    pub meta_version: String,
    pub scenarios: Vec<ScenarioOutcome>,
    /// Whole run: build, initramfs, boot, extraction.
    #[serde(with = "secs")]
    pub elapsed: Duration,
    /// qemu start to qemu exit.
    #[serde(with = "secs")]
    pub guest_elapsed: Duration,
    pub out_dir: PathBuf,
}

impl LabResult {
    pub fn summary(&self) -> String {
        let mut text = format!(
            "lab {} ({} {}, uname -r {}): guest {:.1} s, total {:.1} s, results in {}",
            self.kernel,
            self.package,
            self.package_version,
            self.release,
            self.guest_elapsed.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.out_dir.display()
        );
        let rc = |v: Option<i32>| v.map_or("-".to_owned(), |v| v.to_string());
        for s in &self.scenarios {
            text.push_str(&format!(
                "\n  {:<20} probes rc {:<3} refwatch rc {:<3} workload rc {}{}",
                s.name,
                rc(s.probes_rc),
                rc(s.refwatch_rc),
                rc(s.workload_rc),
                s.refwatch_note
                    .as_ref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default()
            ));
            if let Some(e) = &s.report_error {
                text.push_str(&format!("\n  {:<20} no report.json: {e}", ""));
            }
        }
        text
    }
}

/// Durations as fractional seconds in JSON.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
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

fn target_dir() -> Result<PathBuf> {
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
        None => {
            build(&["-p", "refwatch"])?;
            release_dir()?.join("refwatch")
        }
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
    let init = init_script(run, &module_paths);
    let initrd = work.join("initramfs.cpio");
    let size = initramfs::build(
        &initramfs::Contents {
            init: &init,
            refwatch: &bins.refwatch,
            workload: &bins.workload,
            hmm_tests: hmm_tests.as_deref(),
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
            let mut outcome = read_outcome(&dir, name);
            outcome.report_error = write_report(&bins.refwatch, &dir)
                .err()
                .map(|e| format!("{e:#}"));
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

/// Leaves `report.json` beside a scenario's recording: the output of
/// `refwatch report --json` (the guest's static refwatch runs on the host).
fn write_report(refwatch: &Path, dir: &Path) -> Result<()> {
    let text = cmd::stdout(
        Command::new(refwatch)
            .arg("report")
            .arg("--json")
            .arg(dir.join("recording")),
    )?;
    let path = dir.join("report.json");
    fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

/// How refwatch observed references in a scenario, from its recording's
/// header: "precise" (page_ref tracepoints) or "functions".
pub fn recorded_mode(dir: &Path) -> &'static str {
    let header = fs::read_to_string(dir.join("recording"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok());
    match header.and_then(|h| h.get("precise").and_then(|p| p.as_bool())) {
        Some(true) => "precise",
        _ => "functions",
    }
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

/// The guest's disk images, in the order the guest sees them (`vda`, …).
struct Disks<'a> {
    out: &'a Path,
    scratch: &'a Path,
    slow: &'a Path,
    /// Size of the out disk ([`out_disk_bytes`]).
    out_bytes: u64,
}

impl Disks<'_> {
    /// Empty (sparse) images of the sizes the guest checks.
    fn create(&self) -> Result<()> {
        sparse_file(self.out, self.out_bytes)?;
        sparse_file(self.scratch, SCRATCH_DISK_BYTES)?;
        sparse_file(self.slow, SLOW_DISK_BYTES)
    }
}

fn sparse_file(path: &Path, size: u64) -> Result<()> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    file.set_len(size)
        .with_context(|| format!("size {} to {size} bytes", path.display()))
}

/// The kernel's report that led to a panic: from the first `BUG:`, `Oops`,
/// `general protection fault` or `WARNING:` line to the panic line, at most
/// [`OOPS_LINES`] lines, so a run whose console is gone (a CI clone) still
/// shows where the guest died.
fn oops_report(text: &str) -> String {
    let text = strip_escapes(text);
    let lines: Vec<&str> = text.lines().collect();
    let Some(end) = lines.iter().position(|l| l.contains("Kernel panic")) else {
        return String::new();
    };
    let start = lines[..end]
        .iter()
        .position(|l| {
            ["BUG:", "Oops", "general protection fault", "WARNING:"]
                .iter()
                .any(|m| l.contains(m))
        })
        .unwrap_or(end);
    let start = start.max(end.saturating_sub(OOPS_LINES - 1));
    lines[start..=end]
        .iter()
        .map(|l| format!("    | {}", l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

const OOPS_LINES: usize = 80;

/// The last console lines, without terminal escape sequences.
fn console_tail(text: &str) -> String {
    cmd::tail(strip_escapes(text).as_bytes(), 8)
}

/// `text` without ANSI/VT escape sequences (SeaBIOS clears the screen).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// qemu's arguments for the guest's disks, in the order the guest names
/// them (`vda`, `vdb`, `vdc`: the devices' PCI slots follow the order of
/// the `-device` arguments). The slow disk is write-throttled (see
/// [`slow_disk_bps`]), without virtio-blk's merging of adjacent requests,
/// which would hand the throttle one request for the whole write.
fn disk_args(disks: &Disks, pages: u32, hold_secs: u32) -> Vec<std::ffi::OsString> {
    let slow = format!(",throttling.bps-write={}", slow_disk_bps(pages, hold_secs));
    let mut args = Vec::new();
    for (id, img, drive_opts, device_opts) in [
        ("out", disks.out, "", ""),
        ("scratch", disks.scratch, "", ""),
        ("slow", disks.slow, slow.as_str(), ",request-merging=off"),
    ] {
        let mut drive = std::ffi::OsString::from("file=");
        drive.push(img.as_os_str());
        drive.push(format!(",if=none,id={id},format=raw{drive_opts}"));
        args.push("-drive".into());
        args.push(drive);
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive={id}{device_opts}").into());
    }
    args
}

/// Runs qemu until the guest powers off, writing its console to `console`.
fn boot(
    run: &LabRun,
    kernel: &KernelInfo,
    initrd: &Path,
    disks: &Disks,
    console: &Path,
) -> Result<()> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", run.accel.qemu_name()]);
    if run.accel == Accel::TcgIcount {
        qemu.args(["-icount", "shift=0,sleep=off"]);
    }
    qemu.args(["-m", "2048", "-smp", "2", "-cpu", "max"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(kernel.vmlinuz_path())
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", KERNEL_CMDLINE])
        .args(disk_args(disks, run.pages, run.hold_secs))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "lab {}: booting {} under qemu ({}), console in {}",
        run.kernel,
        kernel.release,
        run.accel.qemu_name(),
        console.display()
    );
    let described = cmd::describe(&qemu);
    let mut child = qemu
        .spawn()
        .with_context(|| format!("cannot start `{described}`"))?;

    let log = File::create(console).with_context(|| format!("create {}", console.display()))?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    let verbose = run.verbose;
    let label = run.kernel.name();
    let pump = thread::spawn(move || pump_console(stdout, log, verbose, label));
    let err_pump = thread::spawn(move || {
        let mut text = String::new();
        let mut stderr = stderr;
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = Instant::now() + Duration::from_secs(run.timeout_secs);
    let status = loop {
        if let Some(status) = child.try_wait().context("wait for qemu")? {
            break status;
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            let _ = pump.join();
            let text = fs::read(console)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            bail!(
                "lab {}: guest still running after {} s, killed qemu; console tail: {}",
                run.kernel,
                run.timeout_secs,
                console_tail(&text)
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let _ = pump.join();
    let qemu_stderr = err_pump.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "`qemu-system-x86_64` failed with {status}: {}",
            cmd::tail(qemu_stderr.as_bytes(), 4)
        );
    }
    Ok(())
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Copies the console to the log; echoes everything (verbose) or only the
/// `LAB:` marker lines.
fn pump_console(mut from: impl Read, mut log: File, verbose: bool, label: &str) {
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let _ = log.write_all(&buf[..n]);
        if verbose {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            continue;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                if let Some(pos) = text.find("LAB: ") {
                    println!("  [{label}] {}", &text[pos..]);
                }
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
    let _ = log.flush();
}

fn read_rc(path: &Path) -> (Option<i32>, Option<String>) {
    let Ok(text) = fs::read_to_string(path) else {
        return (None, None);
    };
    let mut lines = text.lines();
    let rc = lines.next().and_then(|l| l.trim().parse().ok());
    let note = lines
        .filter_map(|l| l.strip_prefix("note: "))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    (rc, (!note.is_empty()).then(|| note.join("; ")))
}

fn read_outcome(dir: &Path, name: &str) -> ScenarioOutcome {
    let (probes_rc, _) = read_rc(&dir.parent().unwrap_or(dir).join("probes.rc"));
    let (refwatch_rc, refwatch_note) = read_rc(&dir.join("refwatch.rc"));
    let (workload_rc, _) = match read_rc(&dir.join("workload.rc")) {
        (None, _) => read_rc(&dir.join("selftest.rc")),
        rc => rc,
    };
    ScenarioOutcome {
        name: name.to_owned(),
        probes_rc,
        refwatch_rc,
        refwatch_note,
        workload_rc,
        report_error: None,
    }
}

/// The guest's `/init`.
fn init_script(run: &LabRun, module_paths: &[String]) -> String {
    let mut s = String::new();
    s.push_str(
        r#"#!/bin/sh
# refwatch lab guest init (generated by cargo xtask lab)
export PATH=/bin:/sbin
say() { echo "LAB: $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
finish() {
    dmesg > /out/dmesg.txt 2>&1
    uname -a > /out/uname.txt 2>&1
    cat /proc/mounts > /out/mounts.txt 2>&1
    cat /proc/iomem > /out/iomem.txt 2>&1
    if [ -b /dev/vda ]; then
        tar -cf /dev/vda -C /out . || say "FAIL: tar to /dev/vda (exit $?)"
    else
        say "FAIL: no /dev/vda for the results"
    fi
    sync
    say "done"
    poweroff -f
    sleep 10
}
fail() {
    say "FAIL: $*"
    echo "$*" > /out/lab-error.txt
    finish
}
# wait_for TEST-ARGS... : up to 10 s for a condition
wait_for() {
    n=0
    while ! test "$@"; do
        n=$((n + 1))
        [ $n -gt 100 ] && return 1
        usleep 100000
    done
    return 0
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /out /tmp /mnt/dax
say "init started, uptime $(up) s, kernel $(uname -r)"
mount -t tracefs tracefs /sys/kernel/tracing || say "warning: cannot mount tracefs"
mount -t debugfs debugfs /sys/kernel/debug || say "warning: cannot mount debugfs"
mount -t bpf bpf /sys/fs/bpf || say "warning: cannot mount bpffs"

"#,
    );
    for path in module_paths {
        s.push_str(&format!(
            "insmod {path} || fail \"insmod {path} (exit $?)\"\n"
        ));
    }
    s.push_str(&format!(
        r#"say "modules loaded (uptime $(up) s)"

wait_for -b /dev/vda || fail "/dev/vda (out disk) did not appear"
wait_for -b /dev/vdb || fail "/dev/vdb (scratch disk) did not appear"
wait_for -b /dev/vdc || fail "/dev/vdc (slow disk) did not appear"
[ "$(cat /sys/block/vda/size)" = "{out_sectors}" ] || fail "/dev/vda is not the {out_mib} MiB out disk ($(cat /sys/block/vda/size) sectors)"
[ "$(cat /sys/block/vdb/size)" = "{scratch_sectors}" ] || fail "/dev/vdb is not the {scratch_mib} MiB scratch disk ($(cat /sys/block/vdb/size) sectors)"
[ "$(cat /sys/block/vdc/size)" = "{slow_sectors}" ] || fail "/dev/vdc is not the {slow_mib} MiB slow disk ($(cat /sys/block/vdc/size) sectors)"
# One request per page on the slow disk, so that its write throttle holds
# a multi-page write for seconds (see slow_disk_bps in xtask/src/lab.rs).
echo {slow_kb} > /sys/block/vdc/queue/max_sectors_kb || fail "cannot limit /dev/vdc to {slow_kb} KiB requests"
[ "$(cat /sys/block/vdc/queue/max_sectors_kb)" = "{slow_kb}" ] || fail "/dev/vdc takes requests of $(cat /sys/block/vdc/queue/max_sectors_kb) KiB, not {slow_kb}"
wait_for -b /dev/pmem0 || fail "/dev/pmem0 did not appear (memmap=512M!1G, nd_e820, nd_pmem)"
{mke2fs} -q -t ext4 -b 4096 -F /dev/pmem0 > /out/mke2fs.txt 2>&1 || fail "mke2fs /dev/pmem0 (exit $?): $(tail -n 2 /out/mke2fs.txt)"
mount -t ext4 -o dax /dev/pmem0 /mnt/dax || fail "mount -o dax /dev/pmem0 (exit $?): $(dmesg | tail -n 2)"
opts=$(awk '$2 == "/mnt/dax" {{ print $4 }}' /proc/mounts)
case ",$opts," in
    *,dax,*|*,dax=always,*) ;;
    *) fail "ext4 on /dev/pmem0 is mounted without DAX (options: $opts)" ;;
esac
if [ -e /sys/block/pmem0/queue/dax ] && [ "$(cat /sys/block/pmem0/queue/dax)" != 1 ]; then
    fail "/dev/pmem0 does not support DAX (queue/dax = $(cat /sys/block/pmem0/queue/dax))"
fi
say "fs-dax ready: /dev/pmem0 on /mnt/dax ($opts)"
# use_fs ext4|xfs: a new file system of that type on /dev/pmem0, mounted
# with DAX on /mnt/dax.
use_fs() {{
    umount /mnt/dax || fail "umount /mnt/dax (exit $?)"
    case $1 in
        ext4)
            {mke2fs} -q -t ext4 -b 4096 -F /dev/pmem0 > /out/mkfs-$1.txt 2>&1 || fail "mke2fs /dev/pmem0 (exit $?): $(tail -n 2 /out/mkfs-$1.txt)"
            mount -t ext4 -o dax /dev/pmem0 /mnt/dax || fail "mount ext4 -o dax (exit $?): $(dmesg | tail -n 2)" ;;
        xfs)
            {mkfs_xfs} -q -f -b size=4096 -m reflink=0 /dev/pmem0 > /out/mkfs-$1.txt 2>&1 || fail "mkfs.xfs /dev/pmem0 (exit $?): $(tail -n 2 /out/mkfs-$1.txt)"
            mount -t xfs -o dax=always /dev/pmem0 /mnt/dax || fail "mount xfs -o dax=always (exit $?): $(dmesg | tail -n 2)" ;;
    esac
    opts=$(awk '$2 == "/mnt/dax" {{ print $3 "," $4 }}' /proc/mounts)
    case ",$opts," in
        ,$1,*dax*) ;;
        *) fail "/mnt/dax is not $1 with DAX (mounted: $opts)" ;;
    esac
    say "fs-dax now: $1 on /mnt/dax ($opts)"
}}
{hmm_check}
# The page_ref tracepoints through tracefs, independent of refwatch: the
# ground truth for ZONE_DEVICE pages. Device-private PFNs lie above the last
# System RAM range; the fs-dax PFNs of the memmap=512M!1G region lie below
# it (RAM continues above 1.5 GiB), so its "Persistent Memory" ranges are
# added.
T=/sys/kernel/tracing
truth_start() {{
    [ -d $T/events/page_ref ] || return 0
    ramend=$(awk '$NF == "RAM" && $(NF-1) == "System" {{ split($1, a, "-"); e = a[2] }} END {{ print e }}' /proc/iomem)
    [ -n "$ramend" ] || {{ say "warning: no System RAM in /proc/iomem"; return 0; }}
    pfns="pfn >= $(( (0x$ramend + 1) >> 12 ))"
    for r in $(awk '/: Persistent Memory/ {{ print $1 }}' /proc/iomem); do
        pfns="$pfns || (pfn >= $(( 0x${{r%-*}} >> 12 )) && pfn <= $(( 0x${{r#*-}} >> 12 )))"
    done
    echo 0 > $T/tracing_on
    echo mono > $T/trace_clock
    echo 16384 > $T/buffer_size_kb
    for e in $T/events/page_ref/page_ref_*; do
        case $e in
            *_unless) echo "($pfns) && ret != 0" > $e/filter ;;
            *) echo "$pfns" > $e/filter ;;
        esac
    done
    echo "$pfns" > $D/page_ref.filter
    echo 1 > $T/events/page_ref/enable
    echo > $T/trace
    echo 1 > $T/tracing_on
    TRUTH=1
}}
truth_stop() {{
    [ -n "$TRUTH" ] || return 0
    echo 0 > $T/tracing_on
    cat $T/trace > $1/page_ref.trace
    echo 0 > $T/events/page_ref/enable
    TRUTH=""
}}

# refwatch_start S F: refwatch records scenario S with the extra flags F
# into D=/out/S and is waited for until ready. Leaves RW (its pid, empty
# when it already exited) and note (why it is not ready) for refwatch_stop.
refwatch_start() {{
    S=$1
    F=$2
    D=/out/$S
    mkdir -p $D
    say "scenario $S start (uptime $(up) s)"
    {refwatch} &
    RW=$!
    note=""
    n=0
    while [ ! -e $D/ready ]; do
        if ! kill -0 $RW 2>/dev/null; then
            note="exited before ready"
            break
        fi
        n=$((n + 1))
        if [ $n -gt {ready_ticks} ]; then
            note="not ready after {ready_secs} s"
            break
        fi
        usleep 100000
    done
    if [ -n "$note" ]; then
        say "scenario $S: refwatch $note (uptime $(up) s)"
    else
        say "scenario $S: refwatch ready (uptime $(up) s)"
    fi
    if [ "$note" = "exited before ready" ]; then
        wait $RW
        echo $? > $D/refwatch.rc
        echo "note: $note" >> $D/refwatch.rc
        RW=""
    fi
}}
# refwatch_stop: SIGINT to refwatch, SIGKILL after {stop_secs} s; its exit
# code (and any note) into $D/refwatch.rc.
refwatch_stop() {{
    [ -n "$RW" ] || return 0
    kill -INT $RW 2>/dev/null
    n=0
    while kill -0 $RW 2>/dev/null; do
        n=$((n + 1))
        if [ $n -gt {stop_ticks} ]; then
            kill -KILL $RW 2>/dev/null
            note="${{note:+$note; }}SIGKILL after {stop_secs} s"
            break
        fi
        usleep 100000
    done
    wait $RW
    echo $? > $D/refwatch.rc
    [ -n "$note" ] && echo "note: $note" >> $D/refwatch.rc
    RW=""
}}

# run_scenario S W F [PAGES [HOLD [late]]]: workload W under refwatch
# (flags F), with the page_ref ground truth; with "late", refwatch starts
# only once the workload holds its references, as a user attaches after
# the hang.
run_scenario() {{
    W=$2
    P=${{4:-{pages}}}
    H=${{5:-{hold}}}
    LATE=$6
    case $W in
        {slow_scenarios}) B=/dev/vdc ;;
        *) B=/dev/vdb ;;
    esac
    if [ -n "$LATE" ]; then
        mkdir -p /out/$1
        workload $W --dir /mnt/dax --pages $P --hold-secs $H --bdev $B --out /out/$1/workload.json > /out/$1/workload.out 2>&1 &
        WL=$!
        n=0
        until grep -q "^workload: hold_start " /out/$1/workload.out 2>/dev/null; do
            n=$((n + 1))
            [ $n -gt 600 ] && break
            usleep 50000
        done
        say "scenario $1: the workload holds, refwatch starts (uptime $(up) s)"
    fi
    refwatch_start $1 "$3"
    if [ -z "$LATE" ]; then
        truth_start
        workload $W --dir /mnt/dax --pages $P --hold-secs $H --bdev $B --out $D/workload.json > $D/workload.out 2>&1 &
        WL=$!
    fi
    # During a hold, keep a copy of the recording as it stands then (it is
    # flushed every second), for `refwatch report --fail-on-stuck`.
    n=0
    while kill -0 $WL 2>/dev/null; do
        if [ -e $D/recording ] && grep -q "^workload: hold_start " $D/workload.out; then
            sleep {snap}
            cp $D/recording $D/recording.during-hold
            say "scenario $S: recording copied during the hold (uptime $(up) s)"
            break
        fi
        n=$((n + 1))
        [ $n -gt 1200 ] && break
        usleep 50000
    done
    wait $WL
    wrc=$?
    echo $wrc > $D/workload.rc
    sleep 1
    truth_stop $D
    refwatch_stop
    say "scenario $S end: workload rc $wrc, refwatch rc $(head -n 1 $D/refwatch.rc) (uptime $(up) s)"
}}

# run_selftests S F: the kernel's HMM selftests (/bin/{hmm_tests}, the
# kselftest harness) under refwatch (flags F) instead of a workload, killed
# after {suite_secs} s. Each output line is kept with the uptime it was
# read at (the harness flushes every line) in $D/selftest.out, so the
# checks can tell which test ran when; the exit code goes to selftest.rc.
run_selftests() {{
    refwatch_start $1 "$2"
    {{ timeout {suite_secs} {hmm_tests}{excluded}; echo $? > $D/selftest.rc; }} 2>&1 |
        while IFS= read -r line; do
            read t rest < /proc/uptime
            echo "$t $line"
        done > $D/selftest.out
    src=$(cat $D/selftest.rc)
    sleep 1
    refwatch_stop
    say "scenario $S end: {hmm_tests} rc $src, $(grep -a '# Totals:' $D/selftest.out | cut -d' ' -f3-), refwatch rc $(head -n 1 $D/refwatch.rc) (uptime $(up) s)"
}}

"#,
        out_sectors = out_disk_bytes(run) / 512,
        out_mib = out_disk_bytes(run) >> 20,
        scratch_sectors = SCRATCH_DISK_BYTES / 512,
        scratch_mib = SCRATCH_DISK_BYTES >> 20,
        slow_sectors = SLOW_DISK_BYTES / 512,
        slow_mib = SLOW_DISK_BYTES >> 20,
        slow_kb = SLOW_DISK_REQUEST_KB,
        slow_scenarios = SLOW_DISK_SCENARIOS.join("|"),
        mke2fs = initramfs::MKE2FS,
        mkfs_xfs = initramfs::MKFS_XFS,
        refwatch = refwatch_cmd("$D", "$F"),
        ready_ticks = u64::from(run.ready_secs) * 10,
        ready_secs = run.ready_secs,
        pages = run.pages,
        hold = run.hold_secs,
        stop_ticks = u64::from(STOP_SECS) * 10,
        snap = DETECTOR_SECS + 1,
        stop_secs = STOP_SECS,
        hmm_tests = crate::selftests::HMM_TESTS,
        suite_secs = SELFTEST_SECS,
        excluded = SELFTEST_EXCLUDED
            .iter()
            .map(|t| format!(" -T {t}"))
            .collect::<String>(),
        hmm_check = if run
            .scenarios
            .iter()
            .any(|s| s == SELFTESTS || HMM_SCENARIOS.contains(&split_variant(s).0))
        {
            "wait_for -c /dev/hmm_dmirror0 || fail \"/dev/hmm_dmirror0 did not appear (CONFIG_TEST_HMM)\"\n\
             say \"HMM test driver ready: $(ls /dev | grep hmm_dmirror | tr '\\n' ' ')\"\n"
        } else {
            ""
        },
    ));
    s.push_str("refwatch probes > /out/probes.txt 2>&1\necho $? > /out/probes.rc\n");
    // The kprobe fallback, which fentry-capable kernels never use otherwise.
    s.push_str("refwatch probes --mode kprobe > /out/probes-kprobe.txt 2>&1\necho $? > /out/probes-kprobe.rc\nsay \"probes done (uptime $(up) s)\"\n");
    if let Some(script) = &run.script {
        s.push_str("# the run's own script (LabRun::script) instead of the scenarios\n");
        s.push_str(script);
        if !script.ends_with('\n') {
            s.push('\n');
        }
        s.push_str("say \"script finished\"\nfinish\n");
        return s;
    }
    let mut on_xfs = false;
    for scenario in &run.scenarios {
        let (workload, variant) = split_variant(scenario);
        if (variant == Variant::Xfs) != on_xfs {
            on_xfs = !on_xfs;
            s.push_str(if on_xfs {
                "use_fs xfs\n"
            } else {
                "use_fs ext4\n"
            });
        }
        let mut flags = run_flags(scenario);
        for a in &run.refwatch_args {
            flags.push(' ');
            flags.push_str(a);
        }
        if scenario == SELFTESTS {
            s.push_str(&format!("run_selftests {scenario} \"{}\"\n", flags.trim()));
            continue;
        }
        let late = variant == Variant::Late;
        let tail = if late {
            format!(" \"\" {LATE_HOLD_SECS} late")
        } else {
            variant.pages().map_or(String::new(), |p| format!(" {p}"))
        };
        s.push_str(&format!(
            "run_scenario {scenario} {workload} \"{}\"{tail}\n",
            flags.trim()
        ));
    }
    s.push_str("say \"all scenarios finished\"\nfinish\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oops_report_runs_from_the_first_report_line_to_the_panic() {
        let console = "LAB: scenario hmm-migrate start\n\
            [   41.7] BUG: kernel NULL pointer dereference, address: 0000000000000008\n\
            [   41.7] RIP: 0010:dmirror_devmem_free+0x12/0x40\n\
            [   41.7] Kernel panic - not syncing: Fatal exception in interrupt\n\
            [   41.8] ---[ end Kernel panic ]---\n";
        let report = oops_report(console);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), 3, "{report}");
        assert!(lines[0].contains("BUG: kernel NULL pointer"), "{report}");
        assert!(lines[1].contains("dmirror_devmem_free+0x12"), "{report}");
        assert!(
            lines[2].contains("Fatal exception in interrupt"),
            "{report}"
        );
        assert_eq!(oops_report("LAB: done\n"), "");
    }

    #[test]
    fn oops_report_is_bounded() {
        let mut console = String::from("Oops: 0000 [#1] SMP\n");
        for i in 0..500 {
            console.push_str(&format!("frame {i}\n"));
        }
        console.push_str("Kernel panic - not syncing: Fatal exception\n");
        let report = oops_report(&console);
        assert_eq!(report.lines().count(), OOPS_LINES);
        assert!(
            report
                .lines()
                .last()
                .is_some_and(|l| l.contains("Kernel panic"))
        );
        assert!(
            report
                .lines()
                .next()
                .is_some_and(|l| l.contains("frame 421")),
            "{report}"
        );
    }

    #[test]
    fn refwatch_records_into_the_scenario_folder() {
        let c = refwatch_cmd("/out/dax-hold", "");
        assert!(
            c.starts_with("refwatch record -o /out/dax-hold/recording "),
            "{c}"
        );
        for part in [
            "--jsonl /out/dax-hold/events.jsonl",
            "--ready-file /out/dax-hold/ready",
            "--held-secs 1",
            "> /out/dax-hold/refwatch.out 2>&1",
        ] {
            assert!(c.contains(part), "{part} missing from {c}");
        }
    }

    #[test]
    fn only_hmm_blocked_asks_for_ram_holders() {
        assert!(!refwatch_cmd("/out/x", "").contains("--ram-holders"));
        assert_eq!(run_flags("hmm-blocked"), "--ram-holders");
        assert_eq!(
            run_flags("hmm-blocked+functions"),
            "--no-precise --ram-holders"
        );
        assert_eq!(run_flags("hmm-leak+functions"), "--no-precise");
        assert_eq!(run_flags("dax-hold+kprobe"), "--mode kprobe");
        for s in SCENARIOS.iter().chain(HMM_SCENARIOS) {
            assert_eq!(
                run_flags(s).contains("--ram-holders"),
                *s == "hmm-blocked",
                "{s}"
            );
        }
        let run = LabRun::new(KernelId::Hmm7_2, &["hmm-migrate", "hmm-blocked"]);
        let init = init_script(&run, &[]);
        assert!(init.contains("\nrun_scenario hmm-migrate hmm-migrate \"\"\n"));
        assert!(init.contains("\nrun_scenario hmm-blocked hmm-blocked \"--ram-holders\"\n"));
    }

    #[test]
    fn init_runs_each_scenario_once() {
        let run = LabRun::new(KernelId::Debian6_1, &["dax-hold", "dax-splice"]);
        let init = init_script(&run, &["/lib/modules/ext4.ko".to_owned()]);
        assert!(init.starts_with("#!/bin/sh\n"));
        assert!(init.contains("insmod /lib/modules/ext4.ko ||"));
        assert_eq!(
            init.matches("\nrun_scenario dax-hold dax-hold \"\"\n")
                .count(),
            1
        );
        assert_eq!(
            init.matches("\nrun_scenario dax-splice dax-splice \"\"\n")
                .count(),
            1
        );
        assert!(init.contains("P=${4:-16}\n    H=${5:-3}\n"));
        assert!(init.contains("--pages $P --hold-secs $H"));
        assert_eq!(
            init.matches("refwatch probes >").count(),
            1,
            "probes once per boot"
        );
        assert_eq!(init.matches("recording.during-hold").count(), 1);
    }

    #[test]
    fn xfs_runs_switch_the_file_system_and_back() {
        let run = LabRun::new(
            KernelId::Debian7_2,
            &["dax-hold", "dax-truncate-pinned+xfs", "dax-splice"],
        );
        let init = init_script(&run, &[]);
        let pos = |p: &str| init.find(p).unwrap_or_else(|| panic!("{p} missing"));
        assert!(pos("\nrun_scenario dax-hold ") < pos("\nuse_fs xfs\n"));
        assert!(
            init.contains(
                "\nuse_fs xfs\nrun_scenario dax-truncate-pinned+xfs dax-truncate-pinned \"\"\n"
            ),
            "{init}"
        );
        assert!(init.contains("\nuse_fs ext4\nrun_scenario dax-splice dax-splice \"\"\n"));
        assert_eq!(init.matches("\nuse_fs ").count(), 2);
        assert_eq!(
            split_variant("dax-truncate-pinned+xfs"),
            ("dax-truncate-pinned", Variant::Xfs)
        );
        assert!(parse_scenario("dax-truncate-pinned+xfs").is_ok());
        assert!(scenarios_for(KernelId::Debian7_2).contains(&"dax-truncate-pinned+xfs"));
        assert!(!scenarios_for(KernelId::Hmm7_2).contains(&"dax-truncate-pinned+xfs"));
    }

    #[test]
    fn a_script_replaces_the_scenarios() {
        let mut run = LabRun::new(KernelId::Debian6_12, &["dax-hold"]);
        run.script = Some("echo bench > /out/bench.txt".to_owned());
        let init = init_script(&run, &[]);
        assert!(!init.contains("\nrun_scenario dax-hold"));
        let probes = init.find("refwatch probes >").expect("probes line");
        let mount = init.find("mount -t ext4 -o dax").expect("dax mount");
        let script = init
            .find("\necho bench > /out/bench.txt\n")
            .expect("the script");
        let end = init.rfind("\nfinish\n").expect("finish");
        assert!(mount < probes && probes < script && script < end);
        assert!(init.ends_with("say \"script finished\"\nfinish\n"));
    }

    #[test]
    fn hmm_scenarios_only_where_the_driver_is() {
        for kernel in KernelId::ALL {
            let all = scenarios_for(kernel);
            assert_eq!(&all[..SCENARIOS.len()], SCENARIOS, "{kernel}");
            let rest = [
                &["dax-splice+tiny-ring", "dax-hold+late"][..],
                DAX_KPROBE,
                DAX_XFS,
            ]
            .concat();
            assert_eq!(&all[SCENARIOS.len()..], rest, "{kernel}");
        }
        let hmm = scenarios_for(KernelId::Hmm7_2);
        assert!(SCENARIOS.iter().all(|s| hmm.contains(s)));
        assert!(HMM_SCENARIOS.iter().all(|s| hmm.contains(s)));
        assert!(parse_scenario("hmm-leak").is_ok());
        assert!(parse_scenario("hmm-leak+functions").is_ok());
        assert_eq!(
            split_variant("hmm-leak+functions"),
            ("hmm-leak", Variant::Functions)
        );
        assert_eq!(
            split_variant("dax-hold+kprobe"),
            ("dax-hold", Variant::Kprobe)
        );
        assert!(parse_scenario("dax-hold+kprobe").is_ok());
        assert_eq!(
            split_variant("dax-splice+tiny-ring"),
            ("dax-splice", Variant::TinyRing)
        );
        assert!(hmm.contains(&"dax-splice+tiny-ring"));
        assert_eq!(split_variant("dax-hold+late"), ("dax-hold", Variant::Late));
        let init = init_script(&LabRun::new(KernelId::Debian6_1, &["dax-hold+late"]), &[]);
        assert!(
            init.contains("\nrun_scenario dax-hold+late dax-hold \"\" \"\" 30 late\n"),
            "{init}"
        );
        let mut tiny = LabRun::new(KernelId::Debian6_12, &["dax-splice+tiny-ring", "dax-hold"]);
        tiny.refwatch_args = vec!["--summary-secs".into(), "1".into()];
        let init = init_script(&tiny, &[]);
        assert!(
            init.contains(
                "\nrun_scenario dax-splice+tiny-ring dax-splice \"--ring-size 4096 --summary-secs 1\" 1000\n"
            ),
            "{init}"
        );
        assert!(init.contains("\nrun_scenario dax-hold dax-hold \"--summary-secs 1\"\n"));
        let mut run = LabRun::new(KernelId::Hmm7_2, &["hmm-blocked+functions"]);
        run.pages = 4;
        let init = init_script(&run, &[]);
        assert!(init.contains(
            "\nrun_scenario hmm-blocked+functions hmm-blocked \"--no-precise --ram-holders\"\n"
        ));
        assert!(init.contains("/dev/hmm_dmirror0"));

        let run = LabRun::new(KernelId::Hmm7_2, &["hmm-migrate"]);
        let init = init_script(&run, &[]);
        assert!(init.contains("wait_for -c /dev/hmm_dmirror0 ||"));
        let run = LabRun::new(KernelId::Debian6_1, &["dax-hold"]);
        assert!(!init_script(&run, &[]).contains("hmm_dmirror"));
    }

    #[test]
    fn the_slow_disk_holds_a_write_for_the_hold() {
        assert_eq!(slow_disk_bps(16, 3), 17_555);
        for pages in 2..=256 {
            for hold in 1..=10 {
                let bps = slow_disk_bps(pages, hold) as f64;
                // The last of the write's 4 KiB requests waits this long.
                let last = f64::from(pages - 1) * 4096.0 / bps - 0.1;
                assert!(
                    last >= f64::from(hold) && last < f64::from(hold) + 0.5,
                    "{pages} pages, hold {hold}: {last} s"
                );
            }
        }
    }

    #[test]
    fn dax_pin_long_writes_to_the_slow_disk() {
        let run = LabRun::new(KernelId::Debian6_1, &["dax-direct-io", "dax-pin-long"]);
        let init = init_script(&run, &[]);
        assert!(init.contains("\n        dax-pin-long) B=/dev/vdc ;;\n        *) B=/dev/vdb ;;\n"));
        assert!(init.contains(" --bdev $B --out "));
        assert!(init.contains("wait_for -b /dev/vdc ||"));
        assert!(init.contains("[ \"$(cat /sys/block/vdc/size)\" = \"65536\" ]"));
        assert!(init.contains("echo 4 > /sys/block/vdc/queue/max_sectors_kb ||"));
        assert!(scenarios_for(KernelId::Debian6_1).contains(&"dax-pin-long"));
        assert!(scenarios_for(KernelId::Hmm7_2).contains(&"dax-pin-long"));

        let disks = Disks {
            out: Path::new("/o.img"),
            scratch: Path::new("/s.img"),
            slow: Path::new("/w.img"),
            out_bytes: OUT_DISK_BYTES,
        };
        let args: Vec<String> = disk_args(&disks, 16, 3)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-drive",
                "file=/o.img,if=none,id=out,format=raw",
                "-device",
                "virtio-blk-pci,drive=out",
                "-drive",
                "file=/s.img,if=none,id=scratch,format=raw",
                "-device",
                "virtio-blk-pci,drive=scratch",
                "-drive",
                "file=/w.img,if=none,id=slow,format=raw,throttling.bps-write=17555",
                "-device",
                "virtio-blk-pci,drive=slow,request-merging=off",
            ]
        );
    }

    #[test]
    fn selftests_run_the_kernels_suite_instead_of_a_workload() {
        assert_eq!(scenarios_for(KernelId::Hmm7_2).last(), Some(&SELFTESTS));
        for kernel in KernelId::ALL {
            assert!(!scenarios_for(kernel).contains(&SELFTESTS), "{kernel}");
        }
        assert!(parse_scenario(SELFTESTS).is_ok());
        assert!(parse_scenario("hmm-selftests+functions").is_err());
        assert_eq!(run_flags(SELFTESTS), "", "refwatch's defaults");
        let run = LabRun::new(KernelId::Hmm7_2, &["hmm-migrate", SELFTESTS]);
        let init = init_script(&run, &[]);
        assert!(
            init.contains("\nrun_selftests hmm-selftests \"\"\n"),
            "{init}"
        );
        assert!(!init.contains("\nrun_scenario hmm-selftests"));
        assert!(init.contains(&format!(
            "timeout {SELFTEST_SECS} hmm-tests -T benchmark_thp_migration;"
        )));
        assert!(init.contains("wait_for -c /dev/hmm_dmirror0 ||"));
        assert_eq!(out_disk_bytes(&run), 1 << 30);
        assert!(init.contains(&format!(
            "\"{}\" ] || fail \"/dev/vda is not the 1024 MiB out disk",
            (1u64 << 30) / 512
        )));
        let alone = LabRun::new(KernelId::Hmm7_2, &[SELFTESTS]);
        assert!(init_script(&alone, &[]).contains("/dev/hmm_dmirror0"));
        assert_eq!(
            out_disk_bytes(&LabRun::new(KernelId::Hmm7_2, &["hmm-migrate"])),
            OUT_DISK_BYTES
        );
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            strip_escapes("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\nLAB: x"),
            "SeaBIOS\nLAB: x"
        );
    }

    #[test]
    fn scenario_names_are_checked() {
        for s in SCENARIOS {
            assert!(parse_scenario(s).is_ok());
        }
        assert!(parse_scenario("dax-nope").is_err());
    }

    #[test]
    fn rc_files_parse() {
        let dir = std::env::temp_dir().join(format!("xtask-lab-rc-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch dir");
        fs::write(dir.join("a"), "130\nnote: SIGKILL after 30 s\n").expect("write");
        fs::write(dir.join("b"), "0\n").expect("write");
        assert_eq!(
            read_rc(&dir.join("a")),
            (Some(130), Some("SIGKILL after 30 s".to_owned()))
        );
        assert_eq!(read_rc(&dir.join("b")), (Some(0), None));
        assert_eq!(read_rc(&dir.join("missing")), (None, None));
        let _ = fs::remove_dir_all(&dir);
    }
}
