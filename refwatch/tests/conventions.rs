//! The binary's conventions: `--version` names the git revision it was
//! built from, `refwatch man` renders, `refwatch completions` for each
//! shell, and NO_COLOR in clap's own output.

use std::{
    path::Path,
    process::{Command, Stdio},
};

fn refwatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_refwatch"));
    c.stdin(Stdio::null());
    c
}

fn stdout(c: &mut Command) -> String {
    let out = c.output().expect("run refwatch");
    assert!(out.status.success(), "{c:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn version_names_the_git_revision() {
    let version = stdout(refwatch().arg("--version"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let head = Command::new("git")
        .arg("-C")
        .arg(&workspace)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let line = version.trim_end();
    let expected = format!("refwatch {} (", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected), "{line}");
    let rev = line[expected.len()..].trim_end_matches(')');
    match head {
        // Built from this checkout (the tree may have changed since:
        // `-dirty` is allowed).
        Some(head) => assert!(
            rev == head || rev == format!("{head}-dirty"),
            "{line} does not name HEAD {head}"
        ),
        None => assert_eq!(rev, "unknown", "{line}"),
    }
}

#[test]
fn completions_for_each_shell_and_bash_accepts_its_script() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(refwatch().args(["completions", shell]));
        assert!(script.contains("replay"), "{shell}: {script:.200}");
    }
    let out = Command::new("bash")
        .args(["-n", "-c"])
        .arg(stdout(refwatch().args(["completions", "bash"])))
        .output()
        .expect("bash");
    assert!(out.status.success(), "bash -n: {out:?}");
    // An unknown shell: a one-line usage error, exit 2.
    let out = refwatch()
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'tcsh'"));
}

/// Every page `refwatch man --dir` writes renders without a warning in the
/// C locale (a machine with no locale set), where groff lacks characters
/// such as the ellipsis.
fn every_page_renders_in_the_c_locale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = refwatch()
        .arg("man")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the pages")
        .map(|e| e.expect("entry").path())
        .collect();
    pages.sort();
    assert!(pages.len() >= 5, "{pages:?}");
    for page in &pages {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("LC_ALL", "C")
            .output()
            .expect("man");
        assert!(out.status.success(), "{}: {out:?}", page.display());
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn man_page_renders() {
    let page = stdout(refwatch().arg("man"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("refwatch.1");
    std::fs::write(&file, &page).expect("write");
    // man-db when the machine has it; else groff's own structure is checked.
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output();
    match rendered {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            for heading in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SUBCOMMANDS"] {
                assert!(text.contains(heading), "rendered page lacks {heading}");
            }
            assert!(text.contains("refwatch-attach(1)"), "{text}");
            assert!(
                out.stderr.is_empty(),
                "man: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            every_page_renders_in_the_c_locale();
        }
        _ => {
            assert!(page.lines().any(|l| l.starts_with(".TH refwatch 1")));
            assert!(page.lines().any(|l| l == ".SH NAME"));
        }
    }
}

#[test]
fn clap_output_honours_no_color() {
    // clap colours help only on a terminal, or when forced.
    let help = |no_color: Option<&str>| {
        let mut c = refwatch();
        c.arg("--help")
            .env("CLICOLOR_FORCE", "1")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        stdout(&mut c)
    };
    assert!(help(None).contains('\x1b'), "forced colours are shown");
    assert!(
        help(Some("")).contains('\x1b'),
        "an empty NO_COLOR is unset"
    );
    assert!(!help(Some("1")).contains('\x1b'), "NO_COLOR=1: no escape");
}

/// The colour parameters among the SGR sequences of `text` (tmux's
/// `capture-pane -e`): 30–38, 40–48, 90–97, 100–107 (39 and 49 are the
/// default colours).
fn colour_sgrs(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for part in text.split("\x1b[").skip(1) {
        let Some(end) = part.find('m') else { continue };
        let params = &part[..end];
        if !params.chars().all(|c| c.is_ascii_digit() || c == ';') {
            continue;
        }
        let colour = params
            .split(';')
            .filter_map(|p| p.parse::<u32>().ok())
            .any(|p| matches!(p, 30..=38 | 40..=48 | 90..=97 | 100..=107));
        if colour {
            found.push(params.to_owned());
        }
    }
    found
}

/// `refwatch replay` in a private tmux server, run to the end of the
/// SYNTHETIC recording `tests/data/synthetic-dax-hold.rec` (its stuck page
/// selected), with `NO_COLOR` as given; the screen with its attributes.
fn replay_screen(name: &str, no_color: Option<&str>) -> String {
    let dir = std::env::temp_dir().join(format!("refwatch-nocolor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let socket = dir.join("tmux.sock");
    let tmux = |args: &[&str]| -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux is not installed: `cargo xtask setup` installs it");
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/synthetic-dax-hold.rec");
    let env = match no_color {
        Some(v) => format!("NO_COLOR='{v}'"),
        None => "env -u NO_COLOR".to_owned(),
    };
    let command = format!(
        "cd '{}' && {env} '{}' replay '{}' --paused",
        dir.display(),
        env!("CARGO_BIN_EXE_refwatch"),
        rec.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    let wait_for = |needle: &str| {
        let start = std::time::Instant::now();
        loop {
            let s = tmux(&["capture-pane", "-p", "-t", "t"]);
            if s.contains(needle) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                return;
            }
            assert!(
                start.elapsed().as_secs() < 15,
                "timed out waiting for {needle:?}:\n{s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for("⏸ paused");
    tmux(&["send-keys", "-t", "t", "]"]);
    wait_for("■ end");
    let screen = tmux(&["capture-pane", "-p", "-e", "-t", "t"]);
    tmux(&["send-keys", "-t", "t", "q"]);
    let _ = Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("kill-server")
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    screen
}

#[test]
fn the_tui_draws_no_colour_under_no_color() {
    let coloured = replay_screen("on", None);
    assert!(
        !colour_sgrs(&coloured).is_empty(),
        "colours by default:\n{coloured}"
    );
    let plain = replay_screen("off", Some("1"));
    assert!(plain.contains("● 0x40011"), "{plain}");
    assert_eq!(colour_sgrs(&plain), Vec::<String>::new(), "{plain}");
    // The selection and the badges still stand out: reverse video.
    assert!(
        plain.contains("\x1b[7m") || plain.contains(";7m") || plain.contains("[7;"),
        "{plain}"
    );
}

#[test]
fn colour_sgrs_reads_tmux_sequences() {
    assert_eq!(
        colour_sgrs("a\x1b[1;33mb\x1b[39m\x1b[7mc\x1b[38;5;240md\x1b[0m"),
        ["1;33", "38;5;240"]
    );
    assert!(colour_sgrs("\x1b[1m\x1b[7m\x1b[2m\x1b[49m\x1b[0m").is_empty());
}
