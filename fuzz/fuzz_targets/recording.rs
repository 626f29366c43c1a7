//! Arbitrary bytes as a recording: reader → tracker → report (text, JSON).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = refwatch::fuzzing::recording(data);
});
