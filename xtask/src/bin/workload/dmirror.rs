//! The HMM test driver's device (`/dev/hmm_dmirror0`): its ioctl interface
//! and what its SNAPSHOT bytes say about a page.

use std::{
    fs::{File, OpenOptions},
    io,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, ensure};
use rustix::{
    io::Errno,
    ioctl::{self, Opcode, Updater},
};

use crate::{
    report::Run,
    sys::{PAGE_SIZE, mapping::Mapping},
};

pub use uapi::DmirrorCmd;

/// True when a SNAPSHOT byte says the page is device-private memory of the
/// device asked.
pub fn is_device_local(perm: u8) -> bool {
    perm != uapi::PROT_ERROR && perm & 0xf0 == uapi::PROT_DEV_PRIVATE_LOCAL
}

/// A SNAPSHOT byte in words, e.g. `DEV_PRIVATE_LOCAL|W`.
pub fn describe_perm(perm: u8) -> String {
    if perm == uapi::PROT_ERROR {
        return "ERROR".to_owned();
    }
    let place = match perm & 0xf0 {
        0x00 => "SYS",
        uapi::PROT_ZERO => "ZERO",
        uapi::PROT_DEV_PRIVATE_LOCAL => "DEV_PRIVATE_LOCAL",
        uapi::PROT_DEV_PRIVATE_REMOTE => "DEV_PRIVATE_REMOTE",
        uapi::PROT_DEV_COHERENT_LOCAL => "DEV_COHERENT_LOCAL",
        uapi::PROT_DEV_COHERENT_REMOTE => "DEV_COHERENT_REMOTE",
        _ => "?",
    };
    let access = if perm & uapi::PROT_WRITE != 0 {
        "|W"
    } else if perm & uapi::PROT_READ != 0 {
        "|R"
    } else {
        "|NONE"
    };
    format!("{place}{access}")
}

/// The HMM test driver's ioctl interface (`lib/test_hmm_uapi.h`).
pub mod uapi {
    use rustix::ioctl::{Opcode, opcode};

    /// `struct hmm_dmirror_cmd`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub struct DmirrorCmd {
        /// (in) user address the device reads/writes.
        pub addr: u64,
        /// (in) user address data is copied to/from.
        pub ptr: u64,
        /// (in) pages.
        pub npages: u64,
        /// (out) pages copied.
        pub cpages: u64,
        /// (out) device page faults.
        pub faults: u64,
    }

    /// `_IOWR('H', nr, struct hmm_dmirror_cmd)`: every command of the driver.
    const fn iowr(nr: u8) -> Opcode {
        opcode::read_write::<DmirrorCmd>(b'H', nr)
    }

    pub const READ: Opcode = iowr(0x00);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const WRITE: Opcode = iowr(0x01);
    pub const MIGRATE_TO_DEV: Opcode = iowr(0x02);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const MIGRATE_TO_SYS: Opcode = iowr(0x03);
    pub const SNAPSHOT: Opcode = iowr(0x04);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const EXCLUSIVE: Opcode = iowr(0x05);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const CHECK_EXCLUSIVE: Opcode = iowr(0x06);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const RELEASE: Opcode = iowr(0x07);
    #[allow(dead_code, reason = "the whole interface, for later scenarios")]
    pub const FLAGS: Opcode = iowr(0x08);

    // SNAPSHOT bytes.
    pub const PROT_ERROR: u8 = 0xff;
    pub const PROT_READ: u8 = 0x01;
    pub const PROT_WRITE: u8 = 0x02;
    pub const PROT_ZERO: u8 = 0x10;
    pub const PROT_DEV_PRIVATE_LOCAL: u8 = 0x20;
    pub const PROT_DEV_PRIVATE_REMOTE: u8 = 0x30;
    pub const PROT_DEV_COHERENT_LOCAL: u8 = 0x40;
    pub const PROT_DEV_COHERENT_REMOTE: u8 = 0x50;
}

/// An open HMM test driver device. Closing it evicts every device page
/// still in use back to RAM (the driver scans its whole chunk).
#[derive(Debug)]
pub struct Dmirror {
    file: File,
    path: PathBuf,
}

impl Dmirror {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| {
                format!(
                    "open {} (needs a kernel with CONFIG_TEST_HMM, e.g. the lab's hmm-7.2)",
                    path.display()
                )
            })?;
        Ok(Dmirror {
            file,
            path: path.to_owned(),
        })
    }

    /// The ioctl `OP` (one of [`uapi`]'s) with `cmd`, retried on EINTR;
    /// returns the updated command.
    fn ioctl<const OP: Opcode>(&self, mut cmd: DmirrorCmd) -> io::Result<DmirrorCmd> {
        loop {
            // SAFETY: every opcode of `uapi` is an _IOWR on a
            // `struct hmm_dmirror_cmd`, which the driver reads and writes
            // back; the buffers it points at were sized by the caller.
            match unsafe { ioctl::ioctl(&self.file, Updater::<OP, DmirrorCmd>::new(&mut cmd)) } {
                Ok(()) => return Ok(cmd),
                Err(Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// The ioctl `OP` over the whole of `mapping` with a buffer of `out_len`
    /// bytes for the driver's output.
    fn over<const OP: Opcode>(
        &self,
        mapping: &Mapping,
        out_len: usize,
    ) -> io::Result<(DmirrorCmd, Vec<u8>)> {
        let mut out = vec![0u8; out_len];
        let cmd = DmirrorCmd {
            addr: mapping.addr() as u64,
            ptr: out.as_mut_ptr() as u64,
            npages: (mapping.len() / PAGE_SIZE) as u64,
            ..DmirrorCmd::default()
        };
        let cmd = self.ioctl::<OP>(cmd)?;
        Ok((cmd, out))
    }

    /// HMM_DMIRROR_MIGRATE_TO_DEV; the buffer holds the device's copy.
    pub fn migrate_to_dev(&self, mapping: &Mapping) -> io::Result<(DmirrorCmd, Vec<u8>)> {
        self.over::<{ uapi::MIGRATE_TO_DEV }>(mapping, mapping.len())
    }

    /// HMM_DMIRROR_READ: the device reads the buffer.
    pub fn read(&self, mapping: &Mapping) -> io::Result<(DmirrorCmd, Vec<u8>)> {
        self.over::<{ uapi::READ }>(mapping, mapping.len())
    }

    /// HMM_DMIRROR_SNAPSHOT: one `HMM_DMIRROR_PROT_*` byte per page.
    pub fn snapshot(&self, mapping: &Mapping) -> Result<Vec<u8>> {
        let pages = mapping.len() / PAGE_SIZE;
        let (cmd, perms) = self
            .over::<{ uapi::SNAPSHOT }>(mapping, pages)
            .context("HMM_DMIRROR_SNAPSHOT")?;
        ensure!(
            cmd.cpages == pages as u64,
            "HMM_DMIRROR_SNAPSHOT covered {} of {pages} pages",
            cmd.cpages
        );
        Ok(perms)
    }

    /// Closes the device (mark `device_closed`).
    pub fn close(self, run: &mut Run) -> Result<()> {
        let path = self.path.clone();
        drop(self);
        run.marks
            .mark("device_closed")
            .with_context(|| format!("after closing {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmm_ioctl_numbers_match_the_header() {
        // _IOWR('H', nr, struct hmm_dmirror_cmd) with a 40-byte struct.
        assert_eq!(size_of::<DmirrorCmd>(), 40);
        assert_eq!(uapi::READ, 0xc028_4800);
        assert_eq!(uapi::WRITE, 0xc028_4801);
        assert_eq!(uapi::MIGRATE_TO_DEV, 0xc028_4802);
        assert_eq!(uapi::MIGRATE_TO_SYS, 0xc028_4803);
        assert_eq!(uapi::SNAPSHOT, 0xc028_4804);
        assert_eq!(uapi::FLAGS, 0xc028_4808);
    }

    #[test]
    fn snapshot_bytes_read_as_words() {
        assert!(is_device_local(0x22));
        assert!(!is_device_local(0x32));
        assert!(!is_device_local(0xff));
        assert!(!is_device_local(0x02));
        assert_eq!(describe_perm(0x22), "DEV_PRIVATE_LOCAL|W");
        assert_eq!(describe_perm(0x02), "SYS|W");
        assert_eq!(describe_perm(0x01), "SYS|R");
        assert_eq!(describe_perm(0xff), "ERROR");
    }
}
