//! File descriptor syscalls: read, write, close, dup, fcntl, pipes, opening files.

use super::call;
use crate::{Address, FileDescriptor, O, SyscallError, SyscallInterface};

/// `read(fd, buf, count)` — reads up to `count` bytes into `buf`.
///
/// # Safety
/// `buf` must be valid for writing `count` bytes in the target's address space.
///
/// # Errors
/// `EAGAIN`, `EBADF`, `EFAULT`, `EINTR`, `EINVAL`, `EIO`, `EISDIR`. See read(2).
pub async unsafe fn read(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    buf: Address,
    count: usize,
) -> Result<usize, SyscallError> {
    // SAFETY: the caller guarantees buf.
    let ret = unsafe { call(sysif, libc::SYS_read, [fd.arg(), buf.arg(), count as i64]) }.await?;
    Ok(ret as usize)
}

/// `write(fd, buf, count)` — writes up to `count` bytes from `buf`.
///
/// The kernel only reads the buffer; an invalid address gives `EFAULT`.
///
/// # Errors
/// `EAGAIN`, `EBADF`, `EFAULT`, `EPIPE`, `ENOSPC` and others. See write(2).
pub async fn write(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    buf: Address,
    count: usize,
) -> Result<usize, SyscallError> {
    // SAFETY: write only reads memory (a bad address is EFAULT) and does not change the fd.
    let ret = unsafe { call(sysif, libc::SYS_write, [fd.arg(), buf.arg(), count as i64]) }.await?;
    Ok(ret as usize)
}

/// `close(fd)` — closes a file descriptor.
///
/// # Safety
/// `fd` must not be owned by other code in a table shared with this process.
///
/// # Errors
/// `EBADF`, `EINTR`, `EIO`. See close(2).
pub async unsafe fn close(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
) -> Result<(), SyscallError> {
    // SAFETY: the caller owns fd.
    unsafe { call(sysif, libc::SYS_close, [fd.arg()]) }.await?;
    Ok(())
}

/// `dup3(oldfd, newfd, flags)` — makes `newfd` a copy of `oldfd`, closing what `newfd` was.
///
/// # Safety
/// `newfd` must not be owned by other code in a table shared with this process.
///
/// # Errors
/// `EBADF`, `EBUSY`, `EINTR`, `EINVAL` (including `oldfd == newfd`), `EMFILE`. See dup(2).
pub async unsafe fn dup3(
    sysif: &dyn SyscallInterface,
    oldfd: FileDescriptor,
    newfd: FileDescriptor,
    flags: O,
) -> Result<FileDescriptor, SyscallError> {
    let args = [oldfd.arg(), newfd.arg(), flags.bits() as i64];
    // SAFETY: the caller owns newfd.
    let ret = unsafe { call(sysif, libc::SYS_dup3, args) }.await?;
    Ok(FileDescriptor::new(ret as i32))
}

/// `dup2(oldfd, newfd)` — like [`dup3`] without flags; `oldfd == newfd` is a no-op check.
///
/// # Safety
/// As for [`dup3`].
///
/// # Errors
/// `EBADF`, `EBUSY`, `EINTR`, `EMFILE`. See dup(2).
pub async unsafe fn dup2(
    sysif: &dyn SyscallInterface,
    oldfd: FileDescriptor,
    newfd: FileDescriptor,
) -> Result<FileDescriptor, SyscallError> {
    // SAFETY: the caller owns newfd.
    let ret = unsafe { call(sysif, libc::SYS_dup2, [oldfd.arg(), newfd.arg()]) }.await?;
    Ok(FileDescriptor::new(ret as i32))
}

/// `fcntl(fd, cmd, arg)` — with an integer argument (`F_GETFD`, `F_SETFD`, `F_GETFL`,
/// `F_SETFL`, `F_DUPFD_CLOEXEC`...).
///
/// # Safety
/// Commands that take a pointer argument (locks) need it valid in the target's address
/// space; `F_DUPFD*` create fds, which is always safe.
///
/// # Errors
/// `EBADF`, `EINVAL` and others. See fcntl(2).
pub async unsafe fn fcntl(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    cmd: i32,
    arg: i64,
) -> Result<i64, SyscallError> {
    // SAFETY: forwarded from the caller.
    unsafe { call(sysif, libc::SYS_fcntl, [fd.arg(), cmd as i64, arg]) }.await
}

/// `pipe2(pipefd, flags)` — a pipe; the kernel writes `[read_end, write_end]` at `pipefd`.
///
/// # Safety
/// `pipefd` must be valid for writing two `i32`s in the target's address space.
///
/// # Errors
/// `EFAULT`, `EINVAL`, `EMFILE`, `ENFILE`. See pipe(2).
pub async unsafe fn pipe2(
    sysif: &dyn SyscallInterface,
    pipefd: Address,
    flags: O,
) -> Result<(), SyscallError> {
    // SAFETY: the caller guarantees pipefd.
    unsafe { call(sysif, libc::SYS_pipe2, [pipefd.arg(), flags.bits() as i64]) }.await?;
    Ok(())
}
