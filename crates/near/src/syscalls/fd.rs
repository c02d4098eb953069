//! File descriptor syscalls: read and write (plain, positional, vectored), seeking, sizes,
//! close, dup, fcntl (flags and record locks), ioctl, pipes, memfds.

use super::{call, call_new_fd, call_recorded};
use crate::{Address, FileDescriptor, O, ResultCell, SyscallError, SyscallInterface};

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
    unsafe { call(sysif, libc::SYS_read, [fd.arg(), buf.arg(), count as i64]) }.await
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
    unsafe { call(sysif, libc::SYS_write, [fd.arg(), buf.arg(), count as i64]) }.await
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
    unsafe { call(sysif, libc::SYS_close, [fd.arg()]) }.await
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
    unsafe { call(sysif, libc::SYS_dup3, args) }.await
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
    unsafe { call(sysif, libc::SYS_dup2, [oldfd.arg(), newfd.arg()]) }.await
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
    let args = [fd.arg(), cmd as i64, arg];
    if cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC {
        // SAFETY: forwarded from the caller; the result is a new fd nobody else owns.
        return unsafe { sysif.syscall_new_fd(super::request(libc::SYS_fcntl, args)) }.await;
    }
    // SAFETY: forwarded from the caller.
    unsafe { call(sysif, libc::SYS_fcntl, args) }.await
}

/// `pipe2(pipefd, flags)` — a pipe; the kernel writes `[read_end, write_end]` at `pipefd`.
///
/// The kernel writes there only if it succeeds. The result is also recorded in `cell`,
/// even if this future is dropped (see [`SyscallInterface::syscall_recorded`]), as for
/// [`socketpair`](crate::socketpair), which does write on failure.
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
    cell: &ResultCell,
) -> Result<(), SyscallError> {
    let args = [pipefd.arg(), flags.bits() as i64];
    // SAFETY: the caller guarantees pipefd.
    unsafe { call_recorded(sysif, libc::SYS_pipe2, args, cell) }.await
}

bitflags::bitflags! {
    /// Per-call flags of `preadv2(2)`/`pwritev2(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct RWF: i32 {
        /// `RWF_HIPRI`.
        const HIPRI = libc::RWF_HIPRI;
        /// `RWF_DSYNC`.
        const DSYNC = libc::RWF_DSYNC;
        /// `RWF_SYNC`.
        const SYNC = libc::RWF_SYNC;
        /// `RWF_NOWAIT`.
        const NOWAIT = libc::RWF_NOWAIT;
        /// `RWF_APPEND`.
        const APPEND = libc::RWF_APPEND;
        /// `RWF_NOAPPEND`.
        const NOAPPEND = libc::RWF_NOAPPEND;
        /// `RWF_ATOMIC`.
        const ATOMIC = libc::RWF_ATOMIC;
        /// `RWF_DONTCACHE`.
        const DONTCACHE = libc::RWF_DONTCACHE;
    }
}

bitflags::bitflags! {
    /// Modes of `fallocate(2)` (empty: allocate and extend the file).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct FALLOC: i32 {
        /// `FALLOC_FL_KEEP_SIZE`.
        const KEEP_SIZE = libc::FALLOC_FL_KEEP_SIZE;
        /// `FALLOC_FL_PUNCH_HOLE`.
        const PUNCH_HOLE = libc::FALLOC_FL_PUNCH_HOLE;
        /// `FALLOC_FL_COLLAPSE_RANGE`.
        const COLLAPSE_RANGE = libc::FALLOC_FL_COLLAPSE_RANGE;
        /// `FALLOC_FL_ZERO_RANGE`.
        const ZERO_RANGE = libc::FALLOC_FL_ZERO_RANGE;
        /// `FALLOC_FL_INSERT_RANGE`.
        const INSERT_RANGE = libc::FALLOC_FL_INSERT_RANGE;
        /// `FALLOC_FL_UNSHARE_RANGE`.
        const UNSHARE_RANGE = libc::FALLOC_FL_UNSHARE_RANGE;
    }
}

bitflags::bitflags! {
    /// Flags of `memfd_create(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct MFD: u32 {
        /// `MFD_CLOEXEC`.
        const CLOEXEC = libc::MFD_CLOEXEC;
        /// `MFD_ALLOW_SEALING`.
        const ALLOW_SEALING = libc::MFD_ALLOW_SEALING;
        /// `MFD_HUGETLB`.
        const HUGETLB = libc::MFD_HUGETLB;
        /// `MFD_NOEXEC_SEAL`.
        const NOEXEC_SEAL = libc::MFD_NOEXEC_SEAL;
        /// `MFD_EXEC`.
        const EXEC = libc::MFD_EXEC;
    }
}

bitflags::bitflags! {
    /// File descriptor flags of `fcntl(F_GETFD/F_SETFD)`: flags of the fd itself, not of the
    /// open file description it refers to.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct FD: i32 {
        /// `FD_CLOEXEC`.
        const CLOEXEC = libc::FD_CLOEXEC;
    }
}

/// Where `lseek(2)` counts its offset from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum SEEK {
    /// From the start of the file.
    SET = libc::SEEK_SET,
    /// From the current offset.
    CUR = libc::SEEK_CUR,
    /// From the end of the file.
    END = libc::SEEK_END,
    /// To the next data at or after the offset.
    DATA = libc::SEEK_DATA,
    /// To the next hole at or after the offset (the end of the file counts as a hole).
    HOLE = libc::SEEK_HOLE,
}

/// The type of a record lock (`l_type` of `struct flock`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i16)]
pub enum LockType {
    /// A shared (read) lock, `F_RDLCK`.
    Read = libc::F_RDLCK as i16,
    /// An exclusive (write) lock, `F_WRLCK`.
    Write = libc::F_WRLCK as i16,
    /// No lock / release, `F_UNLCK`.
    Unlock = libc::F_UNLCK as i16,
}

impl LockType {
    /// The lock type with raw value `v`, if known.
    pub const fn from_raw(v: i16) -> Option<LockType> {
        match v as i32 {
            libc::F_RDLCK => Some(LockType::Read),
            libc::F_WRLCK => Some(LockType::Write),
            libc::F_UNLCK => Some(LockType::Unlock),
            _ => None,
        }
    }
}

/// The record-lock commands of `fcntl(2)`: process-associated (`F_SETLK`...) and
/// open-file-description (`F_OFD_SETLK`...) locks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i32)]
pub enum LockCmd {
    /// `F_SETLK`: take or release a lock held by the process; fail with `EAGAIN` on conflict.
    SetLk = libc::F_SETLK,
    /// `F_SETLKW`: as `SetLk`, waiting for a conflicting lock to go.
    SetLkW = libc::F_SETLKW,
    /// `F_GETLK`: the first lock that would conflict, or `l_type` set to `F_UNLCK`.
    GetLk = libc::F_GETLK,
    /// `F_OFD_SETLK`: take or release a lock held by the open file description.
    OfdSetLk = libc::F_OFD_SETLK,
    /// `F_OFD_SETLKW`: as `OfdSetLk`, waiting for a conflicting lock to go.
    OfdSetLkW = libc::F_OFD_SETLKW,
    /// `F_OFD_GETLK`: as `GetLk`, for open-file-description locks.
    OfdGetLk = libc::F_OFD_GETLK,
}

impl LockCmd {
    /// Whether the kernel writes the `struct flock` back (the `GETLK` commands).
    pub const fn is_get(self) -> bool {
        matches!(self, LockCmd::GetLk | LockCmd::OfdGetLk)
    }
}

/// `pread64(fd, buf, count, offset)` — reads up to `count` bytes at `offset` into `buf`,
/// without moving the file offset.
///
/// # Safety
/// `buf` must be valid for writing `count` bytes in the target's address space.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL` (negative offset), `ESPIPE` (pipe, socket), `EISDIR` and
/// others. See pread(2).
pub async unsafe fn pread64(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    buf: Address,
    count: usize,
    offset: i64,
) -> Result<usize, SyscallError> {
    let args = [fd.arg(), buf.arg(), count as i64, offset];
    // SAFETY: the caller guarantees buf.
    unsafe { call(sysif, libc::SYS_pread64, args) }.await
}

/// `pwrite64(fd, buf, count, offset)` — writes up to `count` bytes from `buf` at `offset`,
/// without moving the file offset.
///
/// The kernel only reads the buffer; an invalid address gives `EFAULT`.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL`, `ESPIPE`, `ENOSPC`, `EFBIG` and others. See pwrite(2).
pub async fn pwrite64(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    buf: Address,
    count: usize,
    offset: i64,
) -> Result<usize, SyscallError> {
    let args = [fd.arg(), buf.arg(), count as i64, offset];
    // SAFETY: pwrite only reads memory (a bad address is EFAULT) and does not change the fd.
    unsafe { call(sysif, libc::SYS_pwrite64, args) }.await
}

/// `readv(fd, iov, iovcnt)` — reads into the `iovcnt` buffers described by the `struct
/// iovec` array at `iov`, in order.
///
/// # Safety
/// `iov` must hold `iovcnt` iovecs, each describing memory valid for writing in the
/// target's address space.
///
/// # Errors
/// `EAGAIN`, `EBADF`, `EFAULT`, `EINTR`, `EINVAL` (`iovcnt` above `IOV_MAX`, lengths
/// overflowing) and others. See readv(2).
pub async unsafe fn readv(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    iov: Address,
    iovcnt: usize,
) -> Result<usize, SyscallError> {
    // SAFETY: the caller guarantees iov and the buffers it describes.
    unsafe { call(sysif, libc::SYS_readv, [fd.arg(), iov.arg(), iovcnt as i64]) }.await
}

/// `writev(fd, iov, iovcnt)` — writes the `iovcnt` buffers described by the `struct iovec`
/// array at `iov`, in order.
///
/// The kernel only reads memory; an invalid address gives `EFAULT`.
///
/// # Errors
/// `EAGAIN`, `EBADF`, `EFAULT`, `EINVAL`, `EPIPE` and others. See writev(2).
pub async fn writev(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    iov: Address,
    iovcnt: usize,
) -> Result<usize, SyscallError> {
    // SAFETY: writev only reads memory (a bad address is EFAULT) and does not change the fd.
    unsafe {
        call(
            sysif,
            libc::SYS_writev,
            [fd.arg(), iov.arg(), iovcnt as i64],
        )
    }
    .await
}

/// `preadv2(fd, iov, iovcnt, offset, flags)` — as [`readv`] at `offset` (the current file
/// offset, which then moves, if `offset` is -1), with per-call [`RWF`] flags.
///
/// # Safety
/// As for [`readv`].
///
/// # Errors
/// As [`readv`]; `ESPIPE` for an offset on a pipe; `EOPNOTSUPP` for flags the file does not
/// support; `EAGAIN` with `RWF::NOWAIT` when data is not at hand. See preadv2(2).
pub async unsafe fn preadv2(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    iov: Address,
    iovcnt: usize,
    offset: i64,
    flags: RWF,
) -> Result<usize, SyscallError> {
    // On 64-bit kernels the offset is whole in pos_l; pos_h is ignored.
    let args = [
        fd.arg(),
        iov.arg(),
        iovcnt as i64,
        offset,
        0,
        flags.bits() as i64,
    ];
    // SAFETY: the caller guarantees iov and the buffers it describes.
    unsafe { call(sysif, libc::SYS_preadv2, args) }.await
}

/// `pwritev2(fd, iov, iovcnt, offset, flags)` — as [`writev`] at `offset` (the current
/// file offset, which then moves, if `offset` is -1), with per-call [`RWF`] flags.
///
/// The kernel only reads memory; an invalid address gives `EFAULT`.
///
/// # Errors
/// As [`writev`]; `ESPIPE`, `EOPNOTSUPP`, `EAGAIN`. See pwritev2(2).
pub async fn pwritev2(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    iov: Address,
    iovcnt: usize,
    offset: i64,
    flags: RWF,
) -> Result<usize, SyscallError> {
    let args = [
        fd.arg(),
        iov.arg(),
        iovcnt as i64,
        offset,
        0,
        flags.bits() as i64,
    ];
    // SAFETY: pwritev2 only reads memory (a bad address is EFAULT) and does not change the
    // fd.
    unsafe { call(sysif, libc::SYS_pwritev2, args) }.await
}

/// `lseek(fd, offset, whence)` — moves the file offset; returns the new offset from the
/// start of the file.
///
/// # Errors
/// `EBADF`, `EINVAL` (resulting offset negative), `ENXIO` (`SEEK::DATA`/`SEEK::HOLE` past
/// the end), `EOVERFLOW`, `ESPIPE` (pipe, socket). See lseek(2).
pub async fn lseek(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    offset: i64,
    whence: SEEK,
) -> Result<u64, SyscallError> {
    // SAFETY: lseek touches no memory and does not change the fd table.
    unsafe { call(sysif, libc::SYS_lseek, [fd.arg(), offset, whence as i64]) }.await
}

/// `ftruncate(fd, length)` — sets the size of the file, cutting or extending it with zeros.
///
/// # Errors
/// `EBADF`, `EINVAL` (negative length, not a regular file open for writing), `EFBIG`,
/// `EPERM` (sealed or append-only). See ftruncate(2).
pub async fn ftruncate(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    length: i64,
) -> Result<(), SyscallError> {
    // SAFETY: ftruncate touches no memory and does not change the fd table.
    unsafe { call(sysif, libc::SYS_ftruncate, [fd.arg(), length]) }.await
}

/// `fsync(fd)` — flushes the file's data and metadata to its storage.
///
/// # Errors
/// `EBADF`, `EIO`, `ENOSPC`, `EROFS`/`EINVAL` (not syncable, such as a pipe). See fsync(2).
pub async fn fsync(sysif: &dyn SyscallInterface, fd: FileDescriptor) -> Result<(), SyscallError> {
    // SAFETY: fsync touches no memory and does not change the fd table.
    unsafe { call(sysif, libc::SYS_fsync, [fd.arg()]) }.await
}

/// `fallocate(fd, mode, offset, len)` — allocates (or, by `mode`, deallocates, zeroes,
/// collapses, inserts) the byte range `offset..offset + len` of a file.
///
/// # Errors
/// `EBADF`, `EFBIG`, `EINVAL`, `ENODEV`, `ENOSPC`, `EOPNOTSUPP`, `ESPIPE`, `EPERM`. See
/// fallocate(2).
pub async fn fallocate(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    mode: FALLOC,
    offset: i64,
    len: i64,
) -> Result<(), SyscallError> {
    let args = [fd.arg(), mode.bits() as i64, offset, len];
    // SAFETY: fallocate touches no memory and does not change the fd table.
    unsafe { call(sysif, libc::SYS_fallocate, args) }.await
}

/// `fcntl(fd, cmd, flock)` — a record-lock command with its `struct flock` at `flock`.
///
/// # Safety
/// `flock` must be valid for reading a `struct flock` in the target's address space, and
/// for writing one for the `GETLK` commands.
///
/// # Errors
/// `EAGAIN`/`EACCES` (conflicting lock), `EBADF`, `EDEADLK`, `EFAULT`, `EINTR`, `EINVAL`
/// (including a nonzero `l_pid` for the `OFD` commands), `ENOLCK`. See fcntl(2).
pub async unsafe fn fcntl_lock(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    cmd: LockCmd,
    flock: Address,
) -> Result<(), SyscallError> {
    // SAFETY: the caller guarantees flock.
    unsafe { call(sysif, libc::SYS_fcntl, [fd.arg(), cmd as i64, flock.arg()]) }.await
}

/// `ioctl(fd, request, arg)` — a device- or file-specific request.
///
/// # Safety
/// Requests may read or write memory at `arg` or change fds; the caller must make `arg`
/// what `request` expects, valid in the target's address space.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL`, `ENOTTY` (request unknown to the file) and the request's
/// own errors. See ioctl(2).
pub async unsafe fn ioctl(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    request: u64,
    arg: i64,
) -> Result<i64, SyscallError> {
    // SAFETY: forwarded from the caller.
    unsafe { call(sysif, libc::SYS_ioctl, [fd.arg(), request as i64, arg]) }.await
}

/// `memfd_create(name, flags)` — an anonymous memory-backed file; `name` (a NUL-terminated
/// string of at most 249 bytes) shows in `/proc/<pid>/fd`.
///
/// The kernel only reads `name`; an invalid address gives `EFAULT`.
///
/// # Errors
/// `EFAULT`, `EINVAL` (name too long, unknown flags), `EMFILE`, `ENFILE`, `ENOMEM`. See
/// memfd_create(2).
pub async fn memfd_create(
    sysif: &dyn SyscallInterface,
    name: Address,
    flags: MFD,
) -> Result<FileDescriptor, SyscallError> {
    // SAFETY: memfd_create only reads name and creates a new fd.
    unsafe {
        call_new_fd(
            sysif,
            libc::SYS_memfd_create,
            [name.arg(), flags.bits() as i64],
        )
    }
    .await
}
