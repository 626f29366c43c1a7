use std::process::ExitCode;

use clap::Parser as _;
use refwatch::{
    app,
    cli::{Cli, Command},
    logging, tui,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The TUI owns the terminal: its warnings wait until it is restored.
    let hold = tui::holds_log(&cli.command);
    let log_setup = match &cli.command {
        Command::Attach(a) => logging::init(a.log_file.as_deref(), a.verbose, hold),
        Command::Replay(r) => logging::init(r.log_file.as_deref(), false, hold),
        Command::Record(r) => logging::init(r.attach.log_file.as_deref(), r.attach.verbose, false),
        Command::Watch(w) => logging::init(w.attach.log_file.as_deref(), w.attach.verbose, false),
        _ => logging::init(None, false, false),
    };
    if let Err(e) = log_setup {
        eprintln!("refwatch: {e:#}");
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        Command::Attach(a) => app::attach(a),
        Command::Record(r) => app::record(r),
        Command::Probes(p) => app::probes(p),
        Command::Report(r) => app::report(r),
        Command::Export(e) => app::export(e),
        Command::Replay(r) => app::replay(r),
        Command::Completions(c) => app::completions(c),
        Command::Man(m) => app::man(m),
        Command::Watch(w) => app::watch(w),
    };
    let message = result
        .as_ref()
        .err()
        .map(refwatch::diagnose::message)
        .unwrap_or_default();
    logging::print_held_except(&message);
    match result {
        Ok(code) => code,
        Err(_) => {
            eprintln!("refwatch: {message}");
            ExitCode::from(1)
        }
    }
}
