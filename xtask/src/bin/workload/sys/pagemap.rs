//! /proc/self/pagemap: the PFNs of present pages, and where device-private
//! pages are.

use std::{fs::File, os::unix::fs::FileExt};

use anyhow::{Context, Result, ensure};

use super::PAGE_SIZE;

/// Bits 0-54 of a pagemap entry: the page frame number.
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;
/// Bit 62 of a pagemap entry: the page is swapped out.
const PAGEMAP_SWAPPED: u64 = 1 << 62;
/// Bit 63 of a pagemap entry: the page is present in RAM (or pmem).
const PAGEMAP_PRESENT: u64 = 1 << 63;

/// A decoded entry of /proc/<pid>/pagemap (Documentation/admin-guide/mm/pagemap.rst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PagemapEntry {
    present: bool,
    swapped: bool,
    /// Bits 0-54; zero for unprivileged readers.
    pfn: u64,
}

impl PagemapEntry {
    fn decode(raw: u64) -> Self {
        PagemapEntry {
            present: raw & PAGEMAP_PRESENT != 0,
            swapped: raw & PAGEMAP_SWAPPED != 0,
            pfn: raw & PAGEMAP_PFN_MASK,
        }
    }

    /// The PFN of page `index`, or why there is none.
    fn pfn_of_page(self, index: usize) -> Result<u64> {
        ensure!(
            self.present,
            "page {index} is not present in pagemap (swapped: {})",
            self.swapped
        );
        ensure!(
            self.pfn != 0,
            "page {index} has PFN 0 in pagemap (reading PFNs needs CAP_SYS_ADMIN)"
        );
        Ok(self.pfn)
    }
}

/// Reads the raw /proc/self/pagemap entries of `pages` pages at `addr`.
fn read_entries(addr: usize, pages: usize) -> Result<Vec<u64>> {
    const PAGEMAP: &str = "/proc/self/pagemap";
    let pagemap = File::open(PAGEMAP).with_context(|| format!("open {PAGEMAP}"))?;
    let mut raw = vec![0u8; pages * 8];
    let offset = (addr / PAGE_SIZE) as u64 * 8;
    pagemap
        .read_exact_at(&mut raw, offset)
        .with_context(|| format!("pread {} bytes at {offset:#x} of {PAGEMAP}", raw.len()))?;
    Ok(raw
        .chunks_exact(8)
        .map(|bytes| {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            u64::from_ne_bytes(word)
        })
        .collect())
}

/// Reads the PFNs of `pages` pages mapped at `addr` from /proc/self/pagemap.
pub fn read_pfns(addr: usize, pages: usize) -> Result<Vec<u64>> {
    read_entries(addr, pages)?
        .into_iter()
        .enumerate()
        .map(|(index, raw)| PagemapEntry::decode(raw).pfn_of_page(index))
        .collect()
}

/// Where a page of a mapping is, according to /proc/self/pagemap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageLocation {
    /// Present, with this PFN.
    Ram(u64),
    /// A device-private entry for this PFN.
    Device { pfn: u64, writable: bool },
    /// Some other swap-type entry (swap type, offset).
    OtherSwap(u64, u64),
    /// Nothing mapped.
    None,
}

impl PageLocation {
    fn decode(raw: u64) -> Self {
        let entry = PagemapEntry::decode(raw);
        if entry.present {
            return PageLocation::Ram(entry.pfn);
        }
        if !entry.swapped {
            return PageLocation::None;
        }
        // The frame field of a swap-type entry is type | offset << 5, the
        // offset being the PFN for PFN-carrying entries (fs/proc/task_mmu.c).
        let kind = entry.pfn & ((1 << SWP_TYPE_BITS) - 1);
        let offset = entry.pfn >> SWP_TYPE_BITS;
        match kind {
            SWP_DEVICE_WRITE => PageLocation::Device {
                pfn: offset,
                writable: true,
            },
            SWP_DEVICE_READ => PageLocation::Device {
                pfn: offset,
                writable: false,
            },
            _ => PageLocation::OtherSwap(kind, offset),
        }
    }

    pub fn device_pfn(&self) -> Option<u64> {
        match self {
            PageLocation::Device { pfn, .. } => Some(*pfn),
            _ => None,
        }
    }
}

/// Bits of the swap type in a pagemap swap entry (`MAX_SWAPFILES_SHIFT`).
const SWP_TYPE_BITS: u32 = 5;
/// Swap types of device-private entries: the last types below the PTE
/// marker type (31): `SWP_DEVICE_WRITE` 28, `SWP_DEVICE_READ` 29
/// (`SWP_DEVICE_EXCLUSIVE` 30), whatever the other options.
const SWP_DEVICE_WRITE: u64 = 28;
const SWP_DEVICE_READ: u64 = 29;

/// Reads where each of `pages` pages at `addr` is from /proc/self/pagemap.
pub fn read_locations(addr: usize, pages: usize) -> Result<Vec<PageLocation>> {
    Ok(read_entries(addr, pages)?
        .into_iter()
        .map(PageLocation::decode)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_entry_decodes_present_pfn() {
        let raw = PAGEMAP_PRESENT | (1 << 61) | (1 << 55) | 0x12_3456;
        let entry = PagemapEntry::decode(raw);
        assert_eq!(
            entry,
            PagemapEntry {
                present: true,
                swapped: false,
                pfn: 0x12_3456
            }
        );
        assert_eq!(entry.pfn_of_page(0).ok(), Some(0x12_3456));
    }

    #[test]
    fn pagemap_pfn_uses_bits_0_to_54() {
        let entry = PagemapEntry::decode(PAGEMAP_PRESENT | u64::MAX >> 1);
        assert_eq!(entry.pfn, (1 << 55) - 1);
    }

    #[test]
    fn pagemap_entry_without_pfn_is_an_error() {
        let not_present = PagemapEntry::decode(0x1234);
        assert!(!not_present.present);
        let err = not_present.pfn_of_page(3).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("page 3 is not present")));

        let swapped = PagemapEntry::decode(PAGEMAP_SWAPPED | 0x42);
        assert!(swapped.swapped && !swapped.present);
        assert!(swapped.pfn_of_page(0).is_err());

        let hidden = PagemapEntry::decode(PAGEMAP_PRESENT);
        let err = hidden.pfn_of_page(7).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("page 7 has PFN 0")));
    }

    #[test]
    fn pagemap_device_private_entries_decode() {
        // frame = type | pfn << 5, PM_SWAP set, not present.
        let raw = PAGEMAP_SWAPPED | (0xfcf_0003 << 5) | SWP_DEVICE_WRITE;
        assert_eq!(
            PageLocation::decode(raw),
            PageLocation::Device {
                pfn: 0xfcf_0003,
                writable: true
            }
        );
        let raw = PAGEMAP_SWAPPED | (0x42 << 5) | SWP_DEVICE_READ;
        assert_eq!(PageLocation::decode(raw).device_pfn(), Some(0x42));
        let raw = PAGEMAP_SWAPPED | (7 << 5) | 1;
        assert_eq!(PageLocation::decode(raw), PageLocation::OtherSwap(1, 7));
        assert_eq!(
            PageLocation::decode(PAGEMAP_PRESENT | 0x99),
            PageLocation::Ram(0x99)
        );
        assert_eq!(PageLocation::decode(0), PageLocation::None);
    }
}
