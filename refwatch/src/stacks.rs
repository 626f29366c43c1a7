//! Which events carry a kernel stack, and how deep (`--stacks`): the table
//! the kernel programs read from the layout.
//!
//! A stack walk is most of what an event costs in the kernel (2–25k
//! instructions per event under emulation), and only some stacks are read
//! in full: those of the events that name a holder (who took a reference,
//! where, from which code). A drop only needs to be told apart as an unmap
//! or not ([`crate::symbols::role_of`]), for which a few innermost frames do.

use refwatch_common::{KIND_SLOTS, MAX_STACK, kind};

/// Frames a drop keeps under `--stacks holders`: enough for
/// [`crate::symbols::role_of`] to find the frame that zaps page-table entries
/// (`__zap_vma_range`, `free_pages_and_swap_cache`, `tlb_flush_mmu`, …)
/// wherever a full walk finds it.
///
/// Measured in the lab on Linux 7.2 (`--stacks=all` against the default,
/// every put, unpin and free of the fs-dax scenarios and of hmm-migrate,
/// -release, -blocked, -leak): the role frame is at most the second frame
/// after the hooked code, and the walk starts with refwatch's own frames,
/// which the exports leave out: 2 under fexit (program, trampoline), 3
/// under fentry, 0 under kprobes, 4–5 under the `page_ref` tracepoints
/// (program, `bpf_trace_run*`, `__bpf_trace_*`, `__page_ref_*`). The
/// deepest, a precise-mode fs-dax unmap (`folios_put_refs`, then
/// `free_pages_and_swap_cache`), is frame 6 of the walk; every drop had
/// the same role in both runs. Two frames more for paths the lab does not
/// take.
pub const ROLE_FRAMES: u8 = 8;

/// Which events carry a kernel stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StackPolicy {
    /// Full stacks for the events that name a holder (gets, pins, sets,
    /// layout waits, migrations, forks, page maps); drops (puts, unpins,
    /// frees) only as deep as it takes to tell an unmap from another drop,
    /// and a page's last put (before its free) only while the page is
    /// stuck, to name who released it.
    #[default]
    Holders,
    /// Full stacks for every event.
    All,
    /// No stacks.
    None,
}

/// Kinds that name a holder, or whose place in the code is the point of
/// the event: full stacks under [`StackPolicy::Holders`].
const HOLDER_KINDS: [u32; 8] = [
    kind::GET,
    kind::PIN,
    kind::SET,
    kind::LAYOUT_WAIT,
    kind::MIGRATE,
    kind::FORK,
    kind::PGMAP_ADD,
    kind::PGMAP_REMOVE,
];

/// Kinds that drop a reference: classified by role only under
/// [`StackPolicy::Holders`].
const DROP_KINDS: [u32; 3] = [kind::PUT, kind::UNPIN, kind::FREE];

impl StackPolicy {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Holders => "holders",
            Self::All => "all",
            Self::None => "none",
        }
    }

    /// What it keeps, in words (for the start line and `probes`).
    pub fn describe(self) -> String {
        match self {
            Self::Holders => format!(
                "stacks: holders (full for gets, pins and the rest; {ROLE_FRAMES} frames for puts, unpins and frees, enough for their role; a page's last put only while the page is stuck)"
            ),
            Self::All => format!("stacks: all (up to {MAX_STACK} frames for every event)"),
            Self::None => "stacks: none".into(),
        }
    }

    /// Frames the kernel walks per event kind
    /// ([`refwatch_common::KernelLayout::stack_frames`]).
    pub fn frames(self) -> [u8; KIND_SLOTS] {
        let mut t = [0; KIND_SLOTS];
        let (holders, drops) = match self {
            Self::None => return t,
            Self::All => (MAX_STACK as u8, MAX_STACK as u8),
            Self::Holders => (MAX_STACK as u8, ROLE_FRAMES),
        };
        for k in HOLDER_KINDS {
            t[k as usize] = holders;
        }
        for k in DROP_KINDS {
            t[k as usize] = drops;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refwatch_common::{KernelLayout, flags, stack_flags};

    fn layout(p: StackPolicy) -> KernelLayout {
        KernelLayout {
            stack_frames: p.frames(),
            ..KernelLayout::empty()
        }
    }

    #[test]
    fn every_wire_kind_has_a_depth_under_all() {
        let l = layout(StackPolicy::All);
        for k in 1..=kind::MAX {
            assert_eq!(l.frames_for(k), MAX_STACK, "kind {k}");
            assert_eq!(stack_flags(l.frames_for(k), true), 0, "kind {k}");
        }
        // No kind 0, nor beyond the last.
        assert_eq!(l.frames_for(0), 0);
        assert_eq!(l.frames_for(kind::MAX + 1), 0);
        assert_eq!(l.frames_for(kind::SNAPSHOT), 0);
    }

    #[test]
    fn holders_walks_holders_in_full_and_drops_short() {
        let l = layout(StackPolicy::Holders);
        for k in HOLDER_KINDS {
            assert_eq!(l.frames_for(k), MAX_STACK, "kind {k}");
            assert_eq!(stack_flags(l.frames_for(k), true), 0);
        }
        for k in DROP_KINDS {
            assert_eq!(l.frames_for(k), ROLE_FRAMES as usize, "kind {k}");
            assert_eq!(stack_flags(l.frames_for(k), true), flags::STACK_SHORT);
        }
        // Every kind the kernel sends is one or the other.
        for k in 1..=kind::MAX {
            assert!(
                HOLDER_KINDS.contains(&k) != DROP_KINDS.contains(&k),
                "kind {k}"
            );
        }
        const { assert!((ROLE_FRAMES as usize) < MAX_STACK && ROLE_FRAMES > 0) };
    }

    #[test]
    fn none_walks_nothing() {
        let l = layout(StackPolicy::None);
        for k in 0..KIND_SLOTS as u32 {
            assert_eq!(l.frames_for(k), 0);
            assert_eq!(stack_flags(l.frames_for(k), true), flags::NO_STACK);
        }
    }

    #[test]
    fn a_hook_without_a_stack_says_so_and_depths_are_capped() {
        let l = layout(StackPolicy::All);
        assert_eq!(stack_flags(l.frames_for(kind::GET), false), flags::NO_STACK);
        let mut t = [0; KIND_SLOTS];
        t[kind::PUT as usize] = 200;
        let l = KernelLayout {
            stack_frames: t,
            ..KernelLayout::empty()
        };
        assert_eq!(l.frames_for(kind::PUT), MAX_STACK);
        // The index wraps inside the table, never past it.
        assert_eq!(l.frames_for(kind::PUT + KIND_SLOTS as u32), MAX_STACK);
    }
}
