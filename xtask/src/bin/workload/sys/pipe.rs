//! Pipes: vmsplice pages into one and drain it, or pass messages between a
//! parent and its child.

use std::{
    fs::File,
    io::{self, Read, Write},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use rustix::{
    event::{self, PollFd, PollFlags},
    pipe::{self, IoSliceRaw, PipeFlags, SpliceFlags},
    time::Timespec,
};

use super::PAGE_SIZE;
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

/// A pipe: non-blocking and large enough for the pages it will carry
/// ([`Pipe::for_bytes`]), or blocking for messages ([`Pipe::blocking`]).
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
        let pipe = Self::with_flags(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let wanted = pipe_size_for(bytes).context("pipe size overflows")?;
        i32::try_from(wanted)
            .with_context(|| format!("pipe size {wanted} does not fit in an int"))?;
        let size = pipe::fcntl_setpipe_size(&pipe.write, wanted)
            .map_err(io::Error::from)
            .with_context(|| {
                format!(
                    "fcntl(F_SETPIPE_SZ, {wanted}) (above /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE)"
                )
            })?;
        ensure!(
            size >= bytes,
            "F_SETPIPE_SZ gave {size} bytes, {bytes} needed"
        );
        run.note(format!("pipe capacity {size} bytes"));
        Ok(pipe)
    }

    /// A blocking pipe for messages between a parent and its child.
    pub fn blocking() -> Result<Self> {
        Self::with_flags(PipeFlags::CLOEXEC)
    }

    fn with_flags(flags: PipeFlags) -> Result<Self> {
        let (read, write) = pipe::pipe_with(flags)
            .map_err(io::Error::from)
            .context("pipe2")?;
        Ok(Pipe {
            read: File::from(read),
            write: File::from(write),
        })
    }

    /// vmsplices `bytes` (memory of a mapping, starting on a page boundary)
    /// into the pipe, one iovec per page, without SPLICE_F_GIFT: the pipe
    /// takes a reference on every page.
    pub fn vmsplice(&self, bytes: &[u8]) -> Result<()> {
        let len = bytes.len();
        let mut done = 0;
        while done < len {
            let iovecs: Vec<IoSliceRaw<'_>> = splice_spans(len, done, MAX_IOVECS)
                .into_iter()
                .map(|(offset, span)| IoSliceRaw::from_slice(&bytes[offset..offset + span]))
                .collect();
            done += self.vmsplice_once(&iovecs, done, len)?;
        }
        Ok(())
    }

    /// One non-blocking vmsplice of `iovecs`; the bytes it moved, at least
    /// one. `done` and `total` only word the errors.
    pub fn vmsplice_once(
        &self,
        iovecs: &[IoSliceRaw<'_>],
        done: usize,
        total: usize,
    ) -> Result<usize> {
        // SAFETY: the iovecs borrow the memory they describe for the call,
        // and `self.write` is the write end, so the kernel only reads that
        // memory; without SPLICE_F_GIFT it does not take the pages over.
        let moved = unsafe { pipe::vmsplice(&self.write, iovecs, SpliceFlags::NONBLOCK) }
            .map_err(io::Error::from)
            .with_context(|| format!("vmsplice after {done} of {total} bytes"))?;
        ensure!(
            moved > 0,
            "vmsplice moved nothing after {done} of {total} bytes"
        );
        Ok(moved)
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
        let mut fds = [PollFd::new(&self.read, PollFlags::IN)];
        let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        event::poll(&mut fds, Some(&timeout)).is_ok_and(|ready| ready > 0)
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
