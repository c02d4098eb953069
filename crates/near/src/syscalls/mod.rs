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
pub(crate) trait FromRet: Sized {
    /// The value for the raw return value `ret`, or `None` if no kernel returns `ret` for
    /// a syscall with results of this type (a broken or lying server).
    fn from_ret(ret: i64) -> Option<Self>;
}

impl FromRet for () {
    fn from_ret(_: i64) -> Option<Self> {
        Some(())
    }
}

impl FromRet for i64 {
    fn from_ret(ret: i64) -> Option<Self> {
        Some(ret)
    }
}

macro_rules! from_ret_checked {
    ($($t:ty),*) => {$(
        impl FromRet for $t {
            fn from_ret(ret: i64) -> Option<Self> {
                <$t>::try_from(ret).ok()
            }
        }
    )*};
}
from_ret_checked!(u64, usize, i32, u32);

/// Fds, pids and watch descriptors are non-negative `int`s.
macro_rules! from_ret_id {
    ($($t:ty),*) => {$(
        impl FromRet for $t {
            fn from_ret(ret: i64) -> Option<Self> {
                i32::try_from(ret).ok().filter(|n| *n >= 0).map(<$t>::new)
            }
        }
    )*};
}
from_ret_id!(FileDescriptor, Pid, WatchDescriptor);

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
    let ret = unsafe { sysif.syscall(request(nr, args)) }.await?;
    R::from_ret(ret).ok_or(SyscallError::OutOfRange(ret))
}

/// Like [`call`] for a syscall that returns 0, sent through
/// [`SyscallInterface::syscall_recorded`]: its result also goes to `cell`, even if this
/// future is dropped.
///
/// # Safety
/// As for [`SyscallInterface::syscall`].
#[inline]
pub(crate) async unsafe fn call_recorded<const N: usize>(
    sysif: &dyn SyscallInterface,
    nr: i64,
    args: [i64; N],
    cell: &crate::ResultCell,
) -> Result<(), SyscallError> {
    // SAFETY: forwarded from the caller.
    unsafe { sysif.syscall_recorded(request(nr, args), cell.clone()) }
        .await
        .map(drop)
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
    let ret = unsafe { sysif.syscall_new_fd(request(nr, args)) }.await?;
    FileDescriptor::from_ret(ret).ok_or(SyscallError::OutOfRange(ret))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{O, SyscallFuture, SyscallInterface};

    /// A server that answers every request with one value.
    #[derive(Debug)]
    struct Answers(i64);

    impl SyscallInterface for Answers {
        unsafe fn syscall(&self, _: Request) -> SyscallFuture<'_> {
            let v = self.0;
            Box::pin(async move { Ok(v) })
        }
    }

    #[test]
    fn answers_no_kernel_gives_are_out_of_range_not_truncated() {
        async_io::block_on(async {
            // Beyond `int`: truncated, these would read as pid 0 and fd 0 (stdin).
            for v in [1i64 << 32, (1 << 40) + 3, -5000, i64::MIN] {
                assert_eq!(
                    crate::getpid(&Answers(v)).await,
                    Err(SyscallError::OutOfRange(v)),
                    "getpid answered {v:#x}"
                );
                assert_eq!(
                    crate::epoll_create1(&Answers(v), O::CLOEXEC).await,
                    Err(SyscallError::OutOfRange(v)),
                    "epoll_create1 answered {v:#x}"
                );
            }
            // The same types still decode what a kernel does return.
            assert_eq!(crate::getpid(&Answers(42)).await, Ok(Pid::new(42)));
            assert_eq!(
                crate::epoll_create1(&Answers(7), O::CLOEXEC).await,
                Ok(FileDescriptor::new(7))
            );
        })
    }

    #[test]
    fn recorded_results_reach_the_cell() {
        async_io::block_on(async {
            // The trait's default records what the future returns.
            let cell = crate::ResultCell::new();
            let req = request(libc::SYS_getpid, [0i64; 0]);
            // SAFETY: `Answers` runs nothing.
            let fut = unsafe { Answers(42).syscall_recorded(req, cell.clone()) };
            assert_eq!(cell.get(), None, "recorded before it ran");
            assert_eq!(fut.await, Ok(42));
            assert_eq!(cell.get(), Some(Ok(42)));
            // The local interface records it as it runs the syscall.
            let cell = crate::ResultCell::new();
            let req = request(libc::SYS_getpid, [0i64; 0]);
            // SAFETY: getpid touches no memory.
            let fut = unsafe { crate::LocalSyscall.syscall_recorded(req, cell.clone()) };
            drop(fut);
            assert_eq!(cell.get(), Some(Ok(i64::from(std::process::id()))));
            // The first result stays.
            cell.set(Ok(1));
            assert_eq!(cell.get(), Some(Ok(i64::from(std::process::id()))));
        })
    }

    #[test]
    fn sizes_and_numbers_are_checked_against_their_type() {
        assert_eq!(<usize as FromRet>::from_ret(-5000), None);
        assert_eq!(
            <u64 as FromRet>::from_ret(0x7fff_0000_0000),
            Some(0x7fff_0000_0000)
        );
        assert_eq!(<u32 as FromRet>::from_ret(1 << 32), None);
        assert_eq!(<i32 as FromRet>::from_ret(-1 << 31), Some(i32::MIN));
        assert_eq!(<i64 as FromRet>::from_ret(-5000), Some(-5000));
    }
}
