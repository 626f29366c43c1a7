//! Hardware watchpoints on device pages' `_refcount` (`--watch`): every
//! write to a watched page's refcount, from any path (inline gets and puts
//! no function hook sees included), becomes an event of the page with the
//! writer's task and stack (`hook::WATCHPOINT`, shown as the function
//! [`SYMBOL`]).
//!
//! [`Request`] is what the user asked for; [`slots`] decides which pages
//! hold the debug registers; [`perf`] opens the breakpoints; [`Watcher`]
//! ties them to the kernel program and the live state; [`ask`] says what
//! the TUI's `w` on a page gets. Only [`perf`]
//! holds unsafe code (the system calls).

pub mod ask;
#[allow(unsafe_code)]
pub mod perf;
pub mod slots;
mod status;

pub use status::Status;

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::{PerfEvent, ProgramFd},
};
use refwatch_common::{PagePeek, WATCH_PAGES, WatchLast};

use crate::{peek::Peeker, state::Tracker};

/// The name watchpoint events carry where others carry their hooked
/// function (`symbol` in JSON lines and recordings).
pub const SYMBOL: &str = "watchpoint";

/// The function name of the read that ends a page's watch
/// (`hook::WATCH_END`).
pub const END_SYMBOL: &str = "watch ended";

/// The names the watch's events go by, by hook, as the outputs show them.
pub const HOOK_NAMES: [(u32, &str); 2] = [
    (refwatch_common::hook::WATCHPOINT, SYMBOL),
    (refwatch_common::hook::WATCH_END, END_SYMBOL),
];

/// The kernel program.
pub const PROGRAM: &str = "watch_hit";

/// Seconds a watched page may see no write before it yields its slot to a
/// waiting page.
pub const IDLE_SECS: u64 = 10;

/// What `--watch` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// These PFNs, in order.
    pub pfns: Vec<u64>,
    /// Each device page as refwatch first learns of it.
    pub new: bool,
    /// Stuck pages whose holder refwatch could not name.
    pub unknown: bool,
}

impl Request {
    /// Parses `PFN[,PFN…]`, `new`, `unknown` (comma-separated, combined at
    /// will); PFNs in decimal or `0x` hex.
    pub fn parse(s: &str) -> Result<Self> {
        let mut r = Self::default();
        for item in s.split(',').map(str::trim) {
            match item {
                "" => bail!("--watch {s:?}: an empty item"),
                "new" => r.new = true,
                "unknown" => r.unknown = true,
                _ => {
                    let pfn = match item.strip_prefix("0x").or_else(|| item.strip_prefix("0X")) {
                        Some(hex) => u64::from_str_radix(hex, 16),
                        None => item.parse(),
                    }
                    .map_err(|_| {
                        anyhow!("--watch {s:?}: {item:?} is not a PFN, `new` or `unknown`")
                    })?;
                    if !r.pfns.contains(&pfn) {
                        r.pfns.push(pfn);
                    }
                }
            }
        }
        Ok(r)
    }

    /// In the user's words, for the log.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.pfns.iter().map(|p| format!("{p:#x}")).collect();
        if self.new {
            parts.push("each new device page".into());
        }
        if self.unknown {
            parts.push("stuck pages without a named holder".into());
        }
        parts.join(", ")
    }
}

/// The watch of a session, as asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub request: Request,
    /// Rewritten with the armed pages (`PFN since_ns` lines) each time
    /// they change (`--watch-ready`).
    pub ready_file: Option<PathBuf>,
    /// `offsetof(struct page, _refcount)`.
    pub off_refcount: u32,
    /// Say what is armed on stdout too (headless; the TUI owns the
    /// terminal: the log only).
    pub print: bool,
}

/// One armed page: its breakpoints (one per CPU), open as long as it is
/// watched.
struct Armed {
    _fds: Vec<OwnedFd>,
}

/// The watch of a live session.
pub struct Watcher {
    request: Request,
    prog_fd: ProgramFd,
    last: BpfHashMap<MapData, u64, WatchLast>,
    off_refcount: u64,
    cpus: Vec<u32>,
    slots: slots::Slots,
    armed: HashMap<u64, Armed>,
    /// Hits of each armed page at the last look.
    hits: HashMap<u64, u32>,
    /// Pages already asked for (`new`, `unknown`).
    asked: HashSet<u64>,
    /// Written with the armed PFNs each time they change (`--watch-ready`).
    ready_file: Option<PathBuf>,
    /// Why the last arming failed, said once.
    said: HashSet<String>,
    /// Print on stdout too.
    print: bool,
    /// Pages the user stopped watching (the TUI's `w`): `unknown` does
    /// not ask for them again.
    dropped: HashSet<u64>,
    /// Why a page could not be watched, by PFN (the TUI says it).
    failed: HashMap<u64, String>,
}

/// [`Watcher::nothing_to_watch`]: `failed` gives why each page could not
/// be watched.
fn nothing_to_watch(r: &Request, failed: &HashMap<u64, String>) -> Option<String> {
    if r.new || r.unknown || r.pfns.is_empty() {
        return None;
    }
    let why: Option<Vec<String>> = r
        .pfns
        .iter()
        .map(|p| failed.get(p).map(|w| format!("{p:#x}: {w}")))
        .collect();
    why.map(|w| w.join("; "))
}

impl Watcher {
    /// Loads the watch program and takes its map; nothing is armed yet.
    pub fn new(ebpf: &mut Ebpf, opts: Options) -> Result<Self> {
        let Options {
            request,
            ready_file,
            off_refcount,
            print,
        } = opts;
        let prog: &mut PerfEvent = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| anyhow!("{PROGRAM} missing from the kernel object"))?
            .try_into()
            .context("the watch program is not a perf event program")?;
        prog.load().context("load the watch program (perf event)")?;
        let prog_fd = prog
            .fd()
            .context("the watch program's descriptor")?
            .try_clone()
            .context("duplicate the watch program's descriptor")?;
        let last = BpfHashMap::try_from(
            ebpf.take_map("WATCH_LAST")
                .ok_or_else(|| anyhow!("WATCH_LAST missing from the kernel object"))?,
        )
        .context("WATCH_LAST is not a hash map")?;
        let cpus = aya::util::online_cpus()
            .map_err(|(path, e)| anyhow!("read the online CPUs ({path}): {e}"))?;
        let mut w = Self {
            request,
            prog_fd,
            last,
            off_refcount: u64::from(off_refcount),
            cpus,
            slots: slots::Slots::new(WATCH_PAGES as usize, IDLE_SECS * 1_000_000_000),
            armed: HashMap::new(),
            hits: HashMap::new(),
            asked: HashSet::new(),
            ready_file,
            said: HashSet::new(),
            print,
            dropped: HashSet::new(),
            failed: HashMap::new(),
        };
        for pfn in w.request.pfns.clone() {
            w.slots.ask(pfn, false);
        }
        Ok(w)
    }

    /// Once a second: asks for the pages `new`/`unknown` want, notes the
    /// pages written to, then disarms and arms as the policy says. Returns
    /// the pages whose watch changed.
    pub fn tick(
        &mut self,
        tracker: &Tracker,
        mut peeker: Option<&mut Peeker>,
        now_ns: u64,
    ) -> Vec<Change> {
        if self.request.new || self.request.unknown {
            let mut new: Vec<(u64, u64)> = Vec::new();
            for p in tracker.pages() {
                let unnamed = self.request.unknown && p.stuck() && p.holder().is_none();
                if unnamed
                    && !self.dropped.contains(&p.pfn)
                    && !self
                        .slots
                        .armed()
                        .iter()
                        .any(|a| a.pfn == p.pfn && a.urgent)
                {
                    self.slots.ask(p.pfn, true);
                }
                // System RAM a device migration touched is no device page.
                if self.request.new
                    && p.pgmap_type != refwatch_common::pgmap::SYSTEM
                    && !self.asked.contains(&p.pfn)
                {
                    new.push((p.first_ns, p.pfn));
                }
            }
            // In the order refwatch learned of them.
            new.sort_unstable();
            for (_, pfn) in new {
                self.asked.insert(pfn);
                self.slots.ask(pfn, false);
            }
        }
        for a in self.slots.armed().to_vec() {
            if let Ok(l) = self.last.get(&a.pfn, 0) {
                let seen = self.hits.entry(a.pfn).or_insert(0);
                if l.hits != *seen {
                    *seen = l.hits;
                    self.slots.hit(a.pfn, now_ns);
                }
            }
        }
        let plan = self.slots.plan(now_ns);
        let mut changed = Vec::new();
        if plan.disarm.is_empty() && plan.arm.is_empty() {
            return changed;
        }
        for pfn in &plan.disarm {
            self.disarm(*pfn);
            changed.push(Change {
                pfn: *pfn,
                since_ns: None,
                read: None,
            });
            log::info!("watch: page {pfn:#x} saw no write for {IDLE_SECS} s and yields its slot");
        }
        for (i, &pfn) in plan.arm.iter().enumerate() {
            match self.arm(pfn, peeker.as_deref_mut()) {
                Ok(read) => {
                    let value = read.refcount;
                    // Every write from now on traps.
                    let at = crate::collector::monotonic_ns();
                    self.slots.armed_at(pfn, at);
                    changed.push(Change {
                        pfn,
                        since_ns: Some(at),
                        read: Some(read),
                    });
                    let msg = format!(
                        "refwatch: watching page {pfn:#x} (refcount {value}) on {} CPUs since {:.6} s",
                        self.cpus.len(),
                        at as f64 / 1e9
                    );
                    if self.print {
                        println!("{msg}");
                    }
                    log::info!("{msg}");
                }
                Err(ArmError::NoSlot(why)) => {
                    // The pages planned after it wait too, in their order;
                    // the capacity is what is armed then.
                    for &later in plan.arm[i + 1..].iter().rev() {
                        self.slots.no_slot(later);
                    }
                    self.slots.no_slot(pfn);
                    self.say(format!(
                        "watch: page {pfn:#x} waits: {why}; {} page(s) watched at once",
                        self.slots.capacity()
                    ));
                    break;
                }
                Err(ArmError::Page(why)) => {
                    self.slots.forget(pfn);
                    self.failed.insert(pfn, why.clone());
                    self.say(format!("watch: page {pfn:#x} cannot be watched: {why}"));
                }
            }
        }
        self.write_ready();
        changed
    }

    /// The user's ask about `pfn` (the TUI's `w`): a page armed or queued
    /// stops being watched (`false`); any other is queued (`true`), armed
    /// at the next [`Watcher::tick`] when a slot is free.
    pub fn toggle(&mut self, pfn: u64) -> bool {
        if self.slots.toggle(pfn) {
            self.dropped.remove(&pfn);
            self.failed.remove(&pfn);
            log::info!("watch: page {pfn:#x} asked for (TUI)");
            true
        } else {
            self.disarm(pfn);
            self.dropped.insert(pfn);
            self.write_ready();
            log::info!("watch: page {pfn:#x} no longer watched (asked in the TUI)");
            false
        }
    }

    /// At most `n` pages at once (free slots found by [`probe`]).
    pub fn fit(&mut self, n: usize) {
        self.slots.lower_capacity(n);
    }

    /// When only PFNs were asked for (no `new`, no `unknown`) and none of
    /// them can be watched: why, page by page. Nothing would ever be
    /// watched: `refwatch watch` ends with this instead of waiting.
    pub fn nothing_to_watch(&self) -> Option<String> {
        nothing_to_watch(&self.request, &self.failed)
    }

    /// Why `pfn` could not be watched, when its arming failed.
    pub fn failed(&self, pfn: u64) -> Option<&str> {
        self.failed.get(&pfn).map(String::as_str)
    }

    /// Armed pages (PFN, since, writes seen), queued pages, and how many
    /// fit at once.
    pub fn status(&self) -> Status {
        let armed = self
            .slots
            .armed()
            .iter()
            .map(|a| {
                (
                    a.pfn,
                    a.since_ns,
                    self.hits.get(&a.pfn).copied().unwrap_or(0),
                )
            })
            .collect();
        Status {
            armed,
            queued: self.slots.waiting_pfns(),
            slots: self.slots.capacity(),
        }
    }

    /// Logs `msg` the first time.
    fn say(&mut self, msg: String) {
        if self.said.insert(msg.clone()) {
            if self.print {
                println!("refwatch: {msg}");
            }
            log::warn!("{msg}");
        }
    }

    /// The armed PFNs, with when each was armed (CLOCK_MONOTONIC ns).
    pub fn armed(&self) -> Vec<(u64, u64)> {
        self.slots
            .armed()
            .iter()
            .map(|a| (a.pfn, a.since_ns))
            .collect()
    }

    fn write_ready(&self) {
        let Some(f) = &self.ready_file else { return };
        let text: String = self
            .armed()
            .iter()
            .map(|(pfn, since)| format!("{pfn:#x} {since}\n"))
            .collect();
        if let Err(e) = std::fs::write(f, text) {
            log::warn!("watch: write {}: {e}", f.display());
        }
    }

    /// Reads the page, writes what the program needs to know, opens the
    /// breakpoints on every CPU. Returns the refcount read before.
    fn arm(&mut self, pfn: u64, peeker: Option<&mut Peeker>) -> Result<PagePeek, ArmError> {
        let p = read(pfn, peeker)?;
        let addr = p.page + self.off_refcount;
        self.last
            .insert(
                pfn,
                WatchLast {
                    refcount: p.refcount,
                    hits: 0,
                },
                0,
            )
            .map_err(|e| ArmError::Page(format!("WATCH_LAST: {e}")))?;
        self.hits.insert(pfn, 0);
        let mut fds = Vec::with_capacity(self.cpus.len());
        for &cpu in &self.cpus {
            let fd = perf::open(addr, cpu).map_err(|e| {
                let why = perf::why(&e);
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    ArmError::NoSlot(format!("CPU {cpu}: {why}"))
                } else {
                    ArmError::Page(format!("CPU {cpu}: {why}"))
                }
            })?;
            perf::attach(&fd, self.prog_fd.as_fd_raw())
                .map_err(|e| ArmError::Page(format!("attach the watch program: {e}")))?;
            fds.push(fd);
        }
        self.armed.insert(pfn, Armed { _fds: fds });
        Ok(p)
    }

    fn disarm(&mut self, pfn: u64) {
        // Closing the descriptors frees the debug registers.
        self.armed.remove(&pfn);
        let _ = self.last.remove(&pfn);
        self.hits.remove(&pfn);
    }
}

/// A page whose watch changed.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub pfn: u64,
    /// Armed at (CLOCK_MONOTONIC ns), or `None`: disarmed.
    pub since_ns: Option<u64>,
    /// The page's state read just before arming.
    pub read: Option<PagePeek>,
}

/// Why a page was not armed.
enum ArmError {
    /// No debug register free: the page waits.
    NoSlot(String),
    /// This page cannot be watched.
    Page(String),
}

/// The state of `pfn` now: a device page's head, with its address.
fn read(pfn: u64, peeker: Option<&mut Peeker>) -> Result<PagePeek, ArmError> {
    let peeker = peeker.ok_or_else(|| {
        ArmError::Page("no page reader attached: its address is not known".into())
    })?;
    let p = peeker
        .read(pfn, 1)
        .map_err(|e| ArmError::Page(format!("read the page: {e:#}")))?
        .into_iter()
        .next()
        .ok_or_else(|| ArmError::Page("read the page: no answer".into()))?;
    if p.valid == 0 || p.page == 0 {
        return Err(ArmError::Page("not a device page".into()));
    }
    if p.head_pfn != pfn {
        return Err(ArmError::Page(format!(
            "a tail page of the folio at {:#x}: watch that one",
            p.head_pfn
        )));
    }
    Ok(p)
}

/// The raw descriptor of a program, for the ioctl.
trait RawProgFd {
    fn as_fd_raw(&self) -> i32;
}

impl RawProgFd for ProgramFd {
    fn as_fd_raw(&self) -> i32 {
        use std::os::fd::AsFd as _;
        self.as_fd().as_raw_fd()
    }
}

/// One event as a line (`refwatch watch`): time, page, what happened to
/// its refcount, who, where (by symbol; the source is `watchpoint` for the
/// watchpoint's events, else the hooked function).
pub fn event_line(ev: &crate::event::PageEvent, symbol: &str, frames: &[String]) -> String {
    let rc = match (ev.refcount_before, ev.refcount_after) {
        (Some(b), Some(a)) => format!("{b}→{a}"),
        (None, Some(a)) => format!("→{a}"),
        (Some(b), None) => format!("{b}→?"),
        (None, None) => "?".into(),
    };
    let stack = if frames.is_empty() {
        "no stack".to_string()
    } else {
        frames
            .iter()
            .take(6)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ← ")
    };
    format!(
        "{:.6} pfn {:#x} {} {rc} by {}[{}] via {symbol}: {stack}",
        ev.ts_ns as f64 / 1e9,
        ev.pfn,
        ev.kind.name(),
        ev.comm,
        ev.tgid
    )
}

/// A kernel variable to try breakpoints on ([`probe`]).
pub fn probe_address(syms: &crate::symbols::kallsyms::Kallsyms) -> Option<u64> {
    ["jiffies_64", "jiffies"]
        .iter()
        .find_map(|s| syms.address(s))
}

/// Whether hardware watchpoints can be created here, for `refwatch
/// probes`: how many pages fit at once, or why none. Opens breakpoints on
/// the 4 bytes at `addr` on every online CPU (never enabled) and closes
/// them again.
pub fn probe(addr: u64) -> Result<usize, String> {
    let cpus = aya::util::online_cpus().map_err(|(path, e)| format!("{path}: {e}"))?;
    let mut fit = usize::MAX;
    for cpu in cpus {
        fit = fit.min(perf::free_slots(addr, cpu, 8)?);
    }
    Ok(if fit == usize::MAX { 0 } else { fit })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watchpoint put as `refwatch watch` prints it (synthetic event).
    #[test]
    fn an_event_is_one_line_by_symbol() {
        let mut ev = crate::snapshot::event(&PagePeek::default(), 1_500_000_000, 42);
        ev.pfn = 0x48200;
        ev.kind = crate::event::Kind::Put;
        ev.comm = "workload".into();
        ev.refcount_before = Some(2);
        ev.refcount_after = Some(1);
        let frames = [
            "__put_devmap_managed_folio_refs+0x22".to_string(),
            "pipe_read+0x1db".to_string(),
        ];
        assert_eq!(
            event_line(&ev, SYMBOL, &frames),
            "1.500000 pfn 0x48200 put 2→1 by workload[42] via watchpoint: __put_devmap_managed_folio_refs+0x22 ← pipe_read+0x1db"
        );
        assert!(event_line(&ev, SYMBOL, &[]).ends_with("via watchpoint: no stack"));
    }

    /// `refwatch watch` ends, saying why page by page, only when every PFN
    /// asked for failed for a reason of its own (a page waiting for a slot
    /// has not failed).
    #[test]
    fn nothing_to_watch_only_when_every_page_failed() {
        let req = Request::parse("0x10,0x20").expect("parse");
        let mut failed = HashMap::new();
        assert_eq!(nothing_to_watch(&req, &failed), None);
        failed.insert(0x10, "not a device page".to_string());
        assert_eq!(nothing_to_watch(&req, &failed), None);
        failed.insert(0x20, "a tail page".to_string());
        assert_eq!(
            nothing_to_watch(&req, &failed).as_deref(),
            Some("0x10: not a device page; 0x20: a tail page")
        );
        for more in ["0x10,0x20,new", "0x10,0x20,unknown"] {
            let req = Request::parse(more).expect("parse");
            assert_eq!(nothing_to_watch(&req, &failed), None, "{more}");
        }
    }

    #[test]
    fn watch_requests_parse() {
        let r = Request::parse("0x40000, 262145,new").expect("valid");
        assert_eq!(r.pfns, vec![0x40000, 262145]);
        assert!(r.new && !r.unknown);
        assert!(Request::parse("unknown").expect("valid").unknown);
        for bad in ["", "0x", "news", "1,,2", "-1"] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Request::parse("5,new,unknown").expect("valid").describe(),
            "0x5, each new device page, stuck pages without a named holder"
        );
    }
}
