//! The demo's live part: while the guest shows refwatch's TUI on its
//! console (between the console lines `LAB: tui live begin` and `LAB: tui
//! live end`, see `run_tui` in `xtask/guest/init.sh`), the console's bytes
//! go to the user's terminal as they are and the user's keys to the guest,
//! with the terminal in raw mode. The terminal is restored when the TUI
//! ends, when qemu ends, and on SIGINT, SIGTERM or SIGHUP to xtask, which
//! then also ends qemu: the guest's TUI has no terminal left.

#![allow(unsafe_code)]

use std::{
    io::{self, Write as _},
    os::fd::AsRawFd as _,
    process::ChildStdin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    thread,
    time::Duration,
};

/// The console line that starts the live part.
pub const BEGIN: &str = "LAB: tui live begin";
/// The console line that ends it.
pub const END: &str = "LAB: tui live end";

/// qemu's escape key on a console shared with its monitor (`-nographic`):
/// Ctrl-A. Typed twice, the guest gets one.
const QEMU_ESCAPE: u8 = 0x01;

/// The size of the user's terminal (stdout): (columns, rows).
pub fn host_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills one winsize, which lives across the call.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) != 0 {
            return None;
        }
        (ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
    }
}

/// The terminal's attributes before raw mode, for the signal handler.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// qemu's pid while the live part runs (0: none), for the signal handler.
static QEMU: AtomicI32 = AtomicI32::new(0);

/// What the guest's TUI would have written on its way out: the main
/// screen back, the cursor shown.
const LEAVE_TUI: &[u8] = b"\x1b[0m\x1b[?1049l\x1b[?25h\r\n";

/// Tells the signal handler which qemu to end.
pub fn set_qemu(pid: u32) {
    QEMU.store(i32::try_from(pid).unwrap_or(0), Ordering::SeqCst);
}

extern "C" fn restore_and_die(sig: libc::c_int) {
    if let Some(t) = SAVED.get() {
        // SAFETY: tcsetattr, write, kill, signal and raise are
        // async-signal-safe; LEAVE_TUI is static.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
            libc::write(
                libc::STDOUT_FILENO,
                LEAVE_TUI.as_ptr().cast(),
                LEAVE_TUI.len(),
            );
            let qemu = QEMU.load(Ordering::SeqCst);
            if qemu > 0 {
                libc::kill(qemu, libc::SIGTERM);
            }
        }
    }
    // SAFETY: as above; the default action then ends the process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// The user's terminal in raw mode while this lives.
pub struct RawTerminal(libc::termios);

impl RawTerminal {
    /// Raw mode on stdin's terminal (none: not a terminal).
    pub fn enter() -> Option<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw
        // changes the copy, tcsetattr reads it. The handlers only restore it.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return None;
            }
            let _ = SAVED.set(saved);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(sig, restore_and_die as *const () as libc::sighandler_t);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Self(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter`, drops the keys
        // typed but not sent, and gives the signals their default action.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0);
            libc::tcflush(libc::STDIN_FILENO, libc::TCIFLUSH);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// Shared between the console pump (which sees the markers) and the key
/// forwarder.
#[derive(Clone, Default)]
pub struct Live {
    on: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl Live {
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    /// Ends the forwarder.
    pub fn finish(&self) {
        self.set(false);
        self.done.store(true, Ordering::SeqCst);
    }
}

/// What the console pump does with the console's output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Bytes for the terminal as they are.
    Show(Vec<u8>),
    /// A `LAB:` line, shown with the kernel's label.
    Lab(String),
    /// The live part begins: raw mode, keys to the guest.
    Begin,
    /// It ends: the terminal restored.
    End,
}

/// The console's output read line by line for its `LAB:` lines, and shown
/// as it is in the live part (or always, verbose). Pure: the pump does the
/// I/O.
pub struct Console {
    verbose: bool,
    /// Whether [`BEGIN`] starts a live part.
    live: bool,
    on: bool,
    line: Vec<u8>,
    /// Live bytes held back at a chunk's end: they may begin [`END`].
    held: Vec<u8>,
}

impl Console {
    pub fn new(verbose: bool, live: bool) -> Self {
        Self {
            verbose,
            live,
            on: false,
            line: Vec::new(),
            held: Vec::new(),
        }
    }

    /// The steps for one chunk of the console; then [`Self::finish_chunk`].
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut shown = std::mem::take(&mut self.held);
        for &b in chunk {
            if self.verbose || self.on {
                shown.push(b);
            }
            if b != b'\n' {
                self.line.push(b);
                // The TUI's output has few newlines: only a line's end can
                // hold a marker.
                if self.line.len() > 1 << 16 {
                    self.line.drain(..self.line.len() - 256);
                }
                continue;
            }
            let text = String::from_utf8_lossy(&self.line).trim_end().to_owned();
            let line_len = self.line.len() + 1;
            self.line.clear();
            let Some(pos) = text.find("LAB: ") else {
                continue;
            };
            let lab = text[pos..].to_owned();
            if self.on {
                if lab.starts_with(END) {
                    // The marker is shown as the other `LAB:` lines are.
                    shown.truncate(shown.len().saturating_sub(line_len));
                    steps.push(Step::Show(std::mem::take(&mut shown)));
                    steps.push(Step::End);
                    steps.push(Step::Lab(lab));
                    self.on = false;
                }
                continue;
            }
            if !self.verbose {
                steps.push(Step::Lab(lab.clone()));
            }
            if self.live && lab.starts_with(BEGIN) {
                steps.push(Step::Show(std::mem::take(&mut shown)));
                steps.push(Step::Begin);
                self.on = true;
            }
        }
        let open = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if self.on && !self.line.is_empty() && END.as_bytes().starts_with(open) {
            self.held = shown.split_off(shown.len().saturating_sub(self.line.len()));
        }
        if !shown.is_empty() {
            steps.push(Step::Show(shown));
        }
        steps
    }

    /// Bytes held back when the console ended.
    pub fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// `keys` with qemu's escape key doubled, so it reaches the guest.
pub fn escape_keys(keys: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(keys.len());
    for &k in keys {
        out.push(k);
        if k == QEMU_ESCAPE {
            out.push(k);
        }
    }
    out
}

/// Copies the user's keys to qemu's console while `live` is on (and reads
/// none otherwise), until `live` is finished.
pub fn forward_keys(live: Live, mut qemu: ChildStdin) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let stdin = io::stdin();
        let fd = stdin.as_raw_fd();
        let mut buf = [0u8; 1024];
        while !live.done.load(Ordering::SeqCst) {
            if !live.is_on() {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call.
            let n = unsafe { libc::poll(&mut p, 1, 100) };
            if n <= 0 || p.revents & libc::POLLIN == 0 {
                continue;
            }
            // SAFETY: `buf` is valid for writes of its length.
            let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(got) = usize::try_from(got) else {
                continue;
            };
            if got == 0 {
                break;
            }
            if qemu
                .write_all(&escape_keys(&buf[..got]))
                .and_then(|()| qemu.flush())
                .is_err()
            {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps of a console read in the given chunks (synthetic output).
    fn steps(verbose: bool, chunks: &[&[u8]]) -> Vec<Step> {
        let mut c = Console::new(verbose, true);
        let mut all: Vec<Step> = chunks.iter().flat_map(|ch| c.feed(ch)).collect();
        let rest = c.rest();
        if !rest.is_empty() {
            all.push(Step::Show(rest));
        }
        // Adjacent bytes as one, for comparison.
        let mut merged: Vec<Step> = Vec::new();
        for s in all {
            match (merged.last_mut(), s) {
                (Some(Step::Show(a)), Step::Show(b)) => a.extend(b),
                (_, Step::Show(b)) if b.is_empty() => {}
                (_, s) => merged.push(s),
            }
        }
        merged
    }

    #[test]
    fn the_live_part_is_shown_as_it_is_between_the_markers() {
        let console: &[u8] = b"boot noise\r\nLAB: scenario x start\r\nLAB: tui live begin\r\n\x1b[?1049hTUI\r\nLAB: not a marker\r\n\x1b[?1049lbye\r\nLAB: tui live end\r\nLAB: done\r\n";
        let want = vec![
            Step::Lab("LAB: scenario x start".into()),
            Step::Lab("LAB: tui live begin".into()),
            Step::Begin,
            Step::Show(b"\x1b[?1049hTUI\r\nLAB: not a marker\r\n\x1b[?1049lbye\r\n".to_vec()),
            Step::End,
            Step::Lab("LAB: tui live end".into()),
            Step::Lab("LAB: done".into()),
        ];
        assert_eq!(steps(false, &[console]), want);
        // Cut anywhere, the same: the end marker never shows half.
        for cut in 1..console.len() {
            let (a, b) = console.split_at(cut);
            assert_eq!(steps(false, &[a, b]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = console.chunks(1).collect();
        assert_eq!(steps(false, &bytes), want);
    }

    #[test]
    fn without_live_only_lab_lines_show() {
        let mut c = Console::new(false, false);
        let s = c.feed(b"LAB: tui live begin\n\x1b[?1049h\nLAB: done\n");
        assert_eq!(
            s,
            vec![
                Step::Lab("LAB: tui live begin".into()),
                Step::Lab("LAB: done".into())
            ]
        );
        // Verbose: everything, and no line twice.
        let mut c = Console::new(true, false);
        assert_eq!(
            c.feed(b"x\nLAB: done\n"),
            vec![Step::Show(b"x\nLAB: done\n".to_vec())]
        );
    }

    #[test]
    fn qemus_escape_key_is_doubled() {
        assert_eq!(escape_keys(b"q"), b"q");
        assert_eq!(escape_keys(b"\x01x\x03"), b"\x01\x01x\x03");
        assert_eq!(escape_keys(b""), b"");
    }
}
