//! The `hmm-*` scenarios: device-private pages of the HMM test driver,
//! migrated to the device and back, held by a pipe or by a forked child.

use std::{fs, io, time::Duration};

use anyhow::{Context, Result, ensure};

use crate::{
    Cli,
    dmirror::{Dmirror, DmirrorCmd, describe_perm, is_device_local},
    pattern::{check_pattern, fill_pattern, pattern_byte},
    report::Run,
    sys::{
        PAGE_SIZE,
        child::Child,
        clock::{deadline_after, sleep_until},
        mapping::Mapping,
        pagemap::{PageLocation, read_locations, read_pfns},
        pipe::Pipe,
    },
};

/// `hmm-migrate`: migrate to the device, read through the device, touch from
/// the CPU (the pages fault back to RAM), unmap, close the device.
pub fn migrate(cli: &Cli, run: &mut Run) -> Result<()> {
    // Under `+watch`: the pages are watched from before the driver hands
    // them out.
    crate::watch::wait_armed(run)?;
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
pub fn release(cli: &Cli, run: &mut Run) -> Result<()> {
    // Under `+watch`: the pages are watched from before the driver hands
    // them out.
    crate::watch::wait_armed(run)?;
    let (dev, mapping) = prepare_hmm_pages(cli, run)?;
    migrate_all_to_device(&dev, &mapping, run)?;
    unmap_and_close(dev, mapping, run)
}

/// `hmm-resident`: migrate to the device, read through the device, keep
/// the pages on the device, mapped, for the hold (what a GPU workload does
/// for minutes), check they are still there, then unmap.
pub fn resident(cli: &Cli, run: &mut Run) -> Result<()> {
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
pub fn blocked(cli: &Cli, run: &mut Run) -> Result<()> {
    let (dev, mapping) = prepare_hmm_pages(cli, run)?;
    let pages = mapping.len() / PAGE_SIZE;
    let blocked = pages / 2;
    let page_addr = mapping.addr() + blocked * PAGE_SIZE;

    let pipe = Pipe::for_bytes(PAGE_SIZE, run)?;
    pipe.vmsplice(&mapping.as_slice()[blocked * PAGE_SIZE..][..PAGE_SIZE])?;
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
pub fn leak(cli: &Cli, run: &mut Run) -> Result<()> {
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
    // The child only reads pagemap, talks over the pipes and exits.
    let child =
        Child::fork(|| leak_child(&mapping, &device_pfns, &to_child, &to_parent, cli.hold_secs))?;
    let pid = child.pid();
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
        status.exit_status() == Some(0),
        "the child ended with wait status {:#x}",
        status.as_raw()
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

/// Opens the device (mark `device_open`), maps and fills an anonymous
/// buffer of `--pages` pages (mark `touched`) and notes its RAM PFNs.
fn prepare_hmm_pages(cli: &Cli, run: &mut Run) -> Result<(Dmirror, Mapping)> {
    let pages = usize::try_from(cli.pages).context("--pages does not fit in usize")?;
    let len = pages
        .checked_mul(PAGE_SIZE)
        .context("--pages is too large")?;
    let dev = Dmirror::open(&cli.device)?;
    run.marks.mark("device_open")?;
    let mut mapping = Mapping::anonymous(len)?;
    // Base pages only: a THP would migrate as one compound page.
    if let Err(err) = mapping.no_huge_pages() {
        run.note(format!("madvise(MADV_NOHUGEPAGE) failed: {err}"));
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

/// An ioctl outcome for the notes.
fn describe_migrate(result: &io::Result<(DmirrorCmd, Vec<u8>)>) -> String {
    match result {
        Ok((cmd, _)) => format!("ok, cpages {}", cmd.cpages),
        // The driver reads the range back after migrating and fails with
        // ENOENT at the first page it has no copy of.
        Err(err) => format!("{err} (the driver's read-back stops at a page left in RAM)"),
    }
}
