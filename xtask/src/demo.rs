//! `cargo xtask demo`: refwatch's main job on the embedded default. Boots the
//! lab VM with real fs-dax pages, runs a reference hold and a truncate that
//! waits on it with refwatch recording, then shows what refwatch saw: the
//! stuck pages with their holder, the report, and (on a terminal) the TUI
//! replaying the recording made in the guest.
//!
//! On a terminal (unless `--no-tui`), the hold is `dax-hold+tui` instead,
//! held [`LIVE_HOLD_SECS`]: refwatch's live TUI (`refwatch attach`) runs in
//! the guest on a terminal of this one's size and shows on it through the
//! guest's console ([`lab::live`]); it ends by itself after the hold (q ends
//! it sooner).

use std::{
    io::IsTerminal,
    path::Path,
    process::{Command, ExitCode},
};

use anyhow::{Context, Result};

use crate::{
    checks,
    kernels::KernelId,
    lab::{self, LabRun, TuiConsole},
};

/// Scenarios the demo runs.
const SCENARIOS: &[&str] = &["dax-hold", "dax-truncate-pinned"];

/// Scenarios the demo runs with the live TUI.
const LIVE_SCENARIOS: &[&str] = &["dax-hold+tui", "dax-truncate-pinned"];

/// The live TUI's hold: long enough to look at the held pages.
pub const LIVE_HOLD_SECS: u32 = 25;

pub fn run(kernel: KernelId, out: &Path, tui: bool) -> Result<ExitCode> {
    let terminal = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    // The guest's TUI gets this terminal's size; refwatch's least is 60×12.
    let live = lab::live::host_size().filter(|(c, r)| tui && terminal && *c >= 60 && *r >= 12);
    println!("refwatch demo: booting {kernel} in the lab VM (qemu, no KVM: about a minute)");
    let scenarios = if live.is_some() {
        println!(
            "The live TUI (refwatch attach) comes up here once refwatch is attached in the guest, during a {LIVE_HOLD_SECS}-second hold; it ends by itself after the hold (q ends it sooner)."
        );
        LIVE_SCENARIOS
    } else {
        SCENARIOS
    };
    let mut run = LabRun::new(kernel, scenarios);
    if let Some((cols, rows)) = live {
        run.tui = TuiConsole {
            cols,
            rows,
            hold_secs: LIVE_HOLD_SECS,
            live: true,
        };
    }
    let result = lab::run(&run, out)?;
    println!("{}", result.summary());
    let refwatch = lab::build_guest_binaries(None, None)?.refwatch;
    for s in scenarios {
        let dir = out.join(s);
        if lab::split_variant(s).1 == lab::Variant::Tui {
            println!("\n===== {s}: what refwatch printed when its TUI ended =====");
            println!("{}", tui_last_words(&dir)?);
            println!(
                "(its events: {}; no recording: refwatch attach writes none)",
                dir.join("events.jsonl").display()
            );
            continue;
        }
        println!("\n===== {s}: what refwatch printed in the guest =====");
        let text =
            std::fs::read_to_string(dir.join("refwatch.out")).context("read refwatch.out")?;
        print!("{text}");
        println!(
            "\n===== {s}: refwatch report {} =====",
            dir.join("recording").display()
        );
        let status = Command::new(&refwatch)
            .arg("report")
            .arg(dir.join("recording"))
            .status()
            .context("run refwatch report")?;
        if !status.success() {
            anyhow::bail!("refwatch report failed: {status}");
        }
    }
    let rec = out.join("dax-truncate-pinned").join("recording");
    if tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        println!("\nOpening the TUI on the recording (q quits; ? shows the keys)...");
        let status = Command::new(&refwatch)
            .arg("replay")
            .arg(&rec)
            .status()
            .context("run refwatch replay")?;
        if !status.success() {
            anyhow::bail!("refwatch replay failed: {status}");
        }
    } else {
        println!(
            "\nTo browse it in the TUI: {} replay {}",
            refwatch.display(),
            rec.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The terminal's text after the TUI of the capture in `dir` ended.
fn tui_last_words(dir: &Path) -> Result<String> {
    let path = dir.join(checks::tui::CAPTURE);
    let cap = crate::ptycap::parse(
        &std::fs::read(&path).with_context(|| format!("read {}", path.display()))?,
    )
    .with_context(|| format!("parse {}", path.display()))?;
    let mut play = checks::tui::Player::new(&cap)?;
    Ok(play.end().contents().trim_end().to_owned())
}
