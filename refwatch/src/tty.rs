//! Noticing that the terminal went away: under the TUI, and on the way out
//! of the headless loop after a hang-up.
//!
//! When a terminal is hung up (its window closed, `tmux kill-server`, the
//! ssh connection lost) its file stays readable for ever: `read` returns 0
//! or fails with EIO at once, and writes fail with EIO. crossterm 0.29's event
//! reader retries such a read in a loop that never returns, whatever the
//! timeout given to `event::poll` (crossterm-rs/crossterm#793). So the input
//! thread ([`crate::tui::input`]) polls and reads the terminal itself, and the
//! runners check it on their ticks too: it may be the terminal's output
//! that failed.

#![allow(unsafe_code)]

use std::{
    fs::{File, OpenOptions},
    io,
    os::fd::{AsRawFd, RawFd},
    time::Duration,
};

/// The terminal the TUI reads keys from: stdin when it is a terminal, else
/// `/dev/tty`, as crossterm chooses.
pub struct TtyInput {
    fd: RawFd,
    /// Owns `fd` when it was opened here.
    _file: Option<File>,
}

impl TtyInput {
    pub fn open() -> io::Result<Self> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
            return Ok(Self {
                fd: libc::STDIN_FILENO,
                _file: None,
            });
        }
        let f = OpenOptions::new().read(true).open("/dev/tty")?;
        Ok(Self {
            fd: f.as_raw_fd(),
            _file: Some(f),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Reads what the terminal has (once [`wait_input`] found it readable).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length, and `fd` open
        // for as long as `self` lives.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Why the terminal is gone, if it is: its input or stdout (where the
    /// TUI draws) reports a hang-up or an error. Never blocks.
    pub fn gone(&self) -> Option<String> {
        [(self.fd, "input"), (libc::STDOUT_FILENO, "output")]
            .into_iter()
            .find_map(|(fd, what)| {
                dead_fd(fd).map(|why| format!("the terminal {why} (its {what})"))
            })
    }
}

/// Whether the TUI has a terminal: (stdout is one, keys can be read from
/// one: stdin, or else `/dev/tty` as [`TtyInput::open`] does).
pub fn terminal_present() -> (bool, bool) {
    // SAFETY: isatty only inspects the descriptors.
    let stdout = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
    let stdin = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
    (
        stdout,
        stdin || OpenOptions::new().read(true).open("/dev/tty").is_ok(),
    )
}

/// Fails with a [`crate::diagnose::Diagnosis`] when the TUI of `command`
/// (`attach`, `replay`) has no terminal.
pub fn require_terminal(command: &str) -> anyhow::Result<()> {
    let (stdout, input) = terminal_present();
    match crate::diagnose::no_terminal(command, stdout, input) {
        Some(d) => Err(d.into()),
        None => Ok(()),
    }
}

/// What [`wait_input`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// Nothing to read before the timeout (or a signal interrupted the wait).
    Idle,
    /// Keys (or other bytes) to read.
    Input,
    /// The terminal is gone: why.
    Gone(String),
}

/// What `poll(2)`'s `revents` say of a descriptor: `Some(why)` when it is
/// dead. A hung-up terminal reports POLLHUP (and POLLERR) whatever was asked.
pub fn hang_up_of(revents: libc::c_short) -> Option<&'static str> {
    if revents & libc::POLLNVAL != 0 {
        Some("is closed")
    } else if revents & libc::POLLHUP != 0 {
        Some("hung up")
    } else if revents & libc::POLLERR != 0 {
        Some("failed")
    } else {
        None
    }
}

fn poll_one(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<libc::c_short> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if n == 0 { 0 } else { p.revents })
}

/// Why `fd` is dead (hung up, failed, closed), if it is. Never blocks.
pub fn dead_fd(fd: RawFd) -> Option<&'static str> {
    match poll_one(fd, 0, Duration::ZERO) {
        Ok(revents) => hang_up_of(revents),
        Err(_) => None,
    }
}

/// Waits up to `timeout` for something to read on `fd`.
pub fn wait_input(fd: RawFd, timeout: Duration) -> Ready {
    match poll_one(fd, libc::POLLIN, timeout) {
        Ok(revents) => match hang_up_of(revents) {
            Some(why) => Ready::Gone(format!("the terminal {why} (its input)")),
            None if revents & libc::POLLIN != 0 => Ready::Input,
            None => Ready::Idle,
        },
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ready::Idle,
        Err(e) => Ready::Gone(format!("poll the terminal: {e}")),
    }
}

/// Points stdout and stderr at `/dev/null` when they are dead (the terminal
/// they wrote to is gone), so the messages printed on the way out (and
/// `println!`, which panics when a write fails) cannot fail. Live outputs,
/// files and pipes with a reader are left alone.
pub fn detach_dead_outputs() {
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        if dead_fd(fd).is_none() {
            continue;
        }
        match OpenOptions::new().write(true).open("/dev/null") {
            // SAFETY: both descriptors are open; dup2 replaces `fd` atomically.
            Ok(null) => {
                if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
                    log::warn!("point fd {fd} at /dev/null: {}", io::Error::last_os_error());
                }
            }
            Err(e) => log::warn!("open /dev/null: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        ffi::CStr,
        fs::File,
        io::Write as _,
        os::{
            fd::{AsRawFd, FromRawFd, OwnedFd},
            unix::fs::OpenOptionsExt as _,
        },
    };

    use super::*;

    /// A pseudo-terminal: (master, slave).
    fn pty() -> (OwnedFd, File) {
        // SAFETY: plain libc calls on the descriptor opened here; the name
        // buffer outlives ptsname_r.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0, "posix_openpt: {}", io::Error::last_os_error());
            let master = OwnedFd::from_raw_fd(m);
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let path = CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
            let slave = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&path)
                .expect("open the pty slave");
            (master, slave)
        }
    }

    #[test]
    fn revents_of_a_dead_descriptor() {
        assert_eq!(hang_up_of(0), None);
        assert_eq!(hang_up_of(libc::POLLIN | libc::POLLOUT), None);
        assert_eq!(hang_up_of(libc::POLLIN | libc::POLLHUP), Some("hung up"));
        // What a hung-up terminal reports.
        assert_eq!(
            hang_up_of(libc::POLLIN | libc::POLLOUT | libc::POLLERR | libc::POLLHUP),
            Some("hung up")
        );
        assert_eq!(hang_up_of(libc::POLLOUT | libc::POLLERR), Some("failed"));
        assert_eq!(hang_up_of(libc::POLLNVAL), Some("is closed"));
    }

    #[test]
    fn a_terminal_whose_master_closes_is_gone() {
        let (master, mut slave) = pty();
        let fd = slave.as_raw_fd();
        assert_eq!(dead_fd(fd), None);
        assert_eq!(wait_input(fd, Duration::ZERO), Ready::Idle);
        // A line typed on the terminal (it is in canonical mode).
        File::from(master.try_clone().expect("dup the master"))
            .write_all(b"q\n")
            .expect("type a key");
        assert_eq!(wait_input(fd, Duration::from_secs(5)), Ready::Input);
        // The terminal emulator goes away: the slave is hung up.
        drop(master);
        assert_eq!(dead_fd(fd), Some("hung up"));
        assert_eq!(
            wait_input(fd, Duration::from_secs(5)),
            Ready::Gone("the terminal hung up (its input)".into())
        );
        // Writes to it fail, as the TUI's draws would.
        assert!(slave.write_all(b"x").is_err());
    }
}
