//! A forked child process: forked, waited for, or killed and reaped on drop.

use std::{
    fs, io,
    panic::{AssertUnwindSafe, catch_unwind},
};

use anyhow::{Context, Result, bail, ensure};
use rustix::{
    io::Errno,
    process::{Pid, Signal, WaitOptions, WaitStatus, kill_process, waitpid},
};

/// A child process, killed and reaped on drop if not waited for.
pub struct Child(Pid);

impl Child {
    /// Forks; the child runs `body` and exits at once with its code, the
    /// parent gets the child. Only for a single-threaded process (checked).
    pub fn fork(body: impl FnOnce() -> i32) -> Result<Self> {
        let threads = fs::read_dir("/proc/self/task")
            .context("read /proc/self/task")?
            .count();
        ensure!(
            threads == 1,
            "fork needs a single-threaded process, this one has {threads} threads"
        );
        // libc, not rustix: rustix offers fork and _exit only in its hidden,
        // experimental `runtime` module, not meant for a process with a libc.
        // SAFETY: the process is single-threaded (checked above), so the
        // child inherits no lock held by another thread and may allocate.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(101);
            // SAFETY: ends the child without running the parent's destructors
            // or exit handlers, whose resources the child only shares.
            unsafe { libc::_exit(code) };
        }
        Pid::from_raw(pid)
            .map(Child)
            .context("fork returned no pid")
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.0.as_raw_pid()
    }

    /// Waits for the child; returns its wait status.
    pub fn wait(self) -> Result<WaitStatus> {
        let pid = self.0;
        std::mem::forget(self);
        loop {
            match waitpid(Some(pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => return Ok(status),
                Ok(None) => bail!("waitpid {}: no status", pid.as_raw_pid()),
                Err(Errno::INTR) => {}
                Err(err) => {
                    return Err(io::Error::from(err))
                        .with_context(|| format!("waitpid {}", pid.as_raw_pid()));
                }
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Only on failure paths: do not leave the child behind.
        let _ = kill_process(self.0, Signal::KILL);
        let _ = waitpid(Some(self.0), WaitOptions::empty());
    }
}
