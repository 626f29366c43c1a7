//! The scenarios: their names, the variants (`+functions`, `+kprobe`, …),
//! which kernel runs which, and the flags refwatch gets for each.

use crate::kernels::KernelId;

/// The fs-dax scenarios, which every lab kernel runs, in a sensible order.
pub const SCENARIOS: &[&str] = &[
    "dax-splice",
    "dax-hold",
    "dax-drained",
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

/// Suffix of a scenario run with the safety valve on (`--max-rate`
/// [`RATE_CAP`]), e.g. `dax-splice+rate-cap`: the burst of events passes
/// the cap, the events past it are counted (not lost to a full ring), and
/// the run shows that they are reported, their pages marked with gaps,
/// and that they give no false verdict.
pub const RATE_CAP_SUFFIX: &str = "+rate-cap";

/// Events per second per CPU a `+rate-cap` run allows: a few pages' worth,
/// well under the burst of `dax-splice` on the run's pages. Its 16 gets and
/// 16 puts may fall on two CPUs and, each, on two of the cap's one-second
/// windows: 4 × 5 = 20 pass at most, so some are always capped (with 20,
/// a run whose gets and puts ran on two CPUs capped none).
pub const RATE_CAP: u32 = 5;

/// Pages a `+tiny-ring` scenario works on.
pub const TINY_RING_PAGES: u32 = 1000;

/// Suffix of a scenario whose refwatch starts only once the workload holds
/// its references (after `hold_start`), e.g. `dax-hold+late`: refwatch's
/// snapshot at attach must find the held pages, as a user who attaches
/// after the hang expects.
pub const LATE: &str = "+late";

/// Suffix of a late attach (`+late`, refwatch's defaults) beside which a
/// user's `refwatch watch PFN` watches the first held page, e.g.
/// `dax-hold+watch-cmd`: it must print that page's release, via the
/// watchpoint, with the releasing task and stack. A scenario of its own:
/// under TCG only one of two breakpoints on one address fires (qemu stops
/// at the first watchpoint that matches), so it cannot share a page with
/// the `+watch` variants' own watch.
pub const WATCH_CMD: &str = "+watch-cmd";

/// The hold of a `+late` scenario: long enough for refwatch to get ready
/// (7 to 20 s under TCG, more on a busy host), flag the pages and be copied during the hold.
pub const LATE_HOLD_SECS: u32 = 30;

/// Suffix of a scenario whose refwatch starts once the workload holds its
/// pages, with `--pfn` naming half of them (at most 8), while a second
/// workload works on other pages, e.g. `dax-hold+pfn-filter`: only the
/// named pages may show, each with its own kernel events, and what the
/// filter left out is counted apart from losses.
pub const PFN_FILTER: &str = "+pfn-filter";

/// The same with `--pid` the workload's process: the second workload's
/// pages (another process) must not show.
pub const PID_FILTER: &str = "+pid-filter";

/// The same with `--cgroup` a cgroup v2 the workload is moved into.
pub const CGROUP_FILTER: &str = "+cgroup-filter";

/// Suffix of a scenario whose refwatch puts hardware watchpoints on the
/// workload's pages' refcounts (`--watch new`; after `+late`, `--watch
/// unknown`; on HMM workloads, the driver's first PFNs), combined with any other,
/// e.g. `hmm-release+functions+watch`: the workload works on
/// [`WATCH_PAGES`] pages, and waits at the start of its hold until
/// refwatch lists them armed (`--watch-ready`); the ground truth then
/// checks that the watch saw every change of their refcounts after arming.
pub const WATCH: &str = "+watch";

/// Pages a `+watch` scenario works on: each takes a debug register on
/// every CPU, and x86 has four.
pub const WATCH_PAGES: u32 = 3;

/// The `+watch` scenarios of the HMM test kernel, in function mode (where
/// the inline gets are the hooks' blind spot): the pages are watched from
/// before the workload allocates them ([`HMM_WATCH_PFNS`]), and every
/// change of their refcounts, from the driver's initialisation to the
/// release, is compared with the page_ref ground truth.
pub const WATCH_HMM: &[&str] = &["hmm-release+functions+watch", "hmm-migrate+functions+watch"];

/// The guest script's variable that holds the PFNs an HMM `+watch`
/// scenario's refwatch watches (`--watch PFN,PFN,PFN`): the [`WATCH_PAGES`]
/// device pages the test driver hands out first, set by the guest's
/// `hmm_watch_pfns` just before the scenario (see the guest script for why
/// these).
pub const HMM_WATCH_PFNS: &str = "HMM_WATCH_PFNS";

/// The watchpoint scenarios of debian-6.12 (no page_ref tracepoints): a
/// late attach with `--watch unknown`, whose watch must arm the pages once
/// they are flagged with no holder it can name and see the release of the
/// references taken before it; a SIGKILL of a refwatch holding every debug
/// register, after which a second refwatch finds them all free again; and
/// a user's `refwatch watch PFN` beside a late attach ([`WATCH_CMD`]; in
/// the main boot, as it has no `+watch` suffix).
pub const WATCH_DAX: &[&str] = &[
    "dax-hold+late+watch",
    "dax-hold+sigkill+watch",
    "dax-hold+watch-cmd",
];

/// The fs-dax `+watch` scenario of the HMM test kernel (its page_ref
/// tracepoints are the ground truth): `dax-pin-long`'s pages watched from
/// their fault, before the O_DIRECT write pins them, so that the watch sees
/// the pin (fast GUP writes 1, then the rest of the bias), the unpin, and
/// the report names the unpin as the release.
pub const WATCH_PIN: &[&str] = &["dax-pin-long+watch"];

/// The file a `+watch` scenario's refwatch lists its armed pages in, in the
/// scenario folder.
pub const WATCH_READY_FILE: &str = "watch-ready";

/// Whether `run` is a `+watch` scenario, and its name without the suffix.
pub fn split_watch(run: &str) -> (&str, bool) {
    match run.strip_suffix(WATCH) {
        Some(base) => (base, true),
        None => (run, false),
    }
}

/// The hold of a filter scenario: refwatch must be ready and the second
/// workload done before it ends (refwatch took 28 s to get ready on a busy
/// host under TCG).
pub const FILTER_HOLD_SECS: u32 = 60;

/// The filter scenarios: all on debian-6.12, the page and task filters in
/// precise mode on the HMM test kernel (see [`scenarios_for`]). Each holds
/// for [`FILTER_HOLD_SECS`]; the filters are code of the same programs
/// every scenario loads, so the other kernels' verifiers check them anyway.
pub const FILTER_SCENARIOS: &[&str] = &[
    "dax-hold+pfn-filter",
    "dax-hold+pid-filter",
    "dax-hold+cgroup-filter",
];

/// The signals the `+sig…` variants send `refwatch record` while the
/// workload holds its references, e.g. `dax-hold+sigterm`: INT, TERM and
/// HUP must end it within [`SIGNAL_EXIT_SECS`] with the recording complete;
/// KILL must leave a recording that reads and none of its BPF objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
    Hup,
    Kill,
}

impl Signal {
    pub const ALL: [Signal; 4] = [Signal::Int, Signal::Term, Signal::Hup, Signal::Kill];

    /// The name `kill -NAME` takes.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "INT",
            Signal::Term => "TERM",
            Signal::Hup => "HUP",
            Signal::Kill => "KILL",
        }
    }

    /// The scenario suffix, `+sigint` etc.
    pub fn suffix(self) -> &'static str {
        match self {
            Signal::Int => "+sigint",
            Signal::Term => "+sigterm",
            Signal::Hup => "+sighup",
            Signal::Kill => "+sigkill",
        }
    }
}

/// Seconds of guest time `refwatch record` may take from INT, TERM or HUP
/// to its exit.
pub const SIGNAL_EXIT_SECS: f64 = 5.0;

/// The signal scenarios, which debian-6.12 and the HMM test kernel run:
/// `dax-hold`'s hold is when a user gives up on a hung recording.
pub const SIGNAL_SCENARIOS: &[&str] = &[
    "dax-hold+sigint",
    "dax-hold+sigterm",
    "dax-hold+sighup",
    "dax-hold+sigkill",
];

/// Suffix of a scenario whose refwatch serves its metrics
/// (`--metrics`, see [`METRICS_PORT`]) and whose workload runs in a cgroup
/// named as docker names a container's ([`METRICS_CGROUP`]), e.g.
/// `dax-hold+metrics`: the guest scrapes the endpoint during the hold and
/// after it, and the numbers are checked against the report of the same
/// run. Only kernels with networking (the Debian ones; see
/// [`scenarios_for`]).
pub const METRICS: &str = "+metrics";

/// The metrics scenarios (debian-6.12, in its boot of the other scenarios).
pub const METRICS_SCENARIOS: &[&str] = &["dax-hold+metrics"];

/// The loopback port of `+metrics` scenarios' endpoint.
pub const METRICS_PORT: u16 = 9464;

/// The cgroup (under the cgroup2 mount) a `+metrics` workload runs in.
pub const METRICS_CGROUP: &str =
    "/lab.slice/docker-5eed0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab.scope";

/// Suffix of a scenario run with the TUI (`refwatch attach`, with
/// `--jsonl` beside it) on a pseudo-terminal of [`TuiConsole`]'s size
/// instead of `refwatch record`, e.g. `dax-hold+tui`: the capture of what it
/// drew is judged screen by screen (`checks::tui`). There is no recording.
pub const TUI: &str = "+tui";

/// The hold of a `+tui` scenario in `cargo xtask test`: the TUI refreshes
/// every 250 ms and flags a page held after [`DETECTOR_SECS`].
pub const TUI_HOLD_SECS: u32 = 8;

/// The terminal of a `+tui` scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TuiConsole {
    pub cols: u16,
    /// Rows: 50 leave the page table room for the 16 pages of a hold beside
    /// the detail pane.
    pub rows: u16,
    /// Seconds the workload holds its pages.
    pub hold_secs: u32,
    /// Also show the TUI on the guest's console and type its input into it
    /// (the demo, whose console is the user's terminal).
    pub live: bool,
}

impl Default for TuiConsole {
    fn default() -> Self {
        Self {
            cols: 120,
            rows: 50,
            hold_secs: TUI_HOLD_SECS,
            live: false,
        }
    }
}

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
    /// `--max-rate` [`RATE_CAP`] ([`RATE_CAP_SUFFIX`]).
    RateCap,
    /// Defaults, started once the workload holds ([`LATE`]).
    Late,
    /// Defaults, stopped by this signal during the hold ([`Signal`]).
    Signal(Signal),
    /// Started during the hold with `--pfn` ([`PFN_FILTER`]).
    PfnFilter,
    /// Started during the hold with `--pid` ([`PID_FILTER`]).
    PidFilter,
    /// Started during the hold with `--cgroup` ([`CGROUP_FILTER`]).
    CgroupFilter,
    /// `--metrics` on [`METRICS_PORT`], scraped during and after the hold ([`METRICS`]).
    Metrics,
    /// `refwatch attach`, the TUI on a pseudo-terminal ([`TUI`]).
    Tui,
    /// Defaults with `+watch` alone ([`WATCH`]).
    Watched,
    /// Defaults, started once the workload holds, with `refwatch watch`
    /// beside it on the first held page ([`WATCH_CMD`]).
    WatchCmd,
}

impl Variant {
    /// refwatch's extra flags.
    pub fn flags(self) -> &'static str {
        match self {
            // The filter variants' filters are picked in the guest, once
            // the workload holds its pages.
            Variant::Default
            | Variant::Xfs
            | Variant::Late
            | Variant::Signal(_)
            | Variant::PfnFilter
            | Variant::PidFilter
            | Variant::CgroupFilter
            | Variant::Tui
            | Variant::Watched
            | Variant::WatchCmd => "",
            Variant::Functions => "--no-precise",
            Variant::Kprobe => "--mode kprobe",
            Variant::TinyRing => "--ring-size 4096",
            Variant::RateCap => "--max-rate 5",
            Variant::Metrics => "--metrics 9464",
        }
    }

    /// What a filter variant filters by (`run_filtered`'s BY), or `None`.
    pub fn filter_by(self) -> Option<&'static str> {
        match self {
            Variant::PfnFilter => Some("pfn"),
            Variant::PidFilter => Some("pid"),
            Variant::CgroupFilter => Some("cgroup"),
            _ => None,
        }
    }

    /// Whether refwatch writes a recording (`record`): all but the TUI.
    pub fn records(self) -> bool {
        self != Variant::Tui
    }

    /// Pages the workload works on, when not the run's.
    pub fn pages(self) -> Option<u32> {
        (self == Variant::TinyRing).then_some(TINY_RING_PAGES)
    }
}

/// Pages `dax-splice` works on with refwatch's defaults: enough events that
/// the recording's size per event ([`MAX_RECORDING_BYTES_PER_EVENT`]) is
/// the events', not the header's.
pub const SIZE_PAGES: u32 = 1000;

/// Largest recording size per event the lab accepts on `dax-splice` (the
/// whole file, header and tables included, ÷ events).
pub const MAX_RECORDING_BYTES_PER_EVENT: u64 = 64;

/// Pages the workload of `workload` run as `variant` works on, when not
/// the run's (a `+watch` run's: [`WATCH_PAGES`], see [`run_pages`]).
pub fn pages(workload: &str, variant: Variant) -> Option<u32> {
    match (workload, variant) {
        ("dax-splice", Variant::Default) => Some(SIZE_PAGES),
        _ => variant.pages(),
    }
}

/// Pages the workload of the run `run` works on, when not the run's.
pub fn run_pages(run: &str) -> Option<u32> {
    if split_watch(run).1 {
        return Some(WATCH_PAGES);
    }
    let (workload, variant) = split_variant(run);
    pages(workload, variant)
}

/// The workload scenario of a run name and how refwatch runs (a `+watch`
/// suffix aside: [`split_watch`]; alone, it is [`Variant::Watched`]).
pub fn split_variant(run: &str) -> (&str, Variant) {
    let (run, watched) = split_watch(run);
    if let Some(base) = run.strip_suffix(FUNCTIONS) {
        (base, Variant::Functions)
    } else if let Some(base) = run.strip_suffix(KPROBE) {
        (base, Variant::Kprobe)
    } else if let Some(base) = run.strip_suffix(XFS) {
        (base, Variant::Xfs)
    } else if let Some(base) = run.strip_suffix(TINY_RING) {
        (base, Variant::TinyRing)
    } else if let Some(base) = run.strip_suffix(RATE_CAP_SUFFIX) {
        (base, Variant::RateCap)
    } else if let Some(base) = run.strip_suffix(LATE) {
        (base, Variant::Late)
    } else if let Some(base) = run.strip_suffix(WATCH_CMD) {
        (base, Variant::WatchCmd)
    } else if let Some(base) = run.strip_suffix(PFN_FILTER) {
        (base, Variant::PfnFilter)
    } else if let Some(base) = run.strip_suffix(PID_FILTER) {
        (base, Variant::PidFilter)
    } else if let Some(base) = run.strip_suffix(CGROUP_FILTER) {
        (base, Variant::CgroupFilter)
    } else if let Some(base) = run.strip_suffix(METRICS) {
        (base, Variant::Metrics)
    } else if let Some(base) = run.strip_suffix(TUI) {
        (base, Variant::Tui)
    } else if let Some((base, sig)) = Signal::ALL
        .iter()
        .find_map(|sig| Some((run.strip_suffix(sig.suffix())?, *sig)))
    {
        (base, Variant::Signal(sig))
    } else if watched {
        (run, Variant::Watched)
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
    if kernel == KernelId::Debian6_12 {
        all.push("dax-splice+rate-cap");
    }
    all.push("dax-hold+late");
    if kernel == KernelId::Debian6_12 {
        all.extend_from_slice(FILTER_SCENARIOS);
        all.extend_from_slice(METRICS_SCENARIOS);
    } else if kernel.has_test_hmm() {
        all.extend_from_slice(&FILTER_SCENARIOS[..2]);
    }
    if kernel == KernelId::Debian6_12 {
        all.push("dax-hold+tui");
    }
    if kernel == KernelId::Debian6_12 || kernel.has_test_hmm() {
        all.extend_from_slice(SIGNAL_SCENARIOS);
    }
    if kernel == KernelId::Debian6_12 {
        all.extend_from_slice(WATCH_DAX);
    }
    if kernel.has_test_hmm() {
        all.extend_from_slice(HMM_SCENARIOS);
        all.extend_from_slice(HMM_FUNCTIONS);
        all.extend_from_slice(WATCH_HMM);
        all.extend_from_slice(WATCH_PIN);
        all.push(SELFTESTS);
    } else {
        all.extend_from_slice(DAX_KPROBE);
        all.extend_from_slice(DAX_XFS);
    }
    all
}

/// The scenarios asked for (`--scenario`) that `kernel` runs, in its run
/// order (all of its scenarios when none was asked for), and those asked
/// for that its matrix does not have.
pub fn chosen_for(kernel: KernelId, only: &[String]) -> (Vec<&'static str>, Vec<String>) {
    let all = scenarios_for(kernel);
    if only.is_empty() {
        return (all, Vec::new());
    }
    let runs = all
        .iter()
        .copied()
        .filter(|s| only.iter().any(|o| o == s))
        .collect();
    let left_out = only
        .iter()
        .filter(|o| !all.contains(&o.as_str()))
        .cloned()
        .collect();
    (runs, left_out)
}

/// For each scenario asked for that none of `kernels` runs, what to tell
/// the user: which kernels of the lab do run it (a scenario name that
/// parses may still be in no kernel's matrix, e.g. a variant on another
/// scenario than the one it is run with).
pub fn run_nowhere(kernels: &[KernelId], only: &[String]) -> Vec<String> {
    only.iter()
        .filter(|o| {
            !kernels
                .iter()
                .any(|k| scenarios_for(*k).contains(&o.as_str()))
        })
        .map(|o| {
            let elsewhere: Vec<String> = KernelId::LAB
                .iter()
                .filter(|k| scenarios_for(**k).contains(&o.as_str()))
                .map(|k| k.to_string())
                .collect();
            if elsewhere.is_empty() {
                format!("{o}: no kernel's lab matrix runs it")
            } else {
                format!(
                    "{o}: none of the kernels of this run has it in its lab matrix; {} do (--kernel)",
                    elsewhere.join(", ")
                )
            }
        })
        .collect()
}

/// The command line that starts refwatch in the guest for one scenario,
/// `scenario_dir` being that scenario's result folder. `$J` is the guest
/// script's `--jsonl` flag: JSON Lines beside the recording (what the
/// checks read), except under the kernel's HMM selftests, where events come
/// at rates at which formatting every event as JSON as it comes is the
/// reader's largest cost (users who need JSON Lines of such a run export
/// them from the recording).
pub fn refwatch_cmd(scenario_dir: &str, extra_flags: &str) -> String {
    let d = scenario_dir;
    format!(
        "refwatch record -o {d}/recording $J --ready-file {d}/ready \
         --log-file {d}/refwatch.log --held-secs {t} --pinned-secs {t} --unmapped-secs {t} \
         --summary-secs 0 {extra_flags} > {d}/refwatch.out 2>&1",
        t = DETECTOR_SECS
    )
}

/// The command line that starts the TUI in the guest for one `+tui`
/// scenario (under `workload pty`): `refwatch attach` with the lab's
/// thresholds, its events as JSON Lines in `scenario_dir` (what the fs-dax
/// checks read) and its log in a file (nothing but the TUI on the terminal).
pub fn attach_cmd(scenario_dir: &str, extra_flags: &str) -> String {
    let d = scenario_dir;
    format!(
        "refwatch attach --jsonl {d}/events.jsonl --ready-file {d}/ready \
         --log-file {d}/refwatch.log --held-secs {t} --pinned-secs {t} --unmapped-secs {t} \
         --summary-secs 0 {extra_flags}",
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
    let watch = if split_watch(run).1 && workload.starts_with("hmm-") {
        // Expanded by the guest script where it calls the scenario.
        format!("--watch ${HMM_WATCH_PFNS} --watch-ready /out/{run}/{WATCH_READY_FILE}")
    } else if split_watch(run).1 && variant == Variant::Late {
        // A user who attaches after the hang: the pages are stuck with no
        // holder refwatch can name, which is what `unknown` watches.
        format!("--watch unknown --watch-ready /out/{run}/{WATCH_READY_FILE}")
    } else if split_watch(run).1 {
        format!("--watch new --watch-ready /out/{run}/{WATCH_READY_FILE}")
    } else {
        String::new()
    };
    [variant.flags(), extra_flags(workload), &watch]
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
            "unknown scenario (known: {}, {}, {SELFTESTS}; add {FUNCTIONS} to run refwatch without precise mode, {KPROBE} to force kprobes, {XFS} to run on XFS, {TINY_RING} for a 4096-byte ring on {TINY_RING_PAGES} pages, {RATE_CAP_SUFFIX} for --max-rate {RATE_CAP}, {LATE} to start refwatch during the hold ({WATCH_CMD}: and refwatch watch on its first page), {TUI} to run its TUI (refwatch attach) on a pseudo-terminal, {METRICS} to scrape its metrics, {PFN_FILTER}, {PID_FILTER} or {CGROUP_FILTER} to start it then with a filter, {WATCH} (after any other) to watch the pages' refcounts with hardware watchpoints, +sigint, +sigterm, +sighup or +sigkill to stop it so during the hold)",
            SCENARIOS.join(", "),
            HMM_SCENARIOS.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refwatch_records_into_the_scenario_folder() {
        let c =
            refwatch_cmd("/out/dax-hold", "").replace("$J", "--jsonl /out/dax-hold/events.jsonl");
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
    fn the_metrics_variant_serves_on_its_port() {
        assert_eq!(
            split_variant("dax-hold+metrics"),
            ("dax-hold", Variant::Metrics)
        );
        assert_eq!(
            Variant::Metrics.flags(),
            format!("--metrics {METRICS_PORT}")
        );
        assert!(scenarios_for(KernelId::Debian6_12).contains(&"dax-hold+metrics"));
        assert!(parse_scenario("dax-hold+metrics").is_ok());
    }

    #[test]
    fn the_rate_cap_variant_runs_with_its_cap() {
        assert_eq!(
            split_variant("dax-splice+rate-cap"),
            ("dax-splice", Variant::RateCap)
        );
        assert_eq!(Variant::RateCap.flags(), format!("--max-rate {RATE_CAP}"));
        assert!(parse_scenario("dax-splice+rate-cap").is_ok());
    }

    #[test]
    fn watch_combines_with_the_other_variants() {
        assert_eq!(
            split_variant("hmm-release+functions+watch"),
            ("hmm-release", Variant::Functions)
        );
        assert_eq!(
            split_variant("hmm-release+watch"),
            ("hmm-release", Variant::Watched)
        );
        assert_eq!(
            run_flags("hmm-migrate+functions+watch"),
            "--no-precise --watch $HMM_WATCH_PFNS --watch-ready /out/hmm-migrate+functions+watch/watch-ready"
        );
        assert_eq!(
            run_flags("dax-hold+late+watch"),
            "--watch unknown --watch-ready /out/dax-hold+late+watch/watch-ready"
        );
        assert_eq!(
            run_flags("dax-pin-long+watch"),
            "--watch new --watch-ready /out/dax-pin-long+watch/watch-ready"
        );
        assert_eq!(run_pages("hmm-release+functions+watch"), Some(WATCH_PAGES));
        assert_eq!(run_pages("dax-splice"), Some(SIZE_PAGES));
        assert!(parse_scenario("hmm-release+functions+watch").is_ok());
    }

    #[test]
    fn a_scenario_a_kernel_does_not_run_is_named_not_dropped() {
        let only = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // All of a kernel's scenarios when none is asked for.
        let (runs, left) = chosen_for(KernelId::Debian7_2, &[]);
        assert_eq!(runs, scenarios_for(KernelId::Debian7_2));
        assert!(left.is_empty());
        // The filter variants run on 6.12 only (and the test kernel).
        let asked = only(&["dax-hold", "dax-hold+pfn-filter"]);
        let (runs, left) = chosen_for(KernelId::Debian7_2, &asked);
        assert_eq!(runs, vec!["dax-hold"]);
        assert_eq!(left, vec!["dax-hold+pfn-filter".to_string()]);
        let (runs, left) = chosen_for(KernelId::Debian6_12, &asked);
        assert_eq!(runs, vec!["dax-hold", "dax-hold+pfn-filter"]);
        assert!(left.is_empty());
        // Run by one of the kernels: nothing to say for the run.
        assert!(run_nowhere(&KernelId::ALL, &asked).is_empty());
        // Run by none of them: which kernels would.
        let nowhere = run_nowhere(&[KernelId::Debian7_2], &asked);
        assert_eq!(nowhere.len(), 1, "{nowhere:?}");
        assert!(
            nowhere[0].starts_with("dax-hold+pfn-filter: none of the kernels")
                && nowhere[0].contains("debian-6.12"),
            "{nowhere:?}"
        );
        // A name that parses but that no matrix has.
        assert!(parse_scenario("dax-splice+pfn-filter").is_ok());
        assert_eq!(
            run_nowhere(&KernelId::LAB, &only(&["dax-splice+pfn-filter"])),
            vec!["dax-splice+pfn-filter: no kernel's lab matrix runs it".to_string()]
        );
    }

    #[test]
    fn scenario_names_are_checked() {
        for s in SCENARIOS {
            assert!(parse_scenario(s).is_ok());
        }
        assert!(parse_scenario("dax-nope").is_err());
    }
}
