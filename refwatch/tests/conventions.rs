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
