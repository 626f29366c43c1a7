//! Events read back from a recording, turned into the tracker's events
//! without keeping every event: what the tracker does not keep (function,
//! stack, owner, page-map type name, raw page, migration) is interned once
//! per distinct value and travels through the tracker as a one-frame
//! [`Stack`] naming the interned entry, so holders and histories lead back
//! to it. Bounded: at most [`MAX_DETAILS`] distinct entries; events beyond
//! that share one entry that says so.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
};

use crate::{
    event::{Migration, PageEvent, Stack},
    format::json::{Frames, JsonEvent, page_event_with},
    plan::hook_of_symbol,
    symbols::{Role, role_of},
};

/// Most distinct (function, stack, owner, ...) entries kept.
pub const MAX_DETAILS: usize = 1 << 16;

/// What an event says that the tracker's [`PageEvent`] does not keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Detail {
    symbol: String,
    stack: Frames,
    stack_short: bool,
    owner: Option<String>,
    pgmap_type: String,
    page: Option<String>,
    migration: Option<MigrationKey>,
}

/// [`Migration`] as a hashable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MigrationKey(u64, u64, Option<u64>, Option<u32>);

fn migration_key(m: &Migration) -> MigrationKey {
    let (a, b) = m.to_aux();
    MigrationKey(a, b, m.dst_pfn, m.extra_count)
}

/// The borrowed form of a [`Detail`], for lookups without copying.
#[derive(Hash)]
struct DetailRef<'a> {
    symbol: &'a str,
    stack: Option<&'a [String]>,
    stack_short: bool,
    owner: Option<&'a str>,
    pgmap_type: &'a str,
    page: Option<&'a str>,
    migration: Option<MigrationKey>,
}

impl DetailRef<'_> {
    fn of(j: &JsonEvent) -> DetailRef<'_> {
        DetailRef {
            symbol: &j.symbol,
            stack: j.stack.0.as_deref(),
            stack_short: j.stack_short,
            owner: j.owner.as_deref(),
            pgmap_type: &j.pgmap_type,
            page: j.page.as_deref(),
            migration: j.migration.as_ref().map(migration_key),
        }
    }

    fn matches(&self, d: &Detail) -> bool {
        self.symbol == d.symbol
            && self.stack == d.stack.0.as_deref()
            && self.stack_short == d.stack_short
            && self.owner == d.owner.as_deref()
            && self.pgmap_type == d.pgmap_type
            && self.page == d.page.as_deref()
            && self.migration == d.migration
    }
}

struct Entry {
    detail: Detail,
    migration: Option<Migration>,
    hook: u32,
    role: Role,
    /// The one-frame stack naming this entry.
    tag: Stack,
}

/// Turns recorded events into [`PageEvent`]s and back.
pub struct Readback {
    /// Randomly keyed: a recording cannot aim for collisions.
    hasher: RandomState,
    by_hash: HashMap<u64, Vec<u32>>,
    /// By the hash of its stack: the first entry of each distinct stack
    /// ([`Readback::stack_id`]).
    by_stack: HashMap<u64, Vec<u32>>,
    entries: Vec<Entry>,
    /// Events whose detail was not kept (the cap was reached).
    pub not_kept: u64,
}

impl Default for Readback {
    fn default() -> Self {
        Self::new()
    }
}

/// Entry 0: the one events share once [`MAX_DETAILS`] is reached.
const OVERFLOW: u32 = 0;

impl Readback {
    pub fn new() -> Self {
        let overflow = Detail {
            symbol: "?".into(),
            stack: vec![format!(
                "? (not kept: the recording has more than {MAX_DETAILS} distinct stacks)"
            )]
            .into(),
            stack_short: false,
            owner: None,
            pgmap_type: "?".into(),
            page: None,
            migration: None,
        };
        Self {
            hasher: RandomState::new(),
            by_hash: HashMap::new(),
            by_stack: HashMap::new(),
            entries: vec![Entry {
                detail: overflow,
                migration: None,
                hook: 0,
                role: Role::Other,
                tag: Stack::from(&[u64::from(OVERFLOW)][..]),
            }],
            not_kept: 0,
        }
    }

    /// Distinct entries kept.
    pub fn len(&self) -> usize {
        self.entries.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry of `j`'s detail, interned on first sight.
    fn intern(&mut self, j: &JsonEvent) -> u32 {
        let key = DetailRef::of(j);
        let h = self.hasher.hash_one(&key);
        if let Some(ids) = self.by_hash.get(&h)
            && let Some(id) = ids
                .iter()
                .find(|id| key.matches(&self.entries[**id as usize].detail))
        {
            return *id;
        }
        if self.entries.len() > MAX_DETAILS {
            self.not_kept += 1;
            return OVERFLOW;
        }
        let id = self.entries.len() as u32;
        let detail = Detail {
            symbol: j.symbol.clone(),
            stack: j.stack.clone(),
            stack_short: j.stack_short,
            owner: j.owner.clone(),
            pgmap_type: j.pgmap_type.clone(),
            page: j.page.clone(),
            migration: key.migration,
        };
        self.entries.push(Entry {
            detail,
            migration: j.migration,
            hook: hook_of_symbol(&j.symbol).unwrap_or(0),
            role: role_of(
                std::iter::once(j.symbol.as_str()).chain(j.stack.iter().map(String::as_str)),
            ),
            tag: Stack::from(&[u64::from(id)][..]),
        });
        self.by_hash.entry(h).or_default().push(id);
        let hs = self.hasher.hash_one(j.stack.0.as_deref());
        let same = self.by_stack.entry(hs).or_default();
        let entries = &self.entries;
        if !same
            .iter()
            .any(|i| entries[*i as usize].detail.stack == j.stack)
        {
            same.push(id);
        }
        id
    }

    /// What makes recorded stacks the same: the first entry with the same
    /// frames (entries also differ by function, owner, ...).
    pub fn stack_id(&self, stack: &Stack) -> crate::state::groups::StackId {
        let Some(e) = self.entry_of(stack) else {
            return stack.frames().to_vec();
        };
        let hs = self.hasher.hash_one(e.detail.stack.0.as_deref());
        let first = self.by_stack.get(&hs).and_then(|ids| {
            ids.iter()
                .find(|i| self.entries[**i as usize].detail.stack == e.detail.stack)
        });
        vec![u64::from(first.copied().unwrap_or(OVERFLOW))]
    }

    /// The tracker's event for `j`, with the entry of its detail as its
    /// stack; `None` for an unknown event name. Also gives the entry.
    pub fn page_event(&mut self, j: &JsonEvent) -> Option<(PageEvent, u32)> {
        let id = self.intern(j);
        let ev = if id == OVERFLOW {
            // Not kept: work the hook and role out from the event itself.
            let hook = hook_of_symbol(&j.symbol).unwrap_or(0);
            let role = role_of(
                std::iter::once(j.symbol.as_str()).chain(j.stack.iter().map(String::as_str)),
            );
            page_event_with(j, hook, role, self.entries[0].tag.clone())?
        } else {
            let e = &self.entries[id as usize];
            page_event_with(j, e.hook, e.role, e.tag.clone())?
        };
        Some((ev, id))
    }

    fn entry_of(&self, stack: &Stack) -> Option<&Entry> {
        match stack.frames() {
            [id] => self.entries.get(usize::try_from(*id).ok()?),
            _ => None,
        }
    }

    /// The recorded stack of an event or holder this made.
    pub fn stack(&self, stack: &Stack) -> Option<&[String]> {
        self.entry_of(stack).map(|e| &*e.detail.stack)
    }

    /// The recorded function of an event or holder this made.
    pub fn symbol(&self, stack: &Stack) -> Option<&str> {
        self.entry_of(stack).map(|e| e.detail.symbol.as_str())
    }

    /// The owner an entry names.
    pub fn owner(&self, id: u32) -> Option<&str> {
        self.entries.get(id as usize)?.detail.owner.as_deref()
    }

    /// The recorded event back from a [`PageEvent`] this made.
    pub fn json(&self, ev: &PageEvent) -> Option<JsonEvent> {
        let e = self.entry_of(&ev.stack)?;
        let d = &e.detail;
        // Past the cap the entry is shared: what the event itself keeps.
        let overflow = std::ptr::eq(e, &self.entries[OVERFLOW as usize]);
        Some(JsonEvent {
            ts_ns: ev.ts_ns,
            cpu: ev.cpu,
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm.to_string(),
            pfn: ev.pfn,
            event: ev.kind.name().to_string(),
            refcount_before: ev.refcount_before,
            refcount_after: ev.refcount_after,
            mapcount: ev.mapcount,
            pgmap_type: if overflow {
                crate::event::pgmap_name(ev.pgmap_type).to_string()
            } else {
                d.pgmap_type.clone()
            },
            nr_pages: ev.nr_pages,
            symbol: d.symbol.clone(),
            ret: ev.ret,
            stack: d.stack.clone(),
            stack_short: d.stack_short,
            owner: d.owner.clone(),
            migration: if overflow {
                ev.migration()
            } else {
                e.migration
            },
            late: ev.late,
            forking: ev.forking,
            page: d.page.clone(),
            cgroup: None,
        })
    }
}

/// A recording's events name their code with the recorded strings.
impl crate::symbols::Names for Readback {
    fn function(&self, ev: &PageEvent) -> String {
        self.symbol(&ev.stack).unwrap_or("?").to_string()
    }

    fn frames(&self, stack: &Stack) -> Vec<String> {
        self.stack(stack)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    fn stack_id(&self, stack: &Stack) -> crate::state::groups::StackId {
        Readback::stack_id(self, stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic events (not from a kernel).
    fn event(i: u64, stack: &str) -> JsonEvent {
        JsonEvent {
            ts_ns: 10 + i,
            cpu: 1,
            pid: 7,
            tgid: 7,
            comm: "a rather long task name".into(),
            pfn: 0x40000 + i,
            event: "get".into(),
            refcount_before: Some(1),
            refcount_after: Some(2),
            mapcount: Some(0),
            pgmap_type: "fsdax".into(),
            nr_pages: 1,
            symbol: "try_grab_folio".into(),
            ret: Some(-11),
            stack: vec![stack.into(), "dax_fault_iter+0x3f1".into()].into(),
            stack_short: false,
            owner: Some("fsdax_pagemap_ops".into()),
            migration: None,
            late: i.is_multiple_of(2),
            forking: false,
            page: None,
            cgroup: None,
        }
    }

    #[test]
    fn events_come_back_as_recorded_and_equal_details_are_shared() {
        let mut rb = Readback::new();
        let evs: Vec<JsonEvent> = (0..6)
            .map(|i| event(i, if i < 3 { "a+0x1" } else { "b+0x2" }))
            .collect();
        for j in &evs {
            let (ev, _) = rb.page_event(j).expect("known");
            assert_eq!(rb.json(&ev).as_ref(), Some(j));
            assert_eq!(rb.stack(&ev.stack), Some(&*j.stack));
        }
        assert_eq!(rb.len(), 2);
        let mut bad = event(0, "a");
        bad.event = "nope".into();
        assert!(rb.page_event(&bad).is_none());
    }

    /// Holders group by their recorded stack: entries that differ only by
    /// function or owner are the same stack.
    #[test]
    fn stack_ids_name_equal_stacks_alike() {
        let mut rb = Readback::new();
        let mut id = |j: &JsonEvent| {
            let (ev, _) = rb.page_event(j).expect("known");
            (ev.stack.clone(), rb.stack_id(&ev.stack))
        };
        let a = event(0, "a+0x1");
        let mut a_elsewhere = event(1, "a+0x1");
        a_elsewhere.symbol = "page_ref_mod".into();
        a_elsewhere.owner = None;
        let b = event(2, "b+0x2");
        let (sa, ia) = id(&a);
        let (sa2, ia2) = id(&a_elsewhere);
        let (_, ib) = id(&b);
        assert_ne!(sa, sa2, "two entries");
        assert_eq!(ia, ia2);
        assert_ne!(ia, ib);
    }

    #[test]
    fn past_the_cap_details_are_shared_and_say_so() {
        let mut rb = Readback::new();
        for i in 0..MAX_DETAILS as u64 + 10 {
            let j = event(i, &format!("f+{i:#x}"));
            let (ev, _) = rb.page_event(&j).expect("known");
            if i == MAX_DETAILS as u64 + 5 {
                let back = rb.json(&ev).expect("json");
                assert!(back.stack[0].contains("not kept"), "{:?}", back.stack);
                assert_eq!(back.pgmap_type, "fsdax");
                assert_eq!((back.pfn, back.ts_ns), (j.pfn, j.ts_ns));
            }
        }
        assert_eq!(rb.len(), MAX_DETAILS);
        assert_eq!(rb.not_kept, 10);
    }
}
