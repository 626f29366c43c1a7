//! The JSON Lines export: one event per line. Field names and meanings are
//! stable (documented in the README); later versions only add fields.

use serde::{Deserialize, Serialize};

use crate::{
    event::{Kind, Migration, PageEvent, Stack, pgmap_name},
    kallsyms::Kallsyms,
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
    pub ret: Option<i64>,
    /// Kernel stack as `symbol+0xoff`, innermost first.
    pub stack: Vec<String>,
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
}

/// Formatting options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Format {
    pub raw_pointers: bool,
}

/// Symbolizes a stack; unknown addresses are shown only with raw pointers.
/// refwatch's own frames are left out: leading frames that do not symbolize
/// (its BPF program), BPF trampolines anywhere (its fentry/fexit hooks), and
/// the tracepoint plumbing a `tp_btf` program is called through.
pub fn stack_strings(stack: &[u64], syms: &Kallsyms, fmt: Format) -> Vec<String> {
    const PLUMBING: [&str; 5] = [
        "bpf_trampoline_",
        "bpf_trace_run",
        "__bpf_trace_",
        "__traceiter_",
        "__page_ref_",
    ];
    let named: Vec<(u64, Option<String>)> =
        stack.iter().map(|a| (*a, syms.symbolize(*a))).collect();
    let first = named
        .iter()
        .position(|(_, s)| {
            s.as_deref()
                .is_some_and(|s| !PLUMBING.iter().any(|p| s.starts_with(p)))
        })
        .unwrap_or(named.len());
    named[first..]
        .iter()
        .filter(|(_, s)| {
            !s.as_deref()
                .is_some_and(|s| s.starts_with("bpf_trampoline_"))
        })
        .map(|(a, s)| match s {
            Some(s) if fmt.raw_pointers => format!("{s} ({a:#x})"),
            Some(s) => s.clone(),
            None if fmt.raw_pointers => format!("{a:#x}"),
            None => "?".to_string(),
        })
        .collect()
}

/// Builds the exported form of an event.
pub fn to_json(ev: &PageEvent, symbol: &str, syms: &Kallsyms, fmt: Format) -> JsonEvent {
    JsonEvent {
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
        stack: stack_strings(&ev.stack, syms, fmt),
        owner: owner_name(ev.owner, syms, fmt),
        migration: ev.migration(),
        late: ev.late,
        forking: ev.forking,
        page: fmt.raw_pointers.then(|| format!("{:#x}", ev.page)),
    }
}

/// The owner's symbol; its address only with raw pointers.
pub fn owner_name(addr: u64, syms: &Kallsyms, fmt: Format) -> Option<String> {
    if addr == 0 {
        return None;
    }
    match syms.name_at(addr) {
        Some(n) => Some(n.to_string()),
        None => match syms.symbolize(addr) {
            Some(s) => Some(s),
            None if fmt.raw_pointers => Some(format!("{addr:#x}")),
            None => Some("?".into()),
        },
    }
}

impl JsonEvent {
    /// The event kind, when the name is known.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_name(&self.event)
    }
}

/// Rebuilds the decoded form of an exported event for replays. Stacks stay
/// symbolized in the recording; the replayed event carries none (callers look
/// them up by `(pfn, ts_ns, pid)`). `None` for an unknown event name.
pub fn to_page_event(j: &JsonEvent) -> Option<PageEvent> {
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
        hook: crate::plan::hook_of_symbol(&j.symbol).unwrap_or(0),
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
        role: crate::event::role_of(&j.stack),
        stack: Stack::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PageEvent, decode, to_bytes, to_raw};

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
            role: crate::event::Role::Other,
            // A BPF frame first (not in kallsyms), then kernel text, then junk.
            stack: vec![0xffff_ffff_c012_3456, 0xffff_ffff_8100_0010, 0xdead].into(),
        };
        let ev = decode(&to_bytes(&to_raw(&ev))).expect("decode");
        let j = to_json(&ev, "gup_put_folio", &syms, Format::default());
        let line = serde_json::to_string(&j).expect("json");
        assert!(!line.contains("ffffea"), "{line}");
        assert!(!line.contains("0xdead"), "{line}");
        assert_eq!(j.stack, vec!["gup_put_folio+0x10".to_string(), "?".into()]);
        let back: JsonEvent = serde_json::from_str(&line).expect("parse back");
        assert_eq!(back, j);
        assert_eq!(back.kind(), Some(Kind::Unpin));
        let raw = to_json(&ev, "gup_put_folio", &syms, Format { raw_pointers: true });
        assert_eq!(raw.page.as_deref(), Some("0xffffea0001000040"));
    }
}
