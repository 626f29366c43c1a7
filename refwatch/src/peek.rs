//! Reading device pages' state from the kernel on demand (the `peek`
//! program on refwatch's own `getppid`), and the device memory ranges to
//! read at attach: a snapshot of the pages referenced before refwatch
//! started, and a page's state again after its events were lost.

use std::ops::Range;

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Btf, Ebpf,
    maps::{Array, MapData},
    programs::{FEntry, KProbe},
};
use refwatch_common::{PEEK_PAGES, PagePeek, PeekBatch, peek};

use crate::{
    plan::catalog::{PAGE_READER_FENTRY, PAGE_READER_KPROBE},
    symbols::kallsyms::Kallsyms,
};

/// The syscall whose entry runs the peek program (x86-64 names first).
const TRIGGER: &[&str] = &["__x64_sys_getppid", "__se_sys_getppid", "sys_getppid"];

/// Reads pages' state through the kernel's peek program.
pub struct Peeker {
    req: Array<MapData, u64>,
    out: Array<MapData, PeekBatch>,
    /// How the program is attached, for the log.
    pub how: String,
}

impl Peeker {
    /// Attaches the peek program (fentry where it works, else a kprobe,
    /// or only a kprobe with `kprobe_only`) and takes its maps.
    pub fn attach(ebpf: &mut Ebpf, syms: &Kallsyms, kprobe_only: bool) -> Result<Self> {
        let symbol = TRIGGER
            .iter()
            .find(|s| syms.has(s))
            .ok_or_else(|| anyhow!("no getppid syscall entry in this kernel's symbols"))?;
        let fentry_err = if kprobe_only {
            Some(anyhow!("kprobe mode"))
        } else {
            attach_fentry(ebpf, symbol).err()
        };
        let how = match fentry_err {
            None => format!("fentry on {symbol}"),
            Some(fe) => {
                attach_kprobe(ebpf, symbol).map_err(|ke| {
                    anyhow!("attach the page reader on {symbol}: fentry: {fe:#}; kprobe: {ke:#}")
                })?;
                format!("kprobe on {symbol}")
            }
        };
        let req = Array::try_from(
            ebpf.take_map("PEEK_REQ")
                .ok_or_else(|| anyhow!("PEEK_REQ missing from the kernel object"))?,
        )
        .context("PEEK_REQ is not an array")?;
        let out = Array::try_from(
            ebpf.take_map("PEEK_OUT")
                .ok_or_else(|| anyhow!("PEEK_OUT missing from the kernel object"))?,
        )
        .context("PEEK_OUT is not an array")?;
        let mut p = Self { req, out, how };
        p.req
            .set(peek::TGID, u64::from(std::process::id()), 0)
            .context("write PEEK_REQ")?;
        Ok(p)
    }

    /// The state of `count` (at most [`PEEK_PAGES`]) PFNs from `first`.
    pub fn read(&mut self, first: u64, count: usize) -> Result<Vec<PagePeek>> {
        let count = count.min(PEEK_PAGES);
        self.req
            .set(peek::FIRST, first, 0)
            .context("write PEEK_REQ")?;
        self.req
            .set(peek::COUNT, count as u64, 0)
            .context("write PEEK_REQ")?;
        // getppid: the syscall the peek program runs on.
        let _ = std::os::unix::process::parent_id();
        let batch = self.out.get(&0, 0).context("read PEEK_OUT")?;
        Ok(batch.pages[..count].to_vec())
    }

    /// The state of every PFN in `range`, batch by batch.
    pub fn read_range(&mut self, range: Range<u64>) -> Result<Vec<(u64, PagePeek)>> {
        let mut out = Vec::new();
        let mut pfn = range.start;
        while pfn < range.end {
            let n = ((range.end - pfn) as usize).min(PEEK_PAGES);
            for (i, p) in self.read(pfn, n)?.into_iter().enumerate() {
                out.push((pfn + i as u64, p));
            }
            pfn += n as u64;
        }
        Ok(out)
    }

    /// Whether any of the first, middle and last PFN of `range` is a device
    /// page (a device page map covers whole ranges).
    pub fn has_device_pages(&mut self, range: &Range<u64>) -> Result<bool> {
        if range.is_empty() {
            return Ok(false);
        }
        let probes = [
            range.start,
            range.start + (range.end - range.start) / 2,
            range.end - 1,
        ];
        for pfn in probes {
            if self.read(pfn, 1)?.first().is_some_and(|p| p.valid != 0) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn attach_fentry(ebpf: &mut Ebpf, symbol: &str) -> Result<()> {
    let btf = Btf::from_sys_fs().context("kernel BTF")?;
    let p: &mut FEntry = ebpf
        .program_mut(PAGE_READER_FENTRY)
        .ok_or_else(|| anyhow!("{PAGE_READER_FENTRY} missing"))?
        .try_into()?;
    p.load(symbol, &btf)?;
    p.attach()?;
    Ok(())
}

fn attach_kprobe(ebpf: &mut Ebpf, symbol: &str) -> Result<()> {
    let p: &mut KProbe = ebpf
        .program_mut(PAGE_READER_KPROBE)
        .ok_or_else(|| anyhow!("{PAGE_READER_KPROBE} missing"))?
        .try_into()?;
    p.load()?;
    p.attach(symbol, 0)?;
    Ok(())
}

/// Ranges of at most `max` PFNs covering the sorted `pfns`, each from one
/// of them to another less than `max` after it.
pub fn runs(pfns: &[u64], max: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &pfn in pfns {
        match out.last_mut() {
            Some(r) if pfn >= r.start && pfn < r.start + max => r.end = r.end.max(pfn + 1),
            _ => out.push(pfn..pfn + 1),
        }
    }
    out
}

/// PFN ranges of `/proc/iomem` that may hold device pages: every range
/// (at any depth) that is not system RAM, kernel text or a firmware
/// reservation, of at most `max_pages` pages, without repeats. Which of
/// them really are ZONE_DEVICE the kernel tells ([`Peeker::has_device_pages`]).
pub fn iomem_candidates(text: &str, max_pages: u64) -> Vec<Range<u64>> {
    const SKIP: &[&str] = &[
        "System RAM",
        "Kernel code",
        "Kernel data",
        "Kernel rodata",
        "Kernel bss",
        "Reserved",
        "reserved",
        "ACPI Tables",
        "ACPI Non-volatile Storage",
    ];
    let mut out: Vec<Range<u64>> = Vec::new();
    for line in text.lines() {
        let Some((span, name)) = line.trim_start().split_once(" : ") else {
            continue;
        };
        if SKIP.iter().any(|s| name.trim() == *s) {
            continue;
        }
        let Some((a, b)) = span.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        // Whole pages inside the range.
        let first = a.div_ceil(4096);
        let end = b.saturating_add(1) / 4096;
        if end <= first || end - first > max_pages || a < 1 << 20 {
            continue;
        }
        if !out.iter().any(|r| r.start <= first && end <= r.end) {
            out.push(first..end);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_pfns_are_read_together() {
        assert_eq!(runs(&[1, 2, 3, 10, 300, 301], 256), vec![1..11, 300..302]);
        assert_eq!(runs(&[0, 255, 256], 256), vec![0..256, 256..257]);
        assert!(runs(&[], 256).is_empty());
    }

    #[test]
    fn iomem_candidates_leave_out_ram_and_repeats() {
        // Abridged from the lab guest (memmap=512M!1G and test_hmm).
        let iomem = "\
00000000-00000fff : Reserved
00100000-3fffffff : System RAM
  01000000-01ffffff : Kernel code
40000000-5fffffff : Persistent Memory (legacy)
  40000000-5fffffff : namespace0.0
60000000-7ffdffff : System RAM
fd000000-fdffffff : 0000:00:02.0
7ffff0000000-7fffffffffff : hmm_dmirror
";
        let r = iomem_candidates(iomem, 1 << 24);
        assert_eq!(
            r,
            vec![0x40000..0x60000, 0xfd000..0xfe000, 0x7ffff0000..0x800000000]
        );
        // Bounded: a huge window is left out.
        assert_eq!(iomem_candidates(iomem, 0x8000), vec![0xfd000..0xfe000]);
    }
}
