//! The few syscalls the server makes for itself, over the raw routine.
//!
//! # Safety
//! Each wrapper passes only pointers derived from the slices it is given, with their
//! lengths, so the kernel reads or writes only memory the caller lent.
#![allow(unsafe_code)]

use crate::arch::raw_syscall;
use crate::proto::Request;

pub(crate) const EINTR: i64 = 4;
pub(crate) const EPIPE: i64 = 32;
pub(crate) const ENOTSOCK: i64 = 88;
const MSG_NOSIGNAL: i64 = 0x4000;

pub(crate) const SYS_READ: i64 = 0;
pub(crate) const SYS_WRITE: i64 = 1;
pub(crate) const SYS_SENDTO: i64 = 44;

/// Runs a client's request verbatim.
pub(crate) fn request(req: &Request) -> i64 {
    let [a1, a2, a3, a4, a5, a6] = req.args;
    // SAFETY: running the client's syscalls is the server's purpose; the client, which
    // owns this process, is responsible for what they do (see SyscallInterface::syscall).
    unsafe { raw_syscall(a1, a2, a3, a4, a5, a6, req.number) }
}

pub(crate) fn read(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    unsafe {
        raw_syscall(
            fd as i64,
            buf.as_mut_ptr() as i64,
            buf.len() as i64,
            0,
            0,
            0,
            SYS_READ,
        )
    }
}

pub(crate) fn write(fd: i32, buf: &[u8]) -> i64 {
    // SAFETY: the kernel reads at most buf.len() bytes from buf.
    unsafe {
        raw_syscall(
            fd as i64,
            buf.as_ptr() as i64,
            buf.len() as i64,
            0,
            0,
            0,
            SYS_WRITE,
        )
    }
}

pub(crate) fn send_nosignal(fd: i32, buf: &[u8]) -> i64 {
    // SAFETY: the kernel reads at most buf.len() bytes from buf; no address is passed.
    unsafe {
        raw_syscall(
            fd as i64,
            buf.as_ptr() as i64,
            buf.len() as i64,
            MSG_NOSIGNAL,
            0,
            0,
            SYS_SENDTO,
        )
    }
}
