//! Precise mode: the `page_ref` tracepoints (`CONFIG_DEBUG_PAGE_REF`).
//!
//! Every `page_ref_*`/`folio_ref_*` helper reports through these tracepoints
//! once enabled, so every get and put of a device page is seen with its stack,
//! including the inline ones no function hook can see. They fire for every
//! page of the system: the ZONE_DEVICE check comes first. Failed try-gets
//! (`page_ref_mod_unless` with `ret == 0`, e.g. a driver scanning its free
//! pages) and failed freezes change nothing and are dropped here.
//!
//! Prototypes (`tp_btf` arguments): `set(page, v)`, `mod(page, v)`,
//! `mod_and_test(page, v, ret)`, `mod_and_return(page, v, ret)`,
//! `mod_unless(page, v, ret)`, `freeze(page, v, ret)`, `unfreeze(page, v)`;
//! `v` is the signed delta, or the new value for set/freeze/unfreeze.
use aya_ebpf::{EbpfContext, macros::btf_tracepoint, programs::BtfTracePointContext};
use refwatch_common::{counter, hook, kind};

use crate::{
    emit::{Fields, count, emit},
    page::device_page,
};

use super::{GUP_PIN_COUNTING_BIAS, raw_arg};

#[inline(always)]
fn on_ref<C: EbpfContext>(ctx: &C, hook: u32, page: u64, v: i32, ret: i32) {
    let Some(p) = device_page(page) else {
        count(counter::FILTERED);
        return;
    };
    let f = Fields::about(kind::SET, hook, &p);
    let after = f.after;
    let (k, before) = match hook {
        hook::PAGE_REF_SET | hook::PAGE_REF_UNFREEZE => (kind::SET, None),
        hook::PAGE_REF_FREEZE => {
            if ret == 0 {
                return;
            }
            (kind::SET, Some(v))
        }
        _ => {
            if hook == hook::PAGE_REF_MOD_UNLESS && ret == 0 || v == 0 {
                return;
            }
            // A FOLL_PIN grab is a try-get (+1) and then +1023 on a small
            // folio; the unpin drops 1024 at once.
            let pin = v.unsigned_abs() >= (GUP_PIN_COUNTING_BIAS - 1) as u32;
            let k = match (v > 0, pin) {
                (true, true) => kind::PIN,
                (true, false) => kind::GET,
                (false, true) => kind::UNPIN,
                (false, false) => kind::PUT,
            };
            (k, after.map(|a| a - v))
        }
    };
    emit(
        ctx,
        &Fields {
            kind: k,
            before,
            aux: v as i64 as u64,
            ..f
        },
    );
}

macro_rules! tracepoint {
    ($name:ident, $tp:literal, $hook:expr, $nargs:literal) => {
        #[btf_tracepoint(function = $tp)]
        pub fn $name(ctx: BtfTracePointContext) -> i32 {
            let page: u64 = raw_arg(&ctx, 0);
            let v = raw_arg(&ctx, 1) as i32;
            let ret = if $nargs > 2 {
                raw_arg(&ctx, 2) as i32
            } else {
                1
            };
            on_ref(&ctx, $hook, page, v, ret);
            0
        }
    };
}

tracepoint!(tp_ref_set, "page_ref_set", hook::PAGE_REF_SET, 2);
tracepoint!(tp_ref_mod, "page_ref_mod", hook::PAGE_REF_MOD, 2);
tracepoint!(
    tp_ref_mod_and_test,
    "page_ref_mod_and_test",
    hook::PAGE_REF_MOD_AND_TEST,
    3
);
tracepoint!(
    tp_ref_mod_and_return,
    "page_ref_mod_and_return",
    hook::PAGE_REF_MOD_AND_RETURN,
    3
);
tracepoint!(
    tp_ref_mod_unless,
    "page_ref_mod_unless",
    hook::PAGE_REF_MOD_UNLESS,
    3
);
tracepoint!(tp_ref_freeze, "page_ref_freeze", hook::PAGE_REF_FREEZE, 3);
tracepoint!(
    tp_ref_unfreeze,
    "page_ref_unfreeze",
    hook::PAGE_REF_UNFREEZE,
    2
);
