//! `/proc/kallsyms`: which functions exist, where `vmemmap_base` is, and
//! turning kernel addresses into `symbol+offset`.

use std::{collections::HashMap, fs, path::Path};

use anyhow::{Context as _, Result, bail};

/// Offsets beyond this are not taken as inside the preceding symbol.
const MAX_FUNCTION_SIZE: u64 = 1 << 20;

/// Parsed kallsyms.
#[derive(Debug, Default, Clone)]
pub struct Kallsyms {
    /// name → address (first seen), every symbol type.
    by_name: HashMap<String, u64>,
    /// Text symbols sorted by address, for symbolization.
    text: Vec<(u64, String)>,
    /// Names with a compiler suffix (`foo.isra.0`), by base name.
    clones: HashMap<String, Vec<String>>,
    /// address → name (first seen), every symbol type, for exact lookups.
    exact: HashMap<u64, String>,
    /// Starts of the BPF symbols added after attaching (see
    /// [`Kallsyms::add_bpf_symbols`]).
    bpf: std::collections::HashSet<u64>,
}

/// How far past a BPF symbol that is the last one listed an address is still
/// taken as inside it: a trampoline image is one page. A program's image can
/// be longer, but its frame is the innermost one, which stacks leave out
/// whether it is named or not.
const MAX_BPF_IMAGE: u64 = 4096;

impl Kallsyms {
    /// Reads `/proc/kallsyms`. Fails when every address reads as zero (not root,
    /// or `kptr_restrict` hides them).
    pub fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let k = Self::parse(&text);
        if k.by_name.is_empty() {
            bail!("{} lists no symbols", path.display());
        }
        if k.text.is_empty() {
            bail!(
                "{} shows every address as 0: run refwatch as root, and check /proc/sys/kernel/kptr_restrict (2 hides addresses even from root)",
                path.display()
            );
        }
        Ok(k)
    }

    /// Parses kallsyms text.
    pub fn parse(text: &str) -> Self {
        let mut k = Self::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            k.by_name.entry(name.to_string()).or_insert(addr);
            if addr != 0 {
                k.exact.entry(addr).or_insert_with(|| name.to_string());
            }
            if let Some((base, _)) = name.split_once('.') {
                k.clones
                    .entry(base.to_string())
                    .or_default()
                    .push(name.to_string());
            }
            if addr != 0 && matches!(ty, "t" | "T") {
                k.text.push((addr, name.to_string()));
            }
        }
        k.text.sort_unstable();
        k
    }

    /// Adds the BPF symbols `path` lists now (`[bpf]`: programs and the
    /// trampolines attaching made), so the frames of refwatch's own
    /// trampolines in stacks are named (and left out by name) instead of
    /// unknown. Returns how many were added.
    pub fn add_bpf_symbols(&mut self, path: &Path) -> Result<usize> {
        let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let bpf: String = text
            .lines()
            .filter(|l| l.ends_with("[bpf]"))
            .flat_map(|l| [l, "\n"])
            .collect();
        let added = Self::parse(&bpf);
        let known: std::collections::HashSet<u64> = self.text.iter().map(|(a, _)| *a).collect();
        let mut n = 0;
        for (addr, name) in added.text {
            if known.contains(&addr) {
                continue;
            }
            self.exact.entry(addr).or_insert_with(|| name.clone());
            self.by_name.entry(name.clone()).or_insert(addr);
            self.text.push((addr, name));
            self.bpf.insert(addr);
            n += 1;
        }
        self.text.sort_unstable();
        Ok(n)
    }

    /// The symbol that starts exactly at `addr` (functions and data alike).
    pub fn name_at(&self, addr: u64) -> Option<&str> {
        self.exact.get(&addr).map(String::as_str)
    }

    /// Address of `name`, if listed with a non-zero address.
    pub fn address(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied().filter(|a| *a != 0)
    }

    /// Whether `name` is listed under its exact name.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Compiler clones of `name` (`name.isra.0`, `name.constprop.0`, …).
    pub fn clones(&self, name: &str) -> &[String] {
        self.clones.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `symbol+0xoff` for a kernel text address; `None` when it is outside
    /// every known symbol.
    pub fn symbolize(&self, addr: u64) -> Option<String> {
        let idx = self.text.partition_point(|(a, _)| *a <= addr);
        // Before the first or after the last symbol: unknown, unless the
        // last is a BPF image that holds the address.
        if idx == 0 {
            return None;
        }
        let (start, name) = &self.text[idx - 1];
        let off = addr - start;
        let last = idx == self.text.len();
        if off > MAX_FUNCTION_SIZE || (last && !(self.bpf.contains(start) && off < MAX_BPF_IMAGE)) {
            return None;
        }
        Some(format!("{name}+{off:#x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff81234000 T free_zone_device_folio
ffffffff81234100 t gup_put_folio
ffffffff81234200 t dax_folio_put.isra.0
ffffffff82000000 D vmemmap_base
ffffffffc0000000 t dmirror_devmem_free\t[test_hmm]
ffffffffc0000400 t dmirror_fops_open\t[test_hmm]
";

    #[test]
    fn bpf_symbols_added_after_attaching_name_their_frames() -> Result<()> {
        let mut k = Kallsyms::parse(SAMPLE);
        let tramp = 0xffff_ffff_c000_8000u64;
        assert_eq!(k.symbolize(tramp + 0x5e), None);
        let dir =
            std::env::temp_dir().join(format!("refwatch-kallsyms-bpf-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let path = dir.join("kallsyms");
        fs::write(
            &path,
            format!(
                "{SAMPLE}ffffffffc0004000 t bpf_prog_0123456789abcdef_fexit_free\t[bpf]\n\
                 {tramp:x} t bpf_trampoline_6442491234\t[bpf]\n"
            ),
        )?;
        assert_eq!(k.add_bpf_symbols(&path)?, 2);
        assert_eq!(
            k.symbolize(tramp + 0x5e).as_deref(),
            Some("bpf_trampoline_6442491234+0x5e")
        );
        // The last symbol still bounds what it can hold.
        assert_eq!(k.symbolize(tramp + MAX_BPF_IMAGE), None);
        assert_eq!(k.address("bpf_trampoline_6442491234"), Some(tramp));
        // Adding again adds nothing twice.
        assert_eq!(k.add_bpf_symbols(&path)?, 0);
        fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn lookups() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.address("vmemmap_base"), Some(0xffff_ffff_8200_0000));
        assert!(k.has("gup_put_folio"));
        assert!(!k.has("dax_folio_put"));
        assert_eq!(
            k.clones("dax_folio_put"),
            ["dax_folio_put.isra.0".to_string()]
        );
        assert_eq!(
            k.symbolize(0xffff_ffff_8123_4010).as_deref(),
            Some("free_zone_device_folio+0x10")
        );
        assert_eq!(k.symbolize(0xffff_ffff_8000_0000), None);
        // Far past a symbol, or past the last one: a BPF program, not kernel text.
        assert_eq!(k.symbolize(0xffff_ffff_8123_4100 + (2 << 20)), None);
        assert_eq!(k.symbolize(0xffff_ffff_c100_0000), None);
        assert_eq!(
            k.symbolize(0xffff_ffff_c000_0004).as_deref(),
            Some("dmirror_devmem_free+0x4")
        );
    }

    #[test]
    fn hidden_addresses_are_refused() {
        let dir = std::env::temp_dir().join(format!("refwatch-kallsyms-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join("kallsyms");
        fs::write(
            &p,
            "0000000000000000 T _stext\n0000000000000000 T free_zone_device_folio\n",
        )
        .expect("write");
        let err = Kallsyms::read(&p).expect_err("zero addresses must be refused");
        assert!(err.to_string().contains("kptr_restrict"), "{err}");
        fs::remove_dir_all(&dir).ok();
    }
}
