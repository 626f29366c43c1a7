//! Arbitrary bytes as ring records, ticks and losses: decoder → tracker →
//! the tracker's views (see `refwatch::fuzzing` for the input's layout).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = refwatch::fuzzing::ring(data);
});
