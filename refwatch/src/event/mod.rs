//! Events as refwatch handles them, and their stable names: the kinds, page
//! types and migrations, the task name ([`comm`]), the stack ([`stack`]) and
//! the ring buffer's records ([`wire`]).

pub mod cgroup;
mod comm;
mod stack;
mod wire;

pub use comm::Comm;
pub use stack::{DEFAULT_INTERNED_STACKS, Stack, StackInterner};
pub use wire::{Decoded, Decoder, decode, from_raw, to_bytes, to_raw, to_record};

use std::fmt;

use refwatch_common::{flags, kind, pgmap};

use crate::symbols::Role;

/// Why bytes could not be decoded into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record's header, or than its header and the
    /// stack it says it carries (`need`).
    Truncated { got: usize, need: usize },
    /// An event kind this build does not know.
    UnknownKind(u32),
    /// A stack length that is not a whole number of frames within the array.
    BadStack(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { got, need } => {
                write!(f, "truncated event: {got} bytes, at least {need} needed")
            }
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
#[cfg(test)]
mod tests;
