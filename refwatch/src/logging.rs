//! refwatch's own log: a file when asked (`--log-file`), stderr otherwise.
//! Kernel-side aya-log lines come through here too, never onto a TUI.

use std::{fs::File, io::Write as _, path::Path, sync::Mutex};

use anyhow::{Context as _, Result};

struct Logger {
    out: Mutex<Box<dyn std::io::Write + Send>>,
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "[{}] {}: {}", r.level(), r.target(), r.args());
        }
    }

    fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

/// Installs the logger.
pub fn init(file: Option<&Path>, verbose: bool) -> Result<()> {
    let out: Box<dyn std::io::Write + Send> = match file {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("create log file {}", p.display()))?)
        }
        None => Box::new(std::io::stderr()),
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
