//! What a command-line tool is expected to offer beyond its job: a version
//! that names the source revision, shell completions and man pages generated
//! from the clap definitions, and `NO_COLOR`.

use std::{ffi::OsStr, io::Write, path::Path};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use crate::cli::Cli;

/// `refwatch --version`: the package version and the git revision the
/// binary was built from (`-dirty` when the tree had changes, `unknown`
/// when built outside a git checkout); set by build.rs.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("REFWATCH_GIT_REVISION"),
    ")"
);

/// The shells `refwatch completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell.generator(), &mut cmd, "refwatch", out);
}

/// Writes refwatch's main man page (refwatch.1, roff) to `out`.
pub fn write_man(out: &mut dyn Write) -> Result<()> {
    clap_mangen::Man::new(Cli::command())
        .render(out)
        .context("write the man page")
}

/// Writes refwatch.1 and a page per subcommand (refwatch-attach.1, …: the
/// main page's SUBCOMMANDS section names them) into `dir`.
pub fn write_man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("write man pages into {}", dir.display()))
}

/// Whether output may be coloured, given the value of `NO_COLOR`
/// (<https://no-color.org>): set to anything but the empty string turns
/// colours off.
pub fn colors_allowed(no_color: Option<&OsStr>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

/// [`colors_allowed`] for this process's environment; read once, at the edge.
pub fn colors_allowed_by_env() -> bool {
    colors_allowed(std::env::var_os("NO_COLOR").as_deref())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn completions(shell: Shell) -> String {
        let mut out = Vec::new();
        write_completions(shell, &mut out);
        String::from_utf8(out).expect("completions are UTF-8")
    }

    #[test]
    fn completions_name_every_subcommand_for_each_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = completions(shell);
            for sub in [
                "attach",
                "record",
                "probes",
                "report",
                "export",
                "replay",
                "completions",
                "man",
            ] {
                assert!(text.contains(sub), "{shell:?} completions lack {sub}");
            }
            // The export formats are offered as values.
            assert!(text.contains("perfetto"), "{shell:?}: no export formats");
        }
        assert!(completions(Shell::Zsh).starts_with("#compdef refwatch"));
        assert!(completions(Shell::Fish).contains("complete -c refwatch"));
    }

    #[test]
    fn bash_accepts_the_bash_completions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("refwatch.bash");
        std::fs::write(&file, completions(Shell::Bash)).expect("write");
        let out = Command::new("bash")
            .arg("-n")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "bash -n: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Sourcing it registers the completion function for refwatch.
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p refwatch", file.display()))
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && shown.contains("refwatch"),
            "complete -p refwatch: {shown} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn man_page_is_roff_with_the_usual_sections() {
        let mut out = Vec::new();
        write_man(&mut out).expect("render");
        let roff = String::from_utf8(out).expect("UTF-8");
        assert!(roff.starts_with(".ie \\n(.g .ds Aq"), "{}", &roff[..80]);
        let th = roff
            .lines()
            .find(|l| l.starts_with(".TH "))
            .expect("a .TH line");
        assert!(th.starts_with(".TH refwatch 1 "), "{th}");
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SUBCOMMANDS"] {
            assert!(
                roff.lines().any(|l| l == format!(".SH {section}")),
                "no .SH {section}"
            );
        }
        assert!(roff.contains("refwatch\\-attach(1)"), "subcommand pages");
        assert!(roff.contains(env!("REFWATCH_GIT_REVISION")), "version");
    }

    #[test]
    fn man_pages_cover_each_visible_subcommand() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_man_pages(dir.path()).expect("write");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "refwatch-attach.1",
                "refwatch-completions.1",
                "refwatch-export.1",
                "refwatch-man.1",
                "refwatch-probes.1",
                "refwatch-record.1",
                "refwatch-replay.1",
                "refwatch-report.1",
                "refwatch-watch.1",
                "refwatch.1",
            ]
        );
        let attach =
            std::fs::read_to_string(dir.path().join("refwatch-attach.1")).expect("read attach");
        assert!(
            attach.contains("\\-\\-headless"),
            "attach page lists its options"
        );
    }

    #[test]
    fn no_color_set_and_non_empty_turns_colours_off() {
        assert!(colors_allowed(None));
        assert!(colors_allowed(Some(OsStr::new(""))));
        assert!(!colors_allowed(Some(OsStr::new("1"))));
        assert!(!colors_allowed(Some(OsStr::new("0"))));
        assert!(!colors_allowed(Some(OsStr::new("no"))));
    }
}
