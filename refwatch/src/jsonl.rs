//! The JSON Lines export: one event per line. Field names and meanings are
//! stable (documented in the README); later versions only add fields.

use serde::{Deserialize, Serialize};

use crate::{
    event::{Kind, PageEvent, pgmap_name},
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
/// Leading frames that do not symbolize (refwatch's own BPF program and its
/// trampoline) are left out.
pub fn stack_strings(stack: &[u64], syms: &Kallsyms, fmt: Format) -> Vec<String> {
    let first = stack
        .iter()
        .position(|a| syms.symbolize(*a).is_some())
        .unwrap_or(stack.len());
    stack[first..]
        .iter()
        .map(|a| match syms.symbolize(*a) {
            Some(s) if fmt.raw_pointers => format!("{s} ({a:#x})"),
            Some(s) => s,
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
        comm: ev.comm.clone(),
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
        page: fmt.raw_pointers.then(|| format!("{:#x}", ev.page)),
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
    Some(PageEvent {
        ts_ns: j.ts_ns,
        pfn: j.pfn,
        page: 0,
        pid: j.pid,
        tgid: j.tgid,
        cpu: j.cpu,
        comm: j.comm.clone(),
        kind: Kind::from_name(&j.event)?,
        hook: 0,
        refcount_before: j.refcount_before,
        refcount_after: j.refcount_after,
        mapcount: j.mapcount,
        pgmap_type: crate::event::pgmap_from_name(&j.pgmap_type).unwrap_or(0),
        nr_pages: j.nr_pages,
        ret: j.ret,
        aux: 0,
        stack: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PageEvent, decode, to_bytes, to_raw};

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
            // A BPF frame first (not in kallsyms), then kernel text, then junk.
            stack: vec![0xffff_ffff_c012_3456, 0xffff_ffff_8100_0010, 0xdead],
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
