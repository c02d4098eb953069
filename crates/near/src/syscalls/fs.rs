//! Filesystem syscalls: paths, directories, metadata, the working directory and umask.
//!
//! Paths are addresses of NUL-terminated strings in the target's address space; a `dirfd`
//! of `None` stands for `AT_FDCWD` (the target's working directory).

use super::{call, call_new_fd, dirfd_arg};
use crate::{Address, FileDescriptor, O, SyscallError, SyscallInterface};

bitflags::bitflags! {
    /// `AT_*` flags of the `*at` syscalls (`unlinkat`, `linkat`, `fstatat`, `statx`,
    /// `faccessat2`, `fchmodat2`, `utimensat`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct AT: i32 {
        /// `AT_SYMLINK_NOFOLLOW`.
        const SYMLINK_NOFOLLOW = libc::AT_SYMLINK_NOFOLLOW;
        /// `AT_REMOVEDIR`.
        const REMOVEDIR = libc::AT_REMOVEDIR;
        /// `AT_SYMLINK_FOLLOW`.
        const SYMLINK_FOLLOW = libc::AT_SYMLINK_FOLLOW;
        /// `AT_NO_AUTOMOUNT`.
        const NO_AUTOMOUNT = libc::AT_NO_AUTOMOUNT;
        /// `AT_EMPTY_PATH`.
        const EMPTY_PATH = libc::AT_EMPTY_PATH;
        /// `AT_EACCESS`.
        const EACCESS = libc::AT_EACCESS;
        /// `AT_STATX_FORCE_SYNC`.
        const STATX_FORCE_SYNC = libc::AT_STATX_FORCE_SYNC;
        /// `AT_STATX_DONT_SYNC`.
        const STATX_DONT_SYNC = libc::AT_STATX_DONT_SYNC;
    }
}

bitflags::bitflags! {
    /// Flags of `renameat2(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct RENAME: u32 {
        /// `RENAME_NOREPLACE`.
        const NOREPLACE = libc::RENAME_NOREPLACE;
        /// `RENAME_EXCHANGE`.
        const EXCHANGE = libc::RENAME_EXCHANGE;
        /// `RENAME_WHITEOUT`.
        const WHITEOUT = libc::RENAME_WHITEOUT;
    }
}

bitflags::bitflags! {
    /// The mask of `statx(2)`: which fields the caller asks for, and (in the result's
    /// `mask`) which ones the kernel filled.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct STATX: u32 {
        /// `STATX_TYPE`.
        const TYPE = libc::STATX_TYPE;
        /// `STATX_MODE`.
        const MODE = libc::STATX_MODE;
        /// `STATX_NLINK`.
        const NLINK = libc::STATX_NLINK;
        /// `STATX_UID`.
        const UID = libc::STATX_UID;
        /// `STATX_GID`.
        const GID = libc::STATX_GID;
        /// `STATX_ATIME`.
        const ATIME = libc::STATX_ATIME;
        /// `STATX_MTIME`.
        const MTIME = libc::STATX_MTIME;
        /// `STATX_CTIME`.
        const CTIME = libc::STATX_CTIME;
        /// `STATX_INO`.
        const INO = libc::STATX_INO;
        /// `STATX_SIZE`.
        const SIZE = libc::STATX_SIZE;
        /// `STATX_BLOCKS`.
        const BLOCKS = libc::STATX_BLOCKS;
        /// `STATX_BASIC_STATS`.
        const BASIC_STATS = libc::STATX_BASIC_STATS;
        /// `STATX_BTIME`.
        const BTIME = libc::STATX_BTIME;
        /// `STATX_MNT_ID`.
        const MNT_ID = libc::STATX_MNT_ID;
        /// `STATX_DIOALIGN`.
        const DIOALIGN = libc::STATX_DIOALIGN;
        /// `STATX_MNT_ID_UNIQUE`.
        const MNT_ID_UNIQUE = libc::STATX_MNT_ID_UNIQUE;
        /// `STATX_SUBVOL`.
        const SUBVOL = libc::STATX_SUBVOL;
        /// `STATX_WRITE_ATOMIC`.
        const WRITE_ATOMIC = libc::STATX_WRITE_ATOMIC;
        /// `STATX_DIO_READ_ALIGN`.
        const DIO_READ_ALIGN = libc::STATX_DIO_READ_ALIGN;
    }
}

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
    let args = [
        dirfd_arg(dirfd),
        path.arg(),
        flags.bits() as i64,
        mode as i64,
    ];
    // SAFETY: openat only reads memory and creates a new fd.
    unsafe { call_new_fd(sysif, libc::SYS_openat, args) }.await
}

/// `faccessat2(dirfd, path, mode, flags)` — checks the caller's permissions for a file
/// (`mode` is `F_OK` or a combination of `R_OK`, `W_OK`, `X_OK`; flags `AT::EACCESS`,
/// `AT::SYMLINK_NOFOLLOW`, `AT::EMPTY_PATH`).
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
    flags: AT,
) -> Result<(), SyscallError> {
    let args = [
        dirfd_arg(dirfd),
        path.arg(),
        mode as i64,
        flags.bits() as i64,
    ];
    // SAFETY: faccessat2 only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_faccessat2, args) }.await
}

/// `fstat(fd, statbuf)` — writes the metadata of the file `fd` refers to at `statbuf`.
///
/// # Safety
/// `statbuf` must be valid for writing a `struct stat` in the target's address space.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EOVERFLOW`. See stat(2).
pub async unsafe fn fstat(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    statbuf: Address,
) -> Result<(), SyscallError> {
    // SAFETY: the caller guarantees statbuf.
    unsafe { call(sysif, libc::SYS_fstat, [fd.arg(), statbuf.arg()]) }.await
}

/// `newfstatat(dirfd, path, statbuf, flags)` — writes the metadata of a file at `statbuf`
/// (`AT::SYMLINK_NOFOLLOW` for `lstat`, `AT::EMPTY_PATH` with `""` for `dirfd` itself).
///
/// # Safety
/// `statbuf` must be valid for writing a `struct stat` in the target's address space.
///
/// # Errors
/// `ENOENT`, `EACCES`, `ELOOP`, `ENOTDIR`, `EBADF`, `EINVAL` and others. See stat(2).
pub async unsafe fn newfstatat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    statbuf: Address,
    flags: AT,
) -> Result<(), SyscallError> {
    let args = [
        dirfd_arg(dirfd),
        path.arg(),
        statbuf.arg(),
        flags.bits() as i64,
    ];
    // SAFETY: the caller guarantees statbuf; path is only read.
    unsafe { call(sysif, libc::SYS_newfstatat, args) }.await
}

/// `statx(dirfd, path, flags, mask, statxbuf)` — writes the extended metadata of a file at
/// `statxbuf`; `mask` says which fields are wanted.
///
/// # Safety
/// `statxbuf` must be valid for writing a `struct statx` (256 bytes) in the target's
/// address space.
///
/// # Errors
/// `ENOENT`, `EACCES`, `ELOOP`, `ENOTDIR`, `EBADF`, `EINVAL` and others. See statx(2).
pub async unsafe fn statx(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    flags: AT,
    mask: STATX,
    statxbuf: Address,
) -> Result<(), SyscallError> {
    let args = [
        dirfd_arg(dirfd),
        path.arg(),
        flags.bits() as i64,
        mask.bits() as i64,
        statxbuf.arg(),
    ];
    // SAFETY: the caller guarantees statxbuf; path is only read.
    unsafe { call(sysif, libc::SYS_statx, args) }.await
}

/// `getdents64(fd, dirp, count)` — reads directory entries (`struct linux_dirent64`
/// records) of the directory `fd` into `dirp`; returns the number of bytes written, 0 at
/// the end of the directory.
///
/// # Safety
/// `dirp` must be valid for writing `count` bytes in the target's address space.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL` (buffer too small for the next entry), `ENOENT` (the
/// directory was removed), `ENOTDIR`. See getdents(2).
pub async unsafe fn getdents64(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    dirp: Address,
    count: usize,
) -> Result<usize, SyscallError> {
    let args = [fd.arg(), dirp.arg(), count as i64];
    // SAFETY: the caller guarantees dirp.
    unsafe { call(sysif, libc::SYS_getdents64, args) }.await
}

/// `mkdirat(dirfd, path, mode)` — creates a directory.
///
/// The kernel only reads `path`; a bad address is `EFAULT`.
///
/// # Errors
/// `EEXIST`, `ENOENT`, `EACCES`, `ENOSPC`, `ENOTDIR`, `EROFS` and others. See mkdir(2).
pub async fn mkdirat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    mode: u32,
) -> Result<(), SyscallError> {
    let args = [dirfd_arg(dirfd), path.arg(), mode as i64];
    // SAFETY: mkdirat only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_mkdirat, args) }.await
}

/// `unlinkat(dirfd, path, flags)` — removes a name (a directory with `AT::REMOVEDIR`).
///
/// The kernel only reads `path`; a bad address is `EFAULT`.
///
/// # Errors
/// `ENOENT`, `EACCES`, `EBUSY`, `EISDIR`, `ENOTDIR`, `ENOTEMPTY`, `EROFS` and others. See
/// unlink(2) and rmdir(2).
pub async fn unlinkat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    flags: AT,
) -> Result<(), SyscallError> {
    let args = [dirfd_arg(dirfd), path.arg(), flags.bits() as i64];
    // SAFETY: unlinkat only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_unlinkat, args) }.await
}

/// `linkat(olddirfd, oldpath, newdirfd, newpath, flags)` — makes a new name for a file
/// (`AT::SYMLINK_FOLLOW` to follow a symlink at `oldpath`, `AT::EMPTY_PATH` with `""` to
/// link `olddirfd` itself).
///
/// The kernel only reads the paths; a bad address is `EFAULT`.
///
/// # Errors
/// `EEXIST`, `ENOENT`, `EXDEV`, `EPERM`, `EACCES`, `EMLINK` and others. See link(2).
pub async fn linkat(
    sysif: &dyn SyscallInterface,
    olddirfd: Option<FileDescriptor>,
    oldpath: Address,
    newdirfd: Option<FileDescriptor>,
    newpath: Address,
    flags: AT,
) -> Result<(), SyscallError> {
    let args = [
        dirfd_arg(olddirfd),
        oldpath.arg(),
        dirfd_arg(newdirfd),
        newpath.arg(),
        flags.bits() as i64,
    ];
    // SAFETY: linkat only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_linkat, args) }.await
}

/// `symlinkat(target, newdirfd, linkpath)` — creates a symbolic link at `linkpath`
/// pointing to `target`.
///
/// The kernel only reads the strings; a bad address is `EFAULT`.
///
/// # Errors
/// `EEXIST`, `ENOENT`, `EACCES`, `ENOSPC`, `EROFS` and others. See symlink(2).
pub async fn symlinkat(
    sysif: &dyn SyscallInterface,
    target: Address,
    newdirfd: Option<FileDescriptor>,
    linkpath: Address,
) -> Result<(), SyscallError> {
    let args = [target.arg(), dirfd_arg(newdirfd), linkpath.arg()];
    // SAFETY: symlinkat only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_symlinkat, args) }.await
}

/// `readlinkat(dirfd, path, buf, bufsiz)` — writes the target of a symbolic link into
/// `buf` (not NUL-terminated, silently truncated to `bufsiz`); returns the bytes written.
///
/// # Safety
/// `buf` must be valid for writing `bufsiz` bytes in the target's address space.
///
/// # Errors
/// `EINVAL` (not a symlink, or `bufsiz` 0), `ENOENT`, `EACCES`, `ELOOP` and others. See
/// readlink(2).
pub async unsafe fn readlinkat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    buf: Address,
    bufsiz: usize,
) -> Result<usize, SyscallError> {
    let args = [dirfd_arg(dirfd), path.arg(), buf.arg(), bufsiz as i64];
    // SAFETY: the caller guarantees buf; path is only read.
    unsafe { call(sysif, libc::SYS_readlinkat, args) }.await
}

/// `renameat2(olddirfd, oldpath, newdirfd, newpath, flags)` — renames a file, with
/// `RENAME::NOREPLACE` (fail if the new name exists) or `RENAME::EXCHANGE` (swap them).
///
/// The kernel only reads the paths; a bad address is `EFAULT`.
///
/// # Errors
/// `EEXIST` (with `NOREPLACE`), `ENOENT`, `EXDEV`, `EISDIR`, `ENOTEMPTY`, `EINVAL` and
/// others. See rename(2).
pub async fn renameat2(
    sysif: &dyn SyscallInterface,
    olddirfd: Option<FileDescriptor>,
    oldpath: Address,
    newdirfd: Option<FileDescriptor>,
    newpath: Address,
    flags: RENAME,
) -> Result<(), SyscallError> {
    let args = [
        dirfd_arg(olddirfd),
        oldpath.arg(),
        dirfd_arg(newdirfd),
        newpath.arg(),
        flags.bits() as i64,
    ];
    // SAFETY: renameat2 only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_renameat2, args) }.await
}

/// `fchmod(fd, mode)` — changes the permission bits of the file `fd` refers to.
///
/// # Errors
/// `EBADF`, `EPERM`, `EROFS` and others. See chmod(2).
pub async fn fchmod(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    mode: u32,
) -> Result<(), SyscallError> {
    // SAFETY: fchmod touches no memory and does not change the fd table.
    unsafe { call(sysif, libc::SYS_fchmod, [fd.arg(), mode as i64]) }.await
}

/// `fchmodat(dirfd, path, mode)` — changes the permission bits of a file by path
/// (following symlinks; the raw syscall takes no flags, see [`fchmodat2`]).
///
/// The kernel only reads `path`; a bad address is `EFAULT`.
///
/// # Errors
/// `ENOENT`, `EPERM`, `EACCES`, `EROFS` and others. See chmod(2).
pub async fn fchmodat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    mode: u32,
) -> Result<(), SyscallError> {
    let args = [dirfd_arg(dirfd), path.arg(), mode as i64];
    // SAFETY: fchmodat only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_fchmodat, args) }.await
}

/// `fchmodat2(dirfd, path, mode, flags)` — [`fchmodat`] with flags (`AT::SYMLINK_NOFOLLOW`,
/// `AT::EMPTY_PATH`); Linux 6.6 and later.
///
/// The kernel only reads `path`; a bad address is `EFAULT`.
///
/// # Errors
/// `ENOSYS` before Linux 6.6, `EOPNOTSUPP` (changing a symlink's mode), and as
/// [`fchmodat`]. See chmod(2).
pub async fn fchmodat2(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    mode: u32,
    flags: AT,
) -> Result<(), SyscallError> {
    let args = [
        dirfd_arg(dirfd),
        path.arg(),
        mode as i64,
        flags.bits() as i64,
    ];
    // SAFETY: fchmodat2 only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_fchmodat2, args) }.await
}

/// `fchown(fd, owner, group)` — changes the owner and group of the file `fd` refers to;
/// `u32::MAX` (`-1`) leaves that id unchanged.
///
/// # Errors
/// `EBADF`, `EPERM`, `EROFS` and others. See chown(2).
pub async fn fchown(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    owner: u32,
    group: u32,
) -> Result<(), SyscallError> {
    let args = [fd.arg(), owner as i64, group as i64];
    // SAFETY: fchown touches no memory and does not change the fd table.
    unsafe { call(sysif, libc::SYS_fchown, args) }.await
}

/// `utimensat(dirfd, path, times, flags)` — sets the access and modification times of a
/// file from the two `struct timespec`s at `times` (`UTIME_NOW`/`UTIME_OMIT` allowed in
/// `tv_nsec`; a null `times` means both now). A null `path` means `dirfd` itself.
///
/// The kernel only reads `path` and `times`; a bad address is `EFAULT`.
///
/// # Errors
/// `EACCES`, `EPERM`, `ENOENT`, `EINVAL` (bad nanoseconds), `EBADF`, `EROFS` and others.
/// See utimensat(2).
pub async fn utimensat(
    sysif: &dyn SyscallInterface,
    dirfd: Option<FileDescriptor>,
    path: Address,
    times: Address,
    flags: AT,
) -> Result<(), SyscallError> {
    let args = [
        dirfd_arg(dirfd),
        path.arg(),
        times.arg(),
        flags.bits() as i64,
    ];
    // SAFETY: utimensat only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_utimensat, args) }.await
}

/// `chdir(path)` — changes the target's working directory (shared by every process of its
/// `CLONE_FS` group).
///
/// The kernel only reads `path`; a bad address is `EFAULT`.
///
/// # Errors
/// `ENOENT`, `ENOTDIR`, `EACCES`, `ELOOP` and others. See chdir(2).
pub async fn chdir(sysif: &dyn SyscallInterface, path: Address) -> Result<(), SyscallError> {
    // SAFETY: chdir only reads memory and touches no fds.
    unsafe { call(sysif, libc::SYS_chdir, [path.arg()]) }.await
}

/// `fchdir(fd)` — changes the target's working directory to the directory `fd` refers to.
///
/// # Errors
/// `EBADF`, `ENOTDIR`, `EACCES`. See chdir(2).
pub async fn fchdir(sysif: &dyn SyscallInterface, fd: FileDescriptor) -> Result<(), SyscallError> {
    // SAFETY: fchdir touches no memory and does not change the fd table.
    unsafe { call(sysif, libc::SYS_fchdir, [fd.arg()]) }.await
}

/// `getcwd(buf, size)` — writes the target's working directory, NUL-terminated, into
/// `buf`; returns the length written including the NUL.
///
/// # Safety
/// `buf` must be valid for writing `size` bytes in the target's address space.
///
/// # Errors
/// `ERANGE` (buffer too small), `ENOENT` (the directory was removed), `EFAULT`. See
/// getcwd(2).
pub async unsafe fn getcwd(
    sysif: &dyn SyscallInterface,
    buf: Address,
    size: usize,
) -> Result<usize, SyscallError> {
    // SAFETY: the caller guarantees buf.
    unsafe { call(sysif, libc::SYS_getcwd, [buf.arg(), size as i64]) }.await
}

/// `umask(mask)` — sets the target's file mode creation mask (only the `0o777` bits
/// count) and returns the previous one.
///
/// # Errors
/// Only connection errors. See umask(2).
pub async fn umask(sysif: &dyn SyscallInterface, mask: u32) -> Result<u32, SyscallError> {
    // SAFETY: umask touches no memory and no fds.
    unsafe { call(sysif, libc::SYS_umask, [mask as i64]) }.await
}
