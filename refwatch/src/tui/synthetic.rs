//! Synthetic data for tests, benchmarks and the TUI's end-to-end recording.
//! Everything here is made up to exercise the views; none of it comes from a
//! kernel (recordings from real kernels are made in the lab VM).

use std::collections::HashMap;

use refwatch_common::{hook, pgmap};

use super::model::{HeaderInfo, HookLine};
use crate::{
    event::{Kind, PageEvent, pgmap_name},
    format::json::JsonEvent,
    format::recording::{FORMAT, Header, HookRecord, Line, VERSION},
    plan::hook_of_symbol,
    rules::Rules,
    state::{Thresholds, Tracker},
    symbols::kallsyms::Kallsyms,
};

/// One second in nanoseconds.
pub const S: u64 = 1_000_000_000;
/// Synthetic "boot time" of the data: 1000 s of monotonic time.
pub const T0: u64 = 1_000 * S;

/// Rules of a 1-based kernel like Debian's 6.1.
pub fn rules() -> Rules {
    Rules::from_kernel(&Kallsyms::parse(
        "ffffffff81000000 T __put_devmap_managed_page_refs\nffffffff81000100 T zone_device_page_init\n",
    ))
}

/// Symbols for the synthetic stacks.
pub fn kallsyms() -> Kallsyms {
    Kallsyms::parse(
        "ffffffff81100000 T try_grab_folio\n\
         ffffffff81100400 T __get_user_pages\n\
         ffffffff81100800 T iov_iter_extract_pages\n\
         ffffffff81100c00 T __do_sys_vmsplice\n\
         ffffffff81101000 T do_syscall_64\n\
         ffffffff81101400 T entry_SYSCALL_64_after_hwframe\n\
         ffffffff81101800 T __put_devmap_managed_page_refs\n\
         ffffffff81101c00 T pipe_buf_release\n\
         ffffffff81102000 T free_pipe_info\n\
         ffffffff81102400 T zone_device_page_init\n\
         ffffffff81102800 T dax_layout_busy_page_range\n\
         ffffffff81102c00 T unpin_user_page\n",
    )
}

/// Addresses in [`kallsyms`]: a vmsplice taking a reference.
pub const GET_STACK: [u64; 6] = [
    0xffff_ffff_8110_001a,
    0xffff_ffff_8110_04c2,
    0xffff_ffff_8110_0861,
    0xffff_ffff_8110_0c9d,
    0xffff_ffff_8110_1042,
    0xffff_ffff_8110_1476,
];

/// Addresses in [`kallsyms`]: a pipe dropping it.
pub const PUT_STACK: [u64; 4] = [
    0xffff_ffff_8110_1838,
    0xffff_ffff_8110_1c21,
    0xffff_ffff_8110_2054,
    0xffff_ffff_8110_1042,
];

/// A probe plan: seven hooks attached (five fentry, two kprobe), two missing.
pub fn hooks() -> Vec<HookLine> {
    let h = |logical: &str, events: &str, symbol: Option<&str>, mode: Option<&str>| HookLine {
        logical: logical.into(),
        events: events.into(),
        symbol: symbol.map(Into::into),
        mode: mode.map(Into::into),
        status: match mode {
            Some(_) => "attached".into(),
            None => "not attached: no usable symbol on this kernel".into(),
        },
        notes: Vec::new(),
    };
    vec![
        h(
            "fsdax-put",
            "put unpin",
            Some("__put_devmap_managed_page_refs"),
            Some("fentry"),
        ),
        h(
            "free",
            "put free",
            Some("free_zone_device_page"),
            Some("fentry"),
        ),
        h(
            "gup-put",
            "put unpin",
            Some("gup_put_folio"),
            Some("kprobe"),
        ),
        h(
            "unpin-page",
            "unpin",
            Some("unpin_user_page"),
            Some("fentry"),
        ),
        h("unpin-folio", "unpin", None, None),
        h(
            "gup-grab",
            "get pin",
            Some("try_grab_folio"),
            Some("fentry"),
        ),
        h("gup-grab-fast", "get pin", None, None),
        h(
            "dax-busy",
            "layout_wait",
            Some("dax_layout_busy_page_range"),
            Some("fentry"),
        ),
    ]
}

/// Hook id → symbol, as the live runner builds it from the plan (the ids
/// from the catalog).
pub fn hook_symbols() -> HashMap<u32, String> {
    [
        "try_grab_folio",
        "__put_devmap_managed_page_refs",
        "unpin_user_page",
        "free_zone_device_page",
        "remove_migration_ptes",
        "dax_layout_busy_page_range",
    ]
    .into_iter()
    .filter_map(|s| Some((hook_of_symbol(s)?, s.to_string())))
    .collect()
}

/// Header info of a synthetic live run.
pub fn header_info() -> HeaderInfo {
    HeaderInfo {
        kernel: "6.1.0-synthetic".into(),
        source: "live".into(),
        mode: "auto".into(),
        hooks: hooks(),
        rules: rules().basis,
        t0_ns: T0,
    }
}

/// A synthetic event.
#[expect(
    clippy::too_many_arguments,
    reason = "one field per argument reads like the scenario"
)]
pub fn event(
    ts_ns: u64,
    pfn: u64,
    kind: Kind,
    before: i32,
    after: i32,
    tgid: u32,
    comm: &str,
    pgmap_type: u32,
) -> PageEvent {
    PageEvent {
        ts_ns,
        pfn,
        page: 0,
        pid: tgid,
        tgid,
        cpu: tgid % 4,
        comm: comm.into(),
        kind,
        hook: match kind {
            Kind::Get | Kind::Pin => hook::TRY_GRAB_FOLIO,
            Kind::Put => hook::PUT_DEVMAP_REFS,
            Kind::Unpin => hook::UNPIN_USER_PAGE,
            Kind::Free => hook::FREE_ZONE_DEVICE,
            Kind::Migrate => hook::REMOVE_MIGRATION_PTES,
            Kind::LayoutWait => hook::DAX_LAYOUT_BUSY,
            Kind::Set => hook::PAGE_REF_SET,
            Kind::PgmapAdd => hook::MEMREMAP,
            Kind::PgmapRemove => hook::MEMUNMAP,
            Kind::Fork => hook::KERNEL_CLONE,
            Kind::Snapshot => 0,
        },
        refcount_before: Some(before),
        refcount_after: Some(after),
        mapcount: Some(-1),
        pgmap_type,
        nr_pages: 1,
        ret: None,
        aux: 0,
        aux2: 0,
        owner: 0,
        late: false,
        forking: false,
        role: crate::symbols::Role::Other,
        stack: match kind {
            Kind::Get | Kind::Pin => GET_STACK[..].into(),
            _ => PUT_STACK[..].into(),
        },
        stack_taken: Default::default(),
    }
}

fn tracker() -> Tracker {
    Tracker::new(rules(), Thresholds::default(), 64, usize::MAX)
}

const TASKS: [&str; 6] = [
    "fio",
    "postgres",
    "qemu-kvm",
    "kworker/u16:3",
    "dd",
    "rdma-bench",
];

fn type_of(i: u64) -> u32 {
    match i % 10 {
        0..=5 => pgmap::FSDAX,
        6 | 7 => pgmap::PRIVATE,
        8 => pgmap::GENERIC,
        _ => pgmap::P2PDMA,
    }
}

/// `n` pages with one event each (idle after a put), except every 997th,
/// which a task keeps referenced past the `held` threshold. Synthetic.
pub fn busy(n: u64) -> Tracker {
    let mut t = tracker();
    for i in 0..n {
        let pfn = 0x40000 + i;
        let ts = T0 + S + i * 1_000;
        let ty = type_of(i);
        let task = TASKS[(i % TASKS.len() as u64) as usize];
        let idle = t.rules.idle(ty);
        if i % 997 == 0 {
            t.apply(&event(
                ts,
                pfn,
                Kind::Get,
                idle,
                idle + 1,
                1000 + (i % 7) as u32,
                task,
                ty,
            ));
        } else {
            t.apply(&event(
                ts,
                pfn,
                Kind::Put,
                idle + 1,
                idle,
                1000 + (i % 7) as u32,
                task,
                ty,
            ));
        }
    }
    t.advance(T0 + 20 * S);
    t
}

/// A handful of pages, three of them stuck (held by a pipe, pinned by fio, a
/// layout break waiting). Synthetic.
pub fn stuck() -> Tracker {
    let mut t = tracker();
    let fs = pgmap::FSDAX;
    // Short get/put pairs: not stuck.
    for i in 0..4u64 {
        let ts = T0 + S + i * S / 10;
        t.apply(&event(ts, 0x40000 + i, Kind::Get, 1, 2, 311, "fio", fs));
        t.apply(&event(
            ts + S / 20,
            0x40000 + i,
            Kind::Put,
            2,
            1,
            311,
            "fio",
            fs,
        ));
    }
    // A pipe keeps a vmsplice'd page.
    t.apply(&event(
        T0 + 2 * S,
        0x40010,
        Kind::Get,
        1,
        2,
        4242,
        "vmsplice-hold",
        fs,
    ));
    // A long-term pin.
    t.apply(&event(
        T0 + 3 * S,
        0x40020,
        Kind::Pin,
        1,
        1025,
        311,
        "fio",
        fs,
    ));
    // Truncate waits for a page the pipe holds.
    t.apply(&event(
        T0 + 4 * S,
        0x40030,
        Kind::Get,
        1,
        2,
        4242,
        "vmsplice-hold",
        fs,
    ));
    t.apply(&event(
        T0 + 9 * S,
        0x40030,
        Kind::LayoutWait,
        2,
        2,
        977,
        "truncate",
        fs,
    ));
    // Device-private pages come and go.
    t.apply(&event(
        T0 + 5 * S,
        0x80000,
        Kind::Get,
        0,
        1,
        1500,
        "hmm-test",
        pgmap::PRIVATE,
    ));
    t.apply(&event(
        T0 + 5 * S + 5_000_000,
        0x80000,
        Kind::Put,
        1,
        0,
        1500,
        "hmm-test",
        pgmap::PRIVATE,
    ));
    t.apply(&event(
        T0 + 5 * S + 6_000_000,
        0x80000,
        Kind::Free,
        0,
        0,
        1500,
        "hmm-test",
        pgmap::PRIVATE,
    ));
    t.advance(T0 + 12 * S);
    t
}

fn json(ev: &PageEvent, symbol: &str, stack: &[&str]) -> JsonEvent {
    JsonEvent {
        ts_ns: ev.ts_ns,
        cpu: ev.cpu,
        pid: ev.pid,
        tgid: ev.tgid,
        comm: ev.comm.to_string(),
        pfn: ev.pfn,
        event: ev.kind.name().into(),
        refcount_before: ev.refcount_before,
        refcount_after: ev.refcount_after,
        mapcount: ev.mapcount,
        pgmap_type: pgmap_name(ev.pgmap_type).into(),
        nr_pages: ev.nr_pages,
        symbol: symbol.into(),
        ret: ev.ret,
        stack: stack
            .iter()
            .map(|s| (*s).to_string())
            .collect::<Vec<_>>()
            .into(),
        stack_short: false,
        owner: None,
        migration: None,
        late: false,
        forking: false,
        page: None,
        cgroup: None,
    }
}

const GET_FRAMES: [&str; 6] = [
    "try_grab_folio+0x1a",
    "__get_user_pages+0xc2",
    "iov_iter_extract_pages+0x61",
    "__do_sys_vmsplice+0x9d",
    "do_syscall_64+0x42",
    "entry_SYSCALL_64_after_hwframe+0x76",
];
const PUT_FRAMES: [&str; 4] = [
    "__put_devmap_managed_page_refs+0x38",
    "pipe_buf_release+0x21",
    "free_pipe_info+0x54",
    "do_syscall_64+0x42",
];

/// The lines of a synthetic "dax-hold" recording: fio does short get/put
/// pairs on fs-dax pages, `vmsplice-hold` (pid 4242) splices two pages into
/// a pipe at +2 s, releases one at +10 s and keeps the other to the end
/// (+12 s); a device-private page is initialised, migrated and freed.
pub fn dax_hold_recording() -> (Header, Vec<Line>) {
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        kernel: "6.1.0-synthetic".into(),
        started_ns: T0,
        rules: rules(),
        thresholds: Thresholds::default(),
        precise: false,
        hooks: hooks()
            .into_iter()
            .map(|h| HookRecord {
                logical: h.logical,
                symbol: h.symbol,
                mode: h.mode,
                status: h.status,
            })
            .collect(),
        filter: None,
    };
    let fs = pgmap::FSDAX;
    let mut evs: Vec<JsonEvent> = Vec::new();
    let get = |ev: PageEvent| json(&ev, "try_grab_folio", &GET_FRAMES);
    let put = |ev: PageEvent| json(&ev, "__put_devmap_managed_page_refs", &PUT_FRAMES);
    for round in 0..3u64 {
        for i in 0..8u64 {
            let ts = T0 + S / 2 + round * 4 * S + i * 10_000_000;
            evs.push(get(event(ts, 0x40000 + i, Kind::Get, 1, 2, 311, "fio", fs)));
            evs.push(put(event(
                ts + 2_000_000,
                0x40000 + i,
                Kind::Put,
                2,
                1,
                311,
                "fio",
                fs,
            )));
        }
    }
    evs.push(get(event(
        T0 + 2 * S,
        0x40010,
        Kind::Get,
        1,
        2,
        4242,
        "vmsplice-hold",
        fs,
    )));
    evs.push(get(event(
        T0 + 2 * S + 1_000_000,
        0x40011,
        Kind::Get,
        1,
        2,
        4242,
        "vmsplice-hold",
        fs,
    )));
    evs.push(put(event(
        T0 + 10 * S,
        0x40010,
        Kind::Put,
        2,
        1,
        4242,
        "vmsplice-hold",
        fs,
    )));
    let private = pgmap::PRIVATE;
    let init = |ts, kind, b, a| {
        json(
            &event(ts, 0x80000, kind, b, a, 1500, "hmm-test", private),
            match kind {
                Kind::Get => "zone_device_page_init",
                Kind::Free | Kind::Put => "free_zone_device_page",
                _ => "remove_migration_ptes",
            },
            &[],
        )
    };
    evs.push(init(T0 + 6 * S, Kind::Get, 0, 1));
    evs.push(init(T0 + 6 * S + 4_000_000, Kind::Migrate, 1, 1));
    evs.push(init(T0 + 6 * S + 8_000_000, Kind::Put, 1, 0));
    evs.push(init(T0 + 6 * S + 9_000_000, Kind::Free, 0, 0));
    evs.sort_by_key(|e| e.ts_ns);

    let mut lines = Vec::new();
    let mut next_tick = T0 + S;
    for e in evs {
        while next_tick <= e.ts_ns {
            lines.push(Line::Tick {
                now_ns: next_tick,
                dropped: 0,
                capped: 0,
            });
            next_tick += S;
        }
        lines.push(Line::Event(e));
    }
    let end = T0 + 12 * S;
    while next_tick <= end {
        lines.push(Line::Tick {
            now_ns: next_tick,
            dropped: 0,
            capped: 0,
        });
        next_tick += S;
    }
    let events = lines.iter().filter(|l| matches!(l, Line::Event(_))).count() as u64;
    lines.push(Line::End {
        now_ns: end,
        events,
        dropped: 0,
        capped: 0,
    });
    (header, lines)
}

/// Writes [`dax_hold_recording`] with the recording writer.
pub fn write_dax_hold(path: &std::path::Path) -> anyhow::Result<()> {
    let (header, lines) = dax_hold_recording();
    let mut w = crate::format::recording::Writer::create(path, header)?;
    for l in &lines {
        w.line(l)?;
    }
    w.finish()
}
