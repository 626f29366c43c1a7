//! Naming kernel code: kallsyms, the symbolizer of stacks and owners, and
//! the roles the functions on a stack give an event, and the table that
//! names each distinct stack once.

pub mod kallsyms;
pub mod roles;
pub mod symbolizer;
pub mod table;

pub use kallsyms::Kallsyms;
pub use roles::{Role, role_of};
pub use symbolizer::{DEFAULT_SYMBOL_CACHE, Symbolizer, owner_name, stack_strings};
pub use table::{DEFAULT_NAMED_STACKS, Named, StackTable};
