//! The JSON Lines export: one event per line. Field names and meanings are
//! stable (documented in the README); later versions only add fields.

use refwatch_common::kaddr;
use serde::{Deserialize, Serialize};

use crate::{
    event::{Kind, Migration, PageEvent, Stack, StackTaken, pgmap_name},
    symbols::{Kallsyms, Role, owner_name, role_of, stack_strings},
};

/// One exported event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonEvent {
    pub ts_ns: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub pfn: u64,
    pub event: String,
    pub refcount_before: Option<i32>,
    pub refcount_after: Option<i32>,
    pub mapcount: Option<i32>,
    pub pgmap_type: String,
    pub nr_pages: u32,
    /// Kernel function the event was seen in.
    pub symbol: String,
    /// What the hooked function returned (`refwatch_common::ret`); never a
    /// kernel address unless raw pointers were asked for.
    pub ret: Option<i64>,
    /// Kernel stack as `symbol+0xoff`, innermost first; `null` where none
    /// was taken (`--stacks`).
    pub stack: Frames,
    /// The stack was cut short on purpose (`--stacks holders` on a drop):
    /// deep enough for the event's role, not to name the code behind it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stack_short: bool,
    /// The page map's owner: its free callback (`dmirror_devmem_free`), or
    /// its ops when it has none (`fsdax_pagemap_ops`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Migration events: stage, direction, result and destination PFN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// Reported later than it happened: a GUP reference on a system page,
    /// remembered and reported when a migration of that page failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// Seen while the task was forking: a reference taken then belongs to
    /// the child (named by the `fork` event that follows).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forking: bool,
    /// Raw `struct page` address, only with `--raw-pointers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// The process's cgroup (`/proc/TGID/cgroup`) when refwatch could read
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// An exported stack: its frames, or none taken (`null`). Reads as its
/// frames (none when none was taken).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Frames(pub Option<Vec<String>>);

impl Frames {
    /// Whether a stack was taken.
    pub fn taken(&self) -> bool {
        self.0.is_some()
    }
}

impl std::ops::Deref for Frames {
    type Target = [String];
    fn deref(&self) -> &[String] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl From<Vec<String>> for Frames {
    fn from(v: Vec<String>) -> Self {
        Self(Some(v))
    }
}

/// Formatting options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Format {
    pub raw_pointers: bool,
}

/// Builds the exported form of an event.
pub fn to_json(ev: &PageEvent, symbol: &str, syms: &Kallsyms, fmt: Format) -> JsonEvent {
    let stack = stack_strings(&ev.stack, syms, fmt);
    json_with(ev, symbol, fmt, stack, owner_name(ev.owner, syms, fmt))
}

/// The exported form of an event with its stack and owner already named.
pub(crate) fn json_with(
    ev: &PageEvent,
    symbol: &str,
    fmt: Format,
    stack: Vec<String>,
    owner: Option<String>,
) -> JsonEvent {
    let mut j = JsonEvent {
        ts_ns: ev.ts_ns,
        cpu: ev.cpu,
        pid: ev.pid,
        tgid: ev.tgid,
        comm: ev.comm.to_string(),
        pfn: ev.pfn,
        event: ev.kind.name().to_string(),
        refcount_before: ev.refcount_before,
        refcount_after: ev.refcount_after,
        mapcount: ev.mapcount,
        pgmap_type: pgmap_name(ev.pgmap_type).to_string(),
        nr_pages: ev.nr_pages,
        symbol: symbol.to_string(),
        ret: ev.ret,
        stack: Frames((ev.stack_taken != StackTaken::No).then_some(stack)),
        stack_short: ev.stack_taken == StackTaken::Short,
        owner,
        migration: ev.migration(),
        late: ev.late,
        forking: ev.forking,
        page: fmt.raw_pointers.then(|| format!("{:#x}", ev.page)),
        cgroup: None,
    };
    if !fmt.raw_pointers {
        // Stacks and owner are names here; the numbers are what is left.
        j.hide_kernel_numbers();
    }
    j
}

impl JsonEvent {
    /// The event kind, when the name is known.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_name(&self.event)
    }

    /// Hides every kernel address the event shows, leaving what it shows
    /// without `--raw-pointers`: a number in the kernel address range
    /// ([`kaddr`]: `ret`, a migration's `dst_pfn`) becomes `null`, the raw
    /// `page` goes, and a frame or owner written with its address keeps its
    /// symbol only (`?` when it has none). Events of recordings made with
    /// `--raw-pointers`, or before the kernel side recorded what a returned
    /// pointer means instead of the pointer, go through this before they
    /// are shown.
    pub fn hide_kernel_addresses(&mut self) {
        self.hide_kernel_numbers();
        self.page = None;
        for f in self.stack.0.iter_mut().flatten() {
            hide_in_name(f);
        }
        if let Some(o) = &mut self.owner {
            hide_in_name(o);
        }
    }

    /// The numbers of [`JsonEvent::hide_kernel_addresses`].
    fn hide_kernel_numbers(&mut self) {
        if self.ret.is_some_and(kaddr::is_kernel_address_i64) {
            self.ret = None;
        }
        if let Some(m) = &mut self.migration
            && m.dst_pfn.is_some_and(kaddr::is_kernel_address)
        {
            m.dst_pfn = None;
        }
    }
}

/// A name written with a kernel address (`symbol+0x10 (0xffff…)`, or the
/// address alone) without it: the symbol, or `?`.
fn hide_in_name(s: &mut String) {
    if kaddr::spellings(s).next().is_none() {
        return;
    }
    let name = s.rsplit_once(" (").map_or("", |(name, _)| name);
    *s = if name.is_empty() || kaddr::spellings(name).next().is_some() {
        "?".to_string()
    } else {
        name.to_string()
    };
}

/// Rebuilds the decoded form of an exported event for replays. Stacks stay
/// symbolized in the recording; the replayed event carries none (callers look
/// them up by `(pfn, ts_ns, pid)`). `None` for an unknown event name.
pub fn to_page_event(j: &JsonEvent) -> Option<PageEvent> {
    let role =
        role_of(std::iter::once(j.symbol.as_str()).chain(j.stack.iter().map(String::as_str)));
    let hook = crate::plan::hook_of_symbol(&j.symbol).unwrap_or(0);
    page_event_with(j, hook, role, Stack::default())
}

/// [`to_page_event`] with the hook, role and stack already worked out
/// (the hook and role depend only on the function and stack).
pub fn page_event_with(j: &JsonEvent, hook: u32, role: Role, stack: Stack) -> Option<PageEvent> {
    let (aux, aux2) = j.migration.map_or((0, 0), |m| m.to_aux());
    Some(PageEvent {
        ts_ns: j.ts_ns,
        pfn: j.pfn,
        page: 0,
        pid: j.pid,
        tgid: j.tgid,
        cpu: j.cpu,
        comm: j.comm.as_str().into(),
        kind: Kind::from_name(&j.event)?,
        hook,
        refcount_before: j.refcount_before,
        refcount_after: j.refcount_after,
        mapcount: j.mapcount,
        pgmap_type: crate::event::pgmap_from_name(&j.pgmap_type).unwrap_or(0),
        nr_pages: j.nr_pages,
        ret: j.ret,
        aux,
        aux2,
        owner: 0,
        late: j.late,
        forking: j.forking,
        role,
        stack,
        stack_taken: if !j.stack.taken() {
            StackTaken::No
        } else if j.stack_short {
            StackTaken::Short
        } else {
            StackTaken::Full
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PageEvent, decode, to_bytes, to_raw};
    use crate::symbols::{DEFAULT_SYMBOL_CACHE, Symbolizer};

    #[test]
    fn refwatch_own_frames_are_left_out() {
        let syms = Kallsyms::parse(
            "ffffffff81000000 t bpf_trampoline_6442501886\nffffffff81001000 T bpf_trace_run2\nffffffff81002000 T __traceiter_page_ref_mod\nffffffff81003000 T __page_ref_mod\nffffffff81004000 T copy_page_range\nffffffff81005000 T kernel_clone\nffffffff81006000 T __do_sys_clone\nffffffff81007000 T end\n",
        );
        let stack = [
            0xffff_ffff_c000_0010,
            0xffff_ffff_8100_0f37,
            0xffff_ffff_8100_10ed,
            0xffff_ffff_8100_2030,
            0xffff_ffff_8100_304e,
            0xffff_ffff_8100_4bea,
            0xffff_ffff_8100_50d0,
            0xffff_ffff_8100_0cf6,
            0xffff_ffff_8100_6055,
        ];
        assert_eq!(
            stack_strings(&stack, &syms, Format::default()),
            vec![
                "copy_page_range+0xbea".to_string(),
                "kernel_clone+0xd0".into(),
                "__do_sys_clone+0x55".into()
            ]
        );
    }

    /// What a fexit program's stack looks like once the BPF symbols are
    /// known: the program, then its trampoline, then the hooked function's
    /// caller; a second hooked function further down has a trampoline
    /// frame too.
    #[test]
    fn fexit_program_and_trampoline_frames_are_left_out() {
        let syms = Kallsyms::parse(
            "ffffffff81004000 T gup_fast_fallback\nffffffff81005000 T __bio_release_pages\nffffffff81006000 T vfs_write\nffffffff81007000 T end\nffffffffc0001000 t bpf_prog_841fde42410005f3_fexit_grab_fast\nffffffffc0003000 t bpf_trampoline_6442491234\nffffffffc0005000 t bpf_trampoline_6442491999\nffffffffc0006000 t zz_last\n",
        );
        let stack = [
            0xffff_ffff_c000_17bc,
            0xffff_ffff_c000_305e,
            0xffff_ffff_8100_45a2,
            0xffff_ffff_c000_5040,
            0xffff_ffff_8100_5140,
            0xffff_ffff_8100_6281,
        ];
        assert_eq!(
            stack_strings(&stack, &syms, Format::default()),
            vec![
                "gup_fast_fallback+0x5a2".to_string(),
                "__bio_release_pages+0x140".into(),
                "vfs_write+0x281".into()
            ]
        );
    }

    /// The cached symbolizer gives exactly what the uncached functions give,
    /// also when its bound makes it forget.
    #[test]
    fn the_symbol_cache_changes_nothing() {
        let syms = Kallsyms::parse(
            "ffffffff81000000 t bpf_trampoline_6442501886\nffffffff81001000 T bpf_trace_run2\nffffffff81002000 T __traceiter_page_ref_mod\nffffffff81003000 T __page_ref_mod\nffffffff81004000 T copy_page_range\nffffffff81005000 T zap_pte_range\nffffffff81006000 T __do_sys_clone\nffffffff81007000 T end\n",
        );
        let stacks: [&[u64]; 5] = [
            &[
                0xffff_ffff_c000_0010,
                0xffff_ffff_8100_0f37,
                0xffff_ffff_8100_10ed,
                0xffff_ffff_8100_2030,
                0xffff_ffff_8100_304e,
                0xffff_ffff_8100_4bea,
                0xffff_ffff_8100_6055,
            ],
            &[0xffff_ffff_8100_5010, 0xffff_ffff_8100_6001, 0xdead],
            &[0xffff_ffff_8100_0cf6, 0xffff_ffff_8100_4000],
            &[0xffff_ffff_c000_0010],
            &[],
        ];
        for cap in [1, 3, DEFAULT_SYMBOL_CACHE] {
            let mut cached = Symbolizer::new(&syms, cap);
            for round in 0..3 {
                for stack in stacks {
                    for fmt in [Format::default(), Format { raw_pointers: true }] {
                        assert_eq!(
                            cached.stack_strings(stack, fmt),
                            stack_strings(stack, &syms, fmt),
                            "cap {cap} round {round} {stack:x?}"
                        );
                    }
                    assert_eq!(
                        cached.role(stack),
                        role_of(stack.iter().filter_map(|a| syms.symbolize(*a)))
                    );
                    for a in stack {
                        assert_eq!(cached.symbolize(*a), syms.symbolize(*a).as_deref());
                    }
                    assert!(
                        cached.cached() <= cap.max(stack.len()),
                        "{}",
                        cached.cached()
                    );
                }
            }
        }
        let mut cached = Symbolizer::new(&syms, 16);
        let ev = PageEvent {
            ts_ns: 5,
            pfn: 0x40001,
            page: 0xffff_ea00_0100_0040,
            pid: 2,
            tgid: 1,
            cpu: 0,
            comm: "dd".into(),
            kind: Kind::Get,
            hook: refwatch_common::hook::TRY_GRAB_FOLIO,
            refcount_before: Some(1),
            refcount_after: Some(2),
            mapcount: Some(0),
            pgmap_type: refwatch_common::pgmap::FSDAX,
            nr_pages: 1,
            ret: Some(1),
            aux: 1,
            aux2: 0,
            owner: 0xffff_ffff_8100_6000,
            late: false,
            forking: true,
            role: Role::Map,
            stack: stacks[0].into(),
            stack_taken: Default::default(),
        };
        for owner in [0, 0xffff_ffff_8100_6000, 0xffff_ffff_8100_0000, 0xdead] {
            for fmt in [Format::default(), Format { raw_pointers: true }] {
                for _ in 0..2 {
                    assert_eq!(cached.owner_name(owner, fmt), owner_name(owner, &syms, fmt));
                }
            }
        }
        for fmt in [Format::default(), Format { raw_pointers: true }] {
            let want = to_json(&ev, "try_grab_folio", &syms, fmt);
            let got = cached.to_json(&ev, "try_grab_folio", fmt);
            assert_eq!(got, want);
            assert_eq!(
                serde_json::to_string(&got).expect("json"),
                serde_json::to_string(&want).expect("json")
            );
        }
    }

    #[test]
    fn replayed_events_take_their_role_from_the_hooked_function_and_the_stack() {
        let line = |symbol: &str, stack: &str| {
            format!(
                r#"{{"ts_ns":1,"cpu":0,"pid":2,"tgid":2,"comm":"w","pfn":3,"event":"get","refcount_before":1,"refcount_after":2,"mapcount":0,"pgmap_type":"fsdax","nr_pages":1,"symbol":"{symbol}","ret":null,"stack":[{stack}]}}"#
            )
        };
        let role = |symbol: &str, stack: &str| {
            let j: JsonEvent = serde_json::from_str(&line(symbol, stack)).expect("parse");
            to_page_event(&j).expect("known event").role
        };
        // A mapping hook's stack starts at its caller: the hook says Map.
        assert_eq!(
            role("vmf_insert_page_mkwrite", r#""dax_fault_iter+0x3f1""#),
            Role::Map
        );
        // A batch put from a zap: the stack says Unmap.
        assert_eq!(
            role(
                "folios_put_refs",
                r#""free_pages_and_swap_cache+0x19f","tlb_flush_mmu+0x52","__zap_vma_range+0xdfa""#
            ),
            Role::Unmap
        );
        assert_eq!(
            role("try_grab_folio_fast", r#""gup_fast_fallback+0x5a2""#),
            Role::Other
        );
    }

    #[test]
    fn kernel_pointers_stay_hidden_by_default() {
        let syms =
            Kallsyms::parse("ffffffff81000000 T gup_put_folio\nffffffff81001000 T next_fn\n");
        // Synthetic event, as the decoder would produce it.
        let ev = PageEvent {
            ts_ns: 5,
            pfn: 0x40001,
            page: 0xffff_ea00_0100_0040,
            pid: 1,
            tgid: 1,
            cpu: 0,
            comm: "dd".into(),
            kind: Kind::Unpin,
            hook: refwatch_common::hook::GUP_PUT_FOLIO,
            refcount_before: Some(1026),
            refcount_after: Some(2),
            mapcount: Some(0),
            pgmap_type: refwatch_common::pgmap::FSDAX,
            nr_pages: 1,
            ret: None,
            aux: 1,
            aux2: 0,
            owner: 0xffff_ffff_8100_0000,
            late: false,
            forking: false,
            role: crate::symbols::Role::Other,
            // A BPF frame first (not in kallsyms), then kernel text, then junk.
            stack: vec![0xffff_ffff_c012_3456, 0xffff_ffff_8100_0010, 0xdead].into(),
            stack_taken: Default::default(),
        };
        let ev = decode(&to_bytes(&to_raw(&ev))).expect("decode").event;
        let j = to_json(&ev, "gup_put_folio", &syms, Format::default());
        let line = serde_json::to_string(&j).expect("json");
        assert!(!line.contains("ffffea"), "{line}");
        assert!(!line.contains("0xdead"), "{line}");
        assert_eq!(*j.stack, ["gup_put_folio+0x10".to_string(), "?".into()]);
        let back: JsonEvent = serde_json::from_str(&line).expect("parse back");
        assert_eq!(back, j);
        assert_eq!(back.kind(), Some(Kind::Unpin));
        let raw = to_json(&ev, "gup_put_folio", &syms, Format { raw_pointers: true });
        assert_eq!(raw.page.as_deref(), Some("0xffffea0001000040"));
    }
}
