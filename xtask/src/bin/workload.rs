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

use std::{
    collections::BTreeMap,
    ffi::CString,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{
            ffi::OsStrExt,
            fs::{FileExt, MetadataExt, OpenOptionsExt},
        },
    },
    path::{Path, PathBuf},
    process::ExitCode,
    ptr,
    sync::{Arc, Mutex, PoisonError, mpsc},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use serde::{
    Serialize,
    ser::{SerializeMap, Serializer},
};

/// Size of the pages the scenarios work on (x86_64 base pages).
const PAGE_SIZE: usize = 4096;
/// Bits 0-54 of a pagemap entry: the page frame number.
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;
/// Bit 62 of a pagemap entry: the page is swapped out.
const PAGEMAP_SWAPPED: u64 = 1 << 62;
/// Bit 63 of a pagemap entry: the page is present in RAM (or pmem).
const PAGEMAP_PRESENT: u64 = 1 << 63;
/// Most iovecs one `vmsplice` call accepts (`UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;
/// Block device written by `dax-direct-io` when `--bdev` is not given.
const DEFAULT_BDEV: &str = "/dev/vdb";
/// The HMM test driver's first device.
const DEFAULT_HMM_DEVICE: &str = "/dev/hmm_dmirror0";
/// Most pages `dax-pin-long` writes: one bio's worth (`BIO_MAX_VECS`), so
/// that the block layer releases them all together when the write completes.
const PIN_LONG_MAX_PAGES: u32 = 256;
/// How long the truncate thread may take to get going.
const TRUNCATE_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a truncate may stay blocked after the pipe was closed before the
/// scenario gives up on it.
const TRUNCATE_END_TIMEOUT: Duration = Duration::from_secs(60);

/// Command line of the workload.
#[derive(Debug, Parser)]
#[command(
    about = "Drive fs-dax ZONE_DEVICE pages for refwatch's lab tests",
    after_help = "The overhead benchmark's load: `workload bench-put --help`."
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
    check_page_size()?;
    match fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => run.note(format!("kernel {}", release.trim())),
        Err(err) => run.note(format!("kernel release unknown: {err}")),
    }
    match cli.scenario {
        Scenario::DaxSplice => dax_splice(cli, run),
        Scenario::DaxHold => dax_hold(cli, run),
        Scenario::DaxDirectIo => dax_direct_io(cli, run),
        Scenario::DaxTruncatePinned => dax_truncate_pinned(cli, run),
        Scenario::DaxPinLong => dax_pin_long(cli, run),
        Scenario::HmmMigrate => hmm_migrate(cli, run),
        Scenario::HmmRelease => hmm_release(cli, run),
        Scenario::HmmResident => hmm_resident(cli, run),
        Scenario::HmmBlocked => hmm_blocked(cli, run),
        Scenario::HmmLeak => hmm_leak(cli, run),
    }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// `dax-splice`: vmsplice the pages into a pipe, drain the pipe, unmap, delete.
fn dax_splice(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let pipe = Pipe::for_bytes(mapping.len(), run)?;

    run.marks.mark("splice_start")?;
    pipe.vmsplice_from(&mapping)?;
    run.marks.mark("splice_end")?;

    drain_and_check(&pipe, mapping.len(), run)?;
    drop(pipe);
    run.marks.mark("pipe_closed")?;

    mapping.unmap()?;
    run.marks.mark("unmap")?;
    file.remove()
}

/// `dax-hold`: vmsplice, unmap first, keep the full pipe for `--hold-secs`,
/// then drain and close it and delete the file.
fn dax_hold(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let len = mapping.len();
    let pipe = Pipe::for_bytes(len, run)?;

    run.marks.mark("splice_start")?;
    pipe.vmsplice_from(&mapping)?;
    run.marks.mark("splice_end")?;

    mapping.unmap()?;
    run.marks.mark("unmap")?;

    let hold_start = run.marks.mark("hold_start")?;
    sleep_until(deadline_after(hold_start, cli.hold_secs))?;
    run.marks.mark("hold_end")?;

    drain_and_check(&pipe, len, run)?;
    drop(pipe);
    run.marks.mark("pipe_closed")?;
    file.remove()
}

/// `dax-direct-io`: one O_DIRECT pwrite of the whole DAX mapping to the block
/// device, read back with O_DIRECT and compared.
fn dax_direct_io(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let len = mapping.len();
    let bdev = cli
        .bdev
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BDEV));

    let target = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&bdev)
        .with_context(|| format!("open {} with O_DIRECT|O_WRONLY", bdev.display()))?;
    run.marks.mark("dio_write_start")?;
    let written = target
        .write_at(mapping.as_slice(), 0)
        .with_context(|| format!("O_DIRECT pwrite of {len} bytes to {}", bdev.display()))?;
    run.marks.mark("dio_write_end")?;
    ensure!(
        written == len,
        "short O_DIRECT pwrite to {}: {written} of {len} bytes",
        bdev.display()
    );
    drop(target);

    let source = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&bdev)
        .with_context(|| format!("open {} with O_DIRECT|O_RDONLY", bdev.display()))?;
    let mut readback = Mapping::anonymous(len)?;
    source
        .read_exact_at(readback.as_mut_slice(), 0)
        .with_context(|| format!("O_DIRECT pread of {len} bytes from {}", bdev.display()))?;
    drop(source);
    check_pattern(readback.as_slice())
        .with_context(|| format!("data read back from {}", bdev.display()))?;
    run.note(format!(
        "{len} bytes written to {} with O_DIRECT and read back intact",
        bdev.display()
    ));
    readback.unmap()?;

    mapping.unmap()?;
    run.marks.mark("unmap")?;
    file.remove()
}

/// `dax-pin-long`: one O_DIRECT pwrite of the whole DAX mapping to a slow
/// block device, read back with O_DIRECT and compared.
///
/// The direct I/O takes its references on the source pages (a pin from
/// 6.2 on, plain references before) when the write starts and drops them
/// when its bio completes. The lab's `/dev/vdc` takes one page per request
/// and qemu throttles its writes, so the last request, and with it the
/// bio, completes seconds later; the write must have taken `--hold-secs`
/// at least. Marks `hold_start`/`hold_end` bracket `write_start`/`write_end`
/// for the lab, which copies the recording during a hold.
fn dax_pin_long(cli: &Cli, run: &mut Run) -> Result<()> {
    ensure!(
        (2..=PIN_LONG_MAX_PAGES).contains(&cli.pages),
        "dax-pin-long writes 2 to {PIN_LONG_MAX_PAGES} pages (a one-page write is one request, which a throttle does not delay; more pages than one bio holds are released bio by bio), not {}",
        cli.pages
    );
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let len = mapping.len();
    let bdev = cli
        .bdev
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BDEV));

    let target = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&bdev)
        .with_context(|| format!("open {} with O_DIRECT|O_WRONLY", bdev.display()))?;
    run.marks.mark("hold_start")?;
    let start = run.marks.mark("write_start")?;
    let written = target
        .write_at(mapping.as_slice(), 0)
        .with_context(|| format!("O_DIRECT pwrite of {len} bytes to {}", bdev.display()))?;
    let end = run.marks.mark("write_end")?;
    run.marks.mark("hold_end")?;
    ensure!(
        written == len,
        "short O_DIRECT pwrite to {}: {written} of {len} bytes",
        bdev.display()
    );
    drop(target);
    let took_ms = (end - start) / 1_000_000;
    ensure!(
        end - start >= deadline_after(0, cli.hold_secs),
        "the O_DIRECT write to {} took {took_ms} ms, less than --hold-secs {}: the device is not slow enough",
        bdev.display(),
        cli.hold_secs
    );
    run.note(format!(
        "{len} bytes written to {} with O_DIRECT in {took_ms} ms",
        bdev.display()
    ));

    let source = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&bdev)
        .with_context(|| format!("open {} with O_DIRECT|O_RDONLY", bdev.display()))?;
    let mut readback = Mapping::anonymous(len)?;
    source
        .read_exact_at(readback.as_mut_slice(), 0)
        .with_context(|| format!("O_DIRECT pread of {len} bytes from {}", bdev.display()))?;
    drop(source);
    check_pattern(readback.as_slice())
        .with_context(|| format!("data read back from {}", bdev.display()))?;
    run.note(format!("{len} bytes read back intact"));
    readback.unmap()?;

    mapping.unmap()?;
    run.marks.mark("unmap")?;
    file.remove()
}

/// `dax-truncate-pinned`: vmsplice, unmap, then truncate the file from a
/// second thread while the pipe still holds the pages for `--hold-secs`.
///
/// The truncate should block in the filesystem's DAX layout break until the
/// drain releases the pipe's references. Whether it did is recorded in the
/// notes, not treated as a failure.
fn dax_truncate_pinned(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let len = mapping.len();
    let pipe = Pipe::for_bytes(len, run)?;

    run.marks.mark("splice_start")?;
    pipe.vmsplice_from(&mapping)?;
    run.marks.mark("splice_end")?;

    mapping.unmap()?;
    run.marks.mark("unmap")?;

    // Kernels before 6.15 skip the DAX layout break, and with it the wait
    // for busy pages, when no VMA maps the file (`dax_layout_busy_page_range`
    // returns early unless `mapping_mapped()`); the truncate then frees
    // blocks the pipe still references. A second mapping of the file that is
    // never touched has no PTEs and takes no page references, but makes the
    // truncate wait as it would for a mapped file.
    let sentinel = Mapping::shared_file(file.file(), len)
        .with_context(|| format!("mapping {} again (untouched)", file.path().display()))?;
    run.note("an untouched mapping of the file is kept during the truncate".to_owned());

    let victim = file
        .file()
        .try_clone()
        .with_context(|| format!("dup the fd of {}", file.path().display()))?;
    let (tx, rx) = mpsc::channel();
    let marks = run.marks.clone();
    let path = file.path().to_owned();
    let truncater = thread::Builder::new()
        .name("truncate".into())
        .spawn(move || truncate_thread(&victim, &path, &marks, &tx))
        .context("spawn the truncate thread")?;

    let truncate_start = match rx.recv_timeout(TRUNCATE_START_TIMEOUT) {
        Ok(TruncateEvent::Started(ns)) => ns,
        Ok(TruncateEvent::Finished(Err(err))) => bail!(err),
        Ok(TruncateEvent::Finished(Ok(_))) => {
            bail!("the truncate thread finished before it started")
        }
        Err(err) => bail!("the truncate thread did not start: {err}"),
    };
    run.marks.mark("hold_start")?;
    sleep_until(deadline_after(truncate_start, cli.hold_secs))?;
    run.marks.mark("hold_end")?;

    let drain_start = drain_and_check(&pipe, len, run)?;
    drop(pipe);
    let pipe_closed = run.marks.mark("pipe_closed")?;

    let truncate_end = match rx.recv_timeout(TRUNCATE_END_TIMEOUT) {
        Ok(TruncateEvent::Finished(Ok(ns))) => ns,
        Ok(TruncateEvent::Finished(Err(err))) => bail!(err),
        Ok(TruncateEvent::Started(_)) => bail!("the truncate thread started twice"),
        Err(mpsc::RecvTimeoutError::Timeout) => bail!(
            "ftruncate({}, 0) still blocked {} s after the pipe was closed",
            file.path().display(),
            TRUNCATE_END_TIMEOUT.as_secs()
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            bail!("the truncate thread ended without reporting")
        }
    };
    if truncater.join().is_err() {
        bail!("the truncate thread panicked");
    }
    sentinel.unmap()?;

    let when = TruncateReturn::classify(truncate_end, drain_start, pipe_closed);
    run.note(format!(
        "truncate: {} ({} ms after it started)",
        when.describe(),
        truncate_end.saturating_sub(truncate_start) / 1_000_000
    ));
    file.remove()
}

/// What the truncate thread reports to the main thread.
enum TruncateEvent {
    /// About to call ftruncate; the `truncate_start` mark.
    Started(u64),
    /// ftruncate returned: the `truncate_end` mark, or what went wrong.
    Finished(Result<u64, String>),
}

/// Body of the truncate thread: marks, ftruncate(fd, 0), marks, reports.
fn truncate_thread(file: &File, path: &Path, marks: &Marks, tx: &mpsc::Sender<TruncateEvent>) {
    let outcome = (|| -> Result<u64> {
        let start = marks.mark("truncate_start")?;
        // The main thread may have given up already; nothing to tell it then.
        let _ = tx.send(TruncateEvent::Started(start));
        file.set_len(0)
            .with_context(|| format!("ftruncate({}, 0)", path.display()))?;
        marks.mark("truncate_end")
    })();
    let _ = tx.send(TruncateEvent::Finished(
        outcome.map_err(|err| format!("{err:#}")),
    ));
}

/// When the truncate returned, relative to the release of the pipe's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TruncateReturn {
    /// Before the drain began: it did not wait for the pipe's references.
    BeforeDrain,
    /// While the pipe was drained (reading releases the pages) but before
    /// the pipe was closed.
    DuringDrain,
    /// After the pipe was closed.
    AfterPipeClosed,
}

impl TruncateReturn {
    /// Places the `truncate_end` mark among the `drain_start` and
    /// `pipe_closed` marks.
    fn classify(truncate_end: u64, drain_start: u64, pipe_closed: u64) -> Self {
        if truncate_end < drain_start {
            TruncateReturn::BeforeDrain
        } else if truncate_end < pipe_closed {
            TruncateReturn::DuringDrain
        } else {
            TruncateReturn::AfterPipeClosed
        }
    }

    /// The sentence written to the report's notes.
    fn describe(self) -> &'static str {
        match self {
            TruncateReturn::BeforeDrain => {
                "returned before the pipe was closed, before drain_start: it did not wait for the pipe's references"
            }
            TruncateReturn::DuringDrain => {
                "returned before the pipe was closed, during the drain: it waited until reading the pipe released the pages"
            }
            TruncateReturn::AfterPipeClosed => "returned after the pipe was closed",
        }
    }
}

// ---------------------------------------------------------------------------
// HMM scenarios (device-private memory of the HMM test driver)
// ---------------------------------------------------------------------------

/// `hmm-migrate`: migrate to the device, read through the device, touch from
/// the CPU (the pages fault back to RAM), unmap, close the device.
fn hmm_migrate(cli: &Cli, run: &mut Run) -> Result<()> {
    let (dev, mapping) = prepare_hmm_pages(cli, run)?;
    let pages = mapping.len() / PAGE_SIZE;
    migrate_all_to_device(&dev, &mapping, run)?;

    run.marks.mark("device_read")?;
    let (cmd, data) = dev
        .read(&mapping)
        .context("HMM_DMIRROR_READ of the device-resident buffer")?;
    check_pattern(&data).context("data the device read from its own memory")?;
    ensure!(
        cmd.cpages == pages as u64,
        "HMM_DMIRROR_READ copied {} of {pages} pages",
        cmd.cpages
    );
    run.note(format!(
        "HMM_DMIRROR_READ: {} pages, {} device faults, data intact",
        cmd.cpages, cmd.faults
    ));

    cpu_touch(&mapping, run, "the migration")?;
    let back = dev.snapshot(&mapping)?;
    let still: Vec<usize> = (0..pages).filter(|&i| is_device_local(back[i])).collect();
    ensure!(
        still.is_empty(),
        "pages {still:?} are still on the device after the CPU touched them"
    );
    let locations = read_locations(mapping.addr(), pages)?;
    ensure!(
        locations.iter().all(|l| matches!(l, PageLocation::Ram(_))),
        "after the CPU touch, pagemap shows {locations:?}"
    );
    run.note(format!(
        "after the CPU touch every page is back in RAM (snapshot {})",
        describe_perm(back[0])
    ));

    unmap_and_close(dev, mapping, run)
}

/// `hmm-release`: migrate to the device, then unmap while the pages are
/// there (the driver gets them back through its `folio_free` callback).
fn hmm_release(cli: &Cli, run: &mut Run) -> Result<()> {
    let (dev, mapping) = prepare_hmm_pages(cli, run)?;
    migrate_all_to_device(&dev, &mapping, run)?;
    unmap_and_close(dev, mapping, run)
}

/// `hmm-resident`: migrate to the device, read through the device, keep
/// the pages on the device, mapped, for the hold (what a GPU workload does
/// for minutes), check they are still there, then unmap.
fn hmm_resident(cli: &Cli, run: &mut Run) -> Result<()> {
    let (dev, mapping) = prepare_hmm_pages(cli, run)?;
    let pages = mapping.len() / PAGE_SIZE;
    migrate_all_to_device(&dev, &mapping, run)?;
    let (cmd, data) = dev
        .read(&mapping)
        .context("HMM_DMIRROR_READ of the device-resident buffer")?;
    check_pattern(&data).context("data the device read from its own memory")?;
    ensure!(
        cmd.cpages == pages as u64,
        "HMM_DMIRROR_READ copied {} of {pages} pages",
        cmd.cpages
    );
    let hold_start = run.marks.mark("hold_start")?;
    sleep_until(deadline_after(hold_start, cli.hold_secs))?;
    run.marks.mark("hold_end")?;
    let perms = dev.snapshot(&mapping)?;
    let off: Vec<usize> = (0..pages).filter(|&i| !is_device_local(perms[i])).collect();
    ensure!(
        off.is_empty(),
        "after the hold pages {off:?} are no longer on the device"
    );
    run.note(format!(
        "{pages} pages stayed on the device, mapped, for {} s",
        cli.hold_secs
    ));
    unmap_and_close(dev, mapping, run)
}

/// `hmm-blocked`: a pipe holds one page (`vmsplice`), so migrating the
/// buffer leaves that page in RAM; after the pipe is drained and closed a
/// second migration takes it too.
fn hmm_blocked(cli: &Cli, run: &mut Run) -> Result<()> {
    let (dev, mapping) = prepare_hmm_pages(cli, run)?;
    let pages = mapping.len() / PAGE_SIZE;
    let blocked = pages / 2;
    let page_addr = mapping.addr() + blocked * PAGE_SIZE;

    let pipe = Pipe::for_bytes(PAGE_SIZE, run)?;
    pipe.vmsplice_range(page_addr, PAGE_SIZE)?;
    run.marks.mark("splice")?;
    let held = read_pfns(page_addr, 1)?;
    run.facts.insert("held_ram_pfn", held[0]);
    run.note(format!(
        "page {blocked} of {pages} is held by a pipe (vmsplice) during the first migration"
    ));

    run.marks.mark("blocked_migrate")?;
    let first = dev.migrate_to_dev(&mapping);
    let perms = dev.snapshot(&mapping)?;
    let on_device: Vec<usize> = (0..pages).filter(|&i| is_device_local(perms[i])).collect();
    run.note(format!(
        "first HMM_DMIRROR_MIGRATE_TO_DEV: {}; snapshot: {} of {pages} pages on the device, page {blocked} {}",
        describe_migrate(&first),
        on_device.len(),
        describe_perm(perms[blocked])
    ));
    let locations = read_locations(mapping.addr(), pages)?;
    let mut pfns: Vec<Option<u64>> = locations.iter().map(PageLocation::device_pfn).collect();
    ensure!(
        !is_device_local(perms[blocked]),
        "page {blocked} migrated although the pipe held it"
    );
    ensure!(
        on_device.len() == pages - 1,
        "{} pages migrated, expected {} (all but page {blocked})",
        on_device.len(),
        pages - 1
    );
    run.note(format!(
        "cpages (migrated pages) is {} = N-1 with the pipe holding page {blocked}",
        on_device.len()
    ));

    let data = pipe.drain(PAGE_SIZE)?;
    drop(pipe);
    run.marks.mark("released")?;
    let expected: Vec<u8> = (0..PAGE_SIZE).map(|o| pattern_byte(blocked, o)).collect();
    ensure!(
        data == expected,
        "the pipe returned other data than page {blocked}"
    );

    run.marks.mark("retry_migrate")?;
    let second = dev.migrate_to_dev(&mapping);
    let perms = dev.snapshot(&mapping)?;
    let on_device = (0..pages).filter(|&i| is_device_local(perms[i])).count();
    run.note(format!(
        "second HMM_DMIRROR_MIGRATE_TO_DEV: {}; snapshot: {on_device} of {pages} pages on the device",
        describe_migrate(&second)
    ));
    ensure!(
        on_device == pages,
        "after the pipe was closed only {on_device} of {pages} pages migrated"
    );
    let locations = read_locations(mapping.addr(), pages)?;
    pfns[blocked] = locations[blocked].device_pfn();
    run.pfns = pfns
        .iter()
        .enumerate()
        .map(|(i, p)| p.with_context(|| format!("page {i} has no device PFN in pagemap")))
        .collect::<Result<_>>()?;
    note_device_ranges(run);

    cpu_touch(&mapping, run, "the migrations")?;
    unmap_and_close(dev, mapping, run)
}

/// `hmm-leak`: after the migration a forked child shares the device pages
/// (fork copies the device-private entries and takes a reference on each
/// page); the parent unmaps, the child lingers for `--hold-secs`, exits, and
/// only then do the pages go back to the driver.
///
/// A pipe cannot hold device-private pages: `vmsplice` takes its references
/// with GUP, which faults such a page back to RAM first (device-private pages
/// cannot be pinned), so the pipe would hold a RAM copy. The child's page
/// table is what keeps the device pages referenced here.
fn hmm_leak(cli: &Cli, run: &mut Run) -> Result<()> {
    let (dev, mapping) = prepare_hmm_pages(cli, run)?;
    let pages = mapping.len() / PAGE_SIZE;
    migrate_all_to_device(&dev, &mapping, run)?;
    run.note(
        "vmsplice of a device-private page would fault it back to RAM (GUP cannot pin device-private pages); \
         the lingering child keeps the device pages through the page table fork() copied"
            .to_owned(),
    );

    let to_child = Pipe::blocking()?;
    let to_parent = Pipe::blocking()?;
    let device_pfns = run.pfns.clone();
    // SAFETY: the workload is single-threaded here; the child only reads
    // pagemap, talks over the pipes and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        let code = leak_child(&mapping, &device_pfns, &to_child, &to_parent, cli.hold_secs);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let child = Child(pid);
    run.facts.insert("child_pid", pid as u64);

    let mapped = to_parent
        .read_u64()
        .context("the child's first report (its mapping)")?;
    run.marks.mark("child_start")?;
    run.note(format!(
        "child {pid} maps {mapped} of {pages} pages as the same device-private pages"
    ));
    ensure!(
        mapped == pages as u64,
        "the child maps only {mapped} of {pages} pages on the device"
    );

    mapping.unmap()?;
    run.marks.mark("parent_unmap")?;
    let hold_start = run.marks.mark("hold_start")?;
    sleep_until(deadline_after(hold_start, cli.hold_secs))?;
    run.marks.mark("hold_end")?;

    to_child.write_u64(1).context("tell the child to exit")?;
    let still = to_parent
        .read_u64()
        .context("the child's second report (its mapping at the end of the hold)")?;
    run.note(format!(
        "at the end of the hold the child still mapped {still} of {pages} pages on the device"
    ));
    let status = child.wait()?;
    run.marks.mark("child_exit")?;
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child ended with wait status {status:#x}"
    );
    ensure!(
        still == pages as u64,
        "the child lost {} device pages during the hold",
        pages as u64 - still
    );
    dev.close(run)
}

/// The lingering child of `hmm-leak`. Never touches the buffer (that would
/// migrate the pages back); returns the exit code.
fn leak_child(
    mapping: &Mapping,
    device_pfns: &[u64],
    to_child: &Pipe,
    to_parent: &Pipe,
    hold_secs: u64,
) -> i32 {
    let pages = mapping.len() / PAGE_SIZE;
    let count = || -> u64 {
        read_locations(mapping.addr(), pages)
            .map(|locs| {
                locs.iter()
                    .zip(device_pfns)
                    .filter(|(l, pfn)| l.device_pfn() == Some(**pfn))
                    .count() as u64
            })
            .unwrap_or(0)
    };
    if to_parent.write_u64(count()).is_err() {
        return 2;
    }
    // The parent says when to go; if it died, leave after a while anyway.
    let timeout = Duration::from_secs(hold_secs.saturating_mul(2).saturating_add(60));
    if !to_child.wait_readable(timeout) {
        return 3;
    }
    let _ = to_child.read_u64();
    if to_parent.write_u64(count()).is_err() {
        return 4;
    }
    0
}

/// A child process, waited for on drop if not before.
struct Child(libc::pid_t);

impl Child {
    /// Waits for the child; returns its wait status.
    fn wait(self) -> Result<libc::c_int> {
        let pid = self.0;
        std::mem::forget(self);
        let mut status = 0;
        loop {
            // SAFETY: `status` is writable; `pid` is our child.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                return Ok(status);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("waitpid {pid}"));
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Only on failure paths: do not leave the child behind.
        // SAFETY: plain syscalls on our own child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, ptr::null_mut(), 0);
        }
    }
}

/// Opens the device (mark `device_open`), maps and fills an anonymous
/// buffer of `--pages` pages (mark `touched`) and notes its RAM PFNs.
/// Reads the whole buffer with the CPU (device pages fault back to RAM) and
/// checks the data, between the marks `cpu_touch_start` and `cpu_touch_end`.
fn cpu_touch(mapping: &Mapping, run: &mut Run, after: &str) -> Result<()> {
    run.marks.mark("cpu_touch_start")?;
    check_pattern(mapping.as_slice())
        .with_context(|| format!("data read by the CPU after {after}"))?;
    run.marks.mark("cpu_touch_end")?;
    Ok(())
}

/// The end of an HMM scenario: unmap the buffer (mark `unmap`), close the device.
fn unmap_and_close(dev: Dmirror, mapping: Mapping, run: &mut Run) -> Result<()> {
    mapping.unmap()?;
    run.marks.mark("unmap")?;
    dev.close(run)
}

fn prepare_hmm_pages(cli: &Cli, run: &mut Run) -> Result<(Dmirror, Mapping)> {
    let pages = usize::try_from(cli.pages).context("--pages does not fit in usize")?;
    let len = pages
        .checked_mul(PAGE_SIZE)
        .context("--pages is too large")?;
    let dev = Dmirror::open(&cli.device)?;
    run.marks.mark("device_open")?;
    let mut mapping = Mapping::anonymous(len)?;
    // Base pages only: a THP would migrate as one compound page.
    // SAFETY: advice on our own mapping; no memory is accessed.
    let rc = unsafe { libc::madvise(mapping.addr, len, libc::MADV_NOHUGEPAGE) };
    if rc != 0 {
        run.note(format!(
            "madvise(MADV_NOHUGEPAGE) failed: {}",
            io::Error::last_os_error()
        ));
    }
    fill_pattern(mapping.as_mut_slice());
    run.marks.mark("touched")?;
    let ram: Vec<u64> = read_pfns(mapping.addr(), pages)?;
    run.note(format!(
        "buffer of {pages} anonymous pages at {:#x}, RAM PFNs {:#x}..",
        mapping.addr(),
        ram.first().copied().unwrap_or(0)
    ));
    Ok((dev, mapping))
}

/// Migrates the whole buffer to the device (marks `migrate_start`,
/// `migrate_end`), checks it all went and the data with it, and records the
/// device PFNs in `run.pfns`.
fn migrate_all_to_device(dev: &Dmirror, mapping: &Mapping, run: &mut Run) -> Result<()> {
    let pages = mapping.len() / PAGE_SIZE;
    run.marks.mark("migrate_start")?;
    let (cmd, data) = dev
        .migrate_to_dev(mapping)
        .context("HMM_DMIRROR_MIGRATE_TO_DEV")?;
    run.marks.mark("migrate_end")?;
    ensure!(
        cmd.cpages == pages as u64,
        "HMM_DMIRROR_MIGRATE_TO_DEV migrated {} of {pages} pages",
        cmd.cpages
    );
    check_pattern(&data).context("device copy after HMM_DMIRROR_MIGRATE_TO_DEV")?;
    let perms = dev.snapshot(mapping)?;
    let off: Vec<usize> = (0..pages).filter(|&i| !is_device_local(perms[i])).collect();
    ensure!(
        off.is_empty(),
        "after the migration pages {off:?} are not on the device (first: {})",
        off.first()
            .map_or(String::new(), |&i| describe_perm(perms[i]))
    );
    let locations = read_locations(mapping.addr(), pages)?;
    run.pfns = locations
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.device_pfn().with_context(|| {
                format!("page {i} is not a device-private entry in pagemap: {l:?}")
            })
        })
        .collect::<Result<_>>()?;
    run.note(format!(
        "HMM_DMIRROR_MIGRATE_TO_DEV: {pages} pages on the device (snapshot {}), data intact",
        describe_perm(perms[0])
    ));
    note_device_ranges(run);
    Ok(())
}

/// Notes the driver's device-private PFN ranges (its `hmm_dmirror` regions
/// in /proc/iomem) and whether the recorded PFNs lie in them.
fn note_device_ranges(run: &mut Run) {
    let Ok(text) = fs::read_to_string("/proc/iomem") else {
        return;
    };
    let ranges: Vec<(u64, u64)> = text
        .lines()
        .filter(|l| l.contains("hmm_dmirror"))
        .filter_map(|l| {
            let (span, _) = l.trim().split_once(" : ")?;
            let (a, b) = span.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()? / PAGE_SIZE as u64,
                u64::from_str_radix(b, 16).ok()? / PAGE_SIZE as u64,
            ))
        })
        .collect();
    if ranges.is_empty() {
        return;
    }
    let inside = run
        .pfns
        .iter()
        .filter(|&&p| ranges.iter().any(|&(a, b)| p >= a && p <= b))
        .count();
    let text: Vec<String> = ranges
        .iter()
        .map(|(a, b)| format!("{a:#x}-{b:#x}"))
        .collect();
    run.note(format!(
        "device-private PFN ranges (hmm_dmirror in /proc/iomem): {}; {inside} of {} recorded PFNs inside",
        text.join(", "),
        run.pfns.len()
    ));
}

/// Where a page of a mapping is, according to /proc/self/pagemap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageLocation {
    /// Present, with this PFN.
    Ram(u64),
    /// A device-private entry for this PFN.
    Device { pfn: u64, writable: bool },
    /// Some other swap-type entry (swap type, offset).
    OtherSwap(u64, u64),
    /// Nothing mapped.
    None,
}

impl PageLocation {
    fn decode(raw: u64) -> Self {
        let entry = PagemapEntry::decode(raw);
        if entry.present {
            return PageLocation::Ram(entry.pfn);
        }
        if !entry.swapped {
            return PageLocation::None;
        }
        // The frame field of a swap-type entry is type | offset << 5, the
        // offset being the PFN for PFN-carrying entries (fs/proc/task_mmu.c).
        let kind = entry.pfn & ((1 << SWP_TYPE_BITS) - 1);
        let offset = entry.pfn >> SWP_TYPE_BITS;
        match kind {
            SWP_DEVICE_WRITE => PageLocation::Device {
                pfn: offset,
                writable: true,
            },
            SWP_DEVICE_READ => PageLocation::Device {
                pfn: offset,
                writable: false,
            },
            _ => PageLocation::OtherSwap(kind, offset),
        }
    }

    fn device_pfn(&self) -> Option<u64> {
        match self {
            PageLocation::Device { pfn, .. } => Some(*pfn),
            _ => None,
        }
    }
}

/// Bits of the swap type in a pagemap swap entry (`MAX_SWAPFILES_SHIFT`).
const SWP_TYPE_BITS: u32 = 5;
/// Swap types of device-private entries: the last types below the PTE
/// marker type (31): `SWP_DEVICE_WRITE` 28, `SWP_DEVICE_READ` 29
/// (`SWP_DEVICE_EXCLUSIVE` 30), whatever the other options.
const SWP_DEVICE_WRITE: u64 = 28;
const SWP_DEVICE_READ: u64 = 29;

/// Reads where each of `pages` pages at `addr` is from /proc/self/pagemap.
fn read_locations(addr: usize, pages: usize) -> Result<Vec<PageLocation>> {
    const PAGEMAP: &str = "/proc/self/pagemap";
    let pagemap = File::open(PAGEMAP).with_context(|| format!("open {PAGEMAP}"))?;
    let mut raw = vec![0u8; pages * 8];
    let offset = (addr / PAGE_SIZE) as u64 * 8;
    pagemap
        .read_exact_at(&mut raw, offset)
        .with_context(|| format!("pread {} bytes at {offset:#x} of {PAGEMAP}", raw.len()))?;
    Ok(raw
        .chunks_exact(8)
        .map(|bytes| {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            PageLocation::decode(u64::from_ne_bytes(word))
        })
        .collect())
}

/// True when a SNAPSHOT byte says the page is device-private memory of the
/// device asked.
fn is_device_local(perm: u8) -> bool {
    perm != hmm::PROT_ERROR && perm & 0xf0 == hmm::PROT_DEV_PRIVATE_LOCAL
}

/// A SNAPSHOT byte in words, e.g. `DEV_PRIVATE_LOCAL|W`.
fn describe_perm(perm: u8) -> String {
    if perm == hmm::PROT_ERROR {
        return "ERROR".to_owned();
    }
    let place = match perm & 0xf0 {
        0x00 => "SYS",
        hmm::PROT_ZERO => "ZERO",
        hmm::PROT_DEV_PRIVATE_LOCAL => "DEV_PRIVATE_LOCAL",
        hmm::PROT_DEV_PRIVATE_REMOTE => "DEV_PRIVATE_REMOTE",
        hmm::PROT_DEV_COHERENT_LOCAL => "DEV_COHERENT_LOCAL",
        hmm::PROT_DEV_COHERENT_REMOTE => "DEV_COHERENT_REMOTE",
        _ => "?",
    };
    let access = if perm & hmm::PROT_WRITE != 0 {
        "|W"
    } else if perm & hmm::PROT_READ != 0 {
        "|R"
    } else {
        "|NONE"
    };
    format!("{place}{access}")
}

/// An ioctl outcome for the notes.
fn describe_migrate(result: &io::Result<(hmm::DmirrorCmd, Vec<u8>)>) -> String {
    match result {
        Ok((cmd, _)) => format!("ok, cpages {}", cmd.cpages),
        // The driver reads the range back after migrating and fails with
        // ENOENT at the first page it has no copy of.
        Err(err) => format!("{err} (the driver's read-back stops at a page left in RAM)"),
    }
}

/// The HMM test driver's ioctl interface (`lib/test_hmm_uapi.h`).
mod hmm {
    /// `struct hmm_dmirror_cmd`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub struct DmirrorCmd {
        /// (in) user address the device reads/writes.
        pub addr: u64,
        /// (in) user address data is copied to/from.
        pub ptr: u64,
        /// (in) pages.
        pub npages: u64,
        /// (out) pages copied.
        pub cpages: u64,
        /// (out) device page faults.
        pub faults: u64,
    }

    // <asm-generic/ioctl.h>: nr 8 bits, type 8, size 14, dir 2.
    const IOC_NRSHIFT: u64 = 0;
    const IOC_TYPESHIFT: u64 = 8;
    const IOC_SIZESHIFT: u64 = 16;
    const IOC_DIRSHIFT: u64 = 30;
    const IOC_WRITE: u64 = 1;
    const IOC_READ: u64 = 2;

    /// `_IOWR(ty, nr, struct hmm_dmirror_cmd)`.
    const fn iowr(ty: u8, nr: u8) -> u64 {
        ((IOC_READ | IOC_WRITE) << IOC_DIRSHIFT)
            | ((size_of::<DmirrorCmd>() as u64) << IOC_SIZESHIFT)
            | ((ty as u64) << IOC_TYPESHIFT)
            | ((nr as u64) << IOC_NRSHIFT)
    }

    pub const READ: u64 = iowr(b'H', 0x00);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const WRITE: u64 = iowr(b'H', 0x01);
    pub const MIGRATE_TO_DEV: u64 = iowr(b'H', 0x02);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const MIGRATE_TO_SYS: u64 = iowr(b'H', 0x03);
    pub const SNAPSHOT: u64 = iowr(b'H', 0x04);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const EXCLUSIVE: u64 = iowr(b'H', 0x05);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const CHECK_EXCLUSIVE: u64 = iowr(b'H', 0x06);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const RELEASE: u64 = iowr(b'H', 0x07);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const FLAGS: u64 = iowr(b'H', 0x08);

    // SNAPSHOT bytes.
    pub const PROT_ERROR: u8 = 0xff;
    pub const PROT_READ: u8 = 0x01;
    pub const PROT_WRITE: u8 = 0x02;
    pub const PROT_ZERO: u8 = 0x10;
    pub const PROT_DEV_PRIVATE_LOCAL: u8 = 0x20;
    pub const PROT_DEV_PRIVATE_REMOTE: u8 = 0x30;
    pub const PROT_DEV_COHERENT_LOCAL: u8 = 0x40;
    pub const PROT_DEV_COHERENT_REMOTE: u8 = 0x50;
}

/// An open HMM test driver device. Closing it evicts every device page
/// still in use back to RAM (the driver scans its whole chunk).
#[derive(Debug)]
struct Dmirror {
    file: File,
    path: PathBuf,
}

impl Dmirror {
    fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| {
                format!(
                    "open {} (needs a kernel with CONFIG_TEST_HMM, e.g. the lab's hmm-7.2)",
                    path.display()
                )
            })?;
        Ok(Dmirror {
            file,
            path: path.to_owned(),
        })
    }

    /// One ioctl with `cmd`, retried on EINTR; returns the updated command.
    fn ioctl(&self, request: u64, mut cmd: hmm::DmirrorCmd) -> io::Result<hmm::DmirrorCmd> {
        loop {
            // SAFETY: `cmd` is a valid hmm_dmirror_cmd the driver reads and
            // writes; the buffers it points at were sized by the caller.
            let rc = unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    request as _,
                    &mut cmd as *mut hmm::DmirrorCmd,
                )
            };
            if rc == 0 {
                return Ok(cmd);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// An ioctl over the whole of `mapping` with a buffer of `out_len` bytes
    /// for the driver's output.
    fn over(
        &self,
        request: u64,
        mapping: &Mapping,
        out_len: usize,
    ) -> io::Result<(hmm::DmirrorCmd, Vec<u8>)> {
        let mut out = vec![0u8; out_len];
        let cmd = hmm::DmirrorCmd {
            addr: mapping.addr() as u64,
            ptr: out.as_mut_ptr() as u64,
            npages: (mapping.len() / PAGE_SIZE) as u64,
            ..hmm::DmirrorCmd::default()
        };
        let cmd = self.ioctl(request, cmd)?;
        Ok((cmd, out))
    }

    /// HMM_DMIRROR_MIGRATE_TO_DEV; the buffer holds the device's copy.
    fn migrate_to_dev(&self, mapping: &Mapping) -> io::Result<(hmm::DmirrorCmd, Vec<u8>)> {
        self.over(hmm::MIGRATE_TO_DEV, mapping, mapping.len())
    }

    /// HMM_DMIRROR_READ: the device reads the buffer.
    fn read(&self, mapping: &Mapping) -> io::Result<(hmm::DmirrorCmd, Vec<u8>)> {
        self.over(hmm::READ, mapping, mapping.len())
    }

    /// HMM_DMIRROR_SNAPSHOT: one `HMM_DMIRROR_PROT_*` byte per page.
    fn snapshot(&self, mapping: &Mapping) -> Result<Vec<u8>> {
        let pages = mapping.len() / PAGE_SIZE;
        let (cmd, perms) = self
            .over(hmm::SNAPSHOT, mapping, pages)
            .context("HMM_DMIRROR_SNAPSHOT")?;
        ensure!(
            cmd.cpages == pages as u64,
            "HMM_DMIRROR_SNAPSHOT covered {} of {pages} pages",
            cmd.cpages
        );
        Ok(perms)
    }

    /// Closes the device (mark `device_closed`).
    fn close(self, run: &mut Run) -> Result<()> {
        let path = self.path.clone();
        drop(self);
        run.marks
            .mark("device_closed")
            .with_context(|| format!("after closing {}", path.display()))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Steps shared by the scenarios
// ---------------------------------------------------------------------------

/// Creates the scratch file, maps it shared, touches every page (mark
/// `touched`) and records the pages' PFNs in `run`.
fn prepare_dax_pages(cli: &Cli, run: &mut Run) -> Result<(ScratchFile, Mapping)> {
    let pages = usize::try_from(cli.pages).context("--pages does not fit in usize")?;
    let len = pages
        .checked_mul(PAGE_SIZE)
        .context("--pages is too large")?;
    let file = ScratchFile::create(&cli.dir, len)?;
    match is_dax(file.path()) {
        Ok(Some(true)) => run.note(format!("{} is DAX", file.path().display())),
        Ok(Some(false)) => run.note(format!(
            "{} is NOT DAX: its pages are not ZONE_DEVICE pages",
            file.path().display()
        )),
        Ok(None) => run.note("the kernel does not report STATX_ATTR_DAX".to_owned()),
        Err(err) => run.note(format!("DAX check failed: {err:#}")),
    }

    let mut mapping = Mapping::shared_file(file.file(), len)
        .with_context(|| format!("mapping {}", file.path().display()))?;
    fill_pattern(mapping.as_mut_slice());
    run.marks.mark("touched")?;

    run.pfns = read_pfns(mapping.addr(), pages)?;
    Ok((file, mapping))
}

/// Drains `len` bytes from the pipe (marks `drain_start`, `drain_end`) and
/// checks them against the pattern. Returns the `drain_start` mark.
fn drain_and_check(pipe: &Pipe, len: usize, run: &mut Run) -> Result<u64> {
    let drain_start = run.marks.mark("drain_start")?;
    let data = pipe.drain(len)?;
    run.marks.mark("drain_end")?;
    check_pattern(&data).context("data read from the pipe")?;
    Ok(drain_start)
}

/// The value of the pattern byte at `offset` of page `page`.
///
/// The first 8 bytes of a page hold its index, so no two pages are alike;
/// the rest is a page-dependent ramp.
fn pattern_byte(page: usize, offset: usize) -> u8 {
    const MAGIC: u64 = 0x7265_6677_6174_6368; // "refwatch"
    if offset < 8 {
        ((page as u64) ^ MAGIC).to_le_bytes()[offset]
    } else {
        (page as u8).wrapping_mul(37).wrapping_add(offset as u8) ^ 0xa5
    }
}

/// Writes the pattern into every byte of `buf`, page by page.
fn fill_pattern(buf: &mut [u8]) {
    for (page, chunk) in buf.chunks_mut(PAGE_SIZE).enumerate() {
        for (offset, byte) in chunk.iter_mut().enumerate() {
            *byte = pattern_byte(page, offset);
        }
    }
}

/// Fails at the first byte of `data` that differs from the pattern.
fn check_pattern(data: &[u8]) -> Result<()> {
    for (page, chunk) in data.chunks(PAGE_SIZE).enumerate() {
        for (offset, &found) in chunk.iter().enumerate() {
            let expected = pattern_byte(page, offset);
            ensure!(
                found == expected,
                "data mismatch in page {page} at offset {offset}: expected {expected:#04x}, found {found:#04x}"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Marks and the report
// ---------------------------------------------------------------------------

/// Timestamps of the scenario's steps, in the order they were taken; shared
/// with the truncate thread.
#[derive(Debug, Clone, Default)]
struct Marks(Arc<Mutex<Vec<(&'static str, u64)>>>);

impl Marks {
    /// Stamps `name` with CLOCK_MONOTONIC, prints it and returns the stamp.
    fn mark(&self, name: &'static str) -> Result<u64> {
        let ns = monotonic_ns().with_context(|| format!("clock_gettime for mark {name}"))?;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, ns));
        println!("workload: {name} {ns}");
        Ok(ns)
    }

    /// A copy of the marks taken so far.
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a run collects for its report.
#[derive(Debug, Default)]
struct Run {
    marks: Marks,
    pfns: Vec<u64>,
    notes: Vec<String>,
    /// Facts a check needs beyond the PFNs (`held_ram_pfn`, `child_pid`).
    facts: BTreeMap<&'static str, u64>,
}

impl Run {
    /// Adds a note to the report and echoes it on stderr.
    fn note(&mut self, note: String) {
        eprintln!("workload note: {note}");
        self.notes.push(note);
    }
}

/// The JSON report written to `--out`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    scenario: &'a str,
    pages: u32,
    hold_secs: u64,
    pfns: &'a [u64],
    marks: MarkList<'a>,
    ok: bool,
    error: Option<String>,
    notes: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    facts: &'a BTreeMap<&'static str, u64>,
}

/// Serialises marks as a JSON object whose keys keep the order of the steps.
#[derive(Debug)]
struct MarkList<'a>(&'a [(&'static str, u64)]);

impl Serialize for MarkList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, ns) in self.0 {
            map.serialize_entry(name, ns)?;
        }
        map.end()
    }
}

/// Writes `report` to a temporary file beside `out`, syncs it, then renames
/// it over `out`, so readers never see half a report.
fn write_json_atomically(out: &Path, report: &impl Serialize) -> Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("--out {} has no file name", out.display()))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(".tmp");
    let tmp = out.with_file_name(tmp_name);

    let mut json = serde_json::to_vec_pretty(report).context("serialise the report")?;
    json.push(b'\n');
    let mut file = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(&json)
        .with_context(|| format!("write {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, out).with_context(|| format!("rename {} to {}", tmp.display(), out.display()))
}

// ---------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).map_err(io::Error::other)?;
    let nanos = u64::try_from(ts.tv_nsec).map_err(io::Error::other)?;
    Ok(secs * 1_000_000_000 + nanos)
}

/// The monotonic time `secs` seconds after `start_ns`.
fn deadline_after(start_ns: u64, secs: u64) -> u64 {
    start_ns.saturating_add(secs.saturating_mul(1_000_000_000))
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns`.
fn sleep_until(deadline_ns: u64) -> Result<()> {
    loop {
        let now = monotonic_ns().context("clock_gettime while holding")?;
        if now >= deadline_ns {
            return Ok(());
        }
        thread::sleep(Duration::from_nanos(deadline_ns - now));
    }
}

// ---------------------------------------------------------------------------
// System helpers
// ---------------------------------------------------------------------------

/// Fails unless the kernel's page size is the 4 KiB the scenarios assume.
fn check_page_size() -> Result<()> {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    ensure!(
        usize::try_from(size).ok() == Some(PAGE_SIZE),
        "page size is {size}, the workload needs {PAGE_SIZE}"
    );
    Ok(())
}

/// Whether `path` is a DAX file according to statx; `None` when the kernel
/// does not report the DAX attribute.
fn is_dax(path: &Path) -> Result<Option<bool>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: statx is plain old data, for which all zero bytes are valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stx` is writable; both outlive
    // the call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("statx {}", path.display()));
    }
    let dax = libc::STATX_ATTR_DAX as u64;
    if stx.stx_attributes_mask & dax == 0 {
        return Ok(None);
    }
    Ok(Some(stx.stx_attributes & dax != 0))
}

/// The scratch file whose pages the scenarios use. It is deleted by
/// [`ScratchFile::remove`], or on drop if a scenario failed on the way.
#[derive(Debug)]
struct ScratchFile {
    file: File,
    guard: RemoveOnDrop,
}

/// Deletes a path on drop unless disarmed.
#[derive(Debug)]
struct RemoveOnDrop {
    path: PathBuf,
    armed: bool,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the scenario already failed with a better error.
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl ScratchFile {
    /// Creates a new file of `len` bytes in `dir`, writing every byte with
    /// pwrite and fsyncing, so that its blocks are allocated before mmap.
    fn create(dir: &Path, len: usize) -> Result<Self> {
        let path = dir.join(format!("refwatch-workload-{}.dat", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        let scratch = ScratchFile {
            file,
            guard: RemoveOnDrop { path, armed: true },
        };
        let (file, path) = (&scratch.file, &scratch.guard.path);

        let zeros = vec![0u8; len.min(1 << 20)];
        let mut offset = 0;
        while offset < len {
            let chunk = &zeros[..zeros.len().min(len - offset)];
            file.write_all_at(chunk, offset as u64).with_context(|| {
                format!(
                    "pwrite {} bytes at {offset} to {}",
                    chunk.len(),
                    path.display()
                )
            })?;
            offset += chunk.len();
        }
        file.sync_all()
            .with_context(|| format!("fsync {}", path.display()))?;
        let blocks = file
            .metadata()
            .with_context(|| format!("fstat {}", path.display()))?
            .blocks();
        ensure!(
            blocks.saturating_mul(512) >= len as u64,
            "{} has only {blocks} 512-byte blocks allocated for {len} bytes",
            path.display()
        );
        Ok(scratch)
    }

    /// The open file.
    fn file(&self) -> &File {
        &self.file
    }

    /// Where the file is.
    fn path(&self) -> &Path {
        &self.guard.path
    }

    /// Closes and deletes the file.
    fn remove(self) -> Result<()> {
        let ScratchFile { file, mut guard } = self;
        drop(file);
        guard.armed = false;
        fs::remove_file(&guard.path).with_context(|| format!("delete {}", guard.path.display()))
    }
}

/// A memory mapping, unmapped by [`Mapping::unmap`] or on drop.
#[derive(Debug)]
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    /// Maps the first `len` bytes of `file` read/write, MAP_SHARED.
    fn shared_file(file: &File, len: usize) -> Result<Self> {
        Self::map(len, libc::MAP_SHARED, file.as_raw_fd())
            .with_context(|| format!("mmap {len} bytes MAP_SHARED"))
    }

    /// Maps `len` bytes of page-aligned anonymous memory (an O_DIRECT buffer).
    fn anonymous(len: usize) -> Result<Self> {
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
            .with_context(|| format!("mmap {len} anonymous bytes"))
    }

    fn map(len: usize, flags: libc::c_int, fd: libc::c_int) -> io::Result<Self> {
        // SAFETY: a fresh mapping at an address of the kernel's choosing
        // cannot alias any memory Rust knows about.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr, len })
    }

    /// Start address of the mapping.
    fn addr(&self) -> usize {
        self.addr as usize
    }

    /// Length of the mapping in bytes.
    fn len(&self) -> usize {
        self.len
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes until `self` is gone,
        // and only this process (which created the file) writes to it.
        unsafe { std::slice::from_raw_parts(self.addr.cast::<u8>(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.addr.cast::<u8>(), self.len) }
    }

    /// munmaps the mapping.
    fn unmap(mut self) -> Result<()> {
        let (addr, len) = (self.addr, self.len);
        self.addr = ptr::null_mut();
        // SAFETY: `addr`/`len` came from mmap, and `self`, the only owner of
        // slices into the mapping, is consumed.
        let rc = unsafe { libc::munmap(addr, len) };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("munmap {len} bytes at {addr:p}"));
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if !self.addr.is_null() {
            // SAFETY: as in `unmap`; the result is ignored because this only
            // runs when a scenario failed.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }
}

/// A decoded entry of /proc/<pid>/pagemap (Documentation/admin-guide/mm/pagemap.rst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PagemapEntry {
    present: bool,
    swapped: bool,
    /// Bits 0-54; zero for unprivileged readers.
    pfn: u64,
}

impl PagemapEntry {
    fn decode(raw: u64) -> Self {
        PagemapEntry {
            present: raw & PAGEMAP_PRESENT != 0,
            swapped: raw & PAGEMAP_SWAPPED != 0,
            pfn: raw & PAGEMAP_PFN_MASK,
        }
    }

    /// The PFN of page `index`, or why there is none.
    fn pfn_of_page(self, index: usize) -> Result<u64> {
        ensure!(
            self.present,
            "page {index} is not present in pagemap (swapped: {})",
            self.swapped
        );
        ensure!(
            self.pfn != 0,
            "page {index} has PFN 0 in pagemap (reading PFNs needs CAP_SYS_ADMIN)"
        );
        Ok(self.pfn)
    }
}

/// Reads the PFNs of `pages` pages mapped at `addr` from /proc/self/pagemap.
fn read_pfns(addr: usize, pages: usize) -> Result<Vec<u64>> {
    const PAGEMAP: &str = "/proc/self/pagemap";
    let pagemap = File::open(PAGEMAP).with_context(|| format!("open {PAGEMAP}"))?;
    let mut raw = vec![0u8; pages * 8];
    let offset = (addr / PAGE_SIZE) as u64 * 8;
    pagemap
        .read_exact_at(&mut raw, offset)
        .with_context(|| format!("pread {} bytes at {offset:#x} of {PAGEMAP}", raw.len()))?;
    raw.chunks_exact(8)
        .enumerate()
        .map(|(index, bytes)| {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            PagemapEntry::decode(u64::from_ne_bytes(word)).pfn_of_page(index)
        })
        .collect()
}

/// The pipe capacity to ask F_SETPIPE_SZ for so that `bytes` fit: at least one
/// page, rounded up to a power of two as the kernel does.
fn pipe_size_for(bytes: usize) -> Option<usize> {
    bytes.max(PAGE_SIZE).checked_next_power_of_two()
}

/// The (offset, length) spans for the next vmsplice call over a buffer of
/// `len` bytes of which `done` were spliced already: one span per page (the
/// first one possibly the tail of a page), at most `max` spans.
fn splice_spans(len: usize, done: usize, max: usize) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = done;
    while offset < len && spans.len() < max {
        let page_end = (offset / PAGE_SIZE + 1) * PAGE_SIZE;
        let end = page_end.min(len);
        spans.push((offset, end - offset));
        offset = end;
    }
    spans
}

/// A non-blocking pipe, large enough for the pages it will carry.
#[derive(Debug)]
struct Pipe {
    read: File,
    write: File,
}

impl Pipe {
    /// Creates a pipe and raises its capacity with F_SETPIPE_SZ so that
    /// `bytes` fit. Both ends are non-blocking, so a mistake fails instead of
    /// hanging.
    fn for_bytes(bytes: usize, run: &mut Run) -> Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("pipe2");
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors owned by
        // nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let pipe = Pipe {
            read: File::from(read),
            write: File::from(write),
        };

        let wanted = pipe_size_for(bytes).context("pipe size overflows")?;
        let arg = libc::c_int::try_from(wanted)
            .with_context(|| format!("pipe size {wanted} does not fit in an int"))?;
        // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory.
        let size = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_SETPIPE_SZ, arg) };
        if size < 0 {
            return Err(io::Error::last_os_error()).with_context(|| {
                format!(
                    "fcntl(F_SETPIPE_SZ, {wanted}) (above /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE)"
                )
            });
        }
        ensure!(
            usize::try_from(size).is_ok_and(|size| size >= bytes),
            "F_SETPIPE_SZ gave {size} bytes, {bytes} needed"
        );
        run.note(format!("pipe capacity {size} bytes"));
        Ok(pipe)
    }

    /// vmsplices the whole mapping into the pipe, one iovec per page,
    /// without SPLICE_F_GIFT: the pipe takes a reference on every page.
    fn vmsplice_from(&self, mapping: &Mapping) -> Result<()> {
        self.vmsplice_range(mapping.addr(), mapping.len())
    }

    /// vmsplices `len` bytes at `addr` (inside a live mapping of ours) into
    /// the pipe, one iovec per page.
    fn vmsplice_range(&self, addr: usize, len: usize) -> Result<()> {
        let mut done = 0;
        while done < len {
            let iovecs: Vec<libc::iovec> = splice_spans(len, done, MAX_IOVECS)
                .into_iter()
                .map(|(offset, span)| libc::iovec {
                    iov_base: (addr + offset) as *mut libc::c_void,
                    iov_len: span,
                })
                .collect();
            done += self.vmsplice_once(&iovecs, done, len)?;
        }
        Ok(())
    }

    /// One non-blocking vmsplice of `iovecs` (each inside a mapping of the
    /// caller's that stays mapped for the call); the bytes it moved, at
    /// least one. `done` and `total` only word the errors.
    fn vmsplice_once(&self, iovecs: &[libc::iovec], done: usize, total: usize) -> Result<usize> {
        // SAFETY: see above; vmsplice only reads the iovec array.
        let rc = unsafe {
            libc::vmsplice(
                self.write.as_raw_fd(),
                iovecs.as_ptr(),
                iovecs.len(),
                libc::SPLICE_F_NONBLOCK,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("vmsplice after {done} of {total} bytes"));
        }
        ensure!(
            rc > 0,
            "vmsplice moved nothing after {done} of {total} bytes"
        );
        Ok(rc as usize)
    }

    /// A blocking pipe for messages between a parent and its child.
    fn blocking() -> Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("pipe2");
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors owned by
        // nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read: File::from(read),
            write: File::from(write),
        })
    }

    /// Writes one message.
    fn write_u64(&self, value: u64) -> io::Result<()> {
        (&self.write).write_all(&value.to_le_bytes())
    }

    /// Reads one message.
    fn read_u64(&self) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        (&self.read).read_exact(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// True when the read end becomes readable within `timeout`.
    fn wait_readable(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Reads exactly `len` bytes out of the pipe.
    fn drain(&self, len: usize) -> Result<Vec<u8>> {
        let mut data = vec![0u8; len];
        (&self.read)
            .read_exact(&mut data)
            .with_context(|| format!("read {len} bytes from the pipe"))?;
        Ok(data)
    }
}

// ---------------------------------------------------------------------------
// bench-put: the load of `cargo xtask bench overhead`
// ---------------------------------------------------------------------------

/// `workload bench-put`: a loop that does little but take and drop page
/// references, through the kernel paths refwatch hooks.
///
/// One iteration `vmsplice`s 8 bytes of each of `--pages` pages into a pipe
/// (GUP-fast takes one reference per page: `try_grab_folio_fast` on 6.10+)
/// and reads the pipe empty (each pipe buffer's release drops it again:
/// `put_page`, which for fs-dax pages before 6.15 goes through
/// `__put_devmap_managed_folio_refs`). Only 8 bytes per page are copied, so
/// the references dominate the cost. On `dax` pages (a `MAP_SHARED` file in
/// `--dir`, which must be DAX) refwatch's hooks fire on both sides; on `anon`
/// pages the GUP hook is entered and filtered out as not ZONE_DEVICE, and
/// the put of a still-mapped anonymous page reaches no hooked function.
///
/// ops = references taken + references dropped (2 per page and iteration).
/// Writes `{target, secs, ops, ops_per_sec, …}` to `--out`.
mod bench_put {
    use super::*;

    /// Bytes of each page that go through the pipe.
    const SPAN: usize = 8;

    /// Command line of `workload bench-put`.
    #[derive(Debug, Parser)]
    #[command(
        name = "workload bench-put",
        about = "Take and drop page references in a loop (refwatch's overhead benchmark)"
    )]
    pub(super) struct BenchPutCli {
        /// Ordinary anonymous pages, or fs-dax pages of a file in --dir.
        #[arg(long, value_enum)]
        pub target: Target,
        /// Seconds to run.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600))]
        pub secs: u64,
        /// Where to write the JSON result.
        #[arg(long)]
        pub out: PathBuf,
        /// Directory on a DAX filesystem for `--target dax`.
        #[arg(long, default_value = "/mnt/dax")]
        pub dir: PathBuf,
        /// Pages per iteration (one vmsplice call: at most 1024).
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=MAX_IOVECS as i64))]
        pub pages: u32,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
    pub(super) enum Target {
        /// Ordinary pages freed one by one: pipe buffers filled by write(2)
        /// and drained by read(2), each read dropping the last reference of
        /// a freshly allocated page (`__folio_put`, which refwatch does not hook).
        Free,
        /// Private anonymous memory (not ZONE_DEVICE: refwatch filters it out).
        Anon,
        /// Ordinary pages faulted in and unmapped: munmap frees them in
        /// batches (`folios_put_refs`, hooked on 6.15+ and filtered).
        Unmap,
        /// A MAP_SHARED file on a DAX filesystem (fs-dax ZONE_DEVICE pages).
        Dax,
        /// `unmap` on fs-dax pages: a DAX file's pages mapped, faulted in and
        /// unmapped (on 6.15+ each fault takes a page reference and the
        /// munmap drops it: two events per page; before, the mappings take
        /// none).
        DaxUnmap,
    }

    impl Target {
        fn name(self) -> &'static str {
            match self {
                Target::Free => "free",
                Target::Anon => "anon",
                Target::Unmap => "unmap",
                Target::Dax => "dax",
                Target::DaxUnmap => "dax-unmap",
            }
        }
    }

    /// The JSON written to `--out`.
    #[derive(Debug, Serialize)]
    pub(super) struct BenchResult {
        pub target: &'static str,
        /// Measured duration of the loop.
        pub secs: f64,
        pub requested_secs: u64,
        pub pages: u32,
        pub iterations: u64,
        /// Page references taken plus page references dropped.
        pub ops: u64,
        pub ops_per_sec: f64,
        pub notes: Vec<String>,
    }

    impl BenchResult {
        fn new(cli: &BenchPutCli, iterations: u64, ops: u64, elapsed_ns: u64, notes: Run) -> Self {
            let secs = elapsed_ns as f64 / 1e9;
            Self {
                target: cli.target.name(),
                secs,
                requested_secs: cli.secs,
                pages: cli.pages,
                iterations,
                ops,
                ops_per_sec: ops as f64 / secs,
                notes: notes.notes,
            }
        }
    }

    pub(super) fn main(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
        let cli = BenchPutCli::parse_from(std::iter::once("workload bench-put".into()).chain(args));
        let result =
            run(&cli).and_then(|result| write_json_atomically(&cli.out, &result).map(|()| result));
        match result {
            Ok(r) => {
                println!(
                    "bench-put: target {}, {} pages, {} iterations, {} ops in {:.3} s: {:.0} ops/s",
                    r.target, r.pages, r.iterations, r.ops, r.secs, r.ops_per_sec
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                println!("workload: FAILED: {err:#}");
                ExitCode::FAILURE
            }
        }
    }

    fn run(cli: &BenchPutCli) -> Result<BenchResult> {
        check_page_size()?;
        let mut notes = Run::default();
        let pages = usize::try_from(cli.pages).context("--pages does not fit in usize")?;
        let len = pages * PAGE_SIZE;
        match cli.target {
            Target::Free => return run_free(cli, pages, notes),
            Target::Unmap => return run_unmap(cli, pages, notes),
            Target::DaxUnmap => return run_dax_unmap(cli, pages, notes),
            _ => {}
        }
        // The file (for dax) must outlive the mapping.
        let (file, mut mapping) = match cli.target {
            Target::Free | Target::Unmap | Target::DaxUnmap => unreachable!("handled above"),
            Target::Anon => {
                let mapping = Mapping::anonymous(len)?;
                // Base pages, as the fs-dax file has.
                // SAFETY: advice on our own mapping; no memory is accessed.
                if unsafe { libc::madvise(mapping.addr, len, libc::MADV_NOHUGEPAGE) } != 0 {
                    notes.note(format!(
                        "madvise(MADV_NOHUGEPAGE): {}",
                        io::Error::last_os_error()
                    ));
                }
                (None, mapping)
            }
            Target::Dax => {
                let file = dax_file(&cli.dir, len, &mut notes)?;
                let mapping = Mapping::shared_file(file.file(), len)
                    .with_context(|| format!("mapping {}", file.path().display()))?;
                (Some(file), mapping)
            }
        };
        fill_pattern(mapping.as_mut_slice());
        let pipe = Pipe::for_bytes(len, &mut notes)?;
        let iovecs: Vec<libc::iovec> = (0..pages)
            .map(|i| libc::iovec {
                iov_base: (mapping.addr() + i * PAGE_SIZE) as *mut libc::c_void,
                iov_len: SPAN,
            })
            .collect();
        let mut buf = vec![0u8; pages * SPAN];

        let (iterations, elapsed_ns) = timed(cli.secs, |iteration| {
            splice_all(&pipe, &iovecs)?;
            read_all(&pipe, &mut buf)?;
            if iteration == 0 {
                check_spans(&buf)?;
            }
            Ok(())
        })?;
        check_spans(&buf)?;
        drop(pipe);
        mapping.unmap()?;
        if let Some(file) = file {
            file.remove()?;
        }

        // A reference taken and one dropped per page and iteration.
        let ops = iterations * pages as u64 * 2;
        Ok(BenchResult::new(cli, iterations, ops, elapsed_ns, notes))
    }

    /// `--target free`: whole pages written into the pipe and read back; the
    /// pipe allocates a page per buffer and frees it when it is read (one
    /// page it keeps for reuse). One op is one page freed.
    fn run_free(cli: &BenchPutCli, pages: usize, mut notes: Run) -> Result<BenchResult> {
        let len = pages * PAGE_SIZE;
        let src: Vec<u8> = (0..len)
            .map(|o| pattern_byte(o / PAGE_SIZE, o % PAGE_SIZE))
            .collect();
        let mut buf = vec![0u8; len];
        let pipe = Pipe::for_bytes(len, &mut notes)?;
        let (iterations, elapsed_ns) = timed(cli.secs, |iteration| {
            write_all(&pipe, &src)?;
            read_all(&pipe, &mut buf)?;
            if iteration == 0 {
                ensure!(buf == src, "the pipe returned other data than was written");
            }
            Ok(())
        })?;
        ensure!(buf == src, "the pipe returned other data than was written");
        let ops = iterations * pages as u64;
        Ok(BenchResult::new(cli, iterations, ops, elapsed_ns, notes))
    }

    /// `--target unmap`: map `pages` anonymous base pages, write one byte of
    /// each (a fault allocates it), unmap them all (the unmap frees them in
    /// batches). One op is one page freed.
    fn run_unmap(cli: &BenchPutCli, pages: usize, mut notes: Run) -> Result<BenchResult> {
        let len = pages * PAGE_SIZE;
        let (iterations, elapsed_ns) = timed(cli.secs, |iteration| {
            let mut mapping = Mapping::anonymous(len)?;
            // Base pages, as the other targets have.
            // SAFETY: advice on our own mapping; no memory is accessed.
            let rc = unsafe { libc::madvise(mapping.addr, len, libc::MADV_NOHUGEPAGE) };
            if rc != 0 && iteration == 0 {
                notes.note(format!(
                    "madvise(MADV_NOHUGEPAGE): {}",
                    io::Error::last_os_error()
                ));
            }
            let bytes = mapping.as_mut_slice();
            for p in 0..pages {
                bytes[p * PAGE_SIZE] = pattern_byte(p, 0);
            }
            ensure!(
                (0..pages).all(|p| bytes[p * PAGE_SIZE] == pattern_byte(p, 0)),
                "a page lost what was written to it"
            );
            mapping.unmap()
        })?;
        let ops = iterations * pages as u64;
        Ok(BenchResult::new(cli, iterations, ops, elapsed_ns, notes))
    }

    /// `--target dax-unmap`: `unmap` on a DAX file's pages: map `pages`
    /// pages of it shared, write one byte of each (a fault maps it), unmap
    /// them all. One op is one page mapped and unmapped.
    fn run_dax_unmap(cli: &BenchPutCli, pages: usize, mut notes: Run) -> Result<BenchResult> {
        let len = pages * PAGE_SIZE;
        let file = dax_file(&cli.dir, len, &mut notes)?;
        let (iterations, elapsed_ns) = timed(cli.secs, |iteration| {
            let mut mapping = Mapping::shared_file(file.file(), len)
                .with_context(|| format!("mapping {}", file.path().display()))?;
            // A byte that changes from one iteration to the next.
            let at = iteration as usize % PAGE_SIZE;
            let bytes = mapping.as_mut_slice();
            for p in 0..pages {
                bytes[p * PAGE_SIZE] = pattern_byte(p, at);
            }
            ensure!(
                (0..pages).all(|p| bytes[p * PAGE_SIZE] == pattern_byte(p, at)),
                "a page lost what was written to it"
            );
            mapping.unmap()
        })?;
        file.remove()?;
        let ops = iterations * pages as u64;
        Ok(BenchResult::new(cli, iterations, ops, elapsed_ns, notes))
    }

    /// A scratch file of `len` bytes in `dir`, which must be on a DAX
    /// filesystem (its pages are then fs-dax ZONE_DEVICE pages).
    fn dax_file(dir: &Path, len: usize, notes: &mut Run) -> Result<ScratchFile> {
        let file = ScratchFile::create(dir, len)?;
        match is_dax(file.path())? {
            Some(true) => {}
            Some(false) => bail!(
                "{} is not DAX: its pages would not be ZONE_DEVICE pages (mount with -o dax)",
                file.path().display()
            ),
            None => notes.note("the kernel does not report STATX_ATTR_DAX".to_owned()),
        }
        Ok(file)
    }

    /// Runs `step` (given its iteration number) until `secs` seconds have
    /// passed; returns the iterations done and the nanoseconds they took.
    fn timed(secs: u64, mut step: impl FnMut(u64) -> Result<()>) -> Result<(u64, u64)> {
        let start = monotonic_ns().context("clock_gettime")?;
        let deadline = deadline_after(start, secs);
        let mut iterations = 0u64;
        loop {
            step(iterations)?;
            iterations += 1;
            let now = monotonic_ns().context("clock_gettime")?;
            if now >= deadline {
                return Ok((iterations, now.saturating_sub(start)));
            }
        }
    }

    /// Writes all of `data` into the (large enough) pipe.
    fn write_all(pipe: &Pipe, data: &[u8]) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            let n = (&pipe.write)
                .write(&data[done..])
                .with_context(|| format!("write the pipe after {done} of {} bytes", data.len()))?;
            ensure!(
                n > 0,
                "the pipe took nothing after {done} of {} bytes",
                data.len()
            );
            done += n;
        }
        Ok(())
    }

    /// vmsplices every span into the pipe (one reference per page).
    fn splice_all(pipe: &Pipe, iovecs: &[libc::iovec]) -> Result<()> {
        let total = iovecs.len() * SPAN;
        let mut done = 0;
        while done < total {
            // A partial vmsplice (not expected: the pipe has a slot per
            // page) resumes where it stopped.
            let rest: Vec<libc::iovec>;
            let batch = if done == 0 {
                iovecs
            } else {
                let (first, skip) = (done / SPAN, done % SPAN);
                rest = iovecs[first..]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let skip = if i == 0 { skip } else { 0 };
                        libc::iovec {
                            iov_base: (v.iov_base as usize + skip) as *mut libc::c_void,
                            iov_len: v.iov_len - skip,
                        }
                    })
                    .collect();
                &rest
            };
            // Every iovec lies inside the caller's live mapping.
            done += pipe.vmsplice_once(batch, done, total)?;
        }
        Ok(())
    }

    /// Reads the pipe empty into `buf` (dropping the pipe's references).
    fn read_all(pipe: &Pipe, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = (&pipe.read)
                .read(&mut buf[done..])
                .with_context(|| format!("read the pipe after {done} of {} bytes", buf.len()))?;
            ensure!(n > 0, "the pipe ended after {done} of {} bytes", buf.len());
            done += n;
        }
        Ok(())
    }

    /// Checks that span `i` of `buf` holds the start of page `i`.
    fn check_spans(buf: &[u8]) -> Result<()> {
        for (page, span) in buf.chunks(SPAN).enumerate() {
            for (offset, &found) in span.iter().enumerate() {
                ensure!(
                    found == pattern_byte(page, offset),
                    "the pipe carried wrong data for page {page} at offset {offset}"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_entry_decodes_present_pfn() {
        let raw = PAGEMAP_PRESENT | (1 << 61) | (1 << 55) | 0x12_3456;
        let entry = PagemapEntry::decode(raw);
        assert_eq!(
            entry,
            PagemapEntry {
                present: true,
                swapped: false,
                pfn: 0x12_3456
            }
        );
        assert_eq!(entry.pfn_of_page(0).ok(), Some(0x12_3456));
    }

    #[test]
    fn pagemap_pfn_uses_bits_0_to_54() {
        let entry = PagemapEntry::decode(PAGEMAP_PRESENT | u64::MAX >> 1);
        assert_eq!(entry.pfn, (1 << 55) - 1);
    }

    #[test]
    fn pagemap_entry_without_pfn_is_an_error() {
        let not_present = PagemapEntry::decode(0x1234);
        assert!(!not_present.present);
        let err = not_present.pfn_of_page(3).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("page 3 is not present")));

        let swapped = PagemapEntry::decode(PAGEMAP_SWAPPED | 0x42);
        assert!(swapped.swapped && !swapped.present);
        assert!(swapped.pfn_of_page(0).is_err());

        let hidden = PagemapEntry::decode(PAGEMAP_PRESENT);
        let err = hidden.pfn_of_page(7).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("page 7 has PFN 0")));
    }

    #[test]
    fn pipe_size_rounds_up_to_a_power_of_two() {
        assert_eq!(pipe_size_for(0), Some(4096));
        assert_eq!(pipe_size_for(1), Some(4096));
        assert_eq!(pipe_size_for(4096), Some(4096));
        assert_eq!(pipe_size_for(3 * 4096), Some(16384));
        assert_eq!(pipe_size_for(16 * 4096), Some(65536));
        assert_eq!(pipe_size_for(17 * 4096), Some(131072));
        assert_eq!(pipe_size_for(usize::MAX), None);
    }

    #[test]
    fn splice_spans_cover_pages_once() {
        assert_eq!(
            splice_spans(3 * 4096, 0, MAX_IOVECS),
            vec![(0, 4096), (4096, 4096), (8192, 4096)]
        );
        // A partial vmsplice resumes in the middle of a page.
        assert_eq!(
            splice_spans(3 * 4096, 4096 + 100, MAX_IOVECS),
            vec![(4196, 3996), (8192, 4096)]
        );
        assert_eq!(splice_spans(3 * 4096, 3 * 4096, MAX_IOVECS), vec![]);
        assert_eq!(splice_spans(5 * 4096, 0, 2), vec![(0, 4096), (4096, 4096)]);
    }

    #[test]
    fn pattern_differs_between_pages_and_is_checked() {
        let mut buf = vec![0u8; 300 * PAGE_SIZE];
        fill_pattern(&mut buf);
        let pages: Vec<&[u8]> = buf.chunks(PAGE_SIZE).collect();
        for (i, a) in pages.iter().enumerate() {
            for b in &pages[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(check_pattern(&buf).is_ok());

        buf[2 * PAGE_SIZE + 10] ^= 1;
        let err = check_pattern(&buf).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("page 2 at offset 10")));
    }

    #[test]
    fn truncate_return_is_placed_among_the_marks() {
        assert_eq!(
            TruncateReturn::classify(5, 10, 20),
            TruncateReturn::BeforeDrain
        );
        assert_eq!(
            TruncateReturn::classify(15, 10, 20),
            TruncateReturn::DuringDrain
        );
        assert_eq!(
            TruncateReturn::classify(25, 10, 20),
            TruncateReturn::AfterPipeClosed
        );
    }

    #[test]
    fn hmm_ioctl_numbers_match_the_header() {
        // _IOWR('H', nr, struct hmm_dmirror_cmd) with a 40-byte struct.
        assert_eq!(size_of::<hmm::DmirrorCmd>(), 40);
        assert_eq!(hmm::READ, 0xc028_4800);
        assert_eq!(hmm::WRITE, 0xc028_4801);
        assert_eq!(hmm::MIGRATE_TO_DEV, 0xc028_4802);
        assert_eq!(hmm::MIGRATE_TO_SYS, 0xc028_4803);
        assert_eq!(hmm::SNAPSHOT, 0xc028_4804);
        assert_eq!(hmm::FLAGS, 0xc028_4808);
    }

    #[test]
    fn pagemap_device_private_entries_decode() {
        // frame = type | pfn << 5, PM_SWAP set, not present.
        let raw = PAGEMAP_SWAPPED | (0xfcf_0003 << 5) | SWP_DEVICE_WRITE;
        assert_eq!(
            PageLocation::decode(raw),
            PageLocation::Device {
                pfn: 0xfcf_0003,
                writable: true
            }
        );
        let raw = PAGEMAP_SWAPPED | (0x42 << 5) | SWP_DEVICE_READ;
        assert_eq!(PageLocation::decode(raw).device_pfn(), Some(0x42));
        let raw = PAGEMAP_SWAPPED | (7 << 5) | 1;
        assert_eq!(PageLocation::decode(raw), PageLocation::OtherSwap(1, 7));
        assert_eq!(
            PageLocation::decode(PAGEMAP_PRESENT | 0x99),
            PageLocation::Ram(0x99)
        );
        assert_eq!(PageLocation::decode(0), PageLocation::None);
    }

    #[test]
    fn snapshot_bytes_read_as_words() {
        assert!(is_device_local(0x22));
        assert!(!is_device_local(0x32));
        assert!(!is_device_local(0xff));
        assert!(!is_device_local(0x02));
        assert_eq!(describe_perm(0x22), "DEV_PRIVATE_LOCAL|W");
        assert_eq!(describe_perm(0x02), "SYS|W");
        assert_eq!(describe_perm(0x01), "SYS|R");
        assert_eq!(describe_perm(0xff), "ERROR");
    }

    #[test]
    fn deadline_saturates() {
        assert_eq!(deadline_after(5, 2), 2_000_000_005);
        assert_eq!(deadline_after(u64::MAX - 1, 1), u64::MAX);
    }

    #[test]
    fn report_json_has_the_agreed_shape() -> Result<()> {
        let marks = [("start", 30), ("touched", 10), ("end", 20)];
        let notes = ["a note".to_owned()];
        let report = Report {
            scenario: "dax-hold",
            pages: 2,
            hold_secs: 3,
            pfns: &[0x100, 0x101],
            marks: MarkList(&marks),
            ok: false,
            error: Some("boom".to_owned()),
            notes: &notes,
            facts: &BTreeMap::new(),
        };
        let json = serde_json::to_string(&report)?;
        assert_eq!(
            json,
            r#"{"scenario":"dax-hold","pages":2,"hold_secs":3,"pfns":[256,257],"marks":{"start":30,"touched":10,"end":20},"ok":false,"error":"boom","notes":["a note"]}"#
        );
        Ok(())
    }

    #[test]
    fn bench_put_cli_parses() -> Result<()> {
        use bench_put::{BenchPutCli, Target};
        let cli = BenchPutCli::try_parse_from([
            "workload bench-put",
            "--target",
            "dax",
            "--secs",
            "2",
            "--out",
            "o.json",
        ])?;
        assert_eq!((cli.target, cli.secs, cli.pages), (Target::Dax, 2, 256));
        assert_eq!(cli.dir, PathBuf::from("/mnt/dax"));
        let cli =
            BenchPutCli::try_parse_from(["workload bench-put", "--target", "anon", "--out", "o"])?;
        assert_eq!((cli.target, cli.secs), (Target::Anon, 3));
        assert!(BenchPutCli::try_parse_from(["w", "--target", "x", "--out", "o"]).is_err());
        let cli = BenchPutCli::try_parse_from(["w", "--target", "free", "--out", "o"])?;
        assert_eq!(cli.target, Target::Free);
        assert!(
            BenchPutCli::try_parse_from(["w", "--target", "anon", "--out", "o", "--pages", "1025"])
                .is_err()
        );
        Ok(())
    }

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
