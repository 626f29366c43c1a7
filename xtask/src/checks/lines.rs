//! `refwatch report --vmlinux` on a recording of a kernel built here: the
//! image's DWARF names a source line for the holders' frames, and each
//! line named lies, in the kernel's own source tree, within the function
//! the frame names; a recording of another kernel is refused with it; and
//! `replay --vmlinux`, in a terminal, shows such lines on a held page.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Frames of the holder stacks whose line must be checked against the
/// source, at least (the rest are macros such as `SYSCALL_DEFINE`, whose
/// function name is not in the text, or inlined across files).
const CHECKED_MIN: usize = 3;

/// Runs `report --json --vmlinux` on `dir`'s recording and checks the
/// source lines it names against `tree`.
pub fn check_source_lines(refwatch: &Path, dir: &Path, tree: &Path) -> Result<Vec<String>> {
    let vmlinux = tree.join("vmlinux");
    let out = Command::new(refwatch)
        .args(["report", "--json", "--vmlinux"])
        .arg(&vmlinux)
        .arg(dir.join("recording"))
        .output()
        .context("run refwatch report --vmlinux")?;
    if !out.status.success() {
        bail!(
            "refwatch report --vmlinux {} failed: {}",
            vmlinux.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("report JSON")?;
    let lines: BTreeMap<String, String> =
        serde_json::from_value(report["source_lines"].clone()).unwrap_or_default();
    let groups = report["holder_groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let stacks: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            g["stack"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        })
        .filter(|s: &Vec<String>| !s.is_empty())
        .collect();
    let mut bad = Vec::new();
    if stacks.is_empty() {
        bad.push("no holder group with a stack in the report".to_owned());
        return Ok(bad);
    }
    let mut checked = 0;
    for stack in &stacks {
        if let Some(first) = stack.first()
            && !lines.contains_key(first)
        {
            bad.push(format!(
                "the holder's first frame {first} has no source line"
            ));
        }
        for frame in stack {
            let Some(at) = lines.get(frame) else { continue };
            match within_function(tree, frame, at) {
                Ok(Some(true)) => checked += 1,
                Ok(Some(false)) => bad.push(format!(
                    "{frame} → {at}: the line is outside the function in the source"
                )),
                Ok(None) => {}
                Err(e) => bad.push(format!("{frame} → {at}: {e:#}")),
            }
        }
    }
    if checked < CHECKED_MIN {
        bad.push(format!(
            "only {checked} frame(s) checked against the source (of {} with a line), expected at least {CHECKED_MIN}",
            lines.len()
        ));
    }
    bad.extend(refuses_another_kernel(refwatch, dir, &vmlinux, &report)?);
    let held = groups
        .first()
        .and_then(|g| g["pfn_ranges"][0][0].as_u64())
        .context("no PFN in the first holder group")?;
    bad.extend(replay_shows_lines(refwatch, dir, &vmlinux, tree, held)?);
    println!(
        "source lines ({}): {} frame(s) named, {checked} checked within their function",
        dir.display(),
        lines.len()
    );
    Ok(bad)
}

/// `replay --vmlinux` in a terminal (a private tmux server, 160×45): at
/// the recording's end, on page `pfn` (one the holder held), the detail
/// pane shows the page's latest event that has a stack, each frame the
/// image knows followed by its line; those lines must lie within their
/// functions as the report's do.
fn replay_shows_lines(
    refwatch: &Path,
    dir: &Path,
    vmlinux: &Path,
    tree: &Path,
    pfn: u64,
) -> Result<Vec<String>> {
    let tmux = Tmux::start(
        dir,
        &format!(
            "{} replay --paused --vmlinux {} {}; echo refwatch-exit=$?",
            refwatch.display(),
            vmlinux.display(),
            dir.join("recording").display()
        ),
    )?;
    tmux.wait_for("paused")?;
    tmux.keys("]")?;
    tmux.wait_for("■ end")?;
    // A page the holder held, found by its PFN (`/`), then its events: its
    // last (a free) has no stack, so back through them to the latest one
    // that has.
    tmux.keys("/")?;
    tmux.keys(&format!("{pfn:x}"))?;
    tmux.keys("Enter")?;
    let mut screen = tmux.wait_for(&format!("detail pfn {pfn:#x}"))?;
    tmux.keys("Tab")?;
    let mut shown = framed_lines(&screen);
    for _ in 0..12 {
        if !shown.is_empty() {
            break;
        }
        tmux.keys("Up")?;
        screen = tmux.settled()?;
        shown = framed_lines(&screen);
    }
    tmux.keys("q")?;
    let code = tmux.wait_exit()?;
    let mut bad = Vec::new();
    if code != 0 {
        bad.push(format!("replay --vmlinux exited {code}"));
    }
    let mut checked = 0;
    for (frame, at) in &shown {
        match within_function(tree, frame, at) {
            Ok(Some(true)) => checked += 1,
            Ok(Some(false)) => bad.push(format!(
                "the TUI shows {frame} at {at}, outside the function in the source"
            )),
            Ok(None) => {}
            Err(e) => bad.push(format!("the TUI's {frame} → {at}: {e:#}")),
        }
    }
    if checked == 0 {
        bad.push(format!(
            "no frame with a source line checked on the replay's screen ({} shown):\n{screen}",
            shown.len()
        ));
    }
    println!(
        "    replay --vmlinux: {} frame(s) with a line on screen, {checked} checked",
        shown.len()
    );
    Ok(bad)
}

/// The stack pane's frames with a line: `… │ folios_put_refs+0x1f9  mm/swap.c:1024`.
fn framed_lines(screen: &str) -> Vec<(String, String)> {
    screen
        .lines()
        .filter_map(|l| {
            let l = l.rsplit('│').next()?.trim();
            let (frame, at) = l.split_once("  ")?;
            (frame.contains("+0x") && at.contains(':'))
                .then(|| (frame.to_owned(), at.trim().to_owned()))
        })
        .collect()
}

/// A private tmux server running one command in a detached session.
struct Tmux {
    dir: PathBuf,
}

impl Tmux {
    fn start(scenario: &Path, command: &str) -> Result<Self> {
        let name = scenario
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let dir = std::env::temp_dir().join(format!("xtask-lines-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let t = Self { dir };
        t.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "160",
            "-y",
            "45",
            command,
            ";",
            "set-option",
            "-t",
            "t",
            "remain-on-exit",
            "on",
        ])?;
        Ok(t)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(self.dir.join("tmux.sock"))
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .context("run tmux (`cargo xtask setup` installs it)")?;
        if !out.status.success() {
            bail!(
                "tmux {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn screen(&self) -> Result<String> {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, keys: &str) -> Result<()> {
        self.run(&["send-keys", "-t", "t", keys]).map(drop)
    }

    /// The screen once it stays the same for 200 ms (5 s at most).
    fn settled(&self) -> Result<String> {
        let start = std::time::Instant::now();
        let mut last = self.screen()?;
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let s = self.screen()?;
            if s == last || start.elapsed() > std::time::Duration::from_secs(5) {
                return Ok(s);
            }
            last = s;
        }
    }

    /// The screen once it shows `needle` and has settled (20 s at most).
    fn wait_for(&self, needle: &str) -> Result<String> {
        let start = std::time::Instant::now();
        loop {
            let s = self.screen()?;
            if s.contains(needle) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let again = self.screen()?;
                if again == s {
                    return Ok(s);
                }
            }
            if start.elapsed() > std::time::Duration::from_secs(20) {
                bail!("the replay never showed {needle:?}; its screen:\n{s}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The command's exit status, once it printed it (10 s at most).
    fn wait_exit(&self) -> Result<i32> {
        let start = std::time::Instant::now();
        loop {
            let all = self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])?;
            if let Some(c) = all.lines().find_map(|l| l.strip_prefix("refwatch-exit=")) {
                return c.trim().parse().context("the exit status");
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                bail!(
                    "the replay did not exit on q; its screen:\n{}",
                    self.screen()?
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The same recording with its header naming another kernel release must
/// be refused with the image (its lines would name other code).
fn refuses_another_kernel(
    refwatch: &Path,
    dir: &Path,
    vmlinux: &Path,
    report: &Value,
) -> Result<Vec<String>> {
    let release = report["kernel"].as_str().context("the report's kernel")?;
    let text = fs::read_to_string(dir.join("recording")).context("read recording")?;
    let (header, rest) = text.split_once('\n').context("a recording without lines")?;
    let from = format!("\"kernel\":\"{release}\"");
    if !header.contains(&from) {
        bail!("the recording's header does not name kernel {release}");
    }
    let other = dir.join("recording.other-kernel");
    let renamed = header.replace(&from, "\"kernel\":\"0.0.1-other\"");
    fs::write(&other, format!("{renamed}\n{rest}")).context("write recording.other-kernel")?;
    let out = Command::new(refwatch)
        .args(["report", "--vmlinux"])
        .arg(vmlinux)
        .arg(&other)
        .output()
        .context("run refwatch report --vmlinux")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = fs::remove_file(&other);
    if out.status.code() == Some(1)
        && stderr.contains(&format!("an image of kernel {release}, not of 0.0.1-other"))
    {
        Ok(Vec::new())
    } else {
        Ok(vec![format!(
            "a recording of another kernel with this image: exit {:?}, expected 1 naming both releases: {}",
            out.status.code(),
            stderr.trim()
        )])
    }
}

/// Whether `file:line` (`at`) lies within the definition of the function
/// `frame` names, in `tree`; `None` when the file has no definition of it
/// that starts a line (a macro-made function, or a line in another file).
fn within_function(tree: &Path, frame: &str, at: &str) -> Result<Option<bool>> {
    let (name, _) = frame
        .rsplit_once('+')
        .context("a frame without an offset")?;
    let base = base_name(name);
    let (file, line) = at.rsplit_once(':').context("a line without a file")?;
    let line: usize = line.parse().context("a line number")?;
    let path: PathBuf = tree.join(file);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(None);
    };
    Ok(function_span(&text, base).map(|(start, end)| (start..=end).contains(&line)))
}

/// The function a compiler clone is of: `f.isra.0`, `f.constprop.0`,
/// `f.part.0`, `f.cold` → `f`.
fn base_name(name: &str) -> &str {
    name.split_once('.').map_or(name, |(b, _)| b)
}

/// The lines (1-based, inclusive) of the definition of `name` in C source
/// `text`: from the line that opens it (at column 0, `name(` on it, not a
/// declaration) to the `}` at column 0 that closes it.
fn function_span(text: &str, name: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let call = format!("{name}(");
    for (i, l) in lines.iter().enumerate() {
        let starts_ok = l
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '#' && c != '/' && c != '*');
        let Some(at) = l.find(&call) else { continue };
        let boundary = at == 0 || !l[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if !starts_ok || !boundary || l.trim_end().ends_with(';') {
            continue;
        }
        // A definition: its body opens before any `;` ends a prototype.
        let mut opened = false;
        for next in lines.iter().skip(i) {
            if next.starts_with('{') || next.trim_end().ends_with('{') {
                opened = true;
                break;
            }
            if next.trim_end().ends_with(';') {
                break;
            }
        }
        if !opened {
            continue;
        }
        let end = lines
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, l)| l.starts_with('}'))
            .map(|(j, _)| j + 1)?;
        return Some((i + 1, end));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
static int helper(int x);

/* helper( in a comment */
static int helper(int x)
{
\treturn x + 1;
}

int
try_grab_folio_fast(struct folio *folio, int refs,
\t\t    unsigned int flags)
{
\tif (helper(refs))
\t\treturn 0;
\treturn 1;
}
";

    #[test]
    fn a_definition_spans_from_its_name_to_its_closing_brace() {
        assert_eq!(function_span(SOURCE, "helper"), Some((4, 7)));
        assert_eq!(function_span(SOURCE, "try_grab_folio_fast"), Some((10, 16)));
        assert_eq!(function_span(SOURCE, "refs"), None);
        assert_eq!(function_span(SOURCE, "missing"), None);
        assert_eq!(base_name("gup_fast_pte_range.isra.0"), "gup_fast_pte_range");
        assert_eq!(base_name("f"), "f");
    }

    #[test]
    fn a_line_is_judged_against_the_function_the_frame_names() {
        let tree = std::env::temp_dir().join(format!("xtask-lines-{}", std::process::id()));
        fs::create_dir_all(tree.join("mm")).expect("mkdir");
        fs::write(tree.join("mm/gup.c"), SOURCE).expect("write");
        let t = tree.as_path();
        assert_eq!(
            within_function(t, "try_grab_folio_fast+0x5", "mm/gup.c:13").expect("judged"),
            Some(true)
        );
        assert_eq!(
            within_function(t, "try_grab_folio_fast.isra.0+0x5", "mm/gup.c:6").expect("judged"),
            Some(false)
        );
        assert_eq!(
            within_function(t, "__do_sys_vmsplice+0x9d", "fs/splice.c:1500").expect("judged"),
            None
        );
        fs::remove_dir_all(&tree).expect("clean up");
    }
}
