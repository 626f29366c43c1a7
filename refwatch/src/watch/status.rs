//! What the watcher has armed and queued, for the views.

/// The hardware watchpoints of a live session, as the views show them
/// (the TUI's header, table and detail pane).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Armed pages: PFN, since when (monotonic ns), writes seen.
    pub armed: Vec<(u64, u64, u32)>,
    /// Pages waiting for a slot, in order.
    pub queued: Vec<u64>,
    /// Pages that fit at once, as known so far.
    pub slots: usize,
}

impl Status {
    /// Since when `pfn` is armed, and its writes seen.
    pub fn armed(&self, pfn: u64) -> Option<(u64, u32)> {
        self.armed
            .iter()
            .find(|a| a.0 == pfn)
            .map(|&(_, since, hits)| (since, hits))
    }

    pub fn queued(&self, pfn: u64) -> bool {
        self.queued.contains(&pfn)
    }

    /// Whether any watch is asked for.
    pub fn any(&self) -> bool {
        !self.armed.is_empty() || !self.queued.is_empty()
    }
}
