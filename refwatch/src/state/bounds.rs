//! The memory a [`Tracker`](super::Tracker) may hold, as a formula of its
//! caps: what README's bound says, in code, so tests check it.

use std::mem::size_of;

use super::{
    Episode, Holder, MAX_FORK_PAGES, MAX_FORKS_PENDING, MAX_HOLDERS, MIN_KEEP, Page,
    history::{BLOCK, Task},
};
use crate::event::PageEvent;

/// A hash table's buckets per entry at most: its buckets are a power of
/// two, at most 8/7 full after growing, so up to 16/7 per entry (rounded up).
const TABLE_SLACK: usize = 3;

/// A vector that grew by doubling holds up to twice its length.
const VEC_SLACK: usize = 2;

/// Bytes of one history entry, and per entry of the blocks' index.
const ENTRY_BYTES: usize = 32 + 16 / 8 * VEC_SLACK;

/// Bytes a history may hold beyond its events' entries: up to a block's
/// slots less one unused, the index of a short last block, the box of its
/// extra words.
const HISTORY_SLACK_BYTES: usize = (BLOCK - 1) * 32 + 16 * VEC_SLACK + 32;

/// Bytes of one thread of history entries ([`Task`]), with its shared count.
const TASK_BYTES: usize = size_of::<Task>() + 16;

/// Bytes a history keeps beyond an entry for an event unlike its page's
/// others (return value, long step, other page fields: ten words).
const EXTRA_BYTES: usize = 10 * 8 * VEC_SLACK;

/// Longest text of an episode: its reason and holder note (a sentence each).
const TEXT_BYTES: usize = 512;

/// Events an episode keeps when no holder is known.
const LAST_EVENTS: usize = super::LAST_EVENTS;

/// What a tracker holds, counted: the caps, or what a run actually had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Pages tracked (at most `--max-pfns`); losses on pages not tracked are
    /// kept within the same number.
    pub pages: usize,
    /// Events kept in all histories together (at most
    /// [`Tracker::events_bound`](super::Tracker::events_bound), and
    /// `--history` per page).
    pub events: usize,
    /// Of those, events unlike their page's others (a different page,
    /// owner, `aux2`, huge numbers): they keep up to ten more words each.
    pub unusual: usize,
    /// Distinct threads of those events alive.
    pub tasks: usize,
    /// Holders per page and per episode (at most [`MAX_HOLDERS`]).
    pub holders: usize,
    /// Episodes kept (at most the episode cap).
    pub episodes: usize,
    /// Distinct stacks alive, and the frames of the longest (127 at most).
    pub stacks: usize,
    pub frames: usize,
}

impl Footprint {
    /// The worst case of a tracker with these caps: every page tracked and
    /// full of holders, as many events as the budget lets the histories
    /// keep, all unusual and from distinct threads, every stack distinct and
    /// as long as a kernel stack can be.
    pub fn worst(max_pfns: usize, history: usize, max_events: usize, max_episodes: usize) -> Self {
        let events = max_events
            .max(max_pfns.saturating_mul(MIN_KEEP.min(history)))
            .min(max_pfns.saturating_mul(history));
        let refs = events + max_pfns * MAX_HOLDERS + max_episodes * (MAX_HOLDERS + LAST_EVENTS + 1);
        Self {
            pages: max_pfns,
            events,
            unusual: events,
            tasks: events,
            holders: MAX_HOLDERS,
            episodes: max_episodes,
            stacks: refs + crate::event::DEFAULT_INTERNED_STACKS,
            frames: 127,
        }
    }

    /// Bytes of one tracked page but its events: the page, its history's
    /// slack and its holders, its slots in the tables (pages, hot pages,
    /// losses of pages not tracked).
    pub fn page_bytes(&self) -> usize {
        size_of::<Page>()
            + TABLE_SLACK * (16 + 1)
            + TABLE_SLACK * (8 + 1)
            + TABLE_SLACK * (8 + size_of::<super::Gaps>() + 1)
            // Its place in the list of idle pages to evict.
            + 16 * VEC_SLACK
            + HISTORY_SLACK_BYTES
            + self.holders * size_of::<Holder>() * VEC_SLACK
    }

    /// Bytes of the histories' events: entries, extra words, threads.
    pub fn events_bytes(&self) -> u64 {
        self.events as u64 * ENTRY_BYTES as u64
            + self.unusual as u64 * EXTRA_BYTES as u64
            + self.tasks as u64 * TASK_BYTES as u64
    }

    /// Bytes of one kept episode (stacks apart).
    pub fn episode_bytes(&self) -> usize {
        size_of::<Episode>() * VEC_SLACK
            + TEXT_BYTES
            + self.holders * size_of::<Holder>() * VEC_SLACK
            + LAST_EVENTS * size_of::<PageEvent>()
            // The drop that ended it (`released_by`).
            + size_of::<PageEvent>()
            // The open episode's slot in its page's map (a first one
            // allocates four).
            + 4 * (16 + 1) + 16
    }

    /// Bytes of one distinct stack: shared count, frames, a slot in the
    /// interner.
    pub fn stack_bytes(&self) -> usize {
        16 + 16 + 8 * self.frames + TABLE_SLACK * 9
    }

    /// What does not grow with the caps: the threads' table, the forks
    /// awaited, the interner's recent stacks.
    pub fn fixed_bytes() -> usize {
        256 * 64 + MAX_FORKS_PENDING * (MAX_FORK_PAGES * 8 + 64) + 64 * 8 + 64 * 1024
    }

    /// The bound, in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages as u64 * self.page_bytes() as u64
            + self.events_bytes()
            + self.episodes as u64 * self.episode_bytes() as u64
            + self.stacks as u64 * self.stack_bytes() as u64
            + Self::fixed_bytes() as u64
    }
}
