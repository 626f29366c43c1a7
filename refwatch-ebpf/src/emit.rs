//! Writing events into the ring buffer, and the per-CPU counters.

use aya_ebpf::{
    EbpfContext, bindings,
    helpers::{bpf_get_current_pid_tgid, generated},
    maps::ring_buf::RingBufBytes,
};
use refwatch_common::{
    COMM_LEN, Event, KIND_SLOTS, MAX_STACK, RECORD_STEP_FRAMES, counter, flags, kind, record_size,
    stack_depth, stack_flags, wakes_reader,
};

use crate::{
    COUNTERS, EVENTS, FORKING, LOST, RATE,
    page::{DevicePage, mapcount, refcount},
};

/// Unread bytes in the ring buffer from which a submit wakes the reader
/// when userspace set no level (`KernelLayout::wake_bytes` 0). Below the
/// level, the event waits for the reader's next poll (`DRAIN_EVERY` in
/// userspace, 20 ms): a wakeup per event costs the traced thread an
/// interrupt and a scheduler wakeup each time the reader has caught up.
const WAKE_BYTES: u64 = 1 << 20;

/// Submits a reserved event, waking the reader when it brings the ring to
/// the wake level ([`wake_flags`]).
#[inline(always)]
pub fn submit<T: 'static>(entry: aya_ebpf::maps::ring_buf::RingBufEntry<T>) {
    entry.submit(wake_flags(core::mem::size_of::<T>() as u64));
}

/// [`submit`] for a record reserved by size ([`reserve_record`]).
#[inline(always)]
fn submit_record(record: RingBufBytes<'static>) {
    let size = record.len() as u64;
    record.submit(wake_flags(size));
}

/// The submit flags of a record of `size` bytes: a wakeup when it is the
/// one that brought the unread bytes to the wake level, none otherwise.
/// Only that one: while the reader is behind, every event above the level
/// forced a wakeup before (an irq_work each, for a reader that is already
/// woken or cannot run yet): on `dax` with `--stacks none` and a 4 MiB ring
/// (debian-6.12, one CPU), 8.56 against 8.50 with one wakeup per crossing,
/// the reader woken as often. Notes the ring's fill level.
#[inline(always)]
fn wake_flags(size: u64) -> u64 {
    // The unread bytes, this record's included (reserved, not yet
    // submitted).
    let waiting = EVENTS.query(u64::from(bindings::BPF_RB_AVAIL_DATA));
    if let Some(peak) = COUNTERS.get_ptr_mut(counter::RING_PEAK) {
        // SAFETY: this CPU's slot; a race with the reader's reset loses
        // one level reading at most.
        unsafe {
            if waiting > *peak {
                *peak = waiting;
            }
        }
    }
    let level = match crate::page::layout!(wake_bytes) {
        0 => WAKE_BYTES,
        n => n,
    };
    // Two CPUs submitting at once may both see the level passed by more
    // than their own record: then neither wakes, and the reader's next
    // poll reads the ring.
    let wake = if wakes_reader(waiting, level, size) {
        bindings::BPF_RB_FORCE_WAKEUP
    } else {
        bindings::BPF_RB_NO_WAKEUP
    };
    u64::from(wake)
}

/// Reserves the ring record of an event that asks for `frames` frames:
/// [`record_size`] of [`refwatch_common::record_room`], so an event without a stack takes
/// 120 bytes of the ring instead of 312. Returns the record and its room
/// in frames. Each size is a constant on its own path, as the verifier
/// requires of `bpf_ringbuf_reserve`.
#[inline(always)]
fn reserve_record(frames: usize) -> Option<(RingBufBytes<'static>, usize)> {
    const STEP: usize = RECORD_STEP_FRAMES;
    if frames == 0 {
        EVENTS.reserve_bytes(record_size(0), 0).map(|r| (r, 0))
    } else if frames <= STEP {
        EVENTS
            .reserve_bytes(record_size(STEP), 0)
            .map(|r| (r, STEP))
    } else if frames <= 2 * STEP {
        EVENTS
            .reserve_bytes(record_size(2 * STEP), 0)
            .map(|r| (r, 2 * STEP))
    } else {
        EVENTS
            .reserve_bytes(record_size(MAX_STACK), 0)
            .map(|r| (r, MAX_STACK))
    }
}

/// Adds one to counter `idx` of this CPU.
#[inline(always)]
pub fn count(idx: u32) {
    count_by(idx, 1);
}

/// Adds `n` to counter `idx` of this CPU.
#[inline(always)]
pub fn count_by(idx: u32, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot of this CPU; programs do not preempt each other
        // on one CPU for the same counter in a way that matters for a statistic.
        unsafe { *slot += n };
    }
}

/// Notes that an event of `pfn` was lost, for userspace to mark the page's
/// history with a gap.
#[inline(always)]
pub fn note_lost(pfn: u64) {
    // A page no filter lets through has no history to mark.
    if !crate::filter::follows(pfn) {
        return;
    }
    // SAFETY: a helper call without pointers into program memory.
    let now = unsafe { generated::bpf_ktime_get_ns() };
    if LOST.insert(pfn, now, 0).is_err() {
        count(counter::LOST_UNATTRIBUTED);
    }
}

/// Whether a record of `events` events is past this CPU's `--max-rate`
/// for the current second (a fixed window, restarted by the first event a
/// second or more after its start). Counts its events when it is not.
#[inline(always)]
fn over_rate(events: u64) -> bool {
    let cap = crate::page::layout!(rate_cap);
    if cap == 0 {
        return false;
    }
    let Some(w) = RATE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a helper call without pointers into program memory.
    let now = unsafe { generated::bpf_ktime_get_ns() };
    // SAFETY: this CPU's slot; programs on one CPU run one at a time
    // (a nested one may miscount by one, a statistic).
    unsafe {
        if now.wrapping_sub((*w)[0]) >= 1_000_000_000 {
            (*w)[0] = now;
            (*w)[1] = 0;
        }
        if (*w)[1] >= u64::from(cap) {
            return true;
        }
        (*w)[1] += events;
    }
    false
}

/// Fields of an event that vary per hook.
pub struct Fields {
    pub kind: u32,
    pub hook: u32,
    pub pfn: u64,
    pub head: u64,
    pub pgmap_type: u32,
    pub before: Option<i32>,
    pub after: Option<i32>,
    pub mapcount: Option<i32>,
    pub ret: Option<i64>,
    pub aux: u64,
    pub aux2: u64,
    pub owner: u64,
    pub nr_pages: u32,
    pub stack: bool,
    /// [`flags`] bits the event sets itself ([`flags::LAST_PUT`]).
    pub flags: u32,
}

impl Fields {
    /// An event about the device page `p`: its refcount (as both before and
    /// after) and mapcount read now, one page, a stack; callers change what
    /// differs.
    #[inline(always)]
    pub fn about(kind: u32, hook: u32, p: &DevicePage) -> Self {
        let now = refcount(p.head);
        Self {
            kind,
            hook,
            pfn: p.pfn,
            head: p.head,
            pgmap_type: p.pgmap_type,
            before: now,
            after: now,
            mapcount: mapcount(p.head),
            ret: None,
            aux: 0,
            aux2: 0,
            owner: p.owner,
            nr_pages: 1,
            stack: true,
            flags: 0,
        }
    }

    /// Events the record stands for: two for a free that also reports the
    /// page's last put ([`flags::LAST_PUT`]), one otherwise. Counters and
    /// the rate cap count events, not records.
    #[inline(always)]
    fn events(&self) -> u64 {
        if self.flags & flags::LAST_PUT != 0 {
            2
        } else {
            1
        }
    }

    /// The kind whose stack depth the record's walk takes: a free's last
    /// put walks as deep as puts do.
    #[inline(always)]
    fn stack_kind(&self) -> u32 {
        if self.flags & flags::LAST_PUT != 0 {
            kind::PUT
        } else {
            self.kind
        }
    }
}

/// A context for events emitted outside the program's own frame (from a
/// `bpf_loop` callback): no stack of its own.
pub struct NoCtx;

impl EbpfContext for NoCtx {
    fn as_ptr(&self) -> *mut core::ffi::c_void {
        core::ptr::null_mut()
    }
}

/// Frames of kernel stack to walk for an event of `kind`, as the layout's
/// table asks (0..=`MAX_STACK`).
#[inline(always)]
pub fn stack_frames(kind: u32) -> usize {
    let i = kind as usize & (KIND_SLOTS - 1);
    // SAFETY: `i` is within the table; `LAYOUT` is a plain global, read
    // volatile so the compiler does not fold the value it has at build
    // time (the loader sets it; the verifier sees it, frozen).
    let entry = unsafe {
        core::ptr::read_volatile((&raw const crate::LAYOUT.stack_frames).cast::<u8>().add(i))
    };
    stack_depth(entry)
}

/// Walks at most `frames` frames of this program's kernel stack into
/// `buf`: the kernel stops unwinding once the buffer is full
/// (`bpf_get_stack` gives `get_perf_callchain` a depth of size / 8).
/// Returns the bytes written, or a negative error; 0 when `frames` is 0.
///
/// # Safety
/// `buf` must be valid for `frames` frames (at most `MAX_STACK`).
#[inline(always)]
pub unsafe fn walk_stack<C: EbpfContext>(ctx: &C, buf: *mut u64, frames: usize) -> i64 {
    // Bounded where the verifier sees it: the size is at most the buffer.
    let frames = if frames > MAX_STACK {
        MAX_STACK
    } else {
        frames
    };
    if frames == 0 {
        return 0;
    }
    // SAFETY: `buf` holds `frames * 8` bytes (caller).
    unsafe { generated::bpf_get_stack(ctx.as_ptr(), buf.cast(), (frames * 8) as u32, 0) }
}

/// A kernel stack taken once for several events: a batch hook emits one
/// event per page from a `bpf_loop` callback, where its context is not at
/// hand.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SharedStack {
    /// What `bpf_get_stack` returned (bytes, or a negative error).
    pub bytes: i64,
    pub frames: [u64; MAX_STACK],
}

impl SharedStack {
    /// Takes this program's stack into `self`, as deep as events of `kind`
    /// ask (nothing when they ask for none).
    #[inline(always)]
    pub fn take<C: EbpfContext>(&mut self, ctx: &C, kind: u32) {
        // SAFETY: `frames` is `MAX_STACK * 8` bytes of map memory.
        self.bytes = unsafe { walk_stack(ctx, (&raw mut self.frames).cast(), stack_frames(kind)) };
    }
}

/// Reserves, fills and submits one event; counts a drop when the ring is full.
#[inline(always)]
pub fn emit<C: EbpfContext>(ctx: &C, f: &Fields) {
    emit_with(ctx, f, None);
}

/// [`emit`], with the stack from `shared` when given.
#[inline(always)]
pub fn emit_with<C: EbpfContext>(ctx: &C, f: &Fields, shared: Option<&SharedStack>) {
    let events = f.events();
    if crate::filter::skips(f.kind, f.pfn, f.pgmap_type, f.aux) {
        // `skips` counted one; a put and a free are both the page's.
        if events > 1 {
            count(counter::SKIPPED);
        }
        return;
    }
    if over_rate(events) {
        count_by(counter::CAPPED, events);
        note_lost(f.pfn);
        return;
    }
    let frames = if f.stack {
        stack_frames(f.stack_kind())
    } else {
        0
    };
    let Some((mut record, room)) = reserve_record(frames) else {
        count_by(counter::DROPPED, events);
        note_lost(f.pfn);
        return;
    };
    // The record is `Event` cut after `room` frames of its stack, the last
    // field: what follows writes the header and at most `room` frames.
    let ev = record.as_mut_ptr().cast::<Event>();
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut fl = 0;
    if f.before.is_some() {
        fl |= flags::HAS_BEFORE;
    }
    if f.after.is_some() {
        fl |= flags::HAS_AFTER;
    }
    if f.mapcount.is_some() {
        fl |= flags::HAS_MAPCOUNT;
    }
    if f.ret.is_some() {
        fl |= flags::HAS_RET;
    }
    if let Some(forking) = FORKING.get_ptr_mut(pid_tgid) {
        fl |= flags::FORKING;
        // SAFETY: this thread's own entry.
        unsafe { *forking = 1 };
    }
    fl |= stack_flags(frames, f.stack) | f.flags;
    // SAFETY: `ev` points at a reserved ring-buffer record of
    // `record_size(room)` bytes that only this program writes until it is
    // submitted: the header, and `room` frames of the stack.
    unsafe {
        (*ev).pfn = f.pfn;
        (*ev).page = f.head;
        (*ev).ret = f.ret.unwrap_or(0);
        (*ev).aux = f.aux;
        (*ev).aux2 = f.aux2;
        (*ev).owner = f.owner;
        (*ev).pid = pid_tgid as u32;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).cpu = generated::bpf_get_smp_processor_id();
        (*ev).kind = f.kind;
        (*ev).hook = f.hook;
        (*ev).flags = fl;
        (*ev).refcount_before = f.before.unwrap_or(0);
        (*ev).refcount_after = f.after.unwrap_or(0);
        (*ev).mapcount = f.mapcount.unwrap_or(0);
        (*ev).pgmap_type = f.pgmap_type;
        (*ev).nr_pages = f.nr_pages;
        write_comm(&raw mut (*ev).comm);
        // Only `stack_bytes` of the frames are read: a short walk leaves
        // the rest of the room as it was.
        let stack = (&raw mut (*ev).stack).cast::<u64>();
        let mut n: i64 = 0;
        if let Some(s) = shared {
            if frames > 0 && s.bytes > 0 {
                n = copy_frames(stack, &s.frames, s.bytes, room);
            }
        } else {
            // `room` bounds the walk where the verifier sees it (the
            // record's size); `frames` never asks for more.
            let want = if frames > room { room } else { frames };
            n = walk_stack(ctx, stack, want);
        }
        if n < 0 {
            n = 0;
        }
        (*ev).stack_bytes = n as u32;
        // Last: the stack walk can take long (milliseconds under emulation),
        // and the time should be close to the operation that follows the
        // hook, where other tracers of the same tracepoint stamp it.
        (*ev).ts_ns = generated::bpf_ktime_get_ns();
    }
    submit_record(record);
    count_by(counter::SUBMITTED, events);
}

/// Writes the current task's name into `dst`, straight from the helper
/// (which fills all of it, zeroed when it fails): a name built on the
/// program's stack first is zeroed there by `memset`, a loop of a store per
/// byte on BPF.
///
/// # Safety
/// `dst` must be valid for writes.
#[inline(always)]
pub unsafe fn write_comm(dst: *mut [u8; COMM_LEN]) {
    // SAFETY: `dst` holds `COMM_LEN` bytes (caller).
    unsafe { generated::bpf_get_current_comm(dst.cast(), COMM_LEN as u32) };
}

/// Copies the frames of a shared walk (`bytes` of them) into a record's
/// stack with room for `room` frames; returns the bytes copied.
///
/// # Safety
/// `dst` must be valid for `room` frames.
#[inline(always)]
unsafe fn copy_frames(dst: *mut u64, src: &[u64; MAX_STACK], bytes: i64, room: usize) -> i64 {
    let mut copied = 0;
    for (i, &frame) in src.iter().enumerate() {
        if i >= room || (i as i64) * 8 >= bytes {
            break;
        }
        // SAFETY: `i < room` (caller).
        unsafe { dst.add(i).write(frame) };
        copied += 8;
    }
    copied
}
