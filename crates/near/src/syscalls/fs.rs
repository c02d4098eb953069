//! Filesystem syscalls: paths, directories, metadata.

use super::call;
use crate::{Address, FileDescriptor, O, SyscallError, SyscallInterface};

/// `openat(dirfd, path, flags, mode)` — opens a file relative to `dirfd` (`AT_FDCWD` for
/// the working directory).
///
/// The kernel only reads `path` (a NUL-terminated string); a bad address is `EFAULT`.
///
/// # Errors
/// `ENOENT`, `EACCES`, `EEXIST`, `EISDIR`, `EMFILE`, `ENOTDIR` and others. See open(2).
pub async fn openat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    flags: O,
    mode: u32,
) -> Result<FileDescriptor, SyscallError> {
    let dirfd = dirfd
        .map(FileDescriptor::arg)
        .unwrap_or(libc::AT_FDCWD as i64);
    let args = [dirfd, path.arg(), flags.bits() as i64, mode as i64];
    // SAFETY: openat only reads memory and creates a new fd.
    let ret = unsafe { call(sysif, libc::SYS_openat, args) }.await?;
    Ok(FileDescriptor::new(ret as i32))
}

/// `faccessat(dirfd, path, mode, flags)` — checks the caller's permissions for a file
/// (`mode` is `F_OK` or a combination of `R_OK`, `W_OK`, `X_OK`).
///
/// The kernel only reads `path` (a NUL-terminated string); a bad address is `EFAULT`.
///
/// # Errors
/// `EACCES`, `ENOENT`, `ENOTDIR`, `ELOOP`, `EROFS` and others. See access(2).
pub async fn faccessat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    mode: i32,
    flags: i32,
) -> Result<(), SyscallError> {
    let dirfd = dirfd
        .map(FileDescriptor::arg)
        .unwrap_or(libc::AT_FDCWD as i64);
    let args = [dirfd, path.arg(), mode as i64, flags as i64];
    // SAFETY: faccessat2 only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_faccessat2, args) }.await?;
    Ok(())
}
