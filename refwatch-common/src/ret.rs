//! What `Event::ret` holds: the hooked function's return value, by its
//! return type, recorded as what it means. A pointer is a pointer whatever
//! field it sits in: no `ret` is ever a kernel address.

use super::hook;

/// Largest errno an `ERR_PTR` or an `int` carries (`MAX_ERRNO`).
pub const MAX_ERRNO: i64 = 4095;

/// The function returns nothing: no `ret` (whatever is left in the
/// return register is not a value, and may be a pointer).
pub const VOID: u32 = 0;
/// `int`, `pid_t`: the low 32 bits, sign-extended (a count, a pid, 0 or
/// an errno); none when that is below `-MAX_ERRNO`, which no such
/// function returns (the register did not hold an `int`).
pub const INT: u32 = 1;
/// `bool`: 0 or 1, from the low byte (the rest of the register is not
/// part of the value).
pub const BOOL: u32 = 2;
/// An unsigned 32-bit code (`vm_fault_t`): the low 32 bits.
pub const U32: u32 = 3;
/// A pointer: 0 for NULL (failure), the errno for an `ERR_PTR`
/// (`-MAX_ERRNO..=-1`), 1 for any other pointer (success).
pub const POINTER: u32 = 4;

/// The return type of the function behind `hook`.
pub const fn type_of(hook: u32) -> u32 {
    match hook {
        // `struct folio *try_grab_folio_fast(struct page *, …)`,
        // `struct folio *try_grab_folio(struct page *, …)` (≤6.6.46),
        // `struct page *dax_layout_busy_page_range(…)`,
        // `void *memremap_pages(…)`.
        hook::TRY_GRAB_FOLIO_FAST
        | hook::TRY_GRAB_FOLIO_PAGE
        | hook::DAX_LAYOUT_BUSY
        | hook::MEMREMAP => POINTER,
        hook::PUT_DEVMAP_REFS => BOOL,
        // `try_grab_page` is `bool` before 6.2 and `int` after; `INT`
        // reads both (1 or 0 on success).
        hook::TRY_GRAB_FOLIO
        | hook::TRY_GRAB_PAGE
        | hook::KERNEL_CLONE
        | hook::FOLIO_MIGRATE_MAPPING => INT,
        hook::MAP_INSERT | hook::MAP_INSERT_PMD | hook::MAP_INSERT_PUD => U32,
        _ => VOID,
    }
}

/// What an event of `hook` records as `ret` for the raw return register
/// `raw`.
#[inline(always)]
pub const fn value(hook: u32, raw: i64) -> Option<i64> {
    match type_of(hook) {
        POINTER => Some(if raw == 0 {
            0
        } else if raw < 0 && raw >= -MAX_ERRNO {
            raw
        } else {
            1
        }),
        INT => {
            let v = raw as i32 as i64;
            if v < -MAX_ERRNO { None } else { Some(v) }
        }
        BOOL => Some((raw as u8 != 0) as i64),
        U32 => Some(raw as u32 as i64),
        _ => None,
    }
}
