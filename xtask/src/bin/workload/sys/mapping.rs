//! Memory mappings: a shared file or anonymous memory, unmapped on drop.

use std::{ffi::c_void, fs::File, io, ptr};

use anyhow::{Context, Result};
use rustix::mm::{self, Advice, MapFlags, ProtFlags};

/// A memory mapping, unmapped by [`Mapping::unmap`] or on drop.
#[derive(Debug)]
pub struct Mapping {
    /// Null once unmapped.
    addr: *mut c_void,
    len: usize,
}

impl Mapping {
    /// Maps the first `len` bytes of `file` read/write, MAP_SHARED.
    pub fn shared_file(file: &File, len: usize) -> Result<Self> {
        Self::map(len, Some(file)).with_context(|| format!("mmap {len} bytes MAP_SHARED"))
    }

    /// Maps `len` bytes of page-aligned anonymous memory (an O_DIRECT buffer).
    pub fn anonymous(len: usize) -> Result<Self> {
        Self::map(len, None).with_context(|| format!("mmap {len} anonymous bytes"))
    }

    /// Maps `file` shared, or private anonymous memory without one.
    fn map(len: usize, file: Option<&File>) -> io::Result<Self> {
        let prot = ProtFlags::READ | ProtFlags::WRITE;
        // SAFETY: a fresh mapping at an address of the kernel's choosing
        // cannot alias any memory Rust knows about.
        let addr = unsafe {
            match file {
                Some(file) => mm::mmap(ptr::null_mut(), len, prot, MapFlags::SHARED, file, 0),
                None => mm::mmap_anonymous(ptr::null_mut(), len, prot, MapFlags::PRIVATE),
            }
        }?;
        Ok(Mapping { addr, len })
    }

    /// Asks for base pages only (MADV_NOHUGEPAGE).
    pub fn no_huge_pages(&self) -> io::Result<()> {
        // SAFETY: advice on our own mapping; no memory is accessed.
        unsafe { mm::madvise(self.addr, self.len, Advice::LinuxNoHugepage) }?;
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
        self.release()
            .with_context(|| format!("munmap {len} bytes at {addr:p}"))
    }

    /// munmaps the mapping unless that was done already.
    fn release(&mut self) -> io::Result<()> {
        let addr = std::mem::replace(&mut self.addr, ptr::null_mut());
        if addr.is_null() {
            return Ok(());
        }
        // SAFETY: `addr`/`len` came from mmap and are unmapped only once (the
        // null above). Slices into the mapping borrow `self`, so none is
        // alive: this runs from `unmap`, which consumes `self`, or from drop.
        unsafe { mm::munmap(addr, self.len) }?;
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // The result is ignored because this only runs when a scenario failed.
        let _ = self.release();
    }
}
