//! The commands, wired from the stages: probe plan → load/attach → collect.

use std::{fs, io::Write, path::Path, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    cli::{
        AttachArgs, CompletionsArgs, ExportArgs, ManArgs, ProbeArgs, ProbesArgs, RecordArgs,
        ReplayArgs, ReportArgs,
    },
    collector,
    diagnose::{self, Facts},
    format::export,
    format::json::Format,
    format::recording,
    layout::{self, KernelBtf, Layout},
    loader::{self, Loaded, PlanRow},
    plan::{self, KernelCaps, plan_table},
    report,
    rules::Rules,
    state::Thresholds,
    symbols::kallsyms::Kallsyms,
};

const KALLSYMS: &str = "/proc/kallsyms";
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Everything learned about the running kernel before loading.
pub struct Prepared {
    pub kallsyms: Kallsyms,
    pub layout: Layout,
    pub plan: Vec<plan::Resolved>,
    pub release: String,
    /// Capabilities and lockdown, to explain a refusal.
    pub facts: Facts,
    /// The steps of reading the kernel, with their times.
    pub steps: Vec<(&'static str, std::time::Duration)>,
}

fn prepare(args: &ProbeArgs) -> Result<Prepared> {
    let mut steps = crate::steps::Steps::start();
    // Which capability is missing, before a kernel call fails for lack of it.
    let facts = Facts::read();
    if let Some(d) = diagnose::preflight(&facts) {
        return Err(d.into());
    }
    steps.done("capabilities read");
    let kallsyms = Kallsyms::read(Path::new(KALLSYMS))?;
    steps.done("kernel symbols read");
    let btf = KernelBtf::open(Path::new(VMLINUX_BTF))?;
    steps.done("kernel BTF read");
    let layout = layout::resolve(
        &btf,
        &kallsyms,
        args.stack_policy().frames(),
        args.ram_holders,
    )
    .context("read the kernel layout from BTF")?;
    steps.done("kernel layout resolved");
    let caps = KernelCaps::probe();
    steps.done("kprobe support checked");
    let plan = plan::resolve(&kallsyms, &btf, &caps, args.mode, !args.no_precise);
    steps.done("probe plan made");
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Ok(Prepared {
        kallsyms,
        layout,
        plan,
        release,
        facts,
        steps: steps.done,
    })
}

fn attach_all(p: &Prepared, ring_bytes: u32) -> Result<Loaded> {
    let loaded = loader::load(&p.layout, &p.plan, ring_bytes, &p.facts)?;
    require_attached(p, &loaded)?;
    Ok(loaded)
}

/// Fails with one line and a hint when no hook attached; `probes` shows
/// the plan that says why for each.
fn require_attached(p: &Prepared, loaded: &Loaded) -> Result<()> {
    if loaded.rows.iter().any(PlanRow::attached) {
        return Ok(());
    }
    let outcome = diagnose::Outcome {
        hooks: loaded.rows.len(),
        refusals: loaded
            .rows
            .iter()
            .flat_map(|r| r.refusals.iter().cloned())
            .collect(),
    };
    Err(diagnose::nothing_attached(&p.facts, &p.release, &outcome).into())
}

/// `refwatch probes`.
pub fn probes(args: &ProbesArgs) -> Result<ExitCode> {
    let p = prepare(&args.probe)?;
    println!("kernel {}", p.release);
    println!(
        "layout: struct page {} bytes, _refcount@{}, _mapcount@{}, pgmap via {}@{}, dev_pagemap.type@{}, zone bits >>{} &{:#x}, ZONE_DEVICE={}, PG_head={}, FOLL_PIN={:#x} ({}); vmemmap: {}",
        p.layout.raw.page_struct_size,
        p.layout.raw.off_refcount,
        p.layout.raw.off_mapcount,
        p.layout.pgmap_from,
        p.layout.raw.off_pgmap,
        p.layout.raw.off_pgmap_type,
        p.layout.raw.zones_shift,
        p.layout.raw.zones_mask,
        p.layout.raw.zone_device,
        p.layout.raw.pg_head,
        p.layout.raw.foll_pin,
        p.layout.foll_pin_from,
        p.layout.vmemmap_from
    );
    let loaded = loader::load(&p.layout, &p.plan, crate::cli::DEFAULT_RING_BYTES, &p.facts)?;
    print!("{}", plan_table(&loaded.rows));
    let logs = diagnose::verifier_logs(loaded.rows.iter().flat_map(|r| &r.refusals));
    if args.verifier_log {
        for (prog, log) in &logs {
            println!("verifier log of {prog}:\n{log}");
        }
    } else if !logs.is_empty() {
        println!(
            "the verifier refused {} program(s): --verifier-log prints its log",
            logs.len()
        );
    }
    let n = loaded.rows.iter().filter(|r| r.attached()).count();
    println!("{n} of {} hooks attached", loaded.rows.len());
    require_attached(&p, &loaded)?;
    println!("references: {}", loaded.mode_words());
    println!("{}", args.probe.stack_policy().describe());
    println!("{}", watch_words(&p));
    Ok(ExitCode::SUCCESS)
}

/// Whether hardware watchpoints (`--watch`) can be created here, tried on
/// a kernel variable (breakpoints opened and closed, never enabled).
fn watch_words(p: &Prepared) -> String {
    let addr = crate::watch::probe_address(&p.kallsyms).unwrap_or(p.layout.raw.vmemmap_base_addr);
    if addr == 0 {
        return "watchpoints (--watch): not known (no kernel variable to try them on)".into();
    }
    match crate::watch::probe(addr) {
        Ok(0) => "watchpoints (--watch): none: no hardware breakpoint slot is free".into(),
        Ok(n) => format!(
            "watchpoints (--watch): {n} page(s) at once (free hardware breakpoint slots on every CPU)"
        ),
        Err(why) => format!("watchpoints (--watch): not available: {why}"),
    }
}

/// `refwatch attach`.
pub fn attach(args: &AttachArgs) -> Result<ExitCode> {
    run_live(args, None)
}

/// `refwatch watch PFN…`: a headless attach that watches those pages and
/// prints their events.
pub fn watch(args: &crate::cli::WatchCmdArgs) -> Result<ExitCode> {
    let pfns = args.pfns.join(",");
    let request = crate::watch::Request::parse(&pfns)?;
    if request.new || request.unknown {
        anyhow::bail!("refwatch watch takes PFNs; `new` and `unknown` go with attach --watch");
    }
    if args.attach.watchpoints.is_some() {
        anyhow::bail!("refwatch watch watches the PFNs it is given; --watch goes with attach");
    }
    let mut a = args.attach.clone();
    a.headless = true;
    a.watchpoints = Some(pfns.clone());
    a.watch.pfn.get_or_insert(pfns);
    run_live_printing(&a, None, true)
}

/// The size at which `record`'s recording and `--jsonl` rotate.
fn limit(args: &AttachArgs) -> crate::rotate::Limit {
    crate::rotate::Limit {
        max_bytes: args.max_size,
        keep: args.keep,
    }
}

/// `refwatch record`.
pub fn record(args: &RecordArgs) -> Result<ExitCode> {
    run_live(&args.attach, Some((&args.output, limit(&args.attach))))
}

fn run_live(args: &AttachArgs, recording: Option<(&Path, recording::Limit)>) -> Result<ExitCode> {
    run_live_printing(args, recording, false)
}

/// [`run_live`], printing each event as a line when `print_events`.
fn run_live_printing(
    args: &AttachArgs,
    recording: Option<(&Path, recording::Limit)>,
    print_events: bool,
) -> Result<ExitCode> {
    if args.vmlinux.is_some() && (args.headless || recording.is_some()) {
        anyhow::bail!(
            "--vmlinux names the frames the TUI shows, and `{}` has none; `refwatch report --vmlinux FILE` names a recording's",
            if recording.is_some() {
                "record"
            } else {
                "attach --headless"
            }
        );
    }
    // Before attaching: a refused output costs nothing.
    let outputs: Vec<&Path> = args
        .jsonl
        .iter()
        .map(|p| p.as_path())
        .chain(recording.map(|r| r.0))
        .collect();
    crate::output::check_growing_all(&outputs)?;
    // Also before: a port already taken is one line, nothing attached.
    let metrics_listener = args.metrics.map(crate::metrics::serve::bind).transpose()?;
    let metrics = metrics_listener
        .is_some()
        .then(crate::metrics::serve::Published::default);
    let recording_path = recording.map(|r| r.0);
    let thresholds = args.thresholds.apply(Thresholds::default())?;
    // `record` stays headless: it is for scripts and the lab VM.
    let use_tui = !args.headless && recording_path.is_none();
    if use_tui {
        crate::tty::require_terminal("attach")?;
    } else if args.history != crate::state::DEFAULT_HISTORY as u64
        || args.max_events != crate::state::DEFAULT_MAX_EVENTS as u64
    {
        log::warn!(
            "--history and --max-events size the TUI's per-PFN histories; without the TUI refwatch keeps none in memory (every event is in the recording or the JSON lines, which `report` and `replay` read)"
        );
    }
    let watch = crate::filter::Watch::from_args(
        args.watch.pfn.as_deref(),
        &args.watch.types,
        args.watch.pid,
        args.watch.cgroup.as_deref(),
    )?;
    let watchpoints = args
        .watchpoints
        .as_deref()
        .map(crate::watch::Request::parse)
        .transpose()?;
    if watchpoints.is_none() && args.watch_ready.is_some() {
        anyhow::bail!("--watch-ready lists the pages --watch watches: give --watch too");
    }
    let mut p = prepare(&args.probe)?;
    // Before attaching too: an image that cannot be used is one line.
    let lines = if use_tui {
        tui_source_lines(args.vmlinux.as_deref(), &p.release)?
    } else {
        None
    };
    watch.encode(&mut p.layout.raw);
    p.layout.raw.rate_cap = args.max_rate.unwrap_or(0);
    p.layout.raw.wake_bytes = refwatch_common::wake_bytes(u64::from(args.ring_size));
    if let Some(n) = args.max_rate {
        log::info!(
            "--max-rate: at most {n} events per second from each CPU; past it they are counted, their pages marked with a gap"
        );
    }
    if let Some(w) = &watchpoints {
        log::info!("hardware watchpoints asked for: {}", w.describe());
    }
    if !watch.is_empty() {
        log::info!("watching only: {}", watch.describe());
    }
    let rules = Rules::from_kernel(&p.kallsyms);
    // Run-time statistics stay on while this descriptor is open.
    let _stats_on = if args.prog_stats {
        Some(aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| {
            anyhow::anyhow!(
                "--prog-stats: the kernel refused to turn on BPF run-time statistics ({e}); they need Linux 5.8+ and root"
            )
        })?)
    } else {
        None
    };
    let mut loaded = attach_all(&p, args.ring_size)?;
    // Name the trampolines attaching just made: their frames in stacks are
    // then left out by name instead of showing as unknown.
    let mut steps = crate::steps::Steps::start();
    match p.kallsyms.add_bpf_symbols(Path::new(KALLSYMS)) {
        Ok(n) => log::info!("{n} BPF symbols (trampolines, programs) added after attaching"),
        Err(e) => log::warn!("BPF symbols after attaching: {e:#}; their frames stay unknown"),
    }
    steps.done("BPF symbols read");
    log::info!(
        "kernel {}: attached\n{}",
        p.release,
        plan_table(&loaded.rows)
    );
    log::info!(
        "{}",
        crate::steps::Steps::line(&[p.steps.as_slice(), &loaded.steps, &steps.done].concat())
    );
    log::info!("refcount rules: {}", rules.basis);
    let tui_info = use_tui.then(|| {
        crate::tui::HeaderInfo::live(
            &p.release,
            args.probe.mode,
            loaded.precise,
            &loaded.rows,
            &rules,
            collector::monotonic_ns(),
        )
    });
    let n = loaded.rows.iter().filter(|r| r.attached()).count();
    println!(
        "refwatch: kernel {}, {n} of {} hooks attached; references: {}; {}; {}; Ctrl-C to stop",
        p.release,
        loaded.rows.len(),
        loaded.mode_words(),
        rules.basis,
        args.probe.stack_policy().describe()
    );
    let header = recording_path.map(|path| {
        (
            path.to_path_buf(),
            recording::Header {
                format: recording::FORMAT.into(),
                version: recording::VERSION,
                kernel: p.release.clone(),
                started_ns: collector::monotonic_ns(),
                rules: rules.clone(),
                thresholds,
                precise: loaded.precise,
                hooks: loaded
                    .rows
                    .iter()
                    .map(|r| recording::HookRecord {
                        logical: r.logical.into(),
                        symbol: r.symbol.map(Into::into),
                        mode: r.mode.map(|m| m.name().into()),
                        status: r.status.clone(),
                    })
                    .collect(),
                filter: (!watch.is_empty()).then(|| watch.describe()),
            },
        )
    });
    let opts = collector::Options {
        jsonl: args.jsonl.clone(),
        recording: header,
        rotate: recording.map(|r| r.1),
        jsonl_rotate: limit(args),
        format: Format {
            raw_pointers: args.raw_pointers,
        },
        history: args.history as usize,
        histories: use_tui,
        max_pfns: args.max_pfns as usize,
        max_events: usize::try_from(args.max_events).unwrap_or(usize::MAX),
        rules,
        thresholds,
        summary_every: Duration::from_secs(args.summary_secs),
        print_stuck: true,
        per_page: args.per_page,
        duration: args.duration.map(Duration::from_secs),
        kprobe_only: args.probe.mode == crate::plan::ModeChoice::Kprobe,
        ring_bytes: args.ring_size,
        watch: watch.clone(),
        metrics: metrics.clone(),
        watchpoints: watchpoints.map(|request| crate::watch::Options {
            request,
            ready_file: args.watch_ready.clone(),
            off_refcount: p.layout.raw.off_refcount,
            print: !use_tui,
        }),
        off_refcount: p.layout.raw.off_refcount,
        print_events,
        stacks: args.probe.stack_policy(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    // The outputs exist once the collector runs; say ready only then.
    let ready = args.ready_file.clone();
    let (tracker, totals) = rt.block_on(async {
        if let (Some(l), Some(text)) = (metrics_listener, metrics) {
            let addr = l.local_addr().ok();
            tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve::serve(l, text).await {
                    log::warn!("{e:#}");
                }
            });
            if let Some(a) = addr {
                log::info!("metrics at http://{a}/metrics");
            }
        }
        let run: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> = match tui_info {
            Some(info) => Box::pin(crate::tui::run_live(
                &mut loaded,
                &p.kallsyms,
                opts,
                info,
                lines,
            )),
            None => Box::pin(collector::run(&mut loaded, &p.kallsyms, opts)),
        };
        tokio::pin!(run);
        if let Some(f) = ready {
            tokio::select! {
                r = &mut run => return r,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            fs::write(&f, b"ready\n")
                .with_context(|| format!("create ready file {}", f.display()))?;
        }
        run.await
    })?;
    println!(
        "refwatch: {} events, {} pages, {} stuck now, {} episodes ({} old ones forgotten, {} not kept: the cap was full of open ones), {} lost, {} capped by --max-rate, {} pages with gaps, {} of them unknown now, {} undecodable, {} evicted, {} events on pages beyond --max-pfns, {} old events trimmed (--max-events)",
        totals.events,
        tracker.len(),
        tracker.stuck().len(),
        tracker.episodes.len(),
        tracker.episodes_dropped(),
        tracker.episodes_unkept(),
        totals.dropped,
        totals.capped,
        tracker.gapped_pages().len(),
        tracker.unknown_pages().len(),
        totals.decode_errors,
        tracker.evicted(),
        tracker.over_cap(),
        tracker.events_trimmed()
    );
    if !watch.is_empty() {
        println!(
            "refwatch: {} events left out by {} (not losses)",
            totals.skipped,
            watch.describe()
        );
    }
    if !use_tui {
        print!("{}", crate::report::summary_table(&tracker));
    }
    if args.prog_stats {
        let text = loader::prog_stats_text(&loader::prog_stats(&loaded.ebpf));
        log::info!("kernel program statistics:\n{text}");
        print!("{text}");
    }
    if let Some(j) = &args.jsonl {
        println!("refwatch: events written to {}", j.display());
    }
    if let Some(r) = recording_path {
        println!("refwatch: recording written to {}", r.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The live TUI's source lines: from `--vmlinux` (an error when it cannot
/// be read or is of another kernel), else from Debian's debug image of the
/// running kernel when one is installed (a warning when it cannot be used).
fn tui_source_lines(
    asked: Option<&Path>,
    release: &str,
) -> Result<Option<crate::symbols::lines::LineCache>> {
    use crate::symbols::{SourceLines, lines::LineCache};
    if let Some(path) = asked {
        let l = SourceLines::open(path)?;
        l.check_release(release, path)?;
        return Ok(Some(LineCache::new(l)));
    }
    let default = crate::symbols::lines::debug_image(release);
    if !default.is_file() {
        return Ok(None);
    }
    match SourceLines::open(&default).and_then(|l| {
        l.check_release(release, &default)?;
        Ok(l)
    }) {
        Ok(l) => {
            log::info!("source lines from {}", default.display());
            Ok(Some(LineCache::new(l)))
        }
        Err(e) => {
            log::warn!("no source lines: {e:#}");
            Ok(None)
        }
    }
}

/// `refwatch report`.
pub fn report(args: &ReportArgs) -> Result<ExitCode> {
    let mut rec = recording::Reader::open(&args.file)?;
    let th = if args.thresholds.any() {
        Some(args.thresholds.apply(rec.header().thresholds)?)
    } else {
        None
    };
    // The image first: a wrong path fails before the replay.
    let lines = args
        .vmlinux
        .as_deref()
        .map(crate::symbols::SourceLines::open)
        .transpose()?;
    if let (Some(l), Some(path)) = (&lines, &args.vmlinux) {
        l.check_release(&rec.header().kernel, path)?;
    }
    let mut r = report::build_from(&mut rec, th, args.raw_pointers)?;
    if let Some(lines) = &lines {
        r.add_source_lines(lines);
    }
    if args.json {
        // Written as it is encoded: no second copy of a large report.
        stdout_with(|w| {
            serde_json::to_writer_pretty(&mut *w, &r)?;
            w.write_all(b"\n")
        })?;
    } else {
        let text = if args.per_page {
            report::text_per_page(&r)
        } else {
            report::text(&r)
        };
        stdout_text(&text)?;
    }
    if args.fail_on_stuck {
        let code = r.fail_on_stuck_code();
        if code == report::EXIT_STUCK {
            eprintln!(
                "refwatch: {} page(s) still stuck at the end of {}",
                r.stuck_at_end.len(),
                args.file.display()
            );
        } else if code == report::EXIT_UNKNOWN {
            eprintln!(
                "refwatch: no page known to be stuck at the end of {}, but {} page(s) are in an unknown state because events were lost",
                args.file.display(),
                r.unknown_at_end.len()
            );
        }
        return Ok(ExitCode::from(code));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to standard output. A reader that went away (EPIPE, e.g.
/// `| head -1`) ends the output quietly; the command keeps its exit code.
fn stdout_text(text: &str) -> Result<()> {
    stdout_with(|w| w.write_all(text.as_bytes()))
}

/// [`stdout_text`] of what `write` writes (buffered).
fn stdout_with(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("write standard output")
        }
        _ => Ok(()),
    }
}

/// Whether an error comes from writing to a pipe nobody reads any more.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// `refwatch export`.
pub fn export(args: &ExportArgs) -> Result<ExitCode> {
    let filter = export::Filter {
        pfns: match &args.pfn {
            Some(s) => export::parse_pfns(s)?,
            None => Vec::new(),
        },
        types: args.types.clone(),
    };
    // Before the recording is read: a refused output costs nothing.
    let mut out = match &args.output {
        Some(p) => Some(crate::output::Output::create(p, Some(&args.file))?),
        None => None,
    };
    let mut rec = recording::Reader::open(&args.file)?;
    let n = match out.take() {
        Some(mut out) => {
            let name = out.display();
            let n = export_stream(&mut rec, &filter, args, out.writer())?;
            out.commit()?;
            eprintln!("refwatch: {n} events written to {name}");
            n
        }
        None => {
            // Standard output flushes every line by itself: buffer it.
            let mut lock = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let written = export_stream(&mut rec, &filter, args, &mut lock).and_then(|n| {
                lock.flush()
                    .context("flush")
                    .context("write standard output")?;
                Ok(n)
            });
            match written {
                Ok(n) => n,
                // The reader went away (`| head`): done, quietly.
                Err(e) if broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(e),
            }
        }
    };
    if n == 0 {
        eprintln!("refwatch: no event matched");
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams the events of `rec` that `filter` keeps to `out`, one at a time.
/// A write error is marked as such (context "write output").
fn export_stream<R: std::io::BufRead>(
    rec: &mut recording::Reader<R>,
    filter: &export::Filter,
    args: &ExportArgs,
    out: &mut dyn std::io::Write,
) -> Result<usize> {
    let mut x = export::Exporter::new(args.format, args.raw_pointers);
    x.begin(out).context("write output")?;
    while let Some((_, line)) = rec.next_line()? {
        if let recording::Line::Event(e) = line
            && filter.keeps(&e)
        {
            x.event(e, out).context("write output")?;
        }
    }
    x.end(out).context("write output")
}

/// `refwatch completions SHELL`: the script on standard output.
pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    crate::conventions::write_completions(args.shell, &mut script);
    stdout_with(|w| w.write_all(&script))?;
    Ok(ExitCode::SUCCESS)
}

/// `refwatch man`: refwatch.1 on standard output, or every page into `--dir`.
pub fn man(args: &ManArgs) -> Result<ExitCode> {
    match &args.dir {
        Some(dir) => crate::conventions::write_man_pages(dir)?,
        None => {
            let mut page = Vec::new();
            crate::conventions::write_man(&mut page)?;
            stdout_with(|w| w.write_all(&page))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `refwatch replay`: the TUI on a recording.
pub fn replay(args: &ReplayArgs) -> Result<ExitCode> {
    crate::tty::require_terminal("replay")?;
    crate::tui::run_replay(args)
}
