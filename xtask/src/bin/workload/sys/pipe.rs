//! Pipes: vmsplice pages into one and drain it, or pass messages between a
//! parent and its child.

use std::{
    fs::File,
    io::{self, Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use anyhow::{Context, Result, ensure};

use super::{PAGE_SIZE, mapping::Mapping};
use crate::report::Run;

/// Most iovecs one `vmsplice` call accepts (`UIO_MAXIOV`).
pub const MAX_IOVECS: usize = 1024;

/// The pipe capacity to ask F_SETPIPE_SZ for so that `bytes` fit: at least one
/// page, rounded up to a power of two as the kernel does.
fn pipe_size_for(bytes: usize) -> Option<usize> {
    bytes.max(PAGE_SIZE).checked_next_power_of_two()
}

/// The (offset, length) spans for the next vmsplice call over a buffer of
/// `len` bytes of which `done` were spliced already: one span per page (the
/// first one possibly the tail of a page), at most `max` spans.
fn splice_spans(len: usize, done: usize, max: usize) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = done;
    while offset < len && spans.len() < max {
        let page_end = (offset / PAGE_SIZE + 1) * PAGE_SIZE;
        let end = page_end.min(len);
        spans.push((offset, end - offset));
        offset = end;
    }
    spans
}

/// A non-blocking pipe, large enough for the pages it will carry.
#[derive(Debug)]
pub struct Pipe {
    pub read: File,
    pub write: File,
}

impl Pipe {
    /// Creates a pipe and raises its capacity with F_SETPIPE_SZ so that
    /// `bytes` fit. Both ends are non-blocking, so a mistake fails instead of
    /// hanging.
    pub fn for_bytes(bytes: usize, run: &mut Run) -> Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("pipe2");
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors owned by
        // nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let pipe = Pipe {
            read: File::from(read),
            write: File::from(write),
        };

        let wanted = pipe_size_for(bytes).context("pipe size overflows")?;
        let arg = libc::c_int::try_from(wanted)
            .with_context(|| format!("pipe size {wanted} does not fit in an int"))?;
        // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory.
        let size = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_SETPIPE_SZ, arg) };
        if size < 0 {
            return Err(io::Error::last_os_error()).with_context(|| {
                format!(
                    "fcntl(F_SETPIPE_SZ, {wanted}) (above /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE)"
                )
            });
        }
        ensure!(
            usize::try_from(size).is_ok_and(|size| size >= bytes),
            "F_SETPIPE_SZ gave {size} bytes, {bytes} needed"
        );
        run.note(format!("pipe capacity {size} bytes"));
        Ok(pipe)
    }

    /// vmsplices the whole mapping into the pipe, one iovec per page,
    /// without SPLICE_F_GIFT: the pipe takes a reference on every page.
    pub fn vmsplice_from(&self, mapping: &Mapping) -> Result<()> {
        self.vmsplice_range(mapping.addr(), mapping.len())
    }

    /// vmsplices `len` bytes at `addr` (inside a live mapping of ours) into
    /// the pipe, one iovec per page.
    pub fn vmsplice_range(&self, addr: usize, len: usize) -> Result<()> {
        let mut done = 0;
        while done < len {
            let iovecs: Vec<libc::iovec> = splice_spans(len, done, MAX_IOVECS)
                .into_iter()
                .map(|(offset, span)| libc::iovec {
                    iov_base: (addr + offset) as *mut libc::c_void,
                    iov_len: span,
                })
                .collect();
            done += self.vmsplice_once(&iovecs, done, len)?;
        }
        Ok(())
    }

    /// One non-blocking vmsplice of `iovecs` (each inside a mapping of the
    /// caller's that stays mapped for the call); the bytes it moved, at
    /// least one. `done` and `total` only word the errors.
    pub fn vmsplice_once(
        &self,
        iovecs: &[libc::iovec],
        done: usize,
        total: usize,
    ) -> Result<usize> {
        // SAFETY: see above; vmsplice only reads the iovec array.
        let rc = unsafe {
            libc::vmsplice(
                self.write.as_raw_fd(),
                iovecs.as_ptr(),
                iovecs.len(),
                libc::SPLICE_F_NONBLOCK,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("vmsplice after {done} of {total} bytes"));
        }
        ensure!(
            rc > 0,
            "vmsplice moved nothing after {done} of {total} bytes"
        );
        Ok(rc as usize)
    }

    /// A blocking pipe for messages between a parent and its child.
    pub fn blocking() -> Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("pipe2");
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors owned by
        // nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read: File::from(read),
            write: File::from(write),
        })
    }

    /// Writes one message.
    pub fn write_u64(&self, value: u64) -> io::Result<()> {
        (&self.write).write_all(&value.to_le_bytes())
    }

    /// Reads one message.
    pub fn read_u64(&self) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        (&self.read).read_exact(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// True when the read end becomes readable within `timeout`.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Reads exactly `len` bytes out of the pipe.
    pub fn drain(&self, len: usize) -> Result<Vec<u8>> {
        let mut data = vec![0u8; len];
        (&self.read)
            .read_exact(&mut data)
            .with_context(|| format!("read {len} bytes from the pipe"))?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_size_rounds_up_to_a_power_of_two() {
        assert_eq!(pipe_size_for(0), Some(4096));
        assert_eq!(pipe_size_for(1), Some(4096));
        assert_eq!(pipe_size_for(4096), Some(4096));
        assert_eq!(pipe_size_for(3 * 4096), Some(16384));
        assert_eq!(pipe_size_for(16 * 4096), Some(65536));
        assert_eq!(pipe_size_for(17 * 4096), Some(131072));
        assert_eq!(pipe_size_for(usize::MAX), None);
    }

    #[test]
    fn splice_spans_cover_pages_once() {
        assert_eq!(
            splice_spans(3 * 4096, 0, MAX_IOVECS),
            vec![(0, 4096), (4096, 4096), (8192, 4096)]
        );
        // A partial vmsplice resumes in the middle of a page.
        assert_eq!(
            splice_spans(3 * 4096, 4096 + 100, MAX_IOVECS),
            vec![(4196, 3996), (8192, 4096)]
        );
        assert_eq!(splice_spans(3 * 4096, 3 * 4096, MAX_IOVECS), vec![]);
        assert_eq!(splice_spans(5 * 4096, 0, 2), vec![(0, 4096), (4096, 4096)]);
    }
}
