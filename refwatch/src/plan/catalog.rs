//! The hook catalog: every logical hook refwatch knows, in one table. An
//! entry holds its name, the kernel symbols it can use (with the kernels
//! that have them), for each symbol the hook id its events carry and the
//! kernel programs per attach mode, the kinds of events it emits, and its
//! stack policy. Everything else that needs a hook fact (resolution, the
//! loader, replays mapping a recorded symbol back to its hook) reads it here.

use refwatch_common::hook;

use crate::event::Kind;

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

/// The program type a name must have in the kernel object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgType {
    FEntry,
    FExit,
    KProbe,
    KRetProbe,
    TpBtf,
    /// A perf event program (the hardware watchpoint's).
    PerfEvent,
}

impl ProgType {
    /// The ELF section prefix aya gives programs of this type.
    pub fn section_prefix(self) -> &'static str {
        match self {
            Self::FEntry => "fentry",
            Self::FExit => "fexit",
            Self::KProbe => "kprobe",
            Self::KRetProbe => "kretprobe",
            Self::TpBtf => "tp_btf",
            Self::PerfEvent => "perf_event",
        }
    }
}

impl Progs {
    const NONE: Self = Self {
        fentry: None,
        fexit: None,
        kprobe: None,
        kretprobe: None,
        tp_btf: None,
    };

    /// The entry and exit programs of `mode` (either may be missing).
    pub fn for_mode(&self, mode: Mode) -> (Option<&'static str>, Option<&'static str>) {
        match mode {
            Mode::Fentry => (self.fentry, self.fexit),
            Mode::Kprobe => (self.kprobe, self.kretprobe),
            Mode::TpBtf => (self.tp_btf, None),
        }
    }

    /// Whether the kernel object has a program for `mode`.
    pub fn has(&self, mode: Mode) -> bool {
        let (entry, exit) = self.for_mode(mode);
        entry.is_some() || exit.is_some()
    }

    /// Every program named, with the type it must have.
    pub fn named(&self) -> impl Iterator<Item = (ProgType, &'static str)> {
        [
            (ProgType::FEntry, self.fentry),
            (ProgType::FExit, self.fexit),
            (ProgType::KProbe, self.kprobe),
            (ProgType::KRetProbe, self.kretprobe),
            (ProgType::TpBtf, self.tp_btf),
        ]
        .into_iter()
        .filter_map(|(t, n)| Some((t, n?)))
    }
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

/// A hook whose fentry mode needs only the exit program (fexit sees the
/// arguments too): `fexit_<stem>`, and `kprobe_<stem>` with
/// `kretprobe_<stem>` (a kretprobe has no arguments).
macro_rules! exit_pair {
    ($stem:literal) => {
        Progs {
            fentry: None,
            ..pair!($stem)
        }
    };
}

/// Entry programs only, `fentry_<stem>` and `kprobe_<stem>`.
macro_rules! entry_only {
    ($stem:literal) => {
        Progs {
            fentry: Some(concat!("fentry_", $stem)),
            kprobe: Some(concat!("kprobe_", $stem)),
            ..Progs::NONE
        }
    };
}

/// A `tp_btf` program.
const fn tracepoint(prog: &'static str) -> Progs {
    Progs {
        tp_btf: Some(prog),
        ..Progs::NONE
    }
}

/// One kernel function a logical hook can use.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub symbol: &'static str,
    /// The kernels that have it with this prototype (documentation).
    pub kernels: &'static str,
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
    /// Names of the event kinds it produces ([`Kind::name`]), space-separated.
    pub events: &'static str,
    pub candidates: &'static [Candidate],
    /// Not needed where the kernel has this symbol (another hook covers it).
    pub unless: Option<&'static str>,
    /// What kind of hook this is.
    pub class: Class,
    /// How much stack its events deserve.
    pub stacks: StackPolicy,
}

impl Logical {
    /// The kinds of events it produces.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> {
        self.events.split_whitespace().filter_map(Kind::from_name)
    }
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

impl Class {
    /// Whether precise mode (every page_ref tracepoint attached) leaves
    /// this hook out: the tracepoints see its references. GUP grabs stay
    /// when `ram_holders` asks for system-page holders.
    pub fn covered_by_precise(self, ram_holders: bool) -> bool {
        match self {
            Self::Refs => true,
            Self::Grab => !ram_holders,
            Self::Other | Self::PageRef => false,
        }
    }
}

/// A hook's stack policy: whether its events name a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackPolicy {
    /// Gets, pins, layout waits, migrations: the stack is who holds (or
    /// waits on) the reference, and is what a report shows.
    Holder,
    /// Drops, frees and bookkeeping (forks, page maps): a short stack is
    /// enough to classify the event (its role).
    Short,
    /// Both gets and drops (the page_ref tracepoints): the event's kind
    /// decides, as [`kind_names_holder`] says.
    ByKind,
}

/// Whether an event of this kind names a holder, for hooks whose policy is
/// [`StackPolicy::ByKind`]. A set counts as a holder's: the one that matters
/// is an allocation's (`zone_device_page_init`), and sets are rare.
pub fn kind_names_holder(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Get | Kind::Pin | Kind::LayoutWait | Kind::Migrate | Kind::Set
    )
}

const PAGE: &str = "struct page *";
const VM_FAULT: &str = "struct vm_fault *";
const FOLIO: &str = "struct folio *";

/// The page reader's programs (refwatch's own `getppid`, see
/// [`crate::peek`]): in the kernel object, but no hook's.
pub const PAGE_READER_FENTRY: &str = "fentry_peek";
pub const PAGE_READER_KPROBE: &str = "kprobe_peek";

/// Programs of the kernel object that no logical hook asks for.
pub const NOT_HOOKS: &[(ProgType, &str)] = &[
    (ProgType::FEntry, PAGE_READER_FENTRY),
    (ProgType::KProbe, PAGE_READER_KPROBE),
    (ProgType::PerfEvent, crate::watch::PROGRAM),
];

/// Symbols earlier versions attached to, for their recordings: `__folio_put`
/// (the last put is now reported by the free hook, which only device pages
/// reach).
pub const RETIRED: &[(&str, u32)] = &[("__folio_put", hook::FOLIO_PUT)];

/// The hook id of a kernel symbol refwatch attaches to (replays rebuild
/// events from their recorded symbol). A symbol with two prototypes
/// (`try_grab_folio`) gives the id of its first candidate.
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
        .or_else(|| {
            crate::watch::HOOK_NAMES
                .iter()
                .find(|(_, s)| *s == symbol)
                .map(|&(h, _)| h)
        })
}

/// The logical hook named `name`.
pub fn by_name(name: &str) -> Option<&'static Logical> {
    LOGICAL.iter().find(|l| l.name == name)
}

/// The logical hook whose events carry `hook` (the first, where two hooks
/// share an id: `evict-range` and `evict-pfns`).
pub fn of_hook(hook: u32) -> Option<&'static Logical> {
    LOGICAL
        .iter()
        .find(|l| l.candidates.iter().any(|c| c.hook == hook))
}

/// The stack policy of the hook whose events carry `hook`; a retired or
/// unknown id is a drop's.
pub fn stack_policy(hook: u32) -> StackPolicy {
    of_hook(hook).map_or(StackPolicy::Short, |l| l.stacks)
}

/// Whether an event of `kind` from the hook `hook` names a holder (its
/// stack is kept whole), or is a drop or free a short stack classifies.
pub fn names_holder(hook: u32, kind: Kind) -> bool {
    match stack_policy(hook) {
        StackPolicy::Holder => true,
        StackPolicy::Short => false,
        StackPolicy::ByKind => kind_names_holder(kind),
    }
}

/// Every program name any logical hook can ask for, with its type.
pub fn hook_programs() -> impl Iterator<Item = (ProgType, &'static str)> {
    LOGICAL
        .iter()
        .flat_map(|l| l.candidates)
        .flat_map(|c| c.progs.named())
}

/// A page_ref tracepoint hook (precise mode): one candidate, the tracepoint.
macro_rules! page_ref {
    ($name:literal, $tp:literal, $hook:expr, $prog:literal) => {
        Logical {
            name: $name,
            class: Class::PageRef,
            events: "get put set",
            stacks: StackPolicy::ByKind,
            unless: None,
            candidates: &[Candidate {
                symbol: $tp,
                kernels: "CONFIG_DEBUG_PAGE_REF",
                first_arg: None,
                hook: $hook,
                progs: tracepoint($prog),
            }],
        }
    };
}

/// Every logical hook refwatch knows, in plan order.
pub const LOGICAL: &[Logical] = &[
    Logical {
        name: "fsdax-put",
        class: Class::Refs,
        events: "put unpin",
        stacks: StackPolicy::Short,
        unless: None,
        candidates: &[
            Candidate {
                symbol: "__put_devmap_managed_page_refs",
                kernels: "6.1 … 6.9",
                first_arg: Some(PAGE),
                hook: hook::PUT_DEVMAP_REFS,
                progs: exit_pair!("put_devmap"),
            },
            Candidate {
                symbol: "__put_devmap_managed_folio_refs",
                kernels: "6.10 … 6.14 (fs-dax is 0-based from 6.15)",
                first_arg: Some(FOLIO),
                hook: hook::PUT_DEVMAP_REFS,
                progs: exit_pair!("put_devmap"),
            },
        ],
    },
    Logical {
        name: "free",
        class: Class::Other,
        events: "put free",
        stacks: StackPolicy::Short,
        unless: None,
        candidates: &[
            Candidate {
                symbol: "free_zone_device_folio",
                kernels: "6.10+ (every type from 6.15)",
                first_arg: Some(FOLIO),
                hook: hook::FREE_ZONE_DEVICE,
                progs: pair!("free"),
            },
            Candidate {
                symbol: "free_zone_device_page",
                kernels: "5.18 … 6.9",
                first_arg: Some(PAGE),
                hook: hook::FREE_ZONE_DEVICE,
                progs: pair!("free"),
            },
        ],
    },
    Logical {
        name: "gup-put",
        class: Class::Refs,
        events: "put unpin",
        stacks: StackPolicy::Short,
        unless: None,
        candidates: &[Candidate {
            symbol: "gup_put_folio",
            kernels: "5.18+ (static; out of line on the kernels seen)",
            first_arg: Some(FOLIO),
            hook: hook::GUP_PUT_FOLIO,
            progs: pair!("gup_put"),
        }],
    },
    Logical {
        name: "unpin-page",
        class: Class::Refs,
        events: "unpin",
        stacks: StackPolicy::Short,
        unless: None,
        candidates: &[Candidate {
            symbol: "unpin_user_page",
            kernels: "all",
            first_arg: Some(PAGE),
            hook: hook::UNPIN_USER_PAGE,
            progs: pair!("unpin_page"),
        }],
    },
    Logical {
        name: "unpin-folio",
        class: Class::Refs,
        events: "unpin",
        stacks: StackPolicy::Short,
        unless: None,
        candidates: &[Candidate {
            symbol: "unpin_user_folio",
            kernels: "recent kernels (6.18 has it)",
            first_arg: Some(FOLIO),
            hook: hook::UNPIN_USER_FOLIO,
            progs: pair!("unpin_folio"),
        }],
    },
    Logical {
        name: "bio-release",
        class: Class::Refs,
        events: "put",
        stacks: StackPolicy::Short,
        unless: Some("unpin_user_folio"),
        candidates: &[Candidate {
            symbol: "__bio_release_pages",
            kernels: "all; needed only without unpin_user_folio, whose hook sees these drops",
            first_arg: Some("struct bio *"),
            hook: hook::BIO_RELEASE,
            progs: pair!("bio_release"),
        }],
    },
    Logical {
        name: "batch-put",
        class: Class::Refs,
        events: "put",
        stacks: StackPolicy::Short,
        // Before 6.15 the batch's fs-dax drops go through the devmap put.
        unless: Some("__put_devmap_managed_folio_refs"),
        candidates: &[Candidate {
            symbol: "folios_put_refs",
            kernels: "6.10+",
            first_arg: Some("struct folio_batch *"),
            hook: hook::BATCH_PUT,
            progs: pair!("batch_put"),
        }],
    },
    Logical {
        name: "gup-grab",
        class: Class::Grab,
        events: "get pin",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[
            Candidate {
                symbol: "try_grab_folio",
                kernels: "6.6.47+, 6.10+ (folio argument, returns int)",
                first_arg: Some(FOLIO),
                hook: hook::TRY_GRAB_FOLIO,
                progs: exit_pair!("grab_folio"),
            },
            Candidate {
                symbol: "try_grab_folio",
                kernels: "6.1 … 6.6.46 (page argument, returns the folio)",
                first_arg: Some(PAGE),
                hook: hook::TRY_GRAB_FOLIO_PAGE,
                progs: exit_pair!("grab_folio_page"),
            },
        ],
    },
    Logical {
        name: "gup-grab-fast",
        class: Class::Grab,
        events: "get pin",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "try_grab_folio_fast",
            kernels: "6.6.47+, 6.10+ (static)",
            first_arg: Some(PAGE),
            hook: hook::TRY_GRAB_FOLIO_FAST,
            progs: exit_pair!("grab_fast"),
        }],
    },
    Logical {
        name: "gup-grab-page",
        class: Class::Grab,
        events: "get pin",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "try_grab_page",
            kernels: "5.15 … 6.6.46",
            first_arg: Some(PAGE),
            hook: hook::TRY_GRAB_PAGE,
            progs: pair!("grab_page"),
        }],
    },
    Logical {
        name: "device-init",
        class: Class::Refs,
        events: "get",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "zone_device_page_init",
            kernels: "6.1+",
            first_arg: Some(PAGE),
            hook: hook::ZONE_DEVICE_INIT,
            progs: pair!("dev_init"),
        }],
    },
    Logical {
        name: "map-get",
        class: Class::Refs,
        events: "get",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "vmf_insert_page_mkwrite",
            kernels: "6.15+ (fs-dax mappings hold references)",
            first_arg: Some(VM_FAULT),
            hook: hook::MAP_INSERT,
            progs: pair!("map_insert"),
        }],
    },
    Logical {
        name: "map-get-pmd",
        class: Class::Refs,
        events: "get",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "vmf_insert_folio_pmd",
            kernels: "6.15+",
            first_arg: Some(VM_FAULT),
            hook: hook::MAP_INSERT_PMD,
            progs: pair!("map_insert_pmd"),
        }],
    },
    Logical {
        name: "map-get-pud",
        class: Class::Refs,
        events: "get",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "vmf_insert_folio_pud",
            kernels: "6.15+",
            first_arg: Some(VM_FAULT),
            hook: hook::MAP_INSERT_PUD,
            progs: pair!("map_insert_pud"),
        }],
    },
    Logical {
        name: "dax-busy",
        class: Class::Other,
        events: "layout_wait",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "dax_layout_busy_page_range",
            kernels: "all (the busy page is its return value)",
            first_arg: None,
            hook: hook::DAX_LAYOUT_BUSY,
            progs: Progs {
                fexit: Some("fexit_dax_busy"),
                kretprobe: Some("kretprobe_dax_busy"),
                ..Progs::NONE
            },
        }],
    },
    Logical {
        name: "dax-sleep-ext4",
        class: Class::Other,
        events: "layout_wait",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "ext4_wait_dax_page",
            kernels: "all (the dax_break_layout callback from 6.15)",
            first_arg: Some("struct inode *"),
            hook: hook::LAYOUT_SLEEP,
            progs: entry_only!("layout_sleep"),
        }],
    },
    Logical {
        name: "dax-sleep-xfs",
        class: Class::Other,
        events: "layout_wait",
        stacks: StackPolicy::Holder,
        unless: None,
        candidates: &[Candidate {
            symbol: "xfs_wait_dax_page",
            kernels: "all (the dax_break_layout callback from 6.15)",
            first_arg: Some("struct inode *"),
            hook: hook::LAYOUT_SLEEP_XFS,
            progs: entry_only!("layout_sleep_xfs"),
        }],
    },
    Logical {
        name: "migrate-setup",
        events: "migrate",
        stacks: StackPolicy::Holder,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_vma_setup",
            kernels: "all",
            first_arg: None,
            hook: hook::MIGRATE_VMA_SETUP,
            progs: pair!("mv_setup"),
        }],
    },
    Logical {
        name: "migrate-final",
        events: "migrate",
        stacks: StackPolicy::Holder,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_vma_finalize",
            kernels: "all",
            first_arg: None,
            hook: hook::MIGRATE_VMA_FINALIZE,
            progs: pair!("mv_finalize"),
        }],
    },
    Logical {
        name: "evict-range",
        events: "migrate",
        stacks: StackPolicy::Holder,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_device_range",
            kernels: "6.1+",
            first_arg: None,
            hook: hook::MIGRATE_DEVICE_RANGE,
            progs: pair!("md_range"),
        }],
    },
    Logical {
        name: "evict-pfns",
        events: "migrate",
        stacks: StackPolicy::Holder,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_device_pfns",
            kernels: "6.18+",
            first_arg: None,
            hook: hook::MIGRATE_DEVICE_RANGE,
            progs: pair!("md_pfns"),
        }],
    },
    Logical {
        name: "evict-final",
        events: "migrate",
        stacks: StackPolicy::Holder,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "migrate_device_finalize",
            kernels: "6.1+",
            first_arg: None,
            hook: hook::MIGRATE_DEVICE_FINALIZE,
            progs: pair!("md_finalize"),
        }],
    },
    Logical {
        name: "migrate-page",
        events: "migrate",
        stacks: StackPolicy::Holder,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "remove_migration_ptes",
            kernels: "6.1+ (folio arguments; 5.15 has pages)",
            first_arg: Some(FOLIO),
            hook: hook::REMOVE_MIGRATION_PTES,
            progs: entry_only!("rm_ptes"),
        }],
    },
    Logical {
        name: "migrate-copy",
        events: "migrate",
        stacks: StackPolicy::Holder,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "folio_migrate_mapping",
            kernels: "6.1+ (its arguments are needed at return: fexit only)",
            first_arg: None,
            hook: hook::FOLIO_MIGRATE_MAPPING,
            progs: Progs {
                fexit: Some("fexit_fmm"),
                ..Progs::NONE
            },
        }],
    },
    Logical {
        name: "pgmap-add",
        events: "pgmap_add",
        stacks: StackPolicy::Short,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "memremap_pages",
            kernels: "all",
            first_arg: None,
            hook: hook::MEMREMAP,
            progs: entry_only!("memremap"),
        }],
    },
    Logical {
        name: "pgmap-remove",
        events: "pgmap_remove",
        stacks: StackPolicy::Short,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "memunmap_pages",
            kernels: "all",
            first_arg: None,
            hook: hook::MEMUNMAP,
            progs: entry_only!("memunmap"),
        }],
    },
    Logical {
        name: "fork",
        events: "fork",
        stacks: StackPolicy::Short,
        unless: None,
        class: Class::Other,
        candidates: &[Candidate {
            symbol: "kernel_clone",
            kernels: "all",
            first_arg: None,
            hook: hook::KERNEL_CLONE,
            progs: pair!("clone"),
        }],
    },
    page_ref!("ref-set", "page_ref_set", hook::PAGE_REF_SET, "tp_ref_set"),
    page_ref!("ref-mod", "page_ref_mod", hook::PAGE_REF_MOD, "tp_ref_mod"),
    page_ref!(
        "ref-mod-and-test",
        "page_ref_mod_and_test",
        hook::PAGE_REF_MOD_AND_TEST,
        "tp_ref_mod_and_test"
    ),
    page_ref!(
        "ref-mod-and-return",
        "page_ref_mod_and_return",
        hook::PAGE_REF_MOD_AND_RETURN,
        "tp_ref_mod_and_return"
    ),
    page_ref!(
        "ref-mod-unless",
        "page_ref_mod_unless",
        hook::PAGE_REF_MOD_UNLESS,
        "tp_ref_mod_unless"
    ),
    page_ref!(
        "ref-freeze",
        "page_ref_freeze",
        hook::PAGE_REF_FREEZE,
        "tp_ref_freeze"
    ),
    page_ref!(
        "ref-unfreeze",
        "page_ref_unfreeze",
        hook::PAGE_REF_UNFREEZE,
        "tp_ref_unfreeze"
    ),
];
