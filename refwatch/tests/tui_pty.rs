//! End to end: the real `refwatch` binary in a pseudo-terminal (a private
//! tmux server), replaying a recording, with assertions on what is on screen.
//!
//! The recording is `tests/data/synthetic-dax-hold.rec`. It is SYNTHETIC:
//! written by `refwatch::tui::synthetic::write_dax_hold` (regenerate it with
//! `cargo test -p refwatch --test tui_pty -- --ignored`), not recorded on a
//! kernel. A recording made in the lab VM on a real kernel will replace it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

/// The recording this test replays (synthetic, see the module docs).
const RECORDING: &str = "tests/data/synthetic-dax-hold.rec";

struct Tmux {
    /// The private server's socket, inside `dir`.
    socket: PathBuf,
    dir: PathBuf,
}

impl Tmux {
    /// Starts `command` in a detached session of a private tmux server.
    /// `None` when tmux is not installed.
    /// The directory of test `name`: the server's socket, and whatever the
    /// program writes there (its working directory and TMPDIR below).
    fn dir_of(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("refwatch-test-{name}-{}", std::process::id()))
    }

    fn start(name: &str, command: &str, w: u16, h: u16) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            return None;
        }
        let dir = Self::dir_of(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let t = Self {
            socket: dir.join("tmux.sock"),
            dir,
        };
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            command,
            ";",
            "set-option",
            "-t",
            "t",
            "remain-on-exit",
            "on",
        ]);
        Some(t)
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// The whole pane with its history, wrapped lines joined.
    fn transcript(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Waits until the screen satisfies `ok` and has settled (the same a
    /// moment later: a capture can catch a frame half drawn, the rest of it
    /// still on its way to tmux); panics with the screen if it never does.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                thread::sleep(Duration::from_millis(50));
                if self.screen() == s {
                    return s;
                }
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!("timed out waiting for {what}; the screen:\n{s}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.wait(&format!("{needle:?}"), |s| s.contains(needle))
    }

    /// The exit status the command line prints after the program (see below).
    fn exit_status(&self) -> Option<i32> {
        self.transcript()
            .lines()
            .find_map(|l| l.strip_prefix("refwatch-exit="))
            .and_then(|c| c.trim().parse().ok())
    }

    /// Waits (10 s at most) for the program to exit; its status.
    fn wait_exit(&self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(c) = self.exit_status() {
                return c;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "refwatch did not exit; the screen:\n{}",
                self.screen()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // A failed assertion leaves the program running: end the pane's
        // whole process group before the server, so nothing outlives the test.
        if let Ok(out) = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["list-panes", "-a", "-F", "#{pane_pid}"])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .output();
            }
        }
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The pid of the `refwatch` started with `--log-file log` (each test logs
/// to a file of its own), from /proc; waits for it (10 s at most).
fn pid_of(log: &Path) -> u32 {
    let bin = Path::new(env!("CARGO_BIN_EXE_refwatch"));
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir("/proc")
            .expect("read /proc")
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                    return false;
                };
                let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
                args.first()
                    .is_some_and(|a| *a == bin.as_os_str().as_encoded_bytes())
                    && args.windows(2).any(|w| {
                        w[0] == b"--log-file" && w[1] == log.as_os_str().as_encoded_bytes()
                    })
            });
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no refwatch process logging to {}",
            log.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` still runs (a zombie has exited: nothing may reap it once
/// its parent is gone).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        st.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// Waits (5 s at most, looking every 10 ms) for `pid` to exit; how long it
/// took. A process still running then is killed, and the test fails.
fn wait_gone(pid: u32, since: Instant) -> Duration {
    while running(pid) {
        if since.elapsed() > Duration::from_secs(5) {
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
            panic!("refwatch (pid {pid}) still ran 5 s later: {st}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    since.elapsed()
}

/// The replay's command line in a test's directory: logs to `log` there.
fn replay_command(dir: &Path, log: &Path, args: &str) -> String {
    let recording = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDING);
    format!(
        "cd {dir} && TMPDIR={dir} {bin} replay {rec} {args} --log-file {log}",
        dir = quote(dir),
        bin = quote(Path::new(env!("CARGO_BIN_EXE_refwatch"))),
        rec = quote(&recording),
        log = quote(log),
    )
}

#[test]
fn replay_in_a_terminal() {
    let recording = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDING);
    assert!(
        recording.exists(),
        "{} is missing: regenerate it with `cargo test -p refwatch --test tui_pty -- --ignored`",
        recording.display()
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_refwatch"));
    let dir = Tmux::dir_of("replay");
    // No --log-file: no log file (none in TMPDIR after). Exports land in
    // the working directory.
    let command = format!(
        "cd {dir} && TMPDIR={dir} {bin} replay {rec} --paused; echo refwatch-exit=$?",
        dir = quote(&dir),
        bin = quote(bin),
        rec = quote(&recording),
    );
    let t = Tmux::start("replay", &command, 100, 30)
        .expect("tmux is not installed: `cargo xtask setup` installs it");

    // Paused at the start: nothing replayed yet.
    let s = t.wait_for("⏸ paused");
    assert!(s.contains("synthetic-dax-hold.rec"), "{s}");
    assert!(s.contains("event 0/55"), "{s}");
    assert!(s.contains("probes 6/8, 2 missing"), "{s}");

    // To the end: the page the pipe still holds is first, marked and named.
    t.keys(&["]"]);
    let s = t.wait_for("■ end");
    assert!(s.contains("event 55/55"), "{s}");
    assert!(s.contains("stuck 1"), "{s}");
    assert!(
        s.contains("stuck 1 │ holder vmsplice-hold/4242 get 1 page(s) 0x40011 held (h)"),
        "{s}"
    );
    let first_row = s
        .lines()
        .find(|l| l.starts_with("● 0x") || l.starts_with("  0x"))
        .expect("a table row");
    assert!(
        first_row.starts_with("● 0x40011")
            && first_row.contains("vmsplice-hold/4242")
            && first_row.contains("held"),
        "{s}"
    );
    // The detail pane: the detector's reason and the recorded stack.
    assert!(s.contains("● held since +2.001s"), "{s}");
    assert!(s.contains("__do_sys_vmsplice+0x9d"), "{s}");
    // 100 columns are wide enough for the LAST column.
    assert!(s.contains(" LAST "), "{s}");

    // Help, and any key closes it.
    t.keys(&["?"]);
    t.wait_for("refwatch keys");
    t.keys(&["Escape"]);
    t.wait("the help to close", |s| !s.contains("refwatch keys"));

    // Export the selected PFN as CSV; the path is shown on screen.
    t.keys(&["e"]);
    t.wait_for("Enter write");
    t.keys(&["c", "Enter"]);
    let s = t.wait_for("exported 1 events to");
    let csv = std::fs::read_dir(&t.dir)
        .expect("read test dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .unwrap_or_else(|| panic!("no CSV written; the screen:\n{s}"));
    let name = csv.file_name().map(|n| n.to_string_lossy().into_owned());
    assert!(
        name.as_deref()
            .is_some_and(|n| s.contains(n) && n.starts_with("refwatch-pfn-0x40011-")),
        "{s}"
    );
    let text = std::fs::read_to_string(&csv).expect("read CSV");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[1].contains(",0x40011,get,1,2,"), "{text}");

    // A narrower terminal: the layout follows.
    t.tmux(&["resize-window", "-t", "t", "-x", "80", "-y", "24"]);
    t.wait("the 80x24 layout", |s| {
        s.contains("● 0x40011") && !s.contains(" LAST ") && s.lines().count() <= 24
    });

    // Back to the start, one event forward.
    t.keys(&["["]);
    t.wait_for("event 0/55");
    t.keys(&["."]);
    let s = t.wait_for("event 1/55");
    assert!(s.contains("0x40000"), "{s}");

    // q quits, restores the terminal and names the log file.
    t.keys(&["q"]);
    let code = t.wait_exit();
    let s = t.transcript();
    assert_eq!(code, 0, "{s}");
    assert!(!s.contains("PFN"), "the alternate screen was left: {s}");
    assert!(s.contains("refwatch: replayed 1 of 55 events"), "{s}");
    let logs: Vec<_> = std::fs::read_dir(&t.dir)
        .expect("read test dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert!(logs.is_empty(), "a log file was left: {logs:?}");
    assert!(!s.contains("log written"), "{s}");
}

/// A replay that fails on a terminal (the recording does not exist):
/// one line, exit 1, and no log file left in TMPDIR.
#[test]
fn a_failing_replay_leaves_no_log_file() {
    let dir = Tmux::dir_of("fail");
    let command = format!(
        "cd {dir} && TMPDIR={dir} {bin} replay {dir}/missing.rec; echo refwatch-exit=$?",
        dir = quote(&dir),
        bin = quote(Path::new(env!("CARGO_BIN_EXE_refwatch"))),
    );
    let t = Tmux::start("fail", &command, 100, 30)
        .expect("tmux is not installed: `cargo xtask setup` installs it");
    assert_eq!(t.wait_exit(), 1, "{}", t.transcript());
    let s = t.transcript();
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("refwatch")).collect();
    assert_eq!(lines.len(), 2, "the error and the exit status: {s}");
    assert!(lines[0].contains("missing.rec"), "{s}");
    let logs: Vec<_> = std::fs::read_dir(&t.dir)
        .expect("read test dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".log"))
        .collect();
    assert!(logs.is_empty(), "{logs:?}");
}

/// A replay of a recording the reader refuses, on a terminal: a copy of the
/// SYNTHETIC recording with a put moved four seconds ahead (line 49 to line
/// 24), and one with an event name refwatch does not know. Each ends with
/// one line naming the file's line and exit 1, as `report` and `export` do
/// (`tests/cli_io.rs`).
#[test]
fn a_refused_recording_ends_the_replay_naming_the_line() {
    // Version 1 (still read): its lines are whole events to move.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/synthetic-dax-hold-v1.rec"),
    )
    .expect("recording");
    let mut lines: Vec<&str> = text.lines().collect();
    let put = lines.remove(48);
    lines.insert(23, put);
    let reordered = lines.join("\n") + "\n";
    let unknown = text.replacen("\"event\":\"get\"", "\"event\":\"grab\"", 1);
    for (name, body, want) in [
        ("reordered", reordered, "reordered.rec: line 25: event at"),
        ("unknown", unknown, "unknown event name \"grab\""),
    ] {
        // Tmux::start empties its own directory: the file lives beside it.
        let files = tempfile::tempdir().expect("dir");
        let dir = Tmux::dir_of(name);
        let rec = files.path().join(format!("{name}.rec"));
        std::fs::write(&rec, body).expect("write recording");
        let command = format!(
            "cd {dir} && TMPDIR={dir} {bin} replay {rec}; echo refwatch-exit=$?",
            dir = quote(&dir),
            bin = quote(Path::new(env!("CARGO_BIN_EXE_refwatch"))),
            rec = quote(&rec),
        );
        let t = Tmux::start(name, &command, 100, 30)
            .expect("tmux is not installed: `cargo xtask setup` installs it");
        assert_eq!(t.wait_exit(), 1, "{}", t.transcript());
        let s = t.transcript();
        assert!(s.contains(want), "{name}: {s}");
    }
}

/// The smallest terminal the TUI is made for, 60×12: the detail pane, the
/// end of the help and the end of the probe plan are all reached by keys.
/// Replays the synthetic recording.
#[test]
fn replay_in_the_smallest_terminal() {
    let dir = Tmux::dir_of("small");
    let log = dir.join("refwatch.log");
    let command = format!(
        "{}; echo refwatch-exit=$?",
        replay_command(&dir, &log, "--paused")
    );
    let t = Tmux::start("small", &command, 60, 12)
        .expect("tmux is not installed: `cargo xtask setup` installs it");
    t.wait_for("⏸ paused");
    t.keys(&["]"]);
    let s = t.wait_for("■ end");
    assert!(s.contains("● 0x40011"), "{s}");
    assert!(!s.contains(" detail pfn"), "too low for both panes: {s}");
    // Enter: the detail pane in the table's place; Esc: back.
    t.keys(&["Enter"]);
    let s = t.wait_for(" detail pfn 0x40011");
    assert!(s.contains("● held since +2.001s"), "{s}");
    assert!(s.contains("vmsplice-hold/4242"), "the holder's get: {s}");
    t.keys(&["Escape"]);
    t.wait("the table", |s| {
        s.contains("● 0x40011") && !s.contains(" detail pfn")
    });
    // The help scrolls to its last key.
    t.keys(&["?"]);
    t.wait_for("↓ more");
    t.keys(&["End"]);
    let s = t.wait_for("Esc back, clear search");
    assert!(s.contains("↑ more"), "{s}");
    t.keys(&["x"]);
    t.wait("the help to close", |s| !s.contains("refwatch keys"));
    // The probe plan shows its status column and scrolls to its last hook.
    t.keys(&["p"]);
    let s = t.wait_for("STATUS");
    assert!(s.contains(" attached "), "{s}");
    t.keys(&["End"]);
    t.wait_for("dax-busy");
    t.keys(&["Escape"]);
    t.wait("the plan to close", |s| !s.contains("STATUS"));
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0, "{}", t.transcript());
}

/// The terminal goes away under a paused replay (`tmux kill-server`: the
/// pty is hung up, the shell and refwatch get SIGHUP): refwatch exits at
/// once, saying why in its log. (It used to spin in crossterm's read of
/// the dead terminal, ignoring SIGTERM, for ever.) Replays the synthetic
/// recording.
#[test]
fn replay_exits_when_its_terminal_is_killed() {
    let dir = Tmux::dir_of("hangup");
    let log = dir.join("refwatch.log");
    let command = format!(
        "{}; echo refwatch-exit=$?",
        replay_command(&dir, &log, "--paused")
    );
    let t = Tmux::start("hangup", &command, 100, 30)
        .expect("tmux is not installed: `cargo xtask setup` installs it");
    t.wait_for("⏸ paused");
    let pid = pid_of(&log);

    let killed = Instant::now();
    t.tmux(&["kill-server"]);
    let took = wait_gone(pid, killed);
    eprintln!(
        "refwatch exited {} ms after tmux kill-server",
        took.as_millis()
    );
    let text = std::fs::read_to_string(&log).expect("read the log");
    assert!(
        text.contains("[ERROR] refwatch::tui: the terminal hung up")
            && text.contains(": replay stopped at event 0 of 55"),
        "{text}"
    );
}

/// The same with nothing to signal refwatch: the shell ignores SIGHUP (so
/// it outlives the terminal and writes down refwatch's exit status), and
/// refwatch, playing, must notice the dead terminal by itself. It exits 1,
/// no panic. Replays the synthetic recording.
#[test]
fn replay_exits_when_its_terminal_hangs_up_without_sighup() {
    let dir = Tmux::dir_of("hangup-nosig");
    let log = dir.join("refwatch.log");
    let status = dir.join("exit");
    let command = format!(
        "trap '' HUP; {}; echo $? > {}",
        replay_command(&dir, &log, "--speed 0.05"),
        quote(&status)
    );
    let t = Tmux::start("hangup-nosig", &command, 100, 30)
        .expect("tmux is not installed: `cargo xtask setup` installs it");
    t.wait_for("▶ playing");
    let pid = pid_of(&log);

    let killed = Instant::now();
    t.tmux(&["kill-server"]);
    let took = wait_gone(pid, killed);
    eprintln!(
        "refwatch exited {} ms after tmux kill-server (no SIGHUP)",
        took.as_millis()
    );
    let start = Instant::now();
    let code = loop {
        if let Some(c) = std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the shell wrote no exit status"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).expect("read the log");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("[ERROR] refwatch::tui: the terminal ")
            && text.contains(": replay stopped at event ")
            && !text.contains("SIGHUP"),
        "{text}"
    );
}

/// SIGTERM ends a playing replay: the terminal is restored and the summary
/// printed. Replays the synthetic recording.
#[test]
fn sigterm_ends_a_running_replay() {
    let dir = Tmux::dir_of("sigterm");
    let log = dir.join("refwatch.log");
    let command = format!(
        "{}; echo refwatch-exit=$?",
        replay_command(&dir, &log, "--speed 0.05")
    );
    let t = Tmux::start("sigterm", &command, 100, 30)
        .expect("tmux is not installed: `cargo xtask setup` installs it");
    t.wait_for("▶ playing");
    let pid = pid_of(&log);

    let sent = Instant::now();
    let out = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .output()
        .expect("run kill");
    assert!(out.status.success(), "{out:?}");
    let took = wait_gone(pid, sent);
    eprintln!("refwatch exited {} ms after SIGTERM", took.as_millis());
    let code = t.wait_exit();
    let s = t.transcript();
    assert_eq!(code, 0, "{s}");
    assert!(!s.contains("PID"), "the alternate screen was left: {s}");
    assert!(s.contains("refwatch: replayed "), "{s}");
    assert!(s.contains(" of 55 events of "), "{s}");
}

/// A recording made in the lab VM on Debian's 6.12 kernel (REAL kernel
/// events): `refwatch record` during the `dax-hold` scenario, copied while
/// a pipe still held references on 16 fs-dax pages.
const LAB_RECORDING: &str = "tests/data/lab-debian-6.12-dax-hold-during.rec";

#[test]
fn replay_a_lab_recording() {
    let recording = Path::new(env!("CARGO_MANIFEST_DIR")).join(LAB_RECORDING);
    let text = std::fs::read_to_string(&recording).expect("the lab recording");
    // What the screen must show, taken from the recording itself.
    let mut pfns = std::collections::BTreeSet::new();
    let mut kernel = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        match v["type"].as_str() {
            Some("header") => kernel = v["kernel"].as_str().expect("kernel").to_string(),
            Some("event") => {
                pfns.insert(v["pfn"].as_u64().expect("pfn"));
            }
            _ => {}
        }
    }
    let first = *pfns.iter().next().expect("events in the lab recording");
    let bin = Path::new(env!("CARGO_BIN_EXE_refwatch"));
    let dir = Tmux::dir_of("lab-replay");
    let command = format!(
        "cd {dir} && TMPDIR={dir} {bin} replay {rec} --paused; echo refwatch-exit=$?",
        dir = quote(&dir),
        bin = quote(bin),
        rec = quote(&recording),
    );
    let t = Tmux::start("lab-replay", &command, 120, 35)
        .expect("tmux is not installed: `cargo xtask setup` installs it");
    let s = t.wait_for("⏸ paused");
    assert!(
        s.contains(&kernel),
        "kernel {kernel} not in the header: {s}"
    );
    t.keys(&["]"]);
    let s = t.wait_for("■ end");
    // Every page the pipe holds is stuck, sorted first, held by the workload.
    assert!(s.contains(&format!("stuck {}", pfns.len())), "{s}");
    let first_row = s
        .lines()
        .find(|l| l.starts_with("● 0x"))
        .expect("a stuck table row");
    assert!(
        first_row.starts_with(&format!("● {first:#x}"))
            && first_row.contains("workload/")
            && first_row.contains("held"),
        "{s}"
    );
    // The detail pane names the holder and its kernel stack (vmsplice's GUP).
    assert!(s.contains("held since"), "{s}");
    assert!(s.contains("holders: workload/"), "{s}");
    assert!(s.contains("__do_sys_vmsplice+0x"), "{s}");
    t.keys(&["q"]);
    let code = t.wait_exit();
    assert_eq!(code, 0, "{}", t.transcript());
}

/// Writes the synthetic recording the test above replays.
#[test]
#[ignore = "regenerates tests/data/synthetic-dax-hold.rec"]
fn regenerate_synthetic_recording() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDING);
    refwatch::tui::synthetic::write_dax_hold(&p).expect("write the synthetic recording");
}

/// The committed synthetic recording is what the generator writes.
#[test]
fn synthetic_recording_is_current() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDING);
    let dir = std::env::temp_dir().join(format!("refwatch-synthetic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let fresh = dir.join("fresh.rec");
    refwatch::tui::synthetic::write_dax_hold(&fresh).expect("write");
    let a = std::fs::read(&p).expect("read the committed recording");
    let b = std::fs::read(&fresh).expect("read the fresh one");
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        a == b,
        "{} differs from what the generator writes: regenerate it with `cargo test -p refwatch --test tui_pty -- --ignored`",
        p.display()
    );
}

/// The recording goes away while it is replayed (the SYNTHETIC one, copied):
/// going back needs it again, so the replay stops with a one-line error, the
/// terminal restored (the alternate screen left), and exit code 1.
#[test]
fn a_recording_gone_during_a_replay_ends_it_with_the_terminal_restored() {
    let dir = Tmux::dir_of("gone");
    // Not in the test's directory: starting the terminal clears that.
    let rec_dir = tempfile::tempdir().expect("dir");
    let copy = rec_dir.path().join("copy.rec");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDING), &copy).expect("copy");
    let command = format!(
        "cd {d} && TMPDIR={d} {bin} replay {rec} --paused --log-file {log}; echo refwatch-exit=$?",
        d = quote(&dir),
        bin = quote(Path::new(env!("CARGO_BIN_EXE_refwatch"))),
        rec = quote(&copy),
        log = quote(&dir.join("refwatch.log")),
    );
    let t = Tmux::start("gone", &command, 100, 30)
        .expect("tmux is not installed: `cargo xtask setup` installs it");
    t.wait_for("⏸ paused");
    t.keys(&["."]);
    t.wait_for("event 1/55");
    std::fs::remove_file(&copy).expect("remove the recording");
    t.keys(&[","]);
    let code = t.wait_exit();
    let s = t.transcript();
    assert_eq!(code, 1, "{s}");
    assert!(!s.contains("PID"), "the alternate screen was left: {s}");
    assert!(s.contains("replay stopped"), "{s}");
    assert!(s.contains("copy.rec"), "{s}");
}
