//! Device-private scenarios (`hmm-*`): refwatch's events on the device pages
//! against the workload's account, migrations and frees.

use std::{collections::BTreeSet, path::Path};

use anyhow::Result;

use super::{Ev, groundtruth::check_groundtruth, read_events, read_workload};

/// A migration event's direction, whether it moved, and its destination.
fn migration_of(e: &Ev) -> Option<(&str, bool, Option<u64>, &str)> {
    let m = e.migration.as_ref()?;
    Some((
        m["direction"].as_str()?,
        m["moved"].as_bool()?,
        m["dst_pfn"].as_u64(),
        m["stage"].as_str()?,
    ))
}

/// Checks one device-private scenario (`hmm-*`, `functions`: refwatch ran
/// with `--no-precise`) in `dir`: refwatch's events against the workload's
/// account, and the ground truth comparison the lab wrote.
pub fn check_hmm(scenario: &str, functions: bool, dir: &Path) -> Result<Vec<String>> {
    let w = read_workload(dir)?;
    let events = read_events(&dir.join("events.jsonl"))?;
    let mut bad = Vec::new();
    let device: BTreeSet<u64> = w.pfns.iter().copied().collect();
    if device.len() != w.pfns.len() || device.is_empty() {
        bad.push(format!(
            "workload reported {} device PFNs, {} distinct",
            w.pfns.len(),
            device.len()
        ));
    }
    let private: Vec<&Ev> = events
        .iter()
        .filter(|e| e.pgmap_type == "private")
        .collect();
    let seen: BTreeSet<u64> = private.iter().map(|e| e.pfn).collect();
    let missing: Vec<_> = device.difference(&seen).collect();
    if !missing.is_empty() {
        bad.push(format!("device PFNs without events: {missing:#x?}"));
    }
    let stray: Vec<_> = seen.difference(&device).collect();
    if !stray.is_empty() {
        bad.push(format!(
            "events on device-private PFNs the workload does not own: {stray:#x?}"
        ));
    }
    let owners: BTreeSet<&str> = private.iter().filter_map(|e| e.owner.as_deref()).collect();
    if owners != BTreeSet::from(["dmirror_devmem_free"]) {
        bad.push(format!(
            "owner of the device pages: {owners:?}, expected the test driver's dmirror_devmem_free"
        ));
    }
    // Every page moved to the device, its destination one of the device PFNs.
    let to_device: BTreeSet<u64> = events
        .iter()
        .filter_map(|e| match migration_of(e)? {
            ("to_device", true, Some(dst), _) => Some(dst),
            _ => None,
        })
        .collect();
    if to_device != device {
        bad.push(format!(
            "pages moved to the device: {} with destinations {:#x?}, expected the {} device PFNs",
            to_device.len(),
            to_device.difference(&device).collect::<Vec<_>>(),
            device.len()
        ));
    }
    let freed: BTreeSet<u64> = private
        .iter()
        .filter(|e| e.event == "free")
        .map(|e| e.pfn)
        .collect();
    if freed != device {
        let never: Vec<_> = device.difference(&freed).collect();
        bad.push(format!(
            "device PFNs never freed to the driver: {never:#x?}"
        ));
    }
    let failed: Vec<&Ev> = events
        .iter()
        .filter(|e| migration_of(e).is_some_and(|(_, moved, _, _)| !moved))
        .collect();
    match scenario {
        "hmm-migrate" => {
            let back: BTreeSet<u64> = events
                .iter()
                .filter(|e| {
                    migration_of(e).is_some_and(|(dir, moved, _, _)| dir == "fault" && moved)
                })
                .map(|e| e.pfn)
                .collect();
            if back != device {
                bad.push(format!(
                    "CPU faults moved {} device pages back, expected all {}",
                    back.len(),
                    device.len()
                ));
            }
        }
        "hmm-blocked" => {
            let held = w.fact("held_ram_pfn")?;
            let on: Vec<(u64, &str, &str)> = failed
                .iter()
                .filter_map(|e| {
                    let (dir, _, _, stage) = migration_of(e)?;
                    Some((e.pfn, dir, stage))
                })
                .collect();
            if on != [(held, "to_device", "setup")] {
                bad.push(format!(
                    "failed migrations {on:#x?}, expected exactly the held page {held:#x} (to_device, setup)"
                ));
            }
            let late = events
                .iter()
                .find(|e| e.late && e.pfn == held && e.event == "get");
            match late {
                Some(e)
                    if e.comm == "workload" && e.stack.iter().any(|f| f.contains("vmsplice")) => {}
                other => bad.push(format!(
                    "no remembered vmsplice reference on the held page {held:#x}: {other:?}"
                )),
            }
        }
        _ => {
            if !failed.is_empty() {
                bad.push(format!("{} failed page migrations", failed.len()));
            }
        }
    }
    bad.extend(check_groundtruth(functions, dir)?);
    Ok(bad)
}
