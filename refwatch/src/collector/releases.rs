//! Which pages' last puts walk their stack under `--stacks holders`: those
//! with an open episode, whose release the episode names (`released_by`,
//! the releaser of a holder group). Any other last put ends references its
//! page's free then ends anyway; its walk (the free hook's, 8 frames) was
//! about a quarter of what refwatch cost a `dax-unmap` operation.
//!
//! The collector hands the kernel the PFNs of the open episodes once a
//! second, right after the detectors ran, and after a read of the ring in
//! which an event opened one (a layout wait). Past [`RELEASE_PFNS`] pages
//! every last put walks again.

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData},
};
use refwatch_common::{RELEASE_PFNS, setting};

use crate::fasthash::FastSet;

/// What to change in the kernel's table and switch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Change {
    /// PFNs to add to the table, before the switch goes on.
    pub add: Vec<u64>,
    /// PFNs to take out, after it went off or while it stays on.
    pub remove: Vec<u64>,
    /// Whether last puts walk on demand (only the table's pages) after the
    /// change; false: every last put walks.
    pub on_demand: bool,
}

/// The change that takes the kernel from `synced` (the table now) to
/// `wanted` (the pages whose last put must walk), in a table of `cap`
/// entries. Over the cap the table is left as it is and every last put
/// walks. The lists are sorted, for a stable order of updates.
pub(super) fn plan(synced: &FastSet<u64>, wanted: &FastSet<u64>, cap: usize) -> Change {
    if wanted.len() > cap {
        return Change::default();
    }
    let mut add: Vec<u64> = wanted.difference(synced).copied().collect();
    let mut remove: Vec<u64> = synced.difference(wanted).copied().collect();
    add.sort_unstable();
    remove.sort_unstable();
    Change {
        add,
        remove,
        on_demand: true,
    }
}

/// The kernel's table of pages whose last put walks, and its switch.
pub(super) struct Releases {
    table: BpfHashMap<MapData, u64, u8>,
    settings: Array<MapData, u32>,
    /// The table's PFNs as last written.
    synced: FastSet<u64>,
    /// The switch as last written.
    on_demand: bool,
    /// The tracker's count of episodes opened at the last sync.
    opened: u64,
}

impl Releases {
    /// Takes the table and the settings from the loaded object; every last
    /// put walks until the first [`Releases::sync`].
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let table = BpfHashMap::try_from(
            ebpf.take_map("RELEASES")
                .ok_or_else(|| anyhow!("RELEASES map missing from the kernel object"))?,
        )
        .context("RELEASES is not a hash map")?;
        let settings = Array::try_from(
            ebpf.take_map("SETTINGS")
                .ok_or_else(|| anyhow!("SETTINGS map missing from the kernel object"))?,
        )
        .context("SETTINGS is not an array")?;
        Ok(Self {
            table,
            settings,
            synced: FastSet::default(),
            on_demand: false,
            opened: 0,
        })
    }

    /// The tracker's count of episodes opened, as of the last sync.
    pub(super) fn opened_seen(&self) -> u64 {
        self.opened
    }

    /// Makes the kernel walk the last puts of `wanted` (the pages with an
    /// open episode; `opened` episodes opened so far) and of no other page,
    /// or of every page when they are more than the table holds.
    pub(super) fn sync(&mut self, wanted: FastSet<u64>, opened: u64) -> Result<()> {
        self.opened = opened;
        let change = plan(&self.synced, &wanted, RELEASE_PFNS as usize);
        if !change.on_demand {
            return self.switch(false);
        }
        for pfn in &change.add {
            self.table
                .insert(pfn, 1, 0)
                .with_context(|| format!("note pfn {pfn:#x} for its release's stack"))?;
            self.synced.insert(*pfn);
        }
        self.switch(true)?;
        for pfn in &change.remove {
            // Gone already is as good.
            let _ = self.table.remove(pfn);
            self.synced.remove(pfn);
        }
        Ok(())
    }

    fn switch(&mut self, on_demand: bool) -> Result<()> {
        if self.on_demand == on_demand {
            return Ok(());
        }
        self.settings
            .set(setting::LAST_PUT_ON_DEMAND, u32::from(on_demand), 0)
            .context("switch the last puts' stacks")?;
        self.on_demand = on_demand;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> FastSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn the_table_follows_the_open_episodes() {
        let c = plan(&set(&[1, 2, 3]), &set(&[3, 4, 5]), 8);
        assert_eq!(
            c,
            Change {
                add: vec![4, 5],
                remove: vec![1, 2],
                on_demand: true,
            }
        );
        // Nothing open: nothing walks but what the table keeps (nothing).
        let c = plan(&set(&[7]), &set(&[]), 8);
        assert_eq!(c.add, Vec::<u64>::new());
        assert_eq!(c.remove, vec![7]);
        assert!(c.on_demand);
    }

    #[test]
    fn more_pages_than_the_table_holds_make_every_last_put_walk() {
        let wanted = set(&[1, 2, 3]);
        assert_eq!(plan(&set(&[]), &wanted, 2), Change::default());
        assert!(!plan(&set(&[]), &wanted, 2).on_demand);
        // At the cap the table holds them all.
        let c = plan(&set(&[]), &wanted, 3);
        assert!(c.on_demand);
        assert_eq!(c.add, vec![1, 2, 3]);
    }
}
