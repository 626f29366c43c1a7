//! An event line's numbers, written in place into a buffer the encoder
//! keeps.

/// The buffer an event line's numbers are written into, kept by the
/// encoder (not cleared per event); [`Line`] writes into it.
#[derive(Debug)]
pub(super) struct LineBuf(Box<[u8; LINE_CAP]>);

impl Default for LineBuf {
    fn default() -> Self {
        Self(Box::new([0; LINE_CAP]))
    }
}

/// The longest line of numbers: 19 numbers of at most 20 digits and a
/// sign, with their separators.
pub(super) const LINE_CAP: usize = 512;

/// Two decimal digits of each number below 100, for [`Line::u`].
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// An event line being written: the encoder's buffer and how far it is
/// filled, both local to the encoder's `event_line` (the length stays in a
/// register; each number is written in place, two digits a step, with no
/// copy and no call).
pub(super) struct Line<'a> {
    buf: &'a mut [u8; LINE_CAP],
    pub(super) len: usize,
}

impl<'a> Line<'a> {
    pub(super) fn new(buf: &'a mut LineBuf) -> Self {
        Self {
            buf: &mut buf.0,
            len: 0,
        }
    }

    #[inline(always)]
    pub(super) fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    #[inline(always)]
    pub(super) fn u(&mut self, v: u64) {
        if v < 10 {
            self.byte(b'0' + v as u8);
            return;
        }
        let digits = v.ilog10() as usize + 1;
        let Some(slot) = self.buf.get_mut(self.len..self.len + digits) else {
            return;
        };
        self.len += digits;
        let (mut v, mut at) = (v, digits);
        while v >= 100 {
            let pair = (v % 100) as usize * 2;
            v /= 100;
            at -= 2;
            if let (Some(d), Some(p)) = (slot.get_mut(at..at + 2), DIGIT_PAIRS.get(pair..pair + 2))
            {
                d.copy_from_slice(p);
            }
        }
        if v >= 10 {
            let pair = v as usize * 2;
            if let (Some(d), Some(p)) = (slot.get_mut(..2), DIGIT_PAIRS.get(pair..pair + 2)) {
                d.copy_from_slice(p);
            }
        } else if let Some(d) = slot.first_mut() {
            *d = b'0' + v as u8;
        }
    }

    /// A comma, then `v`: most of a line's numbers are one digit, written
    /// with the comma as one two-byte store.
    #[inline(always)]
    pub(super) fn next_u(&mut self, v: u64) {
        if v < 10
            && let Some(pair) = self
                .buf
                .get_mut(self.len..)
                .and_then(|s| s.first_chunk_mut::<2>())
        {
            *pair = [b',', b'0' + v as u8];
            self.len += 2;
            return;
        }
        self.byte(b',');
        self.u(v);
    }

    /// A comma, then `v` or `null`, with [`Line::next_u`]'s fast path for
    /// one digit and a three-byte one for -1 (a page not mapped).
    #[inline(always)]
    pub(super) fn next_opt(&mut self, v: Option<i64>) {
        match v {
            Some(v @ 0..=9) => self.next_u(v as u64),
            Some(-1) => {
                if let Some(three) = self
                    .buf
                    .get_mut(self.len..)
                    .and_then(|s| s.first_chunk_mut::<3>())
                {
                    *three = *b",-1";
                    self.len += 3;
                }
            }
            v => {
                self.byte(b',');
                self.opt(v);
            }
        }
    }

    #[inline(always)]
    pub(super) fn i(&mut self, v: i64) {
        if v < 0 {
            self.byte(b'-');
        }
        self.u(v.unsigned_abs());
    }

    #[inline(always)]
    pub(super) fn opt(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.i(v),
            None => self.null(),
        }
    }

    #[inline(always)]
    pub(super) fn null(&mut self) {
        if let Some(slot) = self.buf.get_mut(self.len..self.len + 4) {
            slot.copy_from_slice(b"null");
            self.len += 4;
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}
