//! The commands, wired from the stages: probe plan → load/attach → collect.

use std::{fs, path::Path, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{
    cli::{AttachArgs, ProbeArgs},
    collector,
    jsonl::Format,
    kallsyms::Kallsyms,
    layout::{self, KernelBtf, Layout},
    loader::{self, Loaded, PlanRow},
    plan::{self, KernelCaps},
};

const KALLSYMS: &str = "/proc/kallsyms";
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "refwatch needs root to load kernel programs (CAP_BPF, CAP_PERFMON) and read kernel addresses: run it with sudo"
        );
    }
    Ok(())
}

/// Everything learned about the running kernel before loading.
pub struct Prepared {
    pub kallsyms: Kallsyms,
    pub layout: Layout,
    pub plan: Vec<plan::Resolved>,
    pub release: String,
}

fn prepare(args: &ProbeArgs, stacks: bool) -> Result<Prepared> {
    require_root()?;
    let kallsyms = Kallsyms::read(Path::new(KALLSYMS))?;
    let btf = KernelBtf::open(Path::new(VMLINUX_BTF))?;
    let layout =
        layout::resolve(&btf, &kallsyms, stacks).context("read the kernel layout from BTF")?;
    let caps = KernelCaps::probe();
    let plan = plan::resolve(&kallsyms, &btf, &caps, args.mode);
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Ok(Prepared {
        kallsyms,
        layout,
        plan,
        release,
    })
}

fn attach_all(p: &Prepared) -> Result<Loaded> {
    let loaded = loader::load(&p.layout, &p.plan)?;
    if !loaded.rows.iter().any(PlanRow::attached) {
        let mut msg = format!("nothing could be attached on kernel {}:\n", p.release);
        msg.push_str(&plan_table(&loaded.rows));
        msg.push_str("refwatch needs kprobes (CONFIG_KPROBES) or working fentry (BPF trampolines) on at least one reference path");
        bail!(msg);
    }
    Ok(loaded)
}

/// The plan as a table.
pub fn plan_table(rows: &[PlanRow]) -> String {
    let mut out = format!(
        "{:<14} {:<12} {:<34} {:<7} {}\n",
        "HOOK", "EVENTS", "SYMBOL", "MODE", "STATUS"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<14} {:<12} {:<34} {:<7} {}\n",
            r.logical,
            r.events,
            r.symbol.unwrap_or("-"),
            r.mode.map_or("-", |m| m.name()),
            r.status
        ));
        for n in &r.notes {
            out.push_str(&format!("{:<14}   note: {n}\n", ""));
        }
    }
    out
}

/// `refwatch probes`.
pub fn probes(args: &ProbeArgs) -> Result<ExitCode> {
    let p = prepare(args, false)?;
    println!("kernel {}", p.release);
    println!(
        "layout: struct page {} bytes, _refcount@{}, _mapcount@{}, pgmap via {}@{}, dev_pagemap.type@{}, zone bits >>{} &{:#x}, ZONE_DEVICE={}; vmemmap: {}",
        p.layout.raw.page_struct_size,
        p.layout.raw.off_refcount,
        p.layout.raw.off_mapcount,
        p.layout.pgmap_from,
        p.layout.raw.off_pgmap,
        p.layout.raw.off_pgmap_type,
        p.layout.raw.zones_shift,
        p.layout.raw.zones_mask,
        p.layout.raw.zone_device,
        p.layout.vmemmap_from
    );
    let loaded = attach_all(&p)?;
    print!("{}", plan_table(&loaded.rows));
    let n = loaded.rows.iter().filter(|r| r.attached()).count();
    println!("{n} of {} hooks attached", loaded.rows.len());
    Ok(ExitCode::SUCCESS)
}

/// `refwatch attach`.
pub fn attach(args: &AttachArgs) -> Result<ExitCode> {
    let p = prepare(&args.probe, !args.no_stacks)?;
    let mut loaded = attach_all(&p)?;
    log::info!(
        "kernel {}: attached\n{}",
        p.release,
        plan_table(&loaded.rows)
    );
    if !args.headless {
        log::info!("the TUI is not available in this build; running headless");
    }
    let n = loaded.rows.iter().filter(|r| r.attached()).count();
    println!(
        "refwatch: kernel {}, {n} of {} hooks attached; Ctrl-C to stop",
        p.release,
        loaded.rows.len()
    );
    if let Some(f) = &args.ready_file {
        fs::write(f, b"ready\n").with_context(|| format!("create ready file {}", f.display()))?;
    }
    let opts = collector::Options {
        jsonl: args.jsonl.clone(),
        format: Format {
            raw_pointers: args.raw_pointers,
        },
        history: args.history as usize,
        summary_every: Duration::from_secs(args.summary_secs),
        duration: args.duration.map(Duration::from_secs),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let (tracker, totals) = rt.block_on(collector::run(&mut loaded, &p.kallsyms, &opts))?;
    println!(
        "refwatch: {} events, {} pages, {} lost, {} undecodable",
        totals.events,
        tracker.len(),
        totals.dropped,
        totals.decode_errors
    );
    print!("{}", tracker.summary_table());
    if let Some(j) = &args.jsonl {
        println!("refwatch: events written to {}", j.display());
    }
    Ok(ExitCode::SUCCESS)
}
