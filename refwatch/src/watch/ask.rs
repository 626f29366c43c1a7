//! The TUI's `w` on a page: whether a watcher can be made on demand, and
//! what to tell the user after the ask. No I/O: the collector runs the
//! probe and the watcher, these say what their answers mean.

use super::perf::NO_SLOT;

/// What the free breakpoint slots found by trying ([`super::probe`]; `None`:
/// no kernel variable to try them on) mean for a watcher made on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Make it; at most this many pages at once, when known.
    Make(Option<usize>),
    /// Not now (every slot taken by others: they free up): why.
    NotNow(String),
    /// Never in this session: why.
    Never(String),
}

pub fn probe(found: Option<Result<usize, String>>) -> Probe {
    match found {
        None => Probe::Make(None),
        Some(Ok(0)) => Probe::NotNow(NO_SLOT.into()),
        Some(Ok(n)) => Probe::Make(Some(n)),
        Some(Err(why)) if why == NO_SLOT => Probe::NotNow(why),
        Some(Err(why)) => Probe::Never(why),
    }
}

/// Where `pfn` stands once asked for: armed, waiting (with how many pages
/// hold the slots), or not watchable (why).
pub fn asked_words(
    pfn: u64,
    armed: bool,
    queued: Option<usize>,
    failed: Option<&str>,
) -> (String, bool) {
    match (armed, queued) {
        (true, _) => (
            format!(
                "watching page {pfn:#x}: every write to its refcount is an event (w again stops)"
            ),
            false,
        ),
        (false, Some(busy)) => (
            format!("page {pfn:#x} queued for a watchpoint: {busy} slot(s) busy"),
            false,
        ),
        (false, None) => (
            format!(
                "page {pfn:#x} cannot be watched: {}",
                failed.unwrap_or("not armed")
            ),
            true,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_says_whether_to_make_the_watcher() {
        assert_eq!(probe(None), Probe::Make(None));
        assert_eq!(probe(Some(Ok(4))), Probe::Make(Some(4)));
        assert_eq!(probe(Some(Ok(0))), Probe::NotNow(NO_SLOT.into()));
        assert_eq!(
            probe(Some(Err(NO_SLOT.into()))),
            Probe::NotNow(NO_SLOT.into())
        );
        let never = "not allowed: a kernel-address breakpoint needs CAP_PERFMON";
        assert_eq!(probe(Some(Err(never.into()))), Probe::Never(never.into()));
    }

    #[test]
    fn the_answer_to_an_ask_names_the_page_and_why() {
        assert_eq!(
            asked_words(0x40010, true, None, None),
            (
                "watching page 0x40010: every write to its refcount is an event (w again stops)"
                    .into(),
                false
            )
        );
        assert_eq!(
            asked_words(0x40010, false, Some(4), None),
            (
                "page 0x40010 queued for a watchpoint: 4 slot(s) busy".into(),
                false
            )
        );
        assert_eq!(
            asked_words(0x40011, false, None, Some("a tail page of the folio at 0x40010: watch that one")),
            (
                "page 0x40011 cannot be watched: a tail page of the folio at 0x40010: watch that one"
                    .into(),
                true
            )
        );
    }
}
