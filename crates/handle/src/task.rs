//! `Task`: a process we can run syscalls in, with its fd table state and memory.
//!
//! # Safety
//! The near wrappers called here are unsafe where the kernel writes memory or closes fds.
//! Each call discharges that duty the same way: buffers the kernel writes are allocations
//! of the task's own address space held in an `InFlight` guard (kept or leaked until the
//! syscall completes), and fds closed or replaced are held by owning handles whose last
//! reference is being released or that the caller passed in.
#![allow(unsafe_code)]

use std::fmt;
use std::sync::{Arc, OnceLock};

use rsyscall_far as far;
use rsyscall_near::{self as near, MSG, O, SHUT, SOCK, SyscallError};

use crate::error::{Error, Result};
use crate::fd::{FdTableState, FileDescriptor};
use crate::memory::{Allocation, InFlight, Memory};

/// The namespaces of the local process, created once.
pub fn local_namespaces() -> far::Namespaces {
    static NS: OnceLock<far::Namespaces> = OnceLock::new();
    *NS.get_or_init(|| {
        let pid = near::Pid::new(std::process::id() as i32);
        far::Namespaces {
            fd_table: far::FdTable::new(pid),
            address_space: far::AddressSpace::new(pid),
            pidns: far::PidNamespace::new(pid),
            mountns: far::MountNamespace::new(pid),
            netns: far::NetNamespace::new(pid),
        }
    })
}

struct TaskInner {
    far: far::Task,
    fd_table: Arc<FdTableState>,
    memory: Arc<Memory>,
    inherited_from: Option<(far::FdTable, u64)>,
}

/// A process we can run syscalls in: every supported syscall is a method here, and works
/// the same on the local process and on any remote one.
///
/// Cheap to clone (a reference-counted handle).
#[derive(Clone)]
pub struct Task {
    inner: Arc<TaskInner>,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task(pid {})", self.pid().as_raw())
    }
}

/// The two ends of a pipe.
#[derive(Debug)]
pub struct Pipe {
    /// The read end.
    pub read: FileDescriptor,
    /// The write end.
    pub write: FileDescriptor,
}

impl Task {
    /// The local process, running syscalls through [`near::LocalSyscall`].
    pub fn local() -> Task {
        static LOCAL: OnceLock<Task> = OnceLock::new();
        LOCAL
            .get_or_init(|| {
                let ns = local_namespaces();
                let pid = near::Pid::new(std::process::id() as i32);
                Task::new(
                    Arc::new(near::LocalSyscall),
                    pid,
                    ns,
                    FdTableState::new(ns.fd_table),
                    Memory::local().clone(),
                    None,
                )
            })
            .clone()
    }

    /// A task running syscalls through `sysif`, with pid `pid` (in its own pid namespace),
    /// namespaces `ns`, the shared state of its fd table and the allocator of its address
    /// space. `inherited_from` names the table its own table was copied from, if any, with
    /// that table's [`FdTableState::generation`] taken just before the copy.
    pub fn new(
        sysif: Arc<dyn near::SyscallInterface>,
        pid: near::Pid,
        ns: far::Namespaces,
        fd_table: Arc<FdTableState>,
        memory: Arc<Memory>,
        inherited_from: Option<(far::FdTable, u64)>,
    ) -> Task {
        Task {
            inner: Arc::new(TaskInner {
                far: far::Task::new(sysif, pid, ns),
                fd_table,
                memory,
                inherited_from,
            }),
        }
    }

    /// The far task.
    pub fn far(&self) -> &far::Task {
        &self.inner.far
    }

    /// The pid, in the task's own pid namespace.
    pub fn pid(&self) -> near::Pid {
        self.inner.far.pid
    }

    /// The task's namespaces.
    pub fn namespaces(&self) -> far::Namespaces {
        self.inner.far.ns
    }

    /// The syscall interface.
    pub fn sysif(&self) -> &dyn near::SyscallInterface {
        self.inner.far.sysif()
    }

    /// The shared syscall interface.
    pub fn sysif_arc(&self) -> &Arc<dyn near::SyscallInterface> {
        &self.inner.far.sysif
    }

    /// The shared state of the fd table.
    pub fn fd_table(&self) -> &Arc<FdTableState> {
        &self.inner.fd_table
    }

    /// The table this task's table was copied from when it was created, and that table's
    /// generation at the time, if any.
    pub fn inherited_from(&self) -> Option<(far::FdTable, u64)> {
        self.inner.inherited_from
    }

    /// The allocator of the task's address space.
    pub fn memory(&self) -> &Arc<Memory> {
        &self.inner.memory
    }

    fn error(&self, syscall: &'static str) -> impl Fn(SyscallError) -> Error + '_ {
        move |source| {
            log::trace!("pid {}: {syscall} failed: {source}", self.pid().as_raw());
            Error::Syscall {
                syscall,
                pid: self.pid().as_raw(),
                source,
            }
        }
    }

    fn near_fd(&self, fd: &FileDescriptor) -> Result<near::FileDescriptor> {
        Ok(self.inner.far.near_fd(&fd.far())?)
    }

    /// Wraps a fresh fd number returned by a syscall in this task in an owning handle.
    fn own(&self, n: near::FileDescriptor) -> FileDescriptor {
        FileDescriptor::owned(self, n)
    }

    /// Performs the closes queued by dropped handles of this task's table.
    ///
    /// # Errors
    /// The first close that failed (the others are still attempted). A lost connection is
    /// not an error: the table's fds went with the process.
    pub async fn flush_closes(&self) -> Result<()> {
        let mut first = Ok(());
        for fd in self.inner.fd_table.take_pending() {
            // SAFETY: the fd was owned by a handle of this table that has been dropped, so
            // nothing else owns it.
            let r = unsafe { near::close(self.sysif(), fd) }.await;
            match r {
                Ok(()) | Err(SyscallError::Hangup) => {}
                Err(e) => {
                    if first.is_ok() {
                        first = Err(self.error("close")(e));
                    }
                }
            }
        }
        first
    }

    async fn prepare(&self) {
        // A failed queued close leaves nothing to repair; it is logged, not reported to an
        // unrelated syscall.
        if let Err(e) = self.flush_closes().await {
            log::debug!("queued close failed: {e}");
        }
    }

    pub(crate) async fn close_near(&self, fd: near::FileDescriptor) -> Result<()> {
        // SAFETY: called only by the last handle of an owned fd, which has marked itself
        // released.
        unsafe { near::close(self.sysif(), fd) }
            .await
            .map_err(self.error("close"))
    }

    /// Allocates `size` bytes in the task's address space.
    ///
    /// # Errors
    /// See [`Memory::malloc`].
    pub fn malloc(&self, size: usize, align: usize) -> Result<Allocation> {
        self.inner.memory.malloc(size, align)
    }

    /// Allocates and fills a buffer with `data`, lent to a syscall: if the syscall's future
    /// is dropped before the response, the buffer is leaked rather than reused while the
    /// remote kernel may still read it.
    fn buffer(&self, data: &[u8]) -> Result<InFlight> {
        let buf = self.malloc(data.len(), 8)?;
        buf.write(0, data)?;
        Ok(InFlight::new(buf))
    }

    /// `getpid()` — the task's pid in its own pid namespace.
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn getpid(&self) -> Result<near::Pid> {
        near::getpid(self.sysif())
            .await
            .map_err(self.error("getpid"))
    }

    /// `getppid()` — the pid of the task's parent (0 if outside its pid namespace).
    ///
    /// # Errors
    /// Only a lost connection.
    pub async fn getppid(&self) -> Result<near::Pid> {
        near::getppid(self.sysif())
            .await
            .map_err(self.error("getppid"))
    }

    /// `write(fd, buf, len)` — writes some of `data`; returns how many bytes were written.
    ///
    /// # Errors
    /// The syscall's errors (`EBADF`, `EPIPE`, `EAGAIN`...). See write(2).
    pub async fn write(&self, fd: &FileDescriptor, data: &[u8]) -> Result<usize> {
        let nfd = self.near_fd(fd)?;
        self.prepare().await;
        if self.sysif().is_local() {
            // The syscall runs to completion inside this call, reading `data` in place.
            return near::write(
                self.sysif(),
                nfd,
                near::Address::from_ptr(data.as_ptr()),
                data.len(),
            )
            .await
            .map_err(self.error("write"));
        }
        let buf = self.buffer(data)?;
        let r = near::write(self.sysif(), nfd, buf.addr(), data.len()).await;
        let (n, _) = buf.settle(r).map_err(self.error("write"))?;
        Ok(n)
    }

    /// Writes all of `data`, looping over short writes.
    ///
    /// # Errors
    /// As for [`Task::write`]; a write of 0 bytes is `EIO`-free and simply retried.
    pub async fn write_all(&self, fd: &FileDescriptor, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = self.write(fd, data).await?;
            data = &data[n.min(data.len())..];
        }
        Ok(())
    }

    /// `read(fd, buf, len)` — reads up to `len` bytes; an empty result means EOF.
    ///
    /// # Errors
    /// The syscall's errors (`EBADF`, `EAGAIN`, `EISDIR`...). See read(2).
    pub async fn read(&self, fd: &FileDescriptor, len: usize) -> Result<Vec<u8>> {
        let nfd = self.near_fd(fd)?;
        self.prepare().await;
        let buf = InFlight::new(self.malloc(len, 8)?);
        let addr = buf.addr();
        // SAFETY: `addr` is an allocation of `len` bytes in the task's address space that is
        // kept (or leaked) until the kernel is done with it.
        let r = unsafe { near::read(self.sysif(), nfd, addr, len) }.await;
        let (n, buf) = buf.settle(r).map_err(self.error("read"))?;
        buf.read(0, n.min(len))
    }

    /// Reads until EOF.
    ///
    /// # Errors
    /// As for [`Task::read`].
    pub async fn read_to_end(&self, fd: &FileDescriptor) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read(fd, 65536).await?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// Owns the two fd numbers a syscall wrote into `buf`.
    fn own_pair(&self, buf: Allocation) -> Result<(FileDescriptor, FileDescriptor)> {
        let bytes = buf.read(0, 8)?;
        let a = i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let b = i32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        Ok((
            self.own(near::FileDescriptor::new(a)),
            self.own(near::FileDescriptor::new(b)),
        ))
    }

    /// `pipe2(fds, O_CLOEXEC)` — a pipe, both ends close-on-exec.
    ///
    /// # Errors
    /// `EMFILE`, `ENFILE`. See pipe(2).
    pub async fn pipe(&self) -> Result<Pipe> {
        self.prepare().await;
        let buf = InFlight::new(self.malloc(8, 8)?);
        let addr = buf.addr();
        // SAFETY: addr is an 8-byte allocation kept (or leaked) until the syscall is done.
        let r = unsafe { near::pipe2(self.sysif(), addr, O::CLOEXEC) }.await;
        let ((), buf) = buf.settle(r).map_err(self.error("pipe2"))?;
        let (read, write) = self.own_pair(buf)?;
        Ok(Pipe { read, write })
    }

    /// `socketpair(domain, type | SOCK_CLOEXEC, 0, fds)` — two connected sockets.
    ///
    /// # Errors
    /// `EAFNOSUPPORT`, `EOPNOTSUPP`, `EMFILE`. See socketpair(2).
    pub async fn socketpair(
        &self,
        domain: i32,
        ty: i32,
    ) -> Result<(FileDescriptor, FileDescriptor)> {
        self.prepare().await;
        let buf = InFlight::new(self.malloc(8, 8)?);
        let addr = buf.addr();
        // SAFETY: addr is an 8-byte allocation kept (or leaked) until the syscall is done.
        let r = unsafe { near::socketpair(self.sysif(), domain, ty, SOCK::CLOEXEC, 0, addr) }.await;
        let ((), buf) = buf.settle(r).map_err(self.error("socketpair"))?;
        self.own_pair(buf)
    }

    /// `dup2(old, new)` — makes `new`'s number refer to what `old` refers to.
    ///
    /// # Errors
    /// `EBADF`, `EBUSY`, `EINTR`. See dup(2).
    pub async fn dup2(&self, old: &FileDescriptor, new: &FileDescriptor) -> Result<()> {
        let o = self.near_fd(old)?;
        let n = self.near_fd(new)?;
        self.prepare().await;
        // SAFETY: `new` is a handle held by the caller, so replacing what it refers to
        // affects only users of that handle, who asked for it.
        unsafe { near::dup2(self.sysif(), o, n) }
            .await
            .map_err(self.error("dup2"))?;
        Ok(())
    }

    /// `openat(AT_FDCWD, path, flags | O_CLOEXEC, mode)` — opens a file.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with an interior NUL; the syscall's errors.
    pub async fn open(&self, path: &[u8], flags: O, mode: u32) -> Result<FileDescriptor> {
        let cpath = std::ffi::CString::new(path)
            .map_err(|_| Error::invalid("open", "path contains a NUL byte"))?;
        self.prepare().await;
        let buf = self.buffer(cpath.as_bytes_with_nul())?;
        let r = near::openat(self.sysif(), None, buf.addr(), flags | O::CLOEXEC, mode).await;
        let (fd, _) = buf.settle(r).map_err(self.error("openat"))?;
        Ok(self.own(fd))
    }

    /// `faccessat2(AT_FDCWD, path, mode, 0)` — checks access to a file (`libc::X_OK`...).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path with an interior NUL; `ENOENT`, `EACCES`...
    pub async fn access(&self, path: &[u8], mode: i32) -> Result<()> {
        let cpath = std::ffi::CString::new(path)
            .map_err(|_| Error::invalid("access", "path contains a NUL byte"))?;
        let buf = self.buffer(cpath.as_bytes_with_nul())?;
        let r = near::faccessat(self.sysif(), None, buf.addr(), mode, 0).await;
        buf.settle(r).map_err(self.error("faccessat2"))?;
        Ok(())
    }

    /// `kill(pid, sig)` — signals a process by pid (racy unless it is an unreaped child:
    /// prefer [`ChildProcess::kill`](crate::ChildProcess::kill)).
    ///
    /// # Errors
    /// `ESRCH`, `EPERM`. See kill(2).
    pub async fn kill(&self, pid: near::Pid, sig: near::Signal) -> Result<()> {
        near::kill(self.sysif(), pid, sig)
            .await
            .map_err(self.error("kill"))
    }

    /// `shutdown(fd, how)`.
    ///
    /// # Errors
    /// `ENOTCONN`, `ENOTSOCK`. See shutdown(2).
    pub async fn shutdown(&self, fd: &FileDescriptor, how: SHUT) -> Result<()> {
        let n = self.near_fd(fd)?;
        near::shutdown(self.sysif(), n, how)
            .await
            .map_err(self.error("shutdown"))
    }

    /// `sendmsg(sock, msg, 0)` with a one-byte payload and the fds in one `SCM_RIGHTS`
    /// message (PROTOCOL.md section 3). The fds are copied, not moved.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no fds or more than 253; the syscall's errors.
    pub async fn send_fds(&self, sock: &FileDescriptor, fds: &[&FileDescriptor]) -> Result<()> {
        let s = self.near_fd(sock)?;
        let nums = fds
            .iter()
            .map(|f| self.near_fd(f).map(|n| n.as_raw()))
            .collect::<Result<Vec<_>>>()?;
        self.prepare().await;
        let (msg, buf) = crate::cmsg::build_msghdr(self, &nums, false)?;
        let buf = InFlight::new(buf);
        let r = near::sendmsg(self.sysif(), s, msg, MSG::NOSIGNAL).await;
        buf.settle(r).map_err(self.error("sendmsg"))?;
        Ok(())
    }

    /// `recvmsg(sock, msg, MSG_CMSG_CLOEXEC)` expecting exactly `count` fds in one
    /// `SCM_RIGHTS` message; the fds come back as owning handles in this task's table.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the message carried another number of fds (those that
    /// did arrive are closed); `ECONNRESET`-style errors; EOF is `EPIPE`-free and reported
    /// as an invalid argument naming EOF.
    pub async fn recv_fds(
        &self,
        sock: &FileDescriptor,
        count: usize,
    ) -> Result<Vec<FileDescriptor>> {
        let s = self.near_fd(sock)?;
        self.prepare().await;
        let (msg, buf) = crate::cmsg::build_msghdr(self, &vec![-1; count], true)?;
        let buf = InFlight::new(buf);
        // SAFETY: the msghdr and its buffers live in `buf`, kept (or leaked) until done.
        let r = unsafe { near::recvmsg(self.sysif(), s, msg, MSG::CMSG_CLOEXEC) }.await;
        let (n, buf) = buf.settle(r).map_err(self.error("recvmsg"))?;
        let received = crate::cmsg::parse_fds(&buf)?;
        let fds: Vec<FileDescriptor> = received
            .iter()
            .map(|&n| self.own(near::FileDescriptor::new(n)))
            .collect();
        if n == 0 && fds.is_empty() {
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
