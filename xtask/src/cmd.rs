//! Running host commands with one-line error causes.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::thread;

use anyhow::{Context, Result};

/// Lines of stderr quoted in an error.
const TAIL_LINES: usize = 6;

/// `prog arg1 arg2` for messages.
pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The last few non-empty lines of `bytes`, joined with " | ".
pub fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = kept.len().saturating_sub(lines);
    kept[start..].join(" | ")
}

fn failure(cmd: &Command, status: std::process::ExitStatus, stderr_tail: &str) -> anyhow::Error {
    let code = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("{status}"),
    };
    if stderr_tail.is_empty() {
        anyhow::anyhow!("`{}` failed with {code}", describe(cmd))
    } else {
        anyhow::anyhow!("`{}` failed with {code}: {stderr_tail}", describe(cmd))
    }
}

/// Runs `cmd` to completion with captured output; fails unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        return Err(failure(cmd, out.status, &tail(&out.stderr, TAIL_LINES)));
    }
    Ok(out)
}

/// Runs `cmd` and returns its stdout as text; fails unless it exits 0.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with stdout passed through and stderr echoed while it runs,
/// for long steps whose progress is worth seeing; fails unless it exits 0.
pub fn streamed(cmd: &mut Command) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    let stderr = child.stderr.take();
    let reader = thread::spawn(move || {
        let mut last: VecDeque<String> = VecDeque::new();
        if let Some(stderr) = stderr {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
                if !line.trim().is_empty() {
                    if last.len() == TAIL_LINES {
                        last.pop_front();
                    }
                    last.push_back(line.trim().to_owned());
                }
            }
        }
        Vec::from(last).join(" | ")
    });
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{}`", describe(cmd)))?;
    let stderr_tail = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(failure(cmd, status, &stderr_tail));
    }
    Ok(())
}
