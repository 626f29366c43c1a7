//! Version 2 of the recording: events as compact lines that refer to
//! tables written once per file (stacks, tasks, hooked functions, page map
//! owners), instead of spelling every stack out in every event.
//!
//! Every line is still one JSON value (a crash leaves a file readable up to
//! its last complete line). After the header, a line is one of:
//!
//! - a table entry, an array whose first element is its tag:
//!   `["s",ID,["frame",…]]` a stack (`symbol+0xoff`, innermost first),
//!   `["t",ID,PID,TGID,"comm"]` a task (`["t",ID,PID,TGID,"comm","cgroup"]`
//!   where its process's cgroup was read), `["f",ID,"symbol"]` a hooked
//!   function, `["o",ID,"owner"]` a page map owner, `["r"]` every table
//!   forgotten (the writer's tables are bounded; ids are defined again
//!   before they are used);
//! - an event, an array of numbers:
//!   `[DT,PFN,KIND,BEFORE,AFTER,MAPCOUNT,PGMAP,NR_PAGES,F,S,T,CPU]` then,
//!   only as far as one of them is not its default,
//!   `RET,O,[AUX,AUX2],FLAGS,"page"`. `DT` is the time since the previous
//!   event of the file (the header's start for the first), zigzag-coded
//!   ([`zigzag`]: 2n for n ≥ 0, −2n − 1 below; events of several CPUs
//!   interleave, so it may be negative), `KIND` and `PGMAP` the
//!   stable numbers of `refwatch_common::kind` and `refwatch_common::pgmap`,
//!   `F`/`S`/`T`/`O` table ids (`S` null where no stack was taken, `O` null
//!   where the owner is not known), `[AUX,AUX2]` a migration's packed
//!   details (`refwatch_common::migrate`), `FLAGS` 1 = late, 2 = forking,
//!   4 = the stack was cut short on purpose,
//!   `"page"` the raw `struct page` address (only with `--raw-pointers`);
//! - a `tick`, `gap` or `end` object, as in version 1.
//!
//! An id is defined before the first event that uses it, in the same file.

use std::rc::Rc;

use anyhow::{Result, bail};
use serde::Deserialize;

mod line;

use line::{Line, LineBuf};

use crate::{
    event::{Comm, Kind, Migration, PageEvent, StackTaken, pgmap_from_name, pgmap_name},
    fasthash::FastMap,
    format::json::{Format, Frames, JsonEvent},
    symbols::{Named, Symbolizer},
};

/// Entries a writer keeps per table before it forgets them all (`["r"]`).
pub const TABLE_CAP: usize = 1 << 16;

/// Bytes of table entries a writer writes before it forgets them all.
pub const TABLE_BYTES: usize = 64 << 20;

/// Largest id a reader accepts: a file defines at most this many entries
/// of a table between two resets.
pub const MAX_ID: u64 = 1 << 20;

/// Bytes of table entries a reader holds between two resets (four times
/// what a writer writes): beyond, the file is refused.
pub const MAX_TABLE_BYTES: usize = 4 * TABLE_BYTES;

/// Event flag bits.
const LATE: u32 = 1;
const FORKING: u32 = 2;
const STACK_SHORT: u32 = 4;

/// Functions remembered by name without a lookup of the table: more
/// than the hooks one path alternates between (a get, a put, a free).
const RECENT_FUNCTIONS: usize = 4;

/// One table's ids in the file being written.
#[derive(Debug)]
struct Ids<K> {
    map: FastMap<K, u64>,
    next: u64,
}

impl<K> Default for Ids<K> {
    fn default() -> Self {
        Self {
            map: FastMap::default(),
            next: 0,
        }
    }
}

/// The writer's side: which table entries the current file has, and the
/// time of its last event.
#[derive(Debug, Default)]
pub struct Encoder {
    prev_ts: u64,
    /// Stacks by [`Named::id`] (the live path) …
    stacks_live: Ids<u64>,
    /// … and by their frames (events read back or carried over).
    stacks_named: Ids<Rc<[String]>>,
    /// Shared id counter of the two stack maps.
    next_stack: u64,
    tasks: Ids<(u32, u32, Comm)>,
    functions: Ids<Rc<str>>,
    owners_live: Ids<u64>,
    owners_named: Ids<Box<str>>,
    next_owner: u64,
    /// Bytes of table entries written since the last reset.
    table_bytes: usize,
    /// `table_bytes` when [`Self::bound`] last looked at the tables.
    bounded_at: usize,
    /// The last event's task, function and stack, with their ids: runs
    /// of events come from one place.
    last_task: Option<(u32, u32, Comm, u64)>,
    /// The functions of the last events, with their ids, the oldest
    /// replaced: a page's get, put and free alternate between hooks.
    recent_functions: [Option<(Rc<str>, u64)>; RECENT_FUNCTIONS],
    /// The slot of `recent_functions` replaced next.
    recent_next: usize,
    /// The live path's function names by their address: a name that is
    /// `'static` never changes, so the same address and length are the
    /// same name, found without reading it (most events).
    recent_static: [Option<(&'static str, u64)>; RECENT_FUNCTIONS],
    /// The slot of `recent_static` replaced next.
    static_next: usize,
    last_stack: Option<(u64, u64)>,
    /// The last event's page map owner (its address) with its id: a run
    /// of events is on one page map.
    last_owner: Option<(u64, u64)>,
    /// The event line being written (kept: no clearing per event).
    line: LineBuf,
}

/// What an event line says, from either path.
struct Fields<'a> {
    ts_ns: u64,
    pfn: u64,
    kind: u32,
    before: Option<i32>,
    after: Option<i32>,
    mapcount: Option<i32>,
    pgmap: u32,
    nr_pages: u32,
    function: u64,
    stack: Option<u64>,
    task: u64,
    cpu: u32,
    ret: Option<i64>,
    owner: Option<u64>,
    migration: Option<(u64, u64)>,
    flags: u32,
    page: Option<&'a str>,
}

impl Encoder {
    /// Starts a new file whose header says `started_ns`: no table entry
    /// is defined in it yet.
    pub fn start(&mut self, started_ns: u64) {
        *self = Self {
            prev_ts: started_ns,
            ..Self::default()
        };
    }

    /// Forgets every table when one is full, writing the reset line.
    #[inline(always)]
    fn bound(&mut self, out: &mut Vec<u8>) {
        // Every new entry is written, so unchanged bytes mean no table
        // grew since the last look (most events: one compare).
        if self.table_bytes != self.bounded_at {
            self.bound_grown(out);
        }
    }

    /// [`Self::bound`] after a table grew.
    #[cold]
    #[inline(never)]
    fn bound_grown(&mut self, out: &mut Vec<u8>) {
        self.bounded_at = self.table_bytes;
        let full = self.stacks_live.map.len() + self.stacks_named.map.len() >= TABLE_CAP
            || self.tasks.map.len() >= TABLE_CAP
            || self.functions.map.len() >= TABLE_CAP
            || self.owners_live.map.len() + self.owners_named.map.len() >= TABLE_CAP
            || self.table_bytes >= TABLE_BYTES;
        if full {
            let prev = self.prev_ts;
            self.start(prev);
            out.extend_from_slice(b"[\"r\"]\n");
        }
    }

    /// Appends the line(s) of a live event to `out`: table entries it
    /// needs first, then the event. `stack` is the event's stack as named
    /// by the collector's [`crate::symbols::StackTable`] (`None`: no stack
    /// was taken); `cgroup` is its process's, for the task's entry.
    #[expect(
        clippy::too_many_arguments,
        reason = "the event and what names it, as the collector has them"
    )]
    pub fn live_event(
        &mut self,
        ev: &PageEvent,
        function: &'static str,
        stack: Option<&Named>,
        syms: &mut Symbolizer<'_>,
        fmt: Format,
        cgroup: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        self.bound(out);
        let at = out.len();
        let stack = stack.map(|n| {
            if let Some((named, id)) = self.last_stack
                && named == n.id
            {
                return id;
            }
            if let Some(id) = self.stacks_live.map.get(&n.id) {
                self.last_stack = Some((n.id, *id));
                return *id;
            }
            let id = self.next_stack;
            self.next_stack += 1;
            self.stacks_live.map.insert(n.id, id);
            self.last_stack = Some((n.id, id));
            write_stack(out, id, &n.frames);
            id
        });
        let owner = (ev.owner != 0).then(|| {
            if let Some((addr, id)) = self.last_owner
                && addr == ev.owner
            {
                return id;
            }
            if let Some(id) = self.owners_live.map.get(&ev.owner) {
                self.last_owner = Some((ev.owner, *id));
                return *id;
            }
            let id = self.next_owner;
            self.next_owner += 1;
            self.owners_live.map.insert(ev.owner, id);
            self.last_owner = Some((ev.owner, id));
            let name = syms.owner_name(ev.owner, fmt).unwrap_or_default();
            write_named(out, b"o", id, &name);
            id
        });
        let task = self.task(ev.pid, ev.tgid, &ev.comm, cgroup, out);
        let function = self.static_function(function, out);
        self.table_bytes += out.len() - at;
        let page = fmt.raw_pointers.then(|| format!("{:#x}", ev.page));
        let f = Fields {
            ts_ns: ev.ts_ns,
            pfn: ev.pfn,
            kind: ev.kind.raw(),
            before: ev.refcount_before,
            after: ev.refcount_after,
            mapcount: ev.mapcount,
            pgmap: ev.pgmap_type,
            nr_pages: ev.nr_pages,
            function,
            stack,
            task,
            cpu: ev.cpu,
            ret: ev
                .ret
                .filter(|r| fmt.raw_pointers || !refwatch_common::kaddr::is_kernel_address_i64(*r)),
            owner,
            migration: ev.migration().map(|mut m| {
                if !fmt.raw_pointers
                    && m.dst_pfn
                        .is_some_and(refwatch_common::kaddr::is_kernel_address)
                {
                    m.dst_pfn = None;
                }
                m.to_aux()
            }),
            flags: flags(ev.late, ev.forking, ev.stack_taken == StackTaken::Short),
            page: page.as_deref(),
        };
        self.event_line(&f, out);
    }

    /// Appends the line(s) of an event in its exported form (carried over
    /// at a rotation, read from the kernel, or read back). `None` for an
    /// event name this version does not know.
    pub fn json_event(&mut self, j: &JsonEvent, out: &mut Vec<u8>) -> Option<()> {
        let kind = Kind::from_name(&j.event)?.raw();
        self.bound(out);
        let at = out.len();
        let stack = j.stack.0.as_deref().map(|frames| {
            if let Some(id) = self.stacks_named.map.get(frames) {
                return *id;
            }
            let id = self.next_stack;
            self.next_stack += 1;
            write_stack(out, id, frames);
            self.stacks_named.map.insert(frames.into(), id);
            id
        });
        let owner = j.owner.as_deref().map(|name| {
            if let Some(id) = self.owners_named.map.get(name) {
                return *id;
            }
            let id = self.next_owner;
            self.next_owner += 1;
            self.owners_named.map.insert(name.into(), id);
            write_named(out, b"o", id, name);
            id
        });
        let comm = Comm::from(j.comm.as_str());
        let task = self.task(j.pid, j.tgid, &comm, j.cgroup.as_deref(), out);
        let function = self.function(&j.symbol, out);
        self.table_bytes += out.len() - at;
        let f = Fields {
            ts_ns: j.ts_ns,
            pfn: j.pfn,
            kind,
            before: j.refcount_before,
            after: j.refcount_after,
            mapcount: j.mapcount,
            pgmap: pgmap_from_name(&j.pgmap_type).unwrap_or(0),
            nr_pages: j.nr_pages,
            function,
            stack,
            task,
            cpu: j.cpu,
            ret: j.ret,
            owner,
            migration: j.migration.map(|m| m.to_aux()),
            flags: flags(j.late, j.forking, j.stack_short),
            page: j.page.as_deref(),
        };
        self.event_line(&f, out);
        Some(())
    }

    fn task(
        &mut self,
        pid: u32,
        tgid: u32,
        comm: &Comm,
        cgroup: Option<&str>,
        out: &mut Vec<u8>,
    ) -> u64 {
        if let Some((p, t, c, id)) = &self.last_task
            && (*p, *t) == (pid, tgid)
            && c == comm
        {
            return *id;
        }
        let key = (pid, tgid, comm.clone());
        if let Some(id) = self.tasks.map.get(&key) {
            self.last_task = Some((pid, tgid, comm.clone(), *id));
            return *id;
        }
        self.last_task = Some((pid, tgid, comm.clone(), self.tasks.next));
        let id = self.tasks.next;
        self.tasks.next += 1;
        out.extend_from_slice(b"[\"t\",");
        num(out, id);
        out.push(b',');
        num(out, pid);
        out.push(b',');
        num(out, tgid);
        out.push(b',');
        string(out, comm.as_str());
        if let Some(c) = cgroup {
            out.push(b',');
            string(out, c);
        }
        out.extend_from_slice(b"]\n");
        self.tasks.map.insert(key, id);
        id
    }

    /// [`Self::function`] for a `'static` name, by its address first.
    fn static_function(&mut self, name: &'static str, out: &mut Vec<u8>) -> u64 {
        for (known, id) in self.recent_static.iter().flatten() {
            if std::ptr::eq(*known, name) {
                return *id;
            }
        }
        let id = self.function(name, out);
        if let Some(s) = self.recent_static.get_mut(self.static_next) {
            *s = Some((name, id));
        }
        self.static_next = (self.static_next + 1) % RECENT_FUNCTIONS;
        id
    }

    fn function(&mut self, name: &str, out: &mut Vec<u8>) -> u64 {
        for (known, id) in self.recent_functions.iter().flatten() {
            // Not `==`, which is the C library's `bcmp`: see `crate::bytes`.
            if crate::bytes::same(known.as_bytes(), name.as_bytes()) {
                return *id;
            }
        }
        let (key, id) = match self.functions.map.get_key_value(name) {
            Some((key, id)) => (Rc::clone(key), *id),
            None => {
                let id = self.functions.next;
                self.functions.next += 1;
                write_named(out, b"f", id, name);
                let key: Rc<str> = name.into();
                self.functions.map.insert(Rc::clone(&key), id);
                (key, id)
            }
        };
        self.recent_functions[self.recent_next] = Some((key, id));
        self.recent_next = (self.recent_next + 1) % RECENT_FUNCTIONS;
        id
    }

    fn event_line(&mut self, f: &Fields<'_>, out: &mut Vec<u8>) {
        let dt = zigzag(f.ts_ns.wrapping_sub(self.prev_ts) as i64);
        self.prev_ts = f.ts_ns;
        let l = &mut Line::new(&mut self.line);
        l.byte(b'[');
        l.u(dt);
        l.next_u(f.pfn);
        l.next_u(f.kind.into());
        l.next_opt(f.before.map(i64::from));
        l.next_opt(f.after.map(i64::from));
        l.next_opt(f.mapcount.map(i64::from));
        l.next_u(f.pgmap.into());
        l.next_u(f.nr_pages.into());
        l.next_u(f.function);
        match f.stack {
            Some(s) => l.next_u(s),
            None => {
                l.byte(b',');
                l.null();
            }
        }
        l.next_u(f.task);
        l.next_u(f.cpu.into());
        // The optional tail, as far as a value is not its default.
        let tail = if f.page.is_some() {
            5
        } else if f.flags != 0 {
            4
        } else if f.migration.is_some() {
            3
        } else if f.owner.is_some() {
            2
        } else if f.ret.is_some() {
            1
        } else {
            0
        };
        if tail >= 1 {
            l.next_opt(f.ret);
        }
        if tail >= 2 {
            match f.owner {
                Some(o) => l.next_u(o),
                None => {
                    l.byte(b',');
                    l.null();
                }
            }
        }
        if tail >= 3 {
            l.byte(b',');
            match f.migration {
                Some((a, b)) => {
                    l.byte(b'[');
                    l.u(a);
                    l.byte(b',');
                    l.u(b);
                    l.byte(b']');
                }
                None => l.null(),
            }
        }
        if tail >= 4 {
            l.next_u(f.flags.into());
        }
        match f.page {
            Some(p) => {
                out.extend_from_slice(l.as_slice());
                out.push(b',');
                string(out, p);
                out.extend_from_slice(b"]\n");
            }
            None => {
                l.byte(b']');
                l.byte(b'\n');
                out.extend_from_slice(l.as_slice());
            }
        }
    }
}

/// A signed delta as an unsigned number: 0, −1, 1, −2, 2 … → 0, 1, 2, 3,
/// 4 … Events of several CPUs interleave, so deltas go negative by
/// microseconds; written as is, a delta of −5000 would read as a kernel
/// address (every number from −2^56 to −4096 does, to a scan for leaked
/// pointers), and no number refwatch writes may.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn flags(late: bool, forking: bool, short: bool) -> u32 {
    (if late { LATE } else { 0 })
        | (if forking { FORKING } else { 0 })
        | (if short { STACK_SHORT } else { 0 })
}

#[inline]
fn num(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_named(out: &mut Vec<u8>, tag: &[u8], id: u64, name: &str) {
    out.extend_from_slice(b"[\"");
    out.extend_from_slice(tag);
    out.extend_from_slice(b"\",");
    num(out, id);
    out.push(b',');
    string(out, name);
    out.extend_from_slice(b"]\n");
}

fn write_stack(out: &mut Vec<u8>, id: u64, frames: &[String]) {
    out.extend_from_slice(b"[\"s\",");
    num(out, id);
    out.extend_from_slice(b",[");
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, f);
    }
    out.extend_from_slice(b"]]\n");
}

/// An event line's fields as written.
#[derive(Deserialize)]
struct EventLine {
    dt: u64,
    pfn: u64,
    kind: u32,
    before: Option<i32>,
    after: Option<i32>,
    mapcount: Option<i32>,
    pgmap: u32,
    nr_pages: u32,
    function: u64,
    stack: Option<u64>,
    task: u64,
    cpu: u32,
    #[serde(default)]
    ret: Option<i64>,
    #[serde(default)]
    owner: Option<u64>,
    #[serde(default)]
    migration: Option<(u64, u64)>,
    #[serde(default)]
    flags: u32,
    #[serde(default)]
    page: Option<String>,
}

/// A task as its table entry defines it.
#[derive(Debug, Clone)]
struct Task {
    pid: u32,
    tgid: u32,
    comm: String,
    cgroup: Option<String>,
}

impl Task {
    fn new(pid: u32, tgid: u32, comm: String, cgroup: Option<String>) -> Self {
        Self {
            pid,
            tgid,
            comm,
            cgroup,
        }
    }
}

/// The reader's side: the tables defined so far in the file.
#[derive(Debug, Default)]
pub struct Decoder {
    prev_ts: u64,
    stacks: FastMap<u64, Rc<[String]>>,
    tasks: FastMap<u64, Task>,
    functions: FastMap<u64, String>,
    owners: FastMap<u64, String>,
    /// Bytes of table entries read since the last reset.
    table_bytes: usize,
}

/// A table entry as written.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Reset((String,)),
    Named(String, u64, String),
    Stack(String, u64, Vec<String>),
    Task(String, u64, u32, u32, String),
    TaskInCgroup(String, u64, u32, u32, String, String),
}

fn defined<T: Clone>(table: &FastMap<u64, T>, id: u64, what: &str) -> Result<T> {
    match table.get(&id) {
        Some(v) => Ok(v.clone()),
        None => bail!("{what} {id} is used before it is defined"),
    }
}

impl Decoder {
    /// A decoder for a file whose header says `started_ns`.
    pub fn new(started_ns: u64) -> Self {
        Self {
            prev_ts: started_ns,
            ..Self::default()
        }
    }

    /// Decodes a compact line (one that starts with `[`): a table entry
    /// (`None`) or an event. The error says what is wrong, without the
    /// line number (the caller adds it).
    pub fn line(&mut self, bytes: &[u8]) -> Result<Option<JsonEvent>> {
        let table_entry = bytes.get(1) == Some(&b'"');
        if table_entry {
            self.table_bytes += bytes.len();
            if self.table_bytes > MAX_TABLE_BYTES {
                bail!("the tables hold more than {MAX_TABLE_BYTES} bytes: not written by refwatch");
            }
            self.entry(serde_json::from_slice(bytes)?)?;
            return Ok(None);
        }
        let e: EventLine = serde_json::from_slice(bytes)?;
        let dt = unzigzag(e.dt);
        let Some(ts_ns) = self.prev_ts.checked_add_signed(dt) else {
            bail!("time {dt} ns after {} is out of range", self.prev_ts);
        };
        let Some(kind) = Kind::from_raw(e.kind) else {
            bail!("unknown event kind {}", e.kind);
        };
        let task = defined(&self.tasks, e.task, "task")?;
        let symbol = defined(&self.functions, e.function, "function")?;
        let stack = match e.stack {
            Some(id) => Frames(Some(defined(&self.stacks, id, "stack")?.to_vec())),
            None => Frames(None),
        };
        let owner = match e.owner {
            Some(id) => Some(defined(&self.owners, id, "owner")?),
            None => None,
        };
        self.prev_ts = ts_ns;
        Ok(Some(JsonEvent {
            ts_ns,
            cpu: e.cpu,
            pid: task.pid,
            tgid: task.tgid,
            comm: task.comm,
            pfn: e.pfn,
            event: kind.name().to_string(),
            refcount_before: e.before,
            refcount_after: e.after,
            mapcount: e.mapcount,
            pgmap_type: pgmap_name(e.pgmap).to_string(),
            nr_pages: e.nr_pages,
            symbol,
            ret: e.ret,
            stack,
            stack_short: e.flags & STACK_SHORT != 0,
            owner,
            migration: e.migration.map(|(a, b)| Migration::from_aux(a, b)),
            late: e.flags & LATE != 0,
            forking: e.flags & FORKING != 0,
            page: e.page,
            cgroup: task.cgroup,
        }))
    }

    fn entry(&mut self, e: Entry) -> Result<()> {
        let id_ok = |id: u64| {
            if id >= MAX_ID {
                bail!("table id {id} is beyond {MAX_ID}");
            }
            Ok(())
        };
        match e {
            Entry::Reset((tag,)) if tag == "r" => {
                self.table_bytes = 0;
                self.stacks.clear();
                self.tasks.clear();
                self.functions.clear();
                self.owners.clear();
            }
            Entry::Named(tag, id, name) if tag == "f" || tag == "o" => {
                id_ok(id)?;
                let table = if tag == "f" {
                    &mut self.functions
                } else {
                    &mut self.owners
                };
                table.insert(id, name);
            }
            Entry::Stack(tag, id, frames) if tag == "s" => {
                id_ok(id)?;
                self.stacks.insert(id, frames.into());
            }
            Entry::Task(tag, id, pid, tgid, comm) if tag == "t" => {
                id_ok(id)?;
                self.tasks.insert(id, Task::new(pid, tgid, comm, None));
            }
            Entry::TaskInCgroup(tag, id, pid, tgid, comm, cgroup) if tag == "t" => {
                id_ok(id)?;
                self.tasks
                    .insert(id, Task::new(pid, tgid, comm, Some(cgroup)));
            }
            _ => bail!("not a table entry of this version"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
