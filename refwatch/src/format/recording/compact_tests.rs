//! Version 2 recordings: written by the live path and from exported
//! events, read back to the same events as version 1, and refused when
//! hostile. Events here are SYNTHETIC.

use std::io::BufReader;

use super::{
    Header, Line, VERSION, Writer,
    compact::{Decoder, Encoder, MAX_ID},
    parse, read,
};
use crate::{
    event::{Kind, PageEvent, StackInterner, StackTaken},
    format::json::Format,
    symbols::{Kallsyms, Role, StackTable, Symbolizer},
};

fn kallsyms() -> Kallsyms {
    Kallsyms::parse(
        "ffffffff81000000 T try_grab_folio\nffffffff81001000 T pipe_buf_release\nffffffff81002000 T zap_pte_range\nffffffff82000000 d fsdax_pagemap_ops\nffffffff82001000 d dev_dax_pagemap_ops\nffffffff83000000 T end\n",
    )
}

/// SYNTHETIC events of two tasks on three pages of two page maps, with and
/// without stacks, a migration, flags and a return value.
fn events(stacks: &mut StackInterner) -> Vec<PageEvent> {
    let a = stacks.intern(&[0xffff_ffff_8100_0010, 0xffff_ffff_8100_1020]);
    let b = stacks.intern(&[0xffff_ffff_8100_2030]);
    let base = PageEvent {
        ts_ns: 5_000_000_000,
        pfn: 0x40000,
        page: 0xffff_ea00_0100_0000,
        pid: 7,
        tgid: 7,
        cpu: 1,
        comm: "fio".into(),
        kind: Kind::Get,
        hook: refwatch_common::hook::TRY_GRAB_FOLIO,
        refcount_before: Some(1),
        refcount_after: Some(2),
        mapcount: Some(-1),
        pgmap_type: refwatch_common::pgmap::FSDAX,
        nr_pages: 1,
        ret: None,
        aux: 0,
        aux2: 0,
        owner: 0xffff_ffff_8200_0000,
        late: false,
        forking: false,
        role: Role::Other,
        stack: a.clone(),
        stack_taken: StackTaken::Full,
    };
    let mut out = Vec::new();
    for i in 0..40u64 {
        let mut e = base.clone();
        e.ts_ns += i * 1_000;
        e.pfn += i % 3;
        if i % 2 == 1 {
            e.kind = Kind::Put;
            e.refcount_before = Some(2);
            e.refcount_after = Some(1);
            e.stack = b.clone();
            e.pid = 9;
            e.tgid = 8;
            e.comm = "kworker/0:1 x".into();
        }
        if i % 4 == 2 {
            // Pages of another page map between the first's: the owner
            // the writer remembers changes back and forth.
            e.owner = 0xffff_ffff_8200_1000;
        }
        if i == 7 {
            // Behind the event before by 9 µs: another CPU's.
            e.ts_ns -= 10_000;
            e.ret = Some(-11);
            e.late = true;
            e.forking = true;
            e.owner = 0;
            e.mapcount = None;
        }
        if i == 11 {
            e.kind = Kind::Migrate;
            e.aux = 0x50001;
            e.aux2 = refwatch_common::migrate::pack(2, 1, 1);
        }
        out.push(e);
    }
    out
}

fn header(version: u32) -> Header {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/synthetic-dax-hold.rec"),
    )
    .expect("recording");
    let mut h = parse(text.as_bytes(), "h").expect("parse").header;
    h.version = version;
    h.started_ns = 4_000_000_000;
    h
}

/// The same events written in version 1 and version 2 (live path, and
/// from the exported form) read back identically; version 2 is smaller.
#[test]
fn version_2_reads_back_what_version_1_says() {
    let syms = kallsyms();
    let d = tempfile::tempdir().expect("dir");
    for fmt in [Format::default(), Format { raw_pointers: true }] {
        let mut interner = StackInterner::default();
        let evs = events(&mut interner);
        let mut sym = Symbolizer::new(&syms, 64);
        let mut table = StackTable::new(fmt, 64);
        let write = |name: &str,
                     version: u32,
                     live: bool,
                     sym: &mut Symbolizer<'_>,
                     table: &mut StackTable| {
            let p = d.path().join(name);
            let mut w = Writer::create(&p, header(version)).expect("create");
            for e in &evs {
                let function = if e.kind == Kind::Get {
                    "try_grab_folio"
                } else {
                    "pipe_buf_release"
                };
                if live {
                    let named = table.get(&e.stack, sym).clone();
                    w.live_event(e, function, Some(&named), sym, fmt, None)
                        .expect("event");
                } else {
                    w.line(&Line::Event(sym.to_json(e, function, fmt)))
                        .expect("event");
                }
            }
            w.finish().expect("finish");
            p
        };
        let v1 = write("v1.rec", 1, true, &mut sym, &mut table);
        let v2 = write("v2.rec", VERSION, true, &mut sym, &mut table);
        let v2j = write("v2j.rec", VERSION, false, &mut sym, &mut table);
        let r1 = read(&v1).expect("v1");
        let r2 = read(&v2).expect("v2");
        let r2j = read(&v2j).expect("v2 from JSON");
        assert_eq!(r1.header.version, 1);
        assert_eq!(r2.header.version, 2);
        let e1: Vec<_> = r1.events().cloned().collect();
        assert_eq!(e1.len(), evs.len());
        assert_eq!(e1, r2.events().cloned().collect::<Vec<_>>(), "{fmt:?}");
        assert_eq!(e1, r2j.events().cloned().collect::<Vec<_>>(), "{fmt:?}");
        assert!(e1.iter().any(|e| e.late && e.forking && e.ret == Some(-11)));
        assert!(
            e1.iter()
                .any(|e| e.migration.is_some_and(|m| m.dst_pfn == Some(0x50000)))
        );
        assert_eq!(e1[1].comm, "kworker/0:1 x");
        if !fmt.raw_pointers {
            // No number reads as a kernel address, the negative delta included.
            for p in [&v2, &v2j] {
                let text = std::fs::read_to_string(p).expect("text");
                let found: Vec<&str> = refwatch_common::kaddr::spellings(&text).collect();
                assert!(found.is_empty(), "{found:?}");
            }
        }
        let size = |p: &std::path::Path| std::fs::metadata(p).expect("size").len();
        assert!(size(&v2) * 3 < size(&v1), "{} vs {}", size(&v2), size(&v1));
    }
}

/// The committed synthetic recording in both versions: the same events.
#[test]
fn the_committed_recordings_of_both_versions_agree() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let v1 = read(&data.join("synthetic-dax-hold-v1.rec")).expect("v1");
    let v2 = read(&data.join("synthetic-dax-hold.rec")).expect("v2");
    assert_eq!((v1.header.version, v2.header.version), (1, 2));
    assert_eq!(v1.lines, v2.lines);
}

/// A table fills: the writer says `["r"]`, defines again what it uses,
/// and the reader follows; an id used after a reset without being defined
/// again is refused.
#[test]
fn tables_are_bounded_and_forgotten_together() {
    let mut enc = Encoder::default();
    enc.start(0);
    let mut out = Vec::new();
    let mut interner = StackInterner::default();
    let syms = kallsyms();
    let mut sym = Symbolizer::new(&syms, 64);
    let mut table = StackTable::new(Format::default(), 1 << 20);
    let base = events(&mut interner).remove(0);
    let n = super::compact::TABLE_CAP + 10;
    for i in 0..n as u64 {
        let mut e = base.clone();
        e.ts_ns = i;
        e.stack = interner.intern(&[0xffff_ffff_8100_0000 + i]);
        let named = table.get(&e.stack, &mut sym).clone();
        enc.live_event(
            &e,
            "f",
            Some(&named),
            &mut sym,
            Format::default(),
            None,
            &mut out,
        );
    }
    let text = String::from_utf8(out).expect("utf8");
    assert_eq!(text.lines().filter(|l| *l == "[\"r\"]").count(), 1);
    let mut dec = Decoder::new(0);
    let mut got = 0;
    for l in text.lines() {
        if dec.line(l.as_bytes()).expect("line").is_some() {
            got += 1;
        }
    }
    assert_eq!(got, n);
    // After a reset, ids must be defined again.
    let mut dec = Decoder::new(0);
    for l in text.lines().take(4) {
        dec.line(l.as_bytes()).expect("line");
    }
    dec.line(b"[\"r\"]").expect("reset");
    let first_event = text.lines().find(|l| !l.starts_with("[\"")).expect("event");
    let err = dec
        .line(first_event.as_bytes())
        .expect_err("undefined after reset");
    assert!(err.to_string().contains("before it is defined"), "{err}");
}

/// Hostile version 2 lines: each refused with what is wrong, and the
/// reader names the line.
#[test]
fn hostile_compact_lines_are_refused() {
    let cases: [(&str, &str); 9] = [
        ("[1,2,1,null,null,null,3,1,0,0,0,0]", "before it is defined"),
        (
            "[\"t\",0,1,1,\"x\"]\n[\"f\",0,\"f\"]\n[1,2,1,null,null,null,3,1,0,7,0,0]",
            "stack 7 is used before",
        ),
        (
            "[\"t\",0,1,1,\"x\"]\n[\"f\",0,\"f\"]\n[1,2,99,null,null,null,3,1,0,null,0,0]",
            "unknown event kind 99",
        ),
        (
            "[\"t\",0,1,1,\"x\"]\n[\"f\",0,\"f\"]\n[17999999999999,2,1,null,null,null,3,1,0,null,0,0]",
            "out of range",
        ),
        ("[\"s\",1048576,[]]", "beyond"),
        ("[\"q\",1,\"x\"]", "not a table entry"),
        (
            "[\"t\",0,1,1,\"x\"]\n[\"f\",0,\"f\"]\n[1,2,1,null,null,null,3,1,0,null,0,0,null,5]",
            "owner 5 is used before",
        ),
        ("[1,2]", "invalid length"),
        (
            "[\"t\",0,1,1,\"x\"]\n[\"f\",0,\"f\"]\n[1,2,1,null,null,null,3,1,0,null,0,0,null,null,null,0,null,7]",
            "trailing",
        ),
    ];
    assert_eq!(MAX_ID, 1 << 20);
    for (lines, want) in cases {
        let mut dec = Decoder::new(1_000_000_000);
        let err = lines
            .lines()
            .map(|l| dec.line(l.as_bytes()))
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("{lines}: accepted"));
        assert!(format!("{err:#}").contains(want), "{lines}: {err:#}");
    }
    // Through the reader: the line is named.
    let h = serde_json::to_string(&Line::Header(header(VERSION))).expect("header");
    let text = format!("{h}\n[\"t\",0,1,1,\"x\"]\n[1,2,1,null,null,null,3,1,0,null,0,0]\n");
    let err = super::Reader::new(BufReader::new(text.as_bytes()), "x.rec")
        .expect("header")
        .collect()
        .expect_err("function 0 undefined");
    assert!(
        format!("{err:#}")
            .contains("x.rec: line 3 is corrupt: function 0 is used before it is defined"),
        "{err:#}"
    );
}

/// The reader's tables are bounded in bytes: a file that defines more is
/// refused, however its lines are spread.
#[test]
fn table_bytes_are_bounded_when_read() {
    let mut dec = Decoder::new(0);
    let frame = "x".repeat(1 << 16);
    let line = format!("[\"s\",0,[\"{frame}\"]]");
    let mut refused = None;
    for i in 0..(super::compact::MAX_TABLE_BYTES / line.len() + 2) {
        if let Err(e) = dec.line(line.as_bytes()) {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("refused");
    assert!(i > 1000, "{i}");
    assert!(e.to_string().contains("tables hold more than"), "{e}");
}

/// A task's cgroup: a sixth element of its entry, read back into the
/// events; entries of five elements (recordings made before) still read.
#[test]
fn a_task_entry_carries_its_cgroup_and_old_entries_still_read() {
    let cg = "/system.slice/docker-3f2b8e1c9d0a47b6a5e4f3d2c1b0a9f8e7d6c5b4a3928170f6e5d4c3b2a19080.scope";
    let syms = kallsyms();
    let mut sym = Symbolizer::new(&syms, 64);
    let mut table = StackTable::new(Format::default(), 1 << 10);
    let mut interner = StackInterner::default();
    let evs = events(&mut interner);
    let mut enc = Encoder::default();
    enc.start(0);
    let mut out = Vec::new();
    let named = table.get(&evs[0].stack, &mut sym).clone();
    enc.live_event(
        &evs[0],
        "f",
        Some(&named),
        &mut sym,
        Format::default(),
        Some(cg),
        &mut out,
    );
    // From an exported event (carried over at a rotation): its cgroup too.
    let mut j = sym.to_json(&evs[0], "f", Format::default());
    j.pid = 99;
    j.cgroup = Some("/user.slice".into());
    enc.json_event(&j, &mut out).expect("known kind");
    let text = String::from_utf8(out).expect("utf8");
    assert!(
        text.lines()
            .any(|l| l == format!("[\"t\",0,7,7,\"fio\",\"{cg}\"]")),
        "{text}"
    );
    let mut dec = Decoder::new(0);
    let got: Vec<_> = text
        .lines()
        .filter_map(|l| dec.line(l.as_bytes()).expect("line"))
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].cgroup.as_deref(), Some(cg));
    assert_eq!(got[1].cgroup.as_deref(), Some("/user.slice"));
    // Written before tasks had cgroups.
    let mut dec = Decoder::new(0);
    let old: Vec<_> = [
        r#"["t",0,7,7,"fio"]"#,
        r#"["f",0,"try_grab_folio"]"#,
        "[2,262144,1,1,2,-1,4,1,0,null,0,1]",
    ]
    .iter()
    .filter_map(|l| dec.line(l.as_bytes()).expect("old line"))
    .collect();
    assert_eq!(old.len(), 1);
    assert_eq!(
        (old[0].comm.as_str(), old[0].cgroup.as_deref()),
        ("fio", None)
    );
    assert!(dec.line(br#"["t",0,7,7,"fio","/a","extra"]"#).is_err());
}

/// Events cycling through more functions than the writer remembers
/// without a lookup: each function is defined once per file, every event
/// reads back with its own, and after a reset (a new file) they are
/// defined again.
#[test]
fn functions_cycling_past_the_recent_ones_keep_their_ids() {
    let syms = kallsyms();
    let mut sym = Symbolizer::new(&syms, 64);
    let mut interner = StackInterner::default();
    let evs = events(&mut interner);
    let names = ["g0", "p1", "f2", "x3", "y4", "z5"];
    let mut enc = Encoder::default();
    let mut out = Vec::new();
    let mut written = Vec::new();
    for start in [0, 1] {
        enc.start(start);
        let mut text = Vec::new();
        for (i, e) in evs.iter().take(30).enumerate() {
            let f = names[(i * 5) % names.len()];
            written.push(f);
            enc.live_event(e, f, None, &mut sym, Format::default(), None, &mut text);
        }
        let text = String::from_utf8(text).expect("utf8");
        let defined = text.lines().filter(|l| l.starts_with("[\"f\",")).count();
        assert_eq!(defined, names.len(), "{text}");
        out.push(text);
    }
    let mut got = Vec::new();
    for text in &out {
        let mut dec = Decoder::new(0);
        got.extend(
            text.lines()
                .filter_map(|l| dec.line(l.as_bytes()).expect("line"))
                .map(|j| j.symbol),
        );
    }
    assert_eq!(got, written);
}

#[test]
fn a_name_at_another_address_is_the_same_function() {
    let syms = kallsyms();
    let mut sym = Symbolizer::new(&syms, 64);
    let mut interner = StackInterner::default();
    let evs = events(&mut interner);
    // The same names as `'static` strings at other addresses than the
    // literals (the encoder finds a name by its address first).
    let copies: Vec<&'static str> = ["g0", "p1"]
        .iter()
        .map(|n| &*Box::leak(n.to_string().into_boxed_str()))
        .collect();
    let names = ["g0", "p1", "f2", "x3", "y4", "z5"];
    let mut enc = Encoder::default();
    enc.start(0);
    let mut text = Vec::new();
    let mut written = Vec::new();
    for (i, e) in evs.iter().cycle().take(48).enumerate() {
        let f = match i % 4 {
            0 => names[(i / 4) % names.len()],
            1 => copies[0],
            2 => copies[1],
            _ => names[(i / 4) % 2],
        };
        written.push(f);
        enc.live_event(e, f, None, &mut sym, Format::default(), None, &mut text);
    }
    let text = String::from_utf8(text).expect("utf8");
    let defined: Vec<&str> = text.lines().filter(|l| l.starts_with("[\"f\",")).collect();
    // Each name once, whichever address it came from.
    assert_eq!(defined.len(), names.len(), "{text}");
    let mut dec = Decoder::new(0);
    let got: Vec<String> = text
        .lines()
        .filter_map(|l| dec.line(l.as_bytes()).expect("line"))
        .map(|j| j.symbol)
        .collect();
    assert_eq!(got, written);
}
