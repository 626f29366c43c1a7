//! Reading pages' state from the kernel: the snapshot at attach, the pages
//! whose events were lost read again, and the pages a detector flags (or
//! is about to) read to check their counts.

use super::*;

impl Collector<'_> {
    /// Reads every device page the kernel has now and tracks those with
    /// references their type and mappings do not explain: taken before
    /// refwatch started (a DAX truncate already hanging, a page already
    /// stuck), shown at once.
    /// Under a task filter there is none: the kernel follows only the
    /// pages a matching task touches, and a page read here would miss the
    /// events of its other holders.
    pub(super) fn snapshot_at_attach(&mut self, watch: &crate::filter::Watch) -> Result<()> {
        let Some(peeker) = self.peeker.as_mut() else {
            return Ok(());
        };
        if watch.by_task() {
            log::info!(
                "no snapshot at attach: pages are followed from a matching task's first event"
            );
            return Ok(());
        }
        let iomem = match std::fs::read_to_string("/proc/iomem") {
            Ok(t) => t,
            Err(e) => {
                log::warn!("no snapshot at attach: read /proc/iomem: {e}");
                return Ok(());
            }
        };
        let mut found = snapshot::Found::default();
        let now = monotonic_ns();
        let me = std::process::id();
        for range in peek::iomem_candidates(&iomem, snapshot::MAX_RANGE_PAGES) {
            if !peeker.has_device_pages(&range)? {
                continue;
            }
            // A chunk at a time: a range may have millions of pages. A
            // compound page counts where its head is.
            let mut at = range.start;
            while at < range.end {
                let end = range.end.min(at.saturating_add(SNAPSHOT_CHUNK));
                let read = peeker.read_range(at..end)?;
                for p in snapshot::heads(&read) {
                    if !watch.keeps_page(p.head_pfn, p.pgmap_type) {
                        continue;
                    }
                    found.pages += 1;
                    if snapshot::referenced(&self.tracker.rules, &p) {
                        found.referenced += 1;
                        let ev = snapshot::event(&p, now, me);
                        apply_read(&ev, &mut self.tracker, &mut self.out)?;
                    }
                }
                at = end;
            }
            found.ranges.push(range);
        }
        let ranges: Vec<String> = found
            .ranges
            .iter()
            .map(|r| format!("{:#x}-{:#x}", r.start, r.end))
            .collect();
        log::info!(
            "snapshot at attach: {} device page(s) in {} range(s) [{}], {} referenced beyond their expected count",
            found.pages,
            found.ranges.len(),
            ranges.join(", "),
            found.referenced
        );
        Ok(())
    }

    /// Reads the pages of `pfns` (sorted) from the kernel again: their
    /// state after a loss. Neighbouring PFNs are read together.
    pub(super) fn reread(&mut self, pfns: &[u64]) -> Result<()> {
        let Some(peeker) = self.peeker.as_mut() else {
            return Ok(());
        };
        let me = std::process::id();
        for run in peek::runs(pfns, refwatch_common::PEEK_PAGES as u64) {
            let now = monotonic_ns();
            for (pfn, p) in peeker.read_range(run)? {
                if p.valid == 0 || p.head_pfn != pfn || pfns.binary_search(&pfn).is_err() {
                    continue;
                }
                let ev = snapshot::event(&p, now, me);
                apply_read(&ev, &mut self.tracker, &mut self.out)?;
            }
        }
        Ok(())
    }

    /// Reads the pages a time-based detector flags at `now` or has flagged
    /// ([`Tracker::to_verify`]) and applies each read that disagrees with
    /// the counts the events gave, before the detectors run: a put no hook
    /// saw does not leave a page flagged.
    pub(super) fn verify(&mut self, now: u64) -> Result<()> {
        if self.peeker.is_none() {
            return Ok(());
        }
        let pfns = self.tracker.to_verify(now, crate::state::MAX_VERIFY);
        if pfns.is_empty() {
            return Ok(());
        }
        // The ring's events are older than the reads: in first.
        self.drain_ring()?;
        let Some(peeker) = self.peeker.as_mut() else {
            return Ok(());
        };
        let me = std::process::id();
        for run in peek::runs(&pfns, refwatch_common::PEEK_PAGES as u64) {
            let now = monotonic_ns();
            let read = match peeker.read_range(run.clone()) {
                Ok(r) => r,
                Err(e) => {
                    // The detectors judge these pages on their events'
                    // counts, as without a page reader.
                    log::warn!(
                        "reading pages {:#x}-{:#x} to check their counts: {e:#}",
                        run.start,
                        run.end
                    );
                    continue;
                }
            };
            for (pfn, p) in read {
                if pfns.binary_search(&pfn).is_err() {
                    continue;
                }
                self.tracker.note_verified(pfn, now);
                if p.valid == 0 || p.head_pfn != pfn || p.refcount == i32::MIN {
                    continue;
                }
                self.totals.verify_reads += 1;
                let ev = snapshot::event(&p, now, me);
                if !self.tracker.agrees(&ev) {
                    log::debug!(
                        "pfn {pfn:#x}: read refcount {:?}, mapcount {:?}, not what its events said: corrected",
                        ev.refcount_after,
                        ev.mapcount
                    );
                    self.totals.verify_corrections += 1;
                    apply_read(&ev, &mut self.tracker, &mut self.out)?;
                }
            }
        }
        Ok(())
    }

    /// Waits until the ring buffer wakes refwatch or [`DRAIN_EVERY`] has
    /// passed, then decodes everything in it. Kernel log lines that arrive
    /// meanwhile go to refwatch's log.
    pub async fn readable(&mut self) -> Result<()> {
        let Self {
            ring,
            klog,
            poll,
            tracker,
            totals,
            out,
            wakeups,
            ..
        } = self;
        let klog_ready = async {
            match klog.as_mut() {
                Some(k) => k.readable_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("wait for ring buffer")?;
                wakeups[0] += 1;
                drain(guard.get_inner_mut(), tracker, totals, out)?;
                guard.clear_ready();
            }
            _ = poll.tick() => {
                wakeups[1] += 1;
                drain(ring.get_mut(), tracker, totals, out)?;
            }
            guard = klog_ready => {
                wakeups[2] += 1;
                let mut guard = guard.context("wait for the kernel log")?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        }
        // After each read: pages whose events were lost meanwhile get their
        // gap before the detectors look at them.
        self.take_losses()
    }
}
