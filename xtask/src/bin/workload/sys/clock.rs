//! CLOCK_MONOTONIC, the clock of the kernel's `bpf_ktime_get_ns`, and
//! sleeping until a point on it.

use std::{io, thread, time::Duration};

use anyhow::{Context, Result};
use rustix::time::{ClockId, clock_gettime};

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> io::Result<u64> {
    let ts = clock_gettime(ClockId::Monotonic);
    let secs = u64::try_from(ts.tv_sec).map_err(io::Error::other)?;
    let nanos = u64::try_from(ts.tv_nsec).map_err(io::Error::other)?;
    Ok(secs * 1_000_000_000 + nanos)
}

/// The monotonic time `secs` seconds after `start_ns`.
pub fn deadline_after(start_ns: u64, secs: u64) -> u64 {
    start_ns.saturating_add(secs.saturating_mul(1_000_000_000))
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns`.
pub fn sleep_until(deadline_ns: u64) -> Result<()> {
    loop {
        let now = monotonic_ns().context("clock_gettime while holding")?;
        if now >= deadline_ns {
            return Ok(());
        }
        thread::sleep(Duration::from_nanos(deadline_ns - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_saturates() {
        assert_eq!(deadline_after(5, 2), 2_000_000_005);
        assert_eq!(deadline_after(u64::MAX - 1, 1), u64::MAX);
    }
}
