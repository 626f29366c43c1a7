//! Reads a recording with refwatch's own reader — every line parsed and
//! checked as `report`, `export` and `replay` do — and discards each line:
//! the baseline `cargo xtask bench offline` measures those commands against.
//! Prints the number of events.

use std::{path::PathBuf, process::ExitCode};

use refwatch::format::recording::{Line, Reader};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: decode_only RECORDING");
        return ExitCode::from(2);
    };
    let run = || -> anyhow::Result<u64> {
        let mut r = Reader::open(&path)?;
        let mut events = 0u64;
        while let Some((_, line)) = r.next_line()? {
            if matches!(line, Line::Event(_)) {
                events += 1;
            }
            std::hint::black_box(line);
        }
        Ok(events)
    };
    match run() {
        Ok(n) => {
            println!("{n} events");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("decode_only: {e:#}");
            ExitCode::FAILURE
        }
    }
}
