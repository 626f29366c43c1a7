//! The capture of a program run on a pseudo-terminal (`workload pty` in the
//! lab guest writes it; the lab's TUI check reads it): what the program
//! wrote to its terminal, what was typed into it, and how it ended, each
//! stamped with CLOCK_MONOTONIC (the clock of the workload's marks).
//!
//! The file is a header line, then records, each a line of ASCII fields and,
//! for output and input, that many raw bytes and a newline:
//!
//! ```text
//! refwatch-ptycap 1 COLS ROWS
//! o NS LEN            LEN bytes the program wrote, then "\n"
//! i NS LEN            LEN bytes typed into the terminal, then "\n"
//! x NS CODE           the program ended: its exit code (128 + N: signal N)
//! ```
//!
//! Shared by the `workload` binary (which writes) and xtask (which reads).

use std::io::{self, Write};

use anyhow::{Context, Result, bail};

/// The header's first word.
pub const MAGIC: &str = "refwatch-ptycap";
/// The format's version.
pub const VERSION: u32 = 1;

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Bytes the program wrote to the terminal.
    Output(Vec<u8>),
    /// Bytes typed into the terminal.
    Input(Vec<u8>),
    /// The program's exit code (128 + N when signal N ended it).
    Exit(i32),
}

/// One record: when (CLOCK_MONOTONIC, ns) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ns: u64,
    pub kind: Kind,
}

/// A whole capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub cols: u16,
    pub rows: u16,
    pub records: Vec<Record>,
}

impl Capture {
    /// The program's exit code, when the capture saw it end.
    pub fn exit(&self) -> Option<(u64, i32)> {
        self.records.iter().find_map(|r| match r.kind {
            Kind::Exit(code) => Some((r.ns, code)),
            _ => None,
        })
    }

    /// When each input was typed, and what.
    pub fn inputs(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.records.iter().filter_map(|r| match &r.kind {
            Kind::Input(b) => Some((r.ns, b.as_slice())),
            _ => None,
        })
    }
}

/// Writes a capture, one `write` per record so that a recorder killed
/// midway leaves whole records.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// Starts a capture of a `cols` × `rows` terminal.
    pub fn new(mut out: W, cols: u16, rows: u16) -> io::Result<Self> {
        out.write_all(format!("{MAGIC} {VERSION} {cols} {rows}\n").as_bytes())?;
        out.flush()?;
        Ok(Self { out })
    }

    fn bytes(&mut self, tag: char, ns: u64, bytes: &[u8]) -> io::Result<()> {
        let mut rec = format!("{tag} {ns} {}\n", bytes.len()).into_bytes();
        rec.extend_from_slice(bytes);
        rec.push(b'\n');
        self.out.write_all(&rec)?;
        self.out.flush()
    }

    pub fn output(&mut self, ns: u64, bytes: &[u8]) -> io::Result<()> {
        self.bytes('o', ns, bytes)
    }

    pub fn input(&mut self, ns: u64, bytes: &[u8]) -> io::Result<()> {
        self.bytes('i', ns, bytes)
    }

    pub fn exit(&mut self, ns: u64, code: i32) -> io::Result<()> {
        self.out.write_all(format!("x {ns} {code}\n").as_bytes())?;
        self.out.flush()
    }

    /// What it wrote to.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Reads a capture; a malformed or cut one is an error naming the byte
/// offset where it went wrong.
pub fn parse(data: &[u8]) -> Result<Capture> {
    let mut at = 0usize;
    let header = line(data, &mut at).context("no header line")?;
    let f: Vec<&str> = header.split(' ').collect();
    let (cols, rows) = match f.as_slice() {
        [magic, version, cols, rows] if *magic == MAGIC => {
            if version.parse::<u32>().ok() != Some(VERSION) {
                bail!("capture version {version}; this reads version {VERSION}");
            }
            (
                cols.parse().with_context(|| format!("columns {cols:?}"))?,
                rows.parse().with_context(|| format!("rows {rows:?}"))?,
            )
        }
        _ => bail!("not a pty capture (header {header:?})"),
    };
    let mut records = Vec::new();
    while at < data.len() {
        let start = at;
        let head = line(data, &mut at).with_context(|| format!("record at byte {start} cut"))?;
        let f: Vec<&str> = head.split(' ').collect();
        let [tag, ns, n] = f.as_slice() else {
            bail!("record at byte {start}: {head:?} is not \"TAG NS N\"");
        };
        let ns: u64 = ns
            .parse()
            .with_context(|| format!("record at byte {start}: time {ns:?}"))?;
        let kind = match *tag {
            "x" => Kind::Exit(
                n.parse()
                    .with_context(|| format!("record at byte {start}: exit code {n:?}"))?,
            ),
            "o" | "i" => {
                let len: usize = n
                    .parse()
                    .with_context(|| format!("record at byte {start}: length {n:?}"))?;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e < data.len())
                    .with_context(|| format!("record at byte {start}: {len} bytes cut"))?;
                if data[end] != b'\n' {
                    bail!("record at byte {start}: no newline after its {len} bytes");
                }
                let bytes = data[at..end].to_vec();
                at = end + 1;
                if *tag == "o" {
                    Kind::Output(bytes)
                } else {
                    Kind::Input(bytes)
                }
            }
            other => bail!("record at byte {start}: unknown tag {other:?}"),
        };
        records.push(Record { ns, kind });
    }
    Ok(Capture {
        cols,
        rows,
        records,
    })
}

/// The ASCII line at `*at` (without its newline); moves past it.
fn line<'a>(data: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let rest = data.get(*at..)?;
    let n = rest.iter().position(|b| *b == b'\n')?;
    let text = std::str::from_utf8(&rest[..n]).ok()?;
    *at += n + 1;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic capture: output holding newlines and escapes, a key, the exit.
    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), 120, 40).expect("header");
        w.output(10, b"\x1b[?1049h\x1b[1;1Hline one\nline two")
            .expect("output");
        w.input(20, b"q").expect("input");
        w.output(30, b"").expect("empty output");
        w.exit(40, 0).expect("exit");
        w.out
    }

    #[test]
    fn a_capture_reads_back_as_written() {
        let c = parse(&sample()).expect("parse");
        assert_eq!((c.cols, c.rows), (120, 40));
        assert_eq!(
            c.records,
            vec![
                Record {
                    ns: 10,
                    kind: Kind::Output(b"\x1b[?1049h\x1b[1;1Hline one\nline two".to_vec())
                },
                Record {
                    ns: 20,
                    kind: Kind::Input(b"q".to_vec())
                },
                Record {
                    ns: 30,
                    kind: Kind::Output(Vec::new())
                },
                Record {
                    ns: 40,
                    kind: Kind::Exit(0)
                },
            ]
        );
        assert_eq!(c.exit(), Some((40, 0)));
        assert_eq!(c.inputs().collect::<Vec<_>>(), vec![(20, &b"q"[..])]);
    }

    #[test]
    fn a_cut_or_foreign_capture_is_refused() {
        let whole = sample();
        // Cut inside the first record's bytes.
        let err = parse(&whole[..40]).expect_err("cut");
        assert!(format!("{err:#}").contains("bytes cut"), "{err:#}");
        // Cut inside a record's line.
        let err = parse(&whole[..whole.len() - 3]).expect_err("cut line");
        assert!(format!("{err:#}").contains("cut"), "{err:#}");
        assert!(parse(b"script started\n").is_err());
        assert!(parse(b"refwatch-ptycap 2 80 24\n").is_err());
        assert!(parse(b"refwatch-ptycap 1 80 24\nz 1 0\n").is_err());
        // A length that runs past the newline it must end on.
        assert!(parse(b"refwatch-ptycap 1 80 24\no 1 2\nabc\n").is_err());
        // The header alone: a capture with no records.
        let empty = parse(b"refwatch-ptycap 1 80 24\n").expect("empty");
        assert!(empty.records.is_empty() && empty.exit().is_none());
    }
}
