//! GUP reference and pin drops.
//!
//! `static void gup_put_folio(struct folio *folio, int refs, unsigned int flags)`
//! (6.1+; out of line on the Debian builds, but callers may inline it).
use refwatch_common::hook;

super::entry_exit!(
    hook = hook::GUP_PUT_FOLIO,
    args = 2,
    fentry = fentry_gup_put,
    fexit = fexit_gup_put,
    kprobe = kprobe_gup_put,
    kretprobe = kretprobe_gup_put,
);
