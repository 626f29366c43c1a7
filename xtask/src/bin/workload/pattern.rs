//! The data written into every page and checked wherever it comes back.

use anyhow::{Result, ensure};

use crate::sys::PAGE_SIZE;

/// The value of the pattern byte at `offset` of page `page`.
///
/// The first 8 bytes of a page hold its index, so no two pages are alike;
/// the rest is a page-dependent ramp.
pub fn pattern_byte(page: usize, offset: usize) -> u8 {
    const MAGIC: u64 = 0x7265_6677_6174_6368; // "refwatch"
    if offset < 8 {
        ((page as u64) ^ MAGIC).to_le_bytes()[offset]
    } else {
        (page as u8).wrapping_mul(37).wrapping_add(offset as u8) ^ 0xa5
    }
}

/// Writes the pattern into every byte of `buf`, page by page.
pub fn fill_pattern(buf: &mut [u8]) {
    for (page, chunk) in buf.chunks_mut(PAGE_SIZE).enumerate() {
        for (offset, byte) in chunk.iter_mut().enumerate() {
            *byte = pattern_byte(page, offset);
        }
    }
}

/// Fails at the first byte of `data` that differs from the pattern.
pub fn check_pattern(data: &[u8]) -> Result<()> {
    for (page, chunk) in data.chunks(PAGE_SIZE).enumerate() {
        for (offset, &found) in chunk.iter().enumerate() {
            let expected = pattern_byte(page, offset);
            ensure!(
                found == expected,
                "data mismatch in page {page} at offset {offset}: expected {expected:#04x}, found {found:#04x}"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_differs_between_pages_and_is_checked() {
        let mut buf = vec![0u8; 300 * PAGE_SIZE];
        fill_pattern(&mut buf);
        let pages: Vec<&[u8]> = buf.chunks(PAGE_SIZE).collect();
        for (i, a) in pages.iter().enumerate() {
            for b in &pages[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(check_pattern(&buf).is_ok());

        buf[2 * PAGE_SIZE + 10] ^= 1;
        let err = check_pattern(&buf).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("page 2 at offset 10")));
    }
}
