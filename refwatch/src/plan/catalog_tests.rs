//! The catalog's own consistency: names, ids, symbols, kinds and stack
//! policies (the object it must match is checked in `object_tests`).

use std::collections::{HashMap, HashSet};

use refwatch_common::hook;

use super::catalog::*;
use crate::event::Kind;

#[test]
fn every_program_name_is_unique() {
    let mut seen = HashSet::new();
    for l in LOGICAL {
        for c in l.candidates {
            for (_, name) in c.progs.named() {
                // The same program may serve two candidates of one hook.
                if seen.contains(&(name, l.name)) {
                    continue;
                }
                assert!(
                    !seen.iter().any(|(n, o)| *n == name && *o != l.name),
                    "{name} used by two logical hooks"
                );
                seen.insert((name, l.name));
            }
        }
    }
    for (_, name) in NOT_HOOKS {
        assert!(!seen.iter().any(|(n, _)| n == name), "{name} is a hook's");
    }
}

#[test]
fn names_and_symbols_are_unique_and_programs_fit_their_mode() {
    let mut names = HashSet::new();
    for l in LOGICAL {
        assert!(names.insert(l.name), "{} twice", l.name);
        assert!(!l.candidates.is_empty(), "{} has no candidate", l.name);
        for c in l.candidates {
            assert!(c.progs.named().next().is_some(), "{}: no program", c.symbol);
            for (t, name) in c.progs.named() {
                assert!(
                    name.starts_with(&format!("{}_", t.section_prefix()))
                        || (t == ProgType::TpBtf && name.starts_with("tp_")),
                    "{name} is not named for {t:?}"
                );
            }
            assert_eq!(
                c.progs.tp_btf.is_some(),
                l.class == Class::PageRef,
                "{}: tp_btf programs are the page_ref hooks'",
                l.name
            );
        }
    }
}

#[test]
fn every_hook_id_is_a_catalog_entrys_or_retired() {
    let mut ids: HashSet<u32> = LOGICAL
        .iter()
        .flat_map(|l| l.candidates)
        .map(|c| c.hook)
        .collect();
    ids.extend(RETIRED.iter().map(|&(_, h)| h));
    // Not hooked functions: the hardware watchpoint (`--watch`) and the
    // end of a page's watch.
    ids.insert(hook::WATCHPOINT);
    ids.insert(hook::WATCH_END);
    let all: HashSet<u32> = (1..hook::COUNT).collect();
    assert_eq!(ids, all);
}

#[test]
fn every_symbol_maps_back_to_its_hook() {
    for l in LOGICAL {
        for c in l.candidates {
            let h = hook_of_symbol(c.symbol).expect("a catalog symbol");
            // try_grab_folio has two prototypes, one id each: the
            // symbol gives the first, of the same logical hook.
            assert!(
                l.candidates.iter().any(|o| o.hook == h),
                "{} → {h}",
                c.symbol
            );
        }
    }
    assert_eq!(hook_of_symbol("__folio_put"), Some(hook::FOLIO_PUT));
    assert_eq!(hook_of_symbol("try_grab_folio"), Some(hook::TRY_GRAB_FOLIO));
    assert_eq!(hook_of_symbol("no_such_function"), None);
    // The watch's events, as recordings name them.
    assert_eq!(hook_of_symbol("watchpoint"), Some(hook::WATCHPOINT));
    assert_eq!(hook_of_symbol("watch ended"), Some(hook::WATCH_END));
}

#[test]
fn events_are_kinds_and_agree_with_the_stack_policy() {
    let mut policy_of_id: HashMap<u32, StackPolicy> = HashMap::new();
    for l in LOGICAL {
        let kinds: Vec<Kind> = l.kinds().collect();
        assert_eq!(
            kinds.len(),
            l.events.split_whitespace().count(),
            "{}: {:?} names a kind that is not one",
            l.name,
            l.events
        );
        assert!(!kinds.is_empty(), "{} emits nothing", l.name);
        let holders = kinds.iter().filter(|k| kind_names_holder(**k)).count();
        match l.stacks {
            StackPolicy::Holder => assert_eq!(holders, kinds.len(), "{}", l.name),
            StackPolicy::Short => assert_eq!(holders, 0, "{}", l.name),
            StackPolicy::ByKind => {
                assert!(holders > 0 && holders < kinds.len(), "{}", l.name)
            }
        }
        for c in l.candidates {
            let p = *policy_of_id.entry(c.hook).or_insert(l.stacks);
            assert_eq!(p, l.stacks, "hook id {} has two policies", c.hook);
        }
    }
}

#[test]
fn holders_are_gets_pins_waits_and_migrations() {
    assert!(names_holder(hook::TRY_GRAB_FOLIO_FAST, Kind::Pin));
    assert!(names_holder(hook::DAX_LAYOUT_BUSY, Kind::LayoutWait));
    assert!(names_holder(hook::REMOVE_MIGRATION_PTES, Kind::Migrate));
    assert!(!names_holder(hook::FREE_ZONE_DEVICE, Kind::Put));
    assert!(!names_holder(hook::GUP_PUT_FOLIO, Kind::Unpin));
    assert!(!names_holder(hook::FOLIO_PUT, Kind::Put));
    assert!(names_holder(hook::PAGE_REF_MOD, Kind::Get));
    assert!(!names_holder(hook::PAGE_REF_MOD, Kind::Put));
    assert_eq!(stack_policy(hook::MEMREMAP), StackPolicy::Short);
    assert_eq!(
        of_hook(hook::MIGRATE_DEVICE_RANGE).map(|l| l.name),
        Some("evict-range")
    );
    assert_eq!(
        by_name("gup-grab-fast").map(|l| l.stacks),
        Some(StackPolicy::Holder)
    );
}

#[test]
fn precise_mode_leaves_out_only_hooks_whose_events_the_tracepoints_see() {
    for l in LOGICAL {
        for ram_holders in [false, true] {
            if l.class.covered_by_precise(ram_holders) {
                assert!(
                    l.kinds()
                        .all(|k| matches!(k, Kind::Get | Kind::Put | Kind::Pin | Kind::Unpin)),
                    "{}: precise mode would lose its {} events",
                    l.name,
                    l.events
                );
            }
        }
    }
    assert!(Class::Grab.covered_by_precise(false));
    assert!(!Class::Grab.covered_by_precise(true));
    assert!(!Class::PageRef.covered_by_precise(false));
}

/// The hooks on paths every GUP (or every fs-dax put) takes attach by
/// fexit alone in fentry mode: one trampoline program per call. Their
/// kprobe mode keeps entry + exit, as a kretprobe has no arguments.
#[test]
fn hot_hooks_attach_by_fexit_alone() {
    let exit_only = [
        hook::TRY_GRAB_FOLIO,
        hook::TRY_GRAB_FOLIO_PAGE,
        hook::TRY_GRAB_FOLIO_FAST,
        hook::PUT_DEVMAP_REFS,
    ];
    let mut seen = 0;
    for c in LOGICAL.iter().flat_map(|l| l.candidates) {
        let (entry, exit) = c.progs.for_mode(Mode::Fentry);
        let (kprobe, kretprobe) = c.progs.for_mode(Mode::Kprobe);
        if exit_only.contains(&c.hook) {
            seen += 1;
            assert!(entry.is_none(), "{}: an fentry program", c.symbol);
            assert!(exit.is_some(), "{}: no fexit program", c.symbol);
            assert!(kprobe.is_some() && kretprobe.is_some(), "{}", c.symbol);
        }
    }
    // try_grab_folio's two prototypes and the two fs-dax puts count apart.
    assert_eq!(seen, 5);
    // try_grab_page's success is 1 (bool, before 6.2) or 0 (int): its
    // entry reads the count before instead.
    let page = LOGICAL
        .iter()
        .flat_map(|l| l.candidates)
        .find(|c| c.hook == hook::TRY_GRAB_PAGE)
        .expect("try_grab_page");
    assert!(page.progs.for_mode(Mode::Fentry).0.is_some());
}
