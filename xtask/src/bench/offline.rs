//! `cargo xtask bench offline`: the offline tools (`report`, `export`) on a
//! large SYNTHETIC recording, against a decode-only reader, in one run.
//!
//! The recording is generated here (labelled `synthetic` in its header's
//! kernel field): realistic event lines (stacks of eight frames out of a few
//! dozen code paths, sixteen tasks), get/put pairs spread over the PFNs, and
//! one page in a hundred taken once more at the start and never released,
//! so the report has held episodes with holders. The baseline is
//! `decode_only` (refwatch/examples), which reads every line with refwatch's
//! own reader and checks, and discards it. Each command runs with its
//! standard output read and counted here (not stored); its wall time and
//! peak RSS (`wait4` rusage) are measured. Goals, asserted: every command
//! ≤ 1 GiB peak RSS and ≤ 2× the decode-only wall time.

use std::{
    fs::{self, File},
    io::{BufRead, BufWriter, Read, Write},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{cmd, setup, test::workspace_root};

/// Peak RSS goal per command.
pub const MAX_RSS_BYTES: u64 = 1 << 30;
/// Wall-time goal per command, over the decode-only reader's.
pub const MAX_TIME_RATIO: f64 = 2.0;

/// Bumped when the generator changes: a kept recording of an older
/// generator is not reused.
const GENERATOR: u32 = 1;

/// What `cargo xtask bench offline` was asked for.
#[derive(Debug, Clone)]
pub struct OfflineOptions {
    pub events: u64,
    pub pfns: u64,
    /// Runs of every command; the fastest of each is compared.
    pub rounds: u32,
    pub out: PathBuf,
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: Duration,
    max_rss_bytes: u64,
    out_bytes: u64,
    out_lines: u64,
}

/// The commands measured, after the decode-only baseline.
const COMMANDS: &[(&str, &[&str])] = &[
    ("report", &["report"]),
    ("report --json", &["report", "--json"]),
    ("export --format jsonl", &["export", "--format", "jsonl"]),
    ("export --format csv", &["export", "--format", "csv"]),
    (
        "export --format perfetto",
        &["export", "--format", "perfetto"],
    ),
];

/// First PFN of the synthetic pages.
const FIRST_PFN: u64 = 0x10_0000;
/// Monotonic time the synthetic recording starts at.
const START_NS: u64 = 1_000_000_000_000;
/// Time between synthetic events.
const STEP_NS: u64 = 2_000;
/// One page in this many is held (taken once more, never released).
const HELD_EVERY: u64 = 100;
/// Distinct stacks per direction (get, put).
const STACKS: u64 = 32;

/// Writes the SYNTHETIC recording: `events` events over `pfns` PFNs.
pub fn generate(path: &Path, events: u64, pfns: u64) -> Result<()> {
    if pfns == 0 || events < pfns.div_ceil(HELD_EVERY) {
        bail!("--events must be at least --pfns / {HELD_EVERY} and --pfns at least 1");
    }
    let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    writeln!(
        w,
        r#"{{"type":"header","format":"refwatch-recording","version":1,"kernel":"synthetic (cargo xtask bench offline)","started_ns":{START_NS},"rules":{{"private_idle":0,"fsdax_idle":1,"generic_idle":1,"p2pdma_idle":1,"fsdax_mapping_refs":false,"basis":"synthetic: fs-dax 1-based"}},"thresholds":{{"held_ns":5000000000,"pinned_ns":5000000000,"unmapped_ns":5000000000}},"precise":true,"hooks":[]}}"#
    )?;
    let held = pfns.div_ceil(HELD_EVERY);
    let mut next_tick = START_NS + 1_000_000_000;
    let mut ts = START_NS;
    for i in 0..events {
        ts = START_NS + 1_000_000 + i * STEP_NS;
        while ts >= next_tick {
            writeln!(w, r#"{{"type":"tick","now_ns":{next_tick},"dropped":0}}"#)?;
            next_tick += 1_000_000_000;
        }
        // First the held pages' extra reference, then get/put pairs.
        let (pfn_index, get, base, k) = if i < held {
            (i * HELD_EVERY, true, 1, i)
        } else {
            let pair = (i - held) / 2;
            let idx = (pair * 7919) % pfns;
            let base = if idx.is_multiple_of(HELD_EVERY) { 2 } else { 1 };
            (idx, (i - held).is_multiple_of(2), base, pair)
        };
        let pfn = FIRST_PFN + pfn_index;
        let task = k % 16;
        let v = k % STACKS;
        let (event, before, after, symbol, stack) = if get {
            (
                "get",
                base,
                base + 1,
                "try_grab_folio_fast",
                format!(
                    r#""try_grab_folio_fast+0x5","gup_fast_fallback+0x6be","__iov_iter_get_pages_alloc+0x298","iov_iter_get_pages2+0x1d","__do_sys_vmsplice+0x2e1","do_syscall_64+0x87","entry_SYSCALL_64_after_hwframe+0x76","workload_path_{v}+0x{:x}""#,
                    0x40 + v * 0x10
                ),
            )
        } else {
            (
                "put",
                base + 1,
                base,
                "gup_put_folio",
                format!(
                    r#""gup_put_folio+0x5","unpin_user_pages+0x4c","pipe_buf_release+0x30","pipe_read+0x1f2","vfs_read+0x1e8","ksys_read+0x73","do_syscall_64+0x87","workload_path_{v}+0x{:x}""#,
                    0x80 + v * 0x10
                ),
            )
        };
        writeln!(
            w,
            r#"{{"type":"event","ts_ns":{ts},"cpu":{cpu},"pid":{pid},"tgid":{pid},"comm":"workload-{task}","pfn":{pfn},"event":"{event}","refcount_before":{before},"refcount_after":{after},"mapcount":-1,"pgmap_type":"fsdax","nr_pages":1,"symbol":"{symbol}","ret":null,"stack":[{stack}]}}"#,
            cpu = i % 2,
            pid = 1000 + task,
        )?;
    }
    writeln!(
        w,
        r#"{{"type":"end","now_ns":{},"events":{events},"dropped":0}}"#,
        ts + 1_000_000_000
    )?;
    w.flush().context("write the synthetic recording")?;
    Ok(())
}

/// The cargo target directory the build below uses.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `c` with its standard output read and counted; its wall time and
/// peak RSS. A failed command is an error with its standard error.
fn measure(c: &mut Command) -> Result<(Measured, Vec<u8>)> {
    let what = cmd::describe(c);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().with_context(|| format!("run {what}"))?;
    let mut err = child.stderr.take().context("stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.by_ref().take(1 << 16).read_to_end(&mut s);
        // Drain the rest so the child never blocks on it.
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        s
    });
    // Counted with std's own line search (optimized even in this debug
    // build), so reading the output never holds the command back.
    let mut out =
        std::io::BufReader::with_capacity(1 << 20, child.stdout.take().context("stdout")?);
    let head = out.fill_buf().context("read the command's output")?;
    let head = head[..head.len().min(4096)].to_vec();
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let n = out.skip_until(b'\n').context("read the command's output")?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += 1;
    }
    let (status, max_rss_bytes) = wait_rusage(child.id())?;
    let wall = start.elapsed();
    let stderr = err_reader.join().unwrap_or_default();
    if status != 0 {
        bail!(
            "{what} failed (wait status {status:#x}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok((
        Measured {
            wall,
            max_rss_bytes,
            out_bytes: bytes,
            out_lines: lines,
        },
        head,
    ))
}

/// Waits for the child `pid`: its wait status and peak RSS in bytes.
fn wait_rusage(pid: u32) -> Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    #[allow(unsafe_code)]
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = libc::pid_t::try_from(pid).context("child pid")?;
    loop {
        // SAFETY: `status` and `ru` are valid for writes for the call; the
        // child is ours and not waited for elsewhere (std's `Child` is
        // dropped without waiting).
        #[allow(unsafe_code)]
        let r = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    // Linux gives ru_maxrss in KiB.
    let kib = u64::try_from(ru.ru_maxrss).unwrap_or(0);
    Ok((status, kib * 1024))
}

/// One row of the result.
struct Row {
    name: &'static str,
    best: Measured,
}

/// `cargo xtask bench offline`.
pub fn run(opts: &OfflineOptions) -> Result<ExitCode> {
    fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "refwatch",
            "--bin",
            "refwatch",
            "--example",
            "decode_only",
        ])
        .current_dir(workspace_root())
        .env("PATH", setup::env_path())
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p refwatch failed");
    }
    let release = target_dir().join("release");
    let refwatch = release.join("refwatch");
    let decode = release.join("examples").join("decode_only");

    let rec = opts.out.join(format!(
        "synthetic-{}-events-{}-pfns-v{GENERATOR}.rec",
        opts.events, opts.pfns
    ));
    if rec.exists() {
        println!("reusing the synthetic recording {}", rec.display());
    } else {
        println!(
            "generating a synthetic recording: {} events over {} PFNs → {}",
            opts.events,
            opts.pfns,
            rec.display()
        );
        let t = Instant::now();
        let partial = rec.with_extension("partial");
        generate(&partial, opts.events, opts.pfns)?;
        fs::rename(&partial, &rec).context("keep the synthetic recording")?;
        println!("generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    let size = fs::metadata(&rec).context("the recording")?.len();
    // Read once unmeasured: every command then starts with the file in
    // the page cache (when it fits), not only the ones after the first.
    let mut f = File::open(&rec).with_context(|| format!("open {}", rec.display()))?;
    std::io::copy(&mut f, &mut std::io::sink()).context("read the recording")?;

    let mut decode_best: Option<Measured> = None;
    let mut rows: Vec<Row> = COMMANDS
        .iter()
        .map(|(name, _)| Row {
            name,
            best: Measured {
                wall: Duration::MAX,
                max_rss_bytes: 0,
                out_bytes: 0,
                out_lines: 0,
            },
        })
        .collect();
    let keep = |best: &mut Measured, m: Measured| {
        best.wall = best.wall.min(m.wall);
        best.max_rss_bytes = best.max_rss_bytes.max(m.max_rss_bytes);
        best.out_bytes = m.out_bytes;
        best.out_lines = m.out_lines;
    };
    for round in 1..=opts.rounds {
        println!("round {round} of {}", opts.rounds);
        let (m, head) = measure(Command::new(&decode).arg(&rec))?;
        let said = String::from_utf8_lossy(&head);
        if said.trim() != format!("{} events", opts.events) {
            bail!("decode_only read {said:?}, expected {} events", opts.events);
        }
        println!("  decode-only: {:.2} s", m.wall.as_secs_f64());
        match &mut decode_best {
            Some(b) => keep(b, m),
            None => decode_best = Some(m),
        }
        for ((name, args), row) in COMMANDS.iter().zip(&mut rows) {
            let (m, head) = measure(Command::new(&refwatch).args(*args).arg(&rec))?;
            check_output(name, &head, &m, opts)?;
            println!("  {name}: {:.2} s", m.wall.as_secs_f64());
            keep(&mut row.best, m);
        }
    }
    let Some(base) = decode_best else {
        bail!("no round ran");
    };
    let (text, met) = table(opts, size, &base, &rows);
    print!("{text}");
    fs::write(opts.out.join("offline.txt"), &text).context("write offline.txt")?;
    if met {
        println!("every goal met");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("a goal was MISSED (see the table)");
        Ok(ExitCode::FAILURE)
    }
}

/// Checks a command's output is the work asked for, not an early exit.
fn check_output(name: &str, head: &[u8], m: &Measured, opts: &OfflineOptions) -> Result<()> {
    let head = String::from_utf8_lossy(head);
    let ok = match name {
        "report" => head.starts_with(&format!(
            "kernel synthetic (cargo xtask bench offline): {} events on ",
            opts.events
        )),
        "report --json" => head.contains(&format!("\"events\": {}", opts.events)),
        "export --format jsonl" => m.out_lines == opts.events,
        "export --format csv" => m.out_lines == opts.events + 1,
        "export --format perfetto" => head.starts_with("{\"displayTimeUnit\""),
        _ => false,
    };
    if !ok {
        bail!(
            "{name}: unexpected output ({} bytes, {} lines): {:?}",
            m.out_bytes,
            m.out_lines,
            head.chars().take(200).collect::<String>()
        );
    }
    Ok(())
}

/// The result table, and whether every goal was met.
fn table(opts: &OfflineOptions, size: u64, base: &Measured, rows: &[Row]) -> (String, bool) {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut out = format!(
        "offline tools on a SYNTHETIC recording: {} events over {} PFNs, {:.0} MiB; fastest of {} round(s)\n",
        opts.events,
        opts.pfns,
        mib(size),
        opts.rounds
    );
    out.push_str(&format!(
        "{:<34} {:>8} {:>9} {:>13} {:>12}  {}\n",
        "COMMAND", "WALL s", "×DECODE", "PEAK RSS MiB", "OUTPUT MiB", "GOALS (≤2× time, ≤1 GiB)"
    ));
    out.push_str(&format!(
        "{:<34} {:>8.2} {:>9.2} {:>13.1} {:>12.1}  baseline\n",
        "decode-only (reader)",
        base.wall.as_secs_f64(),
        1.0,
        mib(base.max_rss_bytes),
        mib(base.out_bytes)
    ));
    let mut met = true;
    for r in rows {
        let ratio = r.best.wall.as_secs_f64() / base.wall.as_secs_f64().max(1e-9);
        let time_ok = ratio <= MAX_TIME_RATIO;
        let rss_ok = r.best.max_rss_bytes <= MAX_RSS_BYTES;
        met &= time_ok && rss_ok;
        out.push_str(&format!(
            "{:<34} {:>8.2} {:>9.2} {:>13.1} {:>12.1}  {}\n",
            format!("refwatch {}", r.name),
            r.best.wall.as_secs_f64(),
            ratio,
            mib(r.best.max_rss_bytes),
            mib(r.best.out_bytes),
            match (time_ok, rss_ok) {
                (true, true) => "met",
                (false, true) => "MISSED: time",
                (true, false) => "MISSED: memory",
                (false, false) => "MISSED: time and memory",
            }
        ));
    }
    (out, met)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator's recording: a header, ticks, the events asked for
    /// (the held pages' extra gets first, then get/put pairs with
    /// refcounts that return to idle), and an end line.
    #[test]
    fn the_synthetic_recording_is_well_formed() {
        let dir = std::env::temp_dir().join(format!("xtask-offline-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("rec");
        generate(&p, 1000, 200).expect("generate");
        let text = fs::read_to_string(&p).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines[0]["type"], "header");
        assert_eq!(lines.last().expect("end")["type"], "end");
        let events: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["type"] == "event").collect();
        assert_eq!(events.len(), 1000);
        // Two held pages (200 / 100), taken first.
        assert_eq!(events[0]["pfn"], FIRST_PFN);
        assert_eq!(events[1]["pfn"], FIRST_PFN + 100);
        let mut rc = std::collections::HashMap::new();
        for e in &events {
            let pfn = e["pfn"].as_u64().expect("pfn");
            let before = e["refcount_before"].as_i64().expect("before");
            let now = rc.entry(pfn).or_insert(1);
            assert_eq!(before, *now, "{e}");
            *now = e["refcount_after"].as_i64().expect("after");
            assert_eq!(e["stack"].as_array().expect("stack").len(), 8);
        }
        assert_eq!(rc.values().filter(|v| **v == 2).count(), 2, "held pages");
        assert!(generate(&p, 1, 200).is_err());
        fs::remove_dir_all(&dir).ok();
    }
}
