//! Kernel addresses: which numbers are ones, so that no output shows one
//! unless asked (`--raw-pointers`), and checks can look for any in text.

/// Lowest kernel address: the kernel half of a 57-bit address space
/// (5-level paging, where `vmemmap` sits at e.g. `0xff93…`); with 4-level
/// paging it starts higher, at `0xffff_8000_0000_0000`.
pub const START: u64 = 0xff00_0000_0000_0000;
/// Highest: the last page is the `ERR_PTR` range (-4095..=-1).
pub const END: u64 = (-4096i64) as u64;

/// Whether `v` is in the kernel address range (as an `i64`: from
/// -2^56 to -4096).
pub const fn is_kernel_address(v: u64) -> bool {
    v >= START && v <= END
}

/// [`is_kernel_address`] of a signed value.
pub const fn is_kernel_address_i64(v: i64) -> bool {
    is_kernel_address(v as u64)
}

/// Every spelling of a kernel address in `text`, as it is written there:
/// decimal, signed (`-30611519316131840`) or unsigned
/// (`18416132554393419776`); hex with `0x` (`0xff933efc41208000`) or as a
/// bare 16-digit word (`ffffea0001234500`). Numbers are whole words:
/// digits inside a name (`bpf_trampoline_6442501886`, a hash) are not
/// numbers.
pub fn spellings(text: &str) -> Spellings<'_> {
    Spellings { text, at: 0 }
}

/// The iterator of [`spellings`].
#[derive(Debug, Clone)]
pub struct Spellings<'a> {
    text: &'a str,
    at: usize,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// End of the word that starts at `from`.
fn word_end(b: &[u8], from: usize) -> usize {
    let mut j = from;
    while j < b.len() && is_word(b[j]) {
        j += 1;
    }
    j
}

fn hex_value(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        let x = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        v = v << 4 | x as u64;
    }
    Some(v)
}

fn decimal_value(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(v)
}

/// Whether the word `w` (after a `-` when `neg`) spells a kernel address.
fn word_is_kernel_address(w: &[u8], neg: bool) -> bool {
    if let Some(v) = decimal_value(w) {
        return if neg {
            v <= 1 << 63 && is_kernel_address((v as i64).wrapping_neg() as u64)
        } else {
            is_kernel_address(v)
        };
    }
    if neg {
        return false;
    }
    if let [b'0', b'x' | b'X', hex @ ..] = w {
        return hex_value(hex).is_some_and(is_kernel_address);
    }
    w.len() == 16 && hex_value(w).is_some_and(is_kernel_address)
}

impl<'a> Iterator for Spellings<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.text.as_bytes();
        while self.at < b.len() {
            let i = self.at;
            let neg = b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit);
            let starts_word = is_word(b[i]) && (i == 0 || !is_word(b[i - 1]));
            if !neg && !starts_word {
                self.at += 1;
                continue;
            }
            let from = if neg { i + 1 } else { i };
            let end = word_end(b, from);
            self.at = end;
            if word_is_kernel_address(&b[from..end], neg) {
                return self.text.get(i..end);
            }
        }
        None
    }
}
