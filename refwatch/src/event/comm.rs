//! A task's name as events carry it.

use std::{fmt, ops::Deref, rc::Rc};

use refwatch_common::COMM_LEN;

/// A task name, as cheap to copy as the event it is in: inline for what the
/// kernel reports (at most 16 bytes of UTF-8 without NUL), shared for
/// anything else (a name with invalid bytes, decoded lossily, or a longer
/// one read back from JSON). Compares, hashes and prints as its text.
#[derive(Default)]
pub struct Comm {
    /// The name when inline, NUL-padded; all zero when `long` holds it.
    bytes: [u8; COMM_LEN],
    long: Option<Rc<String>>,
}

impl Clone for Comm {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes,
            long: self.long.clone(),
        }
    }

    /// An inline name over an inline name is a copy of its bytes (a
    /// page's last name is set this way on every event).
    #[inline]
    fn clone_from(&mut self, source: &Self) {
        if self.long.is_none() && source.long.is_none() {
            self.bytes = source.bytes;
        } else {
            *self = source.clone();
        }
    }
}

impl Comm {
    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.long {
            Some(s) => s,
            None => {
                let len = self.bytes.iter().position(|b| *b == 0).unwrap_or(COMM_LEN);
                // Only ever filled from a `&str` or checked bytes.
                std::str::from_utf8(&self.bytes[..len]).unwrap_or_default()
            }
        }
    }

    /// The kernel's `comm` bytes up to the first NUL, lossily as UTF-8.
    #[inline]
    pub(super) fn from_kernel(comm: &[u8; COMM_LEN]) -> Self {
        // Eight bytes at a time, without a branch: the bytes before the
        // first NUL (the lowest byte flagged by the classic has-zero-byte
        // test is exact), then ASCII up to it.
        const ONES: u64 = u64::MAX / 0xff;
        const HIGH: u64 = ONES << 7;
        let (lo, hi) = comm.split_at(COMM_LEN / 2);
        let word = |b: &[u8]| b.first_chunk().map_or(0, |b| u64::from_le_bytes(*b));
        let (lo, hi) = (word(lo), word(hi));
        let zeros = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        // All ones below the first NUL's byte; all ones without a NUL.
        let before_nul = |z: u64| ((z & z.wrapping_neg()) >> 7).wrapping_sub(1);
        let (zlo, zhi) = (zeros(lo), zeros(hi));
        let lo = lo & before_nul(zlo);
        let hi = if zlo == 0 { hi & before_nul(zhi) } else { 0 };
        if (lo | hi) & HIGH == 0 {
            // What the kernel almost always has: as it is, inline.
            let mut bytes = [0; COMM_LEN];
            bytes[..COMM_LEN / 2].copy_from_slice(&lo.to_le_bytes());
            bytes[COMM_LEN / 2..].copy_from_slice(&hi.to_le_bytes());
            return Self { bytes, long: None };
        }
        Self::from_kernel_lossy(comm)
    }

    /// [`Comm::from_kernel`] for a name that is not ASCII.
    #[cold]
    #[inline(never)]
    fn from_kernel_lossy(comm: &[u8; COMM_LEN]) -> Self {
        let len = comm.iter().position(|b| *b == 0).unwrap_or(COMM_LEN);
        Self::from(String::from_utf8_lossy(&comm[..len]).as_ref())
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Self {
        if s.len() <= COMM_LEN && !s.as_bytes().contains(&0) {
            let mut bytes = [0; COMM_LEN];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Self { bytes, long: None }
        } else {
            Self {
                bytes: [0; COMM_LEN],
                long: Some(Rc::new(s.to_owned())),
            }
        }
    }
}

impl From<String> for Comm {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<&String> for Comm {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

impl Deref for Comm {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Comm {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Comm {
    fn eq(&self, other: &Self) -> bool {
        match (&self.long, &other.long) {
            // A name is inline exactly when it can be (at most 16 bytes, no
            // NUL), NUL-padded: equal names have equal bytes.
            (None, None) => u128::from_ne_bytes(self.bytes) == u128::from_ne_bytes(other.bytes),
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for Comm {}

impl PartialEq<str> for Comm {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for Comm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: width and alignment apply as to a `String`.
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
