//! Structs of the socket syscalls: sockaddrs, `ucred`, `ifreq`, `msghdr`/`iovec`/`cmsghdr`,
//! control messages, and typed socket options.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use rsyscall_near::Errno;

use super::{Pod, Struct, pod_bytes, pod_from_bytes};
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::pointer::{Pointer, ReadablePointer};

/// A socket address the kernel can read: its memory image is what `bind`, `connect`,
/// `sendto` and `sendmsg` are given, and its length is the `addrlen`.
pub trait Sockaddr: std::fmt::Debug + Send + Sync {
    /// The memory image of the address (`sa_family` first).
    fn sockaddr_bytes(&self) -> Vec<u8>;
}

fn family_of(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// `struct sockaddr_in`: an IPv4 address and port (aligned to 4, as `struct in_addr` makes
/// it in C).
#[repr(C, align(4))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SockaddrIn {
    /// `AF_INET`.
    pub family: u16,
    /// The port, in network byte order.
    pub port_be: u16,
    /// The address, in network byte order.
    pub addr: [u8; 4],
    /// Padding, zero.
    pub zero: [u8; 8],
}

// repr(C): integers and byte arrays with no padding (2 + 2 + 4 + 8 bytes); every bit pattern
// is a valid value.
pod!(
    SockaddrIn {
        family,
        port_be,
        addr,
        zero
    },
    16
);

impl SockaddrIn {
    /// `ip:port`.
    pub fn new(ip: Ipv4Addr, port: u16) -> Self {
        SockaddrIn {
            family: libc::AF_INET as u16,
            port_be: port.to_be(),
            addr: ip.octets(),
            zero: [0; 8],
        }
    }

    /// The address.
    pub fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    /// The port, in host byte order.
    pub fn port(&self) -> u16 {
        u16::from_be(self.port_be)
    }
}

impl std::fmt::Debug for SockaddrIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SockaddrIn({}:{})", self.ip(), self.port())
    }
}

impl From<SocketAddrV4> for SockaddrIn {
    fn from(a: SocketAddrV4) -> Self {
        SockaddrIn::new(*a.ip(), a.port())
    }
}

impl From<SockaddrIn> for SocketAddrV4 {
    fn from(a: SockaddrIn) -> Self {
        SocketAddrV4::new(a.ip(), a.port())
    }
}

impl Sockaddr for SockaddrIn {
    fn sockaddr_bytes(&self) -> Vec<u8> {
        pod_bytes(self)
    }
}

/// `struct sockaddr_in6`: an IPv6 address, port, flow info and scope id.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SockaddrIn6 {
    /// `AF_INET6`.
    pub family: u16,
    /// The port, in network byte order.
    pub port_be: u16,
    /// The flow information, in network byte order.
    pub flowinfo: u32,
    /// The address.
    pub addr: [u8; 16],
    /// The scope id (an interface index for link-local addresses).
    pub scope_id: u32,
}

// repr(C): integers and a byte array laid out without padding (2 + 2 + 4 + 16 + 4 = 28
// bytes, alignment 4); every bit pattern is a valid value.
pod!(
    SockaddrIn6 {
        family,
        port_be,
        flowinfo,
        addr,
        scope_id
    },
    28
);

impl SockaddrIn6 {
    /// `[ip]:port`, with no flow info and scope 0.
    pub fn new(ip: Ipv6Addr, port: u16) -> Self {
        SockaddrIn6 {
            family: libc::AF_INET6 as u16,
            port_be: port.to_be(),
            flowinfo: 0,
            addr: ip.octets(),
            scope_id: 0,
        }
    }

    /// The address.
    pub fn ip(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.addr)
    }

    /// The port, in host byte order.
    pub fn port(&self) -> u16 {
        u16::from_be(self.port_be)
    }
}

impl std::fmt::Debug for SockaddrIn6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SockaddrIn6([{}]:{}, scope {})",
            self.ip(),
            self.port(),
            self.scope_id
        )
    }
}

impl From<SocketAddrV6> for SockaddrIn6 {
    fn from(a: SocketAddrV6) -> Self {
        SockaddrIn6 {
            flowinfo: a.flowinfo().to_be(),
            scope_id: a.scope_id(),
            ..SockaddrIn6::new(*a.ip(), a.port())
        }
    }
}

impl From<SockaddrIn6> for SocketAddrV6 {
    fn from(a: SockaddrIn6) -> Self {
        SocketAddrV6::new(a.ip(), a.port(), u32::from_be(a.flowinfo), a.scope_id)
    }
}

impl Sockaddr for SockaddrIn6 {
    fn sockaddr_bytes(&self) -> Vec<u8> {
        pod_bytes(self)
    }
}

/// `struct sockaddr_nl`: a netlink port id and multicast groups.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct SockaddrNl {
    /// `AF_NETLINK`.
    pub family: u16,
    /// Padding, zero.
    pub pad: u16,
    /// The port id (0 for the kernel, or to let the kernel choose on bind).
    pub pid: u32,
    /// The multicast group mask.
    pub groups: u32,
}

// repr(C): integers with no padding (2 + 2 + 4 + 4 bytes); every bit pattern is valid.
pod!(
    SockaddrNl {
        family,
        pad,
        pid,
        groups
    },
    12
);

impl SockaddrNl {
    /// Port id `pid`, groups `groups`.
    pub fn new(pid: u32, groups: u32) -> Self {
        SockaddrNl {
            family: libc::AF_NETLINK as u16,
            pad: 0,
            pid,
            groups,
        }
    }
}

impl Sockaddr for SockaddrNl {
    fn sockaddr_bytes(&self) -> Vec<u8> {
        pod_bytes(self)
    }
}

/// `struct sockaddr_un`: a unix socket address, a filesystem path, an abstract name or
/// nothing (unnamed). Variable-size: its `addrlen` counts only the bytes used.
///
/// A path is limited to the 108 bytes of `sun_path`; for longer paths, see
/// [`Task::unix_address`](crate::Task::unix_address).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SockaddrUn {
    /// The bytes of `sun_path` that count: a path without its NUL, a NUL followed by an
    /// abstract name, or nothing.
    sun_path: Vec<u8>,
}

impl SockaddrUn {
    /// Size of `sun_path`: the longest path (without NUL) the kernel accepts.
    pub const MAX_PATH: usize = 108;

    /// A filesystem path.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty path, a path with a NUL byte, or one longer
    /// than [`SockaddrUn::MAX_PATH`] bytes (see [`Task::unix_address`](crate::Task::unix_address)
    /// for those).
    pub fn new(path: impl AsRef<[u8]>) -> Result<Self> {
        let path = path.as_ref();
        let show = || String::from_utf8_lossy(path).into_owned();
        if path.is_empty() {
            return Err(Error::invalid("SockaddrUn", "empty path"));
        }
        if path.contains(&0) {
            return Err(Error::invalid(
                "SockaddrUn",
                format!("path {:?} contains a NUL byte", show()),
            ));
        }
        if path.len() > Self::MAX_PATH {
            return Err(Error::invalid(
                "SockaddrUn",
                format!(
                    "path of {} bytes is longer than sun_path ({} bytes): {:?}",
                    path.len(),
                    Self::MAX_PATH,
                    show()
                ),
            ));
        }
        Ok(SockaddrUn {
            sun_path: path.to_vec(),
        })
    }

    /// An abstract name (Linux-only: not in the filesystem; any bytes, NULs included).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if longer than 107 bytes.
    pub fn new_abstract(name: &[u8]) -> Result<Self> {
        if name.len() >= Self::MAX_PATH {
            return Err(Error::invalid(
                "SockaddrUn",
                format!(
                    "abstract name of {} bytes: at most {} fit",
                    name.len(),
                    Self::MAX_PATH - 1
                ),
            ));
        }
        let mut sun_path = vec![0];
        sun_path.extend_from_slice(name);
        Ok(SockaddrUn { sun_path })
    }

    /// The unnamed address (of an unbound socket; binding it asks for an autobound
    /// abstract name).
    pub fn unnamed() -> Self {
        SockaddrUn {
            sun_path: Vec::new(),
        }
    }

    /// The filesystem path, if this is one.
    pub fn path(&self) -> Option<&[u8]> {
        match self.sun_path.first() {
            Some(0) | None => None,
            Some(_) => Some(&self.sun_path),
        }
    }

    /// The abstract name, if this is one.
    pub fn abstract_name(&self) -> Option<&[u8]> {
        match self.sun_path.first() {
            Some(0) => Some(&self.sun_path[1..]),
            _ => None,
        }
    }

    /// Whether this is the unnamed address.
    pub fn is_unnamed(&self) -> bool {
        self.sun_path.is_empty()
    }

    /// Parses the `addrlen` bytes the kernel wrote.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if they are not an `AF_UNIX` address.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if family_of(bytes) != Some(libc::AF_UNIX as u16) {
            return Err(Error::invalid(
                "SockaddrUn",
                format!("not an AF_UNIX address: {bytes:?}"),
            ));
        }
        let rest = &bytes[2..bytes.len().min(2 + Self::MAX_PATH)];
        let sun_path = match rest.first() {
            None => Vec::new(),
            Some(0) => rest.to_vec(),
            Some(_) => {
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                rest[..end].to_vec()
            }
        };
        Ok(SockaddrUn { sun_path })
    }
}

impl std::fmt::Debug for SockaddrUn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.path() {
            write!(f, "SockaddrUn({:?})", String::from_utf8_lossy(p))
        } else if let Some(n) = self.abstract_name() {
            write!(f, "SockaddrUn(@{:?})", String::from_utf8_lossy(n))
        } else {
            write!(f, "SockaddrUn(unnamed)")
        }
    }
}

impl Sockaddr for SockaddrUn {
    fn sockaddr_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.sun_path.len() + 1);
        out.extend_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        out.extend_from_slice(&self.sun_path);
        if self.path().is_some() && self.sun_path.len() < Self::MAX_PATH {
            out.push(0);
        }
        out
    }
}

impl Struct for SockaddrUn {
    type Owned = SockaddrUn;
    fn to_bytes(&self) -> Vec<u8> {
        self.sockaddr_bytes()
    }
    fn from_bytes(bytes: &[u8]) -> Result<SockaddrUn> {
        SockaddrUn::parse(bytes)
    }
}

/// `struct sockaddr_storage`: room for any socket address, for the kernel to write into.
/// What it holds is known from the length the kernel reports: see [`SockaddrStorage::parse`].
#[repr(C, align(8))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SockaddrStorage {
    /// The address family.
    pub family: u16,
    /// The rest of the address.
    pub data: [u8; 126],
}

// repr(C): an integer and a byte array filling the 128 bytes exactly (no padding); every bit
// pattern is valid.
pod!(SockaddrStorage { family, data }, 128);

impl Default for SockaddrStorage {
    fn default() -> Self {
        SockaddrStorage {
            family: 0,
            data: [0; 126],
        }
    }
}

impl SockaddrStorage {
    /// Parses the first `len` bytes (the length the kernel reported, clamped to the
    /// storage's size) into the concrete kind of address.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if an address of a known family is too short.
    pub fn parse(&self, len: usize) -> Result<AnySockaddr> {
        let bytes = pod_bytes(self);
        AnySockaddr::parse(&bytes[..len.min(bytes.len())])
    }
}

/// A socket address of any family, as parsed from what the kernel wrote.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum AnySockaddr {
    /// `AF_UNIX`.
    Un(SockaddrUn),
    /// `AF_INET`.
    In(SockaddrIn),
    /// `AF_INET6`.
    In6(SockaddrIn6),
    /// `AF_NETLINK`.
    Nl(SockaddrNl),
    /// Another family: its number and the whole memory image.
    Other {
        /// `sa_family`.
        family: u16,
        /// The address bytes, `sa_family` included.
        bytes: Vec<u8>,
    },
}

impl AnySockaddr {
    /// Parses an address from its memory image of `addrlen` bytes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the bytes are shorter than `sa_family`, or shorter
    /// than the struct of a known family (except `AF_UNIX`, which is variable-size).
    pub fn parse(bytes: &[u8]) -> Result<AnySockaddr> {
        let family = family_of(bytes).ok_or_else(|| {
            Error::invalid(
                "AnySockaddr",
                format!("{} bytes cannot hold sa_family", bytes.len()),
            )
        })?;
        Ok(match i32::from(family) {
            libc::AF_UNIX => AnySockaddr::Un(SockaddrUn::parse(bytes)?),
            libc::AF_INET => AnySockaddr::In(pod_from_bytes(bytes)?),
            libc::AF_INET6 => AnySockaddr::In6(pod_from_bytes(bytes)?),
            libc::AF_NETLINK => AnySockaddr::Nl(pod_from_bytes(bytes)?),
            _ => AnySockaddr::Other {
                family,
                bytes: bytes.to_vec(),
            },
        })
    }

    /// The `AF_UNIX` address, if it is one.
    pub fn as_un(&self) -> Option<&SockaddrUn> {
        match self {
            AnySockaddr::Un(a) => Some(a),
            _ => None,
        }
    }

    /// The `AF_INET` address, if it is one.
    pub fn as_in(&self) -> Option<&SockaddrIn> {
        match self {
            AnySockaddr::In(a) => Some(a),
            _ => None,
        }
    }

    /// The `AF_INET6` address, if it is one.
    pub fn as_in6(&self) -> Option<&SockaddrIn6> {
        match self {
            AnySockaddr::In6(a) => Some(a),
            _ => None,
        }
    }

    /// The `AF_NETLINK` address, if it is one.
    pub fn as_nl(&self) -> Option<&SockaddrNl> {
        match self {
            AnySockaddr::Nl(a) => Some(a),
            _ => None,
        }
    }
}

impl Sockaddr for AnySockaddr {
    fn sockaddr_bytes(&self) -> Vec<u8> {
        match self {
            AnySockaddr::Un(a) => a.sockaddr_bytes(),
            AnySockaddr::In(a) => a.sockaddr_bytes(),
            AnySockaddr::In6(a) => a.sockaddr_bytes(),
            AnySockaddr::Nl(a) => a.sockaddr_bytes(),
            AnySockaddr::Other { bytes, .. } => bytes.clone(),
        }
    }
}

impl Struct for AnySockaddr {
    type Owned = AnySockaddr;
    fn to_bytes(&self) -> Vec<u8> {
        self.sockaddr_bytes()
    }
    fn from_bytes(bytes: &[u8]) -> Result<AnySockaddr> {
        AnySockaddr::parse(bytes)
    }
}

/// A unix socket address usable from one task, for paths of any length: a short path is
/// used directly; a longer one goes through `/proc/self/fd/N/<name>`, where `N` is an
/// `O_PATH` fd of the parent directory held here. Keep it alive while binding or
/// connecting. Made by [`Task::unix_address`](crate::Task::unix_address).
#[derive(Debug)]
pub struct UnixAddress {
    pub(crate) addr: SockaddrUn,
    pub(crate) dir: Option<FileDescriptor>,
}

impl UnixAddress {
    /// The address to give the kernel (in the task that made it).
    pub fn sockaddr(&self) -> &SockaddrUn {
        &self.addr
    }

    /// The parent directory's fd, if the path needed one.
    pub fn dir(&self) -> Option<&FileDescriptor> {
        self.dir.as_ref()
    }
}

/// `struct ucred`: the credentials of a process, as passed with `SCM_CREDENTIALS` and
/// returned by `SO_PEERCRED`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Ucred {
    /// Process id (in the receiver's pid namespace).
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

// repr(C): three 4-byte integers, no padding; every bit pattern is valid.
pod!(Ucred { pid, uid, gid }, 12);

/// Size of an interface name buffer (`IFNAMSIZ`), NUL included.
pub const IFNAMSIZ: usize = 16;

/// `struct ifreq`: an interface name and one request-specific value (flags, index,
/// address...), for the interface ioctls.
#[repr(C, align(8))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Ifreq {
    /// The interface name, NUL-terminated.
    pub name: [u8; IFNAMSIZ],
    /// The union `ifr_ifru`, as bytes.
    pub ifru: [u8; 24],
}

// repr(C): two byte arrays filling the 40 bytes exactly; every bit pattern is valid. (The
// libc union may hold a pointer, `ifr_data`, but we never use requests that read one.)
pod!(Ifreq { name, ifru }, 40);

impl Ifreq {
    /// A request about interface `name`, with the value zeroed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name with a NUL byte or longer than 15 bytes. (An
    /// empty name is allowed: `TUNSETIFF` then picks one.)
    pub fn new(name: &[u8]) -> Result<Self> {
        if name.contains(&0) || name.len() >= IFNAMSIZ {
            return Err(Error::invalid(
                "Ifreq",
                format!(
                    "interface name {:?}: at most {} bytes, no NUL",
                    String::from_utf8_lossy(name),
                    IFNAMSIZ - 1
                ),
            ));
        }
        let mut ifr = Ifreq::default();
        ifr.name[..name.len()].copy_from_slice(name);
        Ok(ifr)
    }

    /// The interface name (up to its NUL).
    pub fn name(&self) -> &[u8] {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        &self.name[..end]
    }

    /// `ifr_flags`.
    pub fn flags(&self) -> i16 {
        i16::from_ne_bytes([self.ifru[0], self.ifru[1]])
    }

    /// Sets `ifr_flags`.
    pub fn set_flags(&mut self, flags: i16) {
        self.ifru[..2].copy_from_slice(&flags.to_ne_bytes());
    }

    /// `ifr_ifindex`.
    pub fn ifindex(&self) -> i32 {
        i32::from_ne_bytes([self.ifru[0], self.ifru[1], self.ifru[2], self.ifru[3]])
    }

    /// `ifr_addr` as an IPv4 address.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is of another family.
    pub fn addr_in(&self) -> Result<SockaddrIn> {
        let a: SockaddrIn = pod_from_bytes(&self.ifru)?;
        if a.family != libc::AF_INET as u16 {
            return Err(Error::invalid(
                "Ifreq::addr_in",
                format!("ifr_addr has family {}", a.family),
            ));
        }
        Ok(a)
    }

    /// Sets `ifr_addr` to an IPv4 address.
    pub fn set_addr_in(&mut self, addr: &SockaddrIn) {
        self.ifru[..16].copy_from_slice(&pod_bytes(addr));
    }
}

/// `struct msghdr` as the kernel reads it (x86-64 layout, padding explicit).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Msghdr {
    /// `msg_name`: address buffer, or 0.
    pub name: u64,
    /// `msg_namelen`.
    pub namelen: u32,
    /// Padding.
    pub pad0: u32,
    /// `msg_iov`: the iovec array.
    pub iov: u64,
    /// `msg_iovlen`.
    pub iovlen: u64,
    /// `msg_control`: the control buffer, or 0.
    pub control: u64,
    /// `msg_controllen`.
    pub controllen: u64,
    /// `msg_flags` (written by `recvmsg`).
    pub flags: i32,
    /// Padding.
    pub pad1: u32,
}

// repr(C): integers with the padding spelled out as fields (56 bytes); every bit pattern is
// valid.
pod!(
    Msghdr {
        name,
        namelen,
        pad0,
        iov,
        iovlen,
        control,
        controllen,
        flags,
        pad1
    },
    56
);

/// `struct iovec`: one buffer of a scatter/gather list.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Iovec {
    /// `iov_base`.
    pub base: u64,
    /// `iov_len`.
    pub len: u64,
}

// repr(C): two u64s, no padding.
pod!(Iovec { base, len }, 16);

/// `struct cmsghdr`: the header of one control message; its data follows, and the next
/// header starts at the next multiple of 8.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Cmsghdr {
    /// `cmsg_len`: header plus data.
    pub len: u64,
    /// `cmsg_level`.
    pub level: i32,
    /// `cmsg_type`.
    pub ty: i32,
}

// repr(C): a u64 and two i32s, no padding.
pod!(Cmsghdr { len, level, ty }, 16);

/// `CMSG_SPACE(data_len)`: the room in a control buffer that a message with `data_len`
/// bytes of data takes (16 bytes of header, the data rounded up to 8), for sizing the
/// control buffer of [`FileDescriptor::recvmsg`](crate::FileDescriptor::recvmsg).
pub const fn cmsg_space(data_len: usize) -> usize {
    std::mem::size_of::<Cmsghdr>() + ((data_len + 7) & !7)
}

/// A control message to send with `sendmsg`.
#[derive(Debug, Clone, Copy)]
pub enum SendCmsg<'a> {
    /// `SCM_RIGHTS`: copies of these fds (of the sending task's table) arrive at the peer.
    Rights(&'a [&'a FileDescriptor]),
    /// `SCM_CREDENTIALS`: credentials to present (the sender's own, unless privileged).
    Credentials(Ucred),
}

/// A control message received with `recvmsg`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Cmsg {
    /// `SCM_RIGHTS`: the fds that arrived, owned by the receiving task's table.
    Rights(Vec<FileDescriptor>),
    /// `SCM_CREDENTIALS`: the sender's credentials (with `SO_PASSCRED` set).
    Credentials(Ucred),
    /// Another kind of message.
    Other {
        /// `cmsg_level`.
        level: i32,
        /// `cmsg_type`.
        ty: i32,
        /// The data.
        data: Vec<u8>,
    },
}

/// What [`FileDescriptor::recvmsg`](crate::FileDescriptor::recvmsg) received.
#[derive(Debug)]
pub struct RecvMsg {
    /// How many bytes of data arrived.
    pub received: usize,
    /// The parts of the buffers the data filled, in order.
    pub data: Vec<ReadablePointer<[u8]>>,
    /// The parts the data did not reach.
    pub rest: Vec<Pointer<[u8]>>,
    /// The sender's address, if the kernel reported one.
    pub name: Option<AnySockaddr>,
    /// The control messages, with received fds as owning handles.
    pub control: Vec<Cmsg>,
    /// `msg_flags` (`MSG::TRUNC`, `MSG::EOR`...). `MSG::CTRUNC` never appears: it is an
    /// error.
    pub flags: rsyscall_near::MSG,
}

/// A socket option with a typed value, for
/// [`FileDescriptor::getsockopt`](crate::FileDescriptor::getsockopt) and
/// [`FileDescriptor::setsockopt`](crate::FileDescriptor::setsockopt). See [`sockopt`].
///
/// # Safety
/// `LEVEL` and `NAME` must name an option whose value the kernel reads and writes as the
/// bytes of `Raw` only, never following an address inside it: not, for example,
/// `SO_ATTACH_FILTER` (whose value points at a program) nor `TCP_ZEROCOPY_RECEIVE` (whose
/// value names buffers the kernel writes to). `getsockopt` and `setsockopt` pass `Raw`'s
/// size as the option length.
pub unsafe trait SockOpt {
    /// The value as Rust sees it.
    type Value: Send + 'static;
    /// The value as the kernel sees it.
    type Raw: Pod + Default;
    /// `level` (`SOL_SOCKET`, `IPPROTO_TCP`...).
    const LEVEL: i32;
    /// `optname`.
    const NAME: i32;
    /// The option's name, for errors.
    const LABEL: &'static str;
    /// The kernel's representation of `value`.
    fn to_raw(value: &Self::Value) -> Self::Raw;
    /// The value of the kernel's representation.
    fn from_raw(raw: Self::Raw) -> Self::Value;
}

/// Typed socket options.
pub mod sockopt {
    use super::*;

    macro_rules! bool_opt {
        ($(#[$m:meta])* $name:ident, $level:expr, $opt:expr) => {
            $(#[$m])*
            #[derive(Clone, Copy, Debug)]
            pub struct $name;
            // SAFETY: the option's value is one int, with no address in it.
            unsafe impl SockOpt for $name {
                type Value = bool;
                type Raw = i32;
                const LEVEL: i32 = $level;
                const NAME: i32 = $opt;
                const LABEL: &'static str = stringify!($opt);
                fn to_raw(value: &bool) -> i32 {
                    i32::from(*value)
                }
                fn from_raw(raw: i32) -> bool {
                    raw != 0
                }
            }
        };
    }

    macro_rules! int_opt {
        ($(#[$m:meta])* $name:ident, $level:expr, $opt:expr) => {
            $(#[$m])*
            #[derive(Clone, Copy, Debug)]
            pub struct $name;
            // SAFETY: the option's value is one int, with no address in it.
            unsafe impl SockOpt for $name {
                type Value = i32;
                type Raw = i32;
                const LEVEL: i32 = $level;
                const NAME: i32 = $opt;
                const LABEL: &'static str = stringify!($opt);
                fn to_raw(value: &i32) -> i32 {
                    *value
                }
                fn from_raw(raw: i32) -> i32 {
                    raw
                }
            }
        };
    }

    bool_opt!(
        /// `SO_REUSEADDR`: allow binding an address in `TIME_WAIT`.
        ReuseAddr, libc::SOL_SOCKET, libc::SO_REUSEADDR
    );
    bool_opt!(
        /// `SO_REUSEPORT`: allow several sockets to bind the same port.
        ReusePort, libc::SOL_SOCKET, libc::SO_REUSEPORT
    );
    bool_opt!(
        /// `SO_KEEPALIVE`: send keepalive probes.
        KeepAlive, libc::SOL_SOCKET, libc::SO_KEEPALIVE
    );
    bool_opt!(
        /// `SO_PASSCRED`: receive `SCM_CREDENTIALS` with every message.
        PassCred, libc::SOL_SOCKET, libc::SO_PASSCRED
    );
    bool_opt!(
        /// `SO_ACCEPTCONN` (read-only): whether the socket is listening.
        AcceptConn, libc::SOL_SOCKET, libc::SO_ACCEPTCONN
    );
    bool_opt!(
        /// `TCP_NODELAY`: disable Nagle's algorithm.
        TcpNoDelay, libc::IPPROTO_TCP, libc::TCP_NODELAY
    );
    int_opt!(
        /// `SO_RCVBUF`: receive buffer size (the kernel doubles what is set).
        RcvBuf, libc::SOL_SOCKET, libc::SO_RCVBUF
    );
    int_opt!(
        /// `SO_SNDBUF`: send buffer size (the kernel doubles what is set).
        SndBuf, libc::SOL_SOCKET, libc::SO_SNDBUF
    );
    int_opt!(
        /// `SO_TYPE` (read-only): the socket type (`SOCK_STREAM`...).
        Type, libc::SOL_SOCKET, libc::SO_TYPE
    );

    /// `SO_ERROR` (read-only): the pending socket error, cleared by reading it.
    #[derive(Clone, Copy, Debug)]
    pub struct Error;
    // SAFETY: `SO_ERROR`'s value is one int, with no address in it.
    unsafe impl SockOpt for Error {
        type Value = Option<Errno>;
        type Raw = i32;
        const LEVEL: i32 = libc::SOL_SOCKET;
        const NAME: i32 = libc::SO_ERROR;
        const LABEL: &'static str = "SO_ERROR";
        fn to_raw(value: &Option<Errno>) -> i32 {
            value.map_or(0, Errno::raw)
        }
        fn from_raw(raw: i32) -> Option<Errno> {
            Errno::from_raw(raw)
        }
    }

    /// `SO_PEERCRED` (read-only): the credentials of the peer of a unix socket, as of
    /// `connect` or `socketpair`.
    #[derive(Clone, Copy, Debug)]
    pub struct PeerCred;
    // SAFETY: `SO_PEERCRED`'s value is a `struct ucred` of three ints, with no address in it.
    unsafe impl SockOpt for PeerCred {
        type Value = Ucred;
        type Raw = Ucred;
        const LEVEL: i32 = libc::SOL_SOCKET;
        const NAME: i32 = libc::SO_PEERCRED;
        const LABEL: &'static str = "SO_PEERCRED";
        fn to_raw(value: &Ucred) -> Ucred {
            *value
        }
        fn from_raw(raw: Ucred) -> Ucred {
            raw
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    macro_rules! same_layout {
        ($ours:ty, $theirs:ty, $(($a:ident, $b:ident)),* $(,)?) => {
            assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), stringify!($ours));
            assert_eq!(align_of::<$ours>(), align_of::<$theirs>(), stringify!($ours));
            $(assert_eq!(
                offset_of!($ours, $a),
                offset_of!($theirs, $b),
                concat!(stringify!($ours), ".", stringify!($a))
            );)*
        };
    }

    #[test]
    fn layouts_match_libc() {
        same_layout!(
            SockaddrIn,
            libc::sockaddr_in,
            (family, sin_family),
            (port_be, sin_port),
            (addr, sin_addr),
            (zero, sin_zero)
        );
        same_layout!(
            SockaddrIn6,
            libc::sockaddr_in6,
            (family, sin6_family),
            (port_be, sin6_port),
            (flowinfo, sin6_flowinfo),
            (addr, sin6_addr),
            (scope_id, sin6_scope_id)
        );
        same_layout!(
            SockaddrNl,
            libc::sockaddr_nl,
            (family, nl_family),
            (pid, nl_pid),
            (groups, nl_groups)
        );
        same_layout!(SockaddrStorage, libc::sockaddr_storage, (family, ss_family));
        same_layout!(Ucred, libc::ucred, (pid, pid), (uid, uid), (gid, gid));
        same_layout!(Ifreq, libc::ifreq, (name, ifr_name), (ifru, ifr_ifru));
        same_layout!(
            Msghdr,
            libc::msghdr,
            (name, msg_name),
            (namelen, msg_namelen),
            (iov, msg_iov),
            (iovlen, msg_iovlen),
            (control, msg_control),
            (controllen, msg_controllen),
            (flags, msg_flags)
        );
        same_layout!(Iovec, libc::iovec, (base, iov_base), (len, iov_len));
        same_layout!(
            Cmsghdr,
            libc::cmsghdr,
            (len, cmsg_len),
            (level, cmsg_level),
            (ty, cmsg_type)
        );
        assert_eq!(
            offset_of!(libc::sockaddr_un, sun_path),
            2,
            "sun_path follows sun_family"
        );
        assert_eq!(
            size_of::<libc::sockaddr_un>(),
            2 + SockaddrUn::MAX_PATH,
            "sun_path size"
        );
        assert_eq!(IFNAMSIZ, libc::IFNAMSIZ);
    }

    #[test]
    fn sockaddrs_round_trip() {
        let a = SockaddrIn::new(Ipv4Addr::new(127, 0, 0, 1), 0x1234);
        let bytes = a.sockaddr_bytes();
        assert_eq!(&bytes[..4], &[2, 0, 0x12, 0x34]);
        assert_eq!(
            AnySockaddr::parse(&bytes).expect("parse"),
            AnySockaddr::In(a)
        );
        let a6 = SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 7, 3));
        assert_eq!(SocketAddrV6::from(a6).flowinfo(), 7);
        assert_eq!(
            AnySockaddr::parse(&a6.sockaddr_bytes()).expect("parse"),
            AnySockaddr::In6(a6)
        );
        let un = SockaddrUn::new("/tmp/sock").expect("path");
        let bytes = un.sockaddr_bytes();
        assert_eq!(bytes.len(), 2 + 9 + 1);
        assert_eq!(SockaddrUn::parse(&bytes).expect("parse"), un);
        let full = SockaddrUn::new([b'a'; 108]).expect("108 bytes fit");
        assert_eq!(full.sockaddr_bytes().len(), 110);
        assert_eq!(
            SockaddrUn::parse(&full.sockaddr_bytes()).expect("parse"),
            full
        );
        let abs = SockaddrUn::new_abstract(b"x\0y").expect("abstract");
        assert_eq!(abs.abstract_name(), Some(&b"x\0y"[..]));
        assert_eq!(
            SockaddrUn::parse(&abs.sockaddr_bytes()).expect("parse"),
            abs
        );
        assert!(SockaddrUn::parse(&2u16.to_ne_bytes()).is_err());
        assert!(
            SockaddrUn::parse(&1u16.to_ne_bytes())
                .expect("parse")
                .is_unnamed()
        );
        assert!(matches!(
            SockaddrUn::new("a\0b"),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            SockaddrUn::new([b'a'; 109]),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(AnySockaddr::parse(&[2]).is_err());
        assert!(AnySockaddr::parse(&[2, 0, 1]).is_err());
        let nl = SockaddrNl::new(5, 1);
        assert_eq!(
            AnySockaddr::parse(&nl.sockaddr_bytes()).expect("parse"),
            AnySockaddr::Nl(nl)
        );
    }

    #[test]
    fn ifreq_fields() {
        let mut ifr = Ifreq::new(b"lo").expect("name");
        assert_eq!(ifr.name(), b"lo");
        ifr.set_flags(0x41);
        assert_eq!(ifr.flags(), 0x41);
        let a = SockaddrIn::new(Ipv4Addr::new(10, 0, 0, 1), 0);
        ifr.set_addr_in(&a);
        assert_eq!(ifr.addr_in().expect("addr"), a);
        assert!(Ifreq::new(b"0123456789abcdef").is_err());
        assert!(Ifreq::new(b"a\0").is_err());
    }
}
