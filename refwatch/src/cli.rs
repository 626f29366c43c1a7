//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{plan::ModeChoice, stacks::StackPolicy};

/// refwatch: reference-count lifetimes of ZONE_DEVICE pages (fs-dax, device
/// private, device-dax, P2PDMA) on a live Linux system.
#[derive(Debug, Parser)]
#[command(version = crate::conventions::VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to the running kernel and watch device pages: a TUI (q quits),
    /// or with --headless summary lines until Ctrl-C.
    Attach(AttachArgs),
    /// Like `attach --headless`, writing a recording to FILE (flushed every
    /// second, complete after Ctrl-C or SIGTERM).
    Record(RecordArgs),
    /// Print the probe plan for the running kernel: logical event → symbol →
    /// mode → attached, or why not. Exits non-zero when nothing can attach.
    Probes(ProbesArgs),
    /// Every stuck episode of a recording, and the pages still stuck at its end.
    Report(ReportArgs),
    /// Per-PFN histories of a recording as JSON Lines, CSV or Perfetto.
    Export(ExportArgs),
    /// Open the TUI on a recording: play, pause, step, seek, change speed.
    Replay(ReplayArgs),
    /// Print a completion script for SHELL (bash, zsh, fish) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or with --dir write it and a
    /// page per subcommand into DIR.
    Man(ManArgs),
    /// Watch these pages' refcounts with hardware watchpoints and print
    /// each of their events as it comes (headless `attach --watch PFNS
    /// --pfn PFNS`): every get and put, inline ones included, with the
    /// task and stack that made it.
    Watch(WatchCmdArgs),
}

#[derive(Debug, Args, Clone)]
pub struct WatchCmdArgs {
    /// The pages (PFNs, decimal or 0x hex).
    #[arg(required = true, value_name = "PFN")]
    pub pfns: Vec<String>,
    #[command(flatten)]
    pub attach: AttachArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ManArgs {
    /// Write refwatch.1 and refwatch-COMMAND.1 here instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: crate::conventions::Shell,
}

#[derive(Debug, Args, Clone)]
pub struct ReplayArgs {
    /// A recording made by `refwatch record`.
    pub file: PathBuf,
    /// Playback speed (1: as recorded, 10: ten times faster).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Start paused at the beginning instead of playing.
    #[arg(long)]
    pub paused: bool,
    /// A vmlinux with DWARF of the recorded kernel: stack frames shown
    /// with their source lines (see `report --vmlinux`).
    #[arg(long, value_name = "FILE")]
    pub vmlinux: Option<PathBuf>,
    /// Write refwatch's own log here (default: none; warnings and errors are
    /// printed on stderr when the TUI ends).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Debug, Args, Clone)]
pub struct RecordArgs {
    /// The recording to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub attach: AttachArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// A recording made by `refwatch record`.
    pub file: PathBuf,
    /// The stable JSON form.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when a page is still stuck at the end of the
    /// recording, else 4 when a page's state is unknown there because events
    /// were lost.
    #[arg(long)]
    pub fail_on_stuck: bool,
    /// One block per stuck episode (each page with its holders and stacks)
    /// instead of one per holder with its pages as PFN ranges.
    #[arg(long)]
    pub per_page: bool,
    /// A vmlinux with DWARF of the recorded kernel (Debian's
    /// linux-image-*-dbg package: /usr/lib/debug/boot/vmlinux-VERSION):
    /// each frame shown with its source line (`mm/gup.c:412`).
    #[arg(long, value_name = "FILE")]
    pub vmlinux: Option<PathBuf>,
    /// Show the kernel addresses the recording holds (made with
    /// --raw-pointers, or by an earlier version); hidden by default.
    #[arg(long)]
    pub raw_pointers: bool,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    /// A recording made by `refwatch record`.
    pub file: PathBuf,
    #[arg(long, value_enum)]
    pub format: crate::format::export::ExportFormat,
    /// Only these PFNs: `0x40000`, `262144`, `0x40000-0x400ff`, comma-separated.
    #[arg(long)]
    pub pfn: Option<String>,
    /// Only these page-map types (private, coherent, fsdax, generic, p2pdma).
    #[arg(long = "type", value_parser = ["private", "coherent", "fsdax", "generic", "p2pdma", "system", "unknown"])]
    pub types: Vec<String>,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Show the kernel addresses the recording holds (made with
    /// --raw-pointers, or by an earlier version); hidden by default.
    #[arg(long)]
    pub raw_pointers: bool,
}

/// Detector thresholds (seconds); a recording keeps the ones it was made with.
#[derive(Debug, Args, Clone, Default)]
pub struct ThresholdArgs {
    /// `held`: references beyond idle for longer than this.
    #[arg(long, value_name = "SECS")]
    pub held_secs: Option<f64>,
    /// `pinned`: the GUP pin bias for longer than this.
    #[arg(long, value_name = "SECS")]
    pub pinned_secs: Option<f64>,
    /// `unmapped-not-freed`: unmapped but not freed for longer than this.
    #[arg(long, value_name = "SECS")]
    pub unmapped_secs: Option<f64>,
}

impl ThresholdArgs {
    /// Applies the flags over `base`; rejects negative or absurd values.
    pub fn apply(
        &self,
        base: crate::state::Thresholds,
    ) -> anyhow::Result<crate::state::Thresholds> {
        let conv = |v: Option<f64>, d: u64, name: &str| -> anyhow::Result<u64> {
            match v {
                None => Ok(d),
                Some(s) if s.is_finite() && (0.0..=1e7).contains(&s) => Ok((s * 1e9) as u64),
                Some(s) => anyhow::bail!("--{name} {s}: give seconds between 0 and 10000000"),
            }
        };
        Ok(crate::state::Thresholds {
            held_ns: conv(self.held_secs, base.held_ns, "held-secs")?,
            pinned_ns: conv(self.pinned_secs, base.pinned_ns, "pinned-secs")?,
            unmapped_ns: conv(self.unmapped_secs, base.unmapped_ns, "unmapped-secs")?,
        })
    }

    pub fn any(&self) -> bool {
        self.held_secs.is_some() || self.pinned_secs.is_some() || self.unmapped_secs.is_some()
    }
}

#[derive(Debug, Args, Clone)]
pub struct ProbesArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// Print the kernel verifier's log of every program it refused (once
    /// per program, after the plan).
    #[arg(long)]
    pub verifier_log: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// Attach mode: fentry/fexit where possible, kprobes otherwise (auto), or force one.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeChoice,
    /// Do not use the page_ref tracepoints (precise mode, on by default where
    /// the kernel has them: CONFIG_DEBUG_PAGE_REF); watch the get/put functions.
    #[arg(long)]
    pub no_precise: bool,
    /// Remember GUP references on system (non-device) pages, so a migration
    /// to device memory that fails on a page names who holds it. Costs a map
    /// update and a stack walk per GUP grab of any page.
    #[arg(long)]
    pub ram_holders: bool,
    /// Which events carry a kernel stack: `holders`, full stacks for the
    /// events that take a reference (and the rest), drops only as deep as
    /// their role (unmap or not) takes; `all`, full stacks for every event;
    /// `none`.
    #[arg(long, value_enum, default_value = "holders", value_name = "WHICH")]
    pub stacks: StackPolicy,
    /// `--stacks none`.
    #[arg(long, conflicts_with = "stacks")]
    pub no_stacks: bool,
}

impl ProbeArgs {
    /// The stack policy asked for (`--no-stacks` is `--stacks none`).
    pub fn stack_policy(&self) -> StackPolicy {
        if self.no_stacks {
            StackPolicy::None
        } else {
            self.stacks
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct AttachArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// No TUI: a periodic one-line summary on stdout, and a per-PFN table at the end.
    #[arg(long)]
    pub headless: bool,
    /// The TUI's stacks with source lines, from this vmlinux with DWARF of
    /// the running kernel (default: Debian's debug image,
    /// /usr/lib/debug/boot/vmlinux-RELEASE, when it is installed).
    #[arg(long, value_name = "FILE")]
    pub vmlinux: Option<PathBuf>,
    /// Headless: a line per stuck episode with its holders (each page
    /// apart) instead of a line when a holder's group of stuck pages opens,
    /// grows or clears.
    #[arg(long)]
    pub per_page: bool,
    /// Write every event as JSON Lines to this file.
    #[arg(long, value_name = "FILE")]
    pub jsonl: Option<PathBuf>,
    /// Rotate the recording (`record -o`) and the JSON lines (`--jsonl`)
    /// when one reaches this size: FILE is ended and renamed FILE.1 (FILE.1
    /// becomes FILE.2, ...), and a new FILE starts; a recording carries over
    /// the state of referenced pages. Bytes, or with K, M, G.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub max_size: u64,
    /// Finished files kept beside each FILE (FILE.1 to FILE.N); older ones
    /// are removed. At most (N + 1) × --max-size on disk per output.
    #[arg(long, value_name = "N", default_value_t = crate::rotate::DEFAULT_LIMIT.keep, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub keep: u32,
    /// Hardware watchpoints on pages' refcounts: every write to it, from
    /// any path (inline gets and puts included), with the writer's task
    /// and stack. PFNs (comma-separated), `new` (each device page as
    /// refwatch first learns of it) or `unknown` (stuck pages whose holder
    /// refwatch could not name), combined at will. Few pages fit at once
    /// (4 debug registers per CPU); the others wait their turn.
    #[arg(long = "watch", value_name = "PFNS|new|unknown")]
    pub watchpoints: Option<String>,
    /// With --watch (or `refwatch watch`): rewrite this file with the
    /// watched pages (`PFN armed-at-ns` lines, CLOCK_MONOTONIC) each time
    /// they change.
    #[arg(long, value_name = "FILE")]
    pub watch_ready: Option<PathBuf>,
    /// Create this file once the probes are attached (for scripts).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Serve Prometheus/OpenMetrics numbers at http://ADDR/metrics: PORT
    /// (on 127.0.0.1), or IP:PORT (0.0.0.0:9464 to expose them).
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::serve::parse_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Write refwatch's own log here instead of stderr (with the TUI and no
    /// --log-file: no log; warnings and errors are printed when it ends).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Size of the kernel's event ring buffer in bytes: a power of two of
    /// at least one page (4096). A larger ring rides out longer bursts.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RING_BYTES, value_parser = parse_ring_size)]
    pub ring_size: u32,
    /// A safety valve: at most N events per second from each CPU. Past it
    /// an event is counted instead of recorded (no stack walk, no ring
    /// record), and its page is marked with a gap, its state unknown until
    /// its next recorded event, as for a loss; every view says how many were
    /// capped. Off by default.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rate: Option<u32>,
    /// Have the kernel time refwatch's programs while attached (BPF run-time
    /// statistics; this adds two clock reads per program run) and print how
    /// often each ran and how long it took, at the end.
    #[arg(long)]
    pub prog_stats: bool,
    /// Show raw kernel addresses (struct page pointers, unsymbolized frames).
    /// Off by default: they defeat KASLR.
    #[arg(long)]
    pub raw_pointers: bool,
    /// Events kept per PFN for the TUI's page histories (`record` and
    /// `--headless` keep none in memory: every event is in their outputs).
    #[arg(long, default_value_t = crate::state::DEFAULT_HISTORY as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub history: u64,
    /// Most PFNs tracked at once; long-idle pages are evicted beyond it.
    #[arg(long, default_value_t = crate::state::DEFAULT_MAX_PFNS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pfns: u64,
    /// Most events kept in all PFNs' histories together (the TUI's);
    /// beyond it the oldest go, down to a page's share (at least its last
    /// 5).
    #[arg(long, default_value_t = crate::state::DEFAULT_MAX_EVENTS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: u64,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Seconds between summary lines (0: none).
    #[arg(long, default_value_t = 5)]
    pub summary_secs: u64,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<u64>,
    /// More detail in the log.
    #[arg(long, short)]
    pub verbose: bool,
}

/// What to watch (default: every device page). Applied in the kernel:
/// events left out cost no stack walk and no ring-buffer space, and are
/// counted apart from losses.
#[derive(Debug, Args, Clone, Default)]
pub struct WatchArgs {
    /// Only these PFNs: `0x40000`, `262144`, `0x40000-0x400ff`,
    /// comma-separated (at most 8 separate ranges). A folio goes by its
    /// head PFN.
    #[arg(long, value_name = "PFNS")]
    pub pfn: Option<String>,
    /// Only pages of these page-map types (repeat for several): private,
    /// coherent, fsdax, generic, p2pdma, system, unknown.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only pages a task of this process touches while watched; from its
    /// first event on a page, every event of the page is shown, whoever
    /// causes it.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Like --pid, for the tasks of this cgroup v2 directory (itself, not
    /// its children), e.g. /sys/fs/cgroup/system.slice/NAME.service.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
}

/// Smallest `--max-size`: a file holds its header and carried-over state.
pub const MIN_RECORDING_BYTES: u64 = 1 << 20;

/// `--max-size`: bytes, or a number with K, M, G or T (powers of 1024), of
/// at least [`MIN_RECORDING_BYTES`].
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: give bytes, or a number with K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: give bytes, or a number with K, M, G or T"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < MIN_RECORDING_BYTES {
        return Err(format!(
            "{s:?}: a recording file must be allowed at least 1M ({MIN_RECORDING_BYTES} bytes)"
        ));
    }
    Ok(bytes)
}

/// The kernel's event ring buffer unless `--ring-size` says otherwise:
/// 32 MiB, since a 16 MiB ring lost 6,054 of 555,000 events in one lab run
/// of the kernel's HMM selftests (a 6 s burst the reader fell behind in).
pub const DEFAULT_RING_BYTES: u32 = 32 << 20;

/// `--ring-size`: a power of two from one page to 1 GiB.
fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if !n.is_power_of_two() || !(4096..=1 << 30).contains(&n) {
        return Err(format!(
            "{n} bytes: the ring buffer size must be a power of two from 4096 to 1073741824"
        ));
    }
    u32::try_from(n).map_err(|_| format!("{n} bytes is too large"))
}

#[cfg(test)]
mod ring_size_tests {
    use super::{parse_ring_size, parse_size};

    #[test]
    fn recording_sizes_take_units_and_a_floor() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2097152"), Ok(2 << 20));
        for bad in ["0", "1K", "100", "1X", "G", "-1G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ring_sizes_are_powers_of_two_of_at_least_a_page() {
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert_eq!(parse_ring_size("4194304"), Ok(4 << 20));
        for bad in ["0", "4095", "6000", "2147483648", "-1", "4k"] {
            assert!(parse_ring_size(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod stacks_tests {
    use clap::Parser as _;

    use super::{Cli, Command, StackPolicy};

    fn policy(args: &[&str]) -> Result<StackPolicy, clap::Error> {
        let cli = Cli::try_parse_from(args)?;
        Ok(match cli.command {
            Command::Attach(a) => a.probe.stack_policy(),
            Command::Record(r) => r.attach.probe.stack_policy(),
            Command::Probes(p) => p.probe.stack_policy(),
            other => panic!("not a live command: {other:?}"),
        })
    }

    #[test]
    fn stacks_flag_parses_with_holders_by_default() {
        let p = |a: &[&str]| policy(a).map_err(|e| e.to_string());
        assert_eq!(p(&["refwatch", "attach"]), Ok(StackPolicy::Holders));
        assert_eq!(p(&["refwatch", "probes"]), Ok(StackPolicy::Holders));
        assert_eq!(
            p(&["refwatch", "attach", "--stacks", "all"]),
            Ok(StackPolicy::All)
        );
        assert_eq!(
            p(&["refwatch", "record", "-o", "x.rec", "--stacks=none"]),
            Ok(StackPolicy::None)
        );
        assert_eq!(
            p(&["refwatch", "record", "-o", "x.rec", "--stacks=holders"]),
            Ok(StackPolicy::Holders)
        );
        // The old flag is `--stacks none`.
        assert_eq!(
            p(&["refwatch", "attach", "--no-stacks"]),
            Ok(StackPolicy::None)
        );
    }

    #[test]
    fn stacks_flag_refuses_what_it_does_not_know() {
        let e = policy(&["refwatch", "attach", "--stacks", "some"]).expect_err("unknown policy");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let e = policy(&["refwatch", "attach", "--stacks", "all", "--no-stacks"])
            .expect_err("conflict");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}

#[cfg(test)]
mod watch_tests {
    use clap::Parser as _;

    use super::{Cli, Command};

    /// `refwatch watch PFN --watch-ready FILE` (its PFNs are the watch) and
    /// `--max-rate` on the live commands parse; a rate of 0 is refused.
    #[test]
    fn watch_ready_goes_with_refwatch_watch_and_max_rate_with_live_commands() {
        let cli = Cli::try_parse_from(["refwatch", "watch", "0x48200", "--watch-ready", "r"])
            .expect("parses");
        match cli.command {
            Command::Watch(w) => {
                assert_eq!(w.pfns, ["0x48200"]);
                assert_eq!(w.attach.watch_ready.as_deref(), Some("r".as_ref()));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["refwatch", "record", "-o", "x", "--max-rate", "5000"])
            .expect("parses");
        match cli.command {
            Command::Record(r) => assert_eq!(r.attach.max_rate, Some(5000)),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["refwatch", "attach", "--max-rate", "0"]).is_err());
    }
}
