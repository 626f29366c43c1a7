//! Why refwatch cannot run, in one line naming the cause and at most one
//! hint line naming the fix. The classification is pure: a function of what
//! the kernel said (errno, verifier log) and of [`Facts`] (effective
//! capabilities, kernel lockdown, …), which [`Facts::read`] reads at the edge.

use std::fmt;

/// Capability numbers (linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYSLOG: u32 = 34;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

const EPERM: i32 = 1;
const EACCES: i32 = 13;

/// A failure as refwatch prints it: the cause, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// One line.
    pub cause: String,
    /// One line, or none.
    pub hint: Option<String>,
}

impl Diagnosis {
    fn new(cause: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            cause: cause.into(),
            hint: Some(hint.into()),
        }
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cause)
    }
}

impl std::error::Error for Diagnosis {}

/// Effective capabilities (the `CapEff` mask of /proc/self/status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps(pub u64);

impl Caps {
    pub fn has(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// The `CapEff:` line of a /proc/PID/status text.
    pub fn from_status(status: &str) -> Option<Self> {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))?
            .trim();
        u64::from_str_radix(hex, 16).ok().map(Self)
    }
}

/// The kernel's lockdown mode (/sys/kernel/security/lockdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockdown {
    None,
    Integrity,
    Confidentiality,
    /// The file cannot be read (securityfs not mounted, or no lockdown LSM).
    Unknown,
}

impl Lockdown {
    /// `none [integrity] confidentiality`: the bracketed word is the mode.
    pub fn parse(text: &str) -> Self {
        let active = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'));
        match active {
            Some("none") => Self::None,
            Some("integrity") => Self::Integrity,
            Some("confidentiality") => Self::Confidentiality,
            _ => Self::Unknown,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Integrity => "integrity",
            Self::Confidentiality => "confidentiality",
            Self::Unknown => "unknown",
        }
    }
}

/// What the process may do and what the kernel allows, as read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `None` when /proc/self/status could not be read.
    pub caps: Option<Caps>,
    /// The highest capability the kernel knows (below 39: no CAP_BPF, Linux < 5.8).
    pub cap_last_cap: Option<u32>,
    pub kptr_restrict: Option<u32>,
    pub perf_event_paranoid: Option<i32>,
    pub lockdown: Lockdown,
}

impl Facts {
    pub fn read() -> Self {
        let num = |p: &str| std::fs::read_to_string(p).ok()?.trim().parse::<i64>().ok();
        Self {
            caps: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| Caps::from_status(&s)),
            cap_last_cap: num("/proc/sys/kernel/cap_last_cap").and_then(|n| u32::try_from(n).ok()),
            kptr_restrict: num("/proc/sys/kernel/kptr_restrict")
                .and_then(|n| u32::try_from(n).ok()),
            perf_event_paranoid: num("/proc/sys/kernel/perf_event_paranoid")
                .and_then(|n| i32::try_from(n).ok()),
            lockdown: std::fs::read_to_string("/sys/kernel/security/lockdown")
                .map_or(Lockdown::Unknown, |t| Lockdown::parse(&t)),
        }
    }

    /// The capabilities refwatch needs and lacks, by name, with what for.
    pub fn missing_caps(&self) -> Vec<(&'static str, &'static str)> {
        let Some(caps) = self.caps else {
            return Vec::new();
        };
        let admin = caps.has(CAP_SYS_ADMIN);
        let mut out = Vec::new();
        if self.cap_last_cap.is_some_and(|n| n < CAP_BPF) {
            // Before Linux 5.8 loading and attaching need CAP_SYS_ADMIN.
            if !admin {
                out.push(("CAP_SYS_ADMIN", "to load kernel programs"));
            }
        } else {
            if !admin && !caps.has(CAP_BPF) {
                out.push(("CAP_BPF", "to load kernel programs"));
            }
            if !admin && !caps.has(CAP_PERFMON) {
                out.push(("CAP_PERFMON", "to attach them and read kernel memory"));
            }
        }
        // /proc/kallsyms shows addresses to CAP_SYSLOG (kptr_restrict 0 or 1),
        // or to anyone when kptr_restrict is 0 and perf_event_paranoid ≤ 1.
        let needs_syslog = match self.kptr_restrict {
            Some(0) => self.perf_event_paranoid.is_none_or(|p| p > 1),
            Some(1) => true,
            _ => false,
        };
        if needs_syslog && !caps.has(CAP_SYSLOG) {
            out.push(("CAP_SYSLOG", "to read kernel addresses in /proc/kallsyms"));
        }
        out
    }
}

/// `A`, `A and B`, `A, B and C`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Before anything is loaded: the capabilities refwatch lacks, if any.
pub fn preflight(f: &Facts) -> Option<Diagnosis> {
    let missing = f.missing_caps();
    if missing.is_empty() {
        return None;
    }
    Some(missing_caps(&missing, ""))
}

fn missing_caps(missing: &[(&str, &str)], prefix: &str) -> Diagnosis {
    let named: Vec<String> = missing.iter().map(|(n, w)| format!("{n} ({w})")).collect();
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    let setcap: Vec<String> = missing.iter().map(|(n, _)| n.to_lowercase()).collect();
    Diagnosis::new(
        format!("{prefix}missing capabilities: {}", and_list(&named)),
        format!(
            "run it as root with full capabilities (sudo; a container must grant them too), or grant them: setcap {}+ep refwatch",
            setcap.join(",")
        ),
    )
}

/// What a refused kernel call said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refusal {
    pub errno: Option<i32>,
    /// The verifier's log, when it had something to say.
    pub verifier_log: Option<String>,
    /// One line, without the verifier log.
    pub text: String,
}

impl Refusal {
    /// Reads the errno and the verifier log out of an error's chain.
    pub fn of(e: &anyhow::Error) -> Self {
        let mut errno = None;
        let mut verifier_log = None;
        for cause in e.chain() {
            if let Some(aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log: log,
            }) = cause.downcast_ref()
            {
                errno = errno.or(io_error.raw_os_error());
                let log = log.to_string();
                if !log.trim().is_empty() {
                    verifier_log = Some(log.trim_end().to_string());
                }
            } else if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                errno = errno.or(io.raw_os_error());
            }
        }
        Self {
            errno,
            verifier_log,
            text: one_line(e),
        }
    }

    fn verifier(&self) -> bool {
        self.verifier_log.is_some()
    }
}

/// The verifier's log of each program it refused, once per program: the
/// program is the first word of a refusal's line (`fexit_free on …`).
pub fn verifier_logs<'a>(
    refusals: impl IntoIterator<Item = &'a Refusal>,
) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in refusals {
        if let Some(log) = &r.verifier_log {
            let prog = r.text.split(' ').next().unwrap_or("?");
            if !out.iter().any(|(p, _)| *p == prog) {
                out.push((prog, log));
            }
        }
    }
    out
}

/// An errno's name, for messages.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        7 => "E2BIG",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        19 => "ENODEV",
        22 => "EINVAL",
        28 => "ENOSPC",
        95 => "EOPNOTSUPP",
        524 => "ENOTSUPP",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// An error's chain on one line: each cause once (aya's errors repeat their
/// source in their own text), the verifier's log left out, no line breaks.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = match cause.downcast_ref::<aya::programs::ProgramError>() {
            Some(aya::programs::ProgramError::LoadError {
                io_error,
                verifier_log,
            }) => {
                let refused = if verifier_log.to_string().trim().is_empty() {
                    ""
                } else {
                    " (the verifier refused it)"
                };
                format!("BPF_PROG_LOAD returned {io_error}{refused}")
            }
            _ => cause.to_string(),
        };
        let text = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// What main prints for an error: its chain on one line, and the hint of
/// a [`Diagnosis`] in it on a second line.
pub fn message(e: &anyhow::Error) -> String {
    let hint = e
        .chain()
        .find_map(|c| c.downcast_ref::<Diagnosis>())
        .and_then(|d| d.hint.clone());
    match hint {
        Some(h) => format!("{}\nhint: {h}", one_line(e)),
        None => one_line(e),
    }
}

const PROBES_HINT: &str = "`refwatch probes` shows each hook";

/// The kernel said EPERM: why, from the capabilities and lockdown.
/// `what` says what was refused, `tail` is added to the hint.
fn refused_eperm(f: &Facts, prefix: &str, what: &str, tail: &str) -> Diagnosis {
    let missing = f.missing_caps();
    if !missing.is_empty() {
        return missing_caps(&missing, prefix);
    }
    let has = if f.cap_last_cap.is_some_and(|n| n < CAP_BPF) {
        "CAP_SYS_ADMIN"
    } else {
        "CAP_BPF and CAP_PERFMON"
    };
    match f.lockdown {
        Lockdown::Integrity | Lockdown::Confidentiality => Diagnosis::new(
            format!(
                "{prefix}kernel lockdown ({}) blocks {what}: the kernel refused with EPERM",
                f.lockdown.name()
            ),
            format!(
                "`cat /sys/kernel/security/lockdown` shows the mode; it cannot be lowered while the system runs: boot without lockdown (e.g. Secure Boot off){tail}"
            ),
        ),
        Lockdown::None => Diagnosis::new(
            format!(
                "{prefix}the kernel refused {what} with EPERM although refwatch has {has} and the kernel is not locked down"
            ),
            format!(
                "a security module (SELinux, AppArmor, the BPF LSM) or a sandbox (seccomp, a container) forbids it: see `dmesg`{tail}"
            ),
        ),
        Lockdown::Unknown => Diagnosis::new(
            format!(
                "{prefix}the kernel refused {what} with EPERM although refwatch has {has}: kernel lockdown or a security policy forbids it"
            ),
            format!(
                "check lockdown: `dmesg | grep -i 'locked down'`, or `cat /sys/kernel/security/lockdown` after `mount -t securityfs securityfs /sys/kernel/security`; else an LSM or a sandbox forbids bpf(){tail}"
            ),
        ),
    }
}

/// Loading the object (maps, global data) failed.
pub fn load_failed(f: &Facts, r: &Refusal, no_networking: bool) -> Diagnosis {
    if r.errno == Some(EPERM) {
        return refused_eperm(f, "", "loading refwatch's kernel programs", "");
    }
    let hint = if no_networking && r.text.contains("relocating") {
        "this kernel has no networking: the loader detects global-data support with a socket-filter program, which needs CONFIG_NET"
    } else {
        "refwatch needs a kernel with BPF (CONFIG_BPF_SYSCALL), BTF and ring buffers (Linux 5.8+)"
    };
    Diagnosis::new(
        format!("could not load refwatch's kernel programs: {}", r.text),
        hint,
    )
}

/// How the hooks of a plan fared, for [`nothing_attached`].
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Hooks in the plan.
    pub hooks: usize,
    /// Every refused load or attach, of every hook and mode.
    pub refusals: Vec<Refusal>,
}

/// No hook attached: one line for the reason most of them share.
pub fn nothing_attached(f: &Facts, release: &str, o: &Outcome) -> Diagnosis {
    let prefix = format!("no hook could attach on kernel {release}: ");
    let n = o.refusals.len();
    if n == 0 {
        return Diagnosis::new(
            format!(
                "{prefix}none of the {} kernel functions and tracepoints refwatch watches is in it",
                o.hooks
            ),
            format!("{PROBES_HINT} and what was looked for"),
        );
    }
    let eperm = o
        .refusals
        .iter()
        .filter(|r| r.errno == Some(EPERM) && !r.verifier())
        .count();
    if eperm == n {
        return refused_eperm(f, &prefix, "every program", &format!("; {PROBES_HINT}"));
    }
    // Confidentiality lockdown takes bpf_probe_read_kernel away from tracing
    // programs (the verifier refuses them, EINVAL) and forbids kprobes.
    let read_kernel = o.refusals.iter().any(|r| {
        r.verifier_log
            .as_deref()
            .is_some_and(|l| l.contains("bpf_probe_read_kernel"))
    });
    if f.lockdown == Lockdown::Confidentiality || (read_kernel && f.lockdown == Lockdown::Unknown) {
        let (cause, check) = if f.lockdown == Lockdown::Confidentiality {
            (
                "kernel lockdown (confidentiality) blocks every program: it forbids reading kernel memory from BPF",
                "`cat /sys/kernel/security/lockdown` shows the mode",
            )
        } else {
            (
                "the verifier refused bpf_probe_read_kernel, which kernel lockdown (confidentiality) takes away",
                "check with `dmesg | grep -i 'locked down'`",
            )
        };
        return Diagnosis::new(
            format!("{prefix}{cause}"),
            format!(
                "{check}; it cannot be lowered while the system runs: boot without lockdown (e.g. Secure Boot off); {PROBES_HINT}"
            ),
        );
    }
    let verifier = o.refusals.iter().filter(|r| r.verifier()).count();
    if verifier * 2 >= n {
        return Diagnosis::new(
            format!(
                "{prefix}the kernel's verifier refused {verifier} of refwatch's {n} program loads"
            ),
            "`refwatch probes --verifier-log` prints the verifier's log once per program (please report it with the kernel version)",
        );
    }
    let mut by: Vec<(String, usize)> = Vec::new();
    for r in &o.refusals {
        let name = r.errno.map_or_else(|| "other errors".into(), errno_name);
        match by.iter_mut().find(|(e, _)| *e == name) {
            Some((_, c)) => *c += 1,
            None => by.push((name, 1)),
        }
    }
    by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let counts: Vec<String> = by.iter().map(|(e, c)| format!("{e} ×{c}")).collect();
    let access = o.refusals.iter().any(|r| r.errno == Some(EACCES));
    Diagnosis::new(
        format!(
            "{prefix}the kernel refused every load or attach ({})",
            counts.join(", ")
        ),
        if access {
            format!(
                "refwatch needs kprobes (CONFIG_KPROBES) or fentry (BPF trampolines); {PROBES_HINT} (EACCES: see `refwatch probes --verifier-log`)"
            )
        } else {
            format!(
                "refwatch needs kprobes (CONFIG_KPROBES) or fentry (BPF trampolines); {PROBES_HINT}"
            )
        },
    )
}

/// The TUI cannot start: no terminal to draw on or read keys from.
/// `command` is `attach` or `replay`.
pub fn no_terminal(command: &str, stdout_tty: bool, input_tty: bool) -> Option<Diagnosis> {
    let why = if !stdout_tty {
        "standard output is not a terminal"
    } else if !input_tty {
        "there is no terminal to read keys from"
    } else {
        return None;
    };
    let hint = if command == "replay" {
        "without a terminal, `refwatch report FILE` prints the stuck episodes and `refwatch export FILE --format jsonl` the events"
    } else {
        "without a terminal, `refwatch attach --headless` prints summary lines and `refwatch record -o FILE` writes a recording"
    };
    Some(Diagnosis::new(
        format!("{command} draws a terminal UI, but {why}"),
        hint,
    ))
}

#[cfg(test)]
mod tests;
