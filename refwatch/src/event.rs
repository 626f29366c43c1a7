//! Decoding events from the ring buffer, and their stable names.

use std::fmt;

use refwatch_common::{COMM_LEN, EVENT_SIZE, Event, MAX_STACK, flags, kind, pgmap};

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
        }
    }

    /// Inverse of [`Kind::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        [
            Self::Get,
            Self::Put,
            Self::Pin,
            Self::Unpin,
            Self::Free,
            Self::Migrate,
            Self::LayoutWait,
        ]
        .into_iter()
        .find(|k| k.name() == s)
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
        _ => "unknown",
    }
}

/// Inverse of [`pgmap_name`].
pub fn pgmap_from_name(s: &str) -> Option<u32> {
    (0..=pgmap::P2PDMA).find(|t| pgmap_name(*t) == s)
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
    pub comm: String,
    pub kind: Kind,
    pub hook: u32,
    pub refcount_before: Option<i32>,
    pub refcount_after: Option<i32>,
    pub mapcount: Option<i32>,
    pub pgmap_type: u32,
    pub nr_pages: u32,
    pub ret: Option<i64>,
    pub aux: u64,
    pub stack: Vec<u64>,
}

/// Decodes one ring-buffer record: length check, then an unaligned read.
pub fn decode(bytes: &[u8]) -> Result<PageEvent, DecodeError> {
    if bytes.len() < EVENT_SIZE {
        return Err(DecodeError::Truncated { got: bytes.len() });
    }
    // SAFETY: the length was checked above, `Event` is plain old data for which
    // every bit pattern is valid, and `read_unaligned` has no alignment needs.
    let raw: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) };
    from_raw(&raw)
}

/// Converts a wire event.
pub fn from_raw(raw: &Event) -> Result<PageEvent, DecodeError> {
    let kind = Kind::try_from(raw.kind)?;
    if !raw.stack_bytes.is_multiple_of(8) || raw.stack_bytes as usize > MAX_STACK * 8 {
        return Err(DecodeError::BadStack(raw.stack_bytes));
    }
    let frames = raw.stack_bytes as usize / 8;
    let comm_len = raw.comm.iter().position(|b| *b == 0).unwrap_or(COMM_LEN);
    let has = |bit: u32| raw.flags & bit != 0;
    Ok(PageEvent {
        ts_ns: raw.ts_ns,
        pfn: raw.pfn,
        page: raw.page,
        pid: raw.pid,
        tgid: raw.tgid,
        cpu: raw.cpu,
        comm: String::from_utf8_lossy(&raw.comm[..comm_len]).into_owned(),
        kind,
        hook: raw.hook,
        refcount_before: has(flags::HAS_BEFORE).then_some(raw.refcount_before),
        refcount_after: has(flags::HAS_AFTER).then_some(raw.refcount_after),
        mapcount: has(flags::HAS_MAPCOUNT).then_some(raw.mapcount),
        pgmap_type: raw.pgmap_type,
        nr_pages: raw.nr_pages,
        ret: has(flags::HAS_RET).then_some(raw.ret),
        aux: raw.aux,
        stack: raw.stack[..frames]
            .iter()
            .copied()
            .filter(|a| *a != 0)
            .collect(),
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
    raw.flags = fl;
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
            stack: vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100],
        }
    }

    #[test]
    fn round_trip() {
        let ev = sample();
        let bytes = to_bytes(&to_raw(&ev));
        assert_eq!(bytes.len(), EVENT_SIZE);
        assert_eq!(decode(&bytes), Ok(ev));
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

    #[test]
    fn names_are_stable() {
        assert_eq!(Kind::from_name("unpin"), Some(Kind::Unpin));
        assert_eq!(Kind::Unpin.name(), "unpin");
        assert_eq!(pgmap_name(pgmap::FSDAX), "fsdax");
        assert_eq!(pgmap_from_name("private"), Some(pgmap::PRIVATE));
        assert_eq!(pgmap_from_name("nope"), None);
    }
}
