//! The probe plan: for each logical hook, which kernel symbol to watch on this
//! kernel and how (fentry/fexit or kprobe/kretprobe), decided at run time from
//! kallsyms and BTF prototypes; the attach itself has the last word (a
//! fentry the kernel refuses falls back to the kprobe).
//!
//! [`catalog`] is every hook's identity in one table; [`resolve`] chooses a
//! symbol and modes on the running kernel; [`render`] prints the outcome
//! (`refwatch probes`).

pub mod catalog;
pub mod render;
pub mod resolve;

#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod object_calls_tests;
#[cfg(test)]
mod object_tests;

pub use catalog::{
    Candidate, Class, LOGICAL, Logical, Mode, Progs, StackPolicy, hook_of_symbol, names_holder,
    stack_policy,
};
pub use render::plan_table;
pub use resolve::{
    KernelCaps, ModeChoice, Resolved, parse_filter_functions, resolve, resolve_one,
    resolve_tracepoint,
};
