//! Socket syscalls: socket, socketpair, bind, listen, accept4, connect, shutdown,
//! getsockname, getpeername, getsockopt, setsockopt, sendto, recvfrom, sendmsg, recvmsg, and
//! the flags of the `struct ifreq` ioctls on sockets and tun devices (made with
//! [`ioctl`](crate::ioctl)).

use super::{call, call_new_fd, call_recorded};
use crate::{Address, FileDescriptor, MSG, ResultCell, SHUT, SOCK, SyscallError, SyscallInterface};

/// An address family (`AF_*`), the `domain` of `socket(2)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum AF {
    /// `AF_UNIX`: local sockets named by paths (or abstract names).
    UNIX,
    /// `AF_INET`: IPv4.
    INET,
    /// `AF_INET6`: IPv6.
    INET6,
    /// `AF_NETLINK`: kernel/user-space messaging.
    NETLINK,
    /// `AF_PACKET`: raw link-level packets.
    PACKET,
}

impl AF {
    /// The raw `AF_*` number.
    pub const fn as_raw(self) -> i32 {
        match self {
            AF::UNIX => libc::AF_UNIX,
            AF::INET => libc::AF_INET,
            AF::INET6 => libc::AF_INET6,
            AF::NETLINK => libc::AF_NETLINK,
            AF::PACKET => libc::AF_PACKET,
        }
    }

    /// The family with raw number `n`, if it is one of these.
    pub const fn from_raw(n: i32) -> Option<AF> {
        Some(match n {
            libc::AF_UNIX => AF::UNIX,
            libc::AF_INET => AF::INET,
            libc::AF_INET6 => AF::INET6,
            libc::AF_NETLINK => AF::NETLINK,
            libc::AF_PACKET => AF::PACKET,
            _ => return None,
        })
    }
}

/// A socket type (`SOCK_STREAM`...), the `type` of `socket(2)` without its flags (those
/// are [`SOCK`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum SockType {
    /// `SOCK_STREAM`: a reliable byte stream.
    STREAM,
    /// `SOCK_DGRAM`: datagrams.
    DGRAM,
    /// `SOCK_SEQPACKET`: reliable ordered datagrams.
    SEQPACKET,
    /// `SOCK_RAW`: raw protocol access.
    RAW,
}

impl SockType {
    /// The raw `SOCK_*` number.
    pub const fn as_raw(self) -> i32 {
        match self {
            SockType::STREAM => libc::SOCK_STREAM,
            SockType::DGRAM => libc::SOCK_DGRAM,
            SockType::SEQPACKET => libc::SOCK_SEQPACKET,
            SockType::RAW => libc::SOCK_RAW,
        }
    }
}

bitflags::bitflags! {
    /// Interface flags (`IFF_*`), the `ifr_flags` of `SIOCGIFFLAGS`/`SIOCSIFFLAGS`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct IFF: i16 {
        /// `IFF_UP`.
        const UP = libc::IFF_UP as i16;
        /// `IFF_BROADCAST`.
        const BROADCAST = libc::IFF_BROADCAST as i16;
        /// `IFF_DEBUG`.
        const DEBUG = libc::IFF_DEBUG as i16;
        /// `IFF_LOOPBACK`.
        const LOOPBACK = libc::IFF_LOOPBACK as i16;
        /// `IFF_POINTOPOINT`.
        const POINTOPOINT = libc::IFF_POINTOPOINT as i16;
        /// `IFF_NOTRAILERS`.
        const NOTRAILERS = libc::IFF_NOTRAILERS as i16;
        /// `IFF_RUNNING`.
        const RUNNING = libc::IFF_RUNNING as i16;
        /// `IFF_NOARP`.
        const NOARP = libc::IFF_NOARP as i16;
        /// `IFF_PROMISC`.
        const PROMISC = libc::IFF_PROMISC as i16;
        /// `IFF_ALLMULTI`.
        const ALLMULTI = libc::IFF_ALLMULTI as i16;
        /// `IFF_MASTER`.
        const MASTER = libc::IFF_MASTER as i16;
        /// `IFF_SLAVE`.
        const SLAVE = libc::IFF_SLAVE as i16;
        /// `IFF_MULTICAST`.
        const MULTICAST = libc::IFF_MULTICAST as i16;
        /// `IFF_PORTSEL`.
        const PORTSEL = libc::IFF_PORTSEL as i16;
        /// `IFF_AUTOMEDIA`.
        const AUTOMEDIA = libc::IFF_AUTOMEDIA as i16;
        /// `IFF_DYNAMIC`.
        const DYNAMIC = libc::IFF_DYNAMIC as i16;
    }
}

bitflags::bitflags! {
    /// Flags of `TUNSETIFF` (`IFF_TUN`, `IFF_TAP`, `IFF_NO_PI`...), in `ifr_flags`. Exactly
    /// one of `TUN` and `TAP` must be given.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
    pub struct TUN: i16 {
        /// `IFF_TUN`.
        const TUN = libc::IFF_TUN as i16;
        /// `IFF_TAP`.
        const TAP = libc::IFF_TAP as i16;
        /// `IFF_NAPI`.
        const NAPI = libc::IFF_NAPI as i16;
        /// `IFF_NO_PI`.
        const NO_PI = libc::IFF_NO_PI as i16;
        /// `IFF_VNET_HDR`.
        const VNET_HDR = libc::IFF_VNET_HDR as i16;
        /// `IFF_MULTI_QUEUE`.
        const MULTI_QUEUE = libc::IFF_MULTI_QUEUE as i16;
    }
}

/// `socket(domain, type | flags, protocol)` — a new socket.
///
/// # Errors
/// `EACCES`, `EAFNOSUPPORT`, `EINVAL`, `EMFILE`, `ENFILE`, `ENOBUFS`, `EPROTONOSUPPORT`.
/// See socket(2).
pub async fn socket(
    sysif: &dyn SyscallInterface,
    domain: AF,
    ty: SockType,
    flags: SOCK,
    protocol: i32,
) -> Result<FileDescriptor, SyscallError> {
    let args = [
        domain.as_raw() as i64,
        (ty.as_raw() | flags.bits()) as i64,
        protocol as i64,
    ];
    // SAFETY: socket touches no memory and only creates an fd.
    unsafe { call_new_fd(sysif, libc::SYS_socket, args) }.await
}

/// `socketpair(domain, type, protocol, sv)` — two connected sockets; the kernel writes the
/// two fd numbers at `sv`.
///
/// The kernel writes two numbers at `sv` before it can still fail, and then frees them:
/// they name fds of the caller only if the syscall succeeded. The result is also recorded
/// in `cell`, even if this future is dropped (see [`SyscallInterface::syscall_recorded`]),
/// so that code reading `sv` afterwards can tell.
///
/// # Safety
/// `sv` must be valid for writing two `i32`s in the target's address space.
///
/// # Errors
/// `EAFNOSUPPORT`, `EFAULT`, `EMFILE`, `ENFILE`, `EOPNOTSUPP`. See socketpair(2).
pub async unsafe fn socketpair(
    sysif: &dyn SyscallInterface,
    domain: AF,
    ty: SockType,
    flags: SOCK,
    protocol: i32,
    sv: Address,
    cell: &ResultCell,
) -> Result<(), SyscallError> {
    let args = [
        domain.as_raw() as i64,
        (ty.as_raw() | flags.bits()) as i64,
        protocol as i64,
        sv.arg(),
    ];
    // SAFETY: the caller guarantees sv.
    unsafe { call_recorded(sysif, libc::SYS_socketpair, args, cell) }.await
}

/// `bind(fd, addr, addrlen)` — gives the socket the address at `addr`.
///
/// The kernel only reads the address (a bad one is `EFAULT`).
///
/// # Errors
/// `EACCES`, `EADDRINUSE`, `EBADF`, `EINVAL`, `ENOTSOCK`, `ENOENT`, `ENAMETOOLONG` and
/// others. See bind(2).
pub async fn bind(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    addr: Address,
    addrlen: u32,
) -> Result<(), SyscallError> {
    let args = [fd.arg(), addr.arg(), addrlen as i64];
    // SAFETY: bind only reads memory and does not change existing fds.
    unsafe { call(sysif, libc::SYS_bind, args) }.await
}

/// `connect(fd, addr, addrlen)` — connects the socket to the address at `addr`.
///
/// The kernel only reads the address (a bad one is `EFAULT`).
///
/// # Errors
/// `EACCES`, `EADDRNOTAVAIL`, `EAGAIN`, `ECONNREFUSED`, `EINPROGRESS`, `EISCONN`,
/// `ENOENT`, `ENOTSOCK`, `ETIMEDOUT` and others. See connect(2).
pub async fn connect(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    addr: Address,
    addrlen: u32,
) -> Result<(), SyscallError> {
    let args = [fd.arg(), addr.arg(), addrlen as i64];
    // SAFETY: connect only reads memory and does not change existing fds.
    unsafe { call(sysif, libc::SYS_connect, args) }.await
}

/// `listen(fd, backlog)` — marks the socket as accepting connections.
///
/// # Errors
/// `EADDRINUSE`, `EBADF`, `ENOTSOCK`, `EOPNOTSUPP`. See listen(2).
pub async fn listen(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    backlog: i32,
) -> Result<(), SyscallError> {
    // SAFETY: listen touches no memory and does not change fds.
    unsafe { call(sysif, libc::SYS_listen, [fd.arg(), backlog as i64]) }.await
}

/// `accept4(fd, addr, addrlen, flags)` — takes a pending connection as a new fd; if `addr`
/// is not null, the kernel writes the peer's address there (at most `*addrlen` bytes) and
/// its full length at `addrlen`.
///
/// # Safety
/// If `addr` is not null, `addrlen` must point to a `u32` valid for reading and writing
/// and `addr` must be valid for writing that many bytes, in the target's address space.
///
/// # Errors
/// `EAGAIN`, `EBADF`, `ECONNABORTED`, `EINTR`, `EINVAL`, `EMFILE`, `ENOTSOCK`,
/// `EOPNOTSUPP`. See accept(2).
pub async unsafe fn accept4(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    addr: Address,
    addrlen: Address,
    flags: SOCK,
) -> Result<FileDescriptor, SyscallError> {
    let args = [fd.arg(), addr.arg(), addrlen.arg(), flags.bits() as i64];
    // SAFETY: the caller guarantees addr and addrlen.
    unsafe { call_new_fd(sysif, libc::SYS_accept4, args) }.await
}

/// `getsockname(fd, addr, addrlen)` — the socket's own address, written at `addr` (at most
/// `*addrlen` bytes), its full length at `addrlen`.
///
/// # Safety
/// `addrlen` must point to a `u32` valid for reading and writing, and `addr` must be valid
/// for writing that many bytes, in the target's address space.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL`, `ENOBUFS`, `ENOTSOCK`. See getsockname(2).
pub async unsafe fn getsockname(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    addr: Address,
    addrlen: Address,
) -> Result<(), SyscallError> {
    let args = [fd.arg(), addr.arg(), addrlen.arg()];
    // SAFETY: the caller guarantees addr and addrlen.
    unsafe { call(sysif, libc::SYS_getsockname, args) }.await
}

/// `getpeername(fd, addr, addrlen)` — the connected peer's address, written as by
/// [`getsockname`].
///
/// # Safety
/// As for [`getsockname`].
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL`, `ENOBUFS`, `ENOTCONN`, `ENOTSOCK`. See getpeername(2).
pub async unsafe fn getpeername(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    addr: Address,
    addrlen: Address,
) -> Result<(), SyscallError> {
    let args = [fd.arg(), addr.arg(), addrlen.arg()];
    // SAFETY: the caller guarantees addr and addrlen.
    unsafe { call(sysif, libc::SYS_getpeername, args) }.await
}

/// `getsockopt(fd, level, optname, optval, optlen)` — reads an option's value into
/// `optval` (at most `*optlen` bytes), its length at `optlen`.
///
/// # Safety
/// `optlen` must point to a `u32` valid for reading and writing, and `optval` must be valid
/// for writing that many bytes, in the target's address space.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL`, `ENOPROTOOPT`, `ENOTSOCK`. See getsockopt(2).
pub async unsafe fn getsockopt(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    level: i32,
    optname: i32,
    optval: Address,
    optlen: Address,
) -> Result<(), SyscallError> {
    let args = [
        fd.arg(),
        level as i64,
        optname as i64,
        optval.arg(),
        optlen.arg(),
    ];
    // SAFETY: the caller guarantees optval and optlen.
    unsafe { call(sysif, libc::SYS_getsockopt, args) }.await
}

/// `setsockopt(fd, level, optname, optval, optlen)` — sets an option from the `optlen`
/// bytes at `optval`.
///
/// The kernel only reads the value (a bad address is `EFAULT`). Options that take fds
/// (`SO_ATTACH_BPF`) only reference them.
///
/// # Errors
/// `EBADF`, `EFAULT`, `EINVAL`, `ENOPROTOOPT`, `ENOTSOCK`, `EPERM`. See setsockopt(2).
pub async fn setsockopt(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    level: i32,
    optname: i32,
    optval: Address,
    optlen: u32,
) -> Result<(), SyscallError> {
    let args = [
        fd.arg(),
        level as i64,
        optname as i64,
        optval.arg(),
        optlen as i64,
    ];
    // SAFETY: setsockopt only reads memory and does not close or replace fds.
    unsafe { call(sysif, libc::SYS_setsockopt, args) }.await
}

/// `sendto(fd, buf, len, flags, dest_addr, addrlen)` — sends `len` bytes from `buf`, to
/// `dest_addr` if it is not null.
///
/// The kernel only reads the buffer and the address (a bad one is `EFAULT`).
///
/// # Errors
/// `EAGAIN`, `EBADF`, `ECONNRESET`, `EDESTADDRREQ`, `EISCONN`, `EMSGSIZE`, `ENOTCONN`,
/// `ENOTSOCK`, `EPIPE` and others. See send(2).
pub async fn sendto(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    buf: Address,
    len: usize,
    flags: MSG,
    dest_addr: Address,
    addrlen: u32,
) -> Result<usize, SyscallError> {
    let args = [
        fd.arg(),
        buf.arg(),
        len as i64,
        flags.bits() as i64,
        dest_addr.arg(),
        addrlen as i64,
    ];
    // SAFETY: sendto only reads memory and does not change existing fds.
    unsafe { call(sysif, libc::SYS_sendto, args) }.await
}

/// `recvfrom(fd, buf, len, flags, src_addr, addrlen)` — receives up to `len` bytes into
/// `buf`; if `src_addr` is not null, the sender's address is written there (at most
/// `*addrlen` bytes) and its full length at `addrlen`.
///
/// # Safety
/// `buf` must be valid for writing `len` bytes; if `src_addr` is not null, `addrlen` must
/// point to a `u32` valid for reading and writing and `src_addr` must be valid for writing
/// that many bytes; all in the target's address space.
///
/// # Errors
/// `EAGAIN`, `EBADF`, `ECONNREFUSED`, `EFAULT`, `EINTR`, `EINVAL`, `ENOTCONN`, `ENOTSOCK`.
/// See recv(2).
pub async unsafe fn recvfrom(
    sysif: &dyn SyscallInterface,
    fd: FileDescriptor,
    buf: Address,
    len: usize,
    flags: MSG,
    src_addr: Address,
    addrlen: Address,
) -> Result<usize, SyscallError> {
    let args = [
        fd.arg(),
        buf.arg(),
        len as i64,
        flags.bits() as i64,
        src_addr.arg(),
        addrlen.arg(),
    ];
    // SAFETY: the caller guarantees buf, src_addr and addrlen.
    unsafe { call(sysif, libc::SYS_recvfrom, args) }.await
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
    unsafe {
        call(
            sysif,
            libc::SYS_sendmsg,
            [fd.arg(), msg.arg(), flags.bits() as i64],
        )
    }
    .await
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
    unsafe { call(sysif, libc::SYS_recvmsg, args) }.await
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
    unsafe { call(sysif, libc::SYS_shutdown, [fd.arg(), how as i64]) }.await
}
