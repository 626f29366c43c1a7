//! Entry state of hooks that emit at exit.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;

/// What an entry program leaves for its exit program.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    /// Head page.
    pub head: u64,
    /// PFN of the head page.
    pub pfn: u64,
    /// Hook argument kept for the event (`refs`, …).
    pub aux: u64,
    /// See `Event::owner`.
    pub owner: u64,
    /// `_refcount` at entry.
    pub before: i32,
    /// Stable page-map type.
    pub pgmap_type: u32,
    /// Non-zero when a nested hook on the same page already emitted the event.
    pub covered: u32,
    /// Non-zero when the entry read a valid `before`.
    pub has_before: u32,
    /// Non-zero when the free's exit also reports the page's last put
    /// (`flags::LAST_PUT`; only `hook::FREE_ZONE_DEVICE` sets it).
    pub last_put: u32,
    /// Always 0: the value has no padding, whose bytes the verifier would
    /// refuse to copy into the map uninitialized.
    pub reserved: u32,
}

/// Key for `hook` on the current thread. Thread group ids fit in 32 bits and
/// hook ids in 8, so nested hooks of one thread never collide.
#[inline(always)]
pub fn key(hook: u32) -> u64 {
    bpf_get_current_pid_tgid() ^ ((hook as u64) << 56)
}
