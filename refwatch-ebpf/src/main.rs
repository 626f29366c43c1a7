//! refwatch's kernel programs.
//!
//! Every hook resolves its page argument, returns at once unless the page is a
//! ZONE_DEVICE page (this runs on some of the hottest paths of the kernel), and
//! otherwise emits an [`Event`] into the `EVENTS` ring buffer. Kernel struct
//! offsets are not compiled in: userspace reads them from the running kernel's
//! BTF and sets the `LAYOUT` global before loading.
#![no_std]
#![no_main]

mod emit;
mod filter;
mod page;
mod pending;
mod probes;
mod watch;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use refwatch_common::{Event, KernelLayout, counter, hook};

/// Kernel layout, written by userspace before the programs are loaded.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::empty();

/// Events for userspace.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Per-CPU counters, indexed by [`counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Settings userspace changes after attaching, indexed by
/// [`refwatch_common::setting`].
#[map]
static SETTINGS: Array<u32> = Array::with_max_entries(refwatch_common::setting::COUNT, 0);

/// PFNs whose last put walks its stack while
/// [`refwatch_common::setting::LAST_PUT_ON_DEMAND`] is set (value unused):
/// the pages with an open episode, kept by userspace.
#[map]
static RELEASES: HashMap<u64, u8> = HashMap::with_max_entries(refwatch_common::RELEASE_PFNS, 0);

/// PFNs whose events were lost (ring buffer full, in-flight table full) →
/// `bpf_ktime_get_ns` of the last loss. Userspace takes the entries out
/// once a second and marks those pages' histories with a gap; a loss that
/// finds this table full is counted in [`counter::LOST_UNATTRIBUTED`].
#[map]
static LOST: HashMap<u64, u64> = HashMap::with_max_entries(refwatch_common::LOST_PFNS, 0);

/// Each CPU's rate window (`--max-rate`): the start of its current second
/// and the events sent in it.
#[map]
static RATE: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Threads inside `kernel_clone`: value 1 once they touched a device page.
#[map]
static FORKING: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Entry state of hooks that emit at exit, keyed by thread and hook.
#[map]
static INFLIGHT: HashMap<u64, pending::Pending> = HashMap::with_max_entries(16384, 0);

/// Per hook: 1 once an entry program of that hook left an entry in
/// [`INFLIGHT`] (on any thread), set before the entry. The exits that look
/// for entries of enclosing hooks on their thread skip the hooks still at
/// 0: no entry of theirs can be there, and each look is a hash lookup.
#[map]
static ENTERED: Array<u32> = Array::with_max_entries(hook::COUNT, 0);

/// The start of the `struct page` array, read once from the kernel's
/// `vmemmap_base` (randomized at boot, then fixed); 0 until read.
#[map]
static VMEMMAP: Array<u64> = Array::with_max_entries(1, 0);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

// Keep `Event` referenced for the linker's BTF even before a program uses it.
#[unsafe(no_mangle)]
static EVENT_TYPE: Option<&Event> = None;
