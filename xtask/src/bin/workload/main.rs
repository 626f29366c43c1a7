//! `workload`: drives real fs-dax ZONE_DEVICE pages inside the lab VM so that
//! refwatch, running beside it, can observe their reference count events.
//!
//! Every scenario creates a file of `--pages` pages in `--dir` (an ext4
//! filesystem mounted with `-o dax` in the lab), maps it `MAP_SHARED`, writes
//! a distinct pattern into each page and records the pages' PFNs from
//! `/proc/self/pagemap`. Then it takes and drops references on those pages in
//! a scenario-specific way:
//!
//! - `dax-splice`: `vmsplice` the pages into a pipe, drain the pipe, unmap.
//! - `dax-hold`: `vmsplice`, unmap, keep the pipe full for `--hold-secs`, drain.
//! - `dax-drained`: `vmsplice`, drain the pipe, keep the mapping (and
//!   nothing else) for `--hold-secs`, unmap.
//! - `dax-direct-io`: one `O_DIRECT` `pwrite` from the mapping to `--bdev`
//!   (the block layer pins the source pages for the duration of the I/O).
//! - `dax-truncate-pinned`: like `dax-hold`, while a second thread truncates
//!   the file, which should block until the pipe lets go of the pages.
//! - `dax-pin-long`: one `O_DIRECT` `pwrite` from the mapping to a slow
//!   `--bdev` (the lab's write-throttled `/dev/vdc`), which keeps the
//!   direct I/O's references on the source pages for `--hold-secs` or more.
//!
//! The `hmm-*` scenarios use device-private memory of the HMM test driver
//! (`CONFIG_TEST_HMM`, `/dev/hmm_dmirror0`) instead: an anonymous buffer of
//! `--pages` pages is filled with the pattern and migrated to the device
//! (its pages become ZONE_DEVICE device-private pages), and then:
//!
//! - `hmm-migrate`: read through the device, touch from the CPU (which
//!   migrates the pages back to RAM), unmap.
//! - `hmm-release`: unmap while the pages live on the device.
//! - `hmm-blocked`: one page is held by a pipe (`vmsplice`), so it does not
//!   migrate; release the pipe and migrate again.
//! - `hmm-leak`: a forked child keeps the device pages mapped after the
//!   parent unmapped them, for `--hold-secs`, then exits.
//!
//! For the `hmm-*` scenarios the report's PFNs are the device PFNs, read
//! from the swap-type entries `/proc/self/pagemap` shows for device-private
//! pages.
//!
//! Each step is stamped with `CLOCK_MONOTONIC` (the clock of the kernel's
//! `bpf_ktime_get_ns`), printed as `workload: <mark> <ns>` and written with
//! the PFNs to a JSON report (`--out`), so that a test can match refwatch's
//! events to the steps that caused them.
//!
//! The syscalls work on ordinary pages too, so every scenario can be tried on
//! a tmpfs or ext4 directory of the host (PFNs need root).
//!
//! `workload bench-put --target anon|dax --secs S --out FILE [--dir DIR]` is
//! not a scenario but the load of `cargo xtask bench overhead`: it takes and
//! drops page references in a loop for S seconds and reports the rate (see
//! [`bench_put`]).
//!
//! `workload pty --capture FILE -- CMD…` is not a scenario either: it runs
//! CMD on a pseudo-terminal and captures what it draws, for the lab's checks
//! of refwatch's TUI (see [`pty`]).
//!
//! This file holds the command line and the dispatch; [`dax`] and [`hmm`]
//! the scenarios, [`dmirror`] the HMM test driver's device, [`pattern`] the
//! page data, [`report`] the marks and the JSON report, and [`sys`] the
//! system calls behind small safe types.

mod bench_put;
mod dax;
mod dmirror;
mod hmm;
mod late;
mod pattern;
mod pty;
#[allow(
    dead_code,
    reason = "the capture format, shared with xtask: its reader is xtask's"
)]
#[path = "../../ptycap.rs"]
mod ptycap;
mod report;
mod sys;
mod watch;

use std::{fs, path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, ValueEnum};

use crate::report::{MarkList, Report, Run, write_json_atomically};

/// The HMM test driver's first device.
const DEFAULT_HMM_DEVICE: &str = "/dev/hmm_dmirror0";

/// Command line of the workload.
#[derive(Debug, Parser)]
#[command(
    about = "Drive fs-dax ZONE_DEVICE pages for refwatch's lab tests",
    after_help = "The overhead benchmark's load: `workload bench-put --help`. A pseudo-terminal recorder: `workload pty --help`."
)]
struct Cli {
    /// What to do with the pages.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Directory on a DAX filesystem for the scratch file.
    #[arg(long)]
    dir: PathBuf,
    /// Number of 4 KiB pages to work on.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pages: u32,
    /// Seconds to keep the pipe full in `dax-hold` and `dax-truncate-pinned`;
    /// the least time `dax-pin-long`'s write must take.
    #[arg(long, default_value_t = 3)]
    hold_secs: u64,
    /// Non-DAX block device (or file) written with O_DIRECT by `dax-direct-io`
    /// and `dax-pin-long` (which wants a slow one) [default: /dev/vdb].
    #[arg(long)]
    bdev: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long)]
    out: PathBuf,
    /// HMM test driver device used by the `hmm-*` scenarios.
    #[arg(long, default_value = DEFAULT_HMM_DEVICE)]
    device: PathBuf,
}

/// The scenarios, named on the command line in kebab case (`dax-splice`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// vmsplice the pages into a pipe, drain it, unmap.
    DaxSplice,
    /// vmsplice, unmap, hold the full pipe, drain.
    DaxHold,
    /// vmsplice, drain, keep only the mapping for the hold, unmap.
    DaxDrained,
    /// O_DIRECT write from the DAX mapping to a block device.
    DaxDirectIo,
    /// Hold the full pipe while another thread truncates the file.
    DaxTruncatePinned,
    /// O_DIRECT write from the DAX mapping to a slow block device, which
    /// keeps its references for `--hold-secs` or more.
    DaxPinLong,
    /// Migrate to device memory, read through the device, touch from the CPU.
    HmmMigrate,
    /// Migrate to device memory, then unmap while the pages are there.
    HmmRelease,
    /// Migrate to device memory, read through the device, keep the pages
    /// there and mapped for the hold, then unmap.
    HmmResident,
    /// One page held by a pipe does not migrate; release it and retry.
    HmmBlocked,
    /// A forked child keeps device pages mapped after the parent unmapped them.
    HmmLeak,
}

impl Scenario {
    /// The name used on the command line and in the report.
    fn name(self) -> &'static str {
        match self {
            Scenario::DaxSplice => "dax-splice",
            Scenario::DaxHold => "dax-hold",
            Scenario::DaxDrained => "dax-drained",
            Scenario::DaxDirectIo => "dax-direct-io",
            Scenario::DaxTruncatePinned => "dax-truncate-pinned",
            Scenario::DaxPinLong => "dax-pin-long",
            Scenario::HmmMigrate => "hmm-migrate",
            Scenario::HmmRelease => "hmm-release",
            Scenario::HmmResident => "hmm-resident",
            Scenario::HmmBlocked => "hmm-blocked",
            Scenario::HmmLeak => "hmm-leak",
        }
    }
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "bench-put") {
        return bench_put::main(std::env::args_os().skip(2));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "pty") {
        return pty::main(std::env::args_os().skip(2));
    }
    let cli = Cli::parse();
    let mut run = Run::default();
    let result = run_scenario(&cli, &mut run);
    if let Err(err) = run.marks.mark("end") {
        run.note(format!("no end mark: {err:#}"));
    }

    let marks = run.marks.snapshot();
    let report = Report {
        scenario: cli.scenario.name(),
        pages: cli.pages,
        hold_secs: cli.hold_secs,
        pfns: &run.pfns,
        marks: MarkList(&marks),
        ok: result.is_ok(),
        error: result.as_ref().err().map(|err| format!("{err:#}")),
        notes: &run.notes,
        facts: &run.facts,
    };
    let written = write_json_atomically(&cli.out, &report);

    match (result, written) {
        (Ok(()), Ok(())) => {
            println!("workload: ok");
            ExitCode::SUCCESS
        }
        (Ok(()), Err(err)) => {
            println!("workload: FAILED: {err:#}");
            ExitCode::FAILURE
        }
        (Err(err), written) => {
            if let Err(write_err) = written {
                eprintln!("workload: the report was not written either: {write_err:#}");
            }
            println!("workload: FAILED: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Checks the environment, then runs the chosen scenario.
fn run_scenario(cli: &Cli, run: &mut Run) -> Result<()> {
    run.marks.mark("start")?;
    sys::check_page_size()?;
    match fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => run.note(format!("kernel {}", release.trim())),
        Err(err) => run.note(format!("kernel release unknown: {err}")),
    }
    match cli.scenario {
        Scenario::DaxSplice => dax::splice(cli, run),
        Scenario::DaxHold => dax::hold(cli, run),
        Scenario::DaxDrained => dax::drained(cli, run),
        Scenario::DaxDirectIo => dax::direct_io(cli, run),
        Scenario::DaxTruncatePinned => dax::truncate_pinned(cli, run),
        Scenario::DaxPinLong => dax::pin_long(cli, run),
        Scenario::HmmMigrate => hmm::migrate(cli, run),
        Scenario::HmmRelease => hmm::release(cli, run),
        Scenario::HmmResident => hmm::resident(cli, run),
        Scenario::HmmBlocked => hmm::blocked(cli, run),
        Scenario::HmmLeak => hmm::leak(cli, run),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_scenarios_and_defaults() -> Result<()> {
        let cli = Cli::try_parse_from([
            "workload",
            "dax-truncate-pinned",
            "--dir",
            "d",
            "--out",
            "o.json",
        ])?;
        assert_eq!(cli.scenario, Scenario::DaxTruncatePinned);
        assert_eq!((cli.pages, cli.hold_secs), (16, 3));
        assert_eq!(cli.bdev, None);
        for scenario in Scenario::value_variants() {
            let parsed =
                Cli::try_parse_from(["workload", scenario.name(), "--dir", "d", "--out", "o"])?;
            assert_eq!(parsed.scenario, *scenario);
        }
        assert!(
            Cli::try_parse_from([
                "workload",
                "dax-splice",
                "--dir",
                "d",
                "--out",
                "o",
                "--pages",
                "0"
            ])
            .is_err()
        );
        Ok(())
    }
}
