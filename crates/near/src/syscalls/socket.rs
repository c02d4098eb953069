//! Socket syscalls used by connections: socketpair, sendmsg, recvmsg, shutdown.

use super::call;
use crate::{Address, FileDescriptor, MSG, SHUT, SOCK, SyscallError, SyscallInterface};

/// `socketpair(domain, type, protocol, sv)` — two connected sockets; the kernel writes the
/// two fd numbers at `sv`.
///
/// # Safety
/// `sv` must be valid for writing two `i32`s in the target's address space.
///
/// # Errors
/// `EAFNOSUPPORT`, `EFAULT`, `EMFILE`, `ENFILE`, `EOPNOTSUPP`. See socketpair(2).
pub async unsafe fn socketpair(
    sysif: &dyn SyscallInterface,
    domain: i32,
    ty: i32,
    flags: SOCK,
    protocol: i32,
    sv: Address,
) -> Result<(), SyscallError> {
    let args = [
        domain as i64,
        (ty | flags.bits()) as i64,
        protocol as i64,
        sv.arg(),
    ];
    // SAFETY: the caller guarantees sv.
    unsafe { call(sysif, libc::SYS_socketpair, args) }.await?;
    Ok(())
}

/// `sendmsg(fd, msg, flags)` — sends a message described by a `struct msghdr`.
///
/// The kernel only reads the message (a bad address is `EFAULT`); fds passed with
/// `SCM_RIGHTS` are duplicated, not moved.
///
/// # Errors
/// `EAGAIN`, `EBADF`, `EPIPE`, `ENOTSOCK` and others. See sendmsg(2).
pub async fn sendmsg(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    msg: Address,
    flags: MSG,
) -> Result<usize, SyscallError> {
    // SAFETY: sendmsg only reads memory and does not change existing fds.
    let ret = unsafe {
        call(
            sysif,
            libc::SYS_sendmsg,
            [fd.arg(), msg.arg(), flags.bits() as i64],
        )
    }
    .await?;
    Ok(ret as usize)
}

/// `recvmsg(fd, msg, flags)` — receives a message into the buffers a `struct msghdr`
/// describes; received fds are new fds in the target's table.
///
/// # Safety
/// `msg` and every buffer it points to must be valid for the kernel's writes in the
/// target's address space.
///
/// # Errors
/// `EAGAIN`, `EBADF`, `EFAULT`, `EINTR`, `ENOTSOCK` and others. See recvmsg(2).
pub async unsafe fn recvmsg(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    msg: Address,
    flags: MSG,
) -> Result<usize, SyscallError> {
    let args = [fd.arg(), msg.arg(), flags.bits() as i64];
    // SAFETY: the caller guarantees msg and its buffers.
    let ret = unsafe { call(sysif, libc::SYS_recvmsg, args) }.await?;
    Ok(ret as usize)
}

/// `shutdown(fd, how)` — shuts down part of a full-duplex connection.
///
/// # Errors
/// `EBADF`, `EINVAL`, `ENOTCONN`, `ENOTSOCK`. See shutdown(2).
pub async fn shutdown(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    how: SHUT,
) -> Result<(), SyscallError> {
    // SAFETY: shutdown touches no memory and does not close the fd.
    unsafe { call(sysif, libc::SYS_shutdown, [fd.arg(), how as i64]) }.await?;
    Ok(())
}
