//! refwatch's task runner: machine setup, Debian kernels, and the lab VM.
//!
//! Run it as `cargo xtask <command>`; `cargo xtask --help` lists the commands.

mod apt_plan;
mod bench;
mod bpftool;
mod checks;
mod cmd;
mod cpio;
mod demo;
mod dist;
mod fuzz;
mod groundtruth;
mod initramfs;
mod kbuild;
mod kernels;
mod lab;
mod pointer_scan;
#[allow(
    dead_code,
    reason = "the capture format, shared with the workload: its writer is the workload's"
)]
mod ptycap;
mod selftests;
mod setup;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::kernels::KernelId;
use crate::lab::{Accel, LabRun};

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "refwatch's setup, lab VM, tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks: Debian packages, rust-src, bpf-linker.
    Setup,
    /// Fetch the Debian kernels into the cache (once) and list them.
    Kernels(KernelsArgs),
    /// Build a lab kernel from Debian's kernel source (hmm-7.2: TEST_HMM,
    /// device-private memory); a cached build takes seconds.
    Kernel(KernelArgs),
    /// Boot a kernel in qemu and run workload scenarios under refwatch.
    Lab(LabArgs),
    /// Run every test: fmt, clippy, unit tests and the lab matrix.
    Test(TestArgs),
    /// refwatch's main job in the lab VM: stuck fs-dax pages, their holder, the TUI.
    Demo(DemoArgs),
    /// Benchmarks: criterion benches of the refwatch crate (pipeline, render)
    /// and refwatch's overhead on a real kernel in the lab VM (overhead).
    Bench(BenchArgs),
    /// Fuzz the recording reader and the ring-record decoder, each through
    /// the tracker (cargo-fuzz on nightly); non-zero exit on any crash.
    Fuzz(FuzzArgs),
    /// A static x86-64 refwatch (musl) and a Debian package with its man
    /// pages and shell completions, in target/dist/; with --check, lintian
    /// and the extracted package's checks too.
    Dist(DistArgs),
    /// Compare scenario folders of a lab run with their page_ref ground truth
    /// again (the lab does this itself; writes DIR/groundtruth.json).
    Groundtruth(GroundtruthArgs),
}

#[derive(Args)]
struct DistArgs {
    /// Then check the package as `cargo xtask test` does (lintian, the
    /// extracted binary, man pages, completions).
    #[arg(long)]
    check: bool,
}

#[derive(Args)]
struct GroundtruthArgs {
    /// Scenario folders holding page_ref.trace, recording and workload.json.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

#[derive(Args)]
struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = fuzz::DEFAULT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    secs: u64,
    /// Only these targets (recording, ring; comma-separated; default: all).
    #[arg(long = "target", value_delimiter = ',')]
    targets: Vec<String>,
    /// Run the target on this one input (a crash artifact) instead, and
    /// show what it does.
    #[arg(long, requires = "targets")]
    input: Option<PathBuf>,
}

#[derive(Args)]
struct KernelsArgs {
    /// Ask the archive for the newest upload and replace the cached kernel when it moved.
    #[arg(long)]
    refresh: bool,
    /// Only this kernel (default: all).
    #[arg(long, value_enum)]
    kernel: Option<KernelId>,
}

#[derive(Args)]
struct KernelArgs {
    /// The kernel to build.
    #[arg(long, value_enum, default_value_t = KernelId::Hmm7_2)]
    kernel: KernelId,
    /// Ask the archive for the newest source upload and rebuild when it moved.
    #[arg(long)]
    refresh: bool,
}

#[derive(Args)]
struct LabArgs {
    /// Kernel to boot.
    #[arg(long, value_enum)]
    kernel: KernelId,
    /// Scenarios to run, comma separated, in order.
    #[arg(long, value_delimiter = ',', required = true, value_parser = lab::parse_scenario)]
    scenario: Vec<String>,
    /// Pages the workload maps per scenario.
    #[arg(long, default_value_t = lab::DEFAULT_PAGES)]
    pages: u32,
    /// Seconds the workload holds its references.
    #[arg(long, default_value_t = lab::DEFAULT_HOLD_SECS)]
    hold_secs: u32,
    /// qemu accelerator (KVM hangs on some hosts).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Kill the guest after this many seconds.
    #[arg(long, default_value_t = lab::DEFAULT_TIMEOUT_SECS)]
    timeout_secs: u64,
    /// Seconds the guest waits for refwatch's ready file.
    #[arg(long, default_value_t = lab::DEFAULT_READY_SECS)]
    ready_secs: u32,
    /// Use this static refwatch binary instead of building it.
    #[arg(long)]
    refwatch_bin: Option<PathBuf>,
    /// Use this static workload binary instead of building it.
    #[arg(long)]
    workload_bin: Option<PathBuf>,
    /// Also stream the guest console to the terminal.
    #[arg(long)]
    verbose: bool,
    /// An extra argument for refwatch in every scenario, e.g.
    /// `--refwatch-arg=--ring-size=65536` (repeatable).
    #[arg(long = "refwatch-arg", allow_hyphen_values = true)]
    refwatch_args: Vec<String>,
    /// Results folder (replaced if it holds an earlier lab run).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct TestArgs {
    /// Skip fmt and clippy.
    #[arg(long)]
    no_static: bool,
    /// Skip the unit tests.
    #[arg(long)]
    no_unit: bool,
    /// Skip the lab matrix.
    #[arg(long)]
    no_lab: bool,
    /// Skip building and checking the static binary and the Debian package.
    #[arg(long)]
    no_dist: bool,
    /// Only the lab matrix.
    #[arg(long, conflicts_with_all = ["no_lab"])]
    lab_only: bool,
    /// Lab kernels (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    kernel: Vec<KernelId>,
    /// Only these lab scenarios, comma separated (default: all of each
    /// kernel's); a kernel skips those it does not run.
    #[arg(long, value_delimiter = ',', value_parser = lab::parse_scenario)]
    scenario: Vec<String>,
    /// Where lab results go.
    #[arg(long, default_value = "target/lab")]
    out: PathBuf,
}

#[derive(Args)]
struct DemoArgs {
    /// Kernel to boot.
    #[arg(long, value_enum, default_value = "debian-6.12")]
    kernel: KernelId,
    /// Print only; do not open the TUI.
    #[arg(long)]
    no_tui: bool,
    /// Where results go.
    #[arg(long, default_value = "target/demo")]
    out: PathBuf,
}

#[derive(Args)]
struct BenchArgs {
    #[command(subcommand)]
    which: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// criterion: decode + per-PFN update, synthetic events.
    Pipeline,
    /// criterion: a TUI frame with 1 M tracked PFNs, synthetic state.
    Render,
    /// A put-heavy workload on anonymous and fs-dax pages with and without
    /// refwatch attached, in one lab boot; median slowdown per target.
    Overhead(OverheadArgs),
    /// `report` and `export` on a large synthetic recording against a
    /// decode-only reader: wall time and peak RSS; asserts ≤ 2× the
    /// reader's time and ≤ 1 GiB each.
    Offline(OfflineArgs),
    /// refwatch record while a workload loops for minutes in one lab boot;
    /// asserts that refwatch's resident set stays flat. Not part of CI.
    Soak(SoakArgs),
}

#[derive(Args)]
struct OfflineArgs {
    /// Events in the synthetic recording.
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// PFNs the events are spread over.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pfns: u64,
    /// Runs of every command (interleaved); the fastest of each is compared.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Where the recording (kept for later runs) and offline.txt go.
    #[arg(long, default_value = "target/bench/offline")]
    out: PathBuf,
}

#[derive(Args)]
struct SoakArgs {
    /// Kernel to boot.
    #[arg(long, value_enum, default_value = "debian-6.12")]
    kernel: KernelId,
    /// Minutes of guest time the workload loops.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    minutes: u32,
    /// qemu accelerator.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Results folder (replaced if it holds an earlier lab run); the
    /// summary goes to DIR/soak.json.
    #[arg(long, default_value = "target/bench/soak")]
    out: PathBuf,
    /// Use this static refwatch binary instead of building it.
    #[arg(long)]
    refwatch_bin: Option<PathBuf>,
}

#[derive(Args)]
struct OverheadArgs {
    /// Kernel to boot.
    #[arg(long, value_enum, default_value = "debian-6.12")]
    kernel: KernelId,
    /// Rounds (each: one run without and one with refwatch, per target).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Seconds per run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
    secs: u64,
    /// qemu accelerator. The default counts guest time in instructions, so
    /// the host's load does not move the ratios (KVM hangs on some hosts).
    #[arg(long, value_enum, default_value_t = Accel::TcgIcount)]
    accel: Accel,
    /// Results folder (replaced if it holds an earlier lab run); the
    /// summary goes to DIR/overhead.json.
    #[arg(long, default_value = "target/bench/overhead")]
    out: PathBuf,
    /// Use this static refwatch binary instead of building it.
    #[arg(long)]
    refwatch_bin: Option<PathBuf>,
    /// Run only these targets (free, unmap, anon, dax, dax-unmap; comma-separated).
    #[arg(long = "target", value_delimiter = ',')]
    targets: Vec<String>,
    /// An extra argument for `refwatch record`, e.g. `--refwatch-arg=--no-stacks`
    /// (repeatable; for ablations).
    #[arg(long = "refwatch-arg", allow_hyphen_values = true)]
    refwatch_args: Vec<String>,
    /// Guest CPUs. With 1, refwatch's CPU time is its own instructions
    /// (with 2 on the instruction clock, a sample taken while it runs also
    /// counts what the other vCPU ran in its turns).
    #[arg(long, default_value_t = lab::DEFAULT_CPUS, value_parser = clap::value_parser!(u32).range(1..=8))]
    cpus: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    if !matches!(command, Command::Setup) {
        setup::ensure(false)?;
    }
    let setup_secs = started.elapsed().as_secs_f64();
    match command {
        Command::Setup => setup::ensure(true)?,
        Command::Kernels(args) => kernels_command(&args)?,
        Command::Kernel(args) => kernel_command(&args)?,
        Command::Lab(args) => lab_command(args)?,
        Command::Test(args) => {
            let opts = test::TestOptions {
                static_checks: !args.no_static && !args.lab_only,
                unit: !args.no_unit && !args.lab_only,
                dist: !args.no_dist && !args.lab_only,
                lab: !args.no_lab,
                kernels: if args.kernel.is_empty() {
                    KernelId::LAB.to_vec()
                } else {
                    args.kernel
                },
                scenarios: args.scenario,
                out: test::workspace_root().join(&args.out),
                setup_secs,
            };
            return test::run(&opts);
        }
        Command::Fuzz(args) => return fuzz_command(&args),
        Command::Dist(args) => {
            if !args.check {
                dist::build()?;
                return Ok(ExitCode::SUCCESS);
            }
            let problems = dist::check()?;
            for p in &problems {
                println!("{p}");
            }
            return Ok(if problems.is_empty() {
                println!("dist: package checked, no problem");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Groundtruth(args) => {
            for dir in &args.dirs {
                let mode = lab::recorded_mode(dir);
                let g = groundtruth::write_for_dir(dir, mode)?;
                println!(
                    "{}: {mode}: {} observations, {} matched, {} mismatched, {} before the truth; gets {}/{}, puts {}/{} seen",
                    dir.display(),
                    g.observations,
                    g.matched,
                    g.mismatched,
                    g.before_truth,
                    g.seen_gets,
                    g.truth_gets,
                    g.seen_puts,
                    g.truth_puts
                );
            }
        }
        Command::Demo(args) => {
            let out = test::workspace_root().join(&args.out);
            return demo::run(args.kernel, &out, !args.no_tui);
        }
        Command::Bench(BenchArgs {
            which: BenchCommand::Overhead(args),
        }) => {
            let targets = bench::select_targets(&args.targets)?;
            return bench::overhead(&bench::OverheadOptions {
                targets,
                refwatch_args: args.refwatch_args,
                cpus: args.cpus,
                kernel: args.kernel,
                rounds: args.rounds,
                secs: args.secs,
                accel: args.accel,
                out: test::workspace_root().join(&args.out),
                refwatch_bin: args.refwatch_bin,
            });
        }
        Command::Bench(BenchArgs {
            which: BenchCommand::Offline(args),
        }) => {
            return bench::offline::run(&bench::offline::OfflineOptions {
                events: args.events,
                pfns: args.pfns,
                rounds: args.rounds,
                out: test::workspace_root().join(&args.out),
            });
        }
        Command::Bench(BenchArgs {
            which: BenchCommand::Soak(args),
        }) => {
            return bench::soak::soak(&bench::soak::SoakOptions {
                kernel: args.kernel,
                minutes: args.minutes,
                accel: args.accel,
                out: test::workspace_root().join(&args.out),
                refwatch_bin: args.refwatch_bin,
            });
        }
        Command::Bench(args) => {
            let name = match args.which {
                BenchCommand::Pipeline => "pipeline",
                BenchCommand::Render => "render",
                BenchCommand::Overhead(_) | BenchCommand::Offline(_) | BenchCommand::Soak(_) => {
                    unreachable!("handled above")
                }
            };
            let status = std::process::Command::new("cargo")
                .args(["bench", "-p", "refwatch", "--bench", name])
                .current_dir(test::workspace_root())
                .env("PATH", setup::env_path())
                .status()?;
            if !status.success() {
                return Ok(ExitCode::FAILURE);
            }
            if name == "pipeline" {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map_or_else(|| test::workspace_root().join("target"), Into::into);
                let rate = bench::pipeline::record_rate(&target.join("criterion"))?;
                println!("{}", bench::pipeline::verdict(rate));
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fuzz_command(args: &FuzzArgs) -> anyhow::Result<ExitCode> {
    let targets = fuzz::targets(&args.targets)?;
    let ok = match (&args.input, targets.as_slice()) {
        (Some(input), [target]) => fuzz::run_input(target, input)?,
        (Some(_), _) => anyhow::bail!("--input runs one target: name it with --target"),
        (None, _) => {
            let problems = fuzz::run(&targets, args.secs)?;
            for p in &problems {
                println!("{p}");
            }
            problems.is_empty()
        }
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn kernels_command(args: &KernelsArgs) -> anyhow::Result<()> {
    let ids: Vec<KernelId> = match args.kernel {
        Some(id) => vec![id],
        None => KernelId::ALL.to_vec(),
    };
    let mut infos = Vec::new();
    for id in ids {
        let info = if args.refresh {
            kernels::refresh(id)?
        } else {
            kernels::ensure(id)?
        };
        infos.push(info);
    }
    println!();
    println!(
        "{:<14} {:<10} {:<24} package version",
        "kernel", "suite", "release"
    );
    for info in &infos {
        println!(
            "{:<14} {:<10} {:<24} {}",
            info.id, info.suite, info.release, info.version
        );
    }
    Ok(())
}

fn kernel_command(args: &KernelArgs) -> anyhow::Result<()> {
    let kernels::KernelSource::Built { .. } = args.kernel.source() else {
        anyhow::bail!(
            "kernel {} is a Debian package, not built here (`cargo xtask kernels` fetches it)",
            args.kernel
        );
    };
    let started = std::time::Instant::now();
    let info = if args.refresh {
        kernels::refresh(args.kernel)?
    } else {
        kernels::ensure(args.kernel)?
    };
    println!("{}", kbuild::build_summary(&info));
    println!(
        "kernel {}: ready in {:.1} s",
        args.kernel,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn lab_command(args: LabArgs) -> anyhow::Result<()> {
    let run = LabRun {
        kernel: args.kernel,
        scenarios: args.scenario,
        pages: args.pages,
        hold_secs: args.hold_secs,
        accel: args.accel,
        timeout_secs: args.timeout_secs,
        ready_secs: args.ready_secs,
        refwatch_bin: args.refwatch_bin,
        workload_bin: args.workload_bin,
        verbose: args.verbose,
        refwatch_args: args.refwatch_args,
        script: None,
        tui: lab::TuiConsole::default(),
        cpus: lab::DEFAULT_CPUS,
    };
    let result = lab::run(&run, &args.out)?;
    println!("{}", result.summary());
    Ok(())
}
