//! The refwatch binary's output edges: a reader that goes away, a full
//! disk, an output path that must not be written. Runs the real binary on
//! a recording made in the lab (`tests/data/lab-debian-6.12-dax-hold-during.rec`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lab-debian-6.12-dax-hold-during.rec")
}

fn refwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_refwatch"))
}

/// A SYNTHETIC recording built from the lab one: its header and first
/// event, repeated on 3000 PFNs, each page taken and never released, so
/// every output is far larger than a pipe holds.
fn big_recording(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(recording()).expect("lab recording");
    let mut lines = text.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().expect("header")).expect("json");
    let get: serde_json::Value = lines
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| v["event"] == "get")
        .expect("a get");
    let start = header["started_ns"].as_u64().expect("start");
    let mut out = header.to_string();
    out.push('\n');
    for i in 0..3000u64 {
        let mut e = get.clone();
        e["pfn"] = (0x40000 + i).into();
        e["ts_ns"] = (start + 1_000_000 + i * 1000).into();
        out.push_str(&e.to_string());
        out.push('\n');
    }
    let end = serde_json::json!({"type": "end", "now_ns": start + 20_000_000_000u64, "events": 3000, "dropped": 0});
    out.push_str(&end.to_string());
    out.push('\n');
    let p = dir.join("big.rec");
    std::fs::write(&p, out).expect("write");
    p
}

/// `report --json REC | head -1`, and the same for export: the first line
/// is read, the pipe closed; refwatch ends quietly with its usual code.
#[test]
fn a_closed_pipe_ends_quietly() {
    let d = tempfile::tempdir().expect("dir");
    let big = big_recording(d.path());
    for args in [
        vec!["report", "--json"],
        vec!["report"],
        vec!["export", "--format", "jsonl"],
    ] {
        let mut child = refwatch()
            .args(&args)
            .arg(&big)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("refwatch runs");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("a line");
        // The reader goes away here (`head -1`).
        let out = child.wait_with_output().expect("refwatch ends");
        assert!(!first.is_empty(), "{args:?}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn a_full_disk_is_one_line_and_an_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = refwatch()
        .arg("report")
        .arg(recording())
        .stdout(full)
        .output()
        .expect("refwatch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
}

#[test]
fn export_refuses_a_link_and_its_own_input() {
    let d = tempfile::tempdir().expect("dir");
    let victim = d.path().join("victim");
    std::fs::write(&victim, "keep").expect("write");
    let link = d.path().join("out.csv");
    std::os::unix::fs::symlink(&victim, &link).expect("link");
    let copy = d.path().join("run.rec");
    std::fs::copy(recording(), &copy).expect("copy");
    for target in [&link, &copy] {
        let out = refwatch()
            .args(["export", "--format", "csv", "-o"])
            .arg(target)
            .arg(&copy)
            .output()
            .expect("refwatch runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
    assert_eq!(
        std::fs::read(&copy).expect("read"),
        std::fs::read(recording()).expect("read")
    );
}

/// `record -o` and `attach --jsonl` refuse a planted link (a directory,
/// one file for both) before attaching anything: one line, exit 1, the link's
/// target untouched.
#[test]
fn record_and_jsonl_refuse_a_link_before_attaching() {
    let d = tempfile::tempdir().expect("dir");
    let victim = d.path().join("victim");
    std::fs::write(&victim, "keep").expect("write");
    let link = d.path().join("run.rec");
    std::os::unix::fs::symlink(&victim, &link).expect("link");
    let dir = d.path().to_path_buf();
    let runs: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["record".into(), "-o".into(), link.clone().into()],
        vec!["record".into(), "-o".into(), dir.clone().into()],
        vec![
            "attach".into(),
            "--headless".into(),
            "--jsonl".into(),
            link.clone().into(),
        ],
        vec![
            "record".into(),
            "--jsonl".into(),
            dir.join("same").into(),
            "-o".into(),
            dir.join("same").into(),
        ],
    ];
    for args in runs {
        let out = refwatch().args(&args).output().expect("refwatch runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            ["symbolic link", "is a directory", "given twice"]
                .iter()
                .any(|w| err.contains(w)),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
    // A size too small to hold a recording is refused by the parser.
    let out = refwatch()
        .args(["record", "--max-size", "4K", "-o"])
        .arg(d.path().join("new.rec"))
        .output()
        .expect("refwatch runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1M"));
    assert!(!d.path().join("new.rec").exists());
}

/// `--watch-ready` without `--watch`, and `--watch` on `refwatch watch`, are
/// one line and exit 1, before anything is attached.
#[test]
fn watch_flags_out_of_place_are_refused() {
    let d = tempfile::tempdir().expect("dir");
    let ready = d.path().join("ready");
    let out = refwatch()
        .args(["attach", "--headless", "--watch-ready"])
        .arg(&ready)
        .output()
        .expect("refwatch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("give --watch too"), "{err}");
    assert!(!ready.exists());
    // `refwatch watch` watches its arguments: --watch there is refused too.
    let out = refwatch()
        .args(["watch", "0x48200", "--watch", "new"])
        .output()
        .expect("refwatch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--watch goes with attach"), "{err}");
}

/// Copies of the SYNTHETIC dax-hold recording with an event moved four
/// seconds back: in version 1 (every event a JSON object) a put moved
/// ahead of the get before it (line 49 moved up to line 24); in version 2
/// (compact lines, times as deltas) an event's delta made four seconds
/// smaller and the next one's four seconds larger. Every offline command
/// refuses them, naming the line that goes back in time, instead of
/// reporting a page stuck by the reordering (`replay`, which needs a
/// terminal: `tests/tui_pty.rs`).
#[test]
fn a_reordered_recording_is_refused_naming_the_line() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let text = std::fs::read_to_string(data.join("synthetic-dax-hold-v1.rec")).expect("recording");
    let mut lines: Vec<&str> = text.lines().collect();
    let put = lines.remove(48);
    assert!(
        put.contains("\"put\"") && put.contains("1008502000000"),
        "{put}"
    );
    lines.insert(23, put);
    refused_as_reordered(
        &(lines.join("\n") + "\n"),
        "line 25: event at 1004500000000 ns",
    );
    // Version 2: the 30th event line four seconds back, the one after it
    // four seconds ahead (later times unchanged).
    let text = std::fs::read_to_string(data.join("synthetic-dax-hold.rec")).expect("recording");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let events: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].starts_with("[") && !lines[*i].starts_with("[\""))
        .collect();
    // Deltas are zigzag-coded (see `compact::zigzag`).
    let shift = |line: &mut String, by: i64| {
        let (dt, rest) = line[1..].split_once(',').expect("an event line");
        let dt = refwatch::format::recording::compact::unzigzag(dt.parse().expect("a delta"));
        let dt = refwatch::format::recording::compact::zigzag(dt + by);
        *line = format!("[{dt},{rest}");
    };
    let (moved, next) = (events[29], events[30]);
    shift(&mut lines[moved], -4_000_000_000);
    shift(&mut lines[next], 4_000_000_000);
    refused_as_reordered(
        &(lines.join("\n") + "\n"),
        &format!("line {}: event at", moved + 1),
    );
}

/// Every offline command refuses the recording `text` with one line that
/// contains `want` and "out of order", exit 1, and no output file.
fn refused_as_reordered(text: &str, want: &str) {
    let d = tempfile::tempdir().expect("dir");
    let p = d.path().join("reordered.rec");
    std::fs::write(&p, text).expect("write");
    let want = format!("reordered.rec: {want}");
    let out_file = d.path().join("out");
    for args in [
        vec!["report", "--fail-on-stuck"],
        vec!["report", "--json"],
        vec!["export", "--format", "jsonl"],
        vec!["export", "--format", "csv"],
        vec!["export", "--format", "perfetto"],
        vec![
            "export",
            "--format",
            "perfetto",
            "-o",
            out_file.to_str().expect("utf8"),
        ],
    ] {
        let out = refwatch()
            .args(&args)
            .arg(&p)
            .stdin(Stdio::null())
            .output()
            .expect("refwatch runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(err.contains("out of order"), "{args:?}: {err}");
    }
    assert!(
        !out_file.exists(),
        "no output file from a refused recording"
    );
}

/// A SYNTHETIC event with an event name refwatch does not know: every
/// offline command refuses it, naming the line (`replay`: `tests/tui_pty.rs`).
#[test]
fn an_unknown_event_is_refused_by_every_command() {
    let d = tempfile::tempdir().expect("dir");
    let text = std::fs::read_to_string(recording()).expect("recording");
    let text = text.replacen("\"event\":\"get\"", "\"event\":\"grab\"", 2);
    let p = d.path().join("unknown.rec");
    std::fs::write(&p, text).expect("write");
    for args in [
        vec!["report"],
        vec!["export", "--format", "jsonl"],
        vec!["export", "--format", "csv"],
        vec!["export", "--format", "perfetto"],
    ] {
        let out = refwatch()
            .args(&args)
            .arg(&p)
            .stdin(Stdio::null())
            .output()
            .expect("refwatch runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("unknown.rec: line 3: unknown event name \"grab\""),
            "{args:?}: {err}"
        );
    }
}
