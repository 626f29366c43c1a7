//! Kernel stacks as events carry them: shared, and interned so that equal
//! stacks are one allocation.

use std::{fmt, hash::Hasher as _, ops::Deref, rc::Rc};

use crate::fasthash::FastSet;

/// A kernel stack (return addresses, innermost first), shared: the events
/// in a page's history, its holders and its episodes point at one copy, and
/// a [`StackInterner`] makes equal stacks one allocation.
///
/// `Rc`, not `Arc`: decode and per-PFN update run on one thread (the
/// collector's), and an event's stack is counted up and down several times
/// on its way (interner, history, holder, the decoded event itself). With
/// atomic counts, decode alone (one count up, one down) took about 30 ns
/// more per event on the 2-core development machine (`cargo xtask bench
/// pipeline`), a third of the 100 ns an event may take in all. Events,
/// pages and the tracker are therefore not `Send`; should they ever need to
/// cross threads, this becomes an `Arc`.
///
/// One thin pointer (8 bytes, not the 16 of an `Rc<[u64]>`): a page's
/// history keeps one per event, in 32-byte entries. Reading the frames
/// follows one more pointer, which only symbolizing and interning do.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Stack(Option<Rc<Frames>>);

/// The frames behind a [`Stack`]'s pointer.
#[derive(PartialEq, Eq, Hash)]
struct Frames(Box<[u64]>);

impl Stack {
    /// The frames.
    #[inline]
    pub fn frames(&self) -> &[u64] {
        self.0.as_deref().map_or(&[], |f| &f.0)
    }

    /// The address of the shared frames (0 for no frames): equal for
    /// clones of one stack, and not reused while one of them lives.
    pub fn addr(&self) -> usize {
        self.0.as_ref().map_or(0, |f| Rc::as_ptr(f) as usize)
    }

    /// Whether `self` and `other` are the same allocation (both empty counts).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Rc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Deref for Stack {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        self.frames()
    }
}

impl From<&[u64]> for Stack {
    fn from(frames: &[u64]) -> Self {
        Self((!frames.is_empty()).then(|| Rc::new(Frames(frames.into()))))
    }
}

impl From<Vec<u64>> for Stack {
    fn from(frames: Vec<u64>) -> Self {
        Self((!frames.is_empty()).then(|| Rc::new(Frames(frames.into_boxed_slice()))))
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.frames(), f)
    }
}

/// Default bound on the stacks a [`StackInterner`] remembers.
pub const DEFAULT_INTERNED_STACKS: usize = 1 << 16;

/// Makes equal stacks one shared allocation. Bounded: when full it forgets
/// the stacks nobody else holds any more, and everything when that frees
/// less than half (stacks already handed out stay valid; only sharing with
/// later events is lost).
#[derive(Debug, Clone)]
pub struct StackInterner {
    set: FastSet<Interned>,
    /// The stacks interned last, direct-mapped by hash: most events repeat
    /// a recent stack, found here with one compare instead of a probe of
    /// `set`.
    recent: Vec<Option<Rc<Frames>>>,
    cap: usize,
}

/// Slots of [`StackInterner::recent`] (a power of two).
const RECENT_STACKS: usize = 64;

/// A remembered stack, looked up by its frames.
#[derive(Debug, Clone)]
struct Interned(Rc<Frames>);

impl std::borrow::Borrow<[u64]> for Interned {
    fn borrow(&self) -> &[u64] {
        &self.0.0
    }
}

// Hashes and compares as its frames, as `Borrow` requires.
impl std::hash::Hash for Interned {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.0.hash(state);
    }
}

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        self.0.0 == other.0.0
    }
}

impl Eq for Interned {}

impl fmt::Debug for Frames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Default for StackInterner {
    fn default() -> Self {
        Self::new(DEFAULT_INTERNED_STACKS)
    }
}

impl StackInterner {
    pub fn new(cap: usize) -> Self {
        Self {
            set: FastSet::default(),
            recent: vec![None; RECENT_STACKS],
            cap: cap.max(2),
        }
    }

    /// The shared stack equal to `frames`.
    pub fn intern(&mut self, frames: &[u64]) -> Stack {
        self.intern_hashed(frames, recent_hash(frames.iter().copied()))
    }

    /// [`StackInterner::intern`], with the frames' [`recent_hash`]
    /// already taken (the decoder takes it as it reads them).
    #[inline]
    pub(super) fn intern_hashed(&mut self, frames: &[u64], hash: u64) -> Stack {
        if frames.is_empty() {
            return Stack::default();
        }
        let slot = hash as usize % RECENT_STACKS;
        if let Some(Some(s)) = self.recent.get(slot)
            && same_frames(&s.0, frames)
        {
            return Stack(Some(Rc::clone(s)));
        }
        self.intern_slow(frames, slot)
    }

    /// A stack not in [`StackInterner::recent`]: from the set, or new;
    /// then in `recent[slot]`.
    #[inline(never)]
    fn intern_slow(&mut self, frames: &[u64], slot: usize) -> Stack {
        let s = match self.set.get(frames) {
            Some(s) => Rc::clone(&s.0),
            None => {
                if self.set.len() >= self.cap {
                    // What only the cache holds counts as unheld.
                    self.recent.fill(None);
                    self.set.retain(|s| Rc::strong_count(&s.0) > 1);
                    if self.set.len() > self.cap / 2 {
                        self.set.clear();
                    }
                }
                let s = Rc::new(Frames(frames.into()));
                self.set.insert(Interned(Rc::clone(&s)));
                s
            }
        };
        if let Some(r) = self.recent.get_mut(slot) {
            *r = Some(Rc::clone(&s));
        }
        Stack(Some(s))
    }

    /// Stacks remembered now.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Which slot of [`StackInterner::recent`] a stack's frames take (modulo
/// its size).
#[inline]
fn recent_hash(frames: impl Iterator<Item = u64>) -> u64 {
    let mut h = crate::fasthash::fast_hasher();
    frames.for_each(|f| h.write_u64(f));
    h.finish()
}

/// `a == b`, inline: stacks are a few words, shorter than a `memcmp` call.
#[inline]
fn same_frames(a: &[u64], b: &[u64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}
