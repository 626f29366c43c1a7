//! Byte comparisons for the per-event path that call no C library function:
//! Rust compares slices with `bcmp`, which musl (the libc of the static
//! build users install) runs a byte at a time, about 5 instructions a byte.
//! Here eight bytes are one compare, and four words one branch.

/// Whether `a` and `b` hold the same bytes.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut wa = a.chunks_exact(32);
    let mut wb = b.chunks_exact(32);
    for (x, y) in (&mut wa).zip(&mut wb) {
        if words_differ(x, y) != 0 {
            return false;
        }
    }
    let (ra, rb) = (wa.remainder(), wb.remainder());
    let whole = ra.len() / 8 * 8;
    let (wa, ta) = ra.split_at(whole);
    let (wb, tb) = rb.split_at(whole);
    let words = words_differ(wa, wb);
    let tail = ta.iter().zip(tb).fold(0, |d, (x, y)| d | (x ^ y));
    words == 0 && tail == 0
}

/// The or of the differences of `x`'s and `y`'s whole 8-byte words (the
/// same length, a multiple of 8): 0 when they are equal.
#[inline(always)]
fn words_differ(x: &[u8], y: &[u8]) -> u64 {
    let word = |c: &[u8]| c.first_chunk().map_or(0, |w| u64::from_ne_bytes(*w));
    x.chunks_exact(8)
        .zip(y.chunks_exact(8))
        .fold(0, |d, (p, q)| d | (word(p) ^ word(q)))
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn equal_only_for_the_same_bytes_at_every_length() {
        let base: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for n in 0..=base.len() {
            let a = &base[..n];
            // Another copy: equal bytes at another address.
            let copy = a.to_vec();
            assert!(same(a, &copy), "{n} bytes");
            for at in 0..n {
                for bit in [0, 3, 7] {
                    let mut b = a.to_vec();
                    b[at] ^= 1 << bit;
                    assert!(!same(a, &b), "{n} bytes, byte {at} bit {bit}");
                }
            }
            if n > 0 {
                assert!(!same(a, &base[..n - 1]), "{n} against {}", n - 1);
                assert!(!same(&base[..n - 1], a));
            }
        }
        assert!(same(b"try_grab_folio_fast", b"try_grab_folio_fast"));
        assert!(!same(b"try_grab_folio_fast", b"try_grab_folio_fasu"));
    }
}
