//! Hardware data breakpoints through `perf_event_open`: one event per CPU
//! on a kernel address, with the watch program attached.
//!
//! aya's own `PerfEvent::attach` asks for `precise_ip` on breakpoints, and
//! the kernel refuses a program that walks stacks on such an event unless
//! it also samples call chains (`EPROTO`); the events are opened here
//! without it, disabled, given the program (`PERF_EVENT_IOC_SET_BPF`) and
//! then enabled. They live as long as their file descriptors: closing them
//! (or the process ending, however it ends) frees the debug registers.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// `PERF_TYPE_BREAKPOINT`.
const PERF_TYPE_BREAKPOINT: u32 = 5;
/// `HW_BREAKPOINT_W`.
const HW_BREAKPOINT_W: u32 = 2;
/// `HW_BREAKPOINT_LEN_4`: `_refcount` is an `atomic_t`.
const HW_BREAKPOINT_LEN_4: u64 = 4;
/// `PERF_ATTR_SIZE_VER1`: up to `bp_len`.
const ATTR_SIZE: u32 = 72;
/// `attr.disabled`.
const FLAG_DISABLED: u64 = 1 << 0;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `PERF_EVENT_IOC_ENABLE` = `_IO('$', 0)`.
const IOC_ENABLE: libc::c_ulong = 0x2400;
/// `PERF_EVENT_IOC_SET_BPF` = `_IOW('$', 8, __u32)`.
const IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// The first 72 bytes of `struct perf_event_attr` (`PERF_ATTR_SIZE_VER1`):
/// all a breakpoint needs.
#[repr(C)]
#[derive(Default)]
struct Attr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    bp_addr: u64,
    bp_len: u64,
}
const _: () = assert!(std::mem::size_of::<Attr>() == ATTR_SIZE as usize);

/// [`why`] when every slot is taken: for now only (they free up).
pub const NO_SLOT: &str = "no free hardware breakpoint slot on this CPU (4 debug registers on x86, shared with debuggers and other watchers)";

/// Why a breakpoint could not be opened, in the user's words.
pub fn why(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => NO_SLOT.into(),
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV) => {
            "this kernel has no hardware breakpoints (CONFIG_HAVE_HW_BREAKPOINT) or this machine exposes none".into()
        }
        Some(libc::EACCES | libc::EPERM) => {
            "not allowed: a kernel-address breakpoint needs CAP_PERFMON or root (and perf_event_paranoid, lockdown)".into()
        }
        Some(libc::EINVAL) => "the kernel refused the breakpoint (address or length not accepted)".into(),
        _ => format!("perf_event_open: {e}"),
    }
}

/// Opens a disabled write breakpoint on the 4 bytes at kernel address
/// `addr`, for every task on `cpu`, firing at every write.
pub fn open(addr: u64, cpu: u32) -> io::Result<OwnedFd> {
    let attr = Attr {
        type_: PERF_TYPE_BREAKPOINT,
        size: ATTR_SIZE,
        sample_period: 1,
        flags: FLAG_DISABLED,
        wakeup_events: 1,
        bp_type: HW_BREAKPOINT_W,
        bp_addr: addr,
        bp_len: HW_BREAKPOINT_LEN_4,
        ..Attr::default()
    };
    // SAFETY: `attr` is a valid `perf_event_attr` prefix of `size` bytes;
    // pid -1 with a CPU is every task on that CPU; no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &raw const attr,
            -1 as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just gave us and nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches the program `prog_fd` to the event `event` and enables it.
pub fn attach(event: &OwnedFd, prog_fd: i32) -> io::Result<()> {
    // SAFETY: ioctls on a perf event descriptor we own, with an int argument.
    if unsafe { libc::ioctl(event.as_raw_fd(), IOC_SET_BPF as _, prog_fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above, without argument.
    if unsafe { libc::ioctl(event.as_raw_fd(), IOC_ENABLE as _, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many breakpoints can be opened on `addr` on `cpu` at once (up to
/// `max`), each closed again; or why not even one.
pub fn free_slots(addr: u64, cpu: u32, max: usize) -> Result<usize, String> {
    let mut held = Vec::new();
    while held.len() < max {
        match open(addr, cpu) {
            Ok(fd) => held.push(fd),
            Err(e) if held.is_empty() => return Err(why(&e)),
            Err(_) => break,
        }
    }
    Ok(held.len())
}
