//! The catalog against the kernel object refwatch embeds: every program a
//! hook can ask for is in it with the type its mode needs, and every
//! program in it is some hook's (or listed as no hook's).

use std::collections::{BTreeMap, BTreeSet};

use aya_obj::{Object, ProgramSection};

use super::catalog::{self, NOT_HOOKS, ProgType};
use crate::loader::OBJECT;

/// The programs of the embedded object: name → the type its section gives.
fn object_programs() -> BTreeMap<String, ProgramSection> {
    assert!(
        !OBJECT.is_empty(),
        "refwatch was built with AYA_BUILD_SKIP=1: there is no kernel object to check"
    );
    let obj = Object::parse(OBJECT).expect("the embedded kernel object parses");
    obj.programs
        .into_iter()
        .map(|(name, p)| (name, p.section))
        .collect()
}

/// The catalog's type of a program section, if it is one of its types.
fn type_of(section: &ProgramSection) -> Option<ProgType> {
    Some(match section {
        ProgramSection::FEntry { .. } => ProgType::FEntry,
        ProgramSection::FExit { .. } => ProgType::FExit,
        ProgramSection::KProbe => ProgType::KProbe,
        ProgramSection::KRetProbe => ProgType::KRetProbe,
        ProgramSection::BtfTracePoint => ProgType::TpBtf,
        ProgramSection::PerfEvent => ProgType::PerfEvent,
        _ => return None,
    })
}

/// What is wrong with `wanted` programs in `object`, one line each.
fn problems(
    wanted: impl IntoIterator<Item = (ProgType, &'static str)>,
    object: &BTreeMap<String, ProgramSection>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (want, name) in wanted {
        match object.get(name) {
            None => bad.push(format!(
                "{name} ({}) is not in the kernel object",
                want.section_prefix()
            )),
            Some(s) if type_of(s) != Some(want) => bad.push(format!(
                "{name} is {} in the kernel object, not {}",
                type_of(s).map_or_else(|| format!("{s:?}"), |t| t.section_prefix().into()),
                want.section_prefix()
            )),
            Some(_) => {}
        }
    }
    bad
}

/// Every (type, name) the catalog knows: the hooks' and the listed others.
fn known() -> BTreeSet<(&'static str, &'static str)> {
    catalog::hook_programs()
        .chain(NOT_HOOKS.iter().copied())
        .map(|(t, n)| (n, t.section_prefix()))
        .collect()
}

#[test]
fn every_program_the_catalog_asks_for_is_in_the_object_with_its_type() {
    let object = object_programs();
    let wanted: Vec<_> = catalog::hook_programs()
        .chain(NOT_HOOKS.iter().copied())
        .collect();
    // Sanity of the walk itself: every logical hook names programs.
    assert!(
        wanted.len() > catalog::LOGICAL.len(),
        "{} programs",
        wanted.len()
    );
    let bad = problems(wanted, &object);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_program_in_the_object_is_a_hooks_or_listed() {
    let object = object_programs();
    let known: BTreeSet<&str> = known().into_iter().map(|(n, _)| n).collect();
    let unreferenced: Vec<&String> = object
        .keys()
        .filter(|n| !known.contains(n.as_str()))
        .collect();
    assert!(
        unreferenced.is_empty(),
        "programs in the kernel object no catalog entry asks for: {unreferenced:?}"
    );
    // Both directions cover the same set.
    assert_eq!(object.len(), known.len(), "{:?}", object.keys());
}

#[test]
fn a_wrong_name_or_type_is_reported() {
    let object = object_programs();
    let bad = problems(
        [
            (ProgType::FEntry, "fentry_no_such_hook"),
            (ProgType::KProbe, "fentry_free"),
            (ProgType::TpBtf, "tp_ref_set"),
        ],
        &object,
    );
    assert_eq!(
        bad,
        vec![
            "fentry_no_such_hook (fentry) is not in the kernel object".to_string(),
            "fentry_free is fentry in the kernel object, not kprobe".to_string(),
        ]
    );
}
