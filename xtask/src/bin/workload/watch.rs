//! Waiting for refwatch's hardware watchpoints (the lab's `+watch`
//! scenarios): the lab sets `WATCH_READY` (the file refwatch lists its
//! armed pages in, `--watch-ready`) and `WATCH_PAGES` (how many to wait
//! for); without them this does nothing.

use std::{
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::report::Run;

/// Longest wait for the pages to be armed. `attach --watch` arms a page it
/// learns of within a second (under TCG on a busy host a few), but under
/// `+watch-cmd` the wait also covers `refwatch watch` loading its programs
/// after a late attach: 50 s of guest time on debian-6.12 under TCG with
/// the host busy. Longer than the lab's own wait for the arming (120 s),
/// so that its message comes first.
const WAIT: Duration = Duration::from_secs(180);

/// Shortest hold after the pages are armed, in seconds: the hold must
/// outlast the arming by more than the lab's wait before it copies the
/// recording during the hold (the detector's threshold and a second), or
/// a watch armed late (under TCG, `refwatch watch` can take longer than
/// the whole hold) leaves no hold to copy it in.
pub const HOLD_AFTER_ARMED_SECS: u64 = 10;

/// Waits until refwatch lists `WATCH_PAGES` armed pages in `WATCH_READY`,
/// then marks `watch_armed` and returns its time (`None`: no watch asked).
pub fn wait_armed(run: &mut Run) -> Result<Option<u64>> {
    let (Ok(file), Ok(want)) = (std::env::var("WATCH_READY"), std::env::var("WATCH_PAGES")) else {
        return Ok(None);
    };
    let Ok(want) = want.trim().parse::<usize>() else {
        bail!("WATCH_PAGES={want:?} is not a number");
    };
    let start = Instant::now();
    loop {
        let armed = std::fs::read_to_string(&file)
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0);
        if armed >= want {
            run.note(format!(
                "refwatch armed {armed} watchpoint page(s) ({file})"
            ));
            return run.marks.mark("watch_armed").map(Some);
        }
        if start.elapsed() > WAIT {
            bail!(
                "refwatch armed {armed} of {want} pages in {} s ({file})",
                WAIT.as_secs()
            );
        }
        sleep(Duration::from_millis(100));
    }
}
