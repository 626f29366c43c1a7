//! Loading the kernel programs with the layout, and attaching them per plan.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::Array,
    programs::{BtfTracePoint, FEntry, FExit, KProbe, Program},
};

use crate::{
    diagnose::{self, Facts, Refusal},
    layout::Layout,
    plan::{Candidate, Class, Mode, Resolved},
};

/// The kernel object built by `build.rs` (empty with `AYA_BUILD_SKIP=1`).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/refwatch"));

/// Outcome of one logical hook.
#[derive(Debug, Clone)]
pub struct PlanRow {
    pub logical: &'static str,
    pub events: &'static str,
    pub symbol: Option<&'static str>,
    pub hook: Option<u32>,
    pub mode: Option<Mode>,
    /// `attached`, or why not (one line).
    pub status: String,
    pub notes: Vec<String>,
    /// What the kernel said to each mode it refused.
    pub refusals: Vec<Refusal>,
    /// The modes it refused, in the order tried.
    pub refused: Vec<Mode>,
}

impl PlanRow {
    pub fn attached(&self) -> bool {
        self.mode.is_some()
    }
}

/// Loaded programs; dropping it detaches everything.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub rows: Vec<PlanRow>,
    /// Every page_ref tracepoint is attached: gets and puts come from them.
    pub precise: bool,
    /// How long each step took, in order (refwatch's log says them).
    pub steps: Vec<(&'static str, Duration)>,
}

impl Loaded {
    /// How references are observed, for humans.
    pub fn mode_words(&self) -> &'static str {
        if self.precise {
            "precise (page_ref tracepoints: every get and put)"
        } else {
            "functions (get/put where a kernel function is on the path)"
        }
    }
}

/// Loads the object with `layout` and attaches every resolved hook. The
/// page_ref tracepoints go first: when all of them attach (precise mode),
/// the hooks they cover are left out, except the GUP grabs when
/// `layout.raw.ram_holders` asks for system-page holders.
/// A failure to load the object is classified with `facts` ([`diagnose`]).
pub fn load(layout: &Layout, plan: &[Resolved], ring_bytes: u32, facts: &Facts) -> Result<Loaded> {
    if OBJECT.is_empty() {
        return Err(anyhow!(
            "this refwatch was built with AYA_BUILD_SKIP=1 and carries no kernel programs; rebuild without it"
        ));
    }
    let mut steps = crate::steps::Steps::start();
    let mut loader = EbpfLoader::new();
    steps.done("kernel BTF read by the loader");
    let mut ebpf = loader
        .override_global("LAYOUT", &layout.raw, true)
        .map_max_entries("EVENTS", ring_bytes)
        .load(OBJECT)
        .map_err(|e| {
            let e = anyhow::Error::new(e);
            let no_networking = !Path::new("/proc/net").exists();
            anyhow::Error::new(diagnose::load_failed(
                facts,
                &Refusal::of(&e),
                no_networking,
            ))
        })?;
    steps.done("programs loaded (relocated and verified)");
    let btf = Btf::from_sys_fs().ok();
    steps.done("kernel BTF read for attaching");
    let mut rows: Vec<Option<PlanRow>> = vec![None; plan.len()];
    let is_tp = |r: &Resolved| r.logical.class == Class::PageRef;
    let mut tp_rows = 0;
    let mut tp_attached = 0;
    for (i, r) in plan.iter().enumerate().filter(|(_, r)| is_tp(r)) {
        let row = attach_row(&mut ebpf, btf.as_ref(), r);
        tp_rows += 1;
        tp_attached += usize::from(row.attached());
        rows[i] = Some(row);
    }
    let precise = tp_rows > 0 && tp_attached == tp_rows;
    if tp_attached > 0 && !precise {
        // Half a precise mode would count some references twice.
        for (i, r) in plan.iter().enumerate().filter(|(_, r)| is_tp(r)) {
            for name in [r.choice.as_ref().and_then(|c| c.0.progs.tp_btf)]
                .into_iter()
                .flatten()
            {
                if let Some(p) = ebpf.program_mut(name) {
                    let _ = unload(p);
                }
            }
            if let Some(row) = rows[i].as_mut()
                && row.mode.take().is_some()
            {
                row.status = "detached: not every page_ref tracepoint attached".into();
            }
        }
    }
    if precise {
        let mut settings: Array<_, u32> = Array::try_from(
            ebpf.map_mut("SETTINGS")
                .ok_or_else(|| anyhow!("map SETTINGS missing from the kernel object"))?,
        )?;
        settings
            .set(refwatch_common::setting::PRECISE, 1, 0)
            .context("switch the kernel programs to precise mode")?;
    }
    let ram_holders = layout.raw.ram_holders != 0;
    for (i, r) in plan.iter().enumerate().filter(|(_, r)| !is_tp(r)) {
        if precise && r.logical.class.covered_by_precise(ram_holders) {
            rows[i] = Some(PlanRow {
                logical: r.logical.name,
                events: r.logical.events,
                symbol: r.choice.as_ref().map(|c| c.0.symbol),
                hook: None,
                mode: None,
                status: "covered by precise mode (page_ref tracepoints)".into(),
                notes: Vec::new(),
                refusals: Vec::new(),
                refused: Vec::new(),
            });
            continue;
        }
        let mut row = attach_row(&mut ebpf, btf.as_ref(), r);
        if precise && r.logical.class == Class::Grab && row.attached() {
            row.status = "attached (precise mode: remembers system-page references only)".into();
        }
        rows[i] = Some(row);
    }
    steps.done("hooks attached");
    explain_fentry_refusals(plan, &mut rows, crate::plan::resolve::traceable_functions);
    Ok(Loaded {
        ebpf,
        rows: rows.into_iter().flatten().collect(),
        precise,
        steps: steps.done,
    })
}

/// Names a refused fentry whose function ftrace cannot trace (`notrace`:
/// not in `available_filter_functions`). The list is read only here, when
/// a fentry was refused: reading it costs the kernel a lookup of every
/// traceable function. `read_list` reads it (at most once).
fn explain_fentry_refusals(
    plan: &[Resolved],
    rows: &mut [Option<PlanRow>],
    read_list: impl FnOnce() -> Option<std::collections::HashSet<String>>,
) {
    let mut read_list = Some(read_list);
    let mut traceable = None;
    for (r, row) in plan.iter().zip(rows.iter_mut()) {
        let (Some(row), Some((cand, _))) = (row.as_mut(), r.choice.as_ref()) else {
            continue;
        };
        if !row.refused.contains(&Mode::Fentry) {
            continue;
        }
        let t = traceable.get_or_insert_with(|| read_list.take().and_then(|read| read()));
        if t.as_ref().is_some_and(|t| !t.contains(cand.symbol)) {
            row.notes.push(format!(
                "{}: not in available_filter_functions (notrace), no fentry",
                cand.symbol
            ));
        }
    }
}

/// Attaches one resolved hook in the first mode that works.
fn attach_row(ebpf: &mut Ebpf, btf: Option<&Btf>, r: &Resolved) -> PlanRow {
    let mut row = PlanRow {
        logical: r.logical.name,
        events: r.logical.events,
        symbol: None,
        hook: None,
        mode: None,
        status: String::new(),
        notes: r.notes.clone(),
        refusals: Vec::new(),
        refused: Vec::new(),
    };
    let Some((cand, modes)) = &r.choice else {
        row.status = match &r.skipped {
            Some(why) => why.clone(),
            None => "not attached: no usable symbol on this kernel".into(),
        };
        return row;
    };
    row.symbol = Some(cand.symbol);
    row.hook = Some(cand.hook);
    let mut errors = Vec::new();
    for mode in modes {
        match attach(ebpf, btf, cand, *mode) {
            Ok(()) => {
                row.mode = Some(*mode);
                break;
            }
            Err(e) => {
                let r = Refusal::of(&e);
                let log = if r.verifier_log.is_some() {
                    " (`refwatch probes --verifier-log` prints its log)"
                } else {
                    ""
                };
                errors.push(format!("{} refused: {}{log}", mode.name(), r.text));
                row.refusals.push(r);
                row.refused.push(*mode);
            }
        }
    }
    row.status = if row.mode.is_some() {
        "attached".into()
    } else {
        format!("not attached: {}", errors.join("; "))
    };
    row.notes
        .extend(errors.into_iter().filter(|_| row.mode.is_some()));
    row
}

fn attach(ebpf: &mut Ebpf, btf: Option<&Btf>, cand: &Candidate, mode: Mode) -> Result<()> {
    let (entry, exit) = cand.progs.for_mode(mode);
    if entry.is_none() && exit.is_none() {
        return Err(anyhow!("no {} program for {}", mode.name(), cand.symbol));
    }
    // Exit first: an entry without its exit would leave records behind.
    let mut done: Vec<&'static str> = Vec::new();
    let result = (|| -> Result<()> {
        for name in [exit, entry].into_iter().flatten() {
            let prog = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the kernel object"))?;
            attach_one(prog, btf, cand.symbol, mode)
                .with_context(|| format!("{name} on {}", cand.symbol))?;
            done.push(name);
        }
        Ok(())
    })();
    if result.is_err() {
        for name in done {
            if let Some(p) = ebpf.program_mut(name) {
                let _ = unload(p);
            }
        }
    }
    result
}

fn attach_one(prog: &mut Program, btf: Option<&Btf>, symbol: &str, mode: Mode) -> Result<()> {
    match (mode, prog) {
        (Mode::Fentry, Program::FEntry(p)) => {
            let btf = btf.ok_or_else(|| anyhow!("no kernel BTF for fentry"))?;
            load_fentry(p, symbol, btf)?;
            p.attach()?;
        }
        (Mode::Fentry, Program::FExit(p)) => {
            let btf = btf.ok_or_else(|| anyhow!("no kernel BTF for fexit"))?;
            load_fexit(p, symbol, btf)?;
            p.attach()?;
        }
        (Mode::Kprobe, Program::KProbe(p)) => {
            p.load()?;
            p.attach(symbol, 0)?;
        }
        (Mode::TpBtf, Program::BtfTracePoint(p)) => {
            let btf = btf.ok_or_else(|| anyhow!("no kernel BTF for tp_btf"))?;
            load_tp(p, symbol, btf)?;
            p.attach()?;
        }
        (_, _) => {
            return Err(anyhow!(
                "the kernel object has no {} program for {symbol}",
                mode.name()
            ));
        }
    }
    Ok(())
}

fn load_fentry(p: &mut FEntry, symbol: &str, btf: &Btf) -> Result<()> {
    p.load(symbol, btf).map_err(Into::into)
}

fn load_fexit(p: &mut FExit, symbol: &str, btf: &Btf) -> Result<()> {
    p.load(symbol, btf).map_err(Into::into)
}

fn load_tp(p: &mut BtfTracePoint, tracepoint: &str, btf: &Btf) -> Result<()> {
    p.load(tracepoint, btf).map_err(Into::into)
}

fn unload(p: &mut Program) -> Result<()> {
    match p {
        Program::BtfTracePoint(p) => p.unload()?,
        Program::FEntry(p) => p.unload()?,
        Program::FExit(p) => p.unload()?,
        Program::KProbe(p) => KProbe::unload(p)?,
        _ => {}
    }
    Ok(())
}

/// How often one of refwatch's kernel programs ran and for how long, as the
/// kernel counts it while BPF run-time statistics are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgStat {
    pub program: String,
    pub runs: u64,
    pub run_ns: u64,
}

impl ProgStat {
    /// Mean nanoseconds per run (0 when it never ran).
    pub fn ns_per_run(&self) -> u64 {
        self.run_ns.checked_div(self.runs).unwrap_or(0)
    }
}

/// The statistics of every loaded program that ran, busiest first.
pub fn prog_stats(ebpf: &Ebpf) -> Vec<ProgStat> {
    let mut stats: Vec<ProgStat> = ebpf
        .programs()
        .filter_map(|(name, prog)| {
            let info = prog.info().ok()?;
            (info.run_count() > 0).then(|| ProgStat {
                program: name.to_owned(),
                runs: info.run_count(),
                run_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    stats.sort_by(|a, b| b.run_ns.cmp(&a.run_ns).then(a.program.cmp(&b.program)));
    stats
}

/// The lines `refwatch attach/record --prog-stats` prints at the end.
pub fn prog_stats_text(stats: &[ProgStat]) -> String {
    let mut t = String::new();
    for s in stats {
        t.push_str(&format!(
            "refwatch: program {}: {} runs, {} ns, {} ns/run\n",
            s.program,
            s.runs,
            s.run_ns,
            s.ns_per_run()
        ));
    }
    if stats.is_empty() {
        t.push_str("refwatch: program statistics: no program ran\n");
    }
    t
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, collections::HashSet};

    use super::*;
    use crate::plan::LOGICAL;

    /// The first catalog hook with a fentry candidate, resolved to it, and
    /// its row after an attach that refused `refused`.
    fn fentry_row(refused: &[Mode]) -> (Resolved, Option<PlanRow>) {
        let (logical, cand) = LOGICAL
            .iter()
            .find_map(|l| {
                l.candidates
                    .iter()
                    .find(|c| c.progs.has(Mode::Fentry))
                    .map(|c| (l, *c))
            })
            .expect("a fentry candidate in the catalog");
        let r = Resolved {
            logical,
            choice: Some((cand, vec![Mode::Fentry, Mode::Kprobe])),
            notes: Vec::new(),
            skipped: None,
        };
        let row = PlanRow {
            logical: logical.name,
            events: logical.events,
            symbol: Some(cand.symbol),
            hook: Some(cand.hook),
            mode: if refused.contains(&Mode::Kprobe) {
                None
            } else {
                Some(Mode::Kprobe)
            },
            status: String::new(),
            notes: Vec::new(),
            refusals: Vec::new(),
            refused: refused.to_vec(),
        };
        (r, Some(row))
    }

    #[test]
    fn a_refused_fentry_is_explained_by_the_list_read_once() {
        let (r, row) = fentry_row(&[Mode::Fentry]);
        let symbol = r.choice.as_ref().map(|(c, _)| c.symbol).unwrap_or_default();
        let plan = [r.clone(), r.clone()];
        let mut rows = [row.clone(), row.clone()];
        let reads = Cell::new(0);
        // The symbol is not in the list: notrace.
        explain_fentry_refusals(&plan, &mut rows, || {
            reads.set(reads.get() + 1);
            Some(HashSet::from(["other_function".to_owned()]))
        });
        assert_eq!(reads.get(), 1);
        for row in rows.iter().flatten() {
            assert_eq!(
                row.notes,
                [format!(
                    "{symbol}: not in available_filter_functions (notrace), no fentry"
                )]
            );
        }
        // In the list (refused for another reason), or the list unreadable:
        // no note.
        let mut rows = [row.clone()];
        explain_fentry_refusals(&plan[..1], &mut rows, || {
            Some(HashSet::from([symbol.to_owned()]))
        });
        assert!(rows[0].as_ref().is_some_and(|r| r.notes.is_empty()));
        let mut rows = [row];
        explain_fentry_refusals(&plan[..1], &mut rows, || None);
        assert!(rows[0].as_ref().is_some_and(|r| r.notes.is_empty()));
    }

    #[test]
    fn the_list_is_not_read_without_a_refused_fentry() {
        let (r, row) = fentry_row(&[]);
        let (r2, row2) = fentry_row(&[Mode::Kprobe]);
        let mut rows = [row, row2, None];
        explain_fentry_refusals(&[r.clone(), r2, r], &mut rows, || {
            panic!("the list was read with no fentry refused")
        });
        assert!(rows.iter().flatten().all(|r| r.notes.is_empty()));
    }

    #[test]
    fn program_statistics_lines() {
        let stats = [
            ProgStat {
                program: "fexit_grab_fast".into(),
                runs: 4,
                run_ns: 10_002,
            },
            ProgStat {
                program: "fentry_free".into(),
                runs: 0,
                run_ns: 0,
            },
        ];
        assert_eq!(stats[0].ns_per_run(), 2500);
        assert_eq!(stats[1].ns_per_run(), 0);
        assert_eq!(
            prog_stats_text(&stats[..1]),
            "refwatch: program fexit_grab_fast: 4 runs, 10002 ns, 2500 ns/run\n"
        );
        assert_eq!(
            prog_stats_text(&[]),
            "refwatch: program statistics: no program ran\n"
        );
    }
}
