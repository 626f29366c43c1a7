//! The running kernel's layout, read from its BTF and kallsyms, for the
//! kernel programs (`KernelLayout`). Nothing about struct layout is compiled in.

use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use btf_rs::{Btf, BtfType, Type};
use fallible_iterator::FallibleIterator as _;
use refwatch_common::{KIND_SLOTS, KernelLayout, pgmap};

/// Default vmemmap start on x86_64 with 4-level paging, used only when the
/// kernel has no `vmemmap_base` variable (no memory KASLR).
const VMEMMAP_START_4LEVEL: u64 = 0xffff_ea00_0000_0000;

/// The kernel's BTF, with lookups refwatch needs.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    /// Reads `/sys/kernel/btf/vmlinux` (or another file, for tests).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!(
                "{} does not exist: this kernel was built without BTF (CONFIG_DEBUG_INFO_BTF); refwatch needs it to find struct offsets",
                path.display()
            );
        }
        let btf = Btf::from_file(path).map_err(|e| anyhow!("parse BTF {}: {e}", path.display()))?;
        Ok(Self { btf })
    }

    fn structs(&self, name: &str) -> Result<Vec<btf_rs::Struct>> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|e| anyhow!("BTF lookup {name}: {e}"))?;
        Ok(types
            .into_iter()
            .filter_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .collect())
    }

    /// `struct name`, the definition with members.
    pub fn struct_def(&self, name: &str) -> Result<btf_rs::Struct> {
        self.structs(name)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("struct {name} not in this kernel's BTF"))
    }

    /// Byte offset of `member` in `st`, looking through anonymous structs and
    /// unions. `None` when there is no such member.
    pub fn member_offset(&self, st: &btf_rs::Struct, member: &str) -> Option<u32> {
        for m in &st.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            if name == member {
                return Some(m.bit_offset() / 8);
            }
            if name.is_empty() {
                let inner = match self.btf.resolve_chained_type(m) {
                    Ok(Type::Struct(s)) | Ok(Type::Union(s)) => s,
                    _ => continue,
                };
                if let Some(off) = self.member_offset(&inner, member) {
                    return Some(m.bit_offset() / 8 + off);
                }
            }
        }
        None
    }

    /// Offset of `st.member`, or an error naming both.
    pub fn offset(&self, st_name: &str, member: &str) -> Result<u32> {
        let st = self.struct_def(st_name)?;
        self.member_offset(&st, member)
            .ok_or_else(|| anyhow!("struct {st_name} has no member {member} in this kernel's BTF"))
    }

    /// Values of `enum name`.
    pub fn enum_values(&self, name: &str) -> Result<HashMap<String, i64>> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|e| anyhow!("BTF lookup {name}: {e}"))?;
        for t in types {
            if let Type::Enum(e) = t {
                let mut out = HashMap::new();
                for m in &e.members {
                    let n = self.btf.resolve_name(m).unwrap_or_default();
                    let v = if e.is_signed() {
                        i64::from(m.val() as i32)
                    } else {
                        i64::from(m.val())
                    };
                    out.insert(n, v);
                }
                return Ok(out);
            }
        }
        bail!("enum {name} not in this kernel's BTF")
    }

    /// Number of elements of the array member `member` of `st_name`.
    pub fn array_len(&self, st_name: &str, member: &str) -> Result<u32> {
        let st = self.struct_def(st_name)?;
        for m in &st.members {
            if self.btf.resolve_name(m).unwrap_or_default() == member
                && let Ok(Type::Array(a)) = self.btf.resolve_chained_type(m)
            {
                return Ok(a.len() as u32);
            }
        }
        bail!("{st_name}.{member} is not an array in this kernel's BTF")
    }

    /// Offset of the first of `members` that struct `st_name` has, 0 when
    /// the struct or all of them are missing (for optional fields).
    pub fn optional_offset(&self, st_name: &str, members: &[&str]) -> u32 {
        self.struct_def(st_name)
            .ok()
            .and_then(|st| members.iter().find_map(|m| self.member_offset(&st, m)))
            .unwrap_or(0)
    }

    /// The value of the enumerator `name` of any enum, anonymous ones
    /// included (which [`Self::enum_values`] cannot name): a scan of every
    /// type, stopped at the first match.
    pub fn enumerator(&self, name: &str) -> Option<i64> {
        let mut types = self.btf.type_iter();
        while let Ok(Some(t)) = types.next() {
            let Type::Enum(e) = t else {
                continue;
            };
            for m in &e.members {
                if self.btf.resolve_name(m).is_ok_and(|n| n == name) {
                    return Some(if e.is_signed() {
                        i64::from(m.val() as i32)
                    } else {
                        i64::from(m.val())
                    });
                }
            }
        }
        None
    }

    /// Whether BTF has a type (any kind) called `name`.
    pub fn has_type(&self, name: &str) -> bool {
        self.btf
            .resolve_types_by_name(name)
            .is_ok_and(|t| !t.is_empty())
    }

    /// The parameter types of function `name` as C-ish strings
    /// (`struct page *`, `int`, …); `None` when BTF has no such function.
    pub fn func_params(&self, name: &str) -> Option<Vec<String>> {
        let types = self.btf.resolve_types_by_name(name).ok()?;
        for t in types {
            if let Type::Func(f) = t {
                let Ok(Type::FuncProto(proto)) = self.btf.resolve_chained_type(&f) else {
                    continue;
                };
                let mut out = Vec::new();
                for p in &proto.parameters {
                    out.push(self.type_string(p));
                }
                return Some(out);
            }
        }
        None
    }

    fn type_string(&self, t: &dyn BtfType) -> String {
        let mut stars = 0;
        let mut cur = match self.btf.resolve_chained_type(t) {
            Ok(c) => c,
            Err(_) => return "void".into(),
        };
        loop {
            match &cur {
                Type::Ptr(p) => {
                    stars += 1;
                    cur = match self.btf.resolve_chained_type(p) {
                        Ok(c) => c,
                        Err(_) => return format!("void {}", "*".repeat(stars)),
                    };
                }
                Type::Const(v) | Type::Volatile(v) | Type::Restrict(v) => {
                    cur = match self.btf.resolve_chained_type(v) {
                        Ok(c) => c,
                        Err(_) => return "void".into(),
                    };
                }
                Type::Struct(s) => {
                    let n = self.btf.resolve_name(s).unwrap_or_default();
                    return with_stars(&format!("struct {n}"), stars);
                }
                Type::Union(s) => {
                    let n = self.btf.resolve_name(s).unwrap_or_default();
                    return with_stars(&format!("union {n}"), stars);
                }
                Type::Fwd(f) => {
                    let n = self.btf.resolve_name(f).unwrap_or_default();
                    return with_stars(&format!("struct {n}"), stars);
                }
                other => {
                    let n = other
                        .as_btf_type()
                        .and_then(|b| self.btf.resolve_name(b).ok())
                        .unwrap_or_else(|| other.name().to_string());
                    return with_stars(&n, stars);
                }
            }
        }
    }
}

fn with_stars(base: &str, stars: usize) -> String {
    if stars == 0 {
        base.to_string()
    } else {
        format!("{base} {}", "*".repeat(stars))
    }
}

/// `ZONES_WIDTH` for `MAX_NR_ZONES` zones (include/linux/page-flags-layout.h).
pub fn zones_width(max_nr_zones: u32) -> u32 {
    match max_nr_zones {
        0..=1 => 0,
        2 => 1,
        3..=4 => 2,
        _ => 3,
    }
}

/// `NODES_SHIFT` from the zonelist size: `MAX_NUMNODES * MAX_NR_ZONES + 1` refs.
pub fn nodes_shift(zonerefs: u32, max_nr_zones: u32) -> Result<u32> {
    if max_nr_zones == 0 || zonerefs == 0 {
        bail!("zonelist of {zonerefs} refs with {max_nr_zones} zones");
    }
    let nodes = (zonerefs - 1) / max_nr_zones;
    if !nodes.is_power_of_two() {
        bail!("MAX_NUMNODES {nodes} (from {zonerefs} zonerefs) is not a power of two");
    }
    Ok(nodes.trailing_zeros())
}

/// Maps the kernel's `enum memory_type` to refwatch's stable values.
pub fn memtype_table(values: &HashMap<String, i64>) -> [u32; 8] {
    let mut table = [pgmap::UNKNOWN; 8];
    for (name, stable) in [
        ("MEMORY_DEVICE_PRIVATE", pgmap::PRIVATE),
        ("MEMORY_DEVICE_COHERENT", pgmap::COHERENT),
        ("MEMORY_DEVICE_FS_DAX", pgmap::FSDAX),
        ("MEMORY_DEVICE_GENERIC", pgmap::GENERIC),
        ("MEMORY_DEVICE_PCI_P2PDMA", pgmap::P2PDMA),
    ] {
        if let Some(&v) = values.get(name)
            && (0..8).contains(&v)
        {
            table[v as usize] = stable;
        }
    }
    table
}

/// What refwatch learned of the running kernel's layout, with how.
#[derive(Debug, Clone)]
pub struct Layout {
    pub raw: KernelLayout,
    /// Where the pgmap pointer was found (`page.pgmap` or `folio.pgmap`).
    pub pgmap_from: &'static str,
    /// How the vmemmap base is found.
    pub vmemmap_from: String,
    /// Where `FOLL_PIN` came from.
    pub foll_pin_from: &'static str,
}

/// Builds the layout from BTF and kallsyms.
pub fn resolve(
    btf: &KernelBtf,
    kallsyms: &crate::symbols::kallsyms::Kallsyms,
    stack_frames: [u8; KIND_SLOTS],
    ram_holders: bool,
) -> Result<Layout> {
    let page = btf.struct_def("page").context("struct page")?;
    let size = page.size() as u64;
    let need = |m: &str| {
        btf.member_offset(&page, m)
            .ok_or_else(|| anyhow!("struct page has no member {m} in this kernel's BTF"))
    };
    let off_flags = need("flags")?;
    // `compound_head` until 7.x, then `compound_info` (a head pointer or, with
    // HVO, a mask; both with bit 0 set on tail pages).
    let off_compound_head = btf
        .member_offset(&page, "compound_head")
        .or_else(|| btf.member_offset(&page, "compound_info"))
        .ok_or_else(|| {
            anyhow!("struct page has neither compound_head nor compound_info in this kernel's BTF")
        })?;
    let off_refcount = need("_refcount")?;
    let off_mapcount = need("_mapcount")?;
    let (off_pgmap, pgmap_from) = match btf.member_offset(&page, "pgmap") {
        Some(o) => (o, "page.pgmap"),
        None => (btf.offset("folio", "pgmap")?, "folio.pgmap"),
    };
    let off_pgmap_type = btf.offset("dev_pagemap", "type")?;
    let zones = btf.enum_values("zone_type")?;
    let max_nr_zones = *zones
        .get("__MAX_NR_ZONES")
        .ok_or_else(|| anyhow!("enum zone_type has no __MAX_NR_ZONES"))?
        as u32;
    let zone_device = *zones
        .get("ZONE_DEVICE")
        .ok_or_else(|| anyhow!("this kernel has no ZONE_DEVICE (CONFIG_ZONE_DEVICE is off): there are no device pages to watch"))?
        as u32;
    let zrefs = btf.array_len("zonelist", "_zonerefs")?;
    let nshift = nodes_shift(zrefs, max_nr_zones)?;
    let zwidth = zones_width(max_nr_zones);
    let memtypes = btf.enum_values("memory_type")?;
    // Block I/O pages (only used where a kernel drops them without a hook).
    let bio = btf.struct_def("bio").ok();
    let bvec = btf.struct_def("bio_vec").ok();
    let (off_bio_io_vec, off_bio_vcnt) = bio
        .as_ref()
        .and_then(|b| {
            Some((
                btf.member_offset(b, "bi_io_vec")?,
                btf.member_offset(b, "bi_vcnt")?,
            ))
        })
        .unwrap_or((0, 0));
    let (bvec_size, off_bv_page, off_bv_len, off_bv_offset) = bvec
        .as_ref()
        .and_then(|v| {
            Some((
                v.size() as u32,
                btf.member_offset(v, "bv_page")?,
                btf.member_offset(v, "bv_len")?,
                btf.member_offset(v, "bv_offset")?,
            ))
        })
        .unwrap_or((0, 0, 0, 0));
    // Page map owner and range; migration arguments. Optional: without them
    // events carry no owner and migrations no direction.
    let off_pgmap_ops = btf.optional_offset("dev_pagemap", &["ops"]);
    let off_pgmap_range = btf.optional_offset("dev_pagemap", &["range"]);
    let off_ops_free = btf.optional_offset("dev_pagemap_ops", &["folio_free", "page_free"]);
    let off_mv_flags = btf.optional_offset("migrate_vma", &["flags"]);
    let off_mv_fault_page = btf.optional_offset("migrate_vma", &["fault_page"]);
    // Batch drops (`folios_put_refs`); `nr` is the first member, so 0 is a
    // real offset there: the batch hook checks `folios`.
    let off_fbatch_nr = btf.optional_offset("folio_batch", &["nr"]);
    let off_fbatch_folios = btf.optional_offset("folio_batch", &["folios"]);
    let select_system = btf
        .enum_values("migrate_vma_direction")
        .ok()
        .and_then(|v| v.get("MIGRATE_VMA_SELECT_SYSTEM").copied())
        .unwrap_or(1) as u32;
    let (foll_pin, foll_pin_from) = foll_pin(btf);
    let pg_head = *btf
        .enum_values("pageflags")?
        .get("PG_head")
        .ok_or_else(|| anyhow!("enum pageflags has no PG_head"))? as u32;
    let (vmemmap_base_addr, vmemmap_from) = match kallsyms.address("vmemmap_base") {
        Some(a) => (a, "kallsyms vmemmap_base (read in the kernel)".to_string()),
        None => (
            0,
            format!("no vmemmap_base symbol: assuming the fixed start {VMEMMAP_START_4LEVEL:#x}"),
        ),
    };
    Ok(Layout {
        raw: KernelLayout {
            vmemmap_base_addr,
            vmemmap_start: VMEMMAP_START_4LEVEL,
            page_struct_size: size,
            off_flags,
            off_compound_head,
            off_refcount,
            off_mapcount,
            off_pgmap,
            off_pgmap_type,
            zones_shift: 64 - nshift - zwidth,
            zones_mask: (1u32 << zwidth) - 1,
            zone_device,
            off_bio_io_vec,
            off_bio_vcnt,
            bvec_size,
            off_bv_page,
            off_bv_len,
            off_bv_offset,
            off_pgmap_ops,
            off_ops_free,
            off_mv_flags,
            off_mv_fault_page,
            ram_holders: u32::from(ram_holders),
            select_system,
            off_pgmap_range,
            off_fbatch_nr,
            off_fbatch_folios,
            stack_frames,
            foll_pin,
            pg_head,
            memtype: memtype_table(&memtypes),
            // The user's filters (`--pfn`, …) are set after: none by default.
            ..KernelLayout::empty()
        },
        pgmap_from,
        vmemmap_from,
        foll_pin_from,
    })
}

/// `FOLL_PIN` before 6.5, a `#define` (so not in BTF), since 5.7.
const FOLL_PIN_DEFINE: u32 = 0x40000;

/// GUP's `FOLL_PIN` bit, and where it came from. An enumerator of an
/// anonymous enum since 6.5 (`1 << 19` on 6.12 and 7.2), a `#define`
/// before, which BTF does not carry: the GUP grab hooks tell pins from
/// gets by it at their exit.
fn foll_pin(btf: &KernelBtf) -> (u32, &'static str) {
    match btf.enumerator("FOLL_PIN") {
        Some(v) if v > 0 && (v as u64).is_power_of_two() => (v as u32, "BTF"),
        _ => (
            FOLL_PIN_DEFINE,
            "#define of kernels before 6.5 (not in BTF)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_bits_of_distro_kernels() {
        // Debian 6.1/6.12: 5 zones, MAX_NUMNODES 1024 → 5121 zonerefs.
        assert_eq!(zones_width(5), 3);
        assert_eq!(nodes_shift(5121, 5).ok(), Some(10));
        assert_eq!(64 - 10 - zones_width(5), 51);
        // A NUMA=n kernel: one node.
        assert_eq!(nodes_shift(6, 5).ok(), Some(0));
        assert!(nodes_shift(5120, 5).is_err());
        assert!(nodes_shift(0, 5).is_err());
    }

    #[test]
    fn memtype_table_follows_the_enum() {
        let mut v = HashMap::new();
        v.insert("MEMORY_DEVICE_PRIVATE".to_string(), 1);
        v.insert("MEMORY_DEVICE_COHERENT".to_string(), 2);
        v.insert("MEMORY_DEVICE_FS_DAX".to_string(), 3);
        v.insert("MEMORY_DEVICE_GENERIC".to_string(), 4);
        v.insert("MEMORY_DEVICE_PCI_P2PDMA".to_string(), 5);
        let t = memtype_table(&v);
        assert_eq!(t[3], pgmap::FSDAX);
        assert_eq!(t[2], pgmap::COHERENT);
        // 5.15 numbering: no COHERENT, FS_DAX = 2.
        let mut old = HashMap::new();
        old.insert("MEMORY_DEVICE_PRIVATE".to_string(), 1);
        old.insert("MEMORY_DEVICE_FS_DAX".to_string(), 2);
        assert_eq!(memtype_table(&old)[2], pgmap::FSDAX);
        assert_eq!(memtype_table(&old)[0], pgmap::UNKNOWN);
    }

    /// A BTF object with one anonymous enum of `members` (`name`, value),
    /// as the kernel's (6.5+) holds GUP's internal flags.
    fn btf_with_anonymous_enum(members: &[(&str, u32)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut types = Vec::new();
        // BTF_KIND_ENUM (6), vlen members, 4 bytes, no name.
        types.extend_from_slice(&0u32.to_le_bytes());
        types.extend_from_slice(&((6u32 << 24) | members.len() as u32).to_le_bytes());
        types.extend_from_slice(&4u32.to_le_bytes());
        for (name, val) in members {
            types.extend_from_slice(&(strings.len() as u32).to_le_bytes());
            types.extend_from_slice(&val.to_le_bytes());
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.push(1); // version
        out.push(0); // flags
        out.extend_from_slice(&24u32.to_le_bytes()); // header length
        out.extend_from_slice(&0u32.to_le_bytes()); // types at
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes()); // strings at
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    fn open_bytes(bytes: &[u8]) -> KernelBtf {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), bytes).expect("write BTF");
        KernelBtf::open(f.path()).expect("parse BTF")
    }

    #[test]
    fn foll_pin_comes_from_btf_or_the_old_define() {
        // 6.12 and 7.2: an enumerator of an anonymous enum, 1 << 19.
        let btf = open_bytes(&btf_with_anonymous_enum(&[
            ("FOLL_TOUCH", 1 << 10),
            ("FOLL_PIN", 1 << 19),
        ]));
        assert_eq!(btf.enumerator("FOLL_PIN"), Some(1 << 19));
        assert_eq!(btf.enumerator("FOLL_NOPE"), None);
        assert_eq!(foll_pin(&btf), (1 << 19, "BTF"));
        // 6.1: a #define, not in BTF.
        let old = open_bytes(&btf_with_anonymous_enum(&[("PG_locked", 0)]));
        assert_eq!(foll_pin(&old).0, 0x40000);
        // Not a single bit: not trusted either.
        let odd = open_bytes(&btf_with_anonymous_enum(&[("FOLL_PIN", 3)]));
        assert_eq!(foll_pin(&odd).0, 0x40000);
    }
}
