//! Memory mappings: a shared file or anonymous memory, unmapped on drop.

use std::{fs::File, io, os::fd::AsRawFd, ptr};

use anyhow::{Context, Result};

/// A memory mapping, unmapped by [`Mapping::unmap`] or on drop.
#[derive(Debug)]
pub struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    /// Maps the first `len` bytes of `file` read/write, MAP_SHARED.
    pub fn shared_file(file: &File, len: usize) -> Result<Self> {
        Self::map(len, libc::MAP_SHARED, file.as_raw_fd())
            .with_context(|| format!("mmap {len} bytes MAP_SHARED"))
    }

    /// Maps `len` bytes of page-aligned anonymous memory (an O_DIRECT buffer).
    pub fn anonymous(len: usize) -> Result<Self> {
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
            .with_context(|| format!("mmap {len} anonymous bytes"))
    }

    fn map(len: usize, flags: libc::c_int, fd: libc::c_int) -> io::Result<Self> {
        // SAFETY: a fresh mapping at an address of the kernel's choosing
        // cannot alias any memory Rust knows about.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr, len })
    }

    /// Asks for base pages only (MADV_NOHUGEPAGE).
    pub fn no_huge_pages(&self) -> io::Result<()> {
        // SAFETY: advice on our own mapping; no memory is accessed.
        let rc = unsafe { libc::madvise(self.addr, self.len, libc::MADV_NOHUGEPAGE) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Start address of the mapping.
    pub fn addr(&self) -> usize {
        self.addr as usize
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes until `self` is gone,
        // and only this process (which created the file) writes to it.
        unsafe { std::slice::from_raw_parts(self.addr.cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.addr.cast::<u8>(), self.len) }
    }

    /// munmaps the mapping.
    pub fn unmap(mut self) -> Result<()> {
        let (addr, len) = (self.addr, self.len);
        self.addr = ptr::null_mut();
        // SAFETY: `addr`/`len` came from mmap, and `self`, the only owner of
        // slices into the mapping, is consumed.
        let rc = unsafe { libc::munmap(addr, len) };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("munmap {len} bytes at {addr:p}"));
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if !self.addr.is_null() {
            // SAFETY: as in `unmap`; the result is ignored because this only
            // runs when a scenario failed.
            unsafe { libc::munmap(self.addr, self.len) };
        }
    }
}
