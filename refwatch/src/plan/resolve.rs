//! Resolution of the catalog against the running kernel: for each logical
//! hook, the first candidate symbol kallsyms and BTF prototypes allow (and
//! `available_filter_functions`, where it was read), and the attach modes
//! worth trying.

use std::{collections::HashSet, fs, path::Path};

use super::catalog::{Candidate, Class, LOGICAL, Logical, Mode};
use crate::{layout::KernelBtf, symbols::kallsyms::Kallsyms};

/// How to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeChoice {
    /// fentry/fexit where BTF trampolines work, kprobes otherwise (per symbol).
    Auto,
    /// Only fentry/fexit.
    Fentry,
    /// Only kprobe/kretprobe.
    Kprobe,
}

/// What the kernel offers for attaching.
#[derive(Debug, Clone)]
pub struct KernelCaps {
    /// `available_filter_functions`, when read: a candidate with a BTF
    /// record that is not in it gets no fentry. `None`: not read (the
    /// fentry attach then finds out, and falls back to the kprobe).
    pub traceable: Option<HashSet<String>>,
    /// The kprobe PMU exists (`CONFIG_KPROBES`).
    pub kprobes: bool,
}

impl KernelCaps {
    /// Reads the running kernel's capabilities, without the list of
    /// traceable functions: reading it makes the kernel look up every
    /// function it can trace (about 60,000), most of a start on a slow
    /// machine, while a fentry attach refused for a function outside it
    /// falls back to the kprobe anyway ([`traceable_functions`] explains
    /// such a refusal afterwards).
    pub fn probe() -> Self {
        Self {
            traceable: None,
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
        }
    }
}

/// The functions of `available_filter_functions` (those ftrace, and so
/// fentry, can attach to); `None` when tracefs is not readable.
pub fn traceable_functions() -> Option<HashSet<String>> {
    [
        "/sys/kernel/tracing/available_filter_functions",
        "/sys/kernel/debug/tracing/available_filter_functions",
    ]
    .iter()
    .find_map(|p| fs::read_to_string(p).ok())
    .map(|t| parse_filter_functions(&t))
}

/// Function names of `available_filter_functions` (module suffixes dropped).
pub fn parse_filter_functions(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The decision for one logical hook, before attaching.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub logical: &'static Logical,
    /// The chosen candidate and the modes worth trying, in order.
    pub choice: Option<(Candidate, Vec<Mode>)>,
    /// Why nothing was chosen, or why a mode is missing.
    pub notes: Vec<String>,
    /// Why the hook is not needed on this kernel.
    pub skipped: Option<String>,
}

/// Chooses a symbol and modes for every logical hook; the page_ref
/// tracepoints only when `precise` is asked for.
pub fn resolve(
    kallsyms: &Kallsyms,
    btf: &KernelBtf,
    caps: &KernelCaps,
    choice: ModeChoice,
    precise: bool,
) -> Vec<Resolved> {
    LOGICAL
        .iter()
        .map(|l| match l.class {
            Class::PageRef => {
                resolve_tracepoint(l, |tp| btf.has_type(&format!("btf_trace_{tp}")), precise)
            }
            _ => resolve_one(l, kallsyms, |s| btf.func_params(s), caps, choice),
        })
        .collect()
}

/// [`resolve`] for a page_ref tracepoint; `has` says whether the kernel's
/// BTF knows the tracepoint (`btf_trace_<name>`, present only when the
/// tracepoint is built, i.e. with `CONFIG_DEBUG_PAGE_REF`).
pub fn resolve_tracepoint(
    logical: &'static Logical,
    has: impl Fn(&str) -> bool,
    precise: bool,
) -> Resolved {
    let mut r = Resolved {
        logical,
        choice: None,
        notes: Vec::new(),
        skipped: None,
    };
    let Some(cand) = logical.candidates.first() else {
        return r;
    };
    if !precise {
        r.skipped = Some("precise mode off (--no-precise)".into());
    } else if !has(cand.symbol) {
        r.skipped = Some(format!(
            "tracepoint {} not in this kernel (CONFIG_DEBUG_PAGE_REF is off): precise mode unavailable",
            cand.symbol
        ));
    } else {
        r.choice = Some((*cand, vec![Mode::TpBtf]));
    }
    r
}

/// [`resolve`] for one hook, with BTF prototypes given as a function (tests).
pub fn resolve_one(
    logical: &'static Logical,
    kallsyms: &Kallsyms,
    params: impl Fn(&str) -> Option<Vec<String>>,
    caps: &KernelCaps,
    choice: ModeChoice,
) -> Resolved {
    let mut notes = Vec::new();
    if let Some(u) = logical.unless
        && kallsyms.has(u)
    {
        return Resolved {
            logical,
            choice: None,
            notes,
            skipped: Some(format!(
                "not needed: {u} is on this kernel and its hook covers these drops"
            )),
        };
    }
    for cand in logical.candidates {
        if !kallsyms.has(cand.symbol) {
            let clones = kallsyms.clones(cand.symbol);
            if clones.is_empty() {
                notes.push(format!("{}: not in this kernel", cand.symbol));
            } else {
                notes.push(format!(
                    "{}: only compiler clones ({}) with an unknown argument layout; not attached",
                    cand.symbol,
                    clones.join(", ")
                ));
            }
            continue;
        }
        let proto = params(cand.symbol);
        if let (Some(want), Some(p)) = (cand.first_arg, proto.as_ref()) {
            let got = p.first().map(String::as_str).unwrap_or("void");
            if got != want {
                notes.push(format!(
                    "{}: first argument is {got}, not {want}",
                    cand.symbol
                ));
                continue;
            }
        }
        let mut modes = Vec::new();
        let fentry_ok = match (&proto, &caps.traceable) {
            (None, _) => {
                notes.push(format!("{}: no BTF record, no fentry", cand.symbol));
                false
            }
            (Some(_), Some(t)) if !t.contains(cand.symbol) => {
                notes.push(format!(
                    "{}: not in available_filter_functions (notrace), no fentry",
                    cand.symbol
                ));
                false
            }
            _ => true,
        };
        let has_fentry = cand.progs.has(Mode::Fentry);
        let has_kprobe = cand.progs.has(Mode::Kprobe);
        if fentry_ok && choice != ModeChoice::Kprobe && has_fentry {
            modes.push(Mode::Fentry);
        }
        if choice != ModeChoice::Fentry {
            if !has_kprobe {
                notes.push(format!(
                    "{}: refwatch has no kprobe program for it (it needs fexit's arguments at return)",
                    cand.symbol
                ));
            } else if caps.kprobes {
                modes.push(Mode::Kprobe);
            } else {
                notes.push("kprobes are not built into this kernel (CONFIG_KPROBES)".into());
            }
        }
        if modes.is_empty() {
            continue;
        }
        return Resolved {
            logical,
            choice: Some((*cand, modes)),
            notes,
            skipped: None,
        };
    }
    Resolved {
        logical,
        choice: None,
        notes,
        skipped: None,
    }
}

#[cfg(test)]
mod tests {
    use refwatch_common::hook;

    use super::*;

    fn caps(kprobes: bool, traceable: &[&str]) -> KernelCaps {
        KernelCaps {
            traceable: Some(traceable.iter().map(|s| s.to_string()).collect()),
            kprobes,
        }
    }

    fn by_name(n: &str) -> &'static Logical {
        super::super::catalog::by_name(n).expect("logical hook")
    }

    #[test]
    fn tracepoints_need_btf_and_the_flag() {
        let l = by_name("ref-mod");
        let r = resolve_tracepoint(l, |tp| tp == "page_ref_mod", true);
        assert_eq!(r.choice.map(|c| c.1), Some(vec![Mode::TpBtf]));
        let r = resolve_tracepoint(l, |_| false, true);
        assert!(r.choice.is_none());
        assert!(
            r.skipped
                .is_some_and(|s| s.contains("CONFIG_DEBUG_PAGE_REF"))
        );
        let r = resolve_tracepoint(l, |_| true, false);
        assert!(r.skipped.is_some_and(|s| s.contains("--no-precise")));
    }

    #[test]
    fn picks_the_prototype_that_matches() {
        let k = Kallsyms::parse("ffffffff81000000 T try_grab_folio\n");
        let page_proto = |_: &str| Some(vec!["struct page *".to_string(), "int".into()]);
        let r = resolve_one(
            by_name("gup-grab"),
            &k,
            page_proto,
            &caps(true, &["try_grab_folio"]),
            ModeChoice::Auto,
        );
        let (c, modes) = r.choice.expect("chosen");
        assert_eq!(c.hook, hook::TRY_GRAB_FOLIO_PAGE);
        assert_eq!(modes, vec![Mode::Fentry, Mode::Kprobe]);
    }

    #[test]
    fn a_mode_without_programs_is_not_offered() {
        let k = Kallsyms::parse("ffffffff81000000 T folio_migrate_mapping\n");
        let proto = |_: &str| Some(vec!["struct address_space *".to_string()]);
        let traceable = caps(true, &["folio_migrate_mapping"]);
        let r = resolve_one(
            by_name("migrate-copy"),
            &k,
            proto,
            &traceable,
            ModeChoice::Kprobe,
        );
        assert!(r.choice.is_none(), "{:?}", r.choice);
        assert!(
            r.notes.iter().any(|n| n.contains("no kprobe program")),
            "{:?}",
            r.notes
        );
        let r = resolve_one(
            by_name("migrate-copy"),
            &k,
            proto,
            &traceable,
            ModeChoice::Auto,
        );
        assert_eq!(r.choice.map(|c| c.1), Some(vec![Mode::Fentry]));
    }

    #[test]
    fn clones_are_not_attached() {
        let k = Kallsyms::parse("ffffffff81000000 t gup_put_folio.isra.0\n");
        let r = resolve_one(
            by_name("gup-put"),
            &k,
            |_| None,
            &caps(true, &[]),
            ModeChoice::Auto,
        );
        assert!(r.choice.is_none());
        assert!(r.notes[0].contains("compiler clones"), "{:?}", r.notes);
    }

    #[test]
    fn nothing_without_kprobes_and_btf() {
        let k = Kallsyms::parse("ffffffff81000000 T free_zone_device_folio\n");
        let folio = |_: &str| Some(vec!["struct folio *".to_string()]);
        let r = resolve_one(
            by_name("free"),
            &k,
            folio,
            &caps(false, &[]),
            ModeChoice::Kprobe,
        );
        assert!(r.choice.is_none());
        assert!(
            r.notes.iter().any(|n| n.contains("CONFIG_KPROBES")),
            "{:?}",
            r.notes
        );
        let r = resolve_one(
            by_name("free"),
            &k,
            folio,
            &caps(false, &["free_zone_device_folio"]),
            ModeChoice::Auto,
        );
        assert_eq!(r.choice.map(|c| c.1), Some(vec![Mode::Fentry]));
    }

    #[test]
    fn missing_symbol_is_said() {
        let k = Kallsyms::parse("ffffffff81000000 T _stext\n");
        let r = resolve_one(
            by_name("fsdax-put"),
            &k,
            |_| None,
            &caps(true, &[]),
            ModeChoice::Auto,
        );
        assert!(r.choice.is_none());
        assert_eq!(r.notes.len(), 2);
        assert!(r.notes.iter().all(|n| n.ends_with("not in this kernel")));
    }
}
