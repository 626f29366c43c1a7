//! Wire types shared by refwatch's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]`, has no implicit padding, no `bool` and no
//! enums: kinds are `u32` values with stable numbers, decoded on the user side
//! with `TryFrom<u32>`. The size of every wire struct is pinned by a `const`
//! assertion so both sides agree.
#![cfg_attr(not(test), no_std)]

/// Deepest kernel stack an event carries (frames).
pub const MAX_STACK: usize = 24;

/// Length of a task's `comm`.
pub const COMM_LEN: usize = 16;

/// Entries of a table indexed by [`kind`] value ([`KernelLayout::stack_frames`]).
pub const KIND_SLOTS: usize = 16;
const _: () = assert!((kind::MAX as usize) < KIND_SLOTS && KIND_SLOTS.is_power_of_two());

/// Logical event kinds (`Event::kind`). Values are stable: they are written in
/// recordings.
pub mod kind {
    /// A reference was taken (GUP grab, device page init).
    pub const GET: u32 = 1;
    /// A plain reference was dropped.
    pub const PUT: u32 = 2;
    /// A GUP pin was taken (`FOLL_PIN`).
    pub const PIN: u32 = 3;
    /// A GUP pin was dropped.
    pub const UNPIN: u32 = 4;
    /// The page went back to its driver / owner (refcount reached its free value).
    pub const FREE: u32 = 5;
    /// A migration step touched the page.
    pub const MIGRATE: u32 = 6;
    /// A DAX layout break found the page busy.
    pub const LAYOUT_WAIT: u32 = 7;
    /// The refcount was set to a value (`page_ref_set`, a migration's freeze
    /// and unfreeze): no reference taken or dropped by a holder.
    pub const SET: u32 = 8;
    /// A device page map came up (`memremap_pages`); `pfn` is its first
    /// PFN, `nr_pages` its size.
    pub const PGMAP_ADD: u32 = 9;
    /// A device page map is being torn down (`memunmap_pages`).
    pub const PGMAP_REMOVE: u32 = 10;
    /// A task that touched device pages while forking finished the fork;
    /// `ret` is the child's pid, `pfn` is 0.
    pub const FORK: u32 = 11;
    /// Largest kind the kernel programs send.
    pub const MAX: u32 = FORK;
    /// refwatch read the page's state from the kernel (at attach, or after
    /// its events were lost): userspace only, never on the wire.
    pub const SNAPSHOT: u32 = 12;
}

pub mod hook;

pub mod ret;

pub mod kaddr;

/// `Event::flags` bits.
pub mod flags {
    /// `refcount_before` is valid.
    pub const HAS_BEFORE: u32 = 1 << 0;
    /// `refcount_after` is valid.
    pub const HAS_AFTER: u32 = 1 << 1;
    /// `mapcount` is valid.
    pub const HAS_MAPCOUNT: u32 = 1 << 2;
    /// `ret` is valid.
    pub const HAS_RET: u32 = 1 << 3;
    /// Emitted later than it happened: a GUP reference on a system page that
    /// was remembered and reported when a migration of the page failed.
    pub const LATE: u32 = 1 << 4;
    /// Seen while the task was forking (`kernel_clone`): a reference taken
    /// then belongs to the child the fork creates.
    pub const FORKING: u32 = 1 << 5;
    /// The stack was cut short on purpose: the walk stopped at the depth
    /// [`KernelLayout::stack_frames`] asks for this kind, enough to tell the
    /// event's role (map, unmap), not to name the code behind it.
    pub const STACK_SHORT: u32 = 1 << 6;
    /// No stack was taken because none was asked for (the kind's depth is
    /// 0, or the hook never takes one). Without it, an empty stack means
    /// the walk failed or found nothing.
    pub const NO_STACK: u32 = 1 << 7;
    /// A page's free (`kind::FREE`, `hook::FREE_ZONE_DEVICE`) that also
    /// reports the page's last put, which came right before it: one record
    /// for the two events. The put is the reference that took the count
    /// from `refcount_before` + 1 to `refcount_before` (the count the free
    /// found), with `aux` 1 and the record's stack (the free's callers:
    /// the same frames at the free's entry and exit) and its stack flags;
    /// the free follows with the record's counts and no stack. Both are
    /// stamped at the free's exit, and the `mapcount` read there is both's
    /// (the free does not change it).
    pub const LAST_PUT: u32 = 1 << 8;
}

/// Stable page-map types (`Event::pgmap_type`), translated in the kernel from
/// the running kernel's `enum memory_type` through [`KernelLayout::memtype`].
pub mod pgmap {
    /// Not known (pgmap pointer unreadable, or a value this build does not know).
    pub const UNKNOWN: u32 = 0;
    /// `MEMORY_DEVICE_PRIVATE`.
    pub const PRIVATE: u32 = 1;
    /// `MEMORY_DEVICE_COHERENT`.
    pub const COHERENT: u32 = 2;
    /// `MEMORY_DEVICE_FS_DAX`.
    pub const FSDAX: u32 = 3;
    /// `MEMORY_DEVICE_GENERIC` (device-dax).
    pub const GENERIC: u32 = 4;
    /// `MEMORY_DEVICE_PCI_P2PDMA`.
    pub const P2PDMA: u32 = 5;
    /// Not a device page: system RAM seen as the source or destination of a
    /// device migration.
    pub const SYSTEM: u32 = 6;
}

/// One observation of a ZONE_DEVICE page, as the kernel programs emit it into
/// the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Page frame number of the (head) page.
    pub pfn: u64,
    /// Kernel address of the `struct page`. Never shown unless asked (KASLR).
    pub page: u64,
    /// What the hooked function returned, where `HAS_RET`: its value as
    /// [`ret::value`] records it (never a pointer).
    pub ret: i64,
    /// Kind-specific: the `refs` argument of put/grab paths, the busy range
    /// start, or a migration's destination PFN (+1; 0 = none).
    pub aux: u64,
    /// Kind-specific: for migrations, [`migrate`] stage, direction and result.
    pub aux2: u64,
    /// Address of the page map's free callback (`ops->folio_free` or
    /// `ops->page_free`), or of its `ops` when it has none; 0 when unknown.
    pub owner: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// CPU the event was seen on.
    pub cpu: u32,
    /// [`kind`] value.
    pub kind: u32,
    /// [`hook`] value.
    pub hook: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// `_refcount` before the operation (where `HAS_BEFORE`).
    pub refcount_before: i32,
    /// `_refcount` after the operation (where `HAS_AFTER`).
    pub refcount_after: i32,
    /// Raw `_mapcount` (−1 = unmapped) where `HAS_MAPCOUNT`.
    pub mapcount: i32,
    /// [`pgmap`] value.
    pub pgmap_type: u32,
    /// Pages covered by the event (1 for a small folio).
    pub nr_pages: u32,
    /// Bytes of `stack` that are valid (a multiple of 8), 0 when stacks are off.
    pub stack_bytes: u32,
    /// Task name.
    pub comm: [u8; COMM_LEN],
    /// Kernel return addresses, innermost first.
    pub stack: [u64; MAX_STACK],
}

/// Migration details packed in `Event::aux2`: bits 0–7 stage, 8–15
/// direction, 16–23 result.
pub mod migrate {
    /// Restored during `migrate_vma_setup`/`migrate_device_range` (the page
    /// could not be isolated or unmapped: unexpected references).
    pub const STAGE_SETUP: u64 = 1;
    /// Result at finalize (moved, or restored).
    pub const STAGE_FINALIZE: u64 = 2;
    /// Copy stage refused (`folio_migrate_mapping` -EAGAIN).
    pub const STAGE_COPY: u64 = 3;
    /// Direction not known.
    pub const DIR_UNKNOWN: u64 = 0;
    /// System memory to device memory (`MIGRATE_VMA_SELECT_SYSTEM`).
    pub const DIR_TO_DEVICE: u64 = 1;
    /// Device memory back to system memory (`SELECT_DEVICE_*`, no fault page).
    pub const DIR_TO_RAM: u64 = 2;
    /// A CPU fault pulling a device page back (`migrate_to_ram`).
    pub const DIR_FAULT: u64 = 3;
    /// Driver eviction by PFN (`migrate_device_range`/`_pfns`).
    pub const DIR_EVICT: u64 = 4;
    /// The page moved.
    pub const RESULT_MOVED: u64 = 1;
    /// The page stayed where it was.
    pub const RESULT_FAILED: u64 = 2;

    /// Packs stage, direction and result.
    pub const fn pack(stage: u64, dir: u64, result: u64) -> u64 {
        (stage & 0xff) | (dir & 0xff) << 8 | (result & 0xff) << 16
    }
}

/// Size of [`Event`] on the wire, with room for [`MAX_STACK`] frames.
pub const EVENT_SIZE: usize = 7 * 8 + 12 * 4 + COMM_LEN + MAX_STACK * 8;
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);

/// The ring's unread bytes from which an event wakes the reader
/// ([`KernelLayout::wake_bytes`]) for a ring of `ring_bytes`: a sixteenth of
/// it, so that the reader has the other fifteen to catch up in.
pub const fn wake_bytes(ring_bytes: u64) -> u64 {
    ring_bytes / 16
}

/// Whether the record of `size` bytes that leaves `waiting` unread bytes
/// in the ring (itself included) wakes the reader at wake level `level`:
/// only the record that brings the ring to the level does; those after it,
/// while the reader catches up, do not.
#[inline(always)]
pub const fn wakes_reader(waiting: u64, level: u64, size: u64) -> bool {
    waiting >= level && waiting < level.saturating_add(size)
}

/// Bytes of an [`Event`] before its stack, the last field: the shortest
/// ring record (an event without a stack).
pub const EVENT_HEADER_SIZE: usize = EVENT_SIZE - MAX_STACK * 8;
const _: () = assert!(core::mem::offset_of!(Event, stack) == EVENT_HEADER_SIZE);

/// Ring records are sized to the stack their event asks for, in steps of
/// this many frames: [`EVENT_HEADER_SIZE`] plus room for 0, 8, 16 or 24
/// frames. A record is `Event` cut after its room; `stack_bytes` says how
/// much of the room the walk filled.
pub const RECORD_STEP_FRAMES: usize = 8;
const _: () = assert!(MAX_STACK.is_multiple_of(RECORD_STEP_FRAMES));

/// Frames of room in the ring record of an event that asks for `frames`
/// ([`RECORD_STEP_FRAMES`] steps, at most [`MAX_STACK`]).
#[inline(always)]
pub const fn record_room(frames: usize) -> usize {
    let n = if frames > MAX_STACK {
        MAX_STACK
    } else {
        frames
    };
    n.div_ceil(RECORD_STEP_FRAMES) * RECORD_STEP_FRAMES
}

/// Bytes of the ring record with room for `room` frames.
#[inline(always)]
pub const fn record_size(room: usize) -> usize {
    EVENT_HEADER_SIZE + room * 8
}

impl Event {
    /// An all-zero event.
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            pfn: 0,
            page: 0,
            ret: 0,
            aux: 0,
            aux2: 0,
            owner: 0,
            pid: 0,
            tgid: 0,
            cpu: 0,
            kind: 0,
            hook: 0,
            flags: 0,
            refcount_before: 0,
            refcount_after: 0,
            mapcount: 0,
            pgmap_type: 0,
            nr_pages: 0,
            stack_bytes: 0,
            comm: [0; COMM_LEN],
            stack: [0; MAX_STACK],
        }
    }
}

/// Kernel layout handed to the programs as a global before load. Every offset
/// comes from the running kernel's BTF; nothing is compiled in.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// Address of the kernel variable `vmemmap_base` (0 when the kernel has no
    /// such variable; then [`KernelLayout::vmemmap_start`] is used as is).
    pub vmemmap_base_addr: u64,
    /// Start of the `struct page` array when `vmemmap_base_addr` is 0.
    pub vmemmap_start: u64,
    /// `sizeof(struct page)`.
    pub page_struct_size: u64,
    /// `offsetof(struct page, flags)`.
    pub off_flags: u32,
    /// `offsetof(struct page, compound_head)`.
    pub off_compound_head: u32,
    /// `offsetof(struct page, _refcount)`.
    pub off_refcount: u32,
    /// `offsetof(struct page, _mapcount)`.
    pub off_mapcount: u32,
    /// Offset of the pgmap pointer from the head page (`page->pgmap` or `folio->pgmap`).
    pub off_pgmap: u32,
    /// `offsetof(struct dev_pagemap, type)`.
    pub off_pgmap_type: u32,
    /// Right shift of `page->flags` that brings the zone number to bit 0.
    pub zones_shift: u32,
    /// Mask of the zone number after the shift.
    pub zones_mask: u32,
    /// `ZONE_DEVICE` in `enum zone_type`.
    pub zone_device: u32,
    /// `offsetof(struct bio, bi_io_vec)`.
    pub off_bio_io_vec: u32,
    /// `offsetof(struct bio, bi_vcnt)` (an `unsigned short`).
    pub off_bio_vcnt: u32,
    /// `sizeof(struct bio_vec)`.
    pub bvec_size: u32,
    /// `offsetof(struct bio_vec, bv_page)`.
    pub off_bv_page: u32,
    /// `offsetof(struct bio_vec, bv_len)`.
    pub off_bv_len: u32,
    /// `offsetof(struct bio_vec, bv_offset)`.
    pub off_bv_offset: u32,
    /// `offsetof(struct dev_pagemap, ops)`.
    pub off_pgmap_ops: u32,
    /// Offset of the free callback in `struct dev_pagemap_ops` (`folio_free`
    /// or `page_free`).
    pub off_ops_free: u32,
    /// `offsetof(struct migrate_vma, flags)`.
    pub off_mv_flags: u32,
    /// `offsetof(struct migrate_vma, fault_page)`.
    pub off_mv_fault_page: u32,
    /// Non-zero: remember GUP references on system pages (for naming who
    /// blocks a migration to device memory).
    pub ram_holders: u32,
    /// `MIGRATE_VMA_SELECT_SYSTEM` bit.
    pub select_system: u32,
    /// `offsetof(struct dev_pagemap, range)` (its first physical range).
    pub off_pgmap_range: u32,
    /// `offsetof(struct folio_batch, nr)` (a byte).
    pub off_fbatch_nr: u32,
    /// `offsetof(struct folio_batch, folios)`; 0 without `struct folio_batch`.
    pub off_fbatch_folios: u32,
    /// Kernel stack frames to walk for an event, by its [`kind`] value:
    /// 0 takes none ([`flags::NO_STACK`]), fewer than [`MAX_STACK`] marks
    /// the stack [`flags::STACK_SHORT`]; more than [`MAX_STACK`] counts as
    /// [`MAX_STACK`].
    pub stack_frames: [u8; KIND_SLOTS],
    /// `--pfn`: first PFN of each range (inclusive).
    pub filter_pfn_lo: [u64; MAX_PFN_RANGES],
    /// `--pfn`: last PFN of each range (inclusive).
    pub filter_pfn_hi: [u64; MAX_PFN_RANGES],
    /// `--cgroup`: the cgroup v2 id tasks must be in (0: any).
    pub filter_cgroup: u64,
    /// Unread bytes in the ring from which an event wakes the reader: the
    /// event that brings the ring to this level wakes it, the ones after it
    /// do not (0: a MiB). A sixteenth of the ring.
    pub wake_bytes: u64,
    /// `--pfn`: ranges in use (0: every PFN).
    pub filter_pfn_ranges: u32,
    /// `--type`: bit `1 << t` for each stable [`pgmap`] type `t` kept (0: all).
    pub filter_types: u32,
    /// `--pid`: the thread group tasks must be in (0: any).
    pub filter_tgid: u32,
    /// The `FOLL_PIN` bit of GUP's flags: a grab with it is a pin.
    pub foll_pin: u32,
    /// Bit number of `PG_head` in `page->flags` (a large folio's head).
    pub pg_head: u32,
    /// `--max-rate`: events each CPU sends per second at most; past it, an
    /// event is counted ([`counter::CAPPED`]) and its page noted as for a
    /// loss, without its stack walk and ring record (0: no cap).
    pub rate_cap: u32,
    /// Raw `enum memory_type` value → stable [`pgmap`] value.
    pub memtype: [u32; 8],
}

const _: () = assert!(
    core::mem::size_of::<KernelLayout>()
        == 3 * 8 + 24 * 4 + KIND_SLOTS + 2 * MAX_PFN_RANGES * 8 + 2 * 8 + 6 * 4 + 8 * 4
);

/// Most `--pfn` ranges the kernel programs test an event against.
pub const MAX_PFN_RANGES: usize = 8;

/// PFNs the kernel follows at once under a task filter (`--pid`,
/// `--cgroup`): an LRU table, so beyond it the least recently touched page
/// is forgotten and its later events pass only when a matching task causes
/// them.
pub const FOLLOWED_PFNS: u32 = 65536;

impl KernelLayout {
    /// All zero: programs loaded with it emit nothing (zone check never matches
    /// because `zones_mask` is 0 and `zone_device` is set to an impossible value).
    pub const fn empty() -> Self {
        Self {
            vmemmap_base_addr: 0,
            vmemmap_start: 0,
            page_struct_size: 0,
            off_flags: 0,
            off_compound_head: 0,
            off_refcount: 0,
            off_mapcount: 0,
            off_pgmap: 0,
            off_pgmap_type: 0,
            zones_shift: 0,
            zones_mask: 0,
            zone_device: u32::MAX,
            off_bio_io_vec: 0,
            off_bio_vcnt: 0,
            bvec_size: 0,
            off_bv_page: 0,
            off_bv_len: 0,
            off_bv_offset: 0,
            off_pgmap_ops: 0,
            off_ops_free: 0,
            off_mv_flags: 0,
            off_mv_fault_page: 0,
            ram_holders: 0,
            select_system: 1,
            off_pgmap_range: 0,
            off_fbatch_nr: 0,
            off_fbatch_folios: 0,
            stack_frames: [0; KIND_SLOTS],
            filter_pfn_lo: [0; MAX_PFN_RANGES],
            filter_pfn_hi: [0; MAX_PFN_RANGES],
            filter_cgroup: 0,
            wake_bytes: 0,
            filter_pfn_ranges: 0,
            filter_types: 0,
            filter_tgid: 0,
            foll_pin: 0,
            pg_head: 0,
            rate_cap: 0,
            memtype: [0; 8],
        }
    }

    /// Frames to walk for an event of kind `k` (0..=[`MAX_STACK`]).
    pub const fn frames_for(&self, k: u32) -> usize {
        stack_depth(self.stack_frames[k as usize & (KIND_SLOTS - 1)])
    }
}

/// A [`KernelLayout::stack_frames`] entry as a number of frames, at most
/// [`MAX_STACK`].
#[inline(always)]
pub const fn stack_depth(entry: u8) -> usize {
    let n = entry as usize;
    if n > MAX_STACK { MAX_STACK } else { n }
}

/// The [`flags`] bits of an event whose kind asks for `frames` frames
/// ([`stack_depth`]), when its hook takes a stack (`wanted`):
/// [`flags::NO_STACK`], [`flags::STACK_SHORT`], or none for a full walk.
#[inline(always)]
pub const fn stack_flags(frames: usize, wanted: bool) -> u32 {
    if !wanted || frames == 0 {
        flags::NO_STACK
    } else if frames < MAX_STACK {
        flags::STACK_SHORT
    } else {
        0
    }
}

/// Index of the per-CPU counters (`COUNTERS` map).
/// Pages one peek reads (see [`PeekBatch`]).
pub const PEEK_PAGES: usize = 256;

/// What a peek read of one PFN: the state of its page right now.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagePeek {
    /// PFN of the head page.
    pub head_pfn: u64,
    /// The page map's free callback (or ops), like `Event::owner`.
    pub owner: u64,
    pub refcount: i32,
    /// Raw `_mapcount` of the head page.
    pub mapcount: i32,
    /// Stable page-map type ([`pgmap`]).
    pub pgmap_type: u32,
    /// 1: a ZONE_DEVICE page whose fields were read; 0: not a device page
    /// (or no `struct page` there).
    pub valid: u32,
    /// Kernel address of the head page's `struct page` (where a watchpoint
    /// goes). Never shown.
    pub page: u64,
}

/// The answer to one peek: [`PEEK_PAGES`] consecutive PFNs from the first
/// one asked for.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PeekBatch {
    pub pages: [PagePeek; PEEK_PAGES],
}

const _: () = assert!(core::mem::size_of::<PagePeek>() == 40);

/// Slots of the peek request (`PEEK_REQ`).
pub mod peek {
    /// The thread group whose `getppid` triggers the read (refwatch's).
    pub const TGID: u32 = 0;
    /// First PFN to read.
    pub const FIRST: u32 = 1;
    /// PFNs to read (at most `PEEK_PAGES`).
    pub const COUNT: u32 = 2;
    /// Number of slots.
    pub const SLOTS: u32 = 3;
}

/// Pages watched at once at most (`WATCH_LAST` entries): each takes one
/// hardware breakpoint slot on every CPU, and x86 has four.
pub const WATCH_PAGES: u32 = 64;

/// What the watchpoint program knows of a watched page (`WATCH_LAST`,
/// keyed by PFN): written by userspace when it arms the watch, updated by
/// every hit.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchLast {
    /// Last value of `_refcount` known (read before arming, then each
    /// hit's value).
    pub refcount: i32,
    /// Hits since the watch was armed (userspace writes 0; each hit adds
    /// one and sends the new count as `Event::aux`).
    pub hits: u32,
}

/// Entries of the kernel's table of PFNs whose events were lost.
pub const LOST_PFNS: u32 = 65536;

/// Entries of the kernel's table of PFNs whose last put walks its stack
/// under `--stacks holders` (the pages with an open episode, whose release
/// names its releaser): past it, every last put walks.
pub const RELEASE_PFNS: u32 = 4096;

/// The slots of the kernel's `SETTINGS` array, which userspace writes
/// after attaching.
pub mod setting {
    /// Non-zero when the page_ref tracepoints are attached (precise mode).
    pub const PRECISE: u32 = 0;
    /// Non-zero when a page's last put (the free hook's) walks its stack
    /// only for the pages in the `RELEASES` table; 0: every last put walks.
    pub const LAST_PUT_ON_DEMAND: u32 = 1;
    /// Slots.
    pub const COUNT: u32 = 2;
}

pub mod counter {
    /// Events submitted to the ring buffer.
    pub const SUBMITTED: u32 = 0;
    /// Ring buffer reserves that failed (events lost).
    pub const DROPPED: u32 = 1;
    /// Hook invocations that were not ZONE_DEVICE pages (filtered in kernel).
    pub const FILTERED: u32 = 2;
    /// Entry records that found their in-flight table full.
    pub const INFLIGHT_FULL: u32 = 3;
    /// Bios whose device pages were noted for their release.
    pub const BIOS: u32 = 4;
    /// GUP references on system pages remembered (`--ram-holders`).
    pub const RAM_GETS: u32 = 5;
    /// Losses whose PFN could not be noted (the LOST table was full).
    pub const LOST_UNATTRIBUTED: u32 = 6;
    /// Events of pages the user's filters (`--pfn`, `--type`, `--pid`,
    /// `--cgroup`) left out (a hook that reports at its exit counts at its
    /// entry, whether its exit would have reported or not): not losses.
    pub const SKIPPED: u32 = 7;
    /// Most bytes the ring buffer held unread at a submit on this CPU since
    /// refwatch last read and reset it: a maximum, not a count (the ring's
    /// fill level).
    pub const RING_PEAK: u32 = 8;
    /// Watchpoint hits (`hook::WATCHPOINT`) on an address that was not a
    /// device page's `_refcount` any more (the page map went away).
    pub const WATCH_STRAY: u32 = 9;
    /// Events past the rate cap (`--max-rate`, [`KernelLayout::rate_cap`]):
    /// counted and their pages noted like losses, not sent.
    pub const CAPPED: u32 = 10;
    /// Number of counters.
    pub const COUNT: u32 = 11;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are `#[repr(C)]` plain old data without padding (sizes are
    // asserted above) and every bit pattern is valid.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeekBatch {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WatchLast {}
}

#[cfg(test)]
mod tests {
    use super::{
        EVENT_HEADER_SIZE, EVENT_SIZE, MAX_STACK, hook, kaddr, record_room, record_size, ret,
        wake_bytes, wakes_reader,
    };

    #[test]
    fn the_record_that_reaches_the_wake_level_wakes_the_reader_and_no_other() {
        // The default ring's level is the MiB it always was.
        assert_eq!(wake_bytes(16 << 20), 1 << 20);
        assert_eq!(wake_bytes(4096), 256);
        let level = 1 << 20;
        // Records of 184 bytes filling an unread ring: exactly one wakes.
        let wakers: Vec<u64> = (1..20_000u64)
            .map(|n| n * 184)
            .filter(|&waiting| wakes_reader(waiting, level, 184))
            .collect();
        assert_eq!(wakers, [5699 * 184]);
        assert!(!wakes_reader(level - 1, level, 184));
        assert!(wakes_reader(level, level, 184));
        assert!(!wakes_reader(level + 184, level, 184));
        // Read down below the level, the ring wakes the reader again when
        // it reaches it again.
        assert!(wakes_reader(level + 100, level, 120));
        assert!(!wakes_reader(u64::MAX, u64::MAX, 0));
    }

    #[test]
    fn records_have_room_for_the_frames_asked_in_steps_of_eight() {
        let rooms: Vec<usize> = [0, 1, 7, 8, 9, 16, 17, 23, 24, 25, 200]
            .into_iter()
            .map(record_room)
            .collect();
        assert_eq!(rooms, [0, 8, 8, 8, 16, 16, 24, 24, 24, 24, 24]);
        assert_eq!(record_size(0), EVENT_HEADER_SIZE);
        assert_eq!(EVENT_HEADER_SIZE, 120);
        assert_eq!(record_size(8), 184);
        assert_eq!(record_size(record_room(MAX_STACK)), EVENT_SIZE);
    }

    #[test]
    fn pointer_returns_record_their_meaning() {
        for h in [hook::TRY_GRAB_FOLIO_FAST, hook::TRY_GRAB_FOLIO_PAGE] {
            assert_eq!(ret::value(h, 0), Some(0));
            assert_eq!(ret::value(h, -12), Some(-12));
            assert_eq!(ret::value(h, -4095), Some(-4095));
            assert_eq!(ret::value(h, 0xffffea0001234500u64 as i64), Some(1));
            assert_eq!(ret::value(h, 0xff933efc41208000u64 as i64), Some(1));
            assert_eq!(ret::value(h, -4096), Some(1));
        }
    }

    #[test]
    fn no_ret_is_a_kernel_address() {
        let raws = [
            0,
            1,
            -1,
            -11,
            -4095,
            -4096,
            4242,
            0xffffea0001234500u64 as i64,
            0xff933efc41208000u64 as i64,
            0xffff_ffff_8123_4567u64 as i64,
            0x0000_0001_ffff_fff2,
            i64::MIN,
            i64::MAX,
        ];
        for h in 0..hook::COUNT {
            for raw in raws {
                if let Some(v) = ret::value(h, raw) {
                    assert!(
                        !kaddr::is_kernel_address_i64(v),
                        "hook {h} raw {raw:#x}: {v}"
                    );
                }
            }
        }
        // What each type keeps.
        assert_eq!(
            ret::value(hook::GUP_PUT_FOLIO, 0xffffea0001234500u64 as i64),
            None
        );
        assert_eq!(
            ret::value(hook::PUT_DEVMAP_REFS, 0xffffea0001234501u64 as i64),
            Some(1)
        );
        assert_eq!(
            ret::value(hook::PUT_DEVMAP_REFS, 0xffffea0001234500u64 as i64),
            Some(0)
        );
        assert_eq!(ret::value(hook::TRY_GRAB_FOLIO, 0xffff_fff4), Some(-12));
        assert_eq!(
            ret::value(hook::TRY_GRAB_PAGE, 0xffff_ffff_8123_4501u64 as i64),
            None
        );
        assert_eq!(ret::value(hook::KERNEL_CLONE, 4242), Some(4242));
        assert_eq!(ret::value(hook::MAP_INSERT, 0x100), Some(0x100));
    }

    #[test]
    fn the_kernel_address_range() {
        assert!(kaddr::is_kernel_address(0xffff_8000_0000_0000));
        assert!(kaddr::is_kernel_address(0xffffea0001234500));
        assert!(kaddr::is_kernel_address(0xff933efc41208000));
        assert!(kaddr::is_kernel_address(0xffff_ffff_8100_0000));
        assert!(kaddr::is_kernel_address_i64(-4096));
        assert!(!kaddr::is_kernel_address_i64(-4095));
        assert!(!kaddr::is_kernel_address_i64(-1));
        assert!(!kaddr::is_kernel_address(0x40000));
        assert!(!kaddr::is_kernel_address(0x00ff_ffff_ffff_ffff));
        assert!(!kaddr::is_kernel_address(0x7fff_ffff_ffff_ffff));
    }

    #[test]
    fn spellings_of_kernel_addresses() {
        let found = |t: &'static str| kaddr::spellings(t).collect::<std::vec::Vec<_>>();
        assert_eq!(
            found(r#"{"ret":-30611519316131840,"pfn":295936}"#),
            ["-30611519316131840"]
        );
        assert_eq!(found("ret=18416132554393419776;"), ["18416132554393419776"]);
        assert_eq!(
            found("a+0x5 (0xffffffff81000005), 0xFFFFEA0001234500"),
            ["0xffffffff81000005", "0xFFFFEA0001234500"]
        );
        assert_eq!(found("page ffffea0001234500\n"), ["ffffea0001234500"]);
        // Not addresses, or not whole numbers.
        for t in [
            "pfn 0x40000, ts 123456789012, ret -11, -4095, 0x0",
            "bpf_trampoline_6442501886 bpf_prog_ffffea0001234500_x",
            "ffffea0001234500ff 0xffffea000123450000 x18416132554393419776",
            "184467440737095516160 -4095 - -",
            "0x00ffffffffffffff 72057594037927935",
        ] {
            assert!(found(t).is_empty(), "{t}: {:?}", found(t));
        }
    }
}
