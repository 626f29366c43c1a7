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
        let changes = w.tick(&self.tracker, self.peeker.as_mut(), now);
        for c in changes {
            match (c.since_ns, c.read) {
                (Some(at), Some(read)) => {
                    let mut ev = snapshot::event(&read, at, std::process::id());
                    ev.hook = refwatch_common::hook::WATCHPOINT;
                    apply_read(&ev, &mut self.tracker, &mut self.out)?;
                    self.tracker.watch_armed(c.pfn, Some(at));
                }
                (Some(at), None) => self.tracker.watch_armed(c.pfn, Some(at)),
                (None, _) => self.watch_ended(c.pfn, now)?,
            }
        }
        Ok(())
    }

    /// Records that `pfn`'s watch ended (its slot yielded, or the TUI's `w`
    /// stopped it): the page's state read then, as an event of
    /// `hook::WATCH_END` in the outputs, so that a replay of the recording
    /// stops treating the page as watched where the live run did. Without a
    /// read the event carries no counts.
    fn watch_ended(&mut self, pfn: u64, now: u64) -> Result<()> {
        let Some(page) = self.tracker.page(pfn).filter(|p| p.watched_since != 0) else {
            return Ok(());
        };
        let unread = refwatch_common::PagePeek {
            head_pfn: pfn,
            refcount: i32::MIN,
            mapcount: i32::MIN,
            pgmap_type: page.pgmap_type,
            ..Default::default()
        };
        let read = self
            .peeker
            .as_mut()
            .and_then(|p| p.read(pfn, 1).ok())
            .and_then(|v| v.into_iter().next())
            .filter(|p| p.valid != 0 && p.head_pfn == pfn)
            .unwrap_or(unread);
        let mut ev = snapshot::event(&read, now, std::process::id());
        ev.hook = refwatch_common::hook::WATCH_END;
        apply_read(&ev, &mut self.tracker, &mut self.out)?;
        // Whatever the event said (a tracker that forgot the page).
        self.tracker.watch_armed(pfn, None);
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
            self.watch_ended(pfn, monotonic_ns())?;
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

    /// The watchpoints, for the views; `None` without a watcher.
    pub fn watch_status(&self) -> Option<crate::watch::Status> {
        Some(self.watcher.as_ref()?.status())
    }
}
