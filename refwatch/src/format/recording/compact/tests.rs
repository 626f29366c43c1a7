//! Unit tests of the compact line's private number writing: zigzag deltas and the
//! digits (the format's own tests are in `../compact_tests.rs`).

use super::{
    line::{LINE_CAP, Line, LineBuf},
    unzigzag, zigzag,
};

#[test]
fn zigzag_round_trips_and_keeps_small_deltas_small() {
    for v in [
        0,
        1,
        -1,
        2,
        -2,
        4095,
        -4096,
        -5000,
        i64::MAX,
        i64::MIN,
        1_240_530_752,
    ] {
        assert_eq!(unzigzag(zigzag(v)), v, "{v}");
    }
    assert_eq!(
        (zigzag(0), zigzag(-1), zigzag(1), zigzag(-5000)),
        (0, 1, 2, 9999)
    );
    assert!(!refwatch_common::kaddr::is_kernel_address(zigzag(-5000)));
}

#[test]
fn numbers_are_written_as_their_decimal_digits() {
    let mut buf = LineBuf::default();
    let mut l = Line::new(&mut buf);
    // Every number below 100 000, and each side of every power of ten.
    let edges = (1..=19).flat_map(|k| {
        let p = 10u64.pow(k);
        [p - 1, p, p + 1]
    });
    for v in (0..100_000).chain(edges).chain([295_440, u64::MAX]) {
        l.len = 0;
        l.u(v);
        assert_eq!(l.as_slice(), v.to_string().as_bytes());
    }
    for v in [-1i64, -10, -4096, i64::MIN, i64::MAX] {
        l.len = 0;
        l.i(v);
        assert_eq!(l.as_slice(), v.to_string().as_bytes());
    }
    l.len = 0;
    l.opt(None);
    assert_eq!(l.as_slice(), b"null");
    // A full buffer takes no more (the line stops growing, no panic).
    l.len = LINE_CAP - 3;
    l.u(123_456);
    l.null();
    assert_eq!(l.len, LINE_CAP - 3);
    l.u(123);
    assert_eq!(l.len, LINE_CAP);
    l.byte(b',');
    assert_eq!(l.len, LINE_CAP);
}

#[test]
fn a_comma_and_a_number_are_written_as_the_comma_and_its_digits() {
    let mut buf = LineBuf::default();
    let mut l = Line::new(&mut buf);
    for v in (0..1000).chain([u64::MAX]) {
        l.len = 0;
        l.next_u(v);
        assert_eq!(l.as_slice(), format!(",{v}").as_bytes());
    }
    for v in (-1000..1000).chain([i64::MIN, i64::MAX]) {
        l.len = 0;
        l.next_opt(Some(v));
        assert_eq!(l.as_slice(), format!(",{v}").as_bytes());
    }
    l.len = 0;
    l.next_opt(None);
    assert_eq!(l.as_slice(), b",null");
    // Near a full buffer (no line gets there: LINE_CAP holds the longest):
    // never past the end, no panic.
    for room in 0..4 {
        for v in [Some(-1), Some(7), Some(42), None] {
            l.len = LINE_CAP - room;
            l.next_opt(v);
            assert!(l.len <= LINE_CAP, "{room} {v:?}");
        }
        l.len = LINE_CAP - room;
        l.next_u(3);
        assert!(l.len <= LINE_CAP);
    }
    l.len = LINE_CAP - 2;
    l.next_u(3);
    assert_eq!(l.as_slice().get(LINE_CAP - 2..), Some(&b",3"[..]));
}
