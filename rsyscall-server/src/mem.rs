//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp` for the static, libc-free helper
//! binaries: the compiler may emit calls to them for any copy, fill or comparison.
//!
//! Each is a string instruction in inline assembly (or a loop over one), so the compiler
//! cannot recognise the body as the very idiom it implements and turn it into a call to
//! itself.
//!
//! # Safety
//! These are the C functions, with the C contracts: the caller (compiled code) passes
//! pointers valid for `n` bytes. The assembly touches exactly those `n` bytes, and restores
//! the direction flag it may set (`memmove`), which the ABI requires clear at calls.
#![allow(unsafe_code)]

use core::arch::asm;

/// Copies `n` bytes from `src` to `dest` (non-overlapping); returns `dest`.
///
/// # Safety
/// `src` must be readable and `dest` writable for `n` bytes, and the ranges must not
/// overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: `rep movsb` copies rcx bytes from [rsi] to [rdi] forwards; the caller
    // guarantees both ranges are valid.
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// Copies `n` bytes from `src` to `dest`, which may overlap; returns `dest`.
///
/// # Safety
/// `src` must be readable and `dest` writable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // dest is before src, or past the end of src: a forward copy never reads a byte
        // it has already overwritten.
        // SAFETY: as for memcpy; forward copying is correct for this overlap.
        unsafe {
            asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dest => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags)
            );
        }
    } else if n > 0 {
        // dest overlaps the end of src: copy backwards, from the last byte.
        // SAFETY: with the direction flag set, `rep movsb` copies rcx bytes from [rsi]
        // to [rdi] going down; both start at the last byte of their (valid) ranges. The
        // flag is cleared again before leaving the block.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dest.wrapping_add(n - 1) => _,
                inout("rsi") src.wrapping_add(n - 1) => _,
                options(nostack)
            );
        }
    }
    dest
}

/// Fills `n` bytes at `dest` with the low byte of `c`; returns `dest`.
///
/// # Safety
/// `dest` must be writable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: `rep stosb` stores al into rcx bytes from [rdi] forwards; the caller
    // guarantees the range is valid.
    unsafe {
        asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            in("al") c as u8,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// Compares `n` bytes at `a` and `b` as unsigned bytes: negative, zero or positive as the
/// first differing byte of `a` is less than, equal to or greater than that of `b`.
///
/// # Safety
/// `a` and `b` must be readable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let a_end: *const u8;
    let b_end: *const u8;
    // SAFETY: `repe cmpsb` compares [rsi] with [rdi] byte by byte, advancing both, until
    // a difference or rcx bytes; it reads only the n valid bytes of each range.
    unsafe {
        asm!(
            "repe cmpsb",
            inout("rcx") n => _,
            inout("rsi") a => a_end,
            inout("rdi") b => b_end,
            options(nostack, readonly)
        );
    }
    // Both pointers stop just past the last compared byte: the first difference, or the
    // last byte if all were equal.
    // SAFETY: at least one byte was compared, so the byte before each end pointer is in
    // its range.
    let (x, y) = unsafe { (a_end.sub(1).read(), b_end.sub(1).read()) };
    i32::from(x) - i32::from(y)
}

/// Like [`memcmp`] but only tells equal (zero) from different (non-zero).
///
/// # Safety
/// `a` and `b` must be readable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's guarantee is memcmp's.
    unsafe { memcmp(a, b, n) }
}
