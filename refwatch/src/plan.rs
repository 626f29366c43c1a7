//! The probe plan: for each logical hook, which kernel symbol to watch on this
//! kernel and how (fentry/fexit or kprobe/kretprobe), decided at run time from
//! kallsyms, BTF prototypes and `available_filter_functions`.

use std::{collections::HashSet, fs, path::Path};

use refwatch_common::hook;

use crate::{layout::KernelBtf, symbols::kallsyms::Kallsyms};

/// Program names of one hook in the kernel object, per mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progs {
    pub fentry: Option<&'static str>,
    pub fexit: Option<&'static str>,
    pub kprobe: Option<&'static str>,
    pub kretprobe: Option<&'static str>,
    /// A `tp_btf` program (tracepoint hooks only).
    pub tp_btf: Option<&'static str>,
}

/// The four programs of a hook with entry and exit, named
/// `fentry_<stem>`, `fexit_<stem>`, `kprobe_<stem>`, `kretprobe_<stem>`.
macro_rules! pair {
    ($stem:literal) => {
        Progs {
            fentry: Some(concat!("fentry_", $stem)),
            fexit: Some(concat!("fexit_", $stem)),
            kprobe: Some(concat!("kprobe_", $stem)),
            kretprobe: Some(concat!("kretprobe_", $stem)),
            tp_btf: None,
        }
    };
}

const fn entry_only(fentry: &'static str, kprobe: &'static str) -> Progs {
    Progs {
        fentry: Some(fentry),
        fexit: None,
        kprobe: Some(kprobe),
        kretprobe: None,
        tp_btf: None,
    }
}

const fn tracepoint(prog: &'static str) -> Progs {
    Progs {
        fentry: None,
        fexit: None,
        kprobe: None,
        kretprobe: None,
        tp_btf: Some(prog),
    }
}

/// One kernel function a logical hook can use.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub symbol: &'static str,
    /// Required type of the first parameter (from BTF), when the same name has
    /// had different prototypes.
    pub first_arg: Option<&'static str>,
    pub hook: u32,
    pub progs: Progs,
}

/// A logical hook: what it observes and where it can be observed.
#[derive(Debug, Clone, Copy)]
pub struct Logical {
    pub name: &'static str,
    /// Events it produces.
    pub events: &'static str,
    pub candidates: &'static [Candidate],
    /// Not needed where the kernel has this symbol (another hook covers it).
    pub unless: Option<&'static str>,
    /// What kind of hook this is.
    pub class: Class,
}

/// Kinds of logical hooks, for precise mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Takes or drops references: the page_ref tracepoints cover it in precise mode.
    Refs,
    /// GUP grabs: like `Refs`, but kept in precise mode with `--ram-holders`
    /// (they remember references on system pages).
    Grab,
    /// Everything else (frees, migrations, layout waits, page maps).
    Other,
    /// A page_ref tracepoint (precise mode).
    PageRef,
}

const PUT_DEVMAP: Progs = pair!("put_devmap");
const FREE: Progs = pair!("free");
const GUP_PUT: Progs = pair!("gup_put");
const UNPIN_PAGE: Progs = pair!("unpin_page");
const UNPIN_FOLIO: Progs = pair!("unpin_folio");
const GRAB_FOLIO: Progs = pair!("grab_folio");
const GRAB_FOLIO_PAGE: Progs = pair!("grab_folio_page");
const GRAB_FAST: Progs = pair!("grab_fast");
const GRAB_PAGE: Progs = pair!("grab_page");
const DEV_INIT: Progs = pair!("dev_init");
const MAP_INSERT: Progs = pair!("map_insert");
const MAP_INSERT_PMD: Progs = pair!("map_insert_pmd");
const MAP_INSERT_PUD: Progs = pair!("map_insert_pud");
const DAX_BUSY: Progs = Progs {
    fentry: None,
    fexit: Some("fexit_dax_busy"),
    kprobe: None,
    kretprobe: Some("kretprobe_dax_busy"),
    tp_btf: None,
};
const LAYOUT_SLEEP: Progs = entry_only("fentry_layout_sleep", "kprobe_layout_sleep");
const LAYOUT_SLEEP_XFS: Progs = entry_only("fentry_layout_sleep_xfs", "kprobe_layout_sleep_xfs");
const MV_SETUP: Progs = pair!("mv_setup");
const MV_FINALIZE: Progs = pair!("mv_finalize");
const MD_RANGE: Progs = pair!("md_range");
const MD_PFNS: Progs = pair!("md_pfns");
const MD_FINALIZE: Progs = pair!("md_finalize");
const RM_PTES: Progs = entry_only("fentry_rm_ptes", "kprobe_rm_ptes");
const FMM: Progs = Progs {
    fentry: None,
    fexit: Some("fexit_fmm"),
    kprobe: None,
    kretprobe: None,
    tp_btf: None,
};
const MEMREMAP: Progs = entry_only("fentry_memremap", "kprobe_memremap");
const MEMUNMAP: Progs = entry_only("fentry_memunmap", "kprobe_memunmap");

const BIO_RELEASE: Progs = pair!("bio_release");
const BATCH_PUT: Progs = pair!("batch_put");

const PAGE: &str = "struct page *";
const VM_FAULT: &str = "struct vm_fault *";
const FOLIO: &str = "struct folio *";

/// The hook id of a kernel symbol refwatch attaches to (replays rebuild
/// events from their recorded symbol).
pub fn hook_of_symbol(symbol: &str) -> Option<u32> {
    LOGICAL
        .iter()
        .flat_map(|l| l.candidates)
        .find(|c| c.symbol == symbol)
        .map(|c| c.hook)
        .or_else(|| {
            RETIRED
                .iter()
                .find(|(s, _)| *s == symbol)
                .map(|&(_, hook)| hook)
        })
}

/// Symbols earlier versions attached to, for their recordings: `__folio_put`
/// (the last put is now reported by the free hook, which only device pages
/// reach).
const RETIRED: &[(&str, u32)] = &[("__folio_put", hook::FOLIO_PUT)];

/// Every logical hook refwatch knows, in plan order.
pub const LOGICAL: &[Logical] = &[
    Logical {
        name: "fsdax-put",
        class: Class::Refs,
        events: "put unpin",
        unless: None,
        candidates: &[
            Candidate {
                symbol: "__put_devmap_managed_page_refs",
                first_arg: Some(PAGE),
                hook: hook::PUT_DEVMAP_REFS,
                progs: PUT_DEVMAP,
            },
            Candidate {
                symbol: "__put_devmap_managed_folio_refs",
                first_arg: Some(FOLIO),
                hook: hook::PUT_DEVMAP_REFS,
                progs: PUT_DEVMAP,
            },
        ],
    },
    Logical {
        name: "free",
        class: Class::Other,
        events: "put free",
        unless: None,
        candidates: &[
            Candidate {
                symbol: "free_zone_device_folio",
                first_arg: Some(FOLIO),
                hook: hook::FREE_ZONE_DEVICE,
                progs: FREE,
            },
            Candidate {
                symbol: "free_zone_device_page",
                first_arg: Some(PAGE),
                hook: hook::FREE_ZONE_DEVICE,
                progs: FREE,
            },
        ],
    },
    Logical {
        name: "gup-put",
        class: Class::Refs,
        events: "put unpin",
        unless: None,
        candidates: &[Candidate {
            symbol: "gup_put_folio",
            first_arg: Some(FOLIO),
            hook: hook::GUP_PUT_FOLIO,
            progs: GUP_PUT,
        }],
    },
    Logical {
        name: "unpin-page",
        class: Class::Refs,
        events: "unpin",
        unless: None,
        candidates: &[Candidate {
            symbol: "unpin_user_page",
            first_arg: Some(PAGE),
            hook: hook::UNPIN_USER_PAGE,
            progs: UNPIN_PAGE,
        }],
    },
    Logical {
        name: "unpin-folio",
        class: Class::Refs,
        events: "unpin",
        unless: None,
        candidates: &[Candidate {
            symbol: "unpin_user_folio",
            first_arg: Some(FOLIO),
            hook: hook::UNPIN_USER_FOLIO,
            progs: UNPIN_FOLIO,
        }],
    },
    Logical {
        name: "bio-release",
        class: Class::Refs,
        events: "put",
        unless: Some("unpin_user_folio"),
        candidates: &[Candidate {
            symbol: "__bio_release_pages",
            first_arg: Some("struct bio *"),
            hook: hook::BIO_RELEASE,
            progs: BIO_RELEASE,
        }],
    },
    Logical {
        name: "batch-put",
        class: Class::Refs,
        events: "put",
        // Before 6.15 the batch's fs-dax drops go through the devmap put.
        unless: Some("__put_devmap_managed_folio_refs"),
        candidates: &[Candidate {
            symbol: "folios_put_refs",
            first_arg: Some("struct folio_batch *"),
            hook: hook::BATCH_PUT,
            progs: BATCH_PUT,
        }],
    },
    Logical {
        name: "gup-grab",
        class: Class::Grab,
        events: "get pin",
        unless: None,
        candidates: &[
            Candidate {
                symbol: "try_grab_folio",
                first_arg: Some(FOLIO),
                hook: hook::TRY_GRAB_FOLIO,
                progs: GRAB_FOLIO,
            },
            Candidate {
                symbol: "try_grab_folio",
                first_arg: Some(PAGE),
                hook: hook::TRY_GRAB_FOLIO_PAGE,
                progs: GRAB_FOLIO_PAGE,
            },
        ],
    },
    Logical {
        name: "gup-grab-fast",
        class: Class::Grab,
        events: "get pin",
        unless: None,
        candidates: &[Candidate {
            symbol: "try_grab_folio_fast",
            first_arg: Some(PAGE),
            hook: hook::TRY_GRAB_FOLIO_FAST,
            progs: GRAB_FAST,
        }],
    },
    Logical {
        name: "gup-grab-page",
        class: Class::Grab,
        events: "get pin",
        unless: None,
        candidates: &[Candidate {
            symbol: "try_grab_page",
            first_arg: Some(PAGE),
            hook: hook::TRY_GRAB_PAGE,
            progs: GRAB_PAGE,
        }],
    },
    Logical {
        name: "device-init",
        class: Class::Refs,
        events: "get",
        unless: None,
        candidates: &[Candidate {
            symbol: "zone_device_page_init",
            first_arg: Some(PAGE),
            hook: hook::ZONE_DEVICE_INIT,
            progs: DEV_INIT,
        }],
    },
    Logical {
        name: "map-get",
        class: Class::Refs,
        events: "get",
        unless: None,
        candidates: &[Candidate {
            symbol: "vmf_insert_page_mkwrite",
            first_arg: Some(VM_FAULT),
            hook: hook::MAP_INSERT,
            progs: MAP_INSERT,
        }],
    },
    Logical {
        name: "map-get-pmd",
        class: Class::Refs,
        events: "get",
        unless: None,
        candidates: &[Candidate {
            symbol: "vmf_insert_folio_pmd",
            first_arg: Some(VM_FAULT),
            hook: hook::MAP_INSERT_PMD,
            progs: MAP_INSERT_PMD,
        }],
    },
    Logical {
        name: "map-get-pud",
        class: Class::Refs,
        events: "get",
        unless: None,
        candidates: &[Candidate {
            symbol: "vmf_insert_folio_pud",
            first_arg: Some(VM_FAULT),
            hook: hook::MAP_INSERT_PUD,
            progs: MAP_INSERT_PUD,
        }],
    },
    Logical {
        name: "dax-busy",
        class: Class::Other,
        events: "layout_wait",
        unless: None,
        candidates: &[Candidate {
            symbol: "dax_layout_busy_page_range",
            first_arg: None,
            hook: hook::DAX_LAYOUT_BUSY,
            progs: DAX_BUSY,
        }],
    },
    Logical {
        name: "dax-sleep-ext4",
        class: Class::Other,
        events: "layout_wait",
        unless: None,
        candidates: &[Candidate {
            symbol: "ext4_wait_dax_page",
            first_arg: Some("struct inode *"),
            hook: hook::LAYOUT_SLEEP,
            progs: LAYOUT_SLEEP,
        }],
    },
    Logical {
        name: "dax-sleep-xfs",
        class: Class::Other,
        events: "layout_wait",
        unless: None,
        candidates: &[Candidate {
            symbol: "xfs_wait_dax_page",
            first_arg: Some("struct inode *"),
            hook: hook::LAYOUT_SLEEP_XFS,
            progs: LAYOUT_SLEEP_XFS,
        }],
    },
    Logical {
        name: "migrate-setup",
        events: "migrate",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_vma_setup",
            first_arg: None,
            hook: hook::MIGRATE_VMA_SETUP,
            progs: MV_SETUP,
        }],
    },
    Logical {
        name: "migrate-final",
        events: "migrate",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_vma_finalize",
            first_arg: None,
            hook: hook::MIGRATE_VMA_FINALIZE,
            progs: MV_FINALIZE,
        }],
    },
    Logical {
        name: "evict-range",
        events: "migrate",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_device_range",
            first_arg: None,
            hook: hook::MIGRATE_DEVICE_RANGE,
            progs: MD_RANGE,
        }],
    },
    Logical {
        name: "evict-pfns",
        events: "migrate",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_device_pfns",
            first_arg: None,
            hook: hook::MIGRATE_DEVICE_RANGE,
            progs: MD_PFNS,
        }],
    },
    Logical {
        name: "evict-final",
        events: "migrate",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_device_finalize",
            first_arg: None,
            hook: hook::MIGRATE_DEVICE_FINALIZE,
            progs: MD_FINALIZE,
        }],
    },
    Logical {
        name: "migrate-page",
        events: "migrate",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "remove_migration_ptes",
            first_arg: Some(FOLIO),
            hook: hook::REMOVE_MIGRATION_PTES,
            progs: RM_PTES,
        }],
    },
    Logical {
        name: "migrate-copy",
        events: "migrate",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "folio_migrate_mapping",
            first_arg: None,
            hook: hook::FOLIO_MIGRATE_MAPPING,
            progs: FMM,
        }],
    },
    Logical {
        name: "pgmap-add",
        events: "pgmap_add",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "memremap_pages",
            first_arg: None,
            hook: hook::MEMREMAP,
            progs: MEMREMAP,
        }],
    },
    Logical {
        name: "pgmap-remove",
        events: "pgmap_remove",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "memunmap_pages",
            first_arg: None,
            hook: hook::MEMUNMAP,
            progs: MEMUNMAP,
        }],
    },
    Logical {
        name: "fork",
        events: "fork",
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "kernel_clone",
            first_arg: None,
            hook: hook::KERNEL_CLONE,
            progs: pair!("clone"),
        }],
    },
    Logical {
        name: "ref-set",
        events: "get put set",
        unless: None,
        class: Class::PageRef,
        candidates: &[Candidate {
            symbol: "page_ref_set",
            first_arg: None,
            hook: hook::PAGE_REF_SET,
            progs: tracepoint("tp_ref_set"),
        }],
    },
    Logical {
        name: "ref-mod",
        events: "get put set",
        unless: None,
        class: Class::PageRef,
        candidates: &[Candidate {
            symbol: "page_ref_mod",
            first_arg: None,
            hook: hook::PAGE_REF_MOD,
            progs: tracepoint("tp_ref_mod"),
        }],
    },
    Logical {
        name: "ref-mod-and-test",
        events: "get put set",
        unless: None,
        class: Class::PageRef,
        candidates: &[Candidate {
            symbol: "page_ref_mod_and_test",
            first_arg: None,
            hook: hook::PAGE_REF_MOD_AND_TEST,
            progs: tracepoint("tp_ref_mod_and_test"),
        }],
    },
    Logical {
        name: "ref-mod-and-return",
        events: "get put set",
        unless: None,
        class: Class::PageRef,
        candidates: &[Candidate {
            symbol: "page_ref_mod_and_return",
            first_arg: None,
            hook: hook::PAGE_REF_MOD_AND_RETURN,
            progs: tracepoint("tp_ref_mod_and_return"),
        }],
    },
    Logical {
        name: "ref-mod-unless",
        events: "get put set",
        unless: None,
        class: Class::PageRef,
        candidates: &[Candidate {
            symbol: "page_ref_mod_unless",
            first_arg: None,
            hook: hook::PAGE_REF_MOD_UNLESS,
            progs: tracepoint("tp_ref_mod_unless"),
        }],
    },
    Logical {
        name: "ref-freeze",
        events: "get put set",
        unless: None,
        class: Class::PageRef,
        candidates: &[Candidate {
            symbol: "page_ref_freeze",
            first_arg: None,
            hook: hook::PAGE_REF_FREEZE,
            progs: tracepoint("tp_ref_freeze"),
        }],
    },
    Logical {
        name: "ref-unfreeze",
        events: "get put set",
        unless: None,
        class: Class::PageRef,
        candidates: &[Candidate {
            symbol: "page_ref_unfreeze",
            first_arg: None,
            hook: hook::PAGE_REF_UNFREEZE,
            progs: tracepoint("tp_ref_unfreeze"),
        }],
    },
];

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

/// An attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Fentry,
    Kprobe,
    /// A BTF-typed tracepoint program.
    TpBtf,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::TpBtf => "tp_btf",
        }
    }
}

/// What the kernel offers for attaching.
#[derive(Debug, Clone)]
pub struct KernelCaps {
    /// `available_filter_functions`, when readable.
    pub traceable: Option<HashSet<String>>,
    /// The kprobe PMU exists (`CONFIG_KPROBES`).
    pub kprobes: bool,
}

impl KernelCaps {
    /// Reads the running kernel's capabilities.
    pub fn probe() -> Self {
        let traceable = [
            "/sys/kernel/tracing/available_filter_functions",
            "/sys/kernel/debug/tracing/available_filter_functions",
        ]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|t| parse_filter_functions(&t));
        Self {
            traceable,
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
        }
    }
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
        let p = cand.progs;
        let has_fentry = p.fentry.is_some() || p.fexit.is_some();
        let has_kprobe = p.kprobe.is_some() || p.kretprobe.is_some();
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
    use super::*;

    fn caps(kprobes: bool, traceable: &[&str]) -> KernelCaps {
        KernelCaps {
            traceable: Some(traceable.iter().map(|s| s.to_string()).collect()),
            kprobes,
        }
    }

    fn by_name(n: &str) -> &'static Logical {
        LOGICAL.iter().find(|l| l.name == n).expect("logical hook")
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
    fn every_program_name_is_unique() {
        let mut seen = HashSet::new();
        for l in LOGICAL {
            for c in l.candidates {
                let p = c.progs;
                for name in [p.fentry, p.fexit, p.kprobe, p.kretprobe, p.tp_btf]
                    .into_iter()
                    .flatten()
                {
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
