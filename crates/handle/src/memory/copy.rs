//! Raw copies into and out of memory of the local address space.
//!
//! # Safety
//! These functions are the only place the handle layer dereferences addresses. Callers
//! pass ranges inside an [`Allocation`](super::Allocation) of the local address space that
//! they own exclusively; the arena's mapping stays mapped for as long as any allocation in
//! it exists, so the range is valid for the copy.
#![allow(unsafe_code)]

use rsyscall_near::Address;

/// Copies `data` to `dest`.
///
/// # Safety
/// `dest..dest + data.len()` must be mapped writable in this process and not be accessed
/// concurrently by Rust code.
pub(crate) unsafe fn write(dest: Address, data: &[u8]) {
    // SAFETY: the caller guarantees the destination range; `data` is a valid slice and
    // cannot overlap memory the caller owns exclusively.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), dest.as_u64() as usize as *mut u8, data.len())
    }
}

/// Copies `out.len()` bytes from `src` into `out`.
///
/// # Safety
/// `src..src + out.len()` must be mapped readable in this process and not be written
/// concurrently by Rust code.
pub(crate) unsafe fn read(src: Address, out: &mut [u8]) {
    // SAFETY: the caller guarantees the source range; `out` is a valid mutable slice.
    unsafe {
        std::ptr::copy_nonoverlapping(
            src.as_u64() as usize as *const u8,
            out.as_mut_ptr(),
            out.len(),
        )
    }
}
