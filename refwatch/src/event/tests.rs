//! Decoding, names and stacks of events (SYNTHETIC records).

use refwatch_common::{
    COMM_LEN, EVENT_HEADER_SIZE, EVENT_SIZE, Event, MAX_STACK, RECORD_STEP_FRAMES, record_room,
    record_size,
};

use super::*;
use crate::symbols::role_of;

/// The event of a record that holds one (every record here but the
/// free's with its last put, which has its own tests).
fn decode(bytes: &[u8]) -> Result<PageEvent, DecodeError> {
    super::decode(bytes).map(one)
}

fn one(d: Decoded) -> PageEvent {
    assert_eq!(d.free, None, "one event");
    d.event
}

/// A synthetic event (not from a kernel) for decoder tests.
pub(crate) fn sample() -> PageEvent {
    PageEvent {
        ts_ns: 123,
        pfn: 0x40000,
        page: 0xffff_ea00_0100_0000,
        pid: 7,
        tgid: 7,
        cpu: 1,
        comm: "workload".into(),
        kind: Kind::Put,
        hook: refwatch_common::hook::PUT_DEVMAP_REFS,
        refcount_before: Some(2),
        refcount_after: Some(1),
        mapcount: None,
        pgmap_type: pgmap::FSDAX,
        nr_pages: 1,
        ret: Some(1),
        aux: 1,
        aux2: 7,
        owner: 0xffff_ffff_8200_0000,
        late: true,
        forking: true,
        role: Role::Other,
        stack: vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100].into(),
        stack_taken: StackTaken::Short,
    }
}

#[test]
fn round_trip() {
    let ev = sample();
    let bytes = to_bytes(&to_raw(&ev));
    assert_eq!(bytes.len(), EVENT_SIZE);
    assert_eq!(decode(&bytes), Ok(ev));
}

/// Synthetic records: the two stack flags decode to what was taken,
/// and encode back.
#[test]
fn stack_flags_say_what_was_taken() {
    let mut raw = to_raw(&sample());
    for (fl, frames, want) in [
        (0, 2, StackTaken::Full),
        (0, 0, StackTaken::Full),
        (flags::STACK_SHORT, 2, StackTaken::Short),
        (flags::NO_STACK, 0, StackTaken::No),
        // Both never come from the kernel; none taken wins.
        (flags::NO_STACK | flags::STACK_SHORT, 0, StackTaken::No),
    ] {
        raw.flags = flags::HAS_BEFORE | flags::LATE | fl;
        raw.stack_bytes = frames * 8;
        let ev = decode(&to_bytes(&raw)).expect("valid record");
        assert_eq!(ev.stack_taken, want, "flags {fl:#x}");
        assert_eq!(ev.stack.len(), frames as usize);
        assert!(ev.late && ev.refcount_before.is_some() && ev.refcount_after.is_none());
        let back = to_raw(&ev);
        assert_eq!(
            back.flags & (flags::NO_STACK | flags::STACK_SHORT),
            want.flags()
        );
        assert_eq!(decode(&to_bytes(&back)), Ok(ev));
    }
}

#[test]
fn truncated_is_an_error() {
    // Two frames: the record needs its header and 16 bytes of stack.
    let bytes = to_bytes(&to_raw(&sample()));
    for (len, need) in [
        (0, EVENT_HEADER_SIZE),
        (1, EVENT_HEADER_SIZE),
        (8, EVENT_HEADER_SIZE),
        (EVENT_HEADER_SIZE - 1, EVENT_HEADER_SIZE),
        (EVENT_HEADER_SIZE, EVENT_HEADER_SIZE + 16),
        (EVENT_HEADER_SIZE + 15, EVENT_HEADER_SIZE + 16),
    ] {
        assert_eq!(
            decode(&bytes[..len]),
            Err(DecodeError::Truncated { got: len, need })
        );
    }
    assert_eq!(decode(&bytes[..EVENT_HEADER_SIZE + 16]), Ok(sample()));
}

/// The kernel sizes a record to the frames its event asks for (the
/// header and 0, 8, 16 or 24 frames of room): every such record decodes
/// to what the full-size one does, whatever the walk filled of its room.
#[test]
fn records_sized_to_their_stack_decode_as_full_ones() {
    for frames in 0..=MAX_STACK {
        let mut ev = sample();
        ev.stack = (0..frames as u64)
            .map(|n| 0xffff_ffff_8100_0000 + n * 0x40)
            .collect::<Vec<_>>()
            .into();
        let full = to_bytes(&to_raw(&ev));
        let sized = to_record(&to_raw(&ev));
        assert_eq!(
            sized.len(),
            record_size(record_room(frames)),
            "{frames} frames"
        );
        assert!(sized.len() < EVENT_SIZE || frames > 2 * RECORD_STEP_FRAMES);
        assert_eq!(decode(&sized), decode(&full), "{frames} frames");
        assert_eq!(decode(&sized).map(|e| e.stack.len()), Ok(frames));
        // With the room of a deeper request (a walk that stopped short).
        for room in (record_room(frames)..=MAX_STACK).step_by(RECORD_STEP_FRAMES) {
            assert_eq!(decode(&full[..record_size(room)]), decode(&full));
        }
    }
}

#[test]
fn garbage_kind_and_stack_are_errors() {
    let mut raw = to_raw(&sample());
    raw.kind = 99;
    assert_eq!(decode(&to_bytes(&raw)), Err(DecodeError::UnknownKind(99)));
    let mut raw = to_raw(&sample());
    raw.stack_bytes = 7;
    assert_eq!(decode(&to_bytes(&raw)), Err(DecodeError::BadStack(7)));
    raw.stack_bytes = (MAX_STACK as u32 + 1) * 8;
    assert!(decode(&to_bytes(&raw)).is_err());
}

#[test]
fn random_bytes_never_panic() {
    // xorshift: deterministic garbage.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rejected = 0;
    for _ in 0..2000 {
        let mut buf = vec![0u8; EVENT_SIZE + (x % 16) as usize];
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        match decode(&buf) {
            Ok(ev) => assert!(ev.stack.len() <= MAX_STACK),
            Err(_) => rejected += 1,
        }
    }
    // Almost every random kind is unknown.
    assert!(
        rejected > 1900,
        "only {rejected} of 2000 garbage records rejected"
    );
}

/// xorshift: deterministic garbage.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Every field comes from its own place in the record, as an unaligned
/// read of the whole `Event` gave it: random records with a valid kind
/// and stack length, checked against the `Event` they were made from.
#[test]
fn every_field_decodes_from_its_wire_place() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut decoder = Decoder::default();
    for i in 0..2000 {
        let mut raw = Event::zeroed();
        raw.ts_ns = next(&mut x);
        raw.pfn = next(&mut x);
        raw.page = next(&mut x);
        raw.ret = next(&mut x) as i64;
        raw.aux = next(&mut x);
        raw.aux2 = next(&mut x);
        raw.owner = next(&mut x);
        raw.pid = next(&mut x) as u32;
        raw.tgid = next(&mut x) as u32;
        raw.cpu = next(&mut x) as u32;
        raw.kind = Kind::WIRE[i % Kind::WIRE.len()].raw();
        raw.hook = next(&mut x) as u32;
        raw.flags = next(&mut x) as u32;
        raw.refcount_before = next(&mut x) as i32;
        raw.refcount_after = next(&mut x) as i32;
        raw.mapcount = next(&mut x) as i32;
        raw.pgmap_type = next(&mut x) as u32;
        raw.nr_pages = next(&mut x) as u32;
        raw.stack_bytes = (next(&mut x) % (MAX_STACK as u64 + 1)) as u32 * 8;
        for f in raw.stack.iter_mut() {
            // Some zero frames, which are left out.
            *f = if next(&mut x).is_multiple_of(5) { 0 } else { x };
        }
        // Names of every length, some with bytes that are not UTF-8.
        let len = (next(&mut x) % (COMM_LEN as u64 + 1)) as usize;
        for b in raw.comm.iter_mut().take(len) {
            let v = next(&mut x) as u8;
            *b = if i % 3 == 0 { v } else { b'a' + v % 26 };
        }
        let has = |bit: u32| raw.flags & bit != 0;
        let frames: Vec<u64> = raw.stack[..raw.stack_bytes as usize / 8]
            .iter()
            .copied()
            .filter(|a| *a != 0)
            .collect();
        let comm_len = raw.comm.iter().position(|b| *b == 0).unwrap_or(COMM_LEN);
        let want = PageEvent {
            ts_ns: raw.ts_ns,
            pfn: raw.pfn,
            page: raw.page,
            pid: raw.pid,
            tgid: raw.tgid,
            cpu: raw.cpu,
            comm: Comm::from(String::from_utf8_lossy(&raw.comm[..comm_len]).as_ref()),
            kind: Kind::WIRE[i % Kind::WIRE.len()],
            hook: raw.hook,
            refcount_before: has(flags::HAS_BEFORE).then_some(raw.refcount_before),
            refcount_after: has(flags::HAS_AFTER).then_some(raw.refcount_after),
            mapcount: has(flags::HAS_MAPCOUNT).then_some(raw.mapcount),
            pgmap_type: raw.pgmap_type,
            nr_pages: raw.nr_pages,
            ret: has(flags::HAS_RET).then_some(raw.ret),
            aux: raw.aux,
            aux2: raw.aux2,
            owner: raw.owner,
            late: has(flags::LATE),
            forking: has(flags::FORKING),
            role: Role::Other,
            stack: frames.into(),
            stack_taken: if has(flags::NO_STACK) {
                StackTaken::No
            } else if has(flags::STACK_SHORT) {
                StackTaken::Short
            } else {
                StackTaken::Full
            },
        };
        // A free's record with its last put is the put, then the free.
        let want: Decoded = if raw.kind == Kind::Free.raw() && has(flags::LAST_PUT) {
            Decoded {
                event: PageEvent {
                    kind: Kind::Put,
                    refcount_before: want.refcount_before.map(|b| b.saturating_add(1)),
                    refcount_after: want.refcount_before,
                    aux: 1,
                    ..want.clone()
                },
                free: Some(PageEvent {
                    stack: Stack::default(),
                    stack_taken: StackTaken::No,
                    ..want
                }),
            }
        } else {
            want.into()
        };
        let bytes = to_bytes(&raw);
        let got = super::decode(&bytes).expect("valid record");
        assert_eq!(got, want);
        assert_eq!(
            got.event.comm.as_str(),
            String::from_utf8_lossy(&raw.comm[..comm_len])
        );
        assert_eq!(
            decoder.decode(&bytes).map(|mut event| Decoded {
                free: decoder.split_last_put(&mut event),
                event,
            }),
            Ok(want)
        );
        assert_eq!(super::from_raw(&raw), Ok(got));
    }
}

/// A free whose record also reports the page's last put (the kernel sends
/// the two as one record): the put comes first, with the record's stack,
/// from the count the free found + 1 to it; then the free, with the
/// record's counts and no stack. SYNTHETIC record, shaped as the free
/// hook's exit sends it on a 1-based kernel (the free sets the count back
/// to 1).
#[test]
fn a_free_with_its_last_put_is_two_events_in_order() {
    let mut raw = to_raw(&PageEvent {
        kind: Kind::Free,
        hook: refwatch_common::hook::FREE_ZONE_DEVICE,
        refcount_before: Some(0),
        refcount_after: Some(1),
        mapcount: Some(-1),
        ret: None,
        aux: 0,
        aux2: 0,
        stack: vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_1020].into(),
        stack_taken: StackTaken::Full,
        ..sample()
    });
    raw.flags |= flags::LAST_PUT;
    let got = super::decode(&to_bytes(&raw)).expect("valid record");
    let (put, free) = (&got.event, got.free.as_ref().expect("the free"));
    assert_eq!(put.kind, Kind::Put);
    assert_eq!(
        (put.refcount_before, put.refcount_after),
        (Some(1), Some(0))
    );
    assert_eq!(put.aux, 1, "a last put by the free hook");
    assert_eq!(put.hook, refwatch_common::hook::FREE_ZONE_DEVICE);
    assert_eq!(
        put.stack.frames(),
        [0xffff_ffff_8100_0010, 0xffff_ffff_8100_1020]
    );
    assert_eq!(put.stack_taken, StackTaken::Full);
    assert_eq!(free.kind, Kind::Free);
    assert_eq!(
        (free.refcount_before, free.refcount_after),
        (Some(0), Some(1))
    );
    assert_eq!(free.aux, 0);
    assert!(free.stack.is_empty());
    assert_eq!(free.stack_taken, StackTaken::No);
    for ev in [put, free] {
        assert_eq!(
            (ev.pfn, ev.ts_ns, ev.mapcount),
            (raw.pfn, raw.ts_ns, Some(-1))
        );
        assert_eq!((ev.pid, ev.tgid, ev.comm.as_str()), (7, 7, "workload"));
    }
    // The order a reader takes them in.
    let kinds: Vec<Kind> = got.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Put, Kind::Free]);
    // Counts unread at the free's entry: neither event has any.
    raw.flags &= !(flags::HAS_BEFORE | flags::HAS_AFTER);
    let got = super::decode(&to_bytes(&raw)).expect("valid record");
    assert_eq!(got.event.refcount_before, None);
    assert_eq!(got.event.refcount_after, None);
    // The flag means nothing on another kind: one event.
    raw.kind = Kind::Put.raw();
    let got = super::decode(&to_bytes(&raw)).expect("valid record");
    assert_eq!(got.free, None);
    assert_eq!(got.event.kind, Kind::Put);
}

#[test]
fn names_are_inline_text() {
    let kernel = |s: &[u8]| {
        let mut c = [0u8; COMM_LEN];
        c[..s.len()].copy_from_slice(s);
        Comm::from_kernel(&c)
    };
    assert_eq!(kernel(b"workload").as_str(), "workload");
    assert_eq!(kernel(b"").as_str(), "");
    // Sixteen bytes without a NUL: all of them.
    assert_eq!(kernel(b"0123456789abcdef").as_str(), "0123456789abcdef");
    // Bytes after the NUL do not count.
    let mut c = *b"dd\0garbage\xff\xfe\0\0\0\0";
    c[3] = b'x';
    assert_eq!(Comm::from_kernel(&c), Comm::from("dd"));
    // Not UTF-8: lossily, as a `String` would have it.
    let bad = kernel(b"a\xffb\xfe\xfd\xfc\xfb\xfa\xf9\xf8");
    assert_eq!(
        bad.as_str(),
        String::from_utf8_lossy(b"a\xffb\xfe\xfd\xfc\xfb\xfa\xf9\xf8")
    );
    assert!(bad.len() > COMM_LEN);
    // Longer names and names with a NUL (from JSON) stay whole.
    let long = "a-much-longer-name-than-the-kernel-keeps";
    assert_eq!(Comm::from(long).as_str(), long);
    assert_eq!(Comm::from("a\0b").as_str(), "a\0b");
    assert_ne!(Comm::from("a\0b"), Comm::from("a"));
    // Formatting as a `String` would (the summary table pads names).
    assert_eq!(
        format!("[{:<10}] {:?}", Comm::from("dd"), Comm::from("dd")),
        format!("[{:<10}] {:?}", "dd", "dd")
    );
    assert_eq!(Comm::default().as_str(), "");
}

#[test]
fn equal_stacks_are_shared_and_the_interner_is_bounded() {
    let mut interner = StackInterner::new(4);
    let a = interner.intern(&[1, 2, 3]);
    let b = interner.intern(&[1, 2, 3]);
    assert!(a.ptr_eq(&b));
    assert_eq!(a.frames(), &[1, 2, 3]);
    assert!(interner.intern(&[]).is_empty());
    assert_eq!(Stack::from(Vec::new()), Stack::default());
    // Many different stacks: never more than the bound remembered, and
    // what was handed out stays valid.
    let kept: Vec<Stack> = (0..100u64).map(|i| interner.intern(&[i, i + 1])).collect();
    assert!(interner.len() <= 4, "{}", interner.len());
    for (i, s) in (0u64..).zip(&kept) {
        assert_eq!(s.frames(), &[i, i + 1]);
    }
    assert_eq!(a.frames(), &[1, 2, 3]);
    // Stacks nobody holds any more are forgotten first.
    let mut interner = StackInterner::new(4);
    let held = interner.intern(&[7]);
    for i in 0..10u64 {
        interner.intern(&[100 + i]);
    }
    assert!(interner.intern(&[7]).ptr_eq(&held));
}

#[test]
fn names_are_stable() {
    assert_eq!(Kind::from_name("unpin"), Some(Kind::Unpin));
    assert_eq!(Kind::Unpin.name(), "unpin");
    assert_eq!(pgmap_name(pgmap::FSDAX), "fsdax");
    assert_eq!(pgmap_from_name("private"), Some(pgmap::PRIVATE));
    assert_eq!(pgmap_from_name("nope"), None);
    assert_eq!(pgmap_from_name("system"), Some(pgmap::SYSTEM));
    for k in Kind::WIRE {
        assert_eq!(Kind::try_from(k.raw()), Ok(k));
    }
    for k in Kind::ALL {
        assert_eq!(Kind::from_name(k.name()), Some(k));
    }
    // refwatch's own reads never come from the kernel's ring buffer.
    assert!(Kind::try_from(Kind::Snapshot.raw()).is_err());
}

#[test]
fn roles_come_from_the_innermost_known_frame() {
    assert_eq!(
        role_of([
            "page_ref_mod+0x4e",
            "copy_page_range+0x1bea",
            "dup_mmap+0x35f"
        ]),
        Role::Map
    );
    assert_eq!(
        role_of([
            "folios_put_refs+0x1f9",
            "free_pages_and_swap_cache+0x138",
            "tlb_batch_pages_flush+0x58"
        ]),
        Role::Unmap
    );
    assert_eq!(
        role_of(["try_grab_folio_fast+0x26e", "gup_fast_fallback+0x516"]),
        Role::Other
    );
    assert_eq!(role_of(Vec::<String>::new()), Role::Other);
}

#[test]
fn migration_details_round_trip() {
    for m in [
        Migration {
            stage: Stage::Finalize,
            direction: Direction::ToDevice,
            moved: true,
            dst_pfn: Some(0x1_0000_0010),
            extra_count: None,
        },
        Migration {
            stage: Stage::Setup,
            direction: Direction::Evict,
            moved: false,
            dst_pfn: None,
            extra_count: None,
        },
        Migration {
            stage: Stage::Copy,
            direction: Direction::Fault,
            moved: false,
            dst_pfn: Some(0),
            extra_count: Some(1),
        },
    ] {
        let (aux, aux2) = m.to_aux();
        assert_eq!(Migration::from_aux(aux, aux2), m);
    }
}
