//! Keys from the terminal: read on a thread of their own and sent to the
//! runner's loop.
//!
//! The thread reads the terminal itself rather than through crossterm's
//! `event::poll`/`event::read`: crossterm 0.29 retries a read that returns 0
//! or EIO for ever, so on a hung-up terminal its `poll` never returns, its
//! timeout notwithstanding, and spins (crossterm-rs/crossterm#793). Here
//! `poll(2)` reports the hang-up (see [`tty`]), and a read that returns 0 or
//! fails ends the thread with the reason. The bytes become crossterm
//! [`KeyEvent`]s by [`Parser`], which reads what terminals send for the keys
//! the TUI uses (xterm and VT sequences); resizes come from SIGWINCH, in the
//! runners.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::sync::mpsc;

use crate::tty::{self, Ready, TtyInput};

/// What the input thread sends the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Key(KeyEvent),
    /// The terminal is gone (why); the thread has ended.
    Gone(String),
}

/// How often the input thread looks at the stop flag, and how long an
/// escape sequence may stay incomplete before its bytes count as keys.
const INPUT_POLL: Duration = Duration::from_millis(50);
/// How long dropping [`Input`] waits for its thread (which looks at the
/// stop flag every [`INPUT_POLL`]).
const INPUT_JOIN: Duration = Duration::from_millis(500);

/// The input thread, stopped and joined when dropped.
pub struct Input {
    pub rx: mpsc::UnboundedReceiver<Incoming>,
    /// The terminal read, for the runners' own checks.
    pub tty: Arc<TtyInput>,
    stop: Arc<AtomicBool>,
    /// Disconnected when the thread ends.
    done: std_mpsc::Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Input {
    pub fn spawn() -> Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done) = std_mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let tty = Arc::new(TtyInput::open().context("open the terminal for input")?);
        let flag = stop.clone();
        let term = tty.clone();
        let thread = thread::Builder::new()
            .name("refwatch-input".into())
            .spawn(move || {
                let _done = done_tx;
                if let Err(why) = read_keys(&term, &flag, &tx) {
                    let _ = tx.send(Incoming::Gone(why));
                }
            })
            .context("start the terminal input thread")?;
        Ok(Self {
            rx,
            tty,
            stop,
            done,
            thread: Some(thread),
        })
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(t) = self.thread.take() else {
            return;
        };
        match self.done.recv_timeout(INPUT_JOIN) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                let _ = t.join();
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                log::warn!("the terminal input thread did not stop; leaving it");
            }
        }
    }
}

/// The input thread: keys to `tx` until `stop` or the loop is gone (`Ok`),
/// or the terminal is (`Err(why)`).
fn read_keys(
    term: &TtyInput,
    stop: &AtomicBool,
    tx: &mpsc::UnboundedSender<Incoming>,
) -> std::result::Result<(), String> {
    let mut parser = Parser::default();
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let keys = match tty::wait_input(term.fd(), INPUT_POLL) {
            Ready::Gone(why) => return Err(why),
            Ready::Idle => parser.flush(),
            Ready::Input => match term.read(&mut buf) {
                Ok(0) => return Err("the terminal input ended (end of file)".into()),
                Ok(n) => parser.feed(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read the terminal: {e}")),
            },
        };
        for k in keys {
            if tx.send(Incoming::Key(k)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Terminal input bytes → keys. A sequence cut between two reads waits for
/// the rest; [`Parser::flush`] gives up on it.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
}

/// One step of decoding.
enum Step {
    /// A key, from this many bytes.
    Key(KeyEvent, usize),
    /// This many bytes that are no key the TUI knows (mouse reports, focus
    /// events, invalid UTF-8).
    Skip(usize),
    /// The bytes begin a sequence that is not complete yet.
    Incomplete,
}

impl Parser {
    /// The keys in `bytes`, after what an earlier call left incomplete. An
    /// ESC alone at the end is the Escape key (terminals send a sequence in
    /// one write).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<KeyEvent> {
        self.pending.extend_from_slice(bytes);
        self.decode_pending(false)
    }

    /// The keys of an incomplete sequence nothing completed (ESC `[` alone
    /// is Escape and `[`).
    pub fn flush(&mut self) -> Vec<KeyEvent> {
        self.decode_pending(true)
    }

    fn decode_pending(&mut self, last: bool) -> Vec<KeyEvent> {
        let mut keys = Vec::new();
        let mut at = 0;
        while at < self.pending.len() {
            match decode(&self.pending[at..], last) {
                Step::Key(k, n) => {
                    keys.push(k);
                    at += n;
                }
                Step::Skip(n) => at += n,
                Step::Incomplete => break,
            }
        }
        self.pending.drain(..at);
        keys
    }
}

fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, modifiers)
}

/// A character key; upper case ones carry SHIFT, as crossterm reports them.
fn char_key(c: char, modifiers: KeyModifiers) -> KeyEvent {
    let shift = if c.is_uppercase() {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    key(KeyCode::Char(c), modifiers | shift)
}

/// The first key of `b` (not empty). `last`: no more bytes will come, so an
/// incomplete sequence is taken byte by byte.
fn decode(b: &[u8], last: bool) -> Step {
    let none = KeyModifiers::NONE;
    match b[0] {
        0x1b => match b.get(1) {
            None => Step::Key(key(KeyCode::Esc, none), 1),
            Some(b'[') => csi(b, last),
            Some(b'O') => ss3(b, last),
            Some(0x1b) => Step::Key(key(KeyCode::Esc, none), 1),
            // ESC and a key: that key with Alt.
            Some(_) => match decode(&b[1..], last) {
                Step::Key(mut k, n) => {
                    k.modifiers |= KeyModifiers::ALT;
                    Step::Key(k, n + 1)
                }
                Step::Skip(n) => Step::Skip(n + 1),
                Step::Incomplete => Step::Incomplete,
            },
        },
        b'\r' | b'\n' => Step::Key(key(KeyCode::Enter, none), 1),
        b'\t' => Step::Key(key(KeyCode::Tab, none), 1),
        0x7f | 0x08 => Step::Key(key(KeyCode::Backspace, none), 1),
        0x00 => Step::Key(key(KeyCode::Char(' '), KeyModifiers::CONTROL), 1),
        c @ 0x01..=0x1a => Step::Key(
            key(
                KeyCode::Char(char::from(c - 1 + b'a')),
                KeyModifiers::CONTROL,
            ),
            1,
        ),
        c @ 0x1c..=0x1f => Step::Key(
            key(
                KeyCode::Char(char::from(c - 0x1c + b'4')),
                KeyModifiers::CONTROL,
            ),
            1,
        ),
        c @ 0x20..=0x7e => Step::Key(char_key(char::from(c), none), 1),
        c => utf8(b, c, last),
    }
}

/// A multi-byte UTF-8 character.
fn utf8(b: &[u8], lead: u8, last: bool) -> Step {
    let len = match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Step::Skip(1),
    };
    if b.len() < len {
        return if last {
            Step::Skip(1)
        } else {
            Step::Incomplete
        };
    }
    match std::str::from_utf8(&b[..len])
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(c) => Step::Key(char_key(c, KeyModifiers::NONE), len),
        None => Step::Skip(1),
    }
}

/// The modifiers of a CSI or SS3 key's parameter (xterm: 1 + a bit mask).
fn modifiers_of(param: Option<u16>) -> KeyModifiers {
    let bits = param.unwrap_or(1).saturating_sub(1);
    let mut m = KeyModifiers::NONE;
    if bits & 1 != 0 {
        m |= KeyModifiers::SHIFT;
    }
    if bits & 2 != 0 {
        m |= KeyModifiers::ALT;
    }
    if bits & 4 != 0 {
        m |= KeyModifiers::CONTROL;
    }
    m
}

/// The key of a final byte shared by CSI and SS3 sequences.
fn cursor_key(f: u8) -> Option<KeyCode> {
    Some(match f {
        b'A' => KeyCode::Up,
        b'B' => KeyCode::Down,
        b'C' => KeyCode::Right,
        b'D' => KeyCode::Left,
        b'H' => KeyCode::Home,
        b'F' => KeyCode::End,
        b'P' => KeyCode::F(1),
        b'Q' => KeyCode::F(2),
        b'R' => KeyCode::F(3),
        b'S' => KeyCode::F(4),
        _ => return None,
    })
}

/// `ESC [ params final`: cursor, editing and function keys.
fn csi(b: &[u8], last: bool) -> Step {
    let end = b[2..]
        .iter()
        .position(|c| !(0x20..=0x3f).contains(c))
        .map(|p| p + 2);
    let Some(end) = end else {
        return if last {
            Step::Key(key(KeyCode::Esc, KeyModifiers::NONE), 1)
        } else {
            Step::Incomplete
        };
    };
    let f = b[end];
    if !(0x40..=0x7e).contains(&f) {
        // Not a sequence: drop what was read of it.
        return Step::Skip(end);
    }
    let params: Vec<Option<u16>> = std::str::from_utf8(&b[2..end])
        .unwrap_or("")
        .split(';')
        .map(|p| p.parse().ok())
        .collect();
    let first = params.first().copied().flatten();
    let mods = modifiers_of(params.get(1).copied().flatten());
    let code = match f {
        b'Z' => Some(KeyCode::BackTab),
        b'~' => match first {
            Some(1 | 7) => Some(KeyCode::Home),
            Some(2) => Some(KeyCode::Insert),
            Some(3) => Some(KeyCode::Delete),
            Some(4 | 8) => Some(KeyCode::End),
            Some(5) => Some(KeyCode::PageUp),
            Some(6) => Some(KeyCode::PageDown),
            Some(n @ 11..=15) => Some(KeyCode::F((n - 10) as u8)),
            Some(n @ 17..=21) => Some(KeyCode::F((n - 11) as u8)),
            Some(n @ 23..=24) => Some(KeyCode::F((n - 12) as u8)),
            _ => None,
        },
        _ => cursor_key(f),
    };
    match code {
        Some(KeyCode::BackTab) => {
            Step::Key(key(KeyCode::BackTab, mods | KeyModifiers::SHIFT), end + 1)
        }
        Some(c) => Step::Key(key(c, mods), end + 1),
        None => Step::Skip(end + 1),
    }
}

/// `ESC O final`: cursor keys in application mode, F1–F4.
fn ss3(b: &[u8], last: bool) -> Step {
    match b.get(2) {
        None if last => Step::Key(char_key('O', KeyModifiers::ALT), 2),
        None => Step::Incomplete,
        Some(&f) => match cursor_key(f) {
            Some(c) => Step::Key(key(c, KeyModifiers::NONE), 3),
            None => Step::Skip(3),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode) -> KeyEvent {
        key(code, KeyModifiers::NONE)
    }

    fn ch(c: char) -> KeyEvent {
        char_key(c, KeyModifiers::NONE)
    }

    fn keys(bytes: &[u8]) -> Vec<KeyEvent> {
        Parser::default().feed(bytes)
    }

    #[test]
    fn plain_keys() {
        assert_eq!(
            keys(b"q?]G \r\t\x7f"),
            vec![
                ch('q'),
                ch('?'),
                ch(']'),
                key(KeyCode::Char('G'), KeyModifiers::SHIFT),
                ch(' '),
                k(KeyCode::Enter),
                k(KeyCode::Tab),
                k(KeyCode::Backspace),
            ]
        );
        assert_eq!(
            keys(b"\x03"),
            vec![key(KeyCode::Char('c'), KeyModifiers::CONTROL)]
        );
        assert_eq!(keys("é€".as_bytes()), vec![ch('é'), ch('€')]);
    }

    #[test]
    fn escape_alone_and_with_alt() {
        assert_eq!(keys(b"\x1b"), vec![k(KeyCode::Esc)]);
        assert_eq!(keys(b"\x1b\x1b"), vec![k(KeyCode::Esc), k(KeyCode::Esc)]);
        assert_eq!(
            keys(b"\x1bx"),
            vec![key(KeyCode::Char('x'), KeyModifiers::ALT)]
        );
    }

    #[test]
    fn cursor_and_function_keys() {
        assert_eq!(
            keys(b"\x1b[A\x1b[B\x1b[C\x1b[D\x1bOA\x1b[H\x1b[F\x1b[1~\x1b[4~"),
            vec![
                k(KeyCode::Up),
                k(KeyCode::Down),
                k(KeyCode::Right),
                k(KeyCode::Left),
                k(KeyCode::Up),
                k(KeyCode::Home),
                k(KeyCode::End),
                k(KeyCode::Home),
                k(KeyCode::End),
            ]
        );
        assert_eq!(
            keys(b"\x1b[5~\x1b[6~\x1b[3~\x1bOP\x1b[15~\x1b[24~"),
            vec![
                k(KeyCode::PageUp),
                k(KeyCode::PageDown),
                k(KeyCode::Delete),
                k(KeyCode::F(1)),
                k(KeyCode::F(5)),
                k(KeyCode::F(12)),
            ]
        );
        assert_eq!(
            keys(b"\x1b[Z\x1b[1;5A"),
            vec![
                key(KeyCode::BackTab, KeyModifiers::SHIFT),
                key(KeyCode::Up, KeyModifiers::CONTROL),
            ]
        );
    }

    #[test]
    fn unknown_sequences_are_skipped() {
        // A focus report and an SGR mouse report, then a key.
        assert_eq!(keys(b"\x1b[I\x1b[<0;3;4Mq"), vec![ch('q')]);
        assert_eq!(keys(b"\xffq"), vec![ch('q')]);
    }

    #[test]
    fn a_sequence_cut_between_reads() {
        let mut p = Parser::default();
        assert_eq!(p.feed(b"j\x1b["), vec![ch('j')]);
        assert_eq!(p.feed(b"6"), vec![]);
        assert_eq!(p.feed(b"~k"), vec![k(KeyCode::PageDown), ch('k')]);
        assert_eq!(p.feed(&"€".as_bytes()[..1]), vec![]);
        assert_eq!(p.feed(&"€".as_bytes()[1..]), vec![ch('€')]);
        // Nothing completes it: Escape and `[`.
        assert_eq!(p.feed(b"\x1b["), vec![]);
        assert_eq!(p.flush(), vec![k(KeyCode::Esc), ch('[')]);
        assert_eq!(p.flush(), vec![]);
    }
}
