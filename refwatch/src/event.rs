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
    /// The refcount was set (init, a migration's freeze/unfreeze).
    Set,
    /// A device page map came up.
    PgmapAdd,
    /// A device page map is being torn down.
    PgmapRemove,
    /// A fork that took references on device pages finished (`ret` = child).
    Fork,
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
        }
    }

    /// Every kind, in wire order.
    pub const ALL: [Kind; 11] = [
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
            self.dst_pfn.map_or(0, |p| p + 1),
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

/// What a reference change did to the page's mappings, judged from the
/// kernel functions on its stack: a reference a page-table entry holds is
/// taken where the entry is installed and dropped where it is zapped, far
/// apart and often by another task, so holders are matched by role first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Role {
    #[default]
    Other,
    /// Installs a page-table entry (fault, fork, migration restore).
    Map,
    /// Zaps page-table entries (munmap, exit, unmapping for migration).
    Unmap,
}

/// Functions that install a page-table entry holding a reference.
const MAP_FUNCTIONS: &[&str] = &[
    "insert_page_into_pte_locked",
    "insert_page",
    "vmf_insert_page_mkwrite",
    "set_pte_range",
    "do_set_pmd",
    "do_anonymous_page",
    "copy_page_range",
    "copy_present_pte",
    "copy_nonpresent_pte",
    "remove_migration_pte",
    "migrate_vma_insert_page",
];

/// Functions that drop the references of zapped page-table entries.
const UNMAP_FUNCTIONS: &[&str] = &[
    "__zap_vma_range",
    "zap_pte_range",
    "zap_present_ptes",
    "zap_nonpresent_ptes",
    "unmap_page_range",
    "unmap_vmas",
    "free_pages_and_swap_cache",
    "tlb_batch_pages_flush",
    "tlb_flush_mmu",
    "try_to_migrate_one",
    "try_to_unmap_one",
];

/// The role of an event from its symbolized stack (`name+0xoff`, innermost
/// first): the innermost frame that installs or zaps page-table entries.
pub fn role_of<S: AsRef<str>>(frames: impl IntoIterator<Item = S>) -> Role {
    for f in frames {
        let name = f.as_ref().split('+').next().unwrap_or_default();
        if MAP_FUNCTIONS.contains(&name) {
            return Role::Map;
        }
        if UNMAP_FUNCTIONS.contains(&name) {
            return Role::Unmap;
        }
    }
    Role::Other
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
    pub aux2: u64,
    /// Address of the page map's free callback (or ops); 0 when unknown.
    pub owner: u64,
    /// Reported later than it happened (a remembered system-page reference).
    pub late: bool,
    /// Seen while the task was forking: a reference taken belongs to the child.
    pub forking: bool,
    /// Set by whoever can symbolize the stack ([`role_of`]).
    pub role: Role,
    pub stack: Vec<u64>,
}

impl PageEvent {
    /// Migration details of a migration event.
    pub fn migration(&self) -> Option<Migration> {
        (self.kind == Kind::Migrate).then(|| Migration::from_aux(self.aux, self.aux2))
    }
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
        aux2: raw.aux2,
        owner: raw.owner,
        late: has(flags::LATE),
        forking: has(flags::FORKING),
        role: Role::Other,
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
    if ev.late {
        fl |= flags::LATE;
    }
    if ev.forking {
        fl |= flags::FORKING;
    }
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
        assert_eq!(pgmap_from_name("system"), Some(pgmap::SYSTEM));
        for k in Kind::ALL {
            assert_eq!(Kind::try_from(k.raw()), Ok(k));
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
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
