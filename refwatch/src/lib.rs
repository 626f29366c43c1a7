//! refwatch: reference-count lifetimes of ZONE_DEVICE pages.
//!
//! The data path, one module per stage: [`plan`] (which kernel symbols, how)
//! → [`loader`] (load and attach, with the [`layout`] read from BTF) →
//! [`event`] (decode) → [`state`] (per-PFN state) → [`jsonl`] (exports), driven
//! live by [`collector`] and shown by [`tui`].
#![deny(unsafe_code)]

pub mod app;
pub mod cli;
#[allow(unsafe_code)]
pub mod collector;
pub mod diagnose;
#[allow(unsafe_code)]
pub mod event;
pub mod export;
pub mod fasthash;
pub mod filter;
pub mod fuzzing;
pub mod jsonl;
pub mod kallsyms;
pub mod layout;
#[allow(unsafe_code)]
pub mod loader;
pub mod logging;
pub mod output;
pub mod peek;
pub mod plan;
#[cfg(test)]
mod pointer_tests;
pub mod readback;
pub mod recording;
pub mod report;
pub mod rotate;
pub mod rules;
pub mod snapshot;
pub mod state;
pub mod tui;
