//! Namespace and mount syscalls: unshare, setns, mount, umount2, pivot_root, chroot.

use super::call;
use crate::{Address, CLONE, FileDescriptor, SyscallError, SyscallInterface};

bitflags::bitflags! {
    /// Flags of `mount(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct MS: u64 {
        /// `MS_RDONLY`.
        const RDONLY = libc::MS_RDONLY;
        /// `MS_NOSUID`.
        const NOSUID = libc::MS_NOSUID;
        /// `MS_NODEV`.
        const NODEV = libc::MS_NODEV;
        /// `MS_NOEXEC`.
        const NOEXEC = libc::MS_NOEXEC;
        /// `MS_SYNCHRONOUS`.
        const SYNCHRONOUS = libc::MS_SYNCHRONOUS;
        /// `MS_REMOUNT`.
        const REMOUNT = libc::MS_REMOUNT;
        /// `MS_MANDLOCK`.
        const MANDLOCK = libc::MS_MANDLOCK;
        /// `MS_DIRSYNC`.
        const DIRSYNC = libc::MS_DIRSYNC;
        /// `MS_NOSYMFOLLOW`.
        const NOSYMFOLLOW = libc::MS_NOSYMFOLLOW;
        /// `MS_NOATIME`.
        const NOATIME = libc::MS_NOATIME;
        /// `MS_NODIRATIME`.
        const NODIRATIME = libc::MS_NODIRATIME;
        /// `MS_BIND`.
        const BIND = libc::MS_BIND;
        /// `MS_MOVE`.
        const MOVE = libc::MS_MOVE;
        /// `MS_REC`.
        const REC = libc::MS_REC;
        /// `MS_SILENT`.
        const SILENT = libc::MS_SILENT;
        /// `MS_POSIXACL`.
        const POSIXACL = libc::MS_POSIXACL;
        /// `MS_UNBINDABLE`.
        const UNBINDABLE = libc::MS_UNBINDABLE;
        /// `MS_PRIVATE`.
        const PRIVATE = libc::MS_PRIVATE;
        /// `MS_SLAVE`.
        const SLAVE = libc::MS_SLAVE;
        /// `MS_SHARED`.
        const SHARED = libc::MS_SHARED;
        /// `MS_RELATIME`.
        const RELATIME = libc::MS_RELATIME;
        /// `MS_KERNMOUNT`.
        const KERNMOUNT = libc::MS_KERNMOUNT;
        /// `MS_I_VERSION`.
        const I_VERSION = libc::MS_I_VERSION;
        /// `MS_STRICTATIME`.
        const STRICTATIME = libc::MS_STRICTATIME;
        /// `MS_LAZYTIME`.
        const LAZYTIME = libc::MS_LAZYTIME;
    }
}

bitflags::bitflags! {
    /// Flags of `umount2(2)`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct MNT: i32 {
        /// `MNT_FORCE`.
        const FORCE = libc::MNT_FORCE;
        /// `MNT_DETACH`.
        const DETACH = libc::MNT_DETACH;
        /// `MNT_EXPIRE`.
        const EXPIRE = libc::MNT_EXPIRE;
        /// `UMOUNT_NOFOLLOW`.
        const NOFOLLOW = libc::UMOUNT_NOFOLLOW;
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
