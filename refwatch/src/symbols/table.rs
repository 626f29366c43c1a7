//! Stacks named once: each distinct stack gets a small id the first time
//! it is seen, with its frames symbolized and its role decided then; later
//! events with that stack cost one lookup.

use std::rc::Rc;

use crate::{
    event::Stack,
    fasthash::FastMap,
    format::json::Format,
    symbols::{Role, Symbolizer},
};

/// Default bound on the stacks a [`StackTable`] remembers.
pub const DEFAULT_NAMED_STACKS: usize = 1 << 16;

/// A stack as named once.
#[derive(Debug, Clone)]
pub struct Named {
    /// Id of the stack, unique for the table's life (never reused).
    pub id: u64,
    /// [`crate::symbols::role_of`] the stack.
    pub role: Role,
    /// `symbol+0xoff` of each frame, refwatch's own frames left out
    /// ([`crate::symbols::stack_strings`]).
    pub frames: Rc<[String]>,
}

/// Stacks by identity (the decoder shares equal stacks: see
/// [`crate::event::StackInterner`]) → their names. Bounded: forgets
/// everything when full; a stack seen again then gets a new id.
#[derive(Debug)]
pub struct StackTable {
    /// By [`Stack::addr`]; the stack is kept so that its address is not
    /// reused by another while it is here.
    by_addr: FastMap<usize, (Stack, Named)>,
    next_id: u64,
    cap: usize,
    fmt: Format,
}

impl StackTable {
    pub fn new(fmt: Format, cap: usize) -> Self {
        Self {
            by_addr: FastMap::default(),
            next_id: 0,
            cap: cap.max(1),
            fmt,
        }
    }

    /// Stacks remembered now.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// The names of `stack`, symbolized through `syms` the first time: one
    /// lookup on the hot path.
    #[inline]
    pub fn get(&mut self, stack: &Stack, syms: &mut Symbolizer<'_>) -> &Named {
        let addr = stack.addr();
        if self.by_addr.len() >= self.cap && !self.by_addr.contains_key(&addr) {
            self.by_addr.clear();
        }
        let Self {
            by_addr,
            next_id,
            fmt,
            ..
        } = self;
        let (_, named) = by_addr.entry(addr).or_insert_with(|| {
            let named = Named {
                id: *next_id,
                role: syms.role(stack),
                frames: syms.stack_strings(stack, *fmt).into(),
            };
            *next_id += 1;
            (stack.clone(), named)
        });
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::StackInterner,
        symbols::{Kallsyms, role_of, stack_strings},
    };

    #[test]
    fn a_stack_is_named_once_and_as_the_symbolizer_names_it() {
        let syms = Kallsyms::parse(
            "ffffffff81000000 T gup_put_folio\nffffffff81001000 T zap_pte_range\nffffffff81002000 T end\n",
        );
        let mut sym = Symbolizer::new(&syms, 64);
        let mut interner = StackInterner::default();
        let a = interner.intern(&[0xffff_ffff_8100_0010, 0xffff_ffff_8100_1020]);
        let b = interner.intern(&[0xffff_ffff_8100_0010]);
        let a2 = interner.intern(&[0xffff_ffff_8100_0010, 0xffff_ffff_8100_1020]);
        let mut t = StackTable::new(Format::default(), 8);
        let ia = t.get(&a, &mut sym).clone();
        let ib = t.get(&b, &mut sym).clone();
        assert_ne!(ia.id, ib.id);
        assert_eq!(t.get(&a2, &mut sym).id, ia.id);
        assert_eq!(&*ia.frames, stack_strings(&a, &syms, Format::default()));
        assert_eq!(
            ia.role,
            role_of(["gup_put_folio+0x10", "zap_pte_range+0x20"])
        );
        assert_eq!(ia.role, Role::Unmap);
        assert_eq!(ib.role, Role::Other);
        let empty = t.get(&Stack::default(), &mut sym).clone();
        assert!(empty.frames.is_empty());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_full_table_forgets_and_never_reuses_an_id() {
        let syms = Kallsyms::parse("ffffffff81000000 T f\nffffffff81002000 T end\n");
        let mut sym = Symbolizer::new(&syms, 64);
        let mut interner = StackInterner::default();
        let mut t = StackTable::new(Format::default(), 2);
        let mut ids = Vec::new();
        for i in 0..5u64 {
            let s = interner.intern(&[0xffff_ffff_8100_0000 + i]);
            ids.push(t.get(&s, &mut sym).id);
            assert!(t.len() <= 2);
        }
        assert_eq!(ids, [0, 1, 2, 3, 4]);
    }
}
