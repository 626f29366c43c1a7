//! refwatch's own CPU time and resident memory, from `/proc/self`.

use super::Process;

/// Reads `/proc/self/stat` and `/proc/self/statm`; `None` when either is
/// unreadable or not as expected (the metrics then keep their last values).
pub fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    parse(&stat, &statm, clock_ticks()?, page_size()?)
}

/// CPU seconds (user + system) and resident bytes from the texts of
/// `/proc/PID/stat` and `/proc/PID/statm`.
pub fn parse(stat: &str, statm: &str, ticks_per_second: u64, page_bytes: u64) -> Option<Process> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: the fields after it start past its last ')'.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_ascii_whitespace();
    // Fields 3 (state) … 15 (stime): utime is the 12th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let resident: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    if ticks_per_second == 0 {
        return None;
    }
    Some(Process {
        cpu_seconds: (utime + stime) as f64 / ticks_per_second as f64,
        resident_bytes: resident.saturating_mul(page_bytes),
    })
}

#[allow(unsafe_code)]
fn clock_ticks() -> Option<u64> {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0)
}

#[allow(unsafe_code)]
fn page_size() -> Option<u64> {
    // SAFETY: as above.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0)
}
