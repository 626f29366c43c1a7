//! What the embedded kernel object's programs call: on BPF, `memset`,
//! `memcpy` and `memmove` are loops of one load or store per byte. A
//! 192-byte `memset` in every event cost 1,600–2,100 guest instructions an
//! event (`bench overhead --refwatch-arg=--prog-stats`), so the programs on
//! the paths every reference takes must not call them.

use std::collections::BTreeSet;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

use crate::loader::OBJECT;

/// Functions that copy or fill byte by byte on BPF.
const BYTE_LOOPS: [&str; 3] = ["memset", "memcpy", "memmove"];

/// Programs that may call them: paths taken once per page map, fork,
/// layout wait or migrated page, not per reference.
const RARE: [&str; 13] = [
    "fentry_layout_sleep",
    "fentry_layout_sleep_xfs",
    "kprobe_layout_sleep",
    "kprobe_layout_sleep_xfs",
    "kretprobe_dax_busy",
    "fentry_memremap",
    "fentry_memunmap",
    "kprobe_memremap",
    "kprobe_memunmap",
    "fentry_rm_ptes",
    "kprobe_rm_ptes",
    "fexit_clone",
    "kretprobe_clone",
];

/// (program or function, callee) for every call of a [`BYTE_LOOPS`]
/// function in the object.
fn byte_loop_calls() -> BTreeSet<(String, &'static str)> {
    assert!(
        !OBJECT.is_empty(),
        "refwatch was built with AYA_BUILD_SKIP=1: there is no kernel object to check"
    );
    let file = object::File::parse(OBJECT).expect("the embedded kernel object parses");
    let functions: Vec<_> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
        .filter_map(|s| Some((s.section_index()?, s.address(), s.size(), s.name().ok()?)))
        .collect();
    let mut calls = BTreeSet::new();
    for section in file.sections() {
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(target) = reloc.target() else {
                continue;
            };
            let Some(callee) = file
                .symbol_by_index(target)
                .ok()
                .and_then(|s| s.name().ok())
                .and_then(|n| BYTE_LOOPS.into_iter().find(|b| *b == n))
            else {
                continue;
            };
            let caller = functions
                .iter()
                .find(|(idx, addr, size, _)| {
                    *idx == section.index() && (*addr..addr + size).contains(&offset)
                })
                .map_or_else(
                    || format!("? in {}", section.name().unwrap_or("?")),
                    |f| f.3.to_string(),
                );
            calls.insert((caller, callee));
        }
    }
    calls
}

#[test]
fn no_program_on_a_reference_path_fills_or_copies_byte_by_byte() {
    let calls = byte_loop_calls();
    // The check sees calls where there are: the rare paths still make them.
    assert!(
        calls.iter().any(|(f, _)| f == "fentry_rm_ptes"),
        "no call found at all: {calls:?}"
    );
    let hot: Vec<_> = calls
        .iter()
        .filter(|(f, _)| !RARE.contains(&f.as_str()))
        .collect();
    assert!(
        hot.is_empty(),
        "programs on reference paths call a byte loop (build the value in place, or with word stores): {hot:?}"
    );
}
