//! `workload pty`: runs a command on a pseudo-terminal of a given size, as
//! a terminal emulator would, and captures what it draws (the format of
//! [`crate::ptycap`]). The lab runs `refwatch attach` (the TUI) under it:
//! the guest has no `script` or terminal emulator.
//!
//! The command gets the terminal as its controlling terminal (its own
//! session) and `TERM=xterm-256color`. When `--keys-file` appears, its
//! content is typed into the terminal. When `--quit-file` appears, `q` is
//! typed into the terminal, as a user quits; a command still running
//! `--quit-secs` later gets SIGTERM, and SIGKILL as long again after that.
//! With `--passthrough`, the terminal's output is also copied to stdout and
//! what comes on stdin typed into it (stdin in raw mode when it is a
//! terminal): the demo shows the TUI on the guest's console this way.
//! Exits with the command's exit code (128 + N when signal N ended it).

#![allow(unsafe_code)]

use std::{
    ffi::{CStr, OsString},
    fs::{File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::{fs::OpenOptionsExt as _, process::CommandExt as _, process::ExitStatusExt as _},
    },
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::{ptycap::Writer, sys::clock::monotonic_ns};

/// Command line of `workload pty`.
#[derive(Debug, Parser)]
#[command(
    name = "workload pty",
    about = "Run a command on a pseudo-terminal of a given size and capture what it draws"
)]
pub struct PtyCli {
    /// Columns of the terminal.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u16).range(1..))]
    cols: u16,
    /// Rows of the terminal.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(1..))]
    rows: u16,
    /// Where to write the capture.
    #[arg(long)]
    capture: PathBuf,
    /// Type `q` into the terminal once this file exists.
    #[arg(long)]
    quit_file: Option<PathBuf>,
    /// Type this file's content into the terminal once it exists (keys a
    /// user presses during the run; write it whole, e.g. by a rename).
    #[arg(long)]
    keys_file: Option<PathBuf>,
    /// Seconds from `q` to SIGTERM (and from SIGTERM to SIGKILL).
    #[arg(long, default_value_t = 20)]
    quit_secs: u64,
    /// Also show the terminal on stdout and type stdin into it.
    #[arg(long)]
    passthrough: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

pub fn main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let cli = PtyCli::parse_from(std::iter::once("workload pty".into()).chain(args));
    match run(&cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("workload pty: {e:#}");
            ExitCode::from(125)
        }
    }
}

/// A new pseudo-terminal: (master, slave), the slave `cols` × `rows`.
fn open_pty(cols: u16, rows: u16) -> Result<(OwnedFd, File)> {
    // SAFETY: plain libc calls on the descriptor opened here; the name
    // buffer outlives ptsname_r, which NUL-terminates it on success.
    let (master, path) = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(io::Error::last_os_error()).context("posix_openpt");
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(io::Error::last_os_error()).context("grantpt/unlockpt");
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(io::Error::last_os_error()).context("ptsname_r");
        }
        let path = CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
        (master, path)
    };
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .with_context(|| format!("open {path}"))?;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize, which lives across the call.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(io::Error::last_os_error()).context("TIOCSWINSZ");
    }
    Ok((master, slave))
}

/// Stdin in raw mode while this lives (when it is a terminal).
struct RawStdin(Option<libc::termios>);

impl RawStdin {
    fn enter() -> Self {
        // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw
        // changes the copy, tcsetattr reads it.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return Self(None);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return Self(None);
            }
            Self(Some(saved))
        }
    }
}

impl Drop for RawStdin {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores the attributes read in `enter`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, t) };
        }
    }
}

/// What `poll` says of one descriptor: readable, hung up.
fn poll_fds(fds: &[RawFd], timeout: Duration) -> Result<Vec<(bool, bool)>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `p` is a valid array of its length for the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![(false, false); fds.len()]);
        }
        return Err(e).context("poll");
    }
    Ok(p.iter()
        .map(|p| {
            (
                p.revents & libc::POLLIN != 0,
                p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
            )
        })
        .collect())
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn write_all_fd(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(n) => bytes = &bytes[n..],
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn run(cli: &PtyCli) -> Result<i32> {
    let Some((program, args)) = cli.command.split_first() else {
        bail!("no command given");
    };
    let (master, slave) = open_pty(cli.cols, cli.rows)?;
    let file =
        File::create(&cli.capture).with_context(|| format!("create {}", cli.capture.display()))?;
    let mut cap = Writer::new(file, cli.cols, cli.rows).context("write the capture")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("TERM", "xterm-256color")
        .env("COLUMNS", cli.cols.to_string())
        .env("LINES", cli.rows.to_string())
        .stdin(Stdio::from(slave.try_clone().context("dup the slave")?))
        .stdout(Stdio::from(slave.try_clone().context("dup the slave")?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // The slave (stdin by now) becomes the controlling terminal.
            if libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", program.to_string_lossy()))?;
    // `cmd` holds the parent's copies of the slave: gone, the master sees
    // the hang-up once the command's are closed.
    drop(cmd);
    let pid = libc::pid_t::try_from(child.id()).context("pid")?;

    let _raw = cli.passthrough.then(RawStdin::enter);
    let m = master.as_raw_fd();
    let mut stdin_open = cli.passthrough;
    let mut buf = vec![0u8; 65536];
    let mut quit_sent: Option<Instant> = None;
    let mut keys_sent = false;
    let mut termed = false;
    let mut killed = false;
    let mut stdout = io::stdout().lock();
    let mut show = |bytes: &[u8]| {
        if cli.passthrough {
            // A console that fails is no reason to stop the capture.
            let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
        }
    };
    let status = loop {
        let mut fds = vec![m];
        if stdin_open {
            fds.push(libc::STDIN_FILENO);
        }
        let ready = poll_fds(&fds, Duration::from_millis(100))?;
        if ready[0].0 || ready[0].1 {
            match read_fd(m, &mut buf) {
                Ok(n) if n > 0 => {
                    cap.output(monotonic_ns()?, &buf[..n])
                        .context("write the capture")?;
                    show(&buf[..n]);
                }
                // EIO: no process has the terminal open any more; the
                // command's exit is waited for below.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        if stdin_open && (ready[1].0 || ready[1].1) {
            match io::stdin().lock().read(&mut buf) {
                Ok(n) if n > 0 => {
                    cap.input(monotonic_ns()?, &buf[..n])
                        .context("write the capture")?;
                    write_all_fd(m, &buf[..n]).context("type into the terminal")?;
                }
                _ => stdin_open = false,
            }
        }
        if let Some(status) = child.try_wait().context("wait for the command")? {
            // What it wrote before it ended, to the last byte.
            while poll_fds(&[m], Duration::from_millis(200))?[0].0 {
                match read_fd(m, &mut buf) {
                    Ok(n) if n > 0 => {
                        cap.output(monotonic_ns()?, &buf[..n])
                            .context("write the capture")?;
                        show(&buf[..n]);
                    }
                    _ => break,
                }
            }
            break status;
        }
        if !keys_sent && let Some(f) = cli.keys_file.as_ref().filter(|f| f.exists()) {
            let keys = std::fs::read(f).with_context(|| format!("read {}", f.display()))?;
            cap.input(monotonic_ns()?, &keys)
                .context("write the capture")?;
            write_all_fd(m, &keys).context("type the keys")?;
            keys_sent = true;
        }
        if quit_sent.is_none() && cli.quit_file.as_ref().is_some_and(|f| f.exists()) {
            cap.input(monotonic_ns()?, b"q")
                .context("write the capture")?;
            write_all_fd(m, b"q").context("type q")?;
            quit_sent = Some(Instant::now());
        }
        if let Some(t) = quit_sent {
            let secs = Duration::from_secs(cli.quit_secs);
            if !termed && t.elapsed() >= secs {
                eprintln!(
                    "workload pty: still running {} s after q: SIGTERM",
                    cli.quit_secs
                );
                // SAFETY: a signal to the child, which is not reaped yet.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                termed = true;
            } else if termed && !killed && t.elapsed() >= secs * 2 {
                eprintln!("workload pty: still running after SIGTERM: SIGKILL");
                let _ = child.kill();
                killed = true;
            }
        }
    };
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255);
    cap.exit(monotonic_ns()?, code)
        .context("write the capture")?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptycap::{self, Kind};

    #[test]
    fn a_command_sees_its_terminal_and_what_it_draws_is_captured() {
        let dir = std::env::temp_dir().join(format!("workload-pty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let capture = dir.join("capture");
        let quit = dir.join("quit");
        // Present from the start: q is typed at once.
        std::fs::write(&quit, b"").expect("quit file");
        let cli = PtyCli::parse_from([
            OsString::from("workload pty"),
            "--cols".into(),
            "100".into(),
            "--rows".into(),
            "30".into(),
            "--capture".into(),
            capture.clone().into(),
            "--quit-file".into(),
            quit.into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            "stty size; tty; echo $TERM; stty raw -echo; k=$(dd bs=1 count=1 2>/dev/null); stty sane; echo got=$k; exit 3".into(),
        ]);
        assert_eq!(run(&cli).expect("run"), 3);
        let cap = ptycap::parse(&std::fs::read(&capture).expect("read")).expect("parse");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((cap.cols, cap.rows), (100, 30));
        let out: Vec<u8> = cap
            .records
            .iter()
            .filter_map(|r| match &r.kind {
                Kind::Output(b) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("30 100\r\n"), "{out}");
        assert!(out.contains("/dev/pts/"), "a terminal of its own: {out}");
        assert!(out.contains("xterm-256color"), "{out}");
        assert!(out.contains("got=q"), "{out}");
        assert_eq!(
            cap.inputs().map(|(_, b)| b.to_vec()).collect::<Vec<_>>(),
            [b"q"]
        );
        let (at, code) = cap.exit().expect("the exit");
        assert_eq!(code, 3);
        assert!(cap.records.iter().all(|r| r.ns <= at), "in time order");
    }
}
