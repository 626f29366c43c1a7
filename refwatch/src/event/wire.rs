//! The ring buffer's records: decoding them into [`PageEvent`]s without
//! allocating per event, and encoding events back (tests, benches).

use std::hash::Hasher as _;

use refwatch_common::{
    COMM_LEN, EVENT_HEADER_SIZE, EVENT_SIZE, Event, MAX_STACK, flags, record_room, record_size,
};

use super::{Comm, DecodeError, Kind, PageEvent, Stack, StackInterner, StackTaken};
use crate::symbols::Role;

/// Decodes ring-buffer records without allocating per event: equal stacks
/// are shared through its [`StackInterner`].
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    stacks: StackInterner,
    /// The stacks of the records decoded last, most recent first: events
    /// come in runs from one place or alternate between a few (a get and
    /// its put), and a record whose frames are one of these is that stack
    /// after a compare of its bytes, before any hashing or copying.
    recent: [Stack; RECENT],
    /// The name of the record decoded last, as in the record and decoded:
    /// runs of events come from one task.
    last_comm: ([u8; COMM_LEN], Comm),
    /// Whether the record decoded last was a free that also reported the
    /// page's last put, not split yet ([`Decoder::split_last_put`]).
    last_put: bool,
}

impl Decoder {
    pub fn new(stacks: StackInterner) -> Self {
        Self {
            stacks,
            recent: Default::default(),
            last_comm: Default::default(),
            last_put: false,
        }
    }

    /// [`decode`], with the stack interned, the record's event as it was
    /// sent: the caller then asks [`Self::split_last_put`] for a free that
    /// also reports the page's last put. Inline, so that the event is built
    /// in its caller's place: returned from a call, its 152 bytes, just
    /// written field by field, were copied whole (a `memmove` that waits on
    /// those stores), which took half of decoding. (Splitting a free's
    /// record here, or returning both of its events, copied the event
    /// too: about 90 instructions an event more on the host's record
    /// bench.)
    #[inline]
    pub fn decode(&mut self, bytes: &[u8]) -> Result<PageEvent, DecodeError> {
        debug_assert!(!self.last_put, "a free with its last put was not split");
        let Self {
            stacks,
            recent,
            last_comm,
            last_put,
        } = self;
        decode_with(
            bytes,
            |wire| {
                if let Some(i) = recent.iter().position(|s| wire.is(s)) {
                    // Most recent first.
                    recent[..=i].rotate_right(1);
                } else {
                    recent.rotate_right(1);
                    recent[0] = intern(stacks, &wire);
                }
                recent[0].clone()
            },
            |comm| {
                if *comm != last_comm.0 {
                    *last_comm = (*comm, Comm::from_kernel(comm));
                }
                last_comm.1.clone()
            },
            last_put,
        )
    }

    /// Whether the record [`Self::decode`] read last was a free that also
    /// reported the page's last put: then [`Self::split_last_put`] splits
    /// its event. Asked first, so that the event of every other record is
    /// not lent out of its caller (a few instructions an event less on
    /// the host's record bench).
    #[inline]
    pub fn has_last_put(&self) -> bool {
        self.last_put
    }

    /// For `ev`, the event [`Self::decode`] gave last: when its record was
    /// a free that also reported the page's last put, turns `ev` into that
    /// put and returns the free that follows it; `None` for every other
    /// record.
    #[inline]
    pub fn split_last_put(&mut self, ev: &mut PageEvent) -> Option<PageEvent> {
        if !self.last_put {
            return None;
        }
        self.last_put = false;
        Some(split_last_put(ev))
    }
}

/// Stacks a [`Decoder`] compares a record's with before interning it.
const RECENT: usize = 4;

/// The interned stack of a record (whose stack is not a recent one).
#[inline(never)]
fn intern(stacks: &mut StackInterner, wire: &WireStack<'_>) -> Stack {
    let mut buf = [0; FRAMES_BUF];
    let (frames, hash) = wire.frames(&mut buf);
    stacks.intern_hashed(frames, hash)
}

/// What one ring record holds: an event; for a page's free that also
/// reports its last put ([`flags::LAST_PUT`]), that put, then the free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The record's event (the put, for a free that reports one).
    pub event: PageEvent,
    /// The free that follows the put, from the same record.
    pub free: Option<PageEvent>,
}

impl From<PageEvent> for Decoded {
    fn from(event: PageEvent) -> Self {
        Self { event, free: None }
    }
}

impl IntoIterator for Decoded {
    type Item = PageEvent;
    type IntoIter = std::iter::Chain<std::iter::Once<PageEvent>, std::option::IntoIter<PageEvent>>;

    /// The record's events in the order they happened.
    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.event).chain(self.free)
    }
}

/// Splits a free's record that also reports the page's last put (see
/// [`flags::LAST_PUT`]), decoded as the free with the put's stack, into
/// the put, with that stack, from the count the free found + 1 to it, and
/// the free after it, without a stack (returned).
#[cold]
#[inline(never)]
fn split_last_put(put: &mut PageEvent) -> PageEvent {
    let mut free = put.clone();
    free.stack = Stack::default();
    free.stack_taken = StackTaken::No;
    put.kind = Kind::Put;
    put.refcount_after = put.refcount_before;
    put.refcount_before = put.refcount_before.map(|b| b.saturating_add(1));
    put.aux = 1;
    free
}

/// Decodes one ring-buffer record. The stack gets an allocation of its own;
/// [`Decoder`] shares equal ones.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut last_put = false;
    let mut event = decode_with(
        bytes,
        |wire| {
            let mut buf = [0; FRAMES_BUF];
            Stack::from(wire.frames(&mut buf).0)
        },
        Comm::from_kernel,
        &mut last_put,
    )?;
    let free = last_put.then(|| split_last_put(&mut event));
    Ok(Decoded { event, free })
}

/// Converts a wire event.
pub fn from_raw(raw: &Event) -> Result<Decoded, DecodeError> {
    decode(&to_bytes(raw))
}

/// A record's header (the fields before the stack), read field by field at
/// `Event`'s offsets in native byte order (what an unaligned read of the
/// whole `Event` would give), without copying the record.
struct Wire<'a>(&'a [u8; EVENT_HEADER_SIZE]);

macro_rules! at {
    ($field:ident) => {
        std::mem::offset_of!(Event, $field)
    };
}

impl Wire<'_> {
    #[inline]
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut b = [0; N];
        b.copy_from_slice(&self.0[off..off + N]);
        b
    }

    #[inline]
    fn u64(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.bytes(off))
    }

    #[inline]
    fn i64(&self, off: usize) -> i64 {
        i64::from_ne_bytes(self.bytes(off))
    }

    #[inline]
    fn u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(off))
    }

    #[inline]
    fn i32(&self, off: usize) -> i32 {
        i32::from_ne_bytes(self.bytes(off))
    }
}

/// Room for a record's frames: a power of two, so that indexing it needs
/// no bounds check.
const FRAMES_BUF: usize = MAX_STACK.next_power_of_two();

/// A record's stack as it is in the record: whole frames, some maybe zero
/// (left out of the event's stack).
struct WireStack<'a>(&'a [u8]);

impl WireStack<'_> {
    /// The frames, native-endian.
    #[inline]
    fn words(&self) -> impl Iterator<Item = u64> + '_ {
        self.0
            .chunks_exact(8)
            .map(|c| c.first_chunk().map_or(0, |w| u64::from_ne_bytes(*w)))
    }

    /// Whether the stack is `stack` (whose frames are never zero, so a
    /// record with a zero frame is not).
    #[inline]
    fn is(&self, stack: &Stack) -> bool {
        let frames = stack.frames();
        // SAFETY: the frames' bytes, in memory order (native-endian, as
        // the record's): any bytes are valid `u8`s, and the length covers
        // exactly the frames.
        let bytes = unsafe {
            std::slice::from_raw_parts(frames.as_ptr().cast::<u8>(), size_of_val(frames))
        };
        // Not `==`, which is the C library's `bcmp`: see `crate::bytes`
        // (musl took about 900 instructions for a 24-frame stack).
        crate::bytes::same(self.0, bytes)
    }

    /// The non-zero frames, in `buf`, and their [`recent_hash`], taken as
    /// they are read.
    #[inline]
    fn frames<'b>(&self, buf: &'b mut [u64; FRAMES_BUF]) -> (&'b [u64], u64) {
        let mut n = 0;
        let mut hash = crate::fasthash::fast_hasher();
        for a in self.words() {
            // Zero frames are left out: the next frame takes their place.
            buf[n % FRAMES_BUF] = a;
            if a != 0 {
                n += 1;
                hash.write_u64(a);
            }
        }
        (buf.get(..n).unwrap_or_default(), hash.finish())
    }
}

/// Decodes a record; `stack` and `comm` make the event's stack and name
/// from the record's. Always inline, for [`Decoder::decode`]'s sake.
#[inline(always)]
fn decode_with(
    bytes: &[u8],
    stack: impl FnOnce(WireStack<'_>) -> Stack,
    comm: impl FnOnce(&[u8; COMM_LEN]) -> Comm,
    last_put: &mut bool,
) -> Result<PageEvent, DecodeError> {
    // A record is `Event` cut after the room its stack was given (the
    // kernel sizes it to the frames the event asks for): the header, then
    // at least `stack_bytes` of frames.
    let Some((w, room)) = bytes.split_first_chunk::<EVENT_HEADER_SIZE>() else {
        return Err(DecodeError::Truncated {
            got: bytes.len(),
            need: EVENT_HEADER_SIZE,
        });
    };
    let w = Wire(w);
    let kind = Kind::try_from(w.u32(at!(kind)))?;
    let stack_bytes = w.u32(at!(stack_bytes));
    if !stack_bytes.is_multiple_of(8) || stack_bytes as usize > MAX_STACK * 8 {
        return Err(DecodeError::BadStack(stack_bytes));
    }
    let Some(frames) = room.get(..stack_bytes as usize) else {
        return Err(DecodeError::Truncated {
            got: bytes.len(),
            need: EVENT_HEADER_SIZE + stack_bytes as usize,
        });
    };
    // The stack first: the other fields then go straight into the event,
    // not held across the interning.
    let stack = stack(WireStack(frames));
    let fl = w.u32(at!(flags));
    let has = |bit: u32| fl & bit != 0;
    // Noted, not split here: the event is built straight in its place.
    if kind == Kind::Free && has(flags::LAST_PUT) {
        *last_put = true;
    }
    Ok(PageEvent {
        ts_ns: w.u64(at!(ts_ns)),
        pfn: w.u64(at!(pfn)),
        page: w.u64(at!(page)),
        pid: w.u32(at!(pid)),
        tgid: w.u32(at!(tgid)),
        cpu: w.u32(at!(cpu)),
        comm: comm(&w.bytes::<COMM_LEN>(at!(comm))),
        kind,
        hook: w.u32(at!(hook)),
        refcount_before: has(flags::HAS_BEFORE).then(|| w.i32(at!(refcount_before))),
        refcount_after: has(flags::HAS_AFTER).then(|| w.i32(at!(refcount_after))),
        mapcount: has(flags::HAS_MAPCOUNT).then(|| w.i32(at!(mapcount))),
        pgmap_type: w.u32(at!(pgmap_type)),
        nr_pages: w.u32(at!(nr_pages)),
        ret: has(flags::HAS_RET).then(|| w.i64(at!(ret))),
        aux: w.u64(at!(aux)),
        aux2: w.u64(at!(aux2)),
        owner: w.u64(at!(owner)),
        late: has(flags::LATE),
        forking: has(flags::FORKING),
        role: Role::Other,
        stack,
        stack_taken: StackTaken::from_flags(fl),
    })
}

/// Encodes a decoded event back to its wire form (tests and benches build
/// synthetic ring-buffer records with it).
pub fn to_raw(ev: &PageEvent) -> Event {
    let mut raw = Event::zeroed();
    raw.ts_ns = ev.ts_ns;
    raw.pfn = ev.pfn;
    raw.page = ev.page;
    raw.pid = ev.pid;
    raw.tgid = ev.tgid;
    raw.cpu = ev.cpu;
    raw.kind = ev.kind.raw();
    raw.hook = ev.hook;
    let mut fl = 0;
    if let Some(v) = ev.refcount_before {
        fl |= flags::HAS_BEFORE;
        raw.refcount_before = v;
    }
    if let Some(v) = ev.refcount_after {
        fl |= flags::HAS_AFTER;
        raw.refcount_after = v;
    }
    if let Some(v) = ev.mapcount {
        fl |= flags::HAS_MAPCOUNT;
        raw.mapcount = v;
    }
    if let Some(v) = ev.ret {
        fl |= flags::HAS_RET;
        raw.ret = v;
    }
    if ev.late {
        fl |= flags::LATE;
    }
    if ev.forking {
        fl |= flags::FORKING;
    }
    fl |= ev.stack_taken.flags();
    raw.flags = fl;
    raw.aux2 = ev.aux2;
    raw.owner = ev.owner;
    raw.pgmap_type = ev.pgmap_type;
    raw.nr_pages = ev.nr_pages;
    raw.aux = ev.aux;
    let n = ev.comm.len().min(COMM_LEN - 1);
    raw.comm[..n].copy_from_slice(&ev.comm.as_bytes()[..n]);
    let frames = ev.stack.len().min(MAX_STACK);
    raw.stack[..frames].copy_from_slice(&ev.stack[..frames]);
    raw.stack_bytes = (frames * 8) as u32;
    raw
}

/// The ring record of an event as the kernel sizes it: the header and the
/// room for its stack's frames ([`record_room`]).
pub fn to_record(raw: &Event) -> Vec<u8> {
    let mut out = to_bytes(raw);
    out.truncate(record_size(record_room(raw.stack_bytes as usize / 8)));
    out
}

/// The wire bytes of an event, with room for [`MAX_STACK`] frames.
pub fn to_bytes(raw: &Event) -> Vec<u8> {
    let mut out = vec![0u8; EVENT_SIZE];
    // SAFETY: `out` has exactly `EVENT_SIZE` bytes and `write_unaligned` has no
    // alignment needs.
    unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast::<Event>(), *raw) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(frames: &[u64]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.to_ne_bytes()).collect()
    }

    /// The recent-stack check: equal only for the same frames, whatever
    /// the length and wherever a frame differs.
    #[test]
    fn a_record_is_a_stack_only_with_its_frames() {
        for n in [1usize, 3, 4, 5, 8, 9, 24, MAX_STACK] {
            let frames: Vec<u64> = (0..n as u64)
                .map(|i| 0xffff_ffff_8100_0000 + i * 0x40)
                .collect();
            let stack = Stack::from(frames.clone());
            let wire = bytes(&frames);
            assert!(WireStack(&wire).is(&stack), "{n} frames");
            for at in 0..n {
                for bit in [0, 17, 63] {
                    let mut other = frames.clone();
                    other[at] ^= 1 << bit;
                    let wire = bytes(&other);
                    assert!(!WireStack(&wire).is(&stack), "{n} frames, {at} differs");
                }
            }
            // One frame more or less, or a zero frame left in.
            assert!(!WireStack(&wire[..wire.len() - 8]).is(&stack));
            let mut longer = frames.clone();
            longer.push(frames[0]);
            assert!(!WireStack(&bytes(&longer)).is(&stack));
            let mut zero = frames.clone();
            zero[n / 2] = 0;
            assert!(!WireStack(&bytes(&zero)).is(&stack));
        }
        assert!(!WireStack(&[]).is(&Stack::from(vec![1])));
        assert!(WireStack(&[]).is(&Stack::default()));
    }
}
