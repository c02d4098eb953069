//! Runtime support for the static, libc-free helper binaries: the arguments and environment
//! from the initial stack, number parsing and formatting, writing and exiting.
//!
//! Everything here is also usable (and unit-tested) in ordinary builds; only the entry
//! point `_start` lives in each binary.
//!
//! # Safety
//! The one unsafe constructor, [`InitialStack::from_initial_stack`], takes the stack
//! pointer the kernel starts a process with. Its layout is fixed by the System V x86-64
//! ABI: `argc`, then `argc` pointers to NUL-terminated strings, a null pointer, the
//! environment pointers, and another null pointer. The kernel never frees or moves that
//! memory, so the strings can be handed out as `&'static [u8]` once the caller vouches for
//! the pointer; the other methods only walk within that layout.
#![allow(unsafe_code)]

use crate::{io, sys};

/// The kernel's limit on one argument or environment string, including its NUL
/// (`MAX_ARG_STRLEN`, 32 pages).
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// The arguments and environment a process was started with, read from the initial
/// stack.
#[derive(Clone, Copy, Debug)]
pub struct InitialStack {
    argc: usize,
    argv: *const *const u8,
}

impl InitialStack {
    /// Reads `argc` and locates `argv` and the environment at `sp`.
    ///
    /// # Safety
    /// `sp` must be the stack pointer the kernel passed to the process entry point (the
    /// address of `argc`), and that memory must not have been modified.
    pub unsafe fn from_initial_stack(sp: *const usize) -> InitialStack {
        // SAFETY: the caller guarantees sp points at argc on the initial stack.
        let argc = unsafe { sp.read() };
        // SAFETY: argv starts right after argc on the same stack.
        let argv = unsafe { sp.add(1) } as *const *const u8;
        InitialStack { argc, argv }
    }

    /// The number of arguments, including the program name.
    pub fn argc(&self) -> usize {
        self.argc
    }

    /// Argument `i` (0 is the program name) without its NUL, if `i < argc`.
    pub fn arg(&self, i: usize) -> Option<&'static [u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: argv has argc entries (the constructor's contract), and i < argc.
        let ptr = unsafe { self.argv.add(i).read() };
        // SAFETY: argv entries are NUL-terminated strings on the initial stack.
        Some(unsafe { c_str(ptr) })
    }

    /// The environment strings (`NAME=value`, without NUL), in order.
    pub fn env(&self) -> Env {
        // SAFETY: the environment pointers follow the argc argv pointers and their null
        // terminator.
        let envp = unsafe { self.argv.add(self.argc.wrapping_add(1)) };
        Env { next: envp }
    }
}

/// Iterator over the environment strings of an [`InitialStack`].
#[derive(Clone, Debug)]
pub struct Env {
    next: *const *const u8,
}

impl Iterator for Env {
    type Item = &'static [u8];

    fn next(&mut self) -> Option<&'static [u8]> {
        // SAFETY: `next` points into the null-terminated envp array of the initial stack
        // and never moves past its null terminator.
        let ptr = unsafe { self.next.read() };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: as above; the terminator has not been reached yet.
        self.next = unsafe { self.next.add(1) };
        // SAFETY: environment entries are NUL-terminated strings on the initial stack.
        Some(unsafe { c_str(ptr) })
    }
}

/// The bytes of the NUL-terminated string at `ptr`, without the NUL.
///
/// # Safety
/// `ptr` must point to a NUL-terminated string that lives, unmodified, for the rest of the
/// process and is at most [`MAX_ARG_STRLEN`] bytes long including the NUL (the kernel's
/// limit for argument and environment strings).
unsafe fn c_str(ptr: *const u8) -> &'static [u8] {
    let mut len = 0usize;
    // Bounded by the kernel's limit, which also keeps this from being compiled into a call
    // to a `strlen` the static binaries do not have.
    while len < MAX_ARG_STRLEN {
        // SAFETY: every byte up to and including the NUL is part of the string.
        if unsafe { ptr.add(len).read() } == 0 {
            break;
        }
        len = len.wrapping_add(1);
    }
    // SAFETY: the len bytes before the NUL are initialized and live forever.
    unsafe { core::slice::from_raw_parts(ptr, len) }
}

/// Parses a file descriptor number: decimal digits only, at most `i32::MAX`.
pub fn parse_fd(arg: &[u8]) -> Option<i32> {
    if arg.is_empty() {
        return None;
    }
    let mut value: i32 = 0;
    for &b in arg {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i32::from(b - b'0'))?;
    }
    Some(value)
}

/// Formats `value` in decimal into `buf`, returning the digits (with a `-` if negative).
pub fn format_i64(value: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut start = buf.len();
    // Digits from the right; `buf` holds the 19 digits of any u64 magnitude up to
    // i64::MIN's, plus the sign.
    while let Some(slot) = start.checked_sub(1).and_then(|i| buf.get_mut(i)) {
        *slot = b'0' + (magnitude % 10) as u8;
        start = start.wrapping_sub(1);
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0
        && let Some(slot) = start.checked_sub(1).and_then(|i| buf.get_mut(i))
    {
        *slot = b'-';
        start = start.wrapping_sub(1);
    }
    buf.get(start..).unwrap_or(&[])
}

/// Writes all of `bytes` to `fd` (`sendto(MSG_NOSIGNAL)`, or `write` if `fd` is not a
/// socket), retrying short writes and `EINTR`; `Err(-errno)` on failure.
pub fn write_all(fd: i32, bytes: &[u8]) -> Result<(), i64> {
    match io::write_all(fd, bytes) {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Writes the concatenation of `parts` to standard error, ignoring failures.
pub fn write_stderr(parts: &[&[u8]]) {
    for part in parts {
        if write_all(2, part).is_err() {
            return;
        }
    }
}

/// `exit_group(status)`: ends the whole process. Only for processes of their own (the
/// helper binaries), never for clone children sharing an address space.
pub fn exit_group(status: i32) -> ! {
    sys::exit_group(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_fd_accepts_decimal_fds_only() {
        assert_eq!(parse_fd(b"0"), Some(0));
        assert_eq!(parse_fd(b"17"), Some(17));
        assert_eq!(parse_fd(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_fd(b"2147483648"), None);
        assert_eq!(parse_fd(b""), None);
        assert_eq!(parse_fd(b"-1"), None);
        assert_eq!(parse_fd(b"3x"), None);
        assert_eq!(parse_fd(b" 3"), None);
    }

    #[test]
    fn format_i64_round_trips() {
        let mut buf = [0u8; 20];
        assert_eq!(format_i64(0, &mut buf), b"0");
        assert_eq!(format_i64(-9, &mut buf), b"-9");
        assert_eq!(format_i64(1234567, &mut buf), b"1234567");
        assert_eq!(format_i64(i64::MIN, &mut buf), b"-9223372036854775808");
        assert_eq!(format_i64(i64::MAX, &mut buf), b"9223372036854775807");
    }

    #[test]
    fn initial_stack_walks_args_and_env() {
        let a0 = b"prog\0";
        let a1 = b"3\0";
        let e0 = b"A=b\0";
        let stack: [usize; 6] = [
            2,
            a0.as_ptr() as usize,
            a1.as_ptr() as usize,
            0,
            e0.as_ptr() as usize,
            0,
        ];
        // SAFETY: `stack` mimics the kernel's layout with strings that outlive the test
        // (byte-string literals are 'static).
        let st = unsafe { InitialStack::from_initial_stack(stack.as_ptr()) };
        assert_eq!(st.argc(), 2);
        assert_eq!(st.arg(0), Some(&b"prog"[..]));
        assert_eq!(st.arg(1), Some(&b"3"[..]));
        assert_eq!(st.arg(2), None);
        let mut env = st.env();
        assert_eq!(env.next(), Some(&b"A=b"[..]));
        assert_eq!(env.next(), None);
    }
}
