//! The lab's check that no output shows a kernel address: every file of a
//! scenario folder (the recording, `events.jsonl`, `report.json`, the CSV
//! and Perfetto exports the check makes from the recording, the logs) is
//! searched for numbers in the kernel address range, in decimal (signed or
//! unsigned) or hex ([`refwatch_common::kaddr::spellings`]). refwatch runs
//! without `--raw-pointers` there, so there must be none.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use refwatch_common::kaddr;

use crate::cmd;

/// The exports the check makes beside the recording: format and file.
pub const EXPORTS: [(&str, &str); 2] =
    [("csv", "export.csv"), ("perfetto", "export.perfetto.json")];

/// Kernel addresses listed per file; the rest are counted.
const SHOWN_PER_FILE: usize = 5;

/// Exports the scenario's recording as CSV and Perfetto with `refwatch`,
/// then [`scan_dir`]s the folder.
pub fn check(refwatch: &Path, dir: &Path) -> Result<Vec<String>> {
    let recording = dir.join("recording");
    if recording.exists() {
        for (format, file) in EXPORTS {
            cmd::output(
                Command::new(refwatch)
                    .arg("export")
                    .arg(&recording)
                    .args(["--format", format, "-o"])
                    .arg(dir.join(file)),
            )?;
        }
    }
    scan_dir(dir)
}

/// Every kernel address in the files of `dir` (not its subfolders), as
/// problems naming file, line and value.
pub fn scan_dir(dir: &Path) -> Result<Vec<String>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut problems = Vec::new();
    for f in files {
        let bytes = fs::read(&f).with_context(|| format!("read {}", f.display()))?;
        let name = f.file_name().map_or_else(
            || f.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let found = scan_text(&name, &String::from_utf8_lossy(&bytes));
        let more = found.len().saturating_sub(SHOWN_PER_FILE);
        problems.extend(found.into_iter().take(SHOWN_PER_FILE));
        if more > 0 {
            problems.push(format!("{name}: {more} more kernel addresses"));
        }
    }
    Ok(problems)
}

/// Every kernel address in `text` (the file `name`), as
/// `name:line: kernel address VALUE`.
pub fn scan_text(name: &str, text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .flat_map(|(i, line)| {
            kaddr::spellings(line).map(move |v| format!("{name}:{}: kernel address {v}", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_spelling_with_file_and_line() {
        let text = concat!(
            r#"{"type":"header","format":"refwatch-recording","version":1}"#,
            "\n",
            r#"{"type":"event","ts_ns":36092370455,"pfn":295936,"symbol":"try_grab_folio_fast","ret":-30611519316131840}"#,
            "\n",
            "1000,0,336,336,workload,0x48400,get,1,2,0,fsdax,1,try_grab_folio_fast,18416132554393419776,a+0x5,,,,,,\n",
            r#"{"page":"0xffffea0001234500","stack":["try_grab_folio_fast+0x5 (0xffffffff81000005)"]}"#,
            "\n",
            "page ffff8880012345c0 at pfn 0x40000\n",
        );
        assert_eq!(
            scan_text("recording", text),
            vec![
                "recording:2: kernel address -30611519316131840".to_string(),
                "recording:3: kernel address 18416132554393419776".into(),
                "recording:4: kernel address 0xffffea0001234500".into(),
                "recording:4: kernel address 0xffffffff81000005".into(),
                "recording:5: kernel address ffff8880012345c0".into(),
            ]
        );
    }

    #[test]
    fn leaves_other_numbers_alone() {
        let text = concat!(
            r#"{"type":"event","ts_ns":123456789012,"cpu":1,"pid":336,"pfn":262144,"refcount_before":1026,"refcount_after":2,"mapcount":-1,"ret":-11}"#,
            "\n",
            r#"{"ret":1,"migration":{"dst_pfn":4294967280},"stack":["gup_fast_fallback+0x6be","?"]}"#,
            "\n",
            "pfn 0x40000 0x48400-0x4840f ret -4095 -16 4242 bpf_trampoline_6442501886\n",
            r#"{"ts": 36092.370455, "pid": 1, "tid": 3, "args": {"pfn": "0x40000", "refcount": 1}}"#,
            "\n",
        );
        assert!(
            scan_text("x", text).is_empty(),
            "{:?}",
            scan_text("x", text)
        );
    }

    #[test]
    fn scans_every_file_of_a_folder() {
        let dir = std::env::temp_dir().join(format!("xtask-pointer-scan-{}", std::process::id()));
        fs::create_dir_all(dir.join("sub")).expect("dir");
        fs::write(
            dir.join("events.jsonl"),
            "{\"ret\":1}\n{\"ret\":-30611519316131840}\n",
        )
        .expect("write");
        fs::write(dir.join("report.json"), "{\"pfn\":295936}\n").expect("write");
        let many: String = (0..8).map(|i| format!("0xffffea000123450{i}\n")).collect();
        fs::write(dir.join("export.csv"), many).expect("write");
        // Not a file of the scenario.
        fs::write(dir.join("sub").join("x"), "-30611519316131840\n").expect("write");
        let problems = scan_dir(&dir).expect("scan");
        fs::remove_dir_all(&dir).ok();
        assert_eq!(
            problems,
            vec![
                "events.jsonl:2: kernel address -30611519316131840".to_string(),
                "export.csv:1: kernel address 0xffffea0001234500".into(),
                "export.csv:2: kernel address 0xffffea0001234501".into(),
                "export.csv:3: kernel address 0xffffea0001234502".into(),
                "export.csv:4: kernel address 0xffffea0001234503".into(),
                "export.csv:5: kernel address 0xffffea0001234504".into(),
                "export.csv: 3 more kernel addresses".into(),
            ]
        );
    }
}
