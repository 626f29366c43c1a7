//! How a source of events names their code, live or recorded: one
//! interface, so the views do not care where the events came from.

use std::collections::HashMap;

use super::{Kallsyms, stack_strings};
use crate::{
    event::{PageEvent, Stack},
    format::json::Format,
    state::groups::{self, StackId},
};

/// The names a source gives its events' code.
pub trait Names {
    /// The function the event was seen in (its hook's symbol).
    fn function(&self, ev: &PageEvent) -> String;
    /// A stack's frames, innermost first, as `symbol+0xoff`.
    fn frames(&self, stack: &Stack) -> Vec<String>;
    /// What makes two stacks the same, to group holders.
    fn stack_id(&self, stack: &Stack) -> StackId;

    /// The function and the frames of `ev`.
    fn of(&self, ev: &PageEvent) -> (String, Vec<String>) {
        (self.function(ev), self.frames(&ev.stack))
    }
}

/// Events read from the kernel now: kernel addresses named through
/// kallsyms, hooks by id.
pub struct Live<'a> {
    pub syms: &'a Kallsyms,
    pub format: Format,
    /// Hook id → the symbol it attached to.
    pub hooks: HashMap<u32, String>,
}

impl Names for Live<'_> {
    fn function(&self, ev: &PageEvent) -> String {
        self.hooks
            .get(&ev.hook)
            .cloned()
            .unwrap_or_else(|| "?".into())
    }

    fn frames(&self, stack: &Stack) -> Vec<String> {
        stack_strings(stack, self.syms, self.format)
    }

    fn stack_id(&self, stack: &Stack) -> StackId {
        groups::by_frames(stack)
    }
}
