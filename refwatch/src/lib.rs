//! refwatch: reference-count lifetimes of ZONE_DEVICE pages.
//!
//! The data path, one module per stage: [`plan`] (which kernel symbols, how)
//! → [`loader`] (load and attach, with the [`layout`] read from BTF) →
//! [`event`] (decode, with kernel code named by [`symbols`]) → [`state`] (per-PFN
//! state) → [`format`] (recordings and exports), driven live by [`collector`]
//! and shown by [`tui`].
#![deny(unsafe_code)]

pub mod app;
pub mod bytes;
pub mod cli;
#[allow(unsafe_code)]
pub mod collector;
pub mod conventions;
pub mod diagnose;
#[allow(unsafe_code)]
pub mod event;
pub mod fasthash;
pub mod filter;
pub mod format;
pub mod fuzzing;
pub mod layout;
#[allow(unsafe_code)]
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod peek;
pub mod plan;
#[cfg(test)]
mod pointer_tests;
pub mod readback;
pub mod report;
pub mod rotate;
pub mod rules;
pub mod snapshot;
pub mod stacks;
pub mod state;
pub mod steps;
pub mod stream;
pub mod symbols;
pub mod tty;
pub mod tui;
pub mod watch;
