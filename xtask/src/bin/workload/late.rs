//! A late attach (the lab's `run_scenario … late`): the workload holds its
//! references first and refwatch starts during the hold, as a user attaches
//! after a hang. The lab sets `ATTACH_READY`, the file refwatch writes once
//! it is ready (`--ready-file`); without it this does nothing.

use std::{
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::report::Run;

/// Longest wait for refwatch to be ready: more than the lab's own wait for
/// it (`--ready-secs`, 60 by default), so that the lab's message comes
/// first.
const WAIT: Duration = Duration::from_secs(180);

/// Shortest hold after refwatch is ready, in seconds: more than the lab's
/// wait before it copies the recording during the hold (the detector's
/// threshold and a second). Under TCG on a busy host an attach took 16-18 s
/// of a 30 s hold: without this, a slower one would leave no hold to see.
pub const HOLD_AFTER_READY_SECS: u64 = 10;

/// Waits until the file `ATTACH_READY` names exists, then marks
/// `attach_ready` and returns its time (`None`: not a late attach).
pub fn wait_ready(run: &mut Run) -> Result<Option<u64>> {
    let Ok(file) = std::env::var("ATTACH_READY") else {
        return Ok(None);
    };
    let start = Instant::now();
    while !std::path::Path::new(&file).exists() {
        if start.elapsed() > WAIT {
            bail!("refwatch was not ready in {} s ({file})", WAIT.as_secs());
        }
        sleep(Duration::from_millis(100));
    }
    run.note(format!("refwatch is ready ({file})"));
    run.marks.mark("attach_ready").map(Some)
}
