//! Decoding events from the ring buffer, and their stable names.

use std::{fmt, hash::Hasher as _, ops::Deref, rc::Rc};

use refwatch_common::{COMM_LEN, EVENT_SIZE, Event, MAX_STACK, flags, kind, pgmap};

use crate::{fasthash::FastSet, symbols::Role};

/// Why bytes could not be decoded into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than an event.
    Truncated { got: usize },
    /// An event kind this build does not know.
    UnknownKind(u32),
    /// A stack length that is not a whole number of frames within the array.
    BadStack(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { got } => write!(f, "truncated event: {got} of {EVENT_SIZE} bytes"),
            Self::UnknownKind(k) => write!(f, "unknown event kind {k}"),
            Self::BadStack(n) => write!(f, "bad stack length {n} bytes"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Logical event kind, with a stable name used in every export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Get,
    Put,
    Pin,
    Unpin,
    Free,
    Migrate,
    LayoutWait,
    /// The refcount was set (init, a migration's freeze/unfreeze).
    Set,
    /// A device page map came up.
    PgmapAdd,
    /// A device page map is being torn down.
    PgmapRemove,
    /// A fork that took references on device pages finished (`ret` = child).
    Fork,
    /// refwatch read the page's state from the kernel (at attach, or after
    /// its events were lost): the refcount and mapcount as they were then.
    Snapshot,
}

impl TryFrom<u32> for Kind {
    type Error = DecodeError;
    fn try_from(v: u32) -> Result<Self, DecodeError> {
        Ok(match v {
            kind::GET => Self::Get,
            kind::PUT => Self::Put,
            kind::PIN => Self::Pin,
            kind::UNPIN => Self::Unpin,
            kind::FREE => Self::Free,
            kind::MIGRATE => Self::Migrate,
            kind::LAYOUT_WAIT => Self::LayoutWait,
            kind::SET => Self::Set,
            kind::PGMAP_ADD => Self::PgmapAdd,
            kind::PGMAP_REMOVE => Self::PgmapRemove,
            kind::FORK => Self::Fork,
            other => return Err(DecodeError::UnknownKind(other)),
        })
    }
}

impl Kind {
    /// Stable name (JSON `event` field).
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::Pin => "pin",
            Self::Unpin => "unpin",
            Self::Free => "free",
            Self::Migrate => "migrate",
            Self::LayoutWait => "layout_wait",
            Self::Set => "set",
            Self::PgmapAdd => "pgmap_add",
            Self::PgmapRemove => "pgmap_remove",
            Self::Fork => "fork",
            Self::Snapshot => "snapshot",
        }
    }

    /// Every kind, in wire order (refwatch's own [`Kind::Snapshot`] last).
    pub const ALL: [Kind; 12] = {
        let mut all = [Self::Snapshot; 12];
        let mut i = 0;
        while i < Self::WIRE.len() {
            all[i] = Self::WIRE[i];
            i += 1;
        }
        all
    };

    /// The kinds the kernel programs send (all but [`Kind::Snapshot`]).
    pub const WIRE: [Kind; 11] = [
        Self::Get,
        Self::Put,
        Self::Pin,
        Self::Unpin,
        Self::Free,
        Self::Migrate,
        Self::LayoutWait,
        Self::Set,
        Self::PgmapAdd,
        Self::PgmapRemove,
        Self::Fork,
    ];

    /// Inverse of [`Kind::raw`], the kinds refwatch makes itself
    /// (snapshots) included: what a recording may hold.
    pub fn from_raw(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.raw() == v)
    }

    /// Inverse of [`Kind::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Wire value.
    pub fn raw(self) -> u32 {
        match self {
            Self::Get => kind::GET,
            Self::Put => kind::PUT,
            Self::Pin => kind::PIN,
            Self::Unpin => kind::UNPIN,
            Self::Free => kind::FREE,
            Self::Migrate => kind::MIGRATE,
            Self::LayoutWait => kind::LAYOUT_WAIT,
            Self::Set => kind::SET,
            Self::PgmapAdd => kind::PGMAP_ADD,
            Self::PgmapRemove => kind::PGMAP_REMOVE,
            Self::Fork => kind::FORK,
            Self::Snapshot => kind::SNAPSHOT,
        }
    }
}

/// Stable name of a page-map type (JSON `pgmap_type`).
pub fn pgmap_name(t: u32) -> &'static str {
    match t {
        pgmap::PRIVATE => "private",
        pgmap::COHERENT => "coherent",
        pgmap::FSDAX => "fsdax",
        pgmap::GENERIC => "generic",
        pgmap::P2PDMA => "p2pdma",
        pgmap::SYSTEM => "system",
        _ => "unknown",
    }
}

/// Inverse of [`pgmap_name`].
pub fn pgmap_from_name(s: &str) -> Option<u32> {
    (0..=pgmap::SYSTEM).find(|t| pgmap_name(*t) == s)
}

/// Stage of a migration event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Restored while the migration was being set up (not isolated/unmapped).
    Setup,
    /// Outcome at finalize.
    Finalize,
    /// Refused at the copy stage (`folio_migrate_mapping` -EAGAIN).
    Copy,
    Unknown,
}

/// Direction of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ToDevice,
    ToRam,
    /// A CPU fault pulling a device page back.
    Fault,
    /// Driver eviction by PFN.
    Evict,
    Unknown,
}

/// What a migration event says about its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    pub stage: Stage,
    pub direction: Direction,
    /// Whether the page moved.
    pub moved: bool,
    /// Destination PFN when it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_pfn: Option<u64>,
    /// `extra_count` the copy stage was called with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_count: Option<u32>,
}

impl Migration {
    /// Decodes `aux`/`aux2` of a migration event.
    pub fn from_aux(aux: u64, aux2: u64) -> Self {
        use refwatch_common::migrate as m;
        let stage = match aux2 & 0xff {
            m::STAGE_SETUP => Stage::Setup,
            m::STAGE_FINALIZE => Stage::Finalize,
            m::STAGE_COPY => Stage::Copy,
            _ => Stage::Unknown,
        };
        let direction = match (aux2 >> 8) & 0xff {
            m::DIR_TO_DEVICE => Direction::ToDevice,
            m::DIR_TO_RAM => Direction::ToRam,
            m::DIR_FAULT => Direction::Fault,
            m::DIR_EVICT => Direction::Evict,
            _ => Direction::Unknown,
        };
        Self {
            stage,
            direction,
            moved: (aux2 >> 16) & 0xff == m::RESULT_MOVED,
            dst_pfn: aux.checked_sub(1),
            extra_count: (stage == Stage::Copy).then_some(((aux2 >> 24) & 0xff) as u32),
        }
    }

    /// Inverse of [`Migration::from_aux`].
    pub fn to_aux(&self) -> (u64, u64) {
        use refwatch_common::migrate as m;
        let stage = match self.stage {
            Stage::Setup => m::STAGE_SETUP,
            Stage::Finalize => m::STAGE_FINALIZE,
            Stage::Copy => m::STAGE_COPY,
            Stage::Unknown => 0,
        };
        let dir = match self.direction {
            Direction::ToDevice => m::DIR_TO_DEVICE,
            Direction::ToRam => m::DIR_TO_RAM,
            Direction::Fault => m::DIR_FAULT,
            Direction::Evict => m::DIR_EVICT,
            Direction::Unknown => m::DIR_UNKNOWN,
        };
        let result = if self.moved {
            m::RESULT_MOVED
        } else {
            m::RESULT_FAILED
        };
        let extra = u64::from(self.extra_count.unwrap_or(0) & 0xff) << 24;
        (
            // The last PFN has no room on the wire (0 says none): none.
            self.dst_pfn.and_then(|p| p.checked_add(1)).unwrap_or(0),
            m::pack(stage, dir, result) | extra,
        )
    }

    /// Human words for the direction.
    pub fn direction_words(&self) -> &'static str {
        match self.direction {
            Direction::ToDevice => "to device memory",
            Direction::ToRam => "back to system memory",
            Direction::Fault => "back to system memory on a CPU fault",
            Direction::Evict => "out of device memory (driver eviction)",
            Direction::Unknown => "",
        }
    }
}

/// Whether and how the kernel walked an event's stack (`--stacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum StackTaken {
    /// Walked in full; an empty stack means the walk failed or found nothing.
    #[default]
    Full,
    /// Cut short on purpose: deep enough for the event's [`Role`], not to
    /// name the code behind it.
    Short,
    /// Not taken: the stack policy asked for none for this event.
    No,
}

impl StackTaken {
    /// From an event's wire flags.
    #[inline]
    pub fn from_flags(fl: u32) -> Self {
        if fl & flags::NO_STACK != 0 {
            Self::No
        } else if fl & flags::STACK_SHORT != 0 {
            Self::Short
        } else {
            Self::Full
        }
    }

    /// Its wire flags.
    pub fn flags(self) -> u32 {
        match self {
            Self::Full => 0,
            Self::Short => flags::STACK_SHORT,
            Self::No => flags::NO_STACK,
        }
    }
}

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
    fn from_kernel(comm: &[u8; COMM_LEN]) -> Self {
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

/// A kernel stack (return addresses, innermost first), shared: the events
/// in a page's history, its holders and its episodes point at one copy, and
/// a [`StackInterner`] makes equal stacks one allocation.
///
/// `Rc`, not `Arc`: decode and per-PFN update run on one thread (the
/// collector's), and an event's stack is counted up and down several times
/// on its way (interner, history, holder, the decoded event itself). With
/// atomic counts, decode alone (one count up, one down) took about 30 ns
/// more per event on the 2-core development machine (`cargo xtask bench
/// pipeline`), a third of the 100 ns an event may take in all. Events,
/// pages and the tracker are therefore not `Send`; should they ever need to
/// cross threads, this becomes an `Arc`.
///
/// One thin pointer (8 bytes, not the 16 of an `Rc<[u64]>`): a page's
/// history keeps one per event, in 32-byte entries. Reading the frames
/// follows one more pointer, which only symbolizing and interning do.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Stack(Option<Rc<Frames>>);

/// The frames behind a [`Stack`]'s pointer.
#[derive(PartialEq, Eq, Hash)]
struct Frames(Box<[u64]>);

impl Stack {
    /// The frames.
    #[inline]
    pub fn frames(&self) -> &[u64] {
        self.0.as_deref().map_or(&[], |f| &f.0)
    }

    /// Whether `self` and `other` are the same allocation (both empty counts).
    /// The address of the shared frames (0 for no frames): equal for
    /// clones of one stack, and not reused while one of them lives.
    pub fn addr(&self) -> usize {
        self.0.as_ref().map_or(0, |f| Rc::as_ptr(f) as usize)
    }

    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Rc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Deref for Stack {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        self.frames()
    }
}

impl From<&[u64]> for Stack {
    fn from(frames: &[u64]) -> Self {
        Self((!frames.is_empty()).then(|| Rc::new(Frames(frames.into()))))
    }
}

impl From<Vec<u64>> for Stack {
    fn from(frames: Vec<u64>) -> Self {
        Self((!frames.is_empty()).then(|| Rc::new(Frames(frames.into_boxed_slice()))))
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.frames(), f)
    }
}

/// Default bound on the stacks a [`StackInterner`] remembers.
pub const DEFAULT_INTERNED_STACKS: usize = 1 << 16;

/// Makes equal stacks one shared allocation. Bounded: when full it forgets
/// the stacks nobody else holds any more, and everything when that frees
/// less than half (stacks already handed out stay valid; only sharing with
/// later events is lost).
#[derive(Debug, Clone)]
pub struct StackInterner {
    set: FastSet<Interned>,
    /// The stacks interned last, direct-mapped by hash: most events repeat
    /// a recent stack, found here with one compare instead of a probe of
    /// `set`.
    recent: Vec<Option<Rc<Frames>>>,
    cap: usize,
}

/// Slots of [`StackInterner::recent`] (a power of two).
const RECENT_STACKS: usize = 64;

/// A remembered stack, looked up by its frames.
#[derive(Debug, Clone)]
struct Interned(Rc<Frames>);

impl std::borrow::Borrow<[u64]> for Interned {
    fn borrow(&self) -> &[u64] {
        &self.0.0
    }
}

// Hashes and compares as its frames, as `Borrow` requires.
impl std::hash::Hash for Interned {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.0.hash(state);
    }
}

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        self.0.0 == other.0.0
    }
}

impl Eq for Interned {}

impl fmt::Debug for Frames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Default for StackInterner {
    fn default() -> Self {
        Self::new(DEFAULT_INTERNED_STACKS)
    }
}

impl StackInterner {
    pub fn new(cap: usize) -> Self {
        Self {
            set: FastSet::default(),
            recent: vec![None; RECENT_STACKS],
            cap: cap.max(2),
        }
    }

    /// The shared stack equal to `frames`.
    pub fn intern(&mut self, frames: &[u64]) -> Stack {
        self.intern_hashed(frames, recent_hash(frames.iter().copied()))
    }

    /// [`StackInterner::intern`], with the frames' [`recent_hash`]
    /// already taken (the decoder takes it as it reads them).
    #[inline]
    fn intern_hashed(&mut self, frames: &[u64], hash: u64) -> Stack {
        if frames.is_empty() {
            return Stack::default();
        }
        let slot = hash as usize % RECENT_STACKS;
        if let Some(Some(s)) = self.recent.get(slot)
            && same_frames(&s.0, frames)
        {
            return Stack(Some(Rc::clone(s)));
        }
        self.intern_slow(frames, slot)
    }

    /// A stack not in [`StackInterner::recent`]: from the set, or new;
    /// then in `recent[slot]`.
    #[inline(never)]
    fn intern_slow(&mut self, frames: &[u64], slot: usize) -> Stack {
        let s = match self.set.get(frames) {
            Some(s) => Rc::clone(&s.0),
            None => {
                if self.set.len() >= self.cap {
                    // What only the cache holds counts as unheld.
                    self.recent.fill(None);
                    self.set.retain(|s| Rc::strong_count(&s.0) > 1);
                    if self.set.len() > self.cap / 2 {
                        self.set.clear();
                    }
                }
                let s = Rc::new(Frames(frames.into()));
                self.set.insert(Interned(Rc::clone(&s)));
                s
            }
        };
        if let Some(r) = self.recent.get_mut(slot) {
            *r = Some(Rc::clone(&s));
        }
        Stack(Some(s))
    }

    /// Stacks remembered now.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Which slot of [`StackInterner::recent`] a stack's frames take (modulo
/// its size).
#[inline]
fn recent_hash(frames: impl Iterator<Item = u64>) -> u64 {
    let mut h = crate::fasthash::fast_hasher();
    frames.for_each(|f| h.write_u64(f));
    h.finish()
}

/// `a == b`, inline: stacks are a few words, shorter than a `memcmp` call.
#[inline]
fn same_frames(a: &[u64], b: &[u64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Decodes ring-buffer records without allocating per event: equal stacks
/// are shared through its [`StackInterner`].
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    stacks: StackInterner,
    /// The stack of the record decoded last: events often come in runs
    /// from one place, and a record whose frames are these is this stack
    /// after a compare of its bytes, before any hashing or copying.
    last: Stack,
    /// The name of the record decoded last, as in the record and decoded:
    /// runs of events come from one task.
    last_comm: ([u8; COMM_LEN], Comm),
}

impl Decoder {
    pub fn new(stacks: StackInterner) -> Self {
        Self {
            stacks,
            last: Stack::default(),
            last_comm: Default::default(),
        }
    }

    /// [`decode`], with the stack interned. Inline, so that the event is
    /// built in its caller's place: returned from a call, its 152 bytes,
    /// just written field by field, were copied whole (a `memmove` that
    /// waits on those stores), which took half of decoding.
    #[inline]
    pub fn decode(&mut self, bytes: &[u8]) -> Result<PageEvent, DecodeError> {
        let Self {
            stacks,
            last,
            last_comm,
        } = self;
        decode_with(
            bytes,
            |wire| {
                if !wire.is(last) {
                    *last = intern(stacks, &wire);
                }
                last.clone()
            },
            |comm| {
                if *comm != last_comm.0 {
                    *last_comm = (*comm, Comm::from_kernel(comm));
                }
                last_comm.1.clone()
            },
        )
    }
}

/// The interned stack of a record (whose stack is not the last one's).
#[inline(never)]
fn intern(stacks: &mut StackInterner, wire: &WireStack<'_>) -> Stack {
    let mut buf = [0; FRAMES_BUF];
    let (frames, hash) = wire.frames(&mut buf);
    stacks.intern_hashed(frames, hash)
}

/// A decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEvent {
    pub ts_ns: u64,
    pub pfn: u64,
    pub page: u64,
    pub pid: u32,
    pub tgid: u32,
    pub cpu: u32,
    pub comm: Comm,
    pub kind: Kind,
    pub hook: u32,
    pub refcount_before: Option<i32>,
    pub refcount_after: Option<i32>,
    pub mapcount: Option<i32>,
    pub pgmap_type: u32,
    pub nr_pages: u32,
    pub ret: Option<i64>,
    pub aux: u64,
    pub aux2: u64,
    /// Address of the page map's free callback (or ops); 0 when unknown.
    pub owner: u64,
    /// Reported later than it happened (a remembered system-page reference).
    pub late: bool,
    /// Seen while the task was forking: a reference taken belongs to the child.
    pub forking: bool,
    /// Set by whoever can symbolize the stack ([`role_of`]).
    pub role: Role,
    pub stack: Stack,
    /// Whether `stack` was walked in full, cut short, or not taken.
    pub stack_taken: StackTaken,
}

impl PageEvent {
    /// Migration details of a migration event.
    pub fn migration(&self) -> Option<Migration> {
        (self.kind == Kind::Migrate).then(|| Migration::from_aux(self.aux, self.aux2))
    }
}

/// Decodes one ring-buffer record. The stack gets an allocation of its own;
/// [`Decoder`] shares equal ones.
pub fn decode(bytes: &[u8]) -> Result<PageEvent, DecodeError> {
    decode_with(
        bytes,
        |wire| {
            let mut buf = [0; FRAMES_BUF];
            Stack::from(wire.frames(&mut buf).0)
        },
        Comm::from_kernel,
    )
}

/// Converts a wire event.
pub fn from_raw(raw: &Event) -> Result<PageEvent, DecodeError> {
    decode(&to_bytes(raw))
}

/// A record's bytes, read field by field at `Event`'s offsets in native byte
/// order (what an unaligned read of the whole `Event` would give), without
/// copying the record.
struct Wire<'a>(&'a [u8; EVENT_SIZE]);

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
        // Compared as bytes, with one `bcmp`: no frame-by-frame loop.
        // SAFETY: the frames' bytes, in memory order (native-endian, as
        // the record's): any bytes are valid `u8`s, and the length covers
        // exactly the frames.
        let bytes = unsafe {
            std::slice::from_raw_parts(frames.as_ptr().cast::<u8>(), size_of_val(frames))
        };
        self.0 == bytes
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
) -> Result<PageEvent, DecodeError> {
    let Some(w) = bytes.first_chunk::<EVENT_SIZE>() else {
        return Err(DecodeError::Truncated { got: bytes.len() });
    };
    let w = Wire(w);
    let kind = Kind::try_from(w.u32(at!(kind)))?;
    let stack_bytes = w.u32(at!(stack_bytes));
    if !stack_bytes.is_multiple_of(8) || stack_bytes as usize > MAX_STACK * 8 {
        return Err(DecodeError::BadStack(stack_bytes));
    }
    // The stack first: the other fields then go straight into the event,
    // not held across the interning.
    let frames = at!(stack)..at!(stack) + stack_bytes as usize;
    let stack = stack(WireStack(w.0.get(frames).unwrap_or_default()));
    let fl = w.u32(at!(flags));
    let has = |bit: u32| fl & bit != 0;
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

/// The wire bytes of an event.
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
    use crate::symbols::role_of;

    /// A synthetic event (not from a kernel) for decoder tests.
    pub(crate) fn sample() -> PageEvent {
        PageEvent {
            ts_ns: 123,
            pfn: 0x40000,
            page: 0xffff_ea00_0100_0000,
            pid: 7,
            tgid: 7,
            cpu: 1,
            comm: "workload".into(),
            kind: Kind::Put,
            hook: refwatch_common::hook::PUT_DEVMAP_REFS,
            refcount_before: Some(2),
            refcount_after: Some(1),
            mapcount: None,
            pgmap_type: pgmap::FSDAX,
            nr_pages: 1,
            ret: Some(1),
            aux: 1,
            aux2: 7,
            owner: 0xffff_ffff_8200_0000,
            late: true,
            forking: true,
            role: Role::Other,
            stack: vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100].into(),
            stack_taken: StackTaken::Short,
        }
    }

    #[test]
    fn round_trip() {
        let ev = sample();
        let bytes = to_bytes(&to_raw(&ev));
        assert_eq!(bytes.len(), EVENT_SIZE);
        assert_eq!(decode(&bytes), Ok(ev));
    }

    /// Synthetic records: the two stack flags decode to what was taken,
    /// and encode back.
    #[test]
    fn stack_flags_say_what_was_taken() {
        let mut raw = to_raw(&sample());
        for (fl, frames, want) in [
            (0, 2, StackTaken::Full),
            (0, 0, StackTaken::Full),
            (flags::STACK_SHORT, 2, StackTaken::Short),
            (flags::NO_STACK, 0, StackTaken::No),
            // Both never come from the kernel; none taken wins.
            (flags::NO_STACK | flags::STACK_SHORT, 0, StackTaken::No),
        ] {
            raw.flags = flags::HAS_BEFORE | flags::LATE | fl;
            raw.stack_bytes = frames * 8;
            let ev = decode(&to_bytes(&raw)).expect("valid record");
            assert_eq!(ev.stack_taken, want, "flags {fl:#x}");
            assert_eq!(ev.stack.len(), frames as usize);
            assert!(ev.late && ev.refcount_before.is_some() && ev.refcount_after.is_none());
            let back = to_raw(&ev);
            assert_eq!(
                back.flags & (flags::NO_STACK | flags::STACK_SHORT),
                want.flags()
            );
            assert_eq!(decode(&to_bytes(&back)), Ok(ev));
        }
    }

    #[test]
    fn truncated_is_an_error() {
        let bytes = to_bytes(&to_raw(&sample()));
        for len in [0, 1, 8, EVENT_SIZE - 1] {
            assert_eq!(
                decode(&bytes[..len]),
                Err(DecodeError::Truncated { got: len })
            );
        }
    }

    #[test]
    fn garbage_kind_and_stack_are_errors() {
        let mut raw = to_raw(&sample());
        raw.kind = 99;
        assert_eq!(decode(&to_bytes(&raw)), Err(DecodeError::UnknownKind(99)));
        let mut raw = to_raw(&sample());
        raw.stack_bytes = 7;
        assert_eq!(decode(&to_bytes(&raw)), Err(DecodeError::BadStack(7)));
        raw.stack_bytes = (MAX_STACK as u32 + 1) * 8;
        assert!(decode(&to_bytes(&raw)).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift: deterministic garbage.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rejected = 0;
        for _ in 0..2000 {
            let mut buf = vec![0u8; EVENT_SIZE + (x % 16) as usize];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            match decode(&buf) {
                Ok(ev) => assert!(ev.stack.len() <= MAX_STACK),
                Err(_) => rejected += 1,
            }
        }
        // Almost every random kind is unknown.
        assert!(
            rejected > 1900,
            "only {rejected} of 2000 garbage records rejected"
        );
    }

    /// xorshift: deterministic garbage.
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Every field comes from its own place in the record, as an unaligned
    /// read of the whole `Event` gave it: random records with a valid kind
    /// and stack length, checked against the `Event` they were made from.
    #[test]
    fn every_field_decodes_from_its_wire_place() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut decoder = Decoder::default();
        for i in 0..2000 {
            let mut raw = Event::zeroed();
            raw.ts_ns = next(&mut x);
            raw.pfn = next(&mut x);
            raw.page = next(&mut x);
            raw.ret = next(&mut x) as i64;
            raw.aux = next(&mut x);
            raw.aux2 = next(&mut x);
            raw.owner = next(&mut x);
            raw.pid = next(&mut x) as u32;
            raw.tgid = next(&mut x) as u32;
            raw.cpu = next(&mut x) as u32;
            raw.kind = Kind::WIRE[i % Kind::WIRE.len()].raw();
            raw.hook = next(&mut x) as u32;
            raw.flags = next(&mut x) as u32;
            raw.refcount_before = next(&mut x) as i32;
            raw.refcount_after = next(&mut x) as i32;
            raw.mapcount = next(&mut x) as i32;
            raw.pgmap_type = next(&mut x) as u32;
            raw.nr_pages = next(&mut x) as u32;
            raw.stack_bytes = (next(&mut x) % (MAX_STACK as u64 + 1)) as u32 * 8;
            for f in raw.stack.iter_mut() {
                // Some zero frames, which are left out.
                *f = if next(&mut x).is_multiple_of(5) { 0 } else { x };
            }
            // Names of every length, some with bytes that are not UTF-8.
            let len = (next(&mut x) % (COMM_LEN as u64 + 1)) as usize;
            for b in raw.comm.iter_mut().take(len) {
                let v = next(&mut x) as u8;
                *b = if i % 3 == 0 { v } else { b'a' + v % 26 };
            }
            let has = |bit: u32| raw.flags & bit != 0;
            let frames: Vec<u64> = raw.stack[..raw.stack_bytes as usize / 8]
                .iter()
                .copied()
                .filter(|a| *a != 0)
                .collect();
            let comm_len = raw.comm.iter().position(|b| *b == 0).unwrap_or(COMM_LEN);
            let want = PageEvent {
                ts_ns: raw.ts_ns,
                pfn: raw.pfn,
                page: raw.page,
                pid: raw.pid,
                tgid: raw.tgid,
                cpu: raw.cpu,
                comm: Comm::from(String::from_utf8_lossy(&raw.comm[..comm_len]).as_ref()),
                kind: Kind::WIRE[i % Kind::WIRE.len()],
                hook: raw.hook,
                refcount_before: has(flags::HAS_BEFORE).then_some(raw.refcount_before),
                refcount_after: has(flags::HAS_AFTER).then_some(raw.refcount_after),
                mapcount: has(flags::HAS_MAPCOUNT).then_some(raw.mapcount),
                pgmap_type: raw.pgmap_type,
                nr_pages: raw.nr_pages,
                ret: has(flags::HAS_RET).then_some(raw.ret),
                aux: raw.aux,
                aux2: raw.aux2,
                owner: raw.owner,
                late: has(flags::LATE),
                forking: has(flags::FORKING),
                role: Role::Other,
                stack: frames.into(),
                stack_taken: if has(flags::NO_STACK) {
                    StackTaken::No
                } else if has(flags::STACK_SHORT) {
                    StackTaken::Short
                } else {
                    StackTaken::Full
                },
            };
            let bytes = to_bytes(&raw);
            let got = decode(&bytes).expect("valid record");
            assert_eq!(got, want);
            assert_eq!(
                got.comm.as_str(),
                String::from_utf8_lossy(&raw.comm[..comm_len])
            );
            assert_eq!(decoder.decode(&bytes), Ok(want));
            assert_eq!(from_raw(&raw), Ok(got));
        }
    }

    #[test]
    fn names_are_inline_text() {
        let kernel = |s: &[u8]| {
            let mut c = [0u8; COMM_LEN];
            c[..s.len()].copy_from_slice(s);
            Comm::from_kernel(&c)
        };
        assert_eq!(kernel(b"workload").as_str(), "workload");
        assert_eq!(kernel(b"").as_str(), "");
        // Sixteen bytes without a NUL: all of them.
        assert_eq!(kernel(b"0123456789abcdef").as_str(), "0123456789abcdef");
        // Bytes after the NUL do not count.
        let mut c = *b"dd\0garbage\xff\xfe\0\0\0\0";
        c[3] = b'x';
        assert_eq!(Comm::from_kernel(&c), Comm::from("dd"));
        // Not UTF-8: lossily, as a `String` would have it.
        let bad = kernel(b"a\xffb\xfe\xfd\xfc\xfb\xfa\xf9\xf8");
        assert_eq!(
            bad.as_str(),
            String::from_utf8_lossy(b"a\xffb\xfe\xfd\xfc\xfb\xfa\xf9\xf8")
        );
        assert!(bad.len() > COMM_LEN);
        // Longer names and names with a NUL (from JSON) stay whole.
        let long = "a-much-longer-name-than-the-kernel-keeps";
        assert_eq!(Comm::from(long).as_str(), long);
        assert_eq!(Comm::from("a\0b").as_str(), "a\0b");
        assert_ne!(Comm::from("a\0b"), Comm::from("a"));
        // Formatting as a `String` would (the summary table pads names).
        assert_eq!(
            format!("[{:<10}] {:?}", Comm::from("dd"), Comm::from("dd")),
            format!("[{:<10}] {:?}", "dd", "dd")
        );
        assert_eq!(Comm::default().as_str(), "");
    }

    #[test]
    fn equal_stacks_are_shared_and_the_interner_is_bounded() {
        let mut interner = StackInterner::new(4);
        let a = interner.intern(&[1, 2, 3]);
        let b = interner.intern(&[1, 2, 3]);
        assert!(a.ptr_eq(&b));
        assert_eq!(a.frames(), &[1, 2, 3]);
        assert!(interner.intern(&[]).is_empty());
        assert_eq!(Stack::from(Vec::new()), Stack::default());
        // Many different stacks: never more than the bound remembered, and
        // what was handed out stays valid.
        let kept: Vec<Stack> = (0..100u64).map(|i| interner.intern(&[i, i + 1])).collect();
        assert!(interner.len() <= 4, "{}", interner.len());
        for (i, s) in (0u64..).zip(&kept) {
            assert_eq!(s.frames(), &[i, i + 1]);
        }
        assert_eq!(a.frames(), &[1, 2, 3]);
        // Stacks nobody holds any more are forgotten first.
        let mut interner = StackInterner::new(4);
        let held = interner.intern(&[7]);
        for i in 0..10u64 {
            interner.intern(&[100 + i]);
        }
        assert!(interner.intern(&[7]).ptr_eq(&held));
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(Kind::from_name("unpin"), Some(Kind::Unpin));
        assert_eq!(Kind::Unpin.name(), "unpin");
        assert_eq!(pgmap_name(pgmap::FSDAX), "fsdax");
        assert_eq!(pgmap_from_name("private"), Some(pgmap::PRIVATE));
        assert_eq!(pgmap_from_name("nope"), None);
        assert_eq!(pgmap_from_name("system"), Some(pgmap::SYSTEM));
        for k in Kind::WIRE {
            assert_eq!(Kind::try_from(k.raw()), Ok(k));
        }
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        // refwatch's own reads never come from the kernel's ring buffer.
        assert!(Kind::try_from(Kind::Snapshot.raw()).is_err());
    }

    #[test]
    fn roles_come_from_the_innermost_known_frame() {
        assert_eq!(
            role_of([
                "page_ref_mod+0x4e",
                "copy_page_range+0x1bea",
                "dup_mmap+0x35f"
            ]),
            Role::Map
        );
        assert_eq!(
            role_of([
                "folios_put_refs+0x1f9",
                "free_pages_and_swap_cache+0x138",
                "tlb_batch_pages_flush+0x58"
            ]),
            Role::Unmap
        );
        assert_eq!(
            role_of(["try_grab_folio_fast+0x26e", "gup_fast_fallback+0x516"]),
            Role::Other
        );
        assert_eq!(role_of(Vec::<String>::new()), Role::Other);
    }

    #[test]
    fn migration_details_round_trip() {
        for m in [
            Migration {
                stage: Stage::Finalize,
                direction: Direction::ToDevice,
                moved: true,
                dst_pfn: Some(0x1_0000_0010),
                extra_count: None,
            },
            Migration {
                stage: Stage::Setup,
                direction: Direction::Evict,
                moved: false,
                dst_pfn: None,
                extra_count: None,
            },
            Migration {
                stage: Stage::Copy,
                direction: Direction::Fault,
                moved: false,
                dst_pfn: Some(0),
                extra_count: Some(1),
            },
        ] {
            let (aux, aux2) = m.to_aux();
            assert_eq!(Migration::from_aux(aux, aux2), m);
        }
    }
}
