//! The collector's hardware watchpoints: arming and rotating them each
//! tick, and the live TUI's requests to watch a page.

use super::*;

impl Collector<'_> {
    /// Arms and rotates the hardware watchpoints (`--watch`). Each page
    /// armed gets the state read then as an event of the watchpoint (in
    /// the outputs too: a report of the recording knows since when the
    /// page was watched).
    pub(super) fn tick_watch(&mut self, now: u64) -> Result<()> {
        let Some(w) = self.watcher.as_mut() else {
            return Ok(());
        };
        for c in w.tick(&self.tracker, self.peeker.as_mut(), now) {
            match (c.since_ns, c.read) {
                (Some(at), Some(read)) => {
                    let mut ev = snapshot::event(&read, at, std::process::id());
                    ev.hook = refwatch_common::hook::WATCHPOINT;
                    apply_read(&ev, &mut self.tracker, &mut self.out)?;
                    self.tracker.watch_armed(c.pfn, Some(at));
                }
                (since, _) => self.tracker.watch_armed(c.pfn, since),
            }
        }
        Ok(())
    }

    /// The TUI's `w` on `pfn`: watches the page (armed now when a slot is
    /// free, else queued), or stops watching it when it is watched or
    /// queued already. Makes the watcher on the first ask when `--watch`
    /// did not. Returns what to tell the user, and whether it is an error.
    pub fn watch_toggle(&mut self, ebpf: &mut aya::Ebpf, pfn: u64) -> Result<(String, bool)> {
        use crate::watch::ask;
        if self.watcher.is_none() {
            if let Some(why) = &self.watcher_failed {
                return Ok((format!("no hardware watchpoints: {why}"), true));
            }
            // Breakpoints tried first: why none can be made is the user's
            // answer (no slot free, no CONFIG_HAVE_HW_BREAKPOINT, not allowed).
            let fit = match ask::probe(self.probe_addr.map(crate::watch::probe)) {
                ask::Probe::Make(fit) => fit,
                ask::Probe::NotNow(why) => {
                    return Ok((format!("no hardware watchpoints now: {why}"), true));
                }
                ask::Probe::Never(why) => {
                    log::warn!("watch: no hardware watchpoints: {why}");
                    self.watcher_failed = Some(why.clone());
                    return Ok((format!("no hardware watchpoints: {why}"), true));
                }
            };
            let opts = crate::watch::Options {
                request: crate::watch::Request::default(),
                ready_file: None,
                off_refcount: self.off_refcount,
                print: false,
            };
            match crate::watch::Watcher::new(ebpf, opts) {
                Ok(mut w) => {
                    if let Some(n) = fit {
                        w.fit(n);
                    }
                    self.watcher = Some(w);
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    log::warn!("watch: no hardware watchpoints: {why}");
                    self.watcher_failed = Some(why.clone());
                    return Ok((format!("no hardware watchpoints: {why}"), true));
                }
            }
        }
        let Some(w) = self.watcher.as_mut() else {
            return Ok(("no hardware watchpoints".into(), true));
        };
        if !w.toggle(pfn) {
            self.tracker.watch_armed(pfn, None);
            return Ok((format!("page {pfn:#x}: no longer watched"), false));
        }
        self.tick_watch(monotonic_ns())?;
        let Some(s) = self.watch_status() else {
            return Ok(("no hardware watchpoints".into(), true));
        };
        let failed = self.watcher.as_ref().and_then(|w| w.failed(pfn));
        Ok(ask::asked_words(
            pfn,
            s.armed(pfn).is_some(),
            s.queued(pfn).then_some(s.armed.len()),
            failed,
        ))
    }

    /// The watchpoints for the TUI; `None` without a watcher.
    pub fn watch_status(&self) -> Option<crate::tui::WatchStatus> {
        let (armed, queued, slots) = self.watcher.as_ref()?.status();
        Some(crate::tui::WatchStatus {
            armed,
            queued,
            slots,
        })
    }
}
