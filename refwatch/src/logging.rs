//! refwatch's own log: a file when asked (`--log-file`), stderr otherwise.
//! While a TUI owns the terminal and no file was asked for, warnings and
//! errors are held in memory and printed on stderr once the terminal is
//! restored ([`print_held`]); nothing is written to disk. Kernel-side
//! aya-log lines come through here too, never onto a TUI.

use std::{fs::File, io::Write as _, path::Path, sync::Mutex};

use anyhow::{Context as _, Result};

/// Held lines beyond this are counted, not kept.
const MAX_HELD: usize = 200;

enum Sink {
    Write(Box<dyn std::io::Write + Send>),
    /// Warnings and errors go to [`HELD`].
    Held,
}

struct Logger {
    out: Mutex<Sink>,
    level: log::LevelFilter,
}

/// The held lines, and how many more were left out.
static HELD: Mutex<(Vec<String>, usize)> = Mutex::new((Vec::new(), 0));

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!("[{}] {}: {}", r.level(), r.target(), r.args());
        if let Ok(mut out) = self.out.lock() {
            match &mut *out {
                Sink::Write(w) => {
                    let _ = writeln!(w, "{line}");
                }
                Sink::Held => {
                    if r.level() <= log::Level::Warn
                        && let Ok(mut h) = HELD.lock()
                    {
                        if h.0.len() < MAX_HELD {
                            h.0.push(line);
                        } else {
                            h.1 += 1;
                        }
                    }
                }
            }
        }
    }

    fn flush(&self) {
        if let Ok(mut out) = self.out.lock()
            && let Sink::Write(w) = &mut *out
        {
            let _ = w.flush();
        }
    }
}

/// Installs the logger: into `file`, else held in memory when `hold` (a
/// TUI owns the terminal), else onto stderr.
pub fn init(file: Option<&Path>, verbose: bool, hold: bool) -> Result<()> {
    let out = match file {
        Some(p) => Sink::Write(Box::new(
            File::create(p).with_context(|| format!("create log file {}", p.display()))?,
        )),
        None if hold => Sink::Held,
        None => Sink::Write(Box::new(std::io::stderr())),
    };
    let level = if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    log::set_boxed_logger(Box::new(Logger {
        out: Mutex::new(out),
        level,
    }))
    .context("install logger")?;
    log::set_max_level(level);
    Ok(())
}

/// Takes the warnings and errors held while the TUI ran.
pub fn take_held() -> Vec<String> {
    let Ok(mut h) = HELD.lock() else {
        return Vec::new();
    };
    let (mut lines, left_out) = std::mem::take(&mut *h);
    if left_out > 0 {
        lines.push(format!(
            "[WARN] refwatch: {left_out} more left out (--log-file FILE keeps them all)"
        ));
    }
    lines
}

/// Prints the held warnings and errors on stderr once the terminal is back,
/// but not a line that ends with the first line of `message` (the error
/// about to be printed).
pub fn print_held_except(message: &str) {
    let first = message.lines().next().unwrap_or_default();
    for l in take_held() {
        if first.is_empty() || !l.ends_with(first) {
            eprintln!("{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    /// The only test that installs the (process-wide) logger: held, as
    /// with a TUI. Lines of other tests logged meanwhile are held too.
    #[test]
    fn a_tui_holds_warnings_and_errors_and_writes_no_file() {
        super::init(None, false, true).expect("install the logger");
        log::info!("an info line is not kept");
        log::warn!("held warning");
        log::error!("held error");
        let held = super::take_held();
        assert!(
            held.iter().any(|l| l.ends_with(": held warning")),
            "{held:?}"
        );
        assert!(held.iter().any(|l| l.ends_with(": held error")), "{held:?}");
        assert!(!held.iter().any(|l| l.contains("info line")), "{held:?}");
        assert!(
            super::take_held()
                .iter()
                .all(|l| !l.ends_with(": held warning")),
            "taken once"
        );
        for i in 0..super::MAX_HELD + 5 {
            log::warn!("flood {i}");
        }
        let held = super::take_held();
        assert!(held.len() <= super::MAX_HELD + 1, "{}", held.len());
        assert!(
            held.last()
                .is_some_and(|l| l.contains("more left out (--log-file FILE keeps them all)")),
            "{held:?}"
        );
    }
}
