//! No kernel address reaches an output unless raw pointers are asked for:
//! an event whose `ret` is a `struct folio *` (what `try_grab_folio_fast`
//! returns, and what the kernel side recorded as `ret` before it recorded
//! what the pointer means) through every writer. Synthetic events, not
//! from a kernel.

use refwatch_common::{hook, kaddr, pgmap};

use crate::{
    event::{Kind, PageEvent, decode, to_bytes, to_raw},
    format::export::{self, ExportFormat},
    format::json::{Format, JsonEvent, to_json},
    format::recording::{self, Header, Line, Recording},
    report,
    rules::Rules,
    state::Thresholds,
    symbols::Role,
    symbols::Symbolizer,
    symbols::kallsyms::Kallsyms,
};

/// A `struct page *` in the vmemmap of a 4-level kernel.
const VMEMMAP_4: u64 = 0xffff_ea00_0123_4500;
/// One of a 5-level kernel (the lab's `-cpu max`): `-30611519316131840`.
const VMEMMAP_5: u64 = 0xff93_3efc_4120_8000;

const RAW: Format = Format { raw_pointers: true };

/// Decimal (signed and unsigned) and hex spellings of `v`.
fn spellings_of(v: u64) -> [String; 3] {
    [(v as i64).to_string(), v.to_string(), format!("{v:x}")]
}

/// `text` (from `what`) shows no kernel address at all, `v` in no spelling.
#[track_caller]
fn assert_hidden(what: &str, text: &str, v: u64) {
    for s in spellings_of(v) {
        assert!(!text.contains(&s), "{what}: {s} in {text}");
    }
    let found: Vec<&str> = kaddr::spellings(text).collect();
    assert!(found.is_empty(), "{what}: {found:?} in {text}");
}

/// `text` (from `what`, with raw pointers) shows `v`.
#[track_caller]
fn assert_shown(what: &str, text: &str, v: u64) {
    assert!(
        spellings_of(v).iter().any(|s| text.contains(s.as_str())),
        "{what}: {v:#x} not in {text}"
    );
}

fn syms() -> Kallsyms {
    Kallsyms::parse(
        "ffffffff81000000 T try_grab_folio_fast\nffffffff81001000 T gup_fast_fallback\nffffffff81002000 T fsdax_pagemap_ops\nffffffff81003000 T end\n",
    )
}

/// A get by `try_grab_folio_fast` whose `ret` is the pointer `ret`, as
/// the decoder makes it from a ring-buffer record.
fn grab(ret: u64) -> PageEvent {
    let ev = PageEvent {
        ts_ns: 1_000,
        pfn: 0x48400,
        page: 0xffff_ea00_0121_0000,
        pid: 336,
        tgid: 336,
        cpu: 0,
        comm: "workload".into(),
        kind: Kind::Get,
        hook: hook::TRY_GRAB_FOLIO_FAST,
        refcount_before: Some(1),
        refcount_after: Some(2),
        mapcount: Some(0),
        pgmap_type: pgmap::FSDAX,
        nr_pages: 1,
        ret: Some(ret as i64),
        aux: 1,
        aux2: 0,
        owner: 0xffff_ffff_8100_2000,
        late: false,
        forking: false,
        role: Role::Other,
        stack: vec![0xffff_ffff_8100_0005, 0xffff_ffff_8100_16be].into(),
        stack_taken: Default::default(),
    };
    decode(&to_bytes(&to_raw(&ev))).expect("decode").event
}

/// The event as a recording made with `--raw-pointers` (or before the
/// kernel side's fix) holds it.
fn recorded(ret: u64) -> JsonEvent {
    to_json(&grab(ret), "try_grab_folio_fast", &syms(), RAW)
}

fn header() -> Header {
    Header {
        format: recording::FORMAT.into(),
        version: recording::VERSION,
        kernel: "test".into(),
        started_ns: 0,
        rules: Rules::from_kernel(&Kallsyms::parse(
            "ffffffff81000000 T __put_devmap_managed_folio_refs\nffffffff81001000 T zone_device_page_init\n",
        )),
        thresholds: Thresholds::default(),
        precise: false,
        hooks: vec![],
        filter: None,
    }
}

#[test]
fn jsonl_never_shows_a_returned_pointer() {
    let syms = syms();
    for v in [VMEMMAP_4, VMEMMAP_5] {
        let ev = grab(v);
        let mut cached = Symbolizer::new(&syms, 16);
        for (path, j) in [
            (
                "to_json",
                to_json(&ev, "try_grab_folio_fast", &syms, Format::default()),
            ),
            (
                "Symbolizer::to_json",
                cached.to_json(&ev, "try_grab_folio_fast", Format::default()),
            ),
        ] {
            assert_eq!(j.ret, None, "{path}");
            let line = serde_json::to_string(&j).expect("json");
            assert_hidden(path, &line, v);
        }
        for (path, j) in [
            (
                "to_json raw",
                to_json(&ev, "try_grab_folio_fast", &syms, RAW),
            ),
            (
                "Symbolizer::to_json raw",
                cached.to_json(&ev, "try_grab_folio_fast", RAW),
            ),
        ] {
            assert_eq!(j.ret, Some(v as i64), "{path}");
            assert_shown(path, &serde_json::to_string(&j).expect("json"), v);
        }
    }
}

#[test]
fn exports_never_show_a_kernel_address() {
    for v in [VMEMMAP_4, VMEMMAP_5] {
        let mut ev = [recorded(v), recorded(v)];
        ev[1].event = "migrate".into();
        ev[1].ret = None;
        ev[1].migration = Some(crate::event::Migration {
            stage: crate::event::Stage::Finalize,
            direction: crate::event::Direction::ToDevice,
            moved: true,
            dst_pfn: Some(v),
            extra_count: None,
        });
        for format in [
            ExportFormat::Jsonl,
            ExportFormat::Csv,
            ExportFormat::Perfetto,
        ] {
            let mut out = Vec::new();
            export::write(format, ev.iter(), &mut out, false).expect("write");
            let text = String::from_utf8(out).expect("utf8");
            assert_hidden(&format!("{format:?}"), &text, v);
            // Only the addresses went.
            assert!(text.contains("try_grab_folio_fast+0x5"), "{text}");
            let mut out = Vec::new();
            export::write(format, ev.iter(), &mut out, true).expect("write");
            let text = String::from_utf8(out).expect("utf8");
            assert_shown(&format!("{format:?} raw"), &text, v);
        }
    }
}

#[test]
fn the_recording_writer_never_shows_a_returned_pointer() {
    let dir = std::env::temp_dir().join(format!("refwatch-ptr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let syms = syms();
    for v in [VMEMMAP_4, VMEMMAP_5] {
        for fmt in [Format::default(), RAW] {
            // As the collector writes it.
            let path = dir.join("rec");
            let mut cached = Symbolizer::new(&syms, 16);
            let mut w = recording::Writer::create(&path, header()).expect("create");
            let j = cached.to_json(&grab(v), "try_grab_folio_fast", fmt);
            w.line(&Line::Event(j)).expect("line");
            w.finish().expect("finish");
            let text = std::fs::read_to_string(&path).expect("read");
            if fmt.raw_pointers {
                assert_shown("recording raw", &text, v);
            } else {
                assert_hidden("recording", &text, v);
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A recording whose event holds a pointer: read back for `report` and
/// `replay`, which hide it unless asked.
fn old_recording(v: u64) -> Recording {
    let mut put = recorded(v);
    // A page held by nobody refwatch saw take it: the report lists its
    // last events.
    put.event = "put".into();
    put.refcount_before = Some(3);
    put.refcount_after = Some(2);
    let lines = [
        Line::Header(header()),
        Line::Event(put),
        Line::Tick {
            now_ns: 20_000_000_000,
            dropped: 0,
            capped: 0,
        },
    ];
    let mut bytes = Vec::new();
    for l in &lines {
        bytes.extend(serde_json::to_vec(l).expect("json"));
        bytes.push(b'\n');
    }
    recording::parse(&bytes[..], "old").expect("parse")
}

#[test]
fn report_and_replay_never_show_a_recorded_pointer() {
    for v in [VMEMMAP_4, VMEMMAP_5] {
        let rec = old_recording(v);
        let r = report::build(&rec, None, false).expect("report");
        assert!(
            r.episodes.iter().any(|e| !e.last_events.is_empty()),
            "{r:?}"
        );
        let text = serde_json::to_string(&r).expect("json");
        assert_hidden("report --json", &text, v);
        assert_hidden("report", &report::text(&r), v);
        assert_hidden("report --per-page", &report::text_per_page(&r), v);
        let raw = report::build(&rec, None, true).expect("report");
        assert_shown(
            "report --json --raw-pointers",
            &serde_json::to_string(&raw).expect("json"),
            v,
        );
        // What `replay` loads (its detail pane shows the recorded stacks).
        let mut rec = rec;
        rec.hide_kernel_addresses();
        for e in rec.events() {
            assert_hidden(
                "replayed event",
                &serde_json::to_string(e).expect("json"),
                v,
            );
        }
    }
}

#[test]
fn names_keep_their_symbol() {
    let mut j = recorded(VMEMMAP_4);
    assert!(j.stack[0].starts_with("try_grab_folio_fast+0x5 (0xffffffff"));
    let frames = j.stack.0.as_mut().expect("a stack");
    frames.push("0xffffffffc0001234".into());
    frames.push("0xdead".into());
    j.hide_kernel_addresses();
    assert_eq!(
        j.stack.to_vec(),
        vec![
            "try_grab_folio_fast+0x5".to_string(),
            "gup_fast_fallback+0x6be".into(),
            "?".into(),
            "0xdead".into()
        ]
    );
    assert_eq!(j.owner.as_deref(), Some("fsdax_pagemap_ops"));
    assert_eq!(j.page, None);
    assert_eq!(j.ret, None);
    // Not addresses: left alone.
    let mut small = recorded(VMEMMAP_4);
    small.ret = Some(-4095);
    small.hide_kernel_addresses();
    assert_eq!(small.ret, Some(-4095));
}
