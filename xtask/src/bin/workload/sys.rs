//! The system calls the scenarios need, each behind a small safe type.

pub mod child;
pub mod clock;
pub mod files;
pub mod mapping;
pub mod pagemap;
pub mod pipe;

use anyhow::{Result, ensure};

/// Size of the pages the scenarios work on (x86_64 base pages).
pub const PAGE_SIZE: usize = 4096;

/// Fails unless the kernel's page size is the 4 KiB the scenarios assume.
pub fn check_page_size() -> Result<()> {
    let size = rustix::param::page_size();
    ensure!(
        size == PAGE_SIZE,
        "page size is {size}, the workload needs {PAGE_SIZE}"
    );
    Ok(())
}
