//! Decode + per-PFN update throughput on one core (goal: ≥ 10 M events/s).
//! The events are SYNTHETIC ring-buffer records built with the wire encoder
//! (`event::to_raw`), not kernel events: a get/put pattern over 4096 fs-dax
//! PFNs with 4-frame stacks, as refwatch sees under a busy workload.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use refwatch::{
    event::{Decoder, Kind, PageEvent, to_bytes, to_raw},
    kallsyms::Kallsyms,
    rules::Rules,
    state::{Thresholds, Tracker},
};

const EVENTS: usize = 100_000;

fn synthetic_records() -> Vec<Vec<u8>> {
    (0..EVENTS)
        .map(|i| {
            let get = i % 2 == 0;
            let ev = PageEvent {
                ts_ns: 1_000_000 + i as u64 * 100,
                pfn: 0x40000 + (i as u64 / 2) % 4096,
                page: 0,
                pid: 100,
                tgid: 100,
                cpu: (i % 2) as u32,
                comm: "synthetic".into(),
                kind: if get { Kind::Get } else { Kind::Put },
                hook: 1,
                refcount_before: Some(if get { 1 } else { 2 }),
                refcount_after: Some(if get { 2 } else { 1 }),
                mapcount: Some(-1),
                pgmap_type: refwatch_common::pgmap::FSDAX,
                nr_pages: 1,
                ret: None,
                aux: 1,
                aux2: 0,
                owner: 0,
                late: false,
                forking: false,
                role: refwatch::event::Role::Other,
                stack: vec![
                    0xffff_ffff_8100_0000,
                    0xffff_ffff_8100_1000,
                    0xffff_ffff_8100_2000,
                    0xffff_ffff_8100_3000,
                ]
                .into(),
            };
            to_bytes(&to_raw(&ev))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let records = synthetic_records();
    let rules = Rules::from_kernel(&Kallsyms::parse(
        "ffffffff81000000 T __put_devmap_managed_page_refs\n",
    ));
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
    // Steady state, as a long-running collector is in: the tracker lives
    // on and every page's history is full, so each event replaces the
    // page's oldest (4096 pages × 256 events of history).
    let mut steady = Tracker::new(rules.clone(), Thresholds::default(), 256, 1 << 20);
    for _ in 0..(256 * 4096 / EVENTS + 1) {
        for r in &records {
            if let Ok(ev) = decoder.decode(r) {
                steady.apply(&ev);
            }
        }
    }
    g.bench_function(
        "decode + per-PFN update, steady state (full histories)",
        |b| {
            b.iter(|| {
                for r in &records {
                    if let Ok(ev) = decoder.decode(r) {
                        steady.apply(&ev);
                    }
                }
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
