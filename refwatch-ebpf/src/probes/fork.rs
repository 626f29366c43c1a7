//! Forks: references a parent takes on device pages while it forks (copying
//! device-private entries into the child's page table) belong to the child.
//!
//! `pid_t kernel_clone(struct kernel_clone_args *)` (5.10+) returns the
//! child's pid. Entry marks the thread as forking (`emit` flags its events);
//! exit reports the child, but only for forks that touched device pages.
use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use refwatch_common::{hook, kind, pgmap};

use crate::{
    FORKING,
    emit::{Fields, emit},
};

#[inline(always)]
fn on_entry() {
    let _ = FORKING.insert(bpf_get_current_pid_tgid(), 0, 0);
}

#[inline(always)]
fn on_exit<C: EbpfContext>(ctx: &C, child: i64) {
    let k = bpf_get_current_pid_tgid();
    // SAFETY: read-only copy of this thread's entry.
    let touched = unsafe { FORKING.get(k) }.copied().unwrap_or(0);
    let _ = FORKING.remove(k);
    if touched == 0 || child <= 0 {
        return;
    }
    emit(
        ctx,
        &Fields {
            kind: kind::FORK,
            hook: hook::KERNEL_CLONE,
            pfn: 0,
            head: 0,
            pgmap_type: pgmap::UNKNOWN,
            before: None,
            after: None,
            mapcount: None,
            ret: Some(child),
            aux: 0,
            aux2: 0,
            owner: 0,
            nr_pages: 0,
            stack: false,
            flags: 0,
        },
    );
}

#[fentry]
pub fn fentry_clone(_ctx: FEntryContext) -> i32 {
    on_entry();
    0
}

#[fexit]
pub fn fexit_clone(ctx: FExitContext) -> i32 {
    let ret = ctx.ret::<i64>().unwrap_or(0) as i32 as i64;
    on_exit(&ctx, ret);
    0
}

#[kprobe]
pub fn kprobe_clone(_ctx: ProbeContext) -> u32 {
    on_entry();
    0
}

#[kretprobe]
pub fn kretprobe_clone(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    on_exit(&ctx, ret as i32 as i64);
    0
}
