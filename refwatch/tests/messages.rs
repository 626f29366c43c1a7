//! The one-line messages (and their one hint line) of the failures a user
//! meets first, from the real binary: capabilities missing, no terminal for
//! the TUI, nothing attachable on this kernel; and no log file left behind.
//! The capability tests drop capabilities with `setpriv`, so they need root.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_refwatch")
}

fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/synthetic-dax-hold.rec")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `refwatch ARGS` under `setpriv` with the given bounding set, output taken.
fn without_caps(bounding: &str, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            &format!("--bounding-set={bounding}"),
            bin(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv runs (util-linux; the test runs as root)")
}

/// One line naming the cause, one hint line, exit status 1.
fn assert_line_and_hint(o: &Output, cause: &str, hint: &str) {
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with(cause), "{err}");
    assert!(
        lines[1].starts_with("hint: ") && lines[1].contains(hint),
        "{err}"
    );
    assert!(
        !err.contains("Some(") && !err.contains(" { "),
        "debug text: {err}"
    );
}

/// Root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: refwatch says which
/// are missing before any kernel call fails, for probes, attach and record.
#[test]
fn missing_capabilities_are_named_with_the_fix() {
    let d = tempfile::tempdir().expect("dir");
    let rec = d.path().join("x.rec");
    let rec = rec.to_str().expect("utf-8 path");
    for args in [
        vec!["probes"],
        vec!["attach", "--headless", "--duration", "1"],
        vec!["record", "-o", rec, "--duration", "1"],
    ] {
        let o = without_caps("-bpf,-perfmon,-sys_admin", &args);
        assert_line_and_hint(
            &o,
            "refwatch: missing capabilities: CAP_BPF (to load kernel programs) and CAP_PERFMON (to attach them and read kernel memory)",
            "setcap cap_bpf,cap_perfmon+ep",
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert!(!Path::new(rec).exists(), "no recording started");
    // No capability at all: CAP_SYSLOG joins when kallsyms hides addresses.
    let o = without_caps("-all", &["probes"]);
    assert_line_and_hint(
        &o,
        "refwatch: missing capabilities: CAP_BPF (to load kernel programs)",
        "run it as root",
    );
    assert!(stderr(&o).contains(" CAP_PERFMON ("), "{}", stderr(&o));
    // CAP_SYS_ADMIN alone covers loading and attaching.
    let o = without_caps("-bpf,-perfmon", &["probes"]);
    assert!(
        !stderr(&o).contains("missing capabilities"),
        "{}",
        stderr(&o)
    );
}

/// replay and attach need a terminal; without one they say what works
/// instead (replay has no --headless), and write no log file.
#[test]
fn the_tui_without_a_terminal_names_what_works_instead() {
    let d = tempfile::tempdir().expect("dir");
    // No terminal: stdin from /dev/null, stdout and stderr to pipes.
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(bin())
            .args(args)
            .env("TMPDIR", d.path())
            .stdin(Stdio::null())
            .output()
            .expect("refwatch runs")
    };
    let rec = recording();
    let o = run(&["replay".as_ref(), rec.as_os_str()]);
    assert_line_and_hint(
        &o,
        "refwatch: replay draws a terminal UI, but standard output is not a terminal",
        "`refwatch report FILE`",
    );
    assert!(!stderr(&o).contains("--headless"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refwatch export FILE"),
        "{}",
        stderr(&o)
    );
    let o = run(&["attach".as_ref(), "--duration".as_ref(), "1".as_ref()]);
    assert_line_and_hint(
        &o,
        "refwatch: attach draws a terminal UI, but standard output is not a terminal",
        "refwatch attach --headless",
    );
    let left: Vec<_> = std::fs::read_dir(d.path())
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "files left in TMPDIR: {left:?}");
}

/// On a kernel where no hook attaches (the machines this project is built
/// on refuse every fentry load and have no kprobes), `attach` prints one
/// line and a hint, not the plan; `probes` prints the plan and exits 1 with
/// the same line. Where hooks do attach, both succeed instead.
#[test]
fn nothing_attachable_is_one_line_and_probes_shows_why() {
    let probes = Command::new(bin())
        .arg("probes")
        .output()
        .expect("refwatch runs");
    let plan = String::from_utf8_lossy(&probes.stdout);
    let attach = Command::new(bin())
        .args([
            "attach",
            "--headless",
            "--duration",
            "1",
            "--summary-secs",
            "0",
        ])
        .output()
        .expect("refwatch runs");
    if plan.contains("\n0 of ") {
        assert!(plan.contains("HOOK "), "the plan: {plan}");
        let err = stderr(&probes);
        assert_line_and_hint(&probes, "refwatch: no hook could attach on kernel ", "");
        assert_eq!(stderr(&attach), err, "the same message");
        assert_eq!(attach.status.code(), Some(1));
        assert!(attach.stdout.is_empty(), "no plan from attach");
        assert!(err.contains("`refwatch probes` shows each hook"), "{err}");
        // Each cause once: the plan's lines name each errno once.
        for l in plan.lines() {
            assert!(l.matches("(os error").count() <= 1, "{l}");
            assert!(!l.contains("Verifier output"), "{l}");
        }
    } else {
        assert_eq!(probes.status.code(), Some(0), "{}", stderr(&probes));
        assert_eq!(attach.status.code(), Some(0), "{}", stderr(&attach));
    }
}

/// `--vmlinux` names the frames the TUI shows: without a TUI (`record`,
/// `attach --headless`) it is refused before anything attaches, naming
/// where it applies, and `report --vmlinux` refuses a file that is no ELF
/// image.
#[test]
fn vmlinux_without_a_tui_is_refused_naming_where_it_applies() {
    let d = tempfile::tempdir().expect("dir");
    let out = d.path().join("run.rec");
    let o = Command::new(bin())
        .args(["record", "--vmlinux", "/nonexistent/vmlinux", "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("refwatch runs");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`record` has none; `refwatch report --vmlinux FILE`"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "no recording is started");
    let o = Command::new(bin())
        .args(["attach", "--headless", "--vmlinux", "/nonexistent/vmlinux"])
        .stdin(Stdio::null())
        .output()
        .expect("refwatch runs");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`attach --headless` has none"),
        "{}",
        stderr(&o)
    );
    let rec = recording();
    let o = Command::new(bin())
        .args(["report", "--vmlinux"])
        .arg(&rec)
        .arg(&rec)
        .output()
        .expect("refwatch runs");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not an ELF kernel image"),
        "{}",
        stderr(&o)
    );
}
