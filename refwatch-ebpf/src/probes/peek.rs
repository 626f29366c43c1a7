//! Reading the state of given PFNs on demand: refwatch writes the range into
//! `PEEK_REQ` and calls `getppid`; this program, on that syscall and only
//! for refwatch's own thread group, reads each page's `_refcount`,
//! `_mapcount` and page map into `PEEK_OUT`. Used for the snapshot at
//! attach (pages referenced before refwatch started) and to learn a page's
//! state again after its events were lost.
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_loop},
    macros::{fentry, kprobe, map},
    maps::Array,
    programs::{FEntryContext, ProbeContext},
};
use refwatch_common::{PEEK_PAGES, PagePeek, PeekBatch, peek};

use crate::page::{device_page, mapcount, page_of_pfn, refcount};

/// The request: [`peek`] slots.
#[map]
static PEEK_REQ: Array<u64> = Array::with_max_entries(peek::SLOTS, 0);

/// The answer, one batch.
#[map]
static PEEK_OUT: Array<PeekBatch> = Array::with_max_entries(1, 0);

#[fentry]
pub fn fentry_peek(_ctx: FEntryContext) -> i32 {
    read_request();
    0
}

#[kprobe]
pub fn kprobe_peek(_ctx: ProbeContext) -> u32 {
    read_request();
    0
}

#[inline(always)]
fn read_request() {
    let tgid = bpf_get_current_pid_tgid() >> 32;
    if PEEK_REQ.get(peek::TGID).copied() != Some(tgid) {
        return;
    }
    let n = PEEK_REQ.get(peek::COUNT).copied().unwrap_or(0);
    // SAFETY: `step` has the callback signature bpf_loop expects; it takes
    // no context.
    unsafe {
        bpf_loop(
            n.min(PEEK_PAGES as u64) as u32,
            step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
}

/// Reads PFN `first + i` into slot `i`.
extern "C" fn step(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(first) = PEEK_REQ.get(peek::FIRST).copied() else {
        return 1;
    };
    let Some(out) = PEEK_OUT.get_ptr_mut(0) else {
        return 1;
    };
    let idx = i as usize & (PEEK_PAGES - 1);
    let answer = page_of_pfn(first + i)
        .and_then(device_page)
        .map_or(PagePeek::default(), |d| PagePeek {
            head_pfn: d.pfn,
            owner: d.owner,
            refcount: refcount(d.head).unwrap_or(i32::MIN),
            mapcount: mapcount(d.head).unwrap_or(i32::MIN),
            pgmap_type: d.pgmap_type,
            valid: 1,
            page: d.head,
        });
    // SAFETY: the single answer slot; `idx` is masked into the array.
    unsafe { (*out).pages[idx] = answer };
    0
}
