//! Reading `struct page` through the layout userspace handed us.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use refwatch_common::pgmap;

use crate::LAYOUT;

macro_rules! layout {
    ($field:ident) => {
        // SAFETY: `LAYOUT` is a plain global; the volatile read stops the
        // compiler from folding the value it had at compile time.
        unsafe { core::ptr::read_volatile(&raw const $crate::LAYOUT.$field) }
    };
}
pub(crate) use layout;

/// A ZONE_DEVICE page resolved from a `struct page *` or `struct folio *`.
pub struct DevicePage {
    /// Address of the head page (the folio); its `_refcount` is the folio's.
    pub head: u64,
    /// PFN of the head page.
    pub pfn: u64,
    /// Stable page-map type.
    pub pgmap_type: u32,
    /// The page map's free callback (or its ops), see `Event::owner`.
    pub owner: u64,
}

#[inline(always)]
pub fn read_u64(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.ok()
}

/// A plain load from `addr`.
///
/// # Safety
/// Only for addresses the verifier knows as BTF-typed kernel pointers plus a
/// constant (an fentry/fexit argument, a field of one): it turns such a load
/// into a fault-safe one and checks the offset against the type. Anything
/// else is rejected at load time, or is not a valid address.
#[inline(always)]
pub unsafe fn typed_load<T: Copy>(addr: u64) -> T {
    // SAFETY: as the caller promises; volatile keeps the load as written.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

#[inline(always)]
fn read_i32(addr: u64) -> Option<i32> {
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel(addr as *const i32) }.ok()
}

/// Resolves `ptr` if it is a ZONE_DEVICE page; `None` for every other page.
#[inline(always)]
pub fn device_page(ptr: u64) -> Option<DevicePage> {
    if ptr == 0 {
        return None;
    }
    let flags = read_u64(ptr + layout!(off_flags) as u64)?;
    let zone = (flags >> layout!(zones_shift)) & layout!(zones_mask) as u64;
    if zone != layout!(zone_device) as u64 {
        return None;
    }
    let head = head_of(
        ptr,
        read_u64(ptr + layout!(off_compound_head) as u64).unwrap_or(0),
    );
    let size = layout!(page_struct_size);
    if size == 0 {
        return None;
    }
    let base = vmemmap_base()?;
    if head < base {
        return None;
    }
    let pfn = (head - base) / size;
    let pgmap_ptr = read_u64(head + layout!(off_pgmap) as u64).unwrap_or(0);
    Some(DevicePage {
        head,
        pfn,
        pgmap_type: pgmap_type(pgmap_ptr),
        owner: owner(pgmap_ptr),
    })
}

/// The stable type of the page map at `pgmap_ptr`.
#[inline(always)]
pub fn pgmap_type(pgmap_ptr: u64) -> u32 {
    if pgmap_ptr == 0 {
        return pgmap::UNKNOWN;
    }
    read_i32(pgmap_ptr + layout!(off_pgmap_type) as u64)
        .map(|raw| {
            let idx = (raw as u32 & 7) as usize;
            // SAFETY: index within the array; volatile for the same reason as
            // `layout!`.
            unsafe { core::ptr::read_volatile(&raw const LAYOUT.memtype[idx]) }
        })
        .unwrap_or(pgmap::UNKNOWN)
}

/// The page map's free callback, or its `ops` when it has none (fs-dax), or 0.
#[inline(always)]
pub fn owner(pgmap_ptr: u64) -> u64 {
    if pgmap_ptr == 0 || layout!(off_pgmap_ops) == 0 {
        return 0;
    }
    let ops = read_u64(pgmap_ptr + layout!(off_pgmap_ops) as u64).unwrap_or(0);
    if ops == 0 {
        return 0;
    }
    match read_u64(ops + layout!(off_ops_free) as u64) {
        Some(f) if f != 0 => f,
        _ => ops,
    }
}

/// Start of the `struct page` array: read from the kernel's variable the
/// first time, then from [`crate::VMEMMAP`] (a map lookup the verifier
/// inlines, against a helper call per page).
#[inline(always)]
fn vmemmap_base() -> Option<u64> {
    let base_addr = layout!(vmemmap_base_addr);
    if base_addr == 0 {
        return Some(layout!(vmemmap_start));
    }
    let cached = crate::VMEMMAP.get_ptr_mut(0)?;
    // SAFETY: the map's only slot; every program that writes it writes the
    // same value (`vmemmap_base` is fixed after boot).
    let known = unsafe { *cached };
    if known != 0 {
        return Some(known);
    }
    let base = read_u64(base_addr)?;
    // SAFETY: as above.
    unsafe { *cached = base };
    Some(base)
}

/// The `struct page` of `pfn` (which may not exist: reads of it fail
/// cleanly).
#[inline(always)]
pub fn page_of_pfn(pfn: u64) -> Option<u64> {
    let size = layout!(page_struct_size);
    if size == 0 {
        return None;
    }
    Some(vmemmap_base()? + pfn * size)
}

/// Any page (device or not): its head page and PFN.
#[inline(always)]
pub fn any_page(ptr: u64) -> Option<(u64, u64)> {
    let size = layout!(page_struct_size);
    if ptr == 0 || size == 0 {
        return None;
    }
    let head = head_of(
        ptr,
        read_u64(ptr + layout!(off_compound_head) as u64).unwrap_or(0),
    );
    let base = vmemmap_base()?;
    if head < base {
        return None;
    }
    Some((head, (head - base) / size))
}

/// The head page of `page` from its `compound_head`/`compound_info` word:
/// bit 0 marks a tail page; the rest is the head's address or (7.x with HVO)
/// a mask of high bits that turns the tail's address into the head's.
#[inline(always)]
pub fn head_of(page: u64, info: u64) -> u64 {
    if info & 1 == 0 {
        return page;
    }
    let rest = info & !1;
    let inv = !rest;
    if inv & inv.wrapping_add(1) == 0 {
        page & rest
    } else {
        rest
    }
}

/// The folio's `_refcount`.
#[inline(always)]
pub fn refcount(head: u64) -> Option<i32> {
    read_i32(head + layout!(off_refcount) as u64)
}

/// The page's raw `_mapcount` (−1 when unmapped).
#[inline(always)]
pub fn mapcount(head: u64) -> Option<i32> {
    read_i32(head + layout!(off_mapcount) as u64)
}
