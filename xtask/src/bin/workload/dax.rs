//! The `dax-*` scenarios: references on fs-dax pages of a scratch file,
//! taken by a pipe (`vmsplice`) or by direct I/O, and the steps they share.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};

use crate::{
    Cli,
    pattern::{check_pattern, fill_pattern},
    report::{Marks, Run},
    sys::{
        PAGE_SIZE,
        clock::{deadline_after, sleep_until},
        files::{ScratchFile, is_dax, open_direct},
        mapping::Mapping,
        pagemap::read_pfns,
        pipe::Pipe,
    },
};

/// Block device written by `dax-direct-io` when `--bdev` is not given.
const DEFAULT_BDEV: &str = "/dev/vdb";
/// Most pages `dax-pin-long` writes: one bio's worth (`BIO_MAX_VECS`), so
/// that the block layer releases them all together when the write completes.
const PIN_LONG_MAX_PAGES: u32 = 256;
/// How long the truncate thread may take to get going.
const TRUNCATE_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a truncate may stay blocked after the pipe was closed before the
/// scenario gives up on it.
const TRUNCATE_END_TIMEOUT: Duration = Duration::from_secs(60);

/// `dax-splice`: vmsplice the pages into a pipe, drain the pipe, unmap, delete.
pub fn splice(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let pipe = splice_all(&mapping, run)?;

    drain_and_check(&pipe, mapping.len(), run)?;
    drop(pipe);
    run.marks.mark("pipe_closed")?;

    mapping.unmap()?;
    run.marks.mark("unmap")?;
    file.remove()
}

/// `dax-hold`: a pipe filled with every page and drained at once, then
/// vmsplice again, unmap first, keep the full pipe for `--hold-secs`, then
/// drain and close it and delete the file. The hold lasts at least
/// [`crate::late::HOLD_AFTER_READY_SECS`] after a late refwatch is ready and
/// [`crate::watch::HOLD_AFTER_ARMED_SECS`] after a watch's pages are armed.
pub fn hold(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let len = mapping.len();
    fill_and_drain(&mapping, run)?;
    let pipe = splice_all(&mapping, run)?;

    mapping.unmap()?;
    run.marks.mark("unmap")?;

    let hold_start = run.marks.mark("hold_start")?;
    // Attached late: the hold goes on for a while after refwatch is ready.
    let ready = crate::late::wait_ready(run)?
        .map(|r| deadline_after(r, crate::late::HOLD_AFTER_READY_SECS));
    // Under `+watch`: the release is what the watchpoints must see, and the
    // hold goes on for a while after they are armed.
    let armed = crate::watch::wait_armed(run)?
        .map(|a| deadline_after(a, crate::watch::HOLD_AFTER_ARMED_SECS));
    let floor = ready.max(armed).unwrap_or(0);
    sleep_until(deadline_after(hold_start, cli.hold_secs).max(floor))?;
    run.marks.mark("hold_end")?;

    drain_and_check(&pipe, len, run)?;
    drop(pipe);
    run.marks.mark("pipe_closed")?;
    file.remove()
}

/// `dax-drained`: every page spliced into a pipe and read back, then the
/// mapping kept, and nothing else, for `--hold-secs` (between the
/// `hold_start` and `hold_end` marks) before the unmap.
///
/// Nothing holds the pages during the hold but their mapping. From 6.15 the
/// pipe's puts are inline and no hook sees them: the last count refwatch saw
/// is the splice's, one more than the page has.
pub fn drained(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    fill_and_drain(&mapping, run)?;
    let hold_start = run.marks.mark("hold_start")?;
    sleep_until(deadline_after(hold_start, cli.hold_secs))?;
    run.marks.mark("hold_end")?;
    mapping.unmap()?;
    run.marks.mark("unmap")?;
    file.remove()
}

/// `dax-direct-io`: one O_DIRECT pwrite of the whole DAX mapping to the block
/// device, read back with O_DIRECT and compared.
pub fn direct_io(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let len = mapping.len();
    let bdev = direct_io_target(cli);
    let target = open_direct(&bdev, true)
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

    read_back(&bdev, len)?;
    run.note(format!(
        "{len} bytes written to {} with O_DIRECT and read back intact",
        bdev.display()
    ));

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
pub fn pin_long(cli: &Cli, run: &mut Run) -> Result<()> {
    ensure!(
        (2..=PIN_LONG_MAX_PAGES).contains(&cli.pages),
        "dax-pin-long writes 2 to {PIN_LONG_MAX_PAGES} pages (a one-page write is one request, which a throttle does not delay; more pages than one bio holds are released bio by bio), not {}",
        cli.pages
    );
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let len = mapping.len();
    let bdev = direct_io_target(cli);
    let target = open_direct(&bdev, true)
        .with_context(|| format!("open {} with O_DIRECT|O_WRONLY", bdev.display()))?;
    // Under `+watch`: the pin and the unpin are what the watchpoints must see.
    crate::watch::wait_armed(run)?;
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

    read_back(&bdev, len)?;
    run.note(format!("{len} bytes read back intact"));

    mapping.unmap()?;
    run.marks.mark("unmap")?;
    file.remove()
}

/// The block device the direct I/O scenarios write: `--bdev` or the default.
fn direct_io_target(cli: &Cli) -> PathBuf {
    cli.bdev
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BDEV))
}

/// Reads the first `len` bytes of `bdev` back with O_DIRECT and checks them
/// against the pattern.
fn read_back(bdev: &Path, len: usize) -> Result<()> {
    let source = open_direct(bdev, false)
        .with_context(|| format!("open {} with O_DIRECT|O_RDONLY", bdev.display()))?;
    let mut readback = Mapping::anonymous(len)?;
    source
        .read_exact_at(readback.as_mut_slice(), 0)
        .with_context(|| format!("O_DIRECT pread of {len} bytes from {}", bdev.display()))?;
    drop(source);
    check_pattern(readback.as_slice())
        .with_context(|| format!("data read back from {}", bdev.display()))?;
    readback.unmap()
}

/// `dax-truncate-pinned`: vmsplice, unmap, then truncate the file from a
/// second thread while the pipe still holds the pages for `--hold-secs`.
///
/// The truncate should block in the filesystem's DAX layout break until the
/// drain releases the pipe's references. Whether it did is recorded in the
/// notes, not treated as a failure.
pub fn truncate_pinned(cli: &Cli, run: &mut Run) -> Result<()> {
    let (file, mapping) = prepare_dax_pages(cli, run)?;
    let len = mapping.len();
    let pipe = splice_all(&mapping, run)?;

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
    // For the lab's filter scenarios, which pick the PFNs refwatch watches
    // from the ones the workload holds.
    let shown: Vec<String> = run.pfns.iter().map(|p| format!("{p:#x}")).collect();
    println!("workload: pfns {}", shown.join(" "));
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

/// Every page of `mapping` spliced into a pipe and read back at once,
/// before the `first_fill_drained` mark. From 6.15 the reads drop the
/// pipe's references by inline puts no hook sees: the holder refwatch names
/// for a page held after this is the later splice's, not this one's.
fn fill_and_drain(mapping: &Mapping, run: &mut Run) -> Result<()> {
    let pipe = Pipe::for_bytes(mapping.len(), run)?;
    run.marks.mark("first_fill_start")?;
    pipe.vmsplice(mapping.as_slice())?;
    let data = pipe.drain(mapping.len())?;
    run.marks.mark("first_fill_drained")?;
    check_pattern(&data).context("data read from the pipe (first fill)")
}

/// A pipe holding every page of `mapping` (vmsplice), between the
/// `splice_start` and `splice_end` marks.
fn splice_all(mapping: &Mapping, run: &mut Run) -> Result<Pipe> {
    let pipe = Pipe::for_bytes(mapping.len(), run)?;
    run.marks.mark("splice_start")?;
    pipe.vmsplice(mapping.as_slice())?;
    run.marks.mark("splice_end")?;
    Ok(pipe)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
