//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::plan::ModeChoice;

/// refwatch: reference-count lifetimes of ZONE_DEVICE pages (fs-dax, device
/// private, device-dax, P2PDMA) on a live Linux system.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to the running kernel and watch device pages until Ctrl-C.
    Attach(AttachArgs),
    /// Print the probe plan for the running kernel: logical event → symbol →
    /// mode → attached, or why not. Exits non-zero when nothing can attach.
    Probes(ProbeArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// Attach mode: fentry/fexit where possible, kprobes otherwise (auto), or force one.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: ModeChoice,
}

#[derive(Debug, Args, Clone)]
pub struct AttachArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// No TUI: a periodic one-line summary on stdout, and a per-PFN table at the end.
    #[arg(long)]
    pub headless: bool,
    /// Write every event as JSON Lines to this file.
    #[arg(long, value_name = "FILE")]
    pub jsonl: Option<PathBuf>,
    /// Create this file once the probes are attached (for scripts).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Write refwatch's own log here instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Do not capture kernel stacks.
    #[arg(long)]
    pub no_stacks: bool,
    /// Show raw kernel addresses (struct page pointers, unsymbolized frames).
    /// Off by default: they defeat KASLR.
    #[arg(long)]
    pub raw_pointers: bool,
    /// Events kept per PFN.
    #[arg(long, default_value_t = crate::state::DEFAULT_HISTORY as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub history: u64,
    /// Seconds between summary lines (0: none).
    #[arg(long, default_value_t = 5)]
    pub summary_secs: u64,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<u64>,
    /// More detail in the log.
    #[arg(long, short)]
    pub verbose: bool,
}
