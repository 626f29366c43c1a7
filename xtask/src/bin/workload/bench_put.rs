//! `workload bench-put`: a loop that does little but take and drop page
//! references, through the kernel paths refwatch hooks.
//!
//! One iteration `vmsplice`s 8 bytes of each of `--pages` pages into a pipe
//! (GUP-fast takes one reference per page: `try_grab_folio_fast` on 6.10+)
//! and reads the pipe empty (each pipe buffer's release drops it again:
//! `put_page`, which for fs-dax pages before 6.15 goes through
//! `__put_devmap_managed_folio_refs`). Only 8 bytes per page are copied, so
//! the references dominate the cost. On `dax` pages (a `MAP_SHARED` file in
//! `--dir`, which must be DAX) refwatch's hooks fire on both sides; on `anon`
//! pages the GUP hook is entered and filtered out as not ZONE_DEVICE, and
//! the put of a still-mapped anonymous page reaches no hooked function.
//!
//! ops = references taken + references dropped (2 per page and iteration).
//! Writes `{target, secs, ops, ops_per_sec, …}` to `--out`.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use rustix::pipe::IoSliceRaw;
use serde::Serialize;

use crate::{
    pattern::{fill_pattern, pattern_byte},
    report::{Run, write_json_atomically},
    sys::{
        PAGE_SIZE, check_page_size,
        clock::{deadline_after, monotonic_ns},
        files::{ScratchFile, is_dax},
        mapping::Mapping,
        pipe::{MAX_IOVECS, Pipe},
    },
};

/// Bytes of each page that go through the pipe.
const SPAN: usize = 8;

/// Command line of `workload bench-put`.
#[derive(Debug, Parser)]
#[command(
    name = "workload bench-put",
    about = "Take and drop page references in a loop (refwatch's overhead benchmark)"
)]
pub struct BenchPutCli {
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
pub enum Target {
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
    /// `dax` on [`WATCHED_PAGES`] pages that refwatch watches with hardware
    /// watchpoints (`--watch new`): every reference taken and dropped is a
    /// debug trap. Under refwatch (`WATCH_READY` set), the loop starts once
    /// the pages are armed.
    DaxWatch,
}

/// Pages of `--target dax-watch`: as many as debug registers per CPU.
pub const WATCHED_PAGES: u32 = 4;

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Free => "free",
            Target::Anon => "anon",
            Target::Unmap => "unmap",
            Target::Dax => "dax",
            Target::DaxUnmap => "dax-unmap",
            Target::DaxWatch => "dax-watch",
        }
    }
}

/// The JSON written to `--out`.
#[derive(Debug, Serialize)]
pub struct BenchResult {
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
            pages: if cli.target == Target::DaxWatch {
                WATCHED_PAGES
            } else {
                cli.pages
            },
            iterations,
            ops,
            ops_per_sec: ops as f64 / secs,
            notes: notes.notes,
        }
    }
}

pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
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
    let pages = if cli.target == Target::DaxWatch {
        WATCHED_PAGES
    } else {
        cli.pages
    };
    let pages = usize::try_from(pages).context("--pages does not fit in usize")?;
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
            if let Err(err) = mapping.no_huge_pages() {
                notes.note(format!("madvise(MADV_NOHUGEPAGE): {err}"));
            }
            (None, mapping)
        }
        Target::Dax | Target::DaxWatch => {
            let file = dax_file(&cli.dir, len, &mut notes)?;
            let mapping = Mapping::shared_file(file.file(), len)
                .with_context(|| format!("mapping {}", file.path().display()))?;
            (Some(file), mapping)
        }
    };
    fill_pattern(mapping.as_mut_slice());
    let pipe = Pipe::for_bytes(len, &mut notes)?;
    // The first SPAN bytes of every page, and as iovecs.
    let spans: Vec<&[u8]> = mapping
        .as_slice()
        .chunks(PAGE_SIZE)
        .map(|page| &page[..SPAN])
        .collect();
    let iovecs: Vec<IoSliceRaw<'_>> = spans.iter().map(|s| IoSliceRaw::from_slice(s)).collect();
    let mut buf = vec![0u8; pages * SPAN];
    if cli.target == Target::DaxWatch {
        // refwatch learns the pages from this round's events and arms them.
        splice_all(&pipe, &spans, &iovecs)?;
        read_all(&pipe, &mut buf)?;
        crate::watch::wait_armed(&mut notes)?;
    }

    let (iterations, elapsed_ns) = timed(cli.secs, |iteration| {
        splice_all(&pipe, &spans, &iovecs)?;
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
        if let Err(err) = mapping.no_huge_pages()
            && iteration == 0
        {
            notes.note(format!("madvise(MADV_NOHUGEPAGE): {err}"));
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

/// vmsplices every span into the pipe (one reference per page); `iovecs`
/// are the `spans`, made once for the loop.
fn splice_all(pipe: &Pipe, spans: &[&[u8]], iovecs: &[IoSliceRaw<'_>]) -> Result<()> {
    let total = spans.len() * SPAN;
    let mut done = 0;
    while done < total {
        // A partial vmsplice (not expected: the pipe has a slot per
        // page) resumes where it stopped.
        let rest: Vec<IoSliceRaw<'_>>;
        let batch = if done == 0 {
            iovecs
        } else {
            let (first, skip) = (done / SPAN, done % SPAN);
            rest = spans[first..]
                .iter()
                .enumerate()
                .map(|(i, span)| IoSliceRaw::from_slice(&span[if i == 0 { skip } else { 0 }..]))
                .collect();
            &rest
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_put_cli_parses() -> Result<()> {
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
}
