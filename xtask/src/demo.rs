//! `cargo xtask demo`: refwatch's main job on the embedded default. Boots the
//! lab VM with real fs-dax pages, runs a reference hold and a truncate that
//! waits on it with refwatch recording, then shows what refwatch saw: the
//! stuck pages with their holder, the report, and (on a terminal) the TUI
//! replaying the recording made in the guest.

use std::{
    io::IsTerminal,
    path::Path,
    process::{Command, ExitCode},
};

use anyhow::{Context, Result};

use crate::{
    kernels::KernelId,
    lab::{self, LabRun},
};

/// Scenarios the demo runs.
const SCENARIOS: &[&str] = &["dax-hold", "dax-truncate-pinned"];

pub fn run(kernel: KernelId, out: &Path, tui: bool) -> Result<ExitCode> {
    println!("refwatch demo: booting {kernel} in the lab VM (qemu, no KVM: about a minute)");
    let result = lab::run(&LabRun::new(kernel, SCENARIOS), out)?;
    println!("{}", result.summary());
    let refwatch = lab::build_guest_binaries(None, None)?.refwatch;
    for s in SCENARIOS {
        let dir = out.join(s);
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
