//! Socket syscalls: socket, socketpair, bind, listen, accept4, connect, shutdown,
//! getsockname, getpeername, getsockopt, setsockopt, sendto, recvfrom, sendmsg, recvmsg
//! (with `SCM_RIGHTS` and `SCM_CREDENTIALS`), and the interface ioctls (`SIOC*IF*`,
//! `TUNSETIFF`).
//!
//! Methods taking memory follow the pattern of the fd module: ids and pointers are checked
//! against the task first (a typed error before anything is sent), buffers are lent to the
//! syscall and given back once it completed. Addresses and option values are copied into
//! the task's memory by the methods themselves.

use rsyscall_near::{self as near, AF, IFF, MSG, O, SHUT, SOCK, SockType, TUN};

use super::Task;
use super::fd::{iovecs, split_filled};
use crate::cmsg;
use crate::error::{Error, Result};
use crate::fd::FileDescriptor;
use crate::pointer::{Pointer, ReadablePointer, WrittenPointer};
use crate::structs::PathArg;
use crate::structs::{
    AnySockaddr, Cmsg, Ifreq, Msghdr, RecvMsg, SendCmsg, SockOpt, Sockaddr, SockaddrIn,
    SockaddrStorage, SockaddrUn, UnixAddress, cmsg_space, pod_from_bytes,
};

/// Size of `struct sockaddr_storage`: the longest address the kernel accepts.
const STORAGE: usize = std::mem::size_of::<SockaddrStorage>();

/// The memory image of `addr`, checked to fit in a `sockaddr_storage`.
fn addr_bytes<A: Sockaddr + ?Sized>(what: &'static str, addr: &A) -> Result<Vec<u8>> {
    let bytes = addr.sockaddr_bytes();
    if bytes.len() < 2 || bytes.len() > STORAGE {
        return Err(Error::invalid(
            what,
            format!(
                "an address of {} bytes: between 2 and {STORAGE} are allowed",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Parses an address the kernel wrote into `buf`, with the length it wrote at `len`;
/// `None` for an empty address.
async fn read_addr(buf: Pointer<[u8]>, len: Pointer<u32>) -> Result<Option<AnySockaddr>> {
    let (len, _) = len.filled(4)?;
    let n = (len.read().await? as usize).min(buf.size());
    if n == 0 {
        return Ok(None);
    }
    let (addr, _) = buf.filled(n)?;
    Ok(Some(AnySockaddr::parse(&addr.read().await?)?))
}

impl Task {
    /// `socket(domain, type | flags | SOCK_CLOEXEC, protocol)` — a new socket.
    ///
    /// # Errors
    /// `EAFNOSUPPORT`, `EPROTONOSUPPORT`, `EACCES`, `EMFILE`, `ENFILE`. See socket(2).
    pub async fn socket(
        &self,
        domain: AF,
        ty: SockType,
        flags: SOCK,
        protocol: i32,
    ) -> Result<FileDescriptor> {
        let call = near::socket(self.sysif(), domain, ty, flags | SOCK::CLOEXEC, protocol);
        self.new_fd("socket", call).await
    }

    /// `socketpair(domain, type | flags | SOCK_CLOEXEC, protocol, fds)` — two connected
    /// sockets, taking the same arguments as [`Task::socket`].
    ///
    /// # Errors
    /// `EAFNOSUPPORT`, `EOPNOTSUPP` (a family without socketpairs, such as `AF::INET`),
    /// `EPROTONOSUPPORT`, `EMFILE`. See socketpair(2).
    pub async fn socketpair(
        &self,
        domain: AF,
        ty: SockType,
        flags: SOCK,
        protocol: i32,
    ) -> Result<(FileDescriptor, FileDescriptor)> {
        let (out, addr) = self.fd_pair_out().await?;
        let flags = flags | SOCK::CLOEXEC;
        let cell = out.cell().clone();
        // SAFETY: addr is 8 bytes of the task's memory, lent until completion.
        let call =
            unsafe { near::socketpair(self.sysif(), domain, ty, flags, protocol, addr, &cell) };
        let ((), out) = self.lent("socketpair", out, call).await?;
        self.own_pair(out).await
    }

    /// `shutdown(fd, how)` — shuts down reception, transmission or both on a connection.
    ///
    /// # Errors
    /// `ENOTCONN`, `ENOTSOCK`, `EBADF`. See shutdown(2).
    pub async fn shutdown(&self, fd: &FileDescriptor, how: SHUT) -> Result<()> {
        let n = self.check_fd(fd)?;
        self.prepare().await;
        near::shutdown(self.sysif(), n, how)
            .await
            .map_err(self.error("shutdown"))
    }

    /// A unix socket address for `path` of any length, usable by this task: paths that fit
    /// `sun_path` are used as they are; longer ones open their parent directory `O_PATH`
    /// and name the socket `/proc/self/fd/N/<name>` (which works in bind and connect, and
    /// needs `/proc` mounted). The returned value holds the directory's fd.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty path, a NUL byte, a path ending in `/`, or a
    /// last component too long to fit even through `/proc/self/fd`; `openat` errors for the
    /// parent directory.
    pub async fn unix_address(&self, path: impl PathArg) -> Result<UnixAddress> {
        let path = path.path_bytes();
        if path.len() <= SockaddrUn::MAX_PATH || path.contains(&0) {
            return Ok(UnixAddress {
                addr: SockaddrUn::new(path)?,
                dir: None,
            });
        }
        let (dir, name): (&[u8], &[u8]) = match path.iter().rposition(|&b| b == b'/') {
            Some(0) => (b"/", &path[1..]),
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (b".", path),
        };
        if name.is_empty() {
            return Err(Error::invalid(
                "unix_address",
                format!("path {:?} names no file", String::from_utf8_lossy(path)),
            ));
        }
        let prefix = "/proc/self/fd/".len() + 11;
        if prefix + name.len() > SockaddrUn::MAX_PATH {
            return Err(Error::invalid(
                "unix_address",
                format!(
                    "the last component of {:?} ({} bytes) is too long for sun_path even \
                     through /proc/self/fd",
                    String::from_utf8_lossy(path),
                    name.len()
                ),
            ));
        }
        let dirfd = self.open(dir, O::PATH | O::DIRECTORY, 0).await?;
        let mut short = format!("/proc/self/fd/{}/", dirfd.near().as_raw()).into_bytes();
        short.extend_from_slice(name);
        Ok(UnixAddress {
            addr: SockaddrUn::new(short)?,
            dir: Some(dirfd),
        })
    }

    /// `sendto(fd, data, len, flags | MSG_NOSIGNAL, addr, addrlen)` with the bytes of
    /// `data` (copied into the task's memory); returns how many were sent.
    ///
    /// # Errors
    /// As [`FileDescriptor::sendto`].
    pub async fn sendto_bytes(
        &self,
        fd: &FileDescriptor,
        data: &[u8],
        flags: MSG,
        addr: Option<&dyn Sockaddr>,
    ) -> Result<usize> {
        let fd = fd.for_task(self)?;
        let buf = self.ptr(data).await?;
        let (sent, _) = fd.sendto(buf, flags, addr).await?;
        Ok(sent.size())
    }

    /// `recvfrom(fd, buf, len, flags, addr, addrlen)` into a fresh buffer of `len` bytes;
    /// returns the bytes and the sender's address (if the kernel reported one).
    ///
    /// # Errors
    /// As [`FileDescriptor::recvfrom`].
    pub async fn recvfrom_bytes(
        &self,
        fd: &FileDescriptor,
        len: usize,
        flags: MSG,
    ) -> Result<(Vec<u8>, Option<AnySockaddr>)> {
        let fd = fd.for_task(self)?;
        let buf = self.malloc_bytes(len).await?;
        let (data, _, addr) = fd.recvfrom(buf, flags).await?;
        Ok((data.read().await?, addr))
    }

    /// `sendmsg(fd, msg, flags | MSG_NOSIGNAL)` with the byte slices of `data` as the
    /// iovecs (copied into the task's memory) and `control` as control messages; returns
    /// how many bytes were sent.
    ///
    /// # Errors
    /// As [`FileDescriptor::sendmsg`].
    pub async fn sendmsg_bytes(
        &self,
        fd: &FileDescriptor,
        data: &[&[u8]],
        control: &[SendCmsg<'_>],
        flags: MSG,
    ) -> Result<usize> {
        let fd = fd.for_task(self)?;
        let mut bufs = Vec::with_capacity(data.len());
        for d in data {
            bufs.push(self.ptr(*d).await?);
        }
        let (n, _) = fd.sendmsg(bufs, control, None, flags).await?;
        Ok(n)
    }

    /// `recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC)` into one fresh buffer of `len` bytes and
    /// a control buffer of `control_len` bytes; returns the data and what else arrived.
    ///
    /// # Errors
    /// As [`FileDescriptor::recvmsg`].
    pub async fn recvmsg_bytes(
        &self,
        fd: &FileDescriptor,
        len: usize,
        control_len: usize,
        flags: MSG,
    ) -> Result<(Vec<u8>, RecvMsg)> {
        let fd = fd.for_task(self)?;
        let buf = self.malloc_bytes(len).await?;
        let msg = fd.recvmsg(vec![buf], control_len, flags).await?;
        let mut data = Vec::with_capacity(msg.received);
        for part in &msg.data {
            data.extend_from_slice(&part.read().await?);
        }
        Ok((data, msg))
    }

    /// `sendmsg(sock, msg, MSG_NOSIGNAL)` with a one-byte payload and the fds in one
    /// `SCM_RIGHTS` message (PROTOCOL.md section 3). The fds are copied, not moved.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no fds or more than 253; the syscall's errors.
    pub async fn send_fds(&self, sock: &FileDescriptor, fds: &[&FileDescriptor]) -> Result<()> {
        check_fd_count("send_fds", fds.len())?;
        self.sendmsg_bytes(sock, &[&[0u8]], &[SendCmsg::Rights(fds)], MSG::empty())
            .await?;
        Ok(())
    }

    /// `recvmsg(sock, msg, MSG_CMSG_CLOEXEC)` expecting exactly `count` fds in one
    /// `SCM_RIGHTS` message; the fds come back as owning handles in this task's table.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a count of 0 or over 253, on EOF, or if another number
    /// of fds arrived (those that did are closed); the syscall's errors.
    pub async fn recv_fds(
        &self,
        sock: &FileDescriptor,
        count: usize,
    ) -> Result<Vec<FileDescriptor>> {
        check_fd_count("recv_fds", count)?;
        let (data, msg) = self
            .recvmsg_bytes(sock, 1, cmsg_space(4 * count), MSG::empty())
            .await?;
        let fds: Vec<FileDescriptor> = msg
            .control
            .into_iter()
            .flat_map(|c| match c {
                Cmsg::Rights(fds) => fds,
                _ => Vec::new(),
            })
            .collect();
        if data.is_empty() && fds.is_empty() {
            return Err(Error::invalid(
                "recv_fds",
                "EOF: the peer closed the socket",
            ));
        }
        if fds.len() != count {
            return Err(Error::invalid(
                "recv_fds",
                format!("expected {count} fds, received {}", fds.len()),
            ));
        }
        Ok(fds)
    }
}

impl FileDescriptor {
    /// `bind(fd, addr, addrlen)` — gives the socket an address.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an address longer than `sockaddr_storage`;
    /// `EADDRINUSE`, `EACCES`, `EINVAL`, `ENOENT`, `ENOTSOCK`... See bind(2).
    pub async fn bind<A: Sockaddr + ?Sized>(&self, addr: &A) -> Result<()> {
        self.addr_call("bind", addr, false).await
    }

    /// `connect(fd, addr, addrlen)` — connects the socket. On a non-blocking socket a
    /// connection in progress is `EINPROGRESS`; its outcome is then `SO_ERROR`
    /// ([`sockopt::Error`](crate::structs::sockopt::Error)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an address longer than `sockaddr_storage`;
    /// `ECONNREFUSED`, `EINPROGRESS`, `ENOENT`, `EISCONN`, `ETIMEDOUT`... See connect(2).
    pub async fn connect<A: Sockaddr + ?Sized>(&self, addr: &A) -> Result<()> {
        self.addr_call("connect", addr, true).await
    }

    async fn addr_call<A: Sockaddr + ?Sized>(
        &self,
        what: &'static str,
        addr: &A,
        connect: bool,
    ) -> Result<()> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let bytes = addr_bytes(what, addr)?;
        let (buf, a) = task.ptr_at(&bytes[..]).await?;
        let len = bytes.len() as u32;
        let call = async {
            if connect {
                near::connect(task.sysif(), fd, a, len).await
            } else {
                near::bind(task.sysif(), fd, a, len).await
            }
        };
        task.lent(what, buf, call).await?;
        Ok(())
    }

    /// `bind` on the unix socket path `path`, of any length (see
    /// [`Task::unix_address`]).
    ///
    /// # Errors
    /// As [`Task::unix_address`] and [`FileDescriptor::bind`].
    pub async fn bind_unix(&self, path: impl PathArg) -> Result<()> {
        let addr = self.task().unix_address(path).await?;
        self.bind(addr.sockaddr()).await
    }

    /// `connect` to the unix socket path `path`, of any length (see
    /// [`Task::unix_address`]).
    ///
    /// # Errors
    /// As [`Task::unix_address`] and [`FileDescriptor::connect`].
    pub async fn connect_unix(&self, path: impl PathArg) -> Result<()> {
        let addr = self.task().unix_address(path).await?;
        self.connect(addr.sockaddr()).await
    }

    /// `listen(fd, backlog)` — accepts connections from now on.
    ///
    /// # Errors
    /// `EADDRINUSE`, `ENOTSOCK`, `EOPNOTSUPP`. See listen(2).
    pub async fn listen(&self, backlog: i32) -> Result<()> {
        self.call("listen", |s, fd| near::listen(s, fd, backlog))
            .await
    }

    /// `accept4(fd, NULL, NULL, flags | SOCK_CLOEXEC)` — takes a pending connection.
    ///
    /// # Errors
    /// `EAGAIN` (non-blocking, none pending), `EINVAL` (not listening), `ECONNABORTED`,
    /// `EMFILE`, `ENOTSOCK`. See accept(2).
    pub async fn accept4(&self, flags: SOCK) -> Result<FileDescriptor> {
        let null = near::Address::new(0);
        // SAFETY: with a null address the kernel writes no memory.
        let new = self
            .call("accept4", |s, fd| unsafe {
                near::accept4(s, fd, null, null, flags | SOCK::CLOEXEC)
            })
            .await?;
        Ok(self.task().own(new))
    }

    /// `accept4(fd, addr, addrlen, flags | SOCK_CLOEXEC)` — takes a pending connection and
    /// the peer's address.
    ///
    /// # Errors
    /// As [`FileDescriptor::accept4`]; [`Error::InvalidArgument`] if the kernel reports an
    /// empty or malformed address (the new fd is closed).
    pub async fn accept4_addr(&self, flags: SOCK) -> Result<(FileDescriptor, AnySockaddr)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (buf, len) = task.addr_buffers().await?;
        let (a, l) = (task.check_ptr(&buf)?, task.check_ptr(len.pointer())?);
        // SAFETY: `a` is STORAGE bytes and `l` a u32 holding STORAGE, both of the task's
        // memory, lent until completion.
        let call = unsafe { near::accept4(task.sysif(), fd, a, l, flags | SOCK::CLOEXEC) };
        let (new, (buf, len)) = task.lent("accept4", (buf, len), call).await?;
        let new = task.own(new);
        match read_addr(buf, len.into_pointer()).await {
            Ok(Some(addr)) => Ok((new, addr)),
            Ok(None) => {
                new.close().await?;
                Err(Error::invalid("accept4", "the kernel reported no address"))
            }
            Err(e) => {
                new.close().await?;
                Err(e)
            }
        }
    }

    /// `getsockname(fd, addr, addrlen)` — the socket's own address.
    ///
    /// # Errors
    /// `EBADF`, `ENOTSOCK`; [`Error::InvalidArgument`] for an empty or malformed address.
    /// See getsockname(2).
    pub async fn getsockname(&self) -> Result<AnySockaddr> {
        self.name_call("getsockname", false).await
    }

    /// `getpeername(fd, addr, addrlen)` — the connected peer's address.
    ///
    /// # Errors
    /// `ENOTCONN`, `EBADF`, `ENOTSOCK`; [`Error::InvalidArgument`] for an empty or malformed
    /// address. See getpeername(2).
    pub async fn getpeername(&self) -> Result<AnySockaddr> {
        self.name_call("getpeername", true).await
    }

    async fn name_call(&self, what: &'static str, peer: bool) -> Result<AnySockaddr> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (buf, len) = task.addr_buffers().await?;
        let (a, l) = (task.check_ptr(&buf)?, task.check_ptr(len.pointer())?);
        let call = async {
            if peer {
                // SAFETY: `a` is STORAGE bytes and `l` a u32 holding STORAGE, both of the
                // task's memory, lent until completion.
                unsafe { near::getpeername(task.sysif(), fd, a, l) }.await
            } else {
                // SAFETY: as above.
                unsafe { near::getsockname(task.sysif(), fd, a, l) }.await
            }
        };
        let ((), (buf, len)) = task.lent(what, (buf, len), call).await?;
        read_addr(buf, len.into_pointer())
            .await?
            .ok_or_else(|| Error::invalid(what, "the kernel reported an empty address"))
    }

    /// `getsockopt(fd, O::LEVEL, O::NAME, &value, &len)` — a typed option's value (see
    /// [`sockopt`](crate::structs::sockopt)).
    ///
    /// # Errors
    /// `ENOPROTOOPT`, `EINVAL`, `ENOTSOCK`. See getsockopt(2).
    pub async fn getsockopt<O: SockOpt>(&self) -> Result<O::Value> {
        let size = std::mem::size_of::<O::Raw>();
        let bytes = self
            .getsockopt_bytes(O::LEVEL, O::NAME, size, O::LABEL)
            .await?;
        Ok(O::from_raw(pod_from_bytes(&bytes)?))
    }

    /// `setsockopt(fd, O::LEVEL, O::NAME, &value, sizeof value)` — sets a typed option (see
    /// [`sockopt`](crate::structs::sockopt)).
    ///
    /// # Errors
    /// `ENOPROTOOPT` (also for read-only options), `EINVAL`, `EPERM`, `ENOTSOCK`. See
    /// setsockopt(2).
    pub async fn setsockopt<O: SockOpt>(&self, value: &O::Value) -> Result<()> {
        let raw = O::to_raw(value);
        self.setsockopt_bytes(O::LEVEL, O::NAME, &crate::structs::pod_bytes(&raw))
            .await
    }

    /// `getsockopt(fd, level, optname, &int, &len)` — an integer option by number.
    ///
    /// # Errors
    /// `ENOPROTOOPT`, `EINVAL`, `ENOTSOCK`. See getsockopt(2).
    pub async fn getsockopt_int(&self, level: i32, optname: i32) -> Result<i32> {
        let bytes = self
            .getsockopt_bytes(level, optname, 4, "getsockopt")
            .await?;
        pod_from_bytes(&bytes)
    }

    /// `setsockopt(fd, level, optname, &value, 4)` — sets an integer option by number.
    ///
    /// # Errors
    /// `ENOPROTOOPT`, `EINVAL`, `EPERM`, `ENOTSOCK`. See setsockopt(2).
    pub async fn setsockopt_int(&self, level: i32, optname: i32, value: i32) -> Result<()> {
        self.setsockopt_bytes(level, optname, &value.to_ne_bytes())
            .await
    }

    /// Reads an option of `size` bytes; bytes past the length the kernel reports are zero.
    async fn getsockopt_bytes(
        &self,
        level: i32,
        optname: i32,
        size: usize,
        label: &'static str,
    ) -> Result<Vec<u8>> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (val, v) = task.ptr_at(&vec![0u8; size][..]).await?;
        let (len, l) = task.ptr_at(&(size as u32)).await?;
        // SAFETY: `v` is `size` bytes and `l` a u32 holding `size`, both of the task's
        // memory, lent until completion.
        let call = unsafe { near::getsockopt(task.sysif(), fd, level, optname, v, l) };
        let ((), (val, len)) = task
            .lent_mapped((val, len), call, |e| {
                log::trace!("getsockopt {label} failed");
                task.error("getsockopt")(e)
            })
            .await?;
        let n = (len.into_readable().read().await? as usize).min(size);
        let mut bytes = val.into_readable().read().await?;
        bytes[n..].fill(0);
        Ok(bytes)
    }

    async fn setsockopt_bytes(&self, level: i32, optname: i32, value: &[u8]) -> Result<()> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (val, v) = task.ptr_at(value).await?;
        let call = near::setsockopt(task.sysif(), fd, level, optname, v, value.len() as u32);
        task.lent("setsockopt", val, call).await?;
        Ok(())
    }

    /// `shutdown(fd, how)` — see [`Task::shutdown`].
    ///
    /// # Errors
    /// `ENOTCONN`, `ENOTSOCK`. See shutdown(2).
    pub async fn shutdown(&self, how: SHUT) -> Result<()> {
        self.task().shutdown(self, how).await
    }

    /// `sendto(fd, buf, len, flags | MSG_NOSIGNAL, addr, addrlen)` — sends some of `buf`
    /// (to `addr` if given); returns the sent part and the rest. `MSG_NOSIGNAL` is always
    /// added: a lost peer is `EPIPE`, never `SIGPIPE`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an address longer than `sockaddr_storage`; `EPIPE`,
    /// `EAGAIN`, `ECONNREFUSED`, `EDESTADDRREQ`, `EMSGSIZE`, `ENOTCONN`, `ENOTSOCK`... See
    /// send(2).
    pub async fn sendto(
        &self,
        buf: WrittenPointer<[u8]>,
        flags: MSG,
        addr: Option<&dyn Sockaddr>,
    ) -> Result<(WrittenPointer<[u8]>, WrittenPointer<[u8]>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let b = task.check_ptr(buf.pointer())?;
        let addr = addr.map(|a| addr_bytes("sendto", a)).transpose()?;
        let name = match &addr {
            Some(bytes) => Some(task.ptr(&bytes[..]).await?),
            None => None,
        };
        let (n_addr, n_len) = match &name {
            Some(p) => (task.check_ptr(p.pointer())?, p.size() as u32),
            None => (near::Address::new(0), 0),
        };
        let len = buf.size();
        let flags = flags | MSG::NOSIGNAL;
        let call = near::sendto(task.sysif(), fd, b, len, flags, n_addr, n_len);
        let (n, (buf, _)) = task.lent("sendto", (buf, name), call).await?;
        buf.split(n.min(len))
    }

    /// `recvfrom(fd, buf, len, flags, addr, addrlen)` — receives into `buf`; returns the
    /// filled part, the rest, and the sender's address if the kernel reported one
    /// (connected stream sockets report none).
    ///
    /// # Errors
    /// `EAGAIN`, `ECONNREFUSED`, `EINTR`, `ENOTCONN`, `ENOTSOCK`... See recv(2).
    pub async fn recvfrom(
        &self,
        buf: Pointer<[u8]>,
        flags: MSG,
    ) -> Result<(ReadablePointer<[u8]>, Pointer<[u8]>, Option<AnySockaddr>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let b = task.check_ptr(&buf)?;
        let (name, nlen) = task.addr_buffers().await?;
        let (a, l) = (task.check_ptr(&name)?, task.check_ptr(nlen.pointer())?);
        let len = buf.size();
        // SAFETY: `b` is `len` bytes, `a` STORAGE bytes and `l` a u32 holding STORAGE, all
        // of the task's memory, lent until completion.
        let call = unsafe { near::recvfrom(task.sysif(), fd, b, len, flags, a, l) };
        let (n, (buf, name, nlen)) = task.lent("recvfrom", (buf, name, nlen), call).await?;
        let addr = read_addr(name, nlen.into_pointer()).await?;
        let (data, rest) = buf.filled(n.min(len))?;
        Ok((data, rest, addr))
    }

    /// `sendmsg(fd, msg, flags | MSG_NOSIGNAL)` — sends the buffers `iov` in order, with the
    /// control messages `control` (fds are checked to be of this task's table), to `addr`
    /// if given. Returns the number of bytes sent and the buffers.
    ///
    /// # Errors
    /// [`Error::Mismatch`] for a buffer or fd of another task; [`Error::InvalidArgument`]
    /// for more than 1024 buffers, an `SCM_RIGHTS` message with no fds or more than 253, an
    /// address longer than `sockaddr_storage`; `EPIPE`, `EAGAIN`, `EPERM` (credentials not
    /// our own), `ENOTSOCK`... See sendmsg(2).
    pub async fn sendmsg(
        &self,
        iov: Vec<WrittenPointer<[u8]>>,
        control: &[SendCmsg<'_>],
        addr: Option<&dyn Sockaddr>,
        flags: MSG,
    ) -> Result<(usize, Vec<WrittenPointer<[u8]>>)> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (iovecs, _) = iovecs(task, "sendmsg", iov.iter().map(WrittenPointer::pointer), 0)?;
        let control = cmsg::encode(task, control)?;
        let addr = addr.map(|a| addr_bytes("sendmsg", a)).transpose()?;
        let iovec_buf = task.opt_ptr(&iovecs).await?;
        let control_buf = task.opt_ptr(&control).await?;
        let name_buf = match &addr {
            Some(bytes) => Some(task.ptr(&bytes[..]).await?),
            None => None,
        };
        let msg = Msghdr {
            name: task.opt_addr(&name_buf)?,
            namelen: addr.as_ref().map_or(0, |a| a.len() as u32),
            iov: task.opt_addr(&iovec_buf)?,
            iovlen: iovecs.len() as u64,
            control: task.opt_addr(&control_buf)?,
            controllen: control.len() as u64,
            ..Msghdr::default()
        };
        let (msg, m) = task.ptr_at(&msg).await?;
        let call = near::sendmsg(task.sysif(), fd, m, flags | MSG::NOSIGNAL);
        let held = (msg, iovec_buf, control_buf, name_buf, iov);
        let (n, (_, _, _, _, iov)) = task.lent("sendmsg", held, call).await?;
        Ok((n, iov))
    }

    /// `recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC)` — receives into the buffers `iov` in
    /// order, with a control buffer of `control_len` bytes (use
    /// `CMSG_SPACE`-sized room: 16 bytes of header plus the data rounded up to 8). Received
    /// fds come back as owning, close-on-exec handles in [`RecvMsg::control`], exactly once.
    ///
    /// # Errors
    /// [`Error::Mismatch`] for a buffer of another task; [`Error::InvalidArgument`] for more
    /// than 1024 buffers or a control length over `i32::MAX`, and when the control buffer
    /// was too small (`MSG_CTRUNC`): the fds that did arrive are closed then. `EAGAIN`,
    /// `EINTR`, `ENOTCONN`, `ENOTSOCK`... See recvmsg(2).
    pub async fn recvmsg(
        &self,
        iov: Vec<Pointer<[u8]>>,
        control_len: usize,
        flags: MSG,
    ) -> Result<RecvMsg> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (iovecs, _) = iovecs(task, "recvmsg", iov.iter(), 0)?;
        if control_len > i32::MAX as usize {
            return Err(Error::invalid(
                "recvmsg",
                format!("a control buffer of {control_len} bytes is over INT_MAX"),
            ));
        }
        let iovec_buf = task.opt_ptr(&iovecs).await?;
        let control_buf: Option<Pointer<cmsg::ControlBuffer>> = if control_len == 0 {
            None
        } else {
            Some(Pointer::from_allocation(task.alloc(control_len, 8).await?))
        };
        let name_buf = task.malloc_bytes(STORAGE).await?;
        let control_addr = match &control_buf {
            Some(p) => task.check_ptr(p)?.as_u64(),
            None => 0,
        };
        let msg = Msghdr {
            name: task.check_ptr(&name_buf)?.as_u64(),
            namelen: STORAGE as u32,
            iov: task.opt_addr(&iovec_buf)?,
            iovlen: iovecs.len() as u64,
            control: control_addr,
            controllen: control_len as u64,
            ..Msghdr::default()
        };
        let (msg, m) = task.ptr_at(&msg).await?;
        // SAFETY: the msghdr, the iovec array and every buffer they name are memory of the
        // task's address space of the sizes given, lent until completion.
        let call = unsafe { near::recvmsg(task.sysif(), fd, m, flags | MSG::CMSG_CLOEXEC) };
        let held = (msg, iovec_buf, control_buf, name_buf, iov);
        let (n, (msg, _, control_buf, name_buf, iov)) = task.lent("recvmsg", held, call).await?;
        let hdr = msg.into_readable().read().await?;
        // Received fds become handles before anything else can fail.
        let control = match control_buf {
            Some(buf) => {
                let len = (hdr.controllen as usize).min(buf.size());
                let (linear, _) = buf.filled_linear(len)?;
                let (raw, _) = linear.read().await?;
                cmsg::own(task, raw)
            }
            None => Vec::new(),
        };
        let msg_flags = MSG::from_bits_retain(hdr.flags);
        if msg_flags.contains(MSG::CTRUNC) {
            let closed = cmsg::close_all(control).await;
            return Err(Error::invalid(
                "recvmsg",
                format!(
                    "MSG_CTRUNC: the control buffer of {control_len} bytes was too small; \
                     {closed} fds that arrived were closed"
                ),
            ));
        }
        let name = if hdr.namelen == 0 {
            None
        } else {
            let (name, _) = name_buf.filled((hdr.namelen as usize).min(STORAGE))?;
            match AnySockaddr::parse(&name.read().await?) {
                Ok(a) => Some(a),
                Err(e) => {
                    cmsg::close_all(control).await;
                    return Err(e);
                }
            }
        };
        let (data, rest) = split_filled(iov, n)?;
        Ok(RecvMsg {
            received: n,
            data,
            rest,
            name,
            control,
            flags: msg_flags,
        })
    }

    /// An interface ioctl taking a `struct ifreq`; returns the struct as the kernel left it.
    async fn ifreq_ioctl(&self, what: &'static str, request: u64, ifr: Ifreq) -> Result<Ifreq> {
        let task = self.task();
        let fd = task.check_fd(self)?;
        let (ptr, a) = task.ptr_at(&ifr).await?;
        // SAFETY: `a` is a whole `struct ifreq` of the task's memory, lent until completion;
        // the callers pass only requests that read and write the struct and nothing else.
        let call = unsafe { near::ioctl(task.sysif(), fd, request, a.arg()) };
        let (_, ptr) = task.lent(what, ptr, call).await?;
        ptr.into_readable().read().await
    }

    /// `ioctl(fd, SIOCGIFINDEX, ifr)` — the index of interface `name` (in the network
    /// namespace of the socket).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name (NUL, over 15 bytes); `ENODEV`, `ENOTTY`.
    /// See netdevice(7).
    pub async fn siocgifindex(&self, name: &[u8]) -> Result<i32> {
        let ifr = Ifreq::new(name)?;
        Ok(self
            .ifreq_ioctl("ioctl(SIOCGIFINDEX)", libc::SIOCGIFINDEX, ifr)
            .await?
            .ifindex())
    }

    /// `ioctl(fd, SIOCGIFFLAGS, ifr)` — the flags of interface `name`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name; `ENODEV`. See netdevice(7).
    pub async fn siocgifflags(&self, name: &[u8]) -> Result<IFF> {
        let ifr = Ifreq::new(name)?;
        let ifr = self
            .ifreq_ioctl("ioctl(SIOCGIFFLAGS)", libc::SIOCGIFFLAGS, ifr)
            .await?;
        Ok(IFF::from_bits_retain(ifr.flags()))
    }

    /// `ioctl(fd, SIOCSIFFLAGS, ifr)` — sets the flags of interface `name` (needs
    /// `CAP_NET_ADMIN` in the socket's network namespace).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name; `EPERM`, `ENODEV`. See netdevice(7).
    pub async fn siocsifflags(&self, name: &[u8], flags: IFF) -> Result<()> {
        let mut ifr = Ifreq::new(name)?;
        ifr.set_flags(flags.bits());
        self.ifreq_ioctl("ioctl(SIOCSIFFLAGS)", libc::SIOCSIFFLAGS, ifr)
            .await?;
        Ok(())
    }

    /// `ioctl(fd, SIOCGIFADDR, ifr)` — the IPv4 address of interface `name` (on an
    /// `AF_INET` socket).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name; `EADDRNOTAVAIL` (no address), `ENODEV`.
    /// See netdevice(7).
    pub async fn siocgifaddr(&self, name: &[u8]) -> Result<SockaddrIn> {
        let ifr = Ifreq::new(name)?;
        self.ifreq_ioctl("ioctl(SIOCGIFADDR)", libc::SIOCGIFADDR, ifr)
            .await?
            .addr_in()
    }

    /// `ioctl(fd, SIOCSIFADDR, ifr)` — sets the IPv4 address of interface `name` (on an
    /// `AF_INET` socket; needs `CAP_NET_ADMIN`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name; `EPERM`, `ENODEV`, `EINVAL`. See
    /// netdevice(7).
    pub async fn siocsifaddr(&self, name: &[u8], addr: &SockaddrIn) -> Result<()> {
        let mut ifr = Ifreq::new(name)?;
        ifr.set_addr_in(addr);
        self.ifreq_ioctl("ioctl(SIOCSIFADDR)", libc::SIOCSIFADDR, ifr)
            .await?;
        Ok(())
    }

    /// `ioctl(fd, TUNSETIFF, ifr)` — on an fd of `/dev/net/tun`, attaches it to a new or
    /// existing tun/tap interface `name` (empty, or with `%d`, for the kernel to choose);
    /// returns the interface's name. Needs `CAP_NET_ADMIN` in the fd's network namespace.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name, or flags without exactly one of
    /// `TUN::TUN` and `TUN::TAP`; `EPERM`, `EBUSY`, `EBADFD`, `EINVAL`. See the kernel's
    /// Documentation/networking/tuntap.rst.
    pub async fn tunsetiff(&self, name: &[u8], flags: TUN) -> Result<Vec<u8>> {
        let mut ifr = Ifreq::new(name)?;
        if flags.contains(TUN::TUN) == flags.contains(TUN::TAP) {
            return Err(Error::invalid(
                "TUNSETIFF",
                format!("flags {flags:?}: exactly one of TUN and TAP"),
            ));
        }
        ifr.set_flags(flags.bits());
        let ifr = self
            .ifreq_ioctl("ioctl(TUNSETIFF)", libc::TUNSETIFF, ifr)
            .await?;
        Ok(ifr.name().to_vec())
    }
}

impl Task {
    /// A buffer for an address the kernel writes, and its length (holding the buffer's
    /// size) for the kernel to read and update.
    async fn addr_buffers(&self) -> Result<(Pointer<[u8]>, WrittenPointer<u32>)> {
        let buf = self.malloc_bytes(STORAGE).await?;
        let len = self.ptr(&(STORAGE as u32)).await?;
        Ok((buf, len))
    }

    /// `values` written into the task's memory, or nothing for an empty slice.
    async fn opt_ptr<T: crate::structs::Pod>(
        &self,
        values: &[T],
    ) -> Result<Option<WrittenPointer<[T]>>> {
        if values.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.ptr(values).await?))
    }

    /// The address of an optional pointer, 0 for none.
    fn opt_addr<T: ?Sized + crate::structs::Struct>(
        &self,
        p: &Option<WrittenPointer<T>>,
    ) -> Result<u64> {
        Ok(match p {
            Some(p) => self.check_ptr(p.pointer())?.as_u64(),
            None => 0,
        })
    }
}

/// Checks a number of fds for one `SCM_RIGHTS` message.
fn check_fd_count(what: &'static str, n: usize) -> Result<()> {
    if n == 0 || n > cmsg::MAX_FDS {
        return Err(Error::invalid(
            what,
            format!(
                "{n} fds: between 1 and {} can pass in one message",
                cmsg::MAX_FDS
            ),
        ));
    }
    Ok(())
}
