//! Raw syscall wrappers, one module per area, each a thin async function over
//! [`SyscallInterface`].
//!
//! # Safety
//! Every wrapper calls [`SyscallInterface::syscall`], which is unsafe because a syscall can
//! do anything to a process sharing our memory or fds. A wrapper whose syscall writes no
//! memory through an address and closes or replaces no fd is safe and says why at its
//! `unsafe` block; one that lets the kernel write through an address, or close or replace
//! an fd, is itself an `unsafe fn` whose `# Safety` section hands the duty to its caller.
//! This lint allowance covers the submodules.
#![allow(unsafe_code)]

mod events;
mod fd;
mod fs;
mod identity;
mod mem;
mod ns;
mod process;
mod socket;

pub use events::*;
pub use fd::*;
pub use fs::*;
pub use identity::*;
pub use mem::*;
pub use ns::*;
pub use process::*;
pub use socket::*;

use crate::{FileDescriptor, Pid, Request, SyscallError, SyscallInterface};

/// A syscall's return value decoded as the type a wrapper returns. The kernel's return
/// value is non-negative here (errors were decoded already); the conversions are plain
/// casts.
pub(crate) trait FromRet {
    /// The value for the raw return value `ret`.
    fn from_ret(ret: i64) -> Self;
}

impl FromRet for () {
    fn from_ret(_: i64) -> Self {}
}

impl FromRet for i64 {
    fn from_ret(ret: i64) -> Self {
        ret
    }
}

macro_rules! from_ret_cast {
    ($($t:ty),*) => {$(
        impl FromRet for $t {
            fn from_ret(ret: i64) -> Self {
                ret as $t
            }
        }
    )*};
}
from_ret_cast!(u64, usize, i32, u32);

impl FromRet for FileDescriptor {
    fn from_ret(ret: i64) -> Self {
        FileDescriptor::new(ret as i32)
    }
}

impl FromRet for Pid {
    fn from_ret(ret: i64) -> Self {
        Pid::new(ret as i32)
    }
}

impl FromRet for WatchDescriptor {
    fn from_ret(ret: i64) -> Self {
        WatchDescriptor::new(ret as i32)
    }
}

/// The request for `nr` with `args` padded with zeros to six arguments.
#[inline]
fn request<const N: usize>(nr: i64, args: [i64; N]) -> Request {
    let mut full = [0i64; 6];
    full[..N].copy_from_slice(&args);
    Request::new(nr, full)
}

/// Sends `nr` with `args` (padded with zeros) through `sysif` and decodes the return value
/// as `R`.
///
/// # Safety
/// As for [`SyscallInterface::syscall`].
#[inline]
pub(crate) async unsafe fn call<R: FromRet, const N: usize>(
    sysif: &dyn SyscallInterface,
    nr: i64,
    args: [i64; N],
) -> Result<R, SyscallError> {
    // SAFETY: forwarded from the caller.
    unsafe { sysif.syscall(request(nr, args)) }
        .await
        .map(R::from_ret)
}

/// Like [`call`], for a syscall whose non-negative result is a new fd: sends through
/// [`SyscallInterface::syscall_new_fd`], so a future dropped after sending does not leak
/// the fd.
///
/// # Safety
/// As for [`SyscallInterface::syscall_new_fd`].
#[inline]
pub(crate) async unsafe fn call_new_fd<const N: usize>(
    sysif: &dyn SyscallInterface,
    nr: i64,
    args: [i64; N],
) -> Result<FileDescriptor, SyscallError> {
    // SAFETY: forwarded from the caller.
    unsafe { sysif.syscall_new_fd(request(nr, args)) }
        .await
        .map(FileDescriptor::from_ret)
}

/// Like [`call`], for a syscall that sends no response when it succeeds (`exit`, `execve`):
/// sends through [`SyscallInterface::syscall_no_response`], so the loss of the connection
/// after sending counts as success.
///
/// # Safety
/// As for [`SyscallInterface::syscall_no_response`].
#[inline]
pub(crate) async unsafe fn call_no_response<const N: usize>(
    sysif: &dyn SyscallInterface,
    nr: i64,
    args: [i64; N],
) -> Result<(), SyscallError> {
    // SAFETY: forwarded from the caller.
    unsafe { sysif.syscall_no_response(request(nr, args)) }
        .await
        .map(|_| ())
}

/// The `dirfd` argument of the `*at` syscalls: the fd, or `AT_FDCWD` for `None`.
pub(crate) fn dirfd_arg(dirfd: Option<FileDescriptor>) -> i64 {
    dirfd
        .map(FileDescriptor::arg)
        .unwrap_or(libc::AT_FDCWD as i64)
}

/// An optional fd argument: the fd, or -1 for `None` ("no fd").
pub(crate) fn opt_fd_arg(fd: Option<FileDescriptor>) -> i64 {
    fd.map(FileDescriptor::arg).unwrap_or(-1)
}
