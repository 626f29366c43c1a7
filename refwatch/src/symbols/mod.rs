//! Naming kernel code: kallsyms, the symbolizer of stacks and owners, and
//! the roles the functions on a stack give an event, and the table that
//! names each distinct stack once; the names a live or recorded source
//! gives its events ([`Names`]).

pub mod kallsyms;
pub mod lines;
pub mod names;
pub mod roles;
pub mod symbolizer;
pub mod table;

pub use kallsyms::Kallsyms;
pub use lines::SourceLines;
pub use names::{Live, Names};
pub use roles::{Role, role_of};
pub use symbolizer::{DEFAULT_SYMBOL_CACHE, Symbolizer, owner_name, stack_strings};
pub use table::{DEFAULT_NAMED_STACKS, Named, StackTable};
