//! Kernel addresses to names: `symbol+0xoff` for every frame of a stack
//! (refwatch's own frames left out), page map owners, with a bounded
//! per-address cache for the paths that name every event.

use crate::{
    event::PageEvent,
    fasthash::FastMap,
    format::json::{Format, JsonEvent, json_with},
    symbols::{
        kallsyms::Kallsyms,
        roles::{Role, role_of},
    },
};

/// Symbolizes a stack; unknown addresses are shown only with raw pointers.
/// refwatch's own frames are left out: leading frames that do not symbolize
/// (its BPF program), BPF trampolines anywhere (its fentry/fexit hooks), and
/// the tracepoint plumbing a `tp_btf` program is called through.
pub fn stack_strings(stack: &[u64], syms: &Kallsyms, fmt: Format) -> Vec<String> {
    let named: Vec<(u64, Option<String>)> =
        stack.iter().map(|a| (*a, syms.symbolize(*a))).collect();
    let named: Vec<(u64, Option<&str>)> = named.iter().map(|(a, s)| (*a, s.as_deref())).collect();
    format_stack(&named, fmt)
}

/// [`stack_strings`] of frames already symbolized.
fn format_stack(named: &[(u64, Option<&str>)], fmt: Format) -> Vec<String> {
    const PLUMBING: [&str; 6] = [
        "bpf_prog_",
        "bpf_trampoline_",
        "bpf_trace_run",
        "__bpf_trace_",
        "__traceiter_",
        "__page_ref_",
    ];
    let first = named
        .iter()
        .position(|(_, s)| s.is_some_and(|s| !PLUMBING.iter().any(|p| s.starts_with(p))))
        .unwrap_or(named.len());
    named[first..]
        .iter()
        .filter(|(_, s)| !s.is_some_and(|s| s.starts_with("bpf_trampoline_")))
        .map(|(a, s)| match s {
            Some(s) if fmt.raw_pointers => format!("{s} ({a:#x})"),
            Some(s) => (*s).to_string(),
            None if fmt.raw_pointers => format!("{a:#x}"),
            None => "?".to_string(),
        })
        .collect()
}

/// Default bound on the addresses a [`Symbolizer`] remembers.
pub const DEFAULT_SYMBOL_CACHE: usize = 1 << 16;

/// [`Kallsyms::symbolize`] with a per-address cache, for the consumer that
/// symbolizes every frame of every event (`record`, `--jsonl`, roles): a
/// kernel's stacks return to few distinct addresses, and events to few page
/// map owners. Bounded: forgets everything when full. Gives exactly what the
/// uncached functions give.
#[derive(Debug, Clone)]
pub struct Symbolizer<'a> {
    syms: &'a Kallsyms,
    cache: FastMap<u64, Option<Box<str>>>,
    /// [`owner_name`] by address and `raw_pointers`.
    owners: FastMap<(u64, bool), Option<Box<str>>>,
    cap: usize,
}

impl<'a> Symbolizer<'a> {
    pub fn new(syms: &'a Kallsyms, cap: usize) -> Self {
        Self {
            syms,
            cache: FastMap::default(),
            owners: FastMap::default(),
            cap: cap.max(1),
        }
    }

    /// Addresses remembered now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Makes sure every address of `stack` is in the cache (clearing it
    /// first when the stack might not fit, never in the middle).
    fn fill(&mut self, stack: &[u64]) {
        if self.cache.len() + stack.len() > self.cap {
            self.cache.clear();
        }
        for a in stack {
            if !self.cache.contains_key(a) {
                self.cache
                    .insert(*a, self.syms.symbolize(*a).map(String::into_boxed_str));
            }
        }
    }

    /// `symbol+0xoff` of an address [`Symbolizer::fill`] put in the cache.
    fn cached_name(&self, addr: u64) -> Option<&str> {
        self.cache.get(&addr).and_then(|s| s.as_deref())
    }

    /// [`Kallsyms::symbolize`].
    pub fn symbolize(&mut self, addr: u64) -> Option<&str> {
        self.fill(&[addr]);
        self.cached_name(addr)
    }

    /// [`stack_strings`].
    pub fn stack_strings(&mut self, stack: &[u64], fmt: Format) -> Vec<String> {
        self.fill(stack);
        let named: Vec<(u64, Option<&str>)> =
            stack.iter().map(|a| (*a, self.cached_name(*a))).collect();
        format_stack(&named, fmt)
    }

    /// [`role_of`](crate::symbols::role_of) the symbolized stack.
    pub fn role(&mut self, stack: &[u64]) -> Role {
        self.fill(stack);
        role_of(stack.iter().filter_map(|a| self.cached_name(*a)))
    }

    /// [`owner_name`].
    pub fn owner_name(&mut self, addr: u64, fmt: Format) -> Option<String> {
        let key = (addr, fmt.raw_pointers);
        if let Some(name) = self.owners.get(&key) {
            return name.as_deref().map(str::to_owned);
        }
        if self.owners.len() >= self.cap {
            self.owners.clear();
        }
        let name = owner_name(addr, self.syms, fmt);
        self.owners.insert(key, name.as_deref().map(Box::from));
        name
    }

    /// [`to_json`] of an event whose stack is named already.
    pub fn to_json_named(
        &mut self,
        ev: &PageEvent,
        symbol: &str,
        fmt: Format,
        frames: &[String],
    ) -> JsonEvent {
        let owner = self.owner_name(ev.owner, fmt);
        json_with(ev, symbol, fmt, frames.to_vec(), owner)
    }

    /// [`to_json`].
    pub fn to_json(&mut self, ev: &PageEvent, symbol: &str, fmt: Format) -> JsonEvent {
        let stack = self.stack_strings(&ev.stack, fmt);
        let owner = self.owner_name(ev.owner, fmt);
        json_with(ev, symbol, fmt, stack, owner)
    }
}

/// The owner's symbol; its address only with raw pointers.
pub fn owner_name(addr: u64, syms: &Kallsyms, fmt: Format) -> Option<String> {
    if addr == 0 {
        return None;
    }
    match syms.name_at(addr) {
        Some(n) => Some(n.to_string()),
        None => match syms.symbolize(addr) {
            Some(s) => Some(s),
            None if fmt.raw_pointers => Some(format!("{addr:#x}")),
            None => Some("?".into()),
        },
    }
}
