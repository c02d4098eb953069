//! Namespace and mount syscalls: unshare, setns, mount, umount2, pivot_root, chroot.

use super::call;
use crate::{Address, CLONE, FileDescriptor, SyscallError, SyscallInterface};

crate::flag_set! {
    /// Flags of `mount(2)`.
    MS: u64 {
        RDONLY = libc::MS_RDONLY, NOSUID = libc::MS_NOSUID, NODEV = libc::MS_NODEV,
        NOEXEC = libc::MS_NOEXEC, SYNCHRONOUS = libc::MS_SYNCHRONOUS, REMOUNT = libc::MS_REMOUNT,
        MANDLOCK = libc::MS_MANDLOCK, DIRSYNC = libc::MS_DIRSYNC, NOSYMFOLLOW = 256,
        NOATIME = libc::MS_NOATIME, NODIRATIME = libc::MS_NODIRATIME, BIND = libc::MS_BIND,
        MOVE = libc::MS_MOVE, REC = libc::MS_REC, SILENT = libc::MS_SILENT,
        POSIXACL = libc::MS_POSIXACL, UNBINDABLE = libc::MS_UNBINDABLE,
        PRIVATE = libc::MS_PRIVATE, SLAVE = libc::MS_SLAVE, SHARED = libc::MS_SHARED,
        RELATIME = libc::MS_RELATIME, KERNMOUNT = libc::MS_KERNMOUNT,
        I_VERSION = libc::MS_I_VERSION, STRICTATIME = libc::MS_STRICTATIME,
        LAZYTIME = libc::MS_LAZYTIME,
    }
}

crate::flag_set! {
    /// Flags of `umount2(2)`.
    MNT: i32 {
        FORCE = libc::MNT_FORCE, DETACH = libc::MNT_DETACH, EXPIRE = libc::MNT_EXPIRE,
        NOFOLLOW = libc::UMOUNT_NOFOLLOW,
    }
}

/// The flags `unshare` accepts in the handle layer: new namespaces, and private fs context and System V
/// semaphore undo lists. `CLONE::FILES` is refused: it would give the task a new fd table
/// behind the back of the handles that track the old one.
pub const UNSHARE_FLAGS: CLONE = CLONE::NEWNS
    .union(CLONE::NEWUTS)
    .union(CLONE::NEWIPC)
    .union(CLONE::NEWNET)
    .union(CLONE::NEWPID)
    .union(CLONE::NEWUSER)
    .union(CLONE::NEWCGROUP)
    .union(CLONE::FS)
    .union(CLONE::SYSVSEM);

/// The namespace kinds `setns` can check (`nstype`).
pub const SETNS_TYPES: CLONE = CLONE::NEWNS
    .union(CLONE::NEWUTS)
    .union(CLONE::NEWIPC)
    .union(CLONE::NEWNET)
    .union(CLONE::NEWPID)
    .union(CLONE::NEWUSER)
    .union(CLONE::NEWCGROUP);

/// `unshare(flags)` — gives the calling thread of the target its own copy of the
/// resources named by `flags` (new namespaces with `CLONE::NEW*`, a private fd table with
/// `CLONE::FILES`, a private fs context with `CLONE::FS`).
///
/// # Errors
/// `EINVAL`, `ENOMEM`, `ENOSPC`, `EPERM` (namespaces need `CAP_SYS_ADMIN`, except user
/// namespaces), `EUSERS`. See unshare(2).
pub async fn unshare(sysif: &dyn SyscallInterface, flags: CLONE) -> Result<(), SyscallError> {
    // SAFETY: unshare touches no memory; CLONE_FILES copies the table, closing nothing.
    unsafe { call(sysif, libc::SYS_unshare, [flags.bits() as i64]) }.await
}

/// `setns(fd, nstype)` — moves the calling thread of the target into the namespace `fd`
/// refers to (a `/proc/<pid>/ns/*` file or a pidfd); `nstype` (one `CLONE::NEW*` flag, or
/// empty for any) checks its kind.
///
/// # Errors
/// `EBADF`, `EINVAL`, `ENOMEM`, `EPERM`, `ESRCH`. See setns(2).
pub async fn setns(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    nstype: CLONE,
) -> Result<(), SyscallError> {
    // SAFETY: setns touches no memory; the fd is only used.
    unsafe { call(sysif, libc::SYS_setns, [fd.arg(), nstype.bits() as i64]) }.await
}

/// `mount(source, target, fstype, flags, data)` — attaches a filesystem (or changes a
/// mount, with `MS::REMOUNT`, `MS::BIND`, `MS::MOVE`, propagation flags); null `source`,
/// `fstype` or `data` where the operation ignores them.
///
/// The kernel only reads the strings; a bad address is `EFAULT`.
///
/// # Errors
/// `EACCES`, `EBUSY`, `EINVAL`, `ENODEV`, `ENOENT`, `ENOTDIR`, `EPERM` and others. See
/// mount(2).
pub async fn mount(
    sysif: &dyn SyscallInterface,
    source: Address,
    target: Address,
    fstype: Address,
    flags: MS,
    data: Address,
) -> Result<(), SyscallError> {
    let args = [
        source.arg(),
        target.arg(),
        fstype.arg(),
        flags.bits() as i64,
        data.arg(),
    ];
    // SAFETY: mount only reads memory.
    unsafe { call(sysif, libc::SYS_mount, args) }.await
}

/// `umount2(target, flags)` — detaches the filesystem mounted at `target` (a
/// NUL-terminated path, read only).
///
/// # Errors
/// `EAGAIN`, `EBUSY`, `EINVAL`, `ENOENT`, `EPERM`. See umount(2).
pub async fn umount2(
    sysif: &dyn SyscallInterface,
    target: Address,
    flags: MNT,
) -> Result<(), SyscallError> {
    // SAFETY: umount2 only reads memory.
    unsafe {
        call(
            sysif,
            libc::SYS_umount2,
            [target.arg(), flags.bits() as i64],
        )
    }
    .await
}

/// `pivot_root(new_root, put_old)` — makes the mount at `new_root` the root mount of the
/// caller's mount namespace and moves the old root to `put_old` (paths read only).
///
/// # Errors
/// `EBUSY`, `EINVAL`, `ENOTDIR`, `EPERM`. See pivot_root(2).
pub async fn pivot_root(
    sysif: &dyn SyscallInterface,
    new_root: Address,
    put_old: Address,
) -> Result<(), SyscallError> {
    // SAFETY: pivot_root only reads memory.
    unsafe { call(sysif, libc::SYS_pivot_root, [new_root.arg(), put_old.arg()]) }.await
}

/// `chroot(path)` — changes the root directory of the caller's fs context to `path` (a
/// NUL-terminated path, read only); the working directory is left where it was.
///
/// # Errors
/// `EACCES`, `ENOENT`, `ENOTDIR`, `EPERM` (needs `CAP_SYS_CHROOT`). See chroot(2).
pub async fn chroot(sysif: &dyn SyscallInterface, path: Address) -> Result<(), SyscallError> {
    // SAFETY: chroot only reads memory.
    unsafe { call(sysif, libc::SYS_chroot, [path.arg()]) }.await
}
