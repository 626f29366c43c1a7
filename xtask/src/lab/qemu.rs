//! Running the guest: qemu's accelerator, the disk images, the console
//! (copied to a file, `LAB:` lines echoed) and what a crash left on it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{LabRun, SELFTESTS, Variant, live, split_variant};
use crate::cmd;
use crate::kernels::KernelInfo;

pub(super) const OUT_DISK_BYTES: u64 = 256 << 20;
/// The out disk of a run: 1 GiB for a run with the HMM selftests, whose
/// recording and JSON lines (about 100 MB each) alone nearly fill the
/// default 256 MiB. The disk image is sparse.
pub(super) fn out_disk_bytes(run: &LabRun) -> u64 {
    if run.scenarios.iter().any(|s| s == SELFTESTS) {
        1 << 30
    } else {
        OUT_DISK_BYTES
    }
}

pub(super) const SCRATCH_DISK_BYTES: u64 = 64 << 20;
pub(super) const SLOW_DISK_BYTES: u64 = 32 << 20;

/// The scenarios that write to the slow disk (`/dev/vdc`) instead of the
/// scratch disk (`/dev/vdb`).
pub(super) const SLOW_DISK_SCENARIOS: &[&str] = &["dax-pin-long"];

/// The largest request the guest sends the slow disk, in KiB
/// (`queue/max_sectors_kb`, whose least value is a page): a write of N
/// pages reaches qemu as N requests.
pub(super) const SLOW_DISK_REQUEST_KB: u32 = 4;

/// The write rate qemu allows the slow disk (`throttling.bps-write`), in
/// bytes per second, for a run of `pages` pages and a hold of `hold_secs`.
///
/// qemu's throttle lets a request through while its bucket holds at most a
/// tenth of a second's bytes and holds the next ones until the bucket has
/// drained that far: the first 4 KiB request of a write goes at once, and
/// the last of N waits about (N - 1) × 4 KiB / rate − 0.1 s. The rate makes
/// that half a second longer than the hold, so that `dax-pin-long`'s single
/// O_DIRECT write of its pages (one bio, completed with its last request)
/// keeps the pages' references for at least `hold_secs`. Reads are not
/// throttled.
pub fn slow_disk_bps(pages: u32, hold_secs: u32) -> u64 {
    let bytes = u64::from(pages.max(2) - 1) * u64::from(SLOW_DISK_REQUEST_KB) * 1024;
    // bytes / (hold + 0.5 s), rounded up, at least 1.
    (bytes * 2).div_ceil(u64::from(hold_secs) * 2 + 1).max(1)
}

const KERNEL_CMDLINE: &str = "console=ttyS0 memmap=512M!1G panic=-1 oops=panic quiet";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// TCG, the vCPUs in turn on one host thread (`thread=single`). With a
    /// thread per vCPU, a guest died at boot of `Oops: int3` while the
    /// kernel patched its code (the int3 of `text_poke_bp` run on the other
    /// vCPU), and one died in an interrupt with refwatch attached, whose
    /// programs and the `page_ref` tracepoints' static keys patch code too
    /// (every inlined get/put of that kernel). One thread leaves no other
    /// vCPU running while code changes.
    Tcg,
    /// TCG with the guest clock counting instructions (`-icount shift=0`, one
    /// per nanosecond; idle time skipped): time measured in the guest no
    /// longer depends on the host's load, at the price of running the vCPUs
    /// in turn on one host thread.
    #[value(name = "tcg-icount")]
    #[serde(rename = "tcg-icount")]
    TcgIcount,
    Kvm,
}

impl Accel {
    fn qemu_name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg,thread=single",
            // `-icount` runs the vCPUs on one thread already.
            Accel::TcgIcount => "tcg",
            Accel::Kvm => "kvm",
        }
    }

    /// How reports name it.
    pub fn label(self) -> &'static str {
        match self {
            Accel::Tcg => "TCG",
            Accel::TcgIcount => "TCG, instruction-counting clock",
            Accel::Kvm => "KVM",
        }
    }
}

/// The guest's disk images, in the order the guest sees them (`vda`, …).
pub(super) struct Disks<'a> {
    pub out: &'a Path,
    pub scratch: &'a Path,
    pub slow: &'a Path,
    /// Size of the out disk ([`out_disk_bytes`]).
    pub out_bytes: u64,
}

impl Disks<'_> {
    /// Empty (sparse) images of the sizes the guest checks.
    pub(super) fn create(&self) -> Result<()> {
        sparse_file(self.out, self.out_bytes)?;
        sparse_file(self.scratch, SCRATCH_DISK_BYTES)?;
        sparse_file(self.slow, SLOW_DISK_BYTES)
    }
}

fn sparse_file(path: &Path, size: u64) -> Result<()> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    file.set_len(size)
        .with_context(|| format!("size {} to {size} bytes", path.display()))
}

/// The kernel's report that led to a panic: from the first `BUG:`, `Oops`,
/// `general protection fault` or `WARNING:` line to the panic line, at most
/// [`OOPS_LINES`] lines, so a run whose console is gone (a CI clone) still
/// shows where the guest died.
pub(super) fn oops_report(text: &str) -> String {
    let text = strip_escapes(text);
    let lines: Vec<&str> = text.lines().collect();
    let Some(end) = lines.iter().position(|l| l.contains("Kernel panic")) else {
        return String::new();
    };
    let start = lines[..end]
        .iter()
        .position(|l| {
            ["BUG:", "Oops", "general protection fault", "WARNING:"]
                .iter()
                .any(|m| l.contains(m))
        })
        .unwrap_or(end);
    let start = start.max(end.saturating_sub(OOPS_LINES - 1));
    lines[start..=end]
        .iter()
        .map(|l| format!("    | {}", l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

const OOPS_LINES: usize = 80;

/// The last console lines, without terminal escape sequences.
pub(super) fn console_tail(text: &str) -> String {
    cmd::tail(strip_escapes(text).as_bytes(), 8)
}

/// `text` without ANSI/VT escape sequences (SeaBIOS clears the screen).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// The pages the slow disk's rate is set for: the fewest any of the run's
/// slow-disk scenarios writes (a `+watch` one writes
/// [`super::WATCH_PAGES`]); a write of more pages at that rate only takes
/// longer.
fn slow_pages(run: &LabRun) -> u32 {
    run.scenarios
        .iter()
        .filter(|s| SLOW_DISK_SCENARIOS.contains(&super::split_variant(s).0))
        .map(|s| super::run_pages(s).unwrap_or(run.pages))
        .min()
        .unwrap_or(run.pages)
}

/// qemu's arguments for the guest's disks, in the order the guest names
/// them (`vda`, `vdb`, `vdc`: the devices' PCI slots follow the order of
/// the `-device` arguments). The slow disk is write-throttled (see
/// [`slow_disk_bps`]), without virtio-blk's merging of adjacent requests,
/// which would hand the throttle one request for the whole write.
fn disk_args(disks: &Disks, pages: u32, hold_secs: u32) -> Vec<std::ffi::OsString> {
    let slow = format!(",throttling.bps-write={}", slow_disk_bps(pages, hold_secs));
    let mut args = Vec::new();
    for (id, img, drive_opts, device_opts) in [
        ("out", disks.out, "", ""),
        ("scratch", disks.scratch, "", ""),
        ("slow", disks.slow, slow.as_str(), ",request-merging=off"),
    ] {
        let mut drive = std::ffi::OsString::from("file=");
        drive.push(img.as_os_str());
        drive.push(format!(",if=none,id={id},format=raw{drive_opts}"));
        args.push("-drive".into());
        args.push(drive);
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive={id}{device_opts}").into());
    }
    args
}

/// Runs qemu until the guest powers off, writing its console to `console`.
pub(super) fn boot(
    run: &LabRun,
    kernel: &KernelInfo,
    initrd: &Path,
    disks: &Disks,
    console: &Path,
) -> Result<()> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", run.accel.qemu_name()]);
    if run.accel == Accel::TcgIcount {
        qemu.args(["-icount", "shift=0,sleep=off"]);
    }
    qemu.args(["-m", "2048", "-cpu", "max"])
        .arg("-smp")
        .arg(run.cpus.to_string())
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(kernel.vmlinuz_path())
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", KERNEL_CMDLINE])
        .args(disk_args(disks, slow_pages(run), run.hold_secs))
        .stdin(if live_tui(run) {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "lab {}: booting {} under qemu ({}), console in {}",
        run.kernel,
        kernel.release,
        run.accel.qemu_name(),
        console.display()
    );
    let described = cmd::describe(&qemu);
    let mut child = qemu
        .spawn()
        .with_context(|| format!("cannot start `{described}`"))?;

    let log = File::create(console).with_context(|| format!("create {}", console.display()))?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    let verbose = run.verbose;
    let label = run.kernel.name();
    // The demo's live TUI: the console on the user's terminal meanwhile.
    let live = live_tui(run).then(live::Live::default);
    if live.is_some() {
        live::set_qemu(child.id());
    }
    let keys = match (&live, child.stdin.take()) {
        (Some(l), Some(stdin)) => Some(live::forward_keys(l.clone(), stdin)),
        _ => None,
    };
    let pump_live = live.clone();
    let pump = thread::spawn(move || pump_console(stdout, log, verbose, label, pump_live));
    let err_pump = thread::spawn(move || {
        let mut text = String::new();
        let mut stderr = stderr;
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = Instant::now() + Duration::from_secs(run.timeout_secs);
    let status = loop {
        if let Some(status) = child.try_wait().context("wait for qemu")? {
            break status;
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            let _ = pump.join();
            let text = fs::read(console)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            bail!(
                "lab {}: guest still running after {} s, killed qemu; console tail: {}",
                run.kernel,
                run.timeout_secs,
                console_tail(&text)
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let _ = pump.join();
    if let Some(l) = &live {
        live::set_qemu(0);
        l.finish();
    }
    if let Some(k) = keys {
        let _ = k.join();
    }
    let qemu_stderr = err_pump.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "`qemu-system-x86_64` failed with {status}: {}",
            cmd::tail(qemu_stderr.as_bytes(), 4)
        );
    }
    Ok(())
}

/// Whether the run shows a `+tui` scenario's TUI on the user's terminal.
fn live_tui(run: &LabRun) -> bool {
    run.tui.live
        && run
            .scenarios
            .iter()
            .any(|s| split_variant(s).1 == Variant::Tui)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Copies the console to the log; echoes everything (verbose) or only the
/// `LAB:` marker lines. With `live`, the console between [`live::BEGIN`]
/// and [`live::END`] goes to the terminal as it is, the terminal in raw mode.
fn pump_console(
    mut from: impl Read,
    mut log: File,
    verbose: bool,
    label: &str,
    live: Option<live::Live>,
) {
    let mut buf = [0u8; 8192];
    let mut console = live::Console::new(verbose, live.is_some());
    let mut raw: Option<live::RawTerminal> = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let _ = log.write_all(&buf[..n]);
        let mut out = std::io::stdout().lock();
        for step in console.feed(&buf[..n]) {
            match step {
                live::Step::Show(bytes) => {
                    let _ = out.write_all(&bytes);
                }
                live::Step::Lab(text) => {
                    let _ = writeln!(out, "  [{label}] {text}");
                }
                live::Step::Begin => {
                    let _ = out.flush();
                    raw = live::RawTerminal::enter();
                    if let Some(l) = &live {
                        l.set(true);
                    }
                }
                live::Step::End => {
                    let _ = out.flush();
                    raw = None;
                    if let Some(l) = &live {
                        l.set(false);
                    }
                }
            }
        }
        let _ = out.flush();
    }
    drop(raw);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&console.rest());
    let _ = out.flush();
    let _ = log.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oops_report_runs_from_the_first_report_line_to_the_panic() {
        let console = "LAB: scenario hmm-migrate start\n\
            [   41.7] BUG: kernel NULL pointer dereference, address: 0000000000000008\n\
            [   41.7] RIP: 0010:dmirror_devmem_free+0x12/0x40\n\
            [   41.7] Kernel panic - not syncing: Fatal exception in interrupt\n\
            [   41.8] ---[ end Kernel panic ]---\n";
        let report = oops_report(console);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), 3, "{report}");
        assert!(lines[0].contains("BUG: kernel NULL pointer"), "{report}");
        assert!(lines[1].contains("dmirror_devmem_free+0x12"), "{report}");
        assert!(
            lines[2].contains("Fatal exception in interrupt"),
            "{report}"
        );
        assert_eq!(oops_report("LAB: done\n"), "");
    }

    #[test]
    fn oops_report_is_bounded() {
        let mut console = String::from("Oops: 0000 [#1] SMP\n");
        for i in 0..500 {
            console.push_str(&format!("frame {i}\n"));
        }
        console.push_str("Kernel panic - not syncing: Fatal exception\n");
        let report = oops_report(&console);
        assert_eq!(report.lines().count(), OOPS_LINES);
        assert!(
            report
                .lines()
                .last()
                .is_some_and(|l| l.contains("Kernel panic"))
        );
        assert!(
            report
                .lines()
                .next()
                .is_some_and(|l| l.contains("frame 421")),
            "{report}"
        );
    }

    #[test]
    fn the_slow_disk_is_set_for_the_fewest_pages_written_to_it() {
        use crate::kernels::KernelId;
        let run = LabRun::new(KernelId::Hmm7_2, &["dax-pin-long", "dax-hold"]);
        assert_eq!(slow_pages(&run), run.pages);
        let run = LabRun::new(
            KernelId::Hmm7_2,
            &["hmm-release+watch", "dax-pin-long+watch"],
        );
        assert_eq!(slow_pages(&run), super::super::WATCH_PAGES);
        let run = LabRun::new(KernelId::Hmm7_2, &["dax-hold"]);
        assert_eq!(slow_pages(&run), run.pages);
    }

    #[test]
    fn the_slow_disk_holds_a_write_for_the_hold() {
        assert_eq!(slow_disk_bps(16, 3), 17_555);
        for pages in 2..=256 {
            for hold in 1..=10 {
                let bps = slow_disk_bps(pages, hold) as f64;
                // The last of the write's 4 KiB requests waits this long.
                let last = f64::from(pages - 1) * 4096.0 / bps - 0.1;
                assert!(
                    last >= f64::from(hold) && last < f64::from(hold) + 0.5,
                    "{pages} pages, hold {hold}: {last} s"
                );
            }
        }
    }

    #[test]
    fn the_slow_disk_is_the_third_and_throttled() {
        let disks = Disks {
            out: Path::new("/o.img"),
            scratch: Path::new("/s.img"),
            slow: Path::new("/w.img"),
            out_bytes: OUT_DISK_BYTES,
        };
        let args: Vec<String> = disk_args(&disks, 16, 3)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-drive",
                "file=/o.img,if=none,id=out,format=raw",
                "-device",
                "virtio-blk-pci,drive=out",
                "-drive",
                "file=/s.img,if=none,id=scratch,format=raw",
                "-device",
                "virtio-blk-pci,drive=scratch",
                "-drive",
                "file=/w.img,if=none,id=slow,format=raw,throttling.bps-write=17555",
                "-device",
                "virtio-blk-pci,drive=slow,request-merging=off",
            ]
        );
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            strip_escapes("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\nLAB: x"),
            "SeaBIOS\nLAB: x"
        );
    }
}
