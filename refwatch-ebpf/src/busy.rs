//! How many entries of a kind are in flight, system-wide: the hooks that
//! look for an enclosing hook of the same thread (a drop inside a drop, a
//! grab inside a grab, a reference taken while forking) skip their map
//! lookups when nothing of that kind is in flight. The count is never below
//! the number of entries of that kind in their map: it goes up after an
//! insert succeeds and down only after the entry it counted is taken out,
//! so a lookup is skipped only when it could not have found anything.
use crate::BUSY;

/// Threads inside `kernel_clone` (entries of `FORKING`).
pub const FORKS: u32 = 0;
/// Grab hooks in flight on a device page (`GET_HOOKS` entries of `INFLIGHT`).
pub const GETS: u32 = 1;
/// Drop hooks in flight on a device page (`DROP_HOOKS` entries of `INFLIGHT`).
pub const DROPS: u32 = 2;
/// Slots of `BUSY`.
pub const KINDS: u32 = 3;

#[inline(always)]
fn add(kind: u32, n: u64) {
    if let Some(slot) = BUSY.get_ptr_mut(kind) {
        // SAFETY: an aligned u64 of map memory. BPF's atomic add (`lock
        // ... +=`): core has no atomic read-modify-write for this target.
        unsafe {
            core::arch::asm!(
                "lock *(u64 *)({slot} + 0) += {n}",
                slot = in(reg) slot,
                n = in(reg) n,
                options(nostack),
            );
        }
    }
}

/// One more entry of `kind`, after its insert succeeded.
#[inline(always)]
pub fn enter(kind: u32) {
    add(kind, 1);
}

/// One entry of `kind` less, after it was taken out of its map.
#[inline(always)]
pub fn leave(kind: u32) {
    add(kind, u64::MAX);
}

/// Entries of `kind` in flight, system-wide (possibly more, never fewer).
#[inline(always)]
pub fn count(kind: u32) -> u64 {
    match BUSY.get_ptr(kind) {
        // SAFETY: an aligned u64 of map memory; an 8-byte load is whole.
        Some(slot) => unsafe { core::ptr::read_volatile(slot) },
        None => u64::MAX,
    }
}
