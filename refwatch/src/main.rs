use std::process::ExitCode;

use clap::Parser as _;
use refwatch::{
    app,
    cli::{Cli, Command},
    logging, tui,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The TUI owns the terminal: its log goes to a file.
    let tui_log = tui::default_log_file(&cli.command);
    let log_setup = match &cli.command {
        Command::Attach(a) => {
            logging::init(a.log_file.as_deref().or(tui_log.as_deref()), a.verbose)
        }
        Command::Replay(r) => logging::init(r.log_file.as_deref().or(tui_log.as_deref()), false),
        Command::Record(r) => logging::init(r.attach.log_file.as_deref(), r.attach.verbose),
        _ => logging::init(None, false),
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
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("refwatch: {e:#}");
            ExitCode::from(1)
        }
    };
    if let Some(p) = &tui_log {
        eprintln!("refwatch: log written to {}", p.display());
    }
    code
}
