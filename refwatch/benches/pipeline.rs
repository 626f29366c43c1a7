//! Decode + per-PFN update throughput on one core (goal: ≥ 10 M events/s).
//! The events are SYNTHETIC ring-buffer records built with the wire encoder
//! (`event::to_raw`, sized as the kernel sizes them by `event::to_record`),
//! not kernel events: a get/put pattern over 4096 fs-dax
//! PFNs with 4-frame stacks, as refwatch sees under a busy workload, and a
//! SYNTHETIC kallsyms naming those frames for the JSON encoding. The record
//! path is also run on the shape of `bench overhead`'s `dax` target
//! (SYNTHETIC as well): 256 pages, gets with 24 frames, puts with 8; and on
//! that shape with the puts unseen, as it runs on Debian's 7.2 kernel (the
//! pipe's puts are inline there): gets only, each page back at 1 between,
//! each page mapped by a fault before the loop, under a 0-based kernel's
//! rules (the shape of a recording of `bench overhead`'s `dax` loop).
//! The record benches run in a collector's steady state: every page seen
//! before the timing, no page histories (`record` keeps none), event time
//! moving on from one iteration to the next.

use std::{
    hint::black_box,
    io::{self, BufWriter, Write as _},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use refwatch::{
    event::{Decoder, Kind, PageEvent, to_raw, to_record},
    format::{
        json::{Format, to_json},
        recording::compact::Encoder,
    },
    rules::Rules,
    state::{Thresholds, Tracker},
    symbols::{
        DEFAULT_NAMED_STACKS, DEFAULT_SYMBOL_CACHE, Kallsyms, StackTable, Symbolizer, role_of,
    },
};
use refwatch_common::hook;

const EVENTS: usize = 100_000;

/// The pages and stack depths of a synthetic get/put loop.
struct Shape {
    pfns: u64,
    get_frames: u64,
    put_frames: u64,
    /// Puts leave by another path than gets: their stacks and hooks differ.
    own_put_path: bool,
    /// The puts reach refwatch. Without: every event is a get, each page's
    /// count back at 1 before the next (its put taken inline, where no hook
    /// sees it).
    puts_seen: bool,
    /// The gets' hook (the collector names an event's function by it).
    get_hook: u32,
    /// Each page mapped once, by a fault, before the loop: the mapping's
    /// holder stays while the gets come and go (mapcount 0, one mapping).
    mapped: bool,
    /// The rules of a kernel whose fs-dax pages are 0-based and whose
    /// mappings hold references (6.15 and later); else 1-based (the
    /// synthetic kallsyms has `__put_devmap_managed_page_refs`).
    zero_based: bool,
}

/// The collector benches' loop: many pages, short stacks.
const BUSY: Shape = Shape {
    pfns: 4096,
    get_frames: 4,
    put_frames: 4,
    own_put_path: false,
    puts_seen: true,
    get_hook: 1,
    mapped: false,
    zero_based: false,
};

/// `bench overhead`'s `dax` target: 256 pages spliced (a GUP get with a
/// holder stack of 24 frames) and read back (a put walked 8 deep).
const DAX: Shape = Shape {
    pfns: 256,
    get_frames: 24,
    put_frames: 8,
    own_put_path: true,
    puts_seen: true,
    get_hook: 1,
    mapped: false,
    zero_based: false,
};

/// The same loop where the kernel takes the puts inline (`dax` on Debian's
/// 7.2 kernel): the gets alone, 24 frames each, a get 1 → 2 every time,
/// each page mapped by one fault before (as in a recording of that loop:
/// its gets find the mapping's holder and the last get's).
const DAX_PUTS_UNSEEN: Shape = Shape {
    pfns: 256,
    get_frames: 24,
    put_frames: 24,
    own_put_path: false,
    puts_seen: false,
    get_hook: hook::TRY_GRAB_FOLIO_FAST,
    mapped: true,
    zero_based: true,
};

fn synthetic_records(shape: &Shape) -> Vec<Vec<u8>> {
    (0..EVENTS)
        .map(|i| {
            let get = !shape.puts_seen || i % 2 == 0;
            let frames = if get {
                shape.get_frames
            } else {
                shape.put_frames
            };
            let ev = PageEvent {
                ts_ns: 1_000_000 + i as u64 * 100,
                pfn: 0x40000 + (i as u64 / if shape.puts_seen { 2 } else { 1 }) % shape.pfns,
                page: 0,
                pid: 100,
                tgid: 100,
                cpu: (i % 2) as u32,
                comm: "synthetic".into(),
                kind: if get { Kind::Get } else { Kind::Put },
                // The put by a hook of its own where its path is its own
                // (the collector names the function by the hook).
                hook: if get {
                    shape.get_hook
                } else if shape.own_put_path {
                    2
                } else {
                    1
                },
                refcount_before: Some(if get { 1 } else { 2 }),
                refcount_after: Some(if get { 2 } else { 1 }),
                mapcount: Some(if shape.mapped { 0 } else { -1 }),
                pgmap_type: refwatch_common::pgmap::FSDAX,
                nr_pages: 1,
                ret: None,
                aux: 1,
                aux2: 0,
                // A device page's map owner, as every fs-dax event has.
                owner: SYNTHETIC_OWNER,
                late: false,
                forking: false,
                role: refwatch::symbols::Role::Other,
                stack: (0..frames)
                    .map(|n| {
                        let path = u64::from(!get && shape.own_put_path) * 32;
                        0xffff_ffff_8100_0000 + (n + path) * 0x1000
                    })
                    .collect::<Vec<_>>()
                    .into(),
                stack_taken: Default::default(),
            };
            to_record(&to_raw(&ev))
        })
        .collect()
}

/// SYNTHETIC: each page of `shape` mapped by a fs-dax fault's insert
/// (its count read after the mapping it adds, with the fault's transient
/// reference), none for a shape whose pages are not mapped.
fn mapping_events(shape: &Shape) -> Vec<PageEvent> {
    if !shape.mapped {
        return Vec::new();
    }
    (0..shape.pfns)
        .map(|n| PageEvent {
            ts_ns: 1_000 + n,
            pfn: 0x40000 + n,
            page: 0,
            pid: 100,
            tgid: 100,
            cpu: 0,
            comm: "synthetic".into(),
            kind: Kind::Get,
            hook: hook::MAP_INSERT,
            refcount_before: Some(1),
            refcount_after: Some(2),
            mapcount: Some(0),
            pgmap_type: refwatch_common::pgmap::FSDAX,
            nr_pages: 1,
            ret: None,
            aux: 0,
            aux2: 0,
            owner: SYNTHETIC_OWNER,
            late: false,
            forking: false,
            // What the collector's hook table says of an insert.
            role: refwatch::symbols::Role::Map,
            stack: Vec::new().into(),
            stack_taken: Default::default(),
        })
        .collect()
}

/// The page map owner of the synthetic events (its ops, named by the
/// synthetic kallsyms).
const SYNTHETIC_OWNER: u64 = 0xffff_ffff_8200_0000;

/// SYNTHETIC kallsyms: the hook and a function around each frame of the
/// synthetic stacks (`synthetic_fN+0x40`), for the JSON encoding, and the
/// page map owner.
fn synthetic_kallsyms() -> Kallsyms {
    let mut text = String::from(
        "ffffffff81000000 T __put_devmap_managed_page_refs\nffffffff82000000 D synthetic_pagemap_ops\n",
    );
    for n in 0..64u64 {
        text.push_str(&format!(
            "{:x} T synthetic_f{n}\n",
            0xffff_ffff_8100_0fc0 + n * 0x1000
        ));
    }
    Kallsyms::parse(&text)
}

fn bench(c: &mut Criterion) {
    let records = synthetic_records(&BUSY);
    let dax_records = synthetic_records(&DAX);
    let unseen_records = synthetic_records(&DAX_PUTS_UNSEEN);
    let syms = synthetic_kallsyms();
    let rules = Rules::from_kernel(&syms);
    let mut g = c.benchmark_group("pipeline (synthetic events)");
    g.throughput(Throughput::Elements(EVENTS as u64));
    // The decoder lives as long as the collector: its stack interner is warm.
    let mut decoder = Decoder::default();
    g.bench_function("decode", |b| {
        b.iter(|| {
            for r in &records {
                black_box(decoder.decode(r).ok());
            }
        })
    });
    g.bench_function("decode + per-PFN update", |b| {
        b.iter_batched_ref(
            || Tracker::new(rules.clone(), Thresholds::default(), 256, 1 << 20),
            |t| {
                for r in &records {
                    if let Ok(ev) = decoder.decode(r) {
                        t.apply(&ev);
                    }
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    // The same with one event of history per page (`--history 1`): what
    // keeping 256 full events per page costs.
    g.bench_function("decode + per-PFN update, --history 1", |b| {
        b.iter_batched_ref(
            || Tracker::new(rules.clone(), Thresholds::default(), 1, 1 << 20),
            |t| {
                for r in &records {
                    if let Ok(ev) = decoder.decode(r) {
                        t.apply(&ev);
                    }
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    // Steady state, as a long-running collector is in: the tracker lives
    // on and every page's history is full, so each event replaces the
    // page's oldest (4096 pages × 256 events of history). Filled inside the
    // bench, so that a run of another bench does not pay for it.
    g.bench_function(
        "decode + per-PFN update, steady state (full histories)",
        |b| {
            let mut steady = Tracker::new(rules.clone(), Thresholds::default(), 256, 1 << 20);
            for _ in 0..(256 * 4096 / EVENTS + 1) {
                for r in &records {
                    if let Ok(ev) = decoder.decode(r) {
                        steady.apply(&ev);
                    }
                }
            }
            b.iter(|| {
                for r in &records {
                    if let Ok(ev) = decoder.decode(r) {
                        steady.apply(&ev);
                    }
                }
            })
        },
    );
    // What `refwatch record` does per event (collector::drain): decode, role
    // from the symbolized stack, JSON line, per-PFN update; the line goes to
    // a buffered sink. Once with the per-address symbol cache the collector
    // uses, once symbolizing every frame anew.
    let fmt = Format::default();
    let mut symbolizer = Symbolizer::new(&syms, DEFAULT_SYMBOL_CACHE);
    g.bench_function("decode + update + JSON line (symbol cache)", |b| {
        b.iter_batched_ref(
            || {
                (
                    Tracker::new(rules.clone(), Thresholds::default(), 256, 1 << 20),
                    BufWriter::with_capacity(1 << 16, io::sink()),
                )
            },
            |(t, out)| {
                for r in &records {
                    if let Ok(mut ev) = decoder.decode(r) {
                        ev.role = symbolizer.role(&ev.stack);
                        let j = symbolizer.to_json(&ev, "__put_devmap_managed_page_refs", fmt);
                        serde_json::to_writer(&mut *out, &j).expect("JSON line");
                        out.write_all(b"\n").expect("JSON line");
                        t.apply(&ev);
                    }
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("decode + update + JSON line (no symbol cache)", |b| {
        b.iter_batched_ref(
            || {
                (
                    Tracker::new(rules.clone(), Thresholds::default(), 256, 1 << 20),
                    BufWriter::with_capacity(1 << 16, io::sink()),
                )
            },
            |(t, out)| {
                for r in &records {
                    if let Ok(mut ev) = decoder.decode(r) {
                        ev.role = role_of(ev.stack.iter().filter_map(|a| syms.symbolize(*a)));
                        let j = to_json(&ev, "__put_devmap_managed_page_refs", &syms, fmt);
                        serde_json::to_writer(&mut *out, &j).expect("JSON line");
                        out.write_all(b"\n").expect("JSON line");
                        t.apply(&ev);
                    }
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    // What `refwatch record` does per event now (collector::drain): decode,
    // the stack named once by the stack table (its role with it), the
    // compact recording line (version 2: tables written once, the event a
    // short line) encoded straight into the lines waiting for the file and
    // written 64 KiB at a time (recording::Writer), per-PFN update without
    // histories (record keeps none: the recording has every event). The
    // goal of this one: ≥ 5 M events/s. In the steady state of a collector
    // that has run a while: the tracker lives on from one iteration to the
    // next (its pages all seen before the timing), and event time goes on
    // across iterations as it does in a run (each pass of the records is
    // stamped after the last: holders and detectors see time move forward,
    // not back).
    let mut stacks = StackTable::new(fmt, DEFAULT_NAMED_STACKS);
    for (name, records, shape) in [
        (RECORD_BENCH, &records, &BUSY),
        (RECORD_DAX_BENCH, &dax_records, &DAX),
        (RECORD_UNSEEN_BENCH, &unseen_records, &DAX_PUTS_UNSEEN),
    ] {
        let pfns = shape.pfns;
        let rules = if shape.zero_based {
            // SYNTHETIC kallsyms of a 7.2 kernel, for its rules only.
            Rules::from_kernel(&Kallsyms::parse(
                "ffffffff81000000 T zone_device_page_init\n",
            ))
        } else {
            rules.clone()
        };
        let mut t = Tracker::new(rules, Thresholds::default(), 256, 1 << 20);
        t.keep_no_history();
        for ev in mapping_events(shape) {
            t.apply(&ev);
        }
        let mut out = BufWriter::with_capacity(PENDING, io::sink());
        let mut pending = Vec::with_capacity(PENDING + (1 << 14));
        let mut encoder = Encoder::default();
        let mut pass = 0u64;
        let mut record_pass = |t: &mut Tracker| {
            // One pass spans the records' own time (100 ns apart).
            let shift = pass * EVENTS as u64 * 100;
            pass += 1;
            for r in records.iter() {
                if let Ok(mut ev) = decoder.decode(r) {
                    // The collector's second event of a record (a free
                    // with its last put) never comes from these records.
                    assert!(
                        !decoder.has_last_put(),
                        "SYNTHETIC records are one event each"
                    );
                    ev.ts_ns += shift;
                    let named = stacks.get(&ev.stack, &mut symbolizer);
                    ev.role = named.role;
                    encoder.live_event(
                        &ev,
                        hook_name(ev.hook),
                        Some(named),
                        &mut symbolizer,
                        fmt,
                        None,
                        &mut pending,
                    );
                    if pending.len() >= PENDING {
                        out.write_all(&pending).expect("recording lines");
                        pending.clear();
                    }
                    t.apply(&ev);
                }
            }
        };
        for _ in 0..(256 * pfns as usize).div_ceil(EVENTS) + 1 {
            record_pass(&mut t);
        }
        g.bench_function(name, |b| b.iter(|| record_pass(&mut t)));
    }
    g.finish();
}

/// The function of a synthetic event's hook, as the collector names an
/// event's function.
fn hook_name(h: u32) -> &'static str {
    match h {
        1 => "__put_devmap_managed_page_refs",
        2 => "__put_devmap_managed_folio_refs",
        hook::TRY_GRAB_FOLIO_FAST => "try_grab_folio_fast",
        _ => "?",
    }
}

/// Bytes of recording lines written at a time (recording::Writer's).
const PENDING: usize = refwatch::rotate::WRITE_BUFFER;

/// Name of the record-mode benchmark (`cargo xtask bench pipeline` judges
/// it against its goal).
const RECORD_BENCH: &str = "record: decode + update + compact recording line";
/// The same on the `dax` target's shape (256 pages, 24 and 8 frames).
const RECORD_DAX_BENCH: &str = "record, dax shape: decode + update + compact recording line";
/// The same with the puts unseen (gets only), as `dax` runs on 7.2.
const RECORD_UNSEEN_BENCH: &str =
    "record, dax shape, puts unseen: decode + update + compact recording line";

criterion_group!(benches, bench);
criterion_main!(benches);
