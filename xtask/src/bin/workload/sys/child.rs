//! A forked child process: waited for, or killed and reaped on drop.

use std::{io, ptr};

use anyhow::{Context, Result};

/// A child process, waited for on drop if not before.
pub struct Child(pub libc::pid_t);

impl Child {
    /// Waits for the child; returns its wait status.
    pub fn wait(self) -> Result<libc::c_int> {
        let pid = self.0;
        std::mem::forget(self);
        let mut status = 0;
        loop {
            // SAFETY: `status` is writable; `pid` is our child.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                return Ok(status);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("waitpid {pid}"));
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Only on failure paths: do not leave the child behind.
        // SAFETY: plain syscalls on our own child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, ptr::null_mut(), 0);
        }
    }
}
